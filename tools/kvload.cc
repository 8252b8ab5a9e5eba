// kvload: a multithreaded load generator for kvstore.
//
//   kvload 8080 4 10000          4 threads x 10000 writes at 127.0.0.1:8080
//   kvload --threads 8 --pipeline 16 --duration 30 --read-ratio 0.5
//
// Each thread owns an AsyncClient (kvstore/async_client.h) with --connections
// connections to each node it talks to, and keeps --connections x --pipeline
// requests in flight. The client gives every request in flight its own
// session, so a write retried after REDIRECT, BUSY, UNAVAILABLE, UNKNOWN or a
// timeout is applied exactly once, and routes each key to its shard's leader
// in a sharded cluster. The client retries BUSY (an overloaded leader shed
// the request) after a backoff, within its retry budget: a BUSY answer is
// no outcome, only counted ("busy" in the summary). Latency is measured from the intended send time
// (with --rate, the fixed arrival schedule), so a stall shows in the
// percentiles instead of silently delaying later requests. With
// --scan-ratio, some operations are scans of a short range of the key space
// (--scan-span keys from one chosen as for the other operations, at most
// --scan-limit of them returned): a request per shard, in flight with the
// rest, whose pages kvload merges. --key and --server-keys (or KVSTORE_KEY,
// KVSTORE_SERVER_KEYS) talk to a secure cluster over CurveZMQ.
#include <malloc.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "credential_flags.h"
#include "histogram.h"
#include "kvstore/async_client.h"
#include "kvstore/client.h"
#include "kvstore/credentials.h"

namespace {

using Clock = std::chrono::steady_clock;
using kv::client::Op;

// The most keys a scan page may hold (docs/protocol.md, "Scans").
constexpr size_t kMaxScanLimit = 10000;

uint64_t NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch())
      .count();
}

struct Settings {
  std::vector<std::string> endpoints;
  int threads = 4;
  int connections = 1;    // per thread
  int pipeline = 1;       // in flight per connection
  uint64_t requests = 0;  // per thread; 0 = use duration
  double duration_s = 10;
  uint64_t keys = 100000;
  std::string key_dist = "uniform";
  size_t value_size = 100;
  double read_ratio = 0;
  double cas_ratio = 0;  // compare-and-swap against the last value this thread saw
  uint64_t ttl_ms = 0;   // puts and cas: the keys expire this long after; 0: never
  double scan_ratio = 0;
  uint64_t scan_span = 20;  // a scan reads [key i, key i + scan_span)
  size_t scan_limit = 10;   // and returns at most this many keys
  bool stale_reads = false;
  double rate = 0;  // total ops/s; 0 = closed loop
  bool json = false;
  uint64_t seed = 1;
  bool verify = false;
  std::string history_path;
  int request_timeout_ms = 1000;
  double grace_s = 30;                  // after the load, how long unanswered requests may take
  kv::client::Credentials credentials;  // secure clusters; empty: no CURVE
};

// Zipf over [0, n) with exponent 0.99, by inverse CDF on a precomputed table.
class KeyChooser {
 public:
  KeyChooser(const Settings& s) : n_(s.keys), zipf_(s.key_dist == "zipf") {
    if (!zipf_) return;
    cdf_.resize(n_);
    double sum = 0;
    for (uint64_t i = 0; i < n_; ++i) {
      sum += 1.0 / std::pow(static_cast<double>(i + 1), 0.99);
      cdf_[i] = sum;
    }
    for (double& c : cdf_) c /= sum;
  }
  uint64_t Next(std::mt19937_64& rng) const {
    if (!zipf_) return rng() % n_;
    const double u = std::uniform_real_distribution<double>(0, 1)(rng);
    return static_cast<uint64_t>(std::lower_bound(cdf_.begin(), cdf_.end(), u) - cdf_.begin());
  }

 private:
  uint64_t n_;
  bool zipf_;
  std::vector<double> cdf_;
};

std::string KeyName(uint64_t k) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "key%012llu", static_cast<unsigned long long>(k));
  return buf;
}

// `s` as a JSON string: what kvload writes is plain ASCII, but a scan may
// return keys and values other clients wrote.
std::string Json(const std::string& s) {
  std::string out = "\"";
  for (const char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", static_cast<unsigned>(c));
      out += buf;
    } else {
      out += c;
    }
  }
  return out + "\"";
}

std::string JsonOrNull(const std::string* s) { return s ? Json(*s) : "null"; }

