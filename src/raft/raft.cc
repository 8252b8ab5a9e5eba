#include "raft/raft.h"

#include <algorithm>
#include <set>

#include "common/logging.h"

namespace kv::raft {

namespace {

bool Contains(const std::vector<NodeId>& ids, NodeId id) {
  return std::find(ids.begin(), ids.end(), id) != ids.end();
}

MessageType ResponseTypeFor(MessageType request) {
  return request == MessageType::kPreVote ? MessageType::kPreVoteResponse
                                          : MessageType::kVoteResponse;
}

}  // namespace

Status Config::Validate() const {
  if (id == kNoNode) return Status::InvalidArgument("raft: node id must be non-zero");
  if (storage == nullptr) return Status::InvalidArgument("raft: no storage");
  if (heartbeat_tick <= 0) return Status::InvalidArgument("raft: heartbeat_tick must be > 0");
  if (election_tick <= heartbeat_tick) {
    return Status::InvalidArgument("raft: election_tick must be greater than heartbeat_tick");
  }
  if (max_inflight_msgs == 0) return Status::InvalidArgument("raft: max_inflight_msgs must be > 0");
  // A smaller window would cut every kAppend below max_msg_bytes: lower that instead.
  if (max_inflight_bytes != 0 && max_inflight_bytes < max_msg_bytes) {
    return Status::InvalidArgument("raft: max_inflight_bytes must be 0 or at least max_msg_bytes");
  }
  if (lease_reads && !check_quorum) {
    return Status::InvalidArgument("raft: lease_reads requires check_quorum");
  }
  if (hibernate_tick < 0) return Status::InvalidArgument("raft: hibernate_tick must be >= 0");
  if (hibernate_tick > 0 && !pre_vote) {
    return Status::InvalidArgument("raft: hibernate_tick requires pre_vote");
  }
  std::set<NodeId> seen;
  for (NodeId p : peers) {
    if (p == kNoNode) return Status::InvalidArgument("raft: peer id 0 is reserved");
    if (!seen.insert(p).second) return Status::InvalidArgument("raft: duplicate peer id");
  }
  return Status::OK();
}

Raft::Raft(const Config& cfg)
    : id_(cfg.id),
      group_(cfg.group),
      cfg_(cfg),
      log_(cfg.storage, cfg.max_committed_bytes_per_ready),
      rng_(cfg.seed * 0x9E3779B97F4A7C15ULL + cfg.id) {
  init_status_ = cfg.Validate();
  if (!init_status_.ok()) return;
  init_status_ = log_.Init();
  if (!init_status_.ok()) return;
  HardState hs;
  ConfState cs;
  init_status_ = cfg.storage->InitialState(&hs, &cs);
  if (!init_status_.ok()) return;

  for (NodeId v : cs.voters) prs_.emplace(v, NewProgress(1, false));
  for (NodeId l : cs.learners) prs_.emplace(l, NewProgress(1, true));
  voters_ = cs.voters;
  std::sort(voters_.begin(), voters_.end());

  // A node that never persisted a term has acknowledged nothing: whatever
  // its log holds (a torn first write, say) can be rewritten.
  const bool fresh = hs.term == 0 && prs_.empty() && cfg.storage->FirstIndex() == 1;
  if (fresh && !cfg.peers.empty()) {
    // Bootstrap: every initial member writes the same committed entries, so
    // members added later learn the initial configuration from the log.
    std::vector<NodeId> peers = cfg.peers;
    std::sort(peers.begin(), peers.end());
    std::vector<Entry> entries;
    for (NodeId p : peers) {
      ConfChange cc{ConfChangeType::kAddVoter, p, {}};
      entries.push_back(Entry{1, entries.size() + 1, EntryType::kConfChange, cc.Encode()});
    }
    log_.Append(entries);
    TrackConfChanges(entries);
    hs = HardState{1, kNoNode, entries.size()};
  } else {
    prev_hard_ = hs;
    durable_term_ = hs.term;
    // Membership changes in the log after the snapshot: committed ones
    // apply below (CommitTo), the rest wait for their commit.
    const Index last = log_.LastIndex();
    for (Index lo = log_.FirstIndex(); lo <= last;) {
      std::vector<Entry> chunk;
      init_status_ = log_.Slice(lo, last + 1, 4 << 20, &chunk);
      if (!init_status_.ok()) return;
      TrackConfChanges(chunk);
      lo += chunk.size();
    }
  }
  // The snapshot proves its index committed, whatever the (lazily
  // persisted) commit says; a commit past the log means lost entries.
  hs.commit = std::max(hs.commit, log_.committed());
  if (hs.commit > log_.LastIndex()) {
    init_status_ =
        Status::Corruption("raft: hard state commit " + std::to_string(hs.commit) +
                           " is past the last log index " + std::to_string(log_.LastIndex()));
    return;
  }
  term_ = hs.term;
  vote_ = hs.vote;
  CommitTo(hs.commit);
  if (cfg.applied > log_.committed()) {
    init_status_ = Status::InvalidArgument("raft: applied index is past the commit index");
    return;
  }
  log_.set_applied(std::max(log_.applied(), cfg.applied));
  BecomeFollower(term_, kNoNode);
  prev_soft_ = SoftState{kNoNode, Role::kFollower};
}

// ---------------------------------------------------------------------------
// Roles and elections

void Raft::ResetRandomizedElectionTimeout() {
  std::uniform_int_distribution<int> dist(cfg_.election_tick, 2 * cfg_.election_tick - 1);
  randomized_election_timeout_ = dist(rng_);
}

Progress Raft::NewProgress(Index next, bool learner) const {
  return Progress(next, cfg_.max_inflight_msgs, cfg_.max_inflight_bytes, learner);
}

void Raft::ResetProgress() {
  std::map<NodeId, Progress> fresh;
  for (const auto& [node, pr] : prs_) {
    Progress p = NewProgress(log_.LastIndex() + 1, pr.learner);
    if (node == id_) p.match = log_.DurableIndex();
    fresh.emplace(node, p);
  }
  prs_.swap(fresh);
}

void Raft::Reset(Term term) {
  if (term_ != term) {
    term_ = term;
    vote_ = kNoNode;
  }
  lead_ = kNoNode;
  election_elapsed_ = 0;
  heartbeat_elapsed_ = 0;
  timeout_now_sent_ = false;
  hibernating_ = false;
  idle_ticks_ = 0;
  ResetRandomizedElectionTimeout();
  AbortLeaderTransfer();
  votes_.clear();
  ResetProgress();
  pending_conf_index_ = 0;
  ResetUncommitted();
  pending_reads_.clear();
  reads_awaiting_commit_.clear();
  broadcast_pending_ = false;
}

void Raft::BecomeFollower(Term term, NodeId lead) {
  const bool changed = role_ != Role::kFollower || term != term_;
  Reset(term);
  role_ = Role::kFollower;
  lead_ = lead;
  if (changed) KV_LOG(kDebug) << "raft " << id_ << " g" << group_ << ": follower at term " << term_;
}

void Raft::BecomePreCandidate() {
  KV_CHECK(role_ != Role::kLeader) << "leader cannot become pre-candidate";
  // A pre-candidate changes neither its term nor its vote.
  role_ = Role::kPreCandidate;
  votes_.clear();
  lead_ = kNoNode;
}

void Raft::BecomeCandidate() {
  KV_CHECK(role_ != Role::kLeader) << "leader cannot become candidate";
  Reset(term_ + 1);
  vote_ = id_;
  role_ = Role::kCandidate;
  KV_LOG(kDebug) << "raft " << id_ << " g" << group_ << ": candidate at term " << term_;
}

void Raft::BecomeLeader() {
  KV_CHECK(role_ != Role::kFollower) << "follower cannot become leader";
  Reset(term_);
  lead_ = id_;
  role_ = Role::kLeader;
  auto self = prs_.find(id_);
  if (self != prs_.end()) self->second.BecomeReplicate();
  // No membership change until this leader commits an entry of its term.
  pending_conf_index_ = log_.LastIndex();
  AppendEntries({Entry{}});
  // Neither the no-op nor entries of earlier terms count toward
  // max_uncommitted_bytes (as in etcd): they are not this leader's load, and
  // it takes a proposal of any size at once.
  ResetUncommitted();
  BroadcastAppend();
  KV_LOG(kInfo) << "raft " << id_ << " g" << group_ << ": leader at term " << term_;
}

void Raft::StartElection(CampaignType type) {
  MessageType request;
  Term term;
  if (type == CampaignType::kPreElection) {
    BecomePreCandidate();
    request = MessageType::kPreVote;
    term = term_ + 1;  // the term a real election would use
  } else {
    BecomeCandidate();
    request = MessageType::kVote;
    term = term_;
  }
  if (Poll(id_, true) == VoteResult::kWon) {
    // A single voter wins at once.
    if (type == CampaignType::kPreElection) {
      StartElection(CampaignType::kElection);
    } else {
      BecomeLeader();
    }
    return;
  }
  for (NodeId v : voters_) {
    if (v == id_) continue;
    Message m;
    m.type = request;
    m.to = v;
    m.term = term;
    m.index = log_.LastIndex();
    m.log_term = log_.LastTerm();
    if (type == CampaignType::kTransfer) m.context = std::string(kTransferContext);
    Send(std::move(m));
  }
}

Raft::VoteResult Raft::Poll(NodeId from, bool granted) {
  votes_.emplace(from, granted);
  size_t yes = 0, no = 0;
  for (NodeId v : voters_) {
    auto it = votes_.find(v);
    if (it == votes_.end()) continue;
    (it->second ? yes : no)++;
  }
  if (yes >= Quorum()) return VoteResult::kWon;
  if (no > voters_.size() - Quorum()) return VoteResult::kLost;
  return VoteResult::kPending;
}

void Raft::Campaign() {
  if (role_ == Role::kLeader || !Promotable()) return;
  WakeUp();
  StartElection(cfg_.pre_vote ? CampaignType::kPreElection : CampaignType::kElection);
}

bool Raft::Promotable() const { return IsVoter(id_); }

bool Raft::IsVoter(NodeId n) const { return std::binary_search(voters_.begin(), voters_.end(), n); }

ConfState Raft::conf_state() const {
  ConfState cs;
  cs.voters = voters_;
  for (const auto& [node, pr] : prs_) {
    if (pr.learner) cs.learners.push_back(node);
  }
  return cs;
}

const Progress* Raft::ProgressOf(NodeId node) const {
  if (role_ != Role::kLeader) return nullptr;
  auto it = prs_.find(node);
  return it == prs_.end() ? nullptr : &it->second;
}

// ---------------------------------------------------------------------------
// Time

bool Raft::LeaseValid() const {
  // A voter that answered a heartbeat sent at tick t refuses other
  // candidates until an election timeout after it received it, so no other
  // leader exists before t + election_tick on its clock. Two ticks of margin
  // cover the ticks' phase and drift between clocks.
  constexpr uint64_t kMarginTicks = 2;
  if (timeout_now_sent_ || static_cast<uint64_t>(cfg_.election_tick) <= kMarginTicks) {
    return false;
  }
  const uint64_t horizon = static_cast<uint64_t>(cfg_.election_tick) - kMarginTicks;
  size_t fresh = 0;
  for (NodeId v : voters_) {
    auto it = prs_.find(v);
    if (v == id_ || (it != prs_.end() && it->second.lease_ack_tick + horizon > ticks_)) fresh++;
  }
  return fresh >= Quorum();
}

void Raft::Tick() {
  ticks_++;
  if (hibernating_) return;
  if (role_ == Role::kLeader) {
    TickHeartbeat();
  } else {
    TickElection();
  }
}

void Raft::TickElection() {
  election_elapsed_++;
  if (Promotable() && PastElectionTimeout()) {
    election_elapsed_ = 0;
    Campaign();
  }
}

void Raft::TickHeartbeat() {
  heartbeat_elapsed_++;
  election_elapsed_++;
  if (election_elapsed_ >= cfg_.election_tick) {
    election_elapsed_ = 0;
    if (cfg_.check_quorum) {
      size_t active = 0;
      for (auto& [node, pr] : prs_) {
        if (node == id_ || pr.recent_active) {
          if (IsVoter(node)) active++;
        }
        if (node != id_) pr.recent_active = false;
      }
      if (active < Quorum()) {
        KV_LOG(kInfo) << "raft " << id_ << " g" << group_
                      << ": no quorum heard within an election timeout; stepping down";
        BecomeFollower(term_, kNoNode);
        return;
      }
    }
    // A transfer that did not finish within an election timeout is abandoned.
    AbortLeaderTransfer();
  }
  if (MayHibernate()) {
    Hibernate();
    return;
  }
  if (heartbeat_elapsed_ >= cfg_.heartbeat_tick) {
    heartbeat_elapsed_ = 0;
    BroadcastHeartbeat(pending_reads_.empty() ? std::string() : pending_reads_.back().context);
  }
}

bool Raft::MayHibernate() {
  if (cfg_.hibernate_tick == 0) return false;
  const Index last = log_.LastIndex();
  bool idle = log_.committed() == last && CommittedEntryInCurrentTerm() && !broadcast_pending_ &&
              pending_reads_.empty() && reads_awaiting_commit_.empty() &&
              lead_transferee_ == kNoNode && pending_conf_index_ <= log_.committed();
  bool heard = true;  // from every member since the last quorum check
  for (const auto& [node, pr] : prs_) {
    idle = idle && pr.match == last;
    heard = heard && (node == id_ || pr.recent_active);
  }
  idle_ticks_ = idle ? idle_ticks_ + 1 : 0;
  // A member that stopped answering keeps the leader awake: its quorum
  // check must go on.
  return idle_ticks_ >= cfg_.hibernate_tick && heard;
}

void Raft::Hibernate() {
  KV_LOG(kDebug) << "raft " << id_ << " g" << group_ << ": idle; hibernating";
  hibernating_ = true;
  idle_ticks_ = 0;
  BroadcastHeartbeat(std::string(kHibernateContext));
}

void Raft::WakeUp() {
  idle_ticks_ = 0;
  if (!hibernating_) return;
  hibernating_ = false;
  if (role_ != Role::kLeader) return;
  // Nothing was heard while asleep: heartbeat at the next tick and count the
  // quorum from now.
  election_elapsed_ = 0;
  heartbeat_elapsed_ = cfg_.heartbeat_tick - 1;
  for (auto& [node, pr] : prs_) {
    if (node != id_) pr.recent_active = false;
  }
}

bool Raft::WakesUp(const Message& m) const {
  switch (m.type) {
    case MessageType::kVote:
    case MessageType::kPreVote:
      return m.term > term_;  // not a stale candidate
    case MessageType::kTimeoutNow:
    case MessageType::kReadIndex:
    case MessageType::kTransferLeader:
      return true;
    case MessageType::kAppendResponse:
      return m.reject;
    default:
      // A newer term resets the replica anyway. Late or duplicated
      // heartbeats and answers ask nothing; the leader's replication wakes a
      // follower only if it brings entries not yet committed (StepFollower).
      return false;
  }
}

void Raft::PeerDown(NodeId node) {
  if (!hibernating_ || node == id_) return;
  if (role_ == Role::kLeader) {
    if (IsMember(node)) WakeUp();
  } else if (node == lead_) {
    WakeUp();
    // As if the timer had run while asleep: the lease promised with the last
    // answer to the leader holds until an election timeout after it, whatever
    // the driver believes (its report may be stale).
    const uint64_t since = ticks_ - leader_contact_tick_;
    election_elapsed_ = std::max(
        election_elapsed_,
        static_cast<int>(std::min<uint64_t>(since, static_cast<uint64_t>(cfg_.election_tick))));
  }
}

// ---------------------------------------------------------------------------
// Messages in

Status Raft::Step(const Message& m) {
  if (m.group != group_) return Status::InvalidArgument("raft: message for another group");
  if (!IsValidMessageType(static_cast<uint8_t>(m.type))) {
    return Status::InvalidArgument("raft: unknown message type");
  }
  if (m.from == kNoNode || m.from == id_ || (m.to != id_ && m.to != kNoNode)) {
    return Status::InvalidArgument("raft: message with a bad sender or recipient");
  }
  if (hibernating_ && WakesUp(m)) WakeUp();

  if (m.term > term_) {
    if (m.type == MessageType::kVote || m.type == MessageType::kPreVote) {
      const bool force = m.context == kTransferContext;
      // With lease reads, a node that just (re)started may have answered a
      // leader's heartbeat before it crashed: it keeps that promise too.
      const bool in_lease =
          (cfg_.check_quorum && lead_ != kNoNode && election_elapsed_ < cfg_.election_tick) ||
          (cfg_.lease_reads && ticks_ < static_cast<uint64_t>(cfg_.election_tick));
      // We heard from a leader within the election timeout: a candidate
      // that has not must not depose it (thesis 4.2.3).
      if (!force && in_lease) return Status::OK();
    }
    if (m.type == MessageType::kPreVote) {
      // A pre-vote does not bump our term.
    } else if (m.type == MessageType::kPreVoteResponse && !m.reject) {
      // Granted pre-votes carry the term we would campaign at.
    } else if (m.type == MessageType::kAppend || m.type == MessageType::kHeartbeat ||
               m.type == MessageType::kSnapshot) {
      BecomeFollower(m.term, m.from);
    } else if (m.type == MessageType::kVote) {
      // Adopt the term but keep our election timer: it restarts only if we
      // grant the vote (HandleVoteRequest), as in the paper. Otherwise a
      // stale candidate that keeps timing out first would hold back every
      // up-to-date one forever (without PreVote).
      const int elapsed = election_elapsed_;
      const int timeout = randomized_election_timeout_;
      BecomeFollower(m.term, kNoNode);
      election_elapsed_ = elapsed;
      randomized_election_timeout_ = timeout;
    } else {
      BecomeFollower(m.term, kNoNode);
    }
  } else if (m.term < term_) {
    if (m.type == MessageType::kHeartbeat || m.type == MessageType::kAppend ||
        m.type == MessageType::kSnapshot) {
      // A stale leader (say, partitioned away and back): our higher term in
      // the answer makes it step down (Figure 2 answers every AppendEntries).
      // Without this, with PreVote, or when our configuration is too old to
      // list it, it might never learn of the new term.
      Message resp;
      resp.type = MessageType::kAppendResponse;
      resp.to = m.from;
      Send(std::move(resp));
    } else if (m.type == MessageType::kPreVote) {
      Message resp;
      resp.type = MessageType::kPreVoteResponse;
      resp.to = m.from;
      resp.term = term_;
      resp.reject = true;
      Send(std::move(resp));
    }
    return Status::OK();
  }

  if (m.type == MessageType::kVote || m.type == MessageType::kPreVote) {
    HandleVoteRequest(m);
    return Status::OK();
  }
  switch (role_) {
    case Role::kLeader:
      StepLeader(m);
      break;
    case Role::kPreCandidate:
    case Role::kCandidate:
      StepCandidate(m);
      break;
    case Role::kFollower:
      StepFollower(m);
      break;
  }
  return Status::OK();
}

void Raft::HandleVoteRequest(const Message& m) {
  const bool can_vote = vote_ == m.from || (vote_ == kNoNode && lead_ == kNoNode) ||
                        (m.type == MessageType::kPreVote && m.term > term_);
  Message resp;
  resp.type = ResponseTypeFor(m.type);
  resp.to = m.from;
  if (can_vote && log_.IsUpToDate(m.index, m.log_term)) {
    // A granted pre-vote answers in the requested term, so that the
    // pre-candidate can count it.
    resp.term = m.term;
    if (m.type == MessageType::kVote) {
      election_elapsed_ = 0;
      vote_ = m.from;
    }
  } else {
    resp.term = term_;
    resp.reject = true;
  }
  Send(std::move(resp));
}

void Raft::StepFollower(const Message& m) {
  switch (m.type) {
    case MessageType::kAppend:
      election_elapsed_ = 0;
      lead_ = m.from;
      leader_contact_tick_ = ticks_;
      HandleAppend(m);
      // Entries not known committed: the leader is busy, and heartbeats
      // until they commit. (A removed replica learns no more: awake, it
      // campaigns, and the driver can tell it.)
      if (log_.LastIndex() > log_.committed()) WakeUp();
      break;
    case MessageType::kHeartbeat:
      election_elapsed_ = 0;
      lead_ = m.from;
      leader_contact_tick_ = ticks_;
      HandleHeartbeat(m);
      if (m.context == kHibernateContext && cfg_.hibernate_tick > 0) hibernating_ = true;
      break;
    case MessageType::kSnapshot:
      election_elapsed_ = 0;
      lead_ = m.from;
      leader_contact_tick_ = ticks_;
      HandleSnapshot(m);
      if (log_.LastIndex() > log_.committed()) WakeUp();
      break;
    case MessageType::kTransferLeader:
      if (lead_ != kNoNode) {
        Message fwd = m;
        fwd.to = lead_;
        Send(std::move(fwd));
      }
      break;
    case MessageType::kTimeoutNow:
      // The leader hands over: campaign now, skipping the pre-vote.
      if (Promotable()) StartElection(CampaignType::kTransfer);
      break;
    case MessageType::kReadIndexResponse:
      if (!m.reject) read_states_.push_back(ReadState{m.index, m.context});
      break;
    default:
      break;
  }
}

void Raft::StepCandidate(const Message& m) {
  switch (m.type) {
    case MessageType::kAppend:
      BecomeFollower(m.term, m.from);
      HandleAppend(m);
      break;
    case MessageType::kHeartbeat:
      BecomeFollower(m.term, m.from);
      HandleHeartbeat(m);
      break;
    case MessageType::kSnapshot:
      BecomeFollower(m.term, m.from);
      HandleSnapshot(m);
      break;
    case MessageType::kVoteResponse:
    case MessageType::kPreVoteResponse: {
      const MessageType expected =
          role_ == Role::kPreCandidate ? MessageType::kPreVoteResponse : MessageType::kVoteResponse;
      if (m.type != expected) break;
      switch (Poll(m.from, !m.reject)) {
        case VoteResult::kWon:
          if (role_ == Role::kPreCandidate) {
            StartElection(CampaignType::kElection);
          } else {
            BecomeLeader();
          }
          break;
        case VoteResult::kLost:
          BecomeFollower(term_, kNoNode);
          break;
        case VoteResult::kPending:
          break;
      }
      break;
    }
    default:
      break;
  }
}

void Raft::StepLeader(const Message& m) {
  switch (m.type) {
    case MessageType::kReadIndex:
      HandleReadIndexRequest(m);
      return;
    case MessageType::kTransferLeader:
      HandleTransferLeader(m.index);
      return;
    default:
      break;
  }
  auto it = prs_.find(m.from);
  if (it == prs_.end()) return;
  Progress& pr = it->second;
  switch (m.type) {
    case MessageType::kAppendResponse:
      pr.recent_active = true;
      HandleAppendResponse(m, pr);
      break;
    case MessageType::kHeartbeatResponse:
      pr.recent_active = true;
      HandleHeartbeatResponse(m, pr);
      break;
    default:
      break;
  }
}

// ---------------------------------------------------------------------------
// Follower side of replication

void Raft::HandleAppend(const Message& m) {
  Message resp;
  resp.type = MessageType::kAppendResponse;
  resp.to = m.from;
  if (m.index < log_.committed()) {
    resp.index = log_.committed();
    Send(std::move(resp));
    return;
  }
  Index last_new = 0, conflict = 0;
  if (log_.MaybeAppend(m.index, m.log_term, m.entries, &last_new, &conflict)) {
    if (conflict != 0) {
      DropAcksFrom(conflict);
      uncommitted_conf_changes_.erase(uncommitted_conf_changes_.lower_bound(conflict),
                                      uncommitted_conf_changes_.end());
      TrackConfChanges(
          std::vector<Entry>(m.entries.begin() + (conflict - m.index - 1), m.entries.end()));
    }
    CommitTo(std::min(m.commit, last_new));
    resp.index = last_new;
  } else {
    // Tell the leader where our logs may agree: the last index at or below
    // the probe whose term is no greater than the leader's term there. The
    // leader skips whole terms of divergent entries in one round trip.
    Term hint_term = 0;
    const Index hint =
        log_.FindConflictByTerm(std::min(m.index, log_.LastIndex()), m.log_term, &hint_term);
    resp.index = m.index;
    resp.reject = true;
    resp.reject_hint = hint;
    resp.log_term = hint_term;
  }
  Send(std::move(resp));
}

void Raft::HandleHeartbeat(const Message& m) {
  // The leader sends min(our match, its commit): entries we hold and that match.
  CommitTo(std::min(m.commit, log_.LastIndex()));
  Message resp;
  resp.type = MessageType::kHeartbeatResponse;
  resp.to = m.from;
  resp.context = m.context;
  resp.index = m.index;
  Send(std::move(resp));
}

void Raft::HandleSnapshot(const Message& m) {
  Message resp;
  resp.type = MessageType::kAppendResponse;
  resp.to = m.from;
  if (Restore(m.snapshot)) {
    KV_LOG(kInfo) << "raft " << id_ << " g" << group_ << ": installed snapshot at "
                  << m.snapshot.meta.index << "/" << m.snapshot.meta.term;
    resp.index = log_.LastIndex();
  } else {
    resp.index = log_.committed();
  }
  Send(std::move(resp));
}

bool Raft::Restore(const Snapshot& s) {
  if (s.meta.index <= log_.committed()) return false;
  // A snapshot whose configuration lacks this node is normal for a node
  // being added: the entry that adds it follows the snapshot in the log.
  if (log_.MatchTerm(s.meta.index, s.meta.term)) {
    // We already hold the snapshot's last entry: just learn the commit.
    CommitTo(s.meta.index);
    return false;
  }
  DropAcksFrom(0);
  log_.Restore(s);
  prs_.clear();
  for (NodeId v : s.meta.conf.voters) prs_.emplace(v, NewProgress(1, false));
  for (NodeId l : s.meta.conf.learners) prs_.emplace(l, NewProgress(1, true));
  voters_ = s.meta.conf.voters;
  std::sort(voters_.begin(), voters_.end());
  ResetProgress();
  uncommitted_conf_changes_.clear();
  return true;
}

// ---------------------------------------------------------------------------
// Leader side of replication

void Raft::HandleAppendResponse(const Message& m, Progress& pr) {
  if (m.reject) {
    Index next_probe = m.reject_hint;
    if (m.log_term > 0) {
      Term ignored = 0;
      next_probe = log_.FindConflictByTerm(m.reject_hint, m.log_term, &ignored);
    }
    if (pr.MaybeDecrTo(m.index, next_probe)) {
      if (pr.state == ProgressState::kReplicate) pr.BecomeProbe();
      MaybeSendAppend(m.from, true);
    }
    return;
  }
  const bool was_paused = pr.IsPaused();
  if (!pr.MaybeUpdate(m.index) && !(pr.match == m.index && pr.state == ProgressState::kProbe)) {
    return;
  }
  switch (pr.state) {
    case ProgressState::kProbe:
      pr.BecomeReplicate();
      break;
    case ProgressState::kSnapshot:
      if (pr.match + 1 >= log_.FirstIndex()) {
        pr.BecomeProbe();
        pr.BecomeReplicate();
      }
      break;
    case ProgressState::kReplicate:
      pr.FreeInflightsUpTo(m.index);
      break;
  }
  const NodeId from = m.from;
  if (MaybeCommit()) {
    if (role_ != Role::kLeader) return;
    ReleasePendingReads();
    BroadcastAppend();
  } else if (was_paused) {
    MaybeSendAppend(from, false);
  }
  auto it = prs_.find(from);
  if (it == prs_.end()) return;  // removed by the commit above
  while (MaybeSendAppend(from, false)) {
  }
  if (from == lead_transferee_ && it->second.match == log_.LastIndex()) SendTimeoutNow(from);
}

void Raft::HandleHeartbeatResponse(const Message& m, Progress& pr) {
  pr.probe_sent = false;
  if (m.index <= ticks_) pr.lease_ack_tick = std::max(pr.lease_ack_tick, m.index);
  if (pr.state == ProgressState::kReplicate && pr.InflightsFull()) {
    // Only acknowledgements open a closed window, and none come if its
    // messages were lost. Freeing a slot instead would let the window
    // overfill towards a follower that is merely slow.
    SendEmptyAppend(m.from, pr);
  } else if (pr.match < log_.LastIndex()) {
    // Behind: send even an empty kAppend. If pipelined messages were lost or
    // reordered, its rejection resets the progress to probing from match.
    MaybeSendAppend(m.from, true);
  }

  if (m.context.empty() || pending_reads_.empty() || !IsVoter(m.from)) return;
  auto it = std::find_if(pending_reads_.rbegin(), pending_reads_.rend(),
                         [&](const PendingRead& r) { return r.context == m.context; });
  if (it == pending_reads_.rend()) return;
  if (!Contains(it->acks, m.from)) it->acks.push_back(m.from);
  size_t votes = 0;
  for (NodeId a : it->acks) votes += IsVoter(a) ? 1 : 0;
  if (votes < Quorum()) return;
  // The quorum confirmed this leader after every earlier read arrived too.
  const size_t release = static_cast<size_t>(pending_reads_.rend() - it);
  for (size_t i = 0; i < release; ++i) {
    PendingRead r = std::move(pending_reads_.front());
    pending_reads_.pop_front();
    ServeRead(r.from, r.index, r.context);
  }
}

void Raft::Send(Message m) {
  m.from = id_;
  m.group = group_;
  switch (m.type) {
    case MessageType::kVote:
    case MessageType::kPreVote:
    case MessageType::kVoteResponse:
    case MessageType::kPreVoteResponse:
      KV_CHECK(m.term != 0) << "vote message without a term";
      break;
    default:
      m.term = term_;
  }
  // A leader's replication does not depend on its own pending writes
  // (thesis 10.2.1), provided the term it speaks in is already durable.
  const bool leader_traffic = m.type == MessageType::kAppend || m.type == MessageType::kHeartbeat ||
                              m.type == MessageType::kSnapshot ||
                              m.type == MessageType::kTimeoutNow;
  // Nor does a heartbeat's answer, which speaks for no entry and no vote:
  // behind a busy disk's writes it would make the leader believe this
  // follower gone (CheckQuorum) and hold up reads.
  const bool heartbeat_answer = m.type == MessageType::kHeartbeatResponse;
  if (((role_ == Role::kLeader && leader_traffic) || heartbeat_answer) && durable_term_ == term_) {
    msgs_.push_back(std::move(m));
  } else {
    persisted_msgs_.push_back(std::move(m));
  }
}

void Raft::DropAcksFrom(Index from) {
  // An acknowledgement queued in this Ready promises entries that will be
  // durable once the Ready is. If the log just lost entries at or after
  // `from`, it would promise what is never written: drop it.
  persisted_msgs_.erase(std::remove_if(persisted_msgs_.begin(), persisted_msgs_.end(),
                                       [from](const Message& m) {
                                         return m.type == MessageType::kAppendResponse &&
                                                !m.reject && m.index >= from;
                                       }),
                        persisted_msgs_.end());
}

bool Raft::MaybeSendAppend(NodeId to, bool send_if_empty) {
  auto it = prs_.find(to);
  if (it == prs_.end() || to == id_) return false;
  Progress& pr = it->second;
  if (pr.IsPaused()) return false;
  uint64_t max_bytes = cfg_.max_msg_bytes;
  // Never past the window by more than one entry: what is queued towards a
  // follower, ahead of heartbeats on an ordered transport, stays bounded.
  if (pr.state == ProgressState::kReplicate) {
    max_bytes = std::min(max_bytes, pr.InflightBytesLeft());
  }
  Term prev_term = 0;
  Status s = log_.TermAt(pr.next - 1, &prev_term);
  std::vector<Entry> entries;
  if (s.ok()) s = log_.Slice(pr.next, log_.LastIndex() + 1, max_bytes, &entries);
  if (!s.ok()) {
    if (s.IsCompacted()) return SendSnapshot(to, pr);
    KV_LOG(kError) << "raft " << id_ << " g" << group_ << ": cannot read log for " << to << ": "
                   << s.ToString();
    return false;
  }
  if (entries.empty() && !send_if_empty) return false;
  Message m = AppendAfter(to, pr.next - 1, prev_term);
  if (!entries.empty()) {
    uint64_t bytes = 0;
    for (const Entry& e : entries) bytes += e.ByteSize();
    pr.SentEntries(entries.back().index, bytes);
  } else if (pr.state == ProgressState::kProbe) {
    pr.probe_sent = true;
  }
  m.entries = std::move(entries);
  Send(std::move(m));
  return true;
}

void Raft::SendEmptyAppend(NodeId to, Progress& pr) {
  Term prev_term = 0;
  Status s = log_.TermAt(pr.next - 1, &prev_term);
  if (!s.ok()) {
    if (s.IsCompacted()) SendSnapshot(to, pr);
    return;
  }
  Send(AppendAfter(to, pr.next - 1, prev_term));
}

Message Raft::AppendAfter(NodeId to, Index prev_index, Term prev_term) const {
  Message m;
  m.type = MessageType::kAppend;
  m.to = to;
  m.index = prev_index;
  m.log_term = prev_term;
  m.commit = log_.committed();
  return m;
}

bool Raft::SendSnapshot(NodeId to, Progress& pr) {
  // Only to a follower we know is there: a snapshot is expensive.
  if (!pr.recent_active) return false;
  Snapshot snap;
  Status s = cfg_.storage->GetSnapshot(&snap);
  if (!s.ok()) {
    if (!s.IsUnavailable()) {
      KV_LOG(kError) << "raft " << id_ << " g" << group_
                     << ": cannot read snapshot: " << s.ToString();
    }
    return false;
  }
  if (snap.IsEmpty()) return false;
  pr.BecomeSnapshot(snap.meta.index);
  Message m;
  m.type = MessageType::kSnapshot;
  m.to = to;
  m.snapshot = std::move(snap);
  Send(std::move(m));
  return true;
}

void Raft::BroadcastAppend() {
  for (const auto& entry : prs_) {
    if (entry.first != id_) MaybeSendAppend(entry.first, true);
  }
}

void Raft::SendHeartbeat(NodeId to, const std::string& context) {
  const Progress& pr = prs_.at(to);
  Message m;
  m.type = MessageType::kHeartbeat;
  m.to = to;
  // Never more than the follower is known to hold: it may lack the rest.
  m.commit = std::min(pr.match, log_.committed());
  m.context = context;
  m.index = ticks_;  // echoed back: when this round was sent (lease reads)
  Send(std::move(m));
}

void Raft::BroadcastHeartbeat(const std::string& context) {
  for (const auto& entry : prs_) {
    if (entry.first != id_) SendHeartbeat(entry.first, context);
  }
}

void Raft::SendTimeoutNow(NodeId to) {
  // The target may campaign (forcing votes past any lease) whenever this
  // arrives, even after we gave up on the transfer: no more lease reads in
  // this term.
  timeout_now_sent_ = true;
  Message m;
  m.type = MessageType::kTimeoutNow;
  m.to = to;
  Send(std::move(m));
}

void Raft::AppendEntries(std::vector<Entry> entries) {
  const Index last = log_.LastIndex();
  for (size_t i = 0; i < entries.size(); ++i) {
    entries[i].term = term_;
    entries[i].index = last + 1 + i;
  }
  TrackConfChanges(entries);
  KV_CHECK(last + 1 == uncommitted_first_ + uncommitted_sizes_.size())
      << "uncommitted sizes out of step with the log";
  for (const Entry& e : entries) {
    uncommitted_sizes_.push_back(e.ByteSize());
    uncommitted_bytes_ += e.ByteSize();
  }
  log_.Append(entries);
  // The leader counts itself toward a quorum only once these are durable:
  // see Advance.
}

void Raft::ResetUncommitted() {
  uncommitted_sizes_.clear();
  uncommitted_first_ = log_.LastIndex() + 1;
  uncommitted_bytes_ = 0;
}

bool Raft::MaybeCommit() {
  if (voters_.empty()) return false;
  std::vector<Index> matches;
  matches.reserve(voters_.size());
  for (NodeId v : voters_) {
    auto it = prs_.find(v);
    matches.push_back(it == prs_.end() ? 0 : it->second.match);
  }
  std::sort(matches.begin(), matches.end(), std::greater<Index>());
  const Index quorum_index = matches[Quorum() - 1];
  if (quorum_index <= log_.committed()) return false;
  // Only entries of the current term commit by counting (paper 5.4.2).
  Term t = 0;
  if (!log_.TermAt(quorum_index, &t).ok() || t != term_) return false;
  CommitTo(quorum_index);
  return true;
}

void Raft::CommitTo(Index index) {
  if (index <= log_.committed()) return;
  KV_CHECK(index <= log_.LastIndex())
      << "commit " << index << " past the last index " << log_.LastIndex();
  log_.set_committed(index);
  // A leader's committed entries no longer count toward max_uncommitted_bytes.
  while (!uncommitted_sizes_.empty() && uncommitted_first_ <= index) {
    uncommitted_bytes_ -= uncommitted_sizes_.front();
    uncommitted_sizes_.pop_front();
    uncommitted_first_++;
  }
  bool changed = false;
  while (!uncommitted_conf_changes_.empty() && uncommitted_conf_changes_.begin()->first <= index) {
    ConfChange cc = std::move(uncommitted_conf_changes_.begin()->second);
    uncommitted_conf_changes_.erase(uncommitted_conf_changes_.begin());
    ApplyConfChange(cc);
    changed = true;
  }
  if (!changed || role_ != Role::kLeader) return;
  if (!IsVoter(id_)) {
    // This leader was removed: let the others learn the commit, then go.
    BroadcastAppend();
    KV_LOG(kInfo) << "raft " << id_ << " g" << group_ << ": removed from the group; stepping down";
    BecomeFollower(term_, kNoNode);
    return;
  }
  // The quorum may have shrunk.
  if (MaybeCommit() && role_ == Role::kLeader) BroadcastAppend();
}

bool Raft::CommittedEntryInCurrentTerm() const {
  Term t = 0;
  return log_.TermAt(log_.committed(), &t).ok() && t == term_;
}

// ---------------------------------------------------------------------------
// Membership

void Raft::TrackConfChanges(const std::vector<Entry>& entries) {
  for (const Entry& e : entries) {
    if (e.type != EntryType::kConfChange) continue;
    ConfChange cc;
    if (!ConfChange::Decode(e.data, &cc)) {
      KV_LOG(kError) << "raft " << id_ << " g" << group_ << ": undecodable conf change at "
                     << e.index << "; ignored";
      continue;
    }
    uncommitted_conf_changes_[e.index] = std::move(cc);
  }
}

void Raft::ApplyConfChange(const ConfChange& cc) {
  const NodeId n = cc.node;
  auto it = prs_.find(n);
  switch (cc.type) {
    case ConfChangeType::kAddLearner:
      if (it == prs_.end()) prs_.emplace(n, NewProgress(log_.LastIndex() + 1, true));
      break;
    case ConfChangeType::kAddVoter:
      if (it == prs_.end()) {
        prs_.emplace(n, NewProgress(log_.LastIndex() + 1, false));
      } else {
        it->second.learner = false;
      }
      if (!IsVoter(n)) {
        voters_.insert(std::upper_bound(voters_.begin(), voters_.end(), n), n);
      }
      break;
    case ConfChangeType::kRemoveNode:
      if (it != prs_.end()) prs_.erase(it);
      voters_.erase(std::remove(voters_.begin(), voters_.end(), n), voters_.end());
      if (n == lead_transferee_) AbortLeaderTransfer();
      break;
  }
  if (n == id_ && role_ == Role::kLeader) {
    auto self = prs_.find(id_);
    if (self != prs_.end()) self->second.match = log_.DurableIndex();
  }
  KV_LOG(kInfo) << "raft " << id_ << " g" << group_ << ": configuration now " << conf_state();
}

Status Raft::ProposeConfChange(const ConfChange& cc, Index* index) {
  if (role_ != Role::kLeader) return Status::Unavailable("not the leader");
  WakeUp();
  if (lead_transferee_ != kNoNode) return Status::Unavailable("leadership transfer in progress");
  if (!CommittedEntryInCurrentTerm()) {
    return Status::Unavailable("the leader has not committed an entry of its term yet");
  }
  if (pending_conf_index_ > log_.committed()) {
    return Status::Unavailable("another membership change is in progress");
  }
  if (cc.node == kNoNode) return Status::InvalidArgument("node id 0 is reserved");
  const bool member = IsMember(cc.node);
  switch (cc.type) {
    case ConfChangeType::kAddLearner:
      if (member) return Status::InvalidArgument("node is already a member");
      break;
    case ConfChangeType::kAddVoter:
      if (IsVoter(cc.node)) return Status::InvalidArgument("node is already a voter");
      break;
    case ConfChangeType::kRemoveNode:
      if (!member) return Status::InvalidArgument("node is not a member");
      if (IsVoter(cc.node) && voters_.size() == 1) {
        return Status::InvalidArgument("cannot remove the last voter");
      }
      break;
  }
  AppendEntries({Entry{0, 0, EntryType::kConfChange, cc.Encode()}});
  pending_conf_index_ = log_.LastIndex();
  if (index != nullptr) *index = pending_conf_index_;
  broadcast_pending_ = true;
  return Status::OK();
}

// ---------------------------------------------------------------------------
// Requests from the driver

Status Raft::Propose(std::string data, Index* index, Term* term) {
  if (role_ != Role::kLeader) return Status::Unavailable("not the leader");
  WakeUp();
  if (lead_transferee_ != kNoNode) return Status::Unavailable("leadership transfer in progress");
  if (data.empty()) return Status::InvalidArgument("empty proposal");
  Entry e{0, 0, EntryType::kNormal, std::move(data)};
  // With nothing of its own uncommitted, any size goes: an entry larger than
  // the limit must get in too.
  if (cfg_.max_uncommitted_bytes > 0 && uncommitted_bytes_ > 0 &&
      uncommitted_bytes_ + e.ByteSize() > cfg_.max_uncommitted_bytes) {
    return Status::Busy("too much uncommitted data; retry later");
  }
  AppendEntries({std::move(e)});
  if (index != nullptr) *index = log_.LastIndex();
  if (term != nullptr) *term = term_;
  // Sent in GetReady, so that proposals between two Readies share messages.
  broadcast_pending_ = true;
  return Status::OK();
}

Status Raft::ReadIndex(std::string context) {
  Message m;
  m.type = MessageType::kReadIndex;
  m.context = std::move(context);
  if (role_ == Role::kLeader) {
    WakeUp();
    m.from = id_;
    HandleReadIndexRequest(m);
    return Status::OK();
  }
  if (lead_ == kNoNode) return Status::Unavailable("no leader known");
  m.to = lead_;
  Send(std::move(m));
  return Status::OK();
}

void Raft::HandleReadIndexRequest(const Message& m) {
  // Until this leader commits an entry of its term, its commit index may be
  // behind what earlier leaders acknowledged.
  if (!CommittedEntryInCurrentTerm()) {
    reads_awaiting_commit_.push_back(m);
    return;
  }
  if (voters_.size() == 1 && IsVoter(id_)) {
    ServeRead(m.from, log_.committed(), m.context);
    return;
  }
  if (cfg_.lease_reads && lead_transferee_ == kNoNode && LeaseValid()) {
    ServeRead(m.from, log_.committed(), m.context);
    return;
  }
  pending_reads_.push_back(PendingRead{log_.committed(), m.from, m.context, {id_}});
  BroadcastHeartbeat(m.context);
}

void Raft::ReleasePendingReads() {
  if (reads_awaiting_commit_.empty() || !CommittedEntryInCurrentTerm()) return;
  std::vector<Message> reads;
  reads.swap(reads_awaiting_commit_);
  for (const Message& m : reads) HandleReadIndexRequest(m);
}

void Raft::ServeRead(NodeId from, Index index, const std::string& context) {
  if (from == id_ || from == kNoNode) {
    read_states_.push_back(ReadState{index, context});
    return;
  }
  Message resp;
  resp.type = MessageType::kReadIndexResponse;
  resp.to = from;
  resp.index = index;
  resp.context = context;
  Send(std::move(resp));
}

void Raft::TransferLeader(NodeId to) {
  if (role_ == Role::kLeader) {
    WakeUp();
    HandleTransferLeader(to);
    return;
  }
  if (lead_ == kNoNode) return;
  Message m;
  m.type = MessageType::kTransferLeader;
  m.to = lead_;
  m.index = to;
  Send(std::move(m));
}

void Raft::HandleTransferLeader(NodeId target) {
  auto it = prs_.find(target);
  if (it == prs_.end() || it->second.learner || target == id_) return;
  if (lead_transferee_ != kNoNode) {
    if (lead_transferee_ == target) return;
    AbortLeaderTransfer();
  }
  // The transfer must finish within an election timeout (TickHeartbeat).
  election_elapsed_ = 0;
  lead_transferee_ = target;
  KV_LOG(kInfo) << "raft " << id_ << " g" << group_ << ": transferring leadership to " << target;
  if (it->second.match == log_.LastIndex()) {
    SendTimeoutNow(target);
  } else {
    MaybeSendAppend(target, true);
  }
}

void Raft::ReportUnreachable(NodeId to) {
  if (role_ != Role::kLeader) return;
  auto it = prs_.find(to);
  if (it == prs_.end()) return;
  if (it->second.state == ProgressState::kReplicate) it->second.BecomeProbe();
}

void Raft::ReportSnapshot(NodeId to, bool ok) {
  if (role_ != Role::kLeader) return;
  auto it = prs_.find(to);
  if (it == prs_.end() || it->second.state != ProgressState::kSnapshot) return;
  Progress& pr = it->second;
  if (!ok) pr.pending_snapshot = 0;
  pr.BecomeProbe();
  // Wait for the follower's answer to the snapshot before probing.
  pr.probe_sent = true;
}

// ---------------------------------------------------------------------------
// Ready

bool Raft::HasReady() const {
  return broadcast_pending_ || SoftState{lead_, role_} != prev_soft_ ||
         hard_state() != prev_hard_ || log_.HasUnhandedSnapshot() || log_.HasUnhandedEntries() ||
         log_.HasEntriesToApply() || !msgs_.empty() || !persisted_msgs_.empty() ||
         !read_states_.empty();
}

Ready Raft::GetReady() {
  if (broadcast_pending_) {
    broadcast_pending_ = false;
    if (role_ == Role::kLeader) BroadcastAppend();
  }
  Ready rd;
  const SoftState soft{lead_, role_};
  if (soft != prev_soft_) {
    rd.soft_state = soft;
    prev_soft_ = soft;
  }
  if (log_.HasUnhandedSnapshot()) rd.snapshot = log_.TakeUnhandedSnapshot();
  if (log_.HasUnhandedEntries()) rd.entries = log_.TakeUnhandedEntries();
  const HardState hs = hard_state();
  const bool vote_changed = hs.term != prev_hard_.term || hs.vote != prev_hard_.vote;
  if (hs != prev_hard_) {
    rd.hard_state = hs;
    prev_hard_ = hs;
  }
  if (log_.HasEntriesToApply()) {
    Status s = log_.TakeEntriesToApply(&rd.committed_entries);
    KV_CHECK(s.ok()) << "committed entries unreadable: " << s.ToString();
  }
  rd.messages.swap(msgs_);
  rd.persisted_messages.swap(persisted_msgs_);
  rd.read_states.swap(read_states_);
  rd.must_sync = vote_changed || rd.snapshot.has_value() || !rd.entries.empty();
  return rd;
}

void Raft::Advance(const Ready& rd) {
  if (rd.hard_state) durable_term_ = std::max(durable_term_, rd.hard_state->term);
  if (rd.snapshot) log_.StableSnapTo(rd.snapshot->meta.index);
  if (!rd.entries.empty()) log_.StableTo(rd.entries.back().index, rd.entries.back().term);
  if (role_ != Role::kLeader) return;
  auto self = prs_.find(id_);
  if (self == prs_.end() || !self->second.MaybeUpdate(log_.DurableIndex())) return;
  if (MaybeCommit() && role_ == Role::kLeader) {
    ReleasePendingReads();
    BroadcastAppend();
  }
}

}  // namespace kv::raft
