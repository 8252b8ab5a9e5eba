// Cross-checks the checker against the definition of linearizability,
// applied by brute force to many small random histories.

#include <algorithm>
#include <catch2/catch.hpp>
#include <random>

#include "kvcheck/checker.h"
#include "kvcheck/report.h"
#include "test/check/history_builder.h"

namespace kv {
namespace check {
namespace {

using testing::HistoryBuilder;
using testing::Value;

// Whether some order of ops (indices into h.ops, one key) respects real
// time and the register's semantics, starting from init. Failed operations
// and unknown reads are left out; other unknown operations may be left out.
bool BruteForceLinearizable(const History& h, std::vector<size_t> ops, const Value& init) {
  std::vector<size_t> must, may;
  for (size_t i : ops) {
    const Operation& op = h.ops[i];
    if (op.outcome == Outcome::kFail) continue;
    if (op.outcome == Outcome::kInfo && op.kind == OpKind::kGet) continue;
    (op.outcome == Outcome::kInfo ? may : must).push_back(i);
  }
  for (uint32_t subset = 0; subset < (1u << may.size()); subset++) {
    std::vector<size_t> chosen = must;
    for (size_t k = 0; k < may.size(); k++) {
      if (subset & (1u << k)) chosen.push_back(may[k]);
    }
    std::sort(chosen.begin(), chosen.end());
    do {
      bool good = true;
      Value state = init;
      for (size_t a = 0; a < chosen.size() && good; a++) {
        const Operation& op = h.ops[chosen[a]];
        // Nothing placed later may have returned before this was invoked.
        for (size_t b = a + 1; b < chosen.size(); b++) {
          const Operation& later = h.ops[chosen[b]];
          if (later.outcome == Outcome::kOk && later.return_time < op.invoke_time) good = false;
        }
        switch (op.kind) {
          case OpKind::kPut:
            state = op.value;
            break;
          case OpKind::kDelete:
            state.reset();
            break;
          case OpKind::kGet:
            if (state != op.result) good = false;
            break;
          case OpKind::kCas:
            if (state != op.expected) good = false;
            state = op.value;
            break;
          case OpKind::kScan:
          case OpKind::kTxn:
            break;  // none made here
        }
      }
      if (good) return true;
    } while (std::next_permutation(chosen.begin(), chosen.end()));
  }
  return false;
}

TEST_CASE("The checker agrees with brute force on small random histories", "[check][property]") {
  const char* values[] = {"a", "b", "c"};
  int violations = 0, witnesses = 0;
  for (uint64_t seed = 1; seed <= 2000; seed++) {
    std::mt19937_64 rng(seed);
    auto pick = [&](int n) { return std::uniform_int_distribution<int>(0, n - 1)(rng); };
    // Odd seeds: three values shared by all writes. Even seeds: every write
    // its own value (as kvload writes); reads pick any of them.
    const bool unique = seed % 2 == 0;
    int writes = 0;
    auto value = [&]() -> Value {
      if (unique) {
        const int v = pick(9);
        return v == 8 ? std::nullopt : Value("u" + std::to_string(v));
      }
      const int v = pick(4);
      return v == 3 ? std::nullopt : Value(values[v]);
    };
    auto new_value = [&]() -> std::string {
      return unique ? "u" + std::to_string(writes++) : values[pick(3)];
    };
    HistoryBuilder b;
    const int processes = 2 + pick(3);
    const int n = 3 + pick(5);
    std::vector<int64_t> free_at(processes, 0);
    int next_process = processes;
    std::vector<int> ids(processes);
    for (int p = 0; p < processes; p++) ids[p] = p;
    for (int i = 0; i < n; i++) {
      const int p = pick(processes);
      const int64_t t0 = free_at[p] + pick(10);
      const int64_t t1 = t0 + pick(25);
      free_at[p] = t1 + 1;
      const int dice = pick(100);
      const char* outcome = dice < 80 ? "ok" : dice < 90 ? "info" : "fail";
      const int kind = pick(10);
      if (kind < 4) {
        b.Get(ids[p], "k", value(), t0, t1, outcome);
      } else if (kind < 7) {
        b.Put(ids[p], "k", new_value(), t0, t1, outcome);
      } else if (kind < 8) {
        b.Delete(ids[p], "k", t0, t1, outcome);
      } else {
        b.Cas(ids[p], "k", value(), new_value(), t0, t1, outcome);
      }
      if (std::string(outcome) == "info") ids[p] = next_process++;
    }
    History h = b.Parse();
    std::vector<size_t> all(h.ops.size());
    for (size_t i = 0; i < all.size(); i++) all[i] = i;
    const bool expected = BruteForceLinearizable(h, all, std::nullopt);
    // Witness windows are sound: no window of a linearizable history is one,
    // and the window spanning everything is one for a history that is not.
    std::vector<int64_t> times;
    for (const Operation& op : h.ops) {
      times.push_back(op.invoke_time);
      if (op.outcome != Outcome::kInfo) times.push_back(op.return_time);
    }
    std::sort(times.begin(), times.end());
    for (size_t x = 0; x < times.size(); x++) {
      for (size_t y = x; y < times.size(); y++) {
        if (expected && IsWitnessWindowForTesting(h, all, times[x], times[y])) {
          FAIL("seed " << seed << " window " << times[x] << ".." << times[y] << "\n" << b.text());
        }
      }
    }
    if (!expected && !times.empty()) {
      INFO("seed " << seed << "\n" << b.text());
      CHECK(IsWitnessWindowForTesting(h, all, times.front() - 1, times.back() + 1));
    }
    CheckResult r = CheckHistory(h, CheckOptions());
    INFO("seed " << seed << "\n" << b.text() << FormatText(h, r, ReportOptions()));
    REQUIRE(r.verdict != Verdict::kUnknown);
    REQUIRE((r.verdict == Verdict::kLinearizable) == expected);
    if (r.violation) {
      violations++;
      const std::vector<size_t>& w = r.violation->witness;
      CHECK_FALSE(w.empty());
      if (!w.empty()) witnesses++;
      // A witness must be non-linearizable whatever the key held before it:
      // absent, or a value written by an operation invoked before it began.
      int64_t begin = kNever;
      for (size_t i : w) begin = std::min(begin, h.ops[i].invoke_time);
      std::vector<Value> inits{Value()};
      for (size_t i = 0; i < h.ops.size(); i++) {
        const Operation& op = h.ops[i];
        if (std::find(w.begin(), w.end(), i) != w.end()) continue;
        if (op.outcome == Outcome::kFail || op.invoke_time >= begin) continue;
        if (op.kind == OpKind::kPut || op.kind == OpKind::kCas) inits.push_back(op.value);
      }
      for (const Value& init : inits) {
        if (!w.empty()) CHECK_FALSE(BruteForceLinearizable(h, w, init));
      }
    }
  }
  INFO("violations " << violations << ", witnesses " << witnesses);
  CHECK(violations > 300);
  CHECK(witnesses == violations);
}

}  // namespace
}  // namespace check
}  // namespace kv
