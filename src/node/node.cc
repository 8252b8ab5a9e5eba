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

bool Contains(const std::vector<raft::NodeId>& ids, raft::NodeId id) {
  return std::find(ids.begin(), ids.end(), id) != ids.end();
}

// How often a node tells its peers which groups it leads, in ticks (and at
// once whenever that changes).
constexpr uint64_t kLeaderHintTicks = 10;
// How often the leader of each group moves it toward the placement, in ticks.
constexpr uint64_t kBalanceTicks = 10;
// A learner this close to the leader's log is promoted to voter.
constexpr raft::Index kPromoteLag = 1000;
// The metadata group's keys naming the cluster's members: member/<id> -> host:port.
constexpr std::string_view kMemberPrefix = "member/";
// Worker strands: a group's id applies its entries; this bit set on it, its
// snapshot files are written.
constexpr uint64_t kSnapshotStrand = uint64_t{1} << 63;

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
  groups_.clear();
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

  // Who is where: the configured peers, and (when joining) what the member
  // we join reports, which also must agree on the sharding settings before
  // this node touches its data dir. Snapshots, the log and the metadata
  // group update the members further.
  members_ = cfg_.peers;
  if (!cfg_.join.empty()) {
    Status s = LearnMembersFrom(cfg_.join);
    if (!s.ok()) return s;
  }

  Status s = ClaimDataDir(cfg_);
  if (!s.ok()) return s;

  storage::StorageOptions opts;
  opts.wal.sync = cfg_.fsync;
  opts.wal.segment_size = cfg_.wal_segment_bytes;
  s = storage::NodeStorage::Open(storage::Env::Posix(), cfg_.data_dir, opts, &storage_);
  if (!s.ok()) return s;
  events_ = std::make_unique<net::Publisher>(&pub_, cfg_.id);
  workers_ = std::make_unique<WorkerPool>(cfg_.workers);

  std::vector<raft::NodeId> founders;
  for (const auto& entry : cfg_.peers) founders.push_back(entry.first);
  if (!cfg_.sharded()) {
    // A joining node starts with no configuration: the leader's log brings it.
    s = CreateGroup(kMainGroup, cfg_.join.empty() ? founders : std::vector<raft::NodeId>{},
                    raft::kNoNode);
  } else {
    ring_ = std::make_unique<ShardRing>(cfg_.shards);
    SetMembers(0, members_);
    const std::vector<raft::GroupId> stored = storage_->Groups();
    if (stored.empty() && cfg_.join.empty()) {
      // A founder's first start: every founder computes the same placement
      // from the same founders and bootstraps the groups it puts here.
      const std::vector<raft::NodeId> meta = TargetReplicas(kMainGroup);
      if (Contains(meta, cfg_.id)) s = CreateGroup(kMainGroup, meta, raft::kNoNode);
      for (uint32_t shard = 0; s.ok() && shard < cfg_.shards; ++shard) {
        if (Contains(placement_->replicas[shard], cfg_.id)) {
          s = CreateGroup(ShardGroup(shard), placement_->replicas[shard],
                          placement_->leader[shard]);
        }
      }
    } else {
      // Later the storage says which groups this node has been part of;
      // messages from their leaders bring new ones (HostOnDemand).
      for (raft::GroupId id : stored) {
        if (id != kMainGroup && ShardOf(id) < 0) {
          return Status::Corruption("data dir holds group " + std::to_string(id) +
                                    ", not a group of a cluster of " +
                                    std::to_string(cfg_.shards) + " shards");
        }
        s = CreateGroup(id, {}, raft::kNoNode);
        if (!s.ok()) break;
      }
    }
    if (Group* meta = FindGroup(kMainGroup)) {
      OnMemberKeys(meta->sm.applied_index(), meta->sm.ScanPrefix(kMemberPrefix));
    }
  }
  if (!s.ok()) return s;

  for (const auto& entry : members_) ConnectPeer(entry.first);

  s = loop_.Init();
  if (s.ok()) s = loop_.WatchZmq(client_.get(zmq::sockopt::fd), [this] { return DrainClients(); });
  if (s.ok()) s = loop_.WatchZmq(raft_in_.get(zmq::sockopt::fd), [this] { return DrainPeers(); });
  if (s.ok()) s = loop_.AddTimer(std::chrono::milliseconds(cfg_.tick_ms), [this] { Tick(); });
  if (!s.ok()) return s;
  loop_.AfterEachRound([this] { ProcessReady(); });

  KV_LOG(kInfo) << "node " << cfg_.id << " serving clients on " << cfg_.self().ToString()
                << ", raft on port " << cfg_.raft_port() << ", events on port " << cfg_.pub_port()
                << ", data in " << cfg_.data_dir << "; " << groups_.size() << " group"
                << (groups_.size() == 1 ? "" : "s")
                << (cfg_.sharded() ? " of " + std::to_string(cfg_.shards) + " shards" : "");
  if (!cfg_.fsync) {
    KV_LOG(kWarn) << "fsync is OFF: acknowledged writes can be lost if the machine crashes";
  }
  return Status::OK();
}

Status Node::CreateGroup(raft::GroupId id, const std::vector<raft::NodeId>& voters,
                         raft::NodeId preferred_leader) {
  auto g = std::make_unique<Group>();
  g->id = id;
  g->shard = ShardOf(id);
  g->preferred_leader = preferred_leader;
  g->storage = storage_->Group(id);

  raft::Snapshot snap;
  Status s = g->storage->GetSnapshot(&snap);
  if (!s.ok()) return s;
  if (!snap.IsEmpty()) {
    s = g->sm.Restore(snap.data);
    if (!s.ok()) {
      return Status::Corruption("group " + std::to_string(id) + ": snapshot at " +
                                std::to_string(snap.meta.index) + " does not decode: " +
                                s.message());
    }
    g->last_snapshot_index = snap.meta.index;
  }
  PublishProgress(*g);
  g->handed_to_workers = snap.meta.index;
  const std::vector<uint64_t> segments = storage_->wal()->Segments();
  g->snapshot_segment = wal_segment_ = segments.empty() ? 0 : segments.back();
  for (const auto& [node, address] : g->sm.members()) {
    HostPort hp;
    if (ParseHostPort(address, &hp).ok()) members_[node] = hp;
  }

  raft::Config rc;
  rc.id = cfg_.id;
  rc.group = id;
  rc.peers = voters;
  rc.storage = g->storage;
  rc.applied = snap.meta.index;
  rc.election_tick = cfg_.election_ticks;
  rc.heartbeat_tick = cfg_.heartbeat_ticks;
  rc.seed = std::random_device{}();
  g->raft = std::make_unique<raft::Raft>(rc);
  if (!g->raft->status().ok()) return g->raft->status();
  if (cfg_.sharded()) {
    // A replica that applied its own removal stays stopped until the
    // placement brings the group back.
    const raft::ConfState cs = g->raft->conf_state();
    g->removed = !cs.voters.empty() && !Contains(cs.voters, cfg_.id) &&
                 !Contains(cs.learners, cfg_.id);
    if (g->shard >= 0 && placement_ && g->preferred_leader == raft::kNoNode) {
      g->preferred_leader = placement_->leader[static_cast<size_t>(g->shard)];
    }
  }
  KV_LOG(kDebug) << "group " << id << ": log " << g->storage->FirstIndex() << ".."
                 << g->storage->LastIndex() << ", snapshot at " << g->last_snapshot_index;
  groups_.emplace(id, std::move(g));
  return Status::OK();
}

