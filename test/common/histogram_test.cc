#include "common/histogram.h"

#include <array>
#include <catch2/catch.hpp>

#include "common/latency_histogram.h"

namespace kv {

namespace {
constexpr std::array<double, 3> kBytes = {256, 1024, 4096};
}  // namespace

TEST_CASE("Histogram: a value falls in the first bucket whose bound it does not pass") {
  Histogram h(kBytes, 1);
  REQUIRE(h.bounds() == 3);
  h.Observe(0);
  h.Observe(256);  // a bound is its bucket's own (Prometheus' le)
  h.Observe(257);
  h.Observe(4096);
  h.Observe(1 << 20);  // past the last bound: the last bucket
  CHECK(h.count(0) == 2);
  CHECK(h.count(1) == 1);
  CHECK(h.count(2) == 1);
  CHECK(h.count(3) == 1);
  CHECK(h.bound(2) == 4096);
  // Kept in whole units: bytes add up exactly, far past what nanoseconds could.
  CHECK(h.sum() == 256 + 257 + 4096 + (1 << 20));
}

TEST_CASE("Histogram: latencies are summed in nanoseconds") {
  LatencyHistogram h;
  h.Observe(0.0003);
  h.Observe(2.5);
  CHECK(h.count(2) == 1);                                     // (0.00025, 0.0005]
  CHECK(h.count(LatencyHistogram::kBounds.size() - 1) == 1);  // (1, 5]
  CHECK(h.sum_seconds() == Approx(2.5003).epsilon(1e-12));
}

}  // namespace kv
