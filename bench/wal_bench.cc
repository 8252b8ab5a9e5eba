// wal_bench: what group commit buys on this machine's disk.
//
// Measures, in one run and on one disk:
//   - a raw loop of "write 128 bytes, fdatasync" on an appended file, on a
//     preallocated (fallocate) file and on a zero-filled file: the cost of one
//     sync per entry;
//   - the WAL with 1, 8 and 64 concurrent writers, each appending one
//     128-byte entry per batch and waiting until it is durable.
// For each: entries per second, syncs per second, entries per sync, and the
// latency of one durable append (mean, p50, p99). Virtual disks drift, so the
// cases run interleaved in short rounds and each line sums all its rounds.
//
// Usage: wal_bench [--dir=PATH] [--seconds=N] [--rounds=R]
//   --dir      where to put the files (default ./wal_bench_data; removed after)
//   --seconds  how long each case runs in all (default 5)
//   --rounds   how many slices each case's time is cut into (default 5)
// Not a test: ctest never runs it.

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "storage/env.h"
#include "storage/wal.h"

namespace kv::storage {
namespace {

using Clock = std::chrono::steady_clock;

constexpr size_t kEntryBytes = 128;
constexpr uint64_t kRawFileBytes = 64ull << 20;

struct Result {
  std::string name;
  uint64_t entries = 0;
  uint64_t syncs = 0;
  double seconds = 0;
  std::vector<double> latencies_us;  // one per durable append
};

void Add(const Result& round, Result* total) {
  total->name = round.name;
  total->entries += round.entries;
  total->syncs += round.syncs;
  total->seconds += round.seconds;
  total->latencies_us.insert(total->latencies_us.end(), round.latencies_us.begin(),
                             round.latencies_us.end());
}

void Print(Result r) {
  std::sort(r.latencies_us.begin(), r.latencies_us.end());
  auto pct = [&r](double p) {
    if (r.latencies_us.empty()) return 0.0;
    return r.latencies_us[static_cast<size_t>(p * (r.latencies_us.size() - 1))];
  };
  double mean = 0;
  for (double l : r.latencies_us) mean += l;
  if (!r.latencies_us.empty()) mean /= r.latencies_us.size();
  std::printf("%-28s %12.0f %10.0f %9.1f %10.1f %10.1f %10.1f %10.1f\n", r.name.c_str(),
              r.entries / r.seconds, r.syncs / r.seconds,
              r.syncs ? static_cast<double>(r.entries) / r.syncs : 0.0,
              r.syncs ? r.seconds * 1e6 / r.syncs : 0.0, mean, pct(0.5), pct(0.99));
}

double Micros(Clock::duration d) { return std::chrono::duration<double, std::micro>(d).count(); }

enum class RawFile { kAppended, kFallocated, kZeroFilled };

// One fdatasync per 128-byte write, the way a WAL without group commit works.
Result RawSyncLoop(const std::string& dir, RawFile kind, double seconds) {
  const char* names[] = {"raw fdatasync, appended", "raw fdatasync, fallocated",
                         "raw fdatasync, zero-filled"};
  Result r;
  r.name = names[static_cast<int>(kind)];
  const std::string path = dir + "/raw";
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    std::perror("open");
    return r;
  }
  if (kind == RawFile::kFallocated && ::posix_fallocate(fd, 0, kRawFileBytes) != 0) {
    std::perror("fallocate");
  }
  if (kind == RawFile::kZeroFilled) {
    const std::string zeros(1 << 20, '\0');
    for (uint64_t off = 0; off < kRawFileBytes; off += zeros.size()) {
      if (::pwrite(fd, zeros.data(), zeros.size(), static_cast<off_t>(off)) < 0) std::perror("w");
    }
  }
  ::fsync(fd);
  const std::string entry(kEntryBytes, 'r');
  const auto start = Clock::now();
  const auto deadline = start + std::chrono::duration<double>(seconds);
  uint64_t off = 0;
  while (Clock::now() < deadline && off + entry.size() < kRawFileBytes) {
    const auto t0 = Clock::now();
    if (::pwrite(fd, entry.data(), entry.size(), static_cast<off_t>(off)) < 0 ||
        ::fdatasync(fd) != 0) {
      std::perror("write/fdatasync");
      break;
    }
    r.latencies_us.push_back(Micros(Clock::now() - t0));
    off += entry.size();
    ++r.entries;
    ++r.syncs;
  }
  r.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  ::close(fd);
  ::unlink(path.c_str());
  return r;
}

void RemoveDirContents(Env* env, const std::string& dir) {
  std::vector<std::string> names;
  if (!env->ListDir(dir, &names).ok()) return;
  for (const std::string& n : names) env->RemoveFile(dir + "/" + n);
}

// `writers` threads, each appending one entry per batch and waiting for it.
Result WalLoop(const std::string& dir, int writers, double seconds) {
  Result r;
  r.name = "wal, " + std::to_string(writers) + " writer" + (writers > 1 ? "s" : "");
  Env* env = Env::Posix();
  const std::string wal_dir = dir + "/wal";
  RemoveDirContents(env, wal_dir);
  std::unique_ptr<Wal> wal;
  Status s = Wal::Open(
      env, wal_dir, WalOptions(), [](const Record&, const Location&) { return Status::OK(); },
      &wal);
  if (!s.ok()) {
    std::fprintf(stderr, "open: %s\n", s.ToString().c_str());
    return r;
  }
  std::vector<std::vector<double>> latencies(writers);
  std::atomic<bool> failed{false};
  const uint64_t syncs_before = wal->sync_count();
  const auto start = Clock::now();
  const auto deadline = start + std::chrono::duration<double>(seconds);
  std::vector<std::thread> threads;
  for (int w = 0; w < writers; ++w) {
    threads.emplace_back([&, w] {
      raft::Entry e;
      e.term = 1;
      e.data = std::string(kEntryBytes, static_cast<char>('a' + w % 26));
      while (Clock::now() < deadline && !failed) {
        ++e.index;
        WriteBatch batch;
        batch.AppendEntries(static_cast<raft::GroupId>(w + 1), {e});
        const auto t0 = Clock::now();
        if (!wal->Write(&batch).ok()) failed = true;
        latencies[w].push_back(Micros(Clock::now() - t0));
      }
    });
  }
  for (std::thread& t : threads) t.join();
  r.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  r.syncs = wal->sync_count() - syncs_before;
  for (const auto& l : latencies) {
    r.entries += l.size();
    r.latencies_us.insert(r.latencies_us.end(), l.begin(), l.end());
  }
  wal.reset();
  RemoveDirContents(env, wal_dir);
  ::rmdir(wal_dir.c_str());
  if (failed) std::fprintf(stderr, "%s: a write failed\n", r.name.c_str());
  return r;
}

}  // namespace
}  // namespace kv::storage

