// kvmon: a live terminal monitor of a kvstore cluster.
//
// Joins each node like the ZeroMQ guide's Clone pattern (kvstore/subscriber.h):
// subscribe to its event stream first, then ask its status, and drop events
// at or below the status's event_seq. Status is re-polled twice a second (it
// also tells a node is down: no answer within 2 s). Redraws at most ten
// times a second however many events arrive.
//
// Sharded clusters (status "shards" > 0): a node row describes the node's
// main group (kv::client::MainGroup: the metadata group when the node hosts
// it, else the first group it hosts; an unsharded cluster has only the main
// group), and events of its other groups update those groups only. The node
// table gains SHARDS (shard groups hosted) and LEADS (shards led), and a
// shard table follows it: each shard's group, leader and replicas (voters; a
// learner, e.g. a replica being moved in, as "+ID"), from the latest status
// of every node that is up, kept current between polls by "role" and
// "commit" events.
//
// Latency: P99 (of client requests) and FSYNC99 (of WAL syncs) come from
// each node's /metrics (HTTP, client port + 3000: kvstore's default
// --metrics-port), scraped every second on a thread of their own
// (monitor/metrics_scraper.h): the p99 over the last second, "-" when the
// node answers no scrape. --json gives them as p99_ms and fsync_p99_ms.
//
// Keys: q quits, p pauses the display, arrow keys / PgUp / PgDn scroll the
// event log. The node table fits the terminal's width (never wrapping):
// columns go by priority, id, role, leader and state never (kColumns). `kvmon --once` prints the
// tables and exits (for scripts);
// `--once --json` prints an array of node objects, or, for a sharded cluster,
// {"nodes": [the same node objects, plus "group" (the main group), "meta"
// (hosts the metadata group), "hosts" and "leads" (shard ids)], "shards":
// [{"shard", "group", "leader", "term", "voters", "learners"}]} (0 and []
// for what no live node knows).
//
// A secure cluster: --key and --server-keys (or KVSTORE_KEY and
// KVSTORE_SERVER_KEYS), as kvctl. A node whose key is neither given nor
// learned from another node's status shows as NO KEY.
#include <locale.h>
#include <signal.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <deque>
#include <iterator>
#include <map>
#include <optional>
#include <string>
#include <tuple>
#include <variant>
#include <vector>

#include "credential_flags.h"
#include "kvstore/client.h"
#include "kvstore/credentials.h"
#include "kvstore/events.h"
#include "kvstore/node_status.h"
#include "kvstore/subscriber.h"
#include "metrics_scraper.h"

// Last: ncurses defines macros (OK, ERR) that clash with our names.
#include <ncurses.h>
#undef OK

namespace {

using Clock = std::chrono::steady_clock;
constexpr auto kStatusEvery = std::chrono::milliseconds(500);
constexpr auto kDownAfter = std::chrono::milliseconds(2000);
constexpr size_t kSparkWidth = 24;

struct NodeView {
  std::string endpoint;
  std::string missing_key;  // not followed: no server key for it (the error); "" followed
  bool up = false;
  bool ever_up = false;
  kv::NodeStatus status;
  Clock::time_point last_heard{};
  uint64_t prev_applied = 0;
  Clock::time_point prev_sample{};
  double ops = 0;
  std::deque<double> spark;
  kv::monitor::NodeLatency latency;  // from its /metrics
};

using kv::client::MainGroup;

kv::GroupStatus* FindGroup(kv::NodeStatus& s, uint64_t group) {
  for (auto& g : s.groups) {
    if (g.group == group) return &g;
  }
  return nullptr;
}

// "meta", "shard 3", or "group 7" for a group the last status did not list.
std::string GroupName(const kv::NodeStatus& s, uint64_t group) {
  for (const auto& g : s.groups) {
    if (g.group == group) return g.shard < 0 ? "meta" : "shard " + std::to_string(g.shard);
  }
  return "group " + std::to_string(group);
}

std::string Now() {
  const std::time_t t = std::time(nullptr);
  char buf[16];
  std::strftime(buf, sizeof buf, "%H:%M:%S", std::localtime(&t));
  return buf;
}

class Monitor {
 public:
  Monitor(std::vector<std::string> endpoints, kv::client::Credentials credentials)
      : sub_(kv::client::SubscriberOptions{endpoints, "", kStatusEvery, std::move(credentials)}),
        scraper_(endpoints) {
    for (const auto& ep : endpoints) {
      NodeView v;
      v.endpoint = ep;
      nodes_.push_back(std::move(v));
    }
  }

