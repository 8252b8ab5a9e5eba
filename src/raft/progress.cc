#include "raft/progress.h"

#include <algorithm>
#include <cstdint>

#include "common/logging.h"

namespace kv::raft {

const char* ProgressStateName(ProgressState s) {
  switch (s) {
    case ProgressState::kProbe:
      return "probe";
    case ProgressState::kReplicate:
      return "replicate";
    case ProgressState::kSnapshot:
      return "snapshot";
  }
  return "?";
}

void Progress::BecomeProbe() {
  // After a snapshot, probing starts just past it: the follower has it or
  // will reject and tell us where it is.
  if (state == ProgressState::kSnapshot) {
    next = std::max(match + 1, pending_snapshot + 1);
  } else {
    next = match + 1;
  }
  state = ProgressState::kProbe;
  probe_sent = false;
  pending_snapshot = 0;
  ClearInflights();
}

void Progress::BecomeReplicate() {
  state = ProgressState::kReplicate;
  next = match + 1;
  probe_sent = false;
  pending_snapshot = 0;
  ClearInflights();
}

void Progress::BecomeSnapshot(Index snapshot_index) {
  state = ProgressState::kSnapshot;
  probe_sent = false;
  pending_snapshot = snapshot_index;
  ClearInflights();
}

bool Progress::MaybeUpdate(Index n) {
  bool updated = false;
  if (match < n) {
    match = n;
    updated = true;
    probe_sent = false;
  }
  next = std::max(next, n + 1);
  return updated;
}

void Progress::SentEntries(Index last, uint64_t bytes) {
  if (state == ProgressState::kReplicate) {
    next = last + 1;
    inflights_.push_back(Inflight{last, bytes});
    inflight_bytes_ += bytes;
  } else if (state == ProgressState::kProbe) {
    probe_sent = true;
  }
}

bool Progress::MaybeDecrTo(Index rejected, Index hint) {
  if (state == ProgressState::kReplicate) {
    // Already matched past the rejected index: the rejection is stale.
    if (rejected <= match) return false;
    next = match + 1;
    return true;
  }
  // Probe (or snapshot): only the answer to the message we sent counts.
  if (next - 1 != rejected) return false;
  next = std::max(std::min(rejected, hint + 1), match + 1);
  probe_sent = false;
  return true;
}

bool Progress::IsPaused() const {
  switch (state) {
    case ProgressState::kProbe:
      return probe_sent;
    case ProgressState::kReplicate:
      return InflightsFull();
    case ProgressState::kSnapshot:
      return true;
  }
  return true;
}

void Progress::FreeInflightsUpTo(Index n) {
  while (!inflights_.empty() && inflights_.front().last <= n) {
    inflight_bytes_ -= inflights_.front().bytes;
    inflights_.pop_front();
  }
}

bool Progress::InflightsFull() const {
  return inflights_.size() >= max_inflight_ ||
         (max_inflight_bytes_ > 0 && inflight_bytes_ >= max_inflight_bytes_);
}

uint64_t Progress::InflightBytesLeft() const {
  if (max_inflight_bytes_ == 0) return UINT64_MAX;
  KV_CHECK(inflight_bytes_ < max_inflight_bytes_) << "the in-flight window is closed";
  return max_inflight_bytes_ - inflight_bytes_;
}

void Progress::ClearInflights() {
  inflights_.clear();
  inflight_bytes_ = 0;
}

}  // namespace kv::raft
