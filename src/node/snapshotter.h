// Snapshotter: decides when a group takes a snapshot and takes it without
// holding up the loop: the group's strand copies the state machine at the
// index everything up to which it has applied, a strand of its own writes
// and syncs the file, and the loop thread records it in the storage once the
// WAL writes submitted before are durable (which lets the WAL drop the
// segments below it).
// Thread safety: every call on the loop thread.
#pragma once

#include <cstdint>

#include "node/context.h"
#include "node/ready_pipeline.h"

namespace kv::node {

class Snapshotter {
 public:
  Snapshotter(NodeContext* ctx, ReadyPipeline* pipeline) : ctx_(ctx), pipeline_(pipeline) {}

  // Reads the WAL's newest segment (every few ticks is enough).
  void RefreshWalSegment();
  // A group just opened: its entries count from the WAL's newest segment.
  void OnGroupOpened(Group& g) const { g.snapshot_segment = wal_segment_; }
  // Takes a snapshot of g when it has applied snapshot_entries since the
  // last one, or when its entries keep old WAL segments on disk.
  void Maybe(Group& g);

 private:
  bool HoldsWal(const Group& g) const;

  NodeContext* ctx_;
  ReadyPipeline* pipeline_;
  uint64_t wal_segment_ = 0;  // the WAL's newest segment
};

}  // namespace kv::node
