#include "raft/log.h"

#include <algorithm>

#include "common/logging.h"

namespace kv::raft {

RaftLog::RaftLog(const LogStorage* storage, uint64_t max_committed_bytes)
    : storage_(storage), max_committed_bytes_(max_committed_bytes) {}

Status RaftLog::Init() {
  const Index first = storage_->FirstIndex();
  const Index last = storage_->LastIndex();
  if (first == 0 || last + 1 < first) {
    return Status::Corruption("log storage bounds are inconsistent");
  }
  offset_ = last + 1;
  handed_ = last;
  committed_ = first - 1;
  applied_ = first - 1;
  return Status::OK();
}

Index RaftLog::FirstIndex() const {
  if (snapshot_) return snapshot_->meta.index + 1;
  return storage_->FirstIndex();
}

Index RaftLog::LastIndex() const {
  if (!entries_.empty()) return UnstableLast();
  if (snapshot_) return snapshot_->meta.index;
  return storage_->LastIndex();
}

Term RaftLog::LastTerm() const {
  Term t = 0;
  Status s = TermAt(LastIndex(), &t);
  KV_CHECK(s.ok()) << "term of the last entry unreadable: " << s.ToString();
  return t;
}

Status RaftLog::TermAt(Index i, Term* term) const {
  if (i == 0) {
    *term = 0;
    return Status::OK();
  }
  if (i > LastIndex()) return Status::Unavailable("index past the last entry");
  if (!entries_.empty() && i >= offset_) {
    *term = entries_[i - offset_].term;
    return Status::OK();
  }
  if (snapshot_) {
    if (i == snapshot_->meta.index) {
      *term = snapshot_->meta.term;
      return Status::OK();
    }
    if (i < snapshot_->meta.index) return Status::Compacted("index below the snapshot");
  }
  if (i + 1 < FirstIndex()) return Status::Compacted("index below the snapshot");
  return storage_->TermAt(i, term);
}

bool RaftLog::MatchTerm(Index i, Term term) const {
  Term t = 0;
  return TermAt(i, &t).ok() && t == term;
}

bool RaftLog::IsUpToDate(Index last_index, Term last_term) const {
  const Term my_term = LastTerm();
  return last_term > my_term || (last_term == my_term && last_index >= LastIndex());
}

Status RaftLog::Slice(Index lo, Index hi, uint64_t max_bytes, std::vector<Entry>* out) const {
  if (lo < FirstIndex()) return Status::Compacted("entries below the snapshot");
  if (hi > LastIndex() + 1) return Status::Unavailable("entries past the last index");
  if (lo >= hi) return Status::OK();
  uint64_t bytes = 0;
  const size_t start = out->size();
  // The stable part first: storage entries below the unstable offset.
  if (lo < offset_) {
    const Index stable_hi = std::min(hi, offset_);
    Status s = storage_->Entries(lo, stable_hi, max_bytes, out);
    if (!s.ok()) return s;
    for (size_t k = start; k < out->size(); ++k) bytes += (*out)[k].ByteSize();
    // Storage stopped early on the byte limit: so do we.
    if (out->size() - start < stable_hi - lo) return Status::OK();
  }
  for (Index i = std::max(lo, offset_); i < hi; ++i) {
    const Entry& e = entries_[i - offset_];
    if (out->size() > start && bytes + e.ByteSize() > max_bytes) break;
    bytes += e.ByteSize();
    out->push_back(e);
  }
  return Status::OK();
}

bool RaftLog::MaybeAppend(Index index, Term log_term, const std::vector<Entry>& entries,
                          Index* last_new, Index* conflict_out) {
  if (!MatchTerm(index, log_term)) return false;
  *last_new = index + entries.size();
  const Index conflict = FindConflict(entries);
  *conflict_out = conflict;
  if (conflict != 0) {
    KV_CHECK(conflict > committed_)
        << "entry " << conflict << " conflicts with committed entry " << committed_;
    const size_t skip = conflict - (index + 1);
    Append(std::vector<Entry>(entries.begin() + skip, entries.end()));
  }
  return true;
}

void RaftLog::Append(const std::vector<Entry>& entries) {
  if (entries.empty()) return;
  const Index after = entries.front().index;
  KV_CHECK(after > committed_) << "append at " << after << " would overwrite committed "
                               << committed_;
  if (after == offset_ + entries_.size()) {
    entries_.insert(entries_.end(), entries.begin(), entries.end());
  } else if (after <= offset_) {
    // Replaces the whole unstable tail, and the stable log from `after` on.
    offset_ = after;
    entries_ = entries;
  } else {
    entries_.resize(after - offset_);
    entries_.insert(entries_.end(), entries.begin(), entries.end());
  }
  handed_ = std::min(handed_, after - 1);
}

Index RaftLog::FindConflict(const std::vector<Entry>& entries) const {
  for (const Entry& e : entries) {
    if (!MatchTerm(e.index, e.term)) return e.index;
  }
  return 0;
}

Index RaftLog::FindConflictByTerm(Index index, Term term, Term* found_term) const {
  for (; index > 0; --index) {
    Term t = 0;
    if (!TermAt(index, &t).ok()) break;  // compacted or past the end: stop here
    if (t <= term) {
      *found_term = t;
      return index;
    }
  }
  *found_term = 0;
  return index;
}

Index RaftLog::DurableIndex() const {
  if (snapshot_) return 0;
  if (entries_.empty()) return LastIndex();
  return offset_ - 1;
}

void RaftLog::Restore(const Snapshot& s) {
  committed_ = s.meta.index;
  snapshot_ = s;
  snapshot_handed_ = false;
  entries_.clear();
  offset_ = s.meta.index + 1;
  handed_ = s.meta.index;
}

bool RaftLog::HasUnhandedEntries() const { return !entries_.empty() && handed_ < UnstableLast(); }

std::vector<Entry> RaftLog::TakeUnhandedEntries() {
  const Index from = std::max(handed_ + 1, offset_);
  std::vector<Entry> out(entries_.begin() + (from - offset_), entries_.end());
  handed_ = UnstableLast();
  return out;
}

Snapshot RaftLog::TakeUnhandedSnapshot() {
  snapshot_handed_ = true;
  applied_ = std::max(applied_, snapshot_->meta.index);
  return *snapshot_;
}

Status RaftLog::TakeEntriesToApply(std::vector<Entry>* out) {
  Status s = Slice(applied_ + 1, committed_ + 1, max_committed_bytes_, out);
  if (!s.ok()) return s;
  if (!out->empty()) applied_ = out->back().index;
  return Status::OK();
}

void RaftLog::StableTo(Index i, Term t) {
  if (entries_.empty() || i < offset_ || i > UnstableLast()) return;
  // A term mismatch means the entries were replaced since: not ours to drop.
  if (entries_[i - offset_].term != t) return;
  entries_.erase(entries_.begin(), entries_.begin() + (i + 1 - offset_));
  offset_ = i + 1;
}

void RaftLog::StableSnapTo(Index i) {
  if (snapshot_ && snapshot_->meta.index == i) snapshot_.reset();
}

}  // namespace kv::raft
