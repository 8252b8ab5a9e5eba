#include "test/raft/property.h"

#include <algorithm>
#include <sstream>
#include <vector>

#include "test/raft/sim.h"

namespace kv::raft::sim {

namespace {

const char* const kKeys[] = {"a", "b", "c", "d", "e"};

class Run {
 public:
  explicit Run(const PropertyOptions& po) : po_(po), rng_(po.seed ^ 0xC0FFEEull), c_(Options()) {}

  PropertyResult Go() {
    c_.set_auto_decommission(!po_.keep_removed);
    int64_t chaos_left = po_.steps;
    while (ok() && chaos_left > 0) {
      const int64_t phase = std::min<int64_t>(chaos_left, rng_.Range(200, 1200));
      RandomizeNetwork();
      for (int64_t i = 0; i < phase && ok(); ++i) {
        ChaosAction();
        c_.Step();
      }
      chaos_left -= phase;
      if (ok()) Calm();
    }
    PropertyResult res;
    res.ok = ok();
    if (!res.ok) {
      std::ostringstream os;
      if (!liveness_.empty()) os << "liveness: " << liveness_ << "\n";
      os << c_.Report();
      res.failure = os.str();
    }
    res.steps = c_.now();
    res.proposals = c_.proposals().size();
    res.busy = c_.busy();
    res.full_windows = c_.full_windows();
    for (const Proposal& p : c_.proposals()) {
      if (p.state == Proposal::State::kCommitted) res.committed++;
    }
    res.crashes = crashes_;
    res.conf_changes = conf_changes_;
    res.elections = c_.leader_terms();
    res.reads_served = c_.reads_served();
    res.messages = c_.stats().total_sent;
    return res;
  }

 private:
  SimOptions Options() {
    SimOptions o;
    o.seed = po_.seed;
    o.nodes = po_.nodes;
    o.steps_per_tick = 4;
    static const int kElection[] = {5, 10, 10, 20};
    o.election_tick = kElection[rng_.Uniform(4)];
    o.heartbeat_tick = rng_.Chance(0.7) ? 1 : static_cast<int>(rng_.Range(2, 3));
    const bool guards = rng_.Chance(0.8);
    o.pre_vote = guards;
    o.check_quorum = guards;
    o.lease_reads = guards && po_.lease_reads && rng_.Chance(0.5);
    static const uint64_t kBytes[] = {1, 100, 300, 1 << 20};
    o.max_msg_bytes = kBytes[rng_.Uniform(4)];
    static const size_t kInflight[] = {1, 2, 8, 256};
    o.max_inflight_msgs = kInflight[rng_.Uniform(4)];
    o.max_committed_bytes_per_ready = rng_.Chance(0.3) ? 200 : (16 << 20);
    // Windows of a few entries (of ~40 bytes) put flow control under faults.
    static const uint64_t kInflightBytes[] = {0, 100, 300, 8 << 20};
    o.max_inflight_bytes = kInflightBytes[rng_.Uniform(4)];
    if (o.max_inflight_bytes != 0) {
      o.max_msg_bytes = std::min(o.max_msg_bytes, o.max_inflight_bytes);
    }
    // Leaders with a few entries uncommitted refuse proposals (Busy).
    static const uint64_t kUncommittedBytes[] = {0, 120, 400, 64 << 20};
    o.max_uncommitted_bytes = kUncommittedBytes[rng_.Uniform(4)];
    static const Index kSnap[] = {0, 7, 20, 60};
    o.snapshot_interval = kSnap[rng_.Uniform(4)];
    o.snapshot_on_conf_change = po_.snapshot_on_conf_change;
    o.max_disk_delay = rng_.Chance(0.5) ? 0 : static_cast<int>(rng_.Range(1, 8));
    o.trace_keep = po_.trace_keep;
    o.trace_print = po_.trace_print;
    // From a source of its own, so that the seeds without it run as before.
    Rng hibernation(po_.seed ^ 0x48494245ull);
    o.hibernate_tick =
        o.pre_vote && hibernation.Chance(0.6) ? static_cast<int>(hibernation.Range(1, 10)) : 0;
    return o;
  }

  bool ok() const { return c_.ok() && liveness_.empty(); }

  void Fail(const std::string& why) {
    if (liveness_.empty()) liveness_ = "step " + std::to_string(c_.now()) + ": " + why;
  }

  NodeId RandomLive() {
    std::vector<NodeId> live = c_.live_ids();
    return live.empty() ? kNoNode : live[rng_.Uniform(live.size())];
  }

