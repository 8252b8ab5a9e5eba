// Histogram: latency recording with bounded relative error, in the manner of
// HdrHistogram: values are bucketed by powers of two, each split into 128
// linear sub-buckets, so any recorded value is reported within 1% of itself,
// from 1 ns to hours, in a fixed 60 KiB.
// Thread safety: none; merge per-thread histograms with Add.
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>

namespace kv::tools {

class Histogram {
 public:
  void Record(uint64_t value) {
    counts_[BucketOf(value)]++;
    count_++;
    max_ = std::max(max_, value);
    min_ = std::min(min_, value);
    sum_ += value;
  }

  void Add(const Histogram& o) {
    for (size_t i = 0; i < counts_.size(); ++i) counts_[i] += o.counts_[i];
    count_ += o.count_;
    max_ = std::max(max_, o.max_);
    min_ = std::min(min_, o.min_);
    sum_ += o.sum_;
  }

  uint64_t count() const { return count_; }
  uint64_t max() const { return count_ ? max_ : 0; }
  uint64_t min() const { return count_ ? min_ : 0; }
  double mean() const { return count_ ? static_cast<double>(sum_) / count_ : 0; }

  // The value at quantile q in [0, 1] (the upper edge of its bucket, capped
  // by the maximum seen).
  uint64_t Quantile(double q) const {
    if (count_ == 0) return 0;
    const uint64_t rank = std::max<uint64_t>(1, static_cast<uint64_t>(q * count_ + 0.5));
    uint64_t seen = 0;
    for (size_t i = 0; i < counts_.size(); ++i) {
      seen += counts_[i];
      if (seen >= rank) return std::min(UpperEdge(i), max_);
    }
    return max_;
  }

 private:
  static constexpr int kSubBits = 7;  // 128 sub-buckets per power of two
  static constexpr uint64_t kSub = 1ULL << kSubBits;

  static size_t BucketOf(uint64_t v) {
    if (v < kSub) return static_cast<size_t>(v);
    const int top = 63 - __builtin_clzll(v);  // position of the highest set bit
    const int shift = top - kSubBits;
    const uint64_t sub = (v >> shift) - kSub;  // 0..kSub-1
    return static_cast<size_t>((shift + 1) * kSub + sub);
  }

  static uint64_t UpperEdge(size_t bucket) {
    if (bucket < kSub) return bucket;
    const int shift = static_cast<int>(bucket / kSub) - 1;
    const uint64_t sub = bucket % kSub;
    return ((kSub + sub + 1) << shift) - 1;
  }

  std::array<uint64_t, (64 - kSubBits + 1) * kSub> counts_{};
  uint64_t count_ = 0;
  uint64_t max_ = 0;
  uint64_t min_ = UINT64_MAX;
  uint64_t sum_ = 0;
};

}  // namespace kv::tools
