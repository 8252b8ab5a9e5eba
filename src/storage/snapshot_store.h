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

#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "raft/types.h"
#include "storage/env.h"

namespace kv::storage {

// The data of a snapshot being saved, produced in pieces, so that it never
// has to exist as one string: a large state is serialized straight into the
// file.
class SnapshotData {
 public:
  using Emit = std::function<Status(std::string_view piece)>;
  virtual ~SnapshotData() = default;
  // The exact number of bytes WriteTo emits (the file's header records it).
  virtual uint64_t size() const = 0;
  // Emits the data as consecutive pieces; returns the first error of emit.
  virtual Status WriteTo(const Emit& emit) const = 0;
};

// Snapshot data that is one string already.
class StringSnapshotData : public SnapshotData {
 public:
  explicit StringSnapshotData(std::string_view data) : data_(data) {}
  uint64_t size() const override { return data_.size(); }
  Status WriteTo(const Emit& emit) const override { return emit(data_); }

 private:
  std::string_view data_;
};

class SnapshotStore {
 public:
  // Opens the store in `dir`, creating the directory if needed.
  static Status Open(Env* env, const std::string& dir, std::unique_ptr<SnapshotStore>* store);

  // Durably saves a snapshot as the group's newest, then deletes all but the
  // newest two of the group. InvalidArgument if `data` emits other than
  // data.size() bytes. REQUIRES: meta.index > 0.
  Status Save(raft::GroupId group, const raft::SnapshotMeta& meta, const SnapshotData& data);
  Status Save(raft::GroupId group, const raft::Snapshot& snapshot) {
    return Save(group, snapshot.meta, StringSnapshotData(snapshot.data));
  }

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
