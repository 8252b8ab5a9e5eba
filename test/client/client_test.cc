// The client library against scripted fake nodes: ZeroMQ ROUTER sockets on
// loopback whose answers each test chooses. Sharded clusters are faked the
// same way: each fake owns some shards of kv::ShardRing and redirects the
// others, as a node will.
#include "kvstore/client.h"

#include <algorithm>
#include <atomic>
#include <catch2/catch.hpp>
#include <cstdio>
#include <functional>
#include <map>
#include <mutex>
#include <set>
#include <thread>
#include <zmq.hpp>
#include <zmq_addon.hpp>

#include "client/retry.h"
#include "kv/ring.h"
#include "kvstore/async_client.h"
#include "kvstore/credentials.h"
#include "kvstore/keys.h"
#include "kvstore/subscriber.h"
#include "net/client_codec.h"
#include "net/publisher.h"

namespace kv::client {
namespace {

using net::ClientReply;
using net::ClientRequest;
using net::ReplyStatus;

// A fake node: answers each request with what the handler returns, or not
// at all when it returns nullopt. After set_shards (set_status), it answers
// "shards" ("status") with that map (status) itself. Given a key pair, it is
// a CURVE server, as a node started with --key (without a ZAP handler: any
// client key gets through).
class FakeNode {
 public:
  using Handler = std::function<std::optional<ClientReply>(const ClientRequest&)>;

  explicit FakeNode(Handler handler, const KeyPair* curve = nullptr)
      : handler_(std::move(handler)), socket_(ctx_, zmq::socket_type::router) {
    socket_.set(zmq::sockopt::linger, 0);
    if (curve != nullptr) {
      socket_.set(zmq::sockopt::curve_server, true);
      socket_.set(zmq::sockopt::curve_secretkey, curve->secret_key);
    }
    socket_.bind("tcp://127.0.0.1:*");
    const std::string ep = socket_.get(zmq::sockopt::last_endpoint);
    address_ = ep.substr(ep.find("//") + 2);
    thread_ = std::thread([this] { Serve(); });
  }
  ~FakeNode() {
    stop_ = true;
    thread_.join();
  }
  const std::string& address() const { return address_; }
  std::vector<ClientRequest> requests() {
    std::lock_guard<std::mutex> lock(mu_);
    return requests_;
  }
  // When each of requests() was received.
  std::vector<std::chrono::steady_clock::time_point> received() {
    std::lock_guard<std::mutex> lock(mu_);
    return received_;
  }
  // How many requests had op `op`.
  size_t count(net::ClientOp op) {
    std::lock_guard<std::mutex> lock(mu_);
    return std::count_if(requests_.begin(), requests_.end(),
                         [op](const ClientRequest& r) { return r.op == op; });
  }
  void set_shards(ShardMap map) {
    std::lock_guard<std::mutex> lock(mu_);
    shards_ = std::move(map);
  }
  void set_status(NodeStatus status) {
    std::lock_guard<std::mutex> lock(mu_);
    status_ = std::move(status);
  }

 private:
  void Serve() {
    while (!stop_) {
      zmq::pollitem_t item{static_cast<void*>(socket_), 0, ZMQ_POLLIN, 0};
      zmq::poll(&item, 1, std::chrono::milliseconds(10));
      if (!(item.revents & ZMQ_POLLIN)) continue;
      std::vector<zmq::message_t> frames;
      if (!zmq::recv_multipart(socket_, std::back_inserter(frames))) continue;
      ClientRequest req;
      bool id_known = false;
      // Catch2's assertions are not thread-safe: a request that does not
      // decode is recorded with id 0 and fails the test's checks instead.
      if (!net::DecodeClientRequest(frames.back().to_string_view(), net::RequestLimits{}, &req,
                                    &id_known)
               .ok()) {
        req = ClientRequest{};
      }
      std::optional<std::string> map_reply;
      {
        std::lock_guard<std::mutex> lock(mu_);
        requests_.push_back(req);
        received_.push_back(std::chrono::steady_clock::now());
        if (req.op == net::ClientOp::kShards && shards_) {
          map_reply = net::EncodeShardsReply(req.id, *shards_);
        }
        if (req.op == net::ClientOp::kStatus && status_) {
          map_reply = net::EncodeStatusReply(req.id, *status_);
        }
      }
      if (map_reply) {
        socket_.send(frames[0], zmq::send_flags::sndmore);
        socket_.send(zmq::buffer(*map_reply));
        continue;
      }
      std::optional<ClientReply> reply = handler_(req);
      if (!reply) continue;
      reply->id = req.id;
      socket_.send(frames[0], zmq::send_flags::sndmore);
      socket_.send(zmq::buffer(net::EncodeClientReply(*reply)));
    }
  }

