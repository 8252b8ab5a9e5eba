// ReadBatch: the linearizable reads of one group. The reads that arrive in
// one loop pass share one ReadIndex round; once Raft confirms the round, the
// reads are served at its index (node/applier.h).
// Thread safety: none; the loop thread owns it.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "node/request.h"
#include "raft/raft.h"
#include "raft/types.h"

namespace kv::node {

class ReadBatch {
 public:
  void Add(Pending p) { gathering_.push_back(std::move(p)); }

  // Starts one ReadIndex round for every read gathered since the last call.
  // Returns the reads Raft refused to start a round for (not leader): they
  // were not executed.
  std::vector<Pending> Start(raft::Raft& raft);

  // The reads the round `rs` confirmed; empty for a round not started here.
  std::vector<Pending> Confirmed(const raft::ReadState& rs);

  // Every read not yet confirmed (leadership was lost): none was executed.
  std::vector<Pending> TakeAll();

 private:
  std::vector<Pending> gathering_;
  std::map<std::string, std::vector<Pending>> by_context_;
  uint64_t last_context_ = 0;
};

}  // namespace kv::node
