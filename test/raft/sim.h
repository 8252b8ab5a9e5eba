// Sim: a deterministic, single-threaded simulation of one Raft group.
//
// A Cluster holds N simulated nodes, each a Raft core, a MemoryStorage (what
// the node has persisted: it survives a crash) and a tiny key-value state
// machine (App). A seeded random network delivers messages after a random
// latency and can drop, duplicate, reorder and delay them, and cut links one
// way or both ways; or, given a bandwidth, carries each link's messages in
// order through a pipe of that many bytes a step, as one TCP connection
// would, so that a message waits for those queued before it. Time is a step
// counter; every steps_per_tick steps each live node gets one Tick(). No wall
// clock, no sleeps, no threads: the same options and seed always give the
// same run.
//
// With hibernation (SimOptions::hibernate_tick > 0) each node also plays the
// driver's part, as the kvstore node does with its leader hints: every
// heartbeat_tick ticks it pings every other node over the same network
// (latency, drops, cuts), saying whether it leads and at which term; it
// reports PeerDown for a node it has heard nothing from (ping or message)
// for an election timeout, and for its leader when that leader's ping says
// it no longer leads at the follower's term.
//
// Each node follows raft.h's driver contract: rd.messages go out at once; the
// snapshot, entries and hard state are persisted; only then
// rd.persisted_messages go out, committed entries are applied and Advance is
// called. With disk delay the persisting runs "asynchronously": a Ready's
// write completes some steps later, in order, and GetReady may be called again
// meanwhile. A crash drops the core, its app state and the writes in flight,
// and may lose a hard state written without sync (Ready::must_sync false).
// The app compacts its log with MemoryStorage::CreateSnapshot now and then, so
// followers that fall behind get InstallSnapshot.
//
// After every input the InvariantChecker is fed, and after every step the
// cluster checks election safety, log matching (persisted and in-memory
// logs), agreement on committed entries, leader completeness, state machine
// safety, that followers answer only from durable state, that every
// committed entry is durable on a quorum and that no leader has more than
// max_inflight_bytes (plus one entry) of entries in flight towards a
// follower it replicates to, counted from the messages it sent. Violations are collected
// as text. Thread safety: none.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "raft/invariants.h"
#include "raft/memory_storage.h"
#include "raft/raft.h"
#include "raft/types.h"

namespace kv::raft::sim {

// A small deterministic random source (same sequence on every platform).
class Rng {
 public:
  explicit Rng(uint64_t seed) : gen_(seed) {}
  uint64_t Next() { return gen_(); }
  // Uniform in [0, n); 0 when n == 0.
  uint64_t Uniform(uint64_t n) { return n == 0 ? 0 : gen_() % n; }
  // Uniform in [lo, hi].
  int64_t Range(int64_t lo, int64_t hi) {
    return lo + static_cast<int64_t>(Uniform(static_cast<uint64_t>(hi - lo + 1)));
  }
  bool Chance(double p) { return static_cast<double>(gen_() >> 11) * 0x1.0p-53 < p; }