  Handler handler_;
  zmq::context_t ctx_{1};
  zmq::socket_t socket_;
  std::string address_;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  std::mutex mu_;
  std::vector<ClientRequest> requests_;                          // guarded by mu_
  std::vector<std::chrono::steady_clock::time_point> received_;  // guarded by mu_
  std::optional<ShardMap> shards_;                               // guarded by mu_
  std::optional<NodeStatus> status_;                             // guarded by mu_
};

ClientReply With(ReplyStatus status, std::string value = "") {
  ClientReply r;
  r.status = status;
  r.has_value = !value.empty();
  r.value = std::move(value);
  return r;
}

Options Fast(std::vector<std::string> endpoints) {
  Options o;
  o.endpoints = std::move(endpoints);
  o.timeout = std::chrono::milliseconds(1500);
  o.attempt_timeout = std::chrono::milliseconds(200);
  return o;
}

TEST_CASE("A REDIRECT is followed to the leader, which is then remembered") {
  FakeNode leader([](const ClientRequest&) { return With(ReplyStatus::kOk, "v"); });
  FakeNode follower([&](const ClientRequest&) {
    ClientReply r = With(ReplyStatus::kRedirect);
    r.leader = leader.address();
    return r;
  });
  // No timeout may fire here (a resend would count twice): a loaded machine
  // gets the whole deadline for each answer.
  Options o = Fast({follower.address()});
  o.attempt_timeout = o.timeout = std::chrono::seconds(30);
  Client c(o);
  Result r = c.Get("k");
  REQUIRE(r.code == Code::kOk);
  REQUIRE(r.value == "v");
  REQUIRE(c.redirects() == 1);
  REQUIRE(c.leader() == leader.address());
  REQUIRE(c.Put("k", "v").ok());
  REQUIRE(follower.requests().size() == 1);  // the second call went straight to the leader
  // No reply named a shard: an unsharded cluster is never asked for a map.
  for (int i = 0; i < 4; ++i) REQUIRE(c.Delete("k" + std::to_string(i)).ok());
  REQUIRE(leader.requests().size() == 6);
  REQUIRE(leader.count(net::ClientOp::kShards) + follower.count(net::ClientOp::kShards) == 0);
}

TEST_CASE("UNAVAILABLE is retried until the cluster answers") {
  std::atomic<int> calls{0};
  FakeNode node([&](const ClientRequest&) {
    return ++calls <= 2 ? With(ReplyStatus::kUnavailable) : With(ReplyStatus::kOk);
  });
  Client c(Fast({node.address()}));
  REQUIRE(c.Put("k", "v").ok());
  REQUIRE(calls == 3);
}

TEST_CASE("A write retried after a lost answer keeps its session and sequence number") {
  std::atomic<int> calls{0};
  FakeNode node([&](const ClientRequest&) -> std::optional<ClientReply> {
    if (++calls == 1) return std::nullopt;  // the first answer is lost
    return With(ReplyStatus::kOk);
  });
  Client c(Fast({node.address()}));
  REQUIRE(c.Put("k", "v").ok());
  REQUIRE(c.Put("k", "w").ok());
  const auto reqs = node.requests();
  REQUIRE(reqs.size() == 3);
  REQUIRE(reqs[0].client == c.client_id());
  REQUIRE(reqs[0].client == reqs[1].client);
  REQUIRE(reqs[0].seq == reqs[1].seq);      // the retry is the same write
  REQUIRE(reqs[2].seq == reqs[1].seq + 1);  // the next write is a new one
}

TEST_CASE("An UNKNOWN answer is retried with the same sequence number") {
  std::atomic<int> calls{0};
  FakeNode node([&](const ClientRequest&) {
    return ++calls == 1 ? With(ReplyStatus::kUnknown) : With(ReplyStatus::kCasFailed);
  });
  Client c(Fast({node.address()}));
  REQUIRE(c.Cas("k", std::nullopt, "v").code == Code::kCasFailed);
  const auto reqs = node.requests();
  REQUIRE(reqs.size() == 2);
  REQUIRE(reqs[0].seq == reqs[1].seq);
  REQUIRE_FALSE(reqs[1].has_expect);
}

TEST_CASE("Silence until the deadline: reads are unavailable, writes unknown") {
  FakeNode node([](const ClientRequest&) { return std::nullopt; });
  Options o = Fast({node.address()});
  o.timeout = std::chrono::milliseconds(400);
  o.attempt_timeout = std::chrono::milliseconds(100);
  Client c(o);
  REQUIRE(c.Get("k").code == Code::kUnavailable);
  REQUIRE(c.Put("k", "v").code == Code::kUnknown);
  REQUIRE(c.Status(node.address()).reachable == false);
}

ClientReply Busy() {
  ClientReply r = With(ReplyStatus::kBusy);
  r.error = "too many uncommitted bytes";
  return r;
}

// The time between the node's receiving attempts i-1 and i.
std::chrono::steady_clock::duration Gap(FakeNode& node, size_t i) {
  const auto times = node.received();
  return times.at(i) - times.at(i - 1);
}

TEST_CASE("BUSY is retried at the same node after a backoff, with the same sequence number") {
  std::atomic<int> calls{0};
  FakeNode node(
      [&](const ClientRequest&) { return ++calls <= 2 ? Busy() : With(ReplyStatus::kOk); });
  Client c(Fast({node.address()}));
  REQUIRE(c.Put("k", "v").ok());
  REQUIRE(c.busy() == 2);
  const auto reqs = node.requests();
  REQUIRE(reqs.size() == 3);
  REQUIRE(reqs[1].seq == reqs[0].seq);
  REQUIRE(reqs[2].seq == reqs[0].seq);
  // Each retry waited at least the first backoff after the refusal, which
  // came after the node received the attempt before it.
  REQUIRE(Gap(node, 1) >= kMinBackoff);
  REQUIRE(Gap(node, 2) >= kMinBackoff);
}

TEST_CASE("BUSY until the deadline: UNAVAILABLE (not executed), UNKNOWN if an attempt was lost") {
  std::atomic<bool> drop_next{false};
  FakeNode node([&](const ClientRequest&) -> std::optional<ClientReply> {
    if (drop_next.exchange(false)) return std::nullopt;
    return Busy();
  });
  Options o = Fast({node.address()});
  o.timeout = std::chrono::milliseconds(400);
  o.attempt_timeout = std::chrono::milliseconds(100);
  Client c(o);
  Result get = c.Get("k");
  REQUIRE(get.code == Code::kUnavailable);
  REQUIRE(get.error.find("too many uncommitted bytes") != std::string::npos);
  // Never executed, however many times it was refused.
  REQUIRE(c.Put("k", "v").code == Code::kUnavailable);
  // The backoff grows: far fewer attempts than 400 ms / kMinBackoff.
  REQUIRE(node.requests().size() < 2 * 400 / kMinBackoff.count());
  // An attempt without an answer may have been executed.
  drop_next = true;
  REQUIRE(c.Put("k", "v").code == Code::kUnknown);
}

TEST_CASE("The attempt timeout grows with the latency seen: a slow answer is not resent") {
  std::atomic<int> delay_ms{80};
  FakeNode node([&](const ClientRequest&) {
    std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms.load()));  // a slow node
    return With(ReplyStatus::kOk);
  });
  Options o = Fast({node.address()});
  o.timeout = std::chrono::seconds(30);
  o.attempt_timeout = std::chrono::milliseconds(100);
  Client c(o);
  for (int i = 0; i < 4; ++i) REQUIRE(c.Put("k", "v").ok());
  // Slower than the configured attempt timeout, within 4 times the usual.
  delay_ms = 150;
  REQUIRE(c.Put("k", "v").ok());
  REQUIRE(node.requests().size() == 5);
}

TEST_CASE("ERROR and NOT_FOUND are final: no retry") {
  FakeNode node([](const ClientRequest& req) {
    ClientReply r =
        With(req.op == net::ClientOp::kGet ? ReplyStatus::kNotFound : ReplyStatus::kError);
    if (r.status == ReplyStatus::kError) r.error = "key too large";
    return r;
  });
  Client c(Fast({node.address()}));
  REQUIRE(c.Get("k").code == Code::kNotFound);
  Result r = c.Delete("k");
  REQUIRE(r.code == Code::kError);
  REQUIRE(r.error == "key too large");
  REQUIRE(node.requests().size() == 2);
}

TEST_CASE("A node that does not answer is skipped for one that does") {
  FakeNode dead([](const ClientRequest&) { return std::nullopt; });
  FakeNode live([](const ClientRequest&) { return With(ReplyStatus::kOk); });
  Client c(Fast({dead.address(), live.address()}));
  REQUIRE(c.Put("k", "v").ok());
  REQUIRE(live.requests().size() == 1);
  // The node that executed it is the leader from then on: the dead one is
  // not asked again (each try would cost an attempt timeout).
  const size_t dead_asked = dead.requests().size();
  REQUIRE(c.Get("k").ok());
  REQUIRE(c.Put("k", "w").ok());
  CHECK(dead.requests().size() == dead_asked);
  CHECK(live.requests().size() == 3);
}

// ---- Sharded clusters --------------------------------------------------------

// A key that kv::ShardRing(shards) puts in `shard`.
std::string KeyIn(uint32_t shard, uint32_t shards) {
  const ShardRing ring(shards);
  for (int i = 0;; ++i) {
    std::string key = "key" + std::to_string(i);
    if (ring.ShardOf(key) == shard) return key;
  }
}

// Two shards, one replica each: shard s led by leaders[s] (node s + 1).
ShardMap TwoShards(uint64_t version, const std::string& leader0, const std::string& leader1) {
  ShardMap map;
  map.version = version;
  map.shards = 2;
  map.replicas = 1;
  map.members = {{1, leader0}, {2, leader1}};
  map.list = {ShardInfo{0, 1, {1}, 1, leader0}, ShardInfo{1, 2, {2}, 2, leader1}};
  return map;
}

ClientReply RedirectFor(uint32_t shard, const std::string& leader, uint64_t map_version) {
  ClientReply r = With(ReplyStatus::kRedirect);
  r.leader = leader;
  r.shard = shard;
  r.map_version = map_version;
  return r;
}

// Two fake nodes, each leading one of two shards and redirecting the other's
// keys to it, as a sharded node does.
struct TwoShardCluster {
  explicit TwoShardCluster(uint64_t map_version = 1)
      : a([this](const ClientRequest& req) { return Serve(0, req); }),
        b([this](const ClientRequest& req) { return Serve(1, req); }),
        version(map_version) {
    a.set_shards(TwoShards(version, a.address(), b.address()));
    b.set_shards(TwoShards(version, a.address(), b.address()));
  }
  std::optional<ClientReply> Serve(uint32_t self, const ClientRequest& req) {
    const uint32_t shard = ring.ShardOf(req.key);
    if (shard == self) return With(ReplyStatus::kOk, "v");
    return RedirectFor(shard, (shard == 0 ? a : b).address(), version);
  }

