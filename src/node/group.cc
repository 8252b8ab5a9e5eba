#include "node/group.h"

#include <random>

#include "common/logging.h"

namespace kv::node {

GroupStatus Group::Status() const {
  GroupStatus gs;
  gs.group = id;
  gs.shard = shard;
  gs.role = raft::RoleName(raft->role());
  gs.term = raft->term();
  gs.leader = raft->leader();
  gs.commit = raft->commit();
  const ApplyProgress pr = progress();
  gs.applied = pr.applied;
  gs.digest = pr.digest;
  gs.keys = pr.keys;
  gs.last_index = raft->last_index();
  gs.snapshot_index = raft->snapshot_index();
  const raft::ConfState cs = raft->conf_state();
  gs.voters = cs.voters;
  gs.learners = cs.learners;
  return gs;
}

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
