#include "net/events.h"

#include <type_traits>

#include "net/msgpack_util.h"

namespace kv::net {

namespace {

constexpr const char* kTopics[] = {"role",   "commit", "snapshot", "membership",
                                   "shards", "kv.put", "kv.del",   "kv.expire"};
static_assert(std::size(kTopics) == std::variant_size_v<Event>, "one topic per event type");

// The event map: node and seq first, then what `fields` writes.
template <typename E, typename F>
std::string EncodeMap(const E& e, F fields) {
  std::string out;
  MapWriter w(&out);
  w.Uint("node", e.node);
  w.Uint("seq", e.seq);
  fields(w);
  w.Finish();
  return out;
}

std::string Encode(const RoleEvent& e) {
  return EncodeMap(e, [&](MapWriter& w) {
    w.Uint("group", e.group);
    w.Str("role", e.role);
    w.Uint("term", e.term);
    w.Uint("leader", e.leader);
  });
}

std::string Encode(const CommitEvent& e) {
  return EncodeMap(e, [&](MapWriter& w) {
    w.Uint("group", e.group);
    w.Uint("term", e.term);
    w.Uint("commit", e.commit);
    w.Uint("applied", e.applied);
  });
}

std::string Encode(const SnapshotEvent& e) {
  return EncodeMap(e, [&](MapWriter& w) {
    w.Uint("group", e.group);
    w.Str("event", e.installed ? "installed" : "taken");
    w.Uint("index", e.index);
    if (e.installed) w.Uint("term", e.term);
  });
}

std::string Encode(const MembershipEvent& e) {
  const bool left = e.change == "left";  // only group, change and member
  return EncodeMap(e, [&](MapWriter& w) {
    w.Uint("group", e.group);
    if (!left) w.Uint("index", e.index);
    w.Str("change", e.change);
    w.Uint("member", e.member);
    if (!left) {
      w.Uint("voters", e.voters);
      w.Uint("learners", e.learners);
    }
  });
}

std::string Encode(const ShardsEvent& e) {
  return EncodeMap(e, [&](MapWriter& w) {
    w.Uint("version", e.version);
    w.Uint("members", e.members);
  });
}

template <typename KeyEventT>
std::string EncodeKeyEvent(const KeyEventT& e) {
  return EncodeMap(e, [&](MapWriter& w) {
    w.Bin("key", e.key);
    w.Uint("index", e.index);
    w.Uint("size", e.size);
  });
}
std::string Encode(const PutEvent& e) { return EncodeKeyEvent(e); }
std::string Encode(const DeleteEvent& e) { return EncodeKeyEvent(e); }
std::string Encode(const ExpireEvent& e) { return EncodeKeyEvent(e); }

// One field of a decoded map.
struct Field {
  std::string_view name;
  const msgpack::object& value;
  bool Uint(uint64_t* v) const { return GetUint(value, v); }
  bool Bytes(std::string* v) const { return GetBytes(value, v); }
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
bool Read(const Field& f, ExpireEvent* e) { return ReadKeyEvent(f, e); }

template <typename T>
Status DecodeAs(std::string_view topic, const msgpack::object& map, T* e) {
  bool has_node = false, has_seq = false;
  const std::string what = std::string(topic) + " event";
  Status s =
      ForEachField(map, what.c_str(), [&](const std::string& name, const msgpack::object& v) {
        const Field f{name, v};
        if (name == "node") return has_node = f.Uint(&e->node);
        if (name == "seq") return has_seq = f.Uint(&e->seq);
        return Read(f, e);
      });
  if (s.ok() && (!has_node || !has_seq)) {
    return Status::InvalidArgument(what + " without node or seq");
  }
  return s;
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
  msgpack::object_handle oh;
  Status s = Unpack(body, &oh);
  if (!s.ok()) return s;
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
