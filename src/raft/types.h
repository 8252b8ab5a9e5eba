// Value types of the Raft core: entries, hard state, configurations,
// snapshots and messages.
//
// These are plain values (copyable, comparable, printable) shared by the
// core, the storage layer, the transport and the tests. Nothing here does I/O.
// Thread safety: plain values.
#pragma once

#include <cstdint>
#include <ostream>
#include <string>
#include <string_view>
#include <vector>

namespace kv::raft {

using NodeId = uint64_t;
using GroupId = uint64_t;
using Term = uint64_t;
using Index = uint64_t;

// Node ids start at 1; 0 means "nobody" (no vote, no known leader).
constexpr NodeId kNoNode = 0;

enum class EntryType : uint8_t {
  kNormal = 0,      // application data; empty data is a leader's no-op
  kConfChange = 1,  // data is an encoded ConfChange
};

struct Entry {
  Term term = 0;
  Index index = 0;
  EntryType type = EntryType::kNormal;
  std::string data;

  // Bytes this entry counts for in message and Ready size limits.
  uint64_t ByteSize() const { return data.size() + 24; }
  bool operator==(const Entry& o) const {
    return term == o.term && index == o.index && type == o.type && data == o.data;
  }
  bool operator!=(const Entry& o) const { return !(*this == o); }
};

// The state a node must persist before it answers anyone (Raft Figure 2),
// plus the commit index (persisted lazily; it can be relearned).
struct HardState {
  Term term = 0;
  NodeId vote = kNoNode;
  Index commit = 0;

  bool IsEmpty() const { return term == 0 && vote == kNoNode && commit == 0; }
  bool operator==(const HardState& o) const {
    return term == o.term && vote == o.vote && commit == o.commit;
  }
  bool operator!=(const HardState& o) const { return !(*this == o); }
};

// A group's configuration: who votes, who only receives the log. Sorted ids.
struct ConfState {
  std::vector<NodeId> voters;
  std::vector<NodeId> learners;

  bool operator==(const ConfState& o) const { return voters == o.voters && learners == o.learners; }
  bool operator!=(const ConfState& o) const { return !(*this == o); }
};

enum class ConfChangeType : uint8_t {
  kAddLearner = 0,  // add a non-voting member that receives the log
  kAddVoter = 1,    // promote a learner (or add a new member directly as a voter)
  kRemoveNode = 2,  // remove a voter or learner, the leader included
};

// One single-server membership change, carried as the data of a kConfChange
// entry. It takes effect on every node when the entry commits.
struct ConfChange {
  ConfChangeType type = ConfChangeType::kAddLearner;
  NodeId node = kNoNode;
  std::string context;  // opaque to the core; the node layer keeps the member's address here

  std::string Encode() const;
  // False when `data` is not an encoded ConfChange.
  static bool Decode(std::string_view data, ConfChange* out);
  bool operator==(const ConfChange& o) const {
    return type == o.type && node == o.node && context == o.context;
  }
};

struct SnapshotMeta {
  Index index = 0;  // last log index the snapshot covers
  Term term = 0;    // term of that entry
  ConfState conf;   // configuration as of index

  bool operator==(const SnapshotMeta& o) const {
    return index == o.index && term == o.term && conf == o.conf;
  }
};

// A state machine snapshot. The core never looks inside `data`: a storage may
// hand the core metadata only and let the transport attach (and chunk) the
// data when it sends an InstallSnapshot message.
struct Snapshot {
  SnapshotMeta meta;
  std::string data;

  bool IsEmpty() const { return meta.index == 0; }
  bool operator==(const Snapshot& o) const { return meta == o.meta && data == o.data; }
};

enum class MessageType : uint8_t {
  kAppend = 0,      // leader -> follower: entries after (index, log_term), commit
  kAppendResponse,  // index: last matching index; reject with reject_hint/log_term hints
  kVote,            // candidate -> voter: term, last log index/term
  kVoteResponse,    // reject says whether the vote was granted
  kPreVote,         // like kVote, for term+1, without bumping anyone's term
  kPreVoteResponse,
  kHeartbeat,          // leader -> follower: commit, context for ReadIndex rounds
  kHeartbeatResponse,  // context echoed
  kSnapshot,           // leader -> follower: InstallSnapshot
  kTimeoutNow,         // leader -> transfer target: campaign now
  kReadIndex,          // follower -> leader: context identifies the read
  kReadIndexResponse,  // leader -> follower: index to wait for; reject if unknown
  kTransferLeader,     // follower -> leader: forwarded request; index is the target
};

// Context of a kVote sent after kTimeoutNow: voters grant it even while they
// still hear from the current leader.
constexpr std::string_view kTransferContext = "transfer";
// Context of the kHeartbeat with which an idle leader tells its followers
// that it hibernates: they stop their election timers too (raft.h).
constexpr std::string_view kHibernateContext = "hibernate";

struct Message {
  MessageType type = MessageType::kAppend;
  GroupId group = 0;
  NodeId from = kNoNode;
  NodeId to = kNoNode;
  Term term = 0;
  Term log_term = 0;  // kAppend: term at index; kVote: last log term; reject: hint term
  Index index = 0;    // kAppend: entry preceding `entries`; kVote: last log index
  std::vector<Entry> entries;
  Index commit = 0;
  bool reject = false;
  Index reject_hint = 0;  // rejecting kAppendResponse: where the leader should look next
  Snapshot snapshot;      // kSnapshot only
  std::string context;    // ReadIndex rounds, forced votes

  bool operator==(const Message& o) const;
};

// A read request confirmed by a quorum: once applied >= index, a read issued
// under `context` is linearizable.
struct ReadState {
  Index index = 0;
  std::string context;
  bool operator==(const ReadState& o) const { return index == o.index && context == o.context; }
};

enum class Role : uint8_t { kFollower, kPreCandidate, kCandidate, kLeader };

const char* RoleName(Role role);
const char* MessageTypeName(MessageType type);
// True for message types that a node sends to a peer (all of them; used to
// validate decoded input).
bool IsValidMessageType(uint8_t type);

std::ostream& operator<<(std::ostream& os, const Entry& e);
std::ostream& operator<<(std::ostream& os, const HardState& hs);
std::ostream& operator<<(std::ostream& os, const ConfState& cs);
std::ostream& operator<<(std::ostream& os, const Message& m);
std::ostream& operator<<(std::ostream& os, Role role);
// The same texts as the operators, for test output and logs.
std::string DescribeMessage(const Message& m);

}  // namespace kv::raft