// One operation as the history records it (Jepsen/Knossos style), in the
// format tools/kvcheck/history.h documents.
struct HistoryWriter {
  std::mutex mu;
  std::ofstream out;
  void Write(int process, const char* type, Op op, const std::string& key, const std::string* value,
             const std::string* expected, uint64_t time_ns) {
    const char* f = op == Op::kGet ? "get" : op == Op::kCas ? "cas" : "put";
    std::string line = Head(process, type, f, key) + ",\"value\":" + JsonOrNull(value);
    if (op == Op::kCas) line += ",\"expected\":" + JsonOrNull(expected);
    Emit(std::move(line), time_ns);
  }
  // A scan of [start, end): kvs and more only when it completed "ok".
  void WriteScan(int process, const char* type, const std::string& start, const std::string& end,
                 size_t limit, const std::vector<kv::client::KeyValue>* kvs, bool more,
                 uint64_t time_ns) {
    std::string line = Head(process, type, "scan", start) + ",\"end\":" + Json(end) +
                       ",\"limit\":" + std::to_string(limit);
    if (kvs) {
      line += ",\"kvs\":[";
      for (size_t i = 0; i < kvs->size(); ++i) {
        line += i ? "," : "";
        line += "{\"key\":" + Json((*kvs)[i].key) + ",\"value\":" + Json((*kvs)[i].value) + "}";
      }
      line += std::string("],\"more\":") + (more ? "true" : "false");
    }
    Emit(std::move(line), time_ns);
  }

 private:
  static std::string Head(int process, const char* type, const char* f, const std::string& key) {
    return "{\"process\":" + std::to_string(process) + ",\"type\":\"" + type + "\",\"f\":\"" + f +
           "\",\"key\":" + Json(key);
  }
  void Emit(std::string line, uint64_t time_ns) {
    line += ",\"time\":" + std::to_string(time_ns) + "}\n";
    std::lock_guard<std::mutex> lock(mu);
    out << line;
  }
};

// What --verify needs of each acknowledged write.
struct WriteRecord {
  std::string value;
  uint64_t invoke_ns = 0;
  uint64_t ack_ns = 0;  // 0 = never acknowledged (fate unknown)
};

struct ThreadResult {
  kv::tools::Histogram latency;       // every operation, scans too
  kv::tools::Histogram scan_latency;  // scans alone
  uint64_t scan_keys = 0;             // keys the scans answered OK returned
  std::map<std::string, uint64_t> outcomes;
  std::map<std::string, std::string> first_error;  // per outcome, the first error text
  uint64_t redirects = 0;
  uint64_t retries = 0;
  uint64_t busy = 0;
  std::map<std::string, std::vector<WriteRecord>> writes;  // for --verify
};

struct Shared {
  std::atomic<uint64_t> done{0};
  std::atomic<uint64_t> errors{0};
  std::atomic<bool> stop{false};
  std::atomic<int> next_process{0};
  HistoryWriter* history = nullptr;
};

class Worker {
 public:
  Worker(const Settings& s, int index, const kv::client::Topology& topology, const KeyChooser& keys,
         Shared* shared)
      : s_(s),
        index_(index),
        keys_(keys),
        shared_(shared),
        rng_(s.seed * 7919 + index),
        client_(Options(s), topology) {}

  ThreadResult Run();

 private:
  // A request this thread keeps in flight, and what the history needs of it.
  struct Slot {
    uint64_t id = 0;  // names this slot's writes (with seq): unique values
    uint64_t seq = 0;
    int process = 0;  // history process id; a new one after an unknown outcome
    bool busy = false;
    Op op = Op::kGet;
    std::string key;
    std::string value;
    bool has_expect = false;  // cas: false means "only if absent"
    std::string expect;
    uint64_t intended_ns = 0;
    uint64_t invoke_ns = 0;
    // scan: the range [key, end), its shards' pages still in flight, what
    // the pages answered so far (merged when the last one comes), and the
    // first answer that was not OK.
    std::string end;
    uint32_t pages_due = 0;
    std::vector<kv::client::KeyValue> kvs;
    bool more = false;
    std::optional<std::string> cut;  // a page had more: nothing after this is known
    kv::client::Code scan_code = kv::client::Code::kOk;
    std::string scan_error;
  };

