#include "storage/snapshot_store.h"

#include <cinttypes>
#include <cstdio>

#include "common/crc32c.h"
#include "common/logging.h"

namespace kv::storage {

namespace {

// "KVSN" and the format version, 1.
constexpr uint64_t kSnapshotMagic = 0x4b56534e'00000001ull;
constexpr char kTempSuffix[] = ".tmp";

void PutU64(std::string* out, uint64_t v) {
  for (int i = 0; i < 8; ++i) out->push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

bool GetU64(std::string_view* in, uint64_t* v) {
  if (in->size() < 8) return false;
  *v = 0;
  for (int i = 0; i < 8; ++i)
    *v |= static_cast<uint64_t>(static_cast<uint8_t>((*in)[i])) << (8 * i);
  in->remove_prefix(8);
  return true;
}

void PutIds(std::string* out, const std::vector<raft::NodeId>& ids) {
  PutU64(out, ids.size());
  for (raft::NodeId id : ids) PutU64(out, id);
}

bool GetIds(std::string_view* in, std::vector<raft::NodeId>* ids) {
  uint64_t n = 0;
  if (!GetU64(in, &n) || n > in->size() / 8) return false;
  ids->resize(n);
  for (raft::NodeId& id : *ids) GetU64(in, &id);
  return true;
}

// File layout: magic, group, index, term, voters, learners, data length
// (the header), data, then the CRC32C of everything before it (4 bytes).
std::string EncodeSnapshotHeader(raft::GroupId group, const raft::SnapshotMeta& meta,
                                 uint64_t data_size) {
  std::string out;
  PutU64(&out, kSnapshotMagic);
  PutU64(&out, group);
  PutU64(&out, meta.index);
  PutU64(&out, meta.term);
  PutIds(&out, meta.conf.voters);
  PutIds(&out, meta.conf.learners);
  PutU64(&out, data_size);
  return out;
}

// A snapshot's data is written and synced this much at a time: a single
// sync of hundreds of MiB at the end would hold up the WAL's syncs on the
// same disk for as long as it took (measured: write p99 over 500 ms at
// 64 KiB values while 128 MiB snapshots were written).
constexpr size_t kSyncEveryBytes = 4 << 20;

// Writes the snapshot file's bytes to `file`, syncing as it goes.
Status WriteSnapshot(WritableFile* file, raft::GroupId group, const raft::SnapshotMeta& meta,
                     const SnapshotData& data) {
  const uint64_t size = data.size();
  const std::string header = EncodeSnapshotHeader(group, meta, size);
  uint32_t crc = Crc32c(header);
  Status s = file->Append(header);
  uint64_t written = 0;
  uint64_t unsynced = 0;
  if (s.ok()) {
    s = data.WriteTo([&](std::string_view piece) {
      crc = Crc32cExtend(crc, piece.data(), piece.size());
      written += piece.size();
      unsynced += piece.size();
      Status ws = file->Append(piece);
      if (ws.ok() && unsynced >= kSyncEveryBytes) {
        ws = file->Sync();
        unsynced = 0;
      }
      return ws;
    });
  }
  if (s.ok() && written != size) {
    return Status::InvalidArgument("snapshot data of " + std::to_string(written) +
                                   " bytes, not the " + std::to_string(size) + " it declared");
  }
  std::string trailer;
  for (int i = 0; i < 4; ++i) trailer.push_back(static_cast<char>((crc >> (8 * i)) & 0xff));
  if (s.ok()) s = file->Append(trailer);
  if (s.ok()) s = file->Sync();
  return s;
}

bool DecodeSnapshot(std::string_view in, raft::GroupId* group, raft::Snapshot* snap) {
  if (in.size() < 4) return false;
  uint32_t crc = 0;
  for (int i = 0; i < 4; ++i) {
    crc |= static_cast<uint32_t>(static_cast<uint8_t>(in[in.size() - 4 + i])) << (8 * i);
  }
  in.remove_suffix(4);
  if (Crc32c(in) != crc) return false;
  uint64_t magic = 0;
  uint64_t size = 0;
  if (!GetU64(&in, &magic) || magic != kSnapshotMagic || !GetU64(&in, group) ||
      !GetU64(&in, &snap->meta.index) || !GetU64(&in, &snap->meta.term) ||
      !GetIds(&in, &snap->meta.conf.voters) || !GetIds(&in, &snap->meta.conf.learners) ||
      !GetU64(&in, &size) || size != in.size()) {
    return false;
  }
  snap->data = std::string(in);
  return true;
}

// Parses "snap-<group>-<index>.snap".
bool ParseName(const std::string& name, raft::GroupId* group, raft::Index* index) {
  char tail[8] = {};
  unsigned long long g = 0;
  unsigned long long i = 0;
  if (std::sscanf(name.c_str(), "snap-%16llx-%16llx%7s", &g, &i, tail) != 3 ||
      std::string(tail) != ".snap" || name.size() != 5 + 16 + 1 + 16 + 5) {
    return false;
  }
  *group = g;
  *index = i;
  return true;
}

}  // namespace

Status SnapshotStore::Open(Env* env, const std::string& dir,
                           std::unique_ptr<SnapshotStore>* store) {
  Status s = env->CreateDir(dir);
  if (!s.ok()) return s;
  std::vector<std::string> names;
  s = env->ListDir(dir, &names);
  if (!s.ok()) return s;
  std::unique_ptr<SnapshotStore> st(new SnapshotStore(env, dir));
  for (const std::string& name : names) {
    raft::GroupId group = 0;
    raft::Index index = 0;
    if (ParseName(name, &group, &index)) {
      st->files_[group].insert(index);
    } else if (name.size() > 4 && name.compare(name.size() - 4, 4, kTempSuffix) == 0) {
      // A save that crashed before its rename; it was never visible.
      s = env->RemoveFile(dir + "/" + name);
      if (!s.ok()) return s;
    }
  }
  *store = std::move(st);
  return Status::OK();
}

std::string SnapshotStore::SnapshotPath(raft::GroupId group, raft::Index index) const {
  char name[64];
  std::snprintf(name, sizeof name, "snap-%016" PRIx64 "-%016" PRIx64 ".snap", group, index);
  return dir_ + "/" + name;
}

Status SnapshotStore::Save(raft::GroupId group, const raft::SnapshotMeta& meta,
                           const SnapshotData& data) {
  KV_CHECK(meta.index > 0) << "saving an empty snapshot";
  const std::string path = SnapshotPath(group, meta.index);
  const std::string temp = path + kTempSuffix;
  std::unique_ptr<WritableFile> file;
  Status s = env_->OpenWritable(temp, &file);
  if (s.ok()) s = file->Truncate(0);
  if (s.ok()) s = WriteSnapshot(file.get(), group, meta, data);
  file.reset();
  if (s.ok()) s = env_->Rename(temp, path);
  if (s.ok()) s = env_->SyncDir(dir_);
  if (!s.ok()) return s;

  std::vector<raft::Index> doomed;
  {
    std::lock_guard<std::mutex> lock(mu_);
    std::set<raft::Index>& indices = files_[group];
    indices.insert(meta.index);
    while (indices.size() > 2) {
      doomed.push_back(*indices.begin());
      indices.erase(indices.begin());
    }
  }
  for (raft::Index index : doomed) {
    s = env_->RemoveFile(SnapshotPath(group, index));
    if (!s.ok()) return s;
  }
  // An old file that reappears after a crash is harmless: it is only older.
  return doomed.empty() ? Status::OK() : env_->SyncDir(dir_);
}

Status SnapshotStore::Load(raft::GroupId group, raft::Index index, raft::Snapshot* snapshot) const {
  const std::string path = SnapshotPath(group, index);
  std::string buf;
  Status s = ReadFileToString(env_, path, &buf);
  if (!s.ok()) return s;
  raft::GroupId stored_group = 0;
  raft::Snapshot snap;
  if (!DecodeSnapshot(buf, &stored_group, &snap) || stored_group != group ||
      snap.meta.index != index) {
    return Status::Corruption("snapshot file " + path + " is damaged (checksum or layout)");
  }
  *snapshot = std::move(snap);
  return Status::OK();
}

Status SnapshotStore::LoadNewest(raft::GroupId group, raft::Snapshot* snapshot) const {
  const std::vector<raft::Index> indices = List(group);
  for (auto it = indices.rbegin(); it != indices.rend(); ++it) {
    Status s = Load(group, *it, snapshot);
    if (s.ok()) return s;
    KV_LOG(kWarn) << s.ToString() << "; falling back to the previous snapshot";
  }
  return Status::NotFound("no loadable snapshot for group " + std::to_string(group));
}

std::vector<raft::Index> SnapshotStore::List(raft::GroupId group) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = files_.find(group);
  if (it == files_.end()) return {};
  return std::vector<raft::Index>(it->second.begin(), it->second.end());
}

std::vector<raft::GroupId> SnapshotStore::Groups() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<raft::GroupId> groups;
  for (const auto& [group, indices] : files_) {
    if (!indices.empty()) groups.push_back(group);
  }
  return groups;
}

}  // namespace kv::storage
