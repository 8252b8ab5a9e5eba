// libFuzzer target for everything that decodes bytes from the outside: client
// requests, peer frames (Raft messages, leader hints, removed notices), log
// commands, state machine snapshots, and what clients decode from nodes
// (replies, status, shard maps, backup pieces, watch messages).
// The first byte picks the decoder. Anything decoded must re-encode to
// something that decodes to the same value.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <variant>

#include "kv/command.h"
#include "kv/state_machine.h"
#include "net/client_codec.h"
#include "net/events.h"
#include "net/peer_codec.h"

namespace {

// A decoded peer frame re-encodes to bytes that decode to the same frame.
void CheckPeerFrame(const kv::net::PeerFrame& frame) {
  kv::net::PeerFrame expected = frame;
  std::string bytes;
  if (auto* hints = std::get_if<kv::net::LeaderHints>(&frame)) {
    bytes = kv::net::EncodeLeaderHints(*hints);
  } else if (auto* notice = std::get_if<kv::net::RemovedNotice>(&frame)) {
    bytes = kv::net::EncodeRemovedNotice(*notice);
  } else {
    auto& raft = std::get<kv::net::RaftFrame>(expected);
    kv::raft::Message& m = raft.message;
    // The snapshot travels only on kSnapshot messages.
    if (m.type != kv::raft::MessageType::kSnapshot) m.snapshot = kv::raft::Snapshot{};
    const kv::net::SnapshotChunk chunk = raft.chunk;
    if (chunk.total == 0) {
      bytes = kv::net::EncodeRaftMessage(m);
    } else {
      if (chunk.total > (1 << 16)) return;  // too large to rebuild the whole snapshot around it
      const std::string slice = m.snapshot.data;
      m.snapshot.data.assign(chunk.total, '\0');
      m.snapshot.data.replace(chunk.offset, slice.size(), slice);
      bytes = kv::net::EncodeSnapshotChunk(m, chunk.offset, slice.size());
      m.snapshot.data = slice;
    }
  }
  kv::net::PeerFrame again;
  if (!kv::net::DecodePeerFrame(bytes, &again).ok() || !(again == expected)) abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const std::string_view in(reinterpret_cast<const char*>(data) + 1, size - 1);
  switch (data[0] % 9) {
    case 0: {
      kv::net::ClientRequest req;
      bool id_known = false;
      if (kv::net::DecodeClientRequest(in, kv::net::RequestLimits{}, &req, &id_known).ok()) {
        kv::net::ClientRequest again;
        if (!kv::net::DecodeClientRequest(kv::net::EncodeClientRequest(req),
                                          kv::net::RequestLimits{}, &again, &id_known)
                 .ok() ||
            again.key != req.key || again.id != req.id || again.scan.start != req.scan.start ||
            again.scan.end != req.scan.end || again.scan.limit != req.scan.limit ||
            again.op != req.op ||
            (kv::net::IsWrite(req.op) && req.op != kv::net::ClientOp::kDelete &&
             again.ttl_ms != req.ttl_ms) ||
            (req.op == kv::net::ClientOp::kTxn &&
             (again.compare != req.compare || again.success != req.success ||
              again.failure != req.failure))) {
          abort();
        }
      }
      break;
    }
    case 1: {
      kv::net::PeerFrame frame;
      if (kv::net::DecodePeerFrame(in, &frame).ok()) CheckPeerFrame(frame);
      break;
    }
    case 2: {
      kv::Command c;
      if (kv::Command::Decode(in, &c).ok()) {
        kv::Command again;
        if (!kv::Command::Decode(c.Encode(), &again).ok() || !(again == c)) abort();
      }
      break;
    }
    case 3: {
      kv::StateMachine sm;
      if (sm.Restore(in).ok()) {
        kv::StateMachine again;
        if (!again.Restore(sm.Serialize()).ok() || again.Digest() != sm.Digest()) abort();
      }
      break;
    }
    case 4: {
      kv::net::ClientReply r;
      if (kv::net::DecodeClientReply(in, &r).ok()) {
        kv::net::ClientReply again;
        if (!kv::net::DecodeClientReply(kv::net::EncodeClientReply(r), &again).ok() ||
            again.id != r.id || again.status != r.status || again.value != r.value ||
            again.leader != r.leader || again.error != r.error || again.shard != r.shard ||
            (r.shard >= 0 && again.map_version != r.map_version) || again.index != r.index ||
            (r.mod_index != 0 &&
             (again.mod_index != r.mod_index || again.create_index != r.create_index)) ||
            again.is_scan != r.is_scan || again.page.kvs.size() != r.page.kvs.size() ||
            (r.is_scan && again.page.more != r.page.more) || again.ttl_ms != r.ttl_ms ||
            again.is_txn != r.is_txn || again.succeeded != r.succeeded ||
            again.resent != r.resent || again.results.size() != r.results.size()) {
          abort();
        }
      }
      break;
    }
    case 5: {
      uint64_t id = 0, again_id = 0;
      kv::NodeStatus st;
      if (kv::net::DecodeStatusReply(in, &id, &st).ok()) {
        kv::NodeStatus again;
        if (!kv::net::DecodeStatusReply(kv::net::EncodeStatusReply(id, st), &again_id, &again)
                 .ok() ||
            again_id != id || again.members != st.members || again.shards != st.shards ||
            again.groups.size() != st.groups.size() || again.voters != st.voters) {
          abort();
        }
        for (size_t i = 0; i < st.groups.size(); ++i) {
          if (again.groups[i].shard != st.groups[i].shard ||
              again.groups[i].group != st.groups[i].group) {
            abort();
          }
        }
      }
      break;
    }
    case 6: {
      uint64_t id = 0, again_id = 0;
      kv::ShardMap map;
      if (kv::net::DecodeShardsReply(in, &id, &map).ok()) {
        if (map.list.size() != map.shards) abort();
        kv::ShardMap again;
        if (!kv::net::DecodeShardsReply(kv::net::EncodeShardsReply(id, map), &again_id, &again)
                 .ok() ||
            again_id != id || again.version != map.version || again.shards != map.shards ||
            again.members != map.members) {
          abort();
        }
        for (uint32_t i = 0; i < map.shards; ++i) {
          if (again.list[i].shard != i || again.list[i].replicas != map.list[i].replicas ||
              again.list[i].leader_address != map.list[i].leader_address) {
            abort();
          }
        }
      }
      break;
    }
    case 7: {
      uint64_t id = 0, again_id = 0;
      kv::net::BackupReply r, again;
      if (kv::net::DecodeBackupReply(in, &id, &r).ok()) {
        if (!kv::net::DecodeBackupReply(kv::net::EncodeBackupReply(id, r), &again_id, &again)
                 .ok() ||
            again_id != id || again.backup != r.backup || again.is_piece != r.is_piece ||
            (r.is_piece ? again.data != r.data || again.cursor != r.cursor || again.done != r.done
                        : again.index != r.index || again.size != r.size ||
                              again.cluster != r.cluster || again.shards != r.shards)) {
          abort();
        }
      }
      break;
    }
    case 8: {
      uint64_t id = 0, again_id = 0;
      kv::net::WatchReply r, again;
      if (kv::net::DecodeWatchReply(in, &id, &r).ok()) {
        if (!kv::net::DecodeWatchReply(kv::net::EncodeWatchReply(id, r), &again_id, &again).ok() ||
            again_id != id || again.status != r.status || again.node != r.node ||
            (r.status == kv::net::ReplyStatus::kOk &&
             (again.after != r.after || again.upto != r.upto ||
              again.events.size() != r.events.size()))) {
          abort();
        }
      }
      break;
    }
  }
  // Events, under any topic (the first byte picks it; one past the last is unknown).
  static const char* kEventTopics[] = {"role",   "commit", "snapshot",  "membership", "shards",
                                       "kv.put", "kv.del", "kv.expire", "x"};
  kv::Event event, again;
  if (kv::net::DecodeEvent(kEventTopics[data[0] % std::size(kEventTopics)], in, &event).ok()) {
    const std::string bytes = kv::net::EncodeEvent(event);
    if (!kv::net::DecodeEvent(kv::EventTopic(event), bytes, &again).ok() ||
        kv::net::EncodeEvent(again) != bytes) {
      abort();
    }
  }
  return 0;
}
