#include "net/event_loop.h"

#include <errno.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <cstring>
#include <string>

#include "common/logging.h"

namespace kv::net {

namespace {
Status Errno(const char* what) {
  return Status::IOError(std::string(what) + ": " + strerror(errno));
}
}  // namespace

EventLoop::~EventLoop() {
  for (int fd : timer_fds_) close(fd);
  if (wake_fd_ >= 0) close(wake_fd_);
  if (epoll_fd_ >= 0) close(epoll_fd_);
}

Status EventLoop::Init() {
  epoll_fd_ = epoll_create1(EPOLL_CLOEXEC);
  if (epoll_fd_ < 0) return Errno("epoll_create1");
  wake_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (wake_fd_ < 0) return Errno("eventfd");
  return WatchFd(wake_fd_, [this] {
    uint64_t n = 0;
    while (read(wake_fd_, &n, sizeof n) == sizeof n) {
    }
    RunPosted();
  });
}

Status EventLoop::WatchFd(int fd, Callback on_readable) {
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = watches_.size();
  if (epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &ev) != 0) return Errno("epoll_ctl");
  watches_.push_back(Watch{fd, std::move(on_readable), false});
  return Status::OK();
}

Status EventLoop::WatchZmq(int zmq_fd, std::function<bool()> drain) {
  zmq_drains_.push_back(drain);
  return WatchFd(zmq_fd, [drain = std::move(drain)] { drain(); });
}

Status EventLoop::AddTimer(std::chrono::milliseconds period, Callback fn) {
  int fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
  if (fd < 0) return Errno("timerfd_create");
  itimerspec spec{};
  spec.it_interval.tv_sec = period.count() / 1000;
  spec.it_interval.tv_nsec = (period.count() % 1000) * 1000000;
  spec.it_value = spec.it_interval;
  if (timerfd_settime(fd, 0, &spec, nullptr) != 0) {
    close(fd);
    return Errno("timerfd_settime");
  }
  timer_fds_.push_back(fd);
  Status s = WatchFd(fd, [fd, fn = std::move(fn)] {
    uint64_t expirations = 0;
    if (read(fd, &expirations, sizeof expirations) == sizeof expirations) {
      // Missed expirations (a slow round) are not made up: one call.
      fn();
    }
  });
  watches_.back().is_timer = true;
  return s;
}

void EventLoop::Post(Callback fn) {
  bool first = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    first = posted_.empty();
    posted_.push_back(std::move(fn));
  }
  // Work already waiting has woken the loop, which reads the eventfd before
  // it takes what was posted (RunPosted): one system call and one wake-up
  // per batch of posts, not per post.
  if (first) Wake();
}

void EventLoop::Wake() {
  const uint64_t one = 1;
  // A full counter (never in practice) still leaves the fd readable.
  ssize_t ignored = write(wake_fd_, &one, sizeof one);
  (void)ignored;
}

void EventLoop::RunPosted() {
  std::vector<Callback> batch;
  {
    std::lock_guard<std::mutex> lock(mu_);
    batch.swap(posted_);
  }
  for (auto& fn : batch) fn();
}

void EventLoop::Stop() {
  stop_ = true;
  Wake();
}

void EventLoop::Run() {
  constexpr int kMaxEvents = 64;
  epoll_event events[kMaxEvents];
  // Whether the last pass found input: then the next one only looks for
  // ready timers and posted work (epoll without waiting) before draining
  // again, so that neither waits for the input to stop coming.
  bool busy = false;
  while (!stop_) {
    const int n = epoll_wait(epoll_fd_, events, kMaxEvents, busy ? 0 : -1);
    if (n < 0 && errno != EINTR) {
      KV_LOG(kError) << "epoll_wait: " << strerror(errno);
      return;
    }
    for (int i = 0; i < n; ++i) watches_[events[i].data.u64].fn();
    for (auto& fn : after_round_) fn();
    busy = false;
    for (auto& drain : zmq_drains_) busy |= drain();
  }
}

}  // namespace kv::net