  static kv::client::AsyncOptions Options(const Settings& s) {
    kv::client::AsyncOptions o;
    o.endpoints = s.endpoints;
    o.connections = s.connections;
    o.request_timeout = std::chrono::milliseconds(s.request_timeout_ms);
    o.credentials = s.credentials;
    return o;
  }
  void Issue(size_t index, uint64_t intended_ns);
  // Sends a scan of [slot.key, slot.end): a request per shard.
  void IssueScan(size_t index);
  // A shard's page of the slot's scan; the scan completes with the last.
  void OnScanPage(Slot& slot, kv::client::Completion& c);
  // history_type: "ok" (happened, with its result), "fail" (certainly did
  // not happen) or "info" (unknown).
  void Complete(Slot& slot, const std::string& outcome, const char* history_type,
                const std::string* read_value);
  // Completes the slot's operation as its answer `code` says.
  void Finish(Slot& slot, kv::client::Code code, const std::string& error,
              const std::string* read_value);
  void OnCompletion(kv::client::Completion& c);

  const Settings& s_;
  int index_;
  const KeyChooser& keys_;
  Shared* shared_;
  std::mt19937_64 rng_;
  kv::client::AsyncClient client_;
  std::vector<Slot> slots_;
  std::vector<kv::client::Completion> completions_;
  // The value this thread last saw for each key (nullopt: absent), for cas.
  std::map<std::string, std::optional<std::string>> last_seen_;
  uint64_t issued_ = 0;
  ThreadResult result_;
};

void Worker::Issue(size_t index, uint64_t intended_ns) {
  Slot& slot = slots_[index];
  issued_++;
  slot.busy = true;
  slot.intended_ns = intended_ns;
  slot.invoke_ns = NowNs();
  const uint64_t first = keys_.Next(rng_);
  slot.key = KeyName(first);
  const double dice = std::uniform_real_distribution<double>(0, 1)(rng_);
  const bool read = dice < s_.read_ratio;
  slot.op = read                                                  ? Op::kGet
            : dice < s_.read_ratio + s_.cas_ratio                 ? Op::kCas
            : dice < s_.read_ratio + s_.cas_ratio + s_.scan_ratio ? Op::kScan
                                                                  : Op::kPut;
  if (slot.op == Op::kScan) {
    // A short range from the key chosen: under zipf, often the hot keys.
    slot.end = KeyName(std::min(first + s_.scan_span, s_.keys));
    IssueScan(index);
    return;
  }
  if (slot.op == Op::kCas) {
    // Expect what this thread last saw: often right, sometimes raced.
    auto seen = last_seen_.find(slot.key);
    slot.has_expect = seen != last_seen_.end() && seen->second.has_value();
    slot.expect = slot.has_expect ? *seen->second : std::string();
  }
  if (!read) {
    slot.seq++;
    // Unique per write, so that --verify and the history can tell writes apart.
    std::string v = std::to_string(slot.id) + "-" + std::to_string(slot.seq) + "-";
    if (v.size() < s_.value_size) v.append(s_.value_size - v.size(), 'x');
    slot.value = std::move(v);
    if (s_.verify) result_.writes[slot.key].push_back(WriteRecord{slot.value, slot.invoke_ns, 0});
  }
  if (shared_->history) {
    shared_->history->Write(slot.process, "invoke", slot.op, slot.key, read ? nullptr : &slot.value,
                            slot.has_expect ? &slot.expect : nullptr, slot.invoke_ns);
  }
  kv::client::Request req;
  req.op = slot.op;
  req.key = slot.key;
  if (!read) req.value = slot.value;
  if (slot.op == Op::kCas && slot.has_expect) req.expect = slot.expect;
  if (!read) req.ttl_ms = s_.ttl_ms;
  req.stale = s_.stale_reads;
  client_.Submit(index, std::move(req));
}

void Worker::IssueScan(size_t index) {
  Slot& slot = slots_[index];
  slot.kvs.clear();
  slot.more = false;
  slot.cut.reset();
  slot.scan_code = kv::client::Code::kOk;
  slot.scan_error.clear();
  if (shared_->history) {
    shared_->history->WriteScan(slot.process, "invoke", slot.key, slot.end, s_.scan_limit, nullptr,
                                false, slot.invoke_ns);
  }
  // Keys are spread over the shards by hash: each holds part of the range.
  const uint32_t shards = client_.shards();
  slot.pages_due = std::max<uint32_t>(shards, 1);
  for (uint32_t shard = 0; shard < slot.pages_due; ++shard) {
    kv::client::Request req;
    req.op = Op::kScan;
    req.scan.start = slot.key;
    req.scan.end = slot.end;
    req.scan.limit = s_.scan_limit;
    req.scan.stale = s_.stale_reads;
    req.shard = shards > 0 ? static_cast<int64_t>(shard) : -1;
    client_.Submit(index, std::move(req));
  }
}

