// HttpServer: the node's metrics and health port (--metrics-port): GET
// /metrics (Prometheus text), /healthz (200 while the node runs and its WAL
// is writable, else 503 with the reason), /readyz (200 once every group it
// hosts knows a leader and has applied what it knows committed, else 503
// saying which wait). Built on cpp-httplib (Debian's libcpp-httplib-dev):
// its own threads answer, reading only what node/metrics.h publishes, so a
// scrape never waits on the loop thread nor the loop on a scrape, and its
// parser has seen far more hostile input than one of our own would.
// Thread safety: Start and Stop from one thread.
#pragma once

#include <memory>
#include <string>
#include <thread>

#include "common/status.h"

namespace httplib {
class Server;
}

namespace kv::node {

class Metrics;

class HttpServer {
 public:
  explicit HttpServer(const Metrics* metrics);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Listens on host:port and serves until Stop. InvalidArgument when the
  // port cannot be bound.
  Status Start(const std::string& host, int port);
  void Stop();

 private:
  const Metrics* metrics_;
  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
};

}  // namespace kv::node
