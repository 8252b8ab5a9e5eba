// LatencyHistogram: counts of durations in fixed buckets (100 us to 5 s),
// updated by one thread and read by another (a metrics scrape) without a
// lock: each count is an atomic, so a reader sees every observation of
// before its read, give or take the ones racing with it.
// Thread safety: Observe and the readers from any thread.
#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>

namespace kv {

class LatencyHistogram {
 public:
  // Upper bounds of the buckets, in seconds; a last bucket takes the rest.
  static constexpr std::array<double, 14> kBounds = {
      0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5};

  void Observe(double seconds) {
    size_t b = 0;
    while (b < kBounds.size() && seconds > kBounds[b]) ++b;
    counts_[b].fetch_add(1, std::memory_order_relaxed);
    sum_ns_.fetch_add(static_cast<uint64_t>(seconds * 1e9), std::memory_order_relaxed);
  }

  // Observations in bucket b (b == kBounds.size(): above the last bound).
  uint64_t count(size_t b) const { return counts_[b].load(std::memory_order_relaxed); }
  double sum_seconds() const {
    return static_cast<double>(sum_ns_.load(std::memory_order_relaxed)) / 1e9;
  }

 private:
  std::array<std::atomic<uint64_t>, kBounds.size() + 1> counts_{};
  std::atomic<uint64_t> sum_ns_{0};
};

}  // namespace kv