void Worker::OnScanPage(Slot& slot, kv::client::Completion& c) {
  if (c.code == kv::client::Code::kOk) {
    // A page cut short covers its shard's keys up to its last one only.
    if (c.more) {
      const std::string last = c.kvs.empty() ? std::string() : c.kvs.back().key;
      if (!slot.cut || last < *slot.cut) slot.cut = last;
    }
    slot.more = slot.more || c.more;
    std::move(c.kvs.begin(), c.kvs.end(), std::back_inserter(slot.kvs));
  } else if (slot.scan_code == kv::client::Code::kOk) {
    slot.scan_code = c.code;
    slot.scan_error = c.error;
  }
  if (--slot.pages_due > 0) return;
  if (slot.scan_code == kv::client::Code::kOk) {
    // Merged: the first scan_limit keys of the range. Every page holds
    // scan_limit keys unless the range ends first, or the reply-size cap
    // cut it: past the cut, its shard may hold keys no page returned.
    std::sort(
        slot.kvs.begin(), slot.kvs.end(),
        [](const kv::client::KeyValue& a, const kv::client::KeyValue& b) { return a.key < b.key; });
    if (slot.cut) {
      slot.kvs.erase(std::upper_bound(slot.kvs.begin(), slot.kvs.end(), *slot.cut,
                                      [](const std::string& cut, const kv::client::KeyValue& kv) {
                                        return cut < kv.key;
                                      }),
                     slot.kvs.end());
    }
    if (slot.kvs.size() > s_.scan_limit) {
      slot.kvs.resize(s_.scan_limit);
      slot.more = true;
    }
  }
  Finish(slot, slot.scan_code, slot.scan_error, nullptr);
}

void Worker::Complete(Slot& slot, const std::string& outcome, const char* history_type,
                      const std::string* read_value) {
  const uint64_t now = NowNs();
  result_.latency.Record(now - slot.intended_ns);
  result_.outcomes[outcome]++;
  if (outcome != "OK" && outcome != "NOT_FOUND") shared_->errors++;
  const bool write = slot.op == Op::kPut || slot.op == Op::kCas;
  if (slot.op == Op::kScan) {
    result_.scan_latency.Record(now - slot.intended_ns);
    if (outcome == "OK") result_.scan_keys += slot.kvs.size();
  }
  if (write && s_.verify) {
    auto& list = result_.writes[slot.key];
    for (auto w = list.begin(); w != list.end(); ++w) {
      if (w->value != slot.value) continue;
      if (outcome == "OK") {
        w->ack_ns = now;
      } else if (std::string(history_type) == "fail") {
        list.erase(w);  // certainly not applied
      }
      break;
    }
  }
  // What this thread saw last, for the expected value of its cas operations
  // (not kept without them: it costs a map update per operation).
  if (s_.cas_ratio > 0 && outcome == "OK") {
    if (slot.op == Op::kGet) {
      last_seen_[slot.key] = read_value ? std::optional<std::string>(*read_value) : std::nullopt;
    } else if (write) {
      last_seen_[slot.key] = slot.value;
    }
  } else if (s_.cas_ratio > 0 && outcome == "NOT_FOUND" && slot.op == Op::kGet) {
    last_seen_[slot.key] = std::nullopt;
  }
  if (shared_->history) {
    if (slot.op == Op::kScan) {
      shared_->history->WriteScan(slot.process, history_type, slot.key, slot.end, s_.scan_limit,
                                  outcome == "OK" ? &slot.kvs : nullptr, slot.more, now);
    } else {
      const std::string* v = slot.op == Op::kGet ? read_value : &slot.value;
      shared_->history->Write(slot.process, history_type, slot.op, slot.key, v,
                              slot.has_expect && slot.op == Op::kCas ? &slot.expect : nullptr, now);
    }
    // A process whose operation's outcome is unknown never completes it.
    if (std::string(history_type) == "info") slot.process = shared_->next_process++;
  }
  slot.busy = false;
  shared_->done++;
}

void Worker::OnCompletion(kv::client::Completion& c) {
  Slot& slot = slots_[c.tag];
  if (slot.op == Op::kScan) {
    OnScanPage(slot, c);
  } else {
    Finish(slot, c.code, c.error, &c.value);
  }
}

