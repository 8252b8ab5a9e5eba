#include <algorithm>
#include <deque>
#include <random>
#include <vector>
#include <zmq.hpp>

#include "client/curve.h"
#include "client/retry.h"
#include "kvstore/watch.h"
#include "net/client_codec.h"

namespace kv::client {

namespace {

using Clock = std::chrono::steady_clock;

WatchEvent::Type TypeOf(net::WatchEvent::Type t) {
  switch (t) {
    case net::WatchEvent::Type::kPut:
      return WatchEvent::kPut;
    case net::WatchEvent::Type::kDelete:
      return WatchEvent::kDelete;
    case net::WatchEvent::Type::kExpire:
      break;
  }
  return WatchEvent::kExpire;
}

}  // namespace

WatchOptions PrefixWatch(const std::string& prefix) {
  const ScanOptions range = PrefixScan(prefix);
  WatchOptions o;
  o.start = range.start;
  o.end = range.end;
  return o;
}

struct Watcher::Impl {
  // One shard's stream, served by one node at a time.
  struct Stream {
    uint32_t shard = 0;
    // The last batch's upto: every change up to it came. Unset until the
    // first batch of a watch started without from_index.
    std::optional<uint64_t> upto;
    bool started = false;    // a batch came
    uint64_t delivered = 0;  // the index up to which Next returned every change
    size_t queued = 0;       // its events waiting in `queue`
    zmq::socket_t socket;    // null while it waits to reopen
    std::string endpoint;
    uint64_t id = 0;          // its watch request's
    size_t turn = 0;          // which replica it tries next
    int refusals = 0;         // UNAVAILABLE or BUSY in a row: they set the backoff
    Clock::time_point heard;  // its last message, or when it was opened
    Clock::time_point reopen_at;
    std::string why;  // why it reopens
  };
  // An event, and its shard's position once Next has returned it.
  struct Queued {
    WatchEvent event;
    uint64_t position = 0;
  };

  Impl(Client& c, WatchOptions o)
      : client(c), options(std::move(o)), keys(client.options().credentials) {}

  Client& client;
  WatchOptions options;
  ServerKeys keys;
  ShardMap map;
  zmq::context_t ctx{1};
  std::vector<Stream> streams;  // by shard
  std::deque<Queued> queue;
  WatchStatus status;
  uint64_t next_id = 1;
  std::mt19937_64 rng{std::random_device{}()};

  bool sharded() const { return map.shards > 0; }

  void Start() {
    if (Result r = client.Shards(&map); !r.ok()) return Stop(r.code, r.error, 0, 0);
    keys.LearnAddresses(client.server_keys());
    streams.resize(std::max<uint32_t>(map.shards, 1));
    for (const auto& [shard, from] : options.from_index) {
      if (shard >= streams.size()) {
        return Stop(Code::kError,
                    "from_index names shard " + std::to_string(shard) + " of a cluster of " +
                        std::to_string(map.shards) + " shards",
                    shard, 0);
      }
    }
    for (uint32_t shard = 0; shard < streams.size() && status.ok(); ++shard) {
      Stream& s = streams[shard];
      s.shard = shard;
      // Start each shard's stream at a replica of its own: spread the load.
      s.turn = shard;
      const auto from = options.from_index.find(shard);
      if (from != options.from_index.end() && from->second > 0) s.upto = from->second - 1;
      s.delivered = s.upto.value_or(0);
      Open(s, "start", "");
    }
    const Clock::time_point deadline = Clock::now() + client.options().timeout;
    while (status.ok() && std::any_of(streams.begin(), streams.end(),
                                      [](const Stream& s) { return !s.started; })) {
      if (Clock::now() >= deadline) {
        return Stop(Code::kUnavailable,
                    "the watch did not start within " +
                        std::to_string(client.options().timeout.count()) + " ms",
                    0, 0);
      }
      (void)Poll(std::chrono::milliseconds(100));  // a signal does not stop the start
    }
  }

  // Ends the watch, unless it ended already; its streams are cancelled.
  void Stop(Code code, std::string error, uint32_t shard, uint64_t oldest) {
    if (!status.ok()) return;
    status = WatchStatus{code, std::move(error), shard, oldest};
    for (Stream& s : streams) Close(s, /*cancel=*/true);
  }

