// RaftLog: the core's view of the log: the stable part in LogStorage plus the
// unstable tail (entries and possibly a snapshot) not yet persisted, with the
// commit index and what has been handed to the driver.
//
// Indexes: FirstIndex()-1 is the snapshot's index; entries run from
// FirstIndex() to LastIndex(). Unstable entries start at offset_ (which may
// lie at or below storage's last index while a conflicting suffix is being
// replaced). Entries handed out in a Ready but not yet Advanced stay in the
// unstable tail until StableTo.
// Thread safety: none; owned by the Raft core.
#pragma once

#include <optional>
#include <vector>

#include "common/status.h"
#include "raft/storage.h"
#include "raft/types.h"

namespace kv::raft {

class RaftLog {
 public:
  RaftLog(const LogStorage* storage, uint64_t max_committed_bytes);

  // Reads the storage's bounds. commit and applied start at the snapshot.
  Status Init();

  Index FirstIndex() const;
  Index LastIndex() const;
  Term LastTerm() const;
  // Term of entry i; 0 for index 0. Compacted below FirstIndex()-1,
  // Unavailable above LastIndex().
  Status TermAt(Index i, Term* term) const;
  bool MatchTerm(Index i, Term term) const;
  // Raft's up-to-date check for granting votes (paper 5.4.1).
  bool IsUpToDate(Index last_index, Term last_term) const;

  // Entries [lo, hi), at most max_bytes (at least one entry).
  Status Slice(Index lo, Index hi, uint64_t max_bytes, std::vector<Entry>* out) const;

  // Follower: if the entry at `index` has `log_term`, appends `entries`
  // (which follow it), replacing any conflicting suffix, and sets *last_new
  // to the last index known to match the leader and *conflict to the first
  // index that was written (0 if the log held them all). False if the terms
  // differ.
  bool MaybeAppend(Index index, Term log_term, const std::vector<Entry>& entries, Index* last_new,
                   Index* conflict);
  // Appends entries that follow on from (or replace a suffix of) the log.
  // REQUIRES: entries.front().index > committed().
  void Append(const std::vector<Entry>& entries);
  // The first index at which `entries` disagree with the log (or extend it);
  // 0 when the log already holds them all.
  Index FindConflict(const std::vector<Entry>& entries) const;
  // The largest index <= index whose term is <= term, and that term: where a
  // leader and follower whose logs diverge may still agree.
  Index FindConflictByTerm(Index index, Term term, Term* found_term) const;

  Index committed() const { return committed_; }
  void set_committed(Index i) { committed_ = i; }
  // The last entry handed to the driver for applying.
  Index applied() const { return applied_; }
  void set_applied(Index i) { applied_ = i; }

  // The last index known to be durable and part of this log.
  Index DurableIndex() const;

  // Replaces the log with a snapshot (follower InstallSnapshot).
  void Restore(const Snapshot& s);

  // Ready support: what has not been handed out yet.
  bool HasUnhandedEntries() const;
  std::vector<Entry> TakeUnhandedEntries();
  bool HasUnhandedSnapshot() const { return snapshot_ && !snapshot_handed_; }
  Snapshot TakeUnhandedSnapshot();
  bool HasEntriesToApply() const { return committed_ > applied_ && !HasUnhandedSnapshot(); }
  Status TakeEntriesToApply(std::vector<Entry>* out);

  // The driver persisted entries up to (i, t) / the snapshot at i.
  void StableTo(Index i, Term t);
  void StableSnapTo(Index i);

 private:
  Index UnstableLast() const { return offset_ + entries_.size() - 1; }

  const LogStorage* storage_;
  const uint64_t max_committed_bytes_;

  std::optional<Snapshot> snapshot_;  // unstable snapshot
  bool snapshot_handed_ = false;
  std::vector<Entry> entries_;  // unstable entries; entries_[i - offset_]
  Index offset_ = 1;
  Index handed_ = 0;  // unstable entries up to here were handed out

  Index committed_ = 0;
  Index applied_ = 0;
};

}  // namespace kv::raft
