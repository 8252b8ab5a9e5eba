// The randomized property run shared by property_test.cc and raft_soak.
//
// One seed is one run: a Cluster whose options (network quality, disk
// delays, batching limits, in-flight windows, uncommitted log limits,
// compaction interval, PreVote/CheckQuorum) are drawn from the seed, driven
// through alternating chaos and calm phases. During chaos: proposals,
// ReadIndex reads, message drops, duplicates and delays (or ordered links of
// little bandwidth), one-way and two-way partitions, crashes and restarts,
// slow disks, leadership transfers and membership changes (add learner,
// promote, remove, the leader included). Every step runs the cluster's
// safety checks. Each calm phase heals everything and checks liveness: a
// leader within a bounded number of ticks, every proposal accepted by a
// leader that is still leader in the same term has committed, and every live
// member applies a new entry.
// Thread safety: none.
#pragma once

#include <cstdint>
#include <string>

namespace kv::raft::sim {

struct PropertyOptions {
  uint64_t seed = 1;
  int nodes = 3;           // initial voters: 3 or 5
  int64_t steps = 2000;    // steps of chaos (calm phases come on top)
  bool membership = true;  // random membership changes
  // The app also snapshots right after each conf change (snapshots then
  // always carry the newest configuration; see RAFT_BUGS.md #1).
  bool snapshot_on_conf_change = false;
  // Half of the seeds with CheckQuorum also use lease reads (Config::lease_reads).
  bool lease_reads = false;
  // Removed members keep running (no operator shuts them down).
  bool keep_removed = false;
  size_t trace_keep = 0;  // recent events kept for the failure report
  bool trace_print = false;
};

struct PropertyResult {
  bool ok = true;
  std::string failure;        // the violation or liveness failure, with a report
  int64_t steps = 0;          // steps run in total (chaos and calm)
  uint64_t proposals = 0;     // accepted by the node proposed to
  uint64_t busy = 0;          // refused with Busy (max_uncommitted_bytes)
  uint64_t full_windows = 0;  // see Cluster::full_windows
  uint64_t committed = 0;
  uint64_t crashes = 0;
  uint64_t conf_changes = 0;
  uint64_t elections = 0;  // distinct leader terms
  uint64_t reads_served = 0;
  uint64_t messages = 0;
};

PropertyResult RunProperty(const PropertyOptions& opts);

// The command that replays one seed.
std::string ReplayCommand(const PropertyOptions& opts);

}  // namespace kv::raft::sim
