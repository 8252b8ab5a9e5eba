#include "kvstore/client.h"

#include <algorithm>
#include <cstdlib>
#include <deque>
#include <random>
#include <sstream>
#include <thread>
#include <zmq.hpp>

#include "client/curve.h"
#include "client/retry.h"
#include "client/shard_routes.h"
#include "kv/layout.h"
#include "kvstore/async_client.h"
#include "net/client_codec.h"

namespace kv::client {

namespace {

using Clock = std::chrono::steady_clock;

// A TTL on the wire: 0 (none) for zero or less.
uint64_t TtlMs(std::chrono::milliseconds ttl) {
  return ttl.count() > 0 ? static_cast<uint64_t>(ttl.count()) : 0;
}

// The key a request is routed by: a txn's first, as the node takes it (it
// checks that the others share its shard), any other op's key.
const std::string& RoutingKey(const net::ClientRequest& req) {
  if (req.op == net::ClientOp::kTxn) {
    if (!req.compare.empty()) return req.compare.front().key;
    for (const auto* ops : {&req.success, &req.failure}) {
      if (!ops->empty()) return ops->front().key;
    }
  }
  return req.key;
}

// The keys and values a request carries: they lengthen its attempt timeout.
uint64_t RequestBytes(const net::ClientRequest& req) {
  uint64_t bytes = req.key.size() + req.value.size() + req.expect.size();
  for (const kv::TxnCompare& c : req.compare) bytes += c.key.size() + c.value.size();
  for (const auto* ops : {&req.success, &req.failure}) {
    for (const kv::TxnOp& op : *ops) bytes += op.key.size() + op.value.size();
  }
  return bytes;
}

kv::TxnCompare WireCompare(const Compare& c) {
  kv::TxnCompare out;
  out.key = c.key;
  switch (c.kind) {
    case Compare::kValue:
      out.kind = kv::TxnCompare::Kind::kValue;
      out.value = c.value;
      break;
    case Compare::kAbsent:
      out.kind = kv::TxnCompare::Kind::kAbsent;
      break;
    case Compare::kPresent:
      out.kind = kv::TxnCompare::Kind::kPresent;
      break;
    case Compare::kModIndex:
      out.kind = c.order == Compare::kLess      ? kv::TxnCompare::Kind::kModLess
                 : c.order == Compare::kGreater ? kv::TxnCompare::Kind::kModGreater
                                                : kv::TxnCompare::Kind::kModEqual;
      out.index = c.mod_index;
      break;
  }
  return out;
}

kv::TxnOp WireOp(const TxnOp& op) {
  kv::TxnOp out;
  out.kind = op.kind == TxnOp::kPut      ? kv::TxnOp::Kind::kPut
             : op.kind == TxnOp::kDelete ? kv::TxnOp::Kind::kDelete
                                         : kv::TxnOp::Kind::kGet;
  out.key = op.key;
  out.value = op.value;
  out.ttl_ms = TtlMs(op.ttl);
  return out;
}

Code CodeFor(net::ReplyStatus s) {
  switch (s) {
    case net::ReplyStatus::kOk:
      return Code::kOk;
    case net::ReplyStatus::kNotFound:
      return Code::kNotFound;
    case net::ReplyStatus::kCasFailed:
      return Code::kCasFailed;
    case net::ReplyStatus::kUnavailable:
    case net::ReplyStatus::kBusy:  // retried until the deadline: not executed
      return Code::kUnavailable;
    case net::ReplyStatus::kUnknown:
      return Code::kUnknown;
    case net::ReplyStatus::kDenied:
      return Code::kDenied;
    case net::ReplyStatus::kRedirect:
    case net::ReplyStatus::kError:
    case net::ReplyStatus::kCompacted:  // a watch's: never the answer to these ops
      break;
  }
  return Code::kError;
}

}  // namespace

const char* CodeName(Code code) {
  switch (code) {
    case Code::kOk:
      return "OK";
    case Code::kNotFound:
      return "NOT_FOUND";
    case Code::kCasFailed:
      return "CAS_FAILED";
    case Code::kUnavailable:
      return "UNAVAILABLE";
    case Code::kUnknown:
      return "UNKNOWN";
    case Code::kError:
      return "ERROR";
    case Code::kDenied:
      return "DENIED";
    case Code::kCompacted:
      return "COMPACTED";
  }
  return "?";
}

std::vector<std::string> ParseEndpoints(const std::string& text) {
  std::vector<std::string> out;
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ',')) {
    if (item.empty()) continue;
    if (item.find(':') == std::string::npos) item = "127.0.0.1:" + item;
    out.push_back(item);
  }
  return out;
}