  // The client addresses of the nodes that may serve `shard`: its replicas
  // (any member in an unsharded cluster) whose key is known.
  std::vector<std::string> Candidates(uint32_t shard) const {
    std::vector<std::string> out;
    const auto add = [&](const std::string& address) {
      if (keys.Knows(address)) out.push_back(address);
    };
    if (sharded()) {
      for (uint64_t node : map.list[shard].replicas) {
        const auto it = map.members.find(node);
        if (it != map.members.end()) add(it->second);
      }
    } else {
      for (const auto& member : map.members) add(member.second);
    }
    if (out.empty()) {
      for (const std::string& e : client.options().endpoints) add(e);
    }
    return out;
  }

  // Starts the stream on `endpoint`, or on the next candidate when empty,
  // from the index after the last batch it had.
  void Open(Stream& s, const std::string& why, std::string endpoint) {
    Close(s, /*cancel=*/false);
    if (endpoint.empty()) {
      const std::vector<std::string> candidates = Candidates(s.shard);
      if (candidates.empty()) {
        return Stop(Code::kUnavailable, ServerKeys::MissingKeyError(client.options().endpoints),
                    s.shard, 0);
      }
      endpoint = candidates[s.turn++ % candidates.size()];
    }
    std::optional<zmq::socket_t> socket =
        keys.Open(ctx, zmq::socket_type::dealer, endpoint, ServerKeys::Port::kClient);
    if (!socket)
      return Stop(Code::kUnavailable, ServerKeys::MissingKeyError({endpoint}), s.shard, 0);
    net::ClientRequest req;
    req.op = net::ClientOp::kWatch;
    req.id = next_id++;
    req.scan.start = options.start;
    req.scan.end = options.end;
    req.scan.keys_only = options.keys_only;
    req.from_index = s.upto ? *s.upto + 1 : 0;
    req.shard = sharded() ? static_cast<int64_t>(s.shard) : -1;
    // A DEALER queues what it sends before it connects: this cannot fail.
    (void)socket->send(zmq::buffer(net::EncodeClientRequest(req)), zmq::send_flags::dontwait);
    s.socket = std::move(*socket);
    s.endpoint = endpoint;
    s.id = req.id;
    s.heard = Clock::now();
    if (options.on_move) options.on_move(WatchMove{s.shard, endpoint, why});
  }

  // Leaves the stream's node; `cancel` tells the node, which otherwise
  // notices when its next message cannot go out.
  void Close(Stream& s, bool cancel) {
    if (!s.socket) return;
    if (cancel) {
      net::ClientRequest req;
      req.op = net::ClientOp::kCancel;
      req.id = next_id++;
      req.watch = s.id;
      (void)s.socket.send(zmq::buffer(net::EncodeClientRequest(req)), zmq::send_flags::dontwait);
      s.socket.set(zmq::sockopt::linger, 100);  // time for the cancel to go out
    }
    s.socket.close();
  }

  // Reopens the stream on another node after a backoff: its node refused it.
  void Retry(Stream& s, std::string why) {
    Close(s, /*cancel=*/false);
    s.why = std::move(why);
    s.reopen_at =
        Clock::now() + std::chrono::duration_cast<Clock::duration>(Backoff(++s.refusals, rng));
  }

  void Receive(Stream& s, std::string_view bytes) {
    uint64_t id = 0;
    net::WatchReply reply;
    if (!net::DecodeWatchReply(bytes, &id, &reply).ok()) {
      return Open(s, "a malformed message from " + s.endpoint, "");
    }
    if (id != s.id) return;  // not this stream's (0: the node could not read the request)
    s.heard = Clock::now();
    const std::string from =
        " from " + s.endpoint + (reply.error.empty() ? "" : ": " + reply.error);
    switch (reply.status) {
      case net::ReplyStatus::kOk:
        return Take(s, std::move(reply));
      case net::ReplyStatus::kCompacted:
        return Stop(Code::kCompacted, reply.error, s.shard, reply.oldest);
      case net::ReplyStatus::kError:
        return Stop(Code::kError, "ERROR" + from, s.shard, 0);
      case net::ReplyStatus::kDenied:
        return Stop(Code::kDenied, "DENIED" + from, s.shard, 0);
      case net::ReplyStatus::kRedirect: {
        // The node has no replica of the shard: its leader has one.
        net::ClientReply redirect;
        if (net::DecodeClientReply(bytes, &redirect).ok() && !redirect.leader.empty()) {
          keys.LearnLeader(redirect.leader, redirect.leader_key);
          return Open(s, s.endpoint + " has no replica of the shard", redirect.leader);
        }
        break;
      }
      default:
        break;
    }
    Retry(s, std::string(net::ReplyStatusName(reply.status)) + from);
  }

