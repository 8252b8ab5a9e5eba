#include "node/hibernation.h"

#include <algorithm>
#include <utility>
#include <vector>

#include "common/logging.h"

namespace kv::node {

int Hibernation::IdleTicks() const {
  // An idle second or so: a group written to now and then stays awake.
  return ctx_->cfg.sharded() ? 2 * ctx_->cfg.election_ticks : 0;
}

void Hibernation::Heard(raft::NodeId node) {
  heard_tick_[node] = ctx_->ticks;
  if (silent_.erase(node) != 0) KV_LOG(kInfo) << "node " << node << " is heard from again";
}

bool Hibernation::Silent(raft::NodeId node) const {
  auto it = heard_tick_.find(node);
  const uint64_t last = it == heard_tick_.end() ? 0 : it->second;
  return ctx_->ticks - last >= static_cast<uint64_t>(ctx_->cfg.election_ticks);
}

void Hibernation::OnLeaderHints(const net::LeaderHints& hints) {
  std::vector<std::pair<raft::GroupId, raft::Term>> leads = hints.leads;
  std::sort(leads.begin(), leads.end());
  // The same list as last time: every follower it leads was checked then.
  std::vector<std::pair<raft::GroupId, raft::Term>>& last = last_leads_[hints.from];
  if (leads == last) return;
  last = leads;
  for (const auto& [id, g] : ctx_->groups) {
    raft::Raft& r = *g->raft;
    if (g->removed || !r.hibernating() || r.role() != raft::Role::kFollower ||
        r.leader() != hints.from) {
      continue;
    }
    if (!std::binary_search(leads.begin(), leads.end(), std::make_pair(id, r.term()))) {
      KV_LOG(kDebug) << "group " << id << ": node " << hints.from << " no longer leads it at term "
                     << r.term() << "; waking";
      r.PeerDown(hints.from);
    }
  }
}

void Hibernation::Tick() {
  if (IdleTicks() == 0) return;
  // Only a peer heard from can lead or answer a hibernating group here.
  bool any_silent = false;
  for (const auto& [node, tick] : heard_tick_) any_silent = any_silent || Silent(node);
  if (!any_silent) return;
  for (const auto& [id, g] : ctx_->groups) {
    raft::Raft& r = *g->raft;
    if (g->removed || !r.hibernating()) continue;
    std::vector<raft::NodeId> watched;
    if (r.role() == raft::Role::kLeader) {
      const raft::ConfState cs = r.conf_state();
      watched = cs.voters;
      watched.insert(watched.end(), cs.learners.begin(), cs.learners.end());
    } else if (r.leader() != raft::kNoNode) {
      watched.push_back(r.leader());
    }
    for (raft::NodeId node : watched) {
      if (node == ctx_->cfg.id || !Silent(node)) continue;
      if (silent_.insert(node).second) {
        KV_LOG(kInfo) << "node " << node << " silent for " << ctx_->cfg.election_ticks
                      << " ticks: waking the hibernating groups it is in";
      }
      r.PeerDown(node);
    }
  }
}

}  // namespace kv::node
