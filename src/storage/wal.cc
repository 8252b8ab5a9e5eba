#include "storage/wal.h"

#include <algorithm>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <iterator>

#include "common/logging.h"
#include "common/thread_name.h"

namespace kv::storage {

namespace {

constexpr char kSegmentPrefix[] = "wal-";
constexpr char kSegmentSuffix[] = ".log";
constexpr size_t kSegmentNameSize = 4 + 16 + 4;

bool ParseSegmentName(const std::string& name, uint64_t* seq) {
  if (name.size() != kSegmentNameSize || name.compare(0, 4, kSegmentPrefix) != 0 ||
      name.compare(20, 4, kSegmentSuffix) != 0) {
    return false;
  }
  uint64_t v = 0;
  for (size_t i = 4; i < 20; ++i) {
    const char c = name[i];
    int digit = 0;
    if (c >= '0' && c <= '9') {
      digit = c - '0';
    } else if (c >= 'a' && c <= 'f') {
      digit = c - 'a' + 10;
    } else {
      return false;
    }
    v = v << 4 | static_cast<uint64_t>(digit);
  }
  *seq = v;
  return true;
}

// Size of a write-start frame: header and an 8-byte sequence number.
constexpr size_t kWriteStartSize = kFrameHeaderSize + 8;

// The group-commit buffer is kept for the next commit up to this size; a
// larger one (a burst of large values) is given back.
constexpr size_t kKeptWriteBufferBytes = 16 << 20;

// The offset of the first checked-out write-start frame after `from` that
// numbers a write later than `seq`, or npos. Such a frame proves the write
// damaged at `from` had been synced: a torn tail has none after it.
size_t FindLaterWriteStart(std::string_view buf, size_t from, uint64_t seq) {
  size_t y = from + 1;
  while (y < buf.size()) {
    const size_t nz = buf.find_first_not_of('\0', y);
    if (nz == std::string_view::npos) break;
    // Frames starting before this point would have all-zero headers.
    if (nz >= y + kFrameHeaderSize) y = nz - kFrameHeaderSize + 1;
    size_t size = 0;
    RecordType type{};
    std::string_view payload;
    Record record;
    if (CheckFrame(buf, y, &size, &type, &payload) == FrameStatus::kOk &&
        type == RecordType::kWriteStart && DecodeRecord(type, payload, &record).ok() &&
        record.seq > seq) {
      return y;
    }
    ++y;
  }
  return std::string_view::npos;
}

Status Damaged(const std::string& path, uint64_t offset, const std::string& what) {
  return Status::Corruption(
      "WAL segment " + path + " is damaged at offset " + std::to_string(offset) + ": " + what +
      ". This is not a torn write from a crash, so the node refuses to start rather than drop "
      "acknowledged writes. Keep the file for inspection; to recover, restore this node's data "
      "directory from a backup, or remove it and re-add the node so it catches up from its "
      "peers.");
}

}  // namespace

void WriteBatch::AppendEntries(raft::GroupId group, const std::vector<raft::Entry>& entries) {
  for (const raft::Entry& e : entries) records_.push_back(Record::Entry(group, e));
}

void WriteBatch::SetHardState(raft::GroupId group, const raft::HardState& hs) {
  records_.push_back(Record::HardState(group, hs));
}

void WriteBatch::Add(Record record) { records_.push_back(std::move(record)); }

Wal::Wal(Env* env, std::string dir, const WalOptions& options)
    : env_(env), dir_(std::move(dir)), options_(options) {}

Status Wal::Open(Env* env, const std::string& dir, const WalOptions& options,
                 const ReplayFn& replay, std::unique_ptr<Wal>* wal) {
  std::unique_ptr<Wal> w(new Wal(env, dir, options));
  Status s = w->Recover(replay);
  if (!s.ok()) return s;
  Wal* raw = w.get();
  w->writer_ = std::thread([raw] {
    NameThisThread("kv-wal");
    raw->WriterLoop();
  });
  *wal = std::move(w);
  return Status::OK();
}

Wal::~Wal() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    closing_ = true;
  }
  work_cv_.notify_one();
  if (writer_.joinable()) writer_.join();
}

