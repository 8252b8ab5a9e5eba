#include "kv/ring.h"

#include <xxhash.h>

#include <algorithm>
#include <iterator>
#include <numeric>
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

// Clockwise from `from` to the first of `points` (ascending, not empty) at
// or after it, wrapping past 2^64-1.
uint64_t Distance(const std::vector<uint64_t>& points, uint64_t from) {
  const auto it = std::lower_bound(points.begin(), points.end(), from);
  return (it == points.end() ? points.front() : *it) - from;
}

// A node's shards nearest first: ascending Distance from each shard's
// position to the node's points, ties by shard id. Each point is nearest for
// the shards after the node's previous point, and those are evenly spaced, so
// a run per point walks them backwards and a heap merges the runs: no
// per-node list of all S shards.
class NearestShards {
 public:
  NearestShards(const std::vector<uint64_t>& points, uint32_t shards) : shards_(shards) {
    // How many shard positions are at or before q.
    auto count = [shards](uint64_t q) {
      auto c = static_cast<uint32_t>((static_cast<unsigned __int128>(q) * shards) >> 64) + 1;
      if (c < shards && ShardPosition(c, shards) <= q) ++c;
      return c;
    };
    uint32_t before = count(points.back());  // the last point's, for the wrap
    for (size_t i = 0; i < points.size(); ++i) {
      const uint64_t q = points[i];
      const uint32_t upto = count(q);
      // From upto-1 down to `before`, wrapping below 0 for the first point.
      const uint32_t n = i > 0 ? upto - before : upto + shards - before;
      if (n > 0) heap_.push_back(Run{q - ShardPosition(upto - 1, shards), upto - 1, q, n});
      before = upto;
    }
    std::sort(heap_.begin(), heap_.end(), Before);  // ascending: a heap
  }

  // The next nearest shard; false once every shard was given.
  bool Next(ShardId* shard, uint64_t* distance) {
    if (heap_.empty()) return false;
    Run& run = heap_.front();
    *shard = run.shard;
    *distance = run.distance;
    if (--run.left > 0) {
      run.shard = run.shard == 0 ? shards_ - 1 : run.shard - 1;
      run.distance = run.point - ShardPosition(run.shard, shards_);
    } else {
      run = heap_.back();
      heap_.pop_back();
    }
    // The front may now be after its children: move it down.
    for (size_t i = 0, c = 1; c < heap_.size(); i = c, c = 2 * c + 1) {
      if (c + 1 < heap_.size() && Before(heap_[c + 1], heap_[c])) ++c;
      if (!Before(heap_[c], heap_[i])) break;
      std::swap(heap_[i], heap_[c]);
    }
    return true;
  }

 private:
  struct Run {
    uint64_t distance;  // of `shard`, the run's nearest shard not yet given
    ShardId shard;
    uint64_t point;
    uint32_t left;
  };
  static bool Before(const Run& a, const Run& b) {
    return a.distance != b.distance ? a.distance < b.distance : a.shard < b.shard;
  }

  uint32_t shards_;
  std::vector<Run> heap_;  // a binary min-heap
};

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

// The bounds of ring.h on replicas per node.
struct Bounds {
  uint64_t most = 0, least = 0;
};
Bounds BoundsOf(uint32_t nodes, uint32_t shards, uint32_t r) {
  const uint64_t n = nodes;
  const uint64_t total = uint64_t{r} * shards;
  const uint64_t floor_mean = total / n;
  const uint64_t ceil_mean = (total + n - 1) / n;
  Bounds b;
  b.most = 4 * n > total ? ceil_mean + 1 : 5 * total / (4 * n);
  b.least = floor_mean == 0 ? 0 : std::min((3 * total + 4 * n - 1) / (4 * n), floor_mean - 1);
  return b;
}