const char* DefaultEndpoints() { return kDefaultEndpoints; }

std::string EventEndpoint(const std::string& client_endpoint) {
  const size_t colon = client_endpoint.rfind(':');
  const int port = std::atoi(client_endpoint.c_str() + colon + 1) + kEventsPortOffset;
  return "tcp://" + client_endpoint.substr(0, colon) + ":" + std::to_string(port);
}

uint64_t MainGroup(const NodeStatus& status) {
  uint64_t first = 0;
  for (const GroupStatus& g : status.groups) {
    if (g.group == kMainGroup) return kMainGroup;
    if (first == 0 || g.group < first) first = g.group;
  }
  return first == 0 ? kMainGroup : first;
}

struct Client::Impl {
  explicit Impl(Options o) : opt(std::move(o)), endpoints(opt.endpoints), keys(opt.credentials) {}

  // A DEALER to a node, and the server key it was made with ("" plain).
  struct Connection {
    std::string server_key;
    zmq::socket_t socket;
  };

  Options opt;
  zmq::context_t ctx{1};
  std::map<std::string, Connection> sockets;  // endpoint -> its DEALER
  std::vector<std::string> endpoints;
  ServerKeys keys;
  std::string leader;       // unsharded: the leader; sharded: where non-key ops went last
  std::string answered_by;  // the node that gave the last definite answer
  size_t cursor = 0;        // where to look next when no leader is known
  uint64_t next_id = 1;
  uint64_t seq = 0;
  // Sharded clusters, once a reply named a shard: the cached map, and each
  // shard's leader (an index in `endpoints`). Not sharded (or not known to be
  // yet): every op goes to `leader`.
  ShardMap map;
  ShardRoutes routes;
  // Latency of recent answers, for the attempt timeout; jitter for backoffs.
  ResendTimer timer;
  // Scans of a sharded cluster: the pages several shards owe at once are
  // fetched in parallel through this (made at the first such scan).
  std::unique_ptr<AsyncClient> fanout;
  uint64_t fanout_generation = 0;
  std::mt19937_64 rng{std::random_device{}()};

  // Ops a shard's leader serves: key ops (txns among the writes), and scans
  // and backups (which name their shard).
  static bool IsKeyOp(net::ClientOp op) {
    return op == net::ClientOp::kGet || NamesShard(op) || net::IsWrite(op);
  }
  static bool NamesShard(net::ClientOp op) {
    return op == net::ClientOp::kScan || op == net::ClientOp::kBackup;
  }

  // The shard of a request (its routing key's, or the one a scan names), or -1 for
  // other ops and while no map is known.
  int64_t ShardFor(const net::ClientRequest& req) const {
    if (!routes.sharded() || !IsKeyOp(req.op)) return -1;
    return NamesShard(req.op) ? req.shard : routes.ShardOf(RoutingKey(req));
  }

  // The index of `endpoint` in `endpoints`, added if new.
  int EndpointIndex(const std::string& endpoint) {
    const auto it = std::find(endpoints.begin(), endpoints.end(), endpoint);
    if (it != endpoints.end()) return static_cast<int>(it - endpoints.begin());
    endpoints.push_back(endpoint);
    return static_cast<int>(endpoints.size() - 1);
  }

  // Where a request about `shard` (-1: none) goes next: the leader known for
  // it, else the next endpoint in turn; only nodes whose server key is known
  // (secure clusters). "" when there is none.
  std::string NextEndpoint(int64_t shard) {
    if (shard < 0 && !leader.empty() && keys.Knows(leader)) return leader;
    const int known = routes.leader(shard);
    if (known >= 0 && keys.Knows(endpoints[known])) return endpoints[known];
    for (size_t tried = 0; tried < endpoints.size(); ++tried) {
      const std::string& endpoint = endpoints[cursor++ % endpoints.size()];
      if (keys.Knows(endpoint)) return endpoint;
    }
    return "";
  }

  // Records (or with "", forgets) the leader of a request's target: the
  // shard's when there is one, else the cluster's.
  void SetLeader(int64_t shard, const std::string& address) {
    if (shard < 0) {
      leader = address;
    } else {
      routes.SetLeader(shard, address.empty() ? -1 : EndpointIndex(address));
    }
  }