  const ShardRing ring{2};
  FakeNode a, b;
  const uint64_t version;
};

TEST_CASE("A shard REDIRECT fetches the map once, then keys go straight to their shard's leader") {
  TwoShardCluster cluster;
  const std::string k0 = KeyIn(0, 2), k1 = KeyIn(1, 2);
  Client c(Fast({cluster.a.address()}));
  REQUIRE(c.Put(k1, "v").ok());  // a redirects to b, naming shard 1
  REQUIRE(c.redirects() == 1);
  REQUIRE(cluster.a.count(net::ClientOp::kShards) == 1);  // asked the node that answered
  for (int i = 0; i < 3; ++i) {
    REQUIRE(c.Put(k0, "v").ok());
    REQUIRE(c.Get(k1).ok());
    REQUIRE(c.Delete(k0).ok());
  }
  REQUIRE(c.redirects() == 1);
  REQUIRE(cluster.a.count(net::ClientOp::kShards) + cluster.b.count(net::ClientOp::kShards) == 1);
  const auto on_a = cluster.a.requests();
  const auto on_b = cluster.b.requests();
  REQUIRE(on_a.size() == 2 + 6);  // put k1 (redirected), shards, then its own shard's keys
  REQUIRE(on_b.size() == 1 + 3);
  for (const auto& r : on_a) {
    if (r.op != net::ClientOp::kShards && r.key != k1) REQUIRE(cluster.ring.ShardOf(r.key) == 0);
  }
  for (const auto& r : on_b) REQUIRE(cluster.ring.ShardOf(r.key) == 1);
  // The redirected write is the same write on both nodes: same session, same seq.
  REQUIRE(on_a[0].key == k1);
  REQUIRE(on_a[0].client == c.client_id());
  REQUIRE(on_b[0].client == c.client_id());
  REQUIRE(on_b[0].seq == on_a[0].seq);
  REQUIRE(on_a[2].seq == on_a[0].seq + 1);  // the next write, on the other shard
}

TEST_CASE("Shards() fetches the map, then a REDIRECT updates one shard's leader") {
  TwoShardCluster cluster;
  // The map a serves is stale about shard 1: it names a as its leader.
  cluster.a.set_shards(TwoShards(1, cluster.a.address(), cluster.a.address()));
  Client c(Fast({cluster.a.address()}));
  ShardMap map;
  REQUIRE(c.Shards(&map).ok());
  REQUIRE(map.version == 1);
  REQUIRE(map.shards == 2);
  REQUIRE(map.list.size() == 2);
  REQUIRE(map.list[1].leader_address == cluster.a.address());
  const std::string k1 = KeyIn(1, 2);
  REQUIRE(c.Put(k1, "v").ok());  // a (from the map) redirects to b: same map version
  REQUIRE(c.Put(k1, "w").ok());  // straight to b
  REQUIRE(c.redirects() == 1);
  REQUIRE(cluster.a.count(net::ClientOp::kShards) == 1);  // no refetch for the same version
  REQUIRE(cluster.a.requests().size() == 2);
  REQUIRE(cluster.b.requests().size() == 2);
}

TEST_CASE("UNAVAILABLE for a shard forgets its leader, and a newer map version refetches once") {
  std::atomic<int> b_calls{0};
  const std::string k1 = KeyIn(1, 2);
  FakeNode b([&](const ClientRequest&) {
    if (++b_calls > 2) return With(ReplyStatus::kOk);
    ClientReply r = With(ReplyStatus::kUnavailable);
    r.error = "shard 1 has no leader";
    r.shard = 1;
    r.map_version = 5;
    return r;
  });
  FakeNode a([&](const ClientRequest&) { return RedirectFor(1, b.address(), 5); });
  a.set_shards(TwoShards(1, a.address(), b.address()));
  b.set_shards(TwoShards(1, a.address(), b.address()));
  Client c(Fast({a.address()}));
  ShardMap map;
  REQUIRE(c.Shards(&map).ok());
  // b (the map's leader for shard 1) answers UNAVAILABLE with map version 5:
  // the client refetches (from b) and forgets b as the leader, so it asks the
  // endpoints in turn (a, and b, which it learned from the map): b refuses
  // again, a redirects with version 5 again (no second fetch in this op), and
  // b, third time, takes it.
  REQUIRE(c.Put(k1, "v").ok());
  REQUIRE(b_calls == 3);
  REQUIRE(a.count(net::ClientOp::kPut) == 1);
  REQUIRE(a.count(net::ClientOp::kShards) + b.count(net::ClientOp::kShards) == 2);
  // The next op goes to b, as the REDIRECT said; OK carries no version: no fetch.
  REQUIRE(c.Put(k1, "w").ok());
  REQUIRE(b_calls == 4);
  REQUIRE(a.count(net::ClientOp::kPut) == 1);
  REQUIRE(a.count(net::ClientOp::kShards) + b.count(net::ClientOp::kShards) == 2);
  const auto on_b = b.requests();
  REQUIRE(on_b[0].seq == on_b.back().seq - 1);  // every attempt of the first write kept its seq
  for (const auto& r : a.requests()) {
    if (r.op == net::ClientOp::kPut) REQUIRE(r.seq == on_b[0].seq);
  }
}

TEST_CASE("A shard leader that does not answer is forgotten") {
  FakeNode dead([](const ClientRequest&) { return std::nullopt; });
  FakeNode b([](const ClientRequest&) { return With(ReplyStatus::kOk); });
  FakeNode a([&](const ClientRequest&) { return RedirectFor(1, b.address(), 1); });
  a.set_shards(TwoShards(1, a.address(), dead.address()));
  Client c(Fast({a.address()}));
  ShardMap map;
  REQUIRE(c.Shards(&map).ok());
  // dead (from the map), then the endpoints in turn (dead is among them, as a
  // member), until a redirects to b.
  REQUIRE(c.Put(KeyIn(1, 2), "v").ok());
  REQUIRE(a.count(net::ClientOp::kPut) == 1);
  REQUIRE(b.requests().size() == 1);
  const size_t tried_dead = dead.requests().size();
  REQUIRE(c.Put(KeyIn(1, 2), "w").ok());  // straight to b now
  REQUIRE(dead.requests().size() == tried_dead);
  REQUIRE(b.requests().size() == 2);
}

// A txn's answer: its success branch ran a put, a get, a del of an absent
// key and a get whose value went over the reply budget.
ClientReply TxnSucceeded() {
  ClientReply r = With(ReplyStatus::kOk);
  r.index = 42;
  r.is_txn = true;
  r.succeeded = true;
  r.results.resize(4);
  r.results[1].has_value = true;
  r.results[1].value = "v";
  r.results[1].create_index = 40;
  r.results[1].mod_index = 42;
  r.results[1].ttl_ms = 2999;
  r.results[2].status = ReplyStatus::kNotFound;
  r.results[3].status = ReplyStatus::kBusy;
  r.results[3].error = "unread replies";
  return r;
}

