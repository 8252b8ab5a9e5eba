// FaultInjectionEnv: an in-memory Env for tests that can simulate a crash.
//
// Every file remembers what its last successful Sync made durable, and every
// directory what its last SyncDir made durable. SimulateCrash() plays power
// loss: names created, renamed or removed since their directory's last SyncDir
// revert, and each file falls back to its synced contents, optionally keeping
// a random prefix of its unsynced writes with the last kept write torn at a
// random byte. Handles opened before a crash fail with IOError afterwards, as
// the process that held them is gone. Syncs can be made to fail, and directory
// syncs are counted so tests can assert them. Directories exist only as the
// names of their files: renaming one moves the files under it (a crash
// then treats them as names new in their new directory).
// Thread safety: all methods may be called from any thread; one internal mutex
// serialises them (including operations on files and handles).
#pragma once

#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "storage/env.h"

namespace kv::storage {

class FaultInjectionEnv : public Env {
 public:
  enum class CrashMode {
    kDropUnsynced,      // every unsynced write is lost
    kKeepRandomPrefix,  // a random prefix of the unsynced writes survives, the last one torn
  };

  FaultInjectionEnv() = default;
  FaultInjectionEnv(const FaultInjectionEnv&) = delete;
  FaultInjectionEnv& operator=(const FaultInjectionEnv&) = delete;

  Status OpenWritable(const std::string& path, std::unique_ptr<WritableFile>* file) override;
  Status OpenReadable(const std::string& path, std::unique_ptr<ReadableFile>* file) override;
  Status CreateDir(const std::string& path) override;
  Status ListDir(const std::string& path, std::vector<std::string>* names) override;
  Status RemoveFile(const std::string& path) override;
  Status Rename(const std::string& from, const std::string& to) override;
  Status SyncDir(const std::string& path) override;
  Status FileSize(const std::string& path, uint64_t* size) override;

  // Simulates power loss as described above; `seed` drives the random choices
  // of kKeepRandomPrefix. Handles opened earlier fail from now on, and so does
  // every other call until Restart: the crashed process may still be running
  // in the test, and must not touch the files the next one will see.
  void SimulateCrash(CrashMode mode, uint64_t seed);
  // Lets calls through again, as for a process started after the crash.
  void Restart();

  // The next n calls to WritableFile::Sync fail with IOError and make nothing
  // durable.
  void FailNextSyncs(int n);

  // While syncs are held, WritableFile::Sync blocks (letting every other call
  // proceed) until ReleaseSyncs. Lets tests freeze the WAL inside a sync.
  void HoldSyncs();
  void ReleaseSyncs();
  // Blocks until at least n Sync calls are waiting on a hold.
  void WaitForHeldSyncs(int n);

  // Successful SyncDir calls on `path` so far.
  int DirSyncCount(const std::string& path) const;

  // Test hook: XORs the byte at `offset` of a file with `mask`, in both its
  // current and its synced contents (as if the disk had changed it).
  Status CorruptByteForTest(const std::string& path, uint64_t offset, uint8_t mask);

 private:
  struct File;
  struct Handle;
  class Writable;
  class Readable;
  using FileMap = std::map<std::string, std::shared_ptr<File>>;

  // IOError for a handle from before the last crash, or while the env is down.
  // REQUIRES: mu_ held.
  Status CheckEpoch(uint64_t epoch) const;
  // IOError while the env is down. REQUIRES: mu_ held.
  Status CheckUp() const;

  mutable std::mutex mu_;
  FileMap files_;    // guarded by mu_: the names as the running process sees them
  FileMap durable_;  // guarded by mu_: the names as of each directory's last SyncDir
  std::map<std::string, int> dir_syncs_;  // guarded by mu_
  uint64_t epoch_ = 0;                    // guarded by mu_: bumped by every crash
  bool down_ = false;                     // guarded by mu_: from a crash to Restart
  int failing_syncs_ = 0;                 // guarded by mu_
  bool hold_syncs_ = false;               // guarded by mu_
  int held_syncs_ = 0;                    // guarded by mu_
  std::condition_variable sync_cv_;       // signalled when the two above change
};

}  // namespace kv::storage
