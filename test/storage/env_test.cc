#include "storage/env.h"

#include <stdlib.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <memory>
#include <string>

#include "storage/fault_injection_env.h"

namespace kv::storage {
namespace {

using Mode = FaultInjectionEnv::CrashMode;

std::string Contents(Env* env, const std::string& path) {
  std::string out;
  Status s = ReadFileToString(env, path, &out);
  return s.ok() ? out : "<" + s.ToString() + ">";
}

void WriteSynced(FaultInjectionEnv* env, const std::string& path, const std::string& data) {
  std::unique_ptr<WritableFile> f;
  REQUIRE(env->OpenWritable(path, &f).ok());
  REQUIRE(f->Append(data).ok());
  REQUIRE(f->Sync().ok());
  REQUIRE(env->SyncDir("d").ok());
}

TEST_CASE("a crash keeps synced data and drops unsynced data", "[env]") {
  FaultInjectionEnv env;
  std::unique_ptr<WritableFile> f;
  REQUIRE(env.OpenWritable("d/f", &f).ok());
  REQUIRE(f->Append("synced").ok());
  REQUIRE(f->Sync().ok());
  REQUIRE(env.SyncDir("d").ok());
  REQUIRE(f->Append("-lost").ok());
  CHECK(Contents(&env, "d/f") == "synced-lost");
  env.SimulateCrash(Mode::kDropUnsynced, 1);
  env.Restart();
  CHECK(Contents(&env, "d/f") == "synced");
  CHECK(f->Append("x").IsIOError());  // the old process is gone
}

TEST_CASE("a crash forgets names whose directory was not synced", "[env]") {
  FaultInjectionEnv env;
  WriteSynced(&env, "d/kept", "k");
  std::unique_ptr<WritableFile> f;
  REQUIRE(env.OpenWritable("d/new", &f).ok());
  REQUIRE(f->Append("n").ok());
  REQUIRE(f->Sync().ok());
  REQUIRE(env.Rename("d/kept", "d/renamed").ok());
  env.SimulateCrash(Mode::kDropUnsynced, 1);
  env.Restart();
  std::vector<std::string> names;
  REQUIRE(env.ListDir("d", &names).ok());
  CHECK(names == std::vector<std::string>{"kept"});
  CHECK(env.DirSyncCount("d") == 1);
}

TEST_CASE("a crash may keep a torn prefix of the unsynced writes", "[env]") {
  for (uint64_t seed = 0; seed < 50; ++seed) {
    FaultInjectionEnv env;
    WriteSynced(&env, "d/f", "base:");
    std::unique_ptr<WritableFile> f;
    REQUIRE(env.OpenWritable("d/f", &f).ok());
    const std::string writes =
        "aaaa"
        "bbbb"
        "cccc";
    for (int i = 0; i < 3; ++i) REQUIRE(f->Append(writes.substr(4 * i, 4)).ok());
    env.SimulateCrash(Mode::kKeepRandomPrefix, seed);
    env.Restart();
    const std::string got = Contents(&env, "d/f");
    CAPTURE(seed, got);
    REQUIRE(got.substr(0, 5) == "base:");
    CHECK(writes.compare(0, got.size() - 5, got.substr(5)) == 0);
  }
}

TEST_CASE("a failed sync makes nothing durable", "[env]") {
  FaultInjectionEnv env;
  WriteSynced(&env, "d/f", "a");
  std::unique_ptr<WritableFile> f;
  REQUIRE(env.OpenWritable("d/f", &f).ok());
  REQUIRE(f->Append("b").ok());
  env.FailNextSyncs(1);
  CHECK(f->Sync().IsIOError());
  env.SimulateCrash(Mode::kDropUnsynced, 1);
  env.Restart();
  CHECK(Contents(&env, "d/f") == "a");
}

TEST_CASE("allocate and truncate zero-fill and cut", "[env]") {
  FaultInjectionEnv env;
  std::unique_ptr<WritableFile> f;
  REQUIRE(env.OpenWritable("d/f", &f).ok());
  REQUIRE(f->Allocate(8).ok());
  REQUIRE(f->WriteAt(2, "xy").ok());
  CHECK(Contents(&env, "d/f") == std::string("\0\0xy\0\0\0\0", 8));
  REQUIRE(f->Truncate(3).ok());
  CHECK(Contents(&env, "d/f") == std::string("\0\0x", 3));
  uint64_t size = 0;
  REQUIRE(env.FileSize("d/f", &size).ok());
  CHECK(size == 3);
  CHECK(env.FileSize("d/missing", &size).IsNotFound());
}

TEST_CASE("the posix env writes, allocates, renames and lists real files", "[env]") {
  char tmpl[] = "/tmp/kv_env_test_XXXXXX";
  REQUIRE(mkdtemp(tmpl) != nullptr);
  const std::string dir = tmpl;
  Env* env = Env::Posix();
  {
    std::unique_ptr<WritableFile> f;
    REQUIRE(env->OpenWritable(dir + "/a", &f).ok());
    REQUIRE(f->Allocate(4096).ok());
    REQUIRE(f->WriteAt(10, "hello").ok());
    REQUIRE(f->Sync().ok());
    uint64_t size = 0;
    REQUIRE(f->Size(&size).ok());
    CHECK(size == 4096);
  }
  uint64_t size = 0;
  REQUIRE(env->FileSize(dir + "/a", &size).ok());
  CHECK(size == 4096);
  REQUIRE(env->Rename(dir + "/a", dir + "/b").ok());
  REQUIRE(env->SyncDir(dir).ok());
  std::vector<std::string> names;
  REQUIRE(env->ListDir(dir, &names).ok());
  CHECK(names == std::vector<std::string>{"b"});
  std::unique_ptr<ReadableFile> r;
  REQUIRE(env->OpenReadable(dir + "/b", &r).ok());
  std::string got;
  REQUIRE(r->Read(10, 5, &got).ok());
  CHECK(got == "hello");
  REQUIRE(r->Read(4094, 100, &got).ok());
  CHECK(got.size() == 2);
  CHECK(env->OpenReadable(dir + "/missing", &r).IsNotFound());
  REQUIRE(env->RemoveFile(dir + "/b").ok());
  REQUIRE(::rmdir(dir.c_str()) == 0);
}

}  // namespace
}  // namespace kv::storage
