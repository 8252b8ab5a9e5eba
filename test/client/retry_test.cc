// The retry helpers of client/retry.h, on made-up times.
#include "client/retry.h"

#include <catch2/catch.hpp>

namespace kv::client {
namespace {

constexpr uint64_t kMs = 1000000;
constexpr uint64_t kSecond = 1000 * kMs;

TEST_CASE("Backoff: from kMinBackoff, jittered up to a doubling ceiling, at most kMaxBackoff") {
  std::mt19937_64 rng(7);
  for (int i = 0; i < 100; ++i) REQUIRE(Backoff(1, rng) == kMinBackoff);
  bool below_ceiling = false;
  for (int refusals = 2; refusals < 40; ++refusals) {
    for (int i = 0; i < 100; ++i) {
      const auto b = Backoff(refusals, rng);
      REQUIRE(b >= kMinBackoff);
      REQUIRE(b <= std::min<std::chrono::nanoseconds>(
                       kMinBackoff * (1LL << std::min(refusals - 1, 20)), kMaxBackoff));
      below_ceiling = below_ceiling || b < kMaxBackoff / 2;
    }
  }
  REQUIRE(below_ceiling);  // jittered, not always the ceiling
}

TEST_CASE("ResendTimer: the configured floor, 4x the smoothed latency, size, doubling, a cap") {
  ResendTimer t;
  const std::chrono::milliseconds configured(100);
  REQUIRE(t.TimeoutNs(configured, 0, 0) == 100 * kMs);  // no sample yet
  t.Observe(10 * kMs);
  REQUIRE(t.TimeoutNs(configured, 0, 0) == 100 * kMs);  // 4 x 10 ms is below the floor
  for (int i = 0; i < 100; ++i) t.Observe(50 * kMs);
  REQUIRE(t.smoothed_ns() > 49 * kMs);
  REQUIRE(t.smoothed_ns() <= 50 * kMs);
  const uint64_t base = t.TimeoutNs(configured, 0, 0);
  REQUIRE(base == 4 * t.smoothed_ns());
  // 1 ms per 16 KiB.
  REQUIRE(t.TimeoutNs(configured, 1 << 20, 0) == base + 64 * kMs);
  REQUIRE(t.TimeoutNs(configured, 0, 2) == 4 * base);
  REQUIRE(t.TimeoutNs(configured, 0, 100) == 30 * kSecond);
  t.Observe(3600 * kSecond);
  REQUIRE(t.TimeoutNs(configured, 0, 0) == 30 * kSecond);
}

TEST_CASE("RetryBudget: a share of the sends plus a reserve per window, refilled as it slides") {
  RetryBudget b;
  const uint64_t t0 = 1000 * kSecond + 1;
  const auto reserve = static_cast<int>(RetryBudget::kMinPerSecond * RetryBudget::kWindow.count());
  int granted = 0;
  while (b.TryResend(t0)) granted++;
  REQUIRE(granted == reserve);
  for (int i = 0; i < 100; ++i) b.OnSend(t0);
  granted = 0;
  while (b.TryResend(t0)) granted++;
  REQUIRE(granted == static_cast<int>(RetryBudget::kRatio * 100));
  // Nothing comes back until the window has moved past t0's bucket.
  REQUIRE(b.NextRefillNs(t0) > t0);
  const uint64_t window = RetryBudget::kWindow.count() * kSecond;
  REQUIRE_FALSE(b.TryResend(t0 + window - 2));
  // Then the resends leave the window, and so do the sends.
  const uint64_t later = t0 + window;
  granted = 0;
  while (b.TryResend(later)) granted++;
  REQUIRE(granted == reserve);
}

TEST_CASE("RetryBudget: a resend whose request completed is given back") {
  RetryBudget b;
  const uint64_t t0 = 1000 * kSecond;
  const auto reserve = static_cast<int>(RetryBudget::kMinPerSecond * RetryBudget::kWindow.count());
  for (int i = 0; i < reserve; ++i) REQUIRE(b.TryResend(t0));
  REQUIRE_FALSE(b.TryResend(t0));
  b.Refund(t0 + kMs);
  REQUIRE(b.TryResend(t0 + kMs));
  REQUIRE_FALSE(b.TryResend(t0 + kMs));
}

}  // namespace
}  // namespace kv::client