Node::Group* Node::FindGroup(raft::GroupId id) {
  auto it = groups_.find(id);
  return it == groups_.end() || it->second->removed ? nullptr : it->second.get();
}

raft::GroupId Node::GroupForKey(std::string_view key) const {
  return cfg_.sharded() ? ShardGroup(ring_->ShardOf(key)) : kMainGroup;
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
    req.op = net::ClientOp::kShards;
    req.id = id;
    (void)sock.send(zmq::buffer(net::EncodeClientRequest(req)), zmq::send_flags::dontwait);
    zmq::pollitem_t item{static_cast<void*>(sock), 0, ZMQ_POLLIN, 0};
    zmq::poll(&item, 1, std::chrono::milliseconds(1000));
    zmq::message_t msg;
    if (!(item.revents & ZMQ_POLLIN) || !sock.recv(msg, zmq::recv_flags::dontwait)) continue;
    ShardMap map;
    uint64_t reply_id = 0;
    if (!net::DecodeShardsReply(msg.to_string_view(), &reply_id, &map).ok()) continue;
    // A different ring would send keys to other shards than the cluster does.
    if (map.shards != cfg_.shards || (map.shards > 0 && map.replicas != cfg_.replicas)) {
      return Status::InvalidArgument(
          "the cluster at " + endpoint + " has " +
          (map.shards == 0 ? std::string("no shards")
                           : std::to_string(map.shards) + " shards of " +
                                 std::to_string(map.replicas) + " replicas") +
          "; start this node with the same --shards and --replicas");
    }
    for (const auto& [node, address] : map.members) {
      HostPort hp;
      if (node != cfg_.id && ParseHostPort(address, &hp).ok()) members_[node] = hp;
    }
    KV_LOG(kInfo) << "joining through " << endpoint << ": " << map.members.size()
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
    case net::ClientOp::kShards:
      ReplyShards(p);
      return;
    case net::ClientOp::kMemberAdd:
    case net::ClientOp::kMemberRemove:
      HandleMemberRequest(std::move(p), req);
      return;
    case net::ClientOp::kTransferLeader: {
      Group* g = FindGroup(kMainGroup);
      if (g == nullptr || g->raft->role() != raft::Role::kLeader) {
        RedirectOrUnavailable(p, kMainGroup);
        return;
      }
      net::ClientReply reply;
      if (!Contains(g->raft->conf_state().voters, req.target)) {
        reply.status = net::ReplyStatus::kError;
        reply.error = "node " + std::to_string(req.target) + " is not a voter";
      } else {
        // Started, not finished: the caller watches status for the new leader.
        g->raft->TransferLeader(req.target);
      }
      Reply(p, reply);
      return;
    }
    case net::ClientOp::kGet:
    case net::ClientOp::kPut:
    case net::ClientOp::kDelete:
    case net::ClientOp::kCas:
      break;
  }
  const raft::GroupId gid = GroupForKey(req.key);
  Group* g = FindGroup(gid);
  if (g == nullptr) {
    RedirectOrUnavailable(p, gid);
    return;
  }
  if (req.op == net::ClientOp::kGet) {
    p.key = std::move(req.key);
    if (req.stale) {
      ReadOnWorker(*g, 0, {std::move(p)});
    } else if (g->raft->role() != raft::Role::kLeader) {
      RedirectOrUnavailable(p, gid);
    } else {
      g->read_batch.push_back(std::move(p));
    }
    return;
  }
  if (g->raft->role() != raft::Role::kLeader) {
    RedirectOrUnavailable(p, gid);
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
  s = g->raft->Propose(cmd.Encode(), &index, &p.term);
  if (!s.ok()) {
    net::ClientReply reply;
    reply.status = net::ReplyStatus::kUnavailable;
    reply.error = s.message();
    Reply(p, reply);
    return;
  }
  g->pending_writes.emplace(index, std::move(p));
}

raft::NodeId Node::KnownLeader(raft::GroupId id) const {
  auto g = groups_.find(id);
  if (g != groups_.end() && !g->second->removed && g->second->raft->leader() != raft::kNoNode) {
    return g->second->raft->leader();
  }
  auto hint = leader_hints_.find(id);
  return hint == leader_hints_.end() ? raft::kNoNode : hint->second.leader;
}

void Node::RedirectOrUnavailable(const Pending& p, raft::GroupId id) {
  net::ClientReply reply;
  raft::NodeId target = KnownLeader(id);
  if (target == raft::kNoNode && cfg_.sharded() && id != kMainGroup && FindGroup(id) == nullptr) {
    // A shard hosted elsewhere whose leader we have not heard of: its
    // replicas know; the preferred leader most likely leads.
    target = placement_->leader[static_cast<size_t>(ShardOf(id))];
  }
  auto it = members_.find(target);
  if (target != raft::kNoNode && target != cfg_.id && it != members_.end()) {
    reply.status = net::ReplyStatus::kRedirect;
    reply.leader = it->second.ToString();
  } else {
    reply.status = net::ReplyStatus::kUnavailable;
    reply.error = "no leader known; retry";
  }
  if (ShardOf(id) >= 0) {
    reply.shard = ShardOf(id);
    reply.map_version = map_version_;
  }
  Reply(p, reply);
}

