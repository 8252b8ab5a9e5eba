#include "storage/wal.h"

#include <catch2/catch.hpp>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "storage/fault_injection_env.h"
#include "test/storage/test_util.h"

namespace kv::storage {
namespace {

using testing::Collector;
using testing::MakeEntry;
using testing::SameRecord;

constexpr char kDir[] = "/data/wal";

std::unique_ptr<Wal> OpenWal(Env* env, Collector* collector, uint64_t segment_size = 1 << 20) {
  WalOptions options;
  options.segment_size = segment_size;
  std::unique_ptr<Wal> wal;
  Status s = Wal::Open(env, kDir, options, collector->Fn(), &wal);
  INFO(s.ToString());
  REQUIRE(s.ok());
  return wal;
}

// Only entry and hard state records, the ones a test writes.
std::vector<Record> Written(const Collector& c) {
  std::vector<Record> out;
  for (const Record& r : c.records) {
    if (r.type == RecordType::kEntry) out.push_back(r);
  }
  return out;
}

TEST_CASE("records of many groups come back interleaved as written", "[wal]") {
  FaultInjectionEnv env;
  std::vector<Record> expected;
  {
    Collector none;
    auto wal = OpenWal(&env, &none);
    for (raft::Index i = 1; i <= 20; ++i) {
      WriteBatch batch;
      for (raft::GroupId g = 1; g <= 5; ++g) {
        batch.AppendEntries(g, {MakeEntry(i, g)});
        batch.SetHardState(g, raft::HardState{g, g % 3, i});
      }
      for (const Record& r : batch.records()) expected.push_back(r);
      REQUIRE(wal->Write(&batch).ok());
      REQUIRE(batch.locations().size() == batch.records().size());
    }
  }
  Collector c;
  auto wal = OpenWal(&env, &c);
  REQUIRE(c.records.size() == expected.size());
  for (size_t i = 0; i < expected.size(); ++i) CHECK(SameRecord(c.records[i], expected[i]));
}

TEST_CASE("a full segment rolls over, with a synced directory and a checkpoint", "[wal]") {
  FaultInjectionEnv env;
  std::vector<WriteBatch> written;
  int dir_syncs_before = 0;
  {
    Collector none;
    auto wal = OpenWal(&env, &none, 1024);
    dir_syncs_before = env.DirSyncCount(kDir);
    WriteBatch hs;
    hs.SetHardState(9, raft::HardState{3, 1, 0});
    REQUIRE(wal->Write(&hs).ok());
    for (raft::Index i = 1; i <= 60; ++i) {
      WriteBatch batch;
      batch.AppendEntries(1 + i % 2, {MakeEntry(i, 1, std::string(100, 'x'))});
      REQUIRE(wal->Write(&batch).ok());
      written.push_back(batch);
    }
    CHECK(wal->Segments().size() >= 6);
    CHECK(env.DirSyncCount(kDir) - dir_syncs_before ==
          static_cast<int>(wal->Segments().size()) - 1);
    // Every record reads back from where the WAL says it is.
    for (const WriteBatch& b : written) {
      Record r;
      REQUIRE(wal->ReadRecord(b.locations()[0], &r).ok());
      CHECK(SameRecord(r, b.records()[0]));
    }
  }
  Collector c;
  auto wal = OpenWal(&env, &c, 1024);
  const std::vector<Record> entries = Written(c);
  REQUIRE(entries.size() == written.size());
  for (size_t i = 0; i < entries.size(); ++i) {
    CHECK(SameRecord(entries[i], written[i].records()[0]));
    CHECK(c.locations[0].segment <= written[i].locations()[0].segment);
  }
  // Each newer segment restates group 9's hard state at its start.
  size_t hard_states = 0;
  for (const Record& r : c.records) hard_states += r.type == RecordType::kHardState;
  CHECK(hard_states == wal->Segments().size());
}

TEST_CASE("a record larger than a segment gets a segment of its own size", "[wal]") {
  FaultInjectionEnv env;
  const std::string big(5000, 'b');
  {
    Collector none;
    auto wal = OpenWal(&env, &none, 1024);
    WriteBatch batch;
    batch.AppendEntries(1, {MakeEntry(1, 1, big), MakeEntry(2, 1)});
    REQUIRE(wal->Write(&batch).ok());
  }
  Collector c;
  auto wal = OpenWal(&env, &c, 1024);
  REQUIRE(Written(c).size() == 2);
  CHECK(Written(c)[0].entry.data == big);
}

TEST_CASE("concurrent writers share one sync, and none hears back before it", "[wal]") {
  FaultInjectionEnv env;
  Collector none;
  auto wal = OpenWal(&env, &none);
  std::mutex mu;
  std::condition_variable cv;
  int done = 0;
  int failed = 0;  // completions run on the WAL thread: no Catch2 macros there
  std::vector<int> order;
  auto submit = [&](int id) {
    WriteBatch batch;
    batch.AppendEntries(static_cast<raft::GroupId>(id), {MakeEntry(1, 1)});
    wal->Submit(std::move(batch), [&, id](Status s, WriteBatch) {
      std::lock_guard<std::mutex> lock(mu);
      failed += !s.ok();
      ++done;
      order.push_back(id);
      cv.notify_all();
    });
  };
  const uint64_t syncs_before = wal->sync_count();
  env.HoldSyncs();
  submit(0);
  env.WaitForHeldSyncs(1);  // the writer is inside the first batch's sync
  std::vector<std::thread> writers;
  for (int id = 1; id <= 63; ++id) writers.emplace_back(submit, id);
  for (std::thread& t : writers) t.join();
  {
    std::lock_guard<std::mutex> lock(mu);
    CHECK(done == 0);  // nothing is durable while the sync has not returned
  }
  env.ReleaseSyncs();
  std::unique_lock<std::mutex> lock(mu);
  cv.wait(lock, [&] { return done == 64; });
  CHECK(failed == 0);
  CHECK(order[0] == 0);
  // One sync for the first batch, one for the 63 queued behind it.
  CHECK(wal->sync_count() - syncs_before == 2);
}

TEST_CASE("a failed sync is sticky: every later write fails", "[wal]") {
  FaultInjectionEnv env;
  Collector none;
  auto wal = OpenWal(&env, &none);
  WriteBatch ok;
  ok.AppendEntries(1, {MakeEntry(1, 1)});
  REQUIRE(wal->Write(&ok).ok());
  env.FailNextSyncs(1);
  WriteBatch failed;
  failed.AppendEntries(1, {MakeEntry(2, 1)});
  CHECK(wal->Write(&failed).IsIOError());
  WriteBatch later;
  later.AppendEntries(1, {MakeEntry(2, 1)});
  CHECK(wal->Write(&later).IsIOError());
  CHECK(wal->error().IsIOError());
}

TEST_CASE("completions run in submission order", "[wal]") {
  FaultInjectionEnv env;
  Collector none;
  auto wal = OpenWal(&env, &none, 4096);
  std::mutex mu;
  std::condition_variable cv;
  std::vector<raft::Index> order;
  for (raft::Index i = 1; i <= 200; ++i) {
    WriteBatch batch;
    batch.AppendEntries(1, {MakeEntry(i, 1, std::string(50, 'y'))});
    wal->Submit(std::move(batch), [&, i](Status s, WriteBatch) {
      std::lock_guard<std::mutex> lock(mu);
      order.push_back(s.ok() ? i : 0);
      cv.notify_all();
    });
  }
  std::unique_lock<std::mutex> lock(mu);
  cv.wait(lock, [&] { return order.size() == 200; });
  for (raft::Index i = 1; i <= 200; ++i) CHECK(order[i - 1] == i);
}

}  // namespace
}  // namespace kv::storage

