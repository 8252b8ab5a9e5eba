#include "kvstore/async_client.h"

#include <algorithm>
#include <random>
#include <unordered_map>
#include <zmq.hpp>

#include "client/curve.h"
#include "client/shard_routes.h"
#include "net/client_codec.h"

namespace kv::client {

namespace {

using Clock = std::chrono::steady_clock;

uint64_t NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch())
      .count();
}

net::ClientOp WireOp(Op op) {
  switch (op) {
    case Op::kGet:
      return net::ClientOp::kGet;
    case Op::kPut:
      return net::ClientOp::kPut;
    case Op::kDelete:
      return net::ClientOp::kDelete;
    case Op::kCas:
      return net::ClientOp::kCas;
  }
  return net::ClientOp::kGet;
}

// One ZeroMQ context for every AsyncClient of the process (cppzmq's advice),
// with two I/O threads, however many clients: a load generator runs one per
// thread. Never destroyed, so that exit never waits on a socket left open.
zmq::context_t& ProcessContext() {
  static zmq::context_t* const ctx = new zmq::context_t(2);
  return *ctx;
}

// A session id per slot: a random per-client part above the slot's index,
// and the top bit set so that it is never 0 ("no session").
constexpr int kSlotBits = 20;

}  // namespace

Result Discover(const Options& options, Topology* out) {
  *out = Topology{};
  out->leader = options.endpoints.empty() ? "" : options.endpoints[0];
  Client probe(options);
  bool sharded = false;
  for (const auto& ep : options.endpoints) {
    NodeReport rep = probe.Status(ep);
    sharded = sharded || rep.status.shards > 0;
    if (rep.reachable && !rep.status.leader_address.empty()) {
      out->leader = rep.status.leader_address;
      break;
    }
  }
  Result r;
  if (sharded) {
    r = probe.Shards(&out->map);
    if (!r.ok()) out->map = ShardMap{};
  }
  out->server_keys = probe.server_keys();
  return r;
}

struct AsyncClient::Impl {
  // A request in flight, and the session it uses (kept by the slot for the
  // next request once this one completes).
  struct Slot {
    bool busy = false;
    uint64_t tag = 0;
    uint64_t client = 0;  // the session: its client id, and the last seq it used
    uint64_t seq = 0;
    net::ClientRequest req;  // a new id for every send; the same client and seq
    int conn = 0;            // which of an endpoint's connections it uses
    int ep = 0;              // the endpoint its request went to
    uint64_t sent_ns = 0;
  };

  // A node this client talks to, and its connections (none until first
  // used), made with `server_key` ("" plain).
  struct Endpoint {
    std::string address;
    std::string server_key;
    std::vector<zmq::socket_t> conns;
  };

  Impl(AsyncOptions o, const Topology& start) : opt(std::move(o)), keys(opt.credentials) {
    std::random_device rd;
    session_base = ((static_cast<uint64_t>(rd()) << 32 | rd()) << kSlotBits) | (1ULL << 63);
    keys.LearnAddresses(start.server_keys);
    default_ep = EndpointIndex(start.leader);
    for (const std::string& address : opt.endpoints) (void)EndpointIndex(address);
    if (start.map.shards > 0) InstallMap(start.map);
    const int first = Reachable(default_ep);
    if (first >= 0) (void)Conn(first, 0);
  }

  // The index of `address` in eps, added if new.
  int EndpointIndex(const std::string& address);
  // `ep` when this client can connect to it (secure clusters: its key is
  // known), else the default target, else the first endpoint it can connect
  // to, which becomes the default target; -1 when there is none.
  int Reachable(int ep);
  // Connection `conn` to endpoint `ep`, connecting them on first use (again
  // when the node's key changed since); null when the node's key is unknown.
  zmq::socket_t* Conn(int ep, int conn);
  // Closes an endpoint's connections, dropping whatever they still queue.
  void Disconnect(int ep);
  // Resends every request in flight to endpoint `ep`, each where it belongs now.
  void ResendFrom(int ep);
  // Where a request goes: its shard's leader when known, else the default.
  int Route(const Slot& slot) const;
  void InstallMap(const ShardMap& map) {
    keys.LearnMembers(map.members, map.member_keys);
    routes.Install(map, [this](const std::string& address) { return EndpointIndex(address); });
  }
  // Asks `ep` for the shard map when reply `r` names a shard we cannot place
  // or a map newer than ours; one request in flight at a time.
  void MaybeFetchMap(const net::ClientReply& r, int ep);
  void OnMapReply(std::string_view bytes);
  void Send(Slot& slot) { SendTo(slot, Route(slot)); }
  // Sends the slot's request to `ep` (or, when it cannot be reached, where
  // Reachable says) under a new request id. When no node can be reached,
  // completes it into `undeliverable` instead.
  void SendTo(Slot& slot, int ep);
  // Reports the slot's request done and frees the slot (its session stays).
  void Complete(Slot& slot, Code code, std::string value, std::string error,
                std::vector<Completion>* out);
  // Completes, redirects or resends the request `r` answers.
  void OnReply(net::ClientReply& r, std::vector<Completion>* out);
  // Resends what has been in flight longer than the request timeout.
  void CheckTimeouts(uint64_t now);