void Node::ServeRead(Group& g, const Pending& p, Outgoing* out) {
  net::ClientReply reply;
  reply.id = p.id;
  if (g.sm.Get(p.key, &reply.value)) {
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
  st.shards = cfg_.shards;
  st.event_seq = events_->seq();
  for (const auto& [node, hp] : members_) st.members[node] = hp.ToString();
  for (const auto& [id, g] : groups_) {
    if (g->removed) continue;
    GroupStatus gs;
    gs.group = id;
    gs.shard = g->shard;
    gs.role = raft::RoleName(g->raft->role());
    gs.term = g->raft->term();
    gs.leader = g->raft->leader();
    gs.commit = g->raft->commit();
    const ApplyProgress pr = g->progress();
    gs.applied = pr.applied;
    gs.digest = pr.digest;
    gs.keys = pr.keys;
    gs.last_index = g->raft->last_index();
    gs.snapshot_index = g->raft->snapshot_index();
    const raft::ConfState cs = g->raft->conf_state();
    gs.voters = cs.voters;
    gs.learners = cs.learners;
    if (cfg_.sharded()) st.groups.push_back(gs);
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
  auto leader = members_.find(st.leader);
  if (leader != members_.end()) st.leader_address = leader->second.ToString();
  ReplyRaw(p, net::EncodeStatusReply(p.id, st));
}

void Node::ReplyShards(const Pending& p) {
  ShardMap map;
  map.shards = cfg_.shards;
  for (const auto& [node, hp] : members_) map.members[node] = hp.ToString();
  if (cfg_.sharded()) {
    map.version = map_version_;
    map.replicas = cfg_.replicas;
    for (uint32_t shard = 0; shard < cfg_.shards; ++shard) {
      ShardInfo info;
      info.shard = shard;
      info.group = ShardGroup(shard);
      info.replicas = placement_->replicas[shard];
      info.leader = KnownLeader(info.group);
      auto it = members_.find(info.leader);
      if (it != members_.end()) info.leader_address = it->second.ToString();
      map.list.push_back(std::move(info));
    }
  }
  ReplyRaw(p, net::EncodeShardsReply(p.id, map));
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
    // The peer's routing id, then one frame per message: a peer sends all
    // it has for us in a round as one ZeroMQ message.
    for (size_t i = 1; i < frames.size(); ++i) HandlePeerFrame(frames[i].to_string_view());
    if (frames.size() < 2 && ShouldLog(++bad_peer_messages_)) {
      KV_LOG(kWarn) << "dropped an empty peer message (" << bad_peer_messages_ << " so far)";
    }
  }
  return found;
}

void Node::HandlePeerFrame(std::string_view frame) {
  raft::Message m;
  net::SnapshotChunk chunk;
  Status s = net::DecodeRaftMessage(frame, &m, &chunk);
  if (!s.ok()) {
    net::LeaderHints hints;
    net::RemovedNotice removed;
    if (net::DecodeLeaderHints(frame, &hints).ok()) return OnLeaderHints(hints);
    if (net::DecodeRemovedNotice(frame, &removed).ok()) return OnRemovedNotice(removed);
  }
  Group* g = s.ok() ? FindGroup(m.group) : nullptr;
  if (s.ok() && g == nullptr) g = HostOnDemand(m.group);
  if (s.ok() && g == nullptr) {
    // Not (or no longer) placed here: dropped quietly, a leader keeps
    // trying until its removal of this node commits.
    KV_LOG(kDebug) << "message for group " << m.group << " from " << m.from
                   << ", not hosted here";
    return;
  }
  // A replica removed without learning it campaigns (PreVote) after its
  // election timeout: that is where it is told.
  if (s.ok() && cfg_.sharded() &&
      (m.type == raft::MessageType::kPreVote || m.type == raft::MessageType::kVote)) {
    TellIfRemoved(*g, m.from);
  }
  if (s.ok() && chunk.total != 0) {
    raft::Message whole;
    bool complete = false;
    s = snapshot_assembler_.Add(std::move(m), chunk, &whole, &complete);
    if (s.ok() && complete) s = g->raft->Step(whole);
  } else if (s.ok()) {
    s = g->raft->Step(m);
  }
  if (!s.ok() && ShouldLog(++bad_peer_messages_)) {
    KV_LOG(kWarn) << "dropped a peer message: " << s.message() << " (" << bad_peer_messages_
                  << " so far)";
  }
}

void Node::SendRaft(Group& g, const std::vector<raft::Message>& msgs) {
  for (const raft::Message& m : msgs) {
    if (m.type == raft::MessageType::kSnapshot) {
      snapshot_sender_.Start(m, std::chrono::steady_clock::now());
      continue;
    }
    PeerBatch& batch = to_peers_[m.to];
    batch.frames.push_back(net::EncodeRaftMessage(m));
    batch.groups.push_back(g.id);
  }
}

void Node::FlushPeers() {
  for (auto& [to, batch] : to_peers_) {
    if (batch.frames.empty()) continue;
    auto it = raft_out_.find(to);
    bool sent = false;
    if (it != raft_out_.end()) {
      try {
        // All or nothing: once the first part is queued, ZeroMQ queues the rest.
        for (size_t i = 0; i < batch.frames.size(); ++i) {
          const auto more = i + 1 < batch.frames.size() ? zmq::send_flags::sndmore
                                                        : zmq::send_flags::none;
          sent = it->second.send(zmq::buffer(batch.frames[i]), more | zmq::send_flags::dontwait)
                     .has_value();
          if (!sent) break;
        }
      } catch (const zmq::error_t& e) {
        KV_LOG(kDebug) << "send to " << to << ": " << e.what();
      }
    }
    if (!sent) {
      std::sort(batch.groups.begin(), batch.groups.end());
      batch.groups.erase(std::unique(batch.groups.begin(), batch.groups.end()),
                         batch.groups.end());
      for (raft::GroupId id : batch.groups) {
        if (Group* g = FindGroup(id)) g->raft->ReportUnreachable(to);
      }
    }
    batch.frames.clear();
    batch.groups.clear();
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
      [this](raft::GroupId group, raft::NodeId to, bool ok) {
        if (Group* g = FindGroup(group)) g->raft->ReportSnapshot(to, ok);
      },
      std::chrono::steady_clock::now());
}

void Node::SendLeaderHints() {
  hints_dirty_ = false;
  net::LeaderHints hints;
  hints.from = cfg_.id;
  for (const auto& [id, g] : groups_) {
    if (!g->removed && g->raft->role() == raft::Role::kLeader) {
      hints.leads.emplace_back(id, g->raft->term());
    }
  }
  hints.map_version = map_version_;
  for (const auto& [node, hp] : members_) hints.members.emplace_back(node, hp.ToString());
  const std::string bytes = net::EncodeLeaderHints(hints);
  for (auto& [node, sock] : raft_out_) {
    try {
      (void)sock.send(zmq::buffer(bytes), zmq::send_flags::dontwait);
    } catch (const zmq::error_t& e) {
      KV_LOG(kDebug) << "leader hints to " << node << ": " << e.what();
    }
  }
}

void Node::OnLeaderHints(const net::LeaderHints& hints) {
  // The sender's list is complete: it leads nothing else now.
  for (auto it = leader_hints_.begin(); it != leader_hints_.end();) {
    it = it->second.leader == hints.from ? leader_hints_.erase(it) : std::next(it);
  }
  for (const auto& [group, term] : hints.leads) {
    LeaderHint& h = leader_hints_[group];
    if (term >= h.term) h = LeaderHint{hints.from, term};
  }
  if (hints.map_version > map_version_ && !hints.members.empty()) {
    std::map<raft::NodeId, HostPort> members;
    for (const auto& [node, address] : hints.members) {
      HostPort hp;
      if (node == raft::kNoNode || !ParseHostPort(address, &hp).ok()) return;
      members[node] = hp;
    }
    SetMembers(hints.map_version, members);
  }
}

void Node::OnRemovedNotice(const net::RemovedNotice& notice) {
  auto it = groups_.find(notice.group);
  if (it == groups_.end() || it->second->removed) return;
  Group& g = *it->second;
  if (!cfg_.sharded()) {
    if (!Contains(g.raft->conf_state().voters, cfg_.id) || told_removed_) return;
    told_removed_ = true;
    KV_LOG(kWarn) << "node " << cfg_.id << " was removed from the cluster (node " << notice.from
                  << " says so); it serves nothing more and can be shut down";
    return;
  }
  // Only a group the placement no longer puts here: a replica still placed
  // here stays, and its leader adds it back.
  if (map_version_ == 0 || Contains(TargetReplicas(g.id), cfg_.id)) return;
  g.removed = true;
  FailPendingOnStepDown(g);
  hints_dirty_ = true;
  KV_LOG(kInfo) << "group " << g.id << ": node " << notice.from
                << " says this replica was removed; it is no longer served here";
  events_->Publish("membership", {{"group", g.id},
                                  {"change", std::string("left")},
                                  {"member", cfg_.id}});
}

void Node::TellIfRemoved(Group& g, raft::NodeId from) {
  const raft::ConfState cs = g.raft->conf_state();
  if (cs.voters.empty() || Contains(cs.voters, from) || Contains(cs.learners, from)) return;
  uint64_t& last = removed_notice_tick_[{g.id, from}];
  const uint64_t second = 1000 / static_cast<uint64_t>(cfg_.tick_ms) + 1;
  if (last != 0 && ticks_ < last + second) return;
  last = ticks_;
  auto it = raft_out_.find(from);
  if (it == raft_out_.end()) return;
  try {
    (void)it->second.send(zmq::buffer(net::EncodeRemovedNotice({cfg_.id, g.id})),
                          zmq::send_flags::dontwait);
  } catch (const zmq::error_t& e) {
    KV_LOG(kDebug) << "removed notice to " << from << ": " << e.what();
  }
}

// ---------------------------------------------------------------------------
// Sharding: membership, placement and rebalancing

void Node::SetMembers(uint64_t version, const std::map<raft::NodeId, HostPort>& members) {
  map_version_ = version;
  members_ = members;
  for (const auto& entry : members_) ConnectPeer(entry.first);
  std::vector<raft::NodeId> ids;
  for (const auto& entry : members_) ids.push_back(entry.first);
  PlacementConfig pc;
  pc.shards = cfg_.shards;
  pc.replicas = cfg_.replicas;
  placement_ = std::make_unique<Placement>(Place(ids, pc));
  for (auto& [id, g] : groups_) {
    if (g->shard >= 0) g->preferred_leader = placement_->leader[static_cast<size_t>(g->shard)];
  }
  if (version == 0) return;
  std::string list;
  for (raft::NodeId id : ids) list += (list.empty() ? "" : ",") + std::to_string(id);
  KV_LOG(kInfo) << "shard map version " << version << ": members " << list;
  events_->Publish("shards", {{"version", version}, {"members", static_cast<uint64_t>(ids.size())}});
  if (!Contains(ids, cfg_.id)) {
    KV_LOG(kWarn) << "node " << cfg_.id << " is not a member of the cluster (map version "
                  << version << "); once its shards have moved it can be shut down";
  }
}

void Node::OnMemberKeys(uint64_t version, const std::map<std::string, std::string>& keys) {
  if (keys.empty()) return;  // not seeded yet: the founders stand
  members_seeded_ = true;
  if (version <= map_version_) return;
  std::map<raft::NodeId, HostPort> members;
  for (const auto& [key, address] : keys) {
    uint64_t id = 0;
    HostPort hp;
    const std::string digits = key.substr(kMemberPrefix.size());
    if (digits.empty() || digits.size() > 19 ||
        digits.find_first_not_of("0123456789") != std::string::npos ||
        (id = std::stoull(digits)) == raft::kNoNode || !ParseHostPort(address, &hp).ok()) {
      KV_LOG(kError) << "metadata key " << key << " = " << address << " is malformed; ignored";
      continue;
    }
    members[id] = hp;
  }
  if (!members.empty()) SetMembers(version, members);
}

void Node::SeedMembers(Group& meta) {
  raft::Raft& r = *meta.raft;
  if (members_seeded_ || r.role() != raft::Role::kLeader || seeding_term_ == r.term()) return;
  seeding_term_ = r.term();
  for (const auto& [id, hp] : members_) {
    Command cmd;
    cmd.op = OpType::kPut;
    cmd.key = std::string(kMemberPrefix) + std::to_string(id);
    cmd.value = hp.ToString();
    // Unavailable (no entry of this term committed yet, say): next term.
    if (!r.Propose(cmd.Encode()).ok()) seeding_term_ = 0;
  }
}

void Node::HandleShardedMemberRequest(Pending p, const net::ClientRequest& req) {
  Group* meta = FindGroup(kMainGroup);
  if (meta == nullptr || meta->raft->role() != raft::Role::kLeader) {
    RedirectOrUnavailable(p, kMainGroup);
    return;
  }
  net::ClientReply reply;
  reply.status = net::ReplyStatus::kError;
  Command cmd;
  cmd.key = std::string(kMemberPrefix) + std::to_string(req.node);
  if (!members_seeded_) {
    reply.status = net::ReplyStatus::kUnavailable;
    reply.error = "the cluster's metadata is not initialized yet; retry";
  } else if (req.op == net::ClientOp::kMemberAdd) {
    HostPort hp;
    Status s = ParseHostPort(req.address, &hp);
    for (const auto& [id, known] : members_) {
      if (s.ok() && id != req.node && known.ToString() == hp.ToString()) {
        s = Status::InvalidArgument("address " + hp.ToString() + " belongs to node " +
                                    std::to_string(id));
      }
    }
    auto same = members_.find(req.node);
    if (s.ok() && same != members_.end() && same->second.ToString() != hp.ToString()) {
      s = Status::InvalidArgument("node " + std::to_string(req.node) + " is a member at " +
                                  same->second.ToString() + "; remove it first");
    }
    if (s.ok()) {
      cmd.op = OpType::kPut;
      cmd.value = hp.ToString();
    } else {
      reply.error = s.message();
    }
  } else if (members_.count(req.node) == 0) {
    reply.error = "node " + std::to_string(req.node) + " is not a member";
  } else if (members_.size() == 1) {
    reply.error = "cannot remove the last member";
  } else {
    cmd.op = OpType::kDelete;
  }
  if (!reply.error.empty()) {
    Reply(p, reply);
    return;
  }
  // Recorded like a write (answered when applied); the groups then move.
  raft::Index index = 0;
  Status s = meta->raft->Propose(cmd.Encode(), &index, &p.term);
  if (!s.ok()) {
    reply.status = net::ReplyStatus::kUnavailable;
    reply.error = s.message();
    Reply(p, reply);
    return;
  }
  meta->pending_writes.emplace(index, std::move(p));
}

std::vector<raft::NodeId> Node::TargetReplicas(raft::GroupId id) const {
  if (!placement_) return {};
  if (id == kMainGroup) {
    // The metadata group: the first (up to) kMetaVoters members by id.
    std::vector<raft::NodeId> ids;
    for (const auto& entry : members_) {
      if (ids.size() < kMetaVoters) ids.push_back(entry.first);
    }
    return ids;
  }
  const int shard = ShardOf(id);
  return shard < 0 ? std::vector<raft::NodeId>{} : placement_->replicas[static_cast<size_t>(shard)];
}

Node::Group* Node::HostOnDemand(raft::GroupId id) {
  if (!cfg_.sharded() || map_version_ == 0 || !Contains(TargetReplicas(id), cfg_.id)) {
    return nullptr;
  }
  auto it = groups_.find(id);
  if (it != groups_.end()) {
    // Placed here again after a removal: the leader brings the log up to date.
    it->second->removed = false;
    KV_LOG(kInfo) << "group " << id << ": placed on this node again";
    return it->second.get();
  }
  // No configuration: the leader's log (or snapshot) brings it.
  Status s = CreateGroup(id, {}, raft::kNoNode);
  if (!s.ok()) {
    KV_LOG(kError) << "cannot host group " << id << ": " << s.ToString();
    return nullptr;
  }
  KV_LOG(kInfo) << "group " << id << ": new replica on this node";
  return FindGroup(id);
}

void Node::Rebalance(Group& g) {
  raft::Raft& r = *g.raft;
  if (g.removed || r.role() != raft::Role::kLeader || map_version_ == 0) return;
  const std::vector<raft::NodeId> target = TargetReplicas(g.id);
  if (target.empty()) return;
  const raft::ConfState cs = r.conf_state();
  // One change at a time, additions first, so that the group never has
  // fewer replicas than the placement asks for while it moves.
  auto propose = [&](raft::ConfChangeType type, raft::NodeId node) {
    auto it = members_.find(node);
    raft::ConfChange cc{type, node,
                        type == raft::ConfChangeType::kRemoveNode || it == members_.end()
                            ? std::string()
                            : it->second.ToString()};
    if (r.ProposeConfChange(cc).ok()) {
      static const char* kChange[] = {"adding learner", "promoting", "removing"};
      KV_LOG(kInfo) << "group " << g.id << ": " << kChange[static_cast<int>(type)] << " " << node
                    << " (shard map version " << map_version_ << ")";
    }
  };
  for (raft::NodeId t : target) {
    if (!Contains(cs.voters, t) && !Contains(cs.learners, t) && members_.count(t) != 0) {
      return propose(raft::ConfChangeType::kAddLearner, t);
    }
  }
  for (raft::NodeId l : cs.learners) {
    if (!Contains(target, l)) return propose(raft::ConfChangeType::kRemoveNode, l);
    const raft::Progress* pr = r.ProgressOf(l);
    if (pr != nullptr && pr->match + kPromoteLag >= r.last_index()) {
      return propose(raft::ConfChangeType::kAddVoter, l);
    }
  }
  if (!cs.learners.empty()) return;  // the new replicas catch up before any leaves
  for (raft::NodeId v : cs.voters) {
    if (Contains(target, v)) continue;
    // The leader itself leaves last, after handing leadership on.
    if (v != cfg_.id) return propose(raft::ConfChangeType::kRemoveNode, v);
  }
  BalanceLeader(g, target);
}

void Node::BalanceLeader(Group& g, const std::vector<raft::NodeId>& target) {
  // Leadership belongs with the placement's preferred leader, so that leaders
  // spread evenly; a leader the placement moved away hands it to any
  // caught-up replica that stays. Not again soon after a try: a preferred
  // leader that keeps failing must not cause churn.
  raft::Raft& r = *g.raft;
  const raft::ConfState cs = r.conf_state();
  const bool leaving = !Contains(target, cfg_.id);
  const uint64_t settle = 2 * static_cast<uint64_t>(cfg_.election_ticks);
  const uint64_t cooldown = leaving ? settle : 10 * settle;
  if (r.lead_transferee() != raft::kNoNode || (!leaving && ticks_ < g.leader_since_tick + settle) ||
      (g.last_transfer_tick != 0 && ticks_ < g.last_transfer_tick + cooldown)) {
    return;
  }
  auto caught_up = [&](raft::NodeId n) {
    const raft::Progress* pr = r.ProgressOf(n);
    return n != cfg_.id && Contains(cs.voters, n) && pr != nullptr &&
           pr->match + 100 >= r.last_index();
  };
  raft::NodeId to = raft::kNoNode;
  if (g.preferred_leader != cfg_.id && Contains(target, g.preferred_leader) &&
      caught_up(g.preferred_leader)) {
    to = g.preferred_leader;
  } else if (leaving) {
    for (raft::NodeId n : target) {
      if (caught_up(n)) {
        to = n;
        break;
      }
    }
  }
  if (to == raft::kNoNode) return;
  g.last_transfer_tick = ticks_;
  KV_LOG(kInfo) << "group " << g.id << ": handing leadership to " << to
                << (leaving ? " (this node is leaving the group)" : " (preferred)");
  r.TransferLeader(to);
}

// ---------------------------------------------------------------------------
// Raft

void Node::OnConfChangeCommitted(Group& g, const raft::Entry& e) {
  raft::ConfChange cc;
  if (!raft::ConfChange::Decode(e.data, &cc)) return;
  HostPort hp;
  if (cc.type == raft::ConfChangeType::kRemoveNode && cfg_.sharded()) {
    if (cc.node != cfg_.id) {
      // A replica moved away: tell it (the leader writes to it no more).
      TellIfRemoved(g, cc.node);
    } else if (!Contains(TargetReplicas(g.id), cfg_.id)) {
      g.removed = true;
      hints_dirty_ = true;
      KV_LOG(kInfo) << "group " << g.id << ": this replica was removed at " << e.index
                    << "; it is no longer served here";
    }
  } else if (cc.type == raft::ConfChangeType::kRemoveNode) {
    if (cc.node == cfg_.id) {
      KV_LOG(kWarn) << "node " << cfg_.id << " was removed from the cluster at index " << e.index
                    << "; it serves nothing more and can be shut down";
    } else {
      // The leader writes to it no more: tell it, before the connection goes.
      TellIfRemoved(g, cc.node);
      DisconnectPeer(cc.node);
      members_.erase(cc.node);
    }
  } else if (ParseHostPort(cc.context, &hp).ok()) {
    members_[cc.node] = hp;
    ConnectPeer(cc.node);
  }
  // The core applies membership changes at commit: its configuration is
  // current here.
  const raft::ConfState cs = g.raft->conf_state();
  static const char* kChange[] = {"add-learner", "add-voter", "remove"};
  events_->Publish("membership", {{"group", g.id},
                                  {"index", e.index},
                                  {"change", std::string(kChange[static_cast<int>(cc.type)])},
                                  {"member", cc.node},
                                  {"voters", static_cast<uint64_t>(cs.voters.size())},
                                  {"learners", static_cast<uint64_t>(cs.learners.size())}});
  KV_LOG(kInfo) << "membership: " << kChange[static_cast<int>(cc.type)] << " " << cc.node
                << " at " << e.index;
}

void Node::HandleMemberRequest(Pending p, const net::ClientRequest& req) {
  if (cfg_.sharded()) {
    HandleShardedMemberRequest(std::move(p), req);
    return;
  }
  net::ClientReply reply;
  Group& g = *FindGroup(kMainGroup);
  if (g.raft->role() != raft::Role::kLeader) {
    RedirectOrUnavailable(p, g.id);
    return;
  }
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
    if (Contains(g.raft->conf_state().learners, req.node)) {
      // Already a learner (an earlier add timed out): resume, promote it.
      g.joining[req.node] = Joining{std::move(p), cc.context, false};
      return;
    }
  } else {
    cc.type = raft::ConfChangeType::kRemoveNode;
  }
  raft::Index index = 0;
  Status s = g.raft->ProposeConfChange(cc, &index);
  if (!s.ok()) {
    reply.status = s.IsUnavailable() ? net::ReplyStatus::kUnavailable : net::ReplyStatus::kError;
    reply.error = s.message();
    Reply(p, reply);
    return;
  }
  p.term = g.raft->term();
  if (req.op == net::ClientOp::kMemberAdd) {
    // Answered once the learner caught up and was promoted (Tick).
    g.joining[req.node] = Joining{std::move(p), cc.context, false};
  } else {
    // Answered when the removal is applied, like a write.
    g.pending_writes.emplace(index, std::move(p));
  }
}

