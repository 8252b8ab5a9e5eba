// SocketMonitor: the connection events of one ZeroMQ socket
// (zmq_socket_monitor), read by the thread that owns the socket whenever it
// likes (the node: once a tick). ZeroMQ's I/O threads send the events over
// an inproc PAIR whose queue this side leaves unbounded: libzmq sends them
// with a blocking send, so with a bounded queue an I/O thread would stop on
// a full one, and every connection it serves with it, until the owner read.
// Unbounded, no event is lost and none waits for the reader; what queues
// between two reads is a few bytes per connection opened or closed.
// ConnectionCount: the connections a bound socket holds open, from its
// monitor.
// Thread safety: none; the monitored socket's owner thread.
#pragma once

#include <cstdint>
#include <functional>
#include <zmq.hpp>

#include "common/status.h"

namespace kv::net {

class SocketMonitor {
 public:
  // Starts monitoring the events `events` (ZMQ_EVENT_* bits) of `socket`:
  // before it binds or connects, or its first connections go unseen.
  // IOError when ZeroMQ refuses.
  Status Start(zmq::context_t* ctx, zmq::socket_t& socket, int events);
  bool started() const { return static_cast<bool>(pair_); }
  // Reads the waiting events, calling on_event(ZMQ_EVENT_...) for each, in
  // the order they happened.
  void Read(const std::function<void(int event)>& on_event);

 private:
  zmq::socket_t pair_;
};

class ConnectionCount {
 public:
  // REQUIRES: before the socket binds.
  Status Start(zmq::context_t* ctx, zmq::socket_t& socket) {
    return monitor_.Start(ctx, socket, ZMQ_EVENT_ACCEPTED | ZMQ_EVENT_DISCONNECTED);
  }
  // Counts what the monitor reported since the last call; returns the
  // connections open now (a connection refused at its handshake counts in
  // and out again).
  int64_t Update();

 private:
  SocketMonitor monitor_;
  int64_t open_ = 0;
};

}  // namespace kv::net
