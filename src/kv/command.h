// Command: a client write as it travels through the Raft log.
//
// The leader encodes each write into one log entry; every replica decodes it
// when the entry commits and applies it to its StateMachine. The leader
// stamps each with its wall clock (now_ms), so that every replica decides
// the same about deadlines. The encoding is versioned so that old logs stay
// readable.
// Thread safety: plain values.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace kv {

enum class OpType : uint8_t {
  kPut = 1,
  kDelete = 2,
  // Put value if the current value equals expect (or is absent, if
  // !has_expect); with has_expect_index, if the key's mod_index equals
  // expect_index instead (0: the key is absent).
  kCas = 3,
  // Sets the key's deadline (deadline_ms; 0: none) and keeps its value.
  kTouch = 4,
  // Removes each of `keys` whose deadline is at or before now_ms: the
  // leader's batched deletion of expired keys.
  kExpire = 5,
};

// The most keys one kExpire command may list (the decoder refuses more, so
// that no entry can make a replica allocate beyond a small multiple of it).
constexpr size_t kMaxExpireKeys = 10000;

struct Command {
  OpType op = OpType::kPut;
  std::string key;
  std::string value;
  bool has_expect = false;  // kCas: false means "only if absent"
  std::string expect;
  bool has_expect_index = false;  // kCas: compare mod_index, not the value
  uint64_t expect_index = 0;
  // Exactly-once: a (client, seq) pair is applied at most once; 0 means no session.
  uint64_t client = 0;
  uint64_t seq = 0;
  // The leader's wall clock when it proposed the command, in ms since the
  // Unix epoch; 0 in commands of before version 3.
  uint64_t now_ms = 0;
  // kPut, kCas, kTouch: when the key expires (ms since the Unix epoch); 0: never.
  uint64_t deadline_ms = 0;
  std::vector<std::string> keys;  // kExpire

  std::string Encode() const;
  // Corruption if `data` is not an encoded Command of a known version.
  static Status Decode(std::string_view data, Command* out);
  bool operator==(const Command& o) const {
    return op == o.op && key == o.key && value == o.value && has_expect == o.has_expect &&
           expect == o.expect && has_expect_index == o.has_expect_index &&
           expect_index == o.expect_index && client == o.client && seq == o.seq &&
           now_ms == o.now_ms && deadline_ms == o.deadline_ms && keys == o.keys;
  }
};

}  // namespace kv
