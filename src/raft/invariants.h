// InvariantChecker: a runtime checker of Raft's safety properties, fed by the
// tests with the states of every replica of one group as they evolve.
//
// Per replica (while it is up): the term never decreases; the vote never
// changes within a term; commit never decreases and never passes the last
// index. Across crashes: the persisted vote never changes within a term.
// Across replicas: at most one leader per term (election safety), and no two
// replicas apply different entries at one index (state machine safety), and
// an applied entry is never changed.
// Thread safety: none; one thread at a time.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "raft/raft.h"
#include "raft/types.h"

namespace kv::raft {

class InvariantChecker {
 public:
  // After any input to `r` (Tick, Step, Propose, GetReady, Advance).
  void Observe(const Raft& r);
  // `id` crashed: its volatile state is gone. Its next Observe starts afresh
  // from what it persisted, which must respect the persisted history.
  void ObserveCrash(NodeId id);
  // `id` made `hs` durable.
  void ObservePersisted(NodeId id, const HardState& hs);
  // `id` applied e to its state machine.
  void ObserveApplied(NodeId id, const Entry& e);

  bool ok() const { return violations_.empty(); }
  const std::vector<std::string>& violations() const { return violations_; }

 private:
  struct Live {
    bool up = false;
    Term term = 0;
    NodeId vote = kNoNode;
    Index commit = 0;
  };
  void Violation(const std::string& what);

  std::map<NodeId, Live> live_;
  std::map<std::pair<NodeId, Term>, NodeId> persisted_votes_;
  std::map<Term, NodeId> leaders_;
  std::map<Index, Entry> applied_;
  std::vector<std::string> violations_;
};

}  // namespace kv::raft
