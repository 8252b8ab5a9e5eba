#include "net/client_codec.h"

#include <algorithm>
#include <optional>
#include <utility>

#include "net/msgpack_util.h"

namespace kv::net {

// ---- Client protocol v1 ----------------------------------------------------

namespace {

// Names on the wire, one table per enum for encoders and decoders alike. An
// enum value's first name is the one encoders write; a later one is an alias
// that decoders accept too.
constexpr std::pair<ClientOp, const char*> kOpNames[] = {
    {ClientOp::kGet, "get"},
    {ClientOp::kPut, "put"},
    {ClientOp::kPut, "set"},
    {ClientOp::kDelete, "del"},
    {ClientOp::kCas, "cas"},
    {ClientOp::kStatus, "status"},
    {ClientOp::kTransferLeader, "transfer_leader"},
    {ClientOp::kMemberAdd, "member_add"},
    {ClientOp::kMemberRemove, "member_remove"},
    {ClientOp::kShards, "shards"},
    {ClientOp::kScan, "scan"},
    {ClientOp::kTouch, "touch"},
    {ClientOp::kBackup, "backup"},
    {ClientOp::kTxn, "txn"},
    {ClientOp::kWatch, "watch"},
    {ClientOp::kCancel, "cancel"}};

constexpr std::pair<kv::TxnOp::Kind, const char*> kTxnOpNames[] = {
    {kv::TxnOp::Kind::kPut, "put"},
    {kv::TxnOp::Kind::kPut, "set"},
    {kv::TxnOp::Kind::kDelete, "del"},
    {kv::TxnOp::Kind::kGet, "get"}};

// A mod_index compare's "cmp".
constexpr std::pair<kv::TxnCompare::Kind, const char*> kModCompareNames[] = {
    {kv::TxnCompare::Kind::kModEqual, "eq"},
    {kv::TxnCompare::Kind::kModLess, "lt"},
    {kv::TxnCompare::Kind::kModGreater, "gt"}};

constexpr std::pair<ReplyStatus, const char*> kReplyStatusNames[] = {
    {ReplyStatus::kOk, "OK"},
    {ReplyStatus::kNotFound, "NOT_FOUND"},
    {ReplyStatus::kRedirect, "REDIRECT"},
    {ReplyStatus::kCasFailed, "CAS_FAILED"},
    {ReplyStatus::kUnavailable, "UNAVAILABLE"},
    {ReplyStatus::kUnknown, "UNKNOWN"},
    {ReplyStatus::kError, "ERROR"},
    {ReplyStatus::kDenied, "DENIED"},
    {ReplyStatus::kBusy, "BUSY"},
    {ReplyStatus::kCompacted, "COMPACTED"}};

constexpr std::pair<WatchEvent::Type, const char*> kWatchEventNames[] = {
    {WatchEvent::Type::kPut, "put"},
    {WatchEvent::Type::kDelete, "del"},
    {WatchEvent::Type::kExpire, "expire"}};

// The name encoders write for `value`, or `fallback` if it has none.
template <typename E, size_t N>
const char* NameOf(const std::pair<E, const char*> (&table)[N], E value, const char* fallback) {
  for (const auto& [v, name] : table) {
    if (v == value) return name;
  }
  return fallback;
}

// The value named `name`; false if no entry has that name.
template <typename E, size_t N>
bool ValueOf(const std::pair<E, const char*> (&table)[N], std::string_view name, E* value) {
  for (const auto& [v, n] : table) {
    if (name == n) {
      *value = v;
      return true;
    }
  }
  return false;
}

// A scan's range from its fields: [start, end), or the keys with prefix.
// A bound may be one byte longer than a key (a page's "next" is the last
// key plus a zero byte).
Status FinishScan(const std::optional<std::string>& start, const std::optional<std::string>& end,
                  const std::optional<std::string>& prefix, std::optional<uint64_t> limit,
                  const RequestLimits& limits, kv::ScanSpec* scan) {
  for (const auto* bound : {&start, &end, &prefix}) {
    if (*bound && (*bound)->size() > limits.max_key_bytes + 1) {
      return Status::InvalidArgument("a scan bound of " + std::to_string((*bound)->size()) +
                                     " bytes is over the key limit of " +
                                     std::to_string(limits.max_key_bytes));
    }
  }
  const bool keys_only = scan->keys_only;
  if (prefix) {
    if (start || end) return Status::InvalidArgument("scan takes \"prefix\" or \"start\"/\"end\"");
    *scan = kv::PrefixRange(*prefix);
  } else {
    scan->start = start.value_or("");
    scan->end = end;
  }
  scan->keys_only = keys_only;
  if (limit && (*limit == 0 || *limit > kv::kMaxScanLimit)) {
    return Status::InvalidArgument("\"limit\" must be 1.." + std::to_string(kv::kMaxScanLimit));
  }
  scan->limit = limit.value_or(kv::kDefaultScanLimit);
  return Status::OK();
}

Status CheckKey(const std::string& key, const RequestLimits& limits) {
  if (key.size() <= limits.max_key_bytes) return Status::OK();
  return Status::InvalidArgument("key of " + std::to_string(key.size()) +
                                 " bytes is over the limit of " +
                                 std::to_string(limits.max_key_bytes));
}

Status CheckValue(const std::string& value, const RequestLimits& limits) {
  if (value.size() <= limits.max_value_bytes) return Status::OK();
  return Status::InvalidArgument("value of " + std::to_string(value.size()) +
                                 " bytes is over the limit of " +
                                 std::to_string(limits.max_value_bytes));
}

Status CheckTtl(uint64_t ttl_ms) {
  if (ttl_ms <= kMaxTtlMs) return Status::OK();
  return Status::InvalidArgument("\"ttl_ms\" must be at most " + std::to_string(kMaxTtlMs) +
                                 " (ten years)");
}

Status CheckSession(const ClientRequest& r) {
  if (r.seq != 0 && r.client == 0) return Status::InvalidArgument("\"seq\" without \"client\"");
  if (r.client != 0 && r.seq == 0) {
    return Status::InvalidArgument("\"client\" needs \"seq\" (1, 2, ... per write)");
  }
  return Status::OK();
}

// `what`'s elements, each decoded by item(element, index); at most
// kv::kMaxTxnOps of them. Errors name the element: "success[2]: ...".
template <typename F>
Status ForEachTxnItem(const msgpack::object& o, const char* what, F item) {
  if (o.type != msgpack::type::ARRAY) {
    return Status::InvalidArgument(std::string("\"") + what + "\" must be an array");
  }
  if (o.via.array.size > kv::kMaxTxnOps) {
    return Status::InvalidArgument(std::string("\"") + what + "\" has " +
                                   std::to_string(o.via.array.size) + " items; at most " +
                                   std::to_string(kv::kMaxTxnOps));
  }
  for (uint32_t i = 0; i < o.via.array.size; ++i) {
    Status s = item(o.via.array.ptr[i]);
    if (!s.ok()) {
      return Status::InvalidArgument(std::string(what) + "[" + std::to_string(i) +
                                     "]: " + s.message());
    }
  }
  return Status::OK();
}

// One compare: {key, value}, {key, absent: true}, {key, present: true} or
// {key, mod_index, cmp}.
Status DecodeTxnCompare(const msgpack::object& o, const RequestLimits& limits, kv::TxnCompare* c) {
  bool has_key = false, absent = false, present = false, has_value = false, has_index = false;
  std::optional<std::string> cmp;
  Status s = ForEachField(o, "compare", [&](const std::string& name, const msgpack::object& v) {
    if (name == "key") return has_key = GetBytes(v, &c->key);
    if (name == "value") return has_value = GetBytes(v, &c->value);
    if (name == "absent") return GetBool(v, &absent);
    if (name == "present") return GetBool(v, &present);
    if (name == "mod_index") return has_index = GetUint(v, &c->index);
    if (name == "cmp") return GetBytes(v, &cmp.emplace());
    return true;
  });
  if (!s.ok()) return s;
  if (!has_key) return Status::InvalidArgument("missing \"key\"");
  if (has_value + absent + present + has_index != 1) {
    return Status::InvalidArgument(
        "a compare takes one of \"value\", \"absent\": true, \"present\": true or "
        "\"mod_index\"");
  }
  if (cmp && !has_index) return Status::InvalidArgument("\"cmp\" goes with \"mod_index\"");
  c->kind = has_value ? kv::TxnCompare::Kind::kValue
            : absent  ? kv::TxnCompare::Kind::kAbsent
            : present ? kv::TxnCompare::Kind::kPresent
                      : kv::TxnCompare::Kind::kModEqual;
  if (cmp && !ValueOf(kModCompareNames, *cmp, &c->kind)) {
    return Status::InvalidArgument("\"cmp\" is \"eq\", \"lt\" or \"gt\"");
  }
  s = CheckKey(c->key, limits);
  return s.ok() ? CheckValue(c->value, limits) : s;
}

// One op of a branch: {op: "put", key, value, ttl_ms}, {op: "del", key} or
// {op: "get", key}.
Status DecodeTxnOp(const msgpack::object& o, const RequestLimits& limits, kv::TxnOp* op) {
  bool has_op = false, has_key = false, has_value = false;
  std::string name_of_op;
  Status s = ForEachField(o, "op", [&](const std::string& name, const msgpack::object& v) {
    if (name == "op") return has_op = GetBytes(v, &name_of_op);
    if (name == "key") return has_key = GetBytes(v, &op->key);
    if (name == "value") return has_value = GetBytes(v, &op->value);
    if (name == "ttl_ms") return GetUint(v, &op->ttl_ms);
    return true;
  });
  if (!s.ok()) return s;
  if (!has_op || !ValueOf(kTxnOpNames, name_of_op, &op->kind)) {
    return Status::InvalidArgument("\"op\" is \"put\", \"del\" or \"get\"");
  }
  if (!has_key) return Status::InvalidArgument("missing \"key\"");
  if (op->kind == kv::TxnOp::Kind::kPut && !has_value) {
    return Status::InvalidArgument("missing \"value\"");
  }
  s = CheckKey(op->key, limits);
  if (s.ok()) s = CheckValue(op->value, limits);
  return s.ok() ? CheckTtl(op->ttl_ms) : s;
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
  std::optional<std::string> scan_start, scan_end, scan_prefix;
  std::optional<uint64_t> limit;
  const msgpack::object* compare = nullptr;
  const msgpack::object* branches[2] = {nullptr, nullptr};  // success, failure
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
      if (ok && !ValueOf(kOpNames, op, &r->op)) {
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
    } else if (name == "expect_index") {
      ok = r->has_expect_index = GetUint(v, &r->expect_index);
    } else if (name == "ttl_ms") {
      ok = GetUint(v, &r->ttl_ms);
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
    } else if (name == "pub") {
      ok = GetBytes(v, &r->pub);
    } else if (name == "start" || name == "end" || name == "prefix") {
      std::string bound;
      ok = GetBytes(v, &bound);
      (name == "start" ? scan_start : name == "end" ? scan_end : scan_prefix) = std::move(bound);
    } else if (name == "limit") {
      uint64_t n = 0;
      ok = GetUint(v, &n);
      limit = n;
    } else if (name == "keys_only") {
      ok = GetBool(v, &r->scan.keys_only);
    } else if (name == "shard") {
      ok = GetShard(v, &r->shard);
    } else if (name == "backup") {
      ok = GetUint(v, &r->backup);
    } else if (name == "cursor") {
      ok = GetUint(v, &r->cursor);
    } else if (name == "close") {
      ok = GetBool(v, &r->close);
    } else if (name == "from_index") {
      ok = GetUint(v, &r->from_index);
    } else if (name == "watch") {
      ok = GetUint(v, &r->watch);
    } else if (name == "compare") {
      compare = &v;
    } else if (name == "success" || name == "failure") {
      branches[name == "failure"] = &v;
    }
    // Unknown fields are ignored, so that newer clients work with older nodes.
    if (!ok) return Status::InvalidArgument("field \"" + name + "\" has the wrong type");
  }
  if (!has_op) return Status::InvalidArgument("missing \"op\"");
  if (r->op == ClientOp::kStatus || r->op == ClientOp::kShards || r->op == ClientOp::kBackup) {
    return Status::OK();
  }
  if (r->op == ClientOp::kScan || r->op == ClientOp::kWatch) {
    return FinishScan(scan_start, scan_end, scan_prefix, limit, limits, &r->scan);
  }
  if (r->op == ClientOp::kCancel) {
    return r->watch != 0 ? Status::OK() : Status::InvalidArgument("missing \"watch\"");
  }
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
  if (r->op == ClientOp::kTxn) {
    s = compare == nullptr ? Status::OK()
                           : ForEachTxnItem(*compare, "compare", [&](const msgpack::object& item) {
                               return DecodeTxnCompare(item, limits, &r->compare.emplace_back());
                             });
    const char* names[2] = {"success", "failure"};
    for (int b = 0; b < 2 && s.ok(); ++b) {
      std::vector<kv::TxnOp>* ops = b == 0 ? &r->success : &r->failure;
      if (branches[b] == nullptr) continue;
      s = ForEachTxnItem(*branches[b], names[b], [&](const msgpack::object& item) {
        return DecodeTxnOp(item, limits, &ops->emplace_back());
      });
    }
    return s.ok() ? CheckSession(*r) : s;
  }
  if (!has_key) return Status::InvalidArgument("missing \"key\"");
  s = CheckKey(r->key, limits);
  if (!s.ok()) return s;
  if ((r->op == ClientOp::kPut || r->op == ClientOp::kCas) && !has_value) {
    return Status::InvalidArgument("missing \"value\"");
  }
  if (r->op == ClientOp::kCas && r->has_expect && r->has_expect_index) {
    return Status::InvalidArgument("cas compares \"expect\" or \"expect_index\", not both");
  }
  s = CheckTtl(r->ttl_ms);
  if (s.ok()) s = CheckValue(r->value, limits);
  if (s.ok()) s = CheckValue(r->expect, limits);
  return s.ok() ? CheckSession(*r) : s;
}

namespace {

// A txn's "compare", "success" and "failure" (only the fields each item's
// kind uses), as fields of `map`, which writes at the end of *out.
void PackTxn(const ClientRequest& r, MapWriter* map, std::string* out) {
  map->Field("compare").pack_array(static_cast<uint32_t>(r.compare.size()));
  for (const kv::TxnCompare& c : r.compare) {
    MapWriter item(out);
    item.Bin("key", c.key);
    switch (c.kind) {
      case kv::TxnCompare::Kind::kValue:
        item.Bin("value", c.value);
        break;
      case kv::TxnCompare::Kind::kAbsent:
        item.Field("absent").pack_true();
        break;
      case kv::TxnCompare::Kind::kPresent:
        item.Field("present").pack_true();
        break;
      default:
        item.Uint("mod_index", c.index);
        item.Str("cmp", NameOf(kModCompareNames, c.kind, "eq"));
    }
    item.Finish();
  }
  for (const auto* ops : {&r.success, &r.failure}) {
    map->Field(ops == &r.success ? "success" : "failure")
        .pack_array(static_cast<uint32_t>(ops->size()));
    for (const kv::TxnOp& op : *ops) {
      MapWriter item(out);
      item.Str("op", NameOf(kTxnOpNames, op.kind, "get"));
      item.Bin("key", op.key);
      if (op.kind == kv::TxnOp::Kind::kPut) item.Bin("value", op.value);
      if (op.ttl_ms != 0) item.Uint("ttl_ms", op.ttl_ms);
      item.Finish();
    }
  }
}

}  // namespace

std::string EncodeClientRequest(const ClientRequest& r) {
  std::string out;
  out.reserve(48 + r.key.size() + r.value.size() + r.expect.size());
  const bool write = IsWrite(r.op);
  MapWriter map(&out);
  map.Uint("id", r.id);
  map.Str("op", NameOf(kOpNames, r.op, ""));
  if (r.op == ClientOp::kGet || write) map.Bin("key", r.key);
  if (r.op == ClientOp::kTransferLeader) map.Uint("target", r.target);
  if (r.op == ClientOp::kMemberAdd || r.op == ClientOp::kMemberRemove) map.Uint("node", r.node);
  if (r.op == ClientOp::kMemberAdd) map.Str("address", r.address);
  if (r.op == ClientOp::kMemberAdd && !r.pub.empty()) map.Str("pub", r.pub);
  if (r.op == ClientOp::kPut || r.op == ClientOp::kCas) map.Bin("value", r.value);
  if (r.op == ClientOp::kCas && r.has_expect_index) {
    map.Uint("expect_index", r.expect_index);
  } else if (r.op == ClientOp::kCas && r.has_expect) {
    map.Bin("expect", r.expect);
  } else if (r.op == ClientOp::kCas) {
    map.Field("expect").pack_nil();
  }
  if ((r.op == ClientOp::kPut || r.op == ClientOp::kCas || r.op == ClientOp::kTouch) &&
      r.ttl_ms != 0) {
    map.Uint("ttl_ms", r.ttl_ms);
  }
  if (write && r.client != 0) {
    map.Uint("client", r.client);
    map.Uint("seq", r.seq);
  }
  if (r.op == ClientOp::kScan || r.op == ClientOp::kWatch) {
    map.Bin("start", r.scan.start);
    if (r.scan.end) map.Bin("end", *r.scan.end);
    if (r.op == ClientOp::kScan) map.Uint("limit", r.scan.limit);
    if (r.scan.keys_only) map.Field("keys_only").pack_true();
    if (r.shard >= 0) map.Uint("shard", static_cast<uint64_t>(r.shard));
  }
  if (r.op == ClientOp::kWatch && r.from_index != 0) map.Uint("from_index", r.from_index);
  if (r.op == ClientOp::kCancel) map.Uint("watch", r.watch);
  if (r.op == ClientOp::kBackup) {
    if (r.shard >= 0) map.Uint("shard", static_cast<uint64_t>(r.shard));
    if (r.backup != 0) {
      map.Uint("backup", r.backup);
      map.Uint("cursor", r.cursor);
      if (r.close) map.Field("close").pack_true();
    }
  }
  if ((r.op == ClientOp::kGet || r.op == ClientOp::kScan) && r.stale) {
    map.Field("stale").pack_true();
  }
  if (r.op == ClientOp::kTxn) PackTxn(r, &map, &out);
  map.Finish();
  return out;
}

const char* ReplyStatusName(ReplyStatus s) { return NameOf(kReplyStatusNames, s, "ERROR"); }

const char* ClientOpName(ClientOp op) { return NameOf(kOpNames, op, "?"); }

namespace {

bool GetReplyStatus(const msgpack::object& o, ReplyStatus* status) {
  std::string name;
  return GetBytes(o, &name) && ValueOf(kReplyStatusNames, name, status);
}

// Writes a member map at the end of *out: node id as a decimal str (many
// msgpack decoders, Python's by default, refuse other key types) -> client
// address.
void PackMembers(const std::map<uint64_t, std::string>& members, std::string* out) {
  MapWriter map(out);
  for (const auto& [id, addr] : members) map.Str(std::to_string(id), addr);
  map.Finish();
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
// group's state, under the same names in both maps. The numbers, in the
// order they are written:
template <typename T>
constexpr std::pair<const char*, uint64_t T::*> kGroupNumbers[] = {
    {"term", &T::term},
    {"leader", &T::leader},
    {"commit", &T::commit},
    {"applied", &T::applied},
    {"last_index", &T::last_index},
    {"snapshot_index", &T::snapshot_index},
    {"digest", &T::digest},
    {"keys", &T::keys}};

template <typename T>
void PackGroupFields(const T& g, MapWriter* map) {
  map->Str("role", g.role);
  for (const auto& [name, member] : kGroupNumbers<T>) map->Uint(name, g.*member);
  map->Field("voters").pack(g.voters);
  map->Field("learners").pack(g.learners);
}

// Decodes `name` if it is one of the shared fields (*known) and returns
// whether its value was well formed.
template <typename T>
bool GetGroupField(const std::string& name, const msgpack::object& v, T* g, bool* known) {
  *known = true;
  for (const auto& [number, member] : kGroupNumbers<T>) {
    if (name == number) return GetUint(v, &(g->*member));
  }
  if (name == "role") return GetBytes(v, &g->role);
  if (name == "voters") return GetIdList(v, &g->voters);
  if (name == "learners") return GetIdList(v, &g->learners);
  *known = false;
  return true;
}

// An array of group maps at the end of *out; a group's shard is left out for the metadata group
// (shard -1).
void PackGroups(const std::vector<GroupStatus>& groups, std::string* out) {
  StringBuffer buffer(out);
  Packer(buffer).pack_array(static_cast<uint32_t>(groups.size()));
  for (const GroupStatus& g : groups) {
    MapWriter map(out);
    map.Uint("group", g.group);
    if (g.shard >= 0) map.Uint("shard", static_cast<uint64_t>(g.shard));
    PackGroupFields(g, &map);
    map.Finish();
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

// A page's keys: an array of maps {key, value (unless keys only), mod_index}.
void PackScannedKeys(const kv::ScanPage& page, std::string* out) {
  StringBuffer buffer(out);
  Packer(buffer).pack_array(static_cast<uint32_t>(page.kvs.size()));
  for (const kv::ScannedKey& k : page.kvs) {
    MapWriter map(out);
    map.Bin("key", k.key);
    if (!page.keys_only) map.Bin("value", k.value);
    map.Uint("mod_index", k.version.mod_index);
    if (k.ttl_ms != 0) map.Uint("ttl_ms", k.ttl_ms);
    map.Finish();
  }
}

bool GetScannedKeys(const msgpack::object& o, std::vector<kv::ScannedKey>* kvs) {
  if (o.type != msgpack::type::ARRAY) return false;
  kvs->clear();
  kvs->reserve(o.via.array.size);
  for (uint32_t i = 0; i < o.via.array.size; ++i) {
    kv::ScannedKey k;
    bool has_key = false;
    const Status s = ForEachField(o.via.array.ptr[i], "scanned key",
                                  [&](const std::string& name, const msgpack::object& v) {
                                    if (name == "key") return has_key = GetBytes(v, &k.key);
                                    if (name == "value") return GetBytes(v, &k.value);
                                    if (name == "mod_index") {
                                      return GetUint(v, &k.version.mod_index);
                                    }
                                    if (name == "ttl_ms") return GetUint(v, &k.ttl_ms);
                                    return true;
                                  });
    if (!s.ok() || !has_key) return false;
    kvs->push_back(std::move(k));
  }
  return true;
}

// A txn's results: an array of maps {status, value, create_index,
// mod_index, ttl_ms, error}, each field only when it says something.
void PackTxnResults(const std::vector<TxnResult>& results, std::string* out) {
  StringBuffer buffer(out);
  Packer(buffer).pack_array(static_cast<uint32_t>(results.size()));
  for (const TxnResult& r : results) {
    MapWriter map(out);
    map.Str("status", ReplyStatusName(r.status));
    if (r.has_value) map.Bin("value", r.value);
    if (r.mod_index != 0) {
      map.Uint("create_index", r.create_index);
      map.Uint("mod_index", r.mod_index);
    }
    if (r.ttl_ms != 0) map.Uint("ttl_ms", r.ttl_ms);
    if (!r.error.empty()) map.Str("error", r.error);
    map.Finish();
  }
}

bool GetTxnResults(const msgpack::object& o, std::vector<TxnResult>* results) {
  if (o.type != msgpack::type::ARRAY) return false;
  results->clear();
  results->reserve(o.via.array.size);
  for (uint32_t i = 0; i < o.via.array.size; ++i) {
    TxnResult& r = results->emplace_back();
    bool has_status = false;
    const Status s = ForEachField(o.via.array.ptr[i], "txn result",
                                  [&](const std::string& name, const msgpack::object& v) {
                                    if (name == "status") {
                                      return has_status = GetReplyStatus(v, &r.status);
                                    }
                                    if (name == "value") return r.has_value = GetBytes(v, &r.value);
                                    if (name == "create_index") return GetUint(v, &r.create_index);
                                    if (name == "mod_index") return GetUint(v, &r.mod_index);
                                    if (name == "ttl_ms") return GetUint(v, &r.ttl_ms);
                                    if (name == "error") return GetBytes(v, &r.error);
                                    return true;
                                  });
    if (!s.ok() || !has_status) return false;
  }
  return true;
}

}  // namespace

std::string EncodeClientReply(const ClientReply& reply) {
  std::string out;
  out.reserve(48 + reply.value.size() + reply.leader.size() + reply.error.size());
  MapWriter map(&out);
  map.Uint("id", reply.id);
  map.Str("status", ReplyStatusName(reply.status));
  if (reply.has_value) map.Bin("value", reply.value);
  if (reply.index != 0) map.Uint("index", reply.index);
  if (reply.mod_index != 0) {
    map.Uint("create_index", reply.create_index);
    map.Uint("mod_index", reply.mod_index);
  }
  if (reply.ttl_ms != 0) map.Uint("ttl_ms", reply.ttl_ms);
  if (!reply.leader.empty()) map.Str("leader", reply.leader);
  if (!reply.leader_key.empty()) map.Str("leader_key", reply.leader_key);
  if (!reply.error.empty()) map.Str("error", reply.error);
  if (reply.shard >= 0) {
    map.Uint("shard", static_cast<uint64_t>(reply.shard));
    map.Uint("map_version", reply.map_version);
  }
  if (reply.is_scan) {
    map.Field("kvs");
    PackScannedKeys(reply.page, &out);
    map.Field("more").pack(reply.page.more);
    if (reply.page.more) map.Bin("next", reply.page.next);
  }
  if (reply.is_txn) {
    map.Field("succeeded").pack(reply.succeeded);
    if (reply.resent) map.Field("resent").pack_true();
    map.Field("results");
    PackTxnResults(reply.results, &out);
  }
  map.Finish();
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
    if (name == "leader_key") return GetBytes(v, &reply->leader_key);
    if (name == "error") return GetBytes(v, &reply->error);
    if (name == "shard") return GetShard(v, &reply->shard);
    if (name == "map_version") return GetUint(v, &reply->map_version);
    if (name == "index") return GetUint(v, &reply->index);
    if (name == "create_index") return GetUint(v, &reply->create_index);
    if (name == "mod_index") return GetUint(v, &reply->mod_index);
    if (name == "ttl_ms") return GetUint(v, &reply->ttl_ms);
    if (name == "kvs") return reply->is_scan = GetScannedKeys(v, &reply->page.kvs);
    if (name == "more") return GetBool(v, &reply->page.more);
    if (name == "next") return GetBytes(v, &reply->page.next);
    if (name == "succeeded") return reply->is_txn = GetBool(v, &reply->succeeded);
    if (name == "resent") return GetBool(v, &reply->resent);
    if (name == "results") return GetTxnResults(v, &reply->results);
    return true;  // newer nodes may add fields
  });
  if (!s.ok()) return s;
  if (!has_id || !has_status) return Status::InvalidArgument("reply without id or status");
  return Status::OK();
}

std::string EncodeStatusReply(uint64_t request_id, const NodeStatus& st) {
  std::string out;
  MapWriter map(&out);
  map.Uint("id", request_id);
  map.Str("status", ReplyStatusName(ReplyStatus::kOk));
  map.Uint("node", st.node);
  PackGroupFields(st, &map);
  map.Str("leader_address", st.leader_address);
  map.Uint("event_seq", st.event_seq);
  map.Field("members");
  PackMembers(st.members, &out);
  if (!st.member_keys.empty()) {
    map.Field("member_keys");
    PackMembers(st.member_keys, &out);
  }
  if (st.shards > 0) map.Uint("shards", st.shards);
  if (!st.groups.empty()) {
    map.Field("groups");
    PackGroups(st.groups, &out);
  }
  map.Finish();
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
    if (name == "member_keys") return GetMembers(v, &st->member_keys);
    if (name == "shards") return GetUint32(v, &st->shards);
    if (name == "groups") return GetGroups(v, &st->groups);
    return true;
  });
}

