#include "node/node.h"

#include <algorithm>
#include <random>

#include <zmq_addon.hpp>

#include "common/logging.h"
#include "kv/command.h"

namespace kv::node {

namespace {

// Frames larger than this are refused by ZeroMQ itself (the connection is
// dropped): the largest valid request plus room for the map around it.
int64_t MaxClientFrame(const net::RequestLimits& limits) {
  return static_cast<int64_t>(limits.max_key_bytes + 2 * limits.max_value_bytes + 4096);
}

// Logs the first few of a kind of bad input, then one line in a thousand, so
// that a misbehaving client cannot flood the log.
bool ShouldLog(uint64_t count) { return count <= 5 || count % 1000 == 0; }

net::ReplyStatus ReplyFor(ApplyResult r) {
  switch (r) {
    case ApplyResult::kOk: return net::ReplyStatus::kOk;
    case ApplyResult::kNotFound: return net::ReplyStatus::kNotFound;
    case ApplyResult::kCasFailed: return net::ReplyStatus::kCasFailed;
    case ApplyResult::kStaleSeq: return net::ReplyStatus::kError;
  }
  return net::ReplyStatus::kError;
}

}  // namespace

Node::Node(NodeConfig cfg)
    : cfg_(std::move(cfg)),
      ctx_(1),
      client_(ctx_, zmq::socket_type::router),
      raft_in_(ctx_, zmq::socket_type::router),
      pub_(ctx_, zmq::socket_type::pub) {
  limits_.max_key_bytes = cfg_.max_key_bytes;
  limits_.max_value_bytes = cfg_.max_value_bytes;
}

Node::~Node() {
  // Workers finish their tasks first; sockets close before the context
  // (member order), and LINGER 0 drops what they still queue.
  workers_.reset();
  raft_.reset();
  storage_.reset();
}

Status Node::Start() {
  // Ports first: a node that cannot listen must not touch its data dir.
  try {
    for (zmq::socket_t* sock : {&client_, &raft_in_, &pub_}) sock->set(zmq::sockopt::linger, 0);
    client_.set(zmq::sockopt::maxmsgsize, MaxClientFrame(limits_));
    client_.set(zmq::sockopt::sndhwm, 100000);
    client_.set(zmq::sockopt::rcvhwm, 100000);
    raft_in_.set(zmq::sockopt::rcvhwm, 100000);
    const std::string client_ep = "tcp://" + cfg_.listen_host + ":" + std::to_string(cfg_.client_port());
    const std::string raft_ep = "tcp://" + cfg_.listen_host + ":" + std::to_string(cfg_.raft_port());
    const std::string pub_ep = "tcp://" + cfg_.listen_host + ":" + std::to_string(cfg_.pub_port());
    for (auto [sock, ep] : {std::pair{&client_, client_ep}, std::pair{&raft_in_, raft_ep},
                            std::pair{&pub_, pub_ep}}) {
      try {
        sock->bind(ep);
      } catch (const zmq::error_t& e) {
        return Status::InvalidArgument("cannot listen on " + ep + ": " + e.what());
      }
    }
  } catch (const zmq::error_t& e) {
    return Status::IOError(std::string("zeromq: ") + e.what());
  }

  Status s = ClaimDataDir(cfg_);
  if (!s.ok()) return s;

  storage::StorageOptions opts;
  opts.wal.sync = cfg_.fsync;
  opts.wal.segment_size = cfg_.wal_segment_bytes;
  s = storage::NodeStorage::Open(storage::Env::Posix(), cfg_.data_dir, opts, &storage_);
  if (!s.ok()) return s;
  group_storage_ = storage_->Group(kDefaultGroup);

  raft::Snapshot snap;
  s = group_storage_->GetSnapshot(&snap);
  if (!s.ok()) return s;
  if (!snap.IsEmpty()) {
    s = sm_.Restore(snap.data);
    if (!s.ok()) return Status::Corruption("snapshot at " + std::to_string(snap.meta.index) +
                                           " does not decode: " + s.message());
    last_snapshot_index_ = snap.meta.index;
  }
  PublishProgress();
  handed_to_workers_ = snap.meta.index;

  // Who is where: the configured peers, the members a snapshot remembers,
  // and (when joining) what the member we join reports. Membership changes
  // replayed from the log update it further.
  members_ = cfg_.peers;
  for (const auto& [node, address] : sm_.members()) {
    HostPort hp;
    if (ParseHostPort(address, &hp).ok()) members_[node] = hp;
  }
  if (!cfg_.join.empty()) {
    s = LearnMembersFrom(cfg_.join);
    if (!s.ok()) return s;
  }

  raft::Config rc;
  rc.id = cfg_.id;
  rc.group = kDefaultGroup;
  // A joining node starts with no configuration: the leader's log brings it.
  if (cfg_.join.empty()) {
    for (const auto& entry : cfg_.peers) rc.peers.push_back(entry.first);
  }
  rc.storage = group_storage_;
  rc.applied = snap.meta.index;
  rc.election_tick = cfg_.election_ticks;
  rc.heartbeat_tick = cfg_.heartbeat_ticks;
  rc.seed = std::random_device{}();
  raft_ = std::make_unique<raft::Raft>(rc);
  if (!raft_->status().ok()) return raft_->status();

  for (const auto& entry : members_) ConnectPeer(entry.first);
  events_ = std::make_unique<net::Publisher>(&pub_, cfg_.id);

  s = loop_.Init();
  if (s.ok()) s = loop_.WatchZmq(client_.get(zmq::sockopt::fd), [this] { return DrainClients(); });
  if (s.ok()) s = loop_.WatchZmq(raft_in_.get(zmq::sockopt::fd), [this] { return DrainPeers(); });
  if (s.ok()) s = loop_.AddTimer(std::chrono::milliseconds(cfg_.tick_ms), [this] { Tick(); });
  if (!s.ok()) return s;
  loop_.AfterEachRound([this] { ProcessReady(); });
  workers_ = std::make_unique<WorkerPool>(cfg_.workers);

  KV_LOG(kInfo) << "node " << cfg_.id << " serving clients on " << cfg_.self().ToString()
                << ", raft on port " << cfg_.raft_port() << ", events on port " << cfg_.pub_port()
                << ", data in " << cfg_.data_dir << "; log " << group_storage_->FirstIndex()
                << ".." << group_storage_->LastIndex() << ", snapshot at "
                << last_snapshot_index_;
  if (!cfg_.fsync) {
    KV_LOG(kWarn) << "fsync is OFF: acknowledged writes can be lost if the machine crashes";
  }
  return Status::OK();
}

void Node::ConnectPeer(raft::NodeId node) {
  if (node == cfg_.id || raft_out_.count(node) != 0) return;
  auto dealer = [&](int hwm) {
    zmq::socket_t sock(ctx_, zmq::socket_type::dealer);
    sock.set(zmq::sockopt::linger, 0);
    sock.set(zmq::sockopt::sndhwm, hwm);
    // Do not queue for a peer that is down: Raft resends what matters.
    sock.set(zmq::sockopt::immediate, true);
    sock.set(zmq::sockopt::reconnect_ivl, 100);
    sock.set(zmq::sockopt::reconnect_ivl_max, 1000);
    const HostPort& hp = members_.at(node);
    sock.connect("tcp://" + hp.host + ":" + std::to_string(hp.port + kRaftPortOffset));
    return sock;
  };
  raft_out_.emplace(node, dealer(10000));
  // Snapshots stream over a connection of their own; a short queue keeps at
  // most a few chunks in memory per peer.
  snapshot_out_.emplace(node, dealer(4));
}

void Node::DisconnectPeer(raft::NodeId node) {
  raft_out_.erase(node);
  snapshot_out_.erase(node);
}

Status Node::LearnMembersFrom(const std::string& endpoint) {
  // The member we join tells us every member's address; until it answers we
  // could not even reply to the leader.
  zmq::socket_t sock(ctx_, zmq::socket_type::dealer);
  sock.set(zmq::sockopt::linger, 0);
  sock.connect("tcp://" + endpoint);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  for (uint64_t id = 1; std::chrono::steady_clock::now() < deadline; ++id) {
    net::ClientRequest req;
    req.op = net::ClientOp::kStatus;
    req.id = id;
    (void)sock.send(zmq::buffer(net::EncodeClientRequest(req)), zmq::send_flags::dontwait);
    zmq::pollitem_t item{static_cast<void*>(sock), 0, ZMQ_POLLIN, 0};
    zmq::poll(&item, 1, std::chrono::milliseconds(1000));
    zmq::message_t msg;
    if (!(item.revents & ZMQ_POLLIN) || !sock.recv(msg, zmq::recv_flags::dontwait)) continue;
    NodeStatus st;
    uint64_t reply_id = 0;
    if (!net::DecodeStatusReply(msg.to_string_view(), &reply_id, &st).ok()) continue;
    for (const auto& [node, address] : st.members) {
      HostPort hp;
      if (node != cfg_.id && ParseHostPort(address, &hp).ok()) members_[node] = hp;
    }
    KV_LOG(kInfo) << "joining through " << endpoint << ": " << st.members.size()
                  << " members known";
    return Status::OK();
  }
  return Status::Unavailable("cannot reach " + endpoint + " to join the cluster");
}

Status Node::Run() {
  // Replays committed entries after a restart before serving anything.
  ProcessReady();
  loop_.Run();
  KV_LOG(kInfo) << "node " << cfg_.id << " stopping";
  return fatal_;
}

// ---------------------------------------------------------------------------
// Clients

bool Node::DrainClients() {
  bool found = false;
  while (client_.get(zmq::sockopt::events) & ZMQ_POLLIN) {
    std::vector<zmq::message_t> frames;
    try {
      if (!zmq::recv_multipart(client_, std::back_inserter(frames), zmq::recv_flags::dontwait)) {
        break;
      }
    } catch (const zmq::error_t& e) {
      KV_LOG(kWarn) << "client socket: " << e.what();
      break;
    }
    found = true;
    Pending p;
    p.routing = frames[0].to_string();
    // A REQ client's empty delimiter is echoed on every reply, errors too.
    p.delimiter = frames.size() >= 3 && frames[1].size() == 0;
    if (p.delimiter && frames.size() == 3) {
      HandleRequest(std::move(p), frames[2].to_string_view());
    } else if (!p.delimiter && frames.size() == 2) {
      HandleRequest(std::move(p), frames[1].to_string_view());
    } else {
      if (ShouldLog(++bad_requests_)) {
        KV_LOG(kWarn) << "client request with " << frames.size() - 1 << " frames refused ("
                      << bad_requests_ << " bad requests so far)";
      }
      net::ClientReply reply;
      reply.status = net::ReplyStatus::kError;
      reply.error = "a request is one msgpack frame (after an empty delimiter for REQ sockets)";
      Reply(p, reply);
    }
  }
  return found;
}

void Node::HandleRequest(Pending p, std::string_view payload) {
  net::ClientRequest req;
  bool id_known = false;
  Status s = net::DecodeClientRequest(payload, limits_, &req, &id_known);
  p.id = id_known ? req.id : 0;
  if (!s.ok()) {
    if (ShouldLog(++bad_requests_)) {
      KV_LOG(kWarn) << "bad client request: " << s.message() << " (" << bad_requests_
                    << " so far)";
    }
    net::ClientReply reply;
    reply.status = net::ReplyStatus::kError;
    reply.error = s.message();
    Reply(p, reply);
    return;
  }
  switch (req.op) {
    case net::ClientOp::kStatus:
      ReplyStatus(p);
      return;
    case net::ClientOp::kMemberAdd:
    case net::ClientOp::kMemberRemove:
      HandleMemberRequest(std::move(p), req);
      return;
    case net::ClientOp::kTransferLeader: {
      if (raft_->role() != raft::Role::kLeader) {
        RedirectOrUnavailable(p);
        return;
      }
      net::ClientReply reply;
      const raft::ConfState cs = raft_->conf_state();
      if (std::find(cs.voters.begin(), cs.voters.end(), req.target) == cs.voters.end()) {
        reply.status = net::ReplyStatus::kError;
        reply.error = "node " + std::to_string(req.target) + " is not a voter";
      } else {
        // Started, not finished: the caller watches status for the new leader.
        raft_->TransferLeader(req.target);
      }
      Reply(p, reply);
      return;
    }
    case net::ClientOp::kGet:
      p.key = std::move(req.key);
      if (req.stale) {
        ReadOnWorker(0, {std::move(p)});
      } else if (raft_->role() != raft::Role::kLeader) {
        RedirectOrUnavailable(p);
      } else {
        read_batch_.push_back(std::move(p));
      }
      return;
    case net::ClientOp::kPut:
    case net::ClientOp::kDelete:
    case net::ClientOp::kCas:
      break;
  }
  if (raft_->role() != raft::Role::kLeader) {
    RedirectOrUnavailable(p);
    return;
  }
  Command cmd;
  cmd.op = req.op == net::ClientOp::kPut      ? OpType::kPut
           : req.op == net::ClientOp::kDelete ? OpType::kDelete
                                              : OpType::kCas;
  cmd.key = std::move(req.key);
  cmd.value = std::move(req.value);
  cmd.has_expect = req.has_expect;
  cmd.expect = std::move(req.expect);
  cmd.client = req.client;
  cmd.seq = req.seq;
  raft::Index index = 0;
  s = raft_->Propose(cmd.Encode(), &index, &p.term);
  if (!s.ok()) {
    net::ClientReply reply;
    reply.status = net::ReplyStatus::kUnavailable;
    reply.error = s.message();
    Reply(p, reply);
    return;
  }
  pending_writes_.emplace(index, std::move(p));
}

void Node::RedirectOrUnavailable(const Pending& p) {
  net::ClientReply reply;
  const raft::NodeId leader = raft_->leader();
  auto it = members_.find(leader);
  if (leader != raft::kNoNode && leader != cfg_.id && it != members_.end()) {
    reply.status = net::ReplyStatus::kRedirect;
    reply.leader = it->second.ToString();
  } else {
    reply.status = net::ReplyStatus::kUnavailable;
    reply.error = "no leader known; retry";
  }
  Reply(p, reply);
}

void Node::ServeRead(const Pending& p, Outgoing* out) {
  net::ClientReply reply;
  reply.id = p.id;
  if (sm_.Get(p.key, &reply.value)) {
    reply.has_value = true;
  } else {
    reply.status = net::ReplyStatus::kNotFound;
  }
  out->replies.emplace_back(p, net::EncodeClientReply(reply));
}

void Node::Reply(const Pending& p, const net::ClientReply& reply) {
  net::ClientReply r = reply;
  r.id = p.id;
  ReplyRaw(p, net::EncodeClientReply(r));
}

void Node::ReplyRaw(const Pending& p, const std::string& bytes) {
  try {
    client_.send(zmq::buffer(p.routing), zmq::send_flags::sndmore | zmq::send_flags::dontwait);
    if (p.delimiter) {
      client_.send(zmq::message_t(), zmq::send_flags::sndmore | zmq::send_flags::dontwait);
    }
    client_.send(zmq::buffer(bytes), zmq::send_flags::dontwait);
  } catch (const zmq::error_t& e) {
    // The client went away or its queue is full: its request times out.
    KV_LOG(kDebug) << "reply dropped: " << e.what();
  }
}

void Node::ReplyStatus(const Pending& p) {
  NodeStatus st;
  st.node = cfg_.id;
  st.role = raft::RoleName(raft_->role());
  st.term = raft_->term();
  st.leader = raft_->leader();
  auto leader = members_.find(st.leader);
  if (leader != members_.end()) st.leader_address = leader->second.ToString();
  st.commit = raft_->commit();
  const ApplyProgress pr = progress();
  st.applied = pr.applied;
  st.last_index = raft_->last_index();
  st.snapshot_index = raft_->snapshot_index();
  st.event_seq = events_->seq();
  st.digest = pr.digest;
  st.keys = pr.keys;
  for (const auto& [node, hp] : members_) st.members[node] = hp.ToString();
  const raft::ConfState cs = raft_->conf_state();
  st.voters = cs.voters;
  st.learners = cs.learners;
  ReplyRaw(p, net::EncodeStatusReply(p.id, st));
}

// ---------------------------------------------------------------------------
// Peers

bool Node::DrainPeers() {
  bool found = false;
  while (raft_in_.get(zmq::sockopt::events) & ZMQ_POLLIN) {
    std::vector<zmq::message_t> frames;
    try {
      if (!zmq::recv_multipart(raft_in_, std::back_inserter(frames), zmq::recv_flags::dontwait)) {
        break;
      }
    } catch (const zmq::error_t& e) {
      KV_LOG(kWarn) << "raft socket: " << e.what();
      break;
    }
    found = true;
    raft::Message m;
    net::SnapshotChunk chunk;
    Status s = frames.size() == 2 ? net::DecodeRaftMessage(frames[1].to_string_view(), &m, &chunk)
                                  : Status::InvalidArgument("expected one frame");
    if (s.ok() && chunk.total != 0) {
      raft::Message whole;
      bool complete = false;
      s = snapshot_assembler_.Add(std::move(m), chunk, &whole, &complete);
      if (s.ok() && complete) s = raft_->Step(whole);
    } else if (s.ok()) {
      s = raft_->Step(m);
    }
    if (!s.ok() && ShouldLog(++bad_peer_messages_)) {
      KV_LOG(kWarn) << "dropped a peer message: " << s.message() << " ("
                    << bad_peer_messages_ << " so far)";
    }
  }
  return found;
}

void Node::SendRaft(const std::vector<raft::Message>& msgs) {
  for (const raft::Message& m : msgs) {
    if (m.type == raft::MessageType::kSnapshot) {
      snapshot_sender_.Start(m, std::chrono::steady_clock::now());
      continue;
    }
    auto it = raft_out_.find(m.to);
    bool sent = false;
    if (it != raft_out_.end()) {
      const std::string bytes = net::EncodeRaftMessage(m);
      try {
        sent = it->second.send(zmq::buffer(bytes), zmq::send_flags::dontwait).has_value();
      } catch (const zmq::error_t& e) {
        KV_LOG(kDebug) << "send to " << m.to << ": " << e.what();
      }
    }
    if (!sent) raft_->ReportUnreachable(m.to);
  }
}

void Node::PumpSnapshots() {
  if (snapshot_sender_.idle()) return;
  snapshot_sender_.Pump(
      [this](raft::NodeId to, const std::string& frame) {
        auto it = snapshot_out_.find(to);
        if (it == snapshot_out_.end()) return false;
        try {
          return it->second.send(zmq::buffer(frame), zmq::send_flags::dontwait).has_value();
        } catch (const zmq::error_t&) {
          return false;
        }
      },
      // Every chunk queued: the follower's answer tells the leader the rest.
      [this](raft::NodeId to, bool ok) { raft_->ReportSnapshot(to, ok); },
      std::chrono::steady_clock::now());
}

// ---------------------------------------------------------------------------
// Raft

void Node::OnConfChangeCommitted(const raft::Entry& e) {
  raft::ConfChange cc;
  if (!raft::ConfChange::Decode(e.data, &cc)) return;
  HostPort hp;
  if (cc.type == raft::ConfChangeType::kRemoveNode) {
    if (cc.node == cfg_.id) {
      KV_LOG(kWarn) << "node " << cfg_.id << " was removed from the cluster at index " << e.index
                    << "; it serves nothing more and can be shut down";
    } else {
      DisconnectPeer(cc.node);
      members_.erase(cc.node);
    }
  } else if (ParseHostPort(cc.context, &hp).ok()) {
    members_[cc.node] = hp;
    ConnectPeer(cc.node);
  }
  // The core applies membership changes at commit: its configuration is
  // current here.
  const raft::ConfState cs = raft_->conf_state();
  static const char* kChange[] = {"add-learner", "add-voter", "remove"};
  events_->Publish("membership", {{"index", e.index},
                                  {"change", std::string(kChange[static_cast<int>(cc.type)])},
                                  {"member", cc.node},
                                  {"voters", static_cast<uint64_t>(cs.voters.size())},
                                  {"learners", static_cast<uint64_t>(cs.learners.size())}});
  KV_LOG(kInfo) << "membership: " << kChange[static_cast<int>(cc.type)] << " " << cc.node
                << " at " << e.index;
}

void Node::HandleMemberRequest(Pending p, const net::ClientRequest& req) {
  if (raft_->role() != raft::Role::kLeader) {
    RedirectOrUnavailable(p);
    return;
  }
  net::ClientReply reply;
  raft::ConfChange cc;
  cc.node = req.node;
  if (req.op == net::ClientOp::kMemberAdd) {
    HostPort hp;
    Status s = ParseHostPort(req.address, &hp);
    if (!s.ok()) {
      reply.status = net::ReplyStatus::kError;
      reply.error = s.message();
      Reply(p, reply);
      return;
    }
    cc.type = raft::ConfChangeType::kAddLearner;
    cc.context = hp.ToString();
    const raft::ConfState cs = raft_->conf_state();
    if (std::find(cs.learners.begin(), cs.learners.end(), req.node) != cs.learners.end()) {
      // Already a learner (an earlier add timed out): resume, promote it.
      joining_[req.node] = Joining{std::move(p), cc.context, false};
      return;
    }
  } else {
    cc.type = raft::ConfChangeType::kRemoveNode;
  }
  raft::Index index = 0;
  Status s = raft_->ProposeConfChange(cc, &index);
  if (!s.ok()) {
    reply.status = s.IsUnavailable() ? net::ReplyStatus::kUnavailable : net::ReplyStatus::kError;
    reply.error = s.message();
    Reply(p, reply);
    return;
  }
  p.term = raft_->term();
  if (req.op == net::ClientOp::kMemberAdd) {
    // Answered once the learner caught up and was promoted (Tick).
    joining_[req.node] = Joining{std::move(p), cc.context, false};
  } else {
    // Answered when the removal is applied, like a write.
    pending_writes_.emplace(index, std::move(p));
  }
}

void Node::PromoteCaughtUpLearners() {
  if (joining_.empty() || raft_->role() != raft::Role::kLeader) return;
  const raft::ConfState cs = raft_->conf_state();
  for (auto it = joining_.begin(); it != joining_.end();) {
    const raft::NodeId node = it->first;
    if (std::find(cs.voters.begin(), cs.voters.end(), node) != cs.voters.end()) {
      Reply(it->second.client, net::ClientReply{});
      it = joining_.erase(it);
      continue;
    }
    const raft::Progress* pr = raft_->ProgressOf(node);
    // Caught up: close enough to the leader's log that promoting it does not
    // leave the group waiting on a slow voter.
    if (!it->second.promoting && pr != nullptr && pr->learner &&
        pr->match + 1000 >= raft_->last_index()) {
      raft::ConfChange cc{raft::ConfChangeType::kAddVoter, node, it->second.address};
      // Unavailable while another change is pending: try again next tick.
      it->second.promoting = raft_->ProposeConfChange(cc).ok();
    }
    ++it;
  }
}

void Node::Tick() {
  raft_->Tick();
  PromoteCaughtUpLearners();
  PumpSnapshots();
  if (raft_->commit() != published_commit_) {
    // Progress events at most once a tick, however many entries commit.
    published_commit_ = raft_->commit();
    events_->Publish("commit", {{"term", raft_->term()},
                                {"commit", published_commit_},
                                {"applied", progress().applied}});
  }
}

void Node::OnRoleChange(const raft::SoftState& ss) {
  events_->Publish("role", {{"role", std::string(raft::RoleName(ss.role))},
                            {"term", raft_->term()},
                            {"leader", ss.leader}});
  KV_LOG(kInfo) << "node " << cfg_.id << " is " << raft::RoleName(ss.role) << " in term "
                << raft_->term() << ", leader " << ss.leader;
  if (ss.role != raft::Role::kLeader) FailPendingOnStepDown();
}

void Node::FailPendingOnStepDown() {
  // Writes that may still commit (or not) under the next leader: their fate
  // is unknown. Those already committed are answered when applied.
  for (auto it = pending_writes_.upper_bound(raft_->commit()); it != pending_writes_.end();) {
    net::ClientReply reply;
    reply.status = net::ReplyStatus::kUnknown;
    reply.error = "leadership lost before the write committed; it may or may not take effect";
    Reply(it->second, reply);
    it = pending_writes_.erase(it);
  }
  // Reads not yet confirmed by a quorum were never executed.
  net::ClientReply unavailable;
  unavailable.status = net::ReplyStatus::kUnavailable;
  unavailable.error = "leadership lost; retry";
  for (const Pending& p : read_batch_) Reply(p, unavailable);
  read_batch_.clear();
  for (const auto& entry : reads_by_context_) {
    for (const Pending& p : entry.second) Reply(p, unavailable);
  }
  reads_by_context_.clear();
  net::ClientReply unknown;
  unknown.status = net::ReplyStatus::kUnknown;
  unknown.error = "leadership lost while adding the member; check kvctl members";
  for (const auto& entry : joining_) Reply(entry.second.client, unknown);
  joining_.clear();
}

void Node::ProcessReady() {
  if (!fatal_.ok()) return;
  if (!read_batch_.empty()) {
    // One ReadIndex round confirms every read that arrived in this round.
    const std::string ctx = std::to_string(++read_context_);
    if (raft_->ReadIndex(ctx).ok()) {
      reads_by_context_[ctx] = std::move(read_batch_);
    } else {
      for (const Pending& p : read_batch_) RedirectOrUnavailable(p);
    }
    read_batch_.clear();
  }
  // Pumping snapshots reports progress to Raft, which may have more to do.
  for (PumpSnapshots(); raft_->HasReady(); PumpSnapshots()) {
    raft::Ready rd = raft_->GetReady();
    if (rd.soft_state) OnRoleChange(*rd.soft_state);
    SendRaft(rd.messages);
    Status s;
    if (rd.snapshot) {
      s = storage_->InstallSnapshot(kDefaultGroup, *rd.snapshot);
      if (s.ok()) {
        const raft::SnapshotMeta meta = rd.snapshot->meta;
        last_snapshot_index_ = handed_to_workers_ = meta.index;
        workers_->Post(kStrand, [this, data = std::move(rd.snapshot->data), meta] {
          Status rs = sm_.Restore(data);
          if (!rs.ok()) {
            // The leader's snapshot does not decode: this replica cannot go on.
            KV_LOG(kFatal) << "snapshot " << meta.index << " from the leader: " << rs.ToString();
          }
          PublishProgress();
          Outgoing out;
          out.events.push_back({"snapshot", {{"event", std::string("installed")},
                                             {"index", meta.index},
                                             {"term", meta.term}}});
          loop_.Post([this, out = std::move(out)]() mutable { Deliver(std::move(out)); });
        });
      }
    }
    storage::WriteBatch batch;
    if (!rd.entries.empty()) batch.AppendEntries(kDefaultGroup, rd.entries);
    if (rd.hard_state) batch.SetHardState(kDefaultGroup, *rd.hard_state);
    if (s.ok() && !batch.empty()) {
      s = storage_->wal()->Write(&batch);
      if (s.ok()) s = storage_->ApplyWritten(batch);
    }
    if (!s.ok()) {
      // The WAL's error is sticky: without durable storage this node must not
      // acknowledge or vote again. Stop rather than pretend.
      fatal_ = s;
      KV_LOG(kError) << "node " << cfg_.id << ": storage failed, stopping: " << s.ToString();
      loop_.Stop();
      return;
    }
    SendRaft(rd.persisted_messages);
    if (!rd.committed_entries.empty()) {
      // The clients waiting on these indexes go along with the entries.
      std::vector<std::pair<raft::Index, Pending>> writes;
      const raft::Index last = rd.committed_entries.back().index;
      for (const raft::Entry& e : rd.committed_entries) {
        if (e.type == raft::EntryType::kConfChange) OnConfChangeCommitted(e);
      }
      while (!pending_writes_.empty() && pending_writes_.begin()->first <= last) {
        writes.emplace_back(pending_writes_.begin()->first,
                            std::move(pending_writes_.begin()->second));
        pending_writes_.erase(pending_writes_.begin());
      }
      handed_to_workers_ = last;
      workers_->Post(kStrand, [this, entries = std::move(rd.committed_entries),
                               writes = std::move(writes)]() mutable {
        ApplyOnWorker(entries, std::move(writes));
      });
    }
    for (const raft::ReadState& rs : rd.read_states) {
      auto it = reads_by_context_.find(rs.context);
      if (it == reads_by_context_.end()) continue;
      ReadOnWorker(rs.index, std::move(it->second));
      reads_by_context_.erase(it);
    }
    raft_->Advance(rd);
  }
  MaybeSnapshot();
}

void Node::ApplyOnWorker(const std::vector<raft::Entry>& entries,
                         std::vector<std::pair<raft::Index, Pending>> writes) {
  Outgoing out;
  auto write = writes.begin();
  for (const raft::Entry& e : entries) {
    ApplyResult result = ApplyResult::kOk;
    raft::ConfChange cc;
    if (e.type == raft::EntryType::kConfChange) {
      if (raft::ConfChange::Decode(e.data, &cc) && (!cc.context.empty() ||
                                                     cc.type == raft::ConfChangeType::kRemoveNode)) {
        sm_.SetMember(e.index, cc.node,
                      cc.type == raft::ConfChangeType::kRemoveNode ? "" : cc.context);
      } else {
        sm_.Skip(e.index);
      }
    } else if (e.data.empty()) {
      sm_.Skip(e.index);
    } else {
      Command cmd;
      Status s = Command::Decode(e.data, &cmd);
      if (!s.ok()) {
        KV_LOG(kError) << "entry " << e.index << " holds no valid command; skipped";
        sm_.Skip(e.index);
      } else {
        bool duplicate = false;
        result = sm_.Apply(e.index, cmd, &duplicate);
        if (!duplicate && result == ApplyResult::kOk) {
          out.events.push_back({cmd.op == OpType::kDelete ? "kv.del" : "kv.put",
                                {{"key", net::EventBytes{cmd.key}},
                                 {"index", e.index},
                                 {"size", static_cast<uint64_t>(cmd.value.size())}}});
        }
      }
    }
    // Answer the client that proposed this index, if it was us.
    for (; write != writes.end() && write->first <= e.index; ++write) {
      net::ClientReply reply;
      reply.id = write->second.id;
      if (write->first == e.index && write->second.term == e.term) {
        reply.status = ReplyFor(result);
        if (result == ApplyResult::kStaleSeq) {
          reply.error = "seq is below this session's last write: a session's writes must be "
                        "sequential; it was not executed";
        }
      } else {
        // Another leader's entry took this index: ours was never committed.
        reply.status = net::ReplyStatus::kUnavailable;
        reply.error = "leadership changed before the write committed; it was not executed";
      }
      out.replies.emplace_back(std::move(write->second), net::EncodeClientReply(reply));
    }
  }
  while (!reads_waiting_apply_.empty() &&
         reads_waiting_apply_.begin()->first <= sm_.applied_index()) {
    ServeRead(reads_waiting_apply_.begin()->second, &out);
    reads_waiting_apply_.erase(reads_waiting_apply_.begin());
  }
  PublishProgress();
  loop_.Post([this, out = std::move(out)]() mutable { Deliver(std::move(out)); });
}

void Node::ReadOnWorker(raft::Index index, std::vector<Pending> reads) {
  workers_->Post(kStrand, [this, index, reads = std::move(reads)]() mutable {
    Outgoing out;
    for (Pending& p : reads) {
      if (sm_.applied_index() >= index) {
        ServeRead(p, &out);
      } else {
        reads_waiting_apply_.emplace(index, std::move(p));
      }
    }
    if (!out.replies.empty()) {
      loop_.Post([this, out = std::move(out)]() mutable { Deliver(std::move(out)); });
    }
  });
}

void Node::PublishProgress() {
  std::lock_guard<std::mutex> lock(progress_mu_);
  progress_ = ApplyProgress{sm_.applied_index(), sm_.Digest(), sm_.size()};
}

void Node::Deliver(Outgoing out) {
  for (const auto& [p, bytes] : out.replies) ReplyRaw(p, bytes);
  for (const auto& [topic, fields] : out.events) events_->Publish(topic, fields);
}

void Node::MaybeSnapshot() {
  // Only once everything committed is with the strand, so that the
  // configuration we record matches the data the strand will copy.
  const raft::Index index = handed_to_workers_;
  if (snapshot_in_progress_ || index < last_snapshot_index_ + cfg_.snapshot_entries ||
      index != raft_->commit()) {
    return;
  }
  snapshot_in_progress_ = true;
  workers_->Post(kStrand, [this, index, conf = raft_->conf_state()] {
    // The strand has applied exactly up to `index` here.
    std::string data = sm_.Serialize();
    loop_.Post([this, index, conf, data = std::move(data)]() mutable {
      snapshot_in_progress_ = false;
      // On failure too: the next try comes after another snapshot_entries.
      last_snapshot_index_ = std::max(last_snapshot_index_, index);
      Status s = storage_->CreateSnapshot(kDefaultGroup, index, conf, std::move(data));
      if (!s.ok()) {
        KV_LOG(kWarn) << "snapshot at " << index << " not taken: " << s.ToString();
        return;
      }
      events_->Publish("snapshot", {{"event", std::string("taken")}, {"index", index}});
      KV_LOG(kInfo) << "node " << cfg_.id << " took a snapshot at " << index;
    });
  });
}

}  // namespace kv::node
