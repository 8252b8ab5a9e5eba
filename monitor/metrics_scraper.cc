#include "metrics_scraper.h"

#include <httplib.h>

#include <cmath>
#include <limits>
#include <sstream>

namespace kv::monitor {

Buckets ParseHistogram(const std::string& page, const std::string& name) {
  Buckets out;
  const std::string prefix = name + "_bucket";
  std::istringstream lines(page);
  for (std::string line; std::getline(lines, line);) {
    if (line.compare(0, prefix.size(), prefix) != 0) continue;
    const size_t le = line.find("le=\"");
    const size_t space = line.rfind(' ');
    if (le == std::string::npos || space == std::string::npos) continue;
    const size_t end = line.find('"', le + 4);
    if (end == std::string::npos) continue;
    const std::string bound = line.substr(le + 4, end - le - 4);
    try {
      const double upper =
          bound == "+Inf" ? std::numeric_limits<double>::infinity() : std::stod(bound);
      out[upper] += std::stod(line.substr(space + 1));
    } catch (const std::exception&) {
      // Not a number: not a line of ours.
    }
  }
  return out;
}

std::optional<double> Quantile(const Buckets& now, const Buckets& before, double q) {
  auto count = [&](const Buckets& b, double le) {
    auto it = b.find(le);
    return it == b.end() ? 0.0 : it->second;
  };
  if (now.empty()) return std::nullopt;
  const double total = now.rbegin()->second - count(before, now.rbegin()->first);
  if (total <= 0) return std::nullopt;
  const double rank = q * total;
  double lower = 0, below = 0;
  for (const auto& [le, cumulative] : now) {
    const double n = cumulative - count(before, le);
    if (n >= rank) {
      // The last bound is +Inf: report the highest finite one, as Prometheus does.
      if (std::isinf(le)) return lower;
      return lower + (le - lower) * (n - below <= 0 ? 1 : (rank - below) / (n - below));
    }
    lower = le;
    below = n;
  }
  return lower;
}

MetricsScraper::MetricsScraper(std::vector<std::string> endpoints) {
  for (const std::string& ep : endpoints) {
    Node n;
    const size_t colon = ep.rfind(':');
    n.host = ep.substr(0, colon);
    n.port = std::stoi(ep.substr(colon + 1)) + kMetricsPortOffset;
    nodes_.push_back(std::move(n));
  }
}

MetricsScraper::~MetricsScraper() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  stop_cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void MetricsScraper::Scrape(Node* node) {
  httplib::Client http(node->host, node->port);
  http.set_connection_timeout(0, 300000);
  http.set_read_timeout(1, 0);
  const auto res = http.Get("/metrics");
  std::lock_guard<std::mutex> lock(mu_);
  if (!res || res->status != 200) {
    node->latency = NodeLatency{};
    node->requests.clear();
    node->fsyncs.clear();
    return;
  }
  const Buckets requests = ParseHistogram(res->body, "kvstore_request_duration_seconds");
  const Buckets fsyncs = ParseHistogram(res->body, "kvstore_wal_fsync_duration_seconds");
  // Over the last interval when something happened in it, else what we had.
  if (auto p = Quantile(requests, node->requests, 0.99)) node->latency.request_p99 = p;
  if (auto p = Quantile(fsyncs, node->fsyncs, 0.99)) node->latency.fsync_p99 = p;
  node->requests = requests;
  node->fsyncs = fsyncs;
}

void MetricsScraper::ScrapeAll() {
  for (Node& n : nodes_) Scrape(&n);
}

void MetricsScraper::Start(std::chrono::milliseconds every) {
  thread_ = std::thread([this, every] {
    std::unique_lock<std::mutex> lock(mu_);
    while (!stop_) {
      lock.unlock();
      ScrapeAll();
      lock.lock();
      stop_cv_.wait_for(lock, every, [this] { return stop_; });
    }
  });
}

NodeLatency MetricsScraper::latency(size_t node) const {
  std::lock_guard<std::mutex> lock(mu_);
  return node < nodes_.size() ? nodes_[node].latency : NodeLatency{};
}

}  // namespace kv::monitor