  // Polls sockets for up to `wait`; returns whether anything changed.
  bool Poll(std::chrono::milliseconds wait);
  // Reads every node's /metrics: once now, or every second from now on.
  void ScrapeOnce() {
    scraper_.ScrapeAll();
    TakeLatencies();
  }
  void StartScraping() { scraper_.Start(std::chrono::seconds(1)); }
  void Log(const std::string& line) {
    log_.push_back(Now() + "  " + line);
    if (log_.size() > 1000) log_.pop_front();
  }
  const std::vector<NodeView>& nodes() const { return nodes_; }
  const std::deque<std::string>& log() const { return log_; }
  // Whether every node answered, or cannot be asked (no key).
  bool AllAnswered() const {
    for (const auto& n : nodes_) {
      if (!n.ever_up && n.missing_key.empty()) return false;
    }
    return true;
  }

 private:
  void OnStatus(NodeView& n, const kv::NodeStatus& st);
  void OnEvent(size_t index, const kv::Event& event);

  void TakeLatencies() {
    for (size_t i = 0; i < nodes_.size(); ++i) nodes_[i].latency = scraper_.latency(i);
  }

  kv::client::Subscriber sub_;  // joins each node's events to its status
  kv::monitor::MetricsScraper scraper_;
  std::vector<NodeView> nodes_;
  std::deque<std::string> log_;
  std::vector<kv::client::Update> updates_;
};

void Monitor::OnStatus(NodeView& n, const kv::NodeStatus& st) {
  const auto now = Clock::now();
  if (!n.up)
    Log("node " + std::to_string(st.node) + " (" + n.endpoint + ") " +
        (n.ever_up ? "is back" : "is up"));
  if (n.up && st.leader != n.status.leader && st.leader != 0) {
    Log("node " + std::to_string(st.node) + " sees leader " + std::to_string(st.leader) +
        " in term " + std::to_string(st.term));
  }
  if (n.prev_sample != Clock::time_point{}) {
    const double secs = std::chrono::duration<double>(now - n.prev_sample).count();
    if (secs > 0 && st.applied >= n.prev_applied) n.ops = (st.applied - n.prev_applied) / secs;
    n.spark.push_back(n.ops);
    if (n.spark.size() > kSparkWidth) n.spark.pop_front();
  }
  n.prev_applied = st.applied;
  n.prev_sample = now;
  n.status = st;
  n.up = n.ever_up = true;
  n.last_heard = now;
}

void Monitor::OnEvent(size_t index, const kv::Event& event) {
  NodeView* n = &nodes_[index];
  const uint64_t node = kv::EventNode(event);
  n->last_heard = Clock::now();
  kv::NodeStatus& s = n->status;
  // Events name their group; only the main group's update the node row. A
  // group the last status did not list waits for the next poll.
  const uint64_t main_group = MainGroup(s);
  const auto who = [&](uint64_t event_group) {
    const uint64_t group = event_group != 0 ? event_group : main_group;
    return "node " + std::to_string(node) + (s.shards > 0 ? " " + GroupName(s, group) : "");
  };
  // The group's row and the node row (null when not the main group) to update.
  const auto rows = [&](uint64_t event_group) {
    const uint64_t group = event_group != 0 ? event_group : main_group;
    return std::make_pair(FindGroup(s, group), group == main_group ? &s : nullptr);
  };
  if (const auto* e = std::get_if<kv::RoleEvent>(&event)) {
    const auto [g, main] = rows(e->group);
    if (g != nullptr) {
      g->role = e->role;
      g->term = e->term;
      g->leader = e->leader;
    }
    if (main != nullptr) {
      main->role = e->role;
      main->term = e->term;
      main->leader = e->leader;
    }
    Log(who(e->group) + " is " + e->role + " in term " + std::to_string(e->term) +
        (e->leader ? ", leader " + std::to_string(e->leader) : ""));
  } else if (const auto* c = std::get_if<kv::CommitEvent>(&event)) {
    const auto [g, main] = rows(c->group);
    if (g != nullptr) {
      g->term = c->term;
      g->commit = c->commit;
      g->applied = std::max(g->applied, c->applied);
    }
    if (main != nullptr) {
      main->term = c->term;
      main->commit = c->commit;
      main->applied = std::max(main->applied, c->applied);
    }
  } else if (const auto* snap = std::get_if<kv::SnapshotEvent>(&event)) {
    Log(who(snap->group) + ": snapshot " + (snap->installed ? "installed" : "taken") +
        " at index " + std::to_string(snap->index));
  } else if (const auto* m = std::get_if<kv::MembershipEvent>(&event)) {
    if (m->change == "left") {
      Log(who(m->group) + ": this replica was removed; no longer served here");
    } else {
      Log(who(m->group) + " applied a membership change at " + std::to_string(m->index) + ": " +
          std::to_string(m->voters) + " voters, " + std::to_string(m->learners) + " learners");
    }
    sub_.RefreshStatus(index);  // ask again now: the voters and learners changed
  } else if (const auto* map = std::get_if<kv::ShardsEvent>(&event)) {
    Log("node " + std::to_string(node) + ": shard map version " + std::to_string(map->version) +
        ", " + std::to_string(map->members) + " members");
    // Replicas move: ask every node now.
    for (size_t i = 0; i < nodes_.size(); ++i) sub_.RefreshStatus(i);
  }
}

bool Monitor::Poll(std::chrono::milliseconds wait) {
  const auto now = Clock::now();
  for (auto& n : nodes_) {
    if (n.up && now - n.last_heard > kDownAfter) {
      n.up = false;
      n.ops = 0;
      Log("node " + std::to_string(n.status.node) + " (" + n.endpoint + ") is DOWN");
    }
  }
  updates_.clear();
  // false: EINTR, a signal (resize, Ctrl-C); the caller loops.
  if (!sub_.Poll(wait, &updates_)) return false;
  bool changed = !updates_.empty();
  TakeLatencies();
  for (const kv::client::Update& u : updates_) {
    if (u.status) {
      OnStatus(nodes_[u.node], *u.status);
    } else {
      OnEvent(u.node, u.event);
    }
  }
  // A status may have taught the key of a node we could not follow.
  for (size_t i = 0; i < nodes_.size(); ++i) {
    std::string missing = sub_.MissingKey(i);
    if (missing == nodes_[i].missing_key) continue;
    if (!missing.empty()) Log(missing);
    nodes_[i].missing_key = std::move(missing);
    changed = true;
  }
  return changed;
}

// The last `width` samples as bars, padded to `width` columns (printf pads
// by bytes, not columns).
std::string Sparkline(const std::deque<double>& samples, size_t width) {
  static const char* kBars[] = {" ", "▁", "▂", "▃", "▄", "▅", "▆", "▇", "█"};
  const size_t skip = samples.size() > width ? samples.size() - width : 0;
  double top = 1;
  for (size_t i = skip; i < samples.size(); ++i) top = std::max(top, samples[i]);
  std::string out;
  for (size_t i = skip; i < samples.size(); ++i) {
    out += kBars[static_cast<int>(samples[i] / top * 8 + 0.5)];
  }
  out.append(width - (samples.size() - skip), ' ');
  return out;
}

// ---- what the tables show ------------------------------------------------------

// The cluster's shard count, as the nodes last said; 0: unsharded.
uint32_t ShardCount(const Monitor& m) {
  uint32_t count = 0;
  for (const auto& n : m.nodes()) count = std::max(count, n.status.shards);
  return count;
}

// The commit index of the leader of `group` (the highest term's, if two
// claim it) among the live nodes; 0 when none is known.
uint64_t LeaderCommit(const Monitor& m, uint64_t group) {
  uint64_t term = 0, commit = 0;
  for (const auto& n : m.nodes()) {
    if (!n.up) continue;
    const auto& s = n.status;
    if (s.groups.empty()) {  // unsharded: the node row is the main group
      if (group == MainGroup(s) && s.role == "leader" && s.term >= term) {
        term = s.term;
        commit = s.commit;
      }
      continue;
    }
    for (const auto& g : s.groups) {
      if (g.group == group && g.role == "leader" && g.term >= term) {
        term = g.term;
        commit = g.commit;
      }
    }
  }
  return commit;
}

struct ShardRow {
  uint32_t shard = 0;
  uint64_t group = 0;   // 0: no live node hosts it
  uint64_t leader = 0;  // 0: unknown
  uint64_t term = 0;
  uint64_t commit = 0;
  std::vector<uint64_t> voters;
  std::vector<uint64_t> learners;
};

// Each shard as its live replicas see it: the view of the one in the highest
// term, a leader before a follower, one that knows the leader before one that
// does not (so the leader's own configuration when it is up).
std::vector<ShardRow> ShardRows(const Monitor& m) {
  const uint32_t count = ShardCount(m);
  std::vector<const kv::GroupStatus*> best(count, nullptr);
  auto rank = [](const kv::GroupStatus& g) {
    return std::make_tuple(g.term, g.role == "leader", g.leader != 0, g.commit);
  };
  for (const auto& n : m.nodes()) {
    if (!n.up) continue;
    for (const auto& g : n.status.groups) {
      if (g.shard < 0 || g.shard >= static_cast<int64_t>(count)) continue;
      const kv::GroupStatus*& b = best[static_cast<size_t>(g.shard)];
      if (b == nullptr || rank(g) > rank(*b)) b = &g;
    }
  }
  std::vector<ShardRow> rows(count);
  for (uint32_t i = 0; i < count; ++i) {
    rows[i].shard = i;
    if (const kv::GroupStatus* b = best[i]) {
      rows[i].group = b->group;
      rows[i].leader = b->leader;
      rows[i].term = b->term;
      rows[i].commit = b->commit;
      rows[i].voters = b->voters;
      rows[i].learners = b->learners;
    }
  }
  return rows;
}

// A sharded node row's extra columns: the group the row describes ("meta" or
// "s3"), the shards hosted and those led.
struct Hosting {
  std::string main;
  bool meta = false;
  std::vector<int64_t> hosts;
  std::vector<int64_t> leads;
};

Hosting HostingOf(const NodeView& n) {
  Hosting h;
  const uint64_t main = MainGroup(n.status);
  for (const auto& g : n.status.groups) {
    if (g.group == main) h.main = g.shard < 0 ? "meta" : "s" + std::to_string(g.shard);
    if (g.shard < 0) {
      h.meta = true;
      continue;
    }
    h.hosts.push_back(g.shard);
    if (n.up && g.role == "leader") h.leads.push_back(g.shard);
  }
  if (h.main.empty()) h.main = "-";
  return h;
}

template <typename T>
std::string Join(const std::vector<T>& ids, const char* sep) {
  std::string out;
  for (const T id : ids) out += (out.empty() ? "" : sep) + std::to_string(id);
  return out;
}

// Voters, then learners as "+ID": "1,3,5,+6" while 6 is being added.
std::string Replicas(const ShardRow& r) {
  std::string out = Join(r.voters, ",");
  for (uint64_t id : r.learners) out += (out.empty() ? "+" : ",+") + std::to_string(id);
  return out.empty() ? "-" : out;
}

std::string Num(uint64_t v) { return v == 0 ? "-" : std::to_string(v); }

const char* kShardHeader = "SHARD GROUP LEADER   TERM     COMMIT  REPLICAS";
constexpr int kShardCellWidth = 64;  // one shard, with room for replicas moving

std::string ShardCell(const ShardRow& r) {
  char buf[128];
  std::snprintf(buf, sizeof buf, "%5u %5s %6s %6s %10s  %s", r.shard, Num(r.group).c_str(),
                Num(r.leader).c_str(), Num(r.term).c_str(), Num(r.commit).c_str(),
                Replicas(r).c_str());
  return buf;
}

// Quotes and backslashes escaped: enough for the messages kvmon prints.
std::string JsonEscape(const std::string& text) {
  std::string out;
  for (const char c : text) {
    if (c == '"' || c == '\\') out.push_back('\\');
    out.push_back(c);
  }
  return out;
}

void PrintJson(const Monitor& m) {
  const bool sharded = ShardCount(m) > 0;
  std::printf(sharded ? "{\"nodes\":[" : "[");
  bool first = true;
  for (const auto& n : m.nodes()) {
    const auto& s = n.status;
    const uint64_t leader_commit = LeaderCommit(m, MainGroup(s));
    const uint64_t lag = leader_commit > s.applied ? leader_commit - s.applied : 0;
    std::printf(
        "%s{\"endpoint\":\"%s\",\"up\":%s,\"id\":%llu,\"role\":\"%s\",\"term\":%llu,"
        "\"leader\":%llu,\"commit\":%llu,\"applied\":%llu,\"lag\":%llu,\"keys\":%llu",
        first ? "" : ",", n.endpoint.c_str(), n.up ? "true" : "false", (unsigned long long)s.node,
        s.role.c_str(), (unsigned long long)s.term, (unsigned long long)s.leader,
        (unsigned long long)s.commit, (unsigned long long)s.applied, (unsigned long long)lag,
        (unsigned long long)s.keys);
    for (const auto& [name, value] : {std::make_pair("p99_ms", n.latency.request_p99),
                                      std::make_pair("fsync_p99_ms", n.latency.fsync_p99)}) {
      if (value) {
        std::printf(",\"%s\":%.3f", name, *value * 1e3);
      } else {
        std::printf(",\"%s\":null", name);
      }
    }
    if (!n.missing_key.empty()) std::printf(",\"error\":\"%s\"", JsonEscape(n.missing_key).c_str());
    if (sharded) {
      const Hosting h = HostingOf(n);
      std::printf(",\"group\":%llu,\"meta\":%s,\"hosts\":[%s],\"leads\":[%s]",
                  (unsigned long long)(s.groups.empty() ? 0 : MainGroup(s)),
                  h.meta ? "true" : "false", Join(h.hosts, ",").c_str(),
                  Join(h.leads, ",").c_str());
    }
    std::printf("}");
    first = false;
  }
  if (!sharded) {
    std::printf("]\n");
    return;
  }
  std::printf("],\"shards\":[");
  first = true;
  for (const ShardRow& r : ShardRows(m)) {
    std::printf(
        "%s{\"shard\":%u,\"group\":%llu,\"leader\":%llu,\"term\":%llu,\"commit\":%llu,"
        "\"voters\":[%s],\"learners\":[%s]}",
        first ? "" : ",", r.shard, (unsigned long long)r.group, (unsigned long long)r.leader,
        (unsigned long long)r.term, (unsigned long long)r.commit, Join(r.voters, ",").c_str(),
        Join(r.learners, ",").c_str());
    first = false;
  }
  std::printf("]}\n");
}

void PrintTable(const Monitor& m, bool json) {
  if (json) return PrintJson(m);
  const bool sharded = ShardCount(m) > 0;
  std::printf("%-4s %-21s %-13s %6s %6s %10s %10s %8s %10s ", "ID", "ADDRESS", "ROLE", "TERM",
              "LEADER", "COMMIT", "APPLIED", "LAG", "KEYS");
  if (sharded) std::printf("%-5s %6s %5s ", "GROUP", "SHARDS", "LEADS");
  std::printf("%s\n", "STATE");
  for (const auto& n : m.nodes()) {
    const auto& s = n.status;
    const uint64_t leader_commit = LeaderCommit(m, MainGroup(s));
    const uint64_t lag = leader_commit > s.applied ? leader_commit - s.applied : 0;
    if (n.up) {
      std::printf("%-4llu %-21s %-13s %6llu %6llu %10llu %10llu %8llu %10llu ",
                  (unsigned long long)s.node, n.endpoint.c_str(), s.role.c_str(),
                  (unsigned long long)s.term, (unsigned long long)s.leader,
                  (unsigned long long)s.commit, (unsigned long long)s.applied,
                  (unsigned long long)lag, (unsigned long long)s.keys);
      if (sharded) {
        const Hosting h = HostingOf(n);
        std::printf("%-5s %6zu %5zu ", h.main.c_str(), h.hosts.size(), h.leads.size());
      }
      std::printf("%s\n", "up");
    } else {
      std::printf("%-4s %-21s %-13s %6s %6s %10s %10s %8s %10s ", "-", n.endpoint.c_str(), "-", "-",
                  "-", "-", "-", "-", "-");
      if (sharded) std::printf("%-5s %6s %5s ", "-", "-", "-");
      std::printf("%s\n", n.missing_key.empty() ? "DOWN" : "NO KEY");
    }
  }
  if (!sharded) return;
  std::printf("\n%s\n", kShardHeader);
  for (const ShardRow& r : ShardRows(m)) std::printf("%s\n", ShardCell(r).c_str());
}

// ---- the live node table ----------------------------------------------------

// A column of the live node table. A terminal too narrow for all of them
// gets the columns of the lowest `keep` that fit, in table order, and never
// a wrapped line; id, role, leader and state are always there.
struct Column {
  const char* header;
  int width;
  bool left;      // aligned left (text), else right (numbers)
  int keep;       // 0: always; then the lower, the longer it stays
  int min_width;  // narrower than width down to this when it would not fit (0: never)
  bool sharded;   // sharded clusters only
  // The cell of a node (up or down) at `width` columns, before padding.
  std::string (*cell)(const Monitor& m, const NodeView& n, int width);
};

std::string Number(uint64_t v) { return std::to_string(v); }
// A latency for a narrow column: "850us", "12.3ms", "1.20s"; "-" unknown.
std::string Latency(const std::optional<double>& seconds) {
  if (!seconds) return "-";
  char buf[16];
  if (*seconds < 0.001) {
    std::snprintf(buf, sizeof buf, "%.0fus", *seconds * 1e6);
  } else if (*seconds < 1) {
    std::snprintf(buf, sizeof buf, "%.1fms", *seconds * 1e3);
  } else {
    std::snprintf(buf, sizeof buf, "%.2fs", *seconds);
  }
  return buf;
}
std::string IfUp(const NodeView& n, std::string v) { return n.up ? v : "-"; }
uint64_t Lag(const Monitor& m, const NodeView& n) {
  const uint64_t leader_commit = LeaderCommit(m, MainGroup(n.status));
  return leader_commit > n.status.applied ? leader_commit - n.status.applied : 0;
}

const Column kColumns[] = {
    {"ID", 4, true, 0, 0, false,
     [](const Monitor&, const NodeView& n, int) {
       return n.up || n.ever_up ? Number(n.status.node) : std::string("-");
     }},
    {"ADDRESS", 21, true, 1, 15, false,
     [](const Monitor&, const NodeView& n, int) { return n.endpoint; }},
    {"ROLE", 13, true, 0, 0, false,
     [](const Monitor&, const NodeView& n, int) { return IfUp(n, n.status.role); }},
    {"TERM", 6, false, 3, 0, false,
     [](const Monitor&, const NodeView& n, int) { return IfUp(n, Number(n.status.term)); }},
    {"LEADER", 6, false, 0, 0, false,
     [](const Monitor&, const NodeView& n, int) { return IfUp(n, Number(n.status.leader)); }},
    {"COMMIT", 10, false, 8, 0, false,
     [](const Monitor&, const NodeView& n, int) { return IfUp(n, Number(n.status.commit)); }},
    {"APPLIED", 10, false, 7, 0, false,
     [](const Monitor&, const NodeView& n, int) { return IfUp(n, Number(n.status.applied)); }},
    {"LAG", 8, false, 4, 0, false,
     [](const Monitor& m, const NodeView& n, int) { return IfUp(n, Number(Lag(m, n))); }},
    {"OPS/S", 9, false, 2, 0, false,
     [](const Monitor&, const NodeView& n, int) {
       return IfUp(n, Number(static_cast<uint64_t>(n.ops + 0.5)));
     }},
    {"P99", 7, false, 5, 0, false,
     [](const Monitor&, const NodeView& n, int) {
       return IfUp(n, Latency(n.latency.request_p99));
     }},
    {"FSYNC99", 7, false, 6, 0, false,
     [](const Monitor&, const NodeView& n, int) { return IfUp(n, Latency(n.latency.fsync_p99)); }},
    {"THROUGHPUT", static_cast<int>(kSparkWidth), true, 9, 8, false,
     [](const Monitor&, const NodeView& n, int width) {
       return n.up ? Sparkline(n.spark, static_cast<size_t>(width)) : std::string();
     }},
    {"GROUP", 5, true, 5, 0, true,
     [](const Monitor&, const NodeView& n, int) { return IfUp(n, HostingOf(n).main); }},
    {"SHARDS", 6, false, 5, 0, true,
     [](const Monitor&, const NodeView& n, int) {
       return IfUp(n, std::to_string(HostingOf(n).hosts.size()));
     }},
    {"LEADS", 5, false, 6, 0, true,
     [](const Monitor&, const NodeView& n, int) {
       return IfUp(n, std::to_string(HostingOf(n).leads.size()));
     }},
    {"STATE", 6, true, 0, 0, false,
     [](const Monitor&, const NodeView& n, int) {
       return std::string(n.up ? "up" : n.missing_key.empty() ? "DOWN" : "NO KEY");
     }},
};

// A column as laid out: which, and how wide.
struct Placed {
  const Column* column;
  int width;
};

// The columns that fit `cols` terminal columns (one space between two), in
// table order: the always-shown ones, then by `keep`, each at its full width
// or, if that no longer fits, its narrowest.
std::vector<Placed> FitColumns(int cols, bool sharded) {
  std::vector<int> widths(std::size(kColumns), 0);  // 0: left out
  int used = -1;                                    // no space before the first
  for (int keep = 0; keep <= 9; ++keep) {
    for (size_t i = 0; i < std::size(kColumns); ++i) {
      const Column& c = kColumns[i];
      if (c.keep != keep || (c.sharded && !sharded)) continue;
      const int room = cols - used - 1;
      const int w = keep == 0 || c.width <= room             ? c.width
                    : c.min_width > 0 && c.min_width <= room ? room
                                                             : 0;
      if (w == 0) continue;
      widths[i] = w;
      used += w + 1;
    }
  }
  std::vector<Placed> out;
  for (size_t i = 0; i < std::size(kColumns); ++i) {
    if (widths[i] > 0) out.push_back(Placed{&kColumns[i], widths[i]});
  }
  return out;
}

// The screen columns `text` takes (UTF-8: one per character), and the
// bytes of its first `cols` columns.
size_t ScreenWidth(const std::string& text) {
  size_t n = 0;
  for (char c : text) n += (static_cast<unsigned char>(c) & 0xC0) != 0x80;
  return n;
}
size_t BytesOfColumns(const std::string& text, size_t cols) {
  size_t n = 0, i = 0;
  for (; i < text.size(); ++i) {
    if ((static_cast<unsigned char>(text[i]) & 0xC0) != 0x80 && n++ == cols) break;
  }
  return i;
}

// text padded to `width` screen columns; text (left-aligned) cut to it too.
// A number is never cut, as a wrong number is worse than a ragged row: it
// widens its column, and the line is cut at the screen's edge instead.
std::string Fit(std::string text, int width, bool left) {
  const size_t w = static_cast<size_t>(width);
  if (left) text.resize(BytesOfColumns(text, w));
  const std::string pad(w - std::min(w, ScreenWidth(text)), ' ');
  return left ? text + pad : pad + text;
}

std::string TableLine(const std::vector<Placed>& columns, const Monitor* m, const NodeView* n) {
  std::string line;
  for (const Placed& p : columns) {
    if (!line.empty()) line += ' ';
    const std::string cell = n ? p.column->cell(*m, *n, p.width) : p.column->header;
    line += Fit(cell, p.width, p.column->left);
  }
  while (!line.empty() && line.back() == ' ') line.pop_back();
  return line;
}

// Writes `text` at (y, 0), cut at the screen's width: never wrapped.
void PutLine(int y, const std::string& text, int cols) {
  const std::string shown = text.substr(0, BytesOfColumns(text, static_cast<size_t>(cols)));
  mvaddstr(y, 0, shown.c_str());
}

void Draw(const Monitor& m, bool paused, int scroll) {
  erase();
  int rows = 0, cols = 0;
  getmaxyx(stdscr, rows, cols);
  const bool sharded = ShardCount(m) > 0;
  const std::vector<Placed> columns = FitColumns(cols, sharded);
  attron(A_BOLD);
  PutLine(
      0, "kvmon  " + Now() + "  " + (paused ? "[PAUSED]  " : "") + "q quit  p pause  arrows scroll",
      cols);
  PutLine(2, TableLine(columns, nullptr, nullptr), cols);
  attroff(A_BOLD);
  int y = 3;
  for (const auto& n : m.nodes()) {
    const int attr = !n.up ? A_DIM : n.status.role == "leader" ? A_BOLD : A_NORMAL;
    attron(attr);
    PutLine(y++, TableLine(columns, &m, &n), cols);
    attroff(attr);
  }
  if (sharded) {
    // As many shard columns side by side as the screen is wide; down first.
    const std::vector<ShardRow> shards = ShardRows(m);
    const int across = std::max(1, cols / kShardCellWidth);
    const int down = (static_cast<int>(shards.size()) + across - 1) / across;
    y++;
    attron(A_BOLD);
    for (int c = 0; c < across && c * down < static_cast<int>(shards.size()); ++c) {
      mvprintw(y, c * kShardCellWidth, "%s", kShardHeader);
    }
    attroff(A_BOLD);
    y++;
    for (size_t i = 0; i < shards.size(); ++i) {
      const int row = static_cast<int>(i) % down, col = static_cast<int>(i) / down;
      if (shards[i].leader == 0) attron(A_BOLD);  // leaderless: worth a look
      mvprintw(y + row, col * kShardCellWidth, "%s", ShardCell(shards[i]).c_str());
      if (shards[i].leader == 0) attroff(A_BOLD);
    }
    y += down;
  }
  y++;
  attron(A_BOLD);
  mvprintw(y++, 0, "Events");
  attroff(A_BOLD);
  const auto& log = m.log();
  const int room = rows - y;
  const int total = static_cast<int>(log.size());
  const int newest = std::max(0, total - 1 - scroll);
  for (int i = 0; i < room && newest - i >= 0; ++i) {
    PutLine(y + i, log[newest - i], cols);
  }
  refresh();
}

volatile sig_atomic_t g_stop = 0;

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"kvmon: live monitor of a kvstore cluster (events on each node's PORT+2000)."};
  std::string endpoints = kv::client::DefaultEndpoints();
  bool once = false, json = false;
  int wait_ms = 3000;
  app.add_option("--endpoints", endpoints, "Comma-separated client host:port of the members")
      ->capture_default_str();
  app.add_flag("--once", once, "Print one table and exit");
  app.add_flag("--json", json, "With --once: print JSON");
  app.add_option("--wait-ms", wait_ms, "With --once: how long to wait for every node to answer")
      ->capture_default_str();
  kv::tools::CredentialFlags credential_flags;
  credential_flags.AddTo(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e);
    return code == 0 ? 0 : 2;
  }
  const auto eps = kv::client::ParseEndpoints(endpoints);
  if (eps.empty()) {
    std::fprintf(stderr, "kvmon: --endpoints is empty\n");
    return 2;
  }
  kv::client::Credentials credentials;
  if (!credential_flags.Load("kvmon", &credentials)) return 2;
  Monitor m(eps, std::move(credentials));

  if (once || json) {
    const auto deadline = Clock::now() + std::chrono::milliseconds(wait_ms);
    while (!m.AllAnswered() && Clock::now() < deadline) m.Poll(std::chrono::milliseconds(50));
    m.ScrapeOnce();
    PrintTable(m, json);
    for (const auto& n : m.nodes()) {
      if (!n.missing_key.empty()) std::fprintf(stderr, "kvmon: %s\n", n.missing_key.c_str());
    }
    bool any = false;
    for (const auto& n : m.nodes()) any = any || n.up;
    return any ? 0 : 3;
  }

  signal(SIGINT, [](int) { g_stop = 1; });
  signal(SIGTERM, [](int) { g_stop = 1; });
  setlocale(LC_ALL, "");
  initscr();
  cbreak();
  noecho();
  keypad(stdscr, TRUE);
  nodelay(stdscr, TRUE);
  curs_set(0);
  m.Log("watching " + std::to_string(eps.size()) + " nodes");
  m.StartScraping();
  bool paused = false;
  int scroll = 0;
  auto last_draw = Clock::time_point{};
  bool dirty = true;
  while (!g_stop) {
    dirty |= m.Poll(std::chrono::milliseconds(50));
    const int ch = getch();
    if (ch == 'q' || ch == 'Q') break;
    if (ch == 'p' || ch == 'P') paused = !paused, dirty = true;
    if (ch == KEY_UP) scroll++, dirty = true;
    if (ch == KEY_DOWN) scroll = std::max(0, scroll - 1), dirty = true;
    if (ch == KEY_PPAGE) scroll += 10, dirty = true;
    if (ch == KEY_NPAGE) scroll = std::max(0, scroll - 10), dirty = true;
    if (ch == KEY_RESIZE) dirty = true;
    const auto now = Clock::now();
    if (dirty && !paused && now - last_draw >= std::chrono::milliseconds(100)) {
      Draw(m, paused, scroll);
      last_draw = now;
      dirty = false;
    }
  }
  endwin();
  return 0;
}
