// ReadyPipeline: turns every group's Raft Ready into durable writes, sent
// messages and work for the applier.
//
// In a pass it takes the Ready of every group that has one: sends what may
// go at once (a leader's appends go out before its own write, thesis
// 10.2.1), puts every group's entries and hard states into one WAL batch
// (one fdatasync for all groups) and submits it to the WAL thread while the
// loop goes on receiving and proposing. When a batch is durable (Finish, run
// on the loop thread when the WAL thread says so) the Readies complete in
// the order they were taken: messages that waited for durability go out,
// committed entries and confirmed reads go to the handler, Raft advances.
// A pass that only moves commit indexes, taken when no earlier write is in
// flight, hands its committed entries and reads over at once: they need
// nothing from its write (HandOverEarly).
// A storage failure is sticky: the pipeline stops and the node with it.
// Thread safety: loop thread only; the WAL thread reports through the loop.
#pragma once

#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <utility>
#include <vector>

#include "common/status.h"
#include "node/context.h"

namespace kv::node {

// What the node does with the parts of a Ready (loop thread).
class ReadyHandler {
 public:
  virtual ~ReadyHandler() = default;
  virtual void OnRoleChange(Group& g, const raft::SoftState& ss) = 0;
  // Queues messages for the peers; FlushMessages sends what was queued.
  virtual void QueueMessages(const std::vector<raft::Message>& msgs) = 0;
  virtual void FlushMessages() = 0;
  // Moves snapshot streams along (reports progress to Raft).
  virtual void PumpSnapshots() = 0;
  // A leader's snapshot, now in the storage, for the state machine.
  virtual void OnSnapshot(Group& g, raft::Snapshot snap) = 0;
  virtual void OnCommitted(Group& g, std::vector<raft::Entry> entries) = 0;
  virtual void OnReadStates(Group& g, const std::vector<raft::ReadState>& states) = 0;
  // The storage failed: the node must stop.
  virtual void OnFatal(const Status& s) = 0;
};

class ReadyPipeline {
 public:
  ReadyPipeline(NodeContext* ctx, ReadyHandler* handler) : ctx_(ctx), handler_(handler) {}

  // Takes and submits every group's Ready until none has one.
  void Process();
  // Completes, in order, the writes the WAL reported durable.
  void Finish();
  // Blocks until every write submitted so far is durable, and finishes them.
  void WaitForWrites();
  // OK until the storage failed; then the failure, for good.
  const Status& fatal() const { return fatal_; }
  // Bytes of entries handed to the WAL thread and not yet finished: a leader
  // whose own disk lags its followers' would otherwise hold every entry they
  // commit meanwhile (the client front sheds writes past a bound).
  uint64_t unwritten_bytes() const { return unwritten_bytes_; }

 private:
  // A pass's Readies and their WAL batch, from Submit to Finish.
  struct WriteInFlight {
    std::vector<std::pair<Group*, raft::Ready>> readies;
    // Set by the WAL thread (under mu_): the batch back, durable or not.
    storage::WriteBatch batch;
    Status status;
    bool done = false;
    uint64_t entry_bytes = 0;  // of the readies' new entries
  };
  // Hands the committed entries and confirmed reads of a write that only
  // moves commit indexes to the handler before the write is done.
  void HandOverEarly(WriteInFlight& write);
  void Submit(const std::shared_ptr<WriteInFlight>& write);
  void Fail(const Status& s);

  NodeContext* ctx_;
  ReadyHandler* handler_;
  Status fatal_;
  std::deque<std::shared_ptr<WriteInFlight>> writes_;  // oldest first
  uint64_t unwritten_bytes_ = 0;                       // of writes_
  std::mutex mu_;
  std::condition_variable cv_;
};

}  // namespace kv::node
