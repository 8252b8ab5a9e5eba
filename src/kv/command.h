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
  // A transaction: if every one of `compare` holds, `success` runs, else
  // `failure`; each op sees the effects of the ones before it, and all of
  // them take effect at the command's index.
  kTxn = 6,
};

// The most keys one kExpire command may list (the decoder refuses more, so
// that no entry can make a replica allocate beyond a small multiple of it).
constexpr size_t kMaxExpireKeys = 10000;
// The most compares of a transaction, and the most ops of each branch.
constexpr size_t kMaxTxnOps = 128;

// A condition of a transaction on one key. An expired key is absent.
struct TxnCompare {
  enum class Kind : uint8_t {
    kValue = 1,    // present, and its value is `value`
    kAbsent = 2,   // absent
    kPresent = 3,  // present
    // The key's mod_index (0 when absent) compared with `index`.
    kModEqual = 4,
    kModLess = 5,
    kModGreater = 6,
  };
  Kind kind = Kind::kValue;
  std::string key;
  std::string value;   // kValue
  uint64_t index = 0;  // kMod*
  bool operator==(const TxnCompare& o) const {
    return kind == o.kind && key == o.key && value == o.value && index == o.index;
  }
};

// An op of a transaction's branch.
struct TxnOp {
  enum class Kind : uint8_t { kPut = 1, kDelete = 2, kGet = 3 };
  Kind kind = Kind::kGet;
  std::string key;
  std::string value;         // kPut
  uint64_t deadline_ms = 0;  // kPut: when the key expires; 0: never
  // kPut in a client's request: the TTL it asks for, which the leader turns
  // into deadline_ms (only that goes into the log).
  uint64_t ttl_ms = 0;
  bool operator==(const TxnOp& o) const {
    return kind == o.kind && key == o.key && value == o.value && deadline_ms == o.deadline_ms &&
           ttl_ms == o.ttl_ms;
  }
};

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
  std::vector<std::string> keys;    // kExpire
  std::vector<TxnCompare> compare;  // kTxn
  std::vector<TxnOp> success, failure;

  std::string Encode() const;
  // Corruption if `data` is not an encoded Command of a known version.
  static Status Decode(std::string_view data, Command* out);
  bool operator==(const Command& o) const {
    return op == o.op && key == o.key && value == o.value && has_expect == o.has_expect &&
           expect == o.expect && has_expect_index == o.has_expect_index &&
           expect_index == o.expect_index && client == o.client && seq == o.seq &&
           now_ms == o.now_ms && deadline_ms == o.deadline_ms && keys == o.keys &&
           compare == o.compare && success == o.success && failure == o.failure;
  }
};

}  // namespace kv
