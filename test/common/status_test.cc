#include "common/status.h"

#include <catch2/catch.hpp>

namespace kv {

TEST_CASE("Status OK has no message and prints OK") {
  Status s;
  REQUIRE(s.ok());
  REQUIRE(s.ToString() == "OK");
  REQUIRE(s.message().empty());
}

TEST_CASE("Status carries its code and message through copies") {
  Status s = Status::Corruption("bad crc at 4096");
  Status copy = s;
  REQUIRE_FALSE(copy.ok());
  REQUIRE(copy.IsCorruption());
  REQUIRE_FALSE(copy.IsIOError());
  REQUIRE(copy.message() == "bad crc at 4096");
  REQUIRE(copy.ToString() == "Corruption: bad crc at 4096");
}

TEST_CASE("Each named constructor answers its own predicate only") {
  REQUIRE(Status::NotFound("").IsNotFound());
  REQUIRE(Status::IOError("x").IsIOError());
  REQUIRE(Status::InvalidArgument("x").IsInvalidArgument());
  REQUIRE(Status::Unavailable("x").IsUnavailable());
  REQUIRE(Status::Compacted("x").IsCompacted());
  REQUIRE_FALSE(Status::Compacted("x").IsNotFound());
  REQUIRE(Status::Busy("x").IsBusy());
  REQUIRE_FALSE(Status::Busy("x").IsUnavailable());
  REQUIRE_FALSE(Status::Unavailable("x").IsBusy());
  REQUIRE(Status::Busy("retry later").ToString() == "Busy: retry later");
}

}  // namespace kv
