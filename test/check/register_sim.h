// Test helper: clients running against a simulated register store, recorded
// as a kvload-style history. The store can be correct or have a bug, so the
// checker can be tested against ground truth.
//
// Each operation is invoked, takes effect at one later instant (when the
// store applies it) and returns later still, so the true linearization is
// known to exist for a correct store. Some operations time out (info: they
// may or may not have been applied), some writes are rejected (fail: not
// applied). Scans, when asked for, read their whole range at one instant;
// txns, when asked for, apply at one instant too.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "test/check/history_builder.h"

namespace kv {
namespace check {
namespace testing {

// kStaleRead: a get may read the value before the last write; kScanStale:
// a scan may, for a key; kScanMiss: a scan may leave out a key; kTxnStale:
// a get of a txn may read the value before the last write.
enum class StoreBug { kNone, kStaleRead, kLostWrite, kScanStale, kScanMiss, kTxnStale };

struct SimOptions {
  uint64_t seed = 1;
  int processes = 5;
  int keys = 3;
  int ops = 300;
  double info_prob = 0.03;  // an operation times out
  double fail_prob = 0.02;  // a write is rejected
  double scan_prob = 0;     // an operation is a scan (else get, put, delete or cas)
  int scan_limit = 3;       // keys a scan returns at most
  double txn_prob = 0;      // an operation is a txn on two keys (maybe the same)
  StoreBug bug = StoreBug::kNone;
  double bug_prob = 0.05;
};

// Returns the history text, one JSON event per line.
inline std::string SimulateRegister(const SimOptions& o) {
  std::mt19937_64 rng(o.seed);
  auto chance = [&](double p) { return std::uniform_real_distribution<double>(0, 1)(rng) < p; };
  HistoryBuilder out;
  auto json = [](const Value& v) {
    std::string s = "null";
    if (v) {
      s.clear();
      AppendJsonString(*v, &s);
    }
    return s;
  };
  auto json_ops = [&](const std::vector<TxnOp>& ops) {
    std::string s;
    for (const TxnOp& op : ops) {
      s += std::string(s.empty() ? "" : ",") + "{\"f\":\"" + OpKindName(op.kind) +
           "\",\"key\":" + json(op.key);
      if (op.kind == OpKind::kPut) s += ",\"value\":" + json(op.value);
      s += "}";
    }
    return "[" + s + "]";
  };
  struct KeyState {
    Value current;
    Value previous;  // the value before the last write (for the stale-read bug)
  };
  std::map<std::string, KeyState> store;
  enum class Phase { kIdle, kInvoked, kApplied };
  struct Client {
    int id = 0;
    Phase phase = Phase::kIdle;
    const char* f = "get";
    std::string key;
    Value value, expected, result;
    bool cas_ok = false;
    Value end;  // scan: the range [key, end) and what it read
    Kvs kvs;
    bool more = false;
    // txn: if key holds expected, success runs, else failure; the invoke's
    // and the completion's JSON members.
    std::vector<TxnOp> success, failure;
    std::string request, response;
  };
  std::vector<Client> clients(o.processes);
  int next_id = 0;
  for (auto& c : clients) c.id = next_id++;
  int invoked = 0, writes = 0;
  int64_t now = 1000;
  auto apply = [&](Client& c) {
    if (std::string(c.f) == "scan") {
      c.kvs.clear();
      c.more = false;
      for (auto it = store.lower_bound(c.key); it != store.end() && (!c.end || it->first < *c.end);
           ++it) {
        Value v = it->second.current;
        if (o.bug == StoreBug::kScanStale && v != it->second.previous && chance(o.bug_prob)) {
          v = it->second.previous;
        }
        if (o.bug == StoreBug::kScanMiss && v && chance(o.bug_prob)) v.reset();
        if (!v) continue;
        if (c.kvs.size() == static_cast<size_t>(o.scan_limit)) {
          c.more = true;
          break;
        }
        c.kvs.push_back(ScannedKey{it->first, *v});
      }
      return;
    }
    if (std::string(c.f) == "txn") {
      c.cas_ok = store[c.key].current == c.expected;
      std::string results;
      for (const TxnOp& op : c.cas_ok ? c.success : c.failure) {
        KeyState& ks = store[op.key];
        if (!results.empty()) results += ",";
        if (op.kind == OpKind::kGet) {
          Value v = ks.current;
          if (o.bug == StoreBug::kTxnStale && ks.previous != ks.current && chance(o.bug_prob)) {
            v = ks.previous;
          }
          results += "{\"value\":" + json(v) + "}";
          continue;
        }
        ks.previous = ks.current;
        ks.current = op.kind == OpKind::kPut ? Value(op.value) : std::nullopt;
        results += "{}";
      }
      c.response = std::string("\"succeeded\":") + (c.cas_ok ? "true" : "false") +
                   ",\"results\":[" + results + "]";
      return;
    }
    KeyState& ks = store[c.key];
    auto write = [&](Value v) {
      ks.previous = ks.current;
      ks.current = std::move(v);
    };
    if (std::string(c.f) == "get") {
      c.result = ks.current;
      if (o.bug == StoreBug::kStaleRead && ks.previous != ks.current && chance(o.bug_prob)) {
        c.result = ks.previous;
      }
    } else if (std::string(c.f) == "put") {
      if (o.bug == StoreBug::kLostWrite && chance(o.bug_prob)) return;
      write(c.value);
    } else if (std::string(c.f) == "delete") {
      write(std::nullopt);
    } else {
      c.cas_ok = ks.current == c.expected;
      if (c.cas_ok) write(c.value);
    }
  };
  int busy = 0;
  while (invoked < o.ops || busy > 0) {
    now += std::uniform_int_distribution<int>(1, 3)(rng);
    Client& c = clients[std::uniform_int_distribution<int>(0, o.processes - 1)(rng)];
    switch (c.phase) {
      case Phase::kIdle: {
        if (invoked >= o.ops) break;
        invoked++;
        busy++;
        auto random_key = [&] {
          return "k" + std::to_string(std::uniform_int_distribution<int>(0, o.keys - 1)(rng));
        };
        c.key = random_key();
        c.value.reset();
        c.expected.reset();
        c.result.reset();
        if (o.scan_prob > 0 && chance(o.scan_prob)) {
          // [key, end) between two keys, or from a key to the end.
          c.f = "scan";
          c.end = random_key();
          if (*c.end < c.key) std::swap(*c.end, c.key);
          if (*c.end == c.key) c.end.reset();
          out.ScanLine(c.id, "invoke", c.key, c.end, o.scan_limit, nullptr, false, now);
          c.phase = Phase::kInvoked;
          break;
        }
        if (o.txn_prob > 0 && chance(o.txn_prob)) {
          // Like a transfer: if key holds what was last seen, write it and
          // read another key (maybe the same), then delete that or read key
          // back; else read key.
          c.f = "txn";
          const KeyState& ks = store[c.key];
          c.expected = chance(0.7) ? ks.current : ks.previous;
          const std::string other = random_key();
          c.success = {
              {OpKind::kGet, other, ""},
              {OpKind::kPut, c.key, "v" + std::to_string(writes++)},
              chance(0.3) ? TxnOp{OpKind::kDelete, other, ""} : TxnOp{OpKind::kGet, c.key, ""}};
          c.failure = {{OpKind::kGet, c.key, ""}};
          c.request = "\"compare\":[{\"key\":" + json(c.key) +
                      (c.expected ? ",\"value\":" + json(c.expected) : ",\"absent\":true") +
                      "}],\"success\":" + json_ops(c.success) +
                      ",\"failure\":" + json_ops(c.failure);
          out.TxnLine(c.id, "invoke", c.request, now);
          c.phase = Phase::kInvoked;
          break;
        }
        const int dice = std::uniform_int_distribution<int>(0, 99)(rng);
        c.f = dice < 45 ? "get" : dice < 80 ? "put" : dice < 85 ? "delete" : "cas";
        if (std::string(c.f) == "put" || std::string(c.f) == "cas") {
          c.value = "v" + std::to_string(writes++);
        }
        if (std::string(c.f) == "cas") {
          // Usually the current value, so cas often succeeds.
          const KeyState& ks = store[c.key];
          c.expected = chance(0.7) ? ks.current : ks.previous;
        }
        out.Line(c.id, "invoke", c.f, c.key, c.value, c.expected, now);
        c.phase = Phase::kInvoked;
        break;
      }
      case Phase::kInvoked:
        if (chance(o.info_prob)) {
          // Timed out: maybe applied, maybe not; the client never learns.
          if (chance(0.5)) apply(c);
          if (std::string(c.f) == "scan") {
            out.ScanLine(c.id, "info", c.key, c.end, o.scan_limit, nullptr, false, now);
          } else if (std::string(c.f) == "txn") {
            out.TxnLine(c.id, "info", "", now);
          } else {
            out.Line(c.id, "info", c.f, c.key, c.value, c.expected, now);
          }
          c.id = next_id++;
          c.phase = Phase::kIdle;
          busy--;
        } else if (std::string(c.f) != "get" && std::string(c.f) != "scan" && chance(o.fail_prob)) {
          if (std::string(c.f) == "txn") {
            out.TxnLine(c.id, "fail", "", now);
          } else {
            out.Line(c.id, "fail", c.f, c.key, c.value, c.expected, now);
          }
          c.phase = Phase::kIdle;
          busy--;
        } else {
          apply(c);
          c.phase = Phase::kApplied;
        }
        break;
      case Phase::kApplied: {
        if (std::string(c.f) == "txn") {
          out.TxnLine(c.id, "ok", c.response, now);
          c.phase = Phase::kIdle;
          busy--;
          break;
        }
        if (std::string(c.f) == "scan") {
          out.ScanLine(c.id, "ok", c.key, c.end, o.scan_limit, &c.kvs, c.more, now);
          c.phase = Phase::kIdle;
          busy--;
          break;
        }
        const bool is_get = std::string(c.f) == "get";
        const bool is_cas = std::string(c.f) == "cas";
        out.Line(c.id, is_cas && !c.cas_ok ? "fail" : "ok", c.f, c.key, is_get ? c.result : c.value,
                 c.expected, now);
        c.phase = Phase::kIdle;
        busy--;
        break;
      }
    }
  }
  return out.text();
}

}  // namespace testing
}  // namespace check
}  // namespace kv
