// History: the operations a client recorded, as the linearizability checker
// reads them.
//
// `kvload --history FILE` writes one JSON object per line:
//   {"process": int, "type": "invoke"|"ok"|"fail"|"info",
//    "f": "put"|"get"|"delete"|"cas", "key": str, "value": str|null,
//    "expected": str|null, "time": int (monotonic ns)}
// and for a scan of the range [key, end), at most limit keys:
//   {"process": int, "type": ..., "f": "scan", "key": str (the start),
//    "end": str|null (null or left out: to the end of the key space),
//    "limit": int, "time": int}
// whose "ok" completion adds what it returned, in key order, and whether the
// range holds keys after the last of them:
//    "kvs": [{"key": str, "value": str}, ...], "more": bool
// and for a txn, applied atomically (no "key"; a list left out is empty):
//   {"process": int, "type": ..., "f": "txn", "compare": [C, ...],
//    "success": [O, ...], "failure": [O, ...], "time": int}
// where each condition C is one of
//    {"key": str, "value": str}     the key holds that value
//    {"key": str, "absent": true}   the key is absent
//    {"key": str, "present": true}  the key holds some value
//    {"key": str, "mod_index": int, "cmp": "eq"|"lt"|"gt"}
// and each op O is {"f": "put", "key": str, "value": str},
// {"f": "delete", "key": str} or {"f": "get", "key": str}. The success
// branch runs if every condition holds, else the failure branch; the ops of
// a branch apply in order, each seeing the effects of the earlier ones. Its
// "ok" completion adds which branch ran and one result per op of it, in
// order, a get's holding the value read (null: not found; other fields and
// the results of puts and deletes are ignored):
//    "succeeded": bool, "results": [{"value": str|null}, ...]
// With "resent": true the results may be [] instead: the txn was applied
// once but its results were lost.
// Each process has at most one operation outstanding: an "invoke" is
// completed by the next "ok", "fail" or "info" of the same process. "ok"
// means the operation took effect (for get: "value" is the value read, null
// when not found); "fail" means it certainly did not happen; "info" means the
// outcome is unknown (it may take effect at any time after its invoke, or
// never) and that process never completes anything again. An invoke still
// outstanding at the end of the file is treated like "info".
//
// A scan answered "ok" is read as single-key reads, one per key of the
// history (a key some operation names) in the part of its range that it
// covered: the whole range, or with "more" up to its last key returned. A
// key it returned is read with its value, any other key as absent; each read
// takes effect at some instant between the scan's invoke and completion, on
// its own (a paged or sharded scan is no snapshot), so each joins its key's
// history. ParseHistory adds these reads to History::ops. A "fail" or
// "info" scan constrains nothing.
//
// A txn is likewise checked as operations on single keys, each taking
// effect at some instant between its invoke and completion, each in its
// key's history; so whether a txn's keys changed together is not checked.
// Answered "ok", the branch that ran stands for one write per key it
// writes, of the key's state when the branch ends (its last put, or a
// delete: no one else sees the others), and one read per get of a key no
// earlier op of the branch wrote, of its result (a later get reads the
// txn's own write). A txn that succeeded adds a read per "value" or
// "absent" condition; one that failed adds none, as which condition failed
// is unknown ("present" and "mod_index" name no value to check). Resent
// without results, it stands for its writes only. An "info" txn (or one
// never completed) stands for the writes of both branches, each with an
// unknown outcome: letting both take effect allows more than the store
// can do, never less. A "fail" txn stands for nothing. ParseHistory adds
// these operations to History::ops as well.
//
// The operations a scan or txn stands for overlap one another in time
// though they have its process: "one operation outstanding per process"
// holds for the events of the file, which ParseHistory checks before it
// adds them.
//
// Thread safety: plain values and free functions; no shared state.
#pragma once

