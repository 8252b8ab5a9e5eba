// LogStorage: the Raft core's read-only view of what a node has persisted.
//
// The core reads its stable log through this interface and never writes to it:
// the driver persists what Ready asks (entries, hard state, snapshots) into the
// concrete storage, then calls Advance. MemoryStorage (memory_storage.h) serves
// tests; the write-ahead log (src/storage) serves real nodes.
// Thread safety: the core calls these from its own thread only; an
// implementation shared with other threads does its own locking.
#pragma once

#include <cstdint>
#include <vector>

#include "common/status.h"
#include "raft/types.h"

namespace kv::raft {

class LogStorage {
 public:
  virtual ~LogStorage() = default;

  // The persisted hard state and the configuration of the latest snapshot
  // (empty values for a new group). Called once when the core starts.
  virtual Status InitialState(HardState* hs, ConfState* cs) const = 0;

  // Appends entries [lo, hi) to *out, stopping once their total ByteSize would
  // pass max_bytes (but always at least one entry).
  // REQUIRES: FirstIndex() <= lo < hi <= LastIndex() + 1, else:
  // Compacted if lo < FirstIndex(); Unavailable if hi > LastIndex() + 1.
  virtual Status Entries(Index lo, Index hi, uint64_t max_bytes, std::vector<Entry>* out) const = 0;

  // The term of entry i, for FirstIndex()-1 <= i <= LastIndex() (the entry
  // before the first is the snapshot's). Compacted below, Unavailable above.
  virtual Status TermAt(Index i, Term* term) const = 0;

  // Index of the first entry still available (snapshot index + 1).
  virtual Index FirstIndex() const = 0;
  // Index of the last persisted entry (snapshot index when the log is empty).
  virtual Index LastIndex() const = 0;

  // The latest snapshot. Its data may be left empty when the driver attaches
  // the data itself when sending. Unavailable if one is being made.
  virtual Status GetSnapshot(Snapshot* snapshot) const = 0;
};

}  // namespace kv::raft
