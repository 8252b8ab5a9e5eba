#include "raft/memory_storage.h"

#include <algorithm>

namespace kv::raft {

MemoryStorage::MemoryStorage() : entries_(1) {}

Status MemoryStorage::InitialState(HardState* hs, ConfState* cs) const {
  *hs = hard_state_;
  *cs = snapshot_.meta.conf;
  return Status::OK();
}

Index MemoryStorage::FirstIndex() const { return entries_[0].index + 1; }

Index MemoryStorage::LastIndex() const { return entries_[0].index + entries_.size() - 1; }

Status MemoryStorage::TermAt(Index i, Term* term) const {
  const Index base = entries_[0].index;
  if (i < base) return Status::Compacted("index below the snapshot");
  if (i - base >= entries_.size()) return Status::Unavailable("index past the last entry");
  *term = entries_[i - base].term;
  return Status::OK();
}

Status MemoryStorage::Entries(Index lo, Index hi, uint64_t max_bytes,
                              std::vector<Entry>* out) const {
  const Index base = entries_[0].index;
  if (lo <= base) return Status::Compacted("entries below the snapshot");
  if (hi > LastIndex() + 1) return Status::Unavailable("entries past the last index");
  uint64_t bytes = 0;
  for (Index i = lo; i < hi; ++i) {
    const Entry& e = entries_[i - base];
    if (i > lo && bytes + e.ByteSize() > max_bytes) break;
    bytes += e.ByteSize();
    out->push_back(e);
  }
  return Status::OK();
}

Status MemoryStorage::GetSnapshot(Snapshot* snapshot) const {
  *snapshot = snapshot_;
  return Status::OK();
}

Status MemoryStorage::Append(const std::vector<Entry>& entries) {
  if (entries.empty()) return Status::OK();
  const Index base = entries_[0].index;
  const Index first_new = entries.front().index;
  if (first_new > LastIndex() + 1) return Status::InvalidArgument("append would leave a gap");
  size_t skip = 0;
  if (first_new <= base) {
    // Already covered by the snapshot.
    skip = base + 1 - first_new;
    if (skip >= entries.size()) return Status::OK();
  }
  const Index from = first_new + skip;
  entries_.resize(from - base);
  entries_.insert(entries_.end(), entries.begin() + skip, entries.end());
  return Status::OK();
}

Status MemoryStorage::ApplySnapshot(const Snapshot& snapshot) {
  if (snapshot.meta.index < snapshot_.meta.index) {
    return Status::InvalidArgument("snapshot older than the current one");
  }
  snapshot_ = snapshot;
  entries_.assign(1, Entry{snapshot.meta.term, snapshot.meta.index, EntryType::kNormal, {}});
  return Status::OK();
}

Status MemoryStorage::CreateSnapshot(Index i, const ConfState& conf, std::string data) {
  const Index base = entries_[0].index;
  if (i <= base) return Status::InvalidArgument("snapshot not newer than the current one");
  if (i > LastIndex()) return Status::InvalidArgument("snapshot past the last index");
  snapshot_.meta.index = i;
  snapshot_.meta.term = entries_[i - base].term;
  snapshot_.meta.conf = conf;
  snapshot_.data = std::move(data);
  // Keep entry i as the new dummy.
  entries_.erase(entries_.begin(), entries_.begin() + (i - base));
  entries_[0].data.clear();
  entries_[0].type = EntryType::kNormal;
  return Status::OK();
}

}  // namespace kv::raft