  // A node that did not answer leads nothing we know of.
  void Forget(const std::string& endpoint) {
    if (leader == endpoint) leader.clear();
    const auto it = std::find(endpoints.begin(), endpoints.end(), endpoint);
    if (it != endpoints.end()) routes.Forget(static_cast<int>(it - endpoints.begin()));
  }

  // Takes a shard map for routing, and its members as endpoints.
  void Install(ShardMap m) {
    keys.LearnMembers(m.members, m.member_keys);
    for (const auto& member : m.members) (void)EndpointIndex(member.second);
    routes.Install(m, [this](const std::string& address) { return EndpointIndex(address); });
    map = std::move(m);
  }

  // Decodes a shards reply from `from` and installs the map.
  Result InstallShards(const std::string& bytes, const std::string& from) {
    uint64_t id = 0;
    ShardMap m;
    const kv::Status s = net::DecodeShardsReply(bytes, &id, &m);
    if (!s.ok()) return Result{Code::kError, {}, from + ": " + s.message()};
    Install(std::move(m));
    return Result{};
  }

  // One attempt at fetching the map from `endpoint`.
  void FetchShards(const std::string& endpoint, Clock::time_point until) {
    net::ClientRequest req;
    req.op = net::ClientOp::kShards;
    req.id = next_id++;
    std::string bytes;
    if (Exchange(endpoint, req, until, &bytes)) (void)InstallShards(bytes, endpoint);
  }

  // The DEALER to `endpoint`, made anew when the node's key changed since;
  // null when its key is unknown.
  zmq::socket_t* Socket(const std::string& endpoint) {
    const std::string key = keys.KeyOf(endpoint);
    auto it = sockets.find(endpoint);
    if (it != sockets.end() && it->second.server_key == key) return &it->second.socket;
    if (it != sockets.end()) sockets.erase(it);
    std::optional<zmq::socket_t> s =
        keys.Open(ctx, zmq::socket_type::dealer, endpoint, ServerKeys::Port::kClient);
    if (!s) return nullptr;
    return &sockets.insert_or_assign(endpoint, Connection{key, std::move(*s)}).first->second.socket;
  }

  // Forgets a socket, and whatever it still had queued for a node that did
  // not answer.
  void Drop(const std::string& endpoint) { sockets.erase(endpoint); }

  // Sends the request to `endpoint` and waits until `until` for the reply
  // with its id. False if none came.
  bool Exchange(const std::string& endpoint, const net::ClientRequest& req, Clock::time_point until,
                std::string* reply) {
    zmq::socket_t* socket = Socket(endpoint);
    if (socket == nullptr) return false;
    zmq::socket_t& s = *socket;
    const std::string bytes = net::EncodeClientRequest(req);
    try {
      if (!s.send(zmq::buffer(bytes), zmq::send_flags::dontwait)) {
        Drop(endpoint);
        return false;
      }
      while (true) {
        const auto left =
            std::chrono::duration_cast<std::chrono::milliseconds>(until - Clock::now());
        if (left.count() <= 0) break;
        zmq::pollitem_t item{static_cast<void*>(s), 0, ZMQ_POLLIN, 0};
        zmq::poll(&item, 1, left);
        if (!(item.revents & ZMQ_POLLIN)) continue;
        zmq::message_t msg;
        if (!s.recv(msg, zmq::recv_flags::dontwait)) continue;
        // Replies to earlier attempts may still arrive: match by id.
        net::ClientReply peek;
        uint64_t id = 0;
        NodeStatus ignored;
        if (req.op == net::ClientOp::kStatus) {
          if (!net::DecodeStatusReply(msg.to_string_view(), &id, &ignored).ok()) id = 0;
        } else if (net::DecodeClientReply(msg.to_string_view(), &peek).ok()) {
          id = peek.id;
        }
        if (id == req.id) {
          *reply = msg.to_string();
          return true;
        }
      }
    } catch (const zmq::error_t&) {
    }
    Drop(endpoint);
    return false;
  }

