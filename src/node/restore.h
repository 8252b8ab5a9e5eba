// Restore: makes the data dir of a member of a new cluster from a backup
// (`kvstore restore`, storage/backup_file.h), as etcdutl snapshot restore
// does. Every member of the new cluster restores the same file with its own
// --id and the same --peers.
//
// Each group the member hosts from the start (node/shard_manager.h,
// FoundingGroups) gets the backup's part for its shard as a snapshot at the
// part's index (past the founders' bootstrap entries, see restore.cc), in
// term 2, with the new members as its voters: the data,
// versions and deadlines come back, the old cluster's sessions and members
// do not. A sharded cluster's metadata group starts empty and
// records the new members when it elects a leader, as a new cluster's does.
// Thread safety: a function of its arguments; run before the node starts.
#pragma once

#include <string>

#include "common/status.h"
#include "node/config.h"
#include "storage/env.h"

namespace kv::node {

// `cfg` as for starting the member (id, peers, data dir; cluster, shards and
// replicas come from the backup unless `cluster_given` is true). Refuses
// (InvalidArgument) a data dir that exists and is not empty, and a damaged
// backup (Corruption), before writing anything; builds the data dir as
// DIR.restoring and renames it when whole. *summary gets a line saying
// what was restored and how to start the member.
Status RestoreDataDir(storage::Env* env, NodeConfig cfg, bool cluster_given,
                      const std::string& backup_path, std::string* summary);

}  // namespace kv::node
