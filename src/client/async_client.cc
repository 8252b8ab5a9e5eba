#include "kvstore/async_client.h"

#include <poll.h>
#include <sys/epoll.h>
#include <unistd.h>

#include <algorithm>
#include <random>
#include <unordered_map>
#include <zmq.hpp>

#include "client/curve.h"
#include "client/retry.h"
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
    case Op::kScan:
      return net::ClientOp::kScan;
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
  // A request not completed yet, and the session it uses (kept by the slot
  // for the next request once this one completes). It is either in flight
  // (an attempt sent, its id in by_request) or waiting in the client until
  // retry_at_ns (after a refusal, or when its connection was dropped) and
  // then for the retry budget.
  struct Slot {
    bool in_use = false;
    uint64_t tag = 0;
    uint64_t client = 0;  // the session: its client id, and the last seq it used
    uint64_t seq = 0;
    net::ClientRequest req;  // a new id for every send; the same client and seq
    uint64_t bytes = 0;      // the request's key, value and expected value
    int conn = 0;            // which of an endpoint's connections it uses
    int ep = 0;              // the endpoint its request went to
    uint64_t sent_ns = 0;
    uint64_t retry_at_ns = 0;  // waiting: resend from then on; 0 in flight
    int refusals = 0;          // BUSY, UNAVAILABLE, UNKNOWN answers: the backoff grows
    int timeouts = 0;          // attempts in a row that got no answer
    bool timed_out = false;    // some attempt did: its answer says little of latency
    bool charged = false;      // a resend was charged to the budget: refunded on completion
  };

  // A node this client talks to, and its connections (none until first
  // used), made with `server_key` ("" plain).
  struct Endpoint {
    std::string address;
    std::string server_key;
    std::vector<zmq::socket_t> conns;
    uint64_t last_reply_ns = 0;  // when a reply last came from it
    size_t first_watched = 0;    // conns[c] is watched[first_watched + c]
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
  ~Impl() {
    if (epoll_fd >= 0) close(epoll_fd);
  }
  Impl(const Impl&) = delete;
  Impl& operator=(const Impl&) = delete;

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
  // Takes the slot's request out of flight, to be resent from `at_ns` on.
  void Wait(Slot& slot, uint64_t at_ns);
  // Where a request goes: its shard's leader (a key's, or the one a scan
  // names) when known, else the default.
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
  // Watches every connection's ZMQ_FD in a new epoll set, and marks every
  // connection to be read.
  void WatchConnections();
  // Marks connection `w` (an index in watched) to be read: its signal fired.
  void MarkToRead(size_t w) {
    if (!(marks[w] & kToRead)) to_read.push_back(w);
    marks[w] |= kToRead;
  }
  // Sends `req` on connection `conn` of `ep` (connected: Conn) and marks the
  // connection to be read in the next Poll round. Every request goes out here.
  void SendOn(int ep, int conn, const net::ClientRequest& req);
  // Reads every reply waiting on the connections marked to be read, until a
  // reply opens or closes connections.
  void ReadMarked(std::vector<Completion>* out);
  // Reports the slot's request done and frees the slot (its session stays).
  void Complete(Slot& slot, Completion c, std::vector<Completion>* out);
  // Completes, redirects or resends the request `r` answers.
  void OnReply(net::ClientReply& r, std::vector<Completion>* out);
  // Resends what timed out and what waited long enough, as the retry budget
  // allows. Returns when it next has something to do.
  uint64_t Service(uint64_t now);
  // An attempt got no answer within its timeout: resends it, budget allowing.
  // False when the budget did not.
  bool OnTimeout(Slot& slot, uint64_t now);
  uint64_t TimeoutNs(const Slot& slot) const {
    return timer.TimeoutNs(opt.request_timeout, slot.bytes, slot.timeouts);
  }

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
  // An epoll set over every connection's ZMQ_FD (an event's data is its
  // index in watched), made again when connections come or go: a Poll then
  // costs system calls for the connections that have replies, not for every
  // connection as zmq_poll's would (two each: it asks each for ZMQ_EVENTS).
  int epoll_fd = -1;
  std::vector<std::pair<int, int>> watched;  // (endpoint, connection)
  // Per watched connection: kToRead (in to_read), kSent (in sent).
  static constexpr uint8_t kToRead = 1, kSent = 2;
  std::vector<uint8_t> marks;
  std::vector<size_t> to_read;  // connections that may have replies waiting
  std::vector<size_t> reading;  // ReadMarked's list, kept for its capacity
  std::vector<size_t> sent;     // connections sent on since the last Poll round
  bool items_dirty = true;
  std::vector<Slot> slots;
  std::vector<size_t> free_slots;
  // Completions of requests that could not be sent; Poll hands them out.
  std::vector<Completion> undeliverable;
  std::unordered_map<uint64_t, size_t> by_request;  // request id -> slot
  uint64_t next_request = 1;
  uint64_t next_conn = 0;
  size_t in_use = 0;
  size_t retry_cursor = 0;  // where the next scan for due retries starts: round robin
  ResendTimer timer;
  RetryBudget budget;
  std::mt19937_64 rng{std::random_device{}()};
  uint64_t redirects = 0;
  uint64_t retries = 0;
  uint64_t busy_replies = 0;
};

