#include "node/reply_budget.h"

#include <algorithm>
#include <iterator>
#include <utility>

namespace kv::node {

namespace {

// A reply ZeroMQ sends from our buffer, and what it is charged to.
struct Held {
  std::string bytes;
  std::shared_ptr<ReplyBudget::Reservation> charge;
};

// ZeroMQ's I/O thread, when it is done with the message.
void Release(void* /*data*/, void* hint) { delete static_cast<Held*>(hint); }

}  // namespace

ReplyBudget::Reservation::Reservation(const ReplyBudget& budget,
                                      std::shared_ptr<Counter> connection, uint64_t bytes)
    : per_connection_(budget.per_connection_),
      per_node_(budget.per_node_),
      connection_(std::move(connection)),
      node_(budget.node_) {
  bytes_ = bytes;
  connection_->fetch_add(bytes, std::memory_order_relaxed);
  node_->fetch_add(bytes, std::memory_order_relaxed);
}

ReplyBudget::Reservation::~Reservation() {
  const uint64_t bytes = bytes_.load(std::memory_order_relaxed);
  connection_->fetch_sub(bytes, std::memory_order_relaxed);
  node_->fetch_sub(bytes, std::memory_order_relaxed);
}

bool ReplyBudget::Reservation::TryAdd(uint64_t bytes) {
  if (!ReplyBudget::Allows(connection_->load(std::memory_order_relaxed),
                           node_->load(std::memory_order_relaxed), per_connection_, per_node_)) {
    return false;
  }
  bytes_.fetch_add(bytes, std::memory_order_relaxed);
  connection_->fetch_add(bytes, std::memory_order_relaxed);
  node_->fetch_add(bytes, std::memory_order_relaxed);
  return true;
}

std::string ReplyBudget::Reservation::Refusal() const {
  return ReplyBudget::Refusal(connection_->load(std::memory_order_relaxed),
                              node_->load(std::memory_order_relaxed));
}

std::string ReplyBudget::Refusal(uint64_t connection_bytes, uint64_t node_bytes) {
  return std::to_string(connection_bytes >> 20) + " MiB of replies to this connection and " +
         std::to_string(node_bytes >> 20) +
         " MiB to all are unread or being read; read them, then retry after a backoff";
}

uint64_t ReplyBudget::connection_bytes(const std::string& routing) const {
  auto it = connections_.find(routing);
  return it == connections_.end() ? 0 : it->second->load(std::memory_order_relaxed);
}

bool ReplyBudget::Allows(const std::string& routing) const {
  return Allows(connection_bytes(routing), node_->load(std::memory_order_relaxed), per_connection_,
                per_node_);
}

std::string ReplyBudget::Refusal(const std::string& routing) const {
  return Refusal(connection_bytes(routing), node_->load(std::memory_order_relaxed));
}

std::shared_ptr<ReplyBudget::Counter> ReplyBudget::CounterOf(const std::string& routing) {
  if (connections_.size() >= sweep_at_) Sweep();
  auto& counter = connections_[routing];
  if (counter == nullptr) counter = std::make_shared<Counter>(0);
  return counter;
}

std::shared_ptr<ReplyBudget::Reservation> ReplyBudget::Reserve(const std::string& routing,
                                                               uint64_t bytes) {
  return std::make_shared<Reservation>(*this, CounterOf(routing), bytes);
}

zmq::message_t ReplyBudget::Message(const std::string& routing, std::string bytes) {
  if (bytes.size() < kTrackedBytes) return zmq::message_t(bytes.data(), bytes.size());
  const uint64_t size = bytes.size();
  return Message(std::move(bytes), Reserve(routing, size));
}

zmq::message_t ReplyBudget::Message(std::string bytes, std::shared_ptr<Reservation> charge) {
  auto* held = new Held{std::move(bytes), std::move(charge)};
  return zmq::message_t(held->bytes.data(), held->bytes.size(), Release, held);
}

ReplyBudget::Share ReplyBudget::ShareOf(const std::string& routing) {
  Share share;
  share.budget_ = this;
  share.connection_ = CounterOf(routing);
  return share;
}

bool ReplyBudget::Share::HasRoom() const {
  return ReplyBudget::Allows(connection_->load(std::memory_order_relaxed),
                             budget_->node_->load(std::memory_order_relaxed),
                             budget_->per_connection_, budget_->per_node_);
}

std::shared_ptr<ReplyBudget::Reservation> ReplyBudget::Share::Charge(uint64_t bytes) const {
  return std::make_shared<Reservation>(*budget_, connection_, bytes);
}

void ReplyBudget::Sweep() {
  for (auto it = connections_.begin(); it != connections_.end();) {
    it = it->second->load(std::memory_order_relaxed) == 0 ? connections_.erase(it) : std::next(it);
  }
  // Sweep again when the map has doubled over what is left.
  sweep_at_ = std::max<size_t>(1024, connections_.size() * 2);
}

}  // namespace kv::node
