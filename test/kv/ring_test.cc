#include "kv/ring.h"

#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdio>
#include <functional>
#include <map>
#include <numeric>
#include <set>
#include <string>
#include <utility>

namespace kv {

namespace {
std::vector<NodeId> Nodes(size_t n, NodeId first = 1) {
  std::vector<NodeId> nodes(n);
  std::iota(nodes.begin(), nodes.end(), first);
  return nodes;
}

PlacementConfig Config(uint32_t shards, uint32_t replicas = kDefaultReplicas,
                       uint32_t rule = kPlacementRuleDraft) {
  PlacementConfig c;
  c.shards = shards;
  c.replicas = replicas;
  c.rule = rule;
  return c;
}

// Per node: how many replicas it holds and how many shards it should lead.
struct Loads {
  std::map<NodeId, uint32_t> replicas;
  std::map<NodeId, uint32_t> leaders;
};

Loads LoadsOf(const std::vector<NodeId>& nodes, const Placement& p) {
  Loads l;
  for (NodeId n : nodes) l.replicas[n] = l.leaders[n] = 0;
  for (ShardId s = 0; s < p.shards(); ++s) {
    for (NodeId n : p.replicas[s]) ++l.replicas.at(n);
    ++l.leaders.at(p.leader[s]);
  }
  return l;
}

uint32_t Max(const std::map<NodeId, uint32_t>& m) {
  uint32_t x = 0;
  for (const auto& [node, count] : m) x = std::max(x, count);
  return x;
}
uint32_t Min(const std::map<NodeId, uint32_t>& m) {
  uint32_t x = ~uint32_t{0};
  for (const auto& [node, count] : m) x = std::min(x, count);
  return x;
}

// The replica assignments that change: a replica moved from one node to
// another counts once, as does one added or removed alone (when the node
// count crosses R).
size_t ReplicaMoves(const std::vector<ShardMove>& moves) {
  size_t n = 0;
  for (const ShardMove& m : moves) n += std::max(m.added.size(), m.removed.size());
  return n;
}
size_t LeaderMoves(const std::vector<ShardMove>& moves) {
  size_t n = 0;
  for (const ShardMove& m : moves) n += m.old_leader != m.new_leader;
  return n;
}

// Kuhn's augmenting paths: the size of a largest matching where left vertex
// i may take any right vertex in adj[i].
size_t MaxMatching(const std::vector<std::vector<size_t>>& adj, size_t right) {
  constexpr size_t kFree = ~size_t{0};
  std::vector<size_t> owner(right, kFree);
  std::vector<bool> tried;
  std::function<bool(size_t)> augment = [&](size_t i) {
    for (size_t j : adj[i]) {
      if (tried[j]) continue;
      tried[j] = true;
      if (owner[j] == kFree || augment(owner[j])) {
        owner[j] = i;
        return true;
      }
    }
    return false;
  };
  size_t size = 0;
  for (size_t i = 0; i < adj.size(); ++i) {
    tried.assign(right, false);
    size += augment(i);
  }
  return size;
}

// By brute force: the smallest possible largest leader count, and the largest
// possible smallest one, over every choice of leaders among p's replicas.
std::pair<uint32_t, uint32_t> BestLeaderCounts(const std::vector<NodeId>& nodes,
                                               const Placement& p) {
  const size_t n = nodes.size();
  const uint32_t shards = p.shards();
  auto holds = [&](size_t v, ShardId s) {
    return std::find(p.replicas[s].begin(), p.replicas[s].end(), nodes[v]) != p.replicas[s].end();
  };
  // Leaders at most c each: every shard matched to one of c slots of a replica.
  uint32_t best_max = (shards + n - 1) / n;
  for (;; ++best_max) {
    std::vector<std::vector<size_t>> adj(shards);
    for (ShardId s = 0; s < shards; ++s) {
      for (size_t v = 0; v < n; ++v) {
        for (uint32_t k = 0; holds(v, s) && k < best_max; ++k) adj[s].push_back(v * best_max + k);
      }
    }
    if (MaxMatching(adj, n * best_max) == shards) break;
  }
  // Leaders at least m each: m slots of every node matched to distinct shards.
  uint32_t best_min = shards / n;
  for (; best_min > 0; --best_min) {
    std::vector<std::vector<size_t>> adj(n * best_min);
    for (size_t v = 0; v < n; ++v) {
      for (ShardId s = 0; s < shards; ++s) {
        for (uint32_t k = 0; holds(v, s) && k < best_min; ++k) adj[v * best_min + k].push_back(s);
      }
    }
    if (MaxMatching(adj, shards) == n * best_min) break;
  }
  return {best_max, best_min};
}

// The bounds of ring.h, in its words.
bool ReplicasWithinBounds(uint32_t max, uint32_t min, double mean) {
  const bool max_ok = max <= 1.25 * mean || (mean < 4 && max <= std::ceil(mean) + 1);
  const bool min_ok = min >= 0.75 * mean || min + 1 >= std::floor(mean);
  return max_ok && min_ok;
}
bool LeadersWithinBounds(uint32_t max, uint32_t min, double mean) {
  return max <= mean + 1 && min + 1 >= mean && max - min <= 1;
}

// The placement simulation: balance, and the moves when one node joins and
// when nodes leave, each against the share of the node that comes or goes
// (R*S/N, N counting it), the least that can move.
struct Simulation {
  uint32_t nodes = 0, shards = 0, replicas = 0;
  double mean = 0;  // replicas per node
  uint32_t max_replicas = 0, min_replicas = 0;
  uint32_t max_leaders = 0, min_leaders = 0;
  size_t join_moves = 0, join_leader_moves = 0;
  double join_share = 0;                           // R*S/(N+1)
  size_t leave_moves = 0, leave_leader_moves = 0;  // the worst of the nodes that left
  NodeId worst_leaving = 0;
  double leave_share = 0;      // R*S/N
  double leave_moves_sum = 0;  // over every node that left
  size_t leaves = 0;
  // Moves between nodes that stay: beyond the replicas the joining node
  // takes, and (the worst) beyond those the leaving node held.
  size_t join_between = 0, leave_between = 0;