void Node::PromoteCaughtUpLearners(Group& g) {
  if (g.joining.empty() || g.raft->role() != raft::Role::kLeader) return;
  const raft::ConfState cs = g.raft->conf_state();
  for (auto it = g.joining.begin(); it != g.joining.end();) {
    const raft::NodeId node = it->first;
    if (Contains(cs.voters, node)) {
      Reply(it->second.client, net::ClientReply{});
      it = g.joining.erase(it);
      continue;
    }
    const raft::Progress* pr = g.raft->ProgressOf(node);
    // Caught up: close enough to the leader's log that promoting it does not
    // leave the group waiting on a slow voter.
    if (!it->second.promoting && pr != nullptr && pr->learner &&
        pr->match + kPromoteLag >= g.raft->last_index()) {
      raft::ConfChange cc{raft::ConfChangeType::kAddVoter, node, it->second.address};
      // Unavailable while another change is pending: try again next tick.
      it->second.promoting = g.raft->ProposeConfChange(cc).ok();
    }
    ++it;
  }
}

void Node::Tick() {
  ++ticks_;
  if (ticks_ % kBalanceTicks == 0) {
    const std::vector<uint64_t> segments = storage_->wal()->Segments();
    if (!segments.empty()) wal_segment_ = segments.back();
  }
  for (auto& [id, g] : groups_) {
    if (g->removed) continue;
    g->raft->Tick();
    PromoteCaughtUpLearners(*g);
    if (g->raft->commit() != g->published_commit) {
      // Progress events at most once a tick, however many entries commit.
      g->published_commit = g->raft->commit();
      events_->Publish("commit", {{"group", id},
                                  {"term", g->raft->term()},
                                  {"commit", g->published_commit},
                                  {"applied", g->progress().applied}});
    }
  }
  PumpSnapshots();
  if (cfg_.sharded()) {
    if (ticks_ % kLeaderHintTicks == 0) hints_dirty_ = true;
    if (Group* meta = FindGroup(kMainGroup)) SeedMembers(*meta);
    if (ticks_ % kBalanceTicks == 0) {
      for (auto& [id, g] : groups_) Rebalance(*g);
    }
  }
}

