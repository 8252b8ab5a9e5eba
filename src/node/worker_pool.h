// WorkerPool: threads that run tasks in strands. Tasks posted to one strand
// run one at a time, in the order posted; different strands run in parallel.
// A node uses one strand per Raft group: each group's entries are applied in
// log order, groups side by side.
// Thread safety: Post may be called from any thread.
#pragma once

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <thread>
#include <vector>

namespace kv::node {

class WorkerPool {
 public:
  explicit WorkerPool(int threads);
  // Runs every task already posted (unless Abandon), then joins the threads.
  ~WorkerPool();
  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

  void Post(uint64_t strand, std::function<void()> task);
  // Runs task on the calling thread at once, in the strand's place, if the
  // strand has nothing queued or running and fits() (asked in the strand's
  // place too, so it may read the strand's state) says yes; returns false
  // (task not run) otherwise, or after Abandon. Saves a small task its two
  // thread hand-offs (a worker's wake-up, and the wake-up of whoever waits
  // for its result).
  template <typename Fits, typename F>
  bool RunHereIfIdle(uint64_t strand, const Fits& fits, F& task) {
    if (!Claim(strand)) return false;
    struct Releaser {
      WorkerPool* pool;
      uint64_t strand;
      ~Releaser() { pool->Release(strand); }  // even if task throws
    } releaser{this, strand};
    if (!fits()) return false;
    task();
    return true;
  }
  // Drops every task not started yet, now and from then on: a stopping node
  // need not finish applying (the log replays it at the next start) nor
  // answer anyone. Thread-safe.
  void Abandon();

 private:
  void Work();
  // Marks an idle strand running on the caller's thread; false if it is not
  // idle. Release ends that and lets a worker run what was posted meanwhile.
  bool Claim(uint64_t strand);
  void Release(uint64_t strand);

  std::mutex mu_;
  std::condition_variable cv_;
  std::map<uint64_t, std::deque<std::function<void()>>> queues_;  // guarded by mu_
  std::deque<uint64_t> runnable_;     // strands with tasks and no running worker; guarded by mu_
  std::map<uint64_t, bool> running_;  // guarded by mu_
  bool stopping_ = false;             // guarded by mu_
  std::atomic<bool> abandoned_{false};
  std::vector<std::thread> threads_;
};

}  // namespace kv::node
