// Helpers shared by the storage tests.
#pragma once

#include <cstdint>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "common/logging.h"
#include "raft/types.h"
#include "storage/record.h"
#include "storage/wal.h"

namespace kv::storage::testing {

inline raft::Entry MakeEntry(raft::Index index, raft::Term term, std::string data = "") {
  raft::Entry e;
  e.index = index;
  e.term = term;
  e.data = data.empty() ? "e" + std::to_string(index) + "t" + std::to_string(term) : data;
  return e;
}

inline std::string RandomData(std::mt19937_64* rng, size_t n) {
  std::string s(n, '\0');
  for (char& c : s) c = static_cast<char>((*rng)() & 0xff);
  return s;
}

// A number from the environment (for soak runs), or `fallback`.
inline uint64_t EnvCount(const char* name, uint64_t fallback) {
  const char* v = std::getenv(name);
  return v == nullptr ? fallback : std::strtoull(v, nullptr, 10);
}

// Silences the expected warnings of a test while it lives.
struct QuietLog {
  QuietLog() : saved(GetLogLevel()) { SetLogLevel(LogLevel::kFatal); }
  ~QuietLog() { SetLogLevel(saved); }
  QuietLog(const QuietLog&) = delete;
  QuietLog& operator=(const QuietLog&) = delete;
  LogLevel saved;
};

// A Wal::ReplayFn that keeps every record it is given.
struct Collector {
  std::vector<Record> records;
  std::vector<Location> locations;
  Wal::ReplayFn Fn() {
    return [this](const Record& r, const Location& where) {
      records.push_back(r);
      locations.push_back(where);
      return Status::OK();
    };
  }
};

inline bool SameRecord(const Record& a, const Record& b) {
  if (a.type != b.type || a.group != b.group) return false;
  switch (a.type) {
    case RecordType::kEntry:
      return a.entry == b.entry;
    case RecordType::kHardState:
      return a.hard_state == b.hard_state;
    case RecordType::kSnapshot:
      return a.snapshot == b.snapshot && a.replace_log == b.replace_log;
    case RecordType::kSegmentHeader:
      return a.seq == b.seq && a.checkpoint_bytes == b.checkpoint_bytes;
    case RecordType::kWriteStart:
      return a.seq == b.seq;
  }
  return false;
}

}  // namespace kv::storage::testing