  AsyncOptions opt;
  ServerKeys keys;
  zmq::context_t& ctx = ProcessContext();
  uint64_t session_base = 0;
  std::vector<Endpoint> eps;
  int default_ep = 0;  // the current target: the leader, as far as we know
  // Sharded clusters: each shard's leader, an index in eps. Unsharded: every
  // request goes to default_ep.
  ShardRoutes routes;
  uint64_t map_request = 0;  // id of the shards request in flight; 0 none
  uint64_t map_asked_ns = 0;
  uint64_t map_asked_version = 0;  // the newest version a fetch was sent for
  // poll items over every connection, and each item's (endpoint, connection);
  // rebuilt when connections come or go.
  std::vector<zmq::pollitem_t> items;
  std::vector<std::pair<int, int>> item_conn;
  bool items_dirty = true;
  std::vector<Slot> slots;
  std::vector<size_t> free_slots;
  // Completions of requests that could not be sent; Poll hands them out.
  std::vector<Completion> undeliverable;
  std::unordered_map<uint64_t, size_t> by_request;  // request id -> slot
  uint64_t next_request = 1;
  uint64_t next_conn = 0;
  size_t busy = 0;
  uint64_t redirects = 0;
  uint64_t retries = 0;
};

int AsyncClient::Impl::EndpointIndex(const std::string& address) {
  for (size_t i = 0; i < eps.size(); ++i) {
    if (eps[i].address == address) return static_cast<int>(i);
  }
  eps.push_back(Endpoint{address, {}, {}});
  items_dirty = true;  // eps may have moved: no socket references across this
  return static_cast<int>(eps.size() - 1);
}

int AsyncClient::Impl::Reachable(int ep) {
  if (keys.Knows(eps[ep].address)) return ep;
  if (keys.Knows(eps[default_ep].address)) return default_ep;
  for (size_t i = 0; i < eps.size(); ++i) {
    if (keys.Knows(eps[i].address)) return default_ep = static_cast<int>(i);
  }
  return -1;
}

zmq::socket_t* AsyncClient::Impl::Conn(int ep, int conn) {
  Endpoint& e = eps[ep];
  const std::string key = keys.KeyOf(e.address);
  if (!e.conns.empty() && e.server_key != key) Disconnect(ep);
  if (e.conns.empty()) {
    for (int c = 0; c < opt.connections; ++c) {
      std::optional<zmq::socket_t> sock =
          keys.Open(ctx, zmq::socket_type::dealer, e.address, ServerKeys::Port::kClient);
      if (!sock) {
        e.conns.clear();
        return nullptr;
      }
      e.conns.push_back(std::move(*sock));
    }
    e.server_key = key;
    items_dirty = true;
  }
  return &e.conns[conn];
}

void AsyncClient::Impl::Disconnect(int ep) {
  if (eps[ep].conns.empty()) return;
  eps[ep].conns.clear();
  items_dirty = true;
}

void AsyncClient::Impl::ResendFrom(int ep) {
  for (Slot& slot : slots) {
    if (slot.busy && slot.ep == ep) Send(slot);
  }
}

int AsyncClient::Impl::Route(const Slot& slot) const {
  if (!routes.sharded()) return default_ep;
  const int leader = routes.leader(routes.ShardOf(slot.req.key));
  return leader >= 0 ? leader : default_ep;
}

void AsyncClient::Impl::MaybeFetchMap(const net::ClientReply& r, int ep) {
  const bool placeable = routes.sharded() && r.shard < routes.shards();
  const bool newer = r.map_version > std::max(routes.version(), map_asked_version);
  if (placeable && !newer) return;
  // One fetch in flight; and without news, one per request timeout.
  const uint64_t now = NowNs();
  const uint64_t timeout_ns = static_cast<uint64_t>(opt.request_timeout.count()) * 1000000;
  const bool recent = map_asked_ns != 0 && now - map_asked_ns < timeout_ns;
  if (recent && (map_request != 0 || !newer)) return;
  net::ClientRequest req;
  req.id = next_request++;
  req.op = net::ClientOp::kShards;
  map_request = req.id;
  map_asked_ns = now;
  map_asked_version = std::max(map_asked_version, r.map_version);
  zmq::socket_t* sock = Conn(ep, 0);
  if (sock != nullptr) {
    (void)sock->send(zmq::buffer(net::EncodeClientRequest(req)), zmq::send_flags::dontwait);
  }
}