int AsyncClient::Impl::EndpointIndex(const std::string& address) {
  for (size_t i = 0; i < eps.size(); ++i) {
    if (eps[i].address == address) return static_cast<int>(i);
  }
  eps.push_back(Endpoint{address, {}, {}, 0});
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
    if (slot.in_use && slot.retry_at_ns == 0 && slot.ep == ep) Send(slot);
  }
}

void AsyncClient::Impl::Wait(Slot& slot, uint64_t at_ns) {
  by_request.erase(slot.req.id);
  slot.retry_at_ns = std::max<uint64_t>(at_ns, 1);
}

int AsyncClient::Impl::Route(const Slot& slot) const {
  if (!routes.sharded()) return default_ep;
  const int64_t shard =
      slot.req.op == net::ClientOp::kScan ? slot.req.shard : routes.ShardOf(slot.req.key);
  const int leader = routes.leader(shard);
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
  if (Conn(ep, 0) != nullptr) SendOn(ep, 0, req);
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
    Complete(slot, {0, Code::kUnavailable, {}, ServerKeys::MissingKeyError(addresses)},
             &undeliverable);
    return;
  }
  net::ClientRequest& req = slot.req;
  by_request.erase(req.id);
  req.id = next_request++;
  by_request[req.id] = static_cast<size_t>(&slot - slots.data());
  slot.sent_ns = NowNs();
  slot.retry_at_ns = 0;
  slot.ep = ep;
  SendOn(ep, slot.conn, req);
}

void AsyncClient::Impl::SendOn(int ep, int conn, const net::ClientRequest& req) {
  (void)eps[ep].conns[conn].send(zmq::buffer(net::EncodeClientRequest(req)),
                                 zmq::send_flags::dontwait);
  // A send on a connection may take the signal of a reply that came (ZMQ_FD
  // is edge-triggered; it does, often, while leaderships move): the next
  // Poll round reads the connection whether its signal fires or not.
  if (items_dirty) return;  // every connection is read after the change
  const size_t w = eps[ep].first_watched + static_cast<size_t>(conn);
  if (!(marks[w] & kSent)) sent.push_back(w);
  marks[w] |= kSent;
}

void AsyncClient::Impl::WatchConnections() {
  if (epoll_fd >= 0) close(epoll_fd);
  epoll_fd = epoll_create1(EPOLL_CLOEXEC);
  watched.clear();
  to_read.clear();
  sent.clear();
  items_dirty = false;
  for (size_t e = 0; e < eps.size(); ++e) {
    eps[e].first_watched = watched.size();
    for (size_t c = 0; c < eps[e].conns.size(); ++c) {
      epoll_event ev{};
      ev.events = EPOLLIN;
      ev.data.u64 = watched.size();
      // Without an epoll set (out of file descriptors) Poll reads every
      // connection every round, and waits at most a millisecond for it.
      if (epoll_fd >= 0) {
        (void)epoll_ctl(epoll_fd, EPOLL_CTL_ADD, eps[e].conns[c].get(zmq::sockopt::fd), &ev);
      }
      watched.emplace_back(static_cast<int>(e), static_cast<int>(c));
    }
  }
  marks.assign(watched.size(), 0);
  for (size_t w = 0; w < watched.size(); ++w) MarkToRead(w);
}

