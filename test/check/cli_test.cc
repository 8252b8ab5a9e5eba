// End-to-end: the kvcheck binary's exit codes and output forms.

#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>

#include "test/check/history_builder.h"

namespace kv {
namespace check {
namespace {

using testing::HistoryBuilder;

struct Run {
  int exit_code = -1;
  std::string out;
};

// Runs kvcheck with args on a history file holding text.
Run RunKvcheck(const std::string& text, const std::string& args) {
  // ctest runs test cases as parallel processes in one directory: the pid
  // keeps their files apart.
  static int counter = 0;
  const std::string path =
      "kvcheck_cli_test_" + std::to_string(getpid()) + "_" + std::to_string(counter++) + ".jsonl";
  std::ofstream(path) << text;
  const std::string cmd = std::string(KVCHECK_BINARY) + " " + args + " " + path + " 2>&1";
  Run r;
  FILE* p = popen(cmd.c_str(), "r");
  REQUIRE(p != nullptr);
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), p)) > 0) r.out.append(buf, n);
  const int status = pclose(p);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  std::remove(path.c_str());
  return r;
}

TEST_CASE("kvcheck exits 0 for a linearizable history", "[check][cli]") {
  HistoryBuilder b;
  b.Put(0, "k", "a", 0, 10).Get(1, "k", "a", 20, 30);
  Run r = RunKvcheck(b.text(), "");
  CHECK(r.exit_code == 0);
  CHECK_THAT(r.out, Catch::Contains("verdict: linearizable"));
}

TEST_CASE("kvcheck exits 1 and shows the operations for a violation", "[check][cli]") {
  HistoryBuilder b;
  b.Put(0, "k", "a", 0, 10).Put(1, "k", "b", 20, 30).Get(2, "k", "a", 40, 50);
  Run r = RunKvcheck(b.text(), "");
  CHECK(r.exit_code == 1);
  CHECK_THAT(r.out, Catch::Contains("verdict: NOT linearizable"));
  CHECK_THAT(r.out, Catch::Contains("put \"b\""));
  r = RunKvcheck(b.text(), "--json");
  CHECK(r.exit_code == 1);
  CHECK_THAT(r.out, Catch::StartsWith("{\"verdict\":\"not linearizable\""));
}

TEST_CASE("kvcheck checks a scan as reads of the keys in its range", "[check][cli][scan]") {
  HistoryBuilder b;
  b.Put(0, "a", "1", 0, 10).Put(0, "b", "2", 20, 30);
  b.Scan(1, "a", std::string("c"), testing::Kvs{{"a", "1"}, {"b", "2"}}, false, 40, 50);
  Run r = RunKvcheck(b.text(), "");
  CHECK(r.exit_code == 0);
  CHECK_THAT(r.out, Catch::Contains("including 2 reads by 1 scan,"));
  // The same scan, missing b: b was written before it began.
  HistoryBuilder missed;
  missed.Put(0, "a", "1", 0, 10).Put(0, "b", "2", 20, 30);
  missed.Scan(1, "a", std::string("c"), testing::Kvs{{"a", "1"}}, false, 40, 50);
  r = RunKvcheck(missed.text(), "");
  CHECK(r.exit_code == 1);
  CHECK_THAT(r.out, Catch::Contains("violation on key \"b\""));
  CHECK_THAT(r.out, Catch::Contains("scan -> absent"));
}

TEST_CASE("kvcheck checks a txn as writes and reads of the keys it names", "[check][cli][txn]") {
  // A transfer from a to b, then a read of both that sees b made up.
  HistoryBuilder b;
  b.Put(0, "a", "100", 0, 10);
  b.Txn(1,
        R"("compare":[{"key":"a","value":"100"},{"key":"b","absent":true}],)"
        R"("success":[{"f":"put","key":"a","value":"70"},{"f":"put","key":"b","value":"30"}])",
        R"("succeeded":true,"results":[{},{}])", 20, 30);
  Run r = RunKvcheck(b.text(), "");
  CHECK(r.exit_code == 0);
  CHECK_THAT(r.out, Catch::Contains("including 4 by 1 txn,"));
  b.Txn(2, R"("success":[{"f":"get","key":"a"},{"f":"get","key":"b"}])",
        R"("succeeded":true,"results":[{"value":"70"},{"value":"40"}])", 40, 50);
  r = RunKvcheck(b.text(), "");
  CHECK(r.exit_code == 1);
  CHECK_THAT(r.out, Catch::Contains("violation on key \"b\""));
  CHECK_THAT(r.out, Catch::Contains("txn get -> \"40\""));
  CHECK_THAT(r.out, Catch::Contains(" 5,6\n"));
}

TEST_CASE("kvcheck exits 2 on a parse error, naming the line", "[check][cli]") {
  Run r = RunKvcheck("{\"process\":1,\"type\":\"invoke\"\n", "");
  CHECK(r.exit_code == 2);
  CHECK_THAT(r.out, Catch::Contains("line 1: "));
  r = RunKvcheck("", "--no-such-flag");
  CHECK(r.exit_code == 2);
}

TEST_CASE("kvcheck exits 3 when the search budget runs out", "[check][cli]") {
  HistoryBuilder b;
  for (int p = 0; p < 24; p++) b.Put(p, "k", p % 2 ? "y" : "x", 0, 1000);
  for (int i = 0; i < 30; i++) b.Get(100, "k", i % 2 ? "y" : "x", 10 + 20 * i, 20 + 20 * i);
  Run r = RunKvcheck(b.text(), "--max-steps 5000");
  CHECK(r.exit_code == 3);
  CHECK_THAT(r.out, Catch::Contains("unknown"));
}

}  // namespace
}  // namespace check
}  // namespace kv