TEST_CASE("A txn goes to the leader of its first key's shard and its results come back") {
  // b leads shard 1; a leads shard 0 and takes no txn: one there was misrouted.
  FakeNode a([](const ClientRequest&) { return With(ReplyStatus::kError); });
  FakeNode b([](const ClientRequest&) { return TxnSucceeded(); });
  a.set_shards(TwoShards(1, a.address(), b.address()));
  Client c(Fast({a.address()}));
  ShardMap map;
  REQUIRE(c.Shards(&map).ok());
  const std::string k1 = KeyIn(1, 2);
  Transaction t;
  t.compare = {Compare::ModIndex(k1, Compare::kLess, 5), Compare::Value("x", "1"),
               Compare::Absent("y"), Compare::Present("z")};
  t.success = {TxnOp::Put(k1, "v", std::chrono::milliseconds(3000)), TxnOp::Get(k1),
               TxnOp::Delete("y"), TxnOp::Get("z")};
  t.failure = {TxnOp::Get(k1)};
  const TxnResult r = c.Txn(t);
  INFO(r.error);
  REQUIRE(r.ok());
  CHECK(r.index == 42);
  CHECK(r.succeeded);
  CHECK_FALSE(r.resent);
  REQUIRE(r.results.size() == 4);
  CHECK(r.results[0].code == Code::kOk);
  CHECK(r.results[1].value == "v");
  CHECK(r.results[1].create_index == 40);
  CHECK(r.results[1].mod_index == 42);
  CHECK(r.results[1].ttl_ms == 2999);
  CHECK(r.results[2].code == Code::kNotFound);
  CHECK(r.results[3].code == Code::kUnavailable);
  CHECK(r.results[3].error == "unread replies");

  // A txn without conditions goes by its first op's key.
  t.compare.clear();
  REQUIRE(c.Txn(t).ok());
  CHECK(a.count(net::ClientOp::kTxn) == 0);
  const auto reqs = b.requests();
  REQUIRE(reqs.size() == 2);
  // On the wire, as docs/protocol.md says, and with a session as any write.
  const ClientRequest& req = reqs[0];
  CHECK(req.client == c.client_id());
  CHECK(reqs[1].seq == req.seq + 1);
  REQUIRE(req.compare.size() == 4);
  CHECK(req.compare[0].kind == kv::TxnCompare::Kind::kModLess);
  CHECK(req.compare[0].index == 5);
  CHECK(req.compare[1].kind == kv::TxnCompare::Kind::kValue);
  CHECK(req.compare[1].value == "1");
  CHECK(req.compare[2].kind == kv::TxnCompare::Kind::kAbsent);
  CHECK(req.compare[3].kind == kv::TxnCompare::Kind::kPresent);
  REQUIRE(req.success.size() == 4);
  CHECK(req.success[0].kind == kv::TxnOp::Kind::kPut);
  CHECK(req.success[0].value == "v");
  CHECK(req.success[0].ttl_ms == 3000);
  CHECK(req.success[2].kind == kv::TxnOp::Kind::kDelete);
  CHECK(req.success[3].kind == kv::TxnOp::Kind::kGet);
  CHECK(req.success[3].key == "z");
  REQUIRE(req.failure.size() == 1);
  CHECK(req.failure[0].key == k1);
}

TEST_CASE("Shards() on an unsharded cluster, and on a node that predates sharding") {
  FakeNode current([](const ClientRequest&) { return With(ReplyStatus::kOk); });
  ShardMap none;
  none.version = 1;
  none.replicas = 3;
  current.set_shards(none);
  Client c(Fast({current.address()}));
  ShardMap map;
  REQUIRE(c.Shards(&map).ok());
  REQUIRE(map.shards == 0);
  REQUIRE(map.list.empty());
  REQUIRE(c.Put("k", "v").ok());
  REQUIRE(current.requests().size() == 2);

  FakeNode old([](const ClientRequest& req) {
    ClientReply r = With(ReplyStatus::kError);
    r.error = req.op == net::ClientOp::kShards ? "unknown op \"shards\"" : "?";
    return r;
  });
  Client c2(Fast({old.address()}));
  Result r = c2.Shards(&map);
  REQUIRE(r.code == Code::kError);
  REQUIRE(r.error.find("unknown op") != std::string::npos);
}

GroupStatus Hosted(uint64_t group, int64_t shard) {
  GroupStatus g;
  g.group = group;
  g.shard = shard;
  return g;
}

// A node that serves scans of `shards` key sets (shard -1: unsharded, set 0)
// page by page, as docs/protocol.md says.
ClientReply ScanPage(const std::vector<std::map<std::string, std::string>>& shards,
                     const ClientRequest& req) {
  const auto& keys = shards.at(static_cast<size_t>(std::max<int64_t>(req.shard, 0)));
  ClientReply r = With(ReplyStatus::kOk);
  r.is_scan = true;
  for (auto it = keys.lower_bound(req.scan.start);
       it != keys.end() && (!req.scan.end || it->first < *req.scan.end); ++it) {
    if (r.page.kvs.size() == req.scan.limit) {
      r.page.more = true;
      r.page.next = r.page.kvs.back().key + std::string(1, '\0');
      break;
    }
    r.page.kvs.push_back(kv::ScannedKey{it->first, it->second, {1, 7}});
  }
  return r;
}

std::vector<std::string> KeysOf(const ScanResult& r) {
  std::vector<std::string> keys;
  for (const KeyValue& kv : r.kvs) keys.push_back(kv.key);
  return keys;
}

TEST_CASE("Scan merges the shards' pages in key order, paging a shard that holds many") {
  // 3 shards, skewed: shard 0 holds most keys, so it needs more than one page.
  std::vector<std::map<std::string, std::string>> shards(3);
  std::vector<std::string> all;
  for (int i = 0; i < 300; ++i) {
    char key[16];
    snprintf(key, sizeof key, "k%03d", i);
    shards[i % 6 == 5 ? 1 : i % 6 == 4 ? 2 : 0][key] = std::string("v") + key;
    all.push_back(key);
  }
  FakeNode node([&](const ClientRequest& req) { return ScanPage(shards, req); });
  ShardMap map;
  map.version = 1;
  map.shards = 3;
  map.replicas = 1;
  map.members = {{1, node.address()}};
  for (uint32_t i = 0; i < 3; ++i) map.list.push_back(ShardInfo{i, 2 + i, {1}, 1, node.address()});
  node.set_shards(map);
  Client c(Fast({node.address()}));

  ScanOptions o;
  o.limit = 250;
  ScanResult r = c.Scan(o);
  REQUIRE(r.ok());
  CHECK(KeysOf(r) == std::vector<std::string>(all.begin(), all.begin() + 250));
  CHECK(r.more);
  CHECK(r.kvs[0].value == "vk000");
  CHECK(r.kvs[0].mod_index == 7);
  size_t shard0_pages = 0;
  for (const ClientRequest& req : node.requests()) {
    shard0_pages += req.op == net::ClientOp::kScan && req.shard == 0;
    if (req.op == net::ClientOp::kScan) CHECK(req.scan.limit <= 250);
  }
  CHECK(shard0_pages >= 2);

  o = PrefixScan("k1");
  r = c.Scan(o);
  REQUIRE(r.ok());
  CHECK(KeysOf(r) == std::vector<std::string>(all.begin() + 100, all.begin() + 200));
  CHECK_FALSE(r.more);

  o.start = "k299";
  o.end.reset();
  CHECK(KeysOf(c.Scan(o)) == std::vector<std::string>{"k299"});
}

TEST_CASE("Scan of an unsharded cluster pages past 10000 keys; errors come through") {
  std::vector<std::map<std::string, std::string>> one(1);
  for (int i = 0; i < 12000; ++i) one[0]["key" + std::to_string(100000 + i)] = "";
  FakeNode node([&](const ClientRequest& req) {
    if (req.op == net::ClientOp::kScan && req.scan.start == "boom") {
      ClientReply e = With(ReplyStatus::kError);
      e.error = "\"limit\" must be 1..10000";
      return e;
    }
    return ScanPage(one, req);
  });
  ShardMap none;
  none.version = 1;
  node.set_shards(none);
  Client c(Fast({node.address()}));
  ScanOptions o;
  o.limit = 20000;
  o.keys_only = true;
  ScanResult r = c.Scan(o);
  REQUIRE(r.ok());
  CHECK(r.kvs.size() == 12000);
  CHECK_FALSE(r.more);
  CHECK(std::is_sorted(r.kvs.begin(), r.kvs.end(),
                       [](const KeyValue& a, const KeyValue& b) { return a.key < b.key; }));
  for (const ClientRequest& req : node.requests()) {
    if (req.op == net::ClientOp::kScan) {
      CHECK(req.shard == -1);
      CHECK(req.scan.keys_only);
    }
  }
  o.start = "boom";
  r = c.Scan(o);
  CHECK(r.code == Code::kError);
  CHECK(r.error.find("limit") != std::string::npos);
}

