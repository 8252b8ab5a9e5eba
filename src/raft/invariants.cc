#include "raft/invariants.h"

#include <sstream>

namespace kv::raft {

void InvariantChecker::Violation(const std::string& what) { violations_.push_back(what); }

void InvariantChecker::Observe(const Raft& r) {
  Live& l = live_[r.id()];
  std::ostringstream why;
  if (l.up) {
    if (r.term() < l.term) {
      why << "node " << r.id() << ": term went back from " << l.term << " to " << r.term();
    } else if (r.term() == l.term && l.vote != kNoNode && r.vote() != l.vote) {
      why << "node " << r.id() << ": vote changed within term " << r.term() << " from " << l.vote
          << " to " << r.vote();
    } else if (r.commit() < l.commit) {
      why << "node " << r.id() << ": commit went back from " << l.commit << " to " << r.commit();
    }
  }
  if (why.str().empty() && r.commit() > r.last_index()) {
    why << "node " << r.id() << ": commit " << r.commit() << " past last index " << r.last_index();
  }
  if (why.str().empty() && r.role() == Role::kLeader) {
    auto [it, inserted] = leaders_.emplace(r.term(), r.id());
    if (!inserted && it->second != r.id()) {
      why << "two leaders in term " << r.term() << ": " << it->second << " and " << r.id();
    }
  }
  if (!why.str().empty()) Violation(why.str());
  l.up = true;
  l.term = r.term();
  l.vote = r.vote();
  l.commit = r.commit();
}

void InvariantChecker::ObserveCrash(NodeId id) { live_[id].up = false; }

void InvariantChecker::ObservePersisted(NodeId id, const HardState& hs) {
  if (hs.vote == kNoNode) return;
  auto [it, inserted] = persisted_votes_.emplace(std::make_pair(id, hs.term), hs.vote);
  if (!inserted && it->second != hs.vote) {
    std::ostringstream why;
    why << "node " << id << ": persisted two votes in term " << hs.term << ": " << it->second
        << " and " << hs.vote;
    Violation(why.str());
  }
}

void InvariantChecker::ObserveApplied(NodeId id, const Entry& e) {
  auto [it, inserted] = applied_.emplace(e.index, e);
  if (!inserted && it->second != e) {
    std::ostringstream why;
    why << "node " << id << " applied " << e << " at index " << e.index << " where " << it->second
        << " was applied before";
    Violation(why.str());
  }
}

}  // namespace kv::raft
