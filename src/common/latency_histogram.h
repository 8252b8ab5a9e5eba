// LatencyHistogram: a Histogram (common/histogram.h) of durations in
// seconds, in fixed buckets from 100 us to 5 s.
// Thread safety: as Histogram's.
#pragma once

#include <array>

#include "common/histogram.h"

namespace kv {

class LatencyHistogram : public Histogram {
 public:
  // Upper bounds of the buckets, in seconds; a last bucket takes the rest.
  static constexpr std::array<double, 14> kBounds = {
      0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5};

  LatencyHistogram() : Histogram(kBounds, 1e-9) {}

  double sum_seconds() const { return sum(); }
};

}  // namespace kv
