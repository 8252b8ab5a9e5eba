// NodeStatus: what a node reports of itself and its Raft groups, in answer
// to "op": "status"; ShardMap: a sharded cluster's map, in answer to
// "op": "shards" (docs/protocol.md). Shared by the node, the client library
// and the tools.
// Thread safety: a plain value.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace kv {

// One Raft group hosted by a node.
struct GroupStatus {
  uint64_t group = 0;
  int64_t shard = -1;  // the shard the group holds; -1: the metadata group
  std::string role;
  uint64_t term = 0;
  uint64_t leader = 0;  // 0 when unknown
  uint64_t commit = 0;
  uint64_t applied = 0;
  uint64_t last_index = 0;
  uint64_t snapshot_index = 0;
  uint64_t digest = 0;
  uint64_t keys = 0;
  std::vector<uint64_t> voters;
  std::vector<uint64_t> learners;
};

// The fields up to `learners` describe the node's main group: the only group
// of an unsharded cluster, or the metadata group of a sharded one (the first
// shard group hosted when the node is not in the metadata group).
struct NodeStatus {
  uint64_t node = 0;
  std::string role;  // follower, pre-candidate, candidate, leader
  uint64_t term = 0;
  uint64_t leader = 0;  // 0 when unknown
  std::string leader_address;
  uint64_t commit = 0;
  uint64_t applied = 0;
  uint64_t last_index = 0;
  uint64_t snapshot_index = 0;
  uint64_t event_seq = 0;  // the last event published; join the PUB stream after it
  uint64_t digest = 0;     // the state machine's digest at `applied`
  uint64_t keys = 0;
  std::map<uint64_t, std::string> members;  // id -> client address
  // Secure clusters: id -> the member's CURVE public key (Z85), for those
  // whose key this node knows.
  std::map<uint64_t, std::string> member_keys;
  std::vector<uint64_t> voters;
  std::vector<uint64_t> learners;
  uint32_t shards = 0;              // the cluster's shard count; 0: unsharded
  std::vector<GroupStatus> groups;  // sharded clusters: every group hosted here
};

// Where one shard lives.
struct ShardInfo {
  uint32_t shard = 0;
  uint64_t group = 0;              // its Raft group id
  std::vector<uint64_t> replicas;  // node ids
  uint64_t leader = 0;             // 0 when unknown to the answering node
  std::string leader_address;      // empty when unknown
};

struct ShardMap {
  uint64_t version = 0;   // grows with every change of placement
  uint32_t shards = 0;    // 0: the cluster is not sharded (one group holds every key)
  uint32_t replicas = 0;  // replicas per shard
  // The rule placing replicas on nodes (1 or 2; see docs/protocol.md); 0: a
  // node that predates rules (it places by rule 1), or not sharded.
  uint32_t placement = 0;
  std::map<uint64_t, std::string> members;      // node id -> client address
  std::map<uint64_t, std::string> member_keys;  // secure clusters: id -> CURVE public key
  std::vector<ShardInfo> list;                  // by shard id, 0..shards-1
};

}  // namespace kv
