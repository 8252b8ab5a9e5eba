// Publisher: the node's event stream on a ZeroMQ PUB socket.
//
// Each event is two frames: the topic and a msgpack map that always holds
// "node" (the publishing node's id) and "seq" (a per-node sequence number,
// from 1, without gaps), plus the topic's own fields: the topics and their
// fields are the event types of kvstore/events.h, encoded by net/events.h
// (docs/protocol.md, "Event stream v1"). A subscriber
// joins like the ZeroMQ guide's Clone pattern: subscribe, read the node's
// status (which carries the current seq), drop events at or below it.
// Thread safety: none; the loop thread owns the socket.
#pragma once

#include <cstdint>
#include <string>
#include <zmq.hpp>

#include "kvstore/events.h"

namespace kv::net {

class Publisher {
 public:
  Publisher(zmq::socket_t* socket, uint64_t node_id) : socket_(socket), node_id_(node_id) {}

  // Sends the event without blocking; a slow subscriber loses events (PUB
  // semantics), never the node its time. Its node and seq are set here (the
  // ones in `event` are ignored).
  void Publish(Event event);
  uint64_t seq() const { return seq_; }

 private:
  zmq::socket_t* socket_;
  uint64_t node_id_;
  uint64_t seq_ = 0;
};

}  // namespace kv::net
