#include "node/group.h"

#include <catch2/catch.hpp>
#include <memory>

#include "raft/memory_storage.h"

namespace kv::node {

TEST_CASE("Group: campaigns and leader changes counted from the soft states Ready shows") {
  using raft::Role;
  Group g;
  auto ready_shows = [&g](Role role, raft::NodeId leader) {
    g.ObserveRoleChange(raft::SoftState{leader, role});
  };
  ready_shows(Role::kFollower, 2);  // the first leader learned: no change
  CHECK(g.counters.leader_changes == 0);
  CHECK(g.counters.elections == 0);

  ready_shows(Role::kPreCandidate, raft::kNoNode);  // a campaign, its pre-vote...
  ready_shows(Role::kCandidate, raft::kNoNode);     // ...then its vote: one
  CHECK(g.counters.elections == 1);
  ready_shows(Role::kLeader, 1);
  CHECK(g.counters.elections == 1);
  CHECK(g.counters.leader_changes == 1);

  ready_shows(Role::kFollower, 3);  // deposed
  CHECK(g.counters.leader_changes == 2);
  ready_shows(Role::kCandidate, raft::kNoNode);  // a transfer: no pre-vote
  CHECK(g.counters.elections == 2);
  ready_shows(Role::kFollower, 3);  // lost to the same leader: no change
  CHECK(g.counters.leader_changes == 2);

  ready_shows(Role::kPreCandidate, raft::kNoNode);
  ready_shows(Role::kFollower, raft::kNoNode);  // pre-vote lost
  CHECK(g.counters.elections == 3);
  // A single voter's campaign is won between two Readies.
  ready_shows(Role::kLeader, 1);
  CHECK(g.counters.elections == 4);
  CHECK(g.counters.leader_changes == 3);
}

TEST_CASE("Group: the entries proposed are counted, the refused ones not") {
  raft::MemoryStorage storage;
  raft::Config rc;
  rc.id = 1;
  rc.group = 1;
  rc.peers = {1};
  rc.storage = &storage;
  Group g;
  g.raft = std::make_unique<raft::Raft>(rc);
  REQUIRE(g.raft->status().ok());
  CHECK(g.Propose("refused").IsUnavailable());  // not the leader
  CHECK(g.counters.proposals == 0);

  g.raft->Campaign();  // a single voter wins at once
  REQUIRE(g.is_leader());
  CHECK(g.Propose("a").ok());
  CHECK(g.Propose("b").ok());
  CHECK(g.counters.proposals == 2);
}

}  // namespace kv::node
