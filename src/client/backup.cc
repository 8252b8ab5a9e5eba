#include "kvstore/backup.h"

#include <chrono>
#include <memory>

#include "storage/backup_file.h"

namespace kv::client {

namespace {

Result ErrorOf(const kv::Status& s) {
  return Result{s.IsNotFound() ? Code::kNotFound : Code::kError, {}, s.message()};
}

}  // namespace

uint64_t BackupInfo::keys() const {
  uint64_t n = 0;
  for (const Part& p : parts) n += p.keys;
  return n;
}

Result SaveBackup(Client& client, const std::string& path, BackupInfo* info,
                  const std::function<void(const BackupInfo::Part&)>& progress) {
  *info = BackupInfo{};
  info->created_ms = static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                               std::chrono::system_clock::now().time_since_epoch())
                                               .count());
  ShardMap map;
  Result r = client.Shards(&map);
  if (!r.ok()) return r;
  storage::Env* env = storage::Env::Posix();
  std::unique_ptr<storage::BackupWriter> writer;
  kv::Status s = storage::BackupWriter::Create(env, path, &writer);
  if (!s.ok()) return ErrorOf(s);
  const uint32_t parts = map.shards == 0 ? 1 : map.shards;
  for (uint32_t shard = 0; shard < parts; ++shard) {
    BackupInfo::Part part;
    part.shard = shard;
    r = client.BackupShard(
        shard,
        [&](const BackupPartInfo& begun) {
          if (shard == 0) {
            // The first part's node names the cluster for the header.
            info->cluster = begun.cluster;
            info->shards = begun.shards;
            info->replicas = begun.replicas;
            storage::BackupHeader header;
            header.cluster = begun.cluster;
            header.created_ms = info->created_ms;
            header.shards = begun.shards;
            header.replicas = begun.replicas;
            s = writer->WriteHeader(header);
          } else if (begun.shards != info->shards) {
            s = kv::Status::InvalidArgument("shard " + std::to_string(shard) + "'s node says " +
                                            std::to_string(begun.shards) + " shards, the first " +
                                            std::to_string(info->shards));
          }
          part.index = begun.index;
          part.keys = begun.keys;
          part.bytes = begun.size;
          if (s.ok()) {
            s = writer->BeginPart(
                storage::BackupPart{shard, begun.index, begun.clock_ms, begun.keys, begun.size, 0});
          }
          return s.ok();
        },
        [&](std::string_view data) {
          s = writer->Append(data);
          return s.ok();
        });
    if (!s.ok()) return ErrorOf(s);
    if (!r.ok()) {
      r.error = "shard " + std::to_string(shard) + ": " + r.error;
      return r;
    }
    info->parts.push_back(part);
    if (progress) progress(part);
  }
  s = writer->Finish();
  if (!s.ok()) return ErrorOf(s);
  info->file_bytes = writer->bytes_written();
  return Result{};
}

Result ReadBackupInfo(const std::string& path, BackupInfo* info) {
  *info = BackupInfo{};
  storage::BackupHeader header;
  std::vector<storage::BackupPart> parts;
  kv::Status s =
      storage::ReadBackup(storage::Env::Posix(), path, &header, &parts, &info->file_bytes);
  if (!s.ok()) return ErrorOf(s);
  info->cluster = header.cluster;
  info->created_ms = header.created_ms;
  info->shards = header.shards;
  info->replicas = header.replicas;
  for (const storage::BackupPart& p : parts) {
    info->parts.push_back(BackupInfo::Part{p.shard, p.index, p.keys, p.size});
  }
  return Result{};
}

}  // namespace kv::client
