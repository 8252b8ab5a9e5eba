#include "kvcheck/history.h"

#include <cctype>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <map>
#include <set>
#include <sstream>
#include <utility>

namespace kv {
namespace check {

const char* OpKindName(OpKind kind) {
  switch (kind) {
    case OpKind::kPut:
      return "put";
    case OpKind::kGet:
      return "get";
    case OpKind::kDelete:
      return "delete";
    case OpKind::kCas:
      return "cas";
    case OpKind::kScan:
      return "scan";
    case OpKind::kTxn:
      return "txn";
  }
  return "?";
}

const char* OutcomeName(Outcome outcome) {
  switch (outcome) {
    case Outcome::kOk:
      return "ok";
    case Outcome::kFail:
      return "fail";
    case Outcome::kInfo:
      return "info";
  }
  return "?";
}

void AppendJsonString(std::string_view s, std::string* out) {
  out->push_back('"');
  for (unsigned char c : s) {
    switch (c) {
      case '"':
        out->append("\\\"");
        break;
      case '\\':
        out->append("\\\\");
        break;
      case '\n':
        out->append("\\n");
        break;
      case '\r':
        out->append("\\r");
        break;
      case '\t':
        out->append("\\t");
        break;
      default:
        if (c < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof(buf), "\\u%04x", c);
          out->append(buf);
        } else {
          out->push_back(static_cast<char>(c));
        }
    }
  }
  out->push_back('"');
}

namespace {

// A recursive-descent reader for one JSON object per line. Only what the
// history format needs is decoded (strings, null, integers, booleans, a
// scan's kvs, a txn's lists); any other value of an unknown field is
// validated and skipped.
class LineReader {
 public:
  explicit LineReader(std::string_view s) : s_(s) {}

  Status ReadEvent(Event* event) {
    bool have_process = false, have_type = false, have_f = false, have_key = false,
         have_time = false, have_succeeded = false;
    SkipSpace();
    if (pos_ >= s_.size() || s_[pos_] != '{') {
      return Error("expected '{' at the start of the line");
    }
    size_t fields = 0;
    Status read = ReadObject([&](const std::string& name) {
      Status s;
      fields++;
      if (name == "process") {
        s = ReadInt(name, &event->process);
        have_process = true;
      } else if (name == "time") {
        s = ReadInt(name, &event->time);
        have_time = true;
      } else if (name == "type") {
        std::string v;
        s = ReadString(&v);
        if (s.ok()) s = ParseType(v, &event->type);
        have_type = true;
      } else if (name == "f") {
        std::string v;
        s = ReadString(&v);
        if (s.ok()) s = ParseKind(v, &event->kind);
        have_f = true;
      } else if (name == "key") {
        s = ReadString(&event->key);
        have_key = true;
      } else if (name == "value") {
        s = ReadNullableString(name, &event->value);
      } else if (name == "expected") {
        s = ReadNullableString(name, &event->expected);
      } else if (name == "end") {
        s = ReadNullableString(name, &event->end);
      } else if (name == "limit") {
        s = ReadInt(name, &event->limit);
        if (s.ok() && event->limit < 0) s = Error("\"limit\" must not be negative");
      } else if (name == "more") {
        s = ReadBool(name, &event->more);
      } else if (name == "kvs") {
        s = ReadKvs(&event->kvs);
      } else if (name == "compare") {
        s = ReadCompares(&event->compare);
      } else if (name == "success" || name == "failure") {
        s = ReadTxnOps(name, name == "success" ? &event->success : &event->failure);
      } else if (name == "succeeded") {
        s = ReadBool(name, &event->succeeded);
        have_succeeded = true;
      } else if (name == "results") {
        s = ReadTxnResults(&event->results);
      } else if (name == "resent") {
        s = ReadBool(name, &event->resent);
      } else {
        s = SkipValue(0);
      }
      return s;
    });
    if (!read.ok()) return read;
    if (fields == 0) return Error("empty object");
    SkipSpace();
    if (pos_ != s_.size()) return Error("unexpected text after the object");
    if (!have_process) return Missing("process");
    if (!have_type) return Missing("type");
    if (!have_f) return Missing("f");
    if (!have_key && event->kind != OpKind::kTxn) return Missing("key");
    if (!have_time) return Missing("time");
    // Without it the branch that ran, so what the results mean, is unknown.
    if (event->kind == OpKind::kTxn && event->type == EventType::kOk && !have_succeeded) {
      return Missing("succeeded");
    }
    return Status::OK();
  }

