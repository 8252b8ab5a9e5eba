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

TEST_CASE("Command decoding rejects every truncation and trailing garbage") {
  Command c;
  c.op = OpType::kPut;
  c.key = "key";
  c.value = "value";
  const std::string enc = c.Encode();
  for (size_t n = 0; n < enc.size(); ++n) {
    Command back;
    REQUIRE(Command::Decode(enc.substr(0, n), &back).IsCorruption());
  }
  Command back;
  REQUIRE(Command::Decode(enc + "x", &back).IsCorruption());
}

TEST_CASE("Command decoding rejects an unknown version or op") {
  Command c;
  std::string enc = c.Encode();
  Command back;
  std::string bad_version = enc;
  bad_version[0] = 9;
  REQUIRE(Command::Decode(bad_version, &back).IsCorruption());
  std::string bad_op = enc;
  bad_op[1] = 7;
  REQUIRE(Command::Decode(bad_op, &back).IsCorruption());
}

}  // namespace kv
