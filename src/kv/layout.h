// Layout: the one place for the numbers every part of a cluster must agree
// on: which Raft group holds what, which port serves what, where the default
// local cluster listens, and the default request limits.
//
// Groups: group kMainGroup (1) is the only group of an unsharded cluster; in a
// sharded one it is the metadata group (membership and the shard map), on the
// first kMetaVoters founding members, and shard s is group kFirstShardGroup + s.
// Ports: a node serves clients on its client port P, Raft on P +
// kRaftPortOffset, its event stream (PUB) on P + kEventsPortOffset and, by
// default, its metrics and health checks (HTTP) on P + kMetricsPortOffset
// (docs/protocol.md), so that an address host:P tells every port.
// Thread safety: constants and pure functions.
#pragma once

#include <cstddef>
#include <cstdint>

namespace kv {

constexpr uint64_t kMainGroup = 1;
constexpr uint64_t kFirstShardGroup = 2;
// The metadata group's voters: the first (up to) this many members by id.
constexpr size_t kMetaVoters = 5;

// The Raft group that holds shard `shard`.
constexpr uint64_t ShardGroup(uint32_t shard) { return kFirstShardGroup + shard; }

// The shard `group` holds in a cluster of `shards` shards, or -1 when it holds
// none (the main group, or a group id out of range; always -1 when shards is 0).
constexpr int ShardOfGroup(uint64_t group, uint32_t shards) {
  return group >= kFirstShardGroup && group - kFirstShardGroup < shards
             ? static_cast<int>(group - kFirstShardGroup)
             : -1;
}

static_assert(ShardOfGroup(ShardGroup(0), 1) == 0 && ShardOfGroup(ShardGroup(1), 1) == -1 &&
              ShardOfGroup(kMainGroup, 8) == -1 && ShardOfGroup(ShardGroup(3), 0) == -1);

constexpr int kRaftPortOffset = 1000;
constexpr int kEventsPortOffset = 2000;
constexpr int kMetricsPortOffset = 3000;  // HTTP: /metrics, /healthz, /readyz

// The default local cluster: nodes 1..kDefaultNodes on 127.0.0.1, client
// ports kDefaultFirstPort, kDefaultFirstPort + 1, ...
constexpr const char* kDefaultHost = "127.0.0.1";
constexpr int kDefaultFirstPort = 8080;
constexpr int kDefaultNodes = 3;
// The same as text: "host:port,..." and "id=host:port,..." (for flags' defaults).
constexpr const char* kDefaultEndpoints = "127.0.0.1:8080,127.0.0.1:8081,127.0.0.1:8082";
constexpr const char* kDefaultPeers = "1=127.0.0.1:8080,2=127.0.0.1:8081,3=127.0.0.1:8082";

// Default request limits: what a node accepts, and what clients may send.
constexpr size_t kDefaultMaxKeyBytes = 4 << 10;
constexpr size_t kDefaultMaxValueBytes = 1 << 20;
// The longest TTL a write may ask for: ten years, in ms.
constexpr uint64_t kMaxTtlMs = 10ULL * 365 * 24 * 3600 * 1000;

}  // namespace kv
