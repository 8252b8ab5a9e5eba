#include "net/client_codec.h"

#include <algorithm>
#include <utility>

#include "net/msgpack_util.h"

namespace kv::net {

// ---- Client protocol v1 ----------------------------------------------------

namespace {

bool ParseOp(const std::string& name, ClientOp* op) {
  if (name == "get") {
    *op = ClientOp::kGet;
  } else if (name == "put" || name == "set") {
    *op = ClientOp::kPut;
  } else if (name == "del") {
    *op = ClientOp::kDelete;
  } else if (name == "cas") {
    *op = ClientOp::kCas;
  } else if (name == "status") {
    *op = ClientOp::kStatus;
  } else if (name == "transfer_leader") {
    *op = ClientOp::kTransferLeader;
  } else if (name == "member_add") {
    *op = ClientOp::kMemberAdd;
  } else if (name == "member_remove") {
    *op = ClientOp::kMemberRemove;
  } else if (name == "shards") {
    *op = ClientOp::kShards;
  } else {
    return false;
  }
  return true;
}

}  // namespace

Status DecodeClientRequest(std::string_view bytes, const RequestLimits& limits, ClientRequest* r,
                           bool* id_known) {
  *id_known = false;
  *r = ClientRequest{};
  msgpack::object_handle oh;
  Status s = Unpack(bytes, &oh);
  if (!s.ok()) return s;
  const msgpack::object& o = oh.get();
  if (o.type != msgpack::type::MAP) return Status::InvalidArgument("request is not a msgpack map");
  // The id first, so that every later error can be answered to it.
  const msgpack::object_kv* begin = o.via.map.ptr;
  const msgpack::object_kv* end = begin + o.via.map.size;
  for (const auto* kv = begin; kv != end; ++kv) {
    std::string name;
    if (GetBytes(kv->key, &name) && name == "id") {
      if (!GetUint(kv->val, &r->id))
        return Status::InvalidArgument("\"id\" must be an unsigned integer");
      *id_known = true;
    }
  }
  if (!*id_known) return Status::InvalidArgument("missing \"id\"");
  bool has_op = false, has_key = false, has_value = false;
  for (const auto* kv = begin; kv != end; ++kv) {
    std::string name;
    if (!GetBytes(kv->key, &name)) return Status::InvalidArgument("map keys must be strings");
    const msgpack::object& v = kv->val;
    bool ok = true;
    if (name == "id") {
      continue;
    } else if (name == "op") {
      std::string op;
      ok = GetBytes(v, &op);
      if (ok && !ParseOp(op, &r->op)) {
        // Echo only printable ASCII: the error text goes back as a msgpack str.
        for (char& c : op) {
          if (c < 0x20 || c > 0x7e) c = '?';
        }
        return Status::InvalidArgument("unknown op \"" + op.substr(0, 64) + "\"");
      }
      has_op = ok;
    } else if (name == "key") {
      ok = has_key = GetBytes(v, &r->key);
    } else if (name == "value") {
      ok = has_value = GetBytes(v, &r->value);
    } else if (name == "expect") {
      if (v.type == msgpack::type::NIL) {
        r->has_expect = false;
      } else {
        ok = r->has_expect = GetBytes(v, &r->expect);
      }
    } else if (name == "client") {
      ok = GetUint(v, &r->client);
    } else if (name == "seq") {
      ok = GetUint(v, &r->seq);
    } else if (name == "stale") {
      ok = GetBool(v, &r->stale);
    } else if (name == "target") {
      ok = GetUint(v, &r->target);
    } else if (name == "node") {
      ok = GetUint(v, &r->node);
    } else if (name == "address") {
      ok = GetBytes(v, &r->address);
    }
    // Unknown fields are ignored, so that newer clients work with older nodes.
    if (!ok) return Status::InvalidArgument("field \"" + name + "\" has the wrong type");
  }
  if (!has_op) return Status::InvalidArgument("missing \"op\"");
  if (r->op == ClientOp::kStatus || r->op == ClientOp::kShards) return Status::OK();
  if (r->op == ClientOp::kTransferLeader) {
    return r->target != 0 ? Status::OK() : Status::InvalidArgument("missing \"target\"");
  }
  if (r->op == ClientOp::kMemberAdd || r->op == ClientOp::kMemberRemove) {
    if (r->node == 0) return Status::InvalidArgument("missing \"node\"");
    if (r->op == ClientOp::kMemberAdd && r->address.empty()) {
      return Status::InvalidArgument("missing \"address\"");
    }
    return Status::OK();
  }
  if (!has_key) return Status::InvalidArgument("missing \"key\"");
  if (r->key.size() > limits.max_key_bytes) {
    return Status::InvalidArgument("key of " + std::to_string(r->key.size()) +
                                   " bytes is over the limit of " +
                                   std::to_string(limits.max_key_bytes));
  }
  if ((r->op == ClientOp::kPut || r->op == ClientOp::kCas) && !has_value) {
    return Status::InvalidArgument("missing \"value\"");
  }
  if (r->value.size() > limits.max_value_bytes || r->expect.size() > limits.max_value_bytes) {
    return Status::InvalidArgument(
        "value of " + std::to_string(std::max(r->value.size(), r->expect.size())) +
        " bytes is over the limit of " + std::to_string(limits.max_value_bytes));
  }
  if (r->seq != 0 && r->client == 0) return Status::InvalidArgument("\"seq\" without \"client\"");
  if (r->client != 0 && r->seq == 0) {
    return Status::InvalidArgument("\"client\" needs \"seq\" (1, 2, ... per write)");
  }
  return Status::OK();
}

std::string EncodeClientRequest(const ClientRequest& r) {
  static const char* kOpNames[] = {"get",        "put",           "del",
                                   "cas",        "status",        "transfer_leader",
                                   "member_add", "member_remove", "shards"};
  std::string out;
  out.reserve(48 + r.key.size() + r.value.size() + r.expect.size());
  StringBuffer buf(&out);
  Packer pk(buf);
  const bool write = r.op == ClientOp::kPut || r.op == ClientOp::kDelete || r.op == ClientOp::kCas;
  const bool member = r.op == ClientOp::kMemberAdd || r.op == ClientOp::kMemberRemove;
  const bool keyed = r.op == ClientOp::kGet || write;
  uint32_t fields = 2;
  if (keyed) fields += 1;                                             // key
  if (r.op == ClientOp::kTransferLeader) fields += 1;                 // target
  if (member) fields += 1;                                            // node
  if (r.op == ClientOp::kMemberAdd) fields += 1;                      // address
  if (r.op == ClientOp::kPut || r.op == ClientOp::kCas) fields += 1;  // value
  if (r.op == ClientOp::kCas) fields += 1;                            // expect
  if (write && r.client != 0) fields += 2;                            // client, seq
  if (r.op == ClientOp::kGet && r.stale) fields += 1;                 // stale
  pk.pack_map(fields);
  PackStr(pk, "id");
  pk.pack_uint64(r.id);
  PackStr(pk, "op");
  PackStr(pk, kOpNames[static_cast<int>(r.op)]);
  if (keyed) {
    PackStr(pk, "key");
    PackBytes(pk, r.key);
  }
  if (r.op == ClientOp::kTransferLeader) {
    PackStr(pk, "target");
    pk.pack_uint64(r.target);
  }
  if (member) {
    PackStr(pk, "node");
    pk.pack_uint64(r.node);
  }
  if (r.op == ClientOp::kMemberAdd) {
    PackStr(pk, "address");
    PackStr(pk, r.address);
  }
  if (r.op == ClientOp::kPut || r.op == ClientOp::kCas) {
    PackStr(pk, "value");
    PackBytes(pk, r.value);
  }
  if (r.op == ClientOp::kCas) {
    PackStr(pk, "expect");
    if (r.has_expect) {
      PackBytes(pk, r.expect);
    } else {
      pk.pack_nil();
    }
  }
  if (write && r.client != 0) {
    PackStr(pk, "client");
    pk.pack_uint64(r.client);
    PackStr(pk, "seq");
    pk.pack_uint64(r.seq);
  }
  if (r.op == ClientOp::kGet && r.stale) {
    PackStr(pk, "stale");
    pk.pack_true();
  }
  return out;
}

const char* ReplyStatusName(ReplyStatus s) {
  switch (s) {
    case ReplyStatus::kOk:
      return "OK";
    case ReplyStatus::kNotFound:
      return "NOT_FOUND";
    case ReplyStatus::kRedirect:
      return "REDIRECT";
    case ReplyStatus::kCasFailed:
      return "CAS_FAILED";
    case ReplyStatus::kUnavailable:
      return "UNAVAILABLE";
    case ReplyStatus::kUnknown:
      return "UNKNOWN";
    case ReplyStatus::kError:
      return "ERROR";
  }
  return "ERROR";
}

namespace {

bool GetReplyStatus(const msgpack::object& o, ReplyStatus* status) {
  std::string name;
  if (!GetBytes(o, &name)) return false;
  for (int k = 0; k <= static_cast<int>(ReplyStatus::kError); ++k) {
    if (name == ReplyStatusName(static_cast<ReplyStatus>(k))) {
      *status = static_cast<ReplyStatus>(k);
      return true;
    }
  }
  return false;
}

// Member maps: node id as a decimal str (many msgpack decoders, Python's by
// default, refuse other key types) -> client address.
void PackMembers(Packer& pk, const std::map<uint64_t, std::string>& members) {
  pk.pack_map(static_cast<uint32_t>(members.size()));
  for (const auto& [id, addr] : members) {
    PackStr(pk, std::to_string(id));
    PackStr(pk, addr);
  }
}

bool GetMembers(const msgpack::object& o, std::map<uint64_t, std::string>* members) {
  if (o.type != msgpack::type::MAP) return false;
  members->clear();
  for (uint32_t k = 0; k < o.via.map.size; ++k) {
    std::string id, addr;
    if (!GetBytes(o.via.map.ptr[k].key, &id) || !GetBytes(o.via.map.ptr[k].val, &addr) ||
        id.empty() || id.find_first_not_of("0123456789") != std::string::npos || id.size() >= 20) {
      return false;
    }
    (*members)[std::stoull(id)] = addr;
  }
  return true;
}

// The fields NodeStatus (its main group) and GroupStatus share: one Raft
// group's state, under the same names in both maps.
constexpr uint32_t kGroupFields = 11;

template <typename T>
void PackGroupFields(Packer& pk, const T& g) {
  PackStr(pk, "role");
  PackStr(pk, g.role);
  const std::pair<const char*, uint64_t> numbers[] = {{"term", g.term},
                                                      {"leader", g.leader},
                                                      {"commit", g.commit},
                                                      {"applied", g.applied},
                                                      {"last_index", g.last_index},
                                                      {"snapshot_index", g.snapshot_index},
                                                      {"digest", g.digest},
                                                      {"keys", g.keys}};
  for (const auto& [name, value] : numbers) {
    PackStr(pk, name);
    pk.pack_uint64(value);
  }
  PackStr(pk, "voters");
  pk.pack(g.voters);
  PackStr(pk, "learners");
  pk.pack(g.learners);
}

// Decodes `name` if it is one of the shared fields (*known) and returns
// whether its value was well formed.
template <typename T>
bool GetGroupField(const std::string& name, const msgpack::object& v, T* g, bool* known) {
  static const std::pair<const char*, uint64_t T::*> kNumbers[] = {
      {"term", &T::term},
      {"leader", &T::leader},
      {"commit", &T::commit},
      {"applied", &T::applied},
      {"last_index", &T::last_index},
      {"snapshot_index", &T::snapshot_index},
      {"digest", &T::digest},
      {"keys", &T::keys}};
  *known = true;
  for (const auto& [number, member] : kNumbers) {
    if (name == number) return GetUint(v, &(g->*member));
  }
  if (name == "role") return GetBytes(v, &g->role);
  if (name == "voters") return GetIdList(v, &g->voters);
  if (name == "learners") return GetIdList(v, &g->learners);
  *known = false;
  return true;
}

// A group's shard is left out for the metadata group (shard -1).
void PackGroups(Packer& pk, const std::vector<GroupStatus>& groups) {
  pk.pack_array(static_cast<uint32_t>(groups.size()));
  for (const GroupStatus& g : groups) {
    pk.pack_map(kGroupFields + (g.shard >= 0 ? 2 : 1));
    PackStr(pk, "group");
    pk.pack_uint64(g.group);
    if (g.shard >= 0) {
      PackStr(pk, "shard");
      pk.pack_uint64(static_cast<uint64_t>(g.shard));
    }
    PackGroupFields(pk, g);
  }
}

bool GetGroups(const msgpack::object& o, std::vector<GroupStatus>* groups) {
  if (o.type != msgpack::type::ARRAY) return false;
  groups->clear();
  for (uint32_t i = 0; i < o.via.array.size; ++i) {
    GroupStatus g;
    const Status s = ForEachField(o.via.array.ptr[i], "group",
                                  [&](const std::string& name, const msgpack::object& v) {
                                    bool known = false;
                                    const bool ok = GetGroupField(name, v, &g, &known);
                                    if (known) return ok;
                                    if (name == "group") return GetUint(v, &g.group);
                                    if (name == "shard") return GetShard(v, &g.shard);
                                    return true;
                                  });
    if (!s.ok()) return false;
    groups->push_back(std::move(g));
  }
  return true;
}

bool GetShardList(const msgpack::object& o, std::vector<ShardInfo>* list) {
  if (o.type != msgpack::type::ARRAY) return false;
  list->clear();
  for (uint32_t i = 0; i < o.via.array.size; ++i) {
    ShardInfo info;
    bool has_shard = false;
    const Status s = ForEachField(o.via.array.ptr[i], "shard",
                                  [&](const std::string& name, const msgpack::object& v) {
                                    if (name == "shard") {
                                      has_shard = GetUint32(v, &info.shard);
                                      return has_shard;
                                    }
                                    if (name == "group") return GetUint(v, &info.group);
                                    if (name == "replicas") return GetIdList(v, &info.replicas);
                                    if (name == "leader") return GetUint(v, &info.leader);
                                    if (name == "leader_address")
                                      return GetBytes(v, &info.leader_address);
                                    return true;
                                  });
    if (!s.ok() || !has_shard) return false;
    list->push_back(std::move(info));
  }
  return true;
}

}  // namespace

std::string EncodeClientReply(const ClientReply& reply) {
  std::string out;
  out.reserve(48 + reply.value.size() + reply.leader.size() + reply.error.size());
  StringBuffer buf(&out);
  Packer pk(buf);
  const bool sharded = reply.shard >= 0;
  uint32_t fields = 2 + (reply.has_value ? 1 : 0) + (reply.leader.empty() ? 0 : 1) +
                    (reply.error.empty() ? 0 : 1) + (sharded ? 2 : 0);
  pk.pack_map(fields);
  PackStr(pk, "id");
  pk.pack_uint64(reply.id);
  PackStr(pk, "status");
  PackStr(pk, ReplyStatusName(reply.status));
  if (reply.has_value) {
    PackStr(pk, "value");
    PackBytes(pk, reply.value);
  }
  if (!reply.leader.empty()) {
    PackStr(pk, "leader");
    PackStr(pk, reply.leader);
  }
  if (!reply.error.empty()) {
    PackStr(pk, "error");
    PackStr(pk, reply.error);
  }
  if (sharded) {
    PackStr(pk, "shard");
    pk.pack_uint64(static_cast<uint64_t>(reply.shard));
    PackStr(pk, "map_version");
    pk.pack_uint64(reply.map_version);
  }
  return out;
}

Status DecodeClientReply(std::string_view bytes, ClientReply* reply) {
  *reply = ClientReply{};
  bool has_id = false, has_status = false;
  Status s = DecodeMap(bytes, "reply", [&](const std::string& name, const msgpack::object& v) {
    if (name == "id") {
      has_id = GetUint(v, &reply->id);
      return has_id;
    }
    if (name == "status") {
      has_status = GetReplyStatus(v, &reply->status);
      return has_status;
    }
    if (name == "value") {
      if (v.type == msgpack::type::NIL) return true;
      reply->has_value = GetBytes(v, &reply->value);
      return reply->has_value;
    }
    if (name == "leader") return v.type == msgpack::type::NIL || GetBytes(v, &reply->leader);
    if (name == "error") return GetBytes(v, &reply->error);
    if (name == "shard") return GetShard(v, &reply->shard);
    if (name == "map_version") return GetUint(v, &reply->map_version);
    return true;  // newer nodes may add fields
  });
  if (!s.ok()) return s;
  if (!has_id || !has_status) return Status::InvalidArgument("reply without id or status");
  return Status::OK();
}

Status DecodeKeyEvent(std::string_view bytes, KeyEvent* ev) {
  *ev = KeyEvent{};
  return DecodeMap(bytes, "event", [&](const std::string& name, const msgpack::object& v) {
    if (name == "node") return GetUint(v, &ev->node);
    if (name == "seq") return GetUint(v, &ev->seq);
    if (name == "key") return GetBytes(v, &ev->key);
    if (name == "index") return GetUint(v, &ev->index);
    if (name == "size") return GetUint(v, &ev->size);
    return true;
  });
}

std::string EncodeStatusReply(uint64_t request_id, const NodeStatus& st) {
  std::string out;
  StringBuffer buf(&out);
  Packer pk(buf);
  pk.pack_map(6 + kGroupFields + (st.shards > 0 ? 1 : 0) + (st.groups.empty() ? 0 : 1));
  PackStr(pk, "id");
  pk.pack_uint64(request_id);
  PackStr(pk, "status");
  PackStr(pk, "OK");
  PackStr(pk, "node");
  pk.pack_uint64(st.node);
  PackGroupFields(pk, st);
  PackStr(pk, "leader_address");
  PackStr(pk, st.leader_address);
  PackStr(pk, "event_seq");
  pk.pack_uint64(st.event_seq);
  PackStr(pk, "members");
  PackMembers(pk, st.members);
  if (st.shards > 0) {
    PackStr(pk, "shards");
    pk.pack_uint64(st.shards);
  }
  if (!st.groups.empty()) {
    PackStr(pk, "groups");
    PackGroups(pk, st.groups);
  }
  return out;
}

Status DecodeStatusReply(std::string_view bytes, uint64_t* request_id, NodeStatus* st) {
  *st = NodeStatus{};
  return DecodeMap(bytes, "status", [&](const std::string& name, const msgpack::object& v) {
    bool known = false;
    const bool ok = GetGroupField(name, v, st, &known);
    if (known) return ok;
    if (name == "id") return GetUint(v, request_id);
    if (name == "node") return GetUint(v, &st->node);
    if (name == "leader_address") return GetBytes(v, &st->leader_address);
    if (name == "event_seq") return GetUint(v, &st->event_seq);
    if (name == "members") return GetMembers(v, &st->members);
    if (name == "shards") return GetUint32(v, &st->shards);
    if (name == "groups") return GetGroups(v, &st->groups);
    return true;
  });
}

std::string EncodeShardsReply(uint64_t request_id, const ShardMap& map) {
  std::string out;
  StringBuffer buf(&out);
  Packer pk(buf);
  pk.pack_map(7);
  PackStr(pk, "id");
  pk.pack_uint64(request_id);
  PackStr(pk, "status");
  PackStr(pk, "OK");
  PackStr(pk, "version");
  pk.pack_uint64(map.version);
  PackStr(pk, "shards");
  pk.pack_uint64(map.shards);
  PackStr(pk, "replicas");
  pk.pack_uint64(map.replicas);
  PackStr(pk, "members");
  PackMembers(pk, map.members);
  PackStr(pk, "map");
  pk.pack_array(static_cast<uint32_t>(map.list.size()));
  for (const ShardInfo& info : map.list) {
    pk.pack_map(5);
    PackStr(pk, "shard");
    pk.pack_uint64(info.shard);
    PackStr(pk, "group");
    pk.pack_uint64(info.group);
    PackStr(pk, "replicas");
    pk.pack(info.replicas);
    PackStr(pk, "leader");
    pk.pack_uint64(info.leader);
    PackStr(pk, "leader_address");
    PackStr(pk, info.leader_address);
  }
  return out;
}

Status DecodeShardsReply(std::string_view bytes, uint64_t* request_id, ShardMap* map) {
  *map = ShardMap{};
  bool has_id = false, has_shards = false, has_list = false;
  std::string status, error;
  Status s =
      DecodeMap(bytes, "shards reply", [&](const std::string& name, const msgpack::object& v) {
        if (name == "id") {
          has_id = GetUint(v, request_id);
          return has_id;
        }
        if (name == "shards") {
          has_shards = GetUint32(v, &map->shards);
          return has_shards;
        }
        if (name == "map") {
          has_list = GetShardList(v, &map->list);
          return has_list;
        }
        if (name == "status") return GetBytes(v, &status);
        if (name == "error") return GetBytes(v, &error);
        if (name == "version") return GetUint(v, &map->version);
        if (name == "replicas") return GetUint32(v, &map->replicas);
        if (name == "members") return GetMembers(v, &map->members);
        return true;
      });
  if (!s.ok()) return s;
  if (status != "OK") {
    return Status::InvalidArgument("shards reply: status " + (status.empty() ? "missing" : status) +
                                   (error.empty() ? "" : ": " + error));
  }
  if (!has_id || !has_shards || !has_list) {
    return Status::InvalidArgument("shards reply without id, shards or map");
  }
  // Every shard exactly once: clients index the list by shard id.
  if (map->list.size() != map->shards) {
    return Status::InvalidArgument("shards reply lists " + std::to_string(map->list.size()) +
                                   " of " + std::to_string(map->shards) + " shards");
  }
  std::sort(map->list.begin(), map->list.end(),
            [](const ShardInfo& a, const ShardInfo& b) { return a.shard < b.shard; });
  for (uint32_t i = 0; i < map->shards; ++i) {
    if (map->list[i].shard != i) {
      return Status::InvalidArgument("shards reply: shard " + std::to_string(i) +
                                     " missing or listed twice");
    }
  }
  return Status::OK();
}

}  // namespace kv::net
