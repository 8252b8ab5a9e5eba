#include "storage/node_storage.h"

#include <deque>

#include "common/logging.h"

namespace kv::storage {

namespace {

// What replaying the WAL learns about one group.
struct ReplayedGroup {
  raft::HardState hard_state;
  // Entries start..start+slots.size()-1, contiguous; start is 0 while empty.
  raft::Index start = 0;
  std::vector<GroupStorage::Slot> slots;
  // The newest snapshot point the WAL records, and the newest one that
  // replaced the whole log (entries before it are void).
  raft::Index snapshot_index = 0;
  raft::Index replaced_at = 0;
  // The newest entries with their data, a suffix of the log within the cache
  // budget, so a restarted node serves its recent tail from memory.
  std::deque<raft::Entry> tail;
  uint64_t tail_bytes = 0;

  void DropTailFrom(raft::Index i) {
    while (!tail.empty() && tail.back().index >= i) {
      tail_bytes -= tail.back().data.size();
      tail.pop_back();
    }
  }
};

std::string GroupName(raft::GroupId group) { return "group " + std::to_string(group); }

Status Unrecoverable(raft::GroupId group, const std::string& what) {
  return Status::Corruption(GroupName(group) + ": " + what +
                            ". The group cannot be rebuilt from this node's data; restore the "
                            "data directory from a backup, or remove it and re-add the node so "
                            "it catches up from its peers.");
}

}  // namespace

NodeStorage::NodeStorage(Env* env, std::string dir, const StorageOptions& options)
    : env_(env), dir_(std::move(dir)), options_(options) {}

NodeStorage::~NodeStorage() {
  // GroupStorages read through the WAL; drop them first.
  groups_.clear();
  wal_.reset();
}

Status NodeStorage::Open(Env* env, const std::string& dir, const StorageOptions& options,
                         std::unique_ptr<NodeStorage>* storage) {
  std::unique_ptr<NodeStorage> st(new NodeStorage(env, dir, options));
  Status s = env->CreateDir(dir);
  if (s.ok()) s = SnapshotStore::Open(env, dir + "/snap", &st->snapshots_);
  if (!s.ok()) return s;

  std::map<raft::GroupId, ReplayedGroup> replayed;
  const uint64_t budget = options.cache_bytes_per_group;
  auto replay = [&replayed, budget](const Record& r, const Location& where) -> Status {
    ReplayedGroup& g = replayed[r.group];
    switch (r.type) {
      case RecordType::kEntry: {
        const raft::Index i = r.entry.index;
        if (g.slots.empty()) {
          g.start = i;
        } else if (i > g.start + g.slots.size()) {
          return Status::Corruption("WAL segment " + std::to_string(where.segment) + " offset " +
                                    std::to_string(where.offset) + ": " + GroupName(r.group) +
                                    " entry " + std::to_string(i) + " leaves a gap after " +
                                    std::to_string(g.start + g.slots.size() - 1));
        } else if (i < g.start) {
          g.slots.clear();
          g.start = i;
        } else {
          g.slots.resize(i - g.start);
        }
        g.slots.push_back(GroupStorage::Slot{r.entry.term, where});
        g.DropTailFrom(i);
        g.tail.push_back(r.entry);
        g.tail_bytes += r.entry.data.size();
        while (g.tail_bytes > budget) {
          g.tail_bytes -= g.tail.front().data.size();
          g.tail.pop_front();
        }
        break;
      }
      case RecordType::kHardState:
        g.hard_state = r.hard_state;
        break;
      case RecordType::kSnapshot:
        g.snapshot_index = std::max(g.snapshot_index, r.snapshot.index);
        if (r.replace_log) {
          g.slots.clear();
          g.start = 0;
          g.replaced_at = r.snapshot.index;
          g.DropTailFrom(0);
        }
        break;
      case RecordType::kSegmentHeader:
      case RecordType::kWriteStart:
        break;
    }
    return Status::OK();
  };
  s = Wal::Open(env, dir + "/wal", options.wal, replay, &st->wal_);
  if (!s.ok()) return s;

  for (raft::GroupId group : st->snapshots_->Groups()) replayed[group];
  for (auto& [group, g] : replayed) {
    raft::Snapshot snap;
    s = st->snapshots_->LoadNewest(group, &snap);
    if (!s.ok() && !s.IsNotFound()) return s;
    const raft::Index si = snap.meta.index;
    if (g.snapshot_index > si) {
      // The newest snapshot the WAL knows of is missing or damaged: the older
      // one serves only if the WAL still holds every entry after it.
      const bool covered = g.replaced_at <= si && !g.slots.empty() && g.start <= si + 1 &&
                           g.start + g.slots.size() - 1 >= g.snapshot_index;
      if (!covered) {
        return Unrecoverable(group, "the snapshot at index " + std::to_string(g.snapshot_index) +
                                        " is missing or damaged, and the WAL does not hold "
                                        "the entries after the newest loadable one (index " +
                                        std::to_string(si) + ")");
      }
      KV_LOG(kWarn) << GroupName(group) << ": snapshot at index " << g.snapshot_index
                    << " is missing or damaged; recovered from the one at index " << si
                    << " and the WAL";
    }
    // Keep the entries after the snapshot, if the log reaches it and agrees
    // with it there; else the snapshot replaced the log.
    std::vector<GroupStorage::Slot> slots;
    if (!g.slots.empty()) {
      const raft::Index last = g.start + g.slots.size() - 1;
      if (g.start > si + 1) {
        return Unrecoverable(group, "its WAL entries start at index " + std::to_string(g.start) +
                                        " but its newest loadable snapshot is at index " +
                                        std::to_string(si));
      }
      const bool agrees =
          g.start == si + 1 || (si <= last && g.slots[si - g.start].term == snap.meta.term);
      if (agrees && last > si) {
        slots.assign(g.slots.begin() + static_cast<std::ptrdiff_t>(si + 1 - g.start),
                     g.slots.end());
      }
    }
    const raft::Index log_end = si + slots.size();
    if (g.hard_state.commit > log_end) {
      return Unrecoverable(group, "its hard state commits index " +
                                      std::to_string(g.hard_state.commit) +
                                      " but its log ends at " + std::to_string(log_end));
    }
    auto restored = std::make_unique<GroupStorage>(group, st->wal_.get(), st->snapshots_.get(),
                                                   options.cache_bytes_per_group);
    g.DropTailFrom(si + 1 + slots.size());  // entries the snapshot replaced
    while (!g.tail.empty() && g.tail.front().index <= si) g.tail.pop_front();
    restored->Restore(g.hard_state, snap.meta, std::move(slots), std::move(g.tail));
    st->groups_[group] = std::move(restored);
  }
  s = st->ReleaseSegments();
  if (!s.ok()) return s;
  *storage = std::move(st);
  return Status::OK();
}

GroupStorage* NodeStorage::Group(raft::GroupId group) {
  std::lock_guard<std::mutex> lock(mu_);
  std::unique_ptr<GroupStorage>& g = groups_[group];
  if (!g) {
    g = std::make_unique<GroupStorage>(group, wal_.get(), snapshots_.get(),
                                       options_.cache_bytes_per_group);
  }
  return g.get();
}

std::vector<raft::GroupId> NodeStorage::Groups() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<raft::GroupId> groups;
  for (const auto& [group, g] : groups_) groups.push_back(group);
  return groups;
}

