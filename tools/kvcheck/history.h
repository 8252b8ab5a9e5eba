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

enum class OpKind : unsigned char { kPut, kGet, kDelete, kCas, kScan };
enum class EventType : unsigned char { kInvoke, kOk, kFail, kInfo };
// What is known about how an operation ended.
enum class Outcome : unsigned char { kOk, kFail, kInfo };

const char* OpKindName(OpKind kind);       // "put", "get", "delete", "cas", "scan"
const char* OutcomeName(Outcome outcome);  // "ok", "fail", "info"

// A key a scan returned, with its value.
struct ScannedKey {
  std::string key;
  std::string value;
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
};

// Return time of an operation whose outcome is unknown: it never returned.
constexpr int64_t kNever = std::numeric_limits<int64_t>::max();

// Operation::scan of an operation that is not a scan's read.
constexpr size_t kNoScan = std::numeric_limits<size_t>::max();

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
  // A get that is a scan's read of one key (see above): the index of the
  // scan in History::ops, whose process, times and lines it has. kNoScan
  // for the operations of the file.
  size_t scan = kNoScan;
};

struct History {
  // The operations of the file in the order of their invokes in it, then
  // the reads of its scans, scan by scan and in key order within each.
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
// one outstanding, a completion whose f or key differs from its invoke, or
// a scan's "ok" completion whose keys are not in increasing order inside its
// range, or more than its limit.
Status ParseHistory(std::istream& in, History* history);
Status ParseHistoryString(std::string_view text, History* history);

// Reads and parses the file at path; IOError if it cannot be read.
Status ReadHistoryFile(const std::string& path, History* history);

// Appends s to *out as a JSON string literal, quotes included.
void AppendJsonString(std::string_view s, std::string* out);

}  // namespace check
}  // namespace kv