void AsyncClient::Impl::OnMapReply(std::string_view bytes) {
  map_request = 0;
  uint64_t id = 0;
  ShardMap map;
  if (!net::DecodeShardsReply(bytes, &id, &map).ok()) return;
  if (routes.sharded() && map.version < routes.version()) return;
  InstallMap(map);
}

void AsyncClient::Impl::SendTo(Slot& slot, int ep) {
  ep = Reachable(ep);
  zmq::socket_t* sock = ep >= 0 ? Conn(ep, slot.conn) : nullptr;
  if (sock == nullptr) {
    std::vector<std::string> addresses;
    for (const Endpoint& e : eps) addresses.push_back(e.address);
    Complete(slot, Code::kUnavailable, {}, ServerKeys::MissingKeyError(addresses), &undeliverable);
    return;
  }
  net::ClientRequest& req = slot.req;
  by_request.erase(req.id);
  req.id = next_request++;
  by_request[req.id] = static_cast<size_t>(&slot - slots.data());
  slot.sent_ns = NowNs();
  slot.ep = ep;
  (void)sock->send(zmq::buffer(net::EncodeClientRequest(req)), zmq::send_flags::dontwait);
}

void AsyncClient::Impl::Complete(Slot& slot, Code code, std::string value, std::string error,
                                 std::vector<Completion>* out) {
  out->push_back(Completion{slot.tag, code, std::move(value), std::move(error)});
  by_request.erase(slot.req.id);
  slot.busy = false;
  busy--;
  free_slots.push_back(static_cast<size_t>(&slot - slots.data()));
}

void AsyncClient::Impl::OnReply(net::ClientReply& r, std::vector<Completion>* out) {
  auto it = by_request.find(r.id);
  if (it == by_request.end()) return;  // an answer to an attempt we gave up on
  Slot& slot = slots[it->second];
  switch (r.status) {
    case net::ReplyStatus::kOk:
      Complete(slot, Code::kOk, std::move(r.value), {}, out);
      return;
    case net::ReplyStatus::kNotFound:
      Complete(slot, Code::kNotFound, {}, {}, out);
      return;
    case net::ReplyStatus::kCasFailed:
      Complete(slot, Code::kCasFailed, {}, {}, out);
      return;
    case net::ReplyStatus::kError:
      Complete(slot, Code::kError, {}, std::move(r.error), out);
      return;
    case net::ReplyStatus::kDenied:
      Complete(slot, Code::kDenied, {}, std::move(r.error), out);
      return;
    case net::ReplyStatus::kRedirect: {
      if (r.leader.empty()) break;  // a REDIRECT to nowhere: retry as UNAVAILABLE
      redirects++;
      keys.LearnLeader(r.leader, r.leader_key);
      if (!keys.Knows(r.leader)) {
        // Every node would send it there again.
        Complete(slot, Code::kUnavailable, {},
                 ServerKeys::MissingKeyError({r.leader}) + " (" + eps[slot.ep].address +
                     " names it as the leader, without its key)",
                 out);
        return;
      }
      const int leader = EndpointIndex(r.leader);
      if (r.shard >= 0) {
        // Sharded: this shard's leader moves; the other requests stay.
        MaybeFetchMap(r, slot.ep);
        routes.SetLeader(r.shard, leader);
        SendTo(slot, leader);
      } else if (leader != default_ep) {
        // Unsharded: the target moves to the leader, with what was in flight
        // at the old one.
        const int old = default_ep;
        default_ep = leader;
        if (!routes.sharded()) Disconnect(old);
        ResendFrom(old);
      } else {
        Send(slot);
      }
      return;
    }
    case net::ReplyStatus::kUnavailable:
    case net::ReplyStatus::kUnknown:
      break;
  }
  // UNAVAILABLE, UNKNOWN: not executed, or unknown: the same session and seq
  // make a resend safe. A shard without a leader is asked through the
  // default target until a REDIRECT names one.
  retries++;
  if (r.shard >= 0) {
    MaybeFetchMap(r, slot.ep);
    if (r.status == net::ReplyStatus::kUnavailable && routes.leader(r.shard) == slot.ep) {
      routes.SetLeader(r.shard, -1);
    }
  }
  Send(slot);
}

