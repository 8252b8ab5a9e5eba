// Env: the file-system seam of the storage layer.
//
// The write-ahead log and the snapshot store touch files only through an Env,
// so tests can swap in FaultInjectionEnv (in-memory files that forget whatever
// was not synced when a crash is simulated). PosixEnv (Env::Posix()) is the
// real one. Every operation returns a Status; none throws.
// Thread safety: an Env may be used from many threads at once. A WritableFile
// is used by one thread at a time; a ReadableFile may be read from many
// threads at once (positional reads only).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace kv::storage {

// A file open for writing. Data written is not durable until Sync returns OK.
class WritableFile {
 public:
  virtual ~WritableFile() = default;

  // Writes data at `offset`, growing the file if it ends before offset + size.
  virtual Status WriteAt(uint64_t offset, std::string_view data) = 0;
  // Writes data at the current end of the file.
  virtual Status Append(std::string_view data) = 0;
  // Makes the file's data durable (fdatasync). On error the unsynced data may
  // be lost even if a later Sync succeeds, so callers treat it as fatal.
  virtual Status Sync() = 0;
  // Reserves space so that the file is at least `size` bytes long; the new
  // bytes read as zeros (fallocate). Durable after the next Sync.
  virtual Status Allocate(uint64_t size) = 0;
  // Cuts (or zero-extends) the file to exactly `size` bytes.
  virtual Status Truncate(uint64_t size) = 0;
  // The current length of the file in bytes.
  virtual Status Size(uint64_t* size) const = 0;
};

// A file open for positional reads.
class ReadableFile {
 public:
  virtual ~ReadableFile() = default;

  // Replaces *out with up to n bytes starting at offset: fewer only at the end
  // of the file.
  virtual Status Read(uint64_t offset, size_t n, std::string* out) const = 0;
  virtual Status Size(uint64_t* size) const = 0;
};

class Env {
 public:
  virtual ~Env() = default;

  // The process-wide PosixEnv. Never deleted.
  static Env* Posix();

  // Opens `path` for writing, creating it (empty) if it does not exist; an
  // existing file keeps its contents. A new file's name is durable only after
  // SyncDir on its directory.
  virtual Status OpenWritable(const std::string& path, std::unique_ptr<WritableFile>* file) = 0;
  // Opens an existing file for reading. NotFound if it does not exist.
  virtual Status OpenReadable(const std::string& path, std::unique_ptr<ReadableFile>* file) = 0;
  // Creates a directory; OK if it already exists.
  virtual Status CreateDir(const std::string& path) = 0;
  // Replaces *names with the names (not paths) of the entries in a directory.
  virtual Status ListDir(const std::string& path, std::vector<std::string>* names) = 0;
  virtual Status RemoveFile(const std::string& path) = 0;
  // Atomically replaces `to` with `from`. Durable after SyncDir.
  virtual Status Rename(const std::string& from, const std::string& to) = 0;
  // Makes the directory's entries (creations, renames, removals) durable.
  virtual Status SyncDir(const std::string& path) = 0;
  virtual Status FileSize(const std::string& path, uint64_t* size) = 0;
};

// The directory part of a path ("." for a bare name), as SyncDir takes it.
std::string DirName(const std::string& path);

// Reads a whole file into *out.
Status ReadFileToString(Env* env, const std::string& path, std::string* out);

}  // namespace kv::storage
