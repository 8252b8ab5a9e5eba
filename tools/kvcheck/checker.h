// Checker: is a history of register operations linearizable?
//
// Each key is an independent register, so the history is checked key by key
// (P-compositionality: a history is linearizable iff every key's
// sub-history is). A key is checked with the Wing & Gong search as refined by
// Lowe: operations are tried in real-time order, backtracking when one
// cannot be placed, and every (set of linearized operations, register value)
// configuration already explored is remembered so it is never explored
// twice (as Porcupine does). Sound and complete reductions keep it fast on
// long, highly concurrent histories: a read that can take effect now is
// placed without trying alternatives; a configuration in which some value
// must still be observed but can no longer be written is cut at once;
// interchangeable unknown-outcome operations are placed in invoke order; and
// unknown writes of a value nobody observes are not searched at all. A long
// search stops early when a witness window (see Violation) proves a
// violation.
//
// Register model: put sets the value; get returns the current value (absent
// = not found); delete makes the key absent; cas(expected, new) sets new iff
// the current value equals expected (expected absent = the key is absent).
// A scan is checked as the gets of single keys it stands for, a txn as the
// puts, deletes and gets (history.h), each in its key's history.
// An operation with outcome kOk took effect between its invoke and its
// return; kFail operations did not happen and are not checked; kInfo
// operations may take effect at any time after their invoke, or never (a get
// with unknown outcome constrains nothing and is not checked, nor is an
// unknown write of a value that no operation ever observes).
//
// A key whose search exceeds its budget (steps or time) gets the
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
  // Whole check: keys still searching when this much wall time has passed
  // since CheckHistory began give up (kUnknown); <= 0 = no limit.
  double total_timeout_seconds = 0;
  // Per key: give up (kUnknown) after this many search steps; 0 = no limit.
  uint64_t max_steps = 0;
  // Per key: give up after this much wall time; <= 0 = no limit.
  double key_timeout_seconds = 60;
  // Per key: the memo table is cleared when it holds about this many bytes
  // (correct, but work may be repeated; the time limit still applies).
  size_t max_memo_bytes = size_t{1} << 30;
  // Steps of the first slice of a key's search; each later slice has 4x as
  // many. Between slices a witness window may end the search early.
  uint64_t first_slice_steps = uint64_t{4} << 20;
  // Keys checked in parallel.
  int jobs = 1;
  // Search for a witness window (see Violation): to show a violation, and
  // to end a long search early when a window proves one.
  bool explain = true;
};

// Why a key is not linearizable. Operation indices refer to History::ops.
struct Violation {
  std::string key;
  // A window of time [witness_begin, witness_end] (monotonic ns) that no
  // run of the register can explain, so neither can any linearization of
  // the whole history: the operations wholly inside it must take effect
  // inside it, in real-time order; those overlapping its edges may take
  // effect inside it or outside it; the key held, at witness_begin, absent
  // or a value written by an operation invoked before then. witness lists
  // the window's operations (reads overlapping an edge constrain nothing and
  // are left out), sorted by invoke time; empty if no window was found
  // within the witness search's budget (see FindWitness in checker.cc).
  std::vector<size_t> witness;
  int64_t witness_begin = 0;
  int64_t witness_end = 0;
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
  size_t ops = 0;  // all operations on the key
  size_t ok = 0;   // by outcome
  size_t fail = 0;
  size_t info = 0;
  // Operations the search had to place: not failed, not unknown reads, not
  // unknown writes of a value nothing observed (see checker.cc).
  size_t checked = 0;
  uint64_t steps = 0;  // search steps taken
  size_t memo_entries = 0;
  // Times the memo hit CheckOptions::max_memo_bytes and was cleared (the
  // search stays correct, it may repeat work).
  uint64_t memo_resets = 0;
  double seconds = 0;
  std::string unknown_reason;  // set when verdict is kUnknown
};

struct CheckResult {
  Verdict verdict = Verdict::kLinearizable;
  std::vector<KeyResult> keys;  // sorted by key
  size_t ops = 0;               // on keys: what scans and txns stand for, not themselves
  size_t checked = 0;
  size_t scans = 0;        // whatever their outcome
  size_t scan_reads = 0;   // the gets they stand for (among ops)
  size_t scan_absent = 0;  // of those, reads of a key the scan did not return
  size_t txns = 0;         // whatever their outcome
  size_t txn_ops = 0;      // the operations on single keys they stand for (among ops)
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
// register that starts absent, filling *result and, for a violation,
// *violation (may be null). A witness is included only when one ended a
// long search early; CheckHistory looks for one otherwise.
Verdict CheckKey(const History& history, const std::vector<size_t>& ops,
                 const CheckOptions& options, KeyResult* result, Violation* violation);

// Test hook: whether the window [begin, end] of ops (indices into
// history.ops, all on one key) is a witness in the sense of
// Violation::witness.
bool IsWitnessWindowForTesting(const History& history, const std::vector<size_t>& ops,
                               int64_t begin, int64_t end);

}  // namespace check
}  // namespace kv
