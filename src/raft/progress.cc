#include "raft/progress.h"

#include <algorithm>

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
  inflights_.clear();
}

void Progress::BecomeReplicate() {
  state = ProgressState::kReplicate;
  next = match + 1;
  probe_sent = false;
  pending_snapshot = 0;
  inflights_.clear();
}

void Progress::BecomeSnapshot(Index snapshot_index) {
  state = ProgressState::kSnapshot;
  probe_sent = false;
  pending_snapshot = snapshot_index;
  inflights_.clear();
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

void Progress::SentEntries(Index last) {
  if (state == ProgressState::kReplicate) {
    next = last + 1;
    inflights_.push_back(last);
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
  while (!inflights_.empty() && inflights_.front() <= n) inflights_.pop_front();
}

}  // namespace kv::raft
