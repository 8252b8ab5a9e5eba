#include "net/peer_codec.h"

#include <limits>
#include <utility>

#include "net/msgpack_util.h"

namespace kv::net {

namespace {

constexpr uint64_t kPeerCodecVersion = 1;

// Elements of each kind of frame; a snapshot chunk is a message with two more.
constexpr uint32_t kMessageElements = 14;
constexpr uint32_t kChunkElements = 16;
constexpr uint32_t kHintsElements = 6;
constexpr uint32_t kRemovedElements = 5;

// The group of the lead that carries the sender's placement rule: no group.
constexpr uint64_t kRuleGroup = 0;

// The second element of the frames that are not Raft messages.
constexpr char kHintsKind[] = "leads";
constexpr char kRemovedKind[] = "removed";

// The 14 elements of a message; a chunk adds [offset, total] after them and
// carries only its slice of the snapshot data.
std::string EncodeRaftFrame(const raft::Message& m, std::string_view snapshot_data,
                            const SnapshotChunk* chunk) {
  std::string out;
  size_t reserve = 80 + m.context.size() + snapshot_data.size();
  for (const auto& e : m.entries) reserve += e.data.size() + 24;
  out.reserve(reserve);
  StringBuffer buf(&out);
  Packer pk(buf);
  pk.pack_array(chunk ? kChunkElements : kMessageElements);
  pk.pack_uint64(kPeerCodecVersion);
  pk.pack_uint8(static_cast<uint8_t>(m.type));
  pk.pack_uint64(m.group);
  pk.pack_uint64(m.from);
  pk.pack_uint64(m.to);
  pk.pack_uint64(m.term);
  pk.pack_uint64(m.log_term);
  pk.pack_uint64(m.index);
  pk.pack_uint64(m.commit);
  if (m.reject) {
    pk.pack_true();
  } else {
    pk.pack_false();
  }
  pk.pack_uint64(m.reject_hint);
  PackBytes(pk, m.context);
  pk.pack_array(static_cast<uint32_t>(m.entries.size()));
  for (const auto& e : m.entries) {
    pk.pack_array(4);
    pk.pack_uint64(e.term);
    pk.pack_uint64(e.index);
    pk.pack_uint8(static_cast<uint8_t>(e.type));
    PackBytes(pk, e.data);
  }
  if (m.type != raft::MessageType::kSnapshot) {
    pk.pack_nil();
  } else {
    const auto& s = m.snapshot;
    pk.pack_array(5);
    pk.pack_uint64(s.meta.index);
    pk.pack_uint64(s.meta.term);
    pk.pack(s.meta.conf.voters);
    pk.pack(s.meta.conf.learners);
    PackBytes(pk, snapshot_data);
  }
  if (chunk) {
    pk.pack_uint64(chunk->offset);
    pk.pack_uint64(chunk->total);
  }
  return out;
}

}  // namespace

std::string EncodeRaftMessage(const raft::Message& m) {
  return EncodeRaftFrame(m, m.snapshot.data, nullptr);
}

std::string EncodeSnapshotChunk(const raft::Message& m, uint64_t offset, size_t size) {
  const SnapshotChunk chunk{offset, m.snapshot.data.size()};
  return EncodeRaftFrame(m, std::string_view(m.snapshot.data).substr(offset, size), &chunk);
}

std::string EncodeLeaderHints(const LeaderHints& hints) {
  std::string out;
  StringBuffer buf(&out);
  Packer pk(buf);
  pk.pack_array(kHintsElements);
  pk.pack_uint64(kPeerCodecVersion);
  PackStr(pk, kHintsKind);
  pk.pack_uint64(hints.from);
  const bool rule = hints.placement_rule != 0;
  pk.pack_array(static_cast<uint32_t>(hints.leads.size() + (rule ? 1 : 0)));
  for (const auto& [group, term] : hints.leads) {
    pk.pack_array(2);
    pk.pack_uint64(group);
    pk.pack_uint64(term);
  }
  if (rule) {
    pk.pack_array(2);
    pk.pack_uint64(kRuleGroup);
    pk.pack_uint64(hints.placement_rule);
  }
  pk.pack_uint64(hints.map_version);
  pk.pack_array(static_cast<uint32_t>(hints.members.size()));
  for (const auto& [node, address] : hints.members) {
    pk.pack_array(2);
    pk.pack_uint64(node);
    PackStr(pk, address);
  }
  return out;
}

std::string EncodeRemovedNotice(const RemovedNotice& notice) {
  std::string out;
  StringBuffer buf(&out);
  Packer pk(buf);
  pk.pack_array(kRemovedElements);
  pk.pack_uint64(kPeerCodecVersion);
  PackStr(pk, kRemovedKind);
  pk.pack_uint64(notice.from);
  pk.pack_uint64(notice.group);
  pk.pack_uint64(notice.term);
  return out;
}

namespace {

// Each reads a frame `f` of `size` elements whose version has been checked,
// into a default-constructed *out.

Status DecodeRaft(const msgpack::object* f, uint32_t size, RaftFrame* out) {
  if (size != kMessageElements && size != kChunkElements) {
    return Status::InvalidArgument("raft message: not an array of 14 or 16 elements");
  }
  raft::Message* m = &out->message;
  uint64_t type = 0;
  if (!GetUint(f[1], &type) || type > 255 ||
      !raft::IsValidMessageType(static_cast<uint8_t>(type))) {
    return Status::InvalidArgument("raft message: unknown type");
  }
  m->type = static_cast<raft::MessageType>(type);
  if (!GetUint(f[2], &m->group) || !GetUint(f[3], &m->from) || !GetUint(f[4], &m->to) ||
      !GetUint(f[5], &m->term) || !GetUint(f[6], &m->log_term) || !GetUint(f[7], &m->index) ||
      !GetUint(f[8], &m->commit) || !GetBool(f[9], &m->reject) ||
      !GetUint(f[10], &m->reject_hint) || !GetBytes(f[11], &m->context)) {
    return Status::InvalidArgument("raft message: bad header field");
  }
  if (f[12].type != msgpack::type::ARRAY) return Status::InvalidArgument("raft message: entries");
  m->entries.resize(f[12].via.array.size);
  for (uint32_t i = 0; i < f[12].via.array.size; ++i) {
    const msgpack::object& eo = f[12].via.array.ptr[i];
    raft::Entry& e = m->entries[i];
    uint64_t etype = 0;
    if (eo.type != msgpack::type::ARRAY || eo.via.array.size != 4 ||
        !GetUint(eo.via.array.ptr[0], &e.term) || !GetUint(eo.via.array.ptr[1], &e.index) ||
        !GetUint(eo.via.array.ptr[2], &etype) ||
        etype > static_cast<uint64_t>(raft::EntryType::kConfChange) ||
        !GetBytes(eo.via.array.ptr[3], &e.data)) {
      return Status::InvalidArgument("raft message: bad entry");
    }
    e.type = static_cast<raft::EntryType>(etype);
  }
  if (f[13].type != msgpack::type::NIL) {
    const msgpack::object& so = f[13];
    if (so.type != msgpack::type::ARRAY || so.via.array.size != 5 ||
        !GetUint(so.via.array.ptr[0], &m->snapshot.meta.index) ||
        !GetUint(so.via.array.ptr[1], &m->snapshot.meta.term) ||
        !GetIdList(so.via.array.ptr[2], &m->snapshot.meta.conf.voters) ||
        !GetIdList(so.via.array.ptr[3], &m->snapshot.meta.conf.learners) ||
        !GetBytes(so.via.array.ptr[4], &m->snapshot.data)) {
      return Status::InvalidArgument("raft message: bad snapshot");
    }
  }
  if (size == kChunkElements) {
    SnapshotChunk* chunk = &out->chunk;
    if (m->type != raft::MessageType::kSnapshot || f[13].type == msgpack::type::NIL ||
        !GetUint(f[14], &chunk->offset) || !GetUint(f[15], &chunk->total) || chunk->total == 0 ||
        chunk->offset > chunk->total || m->snapshot.data.size() > chunk->total - chunk->offset) {
      return Status::InvalidArgument("raft message: bad snapshot chunk");
    }
  }
  return Status::OK();
}

Status DecodeHints(const msgpack::object* f, uint32_t size, LeaderHints* hints) {
  if (size != kHintsElements) return Status::InvalidArgument("leader hints: not 6 elements");
  if (!GetUint(f[2], &hints->from) || f[3].type != msgpack::type::ARRAY ||
      !GetUint(f[4], &hints->map_version) || f[5].type != msgpack::type::ARRAY) {
    return Status::InvalidArgument("leader hints: malformed");
  }
  for (uint32_t i = 0; i < f[3].via.array.size; ++i) {
    const msgpack::object& item = f[3].via.array.ptr[i];
    uint64_t group = 0, term = 0;
    if (item.type != msgpack::type::ARRAY || item.via.array.size != 2 ||
        !GetUint(item.via.array.ptr[0], &group) || !GetUint(item.via.array.ptr[1], &term)) {
      return Status::InvalidArgument("leader hints: malformed entry");
    }
    if (group != kRuleGroup) {
      hints->leads.emplace_back(group, term);
    } else if (hints->placement_rule != 0 || term == 0 ||
               term > std::numeric_limits<uint32_t>::max()) {
      return Status::InvalidArgument("leader hints: malformed placement rule");
    } else {
      hints->placement_rule = static_cast<uint32_t>(term);
    }
  }
  for (uint32_t i = 0; i < f[5].via.array.size; ++i) {
    const msgpack::object& item = f[5].via.array.ptr[i];
    uint64_t node = 0;
    std::string address;
    if (item.type != msgpack::type::ARRAY || item.via.array.size != 2 ||
        !GetUint(item.via.array.ptr[0], &node) ||
        item.via.array.ptr[1].type != msgpack::type::STR ||
        !GetBytes(item.via.array.ptr[1], &address)) {
      return Status::InvalidArgument("leader hints: malformed member");
    }
    hints->members.emplace_back(node, std::move(address));
  }
  return Status::OK();
}

Status DecodeRemoved(const msgpack::object* f, uint32_t size, RemovedNotice* notice) {
  if (size != kRemovedElements || !GetUint(f[2], &notice->from) || !GetUint(f[3], &notice->group) ||
      !GetUint(f[4], &notice->term)) {
    return Status::InvalidArgument("removed notice: malformed");
  }
  return Status::OK();
}

// Decodes a frame that must be of kind T.
template <typename T>
Status DecodeOnly(std::string_view bytes, const char* what, T* out) {
  PeerFrame frame;
  Status s = DecodePeerFrame(bytes, &frame);
  if (!s.ok()) return s;
  T* got = std::get_if<T>(&frame);
  if (got == nullptr) return Status::InvalidArgument(std::string("not a ") + what);
  *out = std::move(*got);
  return Status::OK();
}

}  // namespace

Status DecodePeerFrame(std::string_view bytes, PeerFrame* frame) {
  msgpack::object_handle oh;
  Status s = Unpack(bytes, &oh);
  if (!s.ok()) return s;
  const msgpack::object& o = oh.get();
  if (o.type != msgpack::type::ARRAY || o.via.array.size < 2) {
    return Status::InvalidArgument("peer frame: not an array of 2 or more elements");
  }
  const msgpack::object* f = o.via.array.ptr;
  const uint32_t size = o.via.array.size;
  uint64_t version = 0;
  if (!GetUint(f[0], &version) || version != kPeerCodecVersion) {
    return Status::InvalidArgument("peer frame: unsupported codec version");
  }
  if (f[1].type == msgpack::type::POSITIVE_INTEGER) {
    return DecodeRaft(f, size, &frame->emplace<RaftFrame>());
  }
  std::string kind;
  if (!GetBytes(f[1], &kind)) return Status::InvalidArgument("peer frame: element 1 has no kind");
  if (kind == kHintsKind) return DecodeHints(f, size, &frame->emplace<LeaderHints>());
  if (kind == kRemovedKind) return DecodeRemoved(f, size, &frame->emplace<RemovedNotice>());
  return Status::InvalidArgument("peer frame: unknown kind");
}

}  // namespace kv::net
