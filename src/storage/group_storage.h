// GroupStorage: one Raft group's durable log, as the Raft core reads it
// (raft::LogStorage), backed by the node's shared WAL.
//
// The storage holds, for every entry after the group's snapshot, its term and
// where its record sits in the WAL (24 bytes an entry). The newest entries are
// also cached in memory up to a byte budget; older ones are read back from
// their WAL segment (and their checksum verified) when asked for. Semantics
// match raft::MemoryStorage.
//
// Write side: NodeStorage calls Append and SetHardState once the WAL has
// reported a batch durable, and ApplySnapshot/Compact after a snapshot is
// saved. Nothing is visible here before it is durable.
// Thread safety: every method takes an internal mutex, so the Raft core may
// read from the loop thread while another thread applies durable writes. The
// core expects LastIndex() to change only between its own steps, so drivers
// apply durable writes on the loop thread (post the WAL completion there).
#pragma once

#include <deque>
#include <mutex>
#include <vector>

#include "raft/storage.h"
#include "storage/snapshot_store.h"
#include "storage/wal.h"

namespace kv::storage {

class GroupStorage : public raft::LogStorage {
 public:
  // What the storage keeps of an entry whether or not it is cached.
  struct Slot {
    raft::Term term;
    Location where;
  };

  // An empty group. `wal` and `snapshots` must outlive it.
  GroupStorage(raft::GroupId group, const Wal* wal, const SnapshotStore* snapshots,
               uint64_t cache_budget_bytes);

  Status InitialState(raft::HardState* hs, raft::ConfState* cs) const override;
  // Entries below the cache are read from the WAL: IOError or Corruption are
  // possible there besides the errors of the LogStorage contract.
  Status Entries(raft::Index lo, raft::Index hi, uint64_t max_bytes,
                 std::vector<raft::Entry>* out) const override;
  Status TermAt(raft::Index i, raft::Term* term) const override;
  raft::Index FirstIndex() const override;
  raft::Index LastIndex() const override;
  // Loads the snapshot file of the current snapshot point (an empty snapshot
  // when there is none). IOError/Corruption if the file cannot be read.
  Status GetSnapshot(raft::Snapshot* snapshot) const override;

  // Makes durable entries visible, first discarding any existing entries at or
  // after entries.front().index. where[i] is the WAL location of entries[i].
  // Entries at or below the snapshot are ignored. InvalidArgument if they
  // would leave a gap. REQUIRES: where.size() == entries.size().
  Status Append(const std::vector<raft::Entry>& entries, const std::vector<Location>& where);
  void SetHardState(const raft::HardState& hs);
  raft::HardState hard_state() const;

  // The log was replaced by a snapshot from a leader: drops every entry.
  // InvalidArgument if it is older than the current snapshot.
  Status ApplySnapshot(const raft::SnapshotMeta& meta);
  // A local snapshot at meta.index was saved: releases entries up to it.
  // InvalidArgument unless snapshot index < meta.index <= LastIndex() and
  // meta.term is the term of that entry.
  Status Compact(const raft::SnapshotMeta& meta);
  raft::SnapshotMeta snapshot_meta() const;

  // Bytes of entry data cached in memory (at most the budget, except while
  // one entry alone is larger).
  uint64_t cached_bytes() const;

 private:
  friend class NodeStorage;

  // Installs the state NodeStorage recovered. REQUIRES: nothing appended yet;
  // slots are the entries from meta.index + 1 on; tail is empty or their last
  // entries, within the cache budget.
  void Restore(const raft::HardState& hs, const raft::SnapshotMeta& meta, std::vector<Slot> slots,
               std::deque<raft::Entry> tail);
  // REQUIRES: mu_ held.
  raft::Index LastIndexLocked() const { return snapshot_.index + slots_.size(); }
  // Drops cached entries from index i on. REQUIRES: mu_ held.
  void TruncateCache(raft::Index i);
  // Drops the oldest cached entries until the cache fits its budget.
  // REQUIRES: mu_ held.
  void EvictCache();
  // Entry i from the cache or the WAL. REQUIRES: mu_ held, i in the log.
  Status ReadEntry(raft::Index i, raft::Entry* entry) const;

  const raft::GroupId group_;
  const Wal* const wal_;
  const SnapshotStore* const snapshots_;
  const uint64_t cache_budget_;

  mutable std::mutex mu_;
  raft::HardState hard_state_;   // guarded by mu_
  raft::SnapshotMeta snapshot_;  // guarded by mu_
  // slots_[i - snapshot_.index - 1] describes entry i.
  std::deque<Slot> slots_;  // guarded by mu_
  // cache_[i - cache_first_] is entry i, for cache_first_ <= i <= LastIndex().
  std::deque<raft::Entry> cache_;  // guarded by mu_
  raft::Index cache_first_ = 1;    // guarded by mu_
  uint64_t cache_bytes_ = 0;       // guarded by mu_
};

}  // namespace kv::storage
