// The client library against scripted fake nodes: ZeroMQ ROUTER sockets on
// loopback whose answers each test chooses.
#include "kvstore/client.h"

#include <atomic>
#include <catch2/catch.hpp>
#include <functional>
#include <mutex>
#include <thread>
#include <zmq.hpp>
#include <zmq_addon.hpp>

#include "net/codec.h"

namespace kv::client {
namespace {

using net::ClientReply;
using net::ClientRequest;
using net::ReplyStatus;

// A fake node: answers each request with what the handler returns, or not
// at all when it returns nullopt.
class FakeNode {
 public:
  using Handler = std::function<std::optional<ClientReply>(const ClientRequest&)>;

  explicit FakeNode(Handler handler) : handler_(std::move(handler)), socket_(ctx_, zmq::socket_type::router) {
    socket_.set(zmq::sockopt::linger, 0);
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
      {
        std::lock_guard<std::mutex> lock(mu_);
        requests_.push_back(req);
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
  std::vector<ClientRequest> requests_;
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
  Client c(Fast({follower.address()}));
  Result r = c.Get("k");
  REQUIRE(r.code == Code::kOk);
  REQUIRE(r.value == "v");
  REQUIRE(c.redirects() == 1);
  REQUIRE(c.leader() == leader.address());
  REQUIRE(c.Put("k", "v").ok());
  REQUIRE(follower.requests().size() == 1);  // the second call went straight to the leader
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
  REQUIRE(reqs[0].seq == reqs[1].seq);     // the retry is the same write
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

TEST_CASE("ERROR and NOT_FOUND are final: no retry") {
  FakeNode node([](const ClientRequest& req) {
    ClientReply r = With(req.op == net::ClientOp::kGet ? ReplyStatus::kNotFound : ReplyStatus::kError);
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
}

}  // namespace
}  // namespace kv::client
