#include "net/events.h"

#define MSGPACK_NO_BOOST
#include <exception>
#include <msgpack.hpp>
#include <type_traits>

namespace kv::net {

namespace {

constexpr const char* kTopics[] = {"role",   "commit", "snapshot", "membership",
                                   "shards", "kv.put", "kv.del"};
static_assert(std::size(kTopics) == std::variant_size_v<Event>, "one topic per event type");

// msgpack's packer writes through any object with write(data, size).
class Out {
 public:
  void write(const char* data, size_t size) { bytes.append(data, size); }
  std::string bytes;
};

// Packs the event map: node and seq first, then `fields` more entries.
class MapWriter {
 public:
  MapWriter(uint64_t node, uint64_t seq, uint32_t fields) : pk_(out_) {
    pk_.pack_map(fields + 2);
    Uint("node", node);
    Uint("seq", seq);
  }
  MapWriter& Uint(std::string_view name, uint64_t v) {
    Name(name);
    pk_.pack_uint64(v);
    return *this;
  }
  MapWriter& Str(std::string_view name, std::string_view v) {
    Name(name);
    pk_.pack_str(static_cast<uint32_t>(v.size()));
    pk_.pack_str_body(v.data(), static_cast<uint32_t>(v.size()));
    return *this;
  }
  MapWriter& Bin(std::string_view name, std::string_view v) {
    Name(name);
    pk_.pack_bin(static_cast<uint32_t>(v.size()));
    pk_.pack_bin_body(v.data(), static_cast<uint32_t>(v.size()));
    return *this;
  }
  std::string Take() { return std::move(out_.bytes); }

 private:
  void Name(std::string_view name) {
    pk_.pack_str(static_cast<uint32_t>(name.size()));
    pk_.pack_str_body(name.data(), static_cast<uint32_t>(name.size()));
  }
  Out out_;
  msgpack::packer<Out> pk_;
};

std::string Encode(const RoleEvent& e) {
  return MapWriter(e.node, e.seq, 4)
      .Uint("group", e.group)
      .Str("role", e.role)
      .Uint("term", e.term)
      .Uint("leader", e.leader)
      .Take();
}

std::string Encode(const CommitEvent& e) {
  return MapWriter(e.node, e.seq, 4)
      .Uint("group", e.group)
      .Uint("term", e.term)
      .Uint("commit", e.commit)
      .Uint("applied", e.applied)
      .Take();
}

std::string Encode(const SnapshotEvent& e) {
  MapWriter w(e.node, e.seq, e.installed ? 4 : 3);
  w.Uint("group", e.group).Str("event", e.installed ? "installed" : "taken").Uint("index", e.index);
  if (e.installed) w.Uint("term", e.term);
  return w.Take();
}

std::string Encode(const MembershipEvent& e) {
  if (e.change == "left") {
    return MapWriter(e.node, e.seq, 3)
        .Uint("group", e.group)
        .Str("change", e.change)
        .Uint("member", e.member)
        .Take();
  }
  return MapWriter(e.node, e.seq, 6)
      .Uint("group", e.group)
      .Uint("index", e.index)
      .Str("change", e.change)
      .Uint("member", e.member)
      .Uint("voters", e.voters)
      .Uint("learners", e.learners)
      .Take();
}

std::string Encode(const ShardsEvent& e) {
  return MapWriter(e.node, e.seq, 2).Uint("version", e.version).Uint("members", e.members).Take();
}

template <typename KeyEventT>
std::string EncodeKeyEvent(const KeyEventT& e) {
  return MapWriter(e.node, e.seq, 3)
      .Bin("key", e.key)
      .Uint("index", e.index)
      .Uint("size", e.size)
      .Take();
}
std::string Encode(const PutEvent& e) { return EncodeKeyEvent(e); }
std::string Encode(const DeleteEvent& e) { return EncodeKeyEvent(e); }

// One field of a decoded map: typed reads that fail on a type mismatch.
struct Field {
  std::string_view name;
  const msgpack::object& value;

