#include "net/curve_keys.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zmq.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

namespace kv::net {

namespace {

constexpr size_t kZ85KeyChars = 40;

// Creates `path` (it must not exist) with `mode`, writes `text` and syncs it.
bool WriteNewFile(const std::string& path, const std::string& text, mode_t mode,
                  std::string* error) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
  if (fd < 0) {
    *error = "cannot create " + path + ": " + std::strerror(errno);
    return false;
  }
  // The umask may have taken bits away; a secret key must be 0600 exactly.
  bool ok = ::fchmod(fd, mode) == 0 &&
            ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()) &&
            ::fsync(fd) == 0;
  if (!ok) *error = "cannot write " + path + ": " + std::strerror(errno);
  ok = ::close(fd) == 0 && ok;
  return ok;
}

}  // namespace

bool IsZ85Key(const std::string& key) {
  uint8_t bytes[32];
  return key.size() == kZ85KeyChars && zmq_z85_decode(bytes, key.c_str()) != nullptr;
}

bool GenerateKeyPair(KeyPair* pair, std::string* error) {
  char public_key[kZ85KeyChars + 1];
  char secret_key[kZ85KeyChars + 1];
  if (!zmq_has("curve") || zmq_curve_keypair(public_key, secret_key) != 0) {
    *error = "this libzmq was built without CURVE";
    return false;
  }
  pair->public_key = public_key;
  pair->secret_key = secret_key;
  return true;
}

bool WriteKeyFiles(const std::string& name, const KeyPair& pair, std::string* error) {
  const std::string secret_path = name + ".key";
  const std::string public_path = name + ".pub";
  for (const std::string& path : {secret_path, public_path}) {
    struct stat st;
    if (::stat(path.c_str(), &st) == 0) {
      *error = path + " exists; refusing to overwrite a key";
      return false;
    }
  }
  if (!WriteNewFile(secret_path, pair.secret_key + "\n", 0600, error)) return false;
  if (!WriteNewFile(public_path, pair.public_key + "\n", 0644, error)) {
    ::unlink(secret_path.c_str());
    return false;
  }
  return true;
}

bool ReadKeyFile(const std::string& path, std::string* key, std::string* error) {
  std::ifstream in(path);
  if (!in) {
    *error = "cannot read " + path + ": " + std::strerror(errno);
    return false;
  }
  std::stringstream text;
  text << in.rdbuf();
  std::string word;
  text >> word;
  std::string rest;
  if (!IsZ85Key(word) || (text >> rest)) {
    *error = path + " does not hold one Z85 key of " + std::to_string(kZ85KeyChars) + " characters";
    return false;
  }
  *key = word;
  return true;
}

bool PublicKeyOf(const std::string& secret_key, std::string* public_key) {
  char out[kZ85KeyChars + 1];
  if (!IsZ85Key(secret_key) || zmq_curve_public(out, secret_key.c_str()) != 0) return false;
  *public_key = out;
  return true;
}

}  // namespace kv::net