int main(int argc, char** argv) {
  std::string dir = "./wal_bench_data";
  double seconds = 5;
  int rounds = 5;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg.rfind("--dir=", 0) == 0) {
      dir = arg.substr(6);
    } else if (arg.rfind("--seconds=", 0) == 0) {
      seconds = std::atof(arg.c_str() + 10);
    } else if (arg.rfind("--rounds=", 0) == 0) {
      rounds = std::max(1, std::atoi(arg.c_str() + 9));
    } else {
      std::fprintf(stderr, "usage: %s [--dir=PATH] [--seconds=N] [--rounds=R]\n", argv[0]);
      return 2;
    }
  }
  using namespace kv::storage;
  if (!Env::Posix()->CreateDir(dir).ok()) {
    std::fprintf(stderr, "cannot create %s\n", dir.c_str());
    return 1;
  }
  std::printf("%d-byte entries, %.1f s per case in %d interleaved rounds, files in %s\n",
              static_cast<int>(kEntryBytes), seconds, rounds, dir.c_str());
  const double slice = seconds / rounds;
  const RawFile kinds[] = {RawFile::kAppended, RawFile::kFallocated, RawFile::kZeroFilled};
  const int writer_counts[] = {1, 8, 64};
  std::vector<Result> totals(6);
  for (int round = 0; round < rounds; ++round) {
    for (int k = 0; k < 3; ++k) Add(RawSyncLoop(dir, kinds[k], slice), &totals[k]);
    for (int w = 0; w < 3; ++w) Add(WalLoop(dir, writer_counts[w], slice), &totals[3 + w]);
  }
  std::printf("%-28s %12s %10s %9s %10s %10s %10s %10s\n", "case", "entries/s", "syncs/s",
              "per sync", "us/sync", "mean us", "p50 us", "p99 us");
  for (const Result& r : totals) Print(r);
  auto rate = [](const Result& r) { return r.entries / r.seconds; };
  std::printf(
      "\nwal with 64 writers vs one fdatasync per entry (fallocated file): %.1fx entries/s\n",
      rate(totals[5]) / rate(totals[1]));
  ::rmdir(dir.c_str());
  return 0;
}
