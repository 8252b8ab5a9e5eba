#include "node/metrics.h"

#include <unistd.h>

#include <array>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <sstream>

#include "node/backups.h"

namespace kv::node {

namespace {

const char* OpLabel(int op) {
  return op == Metrics::kInvalidOp ? "invalid" : net::ClientOpName(static_cast<net::ClientOp>(op));
}

double Now() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

// A line "name{labels} value".
void Sample(std::ostringstream& out, const std::string& name, const std::string& labels,
            double value) {
  out << name;
  if (!labels.empty()) out << '{' << labels << '}';
  char buf[64];
  std::snprintf(buf, sizeof buf, " %.15g\n", value);
  out << buf;
}

void Header(std::ostringstream& out, const char* name, const char* type, const char* help) {
  out << "# HELP " << name << ' ' << help << "\n# TYPE " << name << ' ' << type << '\n';
}

// A histogram's _bucket, _sum and _count lines; none for an empty one
// unless `always`.
void HistogramSamples(std::ostringstream& out, const std::string& name, const std::string& labels,
                      const Histogram& h, bool always = false) {
  // One read of the counts, so that the buckets and the total agree.
  std::array<uint64_t, Histogram::kMaxBounds + 1> counts;
  uint64_t total = 0;
  for (size_t b = 0; b <= h.bounds(); ++b) total += counts[b] = h.count(b);
  if (total == 0 && !always) return;
  const std::string prefix = labels.empty() ? "" : labels + ",";
  uint64_t running = 0;
  for (size_t b = 0; b < h.bounds(); ++b) {
    running += counts[b];
    char le[32];
    std::snprintf(le, sizeof le, "%.15g", h.bound(b));
    Sample(out, name + "_bucket", prefix + "le=\"" + le + '"', static_cast<double>(running));
  }
  Sample(out, name + "_bucket", prefix + "le=\"+Inf\"", static_cast<double>(total));
  Sample(out, name + "_sum", labels, h.sum());
  Sample(out, name + "_count", labels, static_cast<double>(total));
}

// The standard process_ metrics, from /proc/self.
void ProcessMetrics(std::ostringstream& out, double start_time) {
  std::ifstream stat("/proc/self/stat");
  std::string text((std::istreambuf_iterator<char>(stat)), std::istreambuf_iterator<char>());
  // Fields after the command name (which may hold spaces) in parentheses.
  const size_t close = text.rfind(')');
  std::istringstream fields(close == std::string::npos ? "" : text.substr(close + 2));
  std::vector<std::string> f;
  for (std::string w; fields >> w;) f.push_back(w);
  // f[0] is field 3 (state): utime is field 14, stime 15, rss (pages) 24.
  if (f.size() > 21) {
    const double ticks = static_cast<double>(sysconf(_SC_CLK_TCK));
    Header(out, "process_cpu_seconds_total", "counter", "User and system CPU time spent.");
    Sample(out, "process_cpu_seconds_total", "", (std::stod(f[11]) + std::stod(f[12])) / ticks);
    Header(out, "process_resident_memory_bytes", "gauge", "Resident memory size.");
    Sample(out, "process_resident_memory_bytes", "",
           std::stod(f[21]) * static_cast<double>(sysconf(_SC_PAGESIZE)));
  }
  Header(out, "process_start_time_seconds", "gauge", "Start time since the Unix epoch.");
  Sample(out, "process_start_time_seconds", "", start_time);
}

}  // namespace

Metrics::Metrics() : start_time_(Now()) {}

void Metrics::ObserveRequest(int op, net::ReplyStatus status, double seconds) {
  if (op < 0 || op >= kOps) op = kInvalidOp;
  const int s = static_cast<int>(status);
  if (s < 0 || s >= kStatuses) return;
  requests_[op][s].fetch_add(1, std::memory_order_relaxed);
  latency_[op].Observe(seconds);
}

void Metrics::Publish(std::vector<GroupMetrics> groups, Health health, Connections connections) {
  std::lock_guard<std::mutex> lock(mu_);
  groups_ = std::move(groups);
  health_ = std::move(health);
  connections_ = connections;
}

Health Metrics::health() const {
  std::lock_guard<std::mutex> lock(mu_);
  return health_;
}

std::string Metrics::Render() const {
  std::ostringstream out;
  Header(out, "kvstore_requests_total", "counter", "Client requests answered, by op and status.");
  for (int op = 0; op < kOps; ++op) {
    for (int s = 0; s < kStatuses; ++s) {
      const uint64_t n = requests_[op][s].load(std::memory_order_relaxed);
      // OK of every op from the start, so that rate() sees the first ones.
      if (n == 0 && (s != static_cast<int>(net::ReplyStatus::kOk) || op == kInvalidOp)) continue;
      Sample(out, "kvstore_requests_total",
             std::string("op=\"") + OpLabel(op) + "\",status=\"" +
                 net::ReplyStatusName(static_cast<net::ReplyStatus>(s)) + '"',
             static_cast<double>(n));
    }
  }
  Header(out, "kvstore_request_duration_seconds", "histogram",
         "Time from reading a client request to handing its reply to ZeroMQ, by op.");
  for (int op = 0; op < kOps; ++op) {
    HistogramSamples(out, "kvstore_request_duration_seconds",
                     std::string("op=\"") + OpLabel(op) + '"', latency_[op]);
  }
  if (const Backups* backups = backups_.load()) {
    Header(out, "kvstore_backups_open", "gauge",
           "Backups (node/backups.h) this node holds a view of for a client to read.");
    Sample(out, "kvstore_backups_open", "", static_cast<double>(backups->open()));
  }
  if (const storage::Wal* wal = wal_.load()) {
    Header(out, "kvstore_wal_fsync_duration_seconds", "histogram",
           "Time each WAL group commit's fsync took.");
    HistogramSamples(out, "kvstore_wal_fsync_duration_seconds", "", wal->sync_latency(), true);
    Header(out, "kvstore_wal_batch_bytes", "histogram",
           "Bytes each WAL group commit wrote (one write, at most one fsync).");
    HistogramSamples(out, "kvstore_wal_batch_bytes", "", wal->batch_bytes(), true);
    Header(out, "kvstore_wal_written_bytes_total", "counter", "Bytes written to the WAL.");
    Sample(out, "kvstore_wal_written_bytes_total", "", static_cast<double>(wal->bytes_written()));
    Header(out, "kvstore_wal_records_total", "counter", "Records written to the WAL.");
    Sample(out, "kvstore_wal_records_total", "", static_cast<double>(wal->records_written()));
    Header(out, "kvstore_wal_syncs_total", "counter", "WAL group commits that asked for a sync.");
    Sample(out, "kvstore_wal_syncs_total", "", static_cast<double>(wal->sync_count()));
  }

  Header(out, "kvstore_snapshot_duration_seconds", "histogram",
         "Time to write and sync each local snapshot of a group's state.");
  HistogramSamples(out, "kvstore_snapshot_duration_seconds", "", snapshot_duration_, true);

  std::vector<GroupMetrics> groups;
  Health health;
  Connections connections;
  {
    std::lock_guard<std::mutex> lock(mu_);
    groups = groups_;
    health = health_;
    connections = connections_;
  }
  struct Gauge {
    const char* name;
    const char* type;
    const char* help;
    uint64_t (*value)(const GroupMetrics& m);
  };
  static const Gauge kGauges[] = {
      {"kvstore_raft_term", "gauge", "The group's current term.",
       [](const GroupMetrics& m) { return m.status.term; }},
      {"kvstore_raft_leader", "gauge", "The leader's node id; 0: none known.",
       [](const GroupMetrics& m) { return m.status.leader; }},
      {"kvstore_raft_hibernating", "gauge",
       "1 while the group is idle and hibernates here: no heartbeats, no election timer.",
       [](const GroupMetrics& m) { return uint64_t{m.hibernating}; }},
      {"kvstore_raft_commit_index", "gauge", "The commit index this node knows.",
       [](const GroupMetrics& m) { return m.status.commit; }},
      {"kvstore_raft_applied_index", "gauge", "The last index applied to the state machine.",
       [](const GroupMetrics& m) { return m.status.applied; }},
      {"kvstore_raft_last_index", "gauge", "The last index in this node's log.",
       [](const GroupMetrics& m) { return m.status.last_index; }},
      {"kvstore_raft_leader_changes_total", "counter",
       "Times this node saw the group's leader change.",
       [](const GroupMetrics& m) { return m.counters.leader_changes; }},
      {"kvstore_raft_proposals_total", "counter",
       "Entries this node proposed as the group's leader.",
       [](const GroupMetrics& m) { return m.counters.proposals; }},
      {"kvstore_raft_elections_total", "counter",
       "Campaigns this node started (became pre-candidate or candidate).",
       [](const GroupMetrics& m) { return m.counters.elections; }},
      {"kvstore_raft_snapshots_sent_total", "counter",
       "Snapshots this node streamed to followers as the group's leader.",
       [](const GroupMetrics& m) { return m.counters.snapshots_sent; }},
      {"kvstore_raft_snapshots_installed_total", "counter",
       "Snapshots from the group's leader installed on this node.",
       [](const GroupMetrics& m) { return m.counters.snapshots_installed; }},
      {"kvstore_keys", "gauge", "Keys stored in the group.",
       [](const GroupMetrics& m) { return m.status.keys; }},
      {"kvstore_stored_bytes", "gauge", "Bytes of keys and values stored in the group.",
       [](const GroupMetrics& m) { return m.bytes; }},
      {"kvstore_sessions", "gauge", "Client sessions (exactly-once writers) the group holds.",
       [](const GroupMetrics& m) { return m.sessions; }},
      {"kvstore_snapshot_bytes", "gauge",
       "Bytes of the group's latest snapshot here (taken or installed); 0: none.",
       [](const GroupMetrics& m) { return m.snapshot_bytes; }},
  };
  for (const Gauge& g : kGauges) {
    Header(out, g.name, g.type, g.help);
    for (const GroupMetrics& m : groups) {
      Sample(out, g.name, "group=\"" + std::to_string(m.status.group) + '"',
             static_cast<double>(g.value(m)));
    }
  }
  Header(out, "kvstore_raft_role", "gauge", "1 for the role this node has in the group.");
  for (const GroupMetrics& m : groups) {
    for (const char* role : {"follower", "pre-candidate", "candidate", "leader"}) {
      Sample(out, "kvstore_raft_role",
             "group=\"" + std::to_string(m.status.group) + "\",role=\"" + role + '"',
             m.status.role == role ? 1 : 0);
    }
  }
  Header(out, "kvstore_client_connections", "gauge", "Client connections open on the client port.");
  Sample(out, "kvstore_client_connections", "", static_cast<double>(connections.clients));
  Header(out, "kvstore_peer_connections", "gauge",
         "Members this node's Raft connection reaches (handshake done).");
  Sample(out, "kvstore_peer_connections", "", static_cast<double>(connections.peers));
  Header(out, "kvstore_up", "gauge", "1 while the node runs and its WAL is writable.");
  Sample(out, "kvstore_up", "", health.live ? 1 : 0);
  Header(out, "kvstore_ready", "gauge",
         "1 once every group knows a leader and has applied what it knows committed.");
  Sample(out, "kvstore_ready", "", health.ready ? 1 : 0);
  ProcessMetrics(out, start_time_);
  return out.str();
}

}  // namespace kv::node
