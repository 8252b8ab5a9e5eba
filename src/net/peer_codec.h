// Peer codec: msgpack encodings of what members send each other over the
// peer (Raft) connections: Raft messages, snapshot chunks, leader hints and
// removed notices (docs/protocol.md, "Peer protocol v1"). Each is one frame
// holding one msgpack array whose first element is the peer codec version;
// DecodePeerFrame reads any of them and says which it was.
// Decoders never trust their input: anything malformed, of the wrong type,
// or over the limits gives InvalidArgument with the reason, never a crash.
// Thread safety: pure functions.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "common/status.h"
#include "raft/types.h"

namespace kv::net {

// ---- Raft messages ---------------------------------------------------------
// [version, type, group, from, to, term, log_term, index, commit, reject,
//  reject_hint, context, entries, snapshot]
// entries: [[term, index, type, data], ...]
// snapshot: nil or [index, term, [voters], [learners], data]

std::string EncodeRaftMessage(const raft::Message& m);

// A kSnapshot message may travel in chunks, so that a large snapshot never
// holds up other traffic: each chunk is the message with snapshot.data cut to
// [offset, offset + size) of `total` bytes, and [offset, total] appended to
// the array.
struct SnapshotChunk {
  uint64_t offset = 0;
  uint64_t total = 0;  // 0: not a chunk (a whole message)

  bool operator==(const SnapshotChunk& o) const { return offset == o.offset && total == o.total; }
};
// REQUIRES: m is a kSnapshot message, offset <= m.snapshot.data.size().
std::string EncodeSnapshotChunk(const raft::Message& m, uint64_t offset, size_t size);

// ---- Leader hints ----------------------------------------------------------
// A node tells its peers which Raft groups it leads, so that a node asked
// about a shard it does not host can redirect the client to that shard's
// leader, and which cluster members it knows (the shard map's version and the
// members it was derived from), so that nodes outside the metadata group
// learn membership changes. Sent over the peer (Raft) connections, beside
// Raft messages:
//   [version, "leads", from, [[group, term], ...], map_version, [[id, "host:port"], ...]]
// Leaders are advisory (a stale hint costs the client one more REDIRECT);
// members with a higher map version than a node's own replace its own.
// A node that knows placement rules (kv/ring.h) adds [0, rule] to the leads:
// group 0 is no group, and nodes that predate rules take it for one more
// hint, of a group nobody asks about (their decoder wants exactly these six
// elements, and two numbers in each lead). It says that the sender knows
// rules 1 and 2, and that its shard map places replicas by `rule`.

struct LeaderHints {
  raft::NodeId from = raft::kNoNode;
  // Every group the sender leads, with its term: the list is complete.
  std::vector<std::pair<raft::GroupId, raft::Term>> leads;
  uint64_t map_version = 0;                                   // 0: the sender knows no shard map
  std::vector<std::pair<raft::NodeId, std::string>> members;  // id, client address
  // The rule of the sender's shard map; 0: the sender predates rules (and
  // places by rule 1).
  uint32_t placement_rule = 0;

  bool operator==(const LeaderHints& o) const {
    return from == o.from && leads == o.leads && map_version == o.map_version &&
           members == o.members && placement_rule == o.placement_rule;
  }
};

std::string EncodeLeaderHints(const LeaderHints& hints);

// ---- Removed notices -------------------------------------------------------
// "You are no longer a replica of this group": sent by a member of the group
// whose configuration no longer has the recipient (a removed replica never
// learns its removal through Raft, since the leader stops writing to it at
// once), with the sender's term in the group. [version, "removed", from,
// group, term]

struct RemovedNotice {
  raft::NodeId from = raft::kNoNode;
  raft::GroupId group = 0;
  raft::Term term = 0;

  bool operator==(const RemovedNotice& o) const {
    return from == o.from && group == o.group && term == o.term;
  }
};

std::string EncodeRemovedNotice(const RemovedNotice& notice);

// ---- Decoding ----------------------------------------------------------------

// A Raft message, whole (chunk.total == 0) or one chunk of a kSnapshot
// message (its snapshot.data is the chunk's slice).
struct RaftFrame {
  raft::Message message;
  SnapshotChunk chunk;

  bool operator==(const RaftFrame& o) const { return message == o.message && chunk == o.chunk; }
};

// What one peer frame holds.
using PeerFrame = std::variant<RaftFrame, LeaderHints, RemovedNotice>;

// Decodes any peer frame into *frame, in one pass: the frame's second
// element tells the kinds apart (a Raft message's type is a uint; the other
// kinds name themselves: "leads", "removed"). InvalidArgument for malformed
// input, an unknown kind and a codec version other than 1; *frame is then
// unspecified.
Status DecodePeerFrame(std::string_view bytes, PeerFrame* frame);

}  // namespace kv::net