#include <cstddef>
#include <cstdint>
#include <istream>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace kv {
namespace check {

enum class OpKind : unsigned char { kPut, kGet, kDelete, kCas, kScan, kTxn };
enum class EventType : unsigned char { kInvoke, kOk, kFail, kInfo };
// What is known about how an operation ended.
enum class Outcome : unsigned char { kOk, kFail, kInfo };

const char* OpKindName(OpKind kind);       // "put", "get", "delete", "cas", "scan", "txn"
const char* OutcomeName(Outcome outcome);  // "ok", "fail", "info"

// A key a scan returned, with its value.
struct ScannedKey {
  std::string key;
  std::string value;
};

// A condition of a txn on one key (see above). The index of a mod_index
// condition is not kept: the checker has no use for it.
struct TxnCompare {
  enum class Kind : unsigned char { kValue, kAbsent, kPresent, kModIndex };
  Kind kind = Kind::kValue;
  std::string key;
  std::string value;  // kValue only
};

// An op of a txn's branch: kPut, kDelete or kGet.
struct TxnOp {
  OpKind kind = OpKind::kGet;
  std::string key;
  std::string value;  // kPut only
};

// What an op of a txn's branch returned.
struct TxnResult {
  bool has_value = false;            // "value" was given; a get's result needs it
  std::optional<std::string> value;  // null in the file = nullopt
};

// One line of a history file.
struct Event {
  int64_t process = 0;
  EventType type = EventType::kInvoke;
  OpKind kind = OpKind::kGet;
  std::string key;
  std::optional<std::string> value;     // null in the file = nullopt
  std::optional<std::string> expected;  // cas only; null or absent = nullopt
  int64_t time = 0;                     // monotonic ns
  // scan only: the end of the range (null or absent = nullopt), its limit
  // (absent = 0) and, in a completion, what it returned.
  std::optional<std::string> end;
  int64_t limit = 0;
  std::vector<ScannedKey> kvs;
  bool more = false;
  // txn only: its conditions and branches and, in a completion, which
  // branch ran, what it returned and whether it was resent.
  std::vector<TxnCompare> compare;
  std::vector<TxnOp> success;
  std::vector<TxnOp> failure;
  bool succeeded = false;
  std::vector<TxnResult> results;
  bool resent = false;
};

// Return time of an operation whose outcome is unknown: it never returned.
constexpr int64_t kNever = std::numeric_limits<int64_t>::max();

// Operation::parent of an operation of the file.
constexpr size_t kNoParent = std::numeric_limits<size_t>::max();

// One operation: an invoke and its completion.
struct Operation {
  int64_t process = 0;
  OpKind kind = OpKind::kGet;
  Outcome outcome = Outcome::kInfo;
  std::string key;
  // put: the value written; cas: the new value; get, delete: unused.
  std::optional<std::string> value;
  // cas: the value required before (nullopt = the key must be absent).
  std::optional<std::string> expected;
  // get with outcome kOk: the value read (nullopt = not found).
  std::optional<std::string> result;
  int64_t invoke_time = 0;
  int64_t return_time = kNever;  // kNever unless outcome is kOk or kFail
  size_t invoke_line = 0;        // 1-based line numbers in the file
  size_t return_line = 0;        // 0 when it never completed
  // scan: its range [key, end) (end nullopt: to the end of the key space)
  // and limit (0: not given); with outcome kOk, the keys it returned in key
  // order, and whether the range held keys after them.
  std::optional<std::string> end;
  int64_t limit = 0;
  std::vector<ScannedKey> kvs;
  bool more = false;
  // txn: its conditions and branches; with outcome kOk, which branch ran,
  // its results (one per op of that branch, or none when resent) and
  // whether it was resent.
  std::vector<TxnCompare> compare;
  std::vector<TxnOp> success;
  std::vector<TxnOp> failure;
  bool succeeded = false;
  std::vector<TxnResult> results;
  bool resent = false;
  // An operation a scan or txn stands for on one key (see above): the index
  // of that scan or txn in History::ops, whose process, outcome, times and
  // lines it has. kNoParent for the operations of the file.
  size_t parent = kNoParent;
};

struct History {
  // The operations of the file in the order of their invokes in it, then
  // those its txns stand for, txn by txn, then the reads of its scans,
  // scan by scan and in key order within each.
  std::vector<Operation> ops;
  size_t events = 0;  // lines parsed (blank lines excluded)
};

// Parses one line (without its newline) into *event.
// Returns InvalidArgument with a message naming the column on malformed JSON,
// a missing or mistyped field, or an unknown "type" or "f".
Status ParseEvent(std::string_view line, Event* event);

// Parses a whole history and pairs each invoke with its completion.
// Blank lines are skipped; unknown fields are ignored. Errors name the line:
// "line 12: ...". Besides ParseEvent's errors, returns InvalidArgument for a
// completion without an outstanding invoke, an invoke while the process has
// one outstanding, a completion whose f or key differs from its invoke, a
// scan's "ok" completion whose keys are not in increasing order inside its
// range, or more than its limit, or a txn's "ok" completion whose results
// are not one per op of the branch that ran (a get's with a "value").
Status ParseHistory(std::istream& in, History* history);
Status ParseHistoryString(std::string_view text, History* history);

// Reads and parses the file at path; IOError if it cannot be read.
Status ReadHistoryFile(const std::string& path, History* history);

// Appends s to *out as a JSON string literal, quotes included.
void AppendJsonString(std::string_view s, std::string* out);

}  // namespace check
}  // namespace kv