  double JoinFactor() const { return join_moves / join_share; }
  double JoinLeaderFactor() const { return join_leader_moves / (double(shards) / (nodes + 1)); }
  double LeaveFactor() const { return leave_moves / leave_share; }
  bool WithinBounds() const {
    return ReplicasWithinBounds(max_replicas, min_replicas, mean) &&
           LeadersWithinBounds(max_leaders, min_leaders, double(shards) / nodes);
  }

  std::string Report() const {
    std::string out;
    char buf[256];
    auto line = [&](auto... args) {
      std::snprintf(buf, sizeof(buf), args...);
      out += buf;
    };
    line("placement of %u shards x %u replicas on %u nodes (%u vnodes per node)\n", shards,
         replicas, nodes, kDefaultNodeVnodes);
    line("  replicas per node: mean %.2f, max %u (max/mean %.3f), min %u (min/mean %.3f)\n", mean,
         max_replicas, max_replicas / mean, min_replicas, min_replicas / mean);
    line("  leaders per node: S/N %.2f, max %u, min %u\n", double(shards) / nodes, max_leaders,
         min_leaders);
    line("  node %u joins: %zu replica moves (its share R*S/(N+1) = %.1f, x%.2f)\n", nodes + 1,
         join_moves, join_share, JoinFactor());
    line("    %zu leader moves (about S/(N+1) = %.1f at the least)\n", join_leader_moves,
         double(shards) / (nodes + 1));
    line(
        "  node %llu leaves: %zu replica moves (its share R*S/N = %.1f, x%.2f), %zu leader "
        "moves\n",
        static_cast<unsigned long long>(worst_leaving), leave_moves, leave_share, LeaveFactor(),
        leave_leader_moves);
    return out;
  }
};

size_t ReplicaMovesBetween(const Placement& from, const Placement& to) {
  return ReplicaMoves(PlacementMoves(from, to));
}

// Node n+1 joins; the nodes in `leaving` leave, one at a time (the worst
// is kept).
Simulation Simulate(uint32_t n, uint32_t shards, const std::vector<NodeId>& leaving) {
  const PlacementConfig config = Config(shards);
  const std::vector<NodeId> nodes = Nodes(n);
  const Placement p = Place(nodes, config);
  const Loads loads = LoadsOf(nodes, p);
  Simulation sim;
  sim.nodes = n;
  sim.shards = shards;
  sim.replicas = config.replicas;
  sim.mean = double(std::min(config.replicas, n)) * shards / n;
  sim.max_replicas = Max(loads.replicas);
  sim.min_replicas = Min(loads.replicas);
  sim.max_leaders = Max(loads.leaders);
  sim.min_leaders = Min(loads.leaders);

  const std::vector<NodeId> joined = Nodes(n + 1);
  const Placement pj = Place(joined, config);
  sim.join_moves = ReplicaMovesBetween(p, pj);
  sim.join_leader_moves = LeaderMoves(PlacementMoves(p, pj));
  sim.join_share = double(std::min(config.replicas, n + 1)) * shards / (n + 1);
  sim.join_between = sim.join_moves - LoadsOf(joined, pj).replicas.at(n + 1);

  sim.leave_share = sim.mean;
  for (NodeId node : leaving) {
    std::vector<NodeId> left = nodes;
    left.erase(std::find(left.begin(), left.end(), node));
    const Placement pl = Place(left, config);
    const size_t moves = ReplicaMovesBetween(p, pl);
    sim.leave_moves_sum += moves;
    ++sim.leaves;
    sim.leave_between = std::max(sim.leave_between, moves - loads.replicas.at(node));
    if (moves >= sim.leave_moves) {
      sim.leave_moves = moves;
      sim.leave_leader_moves = LeaderMoves(PlacementMoves(p, pl));
      sim.worst_leaving = node;
    }
  }
  return sim;
}

// FNV-1a over every shard's replicas and leader.
uint64_t Fingerprint(const Placement& p) {
  uint64_t h = 1469598103934665603ULL;
  for (ShardId s = 0; s < p.shards(); ++s) {
    for (NodeId n : p.replicas[s]) h = (h ^ n) * 1099511628211ULL;
    h = (h ^ p.leader[s]) * 1099511628211ULL;
  }
  return h;
}
}  // namespace

TEST_CASE("KeyHash is XXH64 with seed 0", "[ring]") {
  // Reference values of the xxHash spec: a different hash moves every key.
  REQUIRE(KeyHash("") == 0xef46db3751d8e999ULL);
  REQUIRE(KeyHash("a") == 0xd24ec4f1a98c6e5bULL);
  REQUIRE(KeyHash("abc") == 0x44bc2cf5ad770999ULL);
  REQUIRE(KeyHash("hello world") == 0x45ab6734b21e6968ULL);
  REQUIRE(KeyHash(std::string("k\0y", 3)) != KeyHash("k"));
}

TEST_CASE("Hash tags: a key with {TAG} is placed by TAG alone, as in Redis Cluster", "[ring]") {
  CHECK(HashTag("{user:42}:name") == "user:42");
  CHECK(HashTag("cart:{user:42}") == "user:42");
  CHECK(HashTag("a{b}c{d}") == "b");  // the first braces
  CHECK(HashTag("}{b}") == "b");
  CHECK(HashTag("{b}}") == "b");
  CHECK(HashTag("{{b}") == "{b");
  for (const char* whole : {"plain", "{}empty", "{open", "close}", "", "{", "}{"}) {
    INFO(whole);
    CHECK(HashTag(whole) == whole);
  }
  CHECK(KeyHash("{user:42}:name") == KeyHash("user:42"));
  CHECK(KeyHash("{}x") != KeyHash("x"));  // no tag: the whole key
  const ShardRing ring(4096);
  for (int i = 0; i < 100; ++i) {
    INFO(i);
    CHECK(ring.ShardOf("{order:7}:" + std::to_string(i)) == ring.ShardOf("order:7"));
  }
}

TEST_CASE("ShardOf is pinned: a key never moves to another shard", "[ring]") {
  const ShardRing ring(kDefaultShards);
  REQUIRE(ring.shards() == 16);
  const std::map<std::string, ShardId> golden = {
      {"", 13}, {"a", 15}, {"abc", 6}, {"user:42", 11}, {"hello world", 14}, {"{user:42}:name", 11},
  };
  for (const auto& [key, shard] : golden) {
    INFO("key '" << key << "'");
    REQUIRE(ring.ShardOf(key) == shard);
  }
  const ShardRing big(4096, 16);
  REQUIRE(big.ShardOf("user:42") == 2666);
  // The ring wraps: a hash past the last point belongs to the first point's shard.
  REQUIRE(ring.ShardOfHash(~uint64_t{0}) == ring.ShardOfHash(0));
}

TEST_CASE("Rule 2 is pinned: the same nodes give the same replicas and leaders", "[ring]") {
  // The draft with bounds (issue 19); rule 1 put 5, 10, 11, 11, 11 replicas
  // on these 5 nodes.
  const Placement p = Place(Nodes(5), Config(16));
  const std::vector<std::vector<NodeId>> replicas = {
      {5, 3, 1}, {5, 2, 3}, {3, 5, 4}, {1, 2, 3}, {3, 1, 4}, {3, 1, 2}, {5, 2, 4}, {4, 5, 3},
      {2, 5, 4}, {2, 5, 1}, {5, 1, 2}, {5, 2, 4}, {1, 5, 4}, {1, 3, 4}, {5, 2, 1}, {3, 4, 2}};
  const std::vector<NodeId> leaders = {5, 2, 4, 1, 3, 3, 4, 4, 2, 2, 5, 5, 1, 1, 5, 3};
  REQUIRE(p.replicas == replicas);
  REQUIRE(p.leader == leaders);
  std::vector<uint32_t> counts;
  for (const auto& [node, count] : LoadsOf(Nodes(5), p).replicas) counts.push_back(count);
  std::sort(counts.begin(), counts.end());
  CHECK(counts == std::vector<uint32_t>{9, 9, 9, 10, 11});
  // Where the bounds are at work (a cap at 40 nodes, the floor at 97).
  CHECK(Fingerprint(Place(Nodes(40), Config(64))) == 0xd39784edb4b79d31ULL);
  CHECK(Fingerprint(Place(Nodes(97), Config(256))) == 0xb21fd9fdc26de423ULL);
  CHECK(Fingerprint(Place(Nodes(100), Config(4096))) == 0xb4b964df8dd7b0b3ULL);
}

TEST_CASE("Rule 1 is pinned: the nearest nodes clockwise, as every version placed them", "[ring]") {
  // The goldens of the placement before issue 19: nodes that do not know
  // rule 2 place replicas so, and a cluster's founders always do.
  REQUIRE(PlacementConfig{}.rule == kPlacementRuleRing);
  const Placement p = Place(Nodes(5), Config(16, kDefaultReplicas, kPlacementRuleRing));
  const std::vector<std::vector<NodeId>> replicas = {
      {5, 3, 1}, {5, 2, 3}, {3, 5, 1}, {1, 2, 3}, {3, 1, 4}, {3, 1, 2}, {5, 2, 3}, {4, 5, 3},
      {2, 5, 1}, {2, 5, 1}, {5, 1, 2}, {5, 2, 3}, {1, 5, 4}, {1, 3, 4}, {5, 2, 1}, {3, 4, 2}};
  const std::vector<NodeId> leaders = {1, 2, 3, 1, 4, 3, 5, 4, 2, 2, 5, 5, 4, 1, 5, 3};
  REQUIRE(p.replicas == replicas);
  REQUIRE(p.leader == leaders);
  CHECK(Fingerprint(Place(Nodes(40), Config(64, 3, kPlacementRuleRing))) == 0x05dd702f76b2cee7ULL);
  CHECK(Fingerprint(Place(Nodes(97), Config(256, 3, kPlacementRuleRing))) == 0x56785677c36338e8ULL);
  CHECK(Fingerprint(Place(Nodes(100), Config(4096, 3, kPlacementRuleRing))) ==
        0x718a7633fb8d39b5ULL);
}

TEST_CASE("Keys spread evenly over the shards", "[ring]") {
  const ShardRing ring(kDefaultShards);
  std::vector<size_t> count(ring.shards());
  const size_t keys = 64 * 1024;
  for (size_t i = 0; i < keys; ++i) ++count.at(ring.ShardOf("key-" + std::to_string(i)));
  const double mean = double(keys) / ring.shards();
  const auto [lo, hi] = std::minmax_element(count.begin(), count.end());
  INFO("keys per shard: mean " << mean << " min " << *lo << " max " << *hi);
  REQUIRE(*hi <= 1.2 * mean);
  REQUIRE(*lo >= 0.8 * mean);
}

TEST_CASE("Placement does not depend on the order of the nodes or duplicates", "[ring]") {
  for (uint32_t rule : {kPlacementRuleRing, kPlacementRuleDraft}) {
    const PlacementConfig config = Config(64, kDefaultReplicas, rule);
    const std::vector<NodeId> nodes = {7, 3, 12, 40, 5, 9, 1};
    std::vector<NodeId> shuffled = {40, 1, 9, 5, 12, 3, 7, 3, 40};
    const Placement a = Place(nodes, config);
    REQUIRE(Place(shuffled, config) == a);
    std::reverse(shuffled.begin(), shuffled.end());
    REQUIRE(Place(shuffled, config) == a);
  }
}

TEST_CASE("Each shard gets min(R, N) distinct replicas, its leader among them", "[ring]") {
  // One vnode per node makes the ring lumpy enough that the draft sometimes
  // leaves a shard short (ring.h, step 2): with 11 shards on 7, 10 and 12
  // nodes here.
  for (uint32_t vnodes : {kDefaultNodeVnodes, 1u}) {
    for (uint32_t shards : {1u, 11u, 16u}) {
      for (uint32_t n = 1; n <= 12; ++n) {
        for (uint32_t r = 1; r <= 5; ++r) {
          for (uint32_t rule : {kPlacementRuleRing, kPlacementRuleDraft}) {
            PlacementConfig config = Config(shards, r, rule);
            config.vnodes_per_node = vnodes;
            const std::vector<NodeId> nodes = Nodes(n, 100);
            const Placement p = Place(nodes, config);
            const Loads loads = LoadsOf(nodes, p);
            INFO(n << " nodes, " << shards << " shards, " << r << " replicas, " << vnodes
                   << " vnodes, rule " << rule);
            REQUIRE(p.shards() == shards);
            for (ShardId s = 0; s < shards; ++s) {
              const std::set<NodeId> distinct(p.replicas[s].begin(), p.replicas[s].end());
              REQUIRE(p.replicas[s].size() == std::min(n, r));
              REQUIRE(distinct.size() == p.replicas[s].size());
              REQUIRE(*distinct.begin() >= 100);
              REQUIRE(*distinct.rbegin() < 100 + n);
              REQUIRE(distinct.count(p.leader[s]) == 1);
            }
            if (rule == kPlacementRuleDraft) {
              CHECK(ReplicasWithinBounds(Max(loads.replicas), Min(loads.replicas),
                                         double(std::min(n, r)) * shards / n));
            }
          }
        }
      }
    }
  }
}

TEST_CASE("No nodes: no replicas and no leaders", "[ring]") {
  const Placement p = Place({}, Config(8));
  REQUIRE(p.shards() == 8);
  for (ShardId s = 0; s < 8; ++s) {
    REQUIRE(p.replicas[s].empty());
    REQUIRE(p.leader[s] == raft::kNoNode);
  }
}

TEST_CASE("Replicas and leaders per node stay within the stated bounds for 3 to 100 nodes",
          "[ring]") {
  for (uint32_t shards : {16u, 64u, 256u, 4096u}) {
    // Every N for the smaller S; a sample keeps 4096 fast under the
    // sanitizers (the simulation report measures every N).
    for (uint32_t n = 3; n <= 100; n += shards == 4096 ? 7 : 1) {
      const std::vector<NodeId> nodes = Nodes(n);
      const Loads loads = LoadsOf(nodes, Place(nodes, Config(shards)));
      const double mean = 3.0 * shards / n;
      INFO(n << " nodes, " << shards << " shards: mean " << mean << " max " << Max(loads.replicas)
             << " min " << Min(loads.replicas) << "; leaders max " << Max(loads.leaders) << " min "
             << Min(loads.leaders));
      CHECK(ReplicasWithinBounds(Max(loads.replicas), Min(loads.replicas), mean));
      CHECK(LeadersWithinBounds(Max(loads.leaders), Min(loads.leaders), double(shards) / n));
    }
  }
}

TEST_CASE("Leaders are as balanced as the replica sets allow", "[ring]") {
  // Few shards: compare with the best a brute-force matching finds.
  for (uint32_t r = 1; r <= 3; ++r) {
    for (uint32_t n = 1; n <= 20; ++n) {
      const std::vector<NodeId> nodes = Nodes(n);
      const Placement p = Place(nodes, Config(16, r));
      const Loads loads = LoadsOf(nodes, p);
      const auto [best_max, best_min] = BestLeaderCounts(nodes, p);
      INFO(n << " nodes, 16 shards, " << r << " replicas");
      CHECK(Max(loads.leaders) == best_max);
      CHECK(Min(loads.leaders) == best_min);
      // With the default R = 3 every node holds enough replicas for a
      // spread of one.
      if (r == 3) CHECK(Max(loads.leaders) - Min(loads.leaders) <= 1);
    }
  }
  // Many shards: every node leads floor(S/N) or ceil(S/N).
  for (uint32_t r : {2u, 3u}) {
    for (uint32_t n : {3u, 37u, 100u}) {
      const std::vector<NodeId> nodes = Nodes(n);
      const Loads loads = LoadsOf(nodes, Place(nodes, Config(4096, r)));
      INFO(n << " nodes, 4096 shards, " << r << " replicas");
      CHECK(Max(loads.leaders) == (4096 + n - 1) / n);
      CHECK(Min(loads.leaders) == 4096 / n);
    }
  }
}

TEST_CASE("A join or a leave moves about R*S/N replicas", "[ring]") {
  // Against the share of the node that comes or goes. The worst bounds are
  // the simulation report's over every N in 3..100, rounded up: they come
  // where a bound of ring.h steps and every node at it gives or takes one
  // replica more. So do the moves between nodes that stay (none for 4096
  // shards). On average a move is near its share.
  struct Worst {
    double factor;
    size_t between;
  };
  const std::map<uint32_t, Worst> worst = {
      {16, {3.7, 4}}, {64, {4.5, 15}}, {256, {3.8, 22}}, {4096, {1.15, 0}}};
  for (const auto& [shards, bound] : worst) {
    double join_sum = 0, leave_sum = 0;
    size_t joins = 0, leaves = 0;
    for (uint32_t n = 3; n <= 100; n += shards == 4096 ? 24 : 4) {
      const Simulation sim = Simulate(n, shards, {1, n / 2 + 1, n});
      INFO(sim.Report());
      CHECK(sim.JoinFactor() <= bound.factor);
      CHECK(sim.LeaveFactor() <= bound.factor);
      CHECK(sim.join_between <= bound.between);
      CHECK(sim.leave_between <= bound.between);
      join_sum += sim.JoinFactor();
      ++joins;
      leave_sum += sim.leave_moves_sum / sim.leave_share;
      leaves += sim.leaves;
    }
    INFO(shards << " shards: mean join x" << join_sum / joins << ", leave x" << leave_sum / leaves);
    CHECK(join_sum / joins <= 1.3);
    CHECK(leave_sum / leaves <= 1.3);
  }
}

TEST_CASE("PlacementMoves lists added and removed replicas and leader changes", "[ring]") {
  Placement from;
  from.replicas = {{1, 2, 3}, {2, 3, 4}, {3, 4, 1}};
  from.leader = {1, 2, 3};
  Placement to;
  to.replicas = {{3, 2, 1}, {5, 3, 2}, {3, 4, 1}};
  to.leader = {1, 5, 4};
  const std::vector<ShardMove> moves = PlacementMoves(from, to);
  REQUIRE(moves.size() == 2);  // shard 0 only changed the order
  REQUIRE(moves[0] == ShardMove{1, {5}, {4}, 2, 5});
  REQUIRE(moves[1] == ShardMove{2, {}, {}, 3, 4});
  REQUIRE(PlacementMoves(to, to).empty());
}

TEST_CASE("Simulation: 100 nodes and 4096 shards", "[ring]") {
  const Simulation sim = Simulate(100, 4096, {1, 100});
  INFO(sim.Report());
  CHECK(sim.WithinBounds());
  CHECK(sim.max_replicas <= 1.15 * sim.mean);
  CHECK(sim.min_replicas >= 0.85 * sim.mean);
  CHECK(sim.JoinFactor() <= 1.15);
  CHECK(sim.LeaveFactor() <= 1.15);
  // Leaderships: the joining node takes its share, and rebalancing moves
  // more along (183 and 175 here; leaders have no history, see ring.h).
  CHECK(sim.join_leader_moves <= 5 * 4096.0 / 101);
  CHECK(sim.leave_leader_moves <= 5 * 4096.0 / 100);
}

// Not run by default: `kv_test "[.sim]"` prints the report: one cluster in
// detail, 16 shards on 3..16 nodes, then for each S the worst over
// N = 3..100 of the balance and of the moves (node N+1 joins; every node
// leaves in turn, or three of them for 4096 shards), with the N where it
// happens, and the mean of the moves over every join and every leave.
TEST_CASE("Placement simulation report", "[.sim]") {
  std::printf("%s", Simulate(100, 4096, {1, 50, 100}).Report().c_str());
  // The default S on the cluster sizes most run.
  std::printf("\n16 shards: replicas per node (ascending), moves when a node joins, worst leave\n");
  for (uint32_t n = 3; n <= 16; ++n) {
    const Simulation sim = Simulate(n, 16, Nodes(n));
    std::vector<uint32_t> counts;
    for (const auto& [node, count] : LoadsOf(Nodes(n), Place(Nodes(n), Config(16))).replicas) {
      counts.push_back(count);
    }
    std::sort(counts.begin(), counts.end());
    std::string list;
    for (uint32_t c : counts) list += (list.empty() ? "" : ",") + std::to_string(c);
    std::printf("  N = %2u: %-40s join %2zu (share %4.1f)  leave %2zu (share %4.1f)\n", n,
                list.c_str(), sim.join_moves, sim.join_share, sim.leave_moves, sim.leave_share);
  }
  // Ratios where the mean is 4 or more; below, how far past the mean rounded
  // (the bounds allow one).
  // Then the moves: against the share, and in count between nodes that
  // stay (worst over N, a join / a leave); leader moves against S/(N+1).
  std::printf("\n%5s  %-12s %-12s %-9s %-8s %-18s %-18s %-9s %-18s\n", "", "mean >= 4", "",
              "mean < 4", "leaders", "join moves/share", "leave moves/share", "between",
              "leader moves/share");
  std::printf("%5s  %-12s %-12s %-9s %-8s %-18s %-18s %-9s %-18s\n", "S", "max/mean (N)",
              "min/mean (N)", "over under", "max-min", "worst (N), mean", "worst (N), mean",
              "join/leave", "join worst (N), mean");
  for (uint32_t shards : {16u, 64u, 256u, 4096u}) {
    double max_ratio = 0, min_ratio = 1e9, join = 0, leave = 0, join_sum = 0, leave_sum = 0;
    uint32_t max_n = 0, min_n = 0, join_n = 0, leave_n = 0, leader_spread = 0, count = 0;
    int over = -1, under = -1;  // none while the mean is 4 or more
    size_t leaves = 0, join_between = 0, leave_between = 0;
    double leaders = 0, leaders_sum = 0;
    uint32_t leaders_n = 0;
    for (uint32_t n = 3; n <= 100; ++n) {
      const std::vector<NodeId> leaving =
          shards <= 256 ? Nodes(n) : std::vector<NodeId>{1, n / 2 + 1, n};
      const Simulation sim = Simulate(n, shards, leaving);
      INFO(sim.Report());
      CHECK(sim.WithinBounds());
      if (sim.mean >= 4 && sim.max_replicas / sim.mean > max_ratio) {
        max_ratio = sim.max_replicas / sim.mean;
        max_n = n;
      }
      if (sim.mean >= 4 && sim.min_replicas / sim.mean < min_ratio) {
        min_ratio = sim.min_replicas / sim.mean;
        min_n = n;
      }
      if (sim.mean < 4) {
        over = std::max(over, int(sim.max_replicas) - int(std::ceil(sim.mean)));
        under = std::max(under, int(std::floor(sim.mean)) - int(sim.min_replicas));
      }
      if (sim.JoinFactor() > join) join = sim.JoinFactor(), join_n = n;
      if (sim.LeaveFactor() > leave) leave = sim.LeaveFactor(), leave_n = n;
      leader_spread = std::max(leader_spread, sim.max_leaders - sim.min_leaders);
      join_between = std::max(join_between, sim.join_between);
      leave_between = std::max(leave_between, sim.leave_between);
      if (sim.JoinLeaderFactor() > leaders) leaders = sim.JoinLeaderFactor(), leaders_n = n;
      leaders_sum += sim.JoinLeaderFactor();
      join_sum += sim.JoinFactor();
      leave_sum += sim.leave_moves_sum / sim.leave_share;
      leaves += sim.leaves;
      ++count;
    }
    const std::string small =
        over < 0 ? "   -     -" : std::to_string(over) + "     " + std::to_string(under);
    const std::string between =
        std::to_string(join_between) + " / " + std::to_string(leave_between);
    std::printf(
        "%5u  %.3f (%3u)  %.3f (%3u)  %10s  %-8u %.2f (%3u), %.2f   %.2f (%3u), %.2f   %-9s %.2f "
        "(%3u), %.2f\n",
        shards, max_ratio, max_n, min_ratio, min_n, small.c_str(), leader_spread, join, join_n,
        join_sum / count, leave, leave_n, leave_sum / leaves, between.c_str(), leaders, leaders_n,
        leaders_sum / count);
    std::fflush(stdout);
  }
}

}  // namespace kv