  // Runs one operation until it has an answer or the deadline passes. With
  // `raw`, the final reply's bytes are stored there too.
  Result Run(net::ClientRequest req, Client* owner, std::string* raw = nullptr) {
    const bool write = net::IsWrite(req.op);
    if (write) {
      req.client = owner->client_id_;
      req.seq = ++seq;
    }
    const uint64_t request_bytes = RequestBytes(req);
    const Clock::time_point deadline = Clock::now() + opt.timeout;
    int refusals = 0;  // BUSY, UNAVAILABLE, UNKNOWN so far: they set the backoff
    int timeouts = 0;  // attempts in a row that got no answer: they stretch the next
    bool maybe_delivered = false;
    bool map_fetched = false;  // at most one shard map fetch per operation
    std::string last_error = "no answer from any node";
    // Ends the operation early, without a definite answer, because of
    // `why`: unknown for a write an earlier attempt may have delivered.
    const auto stop = [&](const std::string& why) {
      if (!maybe_delivered) return Result{Code::kUnavailable, {}, why};
      return Result{
          Code::kUnknown, {}, why + "; the write may or may not take effect (" + last_error + ")"};
    };
    int64_t shard = ShardFor(req);
    std::string target = NextEndpoint(shard);
    while (Clock::now() < deadline) {
      // Secure, and no node left whose key we know: waiting cannot help.
      if (target.empty()) return stop(ServerKeys::MissingKeyError(endpoints));
      req.id = next_id++;
      const Clock::time_point sent = Clock::now();
      const auto attempt =
          std::chrono::nanoseconds(timer.TimeoutNs(opt.attempt_timeout, request_bytes, timeouts));
      const Clock::time_point until =
          std::min(deadline, sent + std::chrono::duration_cast<Clock::duration>(attempt));
      std::string bytes;
      const bool answered = Exchange(target, req, until, &bytes);
      if (!answered) {
        maybe_delivered = maybe_delivered || write;
        last_error = "no answer from " + target;
        timeouts++;
        Forget(target);
        target = NextEndpoint(shard);
        continue;
      }
      timeouts = 0;
      net::ClientReply reply;
      if (!net::DecodeClientReply(bytes, &reply).ok()) {
        return Result{Code::kError, {}, "malformed reply from " + target};
      }
      if (reply.shard >= 0 && IsKeyOp(req.op)) {
        // A sharded cluster. Learn its map if ours is missing or older.
        if (!map_fetched && (!routes.sharded() || reply.map_version > routes.version() ||
                             reply.shard >= routes.shards())) {
          map_fetched = true;
          FetchShards(target, std::min(deadline, Clock::now() + opt.attempt_timeout));
        }
        // A key's shard is the node's word; a scan keeps the shard it names.
        if (!NamesShard(req.op)) shard = reply.shard;
      }
      if (reply.status == net::ReplyStatus::kRedirect && reply.leader.empty()) {
        reply.status = net::ReplyStatus::kUnavailable;  // a REDIRECT to nowhere
      }
      switch (reply.status) {
        case net::ReplyStatus::kRedirect:
          owner->redirects_++;
          keys.LearnLeader(reply.leader, reply.leader_key);
          if (!keys.Knows(reply.leader)) {
            // The leader cannot be reached, and every node would send us
            // there again: stop, saying what is missing.
            return stop(ServerKeys::MissingKeyError({reply.leader}) + " (" + target +
                        " names it as the leader, without its key)");
          }
          (void)EndpointIndex(reply.leader);
          SetLeader(shard, reply.leader);
          target = reply.leader;
          continue;
        case net::ReplyStatus::kUnknown:
          // With a session the retry is safe: the cluster applies it once.
          maybe_delivered = true;
          last_error = reply.error;
          break;
        case net::ReplyStatus::kUnavailable:
          last_error = reply.error;
          SetLeader(shard, "");
          break;
        case net::ReplyStatus::kBusy:
          // Not executed: the node shed it. It is still the leader: keep it.
          owner->busy_++;
          last_error = target + " is busy" + (reply.error.empty() ? "" : ": " + reply.error);
          break;
        default: {
          // Key ops that executed tell the latency; a refusal or a member
          // change (which waits for a catch-up) would not.
          if (IsKeyOp(req.op) && reply.status != net::ReplyStatus::kError &&
              reply.status != net::ReplyStatus::kDenied) {
            timer.Observe(static_cast<uint64_t>(
                std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - sent).count()));
            // Executed by the leader (any node serves a stale read): ask it
            // first next time, not the endpoints before it in the list.
            if (!req.stale) SetLeader(shard, target);
          }
          if (raw) *raw = std::move(bytes);
          answered_by = target;
          Result r{CodeFor(reply.status), std::move(reply.value), std::move(reply.error)};
          r.index = reply.index;
          r.create_index = reply.create_index;
          r.mod_index = reply.mod_index;
          r.ttl_ms = reply.ttl_ms;
          return r;
        }
      }
      // BUSY, UNAVAILABLE or UNKNOWN: back off, then ask again (the next
      // node when no leader is known). An attempt sent too close to the
      // deadline for its answer to come would only make a write's fate
      // unknown: stop with what we know instead.
      const auto pause = std::chrono::duration_cast<Clock::duration>(Backoff(++refusals, rng));
      if (Clock::now() + pause + kMinBackoff >= deadline) break;
      std::this_thread::sleep_for(pause);
      target = NextEndpoint(shard);
    }
    if (maybe_delivered) {
      return Result{Code::kUnknown,
                    {},
                    "deadline passed; the write may or may not take effect (" + last_error + ")"};
    }
    return Result{Code::kUnavailable, {}, last_error};
  }
};