  void RandomizeNetwork() {
    NetworkOptions& net = c_.net();
    net.min_latency = 1;
    net.max_latency = static_cast<int>(rng_.Range(1, 6));
    net.drop = rng_.Chance(0.3) ? 0.0 : rng_.Range(0, 20) / 100.0;
    net.duplicate = rng_.Range(0, 5) / 100.0;
    net.delay = rng_.Range(0, 10) / 100.0;
    net.max_delay = static_cast<int>(rng_.Range(8, 80));
    net.truncate = rng_.Chance(0.5) ? 0.0 : rng_.Range(0, 10) / 100.0;
    // Now and then ordered links of a few entries a step, where what is in
    // flight queues ahead of everything else.
    net.bytes_per_step = rng_.Chance(0.7) ? 0 : static_cast<uint64_t>(rng_.Range(100, 1000));
  }

  void ChaosAction() {
    const uint64_t r = rng_.Uniform(10000);
    if (r < 1500) {
      // Mostly at the leader: the harness counts every accepted proposal.
      NodeId to = c_.Leader();
      if (to == kNoNode || rng_.Chance(0.1)) to = RandomLive();
      if (to != kNoNode) c_.ProposeKv(to, kKeys[rng_.Uniform(5)]);
    } else if (r < 1800) {
      NodeId to = RandomLive();
      if (to != kNoNode) c_.ReadIndex(to, kKeys[rng_.Uniform(5)]);
    } else if (r < 1840) {
      NodeId victim = rng_.Chance(0.3) ? c_.Leader() : RandomLive();
      if (victim != kNoNode) {
        c_.Crash(victim);
        crashes_++;
      }
    } else if (r < 1940) {
      for (NodeId id : c_.ids()) {
        if (!c_.up(id) && !c_.decommissioned(id)) {
          c_.Restart(id);
          break;
        }
      }
    } else if (r < 1990) {
      Partition();
    } else if (r < 2020) {
      RandomizeNetwork();
    } else if (r < 2050) {
      NodeId id = RandomLive();
      if (id != kNoNode) {
        c_.SetDiskDelay(id, rng_.Chance(0.4) ? 0 : static_cast<int>(rng_.Range(1, 12)));
      }
    } else if (r < 2065) {
      // Asked at the leader, or at another node that forwards it.
      NodeId l = c_.Leader();
      if (l != kNoNode) {
        std::vector<NodeId> voters = c_.raft(l).conf_state().voters;
        const NodeId at = rng_.Chance(0.7) ? l : RandomLive();
        if (!voters.empty() && at != kNoNode) {
          c_.TransferLeader(at, voters[rng_.Uniform(voters.size())]);
        }
      }
    } else if (r < 2215 && po_.membership) {
      ChangeMembership();
    }
  }

  void Partition() {
    std::vector<NodeId> all = c_.ids();
    switch (rng_.Uniform(5)) {
      case 0: {
        NodeId id = rng_.Chance(0.5) ? c_.Leader() : all[rng_.Uniform(all.size())];
        if (id != kNoNode) c_.Isolate(id);
        break;
      }
      case 1: {
        std::vector<NodeId> a, b;
        for (NodeId id : all) (rng_.Chance(0.5) ? a : b).push_back(id);
        c_.Partition({a, b});
        break;
      }
      case 2: {
        NodeId x = all[rng_.Uniform(all.size())];
        NodeId y = all[rng_.Uniform(all.size())];
        if (x != y) c_.Cut(x, y);
        break;
      }
      case 3: {
        // The leader can send but not hear back (or the reverse).
        NodeId l = c_.Leader();
        if (l == kNoNode) break;
        for (NodeId id : all) {
          if (id == l) continue;
          if (rng_.Chance(0.5))
            c_.Cut(id, l);
          else
            c_.Cut(l, id);
        }
        break;
      }
      default:
        c_.Heal();
    }
  }

