// Node: a running kvstore member. It wires the Raft core, the write-ahead
// log, the state machine and the ZeroMQ sockets together.
//
// One loop thread owns every socket and the Raft group. In a round it reads
// client requests and peer messages, ticks Raft, then drains Raft's Ready:
// sends what may go at once, writes entries and hard state through the WAL
// (whose writer thread group-commits them with one fdatasync), sends what
// had to wait for durability, and hands committed entries and confirmed
// reads to the worker pool. Requests arriving while the WAL syncs queue in
// ZeroMQ and go out together in the next round's batch.
//
// The worker pool owns the state machine: on the group's strand it applies
// committed entries in log order, serves reads, takes snapshot copies and
// encodes replies, which it hands back to the loop thread (EventLoop::Post)
// for sending. No worker touches a socket.
//
// Client protocol v1 and the events are described in docs/protocol.md.
// Thread safety: Run on one thread; RequestStop from any thread or a signal
// handler path (it only writes an eventfd).
#pragma once

#include <mutex>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <zmq.hpp>

#include "common/status.h"
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

// Raft group id of the single-group (unsharded) cluster.
constexpr raft::GroupId kDefaultGroup = 1;

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
  };

  // Loop thread: sockets.
  bool DrainClients();
  bool DrainPeers();
  void HandleRequest(Pending p, std::string_view payload);
  void Reply(const Pending& p, const net::ClientReply& reply);
  void ReplyRaw(const Pending& p, const std::string& bytes);
  void ReplyStatus(const Pending& p);
  void SendRaft(const std::vector<raft::Message>& msgs);
  void PumpSnapshots();
  void Deliver(Outgoing out);

  // Loop thread: Raft.
  void Tick();
  void ProcessReady();
  void OnRoleChange(const raft::SoftState& ss);
  void FailPendingOnStepDown();
  void MaybeSnapshot();
  // Answers a request that this node cannot serve as leader.
  void RedirectOrUnavailable(const Pending& p);

  // Loop thread: membership.
  void ConnectPeer(raft::NodeId node);
  void DisconnectPeer(raft::NodeId node);
  Status LearnMembersFrom(const std::string& endpoint);
  void OnConfChangeCommitted(const raft::Entry& e);
  void HandleMemberRequest(Pending p, const net::ClientRequest& req);
  void PromoteCaughtUpLearners();

  // Worker strand: the state machine.
  void ApplyOnWorker(const std::vector<raft::Entry>& entries,
                     std::vector<std::pair<raft::Index, Pending>> writes);
  void ReadOnWorker(raft::Index index, std::vector<Pending> reads);
  void ServeRead(const Pending& p, Outgoing* out);
  void PublishProgress();

  NodeConfig cfg_;
  net::RequestLimits limits_;
  // The group's strand in the worker pool.
  static constexpr uint64_t kStrand = kDefaultGroup;
  net::EventLoop loop_;
  zmq::context_t ctx_;
  zmq::socket_t client_;  // ROUTER, clients
  zmq::socket_t raft_in_;  // ROUTER, peers' DEALERs
  zmq::socket_t pub_;      // PUB, events
  std::map<raft::NodeId, zmq::socket_t> raft_out_;      // DEALER to each peer
  std::map<raft::NodeId, zmq::socket_t> snapshot_out_;  // DEALER to each peer, snapshots only
  SnapshotSender snapshot_sender_{1 << 20, std::chrono::seconds(30)};
  SnapshotAssembler snapshot_assembler_{uint64_t{16} << 30};
  std::unique_ptr<net::Publisher> events_;

  std::unique_ptr<storage::NodeStorage> storage_;
  storage::GroupStorage* group_storage_ = nullptr;
  std::unique_ptr<raft::Raft> raft_;
  Status fatal_;  // a storage failure: the node stops serving

  // Loop thread only.
  std::map<raft::NodeId, HostPort> members_;  // every member's client address
  struct Joining {
    Pending client;       // answered once the node is a voter
    std::string address;
    bool promoting = false;
  };
  std::map<raft::NodeId, Joining> joining_;
  std::map<raft::Index, Pending> pending_writes_;
  std::vector<Pending> read_batch_;  // gathered this round, one ReadIndex for all
  std::map<std::string, std::vector<Pending>> reads_by_context_;
  uint64_t read_context_ = 0;
  uint64_t bad_requests_ = 0;
  uint64_t bad_peer_messages_ = 0;
  raft::Index handed_to_workers_ = 0;  // last committed index given to the strand
  raft::Index last_snapshot_index_ = 0;
  bool snapshot_in_progress_ = false;
  raft::Index published_commit_ = 0;

  // The worker strand only.
  StateMachine sm_;
  std::multimap<raft::Index, Pending> reads_waiting_apply_;

  // The state machine's progress, published by the strand after each batch
  // and read by the loop thread (status): one consistent triple.
  struct ApplyProgress {
    uint64_t applied = 0;
    uint64_t digest = 0;
    uint64_t keys = 0;
  };
  ApplyProgress progress() const {
    std::lock_guard<std::mutex> lock(progress_mu_);
    return progress_;
  }
  mutable std::mutex progress_mu_;
  ApplyProgress progress_;  // guarded by progress_mu_

  // Last: destroyed first, so no task outlives what it uses.
  std::unique_ptr<WorkerPool> workers_;
};

}  // namespace kv::node
