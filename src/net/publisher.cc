#include "net/publisher.h"

#include "net/events.h"
#include "net/zmq_util.h"

namespace kv::net {

void Publisher::Publish(Event event) {
  seq_++;
  std::visit(
      [&](auto& e) {
        e.node = node_id_;
        e.seq = seq_;
      },
      event);
  // PUB never blocks: with no subscriber or a full queue the event is dropped.
  const std::string body = EncodeEvent(event);
  SendFrames(*socket_, {EventTopic(event), body}, "event");
}

}  // namespace kv::net
