#include "storage/fault_injection_env.h"

#include <algorithm>
#include <random>
#include <set>

namespace kv::storage {

namespace {

std::string BaseName(const std::string& path) {
  const size_t slash = path.rfind('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

}  // namespace

// One in-memory file. `data` is what reads see; `synced` what survives a
// crash; `unsynced` the writes since the last Sync, in order, replayed onto
// `synced` when a crash keeps a prefix of them.
struct FaultInjectionEnv::File {
  struct Op {
    bool resize = false;  // a Truncate/Allocate to `size`, else a write at offset
    uint64_t offset = 0;
    uint64_t size = 0;
    std::string bytes;
  };

  static void Apply(const Op& op, std::string* contents) {
    if (op.resize) {
      contents->resize(op.size, '\0');
      return;
    }
    if (contents->size() < op.offset + op.bytes.size()) {
      contents->resize(op.offset + op.bytes.size(), '\0');
    }
    contents->replace(op.offset, op.bytes.size(), op.bytes);
  }

  void Do(Op op) {
    Apply(op, &data);
    unsynced.push_back(std::move(op));
  }

  std::string data;
  std::string synced;
  std::vector<Op> unsynced;
};

// What an open file holds: the file and the crash epoch it was opened in.
struct FaultInjectionEnv::Handle {
  Status Size(uint64_t* size) const {
    std::lock_guard<std::mutex> lock(env->mu_);
    Status s = env->CheckEpoch(epoch);
    if (!s.ok()) return s;
    *size = file->data.size();
    return Status::OK();
  }

  FaultInjectionEnv* const env;
  const std::shared_ptr<File> file;
  const uint64_t epoch;
};

class FaultInjectionEnv::Writable : public WritableFile {
 public:
  Writable(FaultInjectionEnv* env, std::shared_ptr<File> file, uint64_t epoch)
      : h_{env, std::move(file), epoch} {}

  Status WriteAt(uint64_t offset, std::string_view data) override {
    std::lock_guard<std::mutex> lock(h_.env->mu_);
    Status s = h_.env->CheckEpoch(h_.epoch);
    if (!s.ok()) return s;
    File::Op op;
    op.offset = offset;
    op.bytes = std::string(data);
    h_.file->Do(std::move(op));
    return Status::OK();
  }

  Status Append(std::string_view data) override {
    uint64_t size = 0;
    {
      std::lock_guard<std::mutex> lock(h_.env->mu_);
      size = h_.file->data.size();
    }
    return WriteAt(size, data);
  }

  Status Sync() override {
    std::unique_lock<std::mutex> lock(h_.env->mu_);
    if (h_.env->hold_syncs_) {
      ++h_.env->held_syncs_;
      h_.env->sync_cv_.notify_all();
      h_.env->sync_cv_.wait(lock, [this] { return !h_.env->hold_syncs_; });
      --h_.env->held_syncs_;
    }
    Status s = h_.env->CheckEpoch(h_.epoch);
    if (!s.ok()) return s;
    if (h_.env->failing_syncs_ > 0) {
      --h_.env->failing_syncs_;
      return Status::IOError("injected fdatasync failure");
    }
    h_.file->synced = h_.file->data;
    h_.file->unsynced.clear();
    return Status::OK();
  }

  Status Allocate(uint64_t size) override {
    std::lock_guard<std::mutex> lock(h_.env->mu_);
    Status s = h_.env->CheckEpoch(h_.epoch);
    if (!s.ok()) return s;
    if (h_.file->data.size() < size) Resize(size);
    return Status::OK();
  }

  Status Truncate(uint64_t size) override {
    std::lock_guard<std::mutex> lock(h_.env->mu_);
    Status s = h_.env->CheckEpoch(h_.epoch);
    if (!s.ok()) return s;
    Resize(size);
    return Status::OK();
  }

  Status Size(uint64_t* size) const override { return h_.Size(size); }

 private:
  // REQUIRES: h_.env->mu_ held.
  void Resize(uint64_t size) {
    File::Op op;
    op.resize = true;
    op.size = size;
    h_.file->Do(std::move(op));
  }

  const Handle h_;
};

class FaultInjectionEnv::Readable : public ReadableFile {
 public:
  Readable(FaultInjectionEnv* env, std::shared_ptr<File> file, uint64_t epoch)
      : h_{env, std::move(file), epoch} {}

  Status Read(uint64_t offset, size_t n, std::string* out) const override {
    std::lock_guard<std::mutex> lock(h_.env->mu_);
    Status s = h_.env->CheckEpoch(h_.epoch);
    if (!s.ok()) return s;
    out->clear();
    if (offset < h_.file->data.size()) *out = h_.file->data.substr(offset, n);
    return Status::OK();
  }

  Status Size(uint64_t* size) const override { return h_.Size(size); }

 private:
  const Handle h_;
};

Status FaultInjectionEnv::CheckEpoch(uint64_t epoch) const {
  if (epoch != epoch_) return Status::IOError("file handle from before a simulated crash");
  return CheckUp();
}

Status FaultInjectionEnv::CheckUp() const {
  if (down_) return Status::IOError("simulated crash: the process is down");
  return Status::OK();
}

Status FaultInjectionEnv::OpenWritable(const std::string& path,
                                       std::unique_ptr<WritableFile>* file) {
  std::lock_guard<std::mutex> lock(mu_);
  if (Status s = CheckUp(); !s.ok()) return s;
  std::shared_ptr<File>& f = files_[path];
  if (!f) f = std::make_shared<File>();
  *file = std::make_unique<Writable>(this, f, epoch_);
  return Status::OK();
}

Status FaultInjectionEnv::OpenReadable(const std::string& path,
                                       std::unique_ptr<ReadableFile>* file) {
  std::lock_guard<std::mutex> lock(mu_);
  if (Status s = CheckUp(); !s.ok()) return s;
  auto it = files_.find(path);
  if (it == files_.end()) return Status::NotFound(path);
  *file = std::make_unique<Readable>(this, it->second, epoch_);
  return Status::OK();
}

Status FaultInjectionEnv::CreateDir(const std::string&) {
  std::lock_guard<std::mutex> lock(mu_);
  return CheckUp();
}

Status FaultInjectionEnv::ListDir(const std::string& path, std::vector<std::string>* names) {
  std::lock_guard<std::mutex> lock(mu_);
  if (Status s = CheckUp(); !s.ok()) return s;
  names->clear();
  for (const auto& [name, file] : files_) {
    if (DirName(name) == path) names->push_back(BaseName(name));
  }
  return Status::OK();
}

Status FaultInjectionEnv::RemoveFile(const std::string& path) {
  std::lock_guard<std::mutex> lock(mu_);
  if (Status s = CheckUp(); !s.ok()) return s;
  if (files_.erase(path) == 0) return Status::NotFound(path);
  return Status::OK();
}

Status FaultInjectionEnv::Rename(const std::string& from, const std::string& to) {
  std::lock_guard<std::mutex> lock(mu_);
  if (Status s = CheckUp(); !s.ok()) return s;
  auto it = files_.find(from);
  if (it != files_.end()) {
    std::shared_ptr<File> f = it->second;
    files_.erase(it);
    files_[to] = std::move(f);
    return Status::OK();
  }
  // Directories exist only as their files' names: a directory moves with
  // the files under it.
  const std::string prefix = from + "/";
  bool found = false;
  for (it = files_.lower_bound(prefix); it != files_.end() && it->first.rfind(prefix, 0) == 0;) {
    files_[to + "/" + it->first.substr(prefix.size())] = it->second;
    it = files_.erase(it);
    found = true;
  }
  return found ? Status::OK() : Status::NotFound(from);
}

Status FaultInjectionEnv::SyncDir(const std::string& path) {
  std::lock_guard<std::mutex> lock(mu_);
  if (Status s = CheckUp(); !s.ok()) return s;
  for (auto it = durable_.begin(); it != durable_.end();) {
    it = DirName(it->first) == path ? durable_.erase(it) : std::next(it);
  }
  for (const auto& [name, file] : files_) {
    if (DirName(name) == path) durable_[name] = file;
  }
  ++dir_syncs_[path];
  return Status::OK();
}

Status FaultInjectionEnv::FileSize(const std::string& path, uint64_t* size) {
  std::lock_guard<std::mutex> lock(mu_);
  if (Status s = CheckUp(); !s.ok()) return s;
  auto it = files_.find(path);
  if (it == files_.end()) return Status::NotFound(path);
  *size = it->second->data.size();
  return Status::OK();
}

void FaultInjectionEnv::SimulateCrash(CrashMode mode, uint64_t seed) {
  std::lock_guard<std::mutex> lock(mu_);
  std::mt19937_64 rng(seed);
  files_ = durable_;
  std::set<File*> done;
  for (auto& [name, file] : files_) {
    if (!done.insert(file.get()).second) continue;
    std::string contents = file->synced;
    if (mode == CrashMode::kKeepRandomPrefix && !file->unsynced.empty()) {
      const size_t kept = rng() % (file->unsynced.size() + 1);
      for (size_t i = 0; i < kept; ++i) File::Apply(file->unsynced[i], &contents);
      if (kept < file->unsynced.size() && !file->unsynced[kept].resize) {
        File::Op torn = file->unsynced[kept];
        torn.bytes.resize(rng() % (torn.bytes.size() + 1));
        File::Apply(torn, &contents);
      }
    }
    file->data = contents;
    file->synced = std::move(contents);
    file->unsynced.clear();
  }
  ++epoch_;
  down_ = true;
}

void FaultInjectionEnv::Restart() {
  std::lock_guard<std::mutex> lock(mu_);
  down_ = false;
}

void FaultInjectionEnv::FailNextSyncs(int n) {
  std::lock_guard<std::mutex> lock(mu_);
  failing_syncs_ = n;
}

void FaultInjectionEnv::HoldSyncs() {
  std::lock_guard<std::mutex> lock(mu_);
  hold_syncs_ = true;
}

void FaultInjectionEnv::ReleaseSyncs() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    hold_syncs_ = false;
  }
  sync_cv_.notify_all();
}

void FaultInjectionEnv::WaitForHeldSyncs(int n) {
  std::unique_lock<std::mutex> lock(mu_);
  sync_cv_.wait(lock, [this, n] { return held_syncs_ >= n; });
}

int FaultInjectionEnv::DirSyncCount(const std::string& path) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = dir_syncs_.find(path);
  return it == dir_syncs_.end() ? 0 : it->second;
}

Status FaultInjectionEnv::CorruptByteForTest(const std::string& path, uint64_t offset,
                                             uint8_t mask) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = files_.find(path);
  if (it == files_.end()) return Status::NotFound(path);
  File& f = *it->second;
  if (offset >= f.data.size()) return Status::InvalidArgument("offset past the end of " + path);
  f.data[offset] = static_cast<char>(f.data[offset] ^ mask);
  if (offset < f.synced.size()) f.synced[offset] = static_cast<char>(f.synced[offset] ^ mask);
  return Status::OK();
}

}  // namespace kv::storage
