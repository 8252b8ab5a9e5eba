// Progress: the leader's view of one follower's log, and its flow control.
//
// Probe: the leader does not know where the follower's log matches; it sends
// one kAppend per heartbeat interval and waits. Replicate: the follower
// accepts entries; the leader streams them, up to max_inflight unacknowledged
// messages and max_inflight_bytes of their entries (by Entry::ByteSize).
// Snapshot: the follower needs a snapshot; nothing else is sent until it is
// delivered or fails.
// Thread safety: a plain value owned by the Raft core.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>

#include "raft/types.h"

namespace kv::raft {

enum class ProgressState : uint8_t { kProbe, kReplicate, kSnapshot };

const char* ProgressStateName(ProgressState s);

class Progress {
 public:
  // max_inflight_bytes 0: no limit by bytes.
  Progress(Index next_index, size_t max_inflight, uint64_t max_inflight_bytes, bool is_learner)
      : next(next_index),
        learner(is_learner),
        max_inflight_(max_inflight),
        max_inflight_bytes_(max_inflight_bytes) {}

  Index match = 0;  // highest index known to be replicated (durably) there
  Index next = 1;   // next index to send
  ProgressState state = ProgressState::kProbe;
  bool probe_sent = false;      // kProbe: one message is out; wait for an answer
  Index pending_snapshot = 0;   // kSnapshot: index of the snapshot being sent
  bool recent_active = false;   // heard from since the last CheckQuorum
  uint64_t lease_ack_tick = 0;  // leader tick of the latest heartbeat it answered
  bool learner = false;

  void BecomeProbe();
  void BecomeReplicate();
  void BecomeSnapshot(Index snapshot_index);

  // An acknowledgement up to n: raises match (and next). False if stale.
  bool MaybeUpdate(Index n);
  // Entries up to `last`, of `bytes` in all, were sent (optimistically in
  // kReplicate, where they take a slot of the window).
  void SentEntries(Index last, uint64_t bytes);
  // A rejection of the kAppend at `rejected`; `hint` is where the follower
  // suggests probing next. False if the rejection is stale.
  bool MaybeDecrTo(Index rejected, Index hint);
  // True when no more entries should be sent now.
  bool IsPaused() const;
  // Frees in-flight slots acknowledged up to n.
  void FreeInflightsUpTo(Index n);
  // The window is closed: max_inflight messages, or max_inflight_bytes, are
  // unacknowledged.
  bool InflightsFull() const;
  // Bytes of entries the window takes before it closes (UINT64_MAX without a
  // byte limit): the next kAppend carries no more than this, except that it
  // always carries one entry, so unacknowledged bytes stay within
  // max_inflight_bytes plus one entry. REQUIRES: !InflightsFull().
  uint64_t InflightBytesLeft() const;
  size_t inflight_count() const { return inflights_.size(); }
  uint64_t inflight_bytes() const { return inflight_bytes_; }

 private:
  struct Inflight {
    Index last;  // the kAppend's last entry
    uint64_t bytes;
  };

  void ClearInflights();

  size_t max_inflight_;
  uint64_t max_inflight_bytes_;
  std::deque<Inflight> inflights_;  // unacknowledged kAppends, ascending
  uint64_t inflight_bytes_ = 0;     // their sum
};

}  // namespace kv::raft
