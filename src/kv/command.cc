#include "kv/command.h"

#include "common/coding.h"

namespace kv {

namespace {
// Layout: version, op, flags (bit 0: has_expect, bit 1: has_expect_index),
// varint client, varint seq, length-prefixed key, value, expect; version 2
// adds a varint expect_index. A command without expect_index is written as
// version 1, byte for byte what nodes before version 2 wrote and can read,
// so only the new kind of cas needs every replica to know version 2.
constexpr uint8_t kVersion1 = 1;
constexpr uint8_t kVersion2 = 2;
constexpr uint8_t kHasExpect = 1;
constexpr uint8_t kHasExpectIndex = 2;
}  // namespace

std::string Command::Encode() const {
  std::string out;
  out.reserve(34 + key.size() + value.size() + expect.size());
  out.push_back(static_cast<char>(has_expect_index ? kVersion2 : kVersion1));
  out.push_back(static_cast<char>(op));
  out.push_back(
      static_cast<char>((has_expect ? kHasExpect : 0) | (has_expect_index ? kHasExpectIndex : 0)));
  PutVarint64(&out, client);
  PutVarint64(&out, seq);
  PutLengthPrefixed(&out, key);
  PutLengthPrefixed(&out, value);
  PutLengthPrefixed(&out, expect);
  if (has_expect_index) PutVarint64(&out, expect_index);
  return out;
}

Status Command::Decode(std::string_view data, Command* out) {
  uint8_t version = 0, op = 0, flags = 0;
  std::string_view key, value, expect;
  if (!GetByte(&data, &version) || version < kVersion1 || version > kVersion2 ||
      !GetByte(&data, &op) || op < static_cast<uint8_t>(OpType::kPut) ||
      op > static_cast<uint8_t>(OpType::kCas) || !GetByte(&data, &flags) ||
      flags > (version == kVersion1 ? kHasExpect : kHasExpect | kHasExpectIndex) ||
      !GetVarint64(&data, &out->client) || !GetVarint64(&data, &out->seq) ||
      !GetLengthPrefixed(&data, &key) || !GetLengthPrefixed(&data, &value) ||
      !GetLengthPrefixed(&data, &expect)) {
    return Status::Corruption("malformed command");
  }
  out->has_expect_index = (flags & kHasExpectIndex) != 0;
  out->expect_index = 0;
  if ((out->has_expect_index && !GetVarint64(&data, &out->expect_index)) || !data.empty()) {
    return Status::Corruption("malformed command");
  }
  out->op = static_cast<OpType>(op);
  out->has_expect = (flags & kHasExpect) != 0;
  out->key.assign(key);
  out->value.assign(value);
  out->expect.assign(expect);
  return Status::OK();
}

}  // namespace kv
