// Access control of a secure node (node/access.h) and the key files and
// member records it reads (node/config.h).
#include "node/access.h"

#include <catch2/catch.hpp>

#include "net/curve_keys.h"
#include "node/config.h"

namespace kv::node {
namespace {

std::string NewPublicKey() {
  net::KeyPair pair;
  std::string error;
  REQUIRE(net::GenerateKeyPair(&pair, &error));
  return pair.public_key;
}

TEST_CASE("access: client keys files name a role, a key and maybe a name") {
  const std::string a = NewPublicKey(), b = NewPublicKey();
  ClientKeys keys;
  REQUIRE(ParseClientKeys("# clients\n\nread " + a + " alice\nadmin " + b + "\n", &keys).ok());
  REQUIRE(keys.size() == 2);
  CHECK(keys.at(a).role == Role::kRead);
  CHECK(keys.at(a).name == "alice");
  CHECK(keys.at(b).role == Role::kAdmin);

  for (const std::string& bad :
       std::vector<std::string>{"root " + a, "read not-a-key", "read", "write " + a + " x y",
                                "read " + a + "\nwrite " + a}) {
    Status s = ParseClientKeys(bad, &keys);
    INFO(bad);
    CHECK(s.IsInvalidArgument());
    CHECK(s.message().find("client keys line") != std::string::npos);
  }
}

TEST_CASE("access: peer keys may give each member's client address") {
  const std::string a = NewPublicKey(), b = NewPublicKey();
  std::map<raft::NodeId, std::string> keys;
  std::map<raft::NodeId, HostPort> addresses;
  REQUIRE(ParsePeerKeys("1 " + a + " 10.0.0.1:8080\n2 " + b + "\n", &keys, &addresses).ok());
  CHECK(keys.at(1) == a);
  CHECK(keys.at(2) == b);
  REQUIRE(addresses.size() == 1);
  CHECK(addresses.at(1).ToString() == "10.0.0.1:8080");

  for (const std::string& bad : std::vector<std::string>{
           "1 " + a + " nowhere", "0 " + a, "1 " + a + " h:1 extra", "1 " + a + "\n1 " + b}) {
    keys.clear();
    INFO(bad);
    CHECK(ParsePeerKeys(bad, &keys, &addresses).IsInvalidArgument());
  }
}

TEST_CASE("access: a member record is an address and, when secure, a key") {
  const std::string key = NewPublicKey();
  HostPort hp{"10.0.0.4", 8080};
  HostPort parsed;
  std::string parsed_key = "stale";
  REQUIRE(ParseMemberRecord(MemberRecord(hp, ""), &parsed, &parsed_key).ok());
  CHECK(parsed.ToString() == "10.0.0.4:8080");
  CHECK(parsed_key.empty());
  REQUIRE(ParseMemberRecord(MemberRecord(hp, key), &parsed, &parsed_key).ok());
  CHECK(parsed_key == key);
  CHECK(ParseMemberRecord("10.0.0.4:8080 not-a-key", &parsed, &parsed_key).IsInvalidArgument());
  CHECK(ParseMemberRecord("10.0.0.4 " + key, &parsed, &parsed_key).IsInvalidArgument());
}

TEST_CASE("access: each op needs its role") {
  CHECK(RoleNeeded(net::ClientOp::kGet) == Role::kRead);
  CHECK(RoleNeeded(net::ClientOp::kStatus) == Role::kRead);
  CHECK(RoleNeeded(net::ClientOp::kShards) == Role::kRead);
  CHECK(RoleNeeded(net::ClientOp::kScan) == Role::kRead);
  CHECK(RoleNeeded(net::ClientOp::kPut) == Role::kWrite);
  CHECK(RoleNeeded(net::ClientOp::kDelete) == Role::kWrite);
  CHECK(RoleNeeded(net::ClientOp::kCas) == Role::kWrite);
  CHECK(RoleNeeded(net::ClientOp::kTouch) == Role::kWrite);
  CHECK(RoleNeeded(net::ClientOp::kTxn) == Role::kWrite);
  CHECK(RoleNeeded(net::ClientOp::kMemberAdd) == Role::kAdmin);
  CHECK(RoleNeeded(net::ClientOp::kMemberRemove) == Role::kAdmin);
  CHECK(RoleNeeded(net::ClientOp::kTransferLeader) == Role::kAdmin);
  CHECK(RoleNeeded(net::ClientOp::kBackup) == Role::kAdmin);
}

TEST_CASE("access: who may connect to which port, and with which role") {
  NodeConfig cfg;
  cfg.id = 1;
  cfg.secret_key = "set";  // only curve() is looked at
  NodeContext ctx(cfg);
  const std::string self = NewPublicKey(), member = NewPublicKey(), stranger = NewPublicKey();
  ctx.member_keys = {{1, self}, {2, member}};
  Access access(&ctx);

  // The Raft port: members only (not this node's own key), named by id.
  CHECK(access.Authorize("raft", member) == std::optional<std::string>("peer:2"));
  CHECK(access.Authorize("raft", self) == std::nullopt);
  CHECK(access.Authorize("raft", stranger) == std::nullopt);
  // Client and event ports: members' keys, with the read role.
  CHECK(access.Authorize(Access::kClientDomain, member) == std::optional<std::string>(member));
  CHECK(access.Authorize(Access::kEventsDomain, stranger) == std::nullopt);
  CHECK(access.Authorize("other", member) == std::nullopt);
  CHECK(access.RoleOf(member) == Role::kRead);
  CHECK(access.RoleOf(stranger) == Role::kNone);
  CHECK(access.RoleOf("") == Role::kNone);

  NodeConfig open;
  NodeContext open_ctx(open);
  CHECK(Access(&open_ctx).RoleOf("") == Role::kAdmin);
}

}  // namespace
}  // namespace kv::node
