// Logging: one line per event to stderr, with level, time and source location.
//
//   KV_LOG(kWarn) << "torn tail in " << path << " at " << offset;
//
// The line is assembled in a local buffer and written with one write(2), so
// lines from different threads never interleave. Thread-safe.
// KV_CHECK(cond) << "why"; aborts the process when an invariant is broken:
// for bugs, never for bad input (bad input gets a Status).
#pragma once

#include <cstdint>
#include <sstream>

namespace kv {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarn = 2, kError = 3, kFatal = 4 };

// Lines below this level are dropped. Default kInfo; KV_LOG_LEVEL=debug|info|warn|error
// in the environment overrides it at start.
void SetLogLevel(LogLevel level);
LogLevel GetLogLevel();
// A prefix for every line (for example "node 2"), set once at start.
void SetLogPrefix(const std::string& prefix);

// For the n-th occurrence of a kind of bad input: true for the first few,
// then one in a thousand, so that a misbehaving peer cannot flood the log.
inline bool ShouldLogSampled(uint64_t n) { return n <= 5 || n % 1000 == 0; }

class LogLine {
 public:
  LogLine(LogLevel level, const char* file, int line);
  ~LogLine();  // writes the line; aborts after a kFatal line
  LogLine(const LogLine&) = delete;
  LogLine& operator=(const LogLine&) = delete;
  std::ostream& stream() { return out_; }

 private:
  LogLevel level_;
  std::ostringstream out_;
};

// Lets KV_LOG/KV_CHECK expand to an expression whose stream part is skipped
// entirely when the line is not logged.
struct LogVoidify {
  void operator&(std::ostream&) {}
};

}  // namespace kv

#define KV_LOG(level)                           \
  (::kv::LogLevel::level < ::kv::GetLogLevel()) \
      ? (void)0                                 \
      : ::kv::LogVoidify() & ::kv::LogLine(::kv::LogLevel::level, __FILE__, __LINE__).stream()

#define KV_CHECK(cond)                                                                             \
  (cond) ? (void)0                                                                                 \
         : ::kv::LogVoidify() & ::kv::LogLine(::kv::LogLevel::kFatal, __FILE__, __LINE__).stream() \
                                    << "check failed: " #cond " "
