// Raft: one replica of one Raft group, as a deterministic state machine.
//
// The core does no I/O, runs no threads and reads no clock. The driver feeds
// it time (Tick), messages from peers (Step) and requests (Propose,
// ReadIndex, ...), and collects what it must do from Ready: entries and hard
// state to persist, messages to send, committed entries to apply, a snapshot
// to install, confirmed reads. Same inputs (and seed), same outputs.
//
// The driver loop:
//   while (true) {
//     ... Tick() on a timer, Step() for each message received ...
//     if (raft.HasReady()) {
//       Ready rd = raft.GetReady();
//       send(rd.messages);                 // safe before the writes below
//       persist(rd.snapshot, rd.entries, rd.hard_state);   // durably, in this order
//       send(rd.persisted_messages);       // only after the writes are durable
//       apply(rd.committed_entries); serve(rd.read_states);
//       raft.Advance(rd);                  // the writes of rd are durable
//     }
//   }
// The persisting may run asynchronously: GetReady may be called again before
// the previous Ready's Advance, as long as Readies are persisted and Advanced
// in the order they were handed out. Steps may come in between.
//
// Implemented: elections with randomized timeouts, PreVote, CheckQuorum,
// leader no-op, commitment by current-term entries only, replication with
// probe/replicate/snapshot progress, an in-flight window bounded in messages
// and bytes, byte-bounded batches, a bounded uncommitted log on the leader,
// fast conflict backtracking by term, ReadIndex and lease reads,
// InstallSnapshot, leadership transfer and single-server membership changes
// with learners (a change takes effect when its entry commits), and
// hibernation of idle groups.
//
// Hibernation (Config::hibernate_tick > 0): a leader with nothing to do for
// hibernate_tick ticks (every member holds its whole log, all of it
// committed, every member answered since the last CheckQuorum, no read,
// transfer or membership change pending) sends its followers one last
// heartbeat (kHibernateContext) and stops heartbeating and checking its
// quorum; a follower that gets it stops its election timer and leaves the
// detection of its leader's failure to the driver. Ticks still count (lease
// reads measure time by them). A proposal, read, transfer, campaign, vote
// request or rejected append wakes a replica, and so do entries the leader
// sends that are not yet committed; late heartbeats and answers do not. So
// does PeerDown, through which the driver reports what the group's own
// heartbeats would have shown: that the node of a member has fallen silent,
// or no longer leads the group. A woken leader heartbeats at its next tick
// and counts its quorum afresh; a follower woken by PeerDown of its leader
// campaigns within an election timeout. A lost hibernating heartbeat leaves
// that follower's timer running: it campaigns (PreVote), which wakes the
// group without deposing the leader, and the leader hibernates again later.
//
// Thread safety: none. One thread owns a Raft object.
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "common/status.h"
#include "raft/log.h"
#include "raft/progress.h"
#include "raft/storage.h"
#include "raft/types.h"

namespace kv::raft {

struct Config {
  NodeId id = kNoNode;  // this replica; must be non-zero
  GroupId group = 0;    // stamped on every message
  // Initial voters of a brand-new group. Used only when the storage is empty
  // (no hard state, no entries): the core then writes one committed
  // kConfChange entry per voter at term 1, identically on every initial
  // member. Leave empty for a node that joins an existing group.
  std::vector<NodeId> peers;
  // Where the core reads what was persisted. Not owned; must outlive the core.
  const LogStorage* storage = nullptr;
  // Index of the last entry the state machine already reflects at start
  // (usually the snapshot index it was restored from).
  Index applied = 0;

  int election_tick = 10;  // election timeout, randomized in [n, 2n) ticks
  int heartbeat_tick = 1;  // leader heartbeat interval; < election_tick

  uint64_t max_msg_bytes = 1 << 20;  // entries per kAppend, by ByteSize
  size_t max_inflight_msgs = 256;    // unacknowledged kAppends per follower
  // Entry bytes (by ByteSize) in unacknowledged kAppends per follower: the
  // leader sends a follower nothing past it but one entry (so an entry larger
  // than the limit still goes). It bounds what queues towards a slow follower
  // ahead of heartbeats on an ordered transport. 0: no limit; else at least
  // max_msg_bytes.
  uint64_t max_inflight_bytes = 8 << 20;
  // Leader: Propose answers Busy when the entries it appended past the
  // commit index would come to more bytes (by ByteSize) than this. With none
  // of its own uncommitted it takes a proposal of any size, and membership
  // changes always. 0: no limit.
  uint64_t max_uncommitted_bytes = 64 << 20;
  uint64_t max_committed_bytes_per_ready = 16 << 20;

