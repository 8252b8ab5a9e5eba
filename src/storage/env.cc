#include "storage/env.h"

namespace kv::storage {

std::string DirName(const std::string& path) {
  const size_t slash = path.rfind('/');
  return slash == std::string::npos ? std::string(".") : path.substr(0, slash);
}

Status ReadFileToString(Env* env, const std::string& path, std::string* out) {
  std::unique_ptr<ReadableFile> file;
  Status s = env->OpenReadable(path, &file);
  if (!s.ok()) return s;
  uint64_t size = 0;
  s = file->Size(&size);
  if (!s.ok()) return s;
  return file->Read(0, size, out);
}

}  // namespace kv::storage
