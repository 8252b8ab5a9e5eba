// ShardRoutes: where a shard-aware client sends each key. It holds the ring
// of the last shard map installed and each shard's leader as last learned,
// from the map or from a REDIRECT, as the index of an endpoint in the
// client's own list (-1: unknown). Not sharded (no map, or a map of 0
// shards): every key goes wherever the client sends everything.
// Thread safety: none; a plain value owned by one client.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "kv/ring.h"
#include "kvstore/node_status.h"

namespace kv::client {

class ShardRoutes {
 public:
  bool sharded() const { return ring_.has_value(); }
  uint32_t shards() const { return static_cast<uint32_t>(leaders_.size()); }
  // The version of the map installed last; 0 before any.
  uint64_t version() const { return version_; }

  // REQUIRES: sharded().
  uint32_t ShardOf(std::string_view key) const { return ring_->ShardOf(key); }

  // The leader of `shard`, -1 when unknown or not a shard of the map.
  int leader(int64_t shard) const {
    return shard >= 0 && static_cast<uint64_t>(shard) < leaders_.size() ? leaders_[shard] : -1;
  }
  // Records (or with -1, forgets) the leader of `shard`; ignored for a shard
  // the map does not have.
  void SetLeader(int64_t shard, int endpoint) {
    if (shard >= 0 && static_cast<uint64_t>(shard) < leaders_.size()) leaders_[shard] = endpoint;
  }
  // Forgets `endpoint` as the leader of every shard (it did not answer).
  void Forget(int endpoint) {
    for (int& l : leaders_) {
      if (l == endpoint) l = -1;
    }
  }

  // Takes `map`: each shard's leader as the map says, given as an endpoint
  // index by index_of(address). Where the map does not know a shard's
  // leader but one was learned under the same shard count, keeps that.
  template <typename IndexOf>
  void Install(const ShardMap& map, IndexOf index_of) {
    version_ = map.version;
    std::vector<int> leaders(map.shards, -1);
    for (const ShardInfo& info : map.list) {
      if (info.shard >= map.shards) continue;
      if (!info.leader_address.empty()) {
        leaders[info.shard] = index_of(info.leader_address);
      } else if (leaders.size() == leaders_.size()) {
        leaders[info.shard] = leaders_[info.shard];
      }
    }
    leaders_ = std::move(leaders);
    if (map.shards == 0) {
      ring_.reset();
    } else if (!ring_ || ring_->shards() != map.shards) {
      ring_.emplace(map.shards);  // S x 256 points: built only when S changes
    }
  }

 private:
  std::optional<ShardRing> ring_;
  std::vector<int> leaders_;  // by shard: an endpoint index, -1 unknown
  uint64_t version_ = 0;
};

}  // namespace kv::client