std::string Wal::SegmentPath(uint64_t seq) const {
  char name[kSegmentNameSize + 1];
  std::snprintf(name, sizeof name, "%s%016" PRIx64 "%s", kSegmentPrefix, seq, kSegmentSuffix);
  return dir_ + "/" + name;
}

Status Wal::Recover(const ReplayFn& replay) {
  Status s = env_->CreateDir(dir_);
  if (!s.ok()) return s;
  std::vector<std::string> names;
  s = env_->ListDir(dir_, &names);
  if (!s.ok()) return s;
  std::vector<uint64_t> seqs;
  for (const std::string& name : names) {
    uint64_t seq = 0;
    if (ParseSegmentName(name, &seq)) seqs.push_back(seq);
  }
  std::sort(seqs.begin(), seqs.end());
  for (size_t i = 1; i < seqs.size(); ++i) {
    if (seqs[i] != seqs[i - 1] + 1) {
      return Status::Corruption("WAL segment " + SegmentPath(seqs[i - 1] + 1) +
                                " is missing (segments before and after it exist); the WAL "
                                "cannot be replayed. Restore this node's data directory from a "
                                "backup, or remove it and re-add the node.");
    }
  }
  if (seqs.empty()) return Roll(0);

  for (size_t i = 0; i < seqs.size(); ++i) {
    const uint64_t seq = seqs[i];
    const std::string path = SegmentPath(seq);
    const bool newest = i + 1 == seqs.size();
    std::string buf;
    s = ReadFileToString(env_, path, &buf);
    if (!s.ok()) return s;
    uint64_t end = 0;
    bool torn = false;
    s = ReplaySegment(seq, buf, newest, replay, &end, &torn);
    if (!s.ok()) return s;
    std::unique_ptr<ReadableFile> reader;
    s = env_->OpenReadable(path, &reader);
    if (!s.ok()) return s;
    {
      std::lock_guard<std::mutex> lock(mu_);
      Segment& seg = segments_[seq];
      seg.path = path;
      seg.reader = std::move(reader);
      if (!newest) seg.max_index.swap(current_max_);
    }
    if (!newest) continue;

    seq_ = seq;
    if (end == 0) {
      KV_LOG(kWarn) << "WAL segment " << path
                    << " was cut short while being created (a crash); recreating it";
      {
        std::lock_guard<std::mutex> lock(mu_);
        segments_.erase(seq);
      }
      seq_ = seq - 1;
      return Roll(0);
    }
    s = env_->OpenWritable(path, &file_);
    if (!s.ok()) return s;
    offset_ = end;
    capacity_ = std::max<uint64_t>(buf.size(), options_.segment_size);
    if (torn) {
      KV_LOG(kWarn) << "WAL segment " << path << ": torn write at offset " << end
                    << " (a crash mid-write; nothing after it was ever acknowledged), truncated";
      s = file_->Truncate(end);
      if (s.ok()) s = file_->Allocate(capacity_);
      if (s.ok()) s = file_->Sync();
      if (!s.ok()) return s;
    } else if (buf.size() < capacity_) {
      s = file_->Allocate(capacity_);
      if (!s.ok()) return s;
    }
  }
  return Status::OK();
}