void Node::OnRoleChange(Group& g, const raft::SoftState& ss) {
  events_->Publish("role", {{"group", g.id},
                            {"role", std::string(raft::RoleName(ss.role))},
                            {"term", g.raft->term()},
                            {"leader", ss.leader}});
  KV_LOG(kInfo) << "node " << cfg_.id << (cfg_.sharded() ? " group " + std::to_string(g.id) : "")
                << " is " << raft::RoleName(ss.role) << " in term " << g.raft->term()
                << ", leader " << ss.leader;
  if (ss.role == raft::Role::kLeader) g.leader_since_tick = ticks_;
  hints_dirty_ = cfg_.sharded();
  if (ss.role != raft::Role::kLeader) FailPendingOnStepDown(g);
}

void Node::FailPendingOnStepDown(Group& g) {
  // Writes that may still commit (or not) under the next leader: their fate
  // is unknown. Those already committed are answered when applied.
  for (auto it = g.pending_writes.upper_bound(g.raft->commit()); it != g.pending_writes.end();) {
    net::ClientReply reply;
    reply.status = net::ReplyStatus::kUnknown;
    reply.error = "leadership lost before the write committed; it may or may not take effect";
    Reply(it->second, reply);
    it = g.pending_writes.erase(it);
  }
  // Reads not yet confirmed by a quorum were never executed.
  net::ClientReply unavailable;
  unavailable.status = net::ReplyStatus::kUnavailable;
  unavailable.error = "leadership lost; retry";
  for (const Pending& p : g.read_batch) Reply(p, unavailable);
  g.read_batch.clear();
  for (const auto& entry : g.reads_by_context) {
    for (const Pending& p : entry.second) Reply(p, unavailable);
  }
  g.reads_by_context.clear();
  net::ClientReply unknown;
  unknown.status = net::ReplyStatus::kUnknown;
  unknown.error = "leadership lost while adding the member; check kvctl members";
  for (const auto& entry : g.joining) Reply(entry.second.client, unknown);
  g.joining.clear();
}

