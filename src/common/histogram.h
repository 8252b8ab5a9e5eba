// Histogram: counts of observations in fixed buckets, updated by one thread
// and read by another (a metrics scrape) without a lock: each count is an
// atomic, so a reader sees every observation of before its read, give or
// take the ones racing with it. The buckets' bounds are a static array the
// histogram points to; the sum is kept in whole units (nanoseconds for
// seconds, bytes for bytes) so that it too is one atomic.
// Thread safety: Observe and the readers from any thread.
#pragma once

#include <array>
#include <atomic>
#include <cmath>
#include <cstddef>
#include <cstdint>

namespace kv {

class Histogram {
 public:
  static constexpr size_t kMaxBounds = 16;

  // `bounds`: the buckets' upper bounds, ascending, in static storage (not
  // copied); a last bucket takes the rest. `unit`: what one in the sum
  // counts (1e-9: the sum of seconds is kept in nanoseconds).
  template <size_t N>
  Histogram(const std::array<double, N>& bounds, double unit)
      : bounds_(bounds.data()), size_(N), unit_(unit) {
    static_assert(N > 0 && N <= kMaxBounds, "a histogram has 1 to kMaxBounds bounds");
  }
  Histogram(const Histogram&) = delete;
  Histogram& operator=(const Histogram&) = delete;

  void Observe(double value) {
    size_t b = 0;
    while (b < size_ && value > bounds_[b]) ++b;
    counts_[b].fetch_add(1, std::memory_order_relaxed);
    sum_.fetch_add(static_cast<uint64_t>(std::llround(value / unit_)), std::memory_order_relaxed);
  }

  size_t bounds() const { return size_; }
  double bound(size_t b) const { return bounds_[b]; }
  // Observations in bucket b (b == bounds(): above the last bound).
  uint64_t count(size_t b) const { return counts_[b].load(std::memory_order_relaxed); }
  double sum() const { return static_cast<double>(sum_.load(std::memory_order_relaxed)) * unit_; }

 private:
  const double* const bounds_;
  const size_t size_;
  const double unit_;
  std::array<std::atomic<uint64_t>, kMaxBounds + 1> counts_{};
  std::atomic<uint64_t> sum_{0};
};

}  // namespace kv