TEST_CASE("MainGroup: the metadata group when hosted, else the first group hosted") {
  NodeStatus unsharded;
  REQUIRE(MainGroup(unsharded) == 1);
  NodeStatus meta;
  meta.groups = {Hosted(4, 2), Hosted(1, -1), Hosted(2, 0)};
  REQUIRE(MainGroup(meta) == 1);
  NodeStatus shards_only;
  shards_only.groups = {Hosted(5, 3), Hosted(3, 1)};
  REQUIRE(MainGroup(shards_only) == 3);
}

// ---- Secure clusters (CURVE) -------------------------------------------------------

KeyPair NewPair() {
  KeyPair pair;
  std::string error;
  REQUIRE(GenerateKeyPair(&pair, &error));
  return pair;
}

// A client's credentials: a fresh key pair, and these nodes' keys by address.
Credentials Knowing(std::map<std::string, std::string> server_keys) {
  const KeyPair me = NewPair();
  Credentials c;
  c.secret_key = me.secret_key;
  c.public_key = me.public_key;
  c.server_keys = std::move(server_keys);
  return c;
}

ClientReply RedirectTo(const std::string& leader, const std::string& leader_key) {
  ClientReply r = With(ReplyStatus::kRedirect);
  r.leader = leader;
  r.leader_key = leader_key;
  return r;
}

TEST_CASE("DENIED is final: not retried, its error passed through") {
  FakeNode node([](const ClientRequest&) {
    ClientReply r = With(ReplyStatus::kDenied);
    r.error = "this op needs the write role; this client's key has read";
    return r;
  });
  Client c(Fast({node.address()}));
  const Result r = c.Put("k", "v");
  REQUIRE(r.code == Code::kDenied);
  REQUIRE(std::string(CodeName(r.code)) == "DENIED");
  REQUIRE(r.error == "this op needs the write role; this client's key has read");
  REQUIRE(node.requests().size() == 1);
}

TEST_CASE("AddMember sends the new member's public key, when given") {
  FakeNode node([](const ClientRequest&) { return With(ReplyStatus::kOk); });
  Client c(Fast({node.address()}));
  const KeyPair key = NewPair();
  REQUIRE(c.AddMember(4, "h:4", key.public_key).ok());
  REQUIRE(c.AddMember(5, "h:5").ok());
  const auto reqs = node.requests();
  REQUIRE(reqs.size() == 2);
  REQUIRE(reqs[0].pub == key.public_key);
  REQUIRE(reqs[1].pub.empty());
}

TEST_CASE("Secure: requests go over CURVE, and a REDIRECT's leader_key reaches the leader") {
  const KeyPair leader_key = NewPair(), follower_key = NewPair();
  FakeNode leader([](const ClientRequest&) { return With(ReplyStatus::kOk, "v"); }, &leader_key);
  FakeNode follower(
      [&](const ClientRequest&) { return RedirectTo(leader.address(), leader_key.public_key); },
      &follower_key);
  Options o = Fast({follower.address()});
  o.attempt_timeout = o.timeout = std::chrono::seconds(30);  // no resend may count twice
  o.credentials = Knowing({{follower.address(), follower_key.public_key}});
  Client c(o);
  const Result r = c.Get("k");
  REQUIRE(r.code == Code::kOk);
  REQUIRE(r.value == "v");
  REQUIRE(c.server_keys().at(leader.address()) == leader_key.public_key);
  REQUIRE(follower.requests().size() == 1);
  REQUIRE(leader.requests().size() == 1);
}

TEST_CASE("Secure: a REDIRECT to a leader whose key is unknown ends the operation at once") {
  const KeyPair follower_key = NewPair();
  FakeNode leader([](const ClientRequest&) { return With(ReplyStatus::kOk); });
  FakeNode follower([&](const ClientRequest&) { return RedirectTo(leader.address(), ""); },
                    &follower_key);
  Options o = Fast({follower.address()});
  o.attempt_timeout = o.timeout = std::chrono::seconds(30);
  o.credentials = Knowing({{follower.address(), follower_key.public_key}});
  Client c(o);
  const auto start = std::chrono::steady_clock::now();
  const Result r = c.Get("k");
  REQUIRE(r.code == Code::kUnavailable);
  REQUIRE(r.error.find("no server key for " + leader.address() + ": add \"ID KEY " +
                       leader.address() + "\" to --server-keys") == 0);
  REQUIRE(std::chrono::steady_clock::now() - start < std::chrono::seconds(15));  // not the deadline
  REQUIRE(follower.requests().size() == 1);
  REQUIRE(leader.requests().empty());
}

TEST_CASE("Secure: an endpoint whose key is unknown is skipped, never connected in clear") {
  const KeyPair key = NewPair();
  FakeNode plain([](const ClientRequest&) { return With(ReplyStatus::kOk); });
  FakeNode secure([](const ClientRequest&) { return With(ReplyStatus::kOk); }, &key);
  Options o = Fast({plain.address(), secure.address()});
  o.credentials = Knowing({{secure.address(), key.public_key}});
  Client c(o);
  for (int i = 0; i < 3; ++i) REQUIRE(c.Put("k", "v").ok());
  const NodeReport rep = c.Status(plain.address());
  REQUIRE_FALSE(rep.reachable);
  REQUIRE(rep.error == "no server key for " + plain.address() + ": add \"ID KEY " +
                           plain.address() + "\" to --server-keys");

  // Nothing else to try: the answer comes at once, not at the deadline.
  Options alone = Fast({plain.address()});
  alone.attempt_timeout = alone.timeout = std::chrono::seconds(30);
  alone.credentials = Knowing({{secure.address(), key.public_key}});
  Client lost(alone);
  const Result r = lost.Get("k");
  REQUIRE(r.code == Code::kUnavailable);
  REQUIRE(r.error.find("no server key for " + plain.address()) == 0);
  REQUIRE(plain.requests().empty());
}

TEST_CASE(
    "Secure: status and shards teach the members' keys, and a key given by id gets an address") {
  const KeyPair k1 = NewPair(), k2 = NewPair(), k3 = NewPair(), k4 = NewPair();
  const auto ok = [](const ClientRequest&) { return With(ReplyStatus::kOk); };
  FakeNode n1(ok, &k1), n2(ok, &k2), n3(ok, &k3), n4(ok, &k4);
  NodeStatus status;
  status.node = 1;
  status.members = {{1, n1.address()}, {2, n2.address()}, {3, n3.address()}};
  status.member_keys = {{1, k1.public_key}, {3, k3.public_key}};  // 2's: from the file, by id
  for (FakeNode* n : {&n1, &n2, &n3, &n4}) n->set_status(status);
  ShardMap map;  // an unsharded cluster's: its members and their keys
  map.members = {{4, n4.address()}};
  map.member_keys = {{4, k4.public_key}};
  n1.set_shards(map);

  Options o = Fast({n1.address()});
  o.credentials = Knowing({{n1.address(), k1.public_key}});
  o.credentials.server_keys_by_id = {{2, k2.public_key}};
  Client c(o);
  REQUIRE_FALSE(c.Status(n2.address()).reachable);
  REQUIRE(c.Status(n1.address()).reachable);
  REQUIRE(c.Status(n2.address()).reachable);
  REQUIRE(c.Status(n3.address()).reachable);
  REQUIRE_FALSE(c.Status(n4.address()).reachable);
  ShardMap got;
  REQUIRE(c.Shards(&got).ok());
  REQUIRE(c.Status(n4.address()).reachable);
  REQUIRE(c.server_keys().size() == 4);
}

