#include "kv/command.h"

#include "common/coding.h"

namespace kv {

namespace {
// Layout: version, op, flags (bit 0: has_expect), varint client, varint seq,
// length-prefixed key, value, expect.
constexpr uint8_t kCommandVersion = 1;
}  // namespace

std::string Command::Encode() const {
  std::string out;
  out.reserve(24 + key.size() + value.size() + expect.size());
  out.push_back(static_cast<char>(kCommandVersion));
  out.push_back(static_cast<char>(op));
  out.push_back(static_cast<char>(has_expect ? 1 : 0));
  PutVarint64(&out, client);
  PutVarint64(&out, seq);
  PutLengthPrefixed(&out, key);
  PutLengthPrefixed(&out, value);
  PutLengthPrefixed(&out, expect);
  return out;
}

Status Command::Decode(std::string_view data, Command* out) {
  uint8_t version = 0, op = 0, flags = 0;
  std::string_view key, value, expect;
  if (!GetByte(&data, &version) || version != kCommandVersion || !GetByte(&data, &op) ||
      op < static_cast<uint8_t>(OpType::kPut) || op > static_cast<uint8_t>(OpType::kCas) ||
      !GetByte(&data, &flags) || flags > 1 || !GetVarint64(&data, &out->client) ||
      !GetVarint64(&data, &out->seq) || !GetLengthPrefixed(&data, &key) ||
      !GetLengthPrefixed(&data, &value) || !GetLengthPrefixed(&data, &expect) || !data.empty()) {
    return Status::Corruption("malformed command");
  }
  out->op = static_cast<OpType>(op);
  out->has_expect = flags == 1;
  out->key.assign(key);
  out->value.assign(value);
  out->expect.assign(expect);
  return Status::OK();
}

}  // namespace kv
