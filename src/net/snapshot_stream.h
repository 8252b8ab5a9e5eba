// Snapshot streaming: a leader sends InstallSnapshot in chunks over a
// connection of its own, so that heartbeats and appends never wait behind a
// large snapshot; the follower reassembles the chunks into one message.
// Thread safety: none; both live on the node's loop thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <string>

#include "common/status.h"
#include "net/peer_codec.h"
#include "raft/types.h"

namespace kv::net {

class SnapshotSender {
 public:
  using Clock = std::chrono::steady_clock;
  // Returns false when the peer's queue is full (try again later).
  using TrySend = std::function<bool(raft::NodeId to, const std::string& frame)>;
  // Reports a finished stream of a group's snapshot: ok when every chunk was
  // queued.
  using Done = std::function<void(raft::GroupId group, raft::NodeId to, bool ok)>;

  SnapshotSender(size_t chunk_bytes, std::chrono::milliseconds stall_timeout)
      : chunk_bytes_(chunk_bytes), stall_timeout_(stall_timeout) {}

  // Starts streaming m (a kSnapshot) to m.to, replacing any stream of the
  // same group to it.
  void Start(raft::Message m, Clock::time_point now);
  // Sends as many chunks as the queues take. A stream that made no progress
  // for the stall timeout is abandoned (Done with ok = false).
  void Pump(const TrySend& try_send, const Done& done, Clock::time_point now);
  bool idle() const { return streams_.empty(); }

 private:
  struct Stream {
    raft::Message message;
    uint64_t offset = 0;  // bytes of snapshot data queued so far
    bool finished = false;
    Clock::time_point last_progress;
  };
  const size_t chunk_bytes_;
  const std::chrono::milliseconds stall_timeout_;
  std::map<std::pair<raft::GroupId, raft::NodeId>, Stream> streams_;
};

class SnapshotAssembler {
 public:
  explicit SnapshotAssembler(uint64_t max_bytes) : max_bytes_(max_bytes) {}

  // Adds a chunk from chunk_msg.from for chunk_msg.group. When it completes the snapshot, sets
  // *complete and moves the whole message into *whole. InvalidArgument (and
  // the partial snapshot is dropped) for a chunk that does not follow on, or
  // a snapshot over the size limit.
  Status Add(raft::Message chunk_msg, const SnapshotChunk& chunk, raft::Message* whole,
             bool* complete);

 private:
  struct Partial {
    raft::Message message;  // snapshot.data grows chunk by chunk
    uint64_t total = 0;
  };
  const uint64_t max_bytes_;
  std::map<std::pair<raft::GroupId, raft::NodeId>, Partial> partial_;
};

}  // namespace kv::net
