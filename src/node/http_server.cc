#include "node/http_server.h"

#include <httplib.h>

#include <chrono>

#include "common/thread_name.h"
#include "node/metrics.h"

namespace kv::node {

HttpServer::HttpServer(const Metrics* metrics)
    : metrics_(metrics), server_(std::make_unique<httplib::Server>()) {
  // A scrape is small: anything large, slow or not a GET is not one.
  server_->set_payload_max_length(64 << 10);
  server_->set_read_timeout(2, 0);
  server_->set_write_timeout(5, 0);
  // httplib writes a reply's headers and body apart: with Nagle the body
  // waits for the client's delayed ACK of the headers, 40 ms a scrape.
  server_->set_tcp_nodelay(true);
  // httplib's default is SO_REUSEPORT, which lets a second process (another
  // node given the same port) listen beside us and take half the scrapes,
  // yet refuses a port whose old connections wait in TIME_WAIT. The ZeroMQ
  // ports bind with SO_REUSEADDR; so does this one.
  server_->set_socket_options([](int sock) {
    const int one = 1;
    setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  });
  server_->new_task_queue = [] { return new httplib::ThreadPool(2); };
  server_->Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
    res.set_content(metrics_->Render(), "text/plain; version=0.0.4; charset=utf-8");
  });
  server_->Get("/healthz", [this](const httplib::Request&, httplib::Response& res) {
    const Health h = metrics_->health();
    res.status = h.live ? 200 : 503;
    res.set_content(h.live ? "ok\n" : h.problem + "\n", "text/plain");
  });
  server_->Get("/readyz", [this](const httplib::Request&, httplib::Response& res) {
    const Health h = metrics_->health();
    const bool ready = h.live && h.ready;
    res.status = ready ? 200 : 503;
    res.set_content(ready ? "ready\n" : (h.live ? h.waiting : h.problem) + "\n", "text/plain");
  });
}

HttpServer::~HttpServer() { Stop(); }

Status HttpServer::Start(const std::string& host, int port) {
  if (!server_->bind_to_port(host.c_str(), port)) {
    return Status::InvalidArgument("cannot listen for metrics on " + host + ":" +
                                   std::to_string(port) + " (in use?)");
  }
  thread_ = std::thread([this] {
    NameThisThread("kv-http");
    server_->listen_after_bind();
  });
  // stop() does nothing to a server whose thread has not started listening
  // yet (that thread would then serve forever and Stop would never join
  // it): wait until it listens. Microseconds; the deadline only guards.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (!server_->is_running() && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::microseconds(100));
  }
  return Status::OK();
}

void HttpServer::Stop() {
  if (thread_.joinable()) {
    server_->stop();
    thread_.join();
  }
}

}  // namespace kv::node