void Worker::Finish(Slot& slot, kv::client::Code code, const std::string& error,
                    const std::string* read_value) {
  switch (code) {
    case kv::client::Code::kOk:
      Complete(slot, "OK", "ok", read_value);
      return;
    case kv::client::Code::kNotFound:
      Complete(slot, "NOT_FOUND", "ok", nullptr);
      return;
    case kv::client::Code::kUnavailable:
      // Not sent (no server key to send it with); an earlier attempt may
      // have been, so its fate is unknown.
      result_.first_error.emplace("UNAVAILABLE", error);
      Complete(slot, "UNAVAILABLE", "info", nullptr);
      return;
    default:
      // CAS_FAILED, ERROR, DENIED: certainly not executed.
      if (!error.empty()) result_.first_error.emplace(kv::client::CodeName(code), error);
      Complete(slot, kv::client::CodeName(code), "fail", nullptr);
      return;
  }
}

ThreadResult Worker::Run() {
  const int total_slots = s_.connections * s_.pipeline;
  slots_.resize(total_slots);
  for (int i = 0; i < total_slots; ++i) {
    // Distinct per slot and per run; the top bit keeps it non-zero.
    slots_[i].id = ((s_.seed << 40) ^ (static_cast<uint64_t>(index_) << 20) ^
                    static_cast<uint64_t>(i + 1) ^ (NowNs() << 1)) |
                   (1ULL << 63);
    slots_[i].process = shared_->next_process++;
  }
  const uint64_t start = NowNs();
  const uint64_t end =
      s_.requests ? UINT64_MAX : start + static_cast<uint64_t>(s_.duration_s * 1e9);
  const double per_thread_rate = s_.rate / s_.threads;
  const uint64_t interval_ns =
      per_thread_rate > 0 ? static_cast<uint64_t>(1e9 / per_thread_rate) : 0;
  uint64_t next_intended = start;
  // After the load ends, requests still unanswered get this long to finish.
  const uint64_t grace_ns = static_cast<uint64_t>(s_.grace_s * 1e9);
  uint64_t give_up = UINT64_MAX;
  while (true) {
    const uint64_t now = NowNs();
    const bool more = s_.requests ? issued_ < s_.requests : now < end;
    if (!more && give_up == UINT64_MAX) give_up = now + grace_ns;
    for (size_t i = 0; i < slots_.size(); ++i) {
      if (slots_[i].busy || !more || shared_->stop ||
          (s_.requests != 0 && issued_ >= s_.requests)) {
        continue;
      }
      if (interval_ns == 0) {
        Issue(i, NowNs());
      } else if (now >= next_intended) {
        Issue(i, next_intended);
        next_intended += interval_ns;
      }
    }
    const bool any_busy = client_.in_flight() > 0;
    if (!any_busy && (!more || shared_->stop)) break;
    if (!more && now > give_up) {
      // The cluster did not answer these within the grace period: their
      // outcome is unknown (a write may still take effect).
      for (Slot& slot : slots_) {
        if (slot.busy) Complete(slot, "TIMEOUT", "info", nullptr);
      }
      break;
    }
    completions_.clear();
    client_.Poll(std::chrono::milliseconds(interval_ns ? 1 : 100), &completions_);
    for (kv::client::Completion& c : completions_) OnCompletion(c);
  }
  result_.redirects = client_.redirects();
  result_.retries = client_.retries();
  result_.busy = client_.busy();
  return std::move(result_);
}

// The latency percentiles of h, in microseconds: a JSON object, or text.
std::string LatencyJson(const kv::tools::Histogram& h) {
  auto us = [&](double q) { return h.Quantile(q) / 1000.0; };
  char buf[160];
  std::snprintf(buf, sizeof buf,
                "{\"p50\":%.1f,\"p90\":%.1f,\"p99\":%.1f,\"p999\":%.1f,\"max\":%.1f}", us(0.5),
                us(0.9), us(0.99), us(0.999), h.max() / 1000.0);
  return buf;
}
std::string LatencyText(const kv::tools::Histogram& h) {
  auto us = [&](double q) { return h.Quantile(q) / 1000.0; };
  char buf[160];
  std::snprintf(buf, sizeof buf, "p50 %.0f  p90 %.0f  p99 %.0f  p99.9 %.0f  max %.0f", us(0.5),
                us(0.9), us(0.99), us(0.999), h.max() / 1000.0);
  return buf;
}