 private:
  Status Error(const std::string& what) const {
    return Status::InvalidArgument("column " + std::to_string(pos_ + 1) + ": " + what);
  }
  Status Missing(const char* field) const {
    return Status::InvalidArgument(std::string("missing field \"") + field + "\"");
  }

  void SkipSpace() {
    while (pos_ < s_.size() &&
           (s_[pos_] == ' ' || s_[pos_] == '\t' || s_[pos_] == '\r' || s_[pos_] == '\n')) {
      pos_++;
    }
  }
  bool Consume(char c) {
    if (pos_ < s_.size() && s_[pos_] == c) {
      pos_++;
      return true;
    }
    return false;
  }
  bool ConsumeWord(std::string_view w) {
    if (s_.substr(pos_, w.size()) == w) {
      pos_ += w.size();
      return true;
    }
    return false;
  }

  static Status ParseType(const std::string& v, EventType* type) {
    if (v == "invoke") {
      *type = EventType::kInvoke;
    } else if (v == "ok") {
      *type = EventType::kOk;
    } else if (v == "fail") {
      *type = EventType::kFail;
    } else if (v == "info") {
      *type = EventType::kInfo;
    } else {
      return Status::InvalidArgument("unknown \"type\" \"" + v +
                                     "\" (want invoke, ok, fail or info)");
    }
    return Status::OK();
  }
  static Status ParseKind(const std::string& v, OpKind* kind) {
    if (v == "put" || v == "set" || v == "write") {
      *kind = OpKind::kPut;
    } else if (v == "get" || v == "read") {
      *kind = OpKind::kGet;
    } else if (v == "delete" || v == "del") {
      *kind = OpKind::kDelete;
    } else if (v == "cas") {
      *kind = OpKind::kCas;
    } else if (v == "scan") {
      *kind = OpKind::kScan;
    } else if (v == "txn") {
      *kind = OpKind::kTxn;
    } else {
      return Status::InvalidArgument("unknown \"f\" \"" + v +
                                     "\" (want put, get, delete, cas, scan or txn)");
    }
    return Status::OK();
  }

  Status ReadInt(const std::string& name, int64_t* out) {
    const size_t start = pos_;
    bool negative = Consume('-');
    if (pos_ >= s_.size() || s_[pos_] < '0' || s_[pos_] > '9') {
      pos_ = start;
      return Error("\"" + name + "\" must be an integer");
    }
    // Accumulate as a negative number so INT64_MIN parses too.
    int64_t v = 0;
    while (pos_ < s_.size() && s_[pos_] >= '0' && s_[pos_] <= '9') {
      const int digit = s_[pos_] - '0';
      if (v < (std::numeric_limits<int64_t>::min() + digit) / 10) {
        pos_ = start;
        return Error("\"" + name + "\" is out of range");
      }
      v = v * 10 - digit;
      pos_++;
    }
    if (pos_ < s_.size() && (s_[pos_] == '.' || s_[pos_] == 'e' || s_[pos_] == 'E')) {
      return Error("\"" + name + "\" must be an integer");
    }
    if (!negative) {
      if (v == std::numeric_limits<int64_t>::min()) {
        pos_ = start;
        return Error("\"" + name + "\" is out of range");
      }
      v = -v;
    }
    *out = v;
    return Status::OK();
  }

  Status ReadBool(const std::string& name, bool* out) {
    if (ConsumeWord("true")) {
      *out = true;
    } else if (ConsumeWord("false")) {
      *out = false;
    } else {
      return Error("\"" + name + "\" must be true or false");
    }
    return Status::OK();
  }

  // An object whose members field(name) reads, from the value on.
  template <typename Field>
  Status ReadObject(Field field) {
    if (!Consume('{')) return Error("expected an object");
    SkipSpace();
    if (Consume('}')) return Status::OK();
    while (true) {
      SkipSpace();
      std::string name;
      Status s = ReadString(&name);
      if (!s.ok()) return s;
      SkipSpace();
      if (!Consume(':')) return Error("expected ':' after \"" + name + "\"");
      SkipSpace();
      s = field(name);
      if (!s.ok()) return s;
      SkipSpace();
      if (Consume(',')) continue;
      if (Consume('}')) return Status::OK();
      return Error("expected ',' or '}'");
    }
  }

