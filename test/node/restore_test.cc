#include "node/restore.h"

#include <catch2/catch.hpp>

#include "kv/state_machine.h"
#include "storage/backup_file.h"
#include "storage/fault_injection_env.h"
#include "storage/node_storage.h"

namespace kv::node {
namespace {

// A backup of an unsharded cluster holding `keys` keys at index keys + 10.
void WriteBackup(storage::Env* env, const std::string& path, int keys) {
  StateMachine sm;
  bool dup = false;
  for (int i = 0; i < keys; ++i) {
    Command put;
    put.op = OpType::kPut;
    put.key = "k" + std::to_string(i);
    put.value = "v";
    sm.Apply(static_cast<uint64_t>(i + 1), put, &dup);
  }
  sm.Skip(static_cast<uint64_t>(keys + 10));
  const std::string data = sm.TakeDataView().Serialize();
  std::unique_ptr<storage::BackupWriter> w;
  REQUIRE(storage::BackupWriter::Create(env, path, &w).ok());
  REQUIRE(w->WriteHeader(storage::BackupHeader{"prod", 1, 0, 3}).ok());
  REQUIRE(w->BeginPart(
               storage::BackupPart{0, sm.applied_index(), sm.clock_ms(), sm.size(), data.size(), 0})
              .ok());
  REQUIRE(w->Append(data).ok());
  REQUIRE(w->Finish().ok());
}

NodeConfig Member(uint64_t id) {
  NodeConfig cfg;
  cfg.id = id;
  for (uint64_t n = 1; n <= 3; ++n) cfg.peers[n] = HostPort{"10.0.0." + std::to_string(n), 8080};
  cfg.data_dir = "/d/node-" + std::to_string(id);
  return cfg;
}

TEST_CASE("restore: a member's data dir holds the backup at its index, past the bootstrap") {
  storage::FaultInjectionEnv env;
  REQUIRE(env.CreateDir("/d").ok());
  std::string summary;
  SECTION("a backup past the founders' entries keeps its index") {
    WriteBackup(&env, "/d/b", 20);
    const Status restored = RestoreDataDir(&env, Member(2), false, "/d/b", &summary);
    INFO(restored.ToString());
    REQUIRE(restored.ok());
    std::unique_ptr<storage::NodeStorage> storage;
    REQUIRE(storage::NodeStorage::Open(&env, "/d/node-2", {}, &storage).ok());
    const raft::SnapshotMeta meta = storage->Group(kMainGroup)->snapshot_meta();
    CHECK(meta.index == 30);
    CHECK(meta.term == 2);
    CHECK(meta.conf.voters == std::vector<raft::NodeId>{1, 2, 3});
    CHECK(storage->Group(kMainGroup)->hard_state().commit == 30);
    CHECK(summary.find("20 of the backup's 20 keys") != std::string::npos);
    CHECK(summary.find("--cluster prod") != std::string::npos);
  }
  SECTION("a backup within them is moved past them") {
    // An empty shard at index 0 would sit inside the three bootstrap entries.
    StateMachine empty;
    const std::string data = empty.TakeDataView().Serialize();
    std::unique_ptr<storage::BackupWriter> w;
    REQUIRE(storage::BackupWriter::Create(&env, "/d/b0", &w).ok());
    REQUIRE(w->WriteHeader(storage::BackupHeader{"default", 1, 0, 3}).ok());
    REQUIRE(w->BeginPart(storage::BackupPart{0, 0, 0, 0, data.size(), 0}).ok());
    REQUIRE(w->Append(data).ok());
    REQUIRE(w->Finish().ok());
    REQUIRE(RestoreDataDir(&env, Member(1), false, "/d/b0", &summary).ok());
    std::unique_ptr<storage::NodeStorage> storage;
    REQUIRE(storage::NodeStorage::Open(&env, "/d/node-1", {}, &storage).ok());
    CHECK(storage->Group(kMainGroup)->snapshot_meta().index == 4);
  }
  SECTION("a used data dir and a failed restore's leftovers are refused, nothing written") {
    WriteBackup(&env, "/d/b", 5);
    REQUIRE(env.CreateDir("/d/node-3").ok());
    std::unique_ptr<storage::WritableFile> f;
    REQUIRE(env.OpenWritable("/d/node-3/IDENTITY", &f).ok());
    CHECK(RestoreDataDir(&env, Member(3), false, "/d/b", &summary).IsInvalidArgument());
    REQUIRE(env.OpenWritable("/d/node-1.restoring/IDENTITY", &f).ok());
    const Status s = RestoreDataDir(&env, Member(1), false, "/d/b", &summary);
    CHECK(s.IsInvalidArgument());
    CHECK(s.message().find("remove it") != std::string::npos);
    std::vector<std::string> names;
    (void)env.ListDir("/d/node-1", &names);
    CHECK(names.empty());
  }
  SECTION("a damaged backup is refused before anything is written") {
    WriteBackup(&env, "/d/b", 5);
    REQUIRE(env.CorruptByteForTest("/d/b", 20, 0x40).ok());
    CHECK(RestoreDataDir(&env, Member(1), false, "/d/b", &summary).IsCorruption());
    std::vector<std::string> names;
    REQUIRE(env.ListDir("/d", &names).ok());
    CHECK(names == std::vector<std::string>{"b"});
  }
}

}  // namespace
}  // namespace kv::node