  bool pre_vote = true;
  bool check_quorum = true;
  // Serve ReadIndex from the leader's lease (no heartbeat round) while a
  // quorum answered heartbeats sent within election_tick - 2 ticks. Only safe
  // with bounded clock drift (tick rates within that margin); requires
  // check_quorum. A replica then refuses votes for its first election timeout
  // after a start, to honour leases it granted before a crash.
  bool lease_reads = false;

  // Leader: hibernate after this many ticks with nothing to do (see
  // Hibernation above); followers follow its lead. 0: never. Requires
  // pre_vote.
  int hibernate_tick = 0;

  uint64_t seed = 1;  // election timeout randomization

  Status Validate() const;
};

// What changed that is not persisted: the leader and this node's role.
struct SoftState {
  NodeId leader = kNoNode;
  Role role = Role::kFollower;
  bool operator==(const SoftState& o) const { return leader == o.leader && role == o.role; }
  bool operator!=(const SoftState& o) const { return !(*this == o); }
};

struct Ready {
  std::optional<SoftState> soft_state;  // set when it changed
  std::optional<HardState> hard_state;  // set when it must be persisted
  // A snapshot received from the leader: persist it and restore the state
  // machine from it before applying committed_entries.
  std::optional<Snapshot> snapshot;
  // Append to the log (replacing any entries at or after entries.front().index).
  std::vector<Entry> entries;
  // Committed, in order; hand them to the state machine.
  std::vector<Entry> committed_entries;
  // May be sent at once, before this Ready's writes are durable (a leader's
  // replication, thesis 10.2.1, and answers to heartbeats).
  std::vector<Message> messages;
  // Send only after this Ready's snapshot, entries and hard state are durable.
  std::vector<Message> persisted_messages;
  std::vector<ReadState> read_states;
  // False when the writes are only a commit index change: they may then be
  // written without an fsync.
  bool must_sync = false;

  bool Empty() const {
    return !soft_state && !hard_state && !snapshot && entries.empty() &&
           committed_entries.empty() && messages.empty() && persisted_messages.empty() &&
           read_states.empty();
  }
};

class Raft {
 public:
  // Builds the core from cfg.storage's contents. On an invalid configuration
  // or unreadable storage, status() is not OK and the object must not be used.
  explicit Raft(const Config& cfg);
  Status status() const { return init_status_; }

  // Advances logical time by one tick.
  void Tick();

  // Feeds a message from a peer. Messages for another group, from unknown
  // senders of responses, or malformed are dropped with InvalidArgument.
  Status Step(const Message& m);

  // Appends data to the log as leader. Returns the entry's index and term,
  // with which the driver recognises the entry when it is committed (an entry
  // applied at that index with another term means this proposal was lost).
  // Unavailable when not leader or while transferring leadership; Busy
  // (retry later) when the entry would take this leader's uncommitted
  // entries past max_uncommitted_bytes.
  Status Propose(std::string data, Index* index = nullptr, Term* term = nullptr);

  // Proposes a membership change. Besides Propose's errors: Unavailable
  // (retry later) while another change is uncommitted or this leader has not
  // yet committed an entry of its term; InvalidArgument if the change makes
  // no sense (adding a member twice, removing an absent node, removing the
  // last voter).
  Status ProposeConfChange(const ConfChange& cc, Index* index = nullptr);

  // Starts a linearizable read: a ReadState with the same context comes out
  // of Ready once a quorum has confirmed this leader. Contexts must be unique
  // (a counter will do); many reads may share one context as a batch. Unavailable when no
  // leader is known (the driver retries or fails the read).
  Status ReadIndex(std::string context);

  // Asks the leader to hand leadership to `to`. Ignored if impossible.
  void TransferLeader(NodeId to);

  // Starts an election now (as if the election timeout passed).
  void Campaign();

