// Backups of a whole cluster (docs/protocol.md, "Backups"): SaveBackup
// writes one through a Client, ReadBackupInfo checks one, and `kvstore
// restore` makes a new cluster's members from one.
//
// A backup holds every shard's keys, values, versions and deadlines, each
// shard at one linearizable point read through its leader (not one point
// for the whole cluster: shards are independent Raft groups). Client
// sessions and members are left out: a restored cluster is a new one.
// Thread safety: as the Client passed in (one thread at a time).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "kvstore/client.h"

namespace kv::client {

struct BackupInfo {
  std::string cluster;
  uint64_t created_ms = 0;  // when the save started, ms since the Unix epoch
  uint32_t shards = 0;      // 0: an unsharded cluster (one part)
  uint32_t replicas = 0;
  struct Part {
    uint32_t shard = 0;
    uint64_t index = 0;  // the log index the shard was read at
    uint64_t keys = 0;
    uint64_t bytes = 0;  // of its data in the file
  };
  std::vector<Part> parts;
  uint64_t file_bytes = 0;
  uint64_t keys() const;
};

// Saves a backup of the cluster `client` talks to at `path`: streamed to
// path.tmp, synced, then renamed (nothing is left under `path` or path.tmp
// on failure). `progress` (if given) hears of each part once written. On
// kOk, *info describes the file. Needs the admin role on a secure cluster.
Result SaveBackup(Client& client, const std::string& path, BackupInfo* info,
                  const std::function<void(const BackupInfo::Part&)>& progress = {});

// Reads a backup's header and verifies its checksum (the whole file is
// read). kError saying what is wrong with a damaged file or one that is
// not a backup (or that cannot be read); kNotFound when there is no file.
Result ReadBackupInfo(const std::string& path, BackupInfo* info);

}  // namespace kv::client
