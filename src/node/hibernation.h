// Hibernation: the node's part in letting idle groups sleep (raft.h,
// "Hibernation"). A hibernating group sends no heartbeats of its own, so the
// node watches its peers for it. Every frame from a peer shows that the
// peer's loop runs (its leader hints go out every heartbeat interval, see
// ShardManager), and the hints list every group the peer leads. A
// hibernating follower whose leader's node falls silent for an election
// timeout, or stops listing the group at the follower's term (it stepped
// down, or restarted within that time), and a hibernating leader with a
// silent member, hear of it through Raft::PeerDown.
//
// Groups hibernate in sharded clusters, where many idle groups share a few
// node pairs; an unsharded cluster's one group keeps its heartbeats.
// Thread safety: none; the loop thread owns it.
#pragma once

#include <cstdint>
#include <map>
#include <set>
#include <utility>
#include <vector>

#include "net/peer_codec.h"
#include "node/context.h"

namespace kv::node {

class Hibernation {
 public:
  explicit Hibernation(NodeContext* ctx) : ctx_(ctx) {}

  // Ticks a leader waits with nothing to do before its group hibernates
  // (raft::Config::hibernate_tick); 0: groups never hibernate.
  int IdleTicks() const;

  // Any authenticated frame from `node`.
  void Heard(raft::NodeId node);
  // A peer's leader hints: hibernating followers it no longer leads wake.
  void OnLeaderHints(const net::LeaderHints& hints);
  // Once a tick: PeerDown to the hibernating groups of silent peers.
  void Tick();

 private:
  bool Silent(raft::NodeId node) const;

  NodeContext* ctx_;
  std::map<raft::NodeId, uint64_t> heard_tick_;  // the last frame from each peer
  // Each peer's last leader hints, sorted.
  std::map<raft::NodeId, std::vector<std::pair<raft::GroupId, raft::Term>>> last_leads_;
  std::set<raft::NodeId> silent_;  // logged as silent, not heard since
};

}  // namespace kv::node