Status NodeStorage::ApplyWritten(const WriteBatch& batch) {
  const std::vector<Record>& records = batch.records();
  const std::vector<Location>& where = batch.locations();
  KV_CHECK(where.size() == records.size()) << "batch was not written";
  size_t k = 0;
  while (k < records.size()) {
    const Record& r = records[k];
    if (r.type == RecordType::kHardState) {
      Group(r.group)->SetHardState(r.hard_state);
      ++k;
      continue;
    }
    if (r.type != RecordType::kEntry) {
      ++k;
      continue;
    }
    // A run of entries of one group goes in with one Append.
    std::vector<raft::Entry> entries;
    std::vector<Location> locations;
    for (;
         k < records.size() && records[k].type == RecordType::kEntry && records[k].group == r.group;
         ++k) {
      entries.push_back(records[k].entry);
      locations.push_back(where[k]);
    }
    Status s = Group(r.group)->Append(entries, locations);
    if (!s.ok()) return s;
  }
  return Status::OK();
}

Status NodeStorage::CreateSnapshot(raft::GroupId group, raft::Index i, const raft::ConfState& conf,
                                   std::string data) {
  raft::SnapshotMeta meta;
  Status s = SaveSnapshot(group, i, conf, StringSnapshotData(data), &meta);
  return s.ok() ? CommitSnapshot(group, meta) : s;
}

Status NodeStorage::SaveSnapshot(raft::GroupId group, raft::Index i, const raft::ConfState& conf,
                                 const SnapshotData& data, raft::SnapshotMeta* meta) {
  GroupStorage* g = Group(group);
  raft::SnapshotMeta m;
  m.index = i;
  m.conf = conf;
  if (i <= g->snapshot_meta().index) {
    return Status::InvalidArgument("snapshot not newer than the current one");
  }
  Status s = g->TermAt(i, &m.term);
  if (!s.ok()) return Status::InvalidArgument("snapshot past the last index");
  s = snapshots_->Save(group, m, data);
  if (s.ok()) *meta = m;
  return s;
}

Status NodeStorage::CommitSnapshot(raft::GroupId group, const raft::SnapshotMeta& meta) {
  GroupStorage* g = Group(group);
  if (meta.index <= g->snapshot_meta().index) {
    return Status::InvalidArgument("snapshot superseded by a newer one");
  }
  Status s = LogSnapshot(group, meta, false);
  if (s.ok()) s = g->Compact(meta);
  if (s.ok()) s = ReleaseSegments();
  return s;
}

Status NodeStorage::InstallSnapshot(raft::GroupId group, const raft::Snapshot& snapshot) {
  if (snapshot.meta.index == 0) return Status::InvalidArgument("empty snapshot");
  GroupStorage* g = Group(group);
  if (snapshot.meta.index < g->snapshot_meta().index) {
    return Status::InvalidArgument("snapshot older than the current one");
  }
  Status s = snapshots_->Save(group, snapshot);
  if (s.ok()) s = LogSnapshot(group, snapshot.meta, true);
  if (s.ok()) s = g->ApplySnapshot(snapshot.meta);
  if (s.ok()) s = ReleaseSegments();
  return s;
}

Status NodeStorage::LogSnapshot(raft::GroupId group, const raft::SnapshotMeta& meta,
                                bool replace_log) {
  WriteBatch batch;
  batch.Add(Record::Snapshot(group, meta, replace_log));
  return wal_->Write(&batch);
}

Status NodeStorage::ReleaseSegments() {
  std::map<raft::GroupId, raft::Index> released;
  for (raft::GroupId group : snapshots_->Groups()) {
    const std::vector<raft::Index> kept = snapshots_->List(group);
    if (kept.size() >= 2) released[group] = kept[kept.size() - 2];
    // A group whose newest snapshot covers its whole log (an idle one) will
    // never take the second snapshot that would release its old entries:
    // without this, one idle group would keep every WAL segment forever.
    if (!kept.empty() && kept.back() >= Group(group)->LastIndex()) released[group] = kept.back();
  }
  return wal_->ReleaseSegments(released);
}

}  // namespace kv::storage
