#include "node/backups.h"

namespace kv::node {

namespace {

Status Unknown(uint64_t id) {
  return Status::NotFound("no backup " + std::to_string(id) +
                          " on this node (it ended, sat idle too long, or the node restarted); "
                          "start it again");
}

}  // namespace

Status Backups::Open(raft::GroupId group, StateView view, net::BackupReply* reply) {
  auto shared = std::make_shared<const StateView>(std::move(view));
  *reply = net::BackupReply{};
  reply->index = shared->applied_index();
  reply->clock_ms = shared->clock_ms();
  reply->keys = shared->keys();
  reply->size = shared->SerializedSize();  // a pass over every key: not under the lock
  std::lock_guard<std::mutex> lock(mu_);
  size_t of_group = 0;
  for (const auto& entry : held_) of_group += entry.second.group == group;
  if (held_.size() >= kMaxOpen || of_group >= kMaxOpenPerGroup) {
    return Status::Busy(std::to_string(of_group >= kMaxOpenPerGroup ? of_group : held_.size()) +
                        " backups of " + (of_group >= kMaxOpenPerGroup ? "this shard" : "shards") +
                        " are being read from this node; retry later");
  }
  uint64_t id = 0;
  while (id == 0 || held_.count(id) != 0) id = rng_();
  reply->backup = id;
  held_[id] = Held{group, std::move(shared), Clock::now()};
  return Status::OK();
}

Status Backups::GroupOf(uint64_t id, raft::GroupId* group) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = held_.find(id);
  if (it == held_.end()) return Unknown(id);
  *group = it->second.group;
  return Status::OK();
}

Status Backups::Piece(uint64_t id, uint64_t cursor, net::BackupReply* reply) {
  std::shared_ptr<const StateView> view;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = held_.find(id);
    if (it == held_.end()) return Unknown(id);
    if (!it->second.view->ValidCursor(cursor)) {
      return Status::InvalidArgument("cursor " + std::to_string(cursor) +
                                     " is past the end of backup " + std::to_string(id));
    }
    it->second.used = Clock::now();
    view = it->second.view;
  }
  // Serialized outside the lock: a view never changes.
  *reply = net::BackupReply{};
  reply->backup = id;
  reply->is_piece = true;
  reply->cursor = cursor;
  reply->done = view->SerializePiece(&reply->cursor, kPieceBytes, &reply->data);
  // Only a request past the last piece closes it: the last piece itself may
  // be lost and asked for again.
  if (reply->done && reply->data.empty()) {
    std::lock_guard<std::mutex> lock(mu_);
    held_.erase(id);
  }
  return Status::OK();  // the view goes here, outside the lock, if it was the last hold
}

Status Backups::Close(uint64_t id, std::shared_ptr<const StateView>* view) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = held_.find(id);
  if (it == held_.end()) return Unknown(id);
  *view = std::move(it->second.view);
  held_.erase(it);
  return Status::OK();
}

std::vector<std::shared_ptr<const StateView>> Backups::DropIdle(Clock::time_point now) {
  std::vector<std::shared_ptr<const StateView>> dropped;
  std::lock_guard<std::mutex> lock(mu_);
  for (auto it = held_.begin(); it != held_.end();) {
    if (now - it->second.used >= kIdle) {
      dropped.push_back(std::move(it->second.view));
      it = held_.erase(it);
    } else {
      ++it;
    }
  }
  return dropped;
}

size_t Backups::open() const {
  std::lock_guard<std::mutex> lock(mu_);
  return held_.size();
}

}  // namespace kv::node
