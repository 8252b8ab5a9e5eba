#include "node/read_batch.h"

namespace kv::node {

std::vector<Pending> ReadBatch::Start(raft::Raft& raft) {
  if (gathering_.empty()) return {};
  const std::string ctx = std::to_string(++last_context_);
  std::vector<Pending> reads = std::move(gathering_);
  gathering_.clear();
  if (!raft.ReadIndex(ctx).ok()) return reads;
  by_context_[ctx] = std::move(reads);
  return {};
}

std::vector<Pending> ReadBatch::Confirmed(const raft::ReadState& rs) {
  auto it = by_context_.find(rs.context);
  if (it == by_context_.end()) return {};
  std::vector<Pending> reads = std::move(it->second);
  by_context_.erase(it);
  return reads;
}

std::vector<Pending> ReadBatch::TakeAll() {
  std::vector<Pending> all = std::move(gathering_);
  gathering_.clear();
  for (auto& [ctx, reads] : by_context_) {
    for (Pending& p : reads) all.push_back(std::move(p));
  }
  by_context_.clear();
  return all;
}

}  // namespace kv::node
