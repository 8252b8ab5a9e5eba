#include "test/raft/sim.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <sstream>

#include "common/logging.h"

namespace kv::raft::sim {

namespace {

constexpr GroupId kGroup = 1;
constexpr uint64_t kPipeTicks = 1 << 16;  // a pipe's clock ticks per step

uint64_t Fnv(uint64_t h, const void* p, size_t n) {
  const auto* b = static_cast<const unsigned char*>(p);
  if (h == 0) h = 1469598103934665603ull;
  for (size_t i = 0; i < n; ++i) {
    h ^= b[i];
    h *= 1099511628211ull;
  }
  return h;
}

uint64_t HashData(const std::string& s) { return Fnv(0, s.data(), s.size()); }

uint64_t ChainHash(uint64_t h, const Entry& e) {
  h = Fnv(h, &e.index, sizeof(e.index));
  h = Fnv(h, &e.term, sizeof(e.term));
  const auto type = static_cast<uint8_t>(e.type);
  h = Fnv(h, &type, 1);
  return Fnv(h, e.data.data(), e.data.size());
}

void Insert(std::vector<NodeId>* v, NodeId id) {
  if (std::find(v->begin(), v->end(), id) == v->end()) {
    v->push_back(id);
    std::sort(v->begin(), v->end());
  }
}

void Erase(std::vector<NodeId>* v, NodeId id) {
  v->erase(std::remove(v->begin(), v->end(), id), v->end());
}

std::string Str(const ConfState& cs) {
  std::ostringstream os;
  os << cs;
  return os.str();
}

// Whether a message claims state the sender must hold durably.
bool ClaimsDurability(const Message& m) {
  return (m.type == MessageType::kVoteResponse && !m.reject) ||
         (m.type == MessageType::kAppendResponse && !m.reject);
}

}  // namespace

// ---------------------------------------------------------------- AppState

void AppState::Apply(const Entry& e) {
  if (e.type == EntryType::kConfChange) {
    ConfChange cc;
    if (ConfChange::Decode(e.data, &cc)) {
      switch (cc.type) {
        case ConfChangeType::kAddLearner:
          if (std::find(conf.voters.begin(), conf.voters.end(), cc.node) == conf.voters.end()) {
            Insert(&conf.learners, cc.node);
          }
          break;
        case ConfChangeType::kAddVoter:
          Erase(&conf.learners, cc.node);
          Insert(&conf.voters, cc.node);
          break;
        case ConfChangeType::kRemoveNode:
          Erase(&conf.learners, cc.node);
          Erase(&conf.voters, cc.node);
          break;
      }
    }
  } else {
    const size_t bar = e.data.find('|');
    if (bar != std::string::npos) {
      const size_t eq = e.data.find('=', bar);
      if (eq != std::string::npos) {
        kv[e.data.substr(bar + 1, eq - bar - 1)] = e.data.substr(eq + 1);
      }
    }
  }
  hash = ChainHash(hash, e);
  applied = e.index;
}

std::string AppState::Encode() const {
  std::ostringstream os;
  os << "app " << applied << ' ' << hash << ' ' << kv.size() << '\n';
  for (const auto& [k, v] : kv) os << k << '\n' << v << '\n';
  return os.str();
}

bool AppState::Decode(const std::string& data, AppState* out) {
  std::istringstream is(data);
  std::string magic;
  size_t n = 0;
  AppState a;
  if (!(is >> magic >> a.applied >> a.hash >> n) || magic != "app") return false;
  is.ignore(1);
  for (size_t i = 0; i < n; ++i) {
    std::string k, v;
    if (!std::getline(is, k) || !std::getline(is, v)) return false;
    a.kv[k] = v;
  }
  *out = std::move(a);
  return true;
}

uint64_t WireBytes(const Message& m) {
  uint64_t bytes = 64 + m.context.size() + m.snapshot.data.size();
  for (const Entry& e : m.entries) bytes += e.ByteSize();
  return bytes;
}

std::string KvData(const std::string& tag, const std::string& key, const std::string& value) {
  return tag + "|" + key + "=" + value;
}

// ---------------------------------------------------------------- Cluster

Cluster::Cluster(const SimOptions& opts)
    : opts_(opts), rng_(opts.seed * 0x9E3779B97F4A7C15ull + 7) {
  // The cores log every election and configuration; keep test output to
  // warnings unless KV_LOG_LEVEL asks for more.
  if (std::getenv("KV_LOG_LEVEL") == nullptr) SetLogLevel(LogLevel::kWarn);
  // RAFT_SIM_TRACE=1 prints every event of every cluster (for debugging a test).
  if (std::getenv("RAFT_SIM_TRACE") != nullptr) opts_.trace_print = true;
  for (int i = 1; i <= opts_.nodes; ++i) initial_.push_back(static_cast<NodeId>(i));
  for (NodeId id : initial_) {
    auto n = std::make_unique<Node>();
    n->id = id;
    n->initial = true;
    n->max_disk_delay = opts_.max_disk_delay;
    nodes_[id] = std::move(n);
  }
  for (NodeId id : initial_) Start(*nodes_[id]);
}

Cluster::~Cluster() = default;

Cluster::Node& Cluster::node(NodeId id) {
  auto it = nodes_.find(id);
  if (it == nodes_.end()) {
    std::fprintf(stderr, "sim: unknown node %llu\n", static_cast<unsigned long long>(id));
    std::abort();
  }
  return *it->second;
}

const Cluster::Node& Cluster::node(NodeId id) const { return const_cast<Cluster*>(this)->node(id); }

std::vector<NodeId> Cluster::ids() const {
  std::vector<NodeId> out;
  for (const auto& [id, n] : nodes_) out.push_back(id);
  return out;
}

std::vector<NodeId> Cluster::live_ids() const {
  std::vector<NodeId> out;
  for (const auto& [id, n] : nodes_) {
    if (n->up && !n->decommissioned) out.push_back(id);
  }
  return out;
}

bool Cluster::up(NodeId id) const { return exists(id) && node(id).up; }
bool Cluster::decommissioned(NodeId id) const { return exists(id) && node(id).decommissioned; }

Raft& Cluster::raft(NodeId id) {
  Node& n = node(id);
  if (!n.up) {
    std::fprintf(stderr, "sim: node %llu is down\n", static_cast<unsigned long long>(id));
    std::abort();
  }
  return *n.raft;
}

const AppState& Cluster::app(NodeId id) const { return node(id).app; }
MemoryStorage& Cluster::storage(NodeId id) { return node(id).storage; }
uint64_t Cluster::incarnation(NodeId id) const { return node(id).incarnation; }

void Cluster::Start(Node& n) {
  n.incarnation++;
  n.app = AppState();
  Snapshot snap;
  n.storage.GetSnapshot(&snap);
  if (!snap.IsEmpty()) RestoreApp(n, snap, "restart");
  Config cfg;
  cfg.id = n.id;
  cfg.group = kGroup;
  if (n.initial) cfg.peers = initial_;
  cfg.storage = &n.storage;
  cfg.applied = snap.meta.index;
  cfg.election_tick = opts_.election_tick;
  cfg.heartbeat_tick = opts_.heartbeat_tick;
  cfg.max_msg_bytes = opts_.max_msg_bytes;
  cfg.max_inflight_msgs = opts_.max_inflight_msgs;
  cfg.max_inflight_bytes = opts_.max_inflight_bytes;
  cfg.max_uncommitted_bytes = opts_.max_uncommitted_bytes;
  cfg.max_committed_bytes_per_ready = opts_.max_committed_bytes_per_ready;
  cfg.pre_vote = opts_.pre_vote;
  cfg.check_quorum = opts_.check_quorum;
  cfg.lease_reads = opts_.lease_reads;
  cfg.hibernate_tick = opts_.hibernate_tick;
  cfg.seed = opts_.seed * 1000003ull + n.id * 101ull + n.incarnation;
  n.raft = std::make_unique<Raft>(cfg);
  if (!n.raft->status().ok()) {
    Violation("node " + std::to_string(n.id) + " failed to start: " + n.raft->status().ToString());
    n.raft.reset();
    n.up = false;
    return;
  }
  n.up = true;
  n.writes.clear();
  n.pending_reads.clear();
  n.mem_verified = 0;
  n.commit_seen = 0;
  n.leader_term = 0;
  n.completeness_verified = 0;
  n.last_term = n.raft->term();
  n.last_role = n.raft->role();
  n.heard_at.clear();  // every node counts as heard at the start
  if (Tracing()) {
    Note("n" + std::to_string(n.id) + " start #" + std::to_string(n.incarnation) +
         " term=" + std::to_string(n.raft->term()) + " snap=" + std::to_string(snap.meta.index) +
         " last=" + std::to_string(n.storage.LastIndex()));
  }
  AfterInput(n, "start");
}

void Cluster::Crash(NodeId id) {
  Node& n = node(id);
  if (!n.up) return;
  if (Tracing()) {
    Note("n" + std::to_string(id) +
         " CRASH (writes in flight lost: " + std::to_string(n.writes.size()) + ")");
  }
  n.raft.reset();
  n.up = false;
  n.writes.clear();
  if (n.unsynced && rng_.Chance(0.5)) {
    // The commit index written without sync did not reach the disk.
    n.storage.SetHardState(n.synced_hs);
    if (Tracing()) Note("n" + std::to_string(id) + " lost its unsynced hard state");
  }
  n.unsynced = false;
  n.pending_reads.clear();
  n.app = AppState();
  checker_.ObserveCrash(id);
}

void Cluster::Restart(NodeId id) {
  Node& n = node(id);
  if (n.up || n.decommissioned) return;
  Start(n);
}

NodeId Cluster::AddNode() {
  const NodeId id = nodes_.empty() ? 1 : nodes_.rbegin()->first + 1;
  auto n = std::make_unique<Node>();
  n->id = id;
  n->initial = false;
  n->max_disk_delay = opts_.max_disk_delay;
  Node& ref = *n;
  nodes_[id] = std::move(n);
  Start(ref);
  return id;
}

void Cluster::Decommission(NodeId id) {
  Node& n = node(id);
  if (n.decommissioned) return;
  if (n.up) Crash(id);
  n.decommissioned = true;
  if (Tracing()) Note("n" + std::to_string(id) + " decommissioned");
}

void Cluster::SetDiskDelay(NodeId id, int max_delay) { node(id).max_disk_delay = max_delay; }

void Cluster::HoldDisk(NodeId id, bool hold) { node(id).disk_held = hold; }

size_t Cluster::writes_in_flight(NodeId id) const { return node(id).writes.size(); }

// ---------------------------------------------------------------- inputs

void Cluster::AfterInput(Node& n, const char* what) {
  if (!n.up) return;
  checker_.Observe(*n.raft);
  const Raft& r = *n.raft;
  if (r.term() < n.last_term) {
    Violation("n" + std::to_string(n.id) + " term went back from " + std::to_string(n.last_term) +
              " to " + std::to_string(r.term()) + " after " + what);
  }
  if (r.role() == Role::kLeader) {
    auto [it, inserted] = leaders_.emplace(r.term(), n.id);
    if (!inserted && it->second != n.id) {
      Violation("election safety: n" + std::to_string(it->second) + " and n" +
                std::to_string(n.id) + " both leader in term " + std::to_string(r.term()));
    }
    if (n.leader_term != r.term()) {
      n.leader_term = r.term();
      n.leader_commit = r.commit();
      n.completeness_verified = 0;
      n.voters = r.conf_state().voters.size();
    }
    CheckLeaderCommit(n);
  }
  if (Tracing() && (r.role() != n.last_role || r.term() != n.last_term)) {
    Note("n" + std::to_string(n.id) + " " + RoleName(r.role()) +
         " term=" + std::to_string(r.term()) + " last=" + std::to_string(r.last_index()) +
         " commit=" + std::to_string(r.commit()) + " (" + what + ")");
  }
  n.last_term = r.term();
  n.last_role = r.role();
}

Status Cluster::Propose(NodeId id, const std::string& data, Index* index, Term* term) {
  Node& n = node(id);
  if (!n.up) return Status::Unavailable("node down");
  Index i = 0;
  Term t = 0;
  Status s = n.raft->Propose(data, &i, &t);
  AfterInput(n, "propose");
  if (s.IsBusy()) busy_++;
  if (s.ok()) {
    Proposal p;
    p.node = id;
    p.incarnation = n.incarnation;
    p.index = i;
    p.term = t;
    p.data = data;
    proposals_.push_back(p);
    proposal_at_.emplace(i, proposals_.size() - 1);
    if (i <= n.raft->commit() || t != n.raft->term()) {
      Violation("n" + std::to_string(id) + " accepted a proposal at " + std::to_string(i) + "@" +
                std::to_string(t) + " with commit " + std::to_string(n.raft->commit()) +
                " in term " + std::to_string(n.raft->term()));
    }
    if (Tracing()) {
      Note("n" + std::to_string(id) + " propose " + data + " -> " + std::to_string(i) + "@" +
           std::to_string(t));
    }
  }
  if (index) *index = i;
  if (term) *term = t;
  return s;
}

Status Cluster::ProposeKv(NodeId id, const std::string& key, std::string* value, Index* index,
                          Term* term) {
  const std::string v = "v" + std::to_string(next_tag_);
  const std::string tag = "p" + std::to_string(next_tag_++);
  if (value) *value = v;
  return Propose(id, KvData(tag, key, v), index, term);
}

Status Cluster::ProposeConfChange(NodeId id, const ConfChange& cc, Index* index) {
  Node& n = node(id);
  if (!n.up) return Status::Unavailable("node down");
  Index i = 0;
  Status s = n.raft->ProposeConfChange(cc, &i);
  AfterInput(n, "conf change");
  if (Tracing()) {
    static const char* kNames[] = {"add-learner", "add-voter", "remove"};
    Note("n" + std::to_string(id) + " propose conf change " + kNames[static_cast<int>(cc.type)] +
         " n" + std::to_string(cc.node) + ": " + s.ToString() + " at " + std::to_string(i));
  }
  if (index) *index = i;
  return s;
}

Status Cluster::ReadIndex(NodeId id, const std::string& key, std::string* context) {
  Node& n = node(id);
  if (!n.up) return Status::Unavailable("node down");
  const std::string ctx = "r" + std::to_string(next_read_++);
  ReadRecord rec;
  rec.node = id;
  rec.key = key;
  rec.issued_at = now_;
  rec.max_commit_at_issue = std::max(max_committed_, MaxCommit());
  Status s = n.raft->ReadIndex(ctx);
  AfterInput(n, "read index");
  if (s.ok()) reads_[ctx] = rec;
  if (context) *context = ctx;
  return s;
}

void Cluster::TransferLeader(NodeId id, NodeId to) {
  Node& n = node(id);
  if (!n.up) return;
  n.raft->TransferLeader(to);
  AfterInput(n, "transfer");
  if (Tracing()) Note("n" + std::to_string(id) + " transfer leader to n" + std::to_string(to));
}

void Cluster::Campaign(NodeId id) {
  Node& n = node(id);
  if (!n.up) return;
  n.raft->Campaign();
  AfterInput(n, "campaign");
}

void Cluster::Tick(NodeId id) {
  Node& n = node(id);
  if (!n.up) return;
  n.raft->Tick();
  AfterInput(n, "tick");
}

// ---------------------------------------------------------------- Ready

void Cluster::HandleReadies(Node& n) {
  for (int guard = 0; guard < 64 && n.up; ++guard) {
    bool progress = false;
    if (n.raft->HasReady()) {
      Ready rd = n.raft->GetReady();
      AfterInput(n, "get ready");
      CheckDurableClaims(n, rd.messages, /*before_persist=*/true);
      for (const Message& m : rd.messages) Send(n, m);
      int64_t due = now_;
      if (n.max_disk_delay > 0) due += rng_.Range(0, n.max_disk_delay);
      if (!n.writes.empty()) due = std::max(due, n.writes.back().due);
      n.writes.push_back(Write{std::move(rd), due});
      progress = true;
    }
    if (CompleteWrites(n)) progress = true;
    if (!progress) break;
  }
}

bool Cluster::CompleteWrites(Node& n) {
  bool any = false;
  while (n.up && !n.disk_held && !n.writes.empty() && n.writes.front().due <= now_) {
    Write w = std::move(n.writes.front());
    n.writes.pop_front();
    Persist(n, w);
    any = true;
  }
  return any;
}

void Cluster::Persist(Node& n, Write& w) {
  Ready& rd = w.rd;
  const std::string who = "n" + std::to_string(n.id);
  if (rd.snapshot) {
    Status s = n.storage.ApplySnapshot(*rd.snapshot);
    if (!s.ok()) Violation(who + " could not persist snapshot: " + s.ToString());
  }
  if (!rd.entries.empty()) {
    Status s = n.storage.Append(rd.entries);
    if (!s.ok()) {
      Violation(who + " could not persist entries from " +
                std::to_string(rd.entries.front().index) + ": " + s.ToString());
    }
  }
  if (!rd.must_sync) {
    const HardState& before = n.storage.hard_state();
    if (rd.snapshot || !rd.entries.empty() ||
        (rd.hard_state &&
         (rd.hard_state->term != before.term || rd.hard_state->vote != before.vote))) {
      Violation(who + " got a Ready with must_sync false that changes the log, term or vote");
    }
  }
  if (rd.hard_state) {
    n.storage.SetHardState(*rd.hard_state);
    checker_.ObservePersisted(n.id, *rd.hard_state);
  }
  if (rd.must_sync) {
    n.synced_hs = n.storage.hard_state();
    n.unsynced = false;
  } else if (rd.hard_state) {
    n.unsynced = true;
  }
  if (Tracing() && (rd.snapshot || !rd.entries.empty() || rd.hard_state)) {
    std::ostringstream os;
    os << who << " persisted";
    if (rd.snapshot) os << " snapshot@" << rd.snapshot->meta.index;
    if (!rd.entries.empty()) {
      os << " entries " << rd.entries.front().index << ".." << rd.entries.back().index << "@"
         << rd.entries.back().term;
    }
    if (rd.hard_state) os << " hs=" << *rd.hard_state;
    Note(os.str());
  }
  CheckDurableClaims(n, rd.persisted_messages, /*before_persist=*/false);
  for (const Message& m : rd.persisted_messages) Send(n, m);
  if (rd.snapshot) RestoreApp(n, *rd.snapshot, "install");
  for (const Entry& e : rd.committed_entries) Apply(n, e);
  for (const ReadState& rs : rd.read_states) n.pending_reads.push_back(rs);
  ServeReads(n);
  n.raft->Advance(rd);
  AfterInput(n, "advance");
  MaybeCompact(n);
}

void Cluster::RestoreApp(Node& n, const Snapshot& s, const char* why) {
  AppState a;
  if (!AppState::Decode(s.data, &a)) {
    Violation("n" + std::to_string(n.id) + " snapshot@" + std::to_string(s.meta.index) + " (" +
              why + ") has undecodable data");
    return;
  }
  if (a.applied != s.meta.index) {
    Violation("n" + std::to_string(n.id) + " snapshot meta index " + std::to_string(s.meta.index) +
              " but its data is the state at " + std::to_string(a.applied));
  }
  if (a.applied < hash_at_.size() && hash_at_[a.applied] && *hash_at_[a.applied] != a.hash) {
    Violation("state machine safety: n" + std::to_string(n.id) + " restored a snapshot at " +
              std::to_string(a.applied) + " whose state differs from what was applied there");
  }
  a.conf = s.meta.conf;
  n.app = std::move(a);
}

void Cluster::Apply(Node& n, const Entry& e) {
  const std::string who = "n" + std::to_string(n.id);
  if (e.index != n.app.applied + 1) {
    Violation(who + " applied entry " + std::to_string(e.index) + " after " +
              std::to_string(n.app.applied) + " (gap or repeat)");
  }
  // Committed entries come out of Ready only after (or with) their own write.
  Term st = 0;
  if (e.index >= n.storage.FirstIndex() && (!n.storage.TermAt(e.index, &st).ok() || st != e.term)) {
    Violation(who + " applied entry " + std::to_string(e.index) + "@" + std::to_string(e.term) +
              " that is not in its durable log");
  }
  checker_.ObserveApplied(n.id, e);
  if (e.index >= applied_.size()) {
    applied_.resize(e.index + 1);
    hash_at_.resize(e.index + 1);
  }
  if (!applied_[e.index]) {
    applied_[e.index] = e;
  } else if (*applied_[e.index] != e) {
    std::ostringstream os;
    os << "state machine safety: " << who << " applied " << e << " but another node applied "
       << *applied_[e.index];
    Violation(os.str());
  }
  n.app.Apply(e);
  if (!hash_at_[e.index]) {
    hash_at_[e.index] = n.app.hash;
  } else if (*hash_at_[e.index] != n.app.hash) {
    Violation("state machine safety: " + who + " state after applying " + std::to_string(e.index) +
              " differs from another node's");
  }
  auto [lo, hi] = proposal_at_.equal_range(e.index);
  for (auto it = lo; it != hi; ++it) {
    Proposal& p = proposals_[it->second];
    const bool same = p.term == e.term && p.data == e.data;
    if (p.term == e.term && p.data != e.data) {
      Violation("entry " + std::to_string(e.index) + "@" + std::to_string(e.term) +
                " applied with data other than what its leader accepted");
    }
    p.state = same ? Proposal::State::kCommitted : Proposal::State::kLost;
  }
  if (e.type == EntryType::kConfChange) {
    n.conf_applied = true;
    ConfChange cc;
    if (!ConfChange::Decode(e.data, &cc)) {
      Violation(who + " applied an undecodable conf change at " + std::to_string(e.index));
    } else if (cc.type == ConfChangeType::kRemoveNode && cc.node != n.id) {
      removed_.insert(cc.node);
    }
    if (Tracing()) {
      Note(who + " applied conf change at " + std::to_string(e.index) + ": " + Str(n.app.conf));
    }
  }
}

void Cluster::ServeReads(Node& n) {
  auto it = n.pending_reads.begin();
  while (it != n.pending_reads.end()) {
    if (it->index > n.app.applied) {
      ++it;
      continue;
    }
    auto rec = reads_.find(it->context);
    if (rec == reads_.end()) {
      Violation("n" + std::to_string(n.id) + " got a read state for unknown context " +
                it->context);
    } else if (rec->second.node != n.id) {
      Violation("n" + std::to_string(n.id) + " got the read state of n" +
                std::to_string(rec->second.node) + "'s read " + it->context);
    } else if (!rec->second.served) {
      ReadRecord& r = rec->second;
      r.served = true;
      r.read_index = it->index;
      r.served_applied = n.app.applied;
      auto kv = n.app.kv.find(r.key);
      r.value = kv == n.app.kv.end() ? "" : kv->second;
      if (it->index < r.max_commit_at_issue) {
        Violation("stale read: n" + std::to_string(n.id) + " read " + it->context +
                  " got read index " + std::to_string(it->index) + " but index " +
                  std::to_string(r.max_commit_at_issue) + " was committed before it was issued");
      }
      if (Tracing()) {
        Note("n" + std::to_string(n.id) + " served read " + it->context + " at " +
             std::to_string(it->index));
      }
    }
    it = n.pending_reads.erase(it);
  }
}

void Cluster::MaybeCompact(Node& n, bool force) {
  if (opts_.snapshot_interval == 0 || !n.up) return;
  const Index snap = n.storage.FirstIndex() - 1;
  const Index a = n.app.applied;
  if (opts_.snapshot_on_conf_change && n.conf_applied && a > snap) force = true;
  if ((!force && a < snap + opts_.snapshot_interval) || a <= snap || a > n.storage.LastIndex()) {
    return;
  }
  n.conf_applied = false;
  // The snapshot is durable on its own (a separate file): an unsynced commit
  // index below it may still be lost at a crash (RAFT_BUGS.md #4).
  Status s = n.storage.CreateSnapshot(a, n.app.conf, n.app.Encode());
  if (!s.ok()) {
    Violation("n" + std::to_string(n.id) + " could not snapshot at " + std::to_string(a) + ": " +
              s.ToString());
  } else if (Tracing()) {
    Note("n" + std::to_string(n.id) + " snapshot at " + std::to_string(a));
  }
}

// ---------------------------------------------------------------- network

void Cluster::Send(Node& n, const Message& m) {
  stats_.total_sent++;
  stats_.sent[m.type]++;
  if (send_hook_) send_hook_(m);
  if (m.from != n.id || m.group != kGroup) {
    Violation("n" + std::to_string(n.id) + " sent a message with from=" + std::to_string(m.from) +
              " group=" + std::to_string(m.group));
  }
  if (m.type == MessageType::kAppend) {
    Term prev = m.log_term;
    for (const Entry& e : m.entries) {
      NoteEntry(n.id, "kAppend", e.index, e.term, &prev, &e.data);
      prev = e.term;
    }
    NoteAppendSent(m);
  }
  if (Tracing()) Note("send " + DescribeMessage(m));
  InFlight f;
  f.m = m;
  if (rewrite_hook_) rewrite_hook_(&f.m);
  if (opts_.net.truncate > 0 && f.m.type == MessageType::kAppend && !f.m.entries.empty() &&
      rng_.Chance(opts_.net.truncate)) {
    f.m.entries.resize(rng_.Uniform(f.m.entries.size()));
  }
  f.seq = msg_seq_++;
  f.sent_at = now_;
  f.sender_incarnation = n.incarnation;
  f.at = now_ + rng_.Range(opts_.net.min_latency, opts_.net.max_latency);
  if (held_links_.count({m.from, m.to}) != 0) {
    held_.push_back(std::move(f));
    return;
  }
  bool drop = false;
  if (drop_filter_ && drop_filter_(m)) drop = true;
  if (!exists(m.to)) drop = true;
  if (!Linked(m.from, m.to)) {
    drop = true;
    if (opts_.report_unreachable && m.type == MessageType::kAppend && rng_.Chance(0.5)) {
      n.raft->ReportUnreachable(m.to);
      AfterInput(n, "report unreachable");
    }
  }
  if (!drop && opts_.net.drop > 0 && rng_.Chance(opts_.net.drop)) drop = true;
  if (drop) {
    stats_.dropped++;
    if (m.type == MessageType::kSnapshot) {
      f.lost = true;
      in_flight_.push_back(std::move(f));
    }
    return;
  }
  auto bw = bandwidth_.find({m.from, m.to});
  const uint64_t bytes_per_step = bw != bandwidth_.end() ? bw->second : opts_.net.bytes_per_step;
  if (bytes_per_step > 0) {
    // The pipe's clock runs in fractions of a step, so that small messages
    // share one.
    Pipe& p = pipes_[{m.from, m.to}];
    const uint64_t wire = (WireBytes(f.m) * kPipeTicks + bytes_per_step - 1) / bytes_per_step;
    p.free_at = std::max(p.free_at, static_cast<uint64_t>(now_) * kPipeTicks) + wire;
    const auto left = static_cast<int64_t>((p.free_at + kPipeTicks - 1) / kPipeTicks);
    f.at = std::max(left + (f.at - now_), p.last_at);
    p.last_at = f.at;
  } else if (opts_.net.delay > 0 && rng_.Chance(opts_.net.delay)) {
    f.at = now_ + rng_.Range(opts_.net.min_latency, opts_.net.max_delay);
  }
  if (opts_.net.duplicate > 0 && rng_.Chance(opts_.net.duplicate)) {
    InFlight d = f;
    d.seq = msg_seq_++;
    d.at = now_ +
           rng_.Range(opts_.net.min_latency, std::max(opts_.net.max_latency, opts_.net.max_delay));
    in_flight_.push_back(std::move(d));
  }
  in_flight_.push_back(std::move(f));
}

void Cluster::ReportSnapshotOutcome(const InFlight& f, bool ok) {
  if (!opts_.report_unreachable) return;
  auto it = nodes_.find(f.m.from);
  if (it == nodes_.end()) return;
  Node& sender = *it->second;
  if (!sender.up || sender.incarnation != f.sender_incarnation) return;
  sender.raft->ReportSnapshot(f.m.to, ok);
  AfterInput(sender, ok ? "snapshot delivered" : "snapshot failed");
}

void Cluster::Deliver() {
  std::vector<InFlight> due;
  std::vector<InFlight> later;
  for (InFlight& f : in_flight_) {
    (f.at <= now_ ? due : later).push_back(std::move(f));
  }
  in_flight_ = std::move(later);
  std::sort(due.begin(), due.end(), [](const InFlight& a, const InFlight& b) {
    return a.at != b.at ? a.at < b.at : a.seq < b.seq;
  });
  for (InFlight& f : due) {
    const bool is_snapshot = !f.ping && f.m.type == MessageType::kSnapshot;
    if (f.lost) {
      ReportSnapshotOutcome(f, false);
      continue;
    }
    auto it = nodes_.find(f.m.to);
    Node* to = it == nodes_.end() ? nullptr : it->second.get();
    if (!to || !to->up || to->decommissioned || (!f.released && !Linked(f.m.from, f.m.to))) {
      stats_.dropped++;
      if (is_snapshot) ReportSnapshotOutcome(f, false);
      continue;
    }
    to->heard_at[f.m.from] = now_;
    if (f.ping) {
      ReceivePing(*to, f);
      continue;
    }
    stats_.delivered++;
    if (deliver_hook_) deliver_hook_(f.m, now_ - f.sent_at);
    Status s = to->raft->Step(f.m);
    if (Tracing() && !s.ok()) Note("n" + std::to_string(to->id) + " step: " + s.ToString());
    AfterInput(*to, MessageTypeName(f.m.type));
    if (is_snapshot) ReportSnapshotOutcome(f, true);
  }
}

size_t Cluster::messages_in_flight() const {
  return std::count_if(in_flight_.begin(), in_flight_.end(),
                       [](const InFlight& f) { return !f.ping; });
}

void Cluster::SendPings(Node& n) {
  for (const auto& [id, other] : nodes_) {
    if (id == n.id || other->decommissioned) continue;
    if (!Linked(n.id, id) || (opts_.net.drop > 0 && rng_.Chance(opts_.net.drop))) continue;
    InFlight f;
    f.ping = true;
    f.m.from = n.id;
    f.m.to = id;
    f.m.term = n.raft->role() == Role::kLeader ? n.raft->term() : 0;
    f.seq = msg_seq_++;
    f.sent_at = now_;
    f.sender_incarnation = n.incarnation;
    f.at = now_ + rng_.Range(opts_.net.min_latency, opts_.net.max_latency);
    in_flight_.push_back(std::move(f));
  }
}

void Cluster::ReceivePing(Node& to, const InFlight& f) {
  Raft& r = *to.raft;
  // Its leader says it no longer leads at our term (it stepped down, or
  // restarted within an election timeout).
  if (r.role() == Role::kFollower && r.leader() == f.m.from && f.m.term != r.term() &&
      r.hibernating()) {
    peer_downs_++;
    if (Tracing())
      Note("n" + std::to_string(to.id) + " ping: n" + std::to_string(f.m.from) +
           " no longer leads");
    r.PeerDown(f.m.from);
    AfterInput(to, "peer down (ping)");
  }
}

void Cluster::DetectSilentPeers(Node& n) {
  const int64_t timeout = static_cast<int64_t>(opts_.election_tick) * opts_.steps_per_tick;
  for (const auto& [id, other] : nodes_) {
    if (id == n.id || other->decommissioned) continue;
    auto [it, inserted] = n.heard_at.emplace(id, now_);
    if (inserted || now_ - it->second < timeout || !n.raft->hibernating()) continue;
    peer_downs_++;
    if (Tracing()) Note("n" + std::to_string(n.id) + " silent: n" + std::to_string(id));
    n.raft->PeerDown(id);
    AfterInput(n, "peer down (silent)");
  }
}

void Cluster::Isolate(NodeId id) {
  for (const auto& [other, n] : nodes_) {
    if (other != id) CutBoth(id, other);
  }
  if (Tracing()) Note("isolate n" + std::to_string(id));
}

void Cluster::Partition(const std::vector<std::vector<NodeId>>& groups) {
  cut_.clear();
  std::map<NodeId, int> group_of;
  for (size_t g = 0; g < groups.size(); ++g) {
    for (NodeId id : groups[g]) group_of[id] = static_cast<int>(g);
  }
  for (const auto& [a, na] : nodes_) {
    for (const auto& [b, nb] : nodes_) {
      if (a == b) continue;
      auto ga = group_of.find(a);
      auto gb = group_of.find(b);
      if (ga == group_of.end() || gb == group_of.end() || ga->second != gb->second) Cut(a, b);
    }
  }
  if (Tracing()) {
    std::string s = "partition";
    for (const auto& g : groups) {
      s += " {";
      for (NodeId id : g) s += " " + std::to_string(id);
      s += " }";
    }
    Note(s);
  }
}

void Cluster::Cut(NodeId from, NodeId to) {
  cut_.insert({from, to});
  if (Tracing()) Note("cut " + std::to_string(from) + "->" + std::to_string(to));
}

void Cluster::CutBoth(NodeId a, NodeId b) {
  Cut(a, b);
  Cut(b, a);
}

void Cluster::Release(NodeId from, NodeId to) {
  held_links_.erase({from, to});
  std::vector<InFlight> keep;
  for (InFlight& f : held_) {
    if (f.m.from == from && f.m.to == to) {
      f.at = now_ + 1;
      f.seq = msg_seq_++;
      f.released = true;
      in_flight_.push_back(std::move(f));
    } else {
      keep.push_back(std::move(f));
    }
  }
  held_ = std::move(keep);
  if (Tracing()) Note("release " + std::to_string(from) + "->" + std::to_string(to));
}

void Cluster::Heal() {
  cut_.clear();
  if (Tracing()) Note("heal");
}

// ---------------------------------------------------------------- time

void Cluster::Step() {
  ++now_;
  Deliver();
  if (now_ % opts_.steps_per_tick == 0) {
    const bool pings = opts_.hibernate_tick > 0;
    const bool ping_round = pings && (now_ / opts_.steps_per_tick) % opts_.heartbeat_tick == 0;
    for (auto& [id, n] : nodes_) {
      if (!n->up) continue;
      n->raft->Tick();
      AfterInput(*n, "tick");
      if (ping_round) SendPings(*n);
      if (pings) DetectSilentPeers(*n);
    }
  }
  for (auto& [id, n] : nodes_) {
    if (n->up) HandleReadies(*n);
  }
  DecommissionRemoved();
  CheckAll();
}

void Cluster::RunSteps(int64_t n) {
  for (int64_t i = 0; i < n; ++i) Step();
}

bool Cluster::RunUntil(const std::function<bool()>& pred, int64_t max_ticks) {
  const int64_t end = now_ + max_ticks * opts_.steps_per_tick;
  while (now_ < end) {
    Step();
    if (pred()) return true;
  }
  return pred();
}

void Cluster::DecommissionRemoved() {
  if (!auto_decommission_) return;
  for (NodeId id : removed_) {
    auto it = nodes_.find(id);
    if (it != nodes_.end() && !it->second->decommissioned) Decommission(id);
  }
}

// ---------------------------------------------------------------- observations

NodeId Cluster::Leader() const {
  NodeId best = kNoNode;
  Term best_term = 0;
  for (const auto& [id, n] : nodes_) {
    if (n->up && !n->decommissioned && n->raft->role() == Role::kLeader &&
        n->raft->term() >= best_term) {
      best = id;
      best_term = n->raft->term();
    }
  }
  return best;
}

int Cluster::CountLeaders() const {
  int c = 0;
  for (const auto& [id, n] : nodes_) {
    if (n->up && !n->decommissioned && n->raft->role() == Role::kLeader) ++c;
  }
  return c;
}

Index Cluster::MaxCommit() const {
  Index c = 0;
  for (const auto& [id, n] : nodes_) {
    if (n->up) c = std::max(c, n->raft->commit());
  }
  return c;
}

const Entry* Cluster::AppliedEntry(Index i) const {
  if (i >= applied_.size() || !applied_[i]) return nullptr;
  return &*applied_[i];
}

bool Cluster::AllApplied(Index index) const {
  for (const auto& [id, n] : nodes_) {
    if (!n->up || n->decommissioned) continue;
    const ConfState& cs = n->app.conf;
    const bool member = std::count(cs.voters.begin(), cs.voters.end(), id) ||
                        std::count(cs.learners.begin(), cs.learners.end(), id);
    if (member && n->app.applied < index) return false;
  }
  return true;
}

size_t Cluster::reads_served() const {
  size_t n = 0;
  for (const auto& [ctx, r] : reads_) n += r.served ? 1 : 0;
  return n;
}

// ---------------------------------------------------------------- checks

void Cluster::Violation(const std::string& what) {
  const std::string v = "step " + std::to_string(now_) + ": " + what;
  violations_.push_back(v);
  Note("VIOLATION " + what);
}

std::vector<std::string> Cluster::violations() const {
  std::vector<std::string> out = violations_;
  for (const std::string& v : checker_.violations()) out.push_back("invariant checker: " + v);
  return out;
}

void Cluster::Note(const std::string& event) {
  if (!Tracing()) return;
  std::string line = "[" + std::to_string(now_) + "] " + event;
  if (opts_.trace_print) std::fprintf(stderr, "%s\n", line.c_str());
  if (opts_.trace_keep == 0) return;
  trace_.push_back(std::move(line));
  while (trace_.size() > opts_.trace_keep) trace_.pop_front();
}

std::string Cluster::Report() const {
  std::ostringstream os;
  os << "seed " << opts_.seed << ", step " << now_ << "\n";
  for (const std::string& v : violations()) os << "  " << v << "\n";
  if (!trace_.empty()) {
    os << "recent events:\n";
    for (const std::string& t : trace_) os << "  " << t << "\n";
  }
  for (const auto& [id, n] : nodes_) {
    os << "  n" << id << (n->decommissioned ? " decommissioned" : n->up ? "" : " down");
    if (n->up) {
      const Raft& r = *n->raft;
      os << " " << RoleName(r.role()) << " term=" << r.term() << " lead=" << r.leader()
         << " first=" << r.first_index() << " last=" << r.last_index() << " commit=" << r.commit()
         << " durable=" << r.durable_index();
    }
    os << " applied=" << n->app.applied << " stored=[" << n->storage.FirstIndex() << ","
       << n->storage.LastIndex() << "] hs=" << n->storage.hard_state()
       << " writes=" << n->writes.size() << "\n";
  }
  return os.str();
}

void Cluster::NoteEntry(NodeId id, const char* where, Index i, Term t, const Term* prev,
                        const std::string* data) {
  if (i == 0) return;
  if (i >= log_.size()) log_.resize(i + 1);
  std::vector<LogSeen>& at = log_[i];
  LogSeen* s = nullptr;
  for (LogSeen& x : at) {
    if (x.term == t) s = &x;
  }
  if (!s) {
    at.push_back(LogSeen{t, false, 0, false, 0});
    s = &at.back();
  }
  if (prev) {
    if (!s->has_prev) {
      s->has_prev = true;
      s->prev = *prev;
    } else if (s->prev != *prev) {
      Violation("log matching: entry " + std::to_string(i) + "@" + std::to_string(t) + " in n" +
                std::to_string(id) + "'s " + where + " follows term " + std::to_string(*prev) +
                ", elsewhere term " + std::to_string(s->prev));
    }
  }
  if (data) {
    const uint64_t h = HashData(*data);
    if (!s->has_data) {
      s->has_data = true;
      s->data_hash = h;
    } else if (s->data_hash != h) {
      Violation("log matching: entry " + std::to_string(i) + "@" + std::to_string(t) + " in n" +
                std::to_string(id) + "'s " + where + " has different data than elsewhere");
    }
  }
}

void Cluster::CheckMemLog(Node& n) {
  const Raft& r = *n.raft;
  const Index first = r.first_index();
  const Index last = r.last_index();
  Index from = std::max(first, n.mem_verified + 1);
  if (from > last) return;
  Term prev = 0;
  if (!r.TermAt(from - 1, &prev).ok()) {
    Violation("n" + std::to_string(n.id) + " cannot read the term at " + std::to_string(from - 1) +
              " (first=" + std::to_string(first) + ")");
    return;
  }
  for (Index i = from; i <= last; ++i) {
    Term t = 0;
    Status s = r.TermAt(i, &t);
    if (!s.ok()) {
      Violation("n" + std::to_string(n.id) + " cannot read the term at " + std::to_string(i) +
                ": " + s.ToString());
      return;
    }
    if (t < prev) {
      Violation("n" + std::to_string(n.id) + "'s log has term " + std::to_string(t) + " at " +
                std::to_string(i) + " after term " + std::to_string(prev));
    }
    NoteEntry(n.id, "log", i, t, &prev, nullptr);
    prev = t;
  }
  n.mem_verified = std::min(r.commit(), last);
}

void Cluster::CheckStorageLog(Node& n) {
  const Index first = n.storage.FirstIndex();
  const Index last = n.storage.LastIndex();
  const Index from = std::max(first, n.storage_verified + 1);
  if (from > last) return;
  Term prev = 0;
  n.storage.TermAt(from - 1, &prev);
  std::vector<Entry> es;
  Status s = n.storage.Entries(from, last + 1, UINT64_MAX, &es);
  if (!s.ok()) {
    Violation("n" + std::to_string(n.id) + " storage read failed: " + s.ToString());
    return;
  }
  Index expect = from;
  for (const Entry& e : es) {
    if (e.index != expect++) {
      Violation("n" + std::to_string(n.id) + " storage holds entry " + std::to_string(e.index) +
                " where " + std::to_string(expect - 1) + " belongs");
      return;
    }
    NoteEntry(n.id, "stored log", e.index, e.term, &prev, &e.data);
    prev = e.term;
  }
  n.storage_verified = std::min(n.storage.hard_state().commit, last);
}

void Cluster::CheckCommitted(Node& n) {
  const Raft& r = *n.raft;
  const Index c = r.commit();
  if (c < n.commit_seen) n.commit_seen = 0;  // restarted from an older commit
  for (Index i = std::max(n.commit_seen + 1, r.first_index()); i <= c; ++i) {
    Term t = 0;
    if (!r.TermAt(i, &t).ok()) continue;
    if (i >= committed_.size()) committed_.resize(i + 1);
    CommitSeen& cs = committed_[i];
    if (!cs.set) {
      cs.set = true;
      cs.term = t;
      cs.known_term = r.term();
      max_committed_ = std::max(max_committed_, i);
    } else if (cs.term != t) {
      Violation("commit agreement: n" + std::to_string(n.id) + " committed " + std::to_string(i) +
                "@" + std::to_string(t) + ", another node committed it at term " +
                std::to_string(cs.term));
    }
  }
  n.commit_seen = c;
}

void Cluster::CheckCompleteness(Node& n) {
  const Raft& r = *n.raft;
  if (r.role() != Role::kLeader) return;
  const Term T = r.term();
  const Index from = std::max(n.completeness_verified + 1, r.first_index());
  for (Index i = from; i <= max_committed_ && i < committed_.size(); ++i) {
    const CommitSeen& cs = committed_[i];
    if (!cs.set || cs.known_term >= T) continue;
    Term t = 0;
    if (!r.TermAt(i, &t).ok() || t != cs.term) {
      Violation("leader completeness: leader n" + std::to_string(n.id) + " of term " +
                std::to_string(T) + " lacks committed entry " + std::to_string(i) + "@" +
                std::to_string(cs.term));
      break;
    }
  }
  n.completeness_verified = std::max(n.completeness_verified, max_committed_);
}

void Cluster::CheckLeaderCommit(Node& n) {
  const Raft& r = *n.raft;
  const Index c = r.commit();
  const size_t voters_now = r.conf_state().voters.size();
  const size_t voters = std::min(n.voters, voters_now);
  n.voters = voters_now;
  if (c <= n.leader_commit) return;
  Term ct = 0;
  if (r.TermAt(c, &ct).ok() && ct != r.term()) {
    // Paper 5.4.2: a leader commits by counting replicas of its own term only.
    Violation("leader n" + std::to_string(n.id) + " of term " + std::to_string(r.term()) +
              " advanced commit to " + std::to_string(c) + ", an entry of term " +
              std::to_string(ct));
  }
  const size_t quorum = voters / 2 + 1;
  for (Index i = n.leader_commit + 1; i <= c; ++i) {
    Term t = 0;
    if (!r.TermAt(i, &t).ok()) continue;
    size_t copies = 0;
    for (const auto& [id, other] : nodes_) {
      Term st = 0;
      if (other->storage.FirstIndex() - 1 >= i || (other->storage.TermAt(i, &st).ok() && st == t)) {
        ++copies;
      }
    }
    if (copies < quorum) {
      Violation("durability: leader n" + std::to_string(n.id) + " committed " + std::to_string(i) +
                "@" + std::to_string(t) + " while only " + std::to_string(copies) +
                " node(s) hold it durably (quorum " + std::to_string(quorum) + ")");
      break;
    }
  }
  n.leader_commit = c;
}

void Cluster::CheckDurableClaims(Node& n, const std::vector<Message>& msgs, bool before_persist) {
  for (const Message& m : msgs) {
    if (!ClaimsDurability(m)) continue;
    const std::string what =
        (before_persist ? "in Ready.messages: " : "after persisting: ") + DescribeMessage(m);
    if (m.type == MessageType::kVoteResponse) {
      const HardState& hs = n.storage.hard_state();
      // A later durable term also settles it: this node can never vote in m.term again.
      if (hs.term < m.term || (hs.term == m.term && hs.vote != m.to)) {
        std::ostringstream os;
        os << "durability: n" << n.id << " grants a vote not yet persisted (" << hs << ") " << what;
        Violation(os.str());
      }
      continue;
    }
    // An accepting kAppendResponse: entries up to m.index are durable here.
    const Index snap = n.storage.FirstIndex() - 1;
    if (m.index <= snap) continue;
    Term st = 0;
    bool ok = n.storage.TermAt(m.index, &st).ok();
    if (ok && before_persist && n.up) {
      Term mt = 0;
      // Right after GetReady the core's log is what the message speaks for.
      if (n.raft->TermAt(m.index, &mt).ok() && mt != st) ok = false;
    }
    if (!ok) {
      Violation("durability: n" + std::to_string(n.id) + " acknowledges index " +
                std::to_string(m.index) + " not durable in its log (stored last " +
                std::to_string(n.storage.LastIndex()) + ") " + what);
    }
  }
}

void Cluster::NoteAppendSent(const Message& m) {
  Unacked& u = unacked_[{m.from, m.to}];
  if (m.term < u.term) return;
  if (m.term > u.term) u = Unacked{m.term, {}, 0, 0};
  for (const Entry& e : m.entries) {
    auto [it, inserted] = u.sent.emplace(e.index, e.ByteSize());
    if (!inserted) {
      u.bytes -= it->second;
      it->second = e.ByteSize();
    }
    u.bytes += e.ByteSize();
    u.largest = std::max(u.largest, e.ByteSize());
  }
}

void Cluster::CheckInflight(Node& n) {
  const Raft& r = *n.raft;
  const uint64_t limit = opts_.max_inflight_bytes;
  if (r.role() != Role::kLeader || limit == 0) return;
  for (auto it = unacked_.lower_bound({n.id, 0}); it != unacked_.end() && it->first.first == n.id;
       ++it) {
    Unacked& u = it->second;
    const Progress* pr = r.ProgressOf(it->first.second);
    if (u.term != r.term() || pr == nullptr) continue;
    while (!u.sent.empty() && u.sent.begin()->first <= pr->match) {
      u.bytes -= u.sent.begin()->second;
      u.sent.erase(u.sent.begin());
    }
    // Only replication sends optimistically, from match + 1 to next - 1; a
    // probe is one message, a snapshot none.
    if (pr->state != ProgressState::kReplicate) continue;
    uint64_t bytes = u.bytes;
    for (auto e = u.sent.rbegin(); e != u.sent.rend() && e->first >= pr->next; ++e) {
      bytes -= e->second;
    }
    if (bytes >= limit) full_windows_++;
    if (bytes >= limit + u.largest) {
      Violation("flow control: leader n" + std::to_string(n.id) + " has " + std::to_string(bytes) +
                " bytes of entries unacknowledged towards n" + std::to_string(it->first.second) +
                " (match " + std::to_string(pr->match) + ", next " + std::to_string(pr->next) +
                "), past max_inflight_bytes " + std::to_string(limit) + " and one entry");
    }
  }
}

void Cluster::CheckAll() {
  for (auto& [id, n] : nodes_) {
    CheckStorageLog(*n);
    if (!n->up) continue;
    CheckMemLog(*n);
    CheckCommitted(*n);
  }
  for (auto& [id, n] : nodes_) {
    if (!n->up) continue;
    CheckCompleteness(*n);
    CheckInflight(*n);
    const Raft& r = *n->raft;
    if (n->writes.empty() && r.commit() == n->app.applied && r.conf_state() != n->app.conf) {
      Violation("n" + std::to_string(id) + " core configuration " + Str(r.conf_state()) +
                " differs from the applied one " + Str(n->app.conf) + " at " +
                std::to_string(n->app.applied));
    }
  }
}

}  // namespace kv::raft::sim
