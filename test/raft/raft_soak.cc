// raft_soak: runs the randomized Raft property run over many seeds, or
// replays one seed with a trace of its events.
//
//   raft_soak --seeds 10000 --steps 4000 --nodes 5     soak from seed 1
//   raft_soak --seed 1234 --steps 4000 --nodes 5 --trace
//
// Prints the seeds run, the steps per seed and the time taken; on a failure,
// the seed, the command that replays it and the report, and exits 1.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "test/raft/property.h"

namespace {

void Usage() {
  std::fprintf(stderr,
               "usage: raft_soak [--seeds N] [--first S] [--seed S] [--steps M] [--nodes 3|5]\n"
               "                 [--both] [--no-membership] [--lease-reads] [--keep-removed]\n"
               "                 [--snapshot-on-conf-change] [--trace] [--keep-going] [--quiet]\n"
               "  --seeds N        run seeds first..first+N-1 (default 100)\n"
               "  --first S        first seed of a soak (default 1)\n"
               "  --seed S         replay one seed\n"
               "  --steps M        chaos steps per seed (default 2000; 4 steps = 1 tick)\n"
               "  --nodes 3|5      initial voters (default 3)\n"
               "  --both           run every seed with 3 and with 5 nodes\n"
               "  --no-membership  no membership changes\n"
               "  --snapshot-on-conf-change  the app snapshots after each conf change\n"
               "  --lease-reads    half the seeds with CheckQuorum serve reads by lease\n"
               "  --keep-removed   removed members keep running\n"
               "  --trace          print every event of the run (for one seed)\n"
               "  --keep-going     on a failure print one line and go on; exit 1 at the end\n");
}

}  // namespace

int main(int argc, char** argv) {
  using kv::raft::sim::PropertyOptions;
  using kv::raft::sim::PropertyResult;
  uint64_t seeds = 100;
  uint64_t first = 1;
  bool one = false;
  bool both = false;
  bool quiet = false;
  bool keep_going = false;
  uint64_t failures = 0;
  PropertyOptions po;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> const char* {
      if (i + 1 >= argc) {
        Usage();
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--seeds") {
      seeds = std::strtoull(next(), nullptr, 10);
    } else if (a == "--first") {
      first = std::strtoull(next(), nullptr, 10);
    } else if (a == "--seed") {
      first = std::strtoull(next(), nullptr, 10);
      seeds = 1;
      one = true;
    } else if (a == "--steps") {
      po.steps = std::strtoll(next(), nullptr, 10);
    } else if (a == "--nodes") {
      po.nodes = std::atoi(next());
    } else if (a == "--both") {
      both = true;
    } else if (a == "--no-membership") {
      po.membership = false;
    } else if (a == "--trace") {
      po.trace_print = true;
    } else if (a == "--snapshot-on-conf-change") {
      po.snapshot_on_conf_change = true;
    } else if (a == "--keep-removed") {
      po.keep_removed = true;
    } else if (a == "--lease-reads") {
      po.lease_reads = true;
    } else if (a == "--keep-going") {
      keep_going = true;
    } else if (a == "--quiet") {
      quiet = true;
    } else {
      Usage();
      return 2;
    }
  }
  if (po.nodes < 1 || po.steps < 0) {
    Usage();
    return 2;
  }
  const auto start = std::chrono::steady_clock::now();
  uint64_t runs = 0;
  int64_t total_steps = 0;
  uint64_t committed = 0, crashes = 0, conf_changes = 0, elections = 0, reads = 0, busy = 0;
  for (uint64_t s = first; s < first + seeds; ++s) {
    for (int variant = 0; variant < (both ? 2 : 1); ++variant) {
      PropertyOptions o = po;
      o.seed = s;
      if (both) o.nodes = variant == 0 ? 3 : 5;
      if (!o.trace_print) o.trace_keep = 0;
      PropertyResult r = kv::raft::sim::RunProperty(o);
      runs++;
      total_steps += r.steps;
      committed += r.committed;
      crashes += r.crashes;
      conf_changes += r.conf_changes;
      elections += r.elections;
      reads += r.reads_served;
      busy += r.busy;
      if (one || (!quiet && runs % 100 == 0)) {
        std::printf(
            "seed %llu nodes %d: %lld steps, %llu/%llu proposals committed (%llu busy), %llu"
            " crashes, %llu conf changes, %llu leader terms, %llu reads, %llu messages\n",
            static_cast<unsigned long long>(s), o.nodes, static_cast<long long>(r.steps),
            static_cast<unsigned long long>(r.committed),
            static_cast<unsigned long long>(r.proposals), static_cast<unsigned long long>(r.busy),
            static_cast<unsigned long long>(r.crashes),
            static_cast<unsigned long long>(r.conf_changes),
            static_cast<unsigned long long>(r.elections),
            static_cast<unsigned long long>(r.reads_served),
            static_cast<unsigned long long>(r.messages));
        std::fflush(stdout);
      }
      if (!r.ok && keep_going) {
        failures++;
        const std::string first_line = r.failure.substr(0, r.failure.find('\n'));
        std::printf("FAILED seed %llu nodes %d (%s): %s\n", static_cast<unsigned long long>(s),
                    o.nodes, kv::raft::sim::ReplayCommand(o).c_str(), first_line.c_str());
        std::fflush(stdout);
        continue;
      }
      if (!r.ok) {
        if (!o.trace_print) {
          // Replay with the recent events kept: the run is deterministic.
          o.trace_keep = 400;
          r = kv::raft::sim::RunProperty(o);
        }
        std::printf("FAILED seed %llu nodes %d\nreplay: %s\n%s\n",
                    static_cast<unsigned long long>(s), o.nodes,
                    kv::raft::sim::ReplayCommand(o).c_str(), r.failure.c_str());
        return 1;
      }
    }
  }
  const double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf(
      "ok: %llu runs (seeds %llu..%llu), %lld chaos steps per seed, %lld steps in all "
      "(%lld per run on average), %llu committed proposals (%llu busy), %llu crashes, %llu "
      "conf changes, %llu leader terms, %llu reads; %.1f s\n",
      static_cast<unsigned long long>(runs), static_cast<unsigned long long>(first),
      static_cast<unsigned long long>(first + seeds - 1), static_cast<long long>(po.steps),
      static_cast<long long>(total_steps),
      static_cast<long long>(runs ? total_steps / static_cast<int64_t>(runs) : 0),
      static_cast<unsigned long long>(committed), static_cast<unsigned long long>(busy),
      static_cast<unsigned long long>(crashes), static_cast<unsigned long long>(conf_changes),
      static_cast<unsigned long long>(elections), static_cast<unsigned long long>(reads), secs);
  if (failures > 0) {
    std::printf("%llu runs FAILED\n", static_cast<unsigned long long>(failures));
    return 1;
  }
  return 0;
}
