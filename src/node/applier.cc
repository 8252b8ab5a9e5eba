#include "node/applier.h"

#include <algorithm>

#include "common/logging.h"
#include "kv/command.h"
#include "net/client_codec.h"
#include "node/backups.h"
#include "node/shard_manager.h"

namespace kv::node {

namespace {

net::ReplyStatus ReplyFor(ApplyResult r) {
  switch (r) {
    case ApplyResult::kOk:
      return net::ReplyStatus::kOk;
    case ApplyResult::kNotFound:
      return net::ReplyStatus::kNotFound;
    case ApplyResult::kCasFailed:
      return net::ReplyStatus::kCasFailed;
    case ApplyResult::kStaleSeq:
      return net::ReplyStatus::kError;
  }
  return net::ReplyStatus::kError;
}

}  // namespace

void Applier::Apply(Group& g, std::vector<raft::Entry> entries) {
  // The clients waiting on these indexes go along with the entries.
  std::vector<std::pair<raft::Index, Pending>> writes;
  const raft::Index last = entries.back().index;
  while (!g.pending_writes.empty() && g.pending_writes.begin()->first <= last) {
    writes.emplace_back(g.pending_writes.begin()->first,
                        std::move(g.pending_writes.begin()->second));
    g.pending_writes.erase(g.pending_writes.begin());
  }
  g.handed_to_workers = last;
  const bool small = IsSmall(entries);
  auto task = [this, &g, entries = std::move(entries), writes = std::move(writes)]() mutable {
    ApplyOnStrand(g, entries, std::move(writes));
  };
  // Reads that wait for these entries and watches that stream them are
  // work of any size: a worker's.
  const auto fits = [&g] { return g.reads_waiting_apply.empty() && g.watch_targets.empty(); };
  if (!small || !ctx_->workers->RunHereIfIdle(g.id, fits, task)) {
    ctx_->workers->Post(g.id, std::move(task));
  }
}

bool Applier::IsSmall(const std::vector<raft::Entry>& entries) {
  if (entries.size() > kInlineEntries) return false;
  size_t bytes = 0;
  for (const raft::Entry& e : entries) bytes += e.data.size();
  return bytes <= kInlineBytes;
}

void Applier::ApplyOnStrand(Group& g, const std::vector<raft::Entry>& entries,
                            std::vector<std::pair<raft::Index, Pending>> writes) {
  Outgoing out;
  bool members_changed = false;
  auto write = writes.begin();
  // What each entry changed; one vector for the batch, so that a write
  // costs no allocation of its own here.
  std::vector<Change> changes;
  for (const raft::Entry& e : entries) {
    ApplyResult result = ApplyResult::kOk;
    uint64_t decided_at = e.index;  // the index a write's reply names
    Command cmd;                    // the entry's, if it holds one
    bool duplicate = false;
    std::vector<TxnOpResult> txn;
    raft::ConfChange cc;
    if (e.type == raft::EntryType::kConfChange) {
      if (raft::ConfChange::Decode(e.data, &cc) &&
          (!cc.context.empty() || cc.type == raft::ConfChangeType::kRemoveNode)) {
        g.sm.SetMember(e.index, cc.node,
                       cc.type == raft::ConfChangeType::kRemoveNode ? "" : cc.context);
      } else {
        g.sm.Skip(e.index);
      }
    } else if (e.data.empty()) {
      g.sm.Skip(e.index);
    } else if (!Command::Decode(e.data, &cmd).ok()) {
      KV_LOG(kError) << "group " << g.id << ": entry " << e.index
                     << " holds no valid command; skipped";
      g.sm.Skip(e.index);
    } else {
      result = g.sm.Apply(e.index, cmd, &duplicate, &decided_at, &changes, &txn);
      members_changed =
          members_changed ||
          (ctx_->cfg.sharded() && g.id == kMainGroup &&
           (std::string_view(cmd.key).substr(0, kMemberPrefix.size()) == kMemberPrefix ||
            cmd.key == kPlacementRuleKey));
      AddEvents(changes, e.index, &out.events);
    }
    g.watch_hub.Applied(e.index, &changes);
    // Answer the client that proposed this index, if it was us.
    for (; write != writes.end() && write->first <= e.index; ++write) {
      net::ClientReply reply;
      reply.id = write->second.id;
      if (write->first == e.index && write->second.term == e.term) {
        reply.status = ReplyFor(result);
        reply.index = decided_at;
        if (result == ApplyResult::kStaleSeq) {
          reply.error =
              "seq is below this session's last write: a session's writes must be "
              "sequential; it was not executed";
        } else if (cmd.op == OpType::kTxn) {
          FillTxnReply(g, write->second, result, duplicate, txn, &reply);
        }
      } else {
        // Another leader's entry took this index: ours was never committed.
        reply.status = net::ReplyStatus::kUnavailable;
        reply.error = "leadership changed before the write committed; it was not executed";
      }
      out.replies.push_back(
          EncodedReply{std::move(write->second), reply.status, net::EncodeClientReply(reply)});
    }
  }
  ServeWaitingReads(g, &out);
  if (members_changed) AddMemberKeys(g, &out);
  DeliverWatches(g, /*tick=*/false, &out);
  g.PublishProgress();
  PostToLoop(std::move(out));
}

void Applier::AddEvents(const std::vector<Change>& changes, uint64_t index,
                        std::vector<Event>* events) {
  for (const Change& c : changes) {
    switch (c.kind) {
      case Change::Kind::kPut: {
        PutEvent event;
        event.key = c.record->key();
        event.index = index;
        event.size = c.record->value().size();
        events->push_back(std::move(event));
        break;
      }
      case Change::Kind::kDelete: {
        DeleteEvent event;
        event.key = c.key;
        event.index = index;
        events->push_back(std::move(event));
        break;
      }
      case Change::Kind::kExpire: {
        ExpireEvent event;
        event.key = c.key;
        event.index = index;
        events->push_back(std::move(event));
        break;
      }
    }
  }
}

void Applier::FillTxnReply(const Group& g, const Pending& p, ApplyResult result, bool duplicate,
                           const std::vector<TxnOpResult>& txn, net::ClientReply* reply) {
  reply->status = net::ReplyStatus::kOk;
  reply->is_txn = true;
  reply->succeeded = result == ApplyResult::kOk;
  reply->resent = duplicate;  // the results of the first time are not kept
  for (const TxnOpResult& r : txn) {
    net::TxnResult& to = reply->results.emplace_back();
    to.status = ReplyFor(r.result);
    const Record* found = r.record.get();
    if (found == nullptr) continue;
    // The txn is applied whatever happens here: a value over the budget is
    // left out of the reply (BUSY), not refused before.
    if (found->value().size() >= ReplyBudget::kTrackedBytes && p.reservation != nullptr &&
        !p.reservation->TryAdd(found->value().size())) {
      to.status = net::ReplyStatus::kBusy;
      to.error = p.reservation->Refusal();
      continue;
    }
    to.has_value = true;
    to.value.assign(found->value());
    to.create_index = found->version().create_index;
    to.mod_index = found->version().mod_index;
    // The key is live at the txn's clock, which is the state machine's now.
    if (found->deadline_ms() != 0) to.ttl_ms = found->deadline_ms() - g.sm.clock_ms();
  }
}

void Applier::ServeWaitingReads(Group& g, Outgoing* out) {
  while (!g.reads_waiting_apply.empty() &&
         g.reads_waiting_apply.begin()->first <= g.sm.applied_index()) {
    ServeRead(g, g.reads_waiting_apply.begin()->second, out);
    g.reads_waiting_apply.erase(g.reads_waiting_apply.begin());
  }
}

void Applier::Read(Group& g, raft::Index index, std::vector<Pending> reads) {
  // Point gets only: a scan or a backup's start is work of any size.
  const bool small = reads.size() <= kInlineEntries &&
                     std::all_of(reads.begin(), reads.end(),
                                 [](const Pending& p) { return !p.scan && !p.backup; });
  auto task = [this, &g, index, reads = std::move(reads)]() mutable {
    Outgoing out;
    for (Pending& p : reads) {
      if (g.sm.applied_index() >= index) {
        ServeRead(g, p, &out);
      } else {
        g.reads_waiting_apply.emplace(index, std::move(p));
      }
    }
    if (!out.replies.empty()) PostToLoop(std::move(out));
  };
  if (!small || !ctx_->workers->RunHereIfIdle(
                    g.id, [] { return true; }, task)) {
    ctx_->workers->Post(g.id, std::move(task));
  }
}

void Applier::ServeRead(Group& g, const Pending& p, Outgoing* out) {
  net::ClientReply reply;
  reply.id = p.id;
  // Deadlines by this node's clock (or the log's, when later), never going
  // back: a stale read on a follower hides what its own clock says expired.
  g.read_clock_ms = std::max({g.read_clock_ms, WallClockMs(), g.sm.clock_ms()});
  const uint64_t now = g.read_clock_ms;
  if (p.backup) {
    net::BackupReply begun;
    Status s = ctx_->backups->Open(g.id, g.sm.TakeDataView(), &begun);
    if (!s.ok()) {
      reply.status = net::ReplyStatus::kBusy;
      reply.error = s.message();
      out->replies.push_back(EncodedReply{p, reply.status, net::EncodeClientReply(reply)});
      return;
    }
    begun.cluster = ctx_->cfg.cluster;
    begun.shards = ctx_->cfg.shards;
    begun.replicas = ctx_->cfg.replicas;
    out->replies.push_back(
        EncodedReply{p, net::ReplyStatus::kOk, net::EncodeBackupReply(p.id, begun)});
    return;
  }
  if (p.scan) {
    reply.is_scan = true;
    reply.page = g.sm.Scan(*p.scan, now);
  } else if (const Record* r = g.sm.Find(p.key, now)) {
    // A large value counts against the connection's reply budget from here:
    // a burst of pipelined gets is refused before it is copied, not after.
    if (r->value().size() >= ReplyBudget::kTrackedBytes && p.reservation != nullptr &&
        !p.reservation->TryAdd(r->value().size())) {
      reply.status = net::ReplyStatus::kBusy;
      reply.error = p.reservation->Refusal();
      out->replies.push_back(EncodedReply{p, reply.status, net::EncodeClientReply(reply)});
      return;
    }
    reply.has_value = true;
    reply.value.assign(r->value());
    reply.create_index = r->version().create_index;
    reply.mod_index = r->version().mod_index;
    if (r->deadline_ms() != 0) reply.ttl_ms = r->deadline_ms() - now;
  } else {
    reply.status = net::ReplyStatus::kNotFound;
  }
  out->replies.push_back(EncodedReply{p, reply.status, net::EncodeClientReply(reply)});
}

void Applier::ServeBackupPiece(raft::GroupId group, Pending p, uint64_t id, uint64_t cursor) {
  ctx_->workers->Post(group, [this, p = std::move(p), id, cursor]() mutable {
    net::BackupReply piece;
    Status s = ctx_->backups->Piece(id, cursor, &piece);
    EncodedReply reply{std::move(p), net::ReplyStatus::kOk, {}};
    if (s.ok()) {
      reply.bytes = net::EncodeBackupReply(reply.to.id, piece);
    } else {
      net::ClientReply error;
      error.id = reply.to.id;
      error.status = reply.status = net::ReplyStatus::kError;
      error.error = s.message();
      reply.bytes = net::EncodeClientReply(error);
    }
    Outgoing out;
    out.replies.push_back(std::move(reply));
    PostToLoop(std::move(out));
  });
}

void Applier::Install(Group& g, raft::Snapshot snap) {
  const raft::SnapshotMeta meta = snap.meta;
  g.last_snapshot_index = g.handed_to_workers = meta.index;
  ctx_->workers->Post(g.id, [this, &g, data = std::move(snap.data), meta] {
    Status rs = g.sm.Restore(data);
    if (!rs.ok()) {
      // The leader's snapshot does not decode: this replica cannot go on.
      KV_LOG(kFatal) << "group " << g.id << ": snapshot " << meta.index
                     << " from the leader: " << rs.ToString();
    }
    g.PublishProgress();
    Outgoing out;
    ServeWaitingReads(g, &out);
    AddMemberKeys(g, &out);
    // The changes up to the snapshot are not known here: the history
    // restarts after it.
    std::vector<WatchHub::Out> ended;
    g.watch_hub.Reset(meta.index, &ended);
    EncodeWatchOuts(g, std::move(ended), &out);
    SnapshotEvent event;
    event.group = g.id;
    event.installed = true;
    event.index = meta.index;
    event.term = meta.term;
    out.events.push_back(std::move(event));
    PostToLoop(std::move(out));
  });
}

void Applier::Watch(Group& g, uint64_t handle, Pending to, ReplyBudget::Share share,
                    const ScanSpec& range, uint64_t from_index) {
  ctx_->workers->Post(g.id, [this, &g, handle, to = std::move(to), share = std::move(share), range,
                             from_index]() mutable {
    g.watch_targets[handle] = Group::WatchTarget{std::move(to), std::move(share)};
    g.watch_hub.Add(handle, range, from_index);
    Outgoing out;
    DeliverWatches(g, /*tick=*/false, &out);
    PostToLoop(std::move(out));
  });
}

void Applier::Unwatch(Group& g, uint64_t handle) {
  ctx_->workers->Post(g.id, [&g, handle] {
    g.watch_hub.Remove(handle);
    g.watch_targets.erase(handle);
    g.open_watches = g.watch_targets.size();
  });
}

void Applier::TickWatches(Group& g) {
  ctx_->workers->Post(g.id, [this, &g] {
    Outgoing out;
    DeliverWatches(g, /*tick=*/true, &out);
    if (!out.replies.empty()) PostToLoop(std::move(out));
  });
}

void Applier::DeliverWatches(Group& g, bool tick, Outgoing* out) {
  if (g.watch_targets.empty()) return;
  const auto has_room = [&g](uint64_t handle) {
    return g.watch_targets.at(handle).share.HasRoom();
  };
  std::vector<WatchHub::Out> outs;
  const WatchHub::Clock::time_point now = WatchHub::Clock::now();
  g.watch_hub.Deliver(now, has_room, &outs);
  if (tick) g.watch_hub.Progress(now, has_room, &outs);
  EncodeWatchOuts(g, std::move(outs), out);
}

void Applier::EncodeWatchOuts(Group& g, std::vector<WatchHub::Out> outs, Outgoing* out) {
  for (WatchHub::Out& o : outs) {
    auto it = g.watch_targets.find(o.handle);
    if (it == g.watch_targets.end()) continue;
    o.reply.node = ctx_->cfg.id;
    EncodedReply& r = out->replies.emplace_back();
    r.to = it->second.to;
    r.status = o.reply.status;
    r.bytes = net::EncodeWatchReply(r.to.id, o.reply);
    r.watch_charge = it->second.share.Charge(r.bytes.size());
    r.ends_watch = o.last;
    if (o.last) g.watch_targets.erase(it);
  }
  g.open_watches = g.watch_targets.size();
}

void Applier::AddMemberKeys(Group& g, Outgoing* out) {
  if (!ctx_->cfg.sharded() || g.id != kMainGroup) return;
  out->member_keys = g.sm.ScanPrefix(kMemberPrefix);
  out->placement_rule = RecordedPlacementRule(g.sm);
  out->member_version = g.sm.applied_index();
}

void Applier::PostToLoop(Outgoing out) {
  ctx_->loop->Post([this, out = std::move(out)]() mutable { deliver_(std::move(out)); });
}

}  // namespace kv::node
