// Expirer: the leader's side of key expiry. A key's deadline is in its
// record on every replica, and reads hide it once passed; the leader also
// removes expired keys from the log's point of view, so that followers and
// snapshots drop them: each tick, for every group it leads whose earliest
// deadline has passed, it asks the group's strand for the expired keys and
// proposes their removal as kExpire entries (each of up to kMaxKeysPerEntry
// keys and kMaxKeyBytesPerEntry of them: an entry must fit in any append a
// follower accepts; up to kMaxEntriesPerSearch at once, so that a burst of
// deadlines is gone within a tick or two), one search in flight per group.
// Thread safety: loop thread; the search runs on the group's strand.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "node/context.h"

namespace kv::node {

class Expirer {
 public:
  static constexpr size_t kMaxKeysPerEntry = 1000;
  static constexpr size_t kMaxKeyBytesPerEntry = 256 << 10;
  static constexpr size_t kMaxEntriesPerSearch = 8;

  explicit Expirer(NodeContext* ctx) : ctx_(ctx) {}

  // Starts g's next removal when one is due (loop thread, once a tick).
  void Tick(Group& g);

 private:
  // On the loop thread with what the strand found.
  // `generation`: the search's; an older one (leadership was lost and won
  // again meanwhile) proposes nothing.
  void Propose(raft::GroupId id, uint64_t generation, uint64_t now_ms,
               std::vector<std::string> keys);

  NodeContext* ctx_;
};

}  // namespace kv::node