// Reads back every key written and checks that its value is one the history
// allows: the last acknowledged write, or a write not acknowledged before
// that one was invoked. Returns the number of violations.
uint64_t Verify(const Settings& s, const std::map<std::string, std::vector<WriteRecord>>& writes,
                uint64_t* checked) {
  kv::client::Options opts;
  opts.endpoints = s.endpoints;
  opts.timeout = std::chrono::milliseconds(10000);
  opts.credentials = s.credentials;
  kv::client::Client client(opts);
  uint64_t lost = 0;
  *checked = 0;
  for (const auto& [key, list] : writes) {
    const WriteRecord* last_acked = nullptr;
    for (const auto& w : list) {
      if (w.ack_ns && (!last_acked || w.ack_ns > last_acked->ack_ns)) last_acked = &w;
    }
    if (!last_acked) continue;
    (*checked)++;
    kv::client::Result r = client.Get(key);
    bool allowed = false;
    if (r.ok()) {
      for (const auto& w : list) {
        if (w.value == r.value &&
            (&w == last_acked || w.ack_ns == 0 || w.ack_ns > last_acked->invoke_ns)) {
          allowed = true;
        }
      }
    }
    if (!allowed) {
      lost++;
      if (lost <= 10) {
        std::fprintf(stderr,
                     "kvload: LOST WRITE: key %s should hold \"%s\" (or a later value) "
                     "but read %s \"%s\"\n",
                     key.c_str(), last_acked->value.c_str(), kv::client::CodeName(r.code),
                     r.value.c_str());
      }
    }
  }
  return lost;
}

}  // namespace

