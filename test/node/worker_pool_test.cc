#include "node/worker_pool.h"

#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

namespace kv::node {
namespace {

using namespace std::chrono_literals;

// A gate a task waits at until the test opens it.
class Gate {
 public:
  void Open() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      open_ = true;
    }
    cv_.notify_all();
  }
  void Wait() {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [this] { return open_; });
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool open_ = false;
};

// Opens the gate when the test leaves, passed or not, so that no worker
// waits at it while the pool joins.
struct OpenOnExit {
  Gate& gate;
  ~OpenOnExit() { gate.Open(); }
};

// Waits for `done` with a deadline; false if it never came.
bool WaitFor(const std::atomic<bool>& done, std::chrono::milliseconds limit = 10s) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (!done && std::chrono::steady_clock::now() < deadline) std::this_thread::yield();
  return done;
}

const auto kAlways = [] { return true; };

TEST_CASE("WorkerPool: a strand's tasks run one at a time, in order", "[worker_pool]") {
  std::vector<int> order;
  std::atomic<int> running{0};
  bool overlapped = false;
  {
    WorkerPool pool(4);
    for (int i = 0; i < 200; ++i) {
      pool.Post(7, [&, i] {
        if (running.fetch_add(1) != 0) overlapped = true;
        order.push_back(i);
        running.fetch_sub(1);
      });
    }
  }  // the destructor runs every task posted
  CHECK(!overlapped);
  REQUIRE(order.size() == 200);
  for (int i = 0; i < 200; ++i) CHECK(order[i] == i);
}

TEST_CASE("WorkerPool: RunHereIfIdle runs an idle strand's task on the caller's thread",
          "[worker_pool]") {
  WorkerPool pool(2);
  std::thread::id ran_on;
  auto task = [&] { ran_on = std::this_thread::get_id(); };
  REQUIRE(pool.RunHereIfIdle(1, kAlways, task));
  CHECK(ran_on == std::this_thread::get_id());
}

TEST_CASE("WorkerPool: RunHereIfIdle runs nothing when fits says no, and frees the strand",
          "[worker_pool]") {
  WorkerPool pool(2);
  bool ran = false;
  auto task = [&] { ran = true; };
  CHECK(!pool.RunHereIfIdle(
      1, [] { return false; }, task));
  CHECK(!ran);
  std::atomic<bool> posted_ran{false};
  pool.Post(1, [&] { posted_ran = true; });
  CHECK(WaitFor(posted_ran));
  CHECK(pool.RunHereIfIdle(1, kAlways, task));
  CHECK(ran);
}

TEST_CASE("WorkerPool: RunHereIfIdle refuses a strand with a task running or queued",
          "[worker_pool]") {
  Gate gate;
  OpenOnExit open_on_exit{gate};
  WorkerPool pool(2);
  std::atomic<bool> started{false}, second_ran{false};
  pool.Post(1, [&] {
    started = true;
    gate.Wait();
  });
  REQUIRE(WaitFor(started));
  bool ran_here = false;
  auto mark = [&] { ran_here = true; };
  CHECK(!pool.RunHereIfIdle(1, kAlways, mark));  // running on a worker
  pool.Post(1, [&] { second_ran = true; });
  CHECK(!pool.RunHereIfIdle(1, kAlways, mark));  // still running, and one queued
  CHECK(pool.RunHereIfIdle(2, kAlways, mark));   // another strand is free
  CHECK(ran_here);
  gate.Open();
  CHECK(WaitFor(second_ran));
}

TEST_CASE("WorkerPool: a task posted while one runs here waits for it, then runs on a worker",
          "[worker_pool]") {
  WorkerPool pool(2);
  std::atomic<bool> here_done{false}, posted_ran{false};
  bool ran_early = false, ran_after = false;
  auto task = [&] {
    // Another thread posts to the strand while it is claimed here: the task
    // must neither run beside this one nor be lost.
    std::thread poster([&] {
      pool.Post(3, [&] {
        ran_after = here_done.load();
        posted_ran = true;
      });
    });
    poster.join();
    // A worker free to run it has this long to do so wrongly.
    ran_early = WaitFor(posted_ran, 100ms);
    here_done = true;
  };
  REQUIRE(pool.RunHereIfIdle(3, kAlways, task));
  CHECK(!ran_early);
  REQUIRE(WaitFor(posted_ran));
  CHECK(ran_after);
}

TEST_CASE("WorkerPool: after Abandon nothing runs, here or on a worker", "[worker_pool]") {
  std::atomic<bool> ran{false};
  {
    WorkerPool pool(1);
    pool.Abandon();
    auto task = [&] { ran = true; };
    CHECK(!pool.RunHereIfIdle(1, kAlways, task));
    pool.Post(1, [&] { ran = true; });
  }  // joined: a task that was going to run has run
  CHECK(!ran);
}

}  // namespace
}  // namespace kv::node
