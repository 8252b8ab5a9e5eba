// PosixEnv: Env on top of the POSIX file API.

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>

#include "storage/env.h"

namespace kv::storage {

namespace {

Status PosixError(const std::string& context, int err) {
  std::string msg = context + ": " + std::strerror(err);
  if (err == ENOENT) return Status::NotFound(msg);
  return Status::IOError(msg);
}

// An open file descriptor with the path it was opened by, for messages.
class Fd {
 public:
  Fd(std::string path, int fd) : path_(std::move(path)), fd_(fd) {}
  ~Fd() { ::close(fd_); }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;

  Status Size(uint64_t* size) const {
    struct stat st {};
    if (::fstat(fd_, &st) != 0) return PosixError("stat " + path_, errno);
    *size = static_cast<uint64_t>(st.st_size);
    return Status::OK();
  }
  const std::string& path() const { return path_; }
  int get() const { return fd_; }

 private:
  const std::string path_;
  const int fd_;
};

class PosixWritableFile : public WritableFile {
 public:
  PosixWritableFile(std::string path, int fd) : fd_(std::move(path), fd) {}

  Status WriteAt(uint64_t offset, std::string_view data) override {
    while (!data.empty()) {
      const ssize_t n = ::pwrite(fd_.get(), data.data(), data.size(), static_cast<off_t>(offset));
      if (n < 0) {
        if (errno == EINTR) continue;
        return PosixError("write " + fd_.path(), errno);
      }
      data.remove_prefix(static_cast<size_t>(n));
      offset += static_cast<uint64_t>(n);
    }
    return Status::OK();
  }

  Status Append(std::string_view data) override {
    uint64_t size = 0;
    Status s = Size(&size);
    if (!s.ok()) return s;
    return WriteAt(size, data);
  }

  Status Sync() override {
    if (::fdatasync(fd_.get()) != 0) return PosixError("fdatasync " + fd_.path(), errno);
    return Status::OK();
  }

  Status Allocate(uint64_t size) override {
    const int err = ::posix_fallocate(fd_.get(), 0, static_cast<off_t>(size));
    if (err != 0) return PosixError("fallocate " + fd_.path(), err);
    return Status::OK();
  }

  Status Truncate(uint64_t size) override {
    if (::ftruncate(fd_.get(), static_cast<off_t>(size)) != 0) {
      return PosixError("truncate " + fd_.path(), errno);
    }
    return Status::OK();
  }

  Status Size(uint64_t* size) const override { return fd_.Size(size); }

 private:
  const Fd fd_;
};

class PosixReadableFile : public ReadableFile {
 public:
  PosixReadableFile(std::string path, int fd) : fd_(std::move(path), fd) {}

  Status Read(uint64_t offset, size_t n, std::string* out) const override {
    out->resize(n);
    size_t got = 0;
    while (got < n) {
      const ssize_t r =
          ::pread(fd_.get(), out->data() + got, n - got, static_cast<off_t>(offset + got));
      if (r < 0) {
        if (errno == EINTR) continue;
        return PosixError("read " + fd_.path(), errno);
      }
      if (r == 0) break;
      got += static_cast<size_t>(r);
    }
    out->resize(got);
    return Status::OK();
  }

  Status Size(uint64_t* size) const override { return fd_.Size(size); }

 private:
  const Fd fd_;
};

class PosixEnv : public Env {
 public:
  Status OpenWritable(const std::string& path, std::unique_ptr<WritableFile>* file) override {
    const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) return PosixError("open " + path, errno);
    *file = std::make_unique<PosixWritableFile>(path, fd);
    return Status::OK();
  }

  Status OpenReadable(const std::string& path, std::unique_ptr<ReadableFile>* file) override {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return PosixError("open " + path, errno);
    *file = std::make_unique<PosixReadableFile>(path, fd);
    return Status::OK();
  }

  Status CreateDir(const std::string& path) override {
    if (::mkdir(path.c_str(), 0755) != 0 && errno != EEXIST) {
      return PosixError("mkdir " + path, errno);
    }
    return Status::OK();
  }

  Status ListDir(const std::string& path, std::vector<std::string>* names) override {
    names->clear();
    DIR* dir = ::opendir(path.c_str());
    if (dir == nullptr) return PosixError("opendir " + path, errno);
    while (const dirent* e = ::readdir(dir)) {
      const std::string name = e->d_name;
      if (name != "." && name != "..") names->push_back(name);
    }
    ::closedir(dir);
    return Status::OK();
  }

  Status RemoveFile(const std::string& path) override {
    if (::unlink(path.c_str()) != 0) return PosixError("unlink " + path, errno);
    return Status::OK();
  }

  Status Rename(const std::string& from, const std::string& to) override {
    if (::rename(from.c_str(), to.c_str()) != 0) {
      return PosixError("rename " + from + " to " + to, errno);
    }
    return Status::OK();
  }

  Status SyncDir(const std::string& path) override {
    const int fd = ::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return PosixError("open dir " + path, errno);
    Status s;
    if (::fsync(fd) != 0) s = PosixError("fsync dir " + path, errno);
    ::close(fd);
    return s;
  }

  Status FileSize(const std::string& path, uint64_t* size) override {
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) return PosixError("stat " + path, errno);
    *size = static_cast<uint64_t>(st.st_size);
    return Status::OK();
  }
};

}  // namespace

Env* Env::Posix() {
  static Env* const env = new PosixEnv;
  return env;
}

}  // namespace kv::storage
