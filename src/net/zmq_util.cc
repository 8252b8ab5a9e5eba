#include "net/zmq_util.h"

#include <zmq_addon.hpp>

#include "common/logging.h"

namespace kv::net {

Status BindSocket(zmq::socket_t& socket, const std::string& endpoint) {
  try {
    socket.bind(endpoint);
    return Status::OK();
  } catch (const zmq::error_t& e) {
    return Status::InvalidArgument("cannot listen on " + endpoint + ": " + e.what());
  }
}

bool SendFrames(zmq::socket_t& socket, const std::string_view* frames, size_t count,
                const char* what) {
  try {
    for (size_t i = 0; i < count; ++i) {
      const auto more = i + 1 < count ? zmq::send_flags::sndmore : zmq::send_flags::none;
      if (!socket.send(zmq::buffer(frames[i]), more | zmq::send_flags::dontwait)) return false;
    }
    return true;
  } catch (const zmq::error_t& e) {
    KV_LOG(kDebug) << what << ": " << e.what();
    return false;
  }
}

bool ReceiveFrames(zmq::socket_t& socket, std::vector<zmq::message_t>* frames, const char* what) {
  frames->clear();
  try {
    return zmq::recv_multipart(socket, std::back_inserter(*frames), zmq::recv_flags::dontwait)
        .has_value();
  } catch (const zmq::error_t& e) {
    KV_LOG(kWarn) << what << ": " << e.what();
    return false;
  }
}

bool HasInput(zmq::socket_t& socket) {
  try {
    return (socket.get(zmq::sockopt::events) & ZMQ_POLLIN) != 0;
  } catch (const zmq::error_t&) {
    return false;
  }
}

}  // namespace kv::net
