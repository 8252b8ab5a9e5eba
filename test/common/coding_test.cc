#include "common/coding.h"

#include <catch2/catch.hpp>
#include <limits>

namespace kv {

TEST_CASE("Varints round-trip at every width boundary") {
  const uint64_t values[] = {
      0, 1, 127, 128, 16383, 16384, (1ULL << 35) + 3, std::numeric_limits<uint64_t>::max()};
  std::string buf;
  for (uint64_t v : values) PutVarint64(&buf, v);
  std::string_view in = buf;
  for (uint64_t v : values) {
    uint64_t got = 0;
    REQUIRE(GetVarint64(&in, &got));
    REQUIRE(got == v);
  }
  REQUIRE(in.empty());
}

TEST_CASE("Truncated or overlong varints are rejected") {
  std::string buf;
  PutVarint64(&buf, std::numeric_limits<uint64_t>::max());
  for (size_t n = 0; n < buf.size(); ++n) {
    std::string_view in(buf.data(), n);
    uint64_t v = 0;
    REQUIRE_FALSE(GetVarint64(&in, &v));
  }
  std::string overlong(10, '\xff');
  overlong.push_back('\x01');
  std::string_view in = overlong;
  uint64_t v = 0;
  REQUIRE_FALSE(GetVarint64(&in, &v));
}

TEST_CASE("Length-prefixed bytes never read past the input") {
  std::string buf;
  PutLengthPrefixed(&buf, "hello");
  std::string_view in(buf.data(), buf.size() - 1);
  std::string_view out;
  REQUIRE_FALSE(GetLengthPrefixed(&in, &out));
  in = buf;
  REQUIRE(GetLengthPrefixed(&in, &out));
  REQUIRE(out == "hello");
}

TEST_CASE("Fixed64 is little endian and needs eight bytes") {
  std::string buf;
  PutFixed64(&buf, 0x0102030405060708ULL);
  REQUIRE(buf[0] == 8);
  REQUIRE(buf[7] == 1);
  std::string_view in(buf.data(), 7);
  uint64_t v = 0;
  REQUIRE_FALSE(GetFixed64(&in, &v));
  in = buf;
  REQUIRE(GetFixed64(&in, &v));
  REQUIRE(v == 0x0102030405060708ULL);
}

}  // namespace kv
