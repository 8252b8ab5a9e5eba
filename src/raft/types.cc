#include "raft/types.h"

#include <sstream>

#include "common/coding.h"

namespace kv::raft {

namespace {

// Encoding of a ConfChange: one version byte, the type, the node id (8 bytes,
// little endian), then the context.
constexpr uint8_t kConfChangeVersion = 1;

}  // namespace

std::string ConfChange::Encode() const {
  std::string out;
  out.reserve(10 + context.size());
  out.push_back(static_cast<char>(kConfChangeVersion));
  out.push_back(static_cast<char>(type));
  PutFixed64(&out, node);
  out += context;
  return out;
}

bool ConfChange::Decode(std::string_view data, ConfChange* out) {
  uint8_t version = 0, type = 0;
  uint64_t node = 0;
  if (!GetByte(&data, &version) || version != kConfChangeVersion || !GetByte(&data, &type) ||
      type > static_cast<uint8_t>(ConfChangeType::kRemoveNode) || !GetFixed64(&data, &node) ||
      node == kNoNode) {
    return false;
  }
  out->type = static_cast<ConfChangeType>(type);
  out->node = node;
  out->context = std::string(data);
  return true;
}

bool Message::operator==(const Message& o) const {
  return type == o.type && group == o.group && from == o.from && to == o.to && term == o.term &&
         log_term == o.log_term && index == o.index && entries == o.entries && commit == o.commit &&
         reject == o.reject && reject_hint == o.reject_hint && snapshot == o.snapshot &&
         context == o.context;
}

const char* RoleName(Role role) {
  switch (role) {
    case Role::kFollower:
      return "follower";
    case Role::kPreCandidate:
      return "pre-candidate";
    case Role::kCandidate:
      return "candidate";
    case Role::kLeader:
      return "leader";
  }
  return "?";
}

const char* MessageTypeName(MessageType type) {
  switch (type) {
    case MessageType::kAppend:
      return "Append";
    case MessageType::kAppendResponse:
      return "AppendResp";
    case MessageType::kVote:
      return "Vote";
    case MessageType::kVoteResponse:
      return "VoteResp";
    case MessageType::kPreVote:
      return "PreVote";
    case MessageType::kPreVoteResponse:
      return "PreVoteResp";
    case MessageType::kHeartbeat:
      return "Heartbeat";
    case MessageType::kHeartbeatResponse:
      return "HeartbeatResp";
    case MessageType::kSnapshot:
      return "Snapshot";
    case MessageType::kTimeoutNow:
      return "TimeoutNow";
    case MessageType::kReadIndex:
      return "ReadIndex";
    case MessageType::kReadIndexResponse:
      return "ReadIndexResp";
    case MessageType::kTransferLeader:
      return "TransferLeader";
  }
  return "?";
}

bool IsValidMessageType(uint8_t type) {
  return type <= static_cast<uint8_t>(MessageType::kTransferLeader);
}

std::ostream& operator<<(std::ostream& os, const Entry& e) {
  os << e.index << "/" << e.term;
  if (e.type == EntryType::kConfChange) {
    ConfChange cc;
    if (ConfChange::Decode(e.data, &cc)) {
      static const char* kNames[] = {"add-learner", "add-voter", "remove"};
      os << " conf:" << kNames[static_cast<int>(cc.type)] << "(" << cc.node << ")";
    } else {
      os << " conf:?";
    }
  } else if (e.data.empty()) {
    os << " noop";
  } else {
    os << " " << e.data.size() << "B";
  }
  return os;
}

std::ostream& operator<<(std::ostream& os, const HardState& hs) {
  return os << "{term " << hs.term << " vote " << hs.vote << " commit " << hs.commit << "}";
}

std::ostream& operator<<(std::ostream& os, const ConfState& cs) {
  os << "{voters";
  for (NodeId n : cs.voters) os << " " << n;
  os << " learners";
  for (NodeId n : cs.learners) os << " " << n;
  return os << "}";
}

std::ostream& operator<<(std::ostream& os, Role role) { return os << RoleName(role); }

std::ostream& operator<<(std::ostream& os, const Message& m) {
  os << m.from << "->" << m.to << " " << MessageTypeName(m.type) << " g" << m.group << " t"
     << m.term;
  switch (m.type) {
    case MessageType::kAppend:
      os << " prev " << m.index << "/" << m.log_term << " commit " << m.commit << " ["
         << m.entries.size() << " entries]";
      break;
    case MessageType::kAppendResponse:
      os << " index " << m.index;
      if (m.reject) os << " reject hint " << m.reject_hint << "/" << m.log_term;
      break;
    case MessageType::kVote:
    case MessageType::kPreVote:
      os << " last " << m.index << "/" << m.log_term;
      break;
    case MessageType::kVoteResponse:
    case MessageType::kPreVoteResponse:
      os << (m.reject ? " rejected" : " granted");
      break;
    case MessageType::kHeartbeat:
      os << " commit " << m.commit;
      break;
    case MessageType::kSnapshot:
      os << " snap " << m.snapshot.meta.index << "/" << m.snapshot.meta.term;
      break;
    case MessageType::kReadIndexResponse:
      os << " index " << m.index;
      break;
    default:
      break;
  }
  if (!m.context.empty()) os << " ctx " << m.context.size() << "B";
  return os;
}

std::string DescribeMessage(const Message& m) {
  std::ostringstream os;
  os << m;
  return os.str();
}

}  // namespace kv::raft