// The replica sets of ring.h's steps 1 to 3, unordered; nodes are indexes
// into `points` (each node's points, ascending).
std::vector<std::vector<uint32_t>> PlaceReplicas(const std::vector<std::vector<uint64_t>>& points,
                                                 uint32_t shards, uint32_t r) {
  const uint32_t n = static_cast<uint32_t>(points.size());
  const Bounds bounds = BoundsOf(n, shards, r);
  std::vector<std::vector<uint32_t>> replicas(shards);
  std::vector<uint64_t> load(n, 0);
  auto holds = [&](ShardId s, uint32_t v) {
    return std::find(replicas[s].begin(), replicas[s].end(), v) != replicas[s].end();
  };
  auto add = [&](ShardId s, uint32_t v) {
    replicas[s].push_back(v);
    ++load[v];
  };
  auto move = [&](ShardId s, uint32_t from, uint32_t to) {
    *std::find(replicas[s].begin(), replicas[s].end(), from) = to;
    --load[from];
    ++load[to];
  };

  // 1. The draft. Every node asks once a round, so nodes whose points happen
  // to lie near many shards (the ring's noise) fill up no faster than
  // others. A node's order of shards depends on its own points alone, so a
  // node joining or leaving changes only the asks it wins or loses and those
  // these displace.
  std::vector<NearestShards> nearest;
  nearest.reserve(n);
  for (uint32_t v = 0; v < n; ++v) nearest.emplace_back(points[v], shards);
  struct Ask {
    uint64_t distance;
    uint32_t node;
    ShardId shard;
    bool operator<(const Ask& o) const {
      return distance != o.distance ? distance < o.distance : node < o.node;
    }
  };
  std::vector<uint32_t> asking(n);
  std::iota(asking.begin(), asking.end(), 0u);
  std::vector<Ask> asks;
  for (uint32_t full = 0; full < shards && !asking.empty();) {
    asks.clear();
    for (uint32_t v : asking) {
      Ask a{0, v, 0};
      if (nearest[v].Next(&a.shard, &a.distance)) asks.push_back(a);
    }
    std::sort(asks.begin(), asks.end());
    asking.clear();
    for (const Ask& a : asks) {
      if (replicas[a.shard].size() < r) {
        add(a.shard, a.node);
        full += replicas[a.shard].size() == r;
      }
      if (load[a.node] < bounds.most) asking.push_back(a.node);
    }
  }

  // 2. Rare (few nodes, R near N): a shard left short, every node that lacks
  // it full.
  for (ShardId s = 0; s < shards; ++s) {
    while (replicas[s].size() < r) {
      uint32_t best = kNone;
      for (uint32_t v = 0; v < n; ++v) {
        if (!holds(s, v) && (best == kNone || load[v] < load[best])) best = v;
      }
      add(s, best);
    }
  }
  for (;;) {
    const auto hi =
        static_cast<uint32_t>(std::max_element(load.begin(), load.end()) - load.begin());
    const auto lo =
        static_cast<uint32_t>(std::min_element(load.begin(), load.end()) - load.begin());
    if (load[hi] <= bounds.most) break;
    // most >= the mean rounded up, so hi holds more than lo: one lo lacks.
    ShardId s = 0;
    while (!holds(s, hi) || holds(s, lo)) ++s;
    move(s, hi, lo);
  }

  // 3. The floor, fixed locally as the draft is: a node takes its nearest
  // shard it can without taking another node below `least`, from the
  // farthest replica it can. The most loaded node is above `least` (which is
  // below the mean) and holds more shards than the short one, so there is
  // always such a shard.
  for (bool moved = true; moved;) {
    moved = false;
    for (uint32_t v = 0; v < n; ++v) {
      if (load[v] >= bounds.least) continue;
      NearestShards near(points[v], shards);
      ShardId s = 0;
      uint64_t unused = 0;
      uint32_t from = kNone;
      while (from == kNone && near.Next(&s, &unused)) {
        if (holds(s, v)) continue;
        uint64_t far = 0;
        for (uint32_t w : replicas[s]) {
          const uint64_t d = Distance(points[w], ShardPosition(s, shards));
          if (load[w] > bounds.least && (from == kNone || d > far || (d == far && w < from))) {
            from = w;
            far = d;
          }
        }
      }
      KV_CHECK(from != kNone) << "no shard to raise a node to " << bounds.least;
      move(s, from, v);
      moved = true;
    }
  }
  return replicas;
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

Placement Place(const std::vector<NodeId>& node_list, const PlacementConfig& config) {
  KV_CHECK(config.shards >= 1 && config.replicas >= 1 && config.vnodes_per_node >= 1)
      << config.shards << " shards, " << config.replicas << " replicas, " << config.vnodes_per_node
      << " vnodes";
  KV_CHECK(config.rule == kPlacementRuleRing || config.rule == kPlacementRuleDraft)
      << "placement rule " << config.rule;
  std::vector<NodeId> nodes = node_list;
  std::sort(nodes.begin(), nodes.end());
  nodes.erase(std::unique(nodes.begin(), nodes.end()), nodes.end());
  KV_CHECK(nodes.empty() || nodes.front() != raft::kNoNode) << "node id 0";

  const uint32_t shards = config.shards;
  Placement out;
  out.replicas.resize(shards);
  out.leader.assign(shards, raft::kNoNode);
  if (nodes.empty()) return out;

  // Nodes are indexes into the sorted `nodes`: of two equal points the lower
  // id comes first.
  const uint32_t n = static_cast<uint32_t>(nodes.size());
  std::vector<std::vector<uint64_t>> points(n);
  for (uint32_t v = 0; v < n; ++v) {
    points[v].reserve(config.vnodes_per_node);
    for (uint32_t i = 0; i < config.vnodes_per_node; ++i) {
      points[v].push_back(Point(kNodeTag, nodes[v], i));
    }
    std::sort(points[v].begin(), points[v].end());
  }
  const uint32_t r = std::min<uint32_t>(config.replicas, n);
  // Rule 1 takes the r nodes nearest each shard (the first r distinct nodes
  // clockwise); rule 2 drafts them. Either way a shard lists its replicas
  // nearest first, in ring order from its position.
  std::vector<std::vector<uint32_t>> replicas;
  if (config.rule == kPlacementRuleDraft) replicas = PlaceReplicas(points, shards, r);
  std::vector<std::vector<ShardId>> hosted(n);
  std::vector<std::pair<uint64_t, uint32_t>> order;
  for (ShardId s = 0; s < shards; ++s) {
    const uint64_t position = ShardPosition(s, shards);
    order.clear();
    if (config.rule == kPlacementRuleDraft) {
      for (uint32_t v : replicas[s]) order.emplace_back(Distance(points[v], position), v);
    } else {
      for (uint32_t v = 0; v < n; ++v) order.emplace_back(Distance(points[v], position), v);
      replicas.emplace_back(r);
    }
    std::partial_sort(order.begin(), order.begin() + r, order.end());
    for (uint32_t i = 0; i < r; ++i) {
      replicas[s][i] = order[i].second;
      hosted[order[i].second].push_back(s);
    }
  }

  // Leaders: each shard's primary, then balanced (no history: see ring.h).
  std::vector<uint32_t> leader(shards);
  for (ShardId s = 0; s < shards; ++s) leader[s] = replicas[s].front();
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