std::string EncodeShardsReply(uint64_t request_id, const ShardMap& map) {
  std::string out;
  MapWriter reply(&out);
  reply.Uint("id", request_id);
  reply.Str("status", ReplyStatusName(ReplyStatus::kOk));
  reply.Uint("version", map.version);
  reply.Uint("shards", map.shards);
  reply.Uint("replicas", map.replicas);
  if (map.placement != 0) reply.Uint("placement", map.placement);
  reply.Field("members");
  PackMembers(map.members, &out);
  if (!map.member_keys.empty()) {
    reply.Field("member_keys");
    PackMembers(map.member_keys, &out);
  }
  reply.Field("map").pack_array(static_cast<uint32_t>(map.list.size()));
  for (const ShardInfo& info : map.list) {
    MapWriter entry(&out);
    entry.Uint("shard", info.shard);
    entry.Uint("group", info.group);
    entry.Field("replicas").pack(info.replicas);
    entry.Uint("leader", info.leader);
    entry.Str("leader_address", info.leader_address);
    entry.Finish();
  }
  reply.Finish();
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
        if (name == "placement") return GetUint32(v, &map->placement);
        if (name == "members") return GetMembers(v, &map->members);
        if (name == "member_keys") return GetMembers(v, &map->member_keys);
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

std::string EncodeWatchReply(uint64_t request_id, const WatchReply& r) {
  std::string out;
  size_t bytes = 64 + r.error.size();
  for (const WatchEvent& e : r.events) bytes += 48 + e.key.size() + e.value.size();
  out.reserve(bytes);
  MapWriter reply(&out);
  reply.Uint("id", request_id);
  reply.Str("status", ReplyStatusName(r.status));
  reply.Uint("node", r.node);
  if (r.status == ReplyStatus::kOk) {
    reply.Uint("after", r.after);
    reply.Uint("upto", r.upto);
    reply.Field("events").pack_array(static_cast<uint32_t>(r.events.size()));
    for (const WatchEvent& e : r.events) {
      MapWriter event(&out);
      event.Str("type", NameOf(kWatchEventNames, e.type, "put"));
      event.Bin("key", e.key);
      if (e.has_value) event.Bin("value", e.value);
      event.Uint("index", e.index);
      if (e.type == WatchEvent::Type::kPut) event.Uint("create_index", e.create_index);
      event.Finish();
    }
  }
  if (r.status == ReplyStatus::kCompacted) reply.Uint("oldest", r.oldest);
  if (!r.error.empty()) reply.Str("error", r.error);
  reply.Finish();
  return out;
}

namespace {

bool GetWatchEvents(const msgpack::object& o, std::vector<WatchEvent>* events) {
  if (o.type != msgpack::type::ARRAY) return false;
  events->clear();
  events->reserve(o.via.array.size);
  for (uint32_t i = 0; i < o.via.array.size; ++i) {
    WatchEvent& e = events->emplace_back();
    bool has_type = false, has_key = false, has_index = false;
    const Status s = ForEachField(
        o.via.array.ptr[i], "watch event", [&](const std::string& name, const msgpack::object& v) {
          if (name == "type") {
            std::string type;
            return has_type = GetBytes(v, &type) && ValueOf(kWatchEventNames, type, &e.type);
          }
          if (name == "key") return has_key = GetBytes(v, &e.key);
          if (name == "value") return e.has_value = GetBytes(v, &e.value);
          if (name == "index") return has_index = GetUint(v, &e.index);
          if (name == "create_index") return GetUint(v, &e.create_index);
          return true;
        });
    if (!s.ok() || !has_type || !has_key || !has_index) return false;
  }
  return true;
}

}  // namespace

Status DecodeWatchReply(std::string_view bytes, uint64_t* request_id, WatchReply* r) {
  *r = WatchReply{};
  bool has_id = false, has_status = false;
  Status s =
      DecodeMap(bytes, "watch reply", [&](const std::string& name, const msgpack::object& v) {
        if (name == "id") return has_id = GetUint(v, request_id);
        if (name == "status") return has_status = GetReplyStatus(v, &r->status);
        if (name == "node") return GetUint(v, &r->node);
        if (name == "after") return GetUint(v, &r->after);
        if (name == "upto") return GetUint(v, &r->upto);
        if (name == "events") return GetWatchEvents(v, &r->events);
        if (name == "oldest") return GetUint(v, &r->oldest);
        if (name == "error") return GetBytes(v, &r->error);
        return true;
      });
  if (!s.ok()) return s;
  if (!has_id || !has_status) return Status::InvalidArgument("watch reply without id or status");
  if (r->status == ReplyStatus::kOk && r->upto < r->after) {
    return Status::InvalidArgument("watch reply: upto is below after");
  }
  return Status::OK();
}

std::string EncodeBackupReply(uint64_t request_id, const BackupReply& r) {
  std::string out;
  out.reserve(r.data.size() + 128);
  MapWriter reply(&out);
  reply.Uint("id", request_id);
  reply.Str("status", ReplyStatusName(ReplyStatus::kOk));
  reply.Uint("backup", r.backup);
  if (r.is_piece) {
    reply.Bin("data", r.data);
    reply.Uint("cursor", r.cursor);
    if (r.done) reply.Field("done").pack_true();
  } else {
    reply.Uint("index", r.index);
    reply.Uint("clock_ms", r.clock_ms);
    reply.Uint("keys", r.keys);
    reply.Uint("size", r.size);
    reply.Str("cluster", r.cluster);
    reply.Uint("shards", r.shards);
    reply.Uint("replicas", r.replicas);
  }
  reply.Finish();
  return out;
}

Status DecodeBackupReply(std::string_view bytes, uint64_t* request_id, BackupReply* r) {
  *r = BackupReply{};
  bool has_id = false;
  std::string status, error;
  Status s =
      DecodeMap(bytes, "backup reply", [&](const std::string& name, const msgpack::object& v) {
        if (name == "id") return has_id = GetUint(v, request_id);
        if (name == "status") return GetBytes(v, &status);
        if (name == "error") return GetBytes(v, &error);
        if (name == "backup") return GetUint(v, &r->backup);
        if (name == "index") return GetUint(v, &r->index);
        if (name == "clock_ms") return GetUint(v, &r->clock_ms);
        if (name == "keys") return GetUint(v, &r->keys);
        if (name == "size") return GetUint(v, &r->size);
        if (name == "cluster") return GetBytes(v, &r->cluster);
        if (name == "shards") return GetUint32(v, &r->shards);
        if (name == "replicas") return GetUint32(v, &r->replicas);
        if (name == "data") return r->is_piece = GetBytes(v, &r->data);
        if (name == "cursor") return GetUint(v, &r->cursor);
        if (name == "done") return GetBool(v, &r->done);
        return true;
      });
  if (!s.ok()) return s;
  if (status != "OK") {
    return Status::InvalidArgument("backup reply: status " + (status.empty() ? "missing" : status) +
                                   (error.empty() ? "" : ": " + error));
  }
  if (!has_id || r->backup == 0)
    return Status::InvalidArgument("backup reply without id or backup");
  return Status::OK();
}

}  // namespace kv::net
