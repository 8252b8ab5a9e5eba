#include "node/reply_budget.h"

#include <algorithm>
#include <iterator>
#include <utility>

namespace kv::node {

namespace {

using Counter = std::atomic<uint64_t>;

// Bytes charged to a connection and to the node, given back when it is destroyed.
struct Charge {
  Charge(std::shared_ptr<Counter> conn, std::shared_ptr<Counter> all, uint64_t n)
      : connection(std::move(conn)), node(std::move(all)), bytes(n) {
    connection->fetch_add(bytes, std::memory_order_relaxed);
    node->fetch_add(bytes, std::memory_order_relaxed);
  }
  ~Charge() {
    connection->fetch_sub(bytes, std::memory_order_relaxed);
    node->fetch_sub(bytes, std::memory_order_relaxed);
  }
  Charge(const Charge&) = delete;
  Charge& operator=(const Charge&) = delete;
  std::shared_ptr<Counter> connection;
  std::shared_ptr<Counter> node;
  uint64_t bytes;
};

// A reply ZeroMQ sends from our buffer, and the counters it is charged to.
struct Held {
  std::string bytes;
  Charge charge;
};

// ZeroMQ's I/O thread, when it is done with the message.
void Release(void* /*data*/, void* hint) { delete static_cast<Held*>(hint); }

}  // namespace

uint64_t ReplyBudget::connection_bytes(const std::string& routing) const {
  auto it = connections_.find(routing);
  return it == connections_.end() ? 0 : it->second->load(std::memory_order_relaxed);
}

bool ReplyBudget::Allows(const std::string& routing) const {
  return connection_bytes(routing) < per_connection_ && node_bytes() < per_node_;
}

std::shared_ptr<ReplyBudget::Counter> ReplyBudget::CounterOf(const std::string& routing) {
  if (connections_.size() >= sweep_at_) Sweep();
  auto& counter = connections_[routing];
  if (counter == nullptr) counter = std::make_shared<Counter>(0);
  return counter;
}

zmq::message_t ReplyBudget::Message(const std::string& routing, std::string bytes) {
  if (bytes.size() < kTrackedBytes) return zmq::message_t(bytes.data(), bytes.size());
  const uint64_t size = bytes.size();
  auto* held = new Held{std::move(bytes), {CounterOf(routing), node_, size}};
  return zmq::message_t(held->bytes.data(), held->bytes.size(), Release, held);
}

std::shared_ptr<const void> ReplyBudget::Reserve(const std::string& routing, uint64_t bytes) {
  return std::make_shared<const Charge>(CounterOf(routing), node_, bytes);
}

void ReplyBudget::Sweep() {
  for (auto it = connections_.begin(); it != connections_.end();) {
    it = it->second->load(std::memory_order_relaxed) == 0 ? connections_.erase(it) : std::next(it);
  }
  // Sweep again when the map has doubled over what is left.
  sweep_at_ = std::max<size_t>(1024, connections_.size() * 2);
}

}  // namespace kv::node