Client::Client(Options options) {
  if (options.endpoints.empty()) options.endpoints = ParseEndpoints(DefaultEndpoints());
  client_id_ = options.client_id;
  if (client_id_ == 0) {
    std::random_device rd;
    client_id_ = (static_cast<uint64_t>(rd()) << 32 | rd()) | 1;
  }
  impl_ = std::make_unique<Impl>(std::move(options));
}

Client::~Client() = default;

std::string Client::leader() const { return impl_->leader; }

const Options& Client::options() const { return impl_->opt; }

int64_t Client::ShardOf(const std::string& key) const {
  return impl_->routes.sharded() ? static_cast<int64_t>(impl_->routes.ShardOf(key)) : -1;
}

std::map<std::string, std::string> Client::server_keys() const { return impl_->keys.by_address(); }

Result Client::Put(const std::string& key, const std::string& value,
                   std::chrono::milliseconds ttl) {
  net::ClientRequest req;
  req.op = net::ClientOp::kPut;
  req.key = key;
  req.value = value;
  req.ttl_ms = TtlMs(ttl);
  return impl_->Run(std::move(req), this);
}

Result Client::Get(const std::string& key, bool stale) {
  net::ClientRequest req;
  req.op = net::ClientOp::kGet;
  req.key = key;
  req.stale = stale;
  return impl_->Run(std::move(req), this);
}

Result Client::Delete(const std::string& key) {
  net::ClientRequest req;
  req.op = net::ClientOp::kDelete;
  req.key = key;
  return impl_->Run(std::move(req), this);
}

Result Client::Cas(const std::string& key, const std::optional<std::string>& expect,
                   const std::string& value, std::chrono::milliseconds ttl) {
  net::ClientRequest req;
  req.op = net::ClientOp::kCas;
  req.key = key;
  req.value = value;
  req.ttl_ms = TtlMs(ttl);
  req.has_expect = expect.has_value();
  if (expect) req.expect = *expect;
  return impl_->Run(std::move(req), this);
}

Result Client::CasIndex(const std::string& key, uint64_t expect_index, const std::string& value,
                        std::chrono::milliseconds ttl) {
  net::ClientRequest req;
  req.op = net::ClientOp::kCas;
  req.key = key;
  req.value = value;
  req.ttl_ms = TtlMs(ttl);
  req.has_expect_index = true;
  req.expect_index = expect_index;
  return impl_->Run(std::move(req), this);
}

Result Client::Touch(const std::string& key, std::chrono::milliseconds ttl) {
  net::ClientRequest req;
  req.op = net::ClientOp::kTouch;
  req.key = key;
  req.ttl_ms = TtlMs(ttl);
  return impl_->Run(std::move(req), this);
}

Compare Compare::Value(std::string key, std::string value) {
  return Compare{kValue, std::move(key), std::move(value), kEqual, 0};
}

Compare Compare::Absent(std::string key) { return Compare{kAbsent, std::move(key), {}, kEqual, 0}; }

Compare Compare::Present(std::string key) {
  return Compare{kPresent, std::move(key), {}, kEqual, 0};
}

Compare Compare::ModIndex(std::string key, Order order, uint64_t mod_index) {
  return Compare{kModIndex, std::move(key), {}, order, mod_index};
}

TxnOp TxnOp::Put(std::string key, std::string value, std::chrono::milliseconds ttl) {
  return TxnOp{kPut, std::move(key), std::move(value), ttl};
}

