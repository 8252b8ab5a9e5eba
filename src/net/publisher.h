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
#include <string_view>
#include <variant>
#include <vector>

#include <zmq.hpp>

#include "kvstore/events.h"

namespace kv::net {

// Bytes that need not be text (keys): sent as msgpack bin, not str.
struct EventBytes {
  std::string bytes;
};

struct EventField {
  std::string name;
  std::variant<uint64_t, std::string, EventBytes> value;
};

class Publisher {
 public:
  Publisher(zmq::socket_t* socket, uint64_t node_id) : socket_(socket), node_id_(node_id) {}

  // Sends the event without blocking; a slow subscriber loses events (PUB
  // semantics), never the node its time.
  void Publish(std::string_view topic, const std::vector<EventField>& fields);
  // The same for a typed event: its node and seq are set here (the ones in
  // `event` are ignored).
  void Publish(Event event);
  uint64_t seq() const { return seq_; }

 private:
  void Send(std::string_view topic, const void* body, size_t size);

  zmq::socket_t* socket_;
  uint64_t node_id_;
  uint64_t seq_ = 0;
};

}  // namespace kv::net
