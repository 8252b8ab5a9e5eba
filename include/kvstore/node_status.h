// NodeStatus: what a node reports of itself and its Raft group, in answer to
// "op": "status" (docs/protocol.md). Shared by the node, the client library
// and the tools.
// Thread safety: a plain value.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace kv {

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
  std::vector<uint64_t> voters;
  std::vector<uint64_t> learners;
};

}  // namespace kv
