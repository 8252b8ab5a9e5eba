// ServerKeys: the one place where the client library opens its sockets to
// nodes (Client, AsyncClient and Subscriber all do it here), and where it
// keeps the CURVE public key of each node it knows.
//
// Without credentials (no secret key) every socket is plain and every node
// reachable. With them every socket is a CURVE client with this client's key
// pair and the node's public key as server key; a node whose key is not known
// is not connected at all (never in clear), and the caller says so with
// MissingKeyError. Keys come from the credentials (by address, or by node id
// until the id's address is known) and are learned from replies, which come
// over connections authenticated with a known key: a REDIRECT's leader_key
// for the leader's address, and the member_keys of status and shards
// replies, joined by node id with their members' addresses. The cluster's
// replicated configuration is the truth about its members' keys, so a key
// learned replaces what was known for that address or id (a member removed
// and added back with a new key stays reachable).
//
// Thread safety: none; each client owns its own.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>
#include <zmq.hpp>

#include "kvstore/client.h"
#include "kvstore/credentials.h"
#include "net/curve_keys.h"

namespace kv::client {

class ServerKeys {
 public:
  explicit ServerKeys(Credentials credentials) : credentials_(std::move(credentials)) {
    if (secure() && credentials_.public_key.empty()) {
      (void)net::PublicKeyOf(credentials_.secret_key, &credentials_.public_key);
    }
    by_address_ = credentials_.server_keys;
    by_id_ = credentials_.server_keys_by_id;
  }

  bool secure() const { return credentials_.secure(); }

  // Whether a socket to the node at `address` (host:port) can be opened:
  // always without CURVE, else when its key is known.
  bool Knows(const std::string& address) const {
    return !secure() || by_address_.count(address) > 0;
  }
  // The key of the node at `address`; "" when unknown or not secure.
  std::string KeyOf(const std::string& address) const {
    const auto it = by_address_.find(address);
    return secure() && it != by_address_.end() ? it->second : std::string();
  }
  // Every address whose key is known.
  const std::map<std::string, std::string>& by_address() const { return by_address_; }

  // A REDIRECT named `address` as the leader, with its key (may be empty).
  void LearnLeader(const std::string& address, const std::string& key) {
    if (!address.empty() && net::IsZ85Key(key)) by_address_[address] = key;
  }
  // A status or shards reply listed the members (id -> address) and the keys
  // it knows (id -> key).
  void LearnMembers(const std::map<uint64_t, std::string>& members,
                    const std::map<uint64_t, std::string>& member_keys) {
    for (const auto& [id, key] : member_keys) {
      if (net::IsZ85Key(key)) by_id_[id] = key;
    }
    for (const auto& [id, address] : members) {
      const auto key = by_id_.find(id);
      if (key != by_id_.end() && !address.empty()) by_address_[address] = key->second;
    }
  }
  // Keys by address learned elsewhere (another client's discovery).
  void LearnAddresses(const std::map<std::string, std::string>& keys) {
    for (const auto& [address, key] : keys) LearnLeader(address, key);
  }

  enum class Port { kClient, kEvents };

  // A socket of `type` connected to the node at `address` (its client
  // host:port): to its client port, or its event port (EventEndpoint,
  // served with the same key). LINGER 0, and CURVE when
  // secure. nullopt when secure and the node's key is unknown (see
  // MissingKeyError), or when ZeroMQ refuses the keys.
  std::optional<zmq::socket_t> Open(zmq::context_t& ctx, zmq::socket_type type,
                                    const std::string& address, Port port) const {
    if (!Knows(address)) return std::nullopt;
    try {
      zmq::socket_t s(ctx, type);
      s.set(zmq::sockopt::linger, 0);
      if (secure()) {
        // The CURVE client options must be set before connect: the
        // handshake starts with the connection.
        s.set(zmq::sockopt::curve_serverkey, by_address_.at(address));
        s.set(zmq::sockopt::curve_publickey, credentials_.public_key);
        s.set(zmq::sockopt::curve_secretkey, credentials_.secret_key);
      }
      s.connect(port == Port::kClient ? "tcp://" + address : EventEndpoint(address));
      return s;
    } catch (const zmq::error_t&) {
      return std::nullopt;
    }
  }

  // Why the nodes at `addresses` cannot be reached: no key is known for any.
  static std::string MissingKeyError(const std::vector<std::string>& addresses) {
    if (addresses.size() == 1) {
      return "no server key for " + addresses[0] + ": add \"ID KEY " + addresses[0] +
             "\" to --server-keys";
    }
    std::string list;
    for (const std::string& a : addresses) list += (list.empty() ? "" : ", ") + a;
    return "no server key for any of " + list +
           ": add a line \"ID KEY HOST:PORT\" per member to --server-keys";
  }

 private:
  Credentials credentials_;
  std::map<std::string, std::string> by_address_;  // host:port -> key
  std::map<uint64_t, std::string> by_id_;          // node id -> key
};

}  // namespace kv::client
