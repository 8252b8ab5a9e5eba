#include "node/shard_manager.h"

#include <algorithm>
#include <charconv>

#include "common/logging.h"
#include "kv/command.h"

namespace kv::node {

namespace {

// How often a node tells its peers which groups it leads, in ticks (and at
// once whenever that changes).
constexpr uint64_t kLeaderHintTicks = 10;
// How often the leader of each group moves it toward the placement, in ticks.
constexpr uint64_t kBalanceTicks = 10;
// A replica this close to the leader's log may take over its leadership.
constexpr raft::Index kTransferLag = 100;
}  // namespace

ShardManager::ShardManager(NodeContext* ctx, HostGroup host, DropGroup drop)
    : ctx_(ctx), host_(std::move(host)), drop_(std::move(drop)) {
  if (ctx_->cfg.sharded()) ring_ = std::make_unique<ShardRing>(ctx_->cfg.shards);
}

int ShardManager::ShardOf(raft::GroupId id) const { return ShardOfGroup(id, ctx_->cfg.shards); }

raft::GroupId ShardManager::GroupForKey(std::string_view key) const {
  return ring_ ? ShardGroup(ring_->ShardOf(key)) : kMainGroup;
}

std::vector<raft::NodeId> ShardManager::TargetReplicas(raft::GroupId id) const {
  if (!placement_) return {};
  if (id == kMainGroup) {
    // The metadata group: the first (up to) kMetaVoters members by id (as
    // FoundingGroups places it).
    std::vector<raft::NodeId> ids;
    for (const auto& entry : ctx_->members) {
      if (ids.size() < kMetaVoters) ids.push_back(entry.first);
    }
    return ids;
  }
  const int shard = ShardOf(id);
  return shard < 0 ? std::vector<raft::NodeId>{} : placement_->replicas[static_cast<size_t>(shard)];
}

raft::NodeId ShardManager::KnownLeader(raft::GroupId id) const {
  const Group* g = ctx_->groups.Find(id);
  if (g != nullptr && g->raft->leader() != raft::kNoNode) return g->raft->leader();
  auto hint = leader_hints_.find(id);
  return hint == leader_hints_.end() ? raft::kNoNode : hint->second.leader;
}

raft::NodeId ShardManager::RedirectTarget(raft::GroupId id) const {
  raft::NodeId target = KnownLeader(id);
  if (target == raft::kNoNode && placement_ && ShardOf(id) >= 0 &&
      ctx_->groups.Find(id) == nullptr) {
    // A shard hosted elsewhere whose leader we have not heard of: its
    // replicas know; the preferred leader most likely leads.
    target = placement_->leader[static_cast<size_t>(ShardOf(id))];
  }
  return target;
}

void ShardManager::FillShardMap(ShardMap* map) const {
  if (!ring_ || !placement_) return;
  map->version = map_version_;
  map->replicas = ctx_->cfg.replicas;
  map->placement = placement_rule_;
  for (uint32_t shard = 0; shard < ctx_->cfg.shards; ++shard) {
    ShardInfo info;
    info.shard = shard;
    info.group = ShardGroup(shard);
    info.replicas = placement_->replicas[shard];
    info.leader = KnownLeader(info.group);
    auto it = ctx_->members.find(info.leader);
    if (it != ctx_->members.end()) info.leader_address = it->second.ToString();
    map->list.push_back(std::move(info));
  }
}

uint32_t RecordedPlacementRule(const StateMachine& meta) {
  std::string value;
  if (!meta.Get(kPlacementRuleKey, &value)) return kPlacementRuleRing;
  uint32_t rule = 0;
  const auto [end, error] = std::from_chars(value.data(), value.data() + value.size(), rule);
  // 0 is no rule: SetMembers keeps the one in force.
  return error == std::errc() && end == value.data() + value.size() ? rule : 0;
}

void ShardManager::SetMembers(uint64_t version, const std::map<raft::NodeId, HostPort>& members,
                              uint32_t rule) {
  map_version_ = version;
  ctx_->members = members;
  for (const auto& entry : ctx_->members) ctx_->ConnectPeer(entry.first);
  if (!ring_) return;
  if (rule < kPlacementRuleRing || rule > kNewestPlacementRule) {
    // Only a newer version writes such a rule, once every member runs it.
    KV_LOG(kError) << "shard map version " << version << " places replicas by rule " << rule
                   << ", which this node does not know; it keeps rule " << placement_rule_;
  } else if (rule != placement_rule_) {
    placement_rule_ = rule;
    KV_LOG(kInfo) << "placement rule " << rule << " from shard map version " << version
                  << " on: replicas move to where it puts them";
  }
  std::vector<raft::NodeId> ids;
  for (const auto& entry : ctx_->members) ids.push_back(entry.first);
  PlacementConfig pc;
  pc.shards = ctx_->cfg.shards;
  pc.replicas = ctx_->cfg.replicas;
  pc.rule = placement_rule_;
  // From the members alone, not from the placement before: every node must
  // prefer the same leaders, whatever map versions it saw (kv/ring.h).
  placement_ = std::make_unique<Placement>(Place(ids, pc));
  for (const auto& [id, g] : ctx_->groups) {
    if (g->shard >= 0) g->preferred_leader = placement_->leader[static_cast<size_t>(g->shard)];
  }
  if (version == 0) return;
  std::string list;
  for (raft::NodeId id : ids) list += (list.empty() ? "" : ",") + std::to_string(id);
  KV_LOG(kInfo) << "shard map version " << version << ": members " << list;
  ShardsEvent event;
  event.version = version;
  event.members = ids.size();
  ctx_->events->Publish(event);
  if (!Contains(ids, ctx_->cfg.id)) {
    KV_LOG(kWarn) << "node " << ctx_->cfg.id << " is not a member of the cluster (map version "
                  << version << "); once its shards have moved it can be shut down";
  }
}

void ShardManager::OnGroupOpened(Group& g) const {
  g.shard = ShardOf(g.id);
  if (g.shard >= 0 && placement_) {
    g.preferred_leader = placement_->leader[static_cast<size_t>(g.shard)];
  }
  if (ring_) {
    // A replica that applied its own removal stays stopped until the
    // placement brings the group back.
    const raft::ConfState cs = g.raft->conf_state();
    g.removed = !cs.voters.empty() && !Contains(cs.voters, ctx_->cfg.id) &&
                !Contains(cs.learners, ctx_->cfg.id);
  }
}

std::vector<std::pair<raft::GroupId, std::vector<raft::NodeId>>> FoundingGroups(
    raft::NodeId self, const std::vector<raft::NodeId>& members, uint32_t shards,
    uint32_t replicas) {
  std::vector<raft::NodeId> ids = members;
  std::sort(ids.begin(), ids.end());
  std::vector<std::pair<raft::GroupId, std::vector<raft::NodeId>>> out;
  if (shards == 0) {
    out.emplace_back(kMainGroup, ids);
    return out;
  }
  // The metadata group: the first (up to) kMetaVoters members by id.
  const std::vector<raft::NodeId> meta(ids.begin(),
                                       ids.begin() + std::min(ids.size(), kMetaVoters));
  if (Contains(meta, self)) out.emplace_back(kMainGroup, meta);
  // Always rule 1, the rule every version knows. Each founder (or restore)
  // bootstraps its groups from its own computation, before it has heard
  // from anyone, so founders of different versions must still agree on
  // every group's first voters: were one to compute {1, 2, 4} where the
  // others compute {1, 2, 3}, the group would start with two configurations
  // whose logs look alike (one entry per voter in term 1), and {1, 4} and
  // {2, 3} could each elect a leader and commit. The cluster moves to a
  // newer rule later, once every member knows it (kPlacementRuleKey).
  PlacementConfig pc;
  pc.shards = shards;
  pc.replicas = replicas;
  pc.rule = kPlacementRuleRing;
  const Placement placement = Place(ids, pc);
  for (uint32_t shard = 0; shard < shards; ++shard) {
    if (Contains(placement.replicas[shard], self)) {
      out.emplace_back(ShardGroup(shard), placement.replicas[shard]);
    }
  }
  return out;
}

std::vector<std::pair<raft::GroupId, std::vector<raft::NodeId>>> ShardManager::FoundingGroups()
    const {
  std::vector<raft::NodeId> ids;
  for (const auto& entry : ctx_->members) ids.push_back(entry.first);
  return node::FoundingGroups(ctx_->cfg.id, ids, ctx_->cfg.shards, ctx_->cfg.replicas);
}

Group* ShardManager::HostOnDemand(raft::GroupId id) {
  if (!ring_ || map_version_ == 0 || !Contains(TargetReplicas(id), ctx_->cfg.id)) {
    return nullptr;
  }
  if (Group* g = ctx_->groups.FindHosted(id)) {
    // Placed here again after a removal: the leader brings the log up to date.
    g->removed = false;
    KV_LOG(kInfo) << "group " << id << ": placed on this node again";
    return g;
  }
  Group* g = host_(id);
  if (g != nullptr) KV_LOG(kInfo) << "group " << id << ": new replica on this node";
  return g;
}

void ShardManager::Tick() {
  if (!ring_) return;
  if (ctx_->ticks % kLeaderHintTicks == 0) hints_dirty_ = true;
  // The hints are also this node's heartbeat to its peers (hibernation.h).
  if (ctx_->ticks % static_cast<uint64_t>(ctx_->cfg.heartbeat_ticks) == 0) beat_due_ = true;
  if (ctx_->ticks % kBalanceTicks == 0) {
    ProposeNewestRule();
    for (const auto& [id, g] : ctx_->groups) {
      Rebalance(*g);
      WakeIfDisplaced(*g);
    }
  }
}

void ShardManager::WakeIfDisplaced(Group& g) {
  raft::Raft& r = *g.raft;
  if (g.removed || !r.hibernating() || r.role() != raft::Role::kFollower || map_version_ == 0 ||
      g.id == kMainGroup || Contains(TargetReplicas(g.id), ctx_->cfg.id)) {
    return;
  }
  // A sleeping replica placed here no more may have missed the entry that
  // removed it: awake, it campaigns once its leader's lease is over, and a
  // member answers with a removed notice (TellIfRemoved).
  r.PeerDown(r.leader());
}

void ShardManager::ProposeNewestRule() {
  Group* meta = ctx_->groups.Find(kMainGroup);
  if (placement_rule_ == kNewestPlacementRule || map_version_ == 0 || meta == nullptr ||
      !meta->is_leader() || rule_proposed_term_ == meta->raft->term()) {
    return;
  }
  for (const auto& entry : ctx_->members) {
    if (entry.first != ctx_->cfg.id && knows_rules_.count(entry.first) == 0) return;
  }
  Command cmd;
  cmd.op = OpType::kPut;
  cmd.key = std::string(kPlacementRuleKey);
  cmd.value = std::to_string(kNewestPlacementRule);
  // Unavailable (no entry of this term committed yet, say): next pass.
  if (!meta->Propose(cmd.Encode()).ok()) return;
  rule_proposed_term_ = meta->raft->term();
  KV_LOG(kInfo) << "every member knows placement rule " << kNewestPlacementRule
                << ": recording it in the metadata group";
}

void ShardManager::OnRoleChange(Group& g, raft::Role role) {
  if (role == raft::Role::kLeader) g.leader_since_tick = ctx_->ticks;
  hints_dirty_ = ring_ != nullptr;
}

void ShardManager::Rebalance(Group& g) {
  raft::Raft& r = *g.raft;
  if (g.removed || !g.is_leader() || map_version_ == 0) return;
  const std::vector<raft::NodeId> target = TargetReplicas(g.id);
  if (target.empty()) return;
  const raft::ConfState cs = r.conf_state();
  // One change at a time, additions first, so that the group never has
  // fewer replicas than the placement asks for while it moves.
  auto propose = [&](raft::ConfChangeType type, raft::NodeId node) {
    auto it = ctx_->members.find(node);
    raft::ConfChange cc{type, node,
                        type == raft::ConfChangeType::kRemoveNode || it == ctx_->members.end()
                            ? std::string()
                            : it->second.ToString()};
    if (g.ProposeConfChange(cc).ok()) {
      static const char* kChange[] = {"adding learner", "promoting", "removing"};
      KV_LOG(kInfo) << "group " << g.id << ": " << kChange[static_cast<int>(type)] << " " << node
                    << " (shard map version " << map_version_ << ")";
    }
  };
  for (raft::NodeId t : target) {
    if (!Contains(cs.voters, t) && !Contains(cs.learners, t) && ctx_->members.count(t) != 0) {
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
    if (v != ctx_->cfg.id) return propose(raft::ConfChangeType::kRemoveNode, v);
  }
  BalanceLeader(g, target);
}

void ShardManager::BalanceLeader(Group& g, const std::vector<raft::NodeId>& target) {
  // Leadership belongs with the placement's preferred leader, so that leaders
  // spread evenly; a leader the placement moved away hands it to any
  // caught-up replica that stays. Not again soon after a try: a preferred
  // leader that keeps failing must not cause churn.
  raft::Raft& r = *g.raft;
  const raft::ConfState cs = r.conf_state();
  const uint64_t ticks = ctx_->ticks;
  const bool leaving = !Contains(target, ctx_->cfg.id);
  const uint64_t settle = 2 * static_cast<uint64_t>(ctx_->cfg.election_ticks);
  const uint64_t cooldown = leaving ? settle : 10 * settle;
  if (r.lead_transferee() != raft::kNoNode || (!leaving && ticks < g.leader_since_tick + settle) ||
      (g.last_transfer_tick != 0 && ticks < g.last_transfer_tick + cooldown)) {
    return;
  }
  auto caught_up = [&](raft::NodeId n) {
    const raft::Progress* pr = r.ProgressOf(n);
    return n != ctx_->cfg.id && Contains(cs.voters, n) && pr != nullptr &&
           pr->match + kTransferLag >= r.last_index();
  };
  raft::NodeId to = raft::kNoNode;
  if (g.preferred_leader != ctx_->cfg.id && Contains(target, g.preferred_leader) &&
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
  g.last_transfer_tick = ticks;
  KV_LOG(kInfo) << "group " << g.id << ": handing leadership to " << to
                << (leaving ? " (this node is leaving the group)" : " (preferred)");
  r.TransferLeader(to);
}

void ShardManager::OnRemovalCommitted(Group& g, raft::NodeId node, raft::Index index) {
  if (node != ctx_->cfg.id) {
    // A replica moved away: tell it (the leader writes to it no more).
    TellIfRemoved(g, node);
  } else if (!Contains(TargetReplicas(g.id), ctx_->cfg.id)) {
    g.removed = true;
    hints_dirty_ = true;
    KV_LOG(kInfo) << "group " << g.id << ": this replica was removed at " << index
                  << "; it is no longer served here";
  }
}

void ShardManager::SendHintsIfDue() {
  if (!hints_dirty_ && !beat_due_) return;
  net::LeaderHints hints;
  hints.from = ctx_->cfg.id;
  for (const auto& [id, g] : ctx_->groups) {
    if (!g->removed && g->is_leader()) hints.leads.emplace_back(id, g->raft->term());
  }
  hints.map_version = map_version_;
  hints.placement_rule = placement_rule_;
  // A heartbeat leaves the members out: they change rarely, and cost bytes.
  if (hints_dirty_) {
    for (const auto& [node, hp] : ctx_->members)
      hints.members.emplace_back(node, ctx_->RecordOf(node, hp));
  }
  hints_dirty_ = beat_due_ = false;
  ctx_->peers->Broadcast(net::EncodeLeaderHints(hints));
}

void ShardManager::OnLeaderHints(const net::LeaderHints& hints) {
  if (hints.placement_rule != 0) {
    knows_rules_.insert(hints.from);
  } else {
    knows_rules_.erase(hints.from);  // an older version (again)
  }
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
    std::map<raft::NodeId, std::string> keys;
    for (const auto& [node, record] : hints.members) {
      HostPort hp;
      if (node == raft::kNoNode || !ParseMemberRecord(record, &hp, &keys[node]).ok()) return;
      members[node] = hp;
    }
    for (const auto& [node, key] : keys) ctx_->LearnKey(node, key);
    // The rule never goes back: a sender of an older version knows none.
    SetMembers(hints.map_version, members, std::max(hints.placement_rule, placement_rule_));
  }
}

void ShardManager::OnRemovedNotice(const net::RemovedNotice& notice) {
  Group* found = ctx_->groups.Find(notice.group);
  if (found == nullptr) return;
  Group& g = *found;
  // Only from a voter of the group as this replica knows it, in its term or
  // later: not from a stranger, nor a notice replayed from an earlier term.
  if (!Contains(g.raft->conf_state().voters, notice.from) || notice.term < g.raft->term()) {
    KV_LOG(kDebug) << "group " << g.id << ": removed notice from " << notice.from << " in term "
                   << notice.term << " ignored (not a voter here, or an older term)";
    return;
  }
  if (!ring_) {
    if (!Contains(g.raft->conf_state().voters, ctx_->cfg.id) || told_removed_) return;
    told_removed_ = true;
    KV_LOG(kWarn) << "node " << ctx_->cfg.id << " was removed from the cluster (node "
                  << notice.from << " says so); it serves nothing more and can be shut down";
    return;
  }
  // Only a group the placement no longer puts here: a replica still placed
  // here stays, and its leader adds it back.
  if (map_version_ == 0 || Contains(TargetReplicas(g.id), ctx_->cfg.id)) return;
  g.removed = true;
  drop_(g);
  hints_dirty_ = true;
  KV_LOG(kInfo) << "group " << g.id << ": node " << notice.from
                << " says this replica was removed; it is no longer served here";
  MembershipEvent event;
  event.group = g.id;
  event.change = "left";
  event.member = ctx_->cfg.id;
  ctx_->events->Publish(event);
}

void ShardManager::TellIfRemoved(Group& g, raft::NodeId from) {
  const raft::ConfState cs = g.raft->conf_state();
  if (cs.voters.empty() || Contains(cs.voters, from) || Contains(cs.learners, from)) return;
  uint64_t& last = removed_notice_tick_[{g.id, from}];
  const uint64_t second = 1000 / static_cast<uint64_t>(ctx_->cfg.tick_ms) + 1;
  if (last != 0 && ctx_->ticks < last + second) return;
  last = ctx_->ticks;
  ctx_->peers->SendNow(from, net::EncodeRemovedNotice({ctx_->cfg.id, g.id, g.raft->term()}));
}

}  // namespace kv::node
