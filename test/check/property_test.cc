#include <algorithm>
#include <catch2/catch.hpp>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>

#include "kvcheck/checker.h"
#include "kvcheck/report.h"
#include "test/check/register_sim.h"

namespace kv {
namespace check {
namespace {

using testing::SimOptions;
using testing::SimulateRegister;
using testing::StoreBug;

// Checks the history of one simulated run; on a surprise, prints the seed
// and the report so the run can be replayed.
Verdict RunSeed(const SimOptions& o, bool* witnessed = nullptr) {
  History h;
  const std::string text = SimulateRegister(o);
  Status s = ParseHistoryString(text, &h);
  INFO("seed " << o.seed);
  REQUIRE(s.ok());
  CheckOptions co;
  co.key_timeout_seconds = 10;
  CheckResult r = CheckHistory(h, co);
  if (witnessed != nullptr) *witnessed = r.violation && !r.violation->witness.empty();
  if (o.bug == StoreBug::kNone && r.verdict != Verdict::kLinearizable) {
    FAIL_CHECK("seed " << o.seed << ": correct store judged " << VerdictName(r.verdict) << "\n"
                       << FormatText(h, r, ReportOptions()));
  }
  return r.verdict;
}

TEST_CASE("Histories of a correct register are always linearizable", "[check][property]") {
  SimOptions o;
  for (uint64_t seed = 1; seed <= 200; seed++) {
    o.seed = seed;
    o.processes = 2 + static_cast<int>(seed % 9);  // 2..10 concurrent clients
    o.keys = 1 + static_cast<int>(seed % 4);
    CHECK(RunSeed(o) == Verdict::kLinearizable);
  }
}

TEST_CASE("No window of a correct register's history is a witness", "[check][property]") {
  // Witness windows must be sound: try every window of small histories.
  SimOptions o;
  o.ops = 24;
  o.keys = 1;
  o.info_prob = 0.1;
  o.fail_prob = 0.05;
  for (uint64_t seed = 1; seed <= 40; seed++) {
    o.seed = 3000 + seed;
    o.processes = 2 + static_cast<int>(seed % 4);
    const std::string text = SimulateRegister(o);
    History h;
    REQUIRE(ParseHistoryString(text, &h).ok());
    std::vector<size_t> all(h.ops.size());
    std::vector<int64_t> times;
    for (size_t i = 0; i < all.size(); i++) {
      all[i] = i;
      times.push_back(h.ops[i].invoke_time);
      if (h.ops[i].outcome != Outcome::kInfo) times.push_back(h.ops[i].return_time);
    }
    std::sort(times.begin(), times.end());
    for (size_t x = 0; x < times.size(); x++) {
      for (size_t y = x; y < times.size(); y++) {
        if (IsWitnessWindowForTesting(h, all, times[x], times[y])) {
          FAIL("seed " << o.seed << " window " << times[x] << ".." << times[y] << "\n" << text);
        }
      }
    }
  }
}

TEST_CASE("A correct register with many timeouts is linearizable", "[check][property]") {
  SimOptions o;
  o.info_prob = 0.1;
  o.fail_prob = 0.1;
  o.keys = 2;
  o.processes = 6;
  for (uint64_t seed = 1; seed <= 100; seed++) {
    o.seed = 1000 + seed;
    CHECK(RunSeed(o) == Verdict::kLinearizable);
  }
}

TEST_CASE("A hot key under heavy concurrency is checked quickly", "[check][property]") {
  SimOptions o;
  o.keys = 1;
  o.processes = 30;
  o.ops = 3000;
  for (uint64_t seed = 1; seed <= 5; seed++) {
    o.seed = 2000 + seed;
    CHECK(RunSeed(o) == Verdict::kLinearizable);
  }
}

void ExpectCaught(StoreBug bug, uint64_t first_seed, double bug_prob = 0.05, double scan_prob = 0,
                  double txn_prob = 0) {
  SimOptions o;
  o.bug = bug;
  o.bug_prob = bug_prob;
  o.scan_prob = scan_prob;
  o.txn_prob = txn_prob;
  const int kSeeds = 200;
  int caught = 0, witnessed = 0, unknown = 0;
  for (int i = 0; i < kSeeds; i++) {
    o.seed = first_seed + i;
    o.processes = 2 + i % 7;
    bool w = false;
    const Verdict v = RunSeed(o, &w);
    if (v == Verdict::kNotLinearizable) caught++;
    if (v == Verdict::kUnknown) unknown++;
    if (w) witnessed++;
  }
  INFO("caught " << caught << " of " << kSeeds << ", witness for " << witnessed << ", unknown "
                 << unknown);
  CHECK(caught >= kSeeds * 9 / 10);
  CHECK(witnessed >= caught * 9 / 10);
  CHECK(unknown == 0);
}

TEST_CASE("A register that sometimes reads stale values is caught", "[check][property]") {
  ExpectCaught(StoreBug::kStaleRead, 5000);
}

TEST_CASE("A register that sometimes drops acknowledged writes is caught", "[check][property]") {
  ExpectCaught(StoreBug::kLostWrite, 9000, 0.1);
}

TEST_CASE("Histories of a correct store with scans are always linearizable",
          "[check][property][scan]") {
  SimOptions o;
  o.scan_prob = 0.3;
  o.info_prob = 0.05;
  for (uint64_t seed = 1; seed <= 200; seed++) {
    o.seed = 11000 + seed;
    o.processes = 2 + static_cast<int>(seed % 9);
    o.keys = 2 + static_cast<int>(seed % 5);
    o.scan_limit = 1 + static_cast<int>(seed % 4);
    CHECK(RunSeed(o) == Verdict::kLinearizable);
  }
}

TEST_CASE("A store whose scans sometimes read stale values is caught", "[check][property][scan]") {
  ExpectCaught(StoreBug::kScanStale, 12000, 0.1, 0.3);
}

TEST_CASE("A store whose scans sometimes miss a key is caught", "[check][property][scan]") {
  ExpectCaught(StoreBug::kScanMiss, 13000, 0.1, 0.3);
}

TEST_CASE("Histories of a correct store with txns are always linearizable",
          "[check][property][txn]") {
  SimOptions o;
  o.txn_prob = 0.3;
  o.scan_prob = 0.1;
  o.info_prob = 0.05;
  for (uint64_t seed = 1; seed <= 200; seed++) {
    o.seed = 14000 + seed;
    o.processes = 2 + static_cast<int>(seed % 9);
    o.keys = 1 + static_cast<int>(seed % 5);
    CHECK(RunSeed(o) == Verdict::kLinearizable);
  }
}

TEST_CASE("A store whose txns sometimes read stale values is caught", "[check][property][txn]") {
  ExpectCaught(StoreBug::kTxnStale, 15000, 0.1, 0, 0.3);
}

TEST_CASE("A long search ends early when a window proves a violation", "[check][property]") {
  // One busy key: an exhaustive search must try every alternative for the
  // whole prefix before it can call a violation; a witness window found
  // between search slices settles it sooner, with the same verdict.
  SimOptions o;
  o.keys = 1;
  o.processes = 10;
  o.ops = 3000;
  o.bug = StoreBug::kLostWrite;
  o.bug_prob = 0.05;
  int violations = 0, early = 0;
  for (uint64_t seed = 1; seed <= 8; seed++) {
    o.seed = 7000 + seed;
    History h;
    REQUIRE(ParseHistoryString(SimulateRegister(o), &h).ok());
    const CheckResult whole = CheckHistory(h, CheckOptions());
    CheckOptions sliced;
    sliced.first_slice_steps = 1024;
    const CheckResult r = CheckHistory(h, sliced);
    INFO("seed " << o.seed << "\n" << FormatText(h, r, ReportOptions()));
    CHECK(r.verdict == whole.verdict);
    if (r.verdict != Verdict::kNotLinearizable) continue;
    violations++;
    REQUIRE(r.violation);
    CHECK_FALSE(r.violation->witness.empty());
    if (r.keys[0].steps < whole.keys[0].steps) early++;
  }
  CHECK(violations >= 4);
  CHECK(early > 0);
}

// Not run by default (tag [perf]; meant for a Release build): 100k
// operations over 100 keys from 10 clients. Set KVCHECK_PERF_HISTORY=path to
// also save the history for the kvcheck binary.
TEST_CASE("Performance: 100k operations over 100 keys", "[.][perf]") {
  SimOptions o;
  o.seed = 42;
  o.processes = 10;
  o.keys = 100;
  o.ops = 100000;
  o.info_prob = 0.01;
  o.fail_prob = 0.01;
  // Overrides, to explore: KVCHECK_PERF_KEYS, _PROCESSES, _OPS, and _BUG
  // (stale or lost: a rare bug the check must find).
  if (const char* v = std::getenv("KVCHECK_PERF_KEYS")) o.keys = std::atoi(v);
  if (const char* v = std::getenv("KVCHECK_PERF_PROCESSES")) o.processes = std::atoi(v);
  if (const char* v = std::getenv("KVCHECK_PERF_OPS")) o.ops = std::atoi(v);
  if (const char* v = std::getenv("KVCHECK_PERF_BUG")) {
    o.bug = std::string(v) == "lost" ? StoreBug::kLostWrite : StoreBug::kStaleRead;
    o.bug_prob = 0.001;
  }
  const std::string text = SimulateRegister(o);
  if (const char* path = std::getenv("KVCHECK_PERF_HISTORY")) {
    std::ofstream(path) << text;
  }
  History h;
  REQUIRE(ParseHistoryString(text, &h).ok());
  const auto start = std::chrono::steady_clock::now();
  CheckResult r = CheckHistory(h, CheckOptions());
  const double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("perf: %zu ops, %zu keys, %zu checked: %s in %.3f s\n", r.ops, r.keys.size(),
              r.checked, VerdictName(r.verdict), secs);
  CHECK(r.verdict ==
        (o.bug == StoreBug::kNone ? Verdict::kLinearizable : Verdict::kNotLinearizable));
}

}  // namespace
}  // namespace check
}  // namespace kv