void Node::ProcessReady() {
  if (!fatal_.ok()) return;
  for (auto& [id, g] : groups_) {
    if (g->read_batch.empty()) continue;
    // One ReadIndex round confirms every read that arrived in this round.
    const std::string ctx = std::to_string(++g->read_context);
    if (g->raft->ReadIndex(ctx).ok()) {
      g->reads_by_context[ctx] = std::move(g->read_batch);
    } else {
      for (const Pending& p : g->read_batch) RedirectOrUnavailable(p, id);
    }
    g->read_batch.clear();
  }
  // Every group's Ready of a pass shares one WAL batch. The batch is written
  // and synced by the WAL thread while this thread goes on receiving and
  // proposing (Readies are persisted and advanced in the order handed out);
  // FinishWrites completes them. Pumping snapshots reports progress to Raft,
  // which may have more to do.
  while (fatal_.ok()) {
    PumpSnapshots();
    std::shared_ptr<WriteInFlight> write;
    for (auto& [id, g] : groups_) {
      if (!g->raft->HasReady()) continue;
      if (!write) write = std::make_shared<WriteInFlight>();
      write->readies.emplace_back(g.get(), g->raft->GetReady());
    }
    if (!write) break;
    Status s;
    bool sync = false;
    for (auto& [g, rd] : write->readies) {
      if (rd.soft_state) OnRoleChange(*g, *rd.soft_state);
      SendRaft(*g, rd.messages);
      if (rd.snapshot && s.ok()) {
        // A leader's snapshot replaces the log: only once every earlier write
        // is in the storage.
        WaitForWrites();
        s = fatal_.ok() ? storage_->InstallSnapshot(g->id, *rd.snapshot) : fatal_;
        if (s.ok()) InstallOnWorker(*g, std::move(*rd.snapshot));
      }
      if (!rd.entries.empty()) write->batch.AppendEntries(g->id, rd.entries);
      if (rd.hard_state) write->batch.SetHardState(g->id, *rd.hard_state);
      sync = sync || rd.must_sync;
    }
    // Only a commit index moved: no fdatasync of its own (a later one covers it).
    write->batch.set_sync(sync);
    // A leader's appends go out before its own write (thesis 10.2.1).
    FlushPeers();
    if (!s.ok()) return Fail(s);
    writes_.push_back(write);
    if (write->batch.empty()) {
      write->done = true;
    } else {
      storage_->wal()->Submit(std::move(write->batch), [this, write](Status st,
                                                                     storage::WriteBatch b) {
        {
          std::lock_guard<std::mutex> lock(writes_mu_);
          write->status = std::move(st);
          write->batch = std::move(b);
          write->done = true;
        }
        writes_cv_.notify_all();
        loop_.Post([this] { FinishWrites(); });
      });
    }
    FinishWrites();
  }
  for (auto& [id, g] : groups_) MaybeSnapshot(*g);
  if (hints_dirty_) SendLeaderHints();
}