// ---- AsyncClient ---------------------------------------------------------------

AsyncOptions FastAsync(std::vector<std::string> endpoints) {
  AsyncOptions o;
  o.endpoints = std::move(endpoints);
  o.connections = 2;
  o.request_timeout = std::chrono::milliseconds(200);
  return o;
}

// Polls until `n` requests completed or 5 s passed.
std::vector<Completion> WaitFor(AsyncClient& c, size_t n) {
  std::vector<Completion> done;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (done.size() < n && std::chrono::steady_clock::now() < deadline) {
    c.Poll(std::chrono::milliseconds(20), &done);
  }
  return done;
}

Request Put(std::string key) {
  Request r;
  r.op = Op::kPut;
  r.key = std::move(key);
  r.value = "v";
  return r;
}

TEST_CASE("Async: pipelined writes complete by tag, each in flight with its own session") {
  FakeNode leader([](const ClientRequest&) { return With(ReplyStatus::kOk); });
  AsyncClient c(FastAsync({leader.address()}), Topology{leader.address(), {}, {}});
  for (uint64_t round = 0; round < 2; ++round) {
    for (uint64_t tag = 0; tag < 8; ++tag) c.Submit(tag, Put("k" + std::to_string(tag)));
    REQUIRE(c.in_flight() == 8);
    const std::vector<Completion> done = WaitFor(c, 8);
    REQUIRE(done.size() == 8);
    std::set<uint64_t> tags;
    for (const Completion& d : done) {
      REQUIRE(d.code == Code::kOk);
      tags.insert(d.tag);
    }
    REQUIRE(tags.size() == 8);
    REQUIRE(c.in_flight() == 0);
  }
  // 8 sessions, each used by one request at a time: every write its own
  // (client, seq), and the second round reuses the first round's sessions.
  std::set<uint64_t> clients;
  std::set<std::pair<uint64_t, uint64_t>> writes;
  for (const ClientRequest& r : leader.requests()) {
    REQUIRE(r.client != 0);
    clients.insert(r.client);
    writes.insert({r.client, r.seq});
  }
  REQUIRE(clients.size() == 8);
  REQUIRE(writes.size() == 16);
}

TEST_CASE(
    "Async: every reply on many connections comes back, to polls that wait and to polls that do "
    "not") {
  FakeNode leader([](const ClientRequest&) { return With(ReplyStatus::kOk); });
  AsyncOptions options = FastAsync({leader.address()});
  options.connections = 16;
  AsyncClient c(options, Topology{leader.address(), {}, {}});
  uint64_t tag = 0;
  for (const bool wait : {true, false, true, false}) {
    for (int i = 0; i < 64; ++i, ++tag) c.Submit(tag, Put("k" + std::to_string(tag)));
    std::vector<Completion> done;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (done.size() < 64 && std::chrono::steady_clock::now() < deadline) {
      c.Poll(std::chrono::milliseconds(wait ? 20 : 0), &done);
    }
    REQUIRE(done.size() == 64);
    for (const Completion& d : done) REQUIRE(d.code == Code::kOk);
  }
  REQUIRE(c.in_flight() == 0);
  REQUIRE(c.retries() == 0);  // every reply read when it came, none waited for a resend
}

TEST_CASE("Async: an unanswered write is resent with the same session and seq") {
  std::mutex mu;
  std::set<std::pair<uint64_t, uint64_t>> seen;
  FakeNode node([&](const ClientRequest& req) -> std::optional<ClientReply> {
    std::lock_guard<std::mutex> lock(mu);
    if (seen.insert({req.client, req.seq}).second) return std::nullopt;  // drop the first
    return With(ReplyStatus::kOk);
  });
  AsyncClient c(FastAsync({node.address()}), Topology{node.address(), {}, {}});
  c.Submit(42, Put("k"));
  const std::vector<Completion> done = WaitFor(c, 1);
  REQUIRE(done.size() == 1);
  REQUIRE(done[0].tag == 42);
  REQUIRE(c.retries() >= 1);
  const auto reqs = node.requests();
  REQUIRE(reqs.size() >= 2);
  REQUIRE(reqs[1].client == reqs[0].client);
  REQUIRE(reqs[1].seq == reqs[0].seq);
  REQUIRE(reqs[1].id != reqs[0].id);
}

TEST_CASE("Async: a REDIRECT moves the requests to the leader, and later ones go there") {
  FakeNode leader([](const ClientRequest&) { return With(ReplyStatus::kOk, "v"); });
  FakeNode follower([&](const ClientRequest&) {
    ClientReply r = With(ReplyStatus::kRedirect);
    r.leader = leader.address();
    return r;
  });
  AsyncClient c(FastAsync({follower.address()}), Topology{follower.address(), {}, {}});
  Request get;
  get.key = "k";
  for (uint64_t tag = 0; tag < 4; ++tag) c.Submit(tag, get);
  std::vector<Completion> done = WaitFor(c, 4);
  REQUIRE(done.size() == 4);
  for (const Completion& d : done) REQUIRE((d.code == Code::kOk && d.value == "v"));
  REQUIRE(c.redirects() >= 1);
  const size_t asked = follower.requests().size();
  for (uint64_t tag = 0; tag < 4; ++tag) c.Submit(tag, get);
  REQUIRE(WaitFor(c, 4).size() == 4);
  REQUIRE(follower.requests().size() == asked);
}

TEST_CASE("Async: ERROR, CAS_FAILED and NOT_FOUND are final") {
  FakeNode node([](const ClientRequest& req) {
    if (req.op == net::ClientOp::kCas) return With(ReplyStatus::kCasFailed);
    if (req.op == net::ClientOp::kGet) return With(ReplyStatus::kNotFound);
    ClientReply r = With(ReplyStatus::kError);
    r.error = "too big";
    return r;
  });
  AsyncClient c(FastAsync({node.address()}), Topology{node.address(), {}, {}});
  Request cas = Put("k");
  cas.op = Op::kCas;
  c.Submit(1, cas);
  c.Submit(2, Request{});
  c.Submit(3, Put("k"));
  std::vector<Completion> done = WaitFor(c, 3);
  REQUIRE(done.size() == 3);
  std::sort(done.begin(), done.end(),
            [](const Completion& a, const Completion& b) { return a.tag < b.tag; });
  REQUIRE(done[0].code == Code::kCasFailed);
  REQUIRE(done[1].code == Code::kNotFound);
  REQUIRE(done[2].code == Code::kError);
  REQUIRE(done[2].error == "too big");
  REQUIRE(node.requests().size() == 3);
}

