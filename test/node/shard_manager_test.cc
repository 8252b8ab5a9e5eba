#include "node/shard_manager.h"

#include <algorithm>
#include <catch2/catch.hpp>

namespace kv::node {
namespace {

TEST_CASE("shard manager: founders give every group rule 1's voters, whatever the newest rule") {
  // Founders and restores bootstrap their groups before they hear from
  // anyone: founders of older versions compute rule 1, so these must too.
  const std::vector<raft::NodeId> members = {5, 3, 1, 4, 2};
  PlacementConfig ring;
  ring.shards = 16;
  ring.rule = kPlacementRuleRing;
  const Placement placement = Place(members, ring);
  PlacementConfig draft = ring;
  draft.rule = kPlacementRuleDraft;
  REQUIRE(Place(members, draft) != placement);  // else this test proves nothing
  for (raft::NodeId self : members) {
    size_t shards = 0;
    for (const auto& [group, voters] : FoundingGroups(self, members, 16, 3)) {
      if (group == kMainGroup) {
        CHECK(voters == std::vector<raft::NodeId>{1, 2, 3, 4, 5});
        continue;
      }
      const int shard = ShardOfGroup(group, 16);
      REQUIRE(shard >= 0);
      CHECK(voters == placement.replicas[static_cast<size_t>(shard)]);
      ++shards;
    }
    size_t placed = 0;
    for (const auto& replicas : placement.replicas) {
      placed += std::count(replicas.begin(), replicas.end(), self);
    }
    CHECK(shards == placed);
  }
}

}  // namespace
}  // namespace kv::node
