// Metrics: what a node tells Prometheus (GET /metrics) and an orchestrator
// (GET /healthz, /readyz), served by node/http_server.h on threads of its
// own. The loop thread never waits for a scrape: it counts requests in
// atomics and publishes the groups' state and the node's health once a tick
// (a copy swapped under a mutex); a scrape renders from those.
// Names follow Prometheus' conventions: the kvstore_ prefix, base units
// (seconds, bytes), _total for counters; labels are bounded (op, status,
// group, role), never a key or a client.
// Thread safety: all public calls, from any thread.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

#include "common/latency_histogram.h"
#include "kvstore/node_status.h"
#include "net/client_codec.h"
#include "storage/wal.h"

namespace kv::node {

// One Raft group as the loop last saw it: what status reports, and more.
struct GroupMetrics {
  GroupStatus status;
  uint64_t bytes = 0;           // of keys and values stored
  uint64_t leader_changes = 0;  // leaders this node has seen come and go
};

// What /healthz and /readyz answer.
struct Health {
  bool live = true;     // running, its WAL writable
  std::string problem;  // !live: why
  // Every group knows a leader and has applied what it knows committed
  // (within kPromoteLag entries, so that a busy moment does not count).
  bool ready = false;
  std::string waiting = "starting";  // !ready: which groups, and for what
};

class Metrics {
 public:
  // Request latency is in LatencyHistogram's buckets (100 us to 5 s).
  // Ops are counted by ClientOp; a request that could not be read as "invalid".
  static constexpr int kOps = static_cast<int>(net::kLastClientOp) + 2;
  static constexpr int kInvalidOp = kOps - 1;
  static constexpr int kStatuses = static_cast<int>(net::ReplyStatus::kBusy) + 1;

  Metrics();

  // A request of `op` (kInvalidOp: unreadable) answered with `status`
  // after `seconds`.
  void ObserveRequest(int op, net::ReplyStatus status, double seconds);
  // The loop, once a tick.
  void Publish(std::vector<GroupMetrics> groups, Health health);
  // The WAL whose syncs and writes to report (it outlives every scrape).
  void WatchWal(const storage::Wal* wal) { wal_ = wal; }

  Health health() const;
  // Everything, in the Prometheus text exposition format 0.0.4.
  std::string Render() const;

 private:
  std::array<std::array<std::atomic<uint64_t>, kStatuses>, kOps> requests_{};
  std::array<LatencyHistogram, kOps> latency_;
  const double start_time_;
  std::atomic<const storage::Wal*> wal_{nullptr};

  mutable std::mutex mu_;
  std::vector<GroupMetrics> groups_;  // guarded by mu_
  Health health_;                     // guarded by mu_
};

}  // namespace kv::node
