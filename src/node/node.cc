#include "node/node.h"

#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <type_traits>
#include <variant>

#include "common/logging.h"
#include "net/zmq_util.h"

namespace kv::node {

namespace {

raft::NodeId SenderOf(const net::PeerFrame& frame) {
  return std::visit(
      [](const auto& f) {
        if constexpr (std::is_same_v<std::decay_t<decltype(f)>, net::RaftFrame>) {
          return f.message.from;
        } else {
          return f.from;
        }
      },
      frame);
}

// Raft's critical path runs at a higher priority than bulk work: the loop
// thread (ticks, heartbeats, votes) and the WAL writer (a follower answers
// an append only once it is durable). When the CPUs are busy (receiving,
// applying, clients on the same machine) they must not wait their turn, or
// followers hear nothing for an election timeout and depose a leader that
// is fine. Measured on 2 cores, 3 nodes and kvload with 32 clients x 256 x
// 64 KiB in flight: at equal priority the loop thread spent 90% of a slow
// pass waiting for a CPU and leaders changed in 4 runs of 4; with the loop
// alone raised, its own WAL fell behind and goodput halved; with both, no
// change in 4 runs and goodput at the peak.
constexpr int kCriticalBoost = 10;

pid_t ThisThread() { return static_cast<pid_t>(syscall(SYS_gettid)); }

int NiceOfThisThread() {
  errno = 0;
  const int nice = getpriority(PRIO_PROCESS, static_cast<id_t>(ThisThread()));
  return errno == 0 ? nice : 0;
}

// Threads started by this one after the call inherit its nice value.
bool SetNiceOfThisThread(int nice) {
  if (setpriority(PRIO_PROCESS, static_cast<id_t>(ThisThread()), nice) == 0) return true;
  KV_LOG(kWarn) << "cannot raise the priority of Raft's loop and WAL threads (nice " << nice
                << "): " << strerror(errno)
                << "; allow it (CAP_SYS_NICE, or a nice limit: ulimit -e 30, systemd "
                   "LimitNICE=30) so that heartbeats keep up when the CPUs are busy";
  return false;
}

}  // namespace

Node::Node(NodeConfig cfg, storage::Env* env)
    : cfg_(std::move(cfg)),
      env_(env),
      shards_(
          &ctx_,
          [this](raft::GroupId id) {
            Status s;
            Group* g = OpenReplica(id, {}, &s);
            if (!s.ok()) KV_LOG(kError) << "cannot host group " << id << ": " << s.ToString();
            return g;
          },
          [this](Group& g) { DropPending(g); }) {
  ctx_.loop = &loop_;
  ctx_.peers = &peers_;
  ctx_.metrics = &metrics_;
  ctx_.backups = &backups_;
  ctx_.member_keys = cfg_.peer_keys;
  front_.Wire(&access_, &applier_, &membership_, &shards_, &pipeline_);
}

Node::~Node() {
  // No scrape reads the WAL's counters once it is gone.
  http_.Stop();
  // Workers finish their tasks first, then the groups go, then the storage
  // (its WAL thread reports to the pipeline, which is still here).
  workers_.reset();
  ctx_.groups.Clear();
  storage_.reset();
}

Status Node::Start() {
  // Ports first: a node that cannot listen must not touch its data dir.
  Status s = access_.Load();
  if (s.ok()) s = Bind();
  if (!s.ok()) return s;

  // Who is where: the configured peers, and (when joining) what the member
  // we join reports, which also must agree on the sharding settings before
  // this node touches its data dir. Snapshots, the log and the metadata
  // group update the members further.
  ctx_.members = cfg_.peers;
  if (!cfg_.join.empty()) {
    s = Membership::LearnMembersFrom(&zmq_, &ctx_, cfg_.join);
    if (!s.ok()) return s;
  }

  s = ClaimDataDir(env_, cfg_);
  if (!s.ok()) return s;
  storage::StorageOptions opts;
  opts.wal.sync = cfg_.fsync;
  opts.wal.segment_size = cfg_.wal_segment_bytes;
  // The WAL writer starts in Open and keeps the raised priority.
  const int base_nice = NiceOfThisThread();
  critical_priority_ = SetNiceOfThisThread(base_nice - kCriticalBoost);
  s = storage::NodeStorage::Open(env_, cfg_.data_dir, opts, &storage_);
  if (critical_priority_) setpriority(PRIO_PROCESS, static_cast<id_t>(ThisThread()), base_nice);
  if (!s.ok()) return s;
  metrics_.WatchWal(storage_->wal());
  metrics_.WatchBackups(&backups_);
  events_ = std::make_unique<net::Publisher>(&pub_, cfg_.id);
  workers_ = std::make_unique<WorkerPool>(cfg_.workers);
  ctx_.storage = storage_.get();
  ctx_.events = events_.get();
  ctx_.workers = workers_.get();

  s = OpenGroups();
  if (!s.ok()) return s;
  for (const auto& entry : ctx_.members) ctx_.ConnectPeer(entry.first);

  s = loop_.Init();
  if (s.ok()) s = loop_.WatchZmq(front_.fd(), [this] { return front_.Drain(); });
  if (s.ok()) {
    s = loop_.WatchZmq(peers_.fd(), [this] {
      return peers_.Drain(
          [this](std::string_view frame, std::string_view user) { OnPeerFrame(frame, user); });
    });
  }
  if (s.ok() && cfg_.curve()) s = loop_.WatchZmq(zap_.fd(), [this] { return zap_.Drain(); });
  if (s.ok()) s = loop_.AddTimer(std::chrono::milliseconds(cfg_.tick_ms), [this] { Tick(); });
  if (!s.ok()) return s;
  loop_.AfterEachRound([this] { ProcessReady(); });

  const size_t groups = ctx_.groups.size();
  KV_LOG(kInfo) << "node " << cfg_.id << " serving clients on " << cfg_.self().ToString()
                << ", raft on port " << cfg_.raft_port() << ", events on port " << cfg_.pub_port()
                << (cfg_.metrics_port > 0 ? ", metrics on port " + std::to_string(cfg_.metrics_port)
                                          : std::string(", no metrics port"))
                << ", data in " << cfg_.data_dir << "; " << groups << " group"
                << (groups == 1 ? "" : "s")
                << (cfg_.sharded() ? " of " + std::to_string(cfg_.shards) + " shards" : "");
  KV_LOG(kInfo) << "requests up to " << cfg_.max_client_frame() << " bytes, peer frames up to "
                << cfg_.max_peer_frame() << " bytes (members need the same key and value limits)";
  if (cfg_.curve()) {
    KV_LOG(kInfo) << "CurveZMQ on every port: " << ctx_.member_keys.size() << " member keys known"
                  << (cfg_.client_keys_file.empty() ? std::string(", no client keys")
                                                    : ", client keys from " + cfg_.client_keys_file)
                  << " (reloaded on SIGHUP)"
                  << (cfg_.metrics_port > 0
                          ? "; the metrics port " + std::to_string(cfg_.metrics_port) +
                                " is plain HTTP, open to anyone who reaches it"
                          : std::string());
  } else {
    KV_LOG(kWarn) << "no authentication: anyone who can reach ports " << cfg_.client_port() << ", "
                  << cfg_.raft_port() << " and " << cfg_.pub_port() << " on " << cfg_.listen_host
                  << " can read and write every key and speak Raft to this node";
  }
  if (!cfg_.fsync) {
    KV_LOG(kWarn) << "fsync is OFF: acknowledged writes can be lost if the machine crashes";
  }
  return Status::OK();
}

Status Node::Bind() {
  auto endpoint = [&](int port) {
    return "tcp://" + cfg_.listen_host + ":" + std::to_string(port);
  };
  if (cfg_.curve()) {
    // The handler first: a CURVE handshake without one would not be checked.
    Status s = zap_.Bind();
    if (!s.ok()) return s;
    peers_.UseCurve(cfg_.public_key, cfg_.secret_key);
    net::MakeCurveServer(pub_, cfg_.secret_key, Access::kEventsDomain);
  }
  pub_.set(zmq::sockopt::linger, 0);
  pub_.set(zmq::sockopt::affinity, net::kClientIoThread);
  Status s = front_.Bind(endpoint(cfg_.client_port()));
  if (s.ok()) s = peers_.Bind(endpoint(cfg_.raft_port()));
  if (s.ok()) s = net::BindSocket(pub_, endpoint(cfg_.pub_port()));
  if (s.ok() && cfg_.metrics_port > 0) s = http_.Start(cfg_.listen_host, cfg_.metrics_port);
  return s;
}

Status Node::OpenGroups() {
  Status s;
  if (!cfg_.sharded()) {
    // A joining node starts with no configuration: the leader's log brings it.
    std::vector<raft::NodeId> founders;
    for (const auto& entry : cfg_.peers) founders.push_back(entry.first);
    OpenReplica(kMainGroup, cfg_.join.empty() ? founders : std::vector<raft::NodeId>{}, &s);
    return s;
  }
  shards_.SetMembers(0, ctx_.members, kPlacementRuleRing);
  const std::vector<raft::GroupId> stored = storage_->Groups();
  if (stored.empty() && cfg_.join.empty()) {
    // A founder's first start: every founder computes the same placement
    // from the same founders and bootstraps the groups it puts here.
    for (const auto& [id, voters] : shards_.FoundingGroups()) {
      OpenReplica(id, voters, &s);
      if (!s.ok()) return s;
    }
  } else {
    // Later the storage says which groups this node has been part of;
    // messages from their leaders bring new ones (ShardManager::HostOnDemand).
    for (raft::GroupId id : stored) {
      if (id != kMainGroup && shards_.ShardOf(id) < 0) {
        return Status::Corruption("data dir holds group " + std::to_string(id) +
                                  ", not a group of a cluster of " + std::to_string(cfg_.shards) +
                                  " shards");
      }
      OpenReplica(id, {}, &s);
      if (!s.ok()) return s;
    }
  }
  if (Group* meta = ctx_.groups.Find(kMainGroup)) {
    membership_.OnMemberKeys(meta->sm.applied_index(), meta->sm.ScanPrefix(kMemberPrefix),
                             RecordedPlacementRule(meta->sm));
  }
  return Status::OK();
}

Group* Node::OpenReplica(raft::GroupId id, const std::vector<raft::NodeId>& voters,
                         Status* status) {
  GroupOptions options;
  options.self = cfg_.id;
  options.election_ticks = cfg_.election_ticks;
  options.heartbeat_ticks = cfg_.heartbeat_ticks;
  options.max_append_bytes = kMaxAppendBytes;
  options.hibernate_ticks = hibernation_.IdleTicks();
  options.watch.history_changes = cfg_.watch_history_changes;
  options.watch.history_bytes = cfg_.watch_history_bytes;
  std::unique_ptr<Group> opened;
  *status = OpenGroup(id, voters, storage_->Group(id), options, &opened);
  if (!status->ok()) {
    return nullptr;
  }
  Group& g = *ctx_.groups.Add(std::move(opened));
  snapshotter_.RefreshWalSegment();
  snapshotter_.OnGroupOpened(g);
  shards_.OnGroupOpened(g);
  // An unsharded cluster's members, as its configuration changes recorded them.
  for (const auto& [node, record] : g.sm.members()) {
    HostPort hp;
    std::string key;
    if (!ParseMemberRecord(record, &hp, &key).ok()) continue;
    ctx_.members[node] = hp;
    ctx_.LearnKey(node, key);
  }
  return ctx_.groups.Find(id);
}

Status Node::Run() {
  const int base_nice = NiceOfThisThread();
  if (critical_priority_) SetNiceOfThisThread(base_nice - kCriticalBoost);
  // Replays committed entries after a restart before serving anything.
  ProcessReady();
  loop_.Run();
  // The caller's thread gets its own priority back.
  if (critical_priority_) setpriority(PRIO_PROCESS, static_cast<id_t>(ThisThread()), base_nice);
  KV_LOG(kInfo) << "node " << cfg_.id << " stopping";
  // Committed entries are in the WAL: what the workers have not applied yet
  // is applied again at the next start, so a stop need not wait for it.
  workers_->Abandon();
  return pipeline_.fatal();
}

bool Node::FromAuthenticatedSender(const net::PeerFrame& frame, std::string_view user) {
  if (!cfg_.curve()) return true;
  const raft::NodeId from = SenderOf(frame);
  if (user == "peer:" + std::to_string(from)) return true;
  const uint64_t bad = peers_.CountBadMessage();
  if (ShouldLogSampled(bad)) {
    KV_LOG(kWarn) << "dropped a peer message claiming to be from node " << from
                  << " over the connection of " << (user.empty() ? "nobody" : user) << " (" << bad
                  << " bad peer messages so far)";
  }
  return false;
}

void Node::OnPeerFrame(std::string_view frame, std::string_view user) {
  net::PeerFrame decoded;
  Status s = net::DecodePeerFrame(frame, &decoded);
  if (s.ok() && !FromAuthenticatedSender(decoded, user)) return;
  if (s.ok()) {
    hibernation_.Heard(SenderOf(decoded));
    if (auto* hints = std::get_if<net::LeaderHints>(&decoded)) {
      hibernation_.OnLeaderHints(*hints);
      return shards_.OnLeaderHints(*hints);
    }
    if (auto* notice = std::get_if<net::RemovedNotice>(&decoded)) {
      return shards_.OnRemovedNotice(*notice);
    }
    s = StepRaftFrame(std::move(std::get<net::RaftFrame>(decoded)));
  }
  if (s.ok()) return;
  const uint64_t bad = peers_.CountBadMessage();
  if (ShouldLogSampled(bad)) {
    KV_LOG(kWarn) << "dropped a peer message: " << s.message() << " (" << bad << " so far)";
  }
}

Status Node::StepRaftFrame(net::RaftFrame frame) {
  raft::Message& m = frame.message;
  Group* g = ctx_.groups.Find(m.group);
  if (g == nullptr) g = shards_.HostOnDemand(m.group);
  if (g == nullptr) {
    // Not (or no longer) placed here: dropped quietly, a leader keeps
    // trying until its removal of this node commits.
    KV_LOG(kDebug) << "message for group " << m.group << " from " << m.from << ", not hosted here";
    return Status::OK();
  }
  // A replica removed without learning it campaigns (PreVote) after its
  // election timeout: that is where it is told.
  if (cfg_.sharded() &&
      (m.type == raft::MessageType::kPreVote || m.type == raft::MessageType::kVote)) {
    shards_.TellIfRemoved(*g, m.from);
  }
  if (frame.chunk.total == 0) return g->raft->Step(m);
  raft::Message whole;
  bool complete = false;
  Status s = snapshot_assembler_.Add(std::move(m), frame.chunk, &whole, &complete);
  if (s.ok() && complete) s = g->raft->Step(whole);
  return s;
}

void Node::Tick() {
  ++ctx_.ticks;
  constexpr uint64_t kWalSegmentTicks = 10;
  if (ctx_.ticks % kWalSegmentTicks == 0) snapshotter_.RefreshWalSegment();
  peers_.WatchLinks();
  hibernation_.Tick();
  if (auto idle = backups_.DropIdle(Backups::Clock::now()); !idle.empty()) {
    // Freeing a view may free a shard's worth of records: not on this thread.
    workers_->Post(kMainGroup, [idle = std::move(idle)] {});
  }
  for (const auto& [id, g] : ctx_.groups) {
    if (g->removed) {
      if (g->open_watches > 0) {
        front_.EndWatches(id, "this node no longer serves the shard; resume on another replica");
      }
      continue;
    }
    if (g->open_watches > 0) applier_.TickWatches(*g);
    g->raft->Tick();
    membership_.Tick(*g);
    expirer_.Tick(*g);
    if (g->raft->commit() != g->published_commit) {
      // Progress events at most once a tick, however many entries commit.
      g->published_commit = g->raft->commit();
      CommitEvent event;
      event.group = id;
      event.term = g->raft->term();
      event.commit = g->published_commit;
      event.applied = g->progress().applied;
      events_->Publish(event);
    }
  }
  PumpSnapshots();
  shards_.Tick();
  // After this round's Readies (ProcessReady), so that what a scrape reads
  // of a group agrees: its role with the campaign that made it.
  metrics_due_ = true;
}

void Node::PublishMetrics() {
  std::vector<GroupMetrics> groups;
  Health health;
  health.live = pipeline_.fatal().ok();
  if (!health.live) health.problem = "storage failed: " + pipeline_.fatal().ToString();
  std::vector<std::string> waiting;
  for (const auto& [id, g] : ctx_.groups) {
    if (g->removed) continue;
    GroupMetrics m;
    m.status = g->Status();
    const ApplyProgress progress = g->progress();
    m.bytes = progress.bytes;
    m.sessions = progress.sessions;
    m.snapshot_bytes = g->snapshot_bytes;
    m.hibernating = g->raft->hibernating();
    m.counters = g->counters;
    // Ready: a leader known and the state machine caught up, give or take
    // what a busy moment leaves between commit and apply.
    const GroupStatus& s = m.status;
    if (s.leader == raft::kNoNode) {
      waiting.push_back("group " + std::to_string(id) + ": no leader known");
    } else if (s.commit > s.applied + kPromoteLag) {
      waiting.push_back("group " + std::to_string(id) + ": applied " + std::to_string(s.applied) +
                        " of " + std::to_string(s.commit) + " committed");
    }
    groups.push_back(std::move(m));
  }
  health.ready = waiting.empty();
  for (const std::string& w : waiting) {
    health.waiting += (health.waiting.empty() ? "" : "; ") + w;
  }
  Connections connections;
  connections.clients = front_.CountConnections();
  connections.peers = static_cast<int64_t>(peers_.connected());
  metrics_.Publish(std::move(groups), std::move(health), connections);
}

void Node::ProcessReady() {
  if (!pipeline_.fatal().ok()) return;
  for (const auto& [id, g] : ctx_.groups) {
    // One ReadIndex round confirms every read that arrived in this round.
    for (const Pending& p : g->reads.Start(*g->raft)) front_.RedirectOrUnavailable(p, id);
  }
  pipeline_.Process();
  if (!pipeline_.fatal().ok()) return;
  for (const auto& [id, g] : ctx_.groups) snapshotter_.Maybe(*g);
  shards_.SendHintsIfDue();
  if (metrics_due_) {
    metrics_due_ = false;
    PublishMetrics();
  }
}

void Node::DropPending(Group& g) {
  // Writes that may still commit (or not) under the next leader: their fate
  // is unknown. Those already committed are answered when applied.
  net::ClientReply unknown;
  unknown.status = net::ReplyStatus::kUnknown;
  unknown.error = "leadership lost before the write committed; it may or may not take effect";
  for (auto it = g.pending_writes.upper_bound(g.raft->commit()); it != g.pending_writes.end();) {
    front_.Reply(it->second, unknown);
    it = g.pending_writes.erase(it);
  }
  // Reads not yet confirmed by a quorum were never executed.
  net::ClientReply unavailable;
  unavailable.status = net::ReplyStatus::kUnavailable;
  unavailable.error = "leadership lost; retry";
  for (const Pending& p : g.reads.TakeAll()) front_.Reply(p, unavailable);
  membership_.FailJoining(g);
}

void Node::Deliver(Outgoing out) {
  if (out.member_keys) {
    membership_.OnMemberKeys(out.member_version, *out.member_keys, out.placement_rule);
  }
  for (EncodedReply& r : out.replies) front_.Send(std::move(r));
  for (Event& event : out.events) events_->Publish(std::move(event));
}

// ---- ReadyHandler ----------------------------------------------------------

void Node::OnRoleChange(Group& g, const raft::SoftState& ss) {
  g.ObserveRoleChange(ss);
  RoleEvent event;
  event.group = g.id;
  event.role = raft::RoleName(ss.role);
  event.term = g.raft->term();
  event.leader = ss.leader;
  events_->Publish(event);
  KV_LOG(kInfo) << "node " << cfg_.id << (cfg_.sharded() ? " group " + std::to_string(g.id) : "")
                << " is " << raft::RoleName(ss.role) << " in term " << g.raft->term() << ", leader "
                << ss.leader;
  shards_.OnRoleChange(g, ss.role);
  if (ss.role != raft::Role::kLeader) DropPending(g);
}

void Node::QueueMessages(const std::vector<raft::Message>& msgs) {
  for (const raft::Message& m : msgs) peers_.Queue(m);
}

void Node::FlushMessages() {
  peers_.Flush([this](raft::NodeId to, raft::GroupId group) {
    if (Group* g = ctx_.groups.Find(group)) g->raft->ReportUnreachable(to);
  });
}

void Node::PumpSnapshots() {
  // Every chunk queued: the follower's answer tells the leader the rest.
  peers_.PumpSnapshots([this](raft::GroupId group, raft::NodeId to, bool ok) {
    Group* g = ctx_.groups.Find(group);
    if (g == nullptr) return;
    g->raft->ReportSnapshot(to, ok);
    if (ok) ++g->counters.snapshots_sent;
  });
}

void Node::OnSnapshot(Group& g, raft::Snapshot snap) {
  ++g.counters.snapshots_installed;
  g.snapshot_bytes = snap.data.size();
  applier_.Install(g, std::move(snap));
}

void Node::OnCommitted(Group& g, std::vector<raft::Entry> entries) {
  for (const raft::Entry& e : entries) {
    if (e.type == raft::EntryType::kConfChange) membership_.OnConfChangeCommitted(g, e);
  }
  applier_.Apply(g, std::move(entries));
}

void Node::OnReadStates(Group& g, const std::vector<raft::ReadState>& states) {
  for (const raft::ReadState& rs : states) {
    std::vector<Pending> reads = g.reads.Confirmed(rs);
    if (!reads.empty()) applier_.Read(g, rs.index, std::move(reads));
  }
}

void Node::OnFatal(const Status& s) {
  KV_LOG(kError) << "node " << cfg_.id << ": storage failed, stopping: " << s.ToString();
  PublishMetrics();  // /healthz says so until the process ends
  loop_.Stop();
}

}  // namespace kv::node
