// Group: one Raft group this node is a replica of, with its storage, the
// client requests waiting on it and its state machine.
//
// The loop thread owns the Raft core and the waiting requests; the group's
// worker strand owns the state machine (node/applier.h). The two meet only
// through tasks posted either way and through ApplyProgress, which the
// strand publishes under a mutex for the loop thread's status replies.
// Thread safety: as above, per field.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "common/logging.h"
#include "common/status.h"
#include "kv/state_machine.h"
#include "kvstore/node_status.h"
#include "node/metrics.h"
#include "node/read_batch.h"
#include "node/request.h"
#include "node/watch_hub.h"
#include "raft/raft.h"
#include "storage/group_storage.h"

namespace kv::node {

// The state machine's progress, published by the strand after each batch
// and read by the loop thread (status): one consistent triple.
struct ApplyProgress {
  uint64_t applied = 0;
  uint64_t digest = 0;
  uint64_t keys = 0;
  uint64_t bytes = 0;          // of keys and values
  uint64_t next_deadline = 0;  // the earliest key deadline (ms), 0: none
  uint64_t sessions = 0;       // client sessions held
};

// A member joining an unsharded cluster, waiting to be promoted to voter.
struct Joining {
  Pending client;  // answered once the node is a voter
  std::string address;
  bool promoting = false;
};

struct Group {
  raft::GroupId id = 0;
  int shard = -1;  // the shard it holds, or -1 (the metadata or unsharded group)
  raft::NodeId preferred_leader = raft::kNoNode;  // the placement's choice
  // This node was removed from the group: it no longer drives it (until
  // the placement brings the group back here).
  bool removed = false;
  storage::GroupStorage* storage = nullptr;
  std::unique_ptr<raft::Raft> raft;

  // Loop thread only.
  std::map<raft::Index, Pending> pending_writes;
  ReadBatch reads;
  std::map<raft::NodeId, Joining> joining;
  raft::Index handed_to_workers = 0;  // last committed index given to the strand
  raft::Index last_snapshot_index = 0;
  bool snapshot_in_progress = false;
  uint64_t snapshot_segment = 0;  // the WAL's newest segment when its last snapshot began
  raft::Index published_commit = 0;
  uint64_t leader_since_tick = 0;   // when this node last became its leader
  uint64_t last_transfer_tick = 0;  // when it last handed leadership on
  // What Ready last showed of the leader and this node's role (the metrics).
  raft::NodeId last_leader = raft::kNoNode;
  raft::Role last_role = raft::Role::kFollower;
  GroupCounters counters;
  uint64_t snapshot_bytes = 0;  // of its latest snapshot here; 0: none
  // Expiry (node/expirer.h): a search for expired keys or their removal is
  // under way; the removal's entry, once proposed; the search's number.
  bool expiring = false;
  raft::Index expire_index = 0;
  uint64_t expire_generation = 0;

  // The worker strand only.
  StateMachine sm;
  // Its watches: the history they read and, per watch, where its messages
  // go and its connection's share of the reply budget.
  struct WatchTarget {
    Pending to;
    ReplyBudget::Share share;
  };
  WatchHub watch_hub;
  std::map<uint64_t, WatchTarget> watch_targets;
  // Watches open (the strand writes, the loop reads: its timer serves them).
  std::atomic<size_t> open_watches{0};
  std::multimap<raft::Index, Pending> reads_waiting_apply;
  // The latest clock a read has hidden keys by: reads never go back in
  // time, even when the wall clock steps back (docs/protocol.md, "Expiry").
  uint64_t read_clock_ms = 0;

  bool is_leader() const { return raft->role() == raft::Role::kLeader; }
  // Raft's Propose and ProposeConfChange (same results), counting the
  // entries proposed (loop thread).
  kv::Status Propose(std::string data, raft::Index* index = nullptr, raft::Term* term = nullptr);
  kv::Status ProposeConfChange(const raft::ConfChange& cc, raft::Index* index = nullptr);
  // Counts what a Ready's soft state shows: leader changes, campaigns
  // (loop thread).
  void ObserveRoleChange(const raft::SoftState& ss);
  // Its Raft state and the state machine's progress, as status and the
  // metrics report them (loop thread).
  GroupStatus Status() const;
  ApplyProgress progress() const {
    std::lock_guard<std::mutex> lock(progress_mu);
    return progress_;
  }
  // The strand: publishes the state machine's progress.
  void PublishProgress() {
    std::lock_guard<std::mutex> lock(progress_mu);
    progress_.applied = sm.applied_index();
    progress_.digest = sm.Digest();
    progress_.keys = sm.size();
    progress_.bytes = sm.bytes();
    progress_.next_deadline = sm.next_deadline();
    progress_.sessions = sm.session_count();
  }

 private:
  mutable std::mutex progress_mu;
  ApplyProgress progress_;  // guarded by progress_mu
};

// How a group's Raft core is set up.
struct GroupOptions {
  raft::NodeId self = raft::kNoNode;
  int election_ticks = 10;
  int heartbeat_ticks = 2;
  uint64_t max_append_bytes = 1 << 20;
  int hibernate_ticks = 0;  // raft::Config::hibernate_tick
  WatchLimits watch;
};

// Opens group `id` over its storage: restores the state machine from the
// storage's snapshot and starts the Raft core with `voters` (empty: the
// configuration comes from the storage or the leader). Corruption for a
// snapshot that does not decode.
Status OpenGroup(raft::GroupId id, const std::vector<raft::NodeId>& voters,
                 storage::GroupStorage* storage, const GroupOptions& options,
                 std::unique_ptr<Group>* out);

// The groups a node hosts, by id. Loop thread only.
class Groups {
 public:
  using Map = std::map<raft::GroupId, std::unique_ptr<Group>>;

  // A group this node drives (hosted and not removed), or nullptr.
  Group* Find(raft::GroupId id) const {
    Group* g = FindHosted(id);
    return g == nullptr || g->removed ? nullptr : g;
  }
  // A group hosted here, removed or not, or nullptr.
  Group* FindHosted(raft::GroupId id) const {
    auto it = map_.find(id);
    return it == map_.end() ? nullptr : it->second.get();
  }
  // REQUIRES: no group with g's id is hosted (worker tasks may hold one).
  Group* Add(std::unique_ptr<Group> g) {
    auto [it, added] = map_.emplace(g->id, std::move(g));
    KV_CHECK(added) << "group " << it->first << " is hosted already";
    return it->second.get();
  }
  void Clear() { map_.clear(); }
  size_t size() const { return map_.size(); }
  Map::const_iterator begin() const { return map_.begin(); }
  Map::const_iterator end() const { return map_.end(); }

 private:
  Map map_;
};

}  // namespace kv::node
