// ClientFront: the client port. It reads requests from the client ROUTER,
// decodes them, dispatches each to the group (or part of the node) that
// serves it, and sends the answers: REDIRECT (or UNAVAILABLE) for what this
// node cannot serve, the status and shard-map replies, and every reply the
// rest of the node produces (Reply, ReplyRaw). With CURVE, a request whose
// key lacks the role its op needs gets DENIED (node/access.h). Client
// protocol v1 is in docs/protocol.md.
// Thread safety: none; the loop thread owns the socket.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <zmq.hpp>

#include "kv/command.h"
#include "net/client_codec.h"
#include "net/socket_monitor.h"
#include "node/context.h"
#include "node/reply_budget.h"
#include "node/request.h"

namespace kv::node {

class Access;
class Applier;
class Membership;
class ReadyPipeline;
class ShardManager;

class ClientFront {
 public:
  ClientFront(zmq::context_t* zmq, NodeContext* ctx);
  // The parts requests are dispatched to; before Bind.
  void Wire(Access* access, Applier* applier, Membership* membership, ShardManager* shards,
            const ReadyPipeline* pipeline) {
    access_ = access;
    applier_ = applier;
    membership_ = membership;
    shards_ = shards;
    pipeline_ = pipeline;
  }

  // Binds the client ROUTER. InvalidArgument when the endpoint is taken.
  Status Bind(const std::string& endpoint);
  int fd() const;
  // Client connections open now (reads the socket's monitor).
  int64_t CountConnections() { return connections_.Update(); }
  // Reads and dispatches the waiting requests, up to a slice per call (the
  // event loop calls again while it returns true); returns whether any.
  bool Drain();

  // Answers p (the reply's id is set from p).
  void Reply(const Pending& p, const net::ClientReply& reply);
  // `status`: the reply's, for the metrics. False when ZeroMQ would not
  // take it (the client went away, or its queue is full).
  bool ReplyRaw(const Pending& p, net::ReplyStatus status, std::string bytes);
  // Sends what a strand encoded: a reply, or a watch's message (a watch
  // whose message cannot be sent ends: its client resumes elsewhere).
  void Send(EncodedReply r);
  // Ends the watches of group `id` with UNAVAILABLE (it is no longer
  // served here) and tells the client why.
  void EndWatches(raft::GroupId id, const std::string& why);
  size_t watches() const { return watches_.size(); }
  // Answers a request for group `id` that this node cannot serve as its
  // leader: REDIRECT to the leader it knows of, else UNAVAILABLE.
  void RedirectOrUnavailable(const Pending& p, raft::GroupId id);
  // Proposes a write to g (its leader) for p; answered when applied, or at
  // once with BUSY (the group's uncommitted log is full, or this node's WAL
  // is too far behind) or UNAVAILABLE (not the leader after all).
  void ProposeWrite(Group& g, Pending p, const Command& cmd);

 private:
  // `user`: the ZAP user id of the request's connection (node/access.h).
  void Handle(Pending p, std::string_view payload, std::string_view user);
  void HandleKeyOp(Pending p, net::ClientRequest& req);
  void HandleScan(Pending p, net::ClientRequest& req);
  // Proposes a transaction to the leader of its keys' shard, or ERROR when
  // its keys are in more than one.
  void HandleTxn(Pending p, net::ClientRequest& req);
  // Starts a watch on this node's replica of the shard it names (any
  // replica serves one: docs/protocol.md, "Watches"), or ends one.
  void HandleWatch(Pending p, const net::ClientRequest& req);
  void HandleCancel(const Pending& p, const net::ClientRequest& req);
  // Starts a backup of a shard (a linearizable read) or serves its next piece.
  void HandleBackup(Pending p, const net::ClientRequest& req);
  // The group of the shard a scan or a backup names, or ERROR (false) when
  // the cluster has no such shard.
  bool NamedShardGroup(const Pending& p, const net::ClientRequest& req, raft::GroupId* gid);
  // Serves p (a get or a scan) from group gid: linearizable through its
  // leader's ReadIndex, or stale from this replica's state.
  void Read(raft::GroupId gid, Pending p, bool stale);
  void TransferLeader(const Pending& p, const net::ClientRequest& req);
  void ReplyStatus(const Pending& p);
  void ReplyShards(const Pending& p);
  void ReplyError(const Pending& p, std::string error);
  // BUSY: the connection, or the node, has too many reply bytes unread.
  void ReplyUnread(const Pending& p);

  zmq::context_t* zmq_;
  NodeContext* ctx_;
  Access* access_ = nullptr;
  Applier* applier_ = nullptr;
  Membership* membership_ = nullptr;
  ShardManager* shards_ = nullptr;
  const ReadyPipeline* pipeline_ = nullptr;
  net::RequestLimits limits_;
  zmq::socket_t socket_;  // ROUTER
  net::ConnectionCount connections_;
  ReplyBudget replies_;
  uint64_t bad_requests_ = 0;
  uint64_t busy_replies_ = 0;
  // The watches open on this node, by connection and request id.
  struct WatchRef {
    raft::GroupId group = 0;
    uint64_t handle = 0;
    bool answered = false;  // its first message went out
  };
  std::map<std::pair<std::string, uint64_t>, WatchRef> watches_;
  std::map<std::string, size_t> watches_per_connection_;
  uint64_t next_watch_handle_ = 0;
  void ForgetWatch(std::map<std::pair<std::string, uint64_t>, WatchRef>::iterator it);
};

}  // namespace kv::node
