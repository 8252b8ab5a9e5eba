// Peer codec: msgpack encodings of what members send each other over the
// peer (Raft) connections: Raft messages, snapshot chunks, leader hints and
// removed notices (docs/protocol.md, "Peer protocol v1"). Each is one frame
// holding one msgpack array whose first element is the peer codec version.
// Decoders never trust their input: anything malformed, of the wrong type,
// or over the limits gives InvalidArgument with the reason, never a crash.
// Thread safety: pure functions.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/status.h"
#include "raft/types.h"

namespace kv::net {

// ---- Peer protocol ---------------------------------------------------------

std::string EncodeRaftMessage(const raft::Message& m);

// A kSnapshot message may travel in chunks, so that a large snapshot never
// holds up other traffic: each chunk is the message with snapshot.data cut to
// [offset, offset + size) of `total` bytes.
struct SnapshotChunk {
  uint64_t offset = 0;
  uint64_t total = 0;  // 0: not a chunk (a whole message)
};
std::string EncodeSnapshotChunk(const raft::Message& m, uint64_t offset, size_t size);

// Decodes a whole message, or a chunk when `chunk` is given (chunk->total is
// then non-zero). InvalidArgument for malformed input.
Status DecodeRaftMessage(std::string_view bytes, raft::Message* m, SnapshotChunk* chunk = nullptr);

// ---- Peer protocol: leader hints and removed notices -----------------------
// Leader hints: a node tells its peers which Raft groups it leads, so that a
// node asked about a shard it does not host can redirect the client to that
// shard's leader, and which cluster members it knows (the shard map's
// version and the members it was derived from), so that nodes outside the
// metadata group learn membership changes. Sent over the peer (Raft)
// connections, beside Raft messages:
//   [version, "leads", from, [[group, term], ...], map_version, [[id, "host:port"], ...]]
// Leaders are advisory (a stale hint costs the client one more REDIRECT);
// members with a higher map version than a node's own replace its own.

struct LeaderHints {
  raft::NodeId from = raft::kNoNode;
  // Every group the sender leads, with its term: the list is complete.
  std::vector<std::pair<raft::GroupId, raft::Term>> leads;
  uint64_t map_version = 0;                                   // 0: the sender knows no shard map
  std::vector<std::pair<raft::NodeId, std::string>> members;  // id, client address
};

std::string EncodeLeaderHints(const LeaderHints& hints);
// InvalidArgument for anything else (a Raft message included).
Status DecodeLeaderHints(std::string_view bytes, LeaderHints* hints);

// "You are no longer a replica of this group": sent by a member of the group
// whose configuration no longer has the recipient (a removed replica never
// learns its removal through Raft, since the leader stops writing to it at
// once). [version, "removed", from, group]
struct RemovedNotice {
  raft::NodeId from = raft::kNoNode;
  raft::GroupId group = 0;
};
std::string EncodeRemovedNotice(const RemovedNotice& notice);
Status DecodeRemovedNotice(std::string_view bytes, RemovedNotice* notice);

}  // namespace kv::net