TxnOp TxnOp::Delete(std::string key) { return TxnOp{kDelete, std::move(key), {}, {}}; }

TxnOp TxnOp::Get(std::string key) { return TxnOp{kGet, std::move(key), {}, {}}; }

TxnResult Client::Txn(const Transaction& txn) {
  net::ClientRequest req;
  req.op = net::ClientOp::kTxn;
  for (const Compare& c : txn.compare) req.compare.push_back(WireCompare(c));
  for (const TxnOp& op : txn.success) req.success.push_back(WireOp(op));
  for (const TxnOp& op : txn.failure) req.failure.push_back(WireOp(op));
  std::string bytes;
  const Result r = impl_->Run(std::move(req), this, &bytes);
  TxnResult out;
  out.code = r.code;
  out.error = r.error;
  if (!r.ok()) return out;
  net::ClientReply reply;
  if (!net::DecodeClientReply(bytes, &reply).ok() || !reply.is_txn) {
    out.code = Code::kError;
    out.error = "malformed txn reply";
    return out;
  }
  out.index = reply.index;
  out.succeeded = reply.succeeded;
  out.resent = reply.resent;
  for (net::TxnResult& t : reply.results) {
    Result& op = out.results.emplace_back();
    op.code = CodeFor(t.status);
    op.value = std::move(t.value);
    op.error = std::move(t.error);
    op.create_index = t.create_index;
    op.mod_index = t.mod_index;
    op.ttl_ms = t.ttl_ms;
  }
  return out;
}

Result Client::TransferLeader(uint64_t target) {
  net::ClientRequest req;
  req.op = net::ClientOp::kTransferLeader;
  req.target = target;
  return impl_->Run(std::move(req), this);
}

Result Client::AddMember(uint64_t node, const std::string& address, const std::string& public_key) {
  net::ClientRequest req;
  req.op = net::ClientOp::kMemberAdd;
  req.node = node;
  req.address = address;
  req.pub = public_key;
  return impl_->Run(std::move(req), this);
}

Result Client::RemoveMember(uint64_t node) {
  net::ClientRequest req;
  req.op = net::ClientOp::kMemberRemove;
  req.node = node;
  return impl_->Run(std::move(req), this);
}

Result Client::Shards(ShardMap* out) {
  net::ClientRequest req;
  req.op = net::ClientOp::kShards;
  std::string bytes;
  Result r = impl_->Run(std::move(req), this, &bytes);
  if (r.ok()) r = impl_->InstallShards(bytes, "shards reply");
  if (r.ok()) *out = impl_->map;
  return r;
}

Result Client::BackupShard(uint32_t shard, const std::function<bool(const BackupPartInfo&)>& begin,
                           const std::function<bool(std::string_view)>& data) {
  net::ClientRequest req;
  req.op = net::ClientOp::kBackup;
  // An unsharded cluster's one part names no shard.
  if (impl_->routes.sharded()) req.shard = shard;
  std::string bytes;
  Result r = impl_->Run(req, this, &bytes);
  if (!r.ok()) return r;
  uint64_t id = 0;
  net::BackupReply reply;
  kv::Status s = net::DecodeBackupReply(bytes, &id, &reply);
  if (!s.ok()) return Result{Code::kError, {}, s.message()};
  const BackupPartInfo info{reply.index,   reply.clock_ms, reply.keys,    reply.size,
                            reply.cluster, reply.shards,   reply.replicas};
  // The pieces, from the node that holds the backup; a piece that does not
  // come is asked for again (the cursor makes that safe) until the deadline.
  const std::string holder = impl_->answered_by;
  req.backup = reply.backup;
  req.cursor = 0;
  // Ends the backup: the node lets its copy go now rather than after a
  // while (one attempt; the answer does not matter).
  const auto close = [&](Result result) {
    req.id = impl_->next_id++;
    req.close = true;
    (void)impl_->Exchange(holder, req, Clock::now() + impl_->opt.attempt_timeout, &bytes);
    return result;
  };
  if (!begin(info)) return close(Result{Code::kError, {}, "stopped by the caller"});
  uint64_t received = 0;
  Clock::time_point deadline = Clock::now() + impl_->opt.timeout;
  int refusals = 0;
  while (true) {
    if (Clock::now() >= deadline) {
      return close(Result{Code::kUnavailable, {}, "no piece of the backup from " + holder});
    }
    req.id = impl_->next_id++;
    const Clock::time_point until = std::min(
        deadline,
        Clock::now() + std::max(impl_->opt.attempt_timeout, std::chrono::milliseconds(5000)));
    if (!impl_->Exchange(holder, req, until, &bytes)) {
      // Lost, or no socket at all: pause before asking again.
      std::this_thread::sleep_for(Backoff(++refusals, impl_->rng));
      continue;
    }
    net::ClientReply status;
    if (!net::DecodeClientReply(bytes, &status).ok()) {
      return close(Result{Code::kError, {}, "malformed reply from " + holder});
    }
    if (status.status == net::ReplyStatus::kBusy) {
      busy_++;
      std::this_thread::sleep_for(Backoff(++refusals, impl_->rng));
      continue;
    }
    if (status.status != net::ReplyStatus::kOk) {
      return Result{CodeFor(status.status), {}, holder + ": " + status.error};
    }
    s = net::DecodeBackupReply(bytes, &id, &reply);
    if (!s.ok() || !reply.is_piece || reply.cursor <= req.cursor) {
      return close(Result{Code::kError, {}, "malformed backup piece from " + holder});
    }
    received += reply.data.size();
    if (received > info.size) {
      return close(Result{Code::kError, {}, holder + " sent more than the backup's size"});
    }
    if (!data(reply.data)) return close(Result{Code::kError, {}, "stopped by the caller"});
    if (reply.done) break;
    req.cursor = reply.cursor;
    deadline = Clock::now() + impl_->opt.timeout;
    refusals = 0;
  }
  if (received != info.size) {
    return close(Result{Code::kError,
                        {},
                        holder + " sent " + std::to_string(received) + " of " +
                            std::to_string(info.size) + " bytes"});
  }
  return close(Result{});
}

