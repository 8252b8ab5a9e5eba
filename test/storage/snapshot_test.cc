#include <catch2/catch.hpp>

#include "storage/fault_injection_env.h"
#include "storage/snapshot_store.h"
#include "test/storage/test_util.h"

namespace kv::storage {
namespace {

using testing::QuietLog;

constexpr char kDir[] = "/n/snap";

raft::Snapshot MakeSnapshot(raft::Index index, raft::Term term) {
  raft::Snapshot s;
  s.meta.index = index;
  s.meta.term = term;
  s.meta.conf.voters = {1, 2, 3};
  s.meta.conf.learners = {7};
  s.data = "state at " + std::to_string(index);
  return s;
}

std::unique_ptr<SnapshotStore> OpenStore(Env* env) {
  std::unique_ptr<SnapshotStore> store;
  REQUIRE(SnapshotStore::Open(env, kDir, &store).ok());
  return store;
}

TEST_CASE("a saved snapshot survives a crash and its directory was synced", "[snapshot]") {
  FaultInjectionEnv env;
  {
    auto store = OpenStore(&env);
    const int before = env.DirSyncCount(kDir);
    REQUIRE(store->Save(4, MakeSnapshot(10, 2)).ok());
    CHECK(env.DirSyncCount(kDir) == before + 1);
  }
  env.SimulateCrash(FaultInjectionEnv::CrashMode::kDropUnsynced, 1);
  env.Restart();
  auto store = OpenStore(&env);
  raft::Snapshot got;
  REQUIRE(store->LoadNewest(4, &got).ok());
  CHECK(got == MakeSnapshot(10, 2));
  CHECK(store->Groups() == std::vector<raft::GroupId>{4});
}

// Data emitted in pieces of `piece` bytes; `claimed` is the size it declares.
class PiecesData : public SnapshotData {
 public:
  PiecesData(std::string data, size_t piece, uint64_t claimed)
      : data_(std::move(data)), piece_(piece), claimed_(claimed) {}
  uint64_t size() const override { return claimed_; }
  Status WriteTo(const Emit& emit) const override {
    for (size_t at = 0; at < data_.size(); at += piece_) {
      Status s = emit(std::string_view(data_).substr(at, piece_));
      if (!s.ok()) return s;
    }
    return Status::OK();
  }

 private:
  std::string data_;
  size_t piece_;
  uint64_t claimed_;
};

TEST_CASE("data saved in pieces loads as one, across a crash; a wrong size is refused",
          "[snapshot]") {
  FaultInjectionEnv env;
  // Larger than the 4 MiB the store syncs at, in odd-sized pieces.
  std::string data(9 << 20, '\0');
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<char>(i * 31 % 251);
  raft::Snapshot want = MakeSnapshot(10, 2);
  want.data = data;
  {
    auto store = OpenStore(&env);
    REQUIRE(store->Save(4, want.meta, PiecesData(data, 999983, data.size())).ok());
    raft::Snapshot bad = MakeSnapshot(20, 2);
    CHECK(store->Save(4, bad.meta, PiecesData(data, 1 << 20, data.size() + 1)).IsInvalidArgument());
  }
  env.SimulateCrash(FaultInjectionEnv::CrashMode::kDropUnsynced, 1);
  env.Restart();
  auto store = OpenStore(&env);
  raft::Snapshot got;
  REQUIRE(store->LoadNewest(4, &got).ok());
  CHECK(got == want);
  CHECK(store->List(4) == std::vector<raft::Index>{10});
}

TEST_CASE("only the newest two snapshots of a group are kept", "[snapshot]") {
  FaultInjectionEnv env;
  auto store = OpenStore(&env);
  for (raft::Index i : {10, 20, 30, 40}) REQUIRE(store->Save(1, MakeSnapshot(i, 1)).ok());
  REQUIRE(store->Save(2, MakeSnapshot(5, 1)).ok());
  CHECK(store->List(1) == std::vector<raft::Index>{30, 40});
  CHECK(store->List(2) == std::vector<raft::Index>{5});
  std::vector<std::string> names;
  REQUIRE(env.ListDir(kDir, &names).ok());
  CHECK(names.size() == 3);
  auto reopened = OpenStore(&env);
  CHECK(reopened->List(1) == std::vector<raft::Index>{30, 40});
}

TEST_CASE("a torn temp file from a crashed save is ignored and removed", "[snapshot]") {
  FaultInjectionEnv env;
  {
    auto store = OpenStore(&env);
    REQUIRE(store->Save(1, MakeSnapshot(10, 1)).ok());
    // A save of index 20 that crashed halfway through writing its temp file.
    std::unique_ptr<WritableFile> f;
    REQUIRE(env.OpenWritable(store->SnapshotPath(1, 20) + ".tmp", &f).ok());
    REQUIRE(f->Append("half a snap").ok());
    REQUIRE(f->Sync().ok());
    REQUIRE(env.SyncDir(kDir).ok());
  }
  auto store = OpenStore(&env);
  raft::Snapshot got;
  REQUIRE(store->LoadNewest(1, &got).ok());
  CHECK(got.meta.index == 10);
  std::vector<std::string> names;
  REQUIRE(env.ListDir(kDir, &names).ok());
  CHECK(names.size() == 1);
}

TEST_CASE("a damaged newest snapshot falls back to the previous one", "[snapshot]") {
  QuietLog quiet;
  FaultInjectionEnv env;
  auto store = OpenStore(&env);
  REQUIRE(store->Save(1, MakeSnapshot(10, 1)).ok());
  REQUIRE(store->Save(1, MakeSnapshot(20, 2)).ok());
  REQUIRE(env.CorruptByteForTest(store->SnapshotPath(1, 20), 30, 0x04).ok());
  raft::Snapshot got;
  REQUIRE(store->LoadNewest(1, &got).ok());
  CHECK(got == MakeSnapshot(10, 1));
  CHECK(store->Load(1, 20, &got).IsCorruption());
  REQUIRE(env.CorruptByteForTest(store->SnapshotPath(1, 10), 3, 0x04).ok());
  CHECK(store->LoadNewest(1, &got).IsNotFound());
}

}  // namespace
}  // namespace kv::storage
