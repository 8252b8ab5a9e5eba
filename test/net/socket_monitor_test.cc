#include "net/socket_monitor.h"

#include <catch2/catch.hpp>
#include <chrono>
#include <functional>
#include <string>
#include <thread>
#include <zmq.hpp>

#include "net/peer_transport.h"
#include "net/zmq_util.h"

namespace kv::net {
namespace {

using namespace std::chrono_literals;

// Polls `done` (the owner thread reads its monitors in it) until it holds
// or 10 s pass; returns whether it held.
bool Eventually(const std::function<bool()>& done) {
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (!done()) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(1ms);
  }
  return true;
}

std::string BoundEndpoint(zmq::socket_t& socket) { return socket.get(zmq::sockopt::last_endpoint); }

TEST_CASE("ConnectionCount: connections accepted and closed on a bound socket") {
  zmq::context_t ctx;
  zmq::socket_t router(ctx, zmq::socket_type::router);
  router.set(zmq::sockopt::linger, 0);
  ConnectionCount count;
  REQUIRE(count.Start(&ctx, router).ok());
  router.bind("tcp://127.0.0.1:*");
  CHECK(count.Update() == 0);

  auto dealer = [&] {
    zmq::socket_t d(ctx, zmq::socket_type::dealer);
    d.set(zmq::sockopt::linger, 0);
    d.connect(BoundEndpoint(router));
    return d;
  };
  zmq::socket_t a = dealer();
  zmq::socket_t b = dealer();
  int64_t open = 0;
  CHECK(Eventually([&] { return (open = count.Update()) == 2; }));
  CHECK(open == 2);
  a.close();
  CHECK(Eventually([&] { return (open = count.Update()) == 1; }));
  CHECK(open == 1);
  b.close();
  CHECK(Eventually([&] { return (open = count.Update()) == 0; }));
  CHECK(open == 0);
}

TEST_CASE("PeerTransport: a peer counts as connected while its connection is up") {
  zmq::context_t ctx(kIoThreads);  // the transport's sockets name theirs
  PeerTransport self(&ctx, 1 << 20, 1 << 16);
  // The peer's Raft port: a ROUTER like every node's.
  zmq::socket_t peer(ctx, zmq::socket_type::router);
  peer.set(zmq::sockopt::linger, 0);
  peer.bind("tcp://127.0.0.1:*");
  const std::string endpoint = BoundEndpoint(peer);
  self.Connect(2, "127.0.0.1", std::stoi(endpoint.substr(endpoint.rfind(':') + 1)));
  CHECK(self.connected() == 0);
  CHECK(Eventually([&] {
    self.WatchLinks();
    return self.connected() == 1;
  }));
  peer.close();  // the peer goes away: its connection drops
  CHECK(Eventually([&] {
    self.WatchLinks();
    return self.connected() == 0;
  }));
}

}  // namespace
}  // namespace kv::net
