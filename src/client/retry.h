// How the clients retry without amplifying an overload (issue 20): a
// jittered exponential backoff before a request that was refused (BUSY,
// UNAVAILABLE, UNKNOWN) is sent again, a resend timeout that adapts to the
// latency the client sees and to the request's size, and a budget that
// bounds resends to a fraction of the requests sent. All take the time as an
// argument (nanoseconds on any monotonic clock), so tests drive them with
// made-up times.
// Thread safety: none; plain values owned by one client.
#pragma once

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdint>
#include <random>

namespace kv::client {

// The first backoff, and the most any backoff grows to.
constexpr std::chrono::milliseconds kMinBackoff{10};
constexpr std::chrono::milliseconds kMaxBackoff{1000};

// The wait before the next attempt of a request refused `refusals` times
// (1 for the first refusal): exponential with full jitter (uniform between
// kMinBackoff and kMinBackoff x 2^(refusals-1), capped at kMaxBackoff), so
// that clients refused together do not come back together. The floor keeps
// even the first retry off a node that has just shed load.
inline std::chrono::nanoseconds Backoff(int refusals, std::mt19937_64& rng) {
  const int doublings = std::clamp(refusals - 1, 0, 16);
  const int64_t floor = std::chrono::nanoseconds(kMinBackoff).count();
  const int64_t ceiling =
      std::min<int64_t>(floor << doublings, std::chrono::nanoseconds(kMaxBackoff).count());
  return std::chrono::nanoseconds(std::uniform_int_distribution<int64_t>(floor, ceiling)(rng));
}

// When to give up waiting for an attempt's answer and resend it: at least
// the configured timeout, and at least kLatencyFactor times the smoothed
// latency of recent answers, plus time for the request's bytes, doubled for
// each time this request already timed out (as TCP backs off its
// retransmission timer), and never more than kMaxResendTimeout.
class ResendTimer {
 public:
  static constexpr int kLatencyFactor = 4;
  static constexpr std::chrono::seconds kMaxResendTimeout{30};
  // A request's bytes cost 1 ms per 16 KiB on top of the latency seen: the
  // leader writes them to its WAL and sends them to each follower, which
  // writes them too, before a write is answered. 16 MiB/s is a pessimistic
  // throughput for that path on a loaded disk, so that a large request
  // among small ones (whose latency the average reflects) is not resent
  // just because its bytes take longer; for a 1 MiB value that adds 64 ms.
  static constexpr uint64_t kBytesPerMs = 16 * 1024;

  // A sample: an attempt answered `latency_ns` after it was sent. Only
  // final answers count (OK, NOT_FOUND, ...): a refusal comes back at once
  // and would make an overloaded node look fast.
  void Observe(uint64_t latency_ns) {
    // EWMA with weight 1/8, as TCP's smoothed RTT (RFC 6298).
    smoothed_ns_ =
        smoothed_ns_ == 0 ? latency_ns : smoothed_ns_ - smoothed_ns_ / 8 + latency_ns / 8;
  }
  uint64_t smoothed_ns() const { return smoothed_ns_; }

  // The resend timeout of an attempt carrying `request_bytes`, for a
  // request that timed out `timeouts` times before.
  uint64_t TimeoutNs(std::chrono::milliseconds configured, uint64_t request_bytes,
                     int timeouts) const {
    const uint64_t max_ns = std::chrono::nanoseconds(kMaxResendTimeout).count();
    uint64_t t = std::max<uint64_t>(std::chrono::nanoseconds(configured).count(),
                                    kLatencyFactor * smoothed_ns_);
    t += request_bytes / kBytesPerMs * 1000000;
    t <<= std::clamp(timeouts, 0, 8);
    return std::min(t, max_ns);
  }

 private:
  uint64_t smoothed_ns_ = 0;  // 0: no sample yet
};

// A retry budget, after Finagle's RetryBudget: over a sliding window of
// kWindow, wasted resends may be at most kRatio of the first attempts sent,
// plus a reserve of kMinPerSecond per second of the window so that a client
// that sends little can still retry. A resend is charged when it is sent
// and given back when its request then completes: only resends that were
// refused again or went unanswered stay charged. So a backlog drains at the
// cluster's pace once it answers again, even when no new requests come to
// add to the budget, while however the cluster answers a client never
// wastes more than kRatio of the load it offers, plus the reserve. A resend
// beyond the budget waits (the request stays where it is) until charges
// leave the window or new requests add to it. The window is short (Finagle
// keeps 10 s) because a budget spent during a burst of refusals stays spent
// until the window slides past it, and the requests that wait meanwhile
// stall a closed-loop caller. The reserve is small because a load generator
// runs a client per thread: 32 threads resending 10 a second each would
// send more 64 KiB writes than a cluster commits.
// The window is kBuckets buckets of kWindow / kBuckets, one set of counters
// each; the oldest is dropped as time moves on.
class RetryBudget {
 public:
  static constexpr double kRatio = 0.2;
  static constexpr double kMinPerSecond = 2;
  static constexpr std::chrono::seconds kWindow{2};
  static constexpr int kBuckets = 10;

  // A first attempt was sent.
  void OnSend(uint64_t now_ns) { Bucket(now_ns).sends++; }

  // A request that was resent completed: its last resend was not wasted.
  // REQUIRES: at most one call per request, and only after a TryResend that
  // returned true for it.
  void Refund(uint64_t now_ns) { Bucket(now_ns).refunds++; }

  // True, and a resend is charged, if the budget allows one now.
  bool TryResend(uint64_t now_ns) {
    Advance(now_ns);
    uint64_t sends = 0, resends = 0, refunds = 0;
    for (const Counts& b : buckets_) {
      sends += b.sends;
      resends += b.resends;
      refunds += b.refunds;
    }
    const double reserve = kMinPerSecond * std::chrono::duration<double>(kWindow).count();
    const double charged = static_cast<double>(resends) - static_cast<double>(refunds);
    if (charged + 1 > kRatio * static_cast<double>(sends) + reserve) {
      return false;
    }
    Bucket(now_ns).resends++;
    return true;
  }

  // When the oldest bucket leaves the window: the earliest time at which a
  // refused TryResend may succeed without new sends.
  uint64_t NextRefillNs(uint64_t now_ns) const { return (now_ns / kBucketNs + 1) * kBucketNs; }

 private:
  static constexpr uint64_t kBucketNs =
      std::chrono::nanoseconds(kWindow).count() / static_cast<uint64_t>(kBuckets);
  struct Counts {
    uint64_t sends = 0;
    uint64_t resends = 0;
    uint64_t refunds = 0;
  };

  // Drops the buckets that left the window by `now_ns`.
  void Advance(uint64_t now_ns) {
    const uint64_t epoch = now_ns / kBucketNs;
    if (epoch <= epoch_) return;
    const uint64_t n = kBuckets;
    for (uint64_t e = std::max(epoch_ + 1, epoch >= n ? epoch - n + 1 : 0); e <= epoch; ++e) {
      buckets_[e % n] = Counts{};
    }
    epoch_ = epoch;
  }
  Counts& Bucket(uint64_t now_ns) {
    Advance(now_ns);
    return buckets_[epoch_ % kBuckets];
  }

  std::array<Counts, kBuckets> buckets_{};
  uint64_t epoch_ = 0;  // the bucket of the latest time seen
};

}  // namespace kv::client
