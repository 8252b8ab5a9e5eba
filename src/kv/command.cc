#include "kv/command.h"

#include "common/coding.h"

namespace kv {

namespace {
// Layout: version, op, flags (bit 0: has_expect, bit 1: has_expect_index,
// bit 2: has a deadline), varint client, varint seq, length-prefixed key,
// value, expect; then a varint expect_index if flagged (version 2 and on).
// Version 3 adds a varint now_ms, a varint deadline_ms if flagged, and for
// kExpire a varint count and that many length-prefixed keys.
// A command is written in the oldest version that holds it. The leader
// stamps every write it proposes (version 3); the older versions remain so
// that logs and tests of before stay byte for byte what they were.
constexpr uint8_t kVersion1 = 1;
constexpr uint8_t kVersion2 = 2;
constexpr uint8_t kVersion3 = 3;
constexpr uint8_t kHasExpect = 1;
constexpr uint8_t kHasExpectIndex = 2;
constexpr uint8_t kHasDeadline = 4;

uint8_t VersionOf(const Command& c) {
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

OpType LastOp(uint8_t version) { return version >= kVersion3 ? OpType::kExpire : OpType::kCas; }
}  // namespace

std::string Command::Encode() const {
  const uint8_t version = VersionOf(*this);
  std::string out;
  size_t keys_bytes = 0;
  for (const std::string& k : keys) keys_bytes += k.size() + 5;
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
  return out;
}

Status Command::Decode(std::string_view data, Command* out) {
  const Status malformed = Status::Corruption("malformed command");
  uint8_t version = 0, op = 0, flags = 0;
  std::string_view key, value, expect;
  if (!GetByte(&data, &version) || version < kVersion1 || version > kVersion3 ||
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
  }
  if (!data.empty()) return malformed;
  out->key.assign(key);
  out->value.assign(value);
  out->expect.assign(expect);
  return Status::OK();
}

}  // namespace kv