TEST_CASE("Async secure: leader_key followed, DENIED final, a leader without key UNAVAILABLE") {
  const KeyPair leader_key = NewPair(), follower_key = NewPair();
  FakeNode leader(
      [](const ClientRequest& req) {
        if (req.op != net::ClientOp::kDelete) return With(ReplyStatus::kOk);
        ClientReply r = With(ReplyStatus::kDenied);
        r.error = "this op needs the write role; this client's key has read";
        return r;
      },
      &leader_key);
  FakeNode follower(
      [&](const ClientRequest&) { return RedirectTo(leader.address(), leader_key.public_key); },
      &follower_key);
  AsyncOptions o = FastAsync({follower.address()});
  o.credentials = Knowing({{follower.address(), follower_key.public_key}});
  AsyncClient c(o, Topology{follower.address(), {}, {}});
  Request del = Put("k");
  del.op = Op::kDelete;
  c.Submit(1, Put("k"));
  c.Submit(2, del);
  std::vector<Completion> done = WaitFor(c, 2);
  REQUIRE(done.size() == 2);
  std::sort(done.begin(), done.end(),
            [](const Completion& a, const Completion& b) { return a.tag < b.tag; });
  REQUIRE(done[0].code == Code::kOk);
  REQUIRE(done[1].code == Code::kDenied);
  REQUIRE(done[1].error == "this op needs the write role; this client's key has read");

  FakeNode keyless_redirect([&](const ClientRequest&) { return RedirectTo(leader.address(), ""); },
                            &follower_key);
  AsyncOptions lost_options = FastAsync({keyless_redirect.address()});
  lost_options.credentials = Knowing({{keyless_redirect.address(), follower_key.public_key}});
  AsyncClient lost(lost_options, Topology{keyless_redirect.address(), {}, {}});
  lost.Submit(7, Put("k"));
  done = WaitFor(lost, 1);
  REQUIRE(done.size() == 1);
  REQUIRE(done[0].code == Code::kUnavailable);
  REQUIRE(done[0].error.find("no server key for " + leader.address()) == 0);

  // No endpoint with a key at all: the request completes without being sent.
  AsyncOptions none = FastAsync({leader.address()});
  none.credentials = Knowing({});
  AsyncClient nowhere(none, Topology{leader.address(), {}, {}});
  nowhere.Submit(8, Put("k"));
  done = WaitFor(nowhere, 1);
  REQUIRE(done.size() == 1);
  REQUIRE(done[0].code == Code::kUnavailable);
  REQUIRE(done[0].error.find("no server key for " + leader.address()) == 0);
}

TEST_CASE("Async: with a shard map to start from, each key goes straight to its shard's leader") {
  TwoShardCluster cluster;
  const Topology topology{
      cluster.a.address(), TwoShards(1, cluster.a.address(), cluster.b.address()), {}};
  AsyncClient c(FastAsync({cluster.a.address()}), topology);
  const std::string k0 = KeyIn(0, 2), k1 = KeyIn(1, 2);
  for (uint64_t tag = 0; tag < 6; ++tag) c.Submit(tag, Put(tag % 2 ? k1 : k0));
  REQUIRE(WaitFor(c, 6).size() == 6);
  REQUIRE(c.redirects() == 0);
  for (const auto& r : cluster.a.requests()) {
    if (r.op != net::ClientOp::kShards && r.op != net::ClientOp::kStatus) REQUIRE(r.key == k0);
  }
  for (const auto& r : cluster.b.requests()) {
    if (r.op != net::ClientOp::kShards && r.op != net::ClientOp::kStatus) REQUIRE(r.key == k1);
  }
}

TEST_CASE("Async: a shard REDIRECT fetches the map, then keys route by shard") {
  TwoShardCluster cluster;
  AsyncClient c(FastAsync({cluster.a.address()}), Topology{cluster.a.address(), {}, {}});
  const std::string k1 = KeyIn(1, 2);
  c.Submit(0, Put(k1));
  REQUIRE(WaitFor(c, 1).size() == 1);
  REQUIRE(c.redirects() == 1);
  // The map fetch may still be in flight: wait until it is installed, and
  // count a's requests after it (counted before, the fetch itself raced).
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  std::vector<Completion> done;
  while (cluster.a.count(net::ClientOp::kShards) == 0 &&
         std::chrono::steady_clock::now() < deadline) {
    c.Poll(std::chrono::milliseconds(20), &done);
  }
  c.Poll(std::chrono::milliseconds(50), &done);  // its reply
  const size_t on_a = cluster.a.requests().size();
  for (uint64_t tag = 0; tag < 4; ++tag) c.Submit(tag, Put(k1));
  REQUIRE(WaitFor(c, 4).size() == 4);
  REQUIRE(c.redirects() == 1);
  REQUIRE(cluster.a.requests().size() == on_a);
}

TEST_CASE("Async: BUSY waits a backoff in the client, then the same write completes") {
  std::mutex mu;
  std::set<std::pair<uint64_t, uint64_t>> seen;
  FakeNode node([&](const ClientRequest& req) {
    std::lock_guard<std::mutex> lock(mu);
    return seen.insert({req.client, req.seq}).second ? Busy() : With(ReplyStatus::kOk);
  });
  AsyncClient c(FastAsync({node.address()}), Topology{node.address(), {}, {}});
  c.Submit(7, Put("k"));
  const std::vector<Completion> done = WaitFor(c, 1);
  REQUIRE(done.size() == 1);
  REQUIRE(done[0].tag == 7);
  REQUIRE(done[0].code == Code::kOk);
  REQUIRE(c.busy() == 1);
  REQUIRE(c.retries() == 1);
  const auto reqs = node.requests();
  REQUIRE(reqs.size() == 2);
  REQUIRE(reqs[1].client == reqs[0].client);
  REQUIRE(reqs[1].seq == reqs[0].seq);
  REQUIRE(Gap(node, 1) >= kMinBackoff);
}

TEST_CASE("Async: a node slower than request_timeout, within 4 times its usual, gets no resend") {
  // Wide margins: 300 ms is past the 250 ms request_timeout and well within
  // 4 x 200 ms, even when a loaded sanitized build adds a few hundred ms
  // (80 ms usual and 150 ms slow once drew a resend on a loaded CI machine).
  std::atomic<int> delay_ms{200};
  FakeNode node([&](const ClientRequest&) {
    std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms.load()));  // a slow node
    return With(ReplyStatus::kOk);
  });
  AsyncOptions o = FastAsync({node.address()});
  o.request_timeout = std::chrono::milliseconds(250);
  AsyncClient c(o, Topology{node.address(), {}, {}});
  for (uint64_t tag = 0; tag < 4; ++tag) {
    c.Submit(tag, Put("k"));
    REQUIRE(WaitFor(c, 1).size() == 1);
  }
  delay_ms = 300;
  c.Submit(9, Put("k"));
  REQUIRE(WaitFor(c, 1).size() == 1);
  REQUIRE(c.retries() == 0);
  REQUIRE(node.requests().size() == 5);
}

TEST_CASE("Async: resends to a node that never answers stay within the retry budget") {
  FakeNode node([](const ClientRequest&) { return std::nullopt; });
  AsyncOptions o = FastAsync({node.address()});
  o.request_timeout = std::chrono::milliseconds(20);
  AsyncClient c(o, Topology{node.address(), {}, {}});
  constexpr int kRequests = 200;
  for (uint64_t tag = 0; tag < kRequests; ++tag) c.Submit(tag, Put("k" + std::to_string(tag)));
  // Unbounded, each request would be resent about six times in this second
  // (every 20, 40, 80, ... ms): over a thousand resends.
  std::vector<Completion> done;
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(1);
  while (std::chrono::steady_clock::now() < until) c.Poll(std::chrono::milliseconds(20), &done);
  REQUIRE(done.empty());
  // Well within one window of the budget: the whole reserve, and the share
  // of the requests sent.
  const double budget =
      RetryBudget::kRatio * kRequests + RetryBudget::kMinPerSecond * RetryBudget::kWindow.count();
  REQUIRE(c.retries() == static_cast<uint64_t>(budget));
  REQUIRE(node.requests().size() <= kRequests + static_cast<size_t>(budget));
}

