// Events: what a node publishes on its event stream (PUB port, see
// docs/protocol.md "Event stream v1"), one value type per topic. Every event
// carries the publishing node's id and its per-node sequence number; the
// node's Raft events name their group. Shared by the node (net/events.h
// encodes and decodes them) and the client library (kvstore/subscriber.h
// delivers them).
// Thread safety: plain values.
#pragma once

#include <cstdint>
#include <string>
#include <variant>

namespace kv {

// Topic "role": the node's role in a group, or its idea of the leader, changed.
struct RoleEvent {
  uint64_t node = 0;
  uint64_t seq = 0;
  uint64_t group = 0;
  std::string role;  // follower, pre-candidate, candidate, leader
  uint64_t term = 0;
  uint64_t leader = 0;  // 0: none known
};

// Topic "commit": a group's commit index moved (at most once per tick).
struct CommitEvent {
  uint64_t node = 0;
  uint64_t seq = 0;
  uint64_t group = 0;
  uint64_t term = 0;
  uint64_t commit = 0;
  uint64_t applied = 0;
};

// Topic "snapshot": a snapshot was taken locally or installed from the leader.
struct SnapshotEvent {
  uint64_t node = 0;
  uint64_t seq = 0;
  uint64_t group = 0;
  bool installed = false;  // the "event" field: "installed", else "taken"
  uint64_t index = 0;
  uint64_t term = 0;  // installed only (not sent for "taken")
};

// Topic "membership": a configuration change of a group was applied, or
// (change "left") this node learned it is no longer a replica of the group;
// a "left" event carries only group, change and member.
struct MembershipEvent {
  uint64_t node = 0;
  uint64_t seq = 0;
  uint64_t group = 0;
  uint64_t index = 0;
  std::string change;  // "add-learner", "add-voter", "remove" or "left"
  uint64_t member = 0;
  uint64_t voters = 0;    // the number of voters after the change
  uint64_t learners = 0;  // the number of learners after it
};

// Topic "shards": the node installed a new version of the shard map.
struct ShardsEvent {
  uint64_t node = 0;
  uint64_t seq = 0;
  uint64_t version = 0;
  uint64_t members = 0;  // the number of cluster members in it
};

// Topic "kv.put": a put, or a cas that succeeded, was applied.
struct PutEvent {
  uint64_t node = 0;
  uint64_t seq = 0;
  std::string key;  // bytes (msgpack bin)
  uint64_t index = 0;
  uint64_t size = 0;  // the value's length
};

// Topic "kv.del": a del of an existing key was applied.
struct DeleteEvent {
  uint64_t node = 0;
  uint64_t seq = 0;
  std::string key;
  uint64_t index = 0;
  uint64_t size = 0;  // always 0
};

// Topic "kv.expire": a key was removed because its deadline had passed
// (docs/protocol.md, "Expiry").
struct ExpireEvent {
  uint64_t node = 0;
  uint64_t seq = 0;
  std::string key;
  uint64_t index = 0;  // the entry that removed it
  uint64_t size = 0;   // always 0
};

using Event = std::variant<RoleEvent, CommitEvent, SnapshotEvent, MembershipEvent, ShardsEvent,
                           PutEvent, DeleteEvent, ExpireEvent>;

// The topic an event is published under: "role", "commit", ..., "kv.expire".
const char* EventTopic(const Event& event);
// The publishing node's id and its sequence number of the event.
uint64_t EventNode(const Event& event);
uint64_t EventSeq(const Event& event);

}  // namespace kv
