#include "storage/node_storage.h"

#include <catch2/catch.hpp>
#include <random>

#include "raft/memory_storage.h"
#include "storage/fault_injection_env.h"
#include "test/storage/test_util.h"

namespace kv::storage {
namespace {

using testing::MakeEntry;
using testing::QuietLog;

constexpr char kDir[] = "/node";

std::unique_ptr<NodeStorage> Open(Env* env, uint64_t segment_size = 1 << 20,
                                  uint64_t cache = 4 << 20) {
  StorageOptions options;
  options.wal.segment_size = segment_size;
  options.cache_bytes_per_group = cache;
  std::unique_ptr<NodeStorage> storage;
  const Status s = NodeStorage::Open(env, kDir, options, &storage);
  INFO(s.ToString());
  REQUIRE(s.ok());
  return storage;
}

// Writes through the WAL and makes the batch visible, as a driver does.
WriteBatch Persist(NodeStorage* storage, raft::GroupId group,
                   const std::vector<raft::Entry>& entries, const raft::HardState* hs = nullptr) {
  WriteBatch batch;
  batch.AppendEntries(group, entries);
  if (hs != nullptr) batch.SetHardState(group, *hs);
  REQUIRE(storage->wal()->Write(&batch).ok());
  REQUIRE(storage->ApplyWritten(batch).ok());
  return batch;
}

std::vector<raft::Entry> Run(raft::Index from, raft::Index to, raft::Term term, size_t size = 0) {
  std::vector<raft::Entry> out;
  for (raft::Index i = from; i <= to; ++i) {
    out.push_back(
        MakeEntry(i, term, size ? std::string(size, static_cast<char>('a' + i % 26)) : ""));
  }
  return out;
}

// The storage under test answers every LogStorage question like the reference.
void ExpectSame(const raft::LogStorage& want, const raft::LogStorage& got) {
  REQUIRE(got.FirstIndex() == want.FirstIndex());
  REQUIRE(got.LastIndex() == want.LastIndex());
  raft::HardState want_hs, got_hs;
  raft::ConfState want_cs, got_cs;
  REQUIRE(want.InitialState(&want_hs, &want_cs).ok());
  REQUIRE(got.InitialState(&got_hs, &got_cs).ok());
  CHECK(got_hs == want_hs);
  CHECK(got_cs == want_cs);
  for (raft::Index i = want.FirstIndex() - 1; i <= want.LastIndex(); ++i) {
    raft::Term a = 0, b = 0;
    REQUIRE(want.TermAt(i, &a).ok());
    REQUIRE(got.TermAt(i, &b).ok());
    CHECK(a == b);
  }
  raft::Term t = 0;
  CHECK(got.TermAt(want.LastIndex() + 1, &t).IsUnavailable());
  if (want.FirstIndex() > 1) CHECK(got.TermAt(want.FirstIndex() - 2, &t).IsCompacted());
  std::vector<raft::Entry> a, b;
  REQUIRE(want.Entries(want.FirstIndex(), want.LastIndex() + 1, UINT64_MAX, &a).ok());
  REQUIRE(got.Entries(want.FirstIndex(), want.LastIndex() + 1, UINT64_MAX, &b).ok());
  CHECK(a == b);
  CHECK(got.Entries(want.FirstIndex() - 1, want.LastIndex(), UINT64_MAX, &b).IsCompacted());
  CHECK(got.Entries(want.FirstIndex(), want.LastIndex() + 2, UINT64_MAX, &b).IsUnavailable());
  raft::Snapshot want_snap, got_snap;
  REQUIRE(want.GetSnapshot(&want_snap).ok());
  REQUIRE(got.GetSnapshot(&got_snap).ok());
  CHECK(got_snap == want_snap);
}

TEST_CASE("a group's log and hard state come back after reopening", "[node]") {
  FaultInjectionEnv env;
  raft::MemoryStorage want;
  {
    auto storage = Open(&env);
    const raft::HardState hs{3, 2, 5};
    Persist(storage.get(), 1, Run(1, 10, 3), &hs);
    REQUIRE(want.Append(Run(1, 10, 3)).ok());
    want.SetHardState(hs);
    ExpectSame(want, *storage->Group(1));
  }
  auto storage = Open(&env);
  CHECK(storage->Groups() == std::vector<raft::GroupId>{1});
  ExpectSame(want, *storage->Group(1));
}

TEST_CASE("overwriting one group's suffix leaves other groups alone", "[node]") {
  FaultInjectionEnv env;
  raft::MemoryStorage want1, want2;
  {
    auto storage = Open(&env);
    for (raft::Index i = 1; i <= 10; ++i) {
      WriteBatch batch;
      batch.AppendEntries(1, {MakeEntry(i, 1)});
      batch.AppendEntries(2, {MakeEntry(i, 1)});
      REQUIRE(storage->wal()->Write(&batch).ok());
      REQUIRE(storage->ApplyWritten(batch).ok());
    }
    REQUIRE(want1.Append(Run(1, 10, 1)).ok());
    REQUIRE(want2.Append(Run(1, 10, 1)).ok());
    Persist(storage.get(), 1, Run(6, 8, 2));
    REQUIRE(want1.Append(Run(6, 8, 2)).ok());
    Persist(storage.get(), 2, Run(11, 12, 1));
    REQUIRE(want2.Append(Run(11, 12, 1)).ok());
    ExpectSame(want1, *storage->Group(1));
    ExpectSame(want2, *storage->Group(2));
  }
  auto storage = Open(&env);
  ExpectSame(want1, *storage->Group(1));
  ExpectSame(want2, *storage->Group(2));
}

TEST_CASE("old entries leave memory within the budget and are read from segments", "[node]") {
  FaultInjectionEnv env;
  raft::MemoryStorage want;
  auto storage = Open(&env, 4096, 1024);
  for (raft::Index i = 1; i <= 100; i += 4) {
    Persist(storage.get(), 1, Run(i, i + 3, 1, 128));
    REQUIRE(want.Append(Run(i, i + 3, 1, 128)).ok());
    CHECK(storage->Group(1)->cached_bytes() <= 1024);
  }
  CHECK(storage->wal()->Segments().size() > 3);
  ExpectSame(want, *storage->Group(1));
  std::vector<raft::Entry> some;
  REQUIRE(storage->Group(1)->Entries(1, 101, 3 * (128 + 24), &some).ok());
  CHECK(some.size() == 3);
  // A reopened storage starts with its newest entries cached again.
  storage.reset();
  storage = Open(&env, 4096, 1024);
  CHECK(storage->Group(1)->cached_bytes() > 1024 - 128);
  CHECK(storage->Group(1)->cached_bytes() <= 1024);
  ExpectSame(want, *storage->Group(1));
}

TEST_CASE("snapshots delete exactly the segments no group needs", "[node]") {
  FaultInjectionEnv env;
  std::map<uint64_t, std::map<raft::GroupId, raft::Index>> max_in_segment;
  std::map<raft::GroupId, raft::MemoryStorage> want;
  {
    auto storage = Open(&env, 1024, 256);
    const raft::HardState only_hs{7, 3, 0};
    WriteBatch hs;
    hs.SetHardState(3, only_hs);  // group 3 writes its hard state once, early
    REQUIRE(storage->wal()->Write(&hs).ok());
    REQUIRE(storage->ApplyWritten(hs).ok());
    want[3].SetHardState(only_hs);
    for (raft::Index i = 1; i <= 60; ++i) {
      for (raft::GroupId g : {1, 2}) {
        const WriteBatch b = Persist(storage.get(), g, Run(i, i, 1, 60));
        raft::Index& max = max_in_segment[b.locations()[0].segment][g];
        max = std::max(max, i);
        REQUIRE(want[g].Append(Run(i, i, 1, 60)).ok());
      }
    }
    const std::vector<uint64_t> all = storage->wal()->Segments();
    REQUIRE(all.size() > 8);

    REQUIRE(storage->CreateSnapshot(1, 30, raft::ConfState{{1}, {}}, "g1@30").ok());
    REQUIRE(storage->CreateSnapshot(1, 50, raft::ConfState{{1}, {}}, "g1@50").ok());
    REQUIRE(want[1].CreateSnapshot(30, raft::ConfState{{1}, {}}, "g1@30").ok());
    REQUIRE(want[1].CreateSnapshot(50, raft::ConfState{{1}, {}}, "g1@50").ok());
    // Group 2 still needs every segment it has entries in.
    CHECK(storage->wal()->Segments().front() == all.front());

    REQUIRE(storage->CreateSnapshot(2, 20, raft::ConfState{{1}, {}}, "g2@20").ok());
    REQUIRE(storage->CreateSnapshot(2, 40, raft::ConfState{{1}, {}}, "g2@40").ok());
    REQUIRE(want[2].CreateSnapshot(20, raft::ConfState{{1}, {}}, "g2@20").ok());
    REQUIRE(want[2].CreateSnapshot(40, raft::ConfState{{1}, {}}, "g2@40").ok());
    // Released: group 1 through 30, group 2 through 20 (the older kept snapshots).
    std::vector<uint64_t> expected;
    bool needed = false;
    for (uint64_t seq : all) {
      const auto& max = max_in_segment[seq];
      needed = needed || seq == all.back() || (max.count(1) && max.at(1) > 30) ||
               (max.count(2) && max.at(2) > 20);
      if (needed) expected.push_back(seq);
    }
    const std::vector<uint64_t> after = storage->wal()->Segments();
    CHECK(after.front() > all.front());
    CHECK(std::vector<uint64_t>(after.begin(), after.begin() + expected.size()) == expected);
    for (raft::GroupId g : {1, 2, 3}) ExpectSame(want[g], *storage->Group(g));
  }
  auto storage = Open(&env, 1024, 256);
  for (raft::GroupId g : {1, 2, 3}) {
    CAPTURE(g);
    ExpectSame(want[g], *storage->Group(g));
  }
}

TEST_CASE("a snapshot from a leader replaces the log, also after reopening", "[node]") {
  FaultInjectionEnv env;
  raft::MemoryStorage want;
  raft::Snapshot snap;
  snap.meta.index = 50;
  snap.meta.term = 4;
  snap.meta.conf.voters = {1, 2, 3};
  snap.data = "leader state";
  {
    auto storage = Open(&env);
    Persist(storage.get(), 1, Run(1, 20, 2));
    REQUIRE(storage->InstallSnapshot(1, snap).ok());
    Persist(storage.get(), 1, Run(51, 55, 4));
    REQUIRE(want.ApplySnapshot(snap).ok());
    REQUIRE(want.Append(Run(51, 55, 4)).ok());
    ExpectSame(want, *storage->Group(1));
    raft::Snapshot older = snap;
    older.meta.index = 10;
    CHECK(storage->InstallSnapshot(1, older).IsInvalidArgument());
  }
  auto storage = Open(&env);
  ExpectSame(want, *storage->Group(1));
}

TEST_CASE("a damaged newest snapshot falls back to the older one and the WAL", "[node]") {
  QuietLog quiet;
  FaultInjectionEnv env;
  raft::MemoryStorage want;
  std::string newest;
  {
    auto storage = Open(&env, 1024);
    for (raft::Index i = 1; i <= 100; i += 5) {
      Persist(storage.get(), 1, Run(i, i + 4, 1, 40));
      REQUIRE(want.Append(Run(i, i + 4, 1, 40)).ok());
    }
    REQUIRE(storage->CreateSnapshot(1, 40, raft::ConfState{{1}, {}}, "at 40").ok());
    REQUIRE(storage->CreateSnapshot(1, 80, raft::ConfState{{1}, {}}, "at 80").ok());
    REQUIRE(want.CreateSnapshot(40, raft::ConfState{{1}, {}}, "at 40").ok());
    newest = storage->snapshots()->SnapshotPath(1, 80);
  }
  REQUIRE(env.CorruptByteForTest(newest, 20, 0x01).ok());
  {
    auto storage = Open(&env, 1024);
    ExpectSame(want, *storage->Group(1));
  }
  // With both snapshots damaged, the WAL (already cut below 40) cannot help.
  std::unique_ptr<SnapshotStore> snaps;
  REQUIRE(SnapshotStore::Open(&env, std::string(kDir) + "/snap", &snaps).ok());
  REQUIRE(env.CorruptByteForTest(snaps->SnapshotPath(1, 40), 20, 0x01).ok());
  StorageOptions options;
  options.wal.segment_size = 1024;
  std::unique_ptr<NodeStorage> storage;
  const Status s = NodeStorage::Open(&env, kDir, options, &storage);
  REQUIRE(s.IsCorruption());
  CHECK_THAT(s.message(), Catch::Contains("group 1") && Catch::Contains("restore"));
}

TEST_CASE("random appends, conflicts, snapshots and reopenings match MemoryStorage", "[node]") {
  for (uint64_t seed = 1; seed <= 20; ++seed) {
    CAPTURE(seed);
    std::mt19937_64 rng(seed);
    FaultInjectionEnv env;
    std::map<raft::GroupId, raft::MemoryStorage> want;
    std::map<raft::GroupId, raft::Index> commit;
    raft::Term term = 1;
    auto storage = Open(&env, 2048, 300);
    for (int step = 0; step < 150; ++step) {
      const raft::GroupId g = 1 + rng() % 3;
      raft::MemoryStorage& w = want[g];
      const uint64_t op = rng() % 20;
      if (op < 14) {
        raft::Index first = w.LastIndex() + 1;
        if (w.LastIndex() > commit[g] && rng() % 3 == 0) {
          first = commit[g] + 1 + rng() % (w.LastIndex() - commit[g]);
          ++term;
        }
        const auto entries = Run(first, first + rng() % 4, term, rng() % 100);
        const raft::HardState hs{term, g, commit[g]};
        Persist(storage.get(), g, entries, &hs);
        REQUIRE(w.Append(entries).ok());
        w.SetHardState(hs);
        commit[g] =
            std::max(commit[g], w.LastIndex() - std::min<raft::Index>(w.LastIndex(), rng() % 3));
      } else if (op < 17 && commit[g] >= w.FirstIndex()) {
        const raft::Index i = w.FirstIndex() + rng() % (commit[g] + 1 - w.FirstIndex());
        const std::string data = "snap " + std::to_string(i);
        const Status s = storage->CreateSnapshot(g, i, raft::ConfState{{1, 2}, {}}, data);
        if (!s.ok()) FAIL(s.ToString());
        REQUIRE(w.CreateSnapshot(i, raft::ConfState{{1, 2}, {}}, data).ok());
      } else if (op < 18) {
        raft::Snapshot snap;
        snap.meta.index = w.LastIndex() + 1 + rng() % 5;
        snap.meta.term = ++term;
        snap.meta.conf.voters = {1, 2, 3};
        snap.data = "installed";
        REQUIRE(storage->InstallSnapshot(g, snap).ok());
        REQUIRE(w.ApplySnapshot(snap).ok());
        commit[g] = snap.meta.index;
      } else {
        storage.reset();
        storage = Open(&env, 2048, 300);
      }
    }
    storage.reset();
    storage = Open(&env, 2048, 300);
    for (auto& [g, w] : want) {
      CAPTURE(g);
      ExpectSame(w, *storage->Group(g));
    }
  }
}

}  // namespace
}  // namespace kv::storage

