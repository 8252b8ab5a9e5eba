#include "net/snapshot_stream.h"

#include <algorithm>

namespace kv::net {

void SnapshotSender::Start(raft::Message m, Clock::time_point now) {
  const auto key = std::make_pair(m.group, m.to);
  streams_[key] = Stream{std::move(m), 0, false, now};
}

void SnapshotSender::Pump(const TrySend& try_send, const Done& done, Clock::time_point now) {
  for (auto it = streams_.begin(); it != streams_.end();) {
    Stream& s = it->second;
    const uint64_t total = s.message.snapshot.data.size();
    while (!s.finished) {
      const size_t size = static_cast<size_t>(std::min<uint64_t>(chunk_bytes_, total - s.offset));
      const std::string frame = total == 0 ? EncodeRaftMessage(s.message)
                                           : EncodeSnapshotChunk(s.message, s.offset, size);
      if (!try_send(it->first.second, frame)) break;
      s.offset += size;
      s.last_progress = now;
      s.finished = s.offset >= total;
    }
    if (s.finished || now - s.last_progress > stall_timeout_) {
      const auto [group, to] = it->first;
      const bool ok = s.finished;
      it = streams_.erase(it);
      done(group, to, ok);
    } else {
      ++it;
    }
  }
}

Status SnapshotAssembler::Add(raft::Message chunk_msg, const SnapshotChunk& chunk,
                              raft::Message* whole, bool* complete) {
  *complete = false;
  const auto from = std::make_pair(chunk_msg.group, chunk_msg.from);
  if (chunk.total > max_bytes_) {
    partial_.erase(from);
    return Status::InvalidArgument("snapshot of " + std::to_string(chunk.total) +
                                   " bytes is over the limit");
  }
  auto it = partial_.find(from);
  if (chunk.offset == 0) {
    // A new stream replaces whatever was in progress from this sender.
    Partial p;
    p.total = chunk.total;
    p.message = std::move(chunk_msg);
    it = partial_.insert_or_assign(from, std::move(p)).first;
  } else {
    const raft::SnapshotMeta& meta = chunk_msg.snapshot.meta;
    if (it == partial_.end() || it->second.total != chunk.total ||
        it->second.message.snapshot.data.size() != chunk.offset ||
        !(it->second.message.snapshot.meta == meta)) {
      partial_.erase(from);
      return Status::InvalidArgument("snapshot chunk out of sequence; dropped the snapshot");
    }
    it->second.message.snapshot.data += chunk_msg.snapshot.data;
    // Later chunks carry the leader's latest term and commit: keep them.
    it->second.message.term = chunk_msg.term;
  }
  if (it->second.message.snapshot.data.size() == it->second.total) {
    *whole = std::move(it->second.message);
    partial_.erase(it);
    *complete = true;
  }
  return Status::OK();
}

}  // namespace kv::net