  void ChangeMembership() {
    const NodeId l = c_.Leader();
    if (l == kNoNode) return;
    Raft& r = c_.raft(l);
    const ConfState cs = r.conf_state();
    ConfChange cc;
    switch (rng_.Uniform(4)) {
      case 0: {  // add a learner
        if (cs.voters.size() + cs.learners.size() >= static_cast<size_t>(po_.nodes) + 2) return;
        if (c_.ids().size() >= static_cast<size_t>(po_.nodes) + 8) return;
        const NodeId id = c_.AddNode();
        cc.type = ConfChangeType::kAddLearner;
        cc.node = id;
        if (!c_.ProposeConfChange(l, cc).ok())
          c_.Decommission(id);
        else
          conf_changes_++;
        return;
      }
      case 1: {  // promote a caught-up learner
        for (NodeId id : cs.learners) {
          const Progress* pr = r.ProgressOf(id);
          if (pr && pr->match + 5 >= r.last_index()) {
            cc.type = ConfChangeType::kAddVoter;
            cc.node = id;
            if (c_.ProposeConfChange(l, cc).ok()) conf_changes_++;
            return;
          }
        }
        return;
      }
      case 2: {  // remove a voter, possibly the leader
        if (cs.voters.size() <= 3) return;
        cc.type = ConfChangeType::kRemoveNode;
        cc.node = rng_.Chance(0.3) ? l : cs.voters[rng_.Uniform(cs.voters.size())];
        if (c_.ProposeConfChange(l, cc).ok()) conf_changes_++;
        return;
      }
      default: {  // remove a learner
        if (cs.learners.empty()) return;
        cc.type = ConfChangeType::kRemoveNode;
        cc.node = cs.learners[rng_.Uniform(cs.learners.size())];
        if (c_.ProposeConfChange(l, cc).ok()) conf_changes_++;
        return;
      }
    }
  }

  // Members by the leader's configuration have applied through index.
  bool MembersApplied(NodeId l, Index index) {
    if (!c_.up(l)) return false;
    const ConfState cs = c_.raft(l).conf_state();
    std::vector<NodeId> members = cs.voters;
    members.insert(members.end(), cs.learners.begin(), cs.learners.end());
    for (NodeId id : members) {
      if (!c_.exists(id) || !c_.up(id) || c_.app(id).applied < index) return false;
    }
    return true;
  }

  // A live leader that is a member of its own configuration and whose term is
  // the highest among the live members of it: not a stale leader cut off (or
  // removed) long ago that never heard of the newer terms.
  NodeId CurrentLeader() {
    for (NodeId l : c_.live_ids()) {
      Raft& r = c_.raft(l);
      if (r.role() != Role::kLeader) continue;
      const ConfState cs = r.conf_state();
      bool member = false, newest = true;
      for (const auto* set : {&cs.voters, &cs.learners}) {
        for (NodeId id : *set) {
          member = member || id == l;
          if (c_.up(id) && c_.raft(id).term() > r.term()) newest = false;
        }
      }
      if (member && newest) return l;
    }
    return kNoNode;
  }

  // The lowest applied index among the members by the leader's configuration.
  Index MinApplied(NodeId l) {
    const ConfState cs = c_.raft(l).conf_state();
    Index lo = c_.app(l).applied;
    for (const auto* set : {&cs.voters, &cs.learners}) {
      for (NodeId id : *set) {
        if (c_.exists(id) && c_.up(id)) lo = std::min(lo, c_.app(id).applied);
      }
    }
    return lo;
  }

  // Heals everything and checks that the cluster makes progress.
  void Calm() {
    c_.Heal();
    NetworkOptions& net = c_.net();
    net.drop = 0;
    net.duplicate = 0;
    net.delay = 0;
    net.truncate = 0;
    for (NodeId id : c_.ids()) {
      if (!c_.up(id) && !c_.decommissioned(id)) c_.Restart(id);
    }
    const int64_t et = c_.options().election_tick;
    // Generous bounds: a leader within 30 election timeouts, an entry of a
    // leader that stays leader applied by every member within 20.
    const int64_t deadline = c_.now() + 60 * et * c_.options().steps_per_tick;
    while (ok()) {
      const int64_t left = (deadline - c_.now()) / c_.options().steps_per_tick;
      if (left <= 0) {
        Fail("no leader kept leadership long enough to commit an entry within " +
             std::to_string(60 * et) + " ticks after healing");
        return;
      }
      if (!c_.RunUntil([&] { return CurrentLeader() != kNoNode; },
                       std::min<int64_t>(left, 30 * et))) {
        Fail("no leader within " + std::to_string(30 * et) + " ticks after healing");
        return;
      }
      if (!ok()) return;
      const NodeId l = CurrentLeader();
      const Term term = c_.raft(l).term();
      Index index = 0;
      std::string value;
      if (!c_.ProposeKv(l, "calm", &value, &index).ok()) {
        c_.RunTicks(1);  // e.g. a leadership transfer is under way
        continue;
      }
      auto still_leader = [&] {
        return c_.up(l) && c_.raft(l).role() == Role::kLeader && c_.raft(l).term() == term;
      };
      // Far-behind members (a new learner, say, or followers fed one entry
      // per round trip by a small byte limit) get time by their lag.
      const int64_t catch_up = 20 * et + 4 * static_cast<int64_t>(index - MinApplied(l));
      c_.RunUntil([&] { return !still_leader() || c_.raft(l).commit() >= index; }, catch_up);
      if (!ok()) return;
      if (!still_leader()) continue;  // deposed by a newer term: try the next leader
      if (c_.raft(l).commit() < index) {
        Fail("entry " + std::to_string(index) + "@" + std::to_string(term) + " proposed to n" +
             std::to_string(l) + ", which stayed leader, did not commit within " +
             std::to_string(catch_up) + " ticks");
        return;
      }
      // Every member catches up, by its lag now: a learner whose addition
      // committed meanwhile starts from nothing.
      const int64_t apply_catch_up =
          20 * et + 4 * static_cast<int64_t>(index - std::min(index, MinApplied(l)));
      c_.RunUntil([&] { return !still_leader() || MembersApplied(l, index); }, apply_catch_up);
      if (!ok()) return;
      if (!still_leader()) continue;
      if (!MembersApplied(l, index)) {
        Fail("entry " + std::to_string(index) + "@" + std::to_string(term) + " proposed to n" +
             std::to_string(l) + ", which stayed leader, was not applied by every member within " +
             std::to_string(apply_catch_up) + " ticks");
        return;
      }
      // Everything this leader accepted in its term is committed by now.
      for (const Proposal& p : c_.proposals()) {
        if (p.node == l && p.term == term && p.incarnation == c_.incarnation(l) &&
            p.state != Proposal::State::kCommitted) {
          Fail("proposal " + p.data + " at " + std::to_string(p.index) + "@" +
               std::to_string(p.term) + " accepted by n" + std::to_string(l) +
               ", still leader, never committed");
          return;
        }
      }
      if (c_.options().hibernate_tick > 0) CheckHibernates(l);
      return;
    }
  }