void AsyncClient::Impl::CheckTimeouts(uint64_t now) {
  const uint64_t timeout_ns = static_cast<uint64_t>(opt.request_timeout.count()) * 1000000;
  for (Slot& slot : slots) {
    if (!slot.busy || slot.sent_ns + timeout_ns >= now) continue;
    // No answer: resend (same seq). The node may be down: try the others.
    retries++;
    const int silent = slot.ep;
    routes.Forget(silent);
    if (silent == default_ep) {
      // Another endpoint than the silent one, one we can connect to: it
      // answers or redirects.
      const auto& all = opt.endpoints;
      const auto cur = std::find(all.begin(), all.end(), eps[silent].address);
      const size_t at = cur == all.end() ? all.size() - 1 : static_cast<size_t>(cur - all.begin());
      for (size_t step = 1; step <= all.size(); ++step) {
        const std::string& next = all[(at + step) % all.size()];
        if (keys.Knows(next)) {
          default_ep = EndpointIndex(next);
          break;
        }
      }
    }
    Disconnect(silent);
    ResendFrom(silent);
  }
}

AsyncClient::AsyncClient(AsyncOptions options, const Topology& start)
    : impl_(std::make_unique<Impl>(std::move(options), start)) {}

AsyncClient::~AsyncClient() = default;

void AsyncClient::Submit(uint64_t tag, Request request) {
  Impl& m = *impl_;
  size_t index = 0;
  if (m.free_slots.empty()) {
    index = m.slots.size();
    m.slots.emplace_back();
    m.slots[index].client = m.session_base | index;
  } else {
    index = m.free_slots.back();
    m.free_slots.pop_back();
  }
  Impl::Slot& slot = m.slots[index];
  slot.busy = true;
  m.busy++;
  slot.tag = tag;
  slot.conn = static_cast<int>(m.next_conn++ % static_cast<uint64_t>(m.opt.connections));
  net::ClientRequest& req = slot.req;
  req = net::ClientRequest{};
  req.op = WireOp(request.op);
  req.key = std::move(request.key);
  req.stale = request.stale;
  if (request.op != Op::kGet) {
    req.value = std::move(request.value);
    req.client = slot.client;
    req.seq = ++slot.seq;
  }
  if (request.op == Op::kCas) {
    req.has_expect = request.expect.has_value();
    if (request.expect) req.expect = std::move(*request.expect);
  }
  m.Send(slot);
}

void AsyncClient::Poll(std::chrono::milliseconds wait, std::vector<Completion>* out) {
  Impl& m = *impl_;
  m.CheckTimeouts(NowNs());
  if (!m.undeliverable.empty()) {
    out->insert(out->end(), std::make_move_iterator(m.undeliverable.begin()),
                std::make_move_iterator(m.undeliverable.end()));
    m.undeliverable.clear();
    wait = std::chrono::milliseconds(0);  // some came: do not wait for more
  }
  if (m.items_dirty) {
    m.items.clear();
    m.item_conn.clear();
    for (size_t e = 0; e < m.eps.size(); ++e) {
      for (size_t c = 0; c < m.eps[e].conns.size(); ++c) {
        m.items.push_back({static_cast<void*>(m.eps[e].conns[c]), 0, ZMQ_POLLIN, 0});
        m.item_conn.emplace_back(static_cast<int>(e), static_cast<int>(c));
      }
    }
    m.items_dirty = false;
  }
  try {
    zmq::poll(m.items.data(), m.items.size(), wait);
  } catch (const zmq::error_t&) {
    return;  // EINTR: the caller polls again
  }
  // A reply may open or close connections (items_dirty): what is left unread
  // waits for the next poll.
  for (size_t i = 0; i < m.items.size() && !m.items_dirty; ++i) {
    if (!(m.items[i].revents & ZMQ_POLLIN)) continue;
    zmq::socket_t& sock = m.eps[m.item_conn[i].first].conns[m.item_conn[i].second];
    zmq::message_t msg;
    while (!m.items_dirty && sock.recv(msg, zmq::recv_flags::dontwait)) {
      net::ClientReply reply;
      if (!net::DecodeClientReply(msg.to_string_view(), &reply).ok()) continue;
      if (m.map_request != 0 && reply.id == m.map_request) {
        m.OnMapReply(msg.to_string_view());
      } else {
        m.OnReply(reply, out);
      }
    }
  }
}

size_t AsyncClient::in_flight() const { return impl_->busy; }
uint64_t AsyncClient::redirects() const { return impl_->redirects; }
uint64_t AsyncClient::retries() const { return impl_->retries; }

}  // namespace kv::client
