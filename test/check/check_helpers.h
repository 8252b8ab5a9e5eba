// Test helpers: check a hand-made history, with the report shown when a
// test fails, and describe the witness of its violation and what scans and
// txns stand for.
#pragma once

#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "kvcheck/checker.h"
#include "kvcheck/report.h"
#include "test/check/history_builder.h"

namespace kv {
namespace check {
namespace testing {

inline CheckResult Check(const HistoryBuilder& b, CheckOptions options = CheckOptions()) {
  History h = b.Parse();
  CheckResult r = CheckHistory(h, options);
  INFO(FormatText(h, r, ReportOptions()));
  return r;
}

inline Verdict VerdictOf(const HistoryBuilder& b) { return Check(b).verdict; }

// What the scans or the txns (whole) of h stand for on single keys,
// described with their keys, in order.
inline std::vector<std::string> Parts(const History& h, OpKind whole) {
  std::vector<std::string> out;
  for (size_t i = 0; i < h.ops.size(); i++) {
    const Operation& op = h.ops[i];
    if (op.parent != kNoParent && h.ops[op.parent].kind == whole) {
      out.push_back(op.key + ": " + DescribeOp(h, i, 0));
    }
  }
  return out;
}

// The operations of the witness, described, in invoke order.
inline std::vector<std::string> Witness(const HistoryBuilder& b) {
  History h = b.Parse();
  CheckResult r = CheckHistory(h, CheckOptions());
  std::vector<std::string> out;
  if (!r.violation) return out;
  for (size_t i : r.violation->witness) out.push_back(DescribeOp(h, i, 0));
  return out;
}

}  // namespace testing
}  // namespace check
}  // namespace kv
