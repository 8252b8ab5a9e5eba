// Applier: the worker side of a node. Each group's committed entries are
// applied to its state machine on the group's strand (node/worker_pool.h),
// in log order; reads are served there once the state machine has reached
// their index; a leader's snapshot is installed there. A small batch of
// entries or reads runs on the loop thread instead, in the strand's place,
// when the strand is idle (IsSmall). The replies and
// events this produces go back to the loop thread as an Outgoing, which
// the Deliver callback sends: no worker touches a socket.
// Thread safety: the public calls on the loop thread; the work on strands.
#pragma once

#include <functional>
#include <utility>
#include <vector>

#include "kv/command.h"
#include "kv/state_machine.h"
#include "net/client_codec.h"
#include "node/context.h"
#include "node/request.h"

namespace kv::node {

class Applier {
 public:
  // Runs on the loop thread with what a strand produced.
  using Deliver = std::function<void(Outgoing out)>;

  Applier(NodeContext* ctx, Deliver deliver) : ctx_(ctx), deliver_(std::move(deliver)) {}

  // Hands g's committed entries to its strand, with the clients waiting on
  // their indexes.
  void Apply(Group& g, std::vector<raft::Entry> entries);
  // Serves reads once g's state machine has applied `index` (0: at once,
  // a stale read).
  void Read(Group& g, raft::Index index, std::vector<Pending> reads);
  // Answers p with the piece of backup `id` at `cursor`, read on the
  // strand of the backup's group (node/backups.h).
  void ServeBackupPiece(raft::GroupId group, Pending p, uint64_t id, uint64_t cursor);
  // Replaces g's state machine with a snapshot from the leader.
  void Install(Group& g, raft::Snapshot snap);

  // Starts watch `handle` of g's (node/watch_hub.h): its messages go to
  // `to`, charged to `share`.
  void Watch(Group& g, uint64_t handle, Pending to, ReplyBudget::Share share, const ScanSpec& range,
             uint64_t from_index);
  // Ends watch `handle` of g's, without a word to its client.
  void Unwatch(Group& g, uint64_t handle);
  // The timer: g's watches that wait for room or are due a progress message.
  void TickWatches(Group& g);

 private:
  // Whether a batch of entries (or reads, by count) is small enough to run
  // on the loop thread when its strand is idle (WorkerPool::RunHereIfIdle):
  // the hand-offs to a worker and back would cost more than the work.
  // Measured (bench/write-cost, 3 nodes, 16 shards, 64 writes in flight):
  // a quarter less CPU and 40% fewer context switches per write, 8 or
  // 32 entries alike; the bound keeps the loop's pause short.
  static bool IsSmall(const std::vector<raft::Entry>& entries);
  static constexpr size_t kInlineEntries = 16;
  static constexpr size_t kInlineBytes = 16 << 10;
  void ApplyOnStrand(Group& g, const std::vector<raft::Entry>& entries,
                     std::vector<std::pair<raft::Index, Pending>> writes);
  // The kv events (kv.put, kv.del, kv.expire) of an entry's changes.
  static void AddEvents(const std::vector<Change>& changes, uint64_t index,
                        std::vector<Event>* events);
  // A transaction's reply: its branch and its ops' results (result: the
  // branch, as StateMachine::Apply gave it).
  static void FillTxnReply(const Group& g, const Pending& p, ApplyResult result, bool duplicate,
                           const std::vector<TxnOpResult>& txn, net::ClientReply* reply);
  void ServeRead(Group& g, const Pending& p, Outgoing* out);
  // Serves the reads waiting for what the state machine has now applied.
  void ServeWaitingReads(Group& g, Outgoing* out);
  // Reads the metadata group's member keys into `out` (sharded clusters).
  void AddMemberKeys(Group& g, Outgoing* out);
  // Sends g's watches what they are due (node/watch_hub.h); `tick`: the
  // progress messages too.
  void DeliverWatches(Group& g, bool tick, Outgoing* out);
  // The hub's messages as replies to their watches; forgets ended ones.
  void EncodeWatchOuts(Group& g, std::vector<WatchHub::Out> outs, Outgoing* out);
  void PostToLoop(Outgoing out);

  NodeContext* ctx_;
  Deliver deliver_;
};

}  // namespace kv::node
