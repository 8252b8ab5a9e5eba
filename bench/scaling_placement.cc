// scaling_placement: the real placement (kv/ring.h) as JSON, for
// bench/scaling-model, which predicts throughput and rebalance costs from it
// (docs/scaling.md).
//
//   scaling_placement --nodes 5 --shards 16
//   scaling_placement --nodes 10 --shards 64 --keys 100000 --zipf 0.99
//   scaling_placement --nodes 10 --shards 64 --join      # then node 11 joins
//   scaling_placement --nodes 10 --shards 64 --leave 3   # then node 3 leaves
//
// Nodes are 1..N. It prints one JSON object: each shard's replicas and
// preferred leader, and the share of the load each shard gets when the keys
// are kvload's ("key" and 12 digits, 0..K-1) drawn uniformly or, with
// --zipf S, key i with weight 1/(i+1)^S (kvload's --key-dist zipf is S =
// 0.99). With --join or --leave, also the placement after the change and
// the moves between the two, as a node computes them (ShardManager places
// without the previous placement, so this does too).
//
// Not a test: nothing runs it but bench/scaling-model.
#include <CLI/CLI.hpp>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "kv/ring.h"

namespace {

std::string JsonList(const std::vector<kv::NodeId>& v) {
  std::string s = "[";
  for (size_t i = 0; i < v.size(); ++i) s += (i ? "," : "") + std::to_string(v[i]);
  return s + "]";
}

std::string PlacementJson(const kv::Placement& p) {
  std::string s = "{\"replicas\":[";
  for (kv::ShardId i = 0; i < p.shards(); ++i) s += (i ? "," : "") + JsonList(p.replicas[i]);
  s += "],\"leader\":" + JsonList(p.leader) + "}";
  return s;
}

// Each shard's share of the operations when key i of `keys` is drawn with
// weight 1/(i+1)^zipf (0: uniform).
std::vector<double> ShardWeights(uint32_t shards, uint64_t keys, double zipf) {
  const kv::ShardRing ring(shards);
  std::vector<double> w(shards, 0);
  double total = 0;
  char name[24];
  for (uint64_t i = 0; i < keys; ++i) {
    std::snprintf(name, sizeof name, "key%012llu", static_cast<unsigned long long>(i));
    const double x = zipf == 0 ? 1.0 : 1.0 / std::pow(static_cast<double>(i + 1), zipf);
    w[ring.ShardOf(name)] += x;
    total += x;
  }
  for (double& x : w) x /= total;
  return w;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"scaling_placement: kvstore's shard placement and key spread as JSON"};
  uint32_t nodes = 3;
  uint32_t shards = kv::kDefaultShards;
  uint32_t replicas = kv::kDefaultReplicas;
  uint64_t keys = 100000;
  double zipf = 0;
  bool join = false;
  uint32_t leave = 0;
  app.add_option("--nodes", nodes, "Nodes, ids 1..N")->check(CLI::Range(1u, 100000u));
  app.add_option("--shards", shards, "Shards")->check(CLI::Range(1u, 1000000u));
  app.add_option("--replicas", replicas, "Replicas per shard")->check(CLI::Range(1u, 1000u));
  app.add_option("--keys", keys, "kvload's key space, for the shard weights (0: none)");
  app.add_option("--zipf", zipf, "Zipf exponent of the key draw; 0: uniform")
      ->check(CLI::Range(0.0, 10.0));
  // Rule 1 by default: what the clusters measured in bench/results ran.
  uint32_t rule = kv::kPlacementRuleRing;
  app.add_option("--rule", rule, "Placement rule (src/kv/ring.h): 1 ring, 2 even spread")
      ->capture_default_str()
      ->check(CLI::Range(kv::kPlacementRuleRing, kv::kNewestPlacementRule));
  auto* join_flag = app.add_flag("--join", join, "Also place after node N+1 joins");
  app.add_option("--leave", leave, "Also place after this node leaves")
      ->check(CLI::Range(1u, 100000u))
      ->excludes(join_flag);
  CLI11_PARSE(app, argc, argv);
  if (leave > nodes) {
    std::fprintf(stderr, "scaling_placement: --leave %u: no such node (1..%u)\n", leave, nodes);
    return 2;
  }

  kv::PlacementConfig config;
  config.shards = shards;
  config.replicas = replicas;
  config.rule = rule;
  std::vector<kv::NodeId> ids;
  for (uint32_t i = 1; i <= nodes; ++i) ids.push_back(i);
  const kv::Placement before = kv::Place(ids, config);

  std::printf("{\"nodes\":%u,\"shards\":%u,\"replicas\":%u,\"placement\":%s", nodes, shards,
              replicas, PlacementJson(before).c_str());
  if (keys > 0) {
    std::printf(",\"keys\":%llu,\"zipf\":%g,\"shard_weight\":[",
                static_cast<unsigned long long>(keys), zipf);
    const std::vector<double> w = ShardWeights(shards, keys, zipf);
    for (size_t i = 0; i < w.size(); ++i) std::printf("%s%.9g", i ? "," : "", w[i]);
    std::printf("]");
  }
  if (join || leave != 0) {
    std::vector<kv::NodeId> after_ids;
    for (kv::NodeId id : ids) {
      if (id != leave) after_ids.push_back(id);
    }
    if (join) after_ids.push_back(nodes + 1);
    const kv::Placement after = kv::Place(after_ids, config);
    std::printf(",\"after\":%s,\"moves\":[", PlacementJson(after).c_str());
    const std::vector<kv::ShardMove> moves = kv::PlacementMoves(before, after);
    for (size_t i = 0; i < moves.size(); ++i) {
      const kv::ShardMove& m = moves[i];
      std::printf(
          "%s{\"shard\":%u,\"added\":%s,\"removed\":%s,\"old_leader\":%llu,\"new_leader\":%llu}",
          i ? "," : "", m.shard, JsonList(m.added).c_str(), JsonList(m.removed).c_str(),
          static_cast<unsigned long long>(m.old_leader),
          static_cast<unsigned long long>(m.new_leader));
    }
    std::printf("]");
  }
  std::printf("}\n");
  return 0;
}