Status Wal::ReplaySegment(uint64_t seq, const std::string& buf, bool newest, const ReplayFn& replay,
                          uint64_t* end, bool* torn) {
  const std::string path = SegmentPath(seq);
  size_t off = 0;
  uint64_t head_end = 0;  // end of the header and checkpoint
  bool written = false;   // a write followed them
  while (true) {
    size_t size = 0;
    RecordType type{};
    std::string_view payload;
    if (CheckFrame(buf, off, &size, &type, &payload) != FrameStatus::kOk) break;
    Record record;
    Status s = DecodeRecord(type, payload, &record);
    if (!s.ok()) return Damaged(path, off, s.message());
    if (off == 0) {
      if (type != RecordType::kSegmentHeader || record.seq != seq) {
        return Damaged(path, off, "the segment header is missing or names another segment");
      }
      head_end = size + record.checkpoint_bytes;
    } else if (type == RecordType::kSegmentHeader) {
      return Damaged(path, off, "a segment header in the middle of a segment");
    } else {
      written = written || type == RecordType::kWriteStart;
      if (type != RecordType::kWriteStart) s = replay(record, Location{seq, off});
      if (!s.ok()) return s;
      Track(record);
    }
    off += size;
  }
  *end = off;
  *torn = buf.find_first_not_of('\0', off) != std::string::npos;
  if (!*torn) {
    if (off >= head_end) return Status::OK();
    // The checkpoint stops short and nothing follows: cut short while being
    // created, in the newest segment only.
    if (newest) *end = 0;
    return newest ? Status::OK() : Damaged(path, off, "the segment's checkpoint stops short");
  }
  const size_t next = FindLaterWriteStart(buf, off, write_seq_);
  if (next != std::string::npos) {
    return Damaged(path, off,
                   "a damaged or zeroed record, and a later write (synced after it) starts at "
                   "offset " +
                       std::to_string(next));
  }
  if (!newest) {
    return Damaged(path, off,
                   "damaged bytes at the end of a segment that was synced before the next one "
                   "was created");
  }
  // Torn before any write: the crash cut the segment's creation short, and
  // a partial checkpoint must not stay (older segments may go on its word).
  if (!written) *end = 0;
  return Status::OK();
}

void Wal::Track(const Record& record) {
  switch (record.type) {
    case RecordType::kEntry: {
      raft::Index& max = current_max_[record.group];
      max = std::max(max, record.entry.index);
      break;
    }
    case RecordType::kHardState:
      last_hard_state_[record.group] = record.hard_state;
      break;
    case RecordType::kSnapshot:
      last_snapshot_[record.group] = record.snapshot;
      break;
    case RecordType::kWriteStart:
      write_seq_ = std::max(write_seq_, record.seq);
      break;
    case RecordType::kSegmentHeader:
      break;
  }
}

Status Wal::Roll(uint64_t min_free) {
  const uint64_t seq = seq_ + 1;
  std::string checkpoint;
  for (const auto& [group, hs] : last_hard_state_) {
    EncodeRecord(Record::HardState(group, hs), &checkpoint);
  }
  // replace_log is false: the checkpoint restates the snapshot point, it does
  // not replace the entries written after it.
  for (const auto& [group, meta] : last_snapshot_) {
    EncodeRecord(Record::Snapshot(group, meta, false), &checkpoint);
  }
  std::string head;
  EncodeRecord(Record::SegmentHeader(seq, checkpoint.size()), &head);
  head += checkpoint;
  const uint64_t capacity = std::max<uint64_t>(options_.segment_size, head.size() + min_free);
  const std::string path = SegmentPath(seq);
  std::unique_ptr<WritableFile> file;
  std::unique_ptr<ReadableFile> reader;
  Status s = env_->OpenWritable(path, &file);
  if (s.ok()) s = file->Truncate(0);
  if (s.ok()) s = file->Allocate(capacity);
  if (s.ok()) s = file->WriteAt(0, head);
  if (s.ok()) s = file->Sync();
  if (s.ok()) s = env_->SyncDir(dir_);
  if (s.ok()) s = env_->OpenReadable(path, &reader);
  if (!s.ok()) return s;
  {
    std::lock_guard<std::mutex> lock(mu_);
    // Hand the finished segment's entry indices over (file_ is null when
    // there is no segment being written yet).
    if (file_) segments_[seq_].max_index = std::move(current_max_);
    Segment& seg = segments_[seq];
    seg.path = path;
    seg.reader = std::move(reader);
  }
  current_max_.clear();
  file_ = std::move(file);
  seq_ = seq;
  offset_ = head.size();
  capacity_ = capacity;
  return Status::OK();
}

