#include "storage/backup_file.h"

#include <catch2/catch.hpp>

#include "storage/fault_injection_env.h"

namespace kv::storage {
namespace {

constexpr char kPath[] = "/b/cluster.backup";

BackupHeader Header(uint32_t shards) {
  BackupHeader h;
  h.cluster = "prod";
  h.created_ms = 1767225600000;
  h.shards = shards;
  h.replicas = 3;
  return h;
}

std::string PartData(uint32_t shard) { return std::string(1000 + shard * 333, 'a' + shard); }

// Writes a backup of `shards` shards (one part when 0), each part's data
// handed over in pieces of 100 bytes.
Status WriteBackup(Env* env, uint32_t shards) {
  std::unique_ptr<BackupWriter> w;
  Status s = BackupWriter::Create(env, kPath, &w);
  if (s.ok()) s = w->WriteHeader(Header(shards));
  for (uint32_t i = 0; s.ok() && i < Header(shards).parts(); ++i) {
    const std::string data = PartData(i);
    s = w->BeginPart(BackupPart{i, 100 + i, 5000 + i, 10 + i, data.size(), 0});
    for (size_t at = 0; s.ok() && at < data.size(); at += 100) {
      s = w->Append(std::string_view(data).substr(at, 100));
    }
  }
  return s.ok() ? w->Finish() : s;
}

TEST_CASE("a backup reads back: header, parts and their data", "[backup]") {
  FaultInjectionEnv env;
  REQUIRE(env.CreateDir("/b").ok());
  for (uint32_t shards : {0u, 1u, 4u}) {
    REQUIRE(WriteBackup(&env, shards).ok());
    BackupHeader h;
    std::vector<BackupPart> parts;
    uint64_t size = 0;
    REQUIRE(ReadBackup(&env, kPath, &h, &parts, &size).ok());
    CHECK(h.cluster == "prod");
    CHECK(h.created_ms == 1767225600000);
    CHECK(h.shards == shards);
    CHECK(h.replicas == 3);
    REQUIRE(parts.size() == (shards == 0 ? 1 : shards));
    for (uint32_t i = 0; i < parts.size(); ++i) {
      CHECK(parts[i].shard == i);
      CHECK(parts[i].index == 100 + i);
      CHECK(parts[i].clock_ms == 5000 + i);
      CHECK(parts[i].keys == 10 + i);
      std::string data;
      REQUIRE(ReadBackupPart(&env, kPath, parts[i], &data).ok());
      CHECK(data == PartData(i));
    }
    uint64_t on_disk = 0;
    REQUIRE(env.FileSize(kPath, &on_disk).ok());
    CHECK(size == on_disk);
  }
}

TEST_CASE("a backup survives a crash once finished; an unfinished one leaves nothing", "[backup]") {
  FaultInjectionEnv env;
  REQUIRE(env.CreateDir("/b").ok());
  REQUIRE(env.SyncDir("/b").ok());
  REQUIRE(WriteBackup(&env, 2).ok());
  env.SimulateCrash(FaultInjectionEnv::CrashMode::kDropUnsynced, 1);
  env.Restart();
  BackupHeader h;
  std::vector<BackupPart> parts;
  REQUIRE(ReadBackup(&env, kPath, &h, &parts).ok());

  // A writer given up on (an error mid-way) removes its temporary file and
  // never touches the finished backup.
  {
    std::unique_ptr<BackupWriter> w;
    REQUIRE(BackupWriter::Create(&env, kPath, &w).ok());
    REQUIRE(w->WriteHeader(Header(2)).ok());
    REQUIRE(w->BeginPart(BackupPart{0, 1, 1, 1, 10, 0}).ok());
    CHECK(w->Append("0123456789x").IsInvalidArgument());                     // over the part's size
    CHECK(w->BeginPart(BackupPart{1, 1, 1, 1, 10, 0}).IsInvalidArgument());  // part 0 unfinished
    CHECK(w->Finish().IsInvalidArgument());
  }
  std::vector<std::string> names;
  REQUIRE(env.ListDir("/b", &names).ok());
  CHECK(names == std::vector<std::string>{"cluster.backup"});
  REQUIRE(ReadBackup(&env, kPath, &h, &parts).ok());

  std::unique_ptr<BackupWriter> w;
  REQUIRE(BackupWriter::Create(&env, kPath, &w).ok());
  REQUIRE(w->WriteHeader(Header(2)).ok());
  CHECK(w->BeginPart(BackupPart{1, 1, 1, 1, 10, 0}).IsInvalidArgument());  // shard 0 first
}

TEST_CASE("every flipped bit and every cut of a backup is refused as damaged", "[backup]") {
  FaultInjectionEnv env;
  REQUIRE(env.CreateDir("/b").ok());
  REQUIRE(WriteBackup(&env, 2).ok());
  std::string whole;
  REQUIRE(ReadFileToString(&env, kPath, &whole).ok());
  BackupHeader h;
  std::vector<BackupPart> parts;
  for (uint64_t at = 0; at < whole.size(); at += 7) {
    for (uint8_t mask : {0x01, 0x80}) {
      REQUIRE(env.CorruptByteForTest(kPath, at, mask).ok());
      const Status s = ReadBackup(&env, kPath, &h, &parts);
      INFO("byte " << at << " mask " << int(mask) << ": " << s.ToString());
      CHECK(s.IsCorruption());
      REQUIRE(env.CorruptByteForTest(kPath, at, mask).ok());
    }
  }
  for (size_t n : {size_t{0}, size_t{5}, size_t{20}, whole.size() / 2, whole.size() - 1}) {
    std::unique_ptr<WritableFile> f;
    REQUIRE(env.OpenWritable("/b/cut", &f).ok());
    REQUIRE(f->Truncate(0).ok());
    REQUIRE(f->Append(whole.substr(0, n)).ok());
    const Status s = ReadBackup(&env, "/b/cut", &h, &parts);
    INFO("cut at " << n << ": " << s.ToString());
    CHECK(s.IsCorruption());
  }
  CHECK(ReadBackup(&env, "/b/none", &h, &parts).IsNotFound());
}

}  // namespace
}  // namespace kv::storage
