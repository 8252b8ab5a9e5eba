// metrics_bench: what the metrics cost the node's loop thread and a scrape
// (docs/benchmarks.md, "Scrape cost").
//
//   render/G            Metrics::Render with G groups published (1: an
//                       unsharded node; 17: 16 shards and the metadata
//                       group), histograms filled: a scrape's CPU in the
//                       HTTP thread, without the HTTP.
//   publish/G           Metrics::Publish of G groups: the loop's cost per
//                       tick.
//   publish_scraped/G   the same while another thread renders without a
//                       pause (a scrape after another, far more than
//                       Prometheus asks): what a scrape can add to the
//                       loop's tick, the only place the two meet (the
//                       mutex a scrape holds while it copies the groups).
//
// Usage: metrics_bench [benchmark flags], e.g. --benchmark_repetitions=5.
// Not a test: ctest never runs it.
#include <benchmark/benchmark.h>

#include <atomic>
#include <thread>
#include <vector>

#include "node/metrics.h"

namespace {

using kv::node::GroupMetrics;
using kv::node::Health;
using kv::node::Metrics;

std::vector<GroupMetrics> Groups(int n) {
  std::vector<GroupMetrics> groups(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) {
    GroupMetrics& g = groups[static_cast<size_t>(i)];
    g.status.group = static_cast<uint64_t>(i + 1);
    g.status.shard = i - 1;
    g.status.role = i % 3 == 0 ? "leader" : "follower";
    g.status.term = 7;
    g.status.leader = 1;
    g.status.commit = g.status.applied = g.status.last_index = 123456;
    g.status.keys = 50000;
    g.status.voters = {1, 2, 3};
    g.bytes = 5 << 20;
    g.sessions = 16;
    g.counters.proposals = 99999;
  }
  return groups;
}

void FillRequests(Metrics* m) {
  for (int op = 0; op < Metrics::kOps; ++op) {
    for (int i = 0; i < 100; ++i) m->ObserveRequest(op, kv::net::ReplyStatus::kOk, 0.0001 * i);
  }
  m->ObserveSnapshot(0.02);
}

void Render(benchmark::State& state) {
  Metrics m;
  FillRequests(&m);
  m.Publish(Groups(static_cast<int>(state.range(0))), Health{});
  size_t bytes = 0;
  for (auto _ : state) {
    std::string text = m.Render();
    bytes = text.size();
    benchmark::DoNotOptimize(text);
  }
  state.counters["bytes"] = static_cast<double>(bytes);
}

void Publish(benchmark::State& state) {
  Metrics m;
  const std::vector<GroupMetrics> groups = Groups(static_cast<int>(state.range(0)));
  for (auto _ : state) m.Publish(groups, Health{});
}

void PublishScraped(benchmark::State& state) {
  Metrics m;
  FillRequests(&m);
  const std::vector<GroupMetrics> groups = Groups(static_cast<int>(state.range(0)));
  m.Publish(groups, Health{});
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> scrapes{0};
  std::thread scraper([&] {
    while (!stop.load(std::memory_order_relaxed)) {
      benchmark::DoNotOptimize(m.Render());
      scrapes.fetch_add(1, std::memory_order_relaxed);
    }
  });
  for (auto _ : state) m.Publish(groups, Health{});
  stop = true;
  scraper.join();
  state.counters["scrapes"] = static_cast<double>(scrapes.load());
}

BENCHMARK(Render)->Name("render")->Arg(1)->Arg(17)->Unit(benchmark::kMicrosecond);
BENCHMARK(Publish)->Name("publish")->Arg(1)->Arg(17)->Unit(benchmark::kMicrosecond);
BENCHMARK(PublishScraped)
    ->Name("publish_scraped")
    ->Arg(1)
    ->Arg(17)
    ->Unit(benchmark::kMicrosecond)
    ->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