  // An array of objects, each read by entry() from its '{' on.
  template <typename Entry>
  Status ReadObjects(const std::string& name, Entry entry) {
    if (!Consume('[')) return Error("\"" + name + "\" must be an array");
    SkipSpace();
    if (Consume(']')) return Status::OK();
    while (true) {
      SkipSpace();
      if (pos_ >= s_.size() || s_[pos_] != '{') {
        return Error("an entry of \"" + name + "\" must be an object");
      }
      Status s = entry();
      if (!s.ok()) return s;
      SkipSpace();
      if (Consume(',')) continue;
      if (Consume(']')) return Status::OK();
      return Error("expected ',' or ']'");
    }
  }

  // [{"key": str, "value": str}, ...]; other fields of an entry are skipped.
  Status ReadKvs(std::vector<ScannedKey>* out) {
    out->clear();
    return ReadObjects("kvs", [&] {
      ScannedKey kv;
      bool have_key = false, have_value = false;
      Status s = ReadObject([&](const std::string& name) {
        if (name == "key") {
          have_key = true;
          return ReadString(&kv.key);
        }
        if (name == "value") {
          have_value = true;
          return ReadString(&kv.value);
        }
        return SkipValue(0);
      });
      if (!s.ok()) return s;
      if (!have_key || !have_value) {
        return Error("an entry of \"kvs\" needs a \"key\" and a \"value\" (strings)");
      }
      out->push_back(std::move(kv));
      return Status::OK();
    });
  }

  // A txn's conditions (see history.h).
  Status ReadCompares(std::vector<TxnCompare>* out) {
    out->clear();
    return ReadObjects("compare", [&] {
      TxnCompare c;
      bool have_key = false, have_value = false, absent = false, present = false,
           have_index = false;
      std::string cmp;
      Status s = ReadObject([&](const std::string& name) {
        if (name == "key") {
          have_key = true;
          return ReadString(&c.key);
        }
        if (name == "value") {
          have_value = true;
          return ReadString(&c.value);
        }
        if (name == "absent") return ReadBool(name, &absent);
        if (name == "present") return ReadBool(name, &present);
        if (name == "mod_index") {
          have_index = true;
          int64_t index;  // checked, not kept (see TxnCompare)
          return ReadInt(name, &index);
        }
        if (name == "cmp") return ReadString(&cmp);
        return SkipValue(0);
      });
      if (!s.ok()) return s;
      if (!have_key) return Error("a condition of \"compare\" needs a \"key\"");
      if (have_value + absent + present + have_index != 1) {
        return Error(
            "a condition of \"compare\" needs one of \"value\", \"absent\": true, "
            "\"present\": true or \"mod_index\"");
      }
      if (have_index && cmp != "eq" && cmp != "lt" && cmp != "gt") {
        return Error("\"mod_index\" needs \"cmp\": \"eq\", \"lt\" or \"gt\"");
      }
      c.kind = have_value ? TxnCompare::Kind::kValue
               : absent   ? TxnCompare::Kind::kAbsent
               : present  ? TxnCompare::Kind::kPresent
                          : TxnCompare::Kind::kModIndex;
      out->push_back(std::move(c));
      return Status::OK();
    });
  }

  // A txn's branch `name`: puts, deletes and gets (see history.h).
  Status ReadTxnOps(const std::string& name, std::vector<TxnOp>* out) {
    out->clear();
    return ReadObjects(name, [&] {
      TxnOp op;
      bool have_f = false, have_key = false, have_value = false;
      Status s = ReadObject([&](const std::string& field) {
        if (field == "f") {
          have_f = true;
          std::string f;
          Status read = ReadString(&f);
          return read.ok() ? ParseKind(f, &op.kind) : read;
        }
        if (field == "key") {
          have_key = true;
          return ReadString(&op.key);
        }
        if (field == "value") {
          have_value = true;
          return ReadString(&op.value);
        }
        return SkipValue(0);
      });
      if (!s.ok()) return s;
      if (!have_f || !have_key) {
        return Error("an op of \"" + name + "\" needs an \"f\" and a \"key\"");
      }
      if (op.kind != OpKind::kPut && op.kind != OpKind::kDelete && op.kind != OpKind::kGet) {
        return Error("an op of \"" + name + "\" must be a put, delete or get");
      }
      if (op.kind == OpKind::kPut && !have_value) {
        return Error("a put of \"" + name + "\" needs a \"value\"");
      }
      out->push_back(std::move(op));
      return Status::OK();
    });
  }

