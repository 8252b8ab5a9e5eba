#include "node/snapshotter.h"

#include <algorithm>
#include <chrono>
#include <memory>

#include "common/logging.h"

namespace kv::node {

namespace {

// Worker strands: a group's id applies its entries; this bit set on it, its
// snapshot files are written.
constexpr uint64_t kSnapshotStrand = uint64_t{1} << 63;

// A state view as snapshot data: serialized in 1 MiB pieces straight into
// the snapshot file, never as one string.
class ViewData : public storage::SnapshotData {
 public:
  explicit ViewData(const StateView* view) : view_(view), size_(view->SerializedSize()) {}
  uint64_t size() const override { return size_; }
  Status WriteTo(const Emit& emit) const override { return view_->SerializeTo(1 << 20, emit); }

 private:
  const StateView* view_;
  uint64_t size_;
};

}  // namespace

bool Snapshotter::HoldsWal(const Group& g) const {
  // A group the WAL has moved two segments past since its last snapshot:
  // its entries there keep the segments on disk (a quiet group of a sharded
  // node may take many segments to reach snapshot_entries). But a snapshot
  // writes the whole state: wait until the log it frees is at least as large,
  // or large values would cost far more in snapshots than in the log itself
  // (1 MiB values over 1 GiB of data: a 1 GiB snapshot every 128 MiB).
  if (g.snapshot_segment + 2 > wal_segment_) return false;
  const uint64_t held = (wal_segment_ - g.snapshot_segment) * ctx_->cfg.wal_segment_bytes;
  return held >= g.progress().bytes;
}

void Snapshotter::RefreshWalSegment() {
  const std::vector<uint64_t> segments = ctx_->storage->wal()->Segments();
  if (!segments.empty()) wal_segment_ = segments.back();
}

void Snapshotter::Maybe(Group& g) {
  // Only once everything committed is with the strand, so that the
  // configuration we record matches the data the strand will copy.
  const raft::Index index = g.handed_to_workers;
  if (g.snapshot_in_progress || index != g.raft->commit() || index <= g.last_snapshot_index) {
    return;
  }
  if (index < g.last_snapshot_index + ctx_->cfg.snapshot_entries && !HoldsWal(g)) return;
  g.snapshot_in_progress = true;
  g.snapshot_segment = wal_segment_;
  NodeContext* ctx = ctx_;
  ReadyPipeline* pipeline = pipeline_;
  ctx->workers->Post(g.id, [ctx, pipeline, &g, index, conf = g.raft->conf_state()] {
    // The strand has applied exactly up to `index` here: take a view of the
    // state (a pointer per key; the records are shared, not copied).
    auto view = std::make_shared<StateView>(g.sm.TakeView());
    // Serializing it and writing and syncing the file run on a strand of
    // their own, beside the group's applies and off the loop thread.
    ctx->workers->Post(g.id | kSnapshotStrand, [ctx, pipeline, &g, index, conf, view]() mutable {
      raft::SnapshotMeta meta;
      const ViewData data(view.get());
      const auto start = std::chrono::steady_clock::now();
      Status s = ctx->storage->SaveSnapshot(g.id, index, conf, data, &meta);
      if (s.ok()) {
        ctx->metrics->ObserveSnapshot(
            std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
      }
      const uint64_t bytes = data.size();
      view.reset();  // the records replaced since can go now
      ctx->loop->Post([ctx, pipeline, &g, index, meta, s, bytes]() {
        g.snapshot_in_progress = false;
        // On failure too: the next try comes after another snapshot_entries.
        g.last_snapshot_index = std::max(g.last_snapshot_index, index);
        Status cs = s;
        if (cs.ok()) {
          // The storage records it only after the writes submitted before.
          pipeline->WaitForWrites();
          if (!pipeline->fatal().ok()) return;
          cs = ctx->storage->CommitSnapshot(g.id, meta);
        }
        if (!cs.ok()) {
          KV_LOG(kWarn) << "group " << g.id << ": snapshot at " << index
                        << " not taken: " << cs.ToString();
          return;
        }
        g.snapshot_bytes = bytes;
        SnapshotEvent event;
        event.group = g.id;
        event.index = index;
        ctx->events->Publish(event);
        KV_LOG(kInfo) << "node " << ctx->cfg.id << " group " << g.id << " took a snapshot at "
                      << index;
      });
    });
  });
}

}  // namespace kv::node