 private:
  std::mt19937_64 gen_;
};

struct NetworkOptions {
  int min_latency = 1;     // steps
  int max_latency = 3;     // steps
  double drop = 0.0;       // probability a message is lost
  double duplicate = 0.0;  // probability a message is delivered twice
  double delay = 0.0;      // probability of a long delay (reordering)
  int max_delay = 40;      // steps, for long delays
  // Probability a kAppend arrives with only a prefix of its entries (maybe
  // none), as if the rest of a chunked message were lost.
  double truncate = 0.0;
  // Bytes a link carries per step (WireBytes); 0: no limit. When set, each
  // link delivers in order (`delay` does not apply): a message leaves once
  // those before it left, takes its size over this rate, then the latency.
  uint64_t bytes_per_step = 0;
};

// A message's size on the wire, roughly: its entries, snapshot and context
// and a fixed header.
uint64_t WireBytes(const Message& m);

struct SimOptions {
  uint64_t seed = 1;
  int nodes = 3;           // initial voters, ids 1..nodes
  int steps_per_tick = 4;  // steps between two Tick()s
  int election_tick = 10;
  int heartbeat_tick = 1;
  bool pre_vote = true;
  bool check_quorum = true;
  bool lease_reads = false;  // requires check_quorum
  int hibernate_tick = 0;    // Config::hibernate_tick; also turns the pings on
  uint64_t max_msg_bytes = 1 << 20;
  size_t max_inflight_msgs = 256;
  uint64_t max_inflight_bytes = 8 << 20;
  uint64_t max_uncommitted_bytes = 64 << 20;
  uint64_t max_committed_bytes_per_ready = 16 << 20;
  NetworkOptions net;
  // The app compacts its log (CreateSnapshot) once it applied this many
  // entries past its last snapshot; 0 never.
  Index snapshot_interval = 0;
  // The app also snapshots right after applying a conf change (with
  // compaction on), so the newest snapshot always lists the newest members.
  bool snapshot_on_conf_change = false;
  // A node's writes complete 0..max_disk_delay steps after GetReady; 0 means
  // synchronous persistence. SetDiskDelay changes it per node.
  int max_disk_delay = 0;
  // On a snapshot send failure or a cut link, tell the leader.
  bool report_unreachable = true;
  // Keep this many recent events as text for failure reports (0: none, fast).
  size_t trace_keep = 0;
  bool trace_print = false;  // also print every event to stderr
};

// The replicated state machine: a key-value map fed by entries whose data is
// "<tag>|<key>=<value>" (other data only feeds the hash), plus a hash chain
// over every applied entry and the configuration built from kConfChange
// entries.
struct AppState {
  Index applied = 0;
  uint64_t hash = 0;
  std::map<std::string, std::string> kv;
  ConfState conf;

  void Apply(const Entry& e);
  std::string Encode() const;  // the snapshot data (conf travels in the meta)
  static bool Decode(const std::string& data, AppState* out);
};

// Proposal data for key/value writes: "<tag>|<key>=<value>".
std::string KvData(const std::string& tag, const std::string& key, const std::string& value);

struct Proposal {
  NodeId node = kNoNode;
  uint64_t incarnation = 0;
  Index index = 0;
  Term term = 0;
  std::string data;
  enum class State { kPending, kCommitted, kLost } state = State::kPending;
};

struct ReadRecord {
  NodeId node = kNoNode;
  std::string key;
  int64_t issued_at = 0;
  Index max_commit_at_issue = 0;  // highest commit index any node knew then
  bool served = false;
  Index read_index = 0;
  Index served_applied = 0;
  std::string value;
};

struct MessageStats {
  std::map<MessageType, uint64_t> sent;  // by type
  uint64_t delivered = 0;
  uint64_t dropped = 0;
  uint64_t total_sent = 0;
};

class Cluster {
 public:
  explicit Cluster(const SimOptions& opts);
  ~Cluster();
  Cluster(const Cluster&) = delete;
  Cluster& operator=(const Cluster&) = delete;

  const SimOptions& options() const { return opts_; }
  Rng& rng() { return rng_; }

  // ---- Time.
  // One step: deliver due messages, tick on a tick boundary, handle Readies,
  // complete due writes, then run the cluster-wide checks.
  void Step();
  void RunSteps(int64_t n);
  void RunTicks(int64_t n) { RunSteps(n * opts_.steps_per_tick); }
  // Steps until pred() holds (checked after each step) or max_ticks pass.
  bool RunUntil(const std::function<bool()>& pred, int64_t max_ticks);
  int64_t now() const { return now_; }

  // ---- Nodes.
  std::vector<NodeId> ids() const;       // every node ever created
  std::vector<NodeId> live_ids() const;  // up and not decommissioned
  bool exists(NodeId id) const { return nodes_.count(id) != 0; }
  bool up(NodeId id) const;
  bool decommissioned(NodeId id) const;
  // REQUIRES: up(id).
  Raft& raft(NodeId id);
  const AppState& app(NodeId id) const;
  MemoryStorage& storage(NodeId id);
  uint64_t incarnation(NodeId id) const;