  // A txn's results: [{"value": str|null}, ...]; other fields are skipped.
  Status ReadTxnResults(std::vector<TxnResult>* out) {
    out->clear();
    return ReadObjects("results", [&] {
      TxnResult r;
      Status s = ReadObject([&](const std::string& name) {
        if (name == "value") {
          r.has_value = true;
          return ReadNullableString(name, &r.value);
        }
        return SkipValue(0);
      });
      if (s.ok()) out->push_back(std::move(r));
      return s;
    });
  }

  Status ReadNullableString(const std::string& name, std::optional<std::string>* out) {
    if (ConsumeWord("null")) {
      out->reset();
      return Status::OK();
    }
    if (pos_ < s_.size() && s_[pos_] == '"') {
      std::string v;
      Status s = ReadString(&v);
      if (s.ok()) *out = std::move(v);
      return s;
    }
    return Error("\"" + name + "\" must be a string or null");
  }

  static void AppendUtf8(uint32_t cp, std::string* out) {
    if (cp < 0x80) {
      out->push_back(static_cast<char>(cp));
    } else if (cp < 0x800) {
      out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
      out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else if (cp < 0x10000) {
      out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
      out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
      out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else {
      out->push_back(static_cast<char>(0xF0 | (cp >> 18)));
      out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
      out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
      out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    }
  }

  bool ReadHex4(uint32_t* out) {
    if (pos_ + 4 > s_.size()) return false;
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) {
      const char c = s_[pos_ + i];
      v <<= 4;
      if (c >= '0' && c <= '9') {
        v |= c - '0';
      } else if (c >= 'a' && c <= 'f') {
        v |= c - 'a' + 10;
      } else if (c >= 'A' && c <= 'F') {
        v |= c - 'A' + 10;
      } else {
        return false;
      }
    }
    pos_ += 4;
    *out = v;
    return true;
  }

  Status ReadString(std::string* out) {
    if (!Consume('"')) return Error("expected a string");
    out->clear();
    while (true) {
      if (pos_ >= s_.size()) return Error("unterminated string");
      const unsigned char c = static_cast<unsigned char>(s_[pos_]);
      if (c == '"') {
        pos_++;
        return Status::OK();
      }
      if (c < 0x20) return Error("control character in a string (must be escaped)");
      if (c != '\\') {
        out->push_back(static_cast<char>(c));
        pos_++;
        continue;
      }
      pos_++;
      if (pos_ >= s_.size()) return Error("unterminated string");
      const char e = s_[pos_++];
      switch (e) {
        case '"':
        case '\\':
        case '/':
          out->push_back(e);
          break;
        case 'b':
          out->push_back('\b');
          break;
        case 'f':
          out->push_back('\f');
          break;
        case 'n':
          out->push_back('\n');
          break;
        case 'r':
          out->push_back('\r');
          break;
        case 't':
          out->push_back('\t');
          break;
        case 'u': {
          uint32_t cp;
          if (!ReadHex4(&cp)) return Error("bad \\u escape");
          if (cp >= 0xD800 && cp < 0xDC00) {
            uint32_t lo;
            if (!ConsumeWord("\\u") || !ReadHex4(&lo) || lo < 0xDC00 || lo >= 0xE000) {
              return Error("unpaired surrogate in \\u escape");
            }
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
          } else if (cp >= 0xDC00 && cp < 0xE000) {
            return Error("unpaired surrogate in \\u escape");
          }
          AppendUtf8(cp, out);
          break;
        }
        default:
          pos_--;
          return Error(std::string("bad escape '\\") + e + "'");
      }
    }
  }

  Status SkipValue(int depth) {
    if (depth > 64) return Error("nesting too deep");
    if (pos_ >= s_.size()) return Error("expected a value");
    const char c = s_[pos_];
    if (c == '"') {
      std::string ignored;
      return ReadString(&ignored);
    }
    if (ConsumeWord("null") || ConsumeWord("true") || ConsumeWord("false")) return Status::OK();
    if (c == '-' || (c >= '0' && c <= '9')) {
      pos_++;
      while (pos_ < s_.size() &&
             (std::isdigit(static_cast<unsigned char>(s_[pos_])) || s_[pos_] == '.' ||
              s_[pos_] == 'e' || s_[pos_] == 'E' || s_[pos_] == '+' || s_[pos_] == '-')) {
        pos_++;
      }
      return Status::OK();
    }
    if (c == '[' || c == '{') {
      const char close = c == '[' ? ']' : '}';
      pos_++;
      SkipSpace();
      if (Consume(close)) return Status::OK();
      while (true) {
        SkipSpace();
        if (c == '{') {
          std::string ignored;
          Status s = ReadString(&ignored);
          if (!s.ok()) return s;
          SkipSpace();
          if (!Consume(':')) return Error("expected ':'");
          SkipSpace();
        }
        Status s = SkipValue(depth + 1);
        if (!s.ok()) return s;
        SkipSpace();
        if (Consume(',')) continue;
        if (Consume(close)) return Status::OK();
        return Error(std::string("expected ',' or '") + close + "'");
      }
    }
    return Error("expected a value");
  }

  std::string_view s_;
  size_t pos_ = 0;
};

bool IsBlank(std::string_view line) {
  for (char c : line) {
    if (c != ' ' && c != '\t' && c != '\r') return false;
  }
  return true;
}

Status LineError(size_t line, const std::string& what) {
  return Status::InvalidArgument("line " + std::to_string(line) + ": " + what);
}

// What a scan can have returned: keys in increasing order, inside its
// range, no more than its limit.
Status CheckScanResult(const Operation& scan) {
  if (scan.limit > 0 && scan.kvs.size() > static_cast<size_t>(scan.limit)) {
    return Status::InvalidArgument("scan returned " + std::to_string(scan.kvs.size()) +
                                   " keys, more than its limit " + std::to_string(scan.limit));
  }
  for (size_t i = 0; i < scan.kvs.size(); i++) {
    const std::string& key = scan.kvs[i].key;
    if (key < scan.key || (scan.end && key >= *scan.end)) {
      return Status::InvalidArgument("scan returned key \"" + key + "\", outside its range");
    }
    if (i > 0 && key <= scan.kvs[i - 1].key) {
      return Status::InvalidArgument("scan returned key \"" + key + "\" after \"" +
                                     scan.kvs[i - 1].key + "\": not in increasing order");
    }
  }
  return Status::OK();
}

// The branch of a txn answered ok that ran.
const std::vector<TxnOp>& BranchRun(const Operation& txn) {
  return txn.succeeded ? txn.success : txn.failure;
}

// What a txn can have returned: a result per op of the branch that ran,
// each get's with a value; or, resent, possibly none.
Status CheckTxnResult(const Operation& txn) {
  const std::vector<TxnOp>& branch = BranchRun(txn);
  if (txn.resent && txn.results.empty()) return Status::OK();
  if (txn.results.size() != branch.size()) {
    return Status::InvalidArgument("txn returned " + std::to_string(txn.results.size()) +
                                   " results for the " + std::to_string(branch.size()) +
                                   " ops of its " + (txn.succeeded ? "success" : "failure") +
                                   " branch");
  }
  for (size_t i = 0; i < branch.size(); i++) {
    if (branch[i].kind == OpKind::kGet && !txn.results[i].has_value) {
      return Status::InvalidArgument("result " + std::to_string(i + 1) +
                                     " of the txn, a get's, has no \"value\"");
    }
  }
  return Status::OK();
}

// An operation on key that history.ops[whole], a scan or txn, stands for
// (see history.h).
Operation PartOf(const History& history, size_t whole, OpKind kind, const std::string& key) {
  const Operation& w = history.ops[whole];
  Operation part;
  part.process = w.process;
  part.kind = kind;
  part.outcome = w.outcome;
  part.key = key;
  part.invoke_time = w.invoke_time;
  part.return_time = w.return_time;
  part.invoke_line = w.invoke_line;
  part.return_line = w.return_line;
  part.parent = whole;
  return part;
}

// Appends to *parts what branch, of the txn history.ops[txn], stands for
// (see history.h): per key it writes, one write of the key's state when it
// ends; and if results holds the branch's results, per get of a key no
// earlier op wrote, a read of its result.
void AddBranchParts(const History& history, size_t txn, const std::vector<TxnOp>& branch,
                    const std::vector<TxnResult>& results, std::vector<Operation>* parts) {
  std::map<std::string, size_t> written;  // key -> its write in *parts
  for (size_t i = 0; i < branch.size(); i++) {
    const TxnOp& op = branch[i];
    if (op.kind == OpKind::kGet) {
      if (i < results.size() && written.count(op.key) == 0) {
        parts->push_back(PartOf(history, txn, OpKind::kGet, op.key));
        parts->back().result = results[i].value;
      }
      continue;
    }
    const auto [it, first] = written.emplace(op.key, parts->size());
    if (first) parts->push_back(PartOf(history, txn, op.kind, op.key));
    Operation& write = (*parts)[it->second];
    write.kind = op.kind;
    write.value.reset();
    if (op.kind == OpKind::kPut) write.value = op.value;
  }
}

// Adds the operations every txn stands for on single keys (see history.h).
void AddTxnParts(History* history) {
  std::vector<Operation> parts;
  for (size_t i = 0; i < history->ops.size(); i++) {
    const Operation& txn = history->ops[i];
    if (txn.kind != OpKind::kTxn || txn.outcome == Outcome::kFail) continue;
    if (txn.outcome == Outcome::kInfo) {
      // Either branch may have run, or neither; nothing was returned.
      AddBranchParts(*history, i, txn.success, {}, &parts);
      AddBranchParts(*history, i, txn.failure, {}, &parts);
      continue;
    }
    // Had it failed, which condition failed would be unknown.
    const bool results_lost = txn.resent && txn.results.empty();
    if (txn.succeeded && !results_lost) {
      for (const TxnCompare& c : txn.compare) {
        if (c.kind != TxnCompare::Kind::kValue && c.kind != TxnCompare::Kind::kAbsent) continue;
        parts.push_back(PartOf(*history, i, OpKind::kGet, c.key));
        if (c.kind == TxnCompare::Kind::kValue) parts.back().result = c.value;
      }
    }
    AddBranchParts(*history, i, BranchRun(txn), txn.results, &parts);
  }
  std::move(parts.begin(), parts.end(), std::back_inserter(history->ops));
}

// Adds the reads of every scan answered ok (see history.h): per key of the
// history in the part of its range it covered, a get of what it returned
// for that key, or of absent.
void AddScanReads(History* history) {
  std::set<std::string> keys;
  for (const Operation& op : history->ops) {
    if (op.kind == OpKind::kScan) {
      for (const ScannedKey& kv : op.kvs) keys.insert(kv.key);
    } else if (op.kind == OpKind::kTxn) {
      for (const TxnCompare& c : op.compare) keys.insert(c.key);
      for (const TxnOp& o : op.success) keys.insert(o.key);
      for (const TxnOp& o : op.failure) keys.insert(o.key);
    } else {
      keys.insert(op.key);
    }
  }
  std::vector<Operation> reads;
  for (size_t i = 0; i < history->ops.size(); i++) {
    const Operation& scan = history->ops[i];
    if (scan.kind != OpKind::kScan || scan.outcome != Outcome::kOk) continue;
    auto covered = [&](const std::string& key) {
      if (scan.more) return !scan.kvs.empty() && key <= scan.kvs.back().key;
      return !scan.end || key < *scan.end;
    };
    auto returned = scan.kvs.begin();
    for (auto key = keys.lower_bound(scan.key); key != keys.end() && covered(*key); ++key) {
      Operation read = PartOf(*history, i, OpKind::kGet, *key);
      // Every key returned is in `keys`, in the same order: the walk meets each.
      if (returned != scan.kvs.end() && returned->key == *key) {
        read.result = returned->value;
        ++returned;
      }
      reads.push_back(std::move(read));
    }
  }
  std::move(reads.begin(), reads.end(), std::back_inserter(history->ops));
}

// Pairs events into operations as they arrive.
class Pairer {
 public:
  explicit Pairer(History* history) : history_(history) {}