  // An OK batch: every change in (after, upto].
  void Take(Stream& s, net::WatchReply batch) {
    if (s.upto && batch.after != *s.upto) {
      return Open(s, "a message from " + s.endpoint + " is missing", "");
    }
    s.started = true;
    s.refusals = 0;
    s.upto = batch.upto;
    if (batch.events.empty() && s.queued == 0) s.delivered = batch.upto;
    std::vector<net::WatchEvent>& events = batch.events;
    for (size_t i = 0; i < events.size(); ++i) {
      net::WatchEvent& e = events[i];
      // Once returned, every change up to this one's index came, unless the
      // next one is of the same entry (a txn's changes share its index).
      uint64_t position = batch.upto;
      if (i + 1 < events.size()) {
        position = events[i + 1].index == e.index ? e.index - 1 : e.index;
      }
      queue.push_back(Queued{WatchEvent{TypeOf(e.type), std::move(e.key), std::move(e.value),
                                        e.index, e.create_index, s.shard},
                             position});
      s.queued++;
    }
  }

  // Takes in what the streams send within `wait`, moves the silent ones and
  // reopens those whose backoff is over. False when a signal interrupted
  // the wait (the caller decides whether to go on).
  bool Poll(Clock::duration wait) {
    Clock::time_point now = Clock::now();
    Clock::time_point until = now + wait;
    std::vector<zmq::pollitem_t> items;
    std::vector<Stream*> polled;
    for (Stream& s : streams) {
      if (s.socket) {
        items.push_back({static_cast<void*>(s.socket), 0, ZMQ_POLLIN, 0});
        polled.push_back(&s);
        until = std::min(until, s.heard + kSilence);
      } else {
        until = std::min(until, s.reopen_at);
      }
    }
    try {
      zmq::poll(items.data(), items.size(),
                std::chrono::duration_cast<std::chrono::milliseconds>(
                    std::max(until - now, Clock::duration::zero())));
      for (size_t i = 0; i < items.size(); ++i) {
        if (!(items[i].revents & ZMQ_POLLIN)) continue;
        Stream& s = *polled[i];
        // Until the stream moves (or the watch ends): its socket is then another.
        const uint64_t id = s.id;
        zmq::message_t msg;
        while (status.ok() && s.id == id && s.socket &&
               s.socket.recv(msg, zmq::recv_flags::dontwait)) {
          Receive(s, msg.to_string_view());
        }
      }
    } catch (const zmq::error_t&) {
      return false;  // EINTR
    }
    now = Clock::now();
    for (Stream& s : streams) {
      if (!status.ok()) break;
      if (s.socket && now - s.heard >= kSilence) {
        Open(s, "no word from " + s.endpoint + " for " + std::to_string(kSilence.count()) + "s",
             "");
      } else if (!s.socket && now >= s.reopen_at) {
        Open(s, s.why, "");
      }
    }
    return true;
  }
};

Watcher::Watcher(Client& client, WatchOptions options)
    : impl_(std::make_unique<Impl>(client, std::move(options))) {
  impl_->Start();
}

Watcher::~Watcher() {
  for (Impl::Stream& s : impl_->streams) impl_->Close(s, /*cancel=*/true);
}

std::optional<WatchEvent> Watcher::Next(std::chrono::milliseconds timeout) {
  Impl& m = *impl_;
  const Clock::time_point deadline = Clock::now() + timeout;
  while (m.queue.empty() && m.status.ok()) {
    if (!m.Poll(deadline - Clock::now()) || Clock::now() >= deadline) break;
  }
  if (m.queue.empty()) return std::nullopt;
  Impl::Queued q = std::move(m.queue.front());
  m.queue.pop_front();
  Impl::Stream& s = m.streams[q.event.shard];
  s.delivered = --s.queued == 0 ? *s.upto : q.position;
  return std::move(q.event);
}

std::map<uint32_t, uint64_t> Watcher::Position() const {
  std::map<uint32_t, uint64_t> out;
  for (const Impl::Stream& s : impl_->streams) out[s.shard] = s.delivered;
  return out;
}

const WatchStatus& Watcher::status() const { return impl_->status; }

bool Watcher::sharded() const { return impl_->sharded(); }

}  // namespace kv::client