namespace kv::storage {
namespace {

TEST_CASE("an idle group whose snapshot covers its log holds no WAL segment", "[node]") {
  FaultInjectionEnv env;
  QuietLog quiet;
  std::map<raft::GroupId, raft::MemoryStorage> want;
  {
    auto storage = Open(&env, 1024, 256);
    // Group 2 writes a little, early, then goes quiet; group 1 keeps writing.
    Persist(storage.get(), 2, Run(1, 3, 1, 60));
    REQUIRE(want[2].Append(Run(1, 3, 1, 60)).ok());
    for (raft::Index i = 1; i <= 60; ++i) {
      Persist(storage.get(), 1, Run(i, i, 1, 60));
      REQUIRE(want[1].Append(Run(i, i, 1, 60)).ok());
    }
    const std::vector<uint64_t> all = storage->wal()->Segments();
    REQUIRE(all.size() > 4);
    REQUIRE(storage->CreateSnapshot(1, 30, raft::ConfState{{1}, {}}, "g1@30").ok());
    REQUIRE(storage->CreateSnapshot(1, 50, raft::ConfState{{1}, {}}, "g1@50").ok());
    REQUIRE(want[1].CreateSnapshot(30, raft::ConfState{{1}, {}}, "g1@30").ok());
    REQUIRE(want[1].CreateSnapshot(50, raft::ConfState{{1}, {}}, "g1@50").ok());
    // Group 2's entries keep the first segment until its snapshot covers them.
    CHECK(storage->wal()->Segments().front() == all.front());
    REQUIRE(storage->CreateSnapshot(2, 3, raft::ConfState{{1}, {}}, "g2@3").ok());
    REQUIRE(want[2].CreateSnapshot(3, raft::ConfState{{1}, {}}, "g2@3").ok());
    CHECK(storage->wal()->Segments().front() > all.front());
    for (raft::GroupId g : {1, 2}) ExpectSame(want[g], *storage->Group(g));
  }
  auto storage = Open(&env, 1024, 256);
  for (raft::GroupId g : {1, 2}) {
    CAPTURE(g);
    ExpectSame(want[g], *storage->Group(g));
  }
}

}  // namespace
}  // namespace kv::storage
