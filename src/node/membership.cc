#include "node/membership.h"

#include <algorithm>
#include <chrono>

#include "common/logging.h"
#include "kv/command.h"
#include "net/curve_keys.h"
#include "node/client_front.h"
#include "node/shard_manager.h"

namespace kv::node {

namespace {

// How long a joining node tries to reach the member it joins through.
constexpr auto kJoinDeadline = std::chrono::seconds(30);
constexpr auto kJoinAttempt = std::chrono::milliseconds(1000);
}  // namespace

Status Membership::LearnMembersFrom(zmq::context_t* zmq, NodeContext* ctx,
                                    const std::string& endpoint) {
  // The member we join tells us every member's address; until it answers we
  // could not even reply to the leader.
  const NodeConfig& cfg = ctx->cfg;
  std::string server_key;
  if (cfg.curve()) {
    // Authenticated both ways, as any client: its key from --peer-keys.
    for (const auto& [node, hp] : cfg.peer_key_addresses) {
      if (hp.ToString() == endpoint) server_key = cfg.peer_keys.at(node);
    }
    if (server_key.empty()) {
      return Status::InvalidArgument("--join " + endpoint +
                                     " with --key needs that member's key: " +
                                     "a line \"ID PUBLIC-KEY " + endpoint + "\" in --peer-keys");
    }
  }
  const auto deadline = std::chrono::steady_clock::now() + kJoinDeadline;
  for (uint64_t id = 1; std::chrono::steady_clock::now() < deadline; ++id) {
    // A new connection each time: a secure member refuses this node's key
    // until `kvctl member add` has recorded it, and ZeroMQ does not dial a
    // refusing peer again.
    zmq::socket_t sock(*zmq, zmq::socket_type::dealer);
    sock.set(zmq::sockopt::linger, 0);
    if (cfg.curve()) {
      sock.set(zmq::sockopt::curve_serverkey, server_key);
      sock.set(zmq::sockopt::curve_publickey, cfg.public_key);
      sock.set(zmq::sockopt::curve_secretkey, cfg.secret_key);
    }
    sock.connect("tcp://" + endpoint);
    if (id == 3 && cfg.curve()) {
      KV_LOG(kInfo) << "no answer from " << endpoint << " yet; a secure cluster answers once "
                    << "'kvctl member add " << cfg.id << " " << cfg.self().ToString()
                    << " --pub ...' has recorded this node's key";
    }
    net::ClientRequest req;
    req.op = net::ClientOp::kShards;
    req.id = id;
    (void)sock.send(zmq::buffer(net::EncodeClientRequest(req)), zmq::send_flags::dontwait);
    zmq::pollitem_t item{static_cast<void*>(sock), 0, ZMQ_POLLIN, 0};
    zmq::poll(&item, 1, kJoinAttempt);
    zmq::message_t msg;
    if (!(item.revents & ZMQ_POLLIN) || !sock.recv(msg, zmq::recv_flags::dontwait)) continue;
    ShardMap map;
    uint64_t reply_id = 0;
    if (!net::DecodeShardsReply(msg.to_string_view(), &reply_id, &map).ok()) continue;
    // A different ring would send keys to other shards than the cluster does.
    if (map.shards != cfg.shards || (map.shards > 0 && map.replicas != cfg.replicas)) {
      return Status::InvalidArgument("the cluster at " + endpoint + " has " +
                                     (map.shards == 0
                                          ? std::string("no shards")
                                          : std::to_string(map.shards) + " shards of " +
                                                std::to_string(map.replicas) + " replicas") +
                                     "; start this node with the same --shards and --replicas");
    }
    for (const auto& [node, address] : map.members) {
      HostPort hp;
      if (node != cfg.id && ParseHostPort(address, &hp).ok()) ctx->members[node] = hp;
    }
    for (const auto& [node, key] : map.member_keys) {
      if (node != cfg.id && net::IsZ85Key(key)) ctx->LearnKey(node, key);
    }
    KV_LOG(kInfo) << "joining through " << endpoint << ": " << map.members.size()
                  << " members known";
    return Status::OK();
  }
  return Status::Unavailable("cannot reach " + endpoint + " to join the cluster");
}

Status Membership::NewMemberKey(const net::ClientRequest& req, std::string* key) const {
  if (!req.pub.empty() && !net::IsZ85Key(req.pub)) {
    return Status::InvalidArgument("\"pub\" is not a public key (40 characters of Z85)");
  }
  if (!ctx_->cfg.curve()) {
    if (!req.pub.empty()) return Status::InvalidArgument("this cluster does not use keys");
    return Status::OK();
  }
  auto known = ctx_->member_keys.find(req.node);
  *key = !req.pub.empty() ? req.pub : known != ctx_->member_keys.end() ? known->second : "";
  if (key->empty()) {
    return Status::InvalidArgument("this cluster needs node " + std::to_string(req.node) +
                                   "'s public key: kvctl member add ... --pub NAME.pub");
  }
  return Status::OK();
}

void Membership::Handle(Pending p, const net::ClientRequest& req) {
  if (ctx_->cfg.sharded()) return HandleSharded(std::move(p), req);
  net::ClientReply reply;
  reply.status = net::ReplyStatus::kError;
  Group* found = ctx_->groups.Find(kMainGroup);
  if (found == nullptr || !found->is_leader()) return front_->RedirectOrUnavailable(p, kMainGroup);
  Group& g = *found;
  raft::ConfChange cc;
  cc.node = req.node;
  if (req.op == net::ClientOp::kMemberAdd) {
    HostPort hp;
    std::string key;
    Status s = ParseHostPort(req.address, &hp);
    if (s.ok()) s = NewMemberKey(req, &key);
    if (!s.ok()) {
      reply.error = s.message();
      return front_->Reply(p, reply);
    }
    cc.type = raft::ConfChangeType::kAddLearner;
    cc.context = MemberRecord(hp, key);
    if (Contains(g.raft->conf_state().learners, req.node)) {
      // Already a learner (an earlier add timed out): resume, promote it.
      g.joining[req.node] = Joining{std::move(p), cc.context, false};
      return;
    }
  } else {
    cc.type = raft::ConfChangeType::kRemoveNode;
  }
  raft::Index index = 0;
  Status s = g.ProposeConfChange(cc, &index);
  if (!s.ok()) {
    if (s.IsUnavailable()) reply.status = net::ReplyStatus::kUnavailable;
    reply.error = s.message();
    return front_->Reply(p, reply);
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

void Membership::HandleSharded(Pending p, const net::ClientRequest& req) {
  Group* meta = ctx_->groups.Find(kMainGroup);
  if (meta == nullptr || !meta->is_leader()) return front_->RedirectOrUnavailable(p, kMainGroup);
  const std::map<raft::NodeId, HostPort>& members = ctx_->members;
  net::ClientReply reply;
  reply.status = net::ReplyStatus::kError;
  Command cmd;
  cmd.key = std::string(kMemberPrefix) + std::to_string(req.node);
  if (!members_seeded_) {
    reply.status = net::ReplyStatus::kUnavailable;
    reply.error = "the cluster's metadata is not initialized yet; retry";
  } else if (req.op == net::ClientOp::kMemberAdd) {
    HostPort hp;
    std::string key;
    Status s = ParseHostPort(req.address, &hp);
    if (s.ok()) s = NewMemberKey(req, &key);
    for (const auto& [id, known] : members) {
      if (s.ok() && id != req.node && known.ToString() == hp.ToString()) {
        s = Status::InvalidArgument("address " + hp.ToString() + " belongs to node " +
                                    std::to_string(id));
      }
    }
    auto same = members.find(req.node);
    if (s.ok() && same != members.end() && same->second.ToString() != hp.ToString()) {
      s = Status::InvalidArgument("node " + std::to_string(req.node) + " is a member at " +
                                  same->second.ToString() + "; remove it first");
    }
    if (s.ok()) {
      cmd.op = OpType::kPut;
      cmd.value = MemberRecord(hp, key);
    } else {
      reply.error = s.message();
    }
  } else if (members.count(req.node) == 0) {
    reply.error = "node " + std::to_string(req.node) + " is not a member";
  } else if (members.size() == 1) {
    reply.error = "cannot remove the last member";
  } else {
    cmd.op = OpType::kDelete;
  }
  if (!reply.error.empty()) return front_->Reply(p, reply);
  // Recorded like a write (answered when applied); the groups then move.
  front_->ProposeWrite(*meta, std::move(p), cmd);
}

void Membership::Tick(Group& g) {
  PromoteCaughtUpLearners(g);
  if (ctx_->cfg.sharded() && g.id == kMainGroup) SeedMembers(g);
}

void Membership::PromoteCaughtUpLearners(Group& g) {
  if (g.joining.empty() || !g.is_leader()) return;
  const raft::ConfState cs = g.raft->conf_state();
  for (auto it = g.joining.begin(); it != g.joining.end();) {
    const raft::NodeId node = it->first;
    if (Contains(cs.voters, node)) {
      front_->Reply(it->second.client, net::ClientReply{});
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
      it->second.promoting = g.ProposeConfChange(cc).ok();
    }
    ++it;
  }
}

void Membership::FailJoining(Group& g) {
  net::ClientReply unknown;
  unknown.status = net::ReplyStatus::kUnknown;
  unknown.error = "leadership lost while adding the member; check kvctl members";
  for (const auto& entry : g.joining) front_->Reply(entry.second.client, unknown);
  g.joining.clear();
}

void Membership::SeedMembers(Group& meta) {
  raft::Raft& r = *meta.raft;
  if (members_seeded_ || !meta.is_leader() || seeding_term_ == r.term()) return;
  seeding_term_ = r.term();
  for (const auto& [id, hp] : ctx_->members) {
    Command cmd;
    cmd.op = OpType::kPut;
    cmd.key = std::string(kMemberPrefix) + std::to_string(id);
    cmd.value = ctx_->RecordOf(id, hp);
    // Unavailable (no entry of this term committed yet, say): next term.
    if (!meta.Propose(cmd.Encode()).ok()) seeding_term_ = 0;
  }
}

void Membership::OnMemberKeys(uint64_t version, const std::map<std::string, std::string>& keys,
                              uint32_t placement_rule) {
  if (keys.empty()) return;  // not seeded yet: the founders stand
  members_seeded_ = true;
  if (version <= shards_->map_version()) return;
  std::map<raft::NodeId, HostPort> members;
  for (const auto& [key, record] : keys) {
    uint64_t id = 0;
    HostPort hp;
    std::string public_key;
    const std::string digits = key.substr(kMemberPrefix.size());
    if (digits.empty() || digits.size() > 19 ||
        digits.find_first_not_of("0123456789") != std::string::npos ||
        (id = std::stoull(digits)) == raft::kNoNode ||
        !ParseMemberRecord(record, &hp, &public_key).ok()) {
      KV_LOG(kError) << "metadata key " << key << " = " << record << " is malformed; ignored";
      continue;
    }
    members[id] = hp;
    ctx_->LearnKey(id, public_key);
  }
  if (!members.empty()) shards_->SetMembers(version, members, placement_rule);
}

void Membership::OnConfChangeCommitted(Group& g, const raft::Entry& e) {
  raft::ConfChange cc;
  if (!raft::ConfChange::Decode(e.data, &cc)) return;
  HostPort hp;
  if (cc.type == raft::ConfChangeType::kRemoveNode && ctx_->cfg.sharded()) {
    shards_->OnRemovalCommitted(g, cc.node, e.index);
  } else if (cc.type == raft::ConfChangeType::kRemoveNode) {
    if (cc.node == ctx_->cfg.id) {
      KV_LOG(kWarn) << "node " << ctx_->cfg.id << " was removed from the cluster at index "
                    << e.index << "; it serves nothing more and can be shut down";
    } else {
      // The leader writes to it no more: tell it; the connection closes after
      // sending it (PeerTransport::Disconnect lingers briefly).
      shards_->TellIfRemoved(g, cc.node);
      ctx_->peers->Disconnect(cc.node);
      ctx_->members.erase(cc.node);
      ctx_->member_keys.erase(cc.node);
    }
  } else if (std::string key; ParseMemberRecord(cc.context, &hp, &key).ok()) {
    ctx_->members[cc.node] = hp;
    ctx_->LearnKey(cc.node, key);
    ctx_->ConnectPeer(cc.node);
  }
  // The core applies membership changes at commit: its configuration is
  // current here.
  const raft::ConfState cs = g.raft->conf_state();
  static const char* kChange[] = {"add-learner", "add-voter", "remove"};
  MembershipEvent event;
  event.group = g.id;
  event.index = e.index;
  event.change = kChange[static_cast<int>(cc.type)];
  event.member = cc.node;
  event.voters = cs.voters.size();
  event.learners = cs.learners.size();
  ctx_->events->Publish(event);
  KV_LOG(kInfo) << "membership: " << kChange[static_cast<int>(cc.type)] << " " << cc.node << " at "
                << e.index;
}

}  // namespace kv::node