void Wal::Submit(WriteBatch batch, DoneFn done) {
  for (const Record& r : batch.records()) {
    if (r.type == RecordType::kEntry && r.entry.data.size() > kMaxPayloadSize - 64) {
      done(Status::InvalidArgument("entry too large for the WAL"), std::move(batch));
      return;
    }
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    Pending p;
    p.batch = std::move(batch);
    p.done = std::move(done);
    p.ticket = ++next_ticket_;
    queue_.push_back(std::move(p));
  }
  work_cv_.notify_one();
}

Status Wal::Write(WriteBatch* batch) {
  for (const Record& r : batch->records()) {
    if (r.type == RecordType::kEntry && r.entry.data.size() > kMaxPayloadSize - 64) {
      return Status::InvalidArgument("entry too large for the WAL");
    }
  }
  Status status;
  std::unique_lock<std::mutex> lock(mu_);
  Pending p;
  p.batch = std::move(*batch);
  p.waiter = batch;
  p.waiter_status = &status;
  p.ticket = ++next_ticket_;
  const uint64_t ticket = p.ticket;
  queue_.push_back(std::move(p));
  work_cv_.notify_one();
  written_cv_.wait(lock, [this, ticket] { return finished_ticket_ >= ticket; });
  return status;
}

Status Wal::WriteBatches(std::vector<Pending>* batches) {
  size_t records = 0;
  for (const Pending& p : *batches) records += p.batch.records_.size();
  // Empty batches ask only for what earlier syncs already made durable.
  if (records == 0) return Status::OK();
  std::string& buf = write_buf_;
  buf.clear();
  EncodeRecord(Record::WriteStart(++write_seq_), &buf);
  uint64_t buf_start = offset_;
  uint64_t written = 0;  // by this commit, in every segment it touched
  for (Pending& p : *batches) {
    p.batch.locations_.clear();
    for (const Record& r : p.batch.records_) {
      size_t at = buf.size();
      EncodeRecord(r, &buf);
      if (buf_start + buf.size() > capacity_) {
        // The record does not fit: finish this segment and move to a new one.
        std::string frame = buf.substr(at);
        buf.resize(at);
        Status s = file_->WriteAt(buf_start, buf);
        bytes_written_.fetch_add(buf.size(), std::memory_order_relaxed);
        written += buf.size();
        if (s.ok()) s = file_->Sync();
        sync_count_.fetch_add(1, std::memory_order_relaxed);
        if (s.ok()) s = Roll(kWriteStartSize + frame.size());
        if (!s.ok()) return s;
        buf_start = offset_;
        buf.clear();
        EncodeRecord(Record::WriteStart(++write_seq_), &buf);
        at = buf.size();
        buf += frame;
      }
      p.batch.locations_.push_back(Location{seq_, buf_start + at});
      Track(r);
    }
  }
  Status s = file_->WriteAt(buf_start, buf);
  offset_ = buf_start + buf.size();
  bytes_written_.fetch_add(buf.size(), std::memory_order_relaxed);
  records_written_.fetch_add(records, std::memory_order_relaxed);
  batch_bytes_.Observe(static_cast<double>(written + buf.size()));
  if (buf.capacity() > kKeptWriteBufferBytes) std::string().swap(buf);
  bool sync = false;
  for (const Pending& p : *batches) sync = sync || p.batch.sync_;
  if (!sync) return s;
  const auto start = std::chrono::steady_clock::now();
  if (s.ok() && options_.sync) s = file_->Sync();
  last_sync_ = std::chrono::steady_clock::now() - start;
  sync_count_.fetch_add(1, std::memory_order_relaxed);
  if (options_.sync) sync_latency_.Observe(std::chrono::duration<double>(last_sync_).count());
  return s;
}

