// LoadCredentials (files, bad lines, the environment) and ServerKeys, the
// client's table of node keys: what it is given and what it learns.
#include "kvstore/credentials.h"

#include <catch2/catch.hpp>
#include <cstdlib>
#include <fstream>
#include <string>

#include "client/curve.h"
#include "kvstore/keys.h"

namespace kv::client {
namespace {

// A fresh directory, removed with what it holds.
struct ScratchDir {
  ScratchDir() {
    char tmpl[] = "/tmp/kv-credentials-XXXXXX";
    REQUIRE(mkdtemp(tmpl) != nullptr);
    path = tmpl;
  }
  ~ScratchDir() { std::system(("rm -rf '" + path + "'").c_str()); }
  std::string Write(const std::string& name, const std::string& text) const {
    const std::string file = path + "/" + name;
    std::ofstream(file, std::ios::trunc) << text;
    return file;
  }
  std::string path;
};

// Sets (or with nullptr unsets) an environment variable for one scope.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) {
    const char* old = std::getenv(name);
    if (old != nullptr) old_ = old;
    had_ = old != nullptr;
    if (value != nullptr) {
      setenv(name, value, 1);
    } else {
      unsetenv(name);
    }
  }
  ~ScopedEnv() {
    if (had_) {
      setenv(name_, old_.c_str(), 1);
    } else {
      unsetenv(name_);
    }
  }

 private:
  const char* name_;
  std::string old_;
  bool had_ = false;
};

KeyPair NewPair() {
  KeyPair pair;
  std::string error;
  REQUIRE(GenerateKeyPair(&pair, &error));
  return pair;
}

// A client key file (NAME.key) and a server keys file with two members, one
// of them without its address.
struct Files {
  ScratchDir dir;
  KeyPair client = NewPair(), node1 = NewPair(), node2 = NewPair();
  std::string key_file, server_keys_file;
  Files() {
    std::string error;
    REQUIRE(WriteKeyFiles(dir.path + "/me", client, &error));
    key_file = dir.path + "/me.key";
    server_keys_file = dir.Write("peers", "# the founders\n\n1 " + node1.public_key +
                                              " 127.0.0.1:8080\n   2 " + node2.public_key + "\n");
  }
};

TEST_CASE("credentials: a key file and a server keys file") {
  ScopedEnv no_key("KVSTORE_KEY", nullptr), no_keys("KVSTORE_SERVER_KEYS", nullptr);
  Files f;
  Credentials c;
  std::string error;
  REQUIRE(LoadCredentials(f.key_file, f.server_keys_file, &c, &error));
  CHECK(c.secure());
  CHECK(c.secret_key == f.client.secret_key);
  CHECK(c.public_key == f.client.public_key);  // derived from the secret key
  CHECK(c.server_keys ==
        std::map<std::string, std::string>{{"127.0.0.1:8080", f.node1.public_key}});
  CHECK(c.server_keys_by_id ==
        std::map<uint64_t, std::string>{{1, f.node1.public_key}, {2, f.node2.public_key}});
}

TEST_CASE("credentials: none given, none in the environment: plain") {
  ScopedEnv no_key("KVSTORE_KEY", nullptr), no_keys("KVSTORE_SERVER_KEYS", nullptr);
  Credentials c;
  c.secret_key = "left over";
  std::string error;
  REQUIRE(LoadCredentials("", "", &c, &error));
  CHECK_FALSE(c.secure());
  CHECK(c.server_keys.empty());
  CHECK(c.server_keys_by_id.empty());
}

TEST_CASE("credentials: empty arguments fall back to KVSTORE_KEY and KVSTORE_SERVER_KEYS") {
  Files f;
  ScopedEnv key("KVSTORE_KEY", f.key_file.c_str());
  ScopedEnv keys("KVSTORE_SERVER_KEYS", f.server_keys_file.c_str());
  Credentials c;
  std::string error;
  REQUIRE(LoadCredentials("", "", &c, &error));
  CHECK(c.secret_key == f.client.secret_key);
  CHECK(c.server_keys_by_id.size() == 2);

  // A file given wins over the environment.
  const std::string other = f.dir.Write("other", "7 " + f.node2.public_key + " h:1\n");
  REQUIRE(LoadCredentials("", other, &c, &error));
  CHECK(c.server_keys_by_id == std::map<uint64_t, std::string>{{7, f.node2.public_key}});
}

TEST_CASE("credentials: one without the other is refused") {
  ScopedEnv no_key("KVSTORE_KEY", nullptr), no_keys("KVSTORE_SERVER_KEYS", nullptr);
  Files f;
  Credentials c;
  std::string error;
  CHECK_FALSE(LoadCredentials(f.key_file, "", &c, &error));
  CHECK(error.find("--server-keys") != std::string::npos);
  CHECK_FALSE(LoadCredentials("", f.server_keys_file, &c, &error));
  CHECK(error.find("--key") != std::string::npos);
}

TEST_CASE("credentials: a public key, a missing or bad key file are refused, naming the file") {
  ScopedEnv no_key("KVSTORE_KEY", nullptr), no_keys("KVSTORE_SERVER_KEYS", nullptr);
  Files f;
  Credentials c;
  std::string error;
  CHECK_FALSE(LoadCredentials(f.dir.path + "/me.pub", f.server_keys_file, &c, &error));
  CHECK(error.find("me.pub is a public key") != std::string::npos);
  CHECK_FALSE(LoadCredentials(f.dir.path + "/none.key", f.server_keys_file, &c, &error));
  CHECK(error.find("none.key") != std::string::npos);
  const std::string bad = f.dir.Write("bad.key", "not a key\n");
  CHECK_FALSE(LoadCredentials(bad, f.server_keys_file, &c, &error));
  CHECK(error.find("bad.key") != std::string::npos);
  CHECK_FALSE(LoadCredentials(f.key_file, f.dir.path + "/no-such-file", &c, &error));
  CHECK(error.find("no-such-file") != std::string::npos);
}

