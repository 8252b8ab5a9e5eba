// Wal: the node's write-ahead log, shared by every Raft group on the node.
//
// Records (record.h) are appended to segment files named wal-<seq>.log in one
// directory. A segment is preallocated to a fixed size; when the next record
// does not fit, the segment is synced and a new one is created, preallocated,
// given a header and a checkpoint (every group's latest hard state and
// snapshot point, so older segments can be deleted), synced, and its directory
// synced. Within one group, a later entry record at index i supersedes every
// earlier record of that group at index >= i (a conflicting suffix); other
// groups are untouched.
//
// Group commit: Submit() queues a batch; one writer thread takes everything
// queued, writes it with one write per segment touched, issues ONE fdatasync,
// and only then runs each batch's completion (see max_batch_wait for how it
// keeps concurrent writers in one commit). A failed write or sync is
// sticky: that batch and every later one fail with the same IOError.
//
// Every write the WAL issues begins with a write-start record carrying an
// increasing number, and is issued only after the previous write was synced.
// Recovery (Open) replays every record in order. In the newest segment, damage
// (a bad checksum, a cut record, zeros) with no later write start after it is
// the last write torn by a crash, even when the disk kept some of that
// write's later pages but not earlier ones: it is cut off with one warning.
// Damage followed by a later write's start, or damage in any older segment (a
// segment is synced before the next is created), cannot come from a crash, so
// Open returns Corruption naming the file, the offset and what to do.
//
// Thread safety: Submit, Write, ReadRecord, ReleaseSegments and the accessors
// may be called from any thread. Completions run on the writer thread and must
// not call Write (they may call Submit).
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "common/histogram.h"
#include "common/latency_histogram.h"
#include "common/status.h"
#include "raft/types.h"
#include "storage/env.h"
#include "storage/record.h"

namespace kv::storage {

struct WalOptions {
  // Preallocated size of each segment file. A segment grows past it only to
  // fit a single record larger than a segment.
  uint64_t segment_size = 64ull << 20;
  // When fewer batches are queued than the last group commit completed, the
  // writer waits up to half that commit's sync time, capped by this, for the
  // writers it just woke to queue again, so they share the next sync.
  std::chrono::microseconds max_batch_wait{1000};
  // False skips the fdatasync after each group commit (segment creation is
  // still synced): fast, but a machine crash loses acknowledged writes, and
  // damage it leaves may then be reported as corruption rather than a torn
  // tail. For benchmarks and throwaway clusters only.
  bool sync = true;
};

// Where a record sits: segment sequence number and byte offset of its frame.
struct Location {
  uint64_t segment = 0;
  uint64_t offset = 0;
  bool operator==(const Location& o) const { return segment == o.segment && offset == o.offset; }
};

// Records to write together. Filled by the caller, handed to the WAL, and
// handed back on completion with the location of every record.
class WriteBatch {
 public:
  // Entries of one group, in index order with no gaps. A first index at or
  // below the group's last index replaces that suffix.
  void AppendEntries(raft::GroupId group, const std::vector<raft::Entry>& entries);
  void SetHardState(raft::GroupId group, const raft::HardState& hs);
  // Any other record (NodeStorage adds snapshot records this way).
  void Add(Record record);

  bool empty() const { return records_.empty(); }
  const std::vector<Record>& records() const { return records_; }
  // A batch that need not be durable at once (a Raft Ready whose only change
  // is the commit index) is written without an fdatasync of its own: it is
  // synced with the next batch that needs one, and a crash before that may
  // lose it. Default: synced.
  void set_sync(bool sync) { sync_ = sync; }
  bool sync() const { return sync_; }
  // After a successful write, locations()[i] is where records()[i] landed.
  const std::vector<Location>& locations() const { return locations_; }

 private:
  friend class Wal;
  std::vector<Record> records_;
  std::vector<Location> locations_;
  bool sync_ = true;
};

class Wal {
 public:
  // Called once per entry, hard state and snapshot record during recovery, in
  // log order (segment headers and write starts are the WAL's own). A non-OK
  // status stops recovery and is returned by Open.
  using ReplayFn = std::function<Status(const Record& record, const Location& where)>;
  // Called on the writer thread once the batch is durable (OK) or has failed;
  // a batch with sync() false: once written.
  using DoneFn = std::function<void(Status status, WriteBatch batch)>;

  // Opens (creating if needed) the WAL in `dir`, replays it through `replay`,
  // cuts a torn tail, and starts the writer thread. Corruption if a segment is
  // damaged (see above) or missing from the sequence; IOError on I/O failure.
  static Status Open(Env* env, const std::string& dir, const WalOptions& options,
                     const ReplayFn& replay, std::unique_ptr<Wal>* wal);

  // Writes and syncs whatever is still queued, runs its completions, stops.
  ~Wal();
  Wal(const Wal&) = delete;
  Wal& operator=(const Wal&) = delete;

  // Queues a batch; `done` runs on the writer thread after the batch's sync
  // returned (or failed). Batches become durable in submission order. A batch
  // with an entry too large to frame fails at once, on the calling thread,
  // with InvalidArgument.
  void Submit(WriteBatch batch, DoneFn done);

  // Queues the batch like Submit and waits until it is durable (or failed);
  // then *batch holds the locations. All callers served by one group commit
  // are woken by one notification. InvalidArgument at once for an entry too
  // large to frame. REQUIRES: not called from a completion.
  Status Write(WriteBatch* batch);

