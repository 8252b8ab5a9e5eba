// The randomized property run (property.h) over many seeds on 3 and 5 nodes.
// A failure names the seed and the raft_soak command that replays it.
//
// RAFT_PROPERTY_SEEDS (seeds per test case) and RAFT_PROPERTY_STEPS
// override the defaults, kept small so that the whole test/raft suite runs in
// well under a minute under ASAN; raft_soak runs the long mode.
#include "test/raft/property.h"

#include <catch2/catch.hpp>
#include <cstdlib>
#include <string>

namespace kv::raft::sim {
namespace {

uint64_t EnvOr(const char* name, uint64_t def) {
  const char* v = std::getenv(name);
  return v ? std::strtoull(v, nullptr, 10) : def;
}

void RunSeeds(int nodes, uint64_t first, uint64_t default_seeds, bool lease_reads = false) {
  const uint64_t seeds = EnvOr("RAFT_PROPERTY_SEEDS", default_seeds);
  const int64_t steps = static_cast<int64_t>(EnvOr("RAFT_PROPERTY_STEPS", 2000));
  uint64_t busy = 0, full_windows = 0;
  for (uint64_t s = first; s < first + seeds; ++s) {
    PropertyOptions po;
    po.seed = s;
    po.nodes = nodes;
    po.steps = steps;
    po.lease_reads = lease_reads;
    PropertyResult r = RunProperty(po);
    if (!r.ok) {
      // Deterministic: run it again keeping the recent events for the report.
      po.trace_keep = 200;
      r = RunProperty(po);
      FAIL_CHECK("seed " << s << " on " << nodes << " nodes failed; replay with:\n  "
                         << ReplayCommand(po) << "\n"
                         << r.failure);
      return;  // one report per test case is enough to read
    }
    busy += r.busy;
    full_windows += r.full_windows;
  }
  // Seeds that draw small limits reach them: the paths they guard did run.
  if (seeds >= 10) {
    CHECK(busy > 0);
    CHECK(full_windows > 0);
  }
  SUCCEED(seeds << " seeds on " << nodes << " nodes, " << steps << " chaos steps each");
}

// Seeds are split over several test cases so that ctest -j runs them in parallel.
TEST_CASE("Property: 3 nodes under random faults, crashes and membership changes (seeds 1-40)") {
  RunSeeds(3, 1, 40);
}

TEST_CASE("Property: 3 nodes under random faults, crashes and membership changes (seeds 41-80)") {
  RunSeeds(3, 41, 40);
}

TEST_CASE(
    "Property: 5 nodes under random faults, crashes and membership changes (seeds 1001-1025)") {
  RunSeeds(5, 1001, 25);
}

TEST_CASE(
    "Property: 5 nodes under random faults, crashes and membership changes (seeds 1026-1050)") {
  RunSeeds(5, 1026, 25);
}

TEST_CASE(
    "Property: lease reads stay linearizable under random faults (3 nodes, seeds 2001-2030)") {
  RunSeeds(3, 2001, 30, /*lease_reads=*/true);
}

}  // namespace
}  // namespace kv::raft::sim
