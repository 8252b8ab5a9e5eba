// kvcheck: checks a history recorded by `kvload --history FILE` for
// linearizability and prints the verdict.
//
// Exit codes: 0 linearizable, 1 NOT linearizable, 2 usage or parse error,
// 3 unknown (a key's search budget was exhausted).

#include <CLI/CLI.hpp>
#include <cstdio>
#include <iostream>
#include <string>
#include <thread>

#include "kvcheck/checker.h"
#include "kvcheck/history.h"
#include "kvcheck/report.h"

namespace {

constexpr int kExitLinearizable = 0;
constexpr int kExitViolation = 1;
constexpr int kExitUsage = 2;
constexpr int kExitUnknown = 3;

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "kvcheck: check a kvload --history file for linearizability.\n"
      "Each key is checked as an independent register (put/get/delete/cas) with the\n"
      "Wing & Gong / Lowe search, memoized as in Porcupine. A scan is checked as a read\n"
      "of every key in the part of its range it covered, each in its key's history;\n"
      "a txn as the writes and reads it stands for on each key it names.\n"
      "Exit codes: 0 linearizable, 1 NOT linearizable, 2 usage or parse error,\n"
      "3 unknown (a key's search budget ran out)."};
  std::string path;
  bool json = false;
  bool verbose = false;
  bool no_explain = false;
  double key_timeout = 60;
  double total_timeout = 0;
  uint64_t max_steps = 0;
  size_t max_memo_mb = 1024;
  int jobs = 1;
  size_t max_value_chars = 40;
  app.add_option("history", path, "History file (JSON lines); - reads stdin")->required();
  app.add_flag("--json", json, "Print the result as one JSON object");
  app.add_flag("-v,--verbose", verbose, "List every key in the per-key table");
  app.add_option("--key-timeout", key_timeout,
                 "Seconds of search per key before its verdict is unknown (0 = no limit)")
      ->capture_default_str();
  app.add_option("--timeout", total_timeout,
                 "Seconds for the whole check; keys unfinished by then are unknown (0 = no limit)")
      ->capture_default_str();
  app.add_option("--max-steps", max_steps, "Search steps per key before unknown (0 = no limit)")
      ->capture_default_str();
  app.add_option("--max-memory", max_memo_mb,
                 "Memo table size per key in MiB; beyond it the memo is cleared")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("-j,--jobs", jobs, "Keys checked in parallel (0 = one per CPU)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  app.add_flag("--no-explain", no_explain,
               "For a violation, skip the search for a small set of operations that shows it");
  app.add_option("--max-value-chars", max_value_chars, "Cut longer values in the text report")
      ->capture_default_str();
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int rc = app.exit(e);
    return rc == 0 ? 0 : kExitUsage;
  }

  kv::check::History history;
  kv::Status s = path == "-" ? kv::check::ParseHistory(std::cin, &history)
                             : kv::check::ReadHistoryFile(path, &history);
  if (!s.ok()) {
    std::fprintf(stderr, "kvcheck: %s: %s\n", path.c_str(), s.message().c_str());
    return kExitUsage;
  }

  kv::check::CheckOptions options;
  options.key_timeout_seconds = key_timeout;
  options.total_timeout_seconds = total_timeout;
  options.max_steps = max_steps;
  options.max_memo_bytes = max_memo_mb << 20;
  options.jobs =
      jobs == 0 ? static_cast<int>(std::max(1u, std::thread::hardware_concurrency())) : jobs;
  options.explain = !no_explain;
  const kv::check::CheckResult result = kv::check::CheckHistory(history, options);

  if (json) {
    std::fputs(kv::check::FormatJson(history, result).c_str(), stdout);
  } else {
    kv::check::ReportOptions ro;
    ro.verbose = verbose;
    ro.max_value_chars = max_value_chars;
    std::printf("kvcheck: %s: %zu events\n", path.c_str(), history.events);
    std::fputs(kv::check::FormatText(history, result, ro).c_str(), stdout);
  }
  switch (result.verdict) {
    case kv::check::Verdict::kLinearizable:
      return kExitLinearizable;
    case kv::check::Verdict::kNotLinearizable:
      return kExitViolation;
    case kv::check::Verdict::kUnknown:
      return kExitUnknown;
  }
  return kExitUsage;
}