  // The driver could not deliver a message to `to`; the leader probes it.
  void ReportUnreachable(NodeId to);
  // The driver's view of another node, for hibernating groups: `node` has
  // sent nothing for at least an election timeout, or said it no longer
  // leads this group at this replica's term. A hibernating follower whose
  // leader it is wakes with its election timer as if it had run while
  // asleep (so a stale report cannot void the lease its last answer to the
  // leader promised); a hibernating leader of which it is a member wakes (its
  // quorum check then decides). Otherwise ignored.
  void PeerDown(NodeId node);
  bool hibernating() const { return hibernating_; }
  // The snapshot sent to `to` was delivered (ok) or failed to send. The
  // driver must report every kSnapshot message it was asked to send: the
  // leader sends `to` nothing else until then.
  void ReportSnapshot(NodeId to, bool ok);

  bool HasReady() const;
  // Hands out everything new since the last call. See the class comment.
  Ready GetReady();
  // Tells the core that rd's snapshot, entries and hard state are durable.
  void Advance(const Ready& rd);

  NodeId id() const { return id_; }
  GroupId group() const { return group_; }
  Term term() const { return term_; }
  NodeId vote() const { return vote_; }
  NodeId leader() const { return lead_; }
  Role role() const { return role_; }
  Index commit() const { return log_.committed(); }
  Index last_index() const { return log_.LastIndex(); }
  Index first_index() const { return log_.FirstIndex(); }
  // The last log index known durable on this node.
  Index durable_index() const { return log_.DurableIndex(); }
  // Index of the latest snapshot: the log is compacted up to it.
  Index snapshot_index() const { return log_.FirstIndex() - 1; }
  ConfState conf_state() const;
  // True if this node may vote and campaign (it is a voter).
  bool Promotable() const;
  // The leader's view of a follower, for status reports. Null if unknown.
  const Progress* ProgressOf(NodeId node) const;
  NodeId lead_transferee() const { return lead_transferee_; }
  // Entries (index, term) the driver may read back from the in-memory log.
  Status TermAt(Index i, Term* term) const { return log_.TermAt(i, term); }
  HardState hard_state() const { return HardState{term_, vote_, log_.committed()}; }
  // Leader: bytes (by ByteSize) of the entries it appended that are not yet
  // committed, as max_uncommitted_bytes counts them.
  uint64_t uncommitted_bytes() const { return uncommitted_bytes_; }

 private:
  enum class CampaignType { kPreElection, kElection, kTransfer };

  void BecomeFollower(Term term, NodeId lead);
  void BecomePreCandidate();
  void BecomeCandidate();
  void BecomeLeader();
  void Reset(Term term);
  void ResetRandomizedElectionTimeout();
  void StartElection(CampaignType type);
  // Records a vote and returns the outcome so far.
  enum class VoteResult { kPending, kWon, kLost };
  VoteResult Poll(NodeId from, bool granted);
  bool PastElectionTimeout() const { return election_elapsed_ >= randomized_election_timeout_; }
  // Leader: a quorum of voters answered heartbeats recent enough that no
  // other leader can exist yet (lease reads).
  bool LeaseValid() const;

  void TickElection();
  void TickHeartbeat();
  // Leader: nothing to do for hibernate_tick ticks and every member up to
  // date and heard from.
  bool MayHibernate();
  // Whether m needs this hibernating replica awake.
  bool WakesUp(const Message& m) const;
  void Hibernate();
  void WakeUp();

  void StepLeader(const Message& m);
  void StepCandidate(const Message& m);
  void StepFollower(const Message& m);
  void HandleVoteRequest(const Message& m);
  void HandleAppend(const Message& m);
  void HandleHeartbeat(const Message& m);
  void HandleSnapshot(const Message& m);
  void HandleAppendResponse(const Message& m, Progress& pr);
  void HandleHeartbeatResponse(const Message& m, Progress& pr);
  void HandleReadIndexRequest(const Message& m);
  void HandleTransferLeader(NodeId target);
  bool Restore(const Snapshot& s);

