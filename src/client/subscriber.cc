#include "kvstore/subscriber.h"

#include <deque>
#include <zmq.hpp>

#include "client/curve.h"
#include "kvstore/client.h"
#include "net/client_codec.h"
#include "net/events.h"

namespace kv::client {

namespace {

using Clock = std::chrono::steady_clock;

// A node not joined yet is asked again this often (its first answer may be lost).
constexpr auto kJoinRetry = std::chrono::milliseconds(1000);
// Events held while waiting for a node's status; the oldest go first.
constexpr size_t kMaxHeld = 10000;

}  // namespace

struct Subscriber::Impl {
  struct Node {
    std::string endpoint;
    bool connected = false;  // false: its key is unknown (yet); no sockets
    zmq::socket_t sub;
    zmq::socket_t dealer;
    uint64_t status_request = 0;  // the id of the last status request
    // Replies to requests from this id on count: a slow node's answer to an
    // earlier request joins as well as one to the last (they are resent
    // every kJoinRetry), but none from before the node restarted.
    uint64_t first_useful_request = 0;
    Clock::time_point status_sent{};
    bool refresh = false;  // ask for status at the next Poll
    bool joined = false;
    uint64_t joined_seq = 0;  // events at or below this are in a delivered status
    uint64_t last_seq = 0;    // the last event's seq received, delivered or not
    std::deque<Event> held;   // events received before the status that joins them
  };

  explicit Impl(SubscriberOptions o) : options(std::move(o)), keys(options.credentials) {
    nodes.resize(options.endpoints.size());
    for (size_t i = 0; i < nodes.size(); ++i) {
      nodes[i].endpoint = options.endpoints[i];
      Connect(nodes[i]);
    }
  }

  // Subscribes to the node's events and opens its DEALER, when its key is
  // known (always without CURVE).
  void Connect(Node& n) {
    if (n.connected) return;
    std::optional<zmq::socket_t> sub =
        keys.Open(ctx, zmq::socket_type::sub, n.endpoint, ServerKeys::Port::kEvents);
    std::optional<zmq::socket_t> dealer =
        keys.Open(ctx, zmq::socket_type::dealer, n.endpoint, ServerKeys::Port::kClient);
    if (!sub || !dealer) return;
    sub->set(zmq::sockopt::subscribe, options.topic_prefix);
    n.sub = std::move(*sub);
    n.dealer = std::move(*dealer);
    n.connected = true;
    // Its join starts now: ask its status at the next Poll.
    n.status_sent = Clock::time_point{};
    items.clear();
    for (size_t i = 0; i < nodes.size(); ++i) {
      if (!nodes[i].connected) continue;
      items.push_back({static_cast<void*>(nodes[i].sub), 0, ZMQ_POLLIN, 0});
      items.push_back({static_cast<void*>(nodes[i].dealer), 0, ZMQ_POLLIN, 0});
    }
  }

  void RequestStatus(Node& n, Clock::time_point now) {
    net::ClientRequest req;
    req.op = net::ClientOp::kStatus;
    req.id = n.status_request = next_id++;
    n.status_sent = now;
    n.refresh = false;
    (void)n.dealer.send(zmq::buffer(net::EncodeClientRequest(req)), zmq::send_flags::dontwait);
  }

  void OnStatus(size_t i, std::string_view bytes, std::vector<Update>* out) {
    Node& n = nodes[i];
    Update u;
    u.node = i;
    uint64_t id = 0;
    NodeStatus status;
    if (!net::DecodeStatusReply(bytes, &id, &status).ok() || id < n.first_useful_request ||
        id > n.status_request) {
      return;
    }
    // The members' keys it lists may let us follow nodes we could not yet.
    keys.LearnMembers(status.members, status.member_keys);
    for (Node& other : nodes) Connect(other);
    // Joined or not, events up to event_seq are in this status.
    n.joined_seq = n.joined ? std::max(n.joined_seq, status.event_seq) : status.event_seq;
    n.joined = true;
    u.status = std::move(status);
    out->push_back(std::move(u));
    while (!n.held.empty()) {
      Deliver(i, std::move(n.held.front()), out);
      n.held.pop_front();
    }
  }

  void OnEvent(size_t i, Event event, std::vector<Update>* out) {
    Node& n = nodes[i];
    const uint64_t seq = EventSeq(event);
    if (seq <= n.last_seq) {
      // Seq went down: the node restarted. Join it again.
      n.joined = false;
      n.held.clear();
      n.refresh = true;
      n.first_useful_request = next_id;
    } else if (n.joined && options.topic_prefix.empty() && n.last_seq != 0 &&
               seq > n.last_seq + 1) {
      n.refresh = true;  // events were lost: a fresh status covers them
    }
    n.last_seq = seq;
    if (!n.joined) {
      if (n.held.size() == kMaxHeld) n.held.pop_front();
      n.held.push_back(std::move(event));
      return;
    }
    Deliver(i, std::move(event), out);
  }

  void Deliver(size_t i, Event event, std::vector<Update>* out) {
    Node& n = nodes[i];
    const uint64_t seq = EventSeq(event);
    if (seq <= n.joined_seq) return;  // already in the status
    n.joined_seq = seq;
    Update u;
    u.node = i;
    u.event = std::move(event);
    out->push_back(std::move(u));
  }

  SubscriberOptions options;
  ServerKeys keys;
  zmq::context_t ctx{1};
  std::vector<Node> nodes;
  std::vector<zmq::pollitem_t> items;  // each connected node's SUB, then its DEALER
  uint64_t next_id = 1;
};

Subscriber::Subscriber(SubscriberOptions options)
    : impl_(std::make_unique<Impl>(std::move(options))) {}

Subscriber::~Subscriber() = default;

void Subscriber::RefreshStatus(size_t node) { impl_->nodes.at(node).refresh = true; }

std::string Subscriber::MissingKey(size_t node) const {
  const Impl::Node& n = impl_->nodes.at(node);
  return n.connected ? "" : ServerKeys::MissingKeyError({n.endpoint});
}

bool Subscriber::Poll(std::chrono::milliseconds wait, std::vector<Update>* out) {
  Impl& m = *impl_;
  const auto now = Clock::now();
  const auto every = m.options.status_every;
  for (Impl::Node& n : m.nodes) {
    if (!n.connected) continue;
    const auto since = now - n.status_sent;
    if (n.refresh || (!n.joined && since >= kJoinRetry) || (every.count() > 0 && since >= every)) {
      m.RequestStatus(n, now);
    }
  }
  try {
    zmq::poll(m.items.data(), m.items.size(), wait);
  } catch (const zmq::error_t&) {
    return false;  // EINTR
  }
  // Drain everything waiting: the caller summarises a flood, we do not queue it.
  for (size_t i = 0; i < m.nodes.size(); ++i) {
    Impl::Node& n = m.nodes[i];
    if (!n.connected) continue;
    zmq::message_t topic, body;
    while (n.sub.recv(topic, zmq::recv_flags::dontwait)) {
      if (!topic.more() || !n.sub.recv(body, zmq::recv_flags::dontwait)) continue;
      Event event;
      // A malformed event, or one of a topic this version does not know, is skipped.
      if (!net::DecodeEvent(topic.to_string_view(), body.to_string_view(), &event).ok()) continue;
      m.OnEvent(i, std::move(event), out);
    }
    zmq::message_t reply;
    while (n.dealer.recv(reply, zmq::recv_flags::dontwait)) {
      m.OnStatus(i, reply.to_string_view(), out);
    }
  }
  return true;
}

}  // namespace kv::client
