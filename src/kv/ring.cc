#include "kv/ring.h"

#include <xxhash.h>

#include <algorithm>
#include <iterator>
#include <utility>

#include "common/logging.h"

namespace kv {

namespace {
// Part of the contract (see ring.h): the seed and the point encoding.
constexpr XXH64_hash_t kSeed = 0;
constexpr uint8_t kShardTag = 'S';
constexpr uint8_t kNodeTag = 'N';

uint64_t Point(uint8_t tag, uint64_t id, uint32_t index) {
  unsigned char buf[13];
  buf[0] = tag;
  for (int i = 0; i < 8; ++i) buf[1 + i] = static_cast<unsigned char>(id >> (8 * i));
  for (int i = 0; i < 4; ++i) buf[9 + i] = static_cast<unsigned char>(index >> (8 * i));
  return XXH64(buf, sizeof(buf), kSeed);
}

// floor(shard * 2^64 / shards), exactly.
uint64_t ShardPosition(ShardId shard, uint32_t shards) {
  return static_cast<uint64_t>((static_cast<unsigned __int128>(shard) << 64) / shards);
}

constexpr uint32_t kNone = ~uint32_t{0};

// Moves leaderships until no node could give one, along a chain of shards, to
// a node leading at least two fewer. Such a chain is a "cost-reducing path";
// without one the loads are as even as the replica sets allow (Harvey et al.,
// "Semi-matchings for bipartite graphs and load balancing", 2006), so the
// spread is at most one whenever a spread of one is possible.
//
// Nodes are indexes 0..node_count-1; hosted[v] lists the shards v holds a
// replica of, ascending; (*leader)[s] must be one of shard s's replicas.
// Each round is a breadth-first search backwards from the nodes leading at
// most t, so the chains found are shortest and few leaderships move. Every
// move lowers the sum of squared loads, so the loop ends.
void BalanceLeaders(const std::vector<std::vector<ShardId>>& hosted,
                    std::vector<uint32_t>* leader) {
  const size_t n = hosted.size();
  std::vector<uint32_t> load(n, 0);
  for (uint32_t l : *leader) ++load[l];

  std::vector<ShardId> via_shard(n);
  std::vector<uint32_t> via_node(n);
  std::vector<bool> seen(n);
  std::vector<uint32_t> queue;
  queue.reserve(n);
  for (;;) {
    const auto [lo, hi] = std::minmax_element(load.begin(), load.end());
    const uint32_t min_load = *lo;
    const uint32_t max_load = *hi;
    bool moved = false;
    for (uint32_t t = min_load; !moved && t + 2 <= max_load; ++t) {
      queue.clear();
      std::fill(seen.begin(), seen.end(), false);
      std::fill(via_node.begin(), via_node.end(), kNone);
      for (uint32_t v = 0; v < n; ++v) {
        if (load[v] <= t) {
          seen[v] = true;
          queue.push_back(v);
        }
      }
      for (size_t q = 0; !moved && q < queue.size(); ++q) {
        const uint32_t x = queue[q];
        for (ShardId s : hosted[x]) {
          // y leads s and x holds a replica: y can hand s over to x.
          const uint32_t y = (*leader)[s];
          if (seen[y]) continue;
          seen[y] = true;
          via_shard[y] = s;
          via_node[y] = x;
          if (load[y] >= t + 2) {
            --load[y];
            uint32_t z = y;
            for (; via_node[z] != kNone; z = via_node[z]) (*leader)[via_shard[z]] = via_node[z];
            ++load[z];
            moved = true;
            break;
          }
          queue.push_back(y);
        }
      }
    }
    if (!moved) return;
  }
}
}  // namespace

std::string_view HashTag(std::string_view key) {
  const size_t open = key.find('{');
  if (open == std::string_view::npos) return key;
  const size_t close = key.find('}', open + 1);
  if (close == std::string_view::npos || close == open + 1) return key;
  return key.substr(open + 1, close - open - 1);
}

uint64_t KeyHash(std::string_view key) {
  const std::string_view placed = HashTag(key);
  return XXH64(placed.data(), placed.size(), kSeed);
}

ShardRing::ShardRing(uint32_t shards, uint32_t vnodes_per_shard) : shards_(shards) {
  KV_CHECK(shards >= 1 && vnodes_per_shard >= 1) << shards << " shards, " << vnodes_per_shard;
  std::vector<std::pair<uint64_t, ShardId>> points;
  points.reserve(static_cast<size_t>(shards) * vnodes_per_shard);
  for (ShardId s = 0; s < shards; ++s) {
    for (uint32_t i = 0; i < vnodes_per_shard; ++i) points.emplace_back(Point(kShardTag, s, i), s);
  }
  std::sort(points.begin(), points.end());
  points_.reserve(points.size());
  owners_.reserve(points.size());
  for (const auto& [point, shard] : points) {
    points_.push_back(point);
    owners_.push_back(shard);
  }
}

ShardId ShardRing::ShardOfHash(uint64_t hash) const {
  const auto it = std::lower_bound(points_.begin(), points_.end(), hash);
  return it == points_.end() ? owners_.front() : owners_[it - points_.begin()];
}

Placement Place(const std::vector<NodeId>& node_list, const PlacementConfig& config,
                const Placement* previous) {
  KV_CHECK(config.shards >= 1 && config.replicas >= 1 && config.vnodes_per_node >= 1)
      << config.shards << " shards, " << config.replicas << " replicas, " << config.vnodes_per_node
      << " vnodes";
  KV_CHECK(previous == nullptr || previous->shards() == config.shards)
      << "previous placement has " << previous->shards() << " shards";
  std::vector<NodeId> nodes = node_list;
  std::sort(nodes.begin(), nodes.end());
  nodes.erase(std::unique(nodes.begin(), nodes.end()), nodes.end());
  KV_CHECK(nodes.empty() || nodes.front() != raft::kNoNode) << "node id 0";

  const uint32_t shards = config.shards;
  Placement out;
  out.replicas.resize(shards);
  out.leader.assign(shards, raft::kNoNode);
  if (nodes.empty()) return out;

  // The node ring, with nodes as indexes into the sorted `nodes` so that equal
  // points order by node id.
  std::vector<std::pair<uint64_t, uint32_t>> ring;
  ring.reserve(nodes.size() * config.vnodes_per_node);
  for (uint32_t v = 0; v < nodes.size(); ++v) {
    for (uint32_t i = 0; i < config.vnodes_per_node; ++i) {
      ring.emplace_back(Point(kNodeTag, nodes[v], i), v);
    }
  }
  std::sort(ring.begin(), ring.end());

  const size_t r = std::min<size_t>(config.replicas, nodes.size());
  std::vector<std::vector<uint32_t>> replicas(shards);
  std::vector<std::vector<ShardId>> hosted(nodes.size());
  for (ShardId s = 0; s < shards; ++s) {
    auto it =
        std::lower_bound(ring.begin(), ring.end(), std::make_pair(ShardPosition(s, shards), 0u));
    std::vector<uint32_t>& reps = replicas[s];
    reps.reserve(r);
    while (reps.size() < r) {
      if (it == ring.end()) it = ring.begin();
      const uint32_t v = (it++)->second;
      if (std::find(reps.begin(), reps.end(), v) == reps.end()) {
        reps.push_back(v);
        hosted[v].push_back(s);
      }
    }
  }

  std::vector<uint32_t> leader(shards);
  for (ShardId s = 0; s < shards; ++s) {
    leader[s] = replicas[s].front();
    if (previous == nullptr) continue;
    for (uint32_t v : replicas[s]) {
      if (nodes[v] == previous->leader[s]) leader[s] = v;
    }
  }
  BalanceLeaders(hosted, &leader);

  for (ShardId s = 0; s < shards; ++s) {
    out.replicas[s].reserve(r);
    for (uint32_t v : replicas[s]) out.replicas[s].push_back(nodes[v]);
    out.leader[s] = nodes[leader[s]];
  }
  return out;
}

std::vector<ShardMove> PlacementMoves(const Placement& from, const Placement& to) {
  KV_CHECK(from.shards() == to.shards()) << from.shards() << " shards vs " << to.shards();
  std::vector<ShardMove> moves;
  for (ShardId s = 0; s < from.shards(); ++s) {
    std::vector<NodeId> a = from.replicas[s];
    std::vector<NodeId> b = to.replicas[s];
    std::sort(a.begin(), a.end());
    std::sort(b.begin(), b.end());
    if (a == b && from.leader[s] == to.leader[s]) continue;
    ShardMove m;
    m.shard = s;
    std::set_difference(b.begin(), b.end(), a.begin(), a.end(), std::back_inserter(m.added));
    std::set_difference(a.begin(), a.end(), b.begin(), b.end(), std::back_inserter(m.removed));
    m.old_leader = from.leader[s];
    m.new_leader = to.leader[s];
    moves.push_back(std::move(m));
  }
  return moves;
}

}  // namespace kv