  // Drops the core, the app state and the writes in flight; keeps storage.
  void Crash(NodeId id);
  // Builds a new core from the node's storage and the app from its snapshot.
  void Restart(NodeId id);
  // A new node with empty storage and no peers (not a member until added).
  NodeId AddNode();
  // Stops a node for good (a removed member being shut down).
  void Decommission(NodeId id);
  // Once a node other than X applies the removal of X (the rest of the group
  // has moved on), X is decommissioned, as an operator would shut it down.
  void set_auto_decommission(bool on) { auto_decommission_ = on; }

  // Persistence per node: max disk delay in steps (0: synchronous).
  void SetDiskDelay(NodeId id, int max_delay);
  // Held writes do not complete until released (a stalled disk).
  void HoldDisk(NodeId id, bool hold);
  size_t writes_in_flight(NodeId id) const;

  // ---- Requests (to live nodes). The Ready they cause is handled in the
  // following step.
  Status Propose(NodeId id, const std::string& data, Index* index = nullptr, Term* term = nullptr);
  // A key-value write with a unique value; returns the value through *value.
  Status ProposeKv(NodeId id, const std::string& key, std::string* value = nullptr,
                   Index* index = nullptr, Term* term = nullptr);
  Status ProposeConfChange(NodeId id, const ConfChange& cc, Index* index = nullptr);
  // Starts a ReadIndex read of `key`; *context identifies it in reads().
  Status ReadIndex(NodeId id, const std::string& key, std::string* context = nullptr);
  void TransferLeader(NodeId id, NodeId to);
  void Campaign(NodeId id);
  void Tick(NodeId id);  // one extra tick to one node

  // ---- Network.
  NetworkOptions& net() { return opts_.net; }
  // A link's bandwidth (bytes a step; 0: no limit), overriding
  // NetworkOptions::bytes_per_step for messages from `from` to `to`.
  void SetBandwidth(NodeId from, NodeId to, uint64_t bytes_per_step) {
    bandwidth_[{from, to}] = bytes_per_step;
  }
  // Cuts both directions between id and every other node.
  void Isolate(NodeId id);
  // Only nodes within the same group can talk; nodes not listed are isolated.
  void Partition(const std::vector<std::vector<NodeId>>& groups);
  void Cut(NodeId from, NodeId to);  // one way
  void CutBoth(NodeId a, NodeId b);
  void Heal();  // restores every link
  bool Linked(NodeId from, NodeId to) const { return cut_.count({from, to}) == 0; }
  // Drops messages for which filter returns true (at send time). Test hook.
  void SetDropFilter(std::function<bool(const Message&)> filter) {
    drop_filter_ = std::move(filter);
  }
  // Sees every message a node sends (before any drop). Test hook.
  void SetSendHook(std::function<void(const Message&)> hook) { send_hook_ = std::move(hook); }
  // Sees every message delivered, with the steps since it was sent. Test hook.
  void SetDeliverHook(std::function<void(const Message&, int64_t)> hook) {
    deliver_hook_ = std::move(hook);
  }
  // May rewrite a message on its way (after the send hook, before any drop),
  // e.g. carry only a prefix of a kAppend's entries. Test hook: a rewrite
  // must leave a message the sender could have sent.
  void SetRewriteHook(std::function<void(Message*)> hook) { rewrite_hook_ = std::move(hook); }
  // Holds the messages sent from -> to (even over a cut link) until Release,
  // which delivers them in the next step, in the order of the Release calls
  // and then of sending. Test hook for exact interleavings.
  void Hold(NodeId from, NodeId to) { held_links_.insert({from, to}); }
  void Release(NodeId from, NodeId to);
  // Drops every message in flight.
  void ClearNetwork() {
    in_flight_.clear();
    pipes_.clear();
  }
  // Raft messages on their way (the pings of hibernation not counted).
  size_t messages_in_flight() const;
  const MessageStats& stats() const { return stats_; }