TEST_CASE("credentials: bad server keys lines are refused with the file and line") {
  ScopedEnv no_key("KVSTORE_KEY", nullptr), no_keys("KVSTORE_SERVER_KEYS", nullptr);
  Files f;
  const std::string k1 = f.node1.public_key, k2 = f.node2.public_key;
  struct Case {
    std::string text;
    std::string says;
  };
  const Case cases[] = {
      {"1\n", "line 1: want \"ID PUBLIC-KEY [HOST:PORT]\""},
      {"# ok\n0 " + k1 + "\n", "line 2: want"},
      {"x " + k1 + "\n", "line 1: want"},
      {"-1 " + k1 + "\n", "line 1: want"},
      {"1 " + k1 + " h:1 extra\n", "line 1: want"},
      {"1 short\n", "line 1: \"short\" is not a public key"},
      {"1 " + k1 + " nohost\n", "line 1: \"nohost\" is not a client address"},
      {"1 " + k1 + " h:0\n", "is not a client address"},
      {"1 " + k1 + " h:65536\n", "is not a client address"},
      {"1 " + k1 + " :80\n", "is not a client address"},
      {"1 " + k1 + "\n\n1 " + k2 + "\n", "line 3: node 1 appears twice"},
      {"1 " + k1 + " h:1\n2 " + k2 + " h:1\n", "line 2: address h:1 is given to node 1 already"},
      {"# nothing but comments\n\n", "lists no member"},
  };
  for (const Case& c : cases) {
    INFO("file holds: " << c.text);
    const std::string path = f.dir.Write("peers-bad", c.text);
    Credentials creds;
    std::string error;
    CHECK_FALSE(LoadCredentials(f.key_file, path, &creds, &error));
    CHECK(error.find(path) == 0);
    CHECK(error.find(c.says) != std::string::npos);
  }
}

// ---- ServerKeys -------------------------------------------------------------------

Credentials SecureWith(std::map<std::string, std::string> by_address,
                       std::map<uint64_t, std::string> by_id = {}) {
  Credentials c;
  c.secret_key = NewPair().secret_key;
  c.server_keys = std::move(by_address);
  c.server_keys_by_id = std::move(by_id);
  return c;
}

TEST_CASE("server keys: without credentials every node is reachable, in clear") {
  ServerKeys keys(Credentials{});
  CHECK_FALSE(keys.secure());
  CHECK(keys.Knows("10.0.0.1:8080"));
  CHECK(keys.KeyOf("10.0.0.1:8080").empty());
}

TEST_CASE("server keys: a key given by id is used once a reply names its address") {
  const std::string k1 = NewPair().public_key, k2 = NewPair().public_key;
  ServerKeys keys(SecureWith({{"h:1", k1}}, {{1, k1}, {2, k2}}));
  CHECK(keys.Knows("h:1"));
  CHECK_FALSE(keys.Knows("h:2"));
  keys.LearnMembers({{1, "h:1"}, {2, "h:2"}}, {});  // a status without member_keys
  CHECK(keys.KeyOf("h:2") == k2);
}

TEST_CASE("server keys: member_keys joined with members by id, and a leader's key by address") {
  const std::string k1 = NewPair().public_key, k3 = NewPair().public_key;
  const std::string k4 = NewPair().public_key;
  ServerKeys keys(SecureWith({{"h:1", k1}}));
  keys.LearnMembers({{1, "h:1"}, {3, "h:3"}}, {{1, k1}, {3, k3}, {4, k4}});
  CHECK(keys.KeyOf("h:3") == k3);
  CHECK_FALSE(keys.Knows("h:4"));  // its address is not known yet
  keys.LearnMembers({{4, "h:4"}}, {});
  CHECK(keys.KeyOf("h:4") == k4);

  const std::string k5 = NewPair().public_key;
  keys.LearnLeader("h:5", k5);
  CHECK(keys.KeyOf("h:5") == k5);
  keys.LearnLeader("h:6", "");  // a REDIRECT without leader_key teaches nothing
  keys.LearnLeader("h:6", "not a key");
  CHECK_FALSE(keys.Knows("h:6"));
}

TEST_CASE("server keys: what the cluster says replaces what was known") {
  const std::string old_key = NewPair().public_key, new_key = NewPair().public_key;
  ServerKeys keys(SecureWith({{"h:2", old_key}}, {{2, old_key}}));
  // Member 2 was removed and added back with a new key.
  keys.LearnMembers({{2, "h:2"}}, {{2, new_key}});
  CHECK(keys.KeyOf("h:2") == new_key);
}

TEST_CASE("server keys: sockets only to nodes whose key is known") {
  zmq::context_t ctx(1);
  const std::string k1 = NewPair().public_key;
  ServerKeys keys(SecureWith({{"127.0.0.1:1", k1}}));
  CHECK(keys.Open(ctx, zmq::socket_type::dealer, "127.0.0.1:1", ServerKeys::Port::kClient));
  CHECK(keys.Open(ctx, zmq::socket_type::sub, "127.0.0.1:1", ServerKeys::Port::kEvents));
  CHECK_FALSE(keys.Open(ctx, zmq::socket_type::dealer, "127.0.0.1:2", ServerKeys::Port::kClient));
  CHECK(ServerKeys::MissingKeyError({"127.0.0.1:2"}) ==
        "no server key for 127.0.0.1:2: add \"ID KEY 127.0.0.1:2\" to --server-keys");
}

}  // namespace
}  // namespace kv::client