void Wal::WriterLoop() {
  std::unique_lock<std::mutex> lock(mu_);
  size_t last_round = 0;  // batches the previous group commit completed
  while (true) {
    work_cv_.wait(lock, [this] { return closing_ || !queue_.empty(); });
    if (queue_.empty()) return;
    if (queue_.size() < last_round) {
      // The writers the last commit woke are probably about to write again.
      // Without this pause they would miss this commit and wait a whole sync
      // for the next, and the writers would settle into two halves that take
      // turns: half the batching, twice the latency.
      const auto pause =
          std::min<std::chrono::steady_clock::duration>(last_sync_ / 2, options_.max_batch_wait);
      work_cv_.wait_for(lock, pause, [&] { return closing_ || queue_.size() >= last_round; });
    }
    std::vector<Pending> batches(std::make_move_iterator(queue_.begin()),
                                 std::make_move_iterator(queue_.end()));
    queue_.clear();
    last_round = batches.size();
    const Status sticky = error_;
    lock.unlock();
    Status s = sticky.ok() ? WriteBatches(&batches) : sticky;
    if (!s.ok() && sticky.ok()) {
      KV_LOG(kError) << "WAL write failed; refusing every later write: " << s.ToString();
      lock.lock();
      error_ = s;
      lock.unlock();
    }
    for (Pending& p : batches) {
      if (p.waiter != nullptr) {
        *p.waiter = std::move(p.batch);
        *p.waiter_status = s;
      } else {
        p.done(s, std::move(p.batch));
      }
    }
    lock.lock();
    finished_ticket_ = batches.back().ticket;
    written_cv_.notify_all();
  }
}

Status Wal::ReadRecord(const Location& where, Record* record) const {
  std::shared_ptr<ReadableFile> reader;
  std::string path;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = segments_.find(where.segment);
    if (it == segments_.end()) {
      return Status::NotFound("WAL segment " + std::to_string(where.segment) + " was deleted");
    }
    reader = it->second.reader;
    path = it->second.path;
  }
  std::string buf;
  Status s = reader->Read(where.offset, kFrameHeaderSize, &buf);
  if (!s.ok()) return s;
  if (buf.size() == kFrameHeaderSize && PayloadLength(buf) <= kMaxPayloadSize) {
    s = reader->Read(where.offset, kFrameHeaderSize + PayloadLength(buf), &buf);
    if (!s.ok()) return s;
  }
  size_t size = 0;
  RecordType type{};
  std::string_view payload;
  if (CheckFrame(buf, 0, &size, &type, &payload) != FrameStatus::kOk) {
    return Damaged(path, where.offset, "a record read back does not match its checksum");
  }
  s = DecodeRecord(type, payload, record);
  if (!s.ok()) return Damaged(path, where.offset, s.message());
  return Status::OK();
}

Status Wal::ReleaseSegments(const std::map<raft::GroupId, raft::Index>& released) {
  std::lock_guard<std::mutex> release_lock(release_mu_);
  std::vector<std::string> doomed;
  {
    std::lock_guard<std::mutex> lock(mu_);
    while (segments_.size() > 1) {
      auto it = segments_.begin();
      bool needed = false;
      for (const auto& [group, max] : it->second.max_index) {
        auto r = released.find(group);
        needed = needed || r == released.end() || max > r->second;
      }
      if (needed) break;
      doomed.push_back(it->second.path);
      segments_.erase(it);
    }
  }
  // Oldest first, one directory sync per removal: the removals reach the disk
  // in order, so a crash never leaves a hole in the sequence.
  for (const std::string& path : doomed) {
    Status s = env_->RemoveFile(path);
    if (s.ok()) s = env_->SyncDir(dir_);
    if (!s.ok()) return s;
  }
  return Status::OK();
}

std::vector<uint64_t> Wal::Segments() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<uint64_t> seqs;
  for (const auto& [seq, seg] : segments_) seqs.push_back(seq);
  return seqs;
}

Status Wal::error() const {
  std::lock_guard<std::mutex> lock(mu_);
  return error_;
}

}  // namespace kv::storage
