// Test helper: writes histories in kvload's JSON-lines format.
#pragma once

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "kvcheck/history.h"

namespace kv {
namespace check {
namespace testing {

using Value = std::optional<std::string>;
using Kvs = std::vector<ScannedKey>;

// Each call appends one operation (its invoke line, then its completion
// line) so a process's operations must be added in its own order.
class HistoryBuilder {
 public:
  HistoryBuilder& Put(int p, const std::string& key, const std::string& v, int64_t t0, int64_t t1,
                      const char* outcome = "ok") {
    return Op(p, "put", key, v, std::nullopt, t0, t1, outcome, v);
  }
  HistoryBuilder& Get(int p, const std::string& key, Value result, int64_t t0, int64_t t1,
                      const char* outcome = "ok") {
    return Op(p, "get", key, std::nullopt, std::nullopt, t0, t1, outcome, result);
  }
  HistoryBuilder& Delete(int p, const std::string& key, int64_t t0, int64_t t1,
                         const char* outcome = "ok") {
    return Op(p, "delete", key, std::nullopt, std::nullopt, t0, t1, outcome, std::nullopt);
  }
  HistoryBuilder& Cas(int p, const std::string& key, Value expected, const std::string& v,
                      int64_t t0, int64_t t1, const char* outcome = "ok") {
    return Op(p, "cas", key, v, expected, t0, t1, outcome, v);
  }
  // An operation whose completion is "info": t1 is when the client gave up.
  HistoryBuilder& InfoPut(int p, const std::string& key, const std::string& v, int64_t t0) {
    return Op(p, "put", key, v, std::nullopt, t0, t0 + 1, "info", v);
  }
  HistoryBuilder& InfoCas(int p, const std::string& key, Value expected, const std::string& v,
                          int64_t t0) {
    return Op(p, "cas", key, v, expected, t0, t0 + 1, "info", v);
  }
  // A scan of [start, end) (end nullopt: to the end) that returned kvs and
  // more; with an outcome other than "ok" they are left out of the file.
  HistoryBuilder& Scan(int p, const std::string& start, Value end, const Kvs& kvs, bool more,
                       int64_t t0, int64_t t1, const char* outcome = "ok", int64_t limit = 10) {
    ScanLine(p, "invoke", start, end, limit, nullptr, false, t0);
    const bool ok = std::string(outcome) == "ok";
    ScanLine(p, outcome, start, end, limit, ok ? &kvs : nullptr, more, t1);
    return *this;
  }
  // A txn whose invoke holds request (its "compare", "success" and
  // "failure" members, as JSON) and whose completion, when "ok", holds
  // response ("succeeded", "results" and "resent").
  HistoryBuilder& Txn(int p, const std::string& request, const std::string& response, int64_t t0,
                      int64_t t1, const char* outcome = "ok") {
    TxnLine(p, "invoke", request, t0);
    TxnLine(p, outcome, std::string(outcome) == "ok" ? response : "", t1);
    return *this;
  }
  // An invoke that is never completed.
  HistoryBuilder& Pending(int p, const char* f, const std::string& key, Value v, int64_t t0) {
    Line(p, "invoke", f, key, v, std::nullopt, t0);
    return *this;
  }

  // One raw event line.
  void Line(int p, const char* type, const char* f, const std::string& key, const Value& v,
            const Value& expected, int64_t t) {
    text_ += "{\"process\":" + std::to_string(p) + ",\"type\":\"" + type + "\",\"f\":\"" + f +
             "\",\"key\":";
    AppendJsonString(key, &text_);
    text_ += ",\"value\":";
    AppendNullable(v);
    text_ += ",\"expected\":";
    AppendNullable(expected);
    text_ += ",\"time\":" + std::to_string(t) + "}\n";
  }

  // One raw scan event line; kvs and more only when kvs is not null.
  void ScanLine(int p, const char* type, const std::string& start, const Value& end, int64_t limit,
                const Kvs* kvs, bool more, int64_t t) {
    text_ +=
        "{\"process\":" + std::to_string(p) + ",\"type\":\"" + type + "\",\"f\":\"scan\",\"key\":";
    AppendJsonString(start, &text_);
    text_ += ",\"end\":";
    AppendNullable(end);
    text_ += ",\"limit\":" + std::to_string(limit);
    if (kvs) {
      text_ += ",\"kvs\":[";
      for (size_t i = 0; i < kvs->size(); i++) {
        text_ += i ? ",{\"key\":" : "{\"key\":";
        AppendJsonString((*kvs)[i].key, &text_);
        text_ += ",\"value\":";
        AppendJsonString((*kvs)[i].value, &text_);
        text_ += "}";
      }
      text_ += std::string("],\"more\":") + (more ? "true" : "false");
    }
    text_ += ",\"time\":" + std::to_string(t) + "}\n";
  }

  // One raw txn event line holding members (JSON, may be empty).
  void TxnLine(int p, const char* type, const std::string& members, int64_t t) {
    text_ += "{\"process\":" + std::to_string(p) + ",\"type\":\"" + type + "\",\"f\":\"txn\"," +
             (members.empty() ? "" : members + ",") + "\"time\":" + std::to_string(t) + "}\n";
  }

  const std::string& text() const { return text_; }
  History Parse() const {
    History h;
    Status s = ParseHistoryString(text_, &h);
    if (!s.ok()) throw std::runtime_error(s.ToString());
    return h;
  }

 private:
  void AppendNullable(const Value& v) {
    if (v) {
      AppendJsonString(*v, &text_);
    } else {
      text_ += "null";
    }
  }
  HistoryBuilder& Op(int p, const char* f, const std::string& key, Value v, Value expected,
                     int64_t t0, int64_t t1, const char* outcome, Value completion_value) {
    Line(p, "invoke", f, key, std::string(f) == "get" ? std::nullopt : v, expected, t0);
    Line(p, outcome, f, key, completion_value, expected, t1);
    return *this;
  }
  std::string text_;
};

}  // namespace testing
}  // namespace check
}  // namespace kv