namespace kv::storage {
namespace {

TEST_CASE("the WAL counts its bytes, records and each sync's duration", "[wal]") {
  FaultInjectionEnv env;
  Collector none;
  auto wal = OpenWal(&env, &none);
  const uint64_t bytes = wal->bytes_written(), records = wal->records_written();
  uint64_t synced = 0;
  for (size_t b = 0; b <= LatencyHistogram::kBounds.size(); ++b) {
    synced += wal->sync_latency().count(b);
  }
  WriteBatch batch;
  batch.AppendEntries(1, {MakeEntry(1, 1), MakeEntry(2, 1)});
  REQUIRE(wal->Write(&batch).ok());
  CHECK(wal->records_written() == records + 2);
  CHECK(wal->bytes_written() > bytes);
  uint64_t after = 0;
  for (size_t b = 0; b <= LatencyHistogram::kBounds.size(); ++b) {
    after += wal->sync_latency().count(b);
  }
  CHECK(after == synced + 1);
  CHECK(wal->sync_latency().sum_seconds() >= 0);
}

TEST_CASE("each group commit's bytes go to the batch histogram, across a segment roll too",
          "[wal]") {
  FaultInjectionEnv env;
  Collector none;
  auto wal = OpenWal(&env, &none, 4096);
  const uint64_t bytes = wal->bytes_written();
  uint64_t commits = 0;
  for (size_t b = 0; b <= wal->batch_bytes().bounds(); ++b) commits += wal->batch_bytes().count(b);
  const double sum = wal->batch_bytes().sum();
  WriteBatch small;
  small.AppendEntries(1, {MakeEntry(1, 1)});
  REQUIRE(wal->Write(&small).ok());
  // Larger than what is left of a 4 KiB segment: written in two pieces.
  WriteBatch large;
  large.AppendEntries(
      1, {MakeEntry(2, 1, std::string(2500, 'x')), MakeEntry(3, 1, std::string(2500, 'y'))});
  REQUIRE(wal->Write(&large).ok());
  REQUIRE(wal->Segments().size() >= 2);
  uint64_t after = 0;
  for (size_t b = 0; b <= wal->batch_bytes().bounds(); ++b) after += wal->batch_bytes().count(b);
  CHECK(after == commits + 2);
  CHECK(wal->batch_bytes().sum() - sum == static_cast<double>(wal->bytes_written() - bytes));
  CHECK(wal->batch_bytes().count(0) >= 1);  // the small one: under 256 bytes
}

TEST_CASE("a batch that needs no sync costs none, and the next sync makes it durable", "[wal]") {
  FaultInjectionEnv env;
  Collector none;
  auto wal = OpenWal(&env, &none);
  WriteBatch first;
  first.AppendEntries(1, {MakeEntry(1, 1)});
  REQUIRE(wal->Write(&first).ok());
  const uint64_t syncs = wal->sync_count();

  WriteBatch commit_only;
  commit_only.SetHardState(1, raft::HardState{1, 0, 1});
  commit_only.set_sync(false);
  REQUIRE(wal->Write(&commit_only).ok());
  CHECK(wal->sync_count() == syncs);

  SECTION("a crash may lose it, and the rest survives") {
    env.SimulateCrash(FaultInjectionEnv::CrashMode::kDropUnsynced, 1);
    wal.reset();
    env.Restart();
    Collector after;
    wal = OpenWal(&env, &after);
    CHECK(Written(after).size() == 1);
  }
  SECTION("a later synced batch makes both durable") {
    WriteBatch second;
    second.AppendEntries(1, {MakeEntry(2, 1)});
    REQUIRE(wal->Write(&second).ok());
    CHECK(wal->sync_count() == syncs + 1);
    env.SimulateCrash(FaultInjectionEnv::CrashMode::kDropUnsynced, 1);
    wal.reset();
    env.Restart();
    Collector after;
    wal = OpenWal(&env, &after);
    CHECK(Written(after).size() == 2);
    bool hard_state = false;
    for (const Record& r : after.records)
      hard_state = hard_state || r.type == RecordType::kHardState;
    CHECK(hard_state);
  }
}

}  // namespace
}  // namespace kv::storage
