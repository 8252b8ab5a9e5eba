// Backup files: what `kvctl snapshot save` writes and `kvctl snapshot
// status` and `kvstore restore` read, a copy of a whole cluster's data.
//
// A backup holds one part per shard (one for an unsharded cluster), each
// the shard's state at one linearizable point: a state machine snapshot
// (kv/state_machine.h) without client sessions or members. The layout
// (integers are varints unless said otherwise; docs/protocol.md, "Backups"):
//   "KVBACKUP", format version 1
//   header: cluster name (length-prefixed), creation time (ms since the
//     Unix epoch), shards (0: unsharded), replicas
//   per part, in shard order: shard, index, clock_ms, keys, size, then
//     `size` bytes of data
//   the CRC32C of every byte before it, as 8 bytes little-endian (fixed64)
//
// A backup is written like every durable file here: to a temporary file,
// synced, then renamed into place (and the directory synced), so a crash
// or an error never leaves a partial backup under the name asked for.
// Thread safety: none; one thread per writer.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "storage/env.h"

namespace kv::storage {

struct BackupHeader {
  std::string cluster;
  uint64_t created_ms = 0;
  uint32_t shards = 0;  // 0: an unsharded cluster (one part)
  uint32_t replicas = 0;
  // The parts a complete backup holds.
  uint32_t parts() const { return shards == 0 ? 1 : shards; }
};

struct BackupPart {
  uint32_t shard = 0;
  uint64_t index = 0;     // the log index the shard's state is at
  uint64_t clock_ms = 0;  // its state machine's clock (expiry)
  uint64_t keys = 0;
  uint64_t size = 0;    // bytes of data
  uint64_t offset = 0;  // where the data starts in the file (set by reading)
};

class BackupWriter {
 public:
  // Starts a backup at `path` (written to path + ".tmp" until Finish).
  static Status Create(Env* env, const std::string& path, std::unique_ptr<BackupWriter>* writer);
  // Removes the temporary file unless Finish succeeded.
  ~BackupWriter();

  Status WriteHeader(const BackupHeader& header);
  // Starts the next part: shards in order, after the header.
  Status BeginPart(const BackupPart& part);
  // The part's data, in order. InvalidArgument past its announced size.
  Status Append(std::string_view data);
  // Checks that every part is complete, writes the checksum, syncs and
  // renames the file into place.
  Status Finish();
  // The file's length so far (after Finish, the whole file's).
  uint64_t bytes_written() const { return written_; }

 private:
  BackupWriter(Env* env, std::string path) : env_(env), path_(std::move(path)) {}
  Status Write(std::string_view bytes);

  Env* const env_;
  const std::string path_;
  std::unique_ptr<WritableFile> file_;
  BackupHeader header_;
  bool has_header_ = false;
  uint32_t parts_begun_ = 0;
  uint64_t part_left_ = 0;  // bytes of the current part still to come
  uint64_t written_ = 0;
  uint32_t crc_ = 0;
  bool finished_ = false;
};

// Reads a backup's header and parts and verifies its checksum, reading the
// file once in bounded pieces. Corruption saying what is wrong (or IOError,
// NotFound) otherwise. *file_size (if given) gets the file's length.
Status ReadBackup(Env* env, const std::string& path, BackupHeader* header,
                  std::vector<BackupPart>* parts, uint64_t* file_size = nullptr);
// A part's data (after ReadBackup said the file is whole).
Status ReadBackupPart(Env* env, const std::string& path, const BackupPart& part, std::string* data);

}  // namespace kv::storage