  // ---- Observations.
  // The live leader with the highest term, or kNoNode.
  NodeId Leader() const;
  // Number of live nodes that believe they are leader.
  int CountLeaders() const;
  // Highest commit index any live node knows.
  Index MaxCommit() const;
  // The committed entry at i as applied by some node, if any.
  const Entry* AppliedEntry(Index i) const;
  Index max_applied() const { return applied_.empty() ? 0 : applied_.size() - 1; }
  const std::vector<Proposal>& proposals() const { return proposals_; }
  const std::map<std::string, ReadRecord>& reads() const { return reads_; }
  // True when every live member (by its own app conf) applied through index.
  bool AllApplied(Index index) const;
  // Terms in which some node was leader.
  size_t leader_terms() const { return leaders_.size(); }
  // Reads served to the app so far.
  size_t reads_served() const;
  // Proposals refused with Busy (max_uncommitted_bytes reached).
  uint64_t busy() const { return busy_; }
  // PeerDown reports made by the pings' failure detection.
  uint64_t peer_downs() const { return peer_downs_; }
  // Checks that found a leader with max_inflight_bytes or more unacknowledged
  // towards a follower: how often the byte window was full.
  uint64_t full_windows() const { return full_windows_; }

  // ---- Checking.
  bool ok() const { return violations_.empty() && checker_.ok(); }
  std::vector<std::string> violations() const;
  // Violations and the recent trace, for failure messages.
  std::string Report() const;
  void Note(const std::string& event);  // adds an event to the trace

 private:
  struct Write {
    Ready rd;
    int64_t due = 0;
  };
  struct Node {
    NodeId id = kNoNode;
    bool initial = false;
    bool up = false;
    bool decommissioned = false;
    uint64_t incarnation = 0;
    MemoryStorage storage;
    std::unique_ptr<Raft> raft;
    AppState app;
    std::deque<Write> writes;
    int max_disk_delay = 0;
    bool disk_held = false;
    bool conf_applied = false;  // a conf change was applied since the last snapshot
    // The hard state as of the last synced write: a crash may lose a later
    // one written without sync (Ready::must_sync false).
    HardState synced_hs;
    bool unsynced = false;
    std::vector<ReadState> pending_reads;
    // Check watermarks: entries at or below were verified and are committed.
    Index mem_verified = 0;
    Index storage_verified = 0;
    Index commit_seen = 0;
    // Leader bookkeeping for the durability and completeness checks.
    Term leader_term = 0;
    Index leader_commit = 0;
    Index completeness_verified = 0;
    size_t voters = 0;
    Term last_term = 0;
    Role last_role = Role::kFollower;
    std::map<NodeId, int64_t> heard_at;  // step of the last ping or message from a node
  };
  struct InFlight {
    int64_t at = 0;
    int64_t sent_at = 0;
    uint64_t seq = 0;
    Message m;
    uint64_t sender_incarnation = 0;
    bool lost = false;      // dropped: only its snapshot report remains
    bool released = false;  // held, then released: delivered even over a cut link
    // A node-level ping, not a Raft message: m.from, m.to, and m.term the
    // term at which the sender leads (0: it does not lead).
    bool ping = false;
  };
  struct LogSeen {
    Term term = 0;
    bool has_prev = false;
    Term prev = 0;
    bool has_data = false;
    uint64_t data_hash = 0;
  };
  // Entries (index -> ByteSize) a leader sent a follower in its term, past
  // what it knows the follower holds. While it replicates, those before its
  // next index for the follower are in flight.
  struct Unacked {
    Term term = 0;
    std::map<Index, uint64_t> sent;
    uint64_t bytes = 0;    // their sum
    uint64_t largest = 0;  // the largest entry sent in the term
  };
  struct CommitSeen {
    bool set = false;
    Term term = 0;
    Term known_term = 0;  // term of the node that first reported it committed
  };

