#include "node/ready_pipeline.h"

#include "common/logging.h"

namespace kv::node {

void ReadyPipeline::Process() {
  // Pumping snapshots reports progress to Raft, which may have more to do.
  while (fatal_.ok()) {
    handler_->PumpSnapshots();
    std::shared_ptr<WriteInFlight> write;
    for (const auto& [id, g] : ctx_->groups) {
      if (!g->raft->HasReady()) continue;
      if (!write) write = std::make_shared<WriteInFlight>();
      write->readies.emplace_back(g.get(), g->raft->GetReady());
    }
    if (!write) return;
    Status s;
    bool sync = false;
    for (auto& [g, rd] : write->readies) {
      if (rd.soft_state) handler_->OnRoleChange(*g, *rd.soft_state);
      handler_->QueueMessages(rd.messages);
      if (rd.snapshot && s.ok()) {
        // A leader's snapshot replaces the log: only once every earlier write
        // is in the storage.
        WaitForWrites();
        s = fatal_.ok() ? ctx_->storage->InstallSnapshot(g->id, *rd.snapshot) : fatal_;
        if (s.ok()) handler_->OnSnapshot(*g, std::move(*rd.snapshot));
      }
      if (!rd.entries.empty()) write->batch.AppendEntries(g->id, rd.entries);
      for (const raft::Entry& e : rd.entries) write->entry_bytes += e.ByteSize();
      if (rd.hard_state) write->batch.SetHardState(g->id, *rd.hard_state);
      sync = sync || rd.must_sync;
    }
    // Only a commit index moved: no fdatasync of its own (a later one covers it).
    write->batch.set_sync(sync);
    // A leader's appends go out before its own write (thesis 10.2.1).
    handler_->FlushMessages();
    if (!s.ok()) return Fail(s);
    if (!sync) {
      Finish();  // the earlier writes the WAL is done with
      if (!fatal_.ok()) return;
      if (writes_.empty()) HandOverEarly(*write);
    }
    Submit(write);
    Finish();
  }
}

void ReadyPipeline::HandOverEarly(WriteInFlight& write) {
  // These Readies hold no entries and every earlier write is durable (the
  // caller checks that no write is in flight: the condition this rests on),
  // so every entry they commit, handed out in an earlier write, is in the
  // storage already; a leader may commit what only its followers have
  // written (thesis 10.2.1), so "committed" alone would not do. Their write,
  // a commit index without an fdatasync, guards nothing the applier or a
  // read needs: waiting for it would add a hand-off to the WAL thread and
  // back to every write's reply.
  for (auto& [g, rd] : write.readies) {
    if (!rd.committed_entries.empty()) handler_->OnCommitted(*g, std::move(rd.committed_entries));
    rd.committed_entries.clear();
    if (!rd.read_states.empty()) handler_->OnReadStates(*g, rd.read_states);
    rd.read_states.clear();
  }
}

void ReadyPipeline::Submit(const std::shared_ptr<WriteInFlight>& write) {
  writes_.push_back(write);
  unwritten_bytes_ += write->entry_bytes;
  if (write->batch.empty()) {
    write->done = true;
    return;
  }
  ctx_->storage->wal()->Submit(std::move(write->batch),
                               [this, write](Status st, storage::WriteBatch b) {
                                 {
                                   std::lock_guard<std::mutex> lock(mu_);
                                   write->status = std::move(st);
                                   write->batch = std::move(b);
                                   write->done = true;
                                 }
                                 cv_.notify_all();
                                 ctx_->loop->Post([this] { Finish(); });
                               });
}

void ReadyPipeline::Finish() {
  while (fatal_.ok() && !writes_.empty()) {
    std::shared_ptr<WriteInFlight> write = writes_.front();
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!write->done) return;
    }
    writes_.pop_front();
    unwritten_bytes_ -= write->entry_bytes;
    Status s = write->status;
    if (s.ok() && !write->batch.empty()) s = ctx_->storage->ApplyWritten(write->batch);
    if (!s.ok()) return Fail(s);
    for (auto& [g, rd] : write->readies) {
      handler_->QueueMessages(rd.persisted_messages);
      if (!rd.committed_entries.empty()) handler_->OnCommitted(*g, std::move(rd.committed_entries));
      if (!rd.read_states.empty()) handler_->OnReadStates(*g, rd.read_states);
      g->raft->Advance(rd);
    }
    handler_->FlushMessages();
  }
}

void ReadyPipeline::WaitForWrites() {
  while (fatal_.ok() && !writes_.empty()) {
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [this] { return writes_.front()->done; });
    }
    Finish();
  }
}

void ReadyPipeline::Fail(const Status& s) {
  // The WAL's error is sticky: without durable storage this node must not
  // acknowledge or vote again. Stop rather than pretend.
  if (!fatal_.ok()) return;
  fatal_ = s;
  handler_->OnFatal(s);
}

}  // namespace kv::node
