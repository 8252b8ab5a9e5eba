// Report: a checker result as text for people or JSON for scripts.
//
// Times are shown relative to the first invoke in the history; JSON carries
// the raw monotonic nanoseconds too. Thread safety: pure functions.
#pragma once

#include <string>

#include "kvcheck/checker.h"
#include "kvcheck/history.h"

namespace kv {
namespace check {

struct ReportOptions {
  // List every key; otherwise large key sets show only the interesting keys.
  bool verbose = false;
  // Longest value shown before it is cut ("..." marks the cut). Text only.
  size_t max_value_chars = 40;
};

// A one-line description of history.ops[i]: `put "a"`, `get -> not found`,
// `cas "a" -> "b"`; for a scan's read of one key `scan -> "a"` or
// `scan -> absent`; for what a txn stands for on one key `txn put "a"`,
// `txn delete` or `txn get -> "a"`.
std::string DescribeOp(const History& history, size_t i, size_t max_value_chars);

// The human-readable report: verdict, counts, per-key table and, for a
// violation, the operations that show it.
std::string FormatText(const History& history, const CheckResult& result,
                       const ReportOptions& options);

// One JSON object (with a trailing newline) holding the same information.
std::string FormatJson(const History& history, const CheckResult& result);

}  // namespace check
}  // namespace kv
