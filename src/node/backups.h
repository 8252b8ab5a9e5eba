// Backups: the shard states this node hands out to `kvctl snapshot save`
// (docs/protocol.md, "Backups").
//
// A backup starts as a linearizable read of its group: once the state
// machine has applied the leader's read index, the group's strand takes a
// view of it (the records are shared, not copied: kv/state_machine.h) and
// opens it here. The client then reads it a piece at a time, each request
// naming the cursor the previous piece gave, so a resent request gets the
// same piece again. A view keeps the records it saw alive, so a backup is
// dropped once the client asks past its last piece (the close: an empty
// last piece), or after kIdle without a request, and at most kMaxOpen are
// held at once (kMaxOpenPerGroup of a group).
// Thread safety: every method may be called from any thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <vector>

#include "common/status.h"
#include "kv/state_machine.h"
#include "net/client_codec.h"
#include "raft/types.h"

namespace kv::node {

class Backups {
 public:
  using Clock = std::chrono::steady_clock;
  static constexpr size_t kMaxOpen = 64;
  // Per group: a save and a resent start of it, or two saves at once.
  static constexpr size_t kMaxOpenPerGroup = 4;
  static constexpr Clock::duration kIdle = std::chrono::seconds(60);
  // The data of one piece (a piece holds whole keys, so a large value makes
  // a larger one).
  static constexpr size_t kPieceBytes = 1 << 20;

  // Keeps `view` of group `group` and fills the start's reply (its handle
  // and what the part is). Busy when kMaxOpen are open.
  Status Open(raft::GroupId group, StateView view, net::BackupReply* reply);
  // The group backup `id` reads, or NotFound (it ended, expired, or was
  // opened on another node or before a restart).
  Status GroupOf(uint64_t id, raft::GroupId* group) const;
  // The piece of backup `id` at `cursor`; asked past the last piece, an
  // empty last piece, and the backup is closed. InvalidArgument for a
  // cursor no piece gave.
  Status Piece(uint64_t id, uint64_t cursor, net::BackupReply* reply);
  // Closes backup `id` at its client's word (one that stops early) and
  // returns its view, for the caller to free where it likes; NotFound if
  // there is no such backup.
  Status Close(uint64_t id, std::shared_ptr<const StateView>* view);
  // Drops the backups nobody asked for a piece of since now - kIdle, and
  // returns their views: freeing one frees every record only it still
  // holds, which the caller may want to do on another thread.
  std::vector<std::shared_ptr<const StateView>> DropIdle(Clock::time_point now);
  size_t open() const;

 private:
  struct Held {
    raft::GroupId group = 0;
    std::shared_ptr<const StateView> view;
    Clock::time_point used;
  };

  mutable std::mutex mu_;
  std::map<uint64_t, Held> held_;                // guarded by mu_
  std::mt19937_64 rng_{std::random_device{}()};  // guarded by mu_
};

}  // namespace kv::node
