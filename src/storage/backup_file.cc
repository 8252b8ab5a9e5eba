#include "storage/backup_file.h"

#include "common/coding.h"
#include "common/crc32c.h"

namespace kv::storage {

namespace {

constexpr std::string_view kMagic = "KVBACKUP";
constexpr uint64_t kFormatVersion = 1;
constexpr size_t kChecksumBytes = 8;
// Longer cluster names are not written (the node's flag takes any, but a
// name this long is a damaged length).
constexpr size_t kMaxClusterName = 4096;
// Enough for a part's header (five varints) and the file's (magic, version,
// a name of at most kMaxClusterName, three varints).
constexpr size_t kPartHeaderWindow = 64;
constexpr size_t kFileHeaderWindow = kMaxClusterName + 64;
constexpr size_t kReadPiece = 1 << 20;

Status Damaged(const std::string& path, const std::string& what) {
  return Status::Corruption("backup " + path + " is damaged or not a backup: " + what);
}

}  // namespace

Status BackupWriter::Create(Env* env, const std::string& path,
                            std::unique_ptr<BackupWriter>* writer) {
  std::unique_ptr<BackupWriter> w(new BackupWriter(env, path));
  Status s = env->OpenWritable(path + ".tmp", &w->file_);
  if (s.ok()) s = w->file_->Truncate(0);
  if (!s.ok()) return Status::IOError("cannot write " + path + ".tmp: " + s.message());
  *writer = std::move(w);
  return Status::OK();
}

BackupWriter::~BackupWriter() {
  if (finished_) return;
  file_.reset();
  (void)env_->RemoveFile(path_ + ".tmp");
}

Status BackupWriter::Write(std::string_view bytes) {
  Status s = file_->Append(bytes);
  if (!s.ok()) return Status::IOError("cannot write " + path_ + ".tmp: " + s.message());
  crc_ = Crc32cExtend(crc_, bytes.data(), bytes.size());
  written_ += bytes.size();
  return Status::OK();
}

Status BackupWriter::WriteHeader(const BackupHeader& header) {
  if (has_header_) return Status::InvalidArgument("backup header written twice");
  if (header.cluster.size() > kMaxClusterName) {
    return Status::InvalidArgument("cluster name over " + std::to_string(kMaxClusterName) +
                                   " bytes");
  }
  std::string out(kMagic);
  PutVarint64(&out, kFormatVersion);
  PutLengthPrefixed(&out, header.cluster);
  PutVarint64(&out, header.created_ms);
  PutVarint64(&out, header.shards);
  PutVarint64(&out, header.replicas);
  header_ = header;
  has_header_ = true;
  return Write(out);
}

Status BackupWriter::BeginPart(const BackupPart& part) {
  if (!has_header_ || part_left_ != 0 || parts_begun_ >= header_.parts() ||
      part.shard != parts_begun_) {
    return Status::InvalidArgument("backup part " + std::to_string(part.shard) + " out of order");
  }
  std::string out;
  PutVarint64(&out, part.shard);
  PutVarint64(&out, part.index);
  PutVarint64(&out, part.clock_ms);
  PutVarint64(&out, part.keys);
  PutVarint64(&out, part.size);
  ++parts_begun_;
  part_left_ = part.size;
  return Write(out);
}

Status BackupWriter::Append(std::string_view data) {
  if (data.size() > part_left_) {
    return Status::InvalidArgument("backup part " + std::to_string(parts_begun_ - 1) +
                                   " longer than announced");
  }
  part_left_ -= data.size();
  return Write(data);
}

Status BackupWriter::Finish() {
  if (!has_header_ || parts_begun_ != header_.parts() || part_left_ != 0) {
    return Status::InvalidArgument("backup incomplete: " + std::to_string(parts_begun_) + " of " +
                                   std::to_string(header_.parts()) + " parts begun, " +
                                   std::to_string(part_left_) + " bytes missing");
  }
  std::string crc;
  PutFixed64(&crc, crc_);
  Status s = file_->Append(crc);
  written_ += crc.size();
  if (s.ok()) s = file_->Sync();
  file_.reset();
  if (s.ok()) s = env_->Rename(path_ + ".tmp", path_);
  if (!s.ok()) return Status::IOError("cannot write " + path_ + ": " + s.message());
  finished_ = true;
  s = env_->SyncDir(DirName(path_));
  if (!s.ok()) return Status::IOError("cannot sync the directory of " + path_ + ": " + s.message());
  return Status::OK();
}

Status ReadBackup(Env* env, const std::string& path, BackupHeader* header,
                  std::vector<BackupPart>* parts, uint64_t* file_size) {
  std::unique_ptr<ReadableFile> file;
  Status s = env->OpenReadable(path, &file);
  uint64_t size = 0;
  if (s.ok()) s = file->Size(&size);
  if (!s.ok()) return s;
  if (file_size != nullptr) *file_size = size;
  if (size < kMagic.size() + kChecksumBytes) return Damaged(path, "too short");
  const uint64_t end = size - kChecksumBytes;

  // The checksum first: nothing else in the file is trusted before it holds.
  uint32_t crc = 0;
  std::string piece;
  for (uint64_t at = 0; at < end; at += piece.size()) {
    s = file->Read(at, static_cast<size_t>(std::min<uint64_t>(kReadPiece, end - at)), &piece);
    if (!s.ok()) return s;
    if (piece.empty()) return Damaged(path, "shorter than its size");
    crc = Crc32cExtend(crc, piece.data(), piece.size());
  }
  uint64_t want = 0;
  s = file->Read(end, kChecksumBytes, &piece);
  std::string_view tail = piece;
  if (!s.ok()) return s;
  if (!GetFixed64(&tail, &want) || want != crc) return Damaged(path, "checksum mismatch");

  s = file->Read(0, static_cast<size_t>(std::min<uint64_t>(kFileHeaderWindow, end)), &piece);
  if (!s.ok()) return s;
  std::string_view in = piece;
  uint64_t version = 0, shards = 0, replicas = 0;
  std::string_view cluster;
  if (in.substr(0, kMagic.size()) != kMagic) return Damaged(path, "no KVBACKUP mark");
  in.remove_prefix(kMagic.size());
  if (!GetVarint64(&in, &version)) return Damaged(path, "no format version");
  if (version != kFormatVersion) {
    return Status::Corruption("backup " + path + " has format version " + std::to_string(version) +
                              "; this kvstore reads version " + std::to_string(kFormatVersion));
  }
  *header = BackupHeader{};
  if (!GetLengthPrefixed(&in, &cluster) || !GetVarint64(&in, &header->created_ms) ||
      !GetVarint64(&in, &shards) || !GetVarint64(&in, &replicas) || shards > UINT32_MAX ||
      replicas > UINT32_MAX) {
    return Damaged(path, "bad header");
  }
  header->cluster.assign(cluster);
  header->shards = static_cast<uint32_t>(shards);
  header->replicas = static_cast<uint32_t>(replicas);

  parts->clear();
  uint64_t at = piece.size() - in.size();
  for (uint32_t i = 0; i < header->parts(); ++i) {
    s = file->Read(at, static_cast<size_t>(std::min<uint64_t>(kPartHeaderWindow, end - at)),
                   &piece);
    if (!s.ok()) return s;
    in = piece;
    BackupPart part;
    uint64_t shard = 0;
    if (!GetVarint64(&in, &shard) || !GetVarint64(&in, &part.index) ||
        !GetVarint64(&in, &part.clock_ms) || !GetVarint64(&in, &part.keys) ||
        !GetVarint64(&in, &part.size) || shard != i) {
      return Damaged(path, "bad header of part " + std::to_string(i));
    }
    part.shard = i;
    part.offset = at + (piece.size() - in.size());
    if (part.size > end - part.offset) return Damaged(path, "part " + std::to_string(i) + " cut");
    at = part.offset + part.size;
    parts->push_back(part);
  }
  if (at != end) return Damaged(path, std::to_string(end - at) + " bytes after the last part");
  return Status::OK();
}

Status ReadBackupPart(Env* env, const std::string& path, const BackupPart& part,
                      std::string* data) {
  std::unique_ptr<ReadableFile> file;
  Status s = env->OpenReadable(path, &file);
  if (s.ok()) s = file->Read(part.offset, static_cast<size_t>(part.size), data);
  if (s.ok() && data->size() != part.size) s = Damaged(path, "part cut");
  return s;
}

}  // namespace kv::storage
