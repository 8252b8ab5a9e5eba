// Sharded clusters with real processes: 5 nodes, 16 shards, 3 replicas each.
// Every node hosts exactly the shards the ring places on it, leaders spread
// evenly, a node asked about a key it does not lead answers REDIRECT with the
// shard's leader, and no acknowledged write is lost when a node dies.
#include <algorithm>
#include <catch2/catch.hpp>
#include <csignal>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "kv/ring.h"
#include "kvstore/watch.h"
#include "test/cluster/cluster.h"

namespace kv::test {
namespace {

using namespace std::chrono_literals;

constexpr uint32_t kShards = 16;
constexpr uint32_t kReplicas = 3;
constexpr auto kSettleTimeout = 60s;
constexpr auto kReplyTimeout = 10000ms;

ClusterOptions ShardedOptions() {
  ClusterOptions o;
  o.nodes = 5;
  o.extra_args = {"--shards", std::to_string(kShards), "--replicas", std::to_string(kReplicas)};
  return o;
}

// Shard -> leader as the nodes report it, for shards whose replicas that
// answer all agree on one leader that calls itself leader.
std::map<uint32_t, uint64_t> AgreedLeaders(Cluster& cluster) {
  std::map<uint32_t, std::set<uint64_t>> claimed;  // shard -> leaders seen
  std::map<uint32_t, uint64_t> self_declared;
  for (const auto& [id, st] : cluster.StatusOfLiveNodes()) {
    for (const GroupStatus& g : st.groups) {
      if (g.shard < 0) continue;
      const auto shard = static_cast<uint32_t>(g.shard);
      claimed[shard].insert(g.leader);
      if (g.role == "leader") self_declared[shard] = id;
    }
  }
  std::map<uint32_t, uint64_t> out;
  for (const auto& [shard, leaders] : claimed) {
    auto it = self_declared.find(shard);
    if (leaders.size() == 1 && it != self_declared.end() && *leaders.begin() == it->second) {
      out[shard] = it->second;
    }
  }
  return out;
}

bool EveryShardLed(Cluster& cluster) { return AgreedLeaders(cluster).size() == kShards; }

// Every live node hosts exactly its shards of `placement`, each with the
// placement's voters and no learners (the metadata group aside).
bool Placed(Cluster& cluster, const Placement& placement) {
  for (const auto& [id, st] : cluster.StatusOfLiveNodes()) {
    std::set<uint32_t> hosted, expected;
    for (const GroupStatus& g : st.groups) {
      if (g.shard < 0) continue;
      std::vector<uint64_t> voters = g.voters;
      std::vector<uint64_t> want = placement.replicas[static_cast<size_t>(g.shard)];
      std::sort(voters.begin(), voters.end());
      std::sort(want.begin(), want.end());
      if (voters != want || !g.learners.empty()) return false;
      hosted.insert(static_cast<uint32_t>(g.shard));
    }
    for (uint32_t s = 0; s < kShards; ++s) {
      const auto& r = placement.replicas[s];
      if (std::find(r.begin(), r.end(), id) != r.end()) expected.insert(s);
    }
    if (hosted != expected) return false;
  }
  return true;
}

// The placement rule of the shard map node `id` serves (0: no answer).
uint32_t PlacementRuleOf(Cluster& cluster, uint64_t id) {
  client::Options o = cluster.ClientOptions(kReplyTimeout);
  o.endpoints = {cluster.address(id)};
  client::Client one(o);
  ShardMap map;
  return one.Shards(&map).ok() ? map.placement : 0;
}

// Waits until every node serves placement rule 2 (a new cluster's founders
// start from rule 1, which every version knows, and move to rule 2 once
// every member knows it) and hosts exactly its shards of it, which
// *placement is set to. False when that takes longer than kSettleTimeout.
bool WaitForEvenPlacement(Cluster& cluster, Placement* placement) {
  PlacementConfig pc;
  pc.shards = kShards;
  pc.replicas = kReplicas;
  pc.rule = kPlacementRuleDraft;
  *placement = Place(cluster.ids(), pc);
  return cluster.WaitUntil(
      [&] {
        for (uint64_t id : cluster.ids()) {
          if (PlacementRuleOf(cluster, id) != kPlacementRuleDraft) return false;
        }
        return Placed(cluster, *placement);
      },
      kSettleTimeout);
}

// max - min of the number of shards each live node leads.
int LeaderSpread(Cluster& cluster, const std::vector<uint64_t>& nodes) {
  std::map<uint64_t, int> count;
  for (uint64_t id : nodes) count[id] = 0;
  for (const auto& [shard, leader] : AgreedLeaders(cluster)) count[leader]++;
  int lo = 1 << 30, hi = 0;
  for (const auto& [id, n] : count) {
    lo = std::min(lo, n);
    hi = std::max(hi, n);
  }
  return hi - lo;
}

net::ClientRequest KeyRequest(uint64_t id, net::ClientOp op, const std::string& key) {
  net::ClientRequest r;
  r.id = id;
  r.op = op;
  r.key = key;
  r.value = "v";
  return r;
}

TEST_CASE("a sharded cluster places shards by the ring, balances leaders and redirects",
          "[cluster][shard]") {
  Cluster cluster(ShardedOptions());
  REQUIRE(cluster.Start());
  REQUIRE(cluster.WaitUntil([&] { return EveryShardLed(cluster); }, kSettleTimeout));

  // Data placement: every member knows rule 2, so the cluster moves to it,
  // and then each node hosts exactly its shards plus the metadata group
  // (all 5 founders are in it).
  Placement placement;
  CHECK(WaitForEvenPlacement(cluster, &placement));
  for (const auto& [id, st] : cluster.StatusOfLiveNodes()) {
    INFO("node " << id);
    CHECK(st.shards == kShards);
    CHECK(std::any_of(st.groups.begin(), st.groups.end(),
                      [](const GroupStatus& g) { return g.shard < 0; }));
  }
  REQUIRE(cluster.WaitUntil([&] { return EveryShardLed(cluster); }, kSettleTimeout));

  // Leaders balanced: 16 shards over 5 nodes, 3 or 4 each.
  CHECK(
      cluster.WaitUntil([&] { return LeaderSpread(cluster, cluster.ids()) <= 1; }, kSettleTimeout));

  // Writes through the client library land in their shard only.
  client::Client c(cluster.ClientOptions(kReplyTimeout));
  const ShardRing ring(kShards);
  std::map<uint32_t, int> per_shard;
  for (int i = 0; i < 200; ++i) {
    const std::string key = "key-" + std::to_string(i);
    REQUIRE(c.Put(key, "value-" + std::to_string(i)).ok());
    per_shard[ring.ShardOf(key)]++;
  }
  CHECK(per_shard.size() == kShards);  // 200 keys reach every shard
  for (int i = 0; i < 200; i += 7) {
    const std::string key = "key-" + std::to_string(i);
    CHECK(c.Get(key).value == "value-" + std::to_string(i));
  }
  // Every replica of a shard converges on that shard's keys; nobody else
  // holds them.
  CHECK(cluster.WaitUntil(
      [&] {
        for (const auto& [id, st] : cluster.StatusOfLiveNodes()) {
          for (const GroupStatus& g : st.groups) {
            if (g.shard >= 0 && g.keys != static_cast<uint64_t>(per_shard[g.shard])) return false;
          }
        }
        return true;
      },
      kSettleTimeout));

  // A node that does not lead a key's shard answers REDIRECT with the shard
  // id and its leader's address, and does not execute the request.
  const std::map<uint32_t, uint64_t> leaders = AgreedLeaders(cluster);
  uint64_t request_id = 1;
  for (uint64_t node : cluster.ids()) {
    RawConnection conn(cluster.address(node));
    for (int i = 0; i < 40; ++i) {
      const std::string key = "redirect-" + std::to_string(i);
      const uint32_t shard = ring.ShardOf(key);
      auto lit = leaders.find(shard);
      if (lit == leaders.end() || lit->second == node) continue;
      auto reply = conn.Call(KeyRequest(request_id++, net::ClientOp::kPut, key), kReplyTimeout);
      INFO("node " << node << " key " << key << " shard " << shard << " leader " << lit->second);
      REQUIRE(reply);
      // The leader may have moved since (leader balancing): a replica of the
      // shard, at least; never executed here.
      CHECK(reply->status == net::ReplyStatus::kRedirect);
      CHECK(reply->shard == static_cast<int64_t>(shard));
      std::set<std::string> replicas;
      for (uint64_t r : placement.replicas[shard]) replicas.insert(cluster.address(r));
      CHECK(replicas.count(reply->leader) == 1);
    }
  }
  for (int i = 0; i < 40; ++i)
    CHECK(c.Get("redirect-" + std::to_string(i)).code == client::Code::kNotFound);

  // The map every node serves names the same replicas and, once settled,
  // the leaders the groups report.
  for (uint64_t node : cluster.ids()) {
    client::Options o = cluster.ClientOptions(kReplyTimeout);
    o.endpoints = {cluster.address(node)};
    client::Client one(o);
    ShardMap map;
    REQUIRE(one.Shards(&map).ok());
    CHECK(map.shards == kShards);
    CHECK(map.replicas == kReplicas);
    CHECK(map.placement == kPlacementRuleDraft);
    REQUIRE(map.list.size() == kShards);
    for (const ShardInfo& info : map.list) {
      CHECK(info.replicas == placement.replicas[info.shard]);
    }
  }
}

TEST_CASE("a sharded cluster loses no acknowledged write when a node is killed and restarted",
          "[cluster][shard]") {
  Cluster cluster(ShardedOptions());
  REQUIRE(cluster.Start());
  REQUIRE(cluster.WaitUntil([&] { return EveryShardLed(cluster); }, kSettleTimeout));
  client::Client c(cluster.ClientOptions(kReplyTimeout));
  std::map<std::string, std::string> acked;
  auto write = [&](const std::string& prefix, int n) {
    for (int i = 0; i < n; ++i) {
      const std::string key = prefix + std::to_string(i);
      const std::string value = prefix + "v" + std::to_string(i);
      if (c.Put(key, value).ok()) acked[key] = value;
    }
  };
  write("before-", 100);
  REQUIRE(acked.size() == 100);

  // Kill the node leading the most shards: its shards elect new leaders
  // among their other two replicas.
  std::map<uint64_t, int> led;
  for (const auto& [shard, leader] : AgreedLeaders(cluster)) led[leader]++;
  const uint64_t victim = std::max_element(led.begin(), led.end(), [](auto& a, auto& b) {
                            return a.second < b.second;
                          })->first;
  cluster.Kill(victim, SIGKILL);
  REQUIRE(cluster.WaitUntil([&] { return EveryShardLed(cluster); }, kSettleTimeout));
  write("during-", 100);
  CHECK(acked.size() == 200);

  REQUIRE(cluster.StartNode(victim));
  REQUIRE(cluster.WaitUntil([&] { return EveryShardLed(cluster); }, kSettleTimeout));
  write("after-", 50);
  for (const auto& [key, value] : acked) {
    INFO("key " << key);
    CHECK(c.Get(key).value == value);
  }
  // The restarted node caught up on every shard it hosts: its replicas'
  // digests match the leader's at the same applied index.
  CHECK(cluster.WaitUntil(
      [&] {
        std::map<uint64_t, std::set<std::pair<uint64_t, uint64_t>>>
            states;  // group -> (applied, digest)
        for (const auto& [id, st] : cluster.StatusOfLiveNodes()) {
          for (const GroupStatus& g : st.groups) states[g.group].insert({g.applied, g.digest});
        }
        for (const auto& [group, seen] : states) {
          if (seen.size() != 1) return false;
        }
        return states.size() == kShards + 1;
      },
      kSettleTimeout));
}

TEST_CASE("a watch of a sharded cluster reads every shard from a replica and sees every write",
          "[cluster][shard][watch]") {
  Cluster cluster(ShardedOptions());
  REQUIRE(cluster.Start());
  REQUIRE(cluster.WaitUntil([&] { return EveryShardLed(cluster); }, kSettleTimeout));
  // The replica sets settle first: a new cluster moves from placement rule 1
  // to rule 2 after its start, and a watch started meanwhile may be served
  // by a replica the map fetched below no longer lists.
  Placement placement;
  REQUIRE(WaitForEvenPlacement(cluster, &placement));
  client::Client c(cluster.ClientOptions(kReplyTimeout));
  ShardMap map;
  REQUIRE(c.Shards(&map).ok());
  std::map<uint32_t, std::string> first_node;
  client::WatchOptions o = client::PrefixWatch("");
  o.on_move = [&](const client::WatchMove& m) { first_node.emplace(m.shard, m.endpoint); };
  client::Watcher w(c, o);
  REQUIRE(w.status().ok());
  CHECK(w.sharded());
  REQUIRE(first_node.size() == kShards);
  for (const auto& [shard, endpoint] : first_node) {
    INFO("shard " << shard << " first served by " << endpoint);
    bool replica = false;
    for (uint64_t id : map.list[shard].replicas) replica = replica || map.members[id] == endpoint;
    CHECK(replica);
  }

  // Keys all over the shards, and a txn whose two changes share an index.
  std::map<std::pair<uint32_t, uint64_t>, std::vector<std::string>> written;  // (shard, index)
  for (int i = 0; i < 64; ++i) {
    const std::string key = "s/" + std::to_string(i);
    const client::Result r = c.Put(key, "v");
    REQUIRE(r.ok());
    written[{static_cast<uint32_t>(c.ShardOf(key)), r.index}].push_back(key);
  }
  const client::TxnResult t = c.Txn(client::Transaction{
      {}, {client::TxnOp::Put("{t}:a", "1"), client::TxnOp::Put("{t}:b", "2")}, {}});
  REQUIRE(t.ok());
  written[{static_cast<uint32_t>(c.ShardOf("{t}")), t.index}] = {"{t}:a", "{t}:b"};

  std::map<std::pair<uint32_t, uint64_t>, std::vector<std::string>> seen;
  std::map<uint32_t, uint64_t> last;  // by shard
  size_t events = 0;
  const auto deadline = std::chrono::steady_clock::now() + kSettleTimeout;
  while (events < 66 && std::chrono::steady_clock::now() < deadline) {
    std::optional<client::WatchEvent> e = w.Next(100ms);
    if (!e) continue;
    ++events;
    INFO("shard " << e->shard << " key " << e->key << " at " << e->index);
    CHECK(e->index >= last[e->shard]);
    last[e->shard] = e->index;
    seen[{e->shard, e->index}].push_back(e->key);
  }
  CHECK(seen == written);
  // Position says how far each shard's changes were returned.
  const std::map<uint32_t, uint64_t> position = w.Position();
  for (const auto& [shard, index] : last) CHECK(position.at(shard) >= index);
}

TEST_CASE("a txn on keys of one hash tag runs and one over two shards gets ERROR naming both",
          "[cluster][shard]") {
  Cluster cluster(ShardedOptions());
  REQUIRE(cluster.Start());
  REQUIRE(cluster.WaitUntil([&] { return EveryShardLed(cluster); }, kSettleTimeout));
  client::Client c(cluster.ClientOptions(kReplyTimeout));
  using client::Compare;
  using client::Transaction;
  using client::TxnOp;

  const client::TxnResult opened =
      c.Txn(Transaction{{Compare::Absent("{acct}:a"), Compare::Absent("{acct}:b")},
                        {TxnOp::Put("{acct}:a", "70"), TxnOp::Put("{acct}:b", "30")},
                        {}});
  INFO(opened.error);
  REQUIRE(opened.ok());
  CHECK(opened.succeeded);
  // One entry of the tag's shard wrote both.
  CHECK(c.Get("{acct}:a").mod_index == opened.index);
  CHECK(c.Get("{acct}:b").mod_index == opened.index);

  const ShardRing ring(kShards);
  const uint32_t tagged = ring.ShardOf("acct");
  std::string elsewhere = "elsewhere";
  while (ring.ShardOf(elsewhere) == tagged) elsewhere += "+";
  const client::TxnResult split =
      c.Txn(Transaction{{Compare::Present("{acct}:a")}, {TxnOp::Put(elsewhere, "v")}, {}});
  INFO(split.error);
  CHECK(split.code == client::Code::kError);
  CHECK(split.error.find("is in shard " + std::to_string(tagged) + ",") != std::string::npos);
  CHECK(split.error.find(" in shard " + std::to_string(ring.ShardOf(elsewhere)) + " (") !=
        std::string::npos);
  CHECK(c.Get(elsewhere).code == client::Code::kNotFound);
}

}  // namespace
}  // namespace kv::test