ScanOptions PrefixScan(const std::string& prefix) {
  const kv::ScanSpec range = kv::PrefixRange(prefix);
  ScanOptions o;
  o.start = range.start;
  o.end = range.end;
  return o;
}

// A shard's (or an unsharded cluster's) place in a scan: the request for
// its next page and the keys of its pages not merged yet.
struct Client::ScanCursor {
  net::ClientRequest req;
  std::deque<kv::ScannedKey> buffered;
  bool more = true;

  // Takes the next page; false if it is malformed: a page must go on past
  // its last key, or the cursor would go round.
  bool Take(kv::ScanPage page) {
    if (page.more && (page.kvs.empty() || page.next <= page.kvs.back().key)) return false;
    for (kv::ScannedKey& k : page.kvs) buffered.push_back(std::move(k));
    more = page.more;
    req.scan.start = std::move(page.next);
    return true;
  }
};

Result Client::FetchPages(const std::vector<ScanCursor*>& need) {
  if (need.size() == 1) {
    std::string bytes;
    Result r = impl_->Run(need[0]->req, this, &bytes);
    net::ClientReply reply;
    if (r.ok() && (!net::DecodeClientReply(bytes, &reply).ok() || !reply.is_scan ||
                   !need[0]->Take(std::move(reply.page)))) {
      r = Result{Code::kError, {}, "malformed scan reply"};
    }
    return r;
  }
  // Several shards at once: in parallel, each to its leader, through an
  // AsyncClient kept for the purpose. Tags carry a generation, so that an
  // answer to an earlier scan that gave up on it is not taken for this one's.
  Impl& m = *impl_;
  if (m.fanout == nullptr) {
    AsyncOptions ao;
    ao.endpoints = m.endpoints;
    ao.request_timeout = m.opt.attempt_timeout;
    ao.credentials = m.opt.credentials;
    Topology top;
    top.leader = m.leader.empty() ? m.endpoints.front() : m.leader;
    top.map = m.map;
    top.server_keys = m.keys.by_address();
    m.fanout = std::make_unique<AsyncClient>(ao, top);
  }
  const uint64_t generation = ++m.fanout_generation;
  for (size_t i = 0; i < need.size(); ++i) {
    Request req;
    req.op = Op::kScan;
    req.scan.start = need[i]->req.scan.start;
    req.scan.end = need[i]->req.scan.end;
    req.scan.limit = need[i]->req.scan.limit;
    req.scan.keys_only = need[i]->req.scan.keys_only;
    req.scan.stale = need[i]->req.stale;
    req.shard = need[i]->req.shard;
    m.fanout->Submit(generation << 20 | i, std::move(req));
  }
  const auto deadline = std::chrono::steady_clock::now() + m.opt.timeout;
  size_t done = 0;
  std::vector<Completion> completed;
  while (done < need.size()) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return Result{Code::kUnavailable, {}, "deadline passed"};
    completed.clear();
    m.fanout->Poll(std::min(left, std::chrono::milliseconds(100)), &completed);
    for (Completion& c : completed) {
      if (c.tag >> 20 != generation) continue;
      if (c.code != Code::kOk) return Result{c.code, {}, std::move(c.error)};
      kv::ScanPage page;
      for (KeyValue& kv : c.kvs) {
        page.kvs.push_back(
            kv::ScannedKey{std::move(kv.key), std::move(kv.value), {0, kv.mod_index}, kv.ttl_ms});
      }
      page.more = c.more;
      page.next = std::move(c.next);
      if (!need[c.tag & ((1 << 20) - 1)]->Take(std::move(page))) {
        return Result{Code::kError, {}, "malformed scan reply"};
      }
      ++done;
    }
  }
  return Result{};
}

