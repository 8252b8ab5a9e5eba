// ZapHandler: the ZeroMQ authentication handler (ZAP, RFC 27 of the ZeroMQ
// project) of a node. Every CURVE handshake on a socket of the node's ZeroMQ
// context asks it whether the client's public key may connect to that
// socket's ZAP domain; an accepted connection's messages then carry the user
// id the handler chose (ZeroMQ's "User-Id" message property), so the node
// knows who sent each message.
//
// It must be bound before any CURVE server socket of the context binds.
// Thread safety: none; the loop thread owns its socket.
#pragma once

#include <functional>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <zmq.hpp>

#include "common/status.h"

namespace kv::net {

class ZapHandler {
 public:
  // The user id for a client key (Z85) on a ZAP domain, or nullopt to refuse.
  using Decide =
      std::function<std::optional<std::string>(std::string_view domain, const std::string& key)>;

  ZapHandler(zmq::context_t* ctx, Decide decide);

  // Binds inproc://zeromq.zap.01. IOError when another handler has.
  Status Bind();
  int fd() const;
  // Answers every waiting request; returns whether there was one.
  bool Drain();

 private:
  zmq::socket_t socket_;  // ROUTER: libzmq asks from a REQ socket
  Decide decide_;
  // Refusals already logged (domain, key, address), so each is logged once;
  // bounded, then only counted.
  std::set<std::string> logged_;
  uint64_t refused_ = 0;
};

}  // namespace kv::net
