#include "storage/record.h"

#include <catch2/catch.hpp>

#include "test/storage/test_util.h"

namespace kv::storage {
namespace {

using testing::SameRecord;

Record RoundTrip(const Record& in) {
  std::string buf;
  EncodeRecord(in, &buf);
  size_t size = 0;
  RecordType type{};
  std::string_view payload;
  REQUIRE(CheckFrame(buf, 0, &size, &type, &payload) == FrameStatus::kOk);
  REQUIRE(size == buf.size());
  Record out;
  REQUIRE(DecodeRecord(type, payload, &out).ok());
  return out;
}

TEST_CASE("every record type survives a round trip", "[record]") {
  raft::Entry normal = testing::MakeEntry(42, 7, std::string("bytes\0with nul", 14));
  raft::Entry conf = testing::MakeEntry(43, 7);
  conf.type = raft::EntryType::kConfChange;
  raft::Entry empty = testing::MakeEntry(44, 8);
  empty.data.clear();
  raft::SnapshotMeta meta;
  meta.index = 100;
  meta.term = 9;
  meta.conf.voters = {1, 2, 3};
  meta.conf.learners = {4};
  const std::vector<Record> records = {
      Record::Entry(1, normal),          Record::Entry(2, conf),
      Record::Entry(3, empty),           Record::HardState(5, raft::HardState{6, 2, 40}),
      Record::Snapshot(7, meta, true),   Record::Snapshot(8, raft::SnapshotMeta{}, false),
      Record::SegmentHeader(12345, 678),
  };
  for (const Record& r : records) CHECK(SameRecord(RoundTrip(r), r));
}

TEST_CASE("zeroed space is no record and a cut frame is bad", "[record]") {
  std::string buf;
  EncodeRecord(Record::HardState(1, raft::HardState{1, 1, 1}), &buf);
  size_t size = 0;
  RecordType type{};
  std::string_view payload;
  const std::string zeros(32, '\0');
  CHECK(CheckFrame(zeros, 0, &size, &type, &payload) == FrameStatus::kZero);
  CHECK(CheckFrame(zeros, 30, &size, &type, &payload) == FrameStatus::kZero);
  for (size_t cut = 1; cut < buf.size(); ++cut) {
    CHECK(CheckFrame(std::string_view(buf).substr(0, cut), 0, &size, &type, &payload) ==
          FrameStatus::kBad);
  }
}

TEST_CASE("a flipped bit anywhere in a frame makes it bad", "[record]") {
  std::string buf;
  EncodeRecord(Record::Entry(3, testing::MakeEntry(9, 2, "payload")), &buf);
  for (size_t i = 0; i < buf.size(); ++i) {
    for (int bit = 0; bit < 8; ++bit) {
      std::string copy = buf;
      copy[i] = static_cast<char>(copy[i] ^ (1 << bit));
      size_t size = 0;
      RecordType type{};
      std::string_view payload;
      CHECK(CheckFrame(copy, 0, &size, &type, &payload) != FrameStatus::kOk);
    }
  }
}

}  // namespace
}  // namespace kv::storage