ScanResult Client::Scan(const ScanOptions& options) {
  ScanResult out;
  ShardMap map;
  if (Result r = Shards(&map); !r.ok()) {
    // A node that predates sharding has no "shards" op: it is not sharded.
    if (r.code != Code::kError) return ScanResult{r.code, r.error, {}, false};
    map.shards = 0;
  }
  const size_t limit = std::max<size_t>(options.limit, 1);
  // One cursor per shard (one in all, shard -1, when unsharded), merged in
  // key order: the smallest buffered key goes out next, and the shards whose
  // buffers run dry are asked for their next pages first, together. Pages of
  // about twice a shard's fair share, so that a short scan of many shards
  // does not fetch `limit` keys from each of them.
  const size_t count = std::max<size_t>(map.shards, 1);
  const size_t page =
      std::min({limit, kv::kMaxScanLimit, std::max<size_t>(100, 2 * limit / count)});
  std::vector<ScanCursor> cursors(count);
  for (size_t i = 0; i < count; ++i) {
    net::ClientRequest& req = cursors[i].req;
    req.op = net::ClientOp::kScan;
    req.scan.start = options.start;
    req.scan.end = options.end;
    req.scan.keys_only = options.keys_only;
    req.scan.limit = page;
    req.stale = options.stale;
    req.shard = map.shards > 0 ? static_cast<int64_t>(i) : -1;
  }
  std::vector<ScanCursor*> need;
  while (out.kvs.size() < limit) {
    need.clear();
    for (ScanCursor& c : cursors) {
      if (c.buffered.empty() && c.more) need.push_back(&c);
    }
    if (!need.empty()) {
      if (Result r = FetchPages(need); !r.ok()) return ScanResult{r.code, r.error, {}, false};
    }
    ScanCursor* smallest = nullptr;
    for (ScanCursor& c : cursors) {
      if (!c.buffered.empty() &&
          (smallest == nullptr || c.buffered.front().key < smallest->buffered.front().key)) {
        smallest = &c;
      }
    }
    if (smallest == nullptr) break;  // every shard read to the end of the range
    kv::ScannedKey& k = smallest->buffered.front();
    out.kvs.push_back(
        KeyValue{std::move(k.key), std::move(k.value), k.version.mod_index, k.ttl_ms});
    smallest->buffered.pop_front();
  }
  for (const ScanCursor& c : cursors) out.more = out.more || c.more || !c.buffered.empty();
  return out;
}

NodeReport Client::Status(const std::string& endpoint) {
  NodeReport out;
  out.endpoint = endpoint;
  net::ClientRequest req;
  req.op = net::ClientOp::kStatus;
  req.id = impl_->next_id++;
  if (!impl_->keys.Knows(endpoint)) {
    out.error = ServerKeys::MissingKeyError({endpoint});
    return out;
  }
  std::string bytes;
  uint64_t id = 0;
  out.reachable =
      impl_->Exchange(endpoint, req, Clock::now() + impl_->opt.attempt_timeout, &bytes) &&
      net::DecodeStatusReply(bytes, &id, &out.status).ok();
  if (out.reachable) {
    impl_->keys.LearnMembers(out.status.members, out.status.member_keys);
  } else {
    out.error = "no answer from " + endpoint;
  }
  return out;
}

}  // namespace kv::client