  void Send(Message m);
  // Drops queued, not yet handed out, acknowledgements of entries at or past
  // `from`, after the log lost them (a conflicting append, a snapshot).
  void DropAcksFrom(Index from);
  // Sends entries (or a snapshot) to `to` if its progress allows; with
  // send_if_empty, also an empty kAppend (to carry the commit index).
  bool MaybeSendAppend(NodeId to, bool send_if_empty);
  // An empty kAppend after pr.next - 1, even through a closed in-flight
  // window: the answer acknowledges what the follower holds (freeing the
  // window) or rejects (setting the progress back to probing).
  void SendEmptyAppend(NodeId to, Progress& pr);
  // A kAppend to `to` of no entries yet, after (prev_index, prev_term),
  // carrying the commit index.
  Message AppendAfter(NodeId to, Index prev_index, Term prev_term) const;
  bool SendSnapshot(NodeId to, Progress& pr);
  void BroadcastAppend();
  void BroadcastHeartbeat(const std::string& context);
  void SendHeartbeat(NodeId to, const std::string& context);
  void SendTimeoutNow(NodeId to);
  void AbortLeaderTransfer() { lead_transferee_ = kNoNode; }

  // Appends entries as leader, stamping term and index.
  void AppendEntries(std::vector<Entry> entries);
  // Leader: stops counting what is uncommitted so far; entries appended from
  // now on count.
  void ResetUncommitted();
  // Leader: advances commit to what a quorum of voters holds durably, if that
  // entry is of the current term. True if commit moved.
  bool MaybeCommit();
  // Raises commit (any role) and applies membership changes that commit.
  void CommitTo(Index index);
  bool CommittedEntryInCurrentTerm() const;
  void ReleasePendingReads();
  void ServeRead(NodeId from, Index index, const std::string& context);

  // Membership.
  Progress NewProgress(Index next, bool learner) const;
  void ResetProgress();
  void TrackConfChanges(const std::vector<Entry>& entries);
  void ApplyConfChange(const ConfChange& cc);
  size_t Quorum() const { return voters_.size() / 2 + 1; }
  bool IsVoter(NodeId n) const;
  bool IsMember(NodeId n) const { return prs_.count(n) != 0; }

  // Reads.
  struct PendingRead {
    Index index;
    NodeId from;  // kNoNode for local reads
    std::string context;
    std::vector<NodeId> acks;
  };

  Status init_status_;
  const NodeId id_;
  const GroupId group_;
  const Config cfg_;
  RaftLog log_;
  std::mt19937_64 rng_;

  Term term_ = 0;
  NodeId vote_ = kNoNode;
  NodeId lead_ = kNoNode;
  Role role_ = Role::kFollower;

  // Membership: every member's progress (learners flagged) and the sorted voters.
  std::map<NodeId, Progress> prs_;
  std::vector<NodeId> voters_;
  // Uncommitted kConfChange entries in the log, applied when they commit.
  std::map<Index, ConfChange> uncommitted_conf_changes_;
  Index pending_conf_index_ = 0;  // leader: last conf change proposed

  // Leader: ByteSize of each entry it appended past the commit index, for
  // indexes from uncommitted_first_ on, and their sum.
  std::deque<uint64_t> uncommitted_sizes_;
  Index uncommitted_first_ = 0;
  uint64_t uncommitted_bytes_ = 0;

  std::map<NodeId, bool> votes_;

  uint64_t ticks_ = 0;  // ticks since this replica started: its logical clock
  int election_elapsed_ = 0;
  int heartbeat_elapsed_ = 0;
  int randomized_election_timeout_ = 0;
  bool hibernating_ = false;
  int idle_ticks_ = 0;                // leader: ticks since it last had something to do
  uint64_t leader_contact_tick_ = 0;  // follower: ticks_ when lead_ last sent to it
  NodeId lead_transferee_ = kNoNode;
  bool timeout_now_sent_ = false;  // leader: a transfer was set off this term

  std::deque<PendingRead> pending_reads_;       // leader: awaiting a quorum ack
  std::vector<Message> reads_awaiting_commit_;  // leader: before its first commit
  bool broadcast_pending_ = false;              // leader: proposals wait to go out in one batch

  // Output accumulated for the next Ready.
  std::vector<Message> msgs_;
  std::vector<Message> persisted_msgs_;
  std::vector<ReadState> read_states_;
  SoftState prev_soft_;
  HardState prev_hard_;    // as last handed out in a Ready
  Term durable_term_ = 0;  // term of the last hard state known durable
};

}  // namespace kv::raft