  Status Add(Event&& e, size_t line) {
    history_->events++;
    auto it = open_.find(e.process);
    if (e.type == EventType::kInvoke) {
      if (it != open_.end()) {
        return LineError(line, "process " + std::to_string(e.process) +
                                   " invokes while its operation from line " +
                                   std::to_string(history_->ops[it->second].invoke_line) +
                                   " is still outstanding");
      }
      Operation op;
      op.process = e.process;
      op.kind = e.kind;
      op.key = std::move(e.key);
      op.invoke_time = e.time;
      op.invoke_line = line;
      if (e.kind == OpKind::kPut || e.kind == OpKind::kCas) op.value = std::move(e.value);
      if (e.kind == OpKind::kCas) op.expected = std::move(e.expected);
      if (e.kind == OpKind::kScan) {
        op.end = std::move(e.end);
        op.limit = e.limit;
      }
      if (e.kind == OpKind::kTxn) {
        op.compare = std::move(e.compare);
        op.success = std::move(e.success);
        op.failure = std::move(e.failure);
      }
      open_[e.process] = history_->ops.size();
      history_->ops.push_back(std::move(op));
      return Status::OK();
    }
    if (it == open_.end()) {
      return LineError(line, "process " + std::to_string(e.process) +
                                 " completes an operation it never invoked");
    }
    Operation& op = history_->ops[it->second];
    if (op.kind != e.kind || op.key != e.key) {
      return LineError(line, std::string("completion (") + OpKindName(e.kind) + " \"" + e.key +
                                 "\") does not match its invoke on line " +
                                 std::to_string(op.invoke_line) + " (" + OpKindName(op.kind) +
                                 " \"" + op.key + "\")");
    }
    if (e.time < op.invoke_time) {
      return LineError(line,
                       "completes before its invoke on line " + std::to_string(op.invoke_line));
    }
    op.outcome = e.type == EventType::kOk     ? Outcome::kOk
                 : e.type == EventType::kFail ? Outcome::kFail
                                              : Outcome::kInfo;
    if (op.outcome != Outcome::kInfo) {
      op.return_time = e.time;
      op.return_line = line;
    }
    if (op.kind == OpKind::kGet && op.outcome == Outcome::kOk) op.result = std::move(e.value);
    // The invoke names a put's or cas's arguments; fill them from the
    // completion when the invoke left them out.
    if ((op.kind == OpKind::kPut || op.kind == OpKind::kCas) && !op.value && e.value) {
      op.value = std::move(e.value);
    }
    if (op.kind == OpKind::kCas && !op.expected && e.expected) op.expected = std::move(e.expected);
    if (op.kind == OpKind::kScan) {
      if (!op.end && e.end) op.end = std::move(e.end);
      if (op.limit == 0) op.limit = e.limit;
      if (op.outcome == Outcome::kOk) {
        op.kvs = std::move(e.kvs);
        op.more = e.more;
        Status s = CheckScanResult(op);
        if (!s.ok()) return LineError(line, s.message());
      }
    }
    if (op.kind == OpKind::kTxn && op.outcome == Outcome::kOk) {
      op.succeeded = e.succeeded;
      op.results = std::move(e.results);
      op.resent = e.resent;
      Status s = CheckTxnResult(op);
      if (!s.ok()) return LineError(line, s.message());
    }
    open_.erase(it);
    return Status::OK();
  }

