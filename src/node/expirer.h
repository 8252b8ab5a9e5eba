// Expirer: the leader's side of key expiry. A key's deadline is in its
// record on every replica, and reads hide it once passed; the leader also
// removes expired keys from the log's point of view, so that followers and
// snapshots drop them: each tick, for every group it leads whose earliest
// deadline has passed, it asks the group's strand for the expired keys and
// proposes their removal as one kExpire entry (up to kMaxKeysPerEntry keys),
// one such entry in flight per group.
// Thread safety: loop thread; the search runs on the group's strand.
#pragma once

#include <cstddef>

#include "node/context.h"

namespace kv::node {

class Expirer {
 public:
  static constexpr size_t kMaxKeysPerEntry = 1000;

  explicit Expirer(NodeContext* ctx) : ctx_(ctx) {}

  // Starts g's next removal when one is due (loop thread, once a tick).
  void Tick(Group& g);

 private:
  // On the loop thread with what the strand found.
  void Propose(raft::GroupId id, uint64_t now_ms, std::vector<std::string> keys);

  NodeContext* ctx_;
};

}  // namespace kv::node
