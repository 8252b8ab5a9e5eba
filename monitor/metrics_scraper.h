// MetricsScraper: kvmon's reader of each node's /metrics (HTTP on the
// node's client port + 3000, the default --metrics-port): the p99 of its
// request latency and of its WAL fsyncs, over the last scrape interval (or
// since the node started, for the first scrape). Scrapes run on a thread
// of their own, so a node that does not answer never holds the display.
// Thread safety: all public calls, from any thread.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace kv::monitor {

// A histogram as /metrics gives it: cumulative counts by upper bound.
using Buckets = std::map<double, double>;  // le -> count (le +Inf as infinity)

// The buckets of histogram `name` in a Prometheus text page, summed over
// its label sets (every op, for the request latency).
Buckets ParseHistogram(const std::string& page, const std::string& name);
// The q-quantile (0..1) of what `now` counted beyond `before` (empty: since
// the start), interpolated in its bucket as Prometheus' histogram_quantile
// does; nullopt when nothing was counted.
std::optional<double> Quantile(const Buckets& now, const Buckets& before, double q);

struct NodeLatency {
  std::optional<double> request_p99;  // seconds
  std::optional<double> fsync_p99;
};

class MetricsScraper {
 public:
  static constexpr int kMetricsPortOffset = 3000;

  // Node i is endpoints[i] (host:client port).
  explicit MetricsScraper(std::vector<std::string> endpoints);
  ~MetricsScraper();
  MetricsScraper(const MetricsScraper&) = delete;
  MetricsScraper& operator=(const MetricsScraper&) = delete;

  // Scrapes every node once, now (kvmon --once).
  void ScrapeAll();
  // Scrapes every `every` on the thread until destroyed.
  void Start(std::chrono::milliseconds every);
  NodeLatency latency(size_t node) const;

 private:
  struct Node {
    std::string host;
    int port = 0;
    Buckets requests, fsyncs;  // the previous scrape's
    NodeLatency latency;
  };
  void Scrape(Node* node);  // without mu_; publishes under it

  std::vector<Node> nodes_;  // host, port: fixed; the rest guarded by mu_
  mutable std::mutex mu_;
  std::condition_variable stop_cv_;
  bool stop_ = false;  // guarded by mu_
  std::thread thread_;
};

}  // namespace kv::monitor
