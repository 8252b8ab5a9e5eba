#include "net/socket_monitor.h"

#include <atomic>
#include <cstring>
#include <string>
#include <vector>

#include "net/zmq_util.h"

namespace kv::net {

Status SocketMonitor::Start(zmq::context_t* ctx, zmq::socket_t& socket, int events) {
  // inproc names are per context; one counter for the process keeps them
  // unique whatever the contexts.
  static std::atomic<uint64_t> made{0};
  const std::string endpoint = "inproc://kv-monitor-" + std::to_string(++made);
  if (zmq_socket_monitor(socket.handle(), endpoint.c_str(), events) != 0) {
    return Status::IOError(std::string("zmq_socket_monitor: ") + zmq_strerror(zmq_errno()));
  }
  try {
    zmq::socket_t pair(*ctx, zmq::socket_type::pair);
    pair.set(zmq::sockopt::linger, 0);
    // 0: no limit, for the queue from the monitor to here too (an inproc
    // queue's limit is the sum of both sides', or none when either is 0).
    pair.set(zmq::sockopt::rcvhwm, 0);
    pair.connect(endpoint);
    pair_ = std::move(pair);
  } catch (const zmq::error_t& e) {
    zmq_socket_monitor(socket.handle(), nullptr, 0);
    return Status::IOError(std::string("socket monitor: ") + e.what());
  }
  return Status::OK();
}

void SocketMonitor::Read(const std::function<void(int event)>& on_event) {
  if (!pair_) return;
  std::vector<zmq::message_t> frames;
  // An event is two frames: the event number (16 bits) and a value (32
  // bits), then the endpoint.
  while (ReceiveFrames(pair_, &frames, "socket monitor")) {
    if (frames.empty() || frames[0].size() < sizeof(uint16_t)) continue;
    uint16_t event = 0;
    std::memcpy(&event, frames[0].data(), sizeof event);
    on_event(event);
  }
}

int64_t ConnectionCount::Update() {
  monitor_.Read([this](int event) {
    if (event == ZMQ_EVENT_ACCEPTED) ++open_;
    if (event == ZMQ_EVENT_DISCONNECTED && open_ > 0) --open_;
  });
  return open_;
}

}  // namespace kv::net
