#include "node/worker_pool.h"

#include <string>

#include "common/thread_name.h"

namespace kv::node {

WorkerPool::WorkerPool(int threads) {
  for (int i = 0; i < std::max(1, threads); ++i) {
    threads_.emplace_back([this, i] {
      NameThisThread("kv-worker-" + std::to_string(i));
      Work();
    });
  }
}

WorkerPool::~WorkerPool() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  for (auto& t : threads_) t.join();
}

void WorkerPool::Post(uint64_t strand, std::function<void()> task) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (abandoned_) return;
    auto& q = queues_[strand];
    q.push_back(std::move(task));
    if (q.size() == 1 && !running_[strand]) runnable_.push_back(strand);
  }
  cv_.notify_one();
}

bool WorkerPool::Claim(uint64_t strand) {
  std::lock_guard<std::mutex> lock(mu_);
  if (abandoned_) return false;
  auto q = queues_.find(strand);
  if (q != queues_.end() && !q->second.empty()) return false;
  bool& running = running_[strand];
  if (running) return false;
  running = true;
  return true;
}

void WorkerPool::Release(uint64_t strand) {
  bool posted = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    running_[strand] = false;
    auto q = queues_.find(strand);
    posted = q != queues_.end() && !q->second.empty();
    if (posted) runnable_.push_back(strand);
  }
  if (posted) cv_.notify_one();
}

void WorkerPool::Abandon() {
  std::lock_guard<std::mutex> lock(mu_);
  abandoned_ = true;
  queues_.clear();
  runnable_.clear();
}

void WorkerPool::Work() {
  std::unique_lock<std::mutex> lock(mu_);
  while (true) {
    cv_.wait(lock, [this] { return !runnable_.empty() || stopping_; });
    if (runnable_.empty()) return;  // stopping, and nothing left to run
    const uint64_t strand = runnable_.front();
    runnable_.pop_front();
    running_[strand] = true;
    // Take everything queued on the strand: one wake-up, many tasks.
    std::deque<std::function<void()>> batch;
    batch.swap(queues_[strand]);
    lock.unlock();
    for (auto& task : batch) {
      if (abandoned_) break;
      task();
    }
    lock.lock();
    running_[strand] = false;
    if (!queues_[strand].empty()) {
      runnable_.push_back(strand);
      cv_.notify_one();
    }
  }
}

}  // namespace kv::node
