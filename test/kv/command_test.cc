#include "kv/command.h"

#include <catch2/catch.hpp>

namespace kv {

TEST_CASE("Command round-trips every field, binary bytes included") {
  Command c;
  c.op = OpType::kCas;
  c.key = std::string("k\0ey", 4);
  c.value = std::string(1000, '\xff');
  c.has_expect = true;
  c.expect = "old";
  c.client = 1ULL << 60;
  c.seq = 300;
  Command back;
  REQUIRE(Command::Decode(c.Encode(), &back).ok());
  REQUIRE(back == c);
}

TEST_CASE("A cas on expect_index round-trips as version 2; anything else stays version 1") {
  Command c;
  c.op = OpType::kCas;
  c.key = "k";
  c.value = "v";
  // Version 1, byte for byte as nodes before expect_index wrote it (an
  // upgraded node must not write anything an older replica cannot apply).
  const std::string v1("\x01\x03\x00\x00\x00\x01k\x01v\x00", 10);
  REQUIRE(c.Encode() == v1);
  c.has_expect_index = true;
  c.expect_index = 300;
  const std::string enc = c.Encode();
  REQUIRE(enc[0] == 2);
  Command back;
  REQUIRE(Command::Decode(enc, &back).ok());
  REQUIRE(back == c);
  c.expect_index = 0;  // 0: the key must be absent; still a comparison on the index
  REQUIRE(Command::Decode(c.Encode(), &back).ok());
  REQUIRE(back.has_expect_index);
  REQUIRE(back.expect_index == 0);
  // Version 1 has no expect_index flag.
  std::string bad = v1;
  bad[2] = 2;
  REQUIRE(Command::Decode(bad, &back).IsCorruption());
}

TEST_CASE("A command with the leader's clock, a deadline, touch or expire is version 3") {
  Command put;
  put.op = OpType::kPut;
  put.key = "k";
  put.value = "v";
  put.now_ms = 1764000000000;
  put.deadline_ms = 1764000005000;
  put.client = 9;
  put.seq = 2;
  Command touch;
  touch.op = OpType::kTouch;
  touch.key = "k";
  touch.now_ms = 5;
  Command expire;
  expire.op = OpType::kExpire;
  expire.now_ms = 1764000000000;
  expire.keys = {"a", std::string("b\0c", 3), ""};
  Command cas = put;
  cas.op = OpType::kCas;
  cas.has_expect_index = true;
  cas.expect_index = 77;
  for (const Command& c : {put, touch, expire, cas}) {
    const std::string enc = c.Encode();
    REQUIRE(enc[0] == 3);
    Command back;
    REQUIRE(Command::Decode(enc, &back).ok());
    REQUIRE(back == c);
  }
  // Versions 1 and 2 know neither the new ops nor the deadline flag.
  std::string v1("\x01\x04\x00\x00\x00\x01k\x00\x00", 9);
  Command back;
  REQUIRE(Command::Decode(v1, &back).IsCorruption());
  v1[1] = 1;
  REQUIRE(Command::Decode(v1, &back).ok());
  v1[2] = 4;
  REQUIRE(Command::Decode(v1, &back).IsCorruption());
  // An expire entry has no session, key or value of its own.
  Command bad = expire;
  bad.client = 3;
  bad.seq = 1;
  REQUIRE(Command::Decode(bad.Encode(), &back).IsCorruption());
  bad = expire;
  bad.key = "k";
  REQUIRE(Command::Decode(bad.Encode(), &back).IsCorruption());
  bad = expire;
  bad.keys.assign(kMaxExpireKeys + 1, "k");
  REQUIRE(Command::Decode(bad.Encode(), &back).IsCorruption());
  bad.keys.pop_back();
  REQUIRE(Command::Decode(bad.Encode(), &back).ok());
  // A key count the entry cannot hold is refused, not reserved for.
  Command empty = expire;
  empty.keys.clear();
  std::string huge = empty.Encode();
  REQUIRE(huge.back() == 0);  // the key count
  huge.pop_back();
  huge.append("\xff\xff\xff\xff\x0f");
  REQUIRE(Command::Decode(huge, &back).IsCorruption());
}

namespace {
// A transaction with every kind of compare and op, in a session.
Command EveryTxnKind() {
  Command t;
  t.op = OpType::kTxn;
  t.now_ms = 1764000000000;
  t.client = 7;
  t.seq = 3;
  t.compare = {{TxnCompare::Kind::kValue, "a", std::string("v\0", 2), 0},
               {TxnCompare::Kind::kAbsent, "b", "", 0},
               {TxnCompare::Kind::kPresent, "", "", 0},
               {TxnCompare::Kind::kModEqual, "c", "", 0},
               {TxnCompare::Kind::kModLess, "c", "", 1ULL << 40},
               {TxnCompare::Kind::kModGreater, "c", "", 5}};
  t.success = {{TxnOp::Kind::kPut, "a", "new", 1764000009000},
               {TxnOp::Kind::kPut, "b", "", 0},
               {TxnOp::Kind::kDelete, "c", "", 0},
               {TxnOp::Kind::kGet, "a", "", 0}};
  t.failure = {{TxnOp::Kind::kGet, "b", "", 0}};
  return t;
}
}  // namespace

TEST_CASE("A transaction round-trips as version 4, with every compare and op") {
  const Command t = EveryTxnKind();
  const std::string enc = t.Encode();
  REQUIRE(enc[0] == 4);
  Command back;
  REQUIRE(Command::Decode(enc, &back).ok());
  REQUIRE(back == t);
  Command empty;
  empty.op = OpType::kTxn;
  REQUIRE(Command::Decode(empty.Encode(), &back).ok());
  REQUIRE(back == empty);
  // Version 3 knows no transactions.
  std::string v3 = enc;
  v3[0] = 3;
  REQUIRE(Command::Decode(v3, &back).IsCorruption());
}

TEST_CASE("A transaction's decoder refuses more than kMaxTxnOps and a key of its own") {
  Command t = EveryTxnKind();
  Command back;
  for (auto* ops : {&t.success, &t.failure}) {
    Command many = t;
    auto& list = ops == &t.success ? many.success : many.failure;
    list.assign(kMaxTxnOps, TxnOp{TxnOp::Kind::kGet, "k", "", 0});
    REQUIRE(Command::Decode(many.Encode(), &back).ok());
    list.push_back(list.back());
    REQUIRE(Command::Decode(many.Encode(), &back).IsCorruption());
  }
  Command many = t;
  many.compare.assign(kMaxTxnOps + 1, TxnCompare{TxnCompare::Kind::kPresent, "k", "", 0});
  REQUIRE(Command::Decode(many.Encode(), &back).IsCorruption());
  Command keyed = t;
  keyed.key = "k";
  REQUIRE(Command::Decode(keyed.Encode(), &back).IsCorruption());
  // A count the entry cannot hold is refused, not reserved for.
  Command empty;
  empty.op = OpType::kTxn;
  std::string huge = empty.Encode();
  REQUIRE(huge.substr(huge.size() - 3) == std::string(3, '\0'));  // the three counts
  huge.resize(huge.size() - 3);
  huge.append("\xff\xff\xff\xff\x0f");
  REQUIRE(Command::Decode(huge, &back).IsCorruption());
}

TEST_CASE("Command decoding rejects every truncation and trailing garbage") {
  Command touch;
  touch.op = OpType::kTouch;
  touch.key = "key";
  touch.now_ms = 1764000000000;
  touch.deadline_ms = 1764000005000;
  Command expire;
  expire.op = OpType::kExpire;
  expire.now_ms = 1764000000000;
  expire.keys = {"a", "bb"};
  for (int kind = 0; kind < 5; ++kind) {
    Command c;
    c.op = kind == 1 ? OpType::kCas : OpType::kPut;
    c.key = "key";
    c.value = "value";
    c.has_expect_index = kind == 1;
    c.expect_index = 1234567;
    if (kind == 2) c = touch;
    if (kind == 3) c = expire;
    if (kind == 4) c = EveryTxnKind();
    const std::string enc = c.Encode();
    for (size_t n = 0; n < enc.size(); ++n) {
      Command back;
      REQUIRE(Command::Decode(enc.substr(0, n), &back).IsCorruption());
    }
    Command back;
    REQUIRE(Command::Decode(enc + "x", &back).IsCorruption());
  }
}

TEST_CASE("Command decoding rejects an unknown version or op") {
  Command c;
  std::string enc = c.Encode();
  Command back;
  std::string bad_version = enc;
  bad_version[0] = 9;
  REQUIRE(Command::Decode(bad_version, &back).IsCorruption());
  std::string bad_op = enc;
  bad_op[1] = 7;  // past kTxn
  REQUIRE(Command::Decode(bad_op, &back).IsCorruption());
}

}  // namespace kv
