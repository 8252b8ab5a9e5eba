#include "node/group.h"

#include <random>

#include "common/logging.h"

namespace kv::node {

Status OpenGroup(raft::GroupId id, const std::vector<raft::NodeId>& voters,
                 storage::GroupStorage* storage, const GroupOptions& options,
                 std::unique_ptr<Group>* out) {
  auto g = std::make_unique<Group>();
  g->id = id;
  g->storage = storage;

  raft::Snapshot snap;
  Status s = storage->GetSnapshot(&snap);
  if (!s.ok()) return s;
  if (!snap.IsEmpty()) {
    s = g->sm.Restore(snap.data);
    if (!s.ok()) {
      return Status::Corruption("group " + std::to_string(id) + ": snapshot at " +
                                std::to_string(snap.meta.index) +
                                " does not decode: " + s.message());
    }
    g->last_snapshot_index = snap.meta.index;
  }
  g->PublishProgress();
  g->handed_to_workers = snap.meta.index;

  raft::Config rc;
  rc.id = options.self;
  rc.group = id;
  rc.peers = voters;
  rc.storage = storage;
  rc.applied = snap.meta.index;
  rc.election_tick = options.election_ticks;
  rc.heartbeat_tick = options.heartbeat_ticks;
  rc.max_msg_bytes = options.max_append_bytes;
  rc.seed = std::random_device{}();
  g->raft = std::make_unique<raft::Raft>(rc);
  if (!g->raft->status().ok()) return g->raft->status();
  KV_LOG(kDebug) << "group " << id << ": log " << storage->FirstIndex() << ".."
                 << storage->LastIndex() << ", snapshot at " << g->last_snapshot_index;
  *out = std::move(g);
  return Status::OK();
}

}  // namespace kv::node
