#include "node/metrics.h"

#include <catch2/catch.hpp>
#include <string>

#include "node/backups.h"

namespace kv::node {

namespace {
bool Has(const std::string& text, const std::string& line) {
  return text.find("\n" + line + "\n") != std::string::npos;
}
}  // namespace

TEST_CASE("Metrics: requests by op and status, and cumulative latency buckets") {
  Metrics m;
  const int get = static_cast<int>(net::ClientOp::kGet);
  m.ObserveRequest(get, net::ReplyStatus::kOk, 0.0003);
  m.ObserveRequest(get, net::ReplyStatus::kOk, 0.002);
  m.ObserveRequest(get, net::ReplyStatus::kNotFound, 20);  // past the last bucket
  m.ObserveRequest(-1, net::ReplyStatus::kError, 0.00001);
  const std::string text = m.Render();
  CHECK(Has(text, "kvstore_requests_total{op=\"get\",status=\"OK\"} 2"));
  CHECK(Has(text, "kvstore_requests_total{op=\"get\",status=\"NOT_FOUND\"} 1"));
  CHECK(Has(text, "kvstore_requests_total{op=\"invalid\",status=\"ERROR\"} 1"));
  // Every op's OK series exists from the start (rate() needs its first
  // step); others appear with their first request.
  CHECK(Has(text, "kvstore_requests_total{op=\"put\",status=\"OK\"} 0"));
  CHECK(text.find("op=\"put\",status=\"NOT_FOUND\"") == std::string::npos);
  CHECK(text.find("kvstore_request_duration_seconds_count{op=\"put\"}") == std::string::npos);
  CHECK(Has(text, "kvstore_request_duration_seconds_bucket{op=\"get\",le=\"0.00025\"} 0"));
  CHECK(Has(text, "kvstore_request_duration_seconds_bucket{op=\"get\",le=\"0.0005\"} 1"));
  CHECK(Has(text, "kvstore_request_duration_seconds_bucket{op=\"get\",le=\"0.0025\"} 2"));
  CHECK(Has(text, "kvstore_request_duration_seconds_bucket{op=\"get\",le=\"5\"} 2"));
  CHECK(Has(text, "kvstore_request_duration_seconds_bucket{op=\"get\",le=\"+Inf\"} 3"));
  CHECK(Has(text, "kvstore_request_duration_seconds_count{op=\"get\"} 3"));
  CHECK(text.find("kvstore_request_duration_seconds_sum{op=\"get\"} 20.0023") != std::string::npos);
  CHECK(text.find("kvstore_wal_") == std::string::npos);  // no WAL watched
}

TEST_CASE("Metrics: the backups held open") {
  Metrics m;
  CHECK(m.Render().find("kvstore_backups_open") == std::string::npos);
  Backups backups;
  m.WatchBackups(&backups);
  CHECK(Has(m.Render(), "kvstore_backups_open 0"));
  StateMachine sm;
  net::BackupReply begun;
  REQUIRE(backups.Open(2, sm.TakeDataView(), &begun).ok());
  CHECK(Has(m.Render(), "kvstore_backups_open 1"));
}

TEST_CASE("Metrics: snapshot durations from the start, in buckets up to minutes") {
  Metrics m;
  std::string text = m.Render();
  // Every bucket at 0 before the first snapshot, so that rate() has a start.
  CHECK(Has(text, "# TYPE kvstore_snapshot_duration_seconds histogram"));
  CHECK(Has(text, "kvstore_snapshot_duration_seconds_bucket{le=\"300\"} 0"));
  CHECK(Has(text, "kvstore_snapshot_duration_seconds_count 0"));
  m.ObserveSnapshot(0.004);
  m.ObserveSnapshot(42);
  text = m.Render();
  CHECK(Has(text, "kvstore_snapshot_duration_seconds_bucket{le=\"0.0025\"} 0"));
  CHECK(Has(text, "kvstore_snapshot_duration_seconds_bucket{le=\"0.005\"} 1"));
  CHECK(Has(text, "kvstore_snapshot_duration_seconds_bucket{le=\"30\"} 1"));
  CHECK(Has(text, "kvstore_snapshot_duration_seconds_bucket{le=\"60\"} 2"));
  CHECK(Has(text, "kvstore_snapshot_duration_seconds_bucket{le=\"+Inf\"} 2"));
  CHECK(Has(text, "kvstore_snapshot_duration_seconds_sum 42.004"));
  CHECK(Has(text, "kvstore_snapshot_duration_seconds_count 2"));
  // No group published yet: the node-wide gauges, at 0.
  CHECK(Has(text, "kvstore_client_connections 0"));
  CHECK(Has(text, "kvstore_peer_connections 0"));
}

TEST_CASE("Metrics: the groups and the health the loop published") {
  Metrics m;
  GroupMetrics g;
  g.status.group = 3;
  g.status.role = "leader";
  g.status.term = 7;
  g.status.leader = 2;
  g.status.commit = 40;
  g.status.applied = 39;
  g.status.keys = 12;
  g.sessions = 5;
  g.snapshot_bytes = 4096;
  g.counters.leader_changes = 1;
  g.counters.proposals = 30;
  g.counters.elections = 2;
  g.counters.snapshots_sent = 3;
  g.counters.snapshots_installed = 4;
  Health h;
  h.ready = false;
  h.waiting = "group 3: applied 39 of 40 committed; ";
  Connections c;
  c.clients = 9;
  c.peers = 2;
  m.Publish({g}, h, c);
  const std::string text = m.Render();
  CHECK(Has(text, "kvstore_raft_term{group=\"3\"} 7"));
  CHECK(Has(text, "kvstore_raft_leader{group=\"3\"} 2"));
  CHECK(Has(text, "kvstore_raft_applied_index{group=\"3\"} 39"));
  CHECK(Has(text, "kvstore_raft_leader_changes_total{group=\"3\"} 1"));
  CHECK(Has(text, "kvstore_raft_role{group=\"3\",role=\"leader\"} 1"));
  CHECK(Has(text, "kvstore_raft_role{group=\"3\",role=\"follower\"} 0"));
  CHECK(Has(text, "kvstore_keys{group=\"3\"} 12"));
  CHECK(Has(text, "kvstore_raft_proposals_total{group=\"3\"} 30"));
  CHECK(Has(text, "kvstore_raft_elections_total{group=\"3\"} 2"));
  CHECK(Has(text, "kvstore_raft_snapshots_sent_total{group=\"3\"} 3"));
  CHECK(Has(text, "kvstore_raft_snapshots_installed_total{group=\"3\"} 4"));
  CHECK(Has(text, "kvstore_sessions{group=\"3\"} 5"));
  CHECK(Has(text, "kvstore_snapshot_bytes{group=\"3\"} 4096"));
  CHECK(Has(text, "# TYPE kvstore_raft_proposals_total counter"));
  CHECK(Has(text, "# TYPE kvstore_sessions gauge"));
  CHECK(Has(text, "kvstore_client_connections 9"));
  CHECK(Has(text, "kvstore_peer_connections 2"));
  CHECK(Has(text, "kvstore_up 1"));
  CHECK(Has(text, "kvstore_ready 0"));
  CHECK(text.find("process_resident_memory_bytes ") != std::string::npos);
  CHECK(m.health().waiting == h.waiting);
}

}  // namespace kv::node
