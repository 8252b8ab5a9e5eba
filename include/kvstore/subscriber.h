// Subscriber: follows the event streams of a set of nodes (docs/protocol.md,
// "Event stream v1") and delivers typed events (kvstore/events.h).
//
// Each node is joined like the ZeroMQ guide's Clone pattern: subscribe to its
// PUB port first, then ask its status (which carries the seq of the last
// event it reflects), deliver the status, then the events after it; events
// that arrive before the status are held until it does, those at or below
// its event_seq are dropped. A node whose seq goes down (it restarted) is
// joined again the same way; a gap in seq (events lost, PUB drops them when
// a subscriber is slow) makes the subscriber ask for a fresh status, which
// it delivers like the first. With status_every set, every node's status is
// also asked that often, so that a caller can tell a node that stopped
// answering.
//
// Secure clusters (SubscriberOptions::credentials): both sockets to a node,
// the SUB to its event port and the DEALER to its client port, are CURVE
// clients with the node's key (the same on both ports). A node whose key is
// not known is not followed until a status from another node teaches it
// (status lists every member's key); MissingKey says which nodes wait so.
//
// Thread safety: none. One thread polls a Subscriber; it owns its sockets.
#pragma once

#include <chrono>
#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "kvstore/credentials.h"
#include "kvstore/events.h"
#include "kvstore/node_status.h"

namespace kv::client {

struct SubscriberOptions {
  // The client host:port of each node to follow (its PUB port is derived).
  std::vector<std::string> endpoints;
  // Only topics starting with this: "" all, "kv." key changes.
  std::string topic_prefix;
  // Ask every node's status this often beyond the join; 0: only to join.
  std::chrono::milliseconds status_every{0};
  // This client's key pair and the nodes' public keys; empty: no CURVE.
  Credentials credentials;
};

// One thing a node told: its status (an answer to the subscriber's status
// request) or an event after it.
struct Update {
  size_t node = 0;                   // the index of the node's endpoint in SubscriberOptions
  std::optional<NodeStatus> status;  // set: a status; unset: `event`
  Event event;
};

class Subscriber {
 public:
  explicit Subscriber(SubscriberOptions options);
  ~Subscriber();
  Subscriber(const Subscriber&) = delete;
  Subscriber& operator=(const Subscriber&) = delete;

  // Waits up to `wait` for news, sends the status requests that are due, and
  // appends what arrived to *out, each node's in order. False when a signal
  // interrupted the wait (the caller decides whether to go on).
  bool Poll(std::chrono::milliseconds wait, std::vector<Update>* out);

  // Asks node `node` (an index into the endpoints) for its status at the
  // next Poll, whatever status_every says.
  void RefreshStatus(size_t node);

  // Why node `node` is not followed (yet): its server key is unknown (the
  // error says which line --server-keys lacks). "" when it is followed.
  std::string MissingKey(size_t node) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace kv::client
