// SnapshotStore: the state machine snapshots of every group on a node, one
// file per snapshot, named snap-<group>-<index>.snap in one directory.
//
// A snapshot is written to a temporary file, checksummed (CRC32C over the
// whole file), fsync'd, renamed into place, and the directory fsync'd; only
// then is it visible. The newest two snapshots of each group are kept, so a
// damaged newest one falls back to the one before. Leftover temporary files
// (a crash mid-save) are removed at Open.
// Thread safety: all methods may be called from any thread; saves of
// different groups may run concurrently.
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "common/status.h"
#include "raft/types.h"
#include "storage/env.h"

namespace kv::storage {

class SnapshotStore {
 public:
  // Opens the store in `dir`, creating the directory if needed.
  static Status Open(Env* env, const std::string& dir, std::unique_ptr<SnapshotStore>* store);

  // Durably saves `snapshot` as the group's newest, then deletes all but the
  // newest two of the group. REQUIRES: snapshot.meta.index > 0.
  Status Save(raft::GroupId group, const raft::Snapshot& snapshot);

  // Loads the group's newest snapshot whose checksum verifies. A damaged newer
  // one is skipped with a warning. NotFound if the group has none that loads.
  Status LoadNewest(raft::GroupId group, raft::Snapshot* snapshot) const;

  // Loads the group's snapshot at exactly `index`. NotFound if there is no
  // such file; Corruption if it does not verify.
  Status Load(raft::GroupId group, raft::Index index, raft::Snapshot* snapshot) const;

  // Indices of the group's snapshot files, oldest first.
  std::vector<raft::Index> List(raft::GroupId group) const;
  // Groups with at least one snapshot file.
  std::vector<raft::GroupId> Groups() const;

  // The path of the group's snapshot file at `index`.
  std::string SnapshotPath(raft::GroupId group, raft::Index index) const;

 private:
  SnapshotStore(Env* env, std::string dir) : env_(env), dir_(std::move(dir)) {}

  Env* const env_;
  const std::string dir_;
  mutable std::mutex mu_;
  std::map<raft::GroupId, std::set<raft::Index>> files_;  // guarded by mu_
};

}  // namespace kv::storage
