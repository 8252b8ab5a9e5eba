// ReplyBudget: the bytes of replies ZeroMQ still holds for each client
// connection, and for the node in all, so that a client that asks and never
// reads cannot make the node queue without bound. ZeroMQ's send high-water
// mark counts messages, not bytes: 100,000 scan pages of 4 MiB would be
// 400 GiB. Replies of kTrackedBytes or more are handed to ZeroMQ without a
// copy, with a callback that ZeroMQ runs (on its I/O thread) once it has
// written or dropped the message, so the counts are exact; a connection (or
// the node) over its budget is refused more reads with BUSY until its
// client has read enough (node/client_front.h). Smaller replies are bounded
// by the send queue alone (100,000 of under 1 KiB each). A scan reserves
// its page's bytes when it arrives, so that pipelined scans are refused
// before they are read, not after their pages were built.
// Thread safety: the loop thread; the counters are atomics the callbacks
// decrement.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <zmq.hpp>

namespace kv::node {

class ReplyBudget {
 public:
  static constexpr size_t kTrackedBytes = 1 << 10;

  ReplyBudget(uint64_t per_connection, uint64_t per_node)
      : per_connection_(per_connection), per_node_(per_node) {}

  // Whether the connection (its ZeroMQ routing id) may be given another
  // reply; false when it, or the node, holds its budget's worth unread.
  bool Allows(const std::string& routing) const;
  // The reply as a message for the connection; a large one counts against
  // its budget and the node's until ZeroMQ releases it.
  zmq::message_t Message(const std::string& routing, std::string bytes);
  // Counts `bytes` against the connection's budget and the node's until the
  // returned token (and every copy of it) is gone; any thread may drop it.
  std::shared_ptr<const void> Reserve(const std::string& routing, uint64_t bytes);

  uint64_t connection_bytes(const std::string& routing) const;
  uint64_t node_bytes() const { return node_->load(std::memory_order_relaxed); }

 private:
  using Counter = std::atomic<uint64_t>;
  std::shared_ptr<Counter> CounterOf(const std::string& routing);
  // Forgets connections with nothing queued (their counters may live on in
  // callbacks still to run; those hold their own reference).
  void Sweep();

  const uint64_t per_connection_;
  const uint64_t per_node_;
  std::shared_ptr<Counter> node_ = std::make_shared<Counter>(0);
  std::unordered_map<std::string, std::shared_ptr<Counter>> connections_;
  size_t sweep_at_ = 1024;
};

}  // namespace kv::node
