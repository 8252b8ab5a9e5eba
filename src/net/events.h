// Event codec: the msgpack body of each event of the node's event stream
// (docs/protocol.md, "Event stream v1"). An event is two frames: its topic
// (EventTopic) and a msgpack map with "node", "seq" and the topic's fields,
// in the order listed in kvstore/events.h; keys are msgpack bin, text is str.
// Decoders never trust their input: a malformed, oversized or unknown event
// gives a Status with the reason, never a crash.
// Thread safety: pure functions.
#pragma once

#include <string>
#include <string_view>

#include "common/status.h"
#include "kvstore/events.h"

namespace kv::net {

// Bodies larger than this are refused by DecodeEvent (a key is at most
// kDefaultMaxKeyBytes unless a node raised its limit; this leaves room).
constexpr size_t kMaxEventBytes = 1 << 20;

// The event's map, with its node and seq as they are in `event`.
std::string EncodeEvent(const Event& event);

// Decodes the body of an event published under `topic`. InvalidArgument for
// a body that is not such an event (not msgpack, not a map, a field of the
// wrong type, no node or seq, too large), NotFound for a topic this version
// does not know (a newer node's: subscribers skip it).
Status DecodeEvent(std::string_view topic, std::string_view body, Event* event);

}  // namespace kv::net
