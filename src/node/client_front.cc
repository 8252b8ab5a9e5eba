#include "node/client_front.h"

#include <algorithm>

#include "common/logging.h"
#include "net/event_loop.h"
#include "net/zmq_util.h"
#include "node/access.h"
#include "node/applier.h"
#include "node/membership.h"
#include "node/ready_pipeline.h"
#include "node/shard_manager.h"

namespace kv::node {

namespace {

// Requests queued per client connection: beyond it ZeroMQ stops reading the
// connection (TCP pushes back on the client), so a client's requests cost
// the node at most this many frames of memory.
constexpr int kClientReceiveQueue = 1024;
// Replies queued per client connection before ZeroMQ drops them.
constexpr int kClientSendQueue = 100000;
// What one Drain reads at most, so that a flood of requests is taken in
// slices between which the loop ticks, sends and answers (net/event_loop.h).
constexpr size_t kMaxRequestsPerDrain = 1024;
constexpr size_t kMaxBytesPerDrain = 8 << 20;
// Watches open at once, per connection and per node: each costs a little
// memory and a share of the work of every write that matches it.
constexpr size_t kMaxWatchesPerConnection = 1000;
constexpr size_t kMaxWatches = 10000;

// Whether a txn reads: its reply then carries values, which count against
// the connection's reply budget (node/reply_budget.h) as a get's do.
bool HasGets(const net::ClientRequest& req) {
  for (const auto* ops : {&req.success, &req.failure}) {
    for (const TxnOp& op : *ops) {
      if (op.kind == TxnOp::Kind::kGet) return true;
    }
  }
  return false;
}

// A key as an error message shows it: quoted, printable ASCII, at most 64 bytes.
std::string Quoted(std::string_view key) {
  std::string out = "\"";
  for (char c : key.substr(0, 64)) out.push_back(c >= 0x20 && c <= 0x7e ? c : '?');
  return out + (key.size() > 64 ? "...\"" : "\"");
}

}  // namespace

ClientFront::ClientFront(zmq::context_t* zmq, NodeContext* ctx)
    : zmq_(zmq),
      ctx_(ctx),
      socket_(*zmq, zmq::socket_type::router),
      replies_(ctx->cfg.max_connection_reply_bytes, ctx->cfg.max_node_reply_bytes) {
  limits_.max_key_bytes = ctx->cfg.max_key_bytes;
  limits_.max_value_bytes = ctx->cfg.max_value_bytes;
  socket_.set(zmq::sockopt::linger, 0);
  socket_.set(zmq::sockopt::affinity, net::kClientIoThread);
  socket_.set(zmq::sockopt::maxmsgsize, ctx->cfg.max_client_frame());
  socket_.set(zmq::sockopt::sndhwm, kClientSendQueue);
  socket_.set(zmq::sockopt::rcvhwm, kClientReceiveQueue);
  // A send to a client that went away (or whose queue is full) fails
  // rather than vanish: a watch must know its message did not go out.
  socket_.set(zmq::sockopt::router_mandatory, true);
  if (ctx->cfg.curve()) net::MakeCurveServer(socket_, ctx->cfg.secret_key, Access::kClientDomain);
}

Status ClientFront::Bind(const std::string& endpoint) {
  Status s = connections_.Start(zmq_, socket_);
  return s.ok() ? net::BindSocket(socket_, endpoint) : s;
}

int ClientFront::fd() const { return socket_.get(zmq::sockopt::fd); }

bool ClientFront::Drain() {
  bool found = false;
  size_t requests = 0, bytes = 0;
  std::vector<zmq::message_t> frames;
  const net::DrainSlice slice;
  while (requests < kMaxRequestsPerDrain && bytes < kMaxBytesPerDrain &&
         (requests == 0 || !slice.over()) &&
         net::ReceiveFrames(socket_, &frames, "client socket")) {
    found = true;
    ++requests;
    for (const zmq::message_t& f : frames) bytes += f.size();
    Pending p;
    p.received = std::chrono::steady_clock::now();
    p.routing = frames[0].to_string();
    // A REQ client's empty delimiter is echoed on every reply, errors too.
    p.delimiter = frames.size() >= 3 && frames[1].size() == 0;
    const std::string_view user = net::UserId(frames.back());
    if (p.delimiter && frames.size() == 3) {
      Handle(std::move(p), frames[2].to_string_view(), user);
    } else if (!p.delimiter && frames.size() == 2) {
      Handle(std::move(p), frames[1].to_string_view(), user);
    } else {
      if (ShouldLogSampled(++bad_requests_)) {
        KV_LOG(kWarn) << "client request with " << frames.size() - 1 << " frames refused ("
                      << bad_requests_ << " bad requests so far)";
      }
      ReplyError(p, "a request is one msgpack frame (after an empty delimiter for REQ sockets)");
    }
  }
  return found;
}

void ClientFront::Handle(Pending p, std::string_view payload, std::string_view user) {
  net::ClientRequest req;
  bool id_known = false;
  Status s = net::DecodeClientRequest(payload, limits_, &req, &id_known);
  p.id = id_known ? req.id : 0;
  if (s.ok()) p.op = static_cast<int>(req.op);
  if (!s.ok()) {
    if (ShouldLogSampled(++bad_requests_)) {
      KV_LOG(kWarn) << "bad client request: " << s.message() << " (" << bad_requests_ << " so far)";
    }
    return ReplyError(p, s.message());
  }
  const Role have = access_->RoleOf(user);
  const Role need = RoleNeeded(req.op);
  if (have < need) {
    net::ClientReply denied;
    denied.status = net::ReplyStatus::kDenied;
    denied.error = have == Role::kNone ? std::string("this client's key is no longer allowed")
                                       : std::string("this op needs the ") + RoleName(need) +
                                             " role; this client's key has " + RoleName(have);
    return Reply(p, denied);
  }
  if ((req.op == net::ClientOp::kGet || req.op == net::ClientOp::kScan ||
       req.op == net::ClientOp::kBackup || (req.op == net::ClientOp::kTxn && HasGets(req))) &&
      !replies_.Allows(p.routing)) {
    return ReplyUnread(p);
  }
  switch (req.op) {
    case net::ClientOp::kStatus:
      return ReplyStatus(p);
    case net::ClientOp::kShards:
      return ReplyShards(p);
    case net::ClientOp::kMemberAdd:
    case net::ClientOp::kMemberRemove:
      return membership_->Handle(std::move(p), req);
    case net::ClientOp::kTransferLeader:
      return TransferLeader(p, req);
    case net::ClientOp::kScan:
      return HandleScan(std::move(p), req);
    case net::ClientOp::kBackup:
      return HandleBackup(std::move(p), req);
    case net::ClientOp::kTxn:
      return HandleTxn(std::move(p), req);
    case net::ClientOp::kWatch:
      return HandleWatch(std::move(p), req);
    case net::ClientOp::kCancel:
      return HandleCancel(p, req);
    case net::ClientOp::kGet:
    case net::ClientOp::kPut:
    case net::ClientOp::kDelete:
    case net::ClientOp::kCas:
    case net::ClientOp::kTouch:
      return HandleKeyOp(std::move(p), req);
  }
}

void ClientFront::HandleKeyOp(Pending p, net::ClientRequest& req) {
  const raft::GroupId gid = shards_->GroupForKey(req.key);
  if (req.op == net::ClientOp::kGet) {
    p.reservation = replies_.Reserve(p.routing, 0);  // the value's size, once read
    p.key = std::move(req.key);
    return Read(gid, std::move(p), req.stale);
  }
  Group* g = ctx_->groups.Find(gid);
  if (g == nullptr || !g->is_leader()) return RedirectOrUnavailable(p, gid);
  Command cmd;
  cmd.op = req.op == net::ClientOp::kPut      ? OpType::kPut
           : req.op == net::ClientOp::kDelete ? OpType::kDelete
           : req.op == net::ClientOp::kTouch  ? OpType::kTouch
                                              : OpType::kCas;
  // The leader's clock decides expiry for every replica (docs/protocol.md,
  // "Expiry").
  cmd.now_ms = WallClockMs();
  if (req.ttl_ms != 0) cmd.deadline_ms = cmd.now_ms + req.ttl_ms;
  cmd.key = std::move(req.key);
  cmd.value = std::move(req.value);
  cmd.has_expect = req.has_expect;
  cmd.expect = std::move(req.expect);
  cmd.has_expect_index = req.has_expect_index;
  cmd.expect_index = req.expect_index;
  cmd.client = req.client;
  cmd.seq = req.seq;
  ProposeWrite(*g, std::move(p), cmd);
}

void ClientFront::HandleTxn(Pending p, net::ClientRequest& req) {
  // One log entry of one group: every key in the same shard (hash tags put
  // keys together, docs/protocol.md "Key to shard").
  std::vector<std::string_view> keys;
  for (const TxnCompare& c : req.compare) keys.push_back(c.key);
  for (const auto* ops : {&req.success, &req.failure}) {
    for (const TxnOp& op : *ops) keys.push_back(op.key);
  }
  const raft::GroupId gid = shards_->GroupForKey(keys.empty() ? std::string_view() : keys[0]);
  for (std::string_view key : keys) {
    const raft::GroupId other = shards_->GroupForKey(key);
    if (other == gid) continue;
    return ReplyError(p, "the keys of a txn must be in one shard: " + Quoted(keys[0]) +
                             " is in shard " + std::to_string(shards_->ShardOf(gid)) + ", " +
                             Quoted(key) + " in shard " + std::to_string(shards_->ShardOf(other)) +
                             " (keys that share a hash tag, as {user:42}:name and "
                             "{user:42}:mail, share a shard)");
  }
  Group* g = ctx_->groups.Find(gid);
  if (g == nullptr || !g->is_leader()) return RedirectOrUnavailable(p, gid);
  // Its gets' values claim the reply budget once read (as a get's do).
  if (HasGets(req)) p.reservation = replies_.Reserve(p.routing, 0);
  Command cmd;
  cmd.op = OpType::kTxn;
  cmd.now_ms = WallClockMs();
  cmd.client = req.client;
  cmd.seq = req.seq;
  cmd.compare = std::move(req.compare);
  cmd.success = std::move(req.success);
  cmd.failure = std::move(req.failure);
  for (auto* ops : {&cmd.success, &cmd.failure}) {
    for (TxnOp& op : *ops) {
      if (op.ttl_ms != 0) op.deadline_ms = cmd.now_ms + op.ttl_ms;
      op.ttl_ms = 0;
    }
  }
  ProposeWrite(*g, std::move(p), cmd);
}

void ClientFront::HandleWatch(Pending p, const net::ClientRequest& req) {
  if (p.delimiter) {
    return ReplyError(p, "a watch answers with a stream of messages: use a DEALER socket");
  }
  raft::GroupId gid = 0;
  if (!NamedShardGroup(p, req, &gid)) return;
  const std::pair<std::string, uint64_t> key{p.routing, p.id};
  if (watches_.count(key) != 0) {
    return ReplyError(p, "this connection already has a watch with id " + std::to_string(p.id));
  }
  if (watches_.size() >= kMaxWatches ||
      watches_per_connection_[p.routing] >= kMaxWatchesPerConnection) {
    net::ClientReply busy;
    busy.status = net::ReplyStatus::kBusy;
    busy.error = "too many watches open (at most " + std::to_string(kMaxWatchesPerConnection) +
                 " per connection, " + std::to_string(kMaxWatches) + " per node)";
    return Reply(p, busy);
  }
  // Any replica serves a watch from what it has applied: no leader needed.
  Group* g = ctx_->groups.Find(gid);
  if (g == nullptr) return RedirectOrUnavailable(p, gid);
  const uint64_t handle = ++next_watch_handle_;
  watches_[key] = WatchRef{gid, handle};
  watches_per_connection_[p.routing]++;
  ReplyBudget::Share share = replies_.ShareOf(p.routing);
  applier_->Watch(*g, handle, std::move(p), std::move(share), req.scan, req.from_index);
}

void ClientFront::HandleCancel(const Pending& p, const net::ClientRequest& req) {
  auto it = watches_.find({p.routing, req.watch});
  if (it == watches_.end()) {
    net::ClientReply missing;
    missing.status = net::ReplyStatus::kNotFound;
    missing.error = "no watch with id " + std::to_string(req.watch) + " on this connection";
    return Reply(p, missing);
  }
  if (Group* g = ctx_->groups.FindHosted(it->second.group))
    applier_->Unwatch(*g, it->second.handle);
  ForgetWatch(it);
  Reply(p, net::ClientReply{});
}

void ClientFront::ForgetWatch(std::map<std::pair<std::string, uint64_t>, WatchRef>::iterator it) {
  auto count = watches_per_connection_.find(it->first.first);
  if (--count->second == 0) watches_per_connection_.erase(count);
  watches_.erase(it);
}

void ClientFront::EndWatches(raft::GroupId id, const std::string& why) {
  for (auto it = watches_.begin(); it != watches_.end();) {
    if (it->second.group != id) {
      ++it;
      continue;
    }
    if (Group* g = ctx_->groups.FindHosted(id)) applier_->Unwatch(*g, it->second.handle);
    net::WatchReply end;
    end.status = net::ReplyStatus::kUnavailable;
    end.node = ctx_->cfg.id;
    end.error = why;
    Pending to;
    to.routing = it->first.first;
    to.id = it->first.second;
    to.op = static_cast<int>(net::ClientOp::kWatch);
    net::SendFrames(socket_, {to.routing},
                    replies_.Message(to.routing, net::EncodeWatchReply(to.id, end)), "watch end");
    auto gone = it++;
    ForgetWatch(gone);
  }
}

void ClientFront::Send(EncodedReply r) {
  if (r.watch_charge == nullptr) {
    ReplyRaw(r.to, r.status, std::move(r.bytes));
    return;
  }
  // A watch's message: no request's latency to count; one that cannot go
  // out ends the watch (its client notices the gap or the silence and
  // resumes from its last index).
  auto it = watches_.find({r.to.routing, r.to.id});
  if (it == watches_.end()) return;  // cancelled meanwhile
  if (!it->second.answered) {
    // The first message answers the request: its latency and status count.
    it->second.answered = true;
    ctx_->metrics->ObserveRequest(
        r.to.op, r.status,
        std::chrono::duration<double>(std::chrono::steady_clock::now() - r.to.received).count());
  }
  const bool sent =
      net::SendFrames(socket_, {r.to.routing},
                      ReplyBudget::Message(std::move(r.bytes), std::move(r.watch_charge)), "watch");
  if (!sent) {
    if (Group* g = ctx_->groups.FindHosted(it->second.group))
      applier_->Unwatch(*g, it->second.handle);
  }
  if (!sent || r.ends_watch) ForgetWatch(it);
}

bool ClientFront::NamedShardGroup(const Pending& p, const net::ClientRequest& req,
                                  raft::GroupId* gid) {
  // Keys are spread over the shards by hash: a sharded cluster is scanned
  // (and backed up) shard by shard, and the client merges (docs/protocol.md,
  // "Scans").
  const uint32_t shards = ctx_->cfg.shards;
  const char* op = net::ClientOpName(req.op);
  if (shards > 0 && (req.shard < 0 || req.shard >= static_cast<int64_t>(shards))) {
    ReplyError(p, std::string("a ") + op + " of a sharded cluster names its \"shard\", 0.." +
                      std::to_string(shards - 1));
    return false;
  }
  if (shards == 0 && req.shard > 0) {
    ReplyError(p,
               std::string("this cluster is not sharded: a ") + op + " names no \"shard\" but 0");
    return false;
  }
  *gid = shards > 0 ? ShardGroup(static_cast<uint32_t>(req.shard)) : kMainGroup;
  return true;
}

void ClientFront::HandleScan(Pending p, net::ClientRequest& req) {
  raft::GroupId gid = 0;
  if (!NamedShardGroup(p, req, &gid)) return;
  p.scan = std::move(req.scan);
  // The page's most: its keys and values, and the encoding of each entry.
  constexpr uint64_t kEntryOverhead = 64;
  p.reservation = replies_.Reserve(p.routing, p.scan->max_bytes + p.scan->limit * kEntryOverhead);
  Read(gid, std::move(p), req.stale);
}

void ClientFront::HandleBackup(Pending p, const net::ClientRequest& req) {
  raft::GroupId gid = 0;
  if (req.backup == 0) {
    // The start: one linearizable point, through the shard's leader.
    if (!NamedShardGroup(p, req, &gid)) return;
    p.backup = true;
    return Read(gid, std::move(p), /*stale=*/false);
  }
  if (req.close) {
    std::shared_ptr<const StateView> view;
    Status s = ctx_->backups->Close(req.backup, &view);
    if (!s.ok()) return ReplyError(p, s.message());
    // Freeing the view may free a shard's worth of records: not here.
    ctx_->workers->Post(kMainGroup, [view = std::move(view)] {});
    return Reply(p, net::ClientReply{});
  }
  // A piece: from whichever node holds the backup, leader or not.
  Status s = ctx_->backups->GroupOf(req.backup, &gid);
  if (!s.ok()) return ReplyError(p, s.message());
  // A piece's most: its data (whole keys past kPieceBytes) and its frame.
  p.reservation = replies_.Reserve(
      p.routing, Backups::kPieceBytes + ctx_->cfg.max_key_bytes + ctx_->cfg.max_value_bytes + 64);
  applier_->ServeBackupPiece(gid, std::move(p), req.backup, req.cursor);
}

void ClientFront::Read(raft::GroupId gid, Pending p, bool stale) {
  Group* g = ctx_->groups.Find(gid);
  if (g == nullptr) return RedirectOrUnavailable(p, gid);
  if (stale) {
    std::vector<Pending> reads;
    reads.push_back(std::move(p));
    return applier_->Read(*g, 0, std::move(reads));
  }
  if (!g->is_leader()) return RedirectOrUnavailable(p, gid);
  g->reads.Add(std::move(p));
}

void ClientFront::ProposeWrite(Group& g, Pending p, const Command& cmd) {
  raft::Index index = 0;
  Status s = pipeline_->unwritten_bytes() > ctx_->cfg.max_unwritten_bytes
                 ? Status::Busy("this node's WAL is " +
                                std::to_string(pipeline_->unwritten_bytes() >> 20) +
                                " MiB behind; retry after a backoff")
                 : g.Propose(cmd.Encode(), &index, &p.term);
  if (!s.ok()) {
    // Busy: the group's uncommitted log or this node's WAL queue is full;
    // the client backs off.
    net::ClientReply reply;
    reply.status = s.IsBusy() ? net::ReplyStatus::kBusy : net::ReplyStatus::kUnavailable;
    reply.error = s.message();
    if (s.IsBusy() && ShouldLogSampled(++busy_replies_)) {
      KV_LOG(kWarn) << "group " << g.id << ": shedding load, " << s.message() << " ("
                    << busy_replies_ << " BUSY replies so far)";
    }
    return Reply(p, reply);
  }
  g.pending_writes.emplace(index, std::move(p));
}

void ClientFront::TransferLeader(const Pending& p, const net::ClientRequest& req) {
  Group* g = ctx_->groups.Find(kMainGroup);
  if (g == nullptr || !g->is_leader()) return RedirectOrUnavailable(p, kMainGroup);
  if (!Contains(g->raft->conf_state().voters, req.target)) {
    return ReplyError(p, "node " + std::to_string(req.target) + " is not a voter");
  }
  // Started, not finished: the caller watches status for the new leader.
  g->raft->TransferLeader(req.target);
  Reply(p, net::ClientReply{});
}

void ClientFront::RedirectOrUnavailable(const Pending& p, raft::GroupId id) {
  net::ClientReply reply;
  const raft::NodeId target = shards_->RedirectTarget(id);
  auto it = ctx_->members.find(target);
  if (target != raft::kNoNode && target != ctx_->cfg.id && it != ctx_->members.end()) {
    reply.status = net::ReplyStatus::kRedirect;
    reply.leader = it->second.ToString();
    auto key = ctx_->member_keys.find(target);
    if (ctx_->cfg.curve() && key != ctx_->member_keys.end()) reply.leader_key = key->second;
  } else {
    reply.status = net::ReplyStatus::kUnavailable;
    reply.error = "no leader known; retry";
  }
  if (shards_->ShardOf(id) >= 0) {
    reply.shard = shards_->ShardOf(id);
    reply.map_version = shards_->map_version();
  }
  Reply(p, reply);
}

void ClientFront::ReplyError(const Pending& p, std::string error) {
  net::ClientReply reply;
  reply.status = net::ReplyStatus::kError;
  reply.error = std::move(error);
  Reply(p, reply);
}

void ClientFront::Reply(const Pending& p, const net::ClientReply& reply) {
  net::ClientReply r = reply;
  r.id = p.id;
  ReplyRaw(p, r.status, net::EncodeClientReply(r));
}

void ClientFront::ReplyUnread(const Pending& p) {
  net::ClientReply busy;
  busy.status = net::ReplyStatus::kBusy;
  busy.error = replies_.Refusal(p.routing);
  if (ShouldLogSampled(++busy_replies_)) {
    KV_LOG(kWarn) << "shedding reads: " << busy.error << " (" << busy_replies_
                  << " BUSY replies so far)";
  }
  Reply(p, busy);
}

bool ClientFront::ReplyRaw(const Pending& p, net::ReplyStatus status, std::string bytes) {
  ctx_->metrics->ObserveRequest(
      p.op, status,
      std::chrono::duration<double>(std::chrono::steady_clock::now() - p.received).count());
  // A client that went away or whose queue is full: its request times out.
  zmq::message_t body = replies_.Message(p.routing, std::move(bytes));
  if (p.delimiter) {
    return net::SendFrames(socket_, {p.routing, std::string_view()}, std::move(body), "reply");
  }
  return net::SendFrames(socket_, {p.routing}, std::move(body), "reply");
}

void ClientFront::ReplyStatus(const Pending& p) {
  NodeStatus st;
  st.node = ctx_->cfg.id;
  st.shards = ctx_->cfg.shards;
  st.event_seq = ctx_->events->seq();
  for (const auto& [node, hp] : ctx_->members) st.members[node] = hp.ToString();
  if (ctx_->cfg.curve()) st.member_keys = ctx_->member_keys;
  for (const auto& [id, g] : ctx_->groups) {
    if (g->removed) continue;
    const GroupStatus gs = g->Status();
    if (ctx_->cfg.sharded()) st.groups.push_back(gs);
    if (st.role.empty()) {
      // The main group (the first one hosted: group 1 when it is here).
      st.role = gs.role;
      st.term = gs.term;
      st.leader = gs.leader;
      st.commit = gs.commit;
      st.applied = gs.applied;
      st.last_index = gs.last_index;
      st.snapshot_index = gs.snapshot_index;
      st.digest = gs.digest;
      st.keys = gs.keys;
      st.voters = gs.voters;
      st.learners = gs.learners;
    }
  }
  auto leader = ctx_->members.find(st.leader);
  if (leader != ctx_->members.end()) st.leader_address = leader->second.ToString();
  ReplyRaw(p, net::ReplyStatus::kOk, net::EncodeStatusReply(p.id, st));
}

void ClientFront::ReplyShards(const Pending& p) {
  ShardMap map;
  map.shards = ctx_->cfg.shards;
  for (const auto& [node, hp] : ctx_->members) map.members[node] = hp.ToString();
  if (ctx_->cfg.curve()) map.member_keys = ctx_->member_keys;
  shards_->FillShardMap(&map);
  ReplyRaw(p, net::ReplyStatus::kOk, net::EncodeShardsReply(p.id, map));
}

}  // namespace kv::node
