// Access: who may do what on a node started with --key (CurveZMQ).
//
// Every port is a CURVE server and the node's ZapHandler asks Authorize
// whether a client key may connect to a port: the Raft port admits only
// members' keys, the client and event ports the keys of --client-keys and
// the members'. On the client port each request's role is then looked up
// again from the key its connection authenticated with (RoleOf), so that a
// key removed from --client-keys by a reload (SIGHUP) is refused from its
// next request on, even over a connection made before.
//
// Roles: read (get, status, shards, events), write (read and every data
// write), admin (write and member changes, leader transfer). A member's key
// has the read role on the client port (a joining node reads the shard map).
// Without --key every request has the admin role.
// Thread safety: none; the loop thread owns it.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>

#include "common/status.h"
#include "net/client_codec.h"
#include "node/context.h"

namespace kv::node {

enum class Role : uint8_t { kNone, kRead, kWrite, kAdmin };

const char* RoleName(Role role);
// The role an op needs.
Role RoleNeeded(net::ClientOp op);

struct ClientKey {
  Role role = Role::kNone;
  std::string name;  // optional, for the log
};
using ClientKeys = std::map<std::string, ClientKey, std::less<>>;  // by public key (Z85)

// Parses a client keys file: one "ROLE PUBLIC-KEY-Z85 [name]" per line, ROLE
// one of read, write, admin; blank lines and lines starting with # are
// skipped. InvalidArgument naming the line for anything else or a key that
// appears twice.
Status ParseClientKeys(const std::string& text, ClientKeys* keys);

class Access {
 public:
  // ZAP domains of the node's three ports.
  static constexpr const char* kClientDomain = "client";
  static constexpr const char* kEventsDomain = "events";

  explicit Access(NodeContext* ctx) : ctx_(ctx) {}

  // Reads --client-keys (if given). InvalidArgument (naming the file and
  // line) when it cannot be read or parsed.
  Status Load();
  // Reads --client-keys again; on an error keeps the keys it had, and logs
  // why. Logs what changed.
  void Reload();

  // The ZAP decision for a client key (Z85) connecting to a port: the user
  // id its messages will carry, or nullopt to refuse the connection.
  std::optional<std::string> Authorize(std::string_view domain, const std::string& key) const;
  // The role of a request that came with ZeroMQ user id `user` (what
  // Authorize gave its connection).
  Role RoleOf(std::string_view user) const;

 private:
  bool IsMemberKey(std::string_view key) const;

  NodeContext* ctx_;
  ClientKeys client_keys_;
};

}  // namespace kv::node