  // With hibernation, a healed idle group goes quiet: the leader and every
  // member hibernate (a leadership transfer asked for during the chaos may
  // still finish first), then no Raft message flows at all.
  void CheckHibernates(NodeId l) {
    if (po_.keep_removed) return;  // removed members campaign, and wake it
    for (NodeId id : Members(l)) {
      if (!c_.exists(id) || !c_.up(id)) return;  // a member gone for good keeps it awake
    }
    auto asleep = [&] {
      const NodeId leader = CurrentLeader();
      if (leader == kNoNode) return false;
      for (NodeId id : Members(leader)) {
        if (!c_.up(id) || !c_.raft(id).hibernating()) return false;
      }
      return true;
    };
    // Messages delayed from the chaos may still arrive and be answered, and
    // slow disks send their acknowledgements once written.
    auto quiet = [&] {
      if (!asleep() || c_.messages_in_flight() != 0) return false;
      for (NodeId id : c_.live_ids()) {
        if (c_.writes_in_flight(id) != 0) return false;
      }
      return true;
    };
    const int64_t et = c_.options().election_tick;
    // A link of little bandwidth first delivers what queued up on it.
    const int64_t within =
        c_.options().hibernate_tick + 30 * et + static_cast<int64_t>(c_.messages_in_flight());
    if (!c_.RunUntil(quiet, within) || !ok()) {
      Fail("the idle group did not hibernate within " + std::to_string(within) + " ticks");
      return;
    }
    const uint64_t sent = c_.stats().total_sent;
    c_.RunTicks(3 * et);
    if (c_.stats().total_sent != sent || !asleep()) {
      Fail("the hibernating group sent " + std::to_string(c_.stats().total_sent - sent) +
           " messages in " + std::to_string(3 * et) + " idle ticks");
    }
  }

  // The voters and learners by l's configuration.
  std::vector<NodeId> Members(NodeId l) {
    const ConfState cs = c_.raft(l).conf_state();
    std::vector<NodeId> members = cs.voters;
    members.insert(members.end(), cs.learners.begin(), cs.learners.end());
    return members;
  }

  PropertyOptions po_;
  Rng rng_;
  Cluster c_;
  std::string liveness_;
  uint64_t crashes_ = 0;
  uint64_t conf_changes_ = 0;
};

}  // namespace

PropertyResult RunProperty(const PropertyOptions& opts) { return Run(opts).Go(); }

std::string ReplayCommand(const PropertyOptions& opts) {
  std::ostringstream os;
  os << "raft_soak --seed " << opts.seed << " --nodes " << opts.nodes << " --steps " << opts.steps
     << (opts.membership ? "" : " --no-membership")
     << (opts.snapshot_on_conf_change ? " --snapshot-on-conf-change" : "")
     << (opts.lease_reads ? " --lease-reads" : "") << (opts.keep_removed ? " --keep-removed" : "")
     << " --trace";
  return os.str();
}

}  // namespace kv::raft::sim
