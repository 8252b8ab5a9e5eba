#include "net/zap.h"

#include <vector>

#include "common/logging.h"
#include "net/zmq_util.h"

namespace kv::net {

namespace {

constexpr size_t kMaxLoggedRefusals = 1000;
constexpr size_t kCurveKeyBytes = 32;

}  // namespace

ZapHandler::ZapHandler(zmq::context_t* ctx, Decide decide)
    : socket_(*ctx, zmq::socket_type::router), decide_(std::move(decide)) {
  socket_.set(zmq::sockopt::linger, 0);
}

Status ZapHandler::Bind() {
  Status s = BindSocket(socket_, "inproc://zeromq.zap.01");
  return s.ok() ? s : Status::IOError(s.message());
}

int ZapHandler::fd() const { return socket_.get(zmq::sockopt::fd); }

bool ZapHandler::Drain() {
  bool found = false;
  std::vector<zmq::message_t> f;
  while (ReceiveFrames(socket_, &f, "zap socket")) {
    found = true;
    // [routing id, empty, version, request id, domain, address, identity,
    //  mechanism, credentials...]
    if (f.size() < 8 || f[2].to_string_view() != "1.0") continue;
    const std::string_view domain = f[4].to_string_view();
    const std::string_view address = f[5].to_string_view();
    const std::string_view mechanism = f[7].to_string_view();
    std::optional<std::string> user;
    std::string key;
    if (mechanism == "CURVE" && f.size() == 9 && f[8].size() == kCurveKeyBytes) {
      char z85[41];
      zmq_z85_encode(z85, static_cast<const uint8_t*>(f[8].data()), kCurveKeyBytes);
      key = z85;
      user = decide_(domain, key);
    }
    if (!user) {
      ++refused_;
      const std::string what = std::string(domain) + " " + key + " " + std::string(address);
      if (logged_.size() < kMaxLoggedRefusals && logged_.insert(what).second) {
        KV_LOG(kWarn) << "refused a " << mechanism << " connection from " << address << " to the "
                      << domain << " port: key " << (key.empty() ? "(none)" : key)
                      << " is not allowed there (" << refused_ << " refused so far)";
      }
    }
    const std::string_view code = user ? "200" : "400";
    const std::string_view text = user ? "OK" : "key not allowed";
    const std::string user_id = user.value_or("");
    SendFrames(socket_,
               {f[0].to_string_view(), std::string_view(), "1.0", f[3].to_string_view(), code, text,
                user_id, std::string_view()},
               "zap reply");
  }
  return found;
}

}  // namespace kv::net
