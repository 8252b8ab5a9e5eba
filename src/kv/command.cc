#include "kv/command.h"

#include "common/coding.h"

namespace kv {

namespace {
// Layout: version, op, flags (bit 0: has_expect, bit 1: has_expect_index,
// bit 2: has a deadline), varint client, varint seq, length-prefixed key,
// value, expect; then a varint expect_index if flagged (version 2 and on).
// Version 3 adds a varint now_ms, a varint deadline_ms if flagged, and for
// kExpire a varint count and that many length-prefixed keys.
// Version 4 adds kTxn, which after now_ms carries its compares (a varint
// count, then each: kind byte, key, and a value for kValue or a varint
// index for the kMod kinds) and its two branches (each a varint count,
// then each op: kind byte, key, and for kPut a value and a varint
// deadline_ms).
// A command is written in the oldest version that holds it. The leader
// stamps every write it proposes (version 3); the older versions remain so
// that logs and tests of before stay byte for byte what they were.
constexpr uint8_t kVersion1 = 1;
constexpr uint8_t kVersion2 = 2;
constexpr uint8_t kVersion3 = 3;
constexpr uint8_t kVersion4 = 4;
constexpr uint8_t kHasExpect = 1;
constexpr uint8_t kHasExpectIndex = 2;
constexpr uint8_t kHasDeadline = 4;

uint8_t VersionOf(const Command& c) {
  if (c.op == OpType::kTxn) return kVersion4;
  if (c.now_ms != 0 || c.deadline_ms != 0 || c.op == OpType::kTouch || c.op == OpType::kExpire) {
    return kVersion3;
  }
  return c.has_expect_index ? kVersion2 : kVersion1;
}

uint8_t FlagsAllowed(uint8_t version) {
  switch (version) {
    case kVersion1:
      return kHasExpect;
    case kVersion2:
      return kHasExpect | kHasExpectIndex;
    default:
      return kHasExpect | kHasExpectIndex | kHasDeadline;
  }
}

OpType LastOp(uint8_t version) {
  return version >= kVersion4   ? OpType::kTxn
         : version >= kVersion3 ? OpType::kExpire
                                : OpType::kCas;
}

bool IsModCompare(TxnCompare::Kind kind) {
  return kind == TxnCompare::Kind::kModEqual || kind == TxnCompare::Kind::kModLess ||
         kind == TxnCompare::Kind::kModGreater;
}

void PutTxnOps(std::string* out, const std::vector<TxnOp>& ops) {
  PutVarint64(out, ops.size());
  for (const TxnOp& op : ops) {
    out->push_back(static_cast<char>(op.kind));
    PutLengthPrefixed(out, op.key);
    if (op.kind != TxnOp::Kind::kPut) continue;
    PutLengthPrefixed(out, op.value);
    PutVarint64(out, op.deadline_ms);
  }
}

// A count of at most kMaxTxnOps items, each of which takes at least two
// bytes: no entry can make a replica reserve much beyond its own size.
bool GetTxnCount(std::string_view* in, uint64_t* count) {
  return GetVarint64(in, count) && *count <= kMaxTxnOps && *count <= in->size() / 2;
}

bool GetTxnOps(std::string_view* in, std::vector<TxnOp>* ops) {
  uint64_t count = 0;
  if (!GetTxnCount(in, &count)) return false;
  ops->clear();
  ops->reserve(count);
  for (uint64_t i = 0; i < count; ++i) {
    uint8_t kind = 0;
    std::string_view key, value;
    if (!GetByte(in, &kind) || kind < static_cast<uint8_t>(TxnOp::Kind::kPut) ||
        kind > static_cast<uint8_t>(TxnOp::Kind::kGet) || !GetLengthPrefixed(in, &key)) {
      return false;
    }
    TxnOp& op = ops->emplace_back();
    op.kind = static_cast<TxnOp::Kind>(kind);
    op.key.assign(key);
    if (op.kind == TxnOp::Kind::kPut &&
        (!GetLengthPrefixed(in, &value) || !GetVarint64(in, &op.deadline_ms))) {
      return false;
    }
    op.value.assign(value);
  }
  return true;
}

bool GetTxnCompares(std::string_view* in, std::vector<TxnCompare>* compares) {
  uint64_t count = 0;
  if (!GetTxnCount(in, &count)) return false;
  compares->clear();
  compares->reserve(count);
  for (uint64_t i = 0; i < count; ++i) {
    uint8_t kind = 0;
    std::string_view key, value;
    if (!GetByte(in, &kind) || kind < static_cast<uint8_t>(TxnCompare::Kind::kValue) ||
        kind > static_cast<uint8_t>(TxnCompare::Kind::kModGreater) ||
        !GetLengthPrefixed(in, &key)) {
      return false;
    }
    TxnCompare& c = compares->emplace_back();
    c.kind = static_cast<TxnCompare::Kind>(kind);
    c.key.assign(key);
    if (c.kind == TxnCompare::Kind::kValue && !GetLengthPrefixed(in, &value)) return false;
    if (IsModCompare(c.kind) && !GetVarint64(in, &c.index)) return false;
    c.value.assign(value);
  }
  return true;
}
}  // namespace

std::string Command::Encode() const {
  const uint8_t version = VersionOf(*this);
  std::string out;
  size_t keys_bytes = 0;
  for (const std::string& k : keys) keys_bytes += k.size() + 5;
  for (const TxnCompare& c : compare) keys_bytes += c.key.size() + c.value.size() + 20;
  for (const auto* branch : {&success, &failure}) {
    for (const TxnOp& item : *branch) keys_bytes += item.key.size() + item.value.size() + 20;
  }
  out.reserve(54 + key.size() + value.size() + expect.size() + keys_bytes);
  out.push_back(static_cast<char>(version));
  out.push_back(static_cast<char>(op));
  out.push_back(static_cast<char>((has_expect ? kHasExpect : 0) |
                                  (has_expect_index ? kHasExpectIndex : 0) |
                                  (deadline_ms != 0 ? kHasDeadline : 0)));
  PutVarint64(&out, client);
  PutVarint64(&out, seq);
  PutLengthPrefixed(&out, key);
  PutLengthPrefixed(&out, value);
  PutLengthPrefixed(&out, expect);
  if (has_expect_index) PutVarint64(&out, expect_index);
  if (version < kVersion3) return out;
  PutVarint64(&out, now_ms);
  if (deadline_ms != 0) PutVarint64(&out, deadline_ms);
  if (op == OpType::kExpire) {
    PutVarint64(&out, keys.size());
    for (const std::string& k : keys) PutLengthPrefixed(&out, k);
  }
  if (op == OpType::kTxn) {
    PutVarint64(&out, compare.size());
    for (const TxnCompare& c : compare) {
      out.push_back(static_cast<char>(c.kind));
      PutLengthPrefixed(&out, c.key);
      if (c.kind == TxnCompare::Kind::kValue) PutLengthPrefixed(&out, c.value);
      if (IsModCompare(c.kind)) PutVarint64(&out, c.index);
    }
    PutTxnOps(&out, success);
    PutTxnOps(&out, failure);
  }
  return out;
}

Status Command::Decode(std::string_view data, Command* out) {
  const Status malformed = Status::Corruption("malformed command");
  uint8_t version = 0, op = 0, flags = 0;
  std::string_view key, value, expect;
  if (!GetByte(&data, &version) || version < kVersion1 || version > kVersion4 ||
      !GetByte(&data, &op) || op < static_cast<uint8_t>(OpType::kPut) ||
      op > static_cast<uint8_t>(LastOp(version)) || !GetByte(&data, &flags) ||
      (flags & ~FlagsAllowed(version)) != 0 || !GetVarint64(&data, &out->client) ||
      !GetVarint64(&data, &out->seq) || !GetLengthPrefixed(&data, &key) ||
      !GetLengthPrefixed(&data, &value) || !GetLengthPrefixed(&data, &expect)) {
    return malformed;
  }
  out->op = static_cast<OpType>(op);
  out->has_expect = (flags & kHasExpect) != 0;
  out->has_expect_index = (flags & kHasExpectIndex) != 0;
  out->expect_index = out->now_ms = out->deadline_ms = 0;
  out->keys.clear();
  out->compare.clear();
  out->success.clear();
  out->failure.clear();
  if (out->has_expect_index && !GetVarint64(&data, &out->expect_index)) return malformed;
  if (version >= kVersion3) {
    if (!GetVarint64(&data, &out->now_ms) ||
        ((flags & kHasDeadline) != 0 && !GetVarint64(&data, &out->deadline_ms))) {
      return malformed;
    }
    uint64_t count = 0;
    if (out->op == OpType::kExpire) {
      // The leader's own entry: no session and no key of its own; each
      // listed key takes at least its length byte.
      if (!GetVarint64(&data, &count) || count > kMaxExpireKeys || count > data.size() ||
          out->client != 0 || out->seq != 0 || flags != 0 || !key.empty() || !value.empty() ||
          !expect.empty()) {
        return malformed;
      }
      out->keys.reserve(count);
    }
    for (uint64_t i = 0; i < count; ++i) {
      std::string_view k;
      if (!GetLengthPrefixed(&data, &k)) return malformed;
      out->keys.emplace_back(k);
    }
    // A transaction's keys and values are its ops'; a session is allowed.
    if (out->op == OpType::kTxn &&
        (flags != 0 || !key.empty() || !value.empty() || !expect.empty() ||
         !GetTxnCompares(&data, &out->compare) || !GetTxnOps(&data, &out->success) ||
         !GetTxnOps(&data, &out->failure))) {
      return malformed;
    }
  }
  if (!data.empty()) return malformed;
  out->key.assign(key);
  out->value.assign(value);
  out->expect.assign(expect);
  return Status::OK();
}

}  // namespace kv