void AsyncClient::Impl::ReadMarked(std::vector<Completion>* out) {
  reading.clear();
  reading.swap(to_read);  // replies may mark connections meanwhile
  for (size_t w : reading) {
    if (items_dirty) return;  // the next Poll round reads every connection
    marks[w] = 0;
    Endpoint& ep = eps[watched[w].first];
    zmq::socket_t& sock = ep.conns[watched[w].second];
    zmq::message_t msg;
    // Until EAGAIN: that answer has taken ZeroMQ's pending commands, so the
    // signal fires again for the next reply.
    while (!items_dirty && sock.recv(msg, zmq::recv_flags::dontwait)) {
      ep.last_reply_ns = NowNs();
      net::ClientReply reply;
      if (!net::DecodeClientReply(msg.to_string_view(), &reply).ok()) continue;
      if (map_request != 0 && reply.id == map_request) {
        OnMapReply(msg.to_string_view());
      } else {
        OnReply(reply, out);
      }
    }
  }
}

void AsyncClient::Impl::Complete(Slot& slot, Completion c, std::vector<Completion>* out) {
  c.tag = slot.tag;
  out->push_back(std::move(c));
  if (slot.charged) budget.Refund(NowNs());
  by_request.erase(slot.req.id);
  slot.in_use = false;
  in_use--;
  free_slots.push_back(static_cast<size_t>(&slot - slots.data()));
}

