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

Status Group::Propose(std::string data, raft::Index* index, raft::Term* term) {
  kv::Status s = raft->Propose(std::move(data), index, term);
  if (s.ok()) ++counters.proposals;
  return s;
}

Status Group::ProposeConfChange(const raft::ConfChange& cc, raft::Index* index) {
  kv::Status s = raft->ProposeConfChange(cc, index);
  if (s.ok()) ++counters.proposals;
  return s;
}

void Group::ObserveRoleChange(const raft::SoftState& ss) {
  if (ss.leader != raft::kNoNode && ss.leader != last_leader) {
    if (last_leader != raft::kNoNode) ++counters.leader_changes;
    last_leader = ss.leader;
  }
  // A campaign starts with a pre-vote, or with the vote when it skips one
  // (a transfer's TimeoutNow); its vote after a pre-vote is the same
  // campaign. A single voter wins between two Readies: a leader seen right
  // after a follower campaigned unseen.
  using raft::Role;
  const Role was = last_role;
  switch (ss.role) {
    case Role::kPreCandidate:
      if (was != Role::kPreCandidate) ++counters.elections;
      break;
    case Role::kCandidate:
      if (was != Role::kPreCandidate && was != Role::kCandidate) ++counters.elections;
      break;
    case Role::kLeader:
      if (was == Role::kFollower) ++counters.elections;
      break;
    case Role::kFollower:
      break;
  }
  last_role = ss.role;
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
    g->snapshot_bytes = snap.data.size();
  }
  g->PublishProgress();
  g->handed_to_workers = snap.meta.index;
  g->watch_hub = WatchHub(options.watch, g->sm.applied_index());

  raft::Config rc;
  rc.id = options.self;
  rc.group = id;
  rc.peers = voters;
  rc.storage = storage;
  rc.applied = snap.meta.index;
  rc.election_tick = options.election_ticks;
  rc.heartbeat_tick = options.heartbeat_ticks;
  rc.max_msg_bytes = options.max_append_bytes;
  rc.hibernate_tick = options.hibernate_ticks;
  rc.seed = std::random_device{}();
  g->raft = std::make_unique<raft::Raft>(rc);
  if (!g->raft->status().ok()) return g->raft->status();
  KV_LOG(kDebug) << "group " << id << ": log " << storage->FirstIndex() << ".."
                 << storage->LastIndex() << ", snapshot at " << g->last_snapshot_index;
  *out = std::move(g);
  return Status::OK();
}

}  // namespace kv::node
