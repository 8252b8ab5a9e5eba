// Damage tests: a torn tail is cut off with a warning; damage anywhere before
// it makes Open refuse with Corruption naming the file and offset.

#include <catch2/catch.hpp>

#include "storage/fault_injection_env.h"
#include "storage/wal.h"
#include "test/storage/test_util.h"

namespace kv::storage {
namespace {

using testing::Collector;
using testing::MakeEntry;
using testing::QuietLog;

constexpr char kDir[] = "/d/wal";

WalOptions Options(uint64_t segment_size) {
  WalOptions o;
  o.segment_size = segment_size;
  return o;
}

Status OpenWal(Env* env, uint64_t segment_size, Collector* c, std::unique_ptr<Wal>* wal) {
  return Wal::Open(env, kDir, Options(segment_size), c->Fn(), wal);
}

size_t EntryCount(const Collector& c) {
  size_t n = 0;
  for (const Record& r : c.records) n += r.type == RecordType::kEntry;
  return n;
}

// Writes `batches` single-entry batches (each its own sync) of groups 1 and 2.
void WriteEntries(Wal* wal, raft::Index from, int batches) {
  for (int b = 0; b < batches; ++b) {
    WriteBatch batch;
    const raft::Index i = from + static_cast<raft::Index>(b);
    batch.AppendEntries(1 + i % 2, {MakeEntry(i, 1, std::string(20 + i % 7, 'v'))});
    REQUIRE(wal->Write(&batch).ok());
  }
}

// Opens the damaged WAL, which must recover `entries` entries; then writes
// one more and checks that a second reopening finds it after them. Returns
// the WAL of that second opening.
std::unique_ptr<Wal> ExpectRecoveryThenAppend(Env* env, uint64_t segment_size, size_t entries) {
  {
    Collector c;
    std::unique_ptr<Wal> wal;
    const Status s = OpenWal(env, segment_size, &c, &wal);
    INFO(s.ToString());
    REQUIRE(s.ok());
    CHECK(EntryCount(c) == entries);
    WriteEntries(wal.get(), entries + 1, 1);
  }
  Collector c;
  std::unique_ptr<Wal> wal;
  REQUIRE(OpenWal(env, segment_size, &c, &wal).ok());
  CHECK(EntryCount(c) == entries + 1);
  return wal;
}

TEST_CASE("a flipped byte in the last write is a torn tail, anywhere before it corruption",
          "[corruption]") {
  QuietLog quiet;
  FaultInjectionEnv env;
  std::string path;
  {
    Collector none;
    std::unique_ptr<Wal> wal;
    REQUIRE(OpenWal(&env, 4096, &none, &wal).ok());
    WriteEntries(wal.get(), 1, 8);
    path = wal->SegmentPath(1);
  }
  std::string image;
  REQUIRE(ReadFileToString(&env, path, &image).ok());
  std::vector<size_t> starts;  // frame starts, then the end of the last frame
  for (size_t off = 0;;) {
    starts.push_back(off);
    size_t size = 0;
    RecordType type{};
    std::string_view payload;
    if (CheckFrame(image, off, &size, &type, &payload) != FrameStatus::kOk) break;
    off += size;
  }
  REQUIRE(starts.size() == 18);  // header, 8 writes of (write start, entry), end
  const size_t end = starts.back();
  const size_t last_start = starts[starts.size() - 3];  // the last write

  for (size_t off = 0; off < end + 64; ++off) {
    for (uint8_t mask : {uint8_t{0x01}, uint8_t{0xff}}) {
      CAPTURE(off, static_cast<int>(mask));
      FaultInjectionEnv damaged;
      std::unique_ptr<WritableFile> f;
      REQUIRE(damaged.OpenWritable(path, &f).ok());
      REQUIRE(f->WriteAt(0, image).ok());
      REQUIRE(f->Sync().ok());
      REQUIRE(damaged.CorruptByteForTest(path, off, mask).ok());
      Collector c;
      std::unique_ptr<Wal> wal;
      const Status s = OpenWal(&damaged, 4096, &c, &wal);
      if (off >= last_start) {
        INFO(s.ToString());
        REQUIRE(s.ok());
        CHECK(EntryCount(c) == (off < end ? 7u : 8u));
      } else {
        REQUIRE(s.IsCorruption());
        const size_t record = *(std::upper_bound(starts.begin(), starts.end(), off) - 1);
        CHECK_THAT(s.message(),
                   Catch::Contains(path) && Catch::Contains("offset " + std::to_string(record)) &&
                       Catch::Contains("not a torn write") && Catch::Contains("restore"));
      }
    }
  }
}

TEST_CASE("damage at the end of an older segment is corruption, not a torn tail", "[corruption]") {
  QuietLog quiet;
  FaultInjectionEnv env;
  {
    Collector none;
    std::unique_ptr<Wal> wal;
    REQUIRE(OpenWal(&env, 512, &none, &wal).ok());
    WriteEntries(wal.get(), 1, 40);
    REQUIRE(wal->Segments().size() >= 3);
  }
  Collector c;
  std::unique_ptr<Wal> wal;
  REQUIRE(OpenWal(&env, 512, &c, &wal).ok());
  // The last record of segment 1.
  Location last_in_first;
  for (const Location& l : c.locations) {
    if (l.segment == 1) last_in_first = l;
  }
  const std::string path = wal->SegmentPath(1);
  wal.reset();
  REQUIRE(env.CorruptByteForTest(path, last_in_first.offset + kFrameHeaderSize, 0x10).ok());
  Collector again;
  const Status s = OpenWal(&env, 512, &again, &wal);
  REQUIRE(s.IsCorruption());
  CHECK_THAT(s.message(), Catch::Contains(path) &&
                              Catch::Contains("offset " + std::to_string(last_in_first.offset)));
}

TEST_CASE("a zeroed region before the tail is corruption", "[corruption]") {
  QuietLog quiet;
  FaultInjectionEnv env;
  Collector c;
  std::string path;
  {
    std::unique_ptr<Wal> wal;
    REQUIRE(OpenWal(&env, 4096, &c, &wal).ok());
    WriteBatch batch;
    for (raft::Index i = 1; i <= 5; ++i) {
      WriteBatch b;
      b.AppendEntries(1, {MakeEntry(i, 1)});
      REQUIRE(wal->Write(&b).ok());
      if (i == 2) batch = b;
    }
    path = wal->SegmentPath(1);
    // Zero the whole frame of entry 2, as a lost sector would.
    std::string image;
    REQUIRE(ReadFileToString(&env, path, &image).ok());
    const uint64_t at = batch.locations()[0].offset;
    for (uint64_t o = at; o < at + kFrameHeaderSize + 30 && image[o] != '\0'; ++o) {
      REQUIRE(env.CorruptByteForTest(path, o, static_cast<uint8_t>(image[o])).ok());
    }
  }
  std::unique_ptr<Wal> wal;
  Collector again;
  CHECK(OpenWal(&env, 4096, &again, &wal).IsCorruption());
}

TEST_CASE("a segment missing from the middle of the sequence is corruption", "[corruption]") {
  FaultInjectionEnv env;
  std::string missing;
  {
    Collector none;
    std::unique_ptr<Wal> wal;
    REQUIRE(OpenWal(&env, 512, &none, &wal).ok());
    WriteEntries(wal.get(), 1, 40);
    missing = wal->SegmentPath(2);
  }
  REQUIRE(env.RemoveFile(missing).ok());
  Collector c;
  std::unique_ptr<Wal> wal;
  const Status s = OpenWal(&env, 512, &c, &wal);
  REQUIRE(s.IsCorruption());
  CHECK_THAT(s.message(), Catch::Contains(missing) && Catch::Contains("missing"));
}

TEST_CASE("after a torn tail is cut, new writes land and survive reopening", "[corruption]") {
  QuietLog quiet;
  FaultInjectionEnv env;
  Location end;
  std::string path;
  {
    Collector none;
    std::unique_ptr<Wal> wal;
    REQUIRE(OpenWal(&env, 4096, &none, &wal).ok());
    WriteEntries(wal.get(), 1, 3);
    WriteBatch torn;
    torn.AppendEntries(1, {MakeEntry(4, 1, std::string(200, 't'))});
    REQUIRE(wal->Write(&torn).ok());
    end = torn.locations()[0];
    path = wal->SegmentPath(1);
  }
  // Keep only the first 50 bytes of the last record, as a torn write would.
  {
    std::unique_ptr<WritableFile> f;
    REQUIRE(env.OpenWritable(path, &f).ok());
    REQUIRE(f->WriteAt(end.offset + 50, std::string(200, '\0')).ok());
    REQUIRE(f->Sync().ok());
  }
  ExpectRecoveryThenAppend(&env, 4096, 3);
}

TEST_CASE("a newest segment cut short while being created is recreated", "[corruption]") {
  QuietLog quiet;
  FaultInjectionEnv env;
  std::string next;
  {
    Collector none;
    std::unique_ptr<Wal> wal;
    REQUIRE(OpenWal(&env, 4096, &none, &wal).ok());
    WriteEntries(wal.get(), 1, 3);
    next = wal->SegmentPath(2);
  }
  {
    std::unique_ptr<WritableFile> f;
    REQUIRE(env.OpenWritable(next, &f).ok());
    REQUIRE(f->Allocate(4096).ok());
    REQUIRE(f->Sync().ok());
  }
  const auto wal = ExpectRecoveryThenAppend(&env, 4096, 3);
  CHECK(wal->Segments() == std::vector<uint64_t>{1, 2});
}

// One batch of 40 entries is one write of about 5 KiB; zeroes 600 bytes in its
// middle, as a disk that kept the write's later pages but not an earlier one.
void WriteBigBatchWithHole(FaultInjectionEnv* env, bool then_write_more) {
  std::string path;
  uint64_t hole = 0;
  {
    Collector none;
    std::unique_ptr<Wal> wal;
    REQUIRE(OpenWal(env, 1 << 16, &none, &wal).ok());
    WriteEntries(wal.get(), 1, 2);
    WriteBatch big;
    for (raft::Index i = 3; i < 43; ++i)
      big.AppendEntries(1, {MakeEntry(i, 2, std::string(100, 'h'))});
    REQUIRE(wal->Write(&big).ok());
    hole = big.locations()[10].offset;
    if (then_write_more) WriteEntries(wal.get(), 43, 1);
    path = wal->SegmentPath(1);
  }
  std::string image;
  REQUIRE(ReadFileToString(env, path, &image).ok());
  for (uint64_t o = hole; o < hole + 600; ++o) {
    if (image[o] != '\0')
      REQUIRE(env->CorruptByteForTest(path, o, static_cast<uint8_t>(image[o])).ok());
  }
}

TEST_CASE("a last write that lost an earlier page but kept later ones is a torn tail",
          "[corruption]") {
  QuietLog quiet;
  FaultInjectionEnv env;
  WriteBigBatchWithHole(&env, false);
  // The 2 earlier writes, and the big one up to the hole.
  ExpectRecoveryThenAppend(&env, 1 << 16, 12);
}

TEST_CASE("the same hole with a later write after it is corruption", "[corruption]") {
  QuietLog quiet;
  FaultInjectionEnv env;
  WriteBigBatchWithHole(&env, true);
  Collector c;
  std::unique_ptr<Wal> wal;
  const Status s = OpenWal(&env, 1 << 16, &c, &wal);
  REQUIRE(s.IsCorruption());
  CHECK_THAT(s.message(), Catch::Contains("later write"));
}

}  // namespace
}  // namespace kv::storage