  Node& node(NodeId id);
  const Node& node(NodeId id) const;
  void Start(Node& n);
  void AfterInput(Node& n, const char* what);
  void HandleReadies(Node& n);
  bool CompleteWrites(Node& n);
  void Persist(Node& n, Write& w);
  void Apply(Node& n, const Entry& e);
  void RestoreApp(Node& n, const Snapshot& s, const char* why);
  void ServeReads(Node& n);
  void MaybeCompact(Node& n, bool force = false);
  void Send(Node& n, const Message& m);
  void Deliver();
  // Hibernation's driver part (see the class comment).
  void SendPings(Node& n);
  void ReceivePing(Node& to, const InFlight& f);
  void DetectSilentPeers(Node& n);
  void ReportSnapshotOutcome(const InFlight& f, bool ok);
  void CheckDurableClaims(Node& n, const std::vector<Message>& msgs, bool before_persist);
  void CheckLeaderCommit(Node& n);
  void NoteAppendSent(const Message& m);
  void CheckInflight(Node& n);
  void CheckAll();
  void CheckMemLog(Node& n);
  void CheckStorageLog(Node& n);
  void CheckCommitted(Node& n);
  void CheckCompleteness(Node& n);
  void NoteEntry(NodeId id, const char* where, Index i, Term t, const Term* prev,
                 const std::string* data);
  void Violation(const std::string& what);
  bool Tracing() const { return opts_.trace_keep > 0 || opts_.trace_print; }
  void DecommissionRemoved();

  SimOptions opts_;
  Rng rng_;
  int64_t now_ = 0;
  uint64_t msg_seq_ = 0;
  uint64_t next_tag_ = 1;
  std::map<NodeId, std::unique_ptr<Node>> nodes_;
  std::vector<NodeId> initial_;

  std::vector<InFlight> in_flight_;
  std::set<std::pair<NodeId, NodeId>> cut_;
  std::set<std::pair<NodeId, NodeId>> held_links_;
  // With a bandwidth, per link: when it is free to send again (in fractions
  // of a step), and when its last message arrives (so that none overtakes
  // it).
  struct Pipe {
    uint64_t free_at = 0;
    int64_t last_at = 0;
  };
  std::map<std::pair<NodeId, NodeId>, Pipe> pipes_;
  std::map<std::pair<NodeId, NodeId>, uint64_t> bandwidth_;  // SetBandwidth
  std::vector<InFlight> held_;
  std::function<bool(const Message&)> drop_filter_;
  std::function<void(const Message&)> send_hook_;
  std::function<void(const Message&, int64_t)> deliver_hook_;
  std::function<void(Message*)> rewrite_hook_;
  MessageStats stats_;
  uint64_t busy_ = 0;
  uint64_t full_windows_ = 0;
  uint64_t peer_downs_ = 0;
  std::map<std::pair<NodeId, NodeId>, Unacked> unacked_;  // by (leader, follower)

  InvariantChecker checker_;
  std::vector<std::string> violations_;
  std::deque<std::string> trace_;

  std::map<Term, NodeId> leaders_;         // election safety
  std::vector<std::vector<LogSeen>> log_;  // log matching, by index
  std::vector<CommitSeen> committed_;      // by index
  Index max_committed_ = 0;
  std::vector<std::optional<Entry>> applied_;  // state machine safety, by index
  std::vector<std::optional<uint64_t>> hash_at_;
  std::vector<Proposal> proposals_;
  std::multimap<Index, size_t> proposal_at_;  // proposals by index
  std::map<std::string, ReadRecord> reads_;
  uint64_t next_read_ = 1;
  bool auto_decommission_ = true;
  std::set<NodeId> removed_;  // removals applied somewhere, to decommission
};

}  // namespace kv::raft::sim