void AsyncClient::Impl::OnReply(net::ClientReply& r, std::vector<Completion>* out) {
  auto it = by_request.find(r.id);
  if (it == by_request.end()) return;  // an answer to an attempt we gave up on
  Slot& slot = slots[it->second];
  const uint64_t now = NowNs();
  slot.timeouts = 0;
  const bool executed = r.status == net::ReplyStatus::kOk ||
                        r.status == net::ReplyStatus::kNotFound ||
                        r.status == net::ReplyStatus::kCasFailed;
  if (executed && !slot.timed_out) timer.Observe(now - slot.sent_ns);
  if (executed) {
    const Code code = r.status == net::ReplyStatus::kOk         ? Code::kOk
                      : r.status == net::ReplyStatus::kNotFound ? Code::kNotFound
                                                                : Code::kCasFailed;
    Completion c{0, code, std::move(r.value), {}};
    c.index = r.index;
    c.create_index = r.create_index;
    c.mod_index = r.mod_index;
    if (r.is_scan) {
      c.kvs.reserve(r.page.kvs.size());
      for (kv::ScannedKey& k : r.page.kvs) {
        c.kvs.push_back(
            KeyValue{std::move(k.key), std::move(k.value), k.version.mod_index, k.ttl_ms});
      }
      c.more = r.page.more;
      c.next = std::move(r.page.next);
    }
    Complete(slot, std::move(c), out);
    return;
  }
  switch (r.status) {
    case net::ReplyStatus::kOk:
    case net::ReplyStatus::kNotFound:
    case net::ReplyStatus::kCasFailed:
      return;  // executed: completed above
    case net::ReplyStatus::kError:
    case net::ReplyStatus::kCompacted:  // a watch's: never the answer to these ops
      Complete(slot, {0, Code::kError, {}, std::move(r.error)}, out);
      return;
    case net::ReplyStatus::kDenied:
      Complete(slot, {0, Code::kDenied, {}, std::move(r.error)}, out);
      return;
    case net::ReplyStatus::kRedirect: {
      if (r.leader.empty()) break;  // a REDIRECT to nowhere: retry as UNAVAILABLE
      redirects++;
      keys.LearnLeader(r.leader, r.leader_key);
      if (!keys.Knows(r.leader)) {
        // Every node would send it there again.
        Complete(slot,
                 {0,
                  Code::kUnavailable,
                  {},
                  ServerKeys::MissingKeyError({r.leader}) + " (" + eps[slot.ep].address +
                      " names it as the leader, without its key)"},
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
    case net::ReplyStatus::kBusy:
      busy_replies++;
      break;
    case net::ReplyStatus::kUnavailable:
    case net::ReplyStatus::kUnknown:
      break;
  }
  // BUSY, UNAVAILABLE: not executed; UNKNOWN: the same session and seq make
  // a resend safe. The request waits in the client for a backoff (then for
  // the retry budget) instead of going straight back to a node that could
  // not take it. A shard without a leader is asked through the default
  // target until a REDIRECT names one; BUSY came from the leader: it stays.
  if (r.shard >= 0) {
    MaybeFetchMap(r, slot.ep);
    if (r.status == net::ReplyStatus::kUnavailable && routes.leader(r.shard) == slot.ep) {
      routes.SetLeader(r.shard, -1);
    }
  }
  Wait(slot, now + static_cast<uint64_t>(Backoff(++slot.refusals, rng).count()));
}

bool AsyncClient::Impl::OnTimeout(Slot& slot, uint64_t now) {
  if (!budget.TryResend(now)) return false;  // keep waiting for the attempt in flight
  retries++;
  slot.charged = true;
  slot.timeouts++;
  slot.timed_out = true;
  const int ep = slot.ep;
  if (eps[ep].last_reply_ns >= slot.sent_ns) {
    // The node answered others since: it is alive, only slow with this one.
    // Resend this one alone, to wherever it belongs now.
    Send(slot);
    return true;
  }
  // Nothing from the node since: it may be down. Try the others (same seq).
  routes.Forget(ep);
  if (ep == default_ep) {
    // Another endpoint than the silent one, one we can connect to: it
    // answers or redirects.
    const auto& all = opt.endpoints;
    const auto cur = std::find(all.begin(), all.end(), eps[ep].address);
    const size_t at = cur == all.end() ? all.size() - 1 : static_cast<size_t>(cur - all.begin());
    for (size_t step = 1; step <= all.size(); ++step) {
      const std::string& next = all[(at + step) % all.size()];
      if (keys.Knows(next)) {
        default_ep = EndpointIndex(next);
        break;
      }
    }
  }
  // Dropping the connections drops what they still queue for the node, so
  // that it never gets a pile of stale attempts when it comes back; the
  // other requests that were in flight there are resent as the budget
  // allows.
  Disconnect(ep);
  for (Slot& other : slots) {
    if (other.in_use && other.retry_at_ns == 0 && other.ep == ep && &other != &slot) {
      Wait(other, now);
    }
  }
  Send(slot);
  return true;
}

uint64_t AsyncClient::Impl::Service(uint64_t now) {
  uint64_t wake = UINT64_MAX;
  bool budget_left = true;
  // Round robin over the slots, so that when the budget runs short every
  // waiting request gets its turn.
  const size_t n = slots.size();
  const size_t start = n == 0 ? 0 : retry_cursor % n;
  for (size_t k = 0; k < n; ++k) {
    const size_t i = (start + k) % n;
    Slot& slot = slots[i];
    if (!slot.in_use) continue;
    const uint64_t due = slot.retry_at_ns != 0 ? slot.retry_at_ns : slot.sent_ns + TimeoutNs(slot);
    if (due > now) {
      wake = std::min(wake, due);
      continue;
    }
    if (budget_left) {
      if (slot.retry_at_ns == 0) {
        budget_left = OnTimeout(slot, now);
      } else if ((budget_left = budget.TryResend(now))) {
        retries++;
        slot.charged = true;
        Send(slot);
      }
      // A timeout may have made requests scanned already due: look again.
      if (budget_left) wake = now;
      if (!budget_left) retry_cursor = i;  // first in line next time
    }
    if (!budget_left) wake = std::min(wake, budget.NextRefillNs(now));
  }
  return wake;
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
  slot.in_use = true;
  m.in_use++;
  slot.tag = tag;
  slot.refusals = 0;
  slot.timeouts = 0;
  slot.timed_out = false;
  slot.charged = false;
  slot.conn = static_cast<int>(m.next_conn++ % static_cast<uint64_t>(m.opt.connections));
  net::ClientRequest& req = slot.req;
  req = net::ClientRequest{};
  req.op = WireOp(request.op);
  req.key = std::move(request.key);
  req.stale = request.stale;
  if (request.op == Op::kScan) {
    req.scan.start = std::move(request.scan.start);
    req.scan.end = std::move(request.scan.end);
    req.scan.limit = std::clamp<size_t>(request.scan.limit, 1, kv::kMaxScanLimit);
    req.scan.keys_only = request.scan.keys_only;
    req.stale = request.scan.stale;
    req.shard = request.shard;
  } else if (request.op != Op::kGet) {
    req.value = std::move(request.value);
    req.ttl_ms = request.ttl_ms;
    req.client = slot.client;
    req.seq = ++slot.seq;
  }
  if (request.op == Op::kCas) {
    req.has_expect = request.expect.has_value();
    if (request.expect) req.expect = std::move(*request.expect);
    req.has_expect_index = request.expect_index.has_value();
    req.expect_index = request.expect_index.value_or(0);
  }
  slot.bytes = req.key.size() + req.value.size() + req.expect.size() + req.scan.start.size() +
               req.scan.end.value_or("").size();
  m.budget.OnSend(NowNs());
  m.Send(slot);
}

void AsyncClient::Poll(std::chrono::milliseconds wait, std::vector<Completion>* out) {
  Impl& m = *impl_;
  const size_t before = out->size();
  const uint64_t until =
      NowNs() + static_cast<uint64_t>(std::max<int64_t>(wait.count(), 0)) * 1000000;
  while (true) {
    const uint64_t now = NowNs();
    const uint64_t wake = m.Service(now);
    if (!m.undeliverable.empty()) {
      out->insert(out->end(), std::make_move_iterator(m.undeliverable.begin()),
                  std::make_move_iterator(m.undeliverable.end()));
      m.undeliverable.clear();
    }
    if (m.items_dirty) m.WatchConnections();
    // Some completed, or some connection may have replies: do not wait.
    // Else until a reply comes, the caller's wait ends or a retry or timeout
    // is due, whichever is first (rounded up to a millisecond, so as not to
    // spin).
    const bool ready =
        out->size() > before || (m.epoll_fd >= 0 && (!m.to_read.empty() || !m.sent.empty()));
    const uint64_t stop = ready ? now : std::min(until, wake);
    const int timeout = static_cast<int>(stop > now ? (stop - now + 999999) / 1000000 : 0);
    constexpr int kMaxEvents = 64;
    epoll_event events[kMaxEvents];
    const int n = m.epoll_fd >= 0 ? epoll_wait(m.epoll_fd, events, kMaxEvents, timeout)
                                  : poll(nullptr, 0, std::min(timeout, 1));
    if (n < 0) return;  // EINTR: the caller polls again
    for (int i = 0; i < n && m.epoll_fd >= 0; ++i) m.MarkToRead(events[i].data.u64);
    for (size_t w = 0; w < m.watched.size() && m.epoll_fd < 0; ++w) m.MarkToRead(w);
    for (size_t w : m.sent) m.MarkToRead(w);  // once each, fired or not
    m.sent.clear();
    m.ReadMarked(out);
    if (out->size() > before || NowNs() >= until) return;
  }
}

size_t AsyncClient::in_flight() const { return impl_->in_use; }
uint32_t AsyncClient::shards() const {
  return impl_->routes.sharded() ? impl_->routes.shards() : 0;
}
uint64_t AsyncClient::redirects() const { return impl_->redirects; }
uint64_t AsyncClient::retries() const { return impl_->retries; }
uint64_t AsyncClient::busy() const { return impl_->busy_replies; }

}  // namespace kv::client
