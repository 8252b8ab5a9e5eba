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

bool SendFrames(zmq::socket_t& socket, std::initializer_list<std::string_view> frames,
                zmq::message_t last, const char* what) {
  try {
    for (std::string_view f : frames) {
      if (!socket.send(zmq::buffer(f), zmq::send_flags::sndmore | zmq::send_flags::dontwait)) {
        return false;
      }
    }
    return socket.send(std::move(last), zmq::send_flags::dontwait).has_value();
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

void MakeCurveServer(zmq::socket_t& socket, const std::string& secret_key, const char* zap_domain) {
  socket.set(zmq::sockopt::curve_server, true);
  socket.set(zmq::sockopt::curve_secretkey, secret_key);
  socket.set(zmq::sockopt::zap_domain, zap_domain);
}

std::string_view UserId(const zmq::message_t& message) {
  const char* user = zmq_msg_gets(message.handle(), "User-Id");
  return user == nullptr ? std::string_view() : std::string_view(user);
}

}  // namespace kv::net
