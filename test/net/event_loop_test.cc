#include "net/event_loop.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <future>

namespace kv::net {
namespace {

using namespace std::chrono_literals;

TEST_CASE("EventLoop: Stop ends Run even while input never stops coming") {
  EventLoop loop;
  REQUIRE(loop.Init().ok());
  // A watched descriptor whose drain always finds more: a node under a load
  // it never catches up with.
  const int fd = eventfd(1, EFD_NONBLOCK);
  REQUIRE(fd >= 0);
  std::atomic<uint64_t> drains{0};
  std::atomic<bool> give_up{false};  // only if Stop failed: lets the test end
  REQUIRE(loop.WatchZmq(fd,
                        [&] {
                          ++drains;
                          return !give_up.load();
                        })
              .ok());
  auto run = std::async(std::launch::async, [&] { loop.Run(); });
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (drains.load() < 1000 && std::chrono::steady_clock::now() < deadline) {
    run.wait_for(1ms);  // the loop is spinning; nothing to wait on but time
  }
  REQUIRE(drains.load() >= 1000);
  loop.Stop();
  const bool stopped = run.wait_for(5s) == std::future_status::ready;
  give_up = true;
  run.wait();
  close(fd);
  CHECK(stopped);
}

TEST_CASE("EventLoop: timers and posted work run while input never stops coming") {
  EventLoop loop;
  REQUIRE(loop.Init().ok());
  const int fd = eventfd(1, EFD_NONBLOCK);
  REQUIRE(fd >= 0);
  std::atomic<bool> give_up{false};  // only if the timer never fired: lets the test end
  REQUIRE(loop.WatchZmq(fd, [&] { return !give_up.load(); }).ok());
  // The timer posts work, and the posted work stops the loop: both must
  // run although every pass finds more input.
  std::atomic<int> ticks{0};
  REQUIRE(loop.AddTimer(5ms,
                        [&] {
                          if (++ticks == 3) loop.Post([&] { loop.Stop(); });
                        })
              .ok());
  auto run = std::async(std::launch::async, [&] { loop.Run(); });
  const bool stopped = run.wait_for(10s) == std::future_status::ready;
  give_up = true;
  loop.Stop();
  run.wait();
  close(fd);
  CHECK(ticks.load() >= 3);
  CHECK(stopped);
}

}  // namespace
}  // namespace kv::net
