#include "node/reply_budget.h"

#include <catch2/catch.hpp>
#include <string>
#include <thread>

namespace kv::node {

TEST_CASE("ReplyBudget: large replies and reservations count until their last reference goes") {
  ReplyBudget budget(10000, 15000);
  {
    zmq::message_t reply = budget.Message("a", std::string(6000, 'x'));
    CHECK(reply.size() == 6000);
    CHECK(budget.Allows("a"));  // 6000 of 10000
    auto scan = budget.Reserve("a", 5000);
    CHECK_FALSE(budget.Allows("a"));
    CHECK_THAT(budget.Refusal("a"), Catch::Contains("unread"));
    auto copy = scan;
    scan.reset();
    CHECK_FALSE(budget.Allows("a"));  // the copy still holds it
    copy.reset();
    CHECK(budget.Allows("a"));
    // Small replies are the send queue's to bound, not the budget's.
    zmq::message_t small = budget.Message("a", std::string(ReplyBudget::kTrackedBytes - 1, 'x'));
    auto more = budget.Reserve("a", 3999);
    CHECK(budget.Allows("a"));  // 9999
    CHECK(more->TryAdd(1));     // 9999 < 10000: one more read may claim
    CHECK_FALSE(budget.Allows("a"));
  }
  // ZeroMQ dropped the message (it was never sent): everything is given back.
  auto probe = budget.Reserve("a", 0);
  CHECK(probe->TryAdd(10000));
  CHECK_FALSE(probe->TryAdd(1));
}

TEST_CASE("ReplyBudget: over the node's budget, only connections holding nothing may read") {
  ReplyBudget budget(1000, 1500);
  auto a = budget.Reserve("a", 900);
  auto b = budget.Reserve("b", 700);  // the node holds 1600
  CHECK_FALSE(budget.Allows("a"));
  CHECK_FALSE(budget.Allows("b"));
  CHECK(budget.Allows("c"));
  auto get = budget.Reserve("c", 0);
  CHECK(get->TryAdd(5000));  // one read of a connection holding nothing goes through
  CHECK_FALSE(budget.Allows("c"));
  auto next = budget.Reserve("c", 0);
  CHECK_FALSE(next->TryAdd(10));
  a.reset();
  b.reset();
  get.reset();
  CHECK(budget.Allows("a"));
  CHECK(next->TryAdd(10));
}

TEST_CASE("ReplyBudget: reservations dropped on other threads give their bytes back") {
  ReplyBudget budget(1 << 20, 1 << 30);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    std::vector<std::shared_ptr<ReplyBudget::Reservation>> held;
    for (int i = 0; i < 1000; ++i) held.push_back(budget.Reserve("c" + std::to_string(i % 3), 7));
    threads.emplace_back([held = std::move(held)]() mutable { held.clear(); });
  }
  for (std::thread& t : threads) t.join();
  for (int i = 0; i < 3; ++i) {
    auto r = budget.Reserve("c" + std::to_string(i), 0);
    CHECK(r->TryAdd((1 << 20) - 1));  // nothing left of the 28,000 bytes
  }
}

}  // namespace kv::node