void Node::FinishWrites() {
  while (fatal_.ok() && !writes_.empty()) {
    std::shared_ptr<WriteInFlight> write = writes_.front();
    {
      std::lock_guard<std::mutex> lock(writes_mu_);
      if (!write->done) return;
    }
    writes_.pop_front();
    Status s = write->status;
    if (s.ok() && !write->batch.empty()) s = storage_->ApplyWritten(write->batch);
    if (!s.ok()) return Fail(s);
    for (auto& [g, rd] : write->readies) {
      SendRaft(*g, rd.persisted_messages);
      if (!rd.committed_entries.empty()) HandCommitted(*g, std::move(rd.committed_entries));
      for (const raft::ReadState& rs : rd.read_states) {
        auto it = g->reads_by_context.find(rs.context);
        if (it == g->reads_by_context.end()) continue;
        ReadOnWorker(*g, rs.index, std::move(it->second));
        g->reads_by_context.erase(it);
      }
      g->raft->Advance(rd);
    }
    FlushPeers();
  }
}

void Node::WaitForWrites() {
  while (fatal_.ok() && !writes_.empty()) {
    {
      std::unique_lock<std::mutex> lock(writes_mu_);
      writes_cv_.wait(lock, [this] { return writes_.front()->done; });
    }
    FinishWrites();
  }
}

void Node::Fail(const Status& s) {
  // The WAL's error is sticky: without durable storage this node must not
  // acknowledge or vote again. Stop rather than pretend.
  if (!fatal_.ok()) return;
  fatal_ = s;
  KV_LOG(kError) << "node " << cfg_.id << ": storage failed, stopping: " << s.ToString();
  loop_.Stop();
}

void Node::InstallOnWorker(Group& g, raft::Snapshot snap) {
  const raft::SnapshotMeta meta = snap.meta;
  g.last_snapshot_index = g.handed_to_workers = meta.index;
  workers_->Post(g.id, [this, &g, data = std::move(snap.data), meta] {
    Status rs = g.sm.Restore(data);
    if (!rs.ok()) {
      // The leader's snapshot does not decode: this replica cannot go on.
      KV_LOG(kFatal) << "group " << g.id << ": snapshot " << meta.index
                     << " from the leader: " << rs.ToString();
    }
    PublishProgress(g);
    Outgoing out;
    if (cfg_.sharded() && g.id == kMainGroup) {
      out.member_keys = g.sm.ScanPrefix(kMemberPrefix);
      out.member_version = g.sm.applied_index();
    }
    out.events.push_back({"snapshot", {{"group", g.id},
                                       {"event", std::string("installed")},
                                       {"index", meta.index},
                                       {"term", meta.term}}});
    PostToLoop(std::move(out));
  });
}

