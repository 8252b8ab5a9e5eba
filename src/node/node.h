// Node: a running kvstore member. It wires the Raft core, the write-ahead
// log, the state machine and the ZeroMQ sockets together.
//
// One loop thread owns every socket and every Raft group the node hosts (one
// group, or in a sharded cluster the metadata group and the shards the ring
// places here). In a round it reads client requests and peer messages, ticks
// Raft, then drains every group's Ready: sends what may go at once, writes
// all groups' entries and hard states in one WAL batch (one fdatasync),
// sends what had to wait for durability, and hands committed entries and
// confirmed reads to the worker pool. Requests arriving while the WAL syncs
// queue in ZeroMQ and go out together in the next round's batch.
//
// A sharded node answers REDIRECT (with the shard id) for keys of shards it
// does not lead; nodes tell each other which groups they lead (leader hints)
// so that any node can point at the right leader.
//
// The worker pool owns the state machines: on each group's strand it applies
// committed entries in log order, serves reads, takes snapshot copies and
// encodes replies, which it hands back to the loop thread (EventLoop::Post)
// for sending. No worker touches a socket.
//
// Client protocol v1 and the events are described in docs/protocol.md.
// Thread safety: Run on one thread; RequestStop from any thread or a signal
// handler path (it only writes an eventfd).
#pragma once

#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <optional>
#include <deque>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <zmq.hpp>

#include "common/status.h"
#include "kv/ring.h"
#include "kv/state_machine.h"
#include "net/codec.h"
#include "net/event_loop.h"
#include "net/publisher.h"
#include "node/config.h"
#include "node/snapshot_stream.h"
#include "node/worker_pool.h"
#include "raft/raft.h"
#include "storage/node_storage.h"

namespace kv::node {

// Group ids. Group 1 holds every key of an unsharded cluster; in a sharded
// one it is the metadata group (membership), on the first kMetaVoters
// founding members, and shard s is group kFirstShardGroup + s.
constexpr raft::GroupId kMainGroup = 1;
constexpr raft::GroupId kFirstShardGroup = 2;
constexpr size_t kMetaVoters = 5;
inline raft::GroupId ShardGroup(uint32_t shard) { return kFirstShardGroup + shard; }

class Node {
 public:
  explicit Node(NodeConfig cfg);
  ~Node();
  Node(const Node&) = delete;
  Node& operator=(const Node&) = delete;

  // Opens the storage (recovering it) and binds the sockets. InvalidArgument
  // for configuration problems (a port in use, a foreign data dir);
  // Corruption or IOError for storage that cannot be opened.
  Status Start();
  // Serves until RequestStop (or a fatal storage error, returned).
  Status Run();
  // Thread-safe; async-signal-safe enough for a signalfd-driven caller.
  void RequestStop() { loop_.Stop(); }

 private:
  // A client request waiting for its answer.
  struct Pending {
    std::string routing;  // the client's ROUTER identity frame
    bool delimiter = false;  // the client is a REQ socket: echo an empty frame
    uint64_t id = 0;
    raft::Term term = 0;  // writes: the term the entry was proposed in
    std::string key;      // reads: the key to read
  };

  // Replies and events a worker produced, for the loop thread to send.
  struct Outgoing {
    std::vector<std::pair<Pending, std::string>> replies;  // encoded replies
    std::vector<std::pair<std::string, std::vector<net::EventField>>> events;
    // The metadata group's member keys, when they changed, at this applied index.
    std::optional<std::map<std::string, std::string>> member_keys;
    uint64_t member_version = 0;
  };

  // A member joining the group, waiting to be promoted to voter.
  struct Joining {
    Pending client;  // answered once the node is a voter
    std::string address;
    bool promoting = false;
  };

  // The state machine's progress, published by the strand after each batch
  // and read by the loop thread (status): one consistent triple.
  struct ApplyProgress {
    uint64_t applied = 0;
    uint64_t digest = 0;
    uint64_t keys = 0;
  };

  // One Raft group this node is a replica of: its core and storage, the
  // requests waiting on it, and its state machine. The loop thread owns the
  // first part, the group's worker strand the second.
  struct Group {
    raft::GroupId id = 0;
    int shard = -1;  // the shard it holds, or -1 (the metadata or unsharded group)
    raft::NodeId preferred_leader = raft::kNoNode;  // the placement's choice
    // This node was removed from the group: it no longer drives it (until
    // the placement brings the group back here).
    bool removed = false;
    storage::GroupStorage* storage = nullptr;
    std::unique_ptr<raft::Raft> raft;

