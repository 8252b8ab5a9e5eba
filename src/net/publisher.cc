#include "net/publisher.h"

#include "net/events.h"

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
  Send(topic, buf.data(), buf.size());
}

void Publisher::Publish(Event event) {
  seq_++;
  std::visit(
      [&](auto& e) {
        e.node = node_id_;
        e.seq = seq_;
      },
      event);
  const std::string body = EncodeEvent(event);
  Send(EventTopic(event), body.data(), body.size());
}

void Publisher::Send(std::string_view topic, const void* data, size_t size) {
  zmq::message_t topic_frame(topic.data(), topic.size());
  zmq::message_t body(data, size);
  // PUB never blocks: with no subscriber or a full queue the event is dropped.
  (void)socket_->send(topic_frame, zmq::send_flags::sndmore | zmq::send_flags::dontwait);
  (void)socket_->send(body, zmq::send_flags::dontwait);
}

}  // namespace kv::net
