// ShardManager: where each key and group lives. It routes keys to groups
// (the shard ring), computes the placement of every group's replicas and
// preferred leader from the member list, moves each group it leads toward
// that placement (rebalancing), hosts new replicas on demand, and keeps the
// cluster's view of leaders: it tells the peers which groups this node leads
// (leader hints) and remembers what they told it, so that any node can
// REDIRECT a request to the right leader. It also tells replicas that were
// removed from a group (a removed replica never learns it through Raft).
//
// An unsharded cluster has one group (layout: kMainGroup) and no ring; the
// routing and the removed notices work the same.
// Thread safety: none; the loop thread owns it.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "kv/layout.h"
#include "kv/ring.h"
#include "kvstore/node_status.h"
#include "net/peer_codec.h"
#include "node/context.h"

namespace kv::node {

// The metadata group's keys naming the cluster's members: member/<id> -> host:port.
constexpr std::string_view kMemberPrefix = "member/";

// The metadata group's key holding the placement rule (kv/ring.h) of the
// cluster, a decimal number; rule 1 while it has none. Founders and restores
// place by rule 1, which every version knows (FoundingGroups says why). The
// metadata group's leader writes the newest rule once every member has told
// it (in its leader hints) that it knows that rule, so that nodes of two
// versions never pull groups toward two placements; the rule never goes
// back. A node of an older version must not join or rejoin after that.
constexpr std::string_view kPlacementRuleKey = "placement";
// The rule the metadata group's state `meta` records.
uint32_t RecordedPlacementRule(const StateMachine& meta);

// The groups member `self` of a new cluster of `members` hosts from the
// start, each with its voters: in a sharded cluster the metadata group (on
// the first kMetaVoters members by id) and the shards the placement puts on
// it; in an unsharded one (shards = 0) the main group on every member.
std::vector<std::pair<raft::GroupId, std::vector<raft::NodeId>>> FoundingGroups(
    raft::NodeId self, const std::vector<raft::NodeId>& members, uint32_t shards,
    uint32_t replicas);

class ShardManager {
 public:
  // Creates (opens) a replica of a group here; nullptr on failure (logged).
  using HostGroup = std::function<Group*(raft::GroupId id)>;
  // Fails the requests waiting on a group this node stopped driving.
  using DropGroup = std::function<void(Group& g)>;

  ShardManager(NodeContext* ctx, HostGroup host, DropGroup drop);

  // The shard group `id` holds, or -1 (the metadata or unsharded group, or
  // no group of this cluster).
  int ShardOf(raft::GroupId id) const;
  // The group a key belongs to.
  raft::GroupId GroupForKey(std::string_view key) const;
  // The replicas group `id` should have under the current placement (empty
  // before there is one).
  std::vector<raft::NodeId> TargetReplicas(raft::GroupId id) const;
  // Whom to send a request for group `id` that this node cannot serve: the
  // leader as far as this node knows, else the placement's preferred leader
  // of a shard hosted elsewhere; kNoNode when nobody is known.
  raft::NodeId RedirectTarget(raft::GroupId id) const;
  // The shard map's version: the metadata group's applied index when the
  // members were last read from it (0: the founders from the command line).
  uint64_t map_version() const { return map_version_; }
  // Fills the shard map reply's list (sharded clusters).
  void FillShardMap(ShardMap* map) const;

  // Adopts a member list and placement rule: reconnects, recomputes the
  // placement. A rule this node does not know keeps the one in force.
  void SetMembers(uint64_t version, const std::map<raft::NodeId, HostPort>& members, uint32_t rule);
  // Sets the preferred leader of a group just opened here.
  void OnGroupOpened(Group& g) const;
  // Founders' first start: the groups the placement puts on this node, with
  // their initial voters and preferred leader.
  std::vector<std::pair<raft::GroupId, std::vector<raft::NodeId>>> FoundingGroups() const;

  // A message for a group not driven here: hosts it if the placement puts
  // it here (a new replica), else nullptr.
  Group* HostOnDemand(raft::GroupId id);
  // Every kBalanceTicks: each group this node leads moves one step toward
  // the placement (add a learner, promote it, then remove a replica no
  // longer placed) and hands leadership to the preferred leader; as the
  // metadata group's leader, moves the cluster to the newest placement rule
  // once every member knows it.
  void Tick();
  // Group g's leadership changed here: the peers hear of it after this pass.
  void OnRoleChange(Group& g, raft::Role role);
  // A committed removal of `node` from group g (sharded clusters).
  void OnRemovalCommitted(Group& g, raft::NodeId node, raft::Index index);
  // Sends the leader hints if they changed, or as the heartbeat every
  // heartbeat interval (after each pass).
  void SendHintsIfDue();

  // Peer notices.
  void OnLeaderHints(const net::LeaderHints& hints);
  void OnRemovedNotice(const net::RemovedNotice& notice);
  // A message from `from` for group g, whose configuration here no longer
  // has it: tells it it was removed (at most once a second per group).
  void TellIfRemoved(Group& g, raft::NodeId from);

 private:
  // Who leads a group this node does not host, as its leader last told us.
  struct LeaderHint {
    raft::NodeId leader = raft::kNoNode;
    raft::Term term = 0;
  };
  void ProposeNewestRule();
  void Rebalance(Group& g);
  // Wakes a hibernating replica of a group the placement no longer puts here.
  void WakeIfDisplaced(Group& g);
  void BalanceLeader(Group& g, const std::vector<raft::NodeId>& target);
  raft::NodeId KnownLeader(raft::GroupId id) const;

  NodeContext* ctx_;
  HostGroup host_;
  DropGroup drop_;
  std::unique_ptr<ShardRing> ring_;  // sharded clusters only
  std::unique_ptr<Placement> placement_;
  std::map<raft::GroupId, LeaderHint> leader_hints_;
  bool hints_dirty_ = false;  // a group's leader changed here: tell the peers
  bool beat_due_ = false;     // a heartbeat interval passed: send the hints anyway
  uint64_t map_version_ = 0;
  uint32_t placement_rule_ = kPlacementRuleRing;
  // Members whose latest leader hints said they know placement rules.
  std::set<raft::NodeId> knows_rules_;
  raft::Term rule_proposed_term_ = 0;  // the metadata group's term of the last proposal
  std::map<std::pair<raft::GroupId, raft::NodeId>, uint64_t> removed_notice_tick_;
  bool told_removed_ = false;  // unsharded: a member said this node was removed
};

}  // namespace kv::node
