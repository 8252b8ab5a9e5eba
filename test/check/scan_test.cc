// Scans in histories: parsed, turned into reads of single keys, and checked
// in each key's history.

#include <catch2/catch.hpp>

#include "kvcheck/checker.h"
#include "kvcheck/history.h"
#include "kvcheck/report.h"
#include "test/check/check_helpers.h"
#include "test/check/history_builder.h"

namespace kv {
namespace check {
namespace {

using testing::Check;
using testing::HistoryBuilder;
using testing::Kvs;
using testing::Witness;

// The reads the scans of h stand for, described with their keys, in order.
std::vector<std::string> ScanReads(const History& h) { return testing::Parts(h, OpKind::kScan); }

TEST_CASE("ParseEvent reads a scan's range, limit and result", "[check][scan]") {
  Event e;
  Status s = ParseEvent(
      R"({"process":2,"type":"ok","f":"scan","key":"a","end":"m","limit":3,)"
      R"("kvs":[{"key":"b","value":"1"},{"value":"2","mod_index":7,"key":"c"}],"more":true,)"
      R"("time":50})",
      &e);
  REQUIRE(s.ok());
  CHECK(e.kind == OpKind::kScan);
  CHECK(e.key == "a");
  REQUIRE(e.end);
  CHECK(*e.end == "m");
  CHECK(e.limit == 3);
  REQUIRE(e.kvs.size() == 2);
  CHECK(e.kvs[1].key == "c");
  CHECK(e.kvs[1].value == "2");
  CHECK(e.more);
  REQUIRE(
      ParseEvent(R"({"process":2,"type":"invoke","f":"scan","key":"a","end":null,"time":1})", &e)
          .ok());
  CHECK_FALSE(e.end);
  CHECK(e.kvs.empty());
  CHECK_FALSE(e.more);
}

TEST_CASE("ParseEvent explains malformed scan fields", "[check][scan]") {
  Event e;
  auto error = [&](const std::string& fields) {
    Status s =
        ParseEvent(R"({"process":1,"type":"ok","f":"scan","key":"a","time":1,)" + fields + "}", &e);
    REQUIRE_FALSE(s.ok());
    return s.message();
  };
  CHECK_THAT(error(R"("kvs":{"key":"b"})"), Catch::Contains("\"kvs\" must be an array"));
  CHECK_THAT(error(R"("kvs":[{"key":"b"}])"), Catch::Contains("needs a \"key\" and a \"value\""));
  CHECK_THAT(error(R"("kvs":[{"key":"b","value":null}])"), Catch::Contains("expected a string"));
  CHECK_THAT(error(R"("kvs":[{"key":"b","value":"1",}])"), Catch::Contains("expected a string"));
  CHECK_THAT(error(R"("kvs":[{"key":"b","value":"1"} {"key":"c","value":"2"}])"),
             Catch::Contains("expected ',' or ']'"));
  CHECK_THAT(error(R"("more":1)"), Catch::Contains("\"more\" must be true or false"));
  CHECK_THAT(error(R"("limit":-1)"), Catch::Contains("\"limit\" must not be negative"));
}

TEST_CASE("A scan reads every key of the history in the range it covered", "[check][scan]") {
  HistoryBuilder b;
  b.Put(0, "a", "1", 0, 10).Put(0, "b", "2", 0, 10).Put(0, "c", "3", 0, 10);
  b.Put(0, "d", "4", 0, 10).Get(0, "z", std::nullopt, 0, 10);
  SECTION("the whole range: returned keys with their values, others absent") {
    b.Scan(1, "b", std::string("z"), Kvs{{"b", "2"}, {"d", "4"}}, false, 20, 30);
    History h = b.Parse();
    CHECK(ScanReads(h) ==
          std::vector<std::string>{"b: scan -> \"2\"", "c: scan -> absent", "d: scan -> \"4\""});
    const Operation& read = h.ops.back();
    CHECK(read.kind == OpKind::kGet);
    CHECK(read.outcome == Outcome::kOk);
    CHECK(read.process == 1);
    CHECK(read.invoke_time == 20);
    CHECK(read.return_time == 30);
    CHECK(read.invoke_line == 11);
    CHECK(read.return_line == 12);
    REQUIRE(read.parent < h.ops.size());
    CHECK(h.ops[read.parent].kind == OpKind::kScan);
    CHECK(h.ops[read.parent].kvs.size() == 2);
  }
  SECTION("cut short by its limit: up to its last key returned") {
    b.Scan(1, "a", std::nullopt, Kvs{{"a", "1"}, {"c", "3"}}, true, 20, 30, "ok", 2);
    CHECK(ScanReads(b.Parse()) ==
          std::vector<std::string>{"a: scan -> \"1\"", "b: scan -> absent", "c: scan -> \"3\""});
  }
  SECTION("to the end of the key space") {
    b.Scan(1, "c", std::nullopt, Kvs{{"c", "3"}}, false, 20, 30);
    CHECK(ScanReads(b.Parse()) ==
          std::vector<std::string>{"c: scan -> \"3\"", "d: scan -> absent", "z: scan -> absent"});
  }
  SECTION("a key only a scan names is read too") {
    b.Scan(1, "a", std::string("b"), Kvs{{"a", "1"}, {"aa", "x"}}, false, 20, 30);
    CHECK(ScanReads(b.Parse()) ==
          std::vector<std::string>{"a: scan -> \"1\"", "aa: scan -> \"x\""});
  }
  SECTION("a failed or unknown scan reads nothing, nor does an empty page with more") {
    b.Scan(1, "a", std::nullopt, Kvs{}, false, 20, 30, "fail");
    b.Scan(2, "a", std::nullopt, Kvs{}, false, 20, 30, "info");
    b.Scan(3, "a", std::nullopt, Kvs{}, true, 20, 30);
    CHECK(ScanReads(b.Parse()).empty());
  }
}

TEST_CASE("ParseHistory refuses a scan result no scan can give", "[check][scan]") {
  auto error = [](const HistoryBuilder& b) {
    History h;
    Status s = ParseHistoryString(b.text(), &h);
    REQUIRE_FALSE(s.ok());
    return s.message();
  };
  CHECK_THAT(error(HistoryBuilder().Scan(1, "b", std::string("d"), Kvs{{"a", "1"}}, false, 0, 1)),
             Catch::Contains("line 2: scan returned key \"a\", outside its range"));
  CHECK_THAT(error(HistoryBuilder().Scan(1, "b", std::string("d"), Kvs{{"d", "1"}}, false, 0, 1)),
             Catch::Contains("outside its range"));
  CHECK_THAT(
      error(HistoryBuilder().Scan(1, "a", std::nullopt, Kvs{{"c", "1"}, {"b", "2"}}, false, 0, 1)),
      Catch::Contains("scan returned key \"b\" after \"c\": not in increasing order"));
  CHECK_THAT(
      error(HistoryBuilder().Scan(1, "a", std::nullopt, Kvs{{"b", "1"}, {"b", "2"}}, false, 0, 1)),
      Catch::Contains("not in increasing order"));
  CHECK_THAT(error(HistoryBuilder().Scan(1, "a", std::nullopt, Kvs{{"b", "1"}, {"c", "2"}}, true, 0,
                                         1, "ok", 1)),
             Catch::Contains("scan returned 2 keys, more than its limit 1"));
}

TEST_CASE("A scan that misses a key written before it began is a violation", "[check][scan]") {
  HistoryBuilder b;
  b.Put(0, "a", "1", 0, 10).Put(0, "b", "2", 20, 30);
  b.Scan(1, "a", std::string("c"), Kvs{{"a", "1"}}, false, 40, 50);
  CheckResult r = Check(b);
  CHECK(r.verdict == Verdict::kNotLinearizable);
  REQUIRE(r.violation);
  CHECK(r.violation->key == "b");
  CHECK(Witness(b) == std::vector<std::string>{"put \"2\"", "scan -> absent"});
  CHECK(r.scans == 1);
  CHECK(r.scan_reads == 2);
  CHECK(r.scan_absent == 1);
}

TEST_CASE("A scan that returns a stale value is a violation", "[check][scan]") {
  HistoryBuilder b;
  b.Put(0, "a", "1", 0, 10).Put(0, "a", "2", 20, 30);
  b.Scan(1, "a", std::nullopt, Kvs{{"a", "1"}}, false, 40, 50);
  CHECK(Check(b).verdict == Verdict::kNotLinearizable);
  CHECK(Witness(b) == std::vector<std::string>{"put \"2\"", "scan -> \"1\""});
}

TEST_CASE("A scan that returns a deleted key is a violation", "[check][scan]") {
  HistoryBuilder b;
  b.Put(0, "a", "1", 0, 10).Delete(0, "a", 20, 30);
  b.Scan(1, "a", std::nullopt, Kvs{{"a", "1"}}, false, 40, 50);
  CHECK(Check(b).verdict == Verdict::kNotLinearizable);
}

TEST_CASE("Correct scans are linearizable", "[check][scan]") {
  HistoryBuilder b;
  b.Put(0, "a", "1", 0, 10).Put(0, "b", "2", 0, 10);
  SECTION("reading what was written") {
    b.Scan(1, "a", std::string("c"), Kvs{{"a", "1"}, {"b", "2"}}, false, 20, 30);
    CHECK(Check(b).verdict == Verdict::kLinearizable);
  }
  SECTION("a write concurrent with the scan may be seen or not") {
    b.Put(0, "c", "3", 20, 60).Put(2, "a", "new", 20, 60);
    b.Scan(1, "a", std::nullopt, Kvs{{"a", "1"}, {"b", "2"}}, false, 30, 40);
    b.Scan(3, "a", std::nullopt, Kvs{{"a", "new"}, {"b", "2"}, {"c", "3"}}, false, 30, 40);
    CHECK(Check(b).verdict == Verdict::kLinearizable);
    // ...but once a later read saw it, a scan after that read must too.
    b.Get(4, "c", std::string("3"), 41, 45)
        .Scan(5, "b", std::nullopt, Kvs{{"b", "2"}}, false, 46, 50);
    CHECK(Check(b).verdict == Verdict::kNotLinearizable);
  }
  SECTION("keys past a scan's cut are not read") {
    b.Put(0, "c", "3", 20, 30);
    b.Scan(1, "a", std::nullopt, Kvs{{"a", "1"}, {"b", "2"}}, true, 40, 50, "ok", 2);
    CheckResult r = Check(b);
    CHECK(r.verdict == Verdict::kLinearizable);
    CHECK(r.scan_reads == 2);
  }
  SECTION("a failed scan constrains nothing") {
    b.Scan(1, "a", std::nullopt, Kvs{}, false, 20, 30, "fail");
    CHECK(Check(b).verdict == Verdict::kLinearizable);
  }
}

TEST_CASE("Each key a scan reads is checked on its own", "[check][scan]") {
  // A scan is no snapshot: keys read at different instants within it may
  // show a state no single instant had (b's second write, not a's, though
  // a's completed before b's began), and it is still linearizable key by
  // key.
  HistoryBuilder b;
  b.Put(0, "a", "1", 0, 10).Put(1, "b", "1", 0, 10);
  b.Put(0, "a", "2", 20, 30).Put(1, "b", "2", 40, 45);
  b.Scan(2, "a", std::nullopt, Kvs{{"a", "1"}, {"b", "2"}}, false, 15, 50);
  CHECK(Check(b).verdict == Verdict::kLinearizable);
}

TEST_CASE("The reports show a scan's reads", "[check][scan]") {
  HistoryBuilder b;
  b.Put(0, "a", "1", 1000, 2000).Put(0, "b", "2", 3000, 4000);
  b.Scan(1, "a", std::nullopt, Kvs{{"a", "1"}}, false, 5000, 6000);
  History h = b.Parse();
  CheckResult r = CheckHistory(h, CheckOptions());
  const std::string text = FormatText(h, r, ReportOptions());
  CHECK_THAT(text, Catch::Contains("including 2 reads by 1 scan,"));
  CHECK_THAT(text, Catch::Contains("(1 of a key it did not return: absent)"));
  CHECK_THAT(text, Catch::Contains("violation on key \"b\""));
  CHECK_THAT(text, Catch::Contains("scan -> absent"));
  const std::string json = FormatJson(h, r);
  CHECK_THAT(json, Catch::Contains("\"scans\":1,\"scan_reads\":2,\"scan_absent\":1"));
  CHECK_THAT(json,
             Catch::Contains("\"f\":\"scan\",\"outcome\":\"ok\",\"key\":\"b\",\"result\":null"));
}

}  // namespace
}  // namespace check
}  // namespace kv
