// Placement for sharding: which shard holds a key (ShardRing), which nodes
// hold each shard's replicas and which of them should lead it (Place), and
// what has to change to go from one placement to another (PlacementMoves).
//
// Everything here is a pure function of its arguments: no I/O, no clock, no
// randomness, and no dependence on the order of the input node list. Every
// node and client computes the same answer from the same inputs on any
// machine, so the hashes and byte encodings below are part of the on-disk and
// wire contract. Changing any of them moves keys between shards (their data
// would be in the wrong Raft group) or replicas between nodes (a migration of
// the whole cluster). Golden tests in test/kv/ring_test.cc pin them.
//
// The contract:
//  - HashTag(key): the part of the key that places it. When the key holds a
//    '{' followed later by a '}' with at least one byte between them, the
//    bytes between the first '{' and the first '}' after it (Redis
//    Cluster's hash tags: "{user:42}:name" and "{user:42}:email" share a
//    shard); otherwise the whole key.
//  - KeyHash(key) = XXH64(HashTag(key) bytes, seed 0), xxHash 0.8 (a frozen
//    spec).
//  - Point(tag, id, i) = XXH64 of 13 bytes, seed 0: the tag byte, id as 8
//    bytes little-endian, i as 4 bytes little-endian.
//  - Key ring: shard s has the points Point('S', s, i) for i < vnodes_per_shard.
//    A key belongs to the shard owning the first point at or after
//    KeyHash(key), wrapping past 2^64-1 to the smallest point.
//  - Node ring: node n has the points Point('N', n, i) for i < vnodes_per_node.
//    Shard s of S sits at position floor(s * 2^64 / S) (evenly spaced, which
//    balances better than hashed positions). Its replicas are the first R
//    distinct nodes owning points at or after that position, clockwise.
//  - On either ring, of two equal points the lower id comes first.
//
// Balance (replicas per node, R = 3, the default vnodes; see ring_test.cc):
//  - S = 4096, any N in 3..100: max/mean <= 1.25 and min/mean >= 0.75
//    (measured worst 1.164 and 0.822). With so many shards per node the
//    spread is the sampling noise of S shards on the ring, which more vnodes
//    do not reduce (512 vnodes: 1.160).
//  - Few shards per node (S = 16, the default, on 4..16 nodes): max <= 2 * mean
//    (measured worst 2.0 at N = 16: 6 replicas where the mean is 3). Leaders,
//    which carry most of the load, are balanced exactly regardless.
// Movement: a node joining or leaving changes only assignments to or from that
// node (no replica moves between two nodes that both stay), about R*S/N of
// them: within 1.25 * R*S/N for S = 4096 and N in 3..100.
//
// Thread safety: ShardRing is immutable after construction and may be shared;
// the functions are pure.
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

#include "raft/types.h"

namespace kv {

using NodeId = raft::NodeId;
// Shards are numbered 0..S-1, the index into Placement's vectors. They are not
// Raft group ids: group 1 is the node's default group and the metadata group
// needs one too, so the node maps shard s to a group id of its choosing
// (kFirstShardGroup + s).
using ShardId = uint32_t;

// Recorded in the cluster's metadata at creation and never changed after:
// each one moves keys or replicas.
constexpr uint32_t kDefaultShards = 16;
constexpr uint32_t kDefaultReplicas = 3;
constexpr uint32_t kDefaultShardVnodes = 256;
constexpr uint32_t kDefaultNodeVnodes = 256;

// The part of `key` that places it (its hash tag, see above), a view into it.
std::string_view HashTag(std::string_view key);
// The hash of a key that places it on the key ring: XXH64 with seed 0 of
// its HashTag.
uint64_t KeyHash(std::string_view key);

// Key to shard: a ring of S shards with virtual nodes. Keys spread over shards
// within max/mean 1.15 for S = 16 and 1.24 for S = 4096 at the default 256
// vnodes per shard. Memory: 12 bytes per point (S * vnodes_per_shard points).
class ShardRing {
 public:
  // REQUIRES: shards >= 1, vnodes_per_shard >= 1.
  explicit ShardRing(uint32_t shards, uint32_t vnodes_per_shard = kDefaultShardVnodes);

  ShardId ShardOf(std::string_view key) const { return ShardOfHash(KeyHash(key)); }
  // The shard owning the first point at or after `hash`.
  ShardId ShardOfHash(uint64_t hash) const;

  uint32_t shards() const { return shards_; }

 private:
  uint32_t shards_;
  std::vector<uint64_t> points_;  // ascending
  std::vector<ShardId> owners_;   // owners_[i] owns points_[i]
};

struct PlacementConfig {
  uint32_t shards = kDefaultShards;      // S
  uint32_t replicas = kDefaultReplicas;  // R; a shard gets min(R, node count)
  uint32_t vnodes_per_node = kDefaultNodeVnodes;
};

// Which nodes hold each shard and which of them should lead it.
struct Placement {
  // replicas[s]: shard s's replicas, distinct, in ring order from the shard's
  // position (the first is its primary).
  std::vector<std::vector<NodeId>> replicas;
  // leader[s]: shard s's preferred leader, one of replicas[s]; kNoNode when
  // there are no nodes.
  std::vector<NodeId> leader;

  uint32_t shards() const { return static_cast<uint32_t>(leader.size()); }
  bool operator==(const Placement& o) const { return replicas == o.replicas && leader == o.leader; }
  bool operator!=(const Placement& o) const { return !(*this == o); }
};

// Places config.shards shards on `nodes` (any order; duplicates count once).
// The replicas depend on the node set and config alone. Preferred leaders are
// balanced: each node leads floor(S/N) or ceil(S/N) shards whenever the
// replica sets allow it (with R >= 2 and several shards per node they do);
// otherwise the largest leader count is as small, and the smallest as large,
// as the replica sets allow. Without `previous` a shard prefers its
// primary; with `previous` (the placement in force) it prefers its previous
// leader while that is still a replica, so a membership change moves few
// leaderships (100 nodes and 4096 shards, one node joins: about 50 moves
// where about 180 without it and 41 at the least).
// REQUIRES: config.shards >= 1, config.replicas >= 1,
// config.vnodes_per_node >= 1, no node is kNoNode, and previous (if given)
// has config.shards shards.
Placement Place(const std::vector<NodeId>& nodes, const PlacementConfig& config,
                const Placement* previous = nullptr);

// What changes for one shard between two placements.
struct ShardMove {
  ShardId shard = 0;
  std::vector<NodeId> added;    // replicas in `to` but not in `from`, ascending
  std::vector<NodeId> removed;  // replicas in `from` but not in `to`, ascending
  NodeId old_leader = raft::kNoNode;
  NodeId new_leader = raft::kNoNode;

  bool operator==(const ShardMove& o) const {
    return shard == o.shard && added == o.added && removed == o.removed &&
           old_leader == o.old_leader && new_leader == o.new_leader;
  }
};

// The shards whose replica set or preferred leader differ, ascending by shard.
// A change of replica order alone is no move.
// REQUIRES: from.shards() == to.shards().
std::vector<ShardMove> PlacementMoves(const Placement& from, const Placement& to);

}  // namespace kv
