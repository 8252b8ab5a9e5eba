#include "node/expirer.h"

#include <utility>

#include "kv/command.h"

namespace kv::node {

void Expirer::Tick(Group& g) {
  if (!g.is_leader()) {
    // A removal proposed in an older term commits or not; either is fine.
    g.expiring = false;
    return;
  }
  const ApplyProgress progress = g.progress();
  if (g.expiring) {
    // Done once applied: the next search sees the state after it.
    if (g.expire_index == 0 || progress.applied < g.expire_index) return;
    g.expiring = false;
  }
  const uint64_t now = WallClockMs();
  if (progress.next_deadline == 0 || progress.next_deadline > now) return;
  g.expiring = true;
  g.expire_index = 0;
  const uint64_t generation = ++g.expire_generation;
  const raft::GroupId id = g.id;
  ctx_->workers->Post(id, [this, &g, id, generation, now] {
    std::vector<std::string> keys = g.sm.ExpiredKeys(now, kMaxKeysPerEntry * kMaxEntriesPerSearch,
                                                     kMaxKeyBytesPerEntry * kMaxEntriesPerSearch);
    ctx_->loop->Post([this, id, generation, now, keys = std::move(keys)]() mutable {
      Propose(id, generation, now, std::move(keys));
    });
  });
}

void Expirer::Propose(raft::GroupId id, uint64_t generation, uint64_t now_ms,
                      std::vector<std::string> keys) {
  Group* g = ctx_->groups.Find(id);
  if (g == nullptr || !g->expiring || g->expire_generation != generation) return;
  if (keys.empty() || !g->is_leader()) {
    g->expiring = false;
    return;
  }
  // In entries of at most kMaxKeysPerEntry keys and kMaxKeyBytesPerEntry.
  size_t next = 0;
  while (next < keys.size()) {
    Command cmd;
    cmd.op = OpType::kExpire;
    cmd.now_ms = now_ms;
    size_t bytes = 0;
    while (next < keys.size() && cmd.keys.size() < kMaxKeysPerEntry &&
           (cmd.keys.empty() || bytes + keys[next].size() <= kMaxKeyBytesPerEntry)) {
      bytes += keys[next].size();
      cmd.keys.push_back(std::move(keys[next++]));
    }
    raft::Index index = 0;
    raft::Term term = 0;
    // Busy (the log is full), a transfer under way, or no longer the
    // leader: the next tick tries again for what is left.
    if (!g->Propose(cmd.Encode(), &index, &term).ok()) break;
    g->expire_index = index;
  }
  if (g->expire_index == 0) g->expiring = false;
}

}  // namespace kv::node
