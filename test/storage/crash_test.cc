// Crash tests: writers of several groups run against a FaultInjectionEnv, a
// crash is simulated at a random moment, and the reopened storage must hold
// every acknowledged write, only writes that were submitted, in order.
// KV_CRASH_SEEDS=N runs N seeds (default below) for soak runs.

#include <catch2/catch.hpp>
#include <condition_variable>
#include <mutex>
#include <random>
#include <thread>

#include "storage/fault_injection_env.h"
#include "storage/node_storage.h"
#include "test/storage/test_util.h"

namespace kv::storage {
namespace {

using testing::EnvCount;
using testing::MakeEntry;
using testing::QuietLog;
using testing::RandomData;

constexpr char kDir[] = "/node";
constexpr int kGroups = 3;
constexpr uint64_t kDefaultSeeds = 1000;

StorageOptions SmallOptions() {
  StorageOptions options;
  options.wal.segment_size = 2048;  // many rollovers and deletions
  options.cache_bytes_per_group = 512;
  return options;
}

// What one group's writer submitted, batch by batch, and how many of those
// batches were acknowledged durable.
struct GroupHistory {
  std::vector<std::vector<Record>> batches;
  size_t acked = 0;
  std::map<raft::Index, std::string> snapshot_data;
  std::string failure;  // set by the writer thread on an unexpected error
};

// The state of a group's log after a prefix of its records.
struct ModelState {
  std::vector<raft::Entry> log;  // log[i - 1] is entry i
  raft::HardState hs;
};

void ApplyRecord(const Record& r, ModelState* m) {
  if (r.type == RecordType::kEntry) {
    m->log.resize(r.entry.index - 1);
    m->log.push_back(r.entry);
  } else if (r.type == RecordType::kHardState) {
    m->hs = r.hard_state;
  }
}

// Runs one group's writer until `stop` or a failure. Catch2's assertions are
// not thread-safe, so unexpected failures are left in history->failure.
void RunWriter(NodeStorage* storage, raft::GroupId group, uint64_t seed, GroupHistory* history,
               std::mutex* mu, std::condition_variable* cv, int* total_acked, const bool* stop) {
  std::mt19937_64 rng(seed);
  raft::Index last = 0;
  raft::Index commit = 0;
  raft::Term term = 1;
  raft::Index snap = 0;
  while (true) {
    {
      std::lock_guard<std::mutex> lock(*mu);
      if (*stop) return;
    }
    raft::Index first = last + 1;
    if (last > commit && rng() % 6 == 0) {
      first = commit + 1 + rng() % (last - commit);  // overwrite an uncommitted suffix
      ++term;
    }
    std::vector<raft::Entry> entries;
    const raft::Index n = 1 + rng() % 3;
    for (raft::Index i = first; i < first + n; ++i) {
      entries.push_back(MakeEntry(i, term, RandomData(&rng, 1 + rng() % 150)));
    }
    last = first + n - 1;
    commit = std::max(commit, last - std::min<raft::Index>(last, rng() % 3));
    WriteBatch batch;
    batch.AppendEntries(group, entries);
    batch.SetHardState(group, raft::HardState{term, 1, commit});
    history->batches.push_back(batch.records());

    std::mutex done_mu;
    std::condition_variable done_cv;
    bool done = false;
    Status status;
    WriteBatch written;
    storage->wal()->Submit(std::move(batch), [&](Status s, WriteBatch b) {
      std::lock_guard<std::mutex> lock(done_mu);
      status = s;
      written = std::move(b);
      done = true;
      done_cv.notify_all();
    });
    {
      std::unique_lock<std::mutex> lock(done_mu);
      done_cv.wait(lock, [&] { return done; });
    }
    if (!status.ok()) return;
    if (Status s = storage->ApplyWritten(written); !s.ok()) {
      history->failure = "ApplyWritten: " + s.ToString();
      return;
    }
    {
      std::lock_guard<std::mutex> lock(*mu);
      ++history->acked;
      ++*total_acked;
    }
    cv->notify_all();
    if (commit > snap && rng() % 8 == 0) {
      snap = commit;
      const std::string data =
          "state of group " + std::to_string(group) + " at " + std::to_string(snap);
      history->snapshot_data[snap] = data;
      const Status s = storage->CreateSnapshot(group, snap, raft::ConfState{{1, 2, 3}, {}}, data);
      if (!s.ok()) {
        // Only the crash may stop a snapshot.
        if (!s.IsIOError()) history->failure = "CreateSnapshot: " + s.ToString();
        return;
      }
    }
  }
}

// Checks that the recovered group equals the model after some prefix of its
// records that includes every acknowledged batch.
void CheckRecovered(GroupStorage* g, const GroupHistory& history) {
  std::vector<Record> records;
  size_t acked_records = 0;
  for (size_t b = 0; b < history.batches.size(); ++b) {
    records.insert(records.end(), history.batches[b].begin(), history.batches[b].end());
    if (b < history.acked) acked_records = records.size();
  }
  const raft::Index first = g->FirstIndex();
  const raft::Index last = g->LastIndex();
  std::vector<raft::Entry> entries;
  if (last >= first) REQUIRE(g->Entries(first, last + 1, UINT64_MAX, &entries).ok());
  REQUIRE(entries.size() == last + 1 - first);
  ModelState m;
  for (size_t k = 0; k < acked_records; ++k) ApplyRecord(records[k], &m);
  bool matched = false;
  for (size_t k = acked_records; k <= records.size() && !matched; ++k) {
    if (k > acked_records) ApplyRecord(records[k - 1], &m);
    if (m.log.size() != last || !(m.hs == g->hard_state())) continue;
    matched = std::equal(entries.begin(), entries.end(), m.log.begin() + (first - 1));
  }
  CHECK(matched);
  if (first > 1) {
    raft::Snapshot snap;
    REQUIRE(g->GetSnapshot(&snap).ok());
    CHECK(snap.meta.index == first - 1);
    auto it = history.snapshot_data.find(first - 1);
    REQUIRE(it != history.snapshot_data.end());
    CHECK(snap.data == it->second);
  }
}

void RunSeed(uint64_t seed) {
  std::mt19937_64 rng(seed);
  FaultInjectionEnv env;
  const auto mode = seed % 2 == 0 ? FaultInjectionEnv::CrashMode::kDropUnsynced
                                  : FaultInjectionEnv::CrashMode::kKeepRandomPrefix;
  std::vector<GroupHistory> histories(kGroups);
  {
    std::unique_ptr<NodeStorage> storage;
    REQUIRE(NodeStorage::Open(&env, kDir, SmallOptions(), &storage).ok());
    std::mutex mu;
    std::condition_variable cv;
    int total_acked = 0;
    bool stop = false;
    std::vector<std::thread> writers;
    for (int g = 0; g < kGroups; ++g) {
      writers.emplace_back(RunWriter, storage.get(), g + 1, rng(), &histories[g], &mu, &cv,
                           &total_acked, &stop);
    }
    const int target = 5 + static_cast<int>(rng() % 60);
    {
      std::unique_lock<std::mutex> lock(mu);
      cv.wait(lock, [&] { return total_acked >= target; });
    }
    env.SimulateCrash(mode, rng());
    {
      std::lock_guard<std::mutex> lock(mu);
      stop = true;
    }
    for (std::thread& t : writers) t.join();
  }
  env.Restart();
  for (const GroupHistory& h : histories) CHECK(h.failure == "");

  std::unique_ptr<NodeStorage> storage;
  Status s = NodeStorage::Open(&env, kDir, SmallOptions(), &storage);
  INFO(s.ToString());
  REQUIRE(s.ok());
  for (int g = 0; g < kGroups; ++g) {
    CAPTURE(g + 1);
    CheckRecovered(storage->Group(g + 1), histories[g]);
  }

  // The storage keeps working after recovery: a new write survives a reopen.
  std::vector<raft::Index> next(kGroups);
  for (int g = 0; g < kGroups; ++g) {
    GroupStorage* gs = storage->Group(g + 1);
    next[g] = gs->LastIndex() + 1;
    WriteBatch batch;
    batch.AppendEntries(g + 1, {MakeEntry(next[g], 1000, "after recovery")});
    REQUIRE(storage->wal()->Write(&batch).ok());
    REQUIRE(storage->ApplyWritten(batch).ok());
  }
  storage.reset();
  REQUIRE(NodeStorage::Open(&env, kDir, SmallOptions(), &storage).ok());
  for (int g = 0; g < kGroups; ++g) {
    std::vector<raft::Entry> tail;
    REQUIRE(storage->Group(g + 1)->Entries(next[g], next[g] + 1, UINT64_MAX, &tail).ok());
    CHECK(tail.at(0).data == "after recovery");
  }
}

TEST_CASE("crash at a random moment loses nothing acknowledged and invents nothing", "[crash]") {
  const uint64_t seeds = EnvCount("KV_CRASH_SEEDS", kDefaultSeeds);
  // Every crash logs the WAL's write error and many reopens a torn tail.
  QuietLog quiet;
  for (uint64_t seed = 1; seed <= seeds; ++seed) {
    CAPTURE(seed);
    RunSeed(seed);
  }
}

}  // namespace
}  // namespace kv::storage
