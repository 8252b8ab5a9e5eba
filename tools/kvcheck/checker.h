// Checker: is a history of register operations linearizable?
//
// Each key is an independent register, so the history is checked key by key
// (P-compositionality: a history is linearizable iff every key's
// sub-history is). A key is checked with the Wing & Gong search as refined by
// Lowe: operations are tried in real-time order, backtracking when one
// cannot be placed, and every (set of linearized operations, register value)
// configuration already explored is remembered so it is never explored
// twice (as Porcupine does).
//
// Register model: put sets the value; get returns the current value (absent
// = not found); delete makes the key absent; cas(expected, new) sets new iff
// the current value equals expected (expected absent = the key is absent).
// An operation with outcome kOk took effect between its invoke and its
// return; kFail operations did not happen and are not checked; kInfo
// operations may take effect at any time after their invoke, or never (a get
// with unknown outcome constrains nothing and is not checked).
//
// A key whose search exceeds its budget (steps, memory or time) gets the
// verdict kUnknown rather than hanging the checker.
//
// Thread safety: CheckHistory is reentrant; it runs keys on up to
// options.jobs threads of its own and returns when all are done.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "kvcheck/history.h"

namespace kv {
namespace check {

enum class Verdict : unsigned char { kLinearizable, kNotLinearizable, kUnknown };

// "linearizable", "NOT linearizable", "unknown".
const char* VerdictName(Verdict verdict);

struct CheckOptions {
  // Per key: give up (kUnknown) after this many search steps; 0 = no limit.
  uint64_t max_steps = 0;
  // Per key: give up after this much wall time; <= 0 = no limit.
  double key_timeout_seconds = 60;
  // Per key: give up when the memo table holds about this many bytes.
  size_t max_memo_bytes = size_t{1} << 30;
  // Keys checked in parallel.
  int jobs = 1;
  // For a violation, search for a small self-contained witness.
  bool explain = true;
};

// Why a key is not linearizable. Operation indices refer to History::ops.
struct Violation {
  std::string key;
  // A set of operations that is not linearizable by itself, whatever the
  // value of the key before it: every other operation on the key either
  // returned before all of these were invoked or was invoked after all of
  // them returned (or has an unknown outcome and is included). Sorted by
  // invoke time. Empty if no witness was found within the budget.
  std::vector<size_t> witness;
  // Where the search got furthest: the number of operations it could order,
  // the last few of them (oldest first), the register value after them, and
  // the operation it could not order before that operation returned.
  size_t linearized = 0;
  std::vector<size_t> linearized_tail;
  std::optional<std::string> value_at_failure;
  size_t stuck_op = 0;
  // Operations not yet ordered at that point that were invoked before the
  // stuck operation returned: the candidates the search tried.
  std::vector<size_t> pending;
};

struct KeyResult {
  std::string key;
  Verdict verdict = Verdict::kLinearizable;
  size_t ops = 0;      // all operations on the key
  size_t ok = 0;       // by outcome
  size_t fail = 0;
  size_t info = 0;
  size_t checked = 0;  // operations the search had to place
  uint64_t steps = 0;  // search steps taken
  size_t memo_entries = 0;
  double seconds = 0;
  std::string unknown_reason;  // set when verdict is kUnknown
};

struct CheckResult {
  Verdict verdict = Verdict::kLinearizable;
  std::vector<KeyResult> keys;  // sorted by key
  size_t ops = 0;
  size_t checked = 0;
  double seconds = 0;
  // Set when verdict is kNotLinearizable: the first violating key in key
  // order.
  std::optional<Violation> violation;
};

// Checks every key of history. Never fails: a key it cannot decide within
// options' budget is kUnknown. The overall verdict is kNotLinearizable if any
// key is, else kUnknown if any key is, else kLinearizable.
CheckResult CheckHistory(const History& history, const CheckOptions& options);

// Checks the operations ops (indices into history.ops, all on one key) as a
// register that starts absent. For tests and tools; no witness search.
Verdict CheckKey(const History& history, const std::vector<size_t>& ops,
                 const CheckOptions& options, KeyResult* result, Violation* violation);

}  // namespace check
}  // namespace kv