void Node::HandCommitted(Group& g, std::vector<raft::Entry> entries) {
  // The clients waiting on these indexes go along with the entries.
  std::vector<std::pair<raft::Index, Pending>> writes;
  const raft::Index last = entries.back().index;
  for (const raft::Entry& e : entries) {
    if (e.type == raft::EntryType::kConfChange) OnConfChangeCommitted(g, e);
  }
  while (!g.pending_writes.empty() && g.pending_writes.begin()->first <= last) {
    writes.emplace_back(g.pending_writes.begin()->first, std::move(g.pending_writes.begin()->second));
    g.pending_writes.erase(g.pending_writes.begin());
  }
  g.handed_to_workers = last;
  workers_->Post(g.id, [this, &g, entries = std::move(entries), writes = std::move(writes)]() mutable {
    ApplyOnWorker(g, entries, std::move(writes));
  });
}

void Node::ApplyOnWorker(Group& g, const std::vector<raft::Entry>& entries,
                         std::vector<std::pair<raft::Index, Pending>> writes) {
  Outgoing out;
  bool members_changed = false;
  auto write = writes.begin();
  for (const raft::Entry& e : entries) {
    ApplyResult result = ApplyResult::kOk;
    raft::ConfChange cc;
    if (e.type == raft::EntryType::kConfChange) {
      if (raft::ConfChange::Decode(e.data, &cc) && (!cc.context.empty() ||
                                                     cc.type == raft::ConfChangeType::kRemoveNode)) {
        g.sm.SetMember(e.index, cc.node,
                       cc.type == raft::ConfChangeType::kRemoveNode ? "" : cc.context);
      } else {
        g.sm.Skip(e.index);
      }
    } else if (e.data.empty()) {
      g.sm.Skip(e.index);
    } else {
      Command cmd;
      Status s = Command::Decode(e.data, &cmd);
      if (!s.ok()) {
        KV_LOG(kError) << "group " << g.id << ": entry " << e.index
                       << " holds no valid command; skipped";
        g.sm.Skip(e.index);
      } else {
        bool duplicate = false;
        result = g.sm.Apply(e.index, cmd, &duplicate);
        members_changed = members_changed || (cfg_.sharded() && g.id == kMainGroup &&
                                              std::string_view(cmd.key).substr(
                                                  0, kMemberPrefix.size()) == kMemberPrefix);
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
  while (!g.reads_waiting_apply.empty() &&
         g.reads_waiting_apply.begin()->first <= g.sm.applied_index()) {
    ServeRead(g, g.reads_waiting_apply.begin()->second, &out);
    g.reads_waiting_apply.erase(g.reads_waiting_apply.begin());
  }
  if (members_changed) {
    out.member_keys = g.sm.ScanPrefix(kMemberPrefix);
    out.member_version = g.sm.applied_index();
  }
  PublishProgress(g);
  PostToLoop(std::move(out));
}

void Node::ReadOnWorker(Group& g, raft::Index index, std::vector<Pending> reads) {
  workers_->Post(g.id, [this, &g, index, reads = std::move(reads)]() mutable {
    Outgoing out;
    for (Pending& p : reads) {
      if (g.sm.applied_index() >= index) {
        ServeRead(g, p, &out);
      } else {
        g.reads_waiting_apply.emplace(index, std::move(p));
      }
    }
    if (!out.replies.empty()) PostToLoop(std::move(out));
  });
}

void Node::PublishProgress(Group& g) {
  std::lock_guard<std::mutex> lock(g.progress_mu);
  g.progress_ = ApplyProgress{g.sm.applied_index(), g.sm.Digest(), g.sm.size()};
}

void Node::PostToLoop(Outgoing out) {
  loop_.Post([this, out = std::move(out)]() mutable { Deliver(std::move(out)); });
}

void Node::Deliver(Outgoing out) {
  if (out.member_keys) OnMemberKeys(out.member_version, *out.member_keys);
  for (const auto& [p, bytes] : out.replies) ReplyRaw(p, bytes);
  for (const auto& [topic, fields] : out.events) events_->Publish(topic, fields);
}

void Node::MaybeSnapshot(Group& g) {
  // Only once everything committed is with the strand, so that the
  // configuration we record matches the data the strand will copy.
  const raft::Index index = g.handed_to_workers;
  // Also a group the WAL has moved two segments past since its last
  // snapshot: its entries there would keep the segments on disk (a quiet
  // group of a sharded node may take many segments to reach snapshot_entries).
  const bool holds_wal = g.snapshot_segment + 2 <= wal_segment_ && index > g.last_snapshot_index;
  if (g.snapshot_in_progress || (index < g.last_snapshot_index + cfg_.snapshot_entries && !holds_wal) ||
      index != g.raft->commit()) {
    return;
  }
  g.snapshot_in_progress = true;
  g.snapshot_segment = wal_segment_;
  workers_->Post(g.id, [this, &g, index, conf = g.raft->conf_state()] {
    // The strand has applied exactly up to `index` here: copy the state.
    std::string data = g.sm.Serialize();
    // Writing and syncing the file runs on a strand of its own, beside the
    // group's applies and off the loop thread.
    workers_->Post(g.id | kSnapshotStrand, [this, &g, index, conf, data = std::move(data)]() mutable {
      raft::SnapshotMeta meta;
      Status s = storage_->SaveSnapshot(g.id, index, conf, std::move(data), &meta);
      loop_.Post([this, &g, index, meta, s]() {
        g.snapshot_in_progress = false;
        // On failure too: the next try comes after another snapshot_entries.
        g.last_snapshot_index = std::max(g.last_snapshot_index, index);
        Status cs = s;
        if (cs.ok()) {
          // The storage records it only after the writes submitted before.
          WaitForWrites();
          if (!fatal_.ok()) return;
          cs = storage_->CommitSnapshot(g.id, meta);
        }
        if (!cs.ok()) {
          KV_LOG(kWarn) << "group " << g.id << ": snapshot at " << index
                        << " not taken: " << cs.ToString();
          return;
        }
        events_->Publish("snapshot",
                         {{"group", g.id}, {"event", std::string("taken")}, {"index", index}});
        KV_LOG(kInfo) << "node " << cfg_.id << " group " << g.id << " took a snapshot at "
                      << index;
      });
    });
  });
}

}  // namespace kv::node