    // Loop thread only.
    std::map<raft::Index, Pending> pending_writes;
    std::vector<Pending> read_batch;  // gathered this round, one ReadIndex for all
    std::map<std::string, std::vector<Pending>> reads_by_context;
    uint64_t read_context = 0;
    std::map<raft::NodeId, Joining> joining;
    raft::Index handed_to_workers = 0;  // last committed index given to the strand
    raft::Index last_snapshot_index = 0;
    bool snapshot_in_progress = false;
    uint64_t snapshot_segment = 0;  // the WAL's newest segment when its last snapshot began
    raft::Index published_commit = 0;
    uint64_t leader_since_tick = 0;     // when this node last became its leader
    uint64_t last_transfer_tick = 0;    // when it last handed leadership on

    // The worker strand only.
    StateMachine sm;
    std::multimap<raft::Index, Pending> reads_waiting_apply;

    ApplyProgress progress() const {
      std::lock_guard<std::mutex> lock(progress_mu);
      return progress_;
    }
    mutable std::mutex progress_mu;
    ApplyProgress progress_;  // guarded by progress_mu
  };

  // Who leads a group this node does not host, as its leader last told us.
  struct LeaderHint {
    raft::NodeId leader = raft::kNoNode;
    raft::Term term = 0;
  };

  // Loop thread: sockets.
  bool DrainClients();
  bool DrainPeers();
  void HandleRequest(Pending p, std::string_view payload);
  void Reply(const Pending& p, const net::ClientReply& reply);
  void ReplyRaw(const Pending& p, const std::string& bytes);
  void ReplyStatus(const Pending& p);
  void ReplyShards(const Pending& p);
  void HandlePeerFrame(std::string_view frame);
  // Queues a group's messages per peer; FlushPeers sends each peer's queue
  // as one ZeroMQ message (many groups' messages in one send).
  void SendRaft(Group& g, const std::vector<raft::Message>& msgs);
  void FlushPeers();
  void PumpSnapshots();
  void Deliver(Outgoing out);

  // Loop thread: Raft.
  Status CreateGroup(raft::GroupId id, const std::vector<raft::NodeId>& voters,
                     raft::NodeId preferred_leader);
  // The shard group `id` holds, or -1 (the metadata or unsharded group, or
  // no group of this cluster).
  int ShardOf(raft::GroupId id) const {
    return cfg_.sharded() && id >= kFirstShardGroup && id - kFirstShardGroup < cfg_.shards
               ? static_cast<int>(id - kFirstShardGroup)
               : -1;
  }
  Group* FindGroup(raft::GroupId id);
  // The group a key request goes to (sharded: the key's shard).
  raft::GroupId GroupForKey(std::string_view key) const;
  void Tick();
  void ProcessReady();
  // Completes, in order, the writes the WAL reported durable: makes them
  // visible in the storage, sends what waited for them, hands committed
  // entries on and advances the groups.
  void FinishWrites();
  // Blocks until every write submitted so far is durable, and finishes them.
  void WaitForWrites();
  void Fail(const Status& s);
  void OnRoleChange(Group& g, const raft::SoftState& ss);
  void FailPendingOnStepDown(Group& g);
  void MaybeSnapshot(Group& g);
  // Sharded clusters: every kBalanceTicks, the leader of each group moves its
  // replica set one step toward the placement (add a learner, promote it,
  // then remove a replica no longer placed here) and hands leadership to the
  // preferred leader.
  void Rebalance(Group& g);
  void BalanceLeader(Group& g, const std::vector<raft::NodeId>& target);
  // The replicas group `id` should have under the current placement.
  std::vector<raft::NodeId> TargetReplicas(raft::GroupId id) const;
  // A message for a group not driven here: hosts it if the placement puts
  // it here (a new replica), else nullptr.
  Group* HostOnDemand(raft::GroupId id);
  // Adopts a newer member list: reconnects, recomputes the placement.
  void SetMembers(uint64_t version, const std::map<raft::NodeId, HostPort>& members);
  void OnMemberKeys(uint64_t version, const std::map<std::string, std::string>& keys);
  // The metadata group's leader records the founders as member keys once.
  void SeedMembers(Group& meta);
  void HandleShardedMemberRequest(Pending p, const net::ClientRequest& req);
  void SendLeaderHints();
  void OnLeaderHints(const net::LeaderHints& hints);
  void OnRemovedNotice(const net::RemovedNotice& notice);
  // A message from `from` for group g, whose configuration here no longer
  // has it: tells it it was removed (at most once a second per group).
  void TellIfRemoved(Group& g, raft::NodeId from);
  // The leader of group `id` as far as this node knows; kNoNode if unknown.
  raft::NodeId KnownLeader(raft::GroupId id) const;
  // Answers a request for group `id` that this node cannot serve as leader.
  void RedirectOrUnavailable(const Pending& p, raft::GroupId id);