int main(int argc, char** argv) {
  // As kvstore does (src/node/main.cc): large values would otherwise cost a
  // fresh mmap and a page fault per 4 KiB at every copy.
  mallopt(M_MMAP_THRESHOLD, 4 << 20);
  mallopt(M_TRIM_THRESHOLD, 32 << 20);
  CLI::App app{
      "kvload: multithreaded load generator for kvstore.\n"
      "Positional form, as the prototype: kvload PORT THREADS REQUESTS"};
  Settings s;
  int port = 0;
  std::string endpoints = kv::client::DefaultEndpoints();
  app.add_option("port", port, "Positional: connect at 127.0.0.1:PORT");
  app.add_option("threads_pos", s.threads, "Positional: threads");
  app.add_option("requests_pos", s.requests, "Positional: requests per thread");
  app.add_option("--endpoints", endpoints, "Comma-separated host:port of members")
      ->capture_default_str();
  app.add_option("--threads", s.threads, "Client threads")->capture_default_str();
  app.add_option("--connections", s.connections, "Connections per thread")->capture_default_str();
  app.add_option("--pipeline", s.pipeline, "Requests in flight per connection")
      ->capture_default_str();
  app.add_option("--requests", s.requests, "Requests per thread (instead of --duration)");
  app.add_option("--duration", s.duration_s, "Seconds to run")->capture_default_str();
  app.add_option("--keys", s.keys, "Key space size")->capture_default_str();
  app.add_option("--key-dist", s.key_dist, "uniform or zipf")
      ->check(CLI::IsMember({"uniform", "zipf"}))
      ->capture_default_str();
  app.add_option("--value-size", s.value_size, "Value bytes")->capture_default_str();
  app.add_option("--read-ratio", s.read_ratio, "Fraction of gets, 0..1")
      ->check(CLI::Range(0.0, 1.0))
      ->capture_default_str();
  app.add_option("--cas-ratio", s.cas_ratio,
                 "Fraction of compare-and-swaps (expecting the value this thread last saw)")
      ->check(CLI::Range(0.0, 1.0))
      ->capture_default_str();
  app.add_option("--scan-ratio", s.scan_ratio,
                 "Fraction of scans, 0..1: each reads --scan-span keys of the key space from a key "
                 "chosen as for the other operations")
      ->check(CLI::Range(0.0, 1.0))
      ->capture_default_str();
  app.add_option("--scan-span", s.scan_span, "Keys of the key space a scan's range spans")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--scan-limit", s.scan_limit, "Most keys a scan returns")
      ->check(CLI::Range(size_t{1}, kMaxScanLimit))
      ->capture_default_str();
  app.add_option("--ttl-ms", s.ttl_ms,
                 "Puts and cas make keys that expire this many ms after the write (0: never)")
      ->capture_default_str();
  app.add_flag("--stale-reads", s.stale_reads, "Gets and scans skip the linearizable check");
  app.add_option("--rate", s.rate, "Open loop: total requests per second (0 = closed loop)")
      ->capture_default_str();
  app.add_option("--timeout-ms", s.request_timeout_ms,
                 "Resend a request unanswered this long, at least (longer when the cluster answers "
                 "slowly or the value is large)")
      ->capture_default_str();
  app.add_option("--grace", s.grace_s,
                 "Seconds unanswered requests may take after the load ends; then they count as "
                 "unknown (TIMEOUT)")
      ->capture_default_str();
  app.add_flag("--json", s.json, "Print the summary as JSON");
  app.add_option("--seed", s.seed, "Random seed")->capture_default_str();
  app.add_flag("--verify", s.verify,
               "After the load, read back every key written and report lost writes (exit 1)");
  app.add_option("--history", s.history_path, "Record every operation as JSON lines");
  kv::tools::CredentialFlags credential_flags;
  credential_flags.AddTo(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e);
    return code == 0 ? 0 : 2;
  }
  if (port != 0) {
    endpoints = "127.0.0.1:" + std::to_string(port);
    if (s.requests == 0) s.requests = 1000;
  }
  s.endpoints = kv::client::ParseEndpoints(endpoints);
  if (!credential_flags.Load("kvload", &s.credentials)) return 2;
  if (s.read_ratio + s.cas_ratio + s.scan_ratio > 1) {
    std::fprintf(stderr, "kvload: --read-ratio, --cas-ratio and --scan-ratio must not exceed 1\n");
    return 2;
  }
  if (s.ttl_ms > 0 && (s.verify || !s.history_path.empty())) {
    // Both would read an expired key as a lost write.
    std::fprintf(stderr, "kvload: --ttl-ms cannot be checked: drop --verify and --history\n");
    return 2;
  }
  if (s.endpoints.empty() || s.threads < 1 || s.connections < 1 || s.pipeline < 1 || s.keys == 0) {
    std::fprintf(stderr, "kvload: need endpoints, and threads, connections, pipeline, keys >= 1\n");
    return 2;
  }

  // Find the leader once, so that the load starts where it belongs, and for
  // a sharded cluster the shard map, so that each key goes to its shard's
  // leader from the first request.
  kv::client::Topology topology;
  {
    kv::client::Options opts;
    opts.endpoints = s.endpoints;
    opts.credentials = s.credentials;
    kv::client::Result r = kv::client::Discover(opts, &topology);
    if (!r.ok()) {
      std::fprintf(stderr, "kvload: no shard map (%s): learning it from REDIRECTs\n",
                   r.error.c_str());
    }
  }
  // Secure, and no endpoint's key known: every request would fail at once,
  // as fast as the threads can make them.
  if (s.credentials.secure() &&
      std::none_of(s.endpoints.begin(), s.endpoints.end(),
                   [&](const std::string& ep) { return topology.server_keys.count(ep) > 0; })) {
    std::fprintf(stderr,
                 "kvload: no server key for any of --endpoints %s: add a line \"ID KEY "
                 "HOST:PORT\" per member to --server-keys\n",
                 endpoints.c_str());
    return 2;
  }

  Shared shared;
  HistoryWriter history;
  if (!s.history_path.empty()) {
    history.out.open(s.history_path);
    if (!history.out) {
      std::fprintf(stderr, "kvload: cannot write %s\n", s.history_path.c_str());
      return 2;
    }
    shared.history = &history;
  }
  const KeyChooser keys(s);
  std::vector<ThreadResult> results(s.threads);
  std::vector<std::thread> threads;
  const auto start = Clock::now();
  for (int t = 0; t < s.threads; ++t) {
    threads.emplace_back([&, t] {
      Worker w(s, t, topology, keys, &shared);
      results[t] = w.Run();
    });
  }
  const bool tty = isatty(STDERR_FILENO);
  std::thread progress([&] {
    uint64_t last = 0;
    int ticks = 0;
    while (!shared.stop) {
      for (int i = 0; i < 10 && !shared.stop; ++i) {
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
      }
      ticks++;
      const uint64_t done = shared.done;
      const double elapsed = std::chrono::duration<double>(Clock::now() - start).count();
      if (tty) {
        std::fprintf(stderr, "\r%7.1fs  %10llu ops  %9.0f ops/s  %llu errors   ", elapsed,
                     static_cast<unsigned long long>(done), static_cast<double>(done - last),
                     static_cast<unsigned long long>(shared.errors.load()));
      } else if (ticks % 5 == 0) {
        std::fprintf(stderr, "%.0fs %llu ops %.0f ops/s %llu errors\n", elapsed,
                     static_cast<unsigned long long>(done), static_cast<double>(done - last),
                     static_cast<unsigned long long>(shared.errors.load()));
      }
      last = done;
    }
  });
  for (auto& th : threads) th.join();
  const double elapsed = std::chrono::duration<double>(Clock::now() - start).count();
  shared.stop = true;
  progress.join();
  if (tty) std::fputc('\n', stderr);

  ThreadResult total;
  for (auto& r : results) {
    total.latency.Add(r.latency);
    total.scan_latency.Add(r.scan_latency);
    total.scan_keys += r.scan_keys;
    for (const auto& [k, v] : r.outcomes) total.outcomes[k] += v;
    total.first_error.insert(r.first_error.begin(), r.first_error.end());
    total.redirects += r.redirects;
    total.retries += r.retries;
    total.busy += r.busy;
    for (auto& [key, list] : r.writes) {
      auto& dst = total.writes[key];
      dst.insert(dst.end(), list.begin(), list.end());
    }
  }
  const uint64_t ops = total.latency.count();
  // What the cluster said, once per kind: a DENIED run says which role it needs.
  for (const auto& [outcome, text] : total.first_error) {
    std::fprintf(stderr, "kvload: %s: %s\n", outcome.c_str(), text.c_str());
  }
  const kv::tools::Histogram& scans = total.scan_latency;
  uint64_t lost = 0, checked = 0;
  if (s.verify) lost = Verify(s, total.writes, &checked);

  if (s.json) {
    std::printf(
        "{\"ops\":%llu,\"seconds\":%.3f,\"ops_per_sec\":%.1f,\"latency_us\":%s,"
        "\"redirects\":%llu,\"retries\":%llu,\"busy\":%llu,\"outcomes\":{",
        static_cast<unsigned long long>(ops), elapsed, ops / elapsed,
        LatencyJson(total.latency).c_str(), static_cast<unsigned long long>(total.redirects),
        static_cast<unsigned long long>(total.retries),
        static_cast<unsigned long long>(total.busy));
    bool first = true;
    for (const auto& [k, v] : total.outcomes) {
      std::printf("%s\"%s\":%llu", first ? "" : ",", k.c_str(), static_cast<unsigned long long>(v));
      first = false;
    }
    std::printf("}");
    if (s.scan_ratio > 0) {
      std::printf(",\"scans\":{\"count\":%llu,\"keys\":%llu,\"latency_us\":%s}",
                  static_cast<unsigned long long>(scans.count()),
                  static_cast<unsigned long long>(total.scan_keys), LatencyJson(scans).c_str());
    }
    if (s.verify) {
      std::printf(",\"verify\":{\"keys_checked\":%llu,\"lost\":%llu}",
                  static_cast<unsigned long long>(checked), static_cast<unsigned long long>(lost));
    }
    std::printf("}\n");
  } else {
    std::printf("ops: %llu in %.2f s = %.0f ops/s (%d threads x %d connections x %d pipeline)\n",
                static_cast<unsigned long long>(ops), elapsed, ops / elapsed, s.threads,
                s.connections, s.pipeline);
    std::printf("latency us: %s\n", LatencyText(total.latency).c_str());
    std::printf("outcomes:");
    for (const auto& [k, v] : total.outcomes) {
      std::printf(" %s %llu", k.c_str(), static_cast<unsigned long long>(v));
    }
    std::printf("; redirects followed %llu, retries %llu, busy %llu\n",
                static_cast<unsigned long long>(total.redirects),
                static_cast<unsigned long long>(total.retries),
                static_cast<unsigned long long>(total.busy));
    if (s.scan_ratio > 0) {
      std::printf("scans: %llu, %llu keys read; latency us: %s\n",
                  static_cast<unsigned long long>(scans.count()),
                  static_cast<unsigned long long>(total.scan_keys), LatencyText(scans).c_str());
    }
    if (s.verify) {
      std::printf("verify: %llu keys checked, %llu lost writes\n",
                  static_cast<unsigned long long>(checked), static_cast<unsigned long long>(lost));
    }
  }
  return lost ? 1 : 0;
}