  // Reads back the record at `where`, verifying its checksum. Corruption if it
  // does not check out; NotFound if its segment was deleted.
  Status ReadRecord(const Location& where, Record* record) const;

  // Deletes segments from the oldest up, stopping at the first one still
  // needed, never the newest. A segment is no longer needed when, for every
  // group with entries in it, their highest index is <= released[group] (a
  // group missing from the map has released nothing).
  Status ReleaseSegments(const std::map<raft::GroupId, raft::Index>& released);

  // Sequence numbers of the segments on disk, oldest first.
  std::vector<uint64_t> Segments() const;
  // The sticky error: OK until a write or sync fails.
  Status error() const;
  // fdatasync calls the writer thread issued so far: one per group commit,
  // plus one per segment filled.
  uint64_t sync_count() const { return sync_count_.load(std::memory_order_relaxed); }
  // How long each group commit's sync took, and what the commits wrote.
  const LatencyHistogram& sync_latency() const { return sync_latency_; }
  uint64_t bytes_written() const { return bytes_written_.load(std::memory_order_relaxed); }
  uint64_t records_written() const { return records_written_.load(std::memory_order_relaxed); }
  // The bytes each group commit wrote (its records and write starts): how
  // much one write, and one fdatasync, carries.
  static constexpr std::array<double, 10> kBatchBytesBounds = {
      256, 1 << 10, 4 << 10, 16 << 10, 64 << 10, 256 << 10, 1 << 20, 4 << 20, 16 << 20, 64 << 20};
  const Histogram& batch_bytes() const { return batch_bytes_; }
  // The path of segment `seq`.
  std::string SegmentPath(uint64_t seq) const;

 private:
  struct Segment {
    std::string path;
    std::shared_ptr<ReadableFile> reader;
    // Highest entry index of each group with entries in this segment. Kept for
    // older segments; the newest one's lives in current_max_ until it rolls.
    std::map<raft::GroupId, raft::Index> max_index;
  };
  // A queued batch. Submit's batches have `done`; Write's have `waiter`, the
  // caller's batch and status to fill in before its ticket is published.
  struct Pending {
    WriteBatch batch;
    DoneFn done;
    WriteBatch* waiter = nullptr;
    Status* waiter_status = nullptr;
    uint64_t ticket = 0;
  };

  Wal(Env* env, std::string dir, const WalOptions& options);

  Status Recover(const ReplayFn& replay);
  // Checks one segment's contents and replays it. Sets *end to the end of its
  // valid records, *torn if non-zero bytes follow them that are no record.
  // *end is 0 when the newest segment's header or checkpoint is incomplete:
  // its creation was cut short, and it is to be created again.
  Status ReplaySegment(uint64_t seq, const std::string& buf, bool newest, const ReplayFn& replay,
                       uint64_t* end, bool* torn);
  // Notes a record's effect on the checkpoint state and current segment.
  void Track(const Record& record);
  // Creates segment seq_ + 1 with room for at least `min_free` bytes of
  // records after its checkpoint, and makes it the one being written.
  Status Roll(uint64_t min_free);
  // Writes the queued batches and syncs once. Runs on the writer thread.
  Status WriteBatches(std::vector<Pending>* batches);
  void WriterLoop();

  Env* const env_;
  const std::string dir_;
  const WalOptions options_;

  // Serialises ReleaseSegments, so removals happen oldest first. Taken before mu_.
  std::mutex release_mu_;
  mutable std::mutex mu_;
  std::condition_variable work_cv_;
  std::deque<Pending> queue_;  // guarded by mu_
  // Write() callers sleep on written_cv_ until finished_ticket_ reaches their
  // ticket: one wake-up per group commit, however many callers it serves.
  std::condition_variable written_cv_;
  uint64_t next_ticket_ = 0;              // guarded by mu_
  uint64_t finished_ticket_ = 0;          // guarded by mu_
  bool closing_ = false;                  // guarded by mu_
  Status error_;                          // guarded by mu_
  std::map<uint64_t, Segment> segments_;  // guarded by mu_
  std::atomic<uint64_t> sync_count_{0};
  LatencyHistogram sync_latency_;
  std::atomic<uint64_t> bytes_written_{0};
  std::atomic<uint64_t> records_written_{0};
  Histogram batch_bytes_{kBatchBytesBounds, 1};

  // Owned by the writer thread (and by Open before it starts).
  std::unique_ptr<WritableFile> file_;
  uint64_t seq_ = 0;       // segment being written
  uint64_t offset_ = 0;    // end of its records
  uint64_t capacity_ = 0;  // its preallocated size
  std::map<raft::GroupId, raft::Index> current_max_;
  std::map<raft::GroupId, raft::HardState> last_hard_state_;
  std::map<raft::GroupId, raft::SnapshotMeta> last_snapshot_;
  uint64_t write_seq_ = 0;  // number of the newest write issued or replayed
  std::chrono::steady_clock::duration last_sync_{};  // how long the last commit's sync took
  // The bytes of a group commit, kept from one commit to the next: a fresh
  // multi-MiB buffer per commit costs a page fault per 4 KiB, far more than
  // encoding the records (kept only up to kKeptWriteBufferBytes).
  std::string write_buf_;

  std::thread writer_;
};

}  // namespace kv::storage