  // Loop thread: membership (of the group that holds it).
  void ConnectPeer(raft::NodeId node);
  void DisconnectPeer(raft::NodeId node);
  Status LearnMembersFrom(const std::string& endpoint);
  void OnConfChangeCommitted(Group& g, const raft::Entry& e);
  void HandleMemberRequest(Pending p, const net::ClientRequest& req);
  void PromoteCaughtUpLearners(Group& g);

  // Hands a group's committed entries (and the clients waiting on them) to
  // its strand; a snapshot from the leader likewise.
  void HandCommitted(Group& g, std::vector<raft::Entry> entries);
  void InstallOnWorker(Group& g, raft::Snapshot snap);

  // Worker strand: the state machine.
  void ApplyOnWorker(Group& g, const std::vector<raft::Entry>& entries,
                     std::vector<std::pair<raft::Index, Pending>> writes);
  void ReadOnWorker(Group& g, raft::Index index, std::vector<Pending> reads);
  void ServeRead(Group& g, const Pending& p, Outgoing* out);
  void PublishProgress(Group& g);
  void PostToLoop(Outgoing out);

  NodeConfig cfg_;
  net::RequestLimits limits_;
  net::EventLoop loop_;
  zmq::context_t ctx_;
  zmq::socket_t client_;  // ROUTER, clients
  zmq::socket_t raft_in_;  // ROUTER, peers' DEALERs
  zmq::socket_t pub_;      // PUB, events
  std::map<raft::NodeId, zmq::socket_t> raft_out_;      // DEALER to each peer
  std::map<raft::NodeId, zmq::socket_t> snapshot_out_;  // DEALER to each peer, snapshots only
  struct PeerBatch {
    std::vector<std::string> frames;   // encoded messages
    std::vector<raft::GroupId> groups;  // the group of each, to report a failed send
  };
  std::map<raft::NodeId, PeerBatch> to_peers_;
  SnapshotSender snapshot_sender_{1 << 20, std::chrono::seconds(30)};
  SnapshotAssembler snapshot_assembler_{uint64_t{16} << 30};
  std::unique_ptr<net::Publisher> events_;

  std::unique_ptr<storage::NodeStorage> storage_;
  Status fatal_;  // a storage failure: the node stops serving

  // A pass's Readies and their WAL batch, from Submit to FinishWrites.
  struct WriteInFlight {
    std::vector<std::pair<Group*, raft::Ready>> readies;
    // Set by the WAL thread (under writes_mu_): the batch back, durable or not.
    storage::WriteBatch batch;
    Status status;
    bool done = false;
  };
  std::deque<std::shared_ptr<WriteInFlight>> writes_;  // loop thread, oldest first
  std::mutex writes_mu_;
  std::condition_variable writes_cv_;

  // Loop thread only.
  std::map<raft::GroupId, std::unique_ptr<Group>> groups_;
  // Sharded clusters: the shard map every node computes from the founding
  // members (kv/ring.h), and the leaders of groups hosted elsewhere.
  std::unique_ptr<ShardRing> ring_;
  std::unique_ptr<Placement> placement_;
  std::map<raft::GroupId, LeaderHint> leader_hints_;
  bool hints_dirty_ = false;  // a group's leader changed here: tell the peers
  // The shard map's version: the metadata group's applied index when the
  // members were last read from it (0: the founders from the command line).
  uint64_t map_version_ = 0;
  bool members_seeded_ = false;     // the metadata group holds member keys
  std::map<std::pair<raft::GroupId, raft::NodeId>, uint64_t> removed_notice_tick_;
  bool told_removed_ = false;  // unsharded: a member said this node was removed
  raft::Term seeding_term_ = 0;     // when this node (as meta leader) proposed them
  std::map<raft::NodeId, HostPort> members_;  // every member's client address
  uint64_t ticks_ = 0;
  uint64_t wal_segment_ = 0;  // the WAL's newest segment, read every few ticks
  uint64_t bad_requests_ = 0;
  uint64_t bad_peer_messages_ = 0;

  // Last: destroyed first, so no task outlives what it uses.
  std::unique_ptr<WorkerPool> workers_;
};

}  // namespace kv::node
