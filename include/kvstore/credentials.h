// Credentials: what a client needs to talk to a secure cluster (nodes started
// with --key, docs/protocol.md "Security"): its own CurveZMQ key pair, and
// the public key of each node it may connect to. Every ZeroMQ connection to
// a secure node is a CURVE handshake, and the client must name the node's
// public key before connecting, so a node whose key the client does not know
// cannot be reached at all. A client starts from the keys it is given here
// and learns the others from the cluster (client.h says how).
//
// Key files are those `kvctl keygen NAME` writes (kvstore/keys.h). The
// server keys file is a node's --peer-keys file: one member per line,
//
//   ID PUBLIC-KEY [HOST:PORT]
//
// the member's node id, its public key (Z85) and optionally its client
// address; blank lines and lines starting with '#' are skipped. A member
// given without its address is reachable once the client learns the
// address from the cluster (status and shards replies list every member's).
// Thread safety: plain values and pure functions (apart from reading files
// and the environment).
#pragma once

#include <cstdint>
#include <map>
#include <string>

namespace kv::client {

struct Credentials {
  // This client's key pair (Z85). An empty secret key means no CURVE: plain
  // connections, for a cluster started without --key.
  std::string secret_key;
  std::string public_key;  // derived from the secret key when left empty
  // The nodes' public keys (Z85) by client address, host:port spelt as in
  // the endpoints and as the cluster names its members (--peers).
  std::map<std::string, std::string> server_keys;
  // By node id: keys for members whose address the file does not give.
  std::map<uint64_t, std::string> server_keys_by_id;

  bool secure() const { return !secret_key.empty(); }
};

// Reads this client's secret key from `key_file` and the members' public
// keys from `server_keys_file` into *credentials. An empty argument is taken
// from the environment: KVSTORE_KEY, KVSTORE_SERVER_KEYS. Both empty there
// too: *credentials is left plain (no CURVE) and the result is true. False,
// with *error naming the file (and line) and what is wrong, when a file
// cannot be read or holds a bad line, or when only one of the two is given:
// a key without server keys could reach no node, and server keys without a
// key are a mistake better reported than ignored.
bool LoadCredentials(const std::string& key_file, const std::string& server_keys_file,
                     Credentials* credentials, std::string* error);

}  // namespace kv::client