TEST_CASE("Async: a backlog refused beyond the budget drains once the node takes requests") {
  // BUSY for everything during the first 300 ms, then OK.
  const auto open_at = std::chrono::steady_clock::now() + std::chrono::milliseconds(300);
  FakeNode node([&](const ClientRequest&) {
    return std::chrono::steady_clock::now() < open_at ? Busy() : With(ReplyStatus::kOk);
  });
  AsyncClient c(FastAsync({node.address()}), Topology{node.address(), {}, {}});
  constexpr int kRequests = 100;
  for (uint64_t tag = 0; tag < kRequests; ++tag) c.Submit(tag, Put("k" + std::to_string(tag)));
  // Refused a few times each, they use up the budget before the node takes
  // them; resends that then complete are given back, so the others follow
  // without waiting for the window to slide (10 s).
  REQUIRE(WaitFor(c, kRequests).size() == kRequests);
  REQUIRE(c.busy() > RetryBudget::kRatio * kRequests +
                         RetryBudget::kMinPerSecond * RetryBudget::kWindow.count());
}

// ---- Subscriber ------------------------------------------------------------------

// A fake node for subscribers: answers status requests with the seq of the
// last event published, and publishes a commit event every few milliseconds
// on its PUB port (client port + 2000). Restart() starts the seq over. Given
// a key pair, both ports are CURVE servers with it, as a secure node's.
class FakePublisher {
 public:
  explicit FakePublisher(const KeyPair* curve = nullptr)
      : router_(ctx_, zmq::socket_type::router), pub_(ctx_, zmq::socket_type::pub) {
    router_.set(zmq::sockopt::linger, 0);
    pub_.set(zmq::sockopt::linger, 0);
    if (curve != nullptr) {
      for (zmq::socket_t* s : {&router_, &pub_}) {
        s->set(zmq::sockopt::curve_server, true);
        s->set(zmq::sockopt::curve_secretkey, curve->secret_key);
      }
    }
    router_.bind("tcp://127.0.0.1:*");
    const std::string ep = router_.get(zmq::sockopt::last_endpoint);
    address_ = ep.substr(ep.find("//") + 2);
    const int port = std::stoi(address_.substr(address_.rfind(':') + 1));
    pub_.bind("tcp://127.0.0.1:" + std::to_string(port + 2000));
    thread_ = std::thread([this] { Serve(); });
  }
  ~FakePublisher() {
    stop_ = true;
    thread_.join();
  }
  const std::string& address() const { return address_; }
  void Restart() { restart_ = true; }
  // What its status says of the members.
  void set_members(std::map<uint64_t, std::string> members,
                   std::map<uint64_t, std::string> member_keys) {
    std::lock_guard<std::mutex> lock(mu_);
    members_ = std::move(members);
    member_keys_ = std::move(member_keys);
  }

 private:
  void Serve() {
    auto publisher = std::make_unique<net::Publisher>(&pub_, 1);
    while (!stop_) {
      if (restart_.exchange(false)) publisher = std::make_unique<net::Publisher>(&pub_, 1);
      publisher->Publish(CommitEvent{0, 0, 1, 1, publisher->seq() + 1, publisher->seq() + 1});
      zmq::pollitem_t item{static_cast<void*>(router_), 0, ZMQ_POLLIN, 0};
      zmq::poll(&item, 1, std::chrono::milliseconds(5));
      if (!(item.revents & ZMQ_POLLIN)) continue;
      std::vector<zmq::message_t> frames;
      if (!zmq::recv_multipart(router_, std::back_inserter(frames))) continue;
      ClientRequest req;
      bool id_known = false;
      if (!net::DecodeClientRequest(frames.back().to_string_view(), net::RequestLimits{}, &req,
                                    &id_known)
               .ok()) {
        continue;
      }
      NodeStatus status;
      status.node = 1;
      status.event_seq = publisher->seq();
      {
        std::lock_guard<std::mutex> lock(mu_);
        status.members = members_;
        status.member_keys = member_keys_;
      }
      router_.send(frames[0], zmq::send_flags::sndmore);
      router_.send(zmq::buffer(net::EncodeStatusReply(req.id, status)));
    }
  }

  zmq::context_t ctx_{1};
  zmq::socket_t router_, pub_;
  std::string address_;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  std::atomic<bool> restart_{false};
  std::mutex mu_;
  std::map<uint64_t, std::string> members_;      // guarded by mu_
  std::map<uint64_t, std::string> member_keys_;  // guarded by mu_
};

TEST_CASE("Subscriber: status first, then only later events in order, and a restart rejoins") {
  FakePublisher node;
  Subscriber sub(SubscriberOptions{{node.address()}, "", std::chrono::milliseconds(0), {}});
  std::vector<Update> updates;
  uint64_t status_seq = 0, last = 0, statuses = 0, events = 0;
  bool restarted = false, rejoined = false;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (!rejoined && std::chrono::steady_clock::now() < deadline) {
    updates.clear();
    sub.Poll(std::chrono::milliseconds(20), &updates);
    for (const Update& u : updates) {
      REQUIRE(u.node == 0);
      if (u.status) {
        statuses++;
        status_seq = u.status->event_seq;
        if (restarted && status_seq < last) rejoined = true;
        last = rejoined ? status_seq : std::max(last, status_seq);
        continue;
      }
      REQUIRE(statuses > 0);  // never an event before the status that joins it
      const uint64_t seq = EventSeq(u.event);
      REQUIRE(seq > status_seq);
      REQUIRE(seq > last);
      REQUIRE(std::get<CommitEvent>(u.event).node == 1);
      last = seq;
      if (++events == 20) {
        node.Restart();
        restarted = true;
      }
    }
  }
  REQUIRE(rejoined);
}

TEST_CASE("Subscriber: status_every asks again and RefreshStatus asks at once") {
  FakePublisher node;
  Subscriber sub(SubscriberOptions{{node.address()}, "kv.", std::chrono::milliseconds(50), {}});
  std::vector<Update> updates;
  size_t statuses = 0;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (statuses < 3 && std::chrono::steady_clock::now() < deadline) {
    updates.clear();
    REQUIRE(sub.Poll(std::chrono::milliseconds(20), &updates));
    for (const Update& u : updates) {
      REQUIRE(u.status);  // only "kv." events, and the node publishes none
      statuses++;
    }
  }
  REQUIRE(statuses >= 3);

  Subscriber once(SubscriberOptions{{node.address()}, "", std::chrono::milliseconds(0), {}});
  statuses = 0;
  bool refreshed = false;
  while (statuses < 2 && std::chrono::steady_clock::now() < deadline) {
    updates.clear();
    REQUIRE(once.Poll(std::chrono::milliseconds(20), &updates));
    for (const Update& u : updates) {
      if (!u.status) continue;
      statuses++;
      if (!refreshed) once.RefreshStatus(0);
      refreshed = true;
    }
  }
  REQUIRE(statuses == 2);
}

TEST_CASE(
    "Subscriber secure: CURVE on both ports, and a node's key learned from another's status") {
  const KeyPair key_a = NewPair(), key_b = NewPair();
  FakePublisher a(&key_a), b(&key_b);
  a.set_members({{1, a.address()}, {2, b.address()}},
                {{1, key_a.public_key}, {2, key_b.public_key}});
  SubscriberOptions options{{a.address(), b.address()}, "", std::chrono::milliseconds(0), {}};
  options.credentials = Knowing({{a.address(), key_a.public_key}});
  Subscriber sub(options);
  REQUIRE(sub.MissingKey(0).empty());
  REQUIRE(sub.MissingKey(1) == "no server key for " + b.address() + ": add \"ID KEY " +
                                   b.address() + "\" to --server-keys");
  std::vector<Update> updates;
  bool events_from_b = false;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (!events_from_b && std::chrono::steady_clock::now() < deadline) {
    updates.clear();
    sub.Poll(std::chrono::milliseconds(20), &updates);
    for (const Update& u : updates) events_from_b = events_from_b || (u.node == 1 && !u.status);
  }
  REQUIRE(events_from_b);  // b's status, then its events, over CURVE
  REQUIRE(sub.MissingKey(1).empty());
}

}  // namespace
}  // namespace kv::client
