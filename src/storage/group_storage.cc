#include "storage/group_storage.h"

#include "common/logging.h"

namespace kv::storage {

GroupStorage::GroupStorage(raft::GroupId group, const Wal* wal, const SnapshotStore* snapshots,
                           uint64_t cache_budget_bytes)
    : group_(group), wal_(wal), snapshots_(snapshots), cache_budget_(cache_budget_bytes) {}

void GroupStorage::Restore(const raft::HardState& hs, const raft::SnapshotMeta& meta,
                           std::vector<Slot> slots, std::deque<raft::Entry> tail) {
  std::lock_guard<std::mutex> lock(mu_);
  KV_CHECK(slots_.empty() && snapshot_.index == 0) << "restore into a used GroupStorage";
  hard_state_ = hs;
  snapshot_ = meta;
  slots_.assign(slots.begin(), slots.end());
  KV_CHECK(tail.empty() ||
           (tail.back().index == LastIndexLocked() && tail.front().index > meta.index))
      << "cached tail is not a suffix of the log";
  cache_first_ = LastIndexLocked() + 1 - tail.size();
  cache_ = std::move(tail);
  cache_bytes_ = 0;
  for (const raft::Entry& e : cache_) cache_bytes_ += e.data.size();
}

Status GroupStorage::InitialState(raft::HardState* hs, raft::ConfState* cs) const {
  std::lock_guard<std::mutex> lock(mu_);
  *hs = hard_state_;
  *cs = snapshot_.conf;
  return Status::OK();
}

raft::Index GroupStorage::FirstIndex() const {
  std::lock_guard<std::mutex> lock(mu_);
  return snapshot_.index + 1;
}

raft::Index GroupStorage::LastIndex() const {
  std::lock_guard<std::mutex> lock(mu_);
  return LastIndexLocked();
}

Status GroupStorage::TermAt(raft::Index i, raft::Term* term) const {
  std::lock_guard<std::mutex> lock(mu_);
  if (i < snapshot_.index) return Status::Compacted("index below the snapshot");
  if (i > LastIndexLocked()) return Status::Unavailable("index past the last entry");
  *term = i == snapshot_.index ? snapshot_.term : slots_[i - snapshot_.index - 1].term;
  return Status::OK();
}

Status GroupStorage::ReadEntry(raft::Index i, raft::Entry* entry) const {
  if (i >= cache_first_) {
    *entry = cache_[i - cache_first_];
    return Status::OK();
  }
  const Slot& slot = slots_[i - snapshot_.index - 1];
  Record record;
  Status s = wal_->ReadRecord(slot.where, &record);
  if (!s.ok()) return s;
  if (record.type != RecordType::kEntry || record.group != group_ || record.entry.index != i ||
      record.entry.term != slot.term) {
    return Status::Corruption("WAL record at segment " + std::to_string(slot.where.segment) +
                              " offset " + std::to_string(slot.where.offset) + " is not entry " +
                              std::to_string(i) + " of group " + std::to_string(group_));
  }
  *entry = std::move(record.entry);
  return Status::OK();
}

Status GroupStorage::Entries(raft::Index lo, raft::Index hi, uint64_t max_bytes,
                             std::vector<raft::Entry>* out) const {
  std::lock_guard<std::mutex> lock(mu_);
  if (lo <= snapshot_.index) return Status::Compacted("entries below the snapshot");
  if (hi > LastIndexLocked() + 1) return Status::Unavailable("entries past the last index");
  uint64_t bytes = 0;
  for (raft::Index i = lo; i < hi; ++i) {
    raft::Entry e;
    Status s = ReadEntry(i, &e);
    if (!s.ok()) return s;
    if (i > lo && bytes + e.ByteSize() > max_bytes) break;
    bytes += e.ByteSize();
    out->push_back(std::move(e));
  }
  return Status::OK();
}

Status GroupStorage::GetSnapshot(raft::Snapshot* snapshot) const {
  raft::SnapshotMeta meta = snapshot_meta();
  if (meta.index == 0) {
    *snapshot = raft::Snapshot();
    return Status::OK();
  }
  return snapshots_->Load(group_, meta.index, snapshot);
}

void GroupStorage::TruncateCache(raft::Index i) {
  while (!cache_.empty() && cache_first_ + cache_.size() > i) {
    cache_bytes_ -= cache_.back().data.size();
    cache_.pop_back();
  }
  if (cache_.empty()) cache_first_ = i;
}

void GroupStorage::EvictCache() {
  while (cache_bytes_ > cache_budget_ && !cache_.empty()) {
    cache_bytes_ -= cache_.front().data.size();
    cache_.pop_front();
    ++cache_first_;
  }
}

Status GroupStorage::Append(const std::vector<raft::Entry>& entries,
                            const std::vector<Location>& where) {
  KV_CHECK(entries.size() == where.size()) << "one location per entry";
  if (entries.empty()) return Status::OK();
  std::lock_guard<std::mutex> lock(mu_);
  const raft::Index first_new = entries.front().index;
  if (first_new > LastIndexLocked() + 1) return Status::InvalidArgument("append would leave a gap");
  size_t skip = 0;
  if (first_new <= snapshot_.index) {
    skip = snapshot_.index + 1 - first_new;
    if (skip >= entries.size()) return Status::OK();
  }
  const raft::Index from = first_new + skip;
  slots_.resize(from - snapshot_.index - 1);
  TruncateCache(from);
  for (size_t k = skip; k < entries.size(); ++k) {
    KV_CHECK(entries[k].index == from + (k - skip)) << "entries out of order";
    slots_.push_back(Slot{entries[k].term, where[k]});
    cache_.push_back(entries[k]);
    cache_bytes_ += entries[k].data.size();
  }
  EvictCache();
  return Status::OK();
}

void GroupStorage::SetHardState(const raft::HardState& hs) {
  std::lock_guard<std::mutex> lock(mu_);
  hard_state_ = hs;
}

raft::HardState GroupStorage::hard_state() const {
  std::lock_guard<std::mutex> lock(mu_);
  return hard_state_;
}

Status GroupStorage::ApplySnapshot(const raft::SnapshotMeta& meta) {
  std::lock_guard<std::mutex> lock(mu_);
  if (meta.index < snapshot_.index) {
    return Status::InvalidArgument("snapshot older than the current one");
  }
  snapshot_ = meta;
  slots_.clear();
  cache_.clear();
  cache_bytes_ = 0;
  cache_first_ = meta.index + 1;
  return Status::OK();
}

Status GroupStorage::Compact(const raft::SnapshotMeta& meta) {
  std::lock_guard<std::mutex> lock(mu_);
  if (meta.index <= snapshot_.index) {
    return Status::InvalidArgument("snapshot not newer than the current one");
  }
  if (meta.index > LastIndexLocked())
    return Status::InvalidArgument("snapshot past the last index");
  const size_t released = meta.index - snapshot_.index;
  if (slots_[released - 1].term != meta.term) {
    return Status::InvalidArgument("snapshot term differs from the log's");
  }
  slots_.erase(slots_.begin(), slots_.begin() + static_cast<std::ptrdiff_t>(released));
  while (!cache_.empty() && cache_first_ <= meta.index) {
    cache_bytes_ -= cache_.front().data.size();
    cache_.pop_front();
    ++cache_first_;
  }
  if (cache_first_ <= meta.index) cache_first_ = meta.index + 1;
  snapshot_ = meta;
  return Status::OK();
}

raft::SnapshotMeta GroupStorage::snapshot_meta() const {
  std::lock_guard<std::mutex> lock(mu_);
  return snapshot_;
}

uint64_t GroupStorage::cached_bytes() const {
  std::lock_guard<std::mutex> lock(mu_);
  return cache_bytes_;
}

}  // namespace kv::storage