  bool Uint(uint64_t* v) const {
    if (value.type != msgpack::type::POSITIVE_INTEGER) return false;
    *v = value.via.u64;
    return true;
  }
  // Text and keys: str or bin alike.
  bool Bytes(std::string* v) const {
    if (value.type == msgpack::type::STR) {
      v->assign(value.via.str.ptr, value.via.str.size);
    } else if (value.type == msgpack::type::BIN) {
      v->assign(value.via.bin.ptr, value.via.bin.size);
    } else {
      return false;
    }
    return true;
  }
};

// The topic's own fields; unknown names are skipped (a newer node's).
bool Read(const Field& f, RoleEvent* e) {
  if (f.name == "group") return f.Uint(&e->group);
  if (f.name == "role") return f.Bytes(&e->role);
  if (f.name == "term") return f.Uint(&e->term);
  if (f.name == "leader") return f.Uint(&e->leader);
  return true;
}

bool Read(const Field& f, CommitEvent* e) {
  if (f.name == "group") return f.Uint(&e->group);
  if (f.name == "term") return f.Uint(&e->term);
  if (f.name == "commit") return f.Uint(&e->commit);
  if (f.name == "applied") return f.Uint(&e->applied);
  return true;
}

bool Read(const Field& f, SnapshotEvent* e) {
  if (f.name == "group") return f.Uint(&e->group);
  if (f.name == "index") return f.Uint(&e->index);
  if (f.name == "term") return f.Uint(&e->term);
  if (f.name == "event") {
    std::string what;
    if (!f.Bytes(&what) || (what != "taken" && what != "installed")) return false;
    e->installed = what == "installed";
  }
  return true;
}

bool Read(const Field& f, MembershipEvent* e) {
  if (f.name == "group") return f.Uint(&e->group);
  if (f.name == "index") return f.Uint(&e->index);
  if (f.name == "change") return f.Bytes(&e->change);
  if (f.name == "member") return f.Uint(&e->member);
  if (f.name == "voters") return f.Uint(&e->voters);
  if (f.name == "learners") return f.Uint(&e->learners);
  return true;
}

bool Read(const Field& f, ShardsEvent* e) {
  if (f.name == "version") return f.Uint(&e->version);
  if (f.name == "members") return f.Uint(&e->members);
  return true;
}

template <typename KeyEventT>
bool ReadKeyEvent(const Field& f, KeyEventT* e) {
  if (f.name == "key") return f.Bytes(&e->key);
  if (f.name == "index") return f.Uint(&e->index);
  if (f.name == "size") return f.Uint(&e->size);
  return true;
}
bool Read(const Field& f, PutEvent* e) { return ReadKeyEvent(f, e); }
bool Read(const Field& f, DeleteEvent* e) { return ReadKeyEvent(f, e); }

template <typename T>
Status DecodeAs(std::string_view topic, const msgpack::object& map, T* e) {
  bool has_node = false, has_seq = false;
  for (uint32_t i = 0; i < map.via.map.size; ++i) {
    const msgpack::object_kv& entry = map.via.map.ptr[i];
    if (entry.key.type != msgpack::type::STR) {
      return Status::InvalidArgument(std::string(topic) + " event: a map key is not a string");
    }
    const Field f{std::string_view(entry.key.via.str.ptr, entry.key.via.str.size), entry.val};
    bool ok = true;
    if (f.name == "node") {
      ok = has_node = f.Uint(&e->node);
    } else if (f.name == "seq") {
      ok = has_seq = f.Uint(&e->seq);
    } else {
      ok = Read(f, e);
    }
    if (!ok) {
      return Status::InvalidArgument(std::string(topic) + " event: field \"" + std::string(f.name) +
                                     "\" is malformed");
    }
  }
  if (!has_node || !has_seq) {
    return Status::InvalidArgument(std::string(topic) + " event without node or seq");
  }
  return Status::OK();
}

// Default-constructs alternative `I` of Event in *event if `topic` is its
// topic, and decodes it; NotFound when no alternative has that topic.
template <size_t I = 0>
Status DecodeTopic(std::string_view topic, const msgpack::object& map, Event* event) {
  if constexpr (I == std::variant_size_v<Event>) {
    return Status::NotFound("unknown event topic");
  } else {
    if (topic != kTopics[I]) return DecodeTopic<I + 1>(topic, map, event);
    return DecodeAs(topic, map, &event->emplace<I>());
  }
}

}  // namespace

std::string EncodeEvent(const Event& event) {
  return std::visit([](const auto& e) { return Encode(e); }, event);
}

Status DecodeEvent(std::string_view topic, std::string_view body, Event* event) {
  if (body.size() > kMaxEventBytes) return Status::InvalidArgument("event too large");
  // Bounds what a hostile frame can make us allocate: a flat map of scalars.
  const msgpack::unpack_limit limits(/*array=*/0, /*map=*/64, /*str=*/kMaxEventBytes,
                                     /*bin=*/kMaxEventBytes, /*ext=*/0, /*depth=*/2);
  msgpack::object_handle oh;
  try {
    size_t offset = 0;
    oh = msgpack::unpack(body.data(), body.size(), offset, nullptr, nullptr, limits);
    if (offset != body.size()) return Status::InvalidArgument("trailing bytes after event");
  } catch (const std::exception& e) {
    return Status::InvalidArgument(std::string("event is not msgpack: ") + e.what());
  }
  if (oh.get().type != msgpack::type::MAP) {
    return Status::InvalidArgument("event is not a msgpack map");
  }
  return DecodeTopic(topic, oh.get(), event);
}

}  // namespace kv::net

namespace kv {

const char* EventTopic(const Event& event) { return net::kTopics[event.index()]; }

uint64_t EventNode(const Event& event) {
  return std::visit([](const auto& e) { return e.node; }, event);
}

uint64_t EventSeq(const Event& event) {
  return std::visit([](const auto& e) { return e.seq; }, event);
}

}  // namespace kv
