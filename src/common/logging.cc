#include "common/logging.h"

#include <time.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>

namespace kv {

namespace {

LogLevel LevelFromEnv() {
  const char* env = std::getenv("KV_LOG_LEVEL");
  if (env == nullptr) return LogLevel::kInfo;
  if (std::strcmp(env, "debug") == 0) return LogLevel::kDebug;
  if (std::strcmp(env, "warn") == 0) return LogLevel::kWarn;
  if (std::strcmp(env, "error") == 0) return LogLevel::kError;
  return LogLevel::kInfo;
}

std::atomic<int> g_level{static_cast<int>(LevelFromEnv())};
std::mutex g_prefix_mu;
std::string g_prefix;  // guarded by g_prefix_mu

const char* LevelName(LogLevel level) {
  switch (level) {
    case LogLevel::kDebug:
      return "D";
    case LogLevel::kInfo:
      return "I";
    case LogLevel::kWarn:
      return "W";
    case LogLevel::kError:
      return "E";
    case LogLevel::kFatal:
      return "F";
  }
  return "?";
}

}  // namespace

void SetLogLevel(LogLevel level) { g_level.store(static_cast<int>(level)); }
LogLevel GetLogLevel() { return static_cast<LogLevel>(g_level.load(std::memory_order_relaxed)); }

void SetLogPrefix(const std::string& prefix) {
  std::lock_guard<std::mutex> lock(g_prefix_mu);
  g_prefix = prefix;
}

LogLine::LogLine(LogLevel level, const char* file, int line) : level_(level) {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  tm local{};
  localtime_r(&ts.tv_sec, &local);
  char when[32];
  strftime(when, sizeof when, "%H:%M:%S", &local);
  const char* base = std::strrchr(file, '/');
  char millis[24];
  snprintf(millis, sizeof millis, ".%03ld", ts.tv_nsec / 1000000);
  out_ << LevelName(level) << ' ' << when << millis;
  {
    std::lock_guard<std::mutex> lock(g_prefix_mu);
    if (!g_prefix.empty()) out_ << ' ' << g_prefix;
  }
  out_ << ' ' << (base ? base + 1 : file) << ':' << line << "] ";
}

LogLine::~LogLine() {
  out_ << '\n';
  const std::string s = out_.str();
  // One write per line keeps lines whole across threads; a short write to
  // stderr is not worth retrying.
  ssize_t ignored = ::write(STDERR_FILENO, s.data(), s.size());
  (void)ignored;
  if (level_ == LogLevel::kFatal) std::abort();
}

}  // namespace kv
