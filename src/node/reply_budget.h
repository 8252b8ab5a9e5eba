// ReplyBudget: the bytes of replies ZeroMQ still holds for each client
// connection, and for the node in all, so that a client that asks and never
// reads cannot make the node queue without bound. ZeroMQ's send high-water
// mark counts messages, not bytes: 100,000 scan pages of 4 MiB would be
// 400 GiB. Replies of kTrackedBytes or more are handed to ZeroMQ without a
// copy, with a callback that ZeroMQ runs (on its I/O thread) once it has
// written or dropped the message, so the counts are exact. Every read holds
// a Reservation from its arrival to its answer: a scan reserves its page's
// most bytes at once, a get the size of its value once read, so that
// pipelined reads are refused (BUSY) before their replies are built, not
// after. A connection over its budget is refused reads; so is one that
// holds anything while the node is over its own. Smaller replies are bounded
// by the send queue alone (100,000 of under 1 KiB each).
// Thread safety: the loop thread, except Reservation, which any thread may
// use and drop; the counters are atomics.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <zmq.hpp>

namespace kv::node {

class ReplyBudget {
  using Counter = std::atomic<uint64_t>;

 public:
  static constexpr size_t kTrackedBytes = 1 << 10;

  // A read's claim on its connection's budget and the node's, given back
  // when the last reference to it goes (after its reply was handed on).
  class Reservation {
   public:
    Reservation(const ReplyBudget& budget, std::shared_ptr<Counter> connection, uint64_t bytes);
    ~Reservation();
    Reservation(const Reservation&) = delete;
    Reservation& operator=(const Reservation&) = delete;
    // Claims `bytes` more, unless the connection or the node is over its
    // budget: then false, and the read is to be answered BUSY.
    bool TryAdd(uint64_t bytes);
    // The BUSY reply's reason.
    std::string Refusal() const;

   private:
    const uint64_t per_connection_, per_node_;
    const std::shared_ptr<Counter> connection_, node_;
    Counter bytes_{0};
  };

  // A connection's budget as a strand sees it, for the replies it makes
  // itself (a watch's batches, node/watch_hub.h): taken on the loop thread,
  // used on any. The budget must outlive it.
  class Share {
   public:
    Share() = default;
    // Whether the connection may be sent another reply now (as Allows).
    bool HasRoom() const;
    // A charge of `bytes` to the connection and the node, however full they
    // are: for a reply that goes out anyway (Message with it).
    std::shared_ptr<Reservation> Charge(uint64_t bytes) const;

   private:
    friend class ReplyBudget;
    const ReplyBudget* budget_ = nullptr;
    std::shared_ptr<Counter> connection_;
  };

  ReplyBudget(uint64_t per_connection, uint64_t per_node)
      : per_connection_(per_connection), per_node_(per_node) {}

  // Whether the connection (its ZeroMQ routing id) may start another read.
  bool Allows(const std::string& routing) const;
  // The reason Allows said no.
  std::string Refusal(const std::string& routing) const;
  // A reservation of `bytes` for a read of the connection's.
  std::shared_ptr<Reservation> Reserve(const std::string& routing, uint64_t bytes);
  // The reply as a message for the connection; a large one counts against
  // its budget and the node's until ZeroMQ releases it.
  zmq::message_t Message(const std::string& routing, std::string bytes);
  // The reply as a message that holds `charge` (Share::Charge) until
  // ZeroMQ releases it, whatever its size.
  static zmq::message_t Message(std::string bytes, std::shared_ptr<Reservation> charge);
  Share ShareOf(const std::string& routing);

 private:
  static bool Allows(uint64_t connection_bytes, uint64_t node_bytes, uint64_t per_connection,
                     uint64_t per_node) {
    return connection_bytes < per_connection && (node_bytes < per_node || connection_bytes == 0);
  }
  static std::string Refusal(uint64_t connection_bytes, uint64_t node_bytes);
  uint64_t connection_bytes(const std::string& routing) const;
  std::shared_ptr<Counter> CounterOf(const std::string& routing);
  // Forgets connections with nothing queued (their counters may live on in
  // callbacks and reservations still to go; those hold their own reference).
  void Sweep();

  const uint64_t per_connection_;
  const uint64_t per_node_;
  std::shared_ptr<Counter> node_ = std::make_shared<Counter>(0);
  std::unordered_map<std::string, std::shared_ptr<Counter>> connections_;
  size_t sweep_at_ = 1024;
};

}  // namespace kv::node