 private:
  History* history_;
  std::map<int64_t, size_t> open_;  // process -> index of its outstanding op
};

}  // namespace

Status ParseEvent(std::string_view line, Event* event) {
  *event = Event();
  LineReader r(line);
  return r.ReadEvent(event);
}

Status ParseHistory(std::istream& in, History* history) {
  *history = History();
  Pairer pairer(history);
  std::string line;
  size_t lineno = 0;
  while (std::getline(in, line)) {
    lineno++;
    if (IsBlank(line)) continue;
    Event e;
    Status s = ParseEvent(line, &e);
    if (!s.ok()) return LineError(lineno, s.message());
    s = pairer.Add(std::move(e), lineno);
    if (!s.ok()) return s;
  }
  if (in.bad()) return Status::IOError("read error after line " + std::to_string(lineno));
  // Operations still outstanding at the end stay kInfo, returning kNever.
  AddTxnParts(history);
  AddScanReads(history);
  return Status::OK();
}

Status ParseHistoryString(std::string_view text, History* history) {
  std::istringstream in{std::string(text)};
  return ParseHistory(in, history);
}

Status ReadHistoryFile(const std::string& path, History* history) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::IOError("cannot open " + path);
  return ParseHistory(in, history);
}

}  // namespace check
}  // namespace kv
