#include "common/crc32c.h"

#include <catch2/catch.hpp>
#include <string>

namespace kv {

TEST_CASE("crc32c matches the published check values", "[crc32c]") {
  CHECK(Crc32c("") == 0u);
  CHECK(Crc32c("123456789") == 0xE3069283u);
  // RFC 3720, B.4: 32 bytes of zeros, of 0xff, and of ascending values.
  CHECK(Crc32c(std::string(32, '\0')) == 0x8A9136AAu);
  CHECK(Crc32c(std::string(32, '\xff')) == 0x62A8AB43u);
  std::string ascending;
  for (int i = 0; i < 32; ++i) ascending.push_back(static_cast<char>(i));
  CHECK(Crc32c(ascending) == 0x46DD794Eu);
}

TEST_CASE("crc32c extends across any split point", "[crc32c]") {
  const std::string s = "the quick brown fox jumps over the lazy dog";
  const uint32_t whole = Crc32c(s);
  for (size_t split = 0; split <= s.size(); ++split) {
    const uint32_t first = Crc32c(s.data(), split);
    CHECK(Crc32cExtend(first, s.data() + split, s.size() - split) == whole);
  }
}

TEST_CASE("crc32c changes when any single bit flips", "[crc32c]") {
  std::string s(64, 'a');
  const uint32_t base = Crc32c(s);
  for (size_t i = 0; i < s.size(); ++i) {
    for (int bit = 0; bit < 8; ++bit) {
      s[i] = static_cast<char>(s[i] ^ (1 << bit));
      CHECK(Crc32c(s) != base);
      s[i] = static_cast<char>(s[i] ^ (1 << bit));
    }
  }
}

TEST_CASE("crc32c's hardware and portable paths agree at every length and alignment", "[crc32c]") {
  std::string s;
  for (int i = 0; i < 300; ++i) s.push_back(static_cast<char>(i * 131 + 7));
  for (size_t start = 0; start < 9; ++start) {
    for (size_t n = 0; start + n <= s.size(); n += 1 + n / 8) {
      CHECK(Crc32cExtend(0x1234u, s.data() + start, n) ==
            Crc32cExtendPortable(0x1234u, s.data() + start, n));
    }
  }
}

}  // namespace kv
