// History: the operations a client recorded, as the linearizability checker
// reads them.
//
// `kvload --history FILE` writes one JSON object per line:
//   {"process": int, "type": "invoke"|"ok"|"fail"|"info",
//    "f": "put"|"get"|"delete"|"cas", "key": str, "value": str|null,
//    "expected": str|null, "time": int (monotonic ns)}
// Each process has at most one operation outstanding: an "invoke" is
// completed by the next "ok", "fail" or "info" of the same process. "ok"
// means the operation took effect (for get: "value" is the value read, null
// when not found); "fail" means it certainly did not happen; "info" means the
// outcome is unknown (it may take effect at any time after its invoke, or
// never) and that process never completes anything again. An invoke still
// outstanding at the end of the file is treated like "info".
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

enum class OpKind : unsigned char { kPut, kGet, kDelete, kCas };
enum class EventType : unsigned char { kInvoke, kOk, kFail, kInfo };
// What is known about how an operation ended.
enum class Outcome : unsigned char { kOk, kFail, kInfo };

const char* OpKindName(OpKind kind);       // "put", "get", "delete", "cas"
const char* OutcomeName(Outcome outcome);  // "ok", "fail", "info"

// One line of a history file.
struct Event {
  int64_t process = 0;
  EventType type = EventType::kInvoke;
  OpKind kind = OpKind::kGet;
  std::string key;
  std::optional<std::string> value;     // null in the file = nullopt
  std::optional<std::string> expected;  // cas only; null or absent = nullopt
  int64_t time = 0;                     // monotonic ns
};

// Return time of an operation whose outcome is unknown: it never returned.
constexpr int64_t kNever = std::numeric_limits<int64_t>::max();

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
};

struct History {
  // In the order of their invokes in the file.
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
// one outstanding, or a completion whose f or key differs from its invoke.
Status ParseHistory(std::istream& in, History* history);
Status ParseHistoryString(std::string_view text, History* history);

// Reads and parses the file at path; IOError if it cannot be read.
Status ReadHistoryFile(const std::string& path, History* history);

// Appends s to *out as a JSON string literal, quotes included.
void AppendJsonString(std::string_view s, std::string* out);

}  // namespace check
}  // namespace kv