namespace kv::storage {
namespace {

TEST_CASE("a newest segment with a torn checkpoint is recreated with a whole one", "[corruption]") {
  QuietLog quiet;
  FaultInjectionEnv env;
  std::string second;
  {
    Collector none;
    std::unique_ptr<Wal> wal;
    REQUIRE(OpenWal(&env, 512, &none, &wal).ok());
    WriteBatch hs;
    for (raft::GroupId g = 1; g <= 8; ++g) hs.SetHardState(g, raft::HardState{g, 1, 0});
    REQUIRE(wal->Write(&hs).ok());
    for (raft::Index i = 1; wal->Segments().size() < 2; ++i) WriteEntries(wal.get(), i, 1);
    second = wal->SegmentPath(2);
  }
  // As if the crash came while segment 2 was being created: its checkpoint
  // is cut and nothing was written after it.
  std::string image;
  REQUIRE(ReadFileToString(&env, second, &image).ok());
  for (uint64_t o = 60; o < image.size(); ++o) {
    if (image[o] != '\0')
      REQUIRE(env.CorruptByteForTest(second, o, static_cast<uint8_t>(image[o])).ok());
  }
  {
    Collector c;
    std::unique_ptr<Wal> wal;
    const Status s = OpenWal(&env, 512, &c, &wal);
    INFO(s.ToString());
    REQUIRE(s.ok());
    CHECK(wal->Segments() == std::vector<uint64_t>{1, 2});
  }
  // Segment 2 alone must now restate every group's hard state.
  REQUIRE(env.RemoveFile(std::string(kDir) + "/wal-0000000000000001.log").ok());
  Collector c;
  std::unique_ptr<Wal> wal;
  REQUIRE(OpenWal(&env, 512, &c, &wal).ok());
  size_t hard_states = 0;
  for (const Record& r : c.records) hard_states += r.type == RecordType::kHardState;
  CHECK(hard_states == 8);
}

}  // namespace
}  // namespace kv::storage
