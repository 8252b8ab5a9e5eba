#include "node/restore.h"

#include <chrono>

#include "kv/layout.h"
#include "kv/state_machine.h"
#include "node/shard_manager.h"
#include "storage/backup_file.h"
#include "storage/node_storage.h"

namespace kv::node {

namespace {

// The term restored groups start in (see below).
constexpr raft::Term kRestoredTerm = 2;

// Decodes part `part` of the backup into *sm and checks it is what the
// header says.
Status LoadPart(storage::Env* env, const std::string& path, const storage::BackupPart& part,
                std::string* data, StateMachine* sm) {
  Status s = storage::ReadBackupPart(env, path, part, data);
  if (s.ok()) s = sm->Restore(*data);
  if (s.ok() && (sm->applied_index() != part.index || sm->size() != part.keys)) {
    s = Status::Corruption("its header says index " + std::to_string(part.index) + " and " +
                           std::to_string(part.keys) + " keys");
  }
  if (!s.ok()) {
    return Status::Corruption("backup " + path + ", part of shard " + std::to_string(part.shard) +
                              ": " + s.message());
  }
  return Status::OK();
}

}  // namespace

Status RestoreDataDir(storage::Env* env, NodeConfig cfg, bool cluster_given,
                      const std::string& backup_path, std::string* summary) {
  storage::BackupHeader header;
  std::vector<storage::BackupPart> parts;
  Status s = storage::ReadBackup(env, backup_path, &header, &parts);
  if (!s.ok()) return s;
  if (!cluster_given) cfg.cluster = header.cluster;
  cfg.shards = header.shards;
  cfg.replicas = header.replicas;
  // Restore listens on nothing: the members' addresses need no trust here
  // (the node started on the data dir checks them as always).
  cfg.insecure = true;
  s = cfg.Finish();
  if (!s.ok()) return s;

  std::vector<std::string> names;
  s = env->ListDir(cfg.data_dir, &names);
  if (s.ok() && !names.empty()) {
    return Status::InvalidArgument("data dir " + cfg.data_dir +
                                   " exists and is not empty; restore makes a new one");
  }
  // Built under another name and renamed when whole: a node never starts
  // from half a restore.
  const std::string final_dir = cfg.data_dir;
  cfg.data_dir = final_dir + ".restoring";
  if (env->ListDir(cfg.data_dir, &names).ok() && !names.empty()) {
    return Status::InvalidArgument(cfg.data_dir +
                                   " exists: a restore that failed left it; remove it and retry");
  }

  // Every part decodes before anything is written.
  std::string data;
  uint64_t keys = 0;
  for (const storage::BackupPart& part : parts) {
    StateMachine sm;
    s = LoadPart(env, backup_path, part, &data, &sm);
    if (!s.ok()) return s;
    keys += part.keys;
  }

  s = ClaimDataDir(env, cfg);
  if (!s.ok()) return s;
  storage::StorageOptions options;
  options.wal.segment_size = cfg.wal_segment_bytes;
  std::unique_ptr<storage::NodeStorage> storage;
  s = storage::NodeStorage::Open(env, cfg.data_dir, options, &storage);
  if (!s.ok()) return s;

  std::vector<raft::NodeId> members;
  for (const auto& entry : cfg.peers) members.push_back(entry.first);
  size_t restored_keys = 0, groups = 0;
  for (const auto& [group, voters] : FoundingGroups(cfg.id, members, cfg.shards, cfg.replicas)) {
    StateMachine sm;
    const int shard = ShardOfGroup(group, cfg.shards);
    if (cfg.shards == 0 || shard >= 0) {
      s = LoadPart(env, backup_path, parts[shard < 0 ? 0 : static_cast<size_t>(shard)], &data, &sm);
      if (!s.ok()) return s;
    }
    // A member started without a restore (by mistake) bootstraps its groups
    // with one entry per voter in term 1. The restored state is past that,
    // in a later term, so that such a member can never pass for one that
    // holds it: it gets the snapshot from the leader instead.
    if (sm.applied_index() <= voters.size()) {
      sm.Skip(voters.size() + 1);
      data = sm.Serialize();
    }
    raft::Snapshot snapshot;
    snapshot.meta.index = sm.applied_index();
    snapshot.meta.term = kRestoredTerm;
    snapshot.meta.conf.voters = voters;
    snapshot.data = std::move(data);
    s = storage->InstallSnapshot(group, snapshot);
    // What the members agree on from the start: that term, everything in
    // the snapshot committed.
    storage::WriteBatch batch;
    batch.SetHardState(group, raft::HardState{kRestoredTerm, raft::kNoNode, snapshot.meta.index});
    if (s.ok()) s = storage->wal()->Write(&batch);
    if (s.ok()) s = storage->ApplyWritten(batch);
    if (!s.ok()) return s;
    restored_keys += sm.size();
    ++groups;
  }
  storage.reset();
  s = env->Rename(cfg.data_dir, final_dir);
  if (s.ok()) s = env->SyncDir(storage::DirName(final_dir));
  if (!s.ok()) return Status::IOError("cannot rename " + cfg.data_dir + ": " + s.message());
  cfg.data_dir = final_dir;
  *summary = "restored node " + std::to_string(cfg.id) + " of cluster \"" + cfg.cluster + "\" in " +
             cfg.data_dir + ": " + std::to_string(groups) + " group" + (groups == 1 ? "" : "s") +
             ", " + std::to_string(restored_keys) + " of the backup's " + std::to_string(keys) +
             " keys; start it with --data-dir " + cfg.data_dir +
             (cluster_given || cfg.cluster != "default" ? " --cluster " + cfg.cluster : "") +
             (cfg.shards > 0 ? " --shards " + std::to_string(cfg.shards) + " --replicas " +
                                   std::to_string(cfg.replicas)
                             : "");
  return Status::OK();
}

}  // namespace kv::node
