// Node: a running kvstore member. It owns the sockets, the storage, the
// worker pool and the groups, and wires the parts that do the work:
//
//   Access         with CURVE: which keys may connect where, and each role
//   ClientFront    the client port: decode, dispatch, redirect, reply
//   PeerTransport  the peer port: Raft messages and notices to and from peers
//   ReadyPipeline  every group's Ready: WAL batches, messages, commits
//   Applier        the worker side: apply entries, serve reads, install snapshots
//   Snapshotter    when and how a group takes a snapshot
//   Membership     member_add/member_remove and the member list
//   ShardManager   routing, placement, rebalancing, leader hints
//   Hibernation    which peers are alive, for the groups that sleep
//
// One loop thread (net/event_loop.h) owns every socket and every Raft group.
// In a round it reads client requests and peer messages, ticks Raft, then
// runs the ReadyPipeline. The worker pool applies and reads; its replies come
// back to the loop thread to be sent. The node reads and writes files only
// through the Env it is given, so tests can run it over a fault-injecting one.
// Thread safety: Start and Run on one thread; RequestStop and
// RequestReload from any thread.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <zmq.hpp>

#include "common/status.h"
#include "net/event_loop.h"
#include "net/peer_transport.h"
#include "net/publisher.h"
#include "net/snapshot_stream.h"
#include "net/zap.h"
#include "net/zmq_util.h"
#include "node/access.h"
#include "node/applier.h"
#include "node/client_front.h"
#include "node/config.h"
#include "node/context.h"
#include "node/expirer.h"
#include "node/hibernation.h"
#include "node/http_server.h"
#include "node/membership.h"
#include "node/metrics.h"
#include "node/ready_pipeline.h"
#include "node/shard_manager.h"
#include "node/snapshotter.h"
#include "node/worker_pool.h"
#include "storage/env.h"
#include "storage/node_storage.h"

namespace kv::node {

class Node : private ReadyHandler {
 public:
  // `env` (not owned) must outlive the node.
  explicit Node(NodeConfig cfg, storage::Env* env = storage::Env::Posix());
  ~Node() override;
  Node(const Node&) = delete;
  Node& operator=(const Node&) = delete;

  // Binds the sockets, then opens the storage (recovering it). InvalidArgument
  // for configuration problems (a port in use, a foreign data dir);
  // Corruption or IOError for storage that cannot be opened.
  Status Start();
  // Serves until RequestStop, or until the storage fails (returned).
  Status Run();
  // Thread-safe: only writes the loop's eventfd.
  void RequestStop() { loop_.Stop(); }
  // Thread-safe: has the loop read --client-keys again (SIGHUP).
  void RequestReload() {
    loop_.Post([this] { access_.Reload(); });
  }

 private:
  Status Bind();
  Status OpenGroups();
  // Opens a replica of group `id` here (voters: its founding configuration,
  // empty when the storage or the leader brings it). nullptr on failure
  // (*status says why) or when the replica is removed.
  Group* OpenReplica(raft::GroupId id, const std::vector<raft::NodeId>& voters, Status* status);
  // `user`: the ZAP user id of the sender's connection ("peer:ID" with CURVE).
  void OnPeerFrame(std::string_view frame, std::string_view user);
  // With CURVE, a peer frame counts only from the member whose key its
  // connection was made with.
  bool FromAuthenticatedSender(const net::PeerFrame& frame, std::string_view user);
  // Steps a Raft message (or snapshot chunk) into its group, hosting the
  // group first if the placement puts a new replica here.
  Status StepRaftFrame(net::RaftFrame frame);
  void Tick();
  void ProcessReady();
  // Answers the requests waiting on g that a leader change leaves without
  // an answer.
  void DropPending(Group& g);
  void Deliver(Outgoing out);

  // ReadyHandler.
  void OnRoleChange(Group& g, const raft::SoftState& ss) override;
  void QueueMessages(const std::vector<raft::Message>& msgs) override;
  void FlushMessages() override;
  void PumpSnapshots() override;
  // Hands the groups' state and the node's health to the metrics: once a
  // tick, at the end of the round that ticked.
  void PublishMetrics();
  void OnSnapshot(Group& g, raft::Snapshot snap) override;
  void OnCommitted(Group& g, std::vector<raft::Entry> entries) override;
  void OnReadStates(Group& g, const std::vector<raft::ReadState>& states) override;
  void OnFatal(const Status& s) override;

  const NodeConfig cfg_;
  storage::Env* env_;
  NodeContext ctx_{cfg_};
  Metrics metrics_;
  Backups backups_;
  HttpServer http_{&metrics_};  // after metrics_: stopped before it goes
  net::EventLoop loop_;
  // Whether the loop and WAL threads run at a raised priority (node.cc).
  bool critical_priority_ = false;
  bool metrics_due_ = false;  // a tick came: publish after the round's Readies
  zmq::context_t zmq_{net::kIoThreads};
  // Sockets after the context (destroyed before it, LINGER 0).
  zmq::socket_t pub_{zmq_, zmq::socket_type::pub};
  Access access_{&ctx_};
  net::ZapHandler zap_{&zmq_, [this](std::string_view domain, const std::string& key) {
                         return access_.Authorize(domain, key);
                       }};
  net::PeerTransport peers_{&zmq_, cfg_.max_peer_frame(), kSnapshotChunkBytes};
  ClientFront front_{&zmq_, &ctx_};
  std::unique_ptr<net::Publisher> events_;
  std::unique_ptr<storage::NodeStorage> storage_;
  net::SnapshotAssembler snapshot_assembler_{uint64_t{16} << 30};

  ReadyPipeline pipeline_{&ctx_, this};
  Snapshotter snapshotter_{&ctx_, &pipeline_};
  Applier applier_{&ctx_, [this](Outgoing out) { Deliver(std::move(out)); }};
  Expirer expirer_{&ctx_};
  Hibernation hibernation_{&ctx_};
  ShardManager shards_;
  Membership membership_{&ctx_, &front_, &shards_};

  // Last: destroyed first, so no task outlives what it uses.
  std::unique_ptr<WorkerPool> workers_;
};

}  // namespace kv::node
