// EventLoop: one thread's epoll loop over file descriptors, periodic timers
// (timerfd) and work posted from other threads (eventfd).
//
// ZeroMQ sockets are watched through their ZMQ_FD, which signals edge-
// triggered: it fires when the socket's state changes, not while messages
// wait. Sending on a socket can swallow the edge that announced new input,
// so each pass of the loop runs the ready callbacks (timers, posted work,
// readable fds), then the AfterEachRound callbacks (which may send), then
// every drain; it sleeps only after a pass whose drains found every socket
// empty. A drain may stop early (a bounded slice of work per pass) and
// report input: the next pass comes at once, after due timers and posted
// work, so under any load ticks fire and replies go out every pass.
// Thread safety: Post and Stop may be called from any thread; everything else
// only from the loop thread (or before Run).
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <mutex>
#include <vector>

#include "common/status.h"

namespace kv::net {

// The wall-clock time one drain may read for before it yields the pass (a
// drain's count and byte limits bound it too). Wall time, not work: a loop
// thread that waits for a CPU gets smaller slices, so it still ticks and
// sends heartbeats every few milliseconds of its own. A drain reads at least
// one message whatever the clock says: one that found none would let the
// loop sleep on an edge-triggered fd with input waiting.
class DrainSlice {
 public:
  static constexpr std::chrono::milliseconds kLength{5};
  bool over() const { return std::chrono::steady_clock::now() >= end_; }

 private:
  std::chrono::steady_clock::time_point end_ = std::chrono::steady_clock::now() + kLength;
};

class EventLoop {
 public:
  using Callback = std::function<void()>;

  EventLoop() = default;
  ~EventLoop();
  EventLoop(const EventLoop&) = delete;
  EventLoop& operator=(const EventLoop&) = delete;

  // Creates the epoll, eventfd and their bookkeeping. IOError on failure.
  Status Init();

  // Calls on_readable when fd becomes readable (level-triggered).
  Status WatchFd(int fd, Callback on_readable);
  // Watches a ZeroMQ socket's ZMQ_FD. drain reads what is waiting (all of
  // it, or a bounded slice) and returns whether it found anything.
  Status WatchZmq(int zmq_fd, std::function<bool()> drain);
  // Calls fn every `period`, first after one period.
  Status AddTimer(std::chrono::milliseconds period, Callback fn);
  // Calls fn once after each round of events (for example, to flush output).
  void AfterEachRound(Callback fn) { after_round_.push_back(std::move(fn)); }

  // Runs fn on the loop thread soon. Thread-safe.
  void Post(Callback fn);
  // Runs until Stop. Returns at once if Stop was called before.
  void Run();
  // Makes Run return after the current round. Thread-safe.
  void Stop();

 private:
  void Wake();
  void RunPosted();

  int epoll_fd_ = -1;
  int wake_fd_ = -1;
  std::vector<int> timer_fds_;
  struct Watch {
    int fd;
    Callback fn;
    bool is_timer;
  };
  std::vector<Watch> watches_;  // epoll data holds the index
  std::vector<std::function<bool()>> zmq_drains_;
  std::vector<Callback> after_round_;

  std::mutex mu_;
  std::vector<Callback> posted_;   // guarded by mu_
  std::atomic<bool> stop_{false};  // read every round, so that Stop works under any load
};

}  // namespace kv::net
