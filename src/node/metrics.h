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

#include "common/histogram.h"
#include "common/latency_histogram.h"
#include "kvstore/node_status.h"
#include "net/client_codec.h"
#include "storage/wal.h"

namespace kv::node {

class Backups;

// What the loop thread counts of one Raft group (node/group.h), from the
// group's start on this node.
struct GroupCounters {
  uint64_t leader_changes = 0;  // leaders this node has seen come and go
  // Entries this node proposed as the group's leader: client writes,
  // expiries, membership records and changes.
  uint64_t proposals = 0;
  // Campaigns this node started: each time Ready showed it become a
  // pre-candidate, or a candidate without a pre-vote first (a leadership
  // transfer), or a leader straight from a follower (a single voter). A
  // pre-candidate that keeps failing to win its pre-vote stays one: its
  // role does not change between its attempts.
  uint64_t elections = 0;
  uint64_t snapshots_sent = 0;       // streams to followers whose every chunk was queued
  uint64_t snapshots_installed = 0;  // snapshots from a leader installed here
};

// One Raft group as the loop last saw it: what status reports, and more.
struct GroupMetrics {
  GroupStatus status;
  uint64_t bytes = 0;           // of keys and values stored
  uint64_t sessions = 0;        // client sessions the state machine holds
  uint64_t snapshot_bytes = 0;  // of its latest snapshot (taken or installed); 0: none
  bool hibernating = false;     // raft.h, "Hibernation"
  GroupCounters counters;
};

// The node's connections as the loop last counted them.
struct Connections {
  int64_t clients = 0;  // open on the client port
  int64_t peers = 0;    // members this node's Raft connection reaches
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
  // A local snapshot written and synced in `seconds` (any thread).
  void ObserveSnapshot(double seconds) { snapshot_duration_.Observe(seconds); }
  // The loop, once a tick.
  void Publish(std::vector<GroupMetrics> groups, Health health, Connections connections = {});
  // The WAL whose syncs and writes to report (it outlives every scrape).
  void WatchWal(const storage::Wal* wal) { wal_ = wal; }
  // The backups held open to report (they outlive every scrape).
  void WatchBackups(const Backups* backups) { backups_ = backups; }

  Health health() const;
  // Everything, in the Prometheus text exposition format 0.0.4.
  std::string Render() const;

 private:
  std::array<std::array<std::atomic<uint64_t>, kStatuses>, kOps> requests_{};
  std::array<LatencyHistogram, kOps> latency_;
  // From a few milliseconds (a small state) to minutes (gigabytes).
  static constexpr std::array<double, 16> kSnapshotBounds = {
      0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300};
  Histogram snapshot_duration_{kSnapshotBounds, 1e-9};
  const double start_time_;
  std::atomic<const storage::Wal*> wal_{nullptr};
  std::atomic<const Backups*> backups_{nullptr};

  mutable std::mutex mu_;
  std::vector<GroupMetrics> groups_;  // guarded by mu_
  Health health_;                     // guarded by mu_
  Connections connections_;           // guarded by mu_
};

}  // namespace kv::node
