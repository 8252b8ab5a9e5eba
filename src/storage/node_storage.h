// NodeStorage: everything one node persists, for all its Raft groups: the
// shared WAL, the snapshot files, and a GroupStorage (the Raft core's
// LogStorage) per group.
//
// Layout under the data directory: wal/ (segments) and snap/ (snapshots).
// Open recovers every group: it replays the WAL, loads each group's newest
// valid snapshot, and rebuilds log, hard state and snapshot point.
//
// Driver protocol, per Ready of a group (or of many groups at once):
//   WriteBatch b; b.AppendEntries(g, ready.entries); b.SetHardState(g, ready.hs);
//   storage->wal()->Submit(std::move(b), done);   // done runs on the WAL thread
//   ... on the loop thread, once done reported OK: storage->ApplyWritten(batch);
// A group's entries go before its hard state in a batch (a torn batch keeps
// a prefix, and a hard state must never commit entries that were lost).
// Batches are applied in the order they were submitted. Snapshots go through
// CreateSnapshot / InstallSnapshot, called from the thread that applies
// batches, after the batches submitted before them were applied.
//
// WAL retention: a group keeps WAL entries after the OLDER of its two kept
// snapshots, so that if the newest snapshot file is found damaged at start,
// the previous one plus the WAL still rebuild the group; a group whose newest
// snapshot covers its whole log (an idle group) keeps none, so that it does
// not hold every segment forever (its older snapshot then has no WAL to
// replay: a damaged newest file means re-adding that replica).
// Thread safety: Group() and the snapshot calls may be called from any thread;
// see GroupStorage and Wal for theirs.
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "storage/group_storage.h"
#include "storage/snapshot_store.h"
#include "storage/wal.h"

namespace kv::storage {

struct StorageOptions {
  WalOptions wal;
  // Bytes of recent entry data each group keeps in memory.
  uint64_t cache_bytes_per_group = 4ull << 20;
};

class NodeStorage {
 public:
  // Opens or creates the storage under `dir` and recovers it. Corruption (with
  // file, offset and what to do) if anything acknowledged cannot be rebuilt.
  static Status Open(Env* env, const std::string& dir, const StorageOptions& options,
                     std::unique_ptr<NodeStorage>* storage);

  // Finishes queued WAL writes, then closes.
  ~NodeStorage();

  // The group's storage, created empty for a group not seen before. The
  // pointer stays valid for the NodeStorage's lifetime.
  GroupStorage* Group(raft::GroupId group);
  // Every group with any persisted state, ascending.
  std::vector<raft::GroupId> Groups() const;

  Wal* wal() { return wal_.get(); }
  SnapshotStore* snapshots() { return snapshots_.get(); }

  // Makes a batch the WAL reported durable visible in its groups' storage.
  // InvalidArgument if its entries leave a gap in a group's log.
  Status ApplyWritten(const WriteBatch& batch);

  // Saves a snapshot of the group's state machine at index i (its term taken
  // from the log), records it in the WAL, releases the group's entries up to
  // i, and deletes WAL segments no group needs any more. InvalidArgument if i
  // is not in (snapshot index, LastIndex()]. Blocks for the snapshot file's
  // syncs and one WAL sync, so never call it from a WAL completion.
  Status CreateSnapshot(raft::GroupId group, raft::Index i, const raft::ConfState& conf,
                        std::string data);
  // CreateSnapshot in two steps, so that the slow one (writing and syncing
  // the file) can run off the thread that applies batches. SaveSnapshot,
  // from any thread, writes the file and fills *meta; CommitSnapshot, from
  // the thread that applies batches (after the batches submitted before it
  // were applied), records it in the WAL, releases the group's entries up to
  // it and deletes WAL segments no group needs. CommitSnapshot refuses
  // (InvalidArgument) a snapshot that a newer one, installed meanwhile,
  // superseded; a crash between the two steps leaves a valid snapshot file
  // that recovery may use.
  Status SaveSnapshot(raft::GroupId group, raft::Index i, const raft::ConfState& conf,
                      const SnapshotData& data, raft::SnapshotMeta* meta);
  Status CommitSnapshot(raft::GroupId group, const raft::SnapshotMeta& meta);

  // Saves a snapshot received from a leader and replaces the group's log with
  // it. InvalidArgument if it is empty or older than the group's current
  // snapshot.
  Status InstallSnapshot(raft::GroupId group, const raft::Snapshot& snapshot);

 private:
  NodeStorage(Env* env, std::string dir, const StorageOptions& options);

  // Records the snapshot point in the WAL (synced) and releases segments.
  Status LogSnapshot(raft::GroupId group, const raft::SnapshotMeta& meta, bool replace_log);
  Status ReleaseSegments();

  Env* const env_;
  const std::string dir_;
  const StorageOptions options_;
  std::unique_ptr<SnapshotStore> snapshots_;
  std::unique_ptr<Wal> wal_;

  mutable std::mutex mu_;
  std::map<raft::GroupId, std::unique_ptr<GroupStorage>> groups_;  // guarded by mu_
};

}  // namespace kv::storage
