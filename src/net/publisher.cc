#include "net/publisher.h"

#define MSGPACK_NO_BOOST
#include <msgpack.hpp>

namespace kv::net {

void Publisher::Publish(std::string_view topic, const std::vector<EventField>& fields) {
  seq_++;
  msgpack::sbuffer buf;
  msgpack::packer<msgpack::sbuffer> pk(buf);
  pk.pack_map(static_cast<uint32_t>(fields.size() + 2));
  pk.pack("node");
  pk.pack_uint64(node_id_);
  pk.pack("seq");
  pk.pack_uint64(seq_);
  for (const auto& f : fields) {
    pk.pack(f.name);
    if (const auto* u = std::get_if<uint64_t>(&f.value)) {
      pk.pack_uint64(*u);
    } else if (const auto* b = std::get_if<EventBytes>(&f.value)) {
      pk.pack_bin(static_cast<uint32_t>(b->bytes.size()));
      pk.pack_bin_body(b->bytes.data(), static_cast<uint32_t>(b->bytes.size()));
    } else {
      const std::string& s = std::get<std::string>(f.value);
      pk.pack_str(static_cast<uint32_t>(s.size()));
      pk.pack_str_body(s.data(), static_cast<uint32_t>(s.size()));
    }
  }
  zmq::message_t topic_frame(topic.data(), topic.size());
  zmq::message_t body(buf.data(), buf.size());
  // PUB never blocks: with no subscriber or a full queue the event is dropped.
  (void)socket_->send(topic_frame, zmq::send_flags::sndmore | zmq::send_flags::dontwait);
  (void)socket_->send(body, zmq::send_flags::dontwait);
}

}  // namespace kv::net
