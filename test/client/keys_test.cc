#include "kvstore/keys.h"

#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdlib>
#include <fstream>
#include <string>

namespace kv::client {
namespace {

// A fresh directory, removed with what it holds.
struct ScratchDir {
  ScratchDir() {
    char tmpl[] = "/tmp/kv-keys-XXXXXX";
    REQUIRE(mkdtemp(tmpl) != nullptr);
    path = tmpl;
  }
  ~ScratchDir() { std::system(("rm -rf '" + path + "'").c_str()); }
  std::string path;
};

mode_t ModeOf(const std::string& path) {
  struct stat st;
  REQUIRE(stat(path.c_str(), &st) == 0);
  return st.st_mode & 0777;
}

TEST_CASE("keys: a generated pair is two Z85 keys that belong together") {
  KeyPair a, b;
  std::string error;
  REQUIRE(GenerateKeyPair(&a, &error));
  REQUIRE(GenerateKeyPair(&b, &error));
  CHECK(a.public_key.size() == 40);
  CHECK(a.secret_key.size() == 40);
  CHECK(a.secret_key != b.secret_key);
  std::string derived;
  REQUIRE(PublicKeyOf(a.secret_key, &derived));
  CHECK(derived == a.public_key);
  CHECK_FALSE(PublicKeyOf("not a key", &derived));
}

TEST_CASE("keys: files are written with the secret private, read back, never overwritten") {
  ScratchDir dir;
  const std::string name = dir.path + "/node1";
  KeyPair pair;
  std::string error;
  REQUIRE(GenerateKeyPair(&pair, &error));
  umask(0022);
  REQUIRE(WriteKeyFiles(name, pair, &error));
  CHECK(ModeOf(name + ".key") == 0600);
  CHECK(ModeOf(name + ".pub") == 0644);
  std::string secret, public_key;
  REQUIRE(ReadKeyFile(name + ".key", &secret, &error));
  REQUIRE(ReadKeyFile(name + ".pub", &public_key, &error));
  CHECK(secret == pair.secret_key);
  CHECK(public_key == pair.public_key);

  KeyPair other;
  REQUIRE(GenerateKeyPair(&other, &error));
  CHECK_FALSE(WriteKeyFiles(name, other, &error));
  CHECK(error.find("exists") != std::string::npos);
  REQUIRE(ReadKeyFile(name + ".key", &secret, &error));
  CHECK(secret == pair.secret_key);  // untouched
}

TEST_CASE("keys: a file without exactly one valid key is refused") {
  ScratchDir dir;
  std::string key, error;
  CHECK_FALSE(ReadKeyFile(dir.path + "/missing.key", &key, &error));
  for (const std::string& text :
       {std::string(""), std::string("short\n"), std::string(40, '"') + "\n",
        std::string(40, 'a') + " " + std::string(40, 'a') + "\n"}) {
    INFO("file holds: " << text);
    std::ofstream(dir.path + "/bad.key", std::ios::trunc) << text;
    CHECK_FALSE(ReadKeyFile(dir.path + "/bad.key", &key, &error));
  }
}

}  // namespace
}  // namespace kv::client
