// MemoryStorage: a LogStorage held entirely in memory, with the write side a
// driver uses to persist what Ready asks. Used by tests and the simulation;
// "persisted" here means "survives a simulated crash" because the simulation
// keeps a node's MemoryStorage across its restart and drops everything else.
// Thread safety: none; one thread at a time.
#pragma once

#include <vector>

#include "raft/storage.h"

namespace kv::raft {

class MemoryStorage : public LogStorage {
 public:
  MemoryStorage();

  Status InitialState(HardState* hs, ConfState* cs) const override;
  Status Entries(Index lo, Index hi, uint64_t max_bytes, std::vector<Entry>* out) const override;
  Status TermAt(Index i, Term* term) const override;
  Index FirstIndex() const override;
  Index LastIndex() const override;
  Status GetSnapshot(Snapshot* snapshot) const override;

  void SetHardState(const HardState& hs) { hard_state_ = hs; }
  const HardState& hard_state() const { return hard_state_; }

  // Appends entries, first discarding any existing entries at or after
  // entries.front().index (a conflicting suffix). Entries at or below the
  // snapshot are ignored. InvalidArgument if they would leave a gap.
  Status Append(const std::vector<Entry>& entries);

  // Replaces the whole log with a snapshot received from a leader.
  // InvalidArgument if it is older than the current snapshot.
  Status ApplySnapshot(const Snapshot& snapshot);

  // Records a snapshot of the state machine at index i (<= LastIndex()) and
  // releases the entries up to i. InvalidArgument if i is out of range or not
  // newer than the current snapshot.
  Status CreateSnapshot(Index i, const ConfState& conf, std::string data);

 private:
  HardState hard_state_;
  Snapshot snapshot_;
  // entries_[0] is a dummy standing for the snapshot (index, term), so
  // entries_[i - entries_[0].index] is entry i.
  std::vector<Entry> entries_;
};

}  // namespace kv::raft
