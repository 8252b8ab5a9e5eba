// Txns in histories: parsed, turned into operations on single keys, and
// checked in each key's history.

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
using testing::Parts;
using testing::Witness;

// The operations the txns of h stand for, described with their keys, in
// order.
std::vector<std::string> TxnOps(const History& h) { return Parts(h, OpKind::kTxn); }

TEST_CASE("ParseEvent reads a txn's conditions, branches and results", "[check][txn]") {
  Event e;
  REQUIRE(
      ParseEvent(R"({"process":2,"type":"invoke","f":"txn","compare":[{"key":"a","value":"1"},)"
                 R"({"key":"b","absent":true},{"key":"c","present":true},)"
                 R"({"key":"d","mod_index":7,"cmp":"lt"}],)"
                 R"("success":[{"f":"put","key":"a","value":"2"},{"f":"delete","key":"b"},)"
                 R"({"f":"get","key":"c"}],"failure":[{"f":"get","key":"a","extra":1}],"time":5})",
                 &e)
          .ok());
  CHECK(e.kind == OpKind::kTxn);
  CHECK(e.key.empty());
  REQUIRE(e.compare.size() == 4);
  CHECK(e.compare[0].kind == TxnCompare::Kind::kValue);
  CHECK(e.compare[0].key == "a");
  CHECK(e.compare[0].value == "1");
  CHECK(e.compare[1].kind == TxnCompare::Kind::kAbsent);
  CHECK(e.compare[1].key == "b");
  CHECK(e.compare[2].kind == TxnCompare::Kind::kPresent);
  CHECK(e.compare[3].kind == TxnCompare::Kind::kModIndex);
  CHECK(e.compare[3].key == "d");
  REQUIRE(e.success.size() == 3);
  CHECK(e.success[0].kind == OpKind::kPut);
  CHECK(e.success[0].key == "a");
  CHECK(e.success[0].value == "2");
  CHECK(e.success[1].kind == OpKind::kDelete);
  CHECK(e.success[1].key == "b");
  CHECK(e.success[2].kind == OpKind::kGet);
  CHECK(e.success[2].key == "c");
  REQUIRE(e.failure.size() == 1);
  CHECK(e.failure[0].kind == OpKind::kGet);

  REQUIRE(ParseEvent(R"({"process":2,"type":"ok","f":"txn","succeeded":true,)"
                     R"("results":[{},{"status":"ok"},{"value":null},{"value":"x","index":3}],)"
                     R"("resent":true,"time":9})",
                     &e)
              .ok());
  CHECK(e.succeeded);
  CHECK(e.resent);
  REQUIRE(e.results.size() == 4);
  CHECK_FALSE(e.results[0].has_value);
  CHECK_FALSE(e.results[1].has_value);
  CHECK(e.results[2].has_value);
  CHECK_FALSE(e.results[2].value);
  CHECK(e.results[3].value == std::optional<std::string>("x"));

  // Lists left out are empty; "resent" is false unless given.
  REQUIRE(ParseEvent(R"({"process":2,"type":"invoke","f":"txn","time":1})", &e).ok());
  CHECK(e.compare.empty());
  CHECK(e.success.empty());
  CHECK(e.failure.empty());
  REQUIRE(ParseEvent(R"({"process":2,"type":"ok","f":"txn","succeeded":false,"time":2})", &e).ok());
  CHECK_FALSE(e.succeeded);
  CHECK(e.results.empty());
  CHECK_FALSE(e.resent);
}

TEST_CASE("ParseEvent explains malformed txn fields", "[check][txn]") {
  Event e;
  auto error = [&](const std::string& fields) {
    Status s = ParseEvent(
        R"({"process":1,"type":"invoke","f":"txn","time":1,"succeeded":true,)" + fields + "}", &e);
    REQUIRE_FALSE(s.ok());
    return s.message();
  };
  const char* one_of =
      "needs one of \"value\", \"absent\": true, \"present\": true or \"mod_index\"";
  CHECK_THAT(error(R"("compare":{"key":"a"})"), Catch::Contains("\"compare\" must be an array"));
  CHECK_THAT(error(R"("compare":["a"])"), Catch::Contains("an entry of \"compare\" must be"));
  CHECK_THAT(error(R"("compare":[{"value":"1"}])"), Catch::Contains("needs a \"key\""));
  CHECK_THAT(error(R"("compare":[{"key":"a"}])"), Catch::Contains(one_of));
  CHECK_THAT(error(R"("compare":[{"key":"a","absent":false}])"), Catch::Contains(one_of));
  CHECK_THAT(error(R"("compare":[{"key":"a","value":"1","present":true}])"),
             Catch::Contains(one_of));
  CHECK_THAT(error(R"("compare":[{"key":"a","value":null}])"),
             Catch::Contains("expected a string"));
  CHECK_THAT(error(R"("compare":[{"key":"a","mod_index":1}])"),
             Catch::Contains("\"mod_index\" needs \"cmp\": \"eq\", \"lt\" or \"gt\""));
  CHECK_THAT(error(R"("compare":[{"key":"a","mod_index":1,"cmp":"le"}])"),
             Catch::Contains("\"mod_index\" needs \"cmp\""));
  CHECK_THAT(error(R"("success":[{"f":"put","value":"1"}])"),
             Catch::Contains("an op of \"success\" needs an \"f\" and a \"key\""));
  CHECK_THAT(error(R"("failure":[{"f":"cas","key":"a"}])"),
             Catch::Contains("an op of \"failure\" must be a put, delete or get"));
  CHECK_THAT(error(R"("success":[{"f":"incr","key":"a"}])"), Catch::Contains("unknown \"f\""));
  CHECK_THAT(error(R"("success":[{"f":"put","key":"a"}])"),
             Catch::Contains("a put of \"success\" needs a \"value\""));
  CHECK_THAT(error(R"("results":[{"value":1}])"),
             Catch::Contains("\"value\" must be a string or null"));
  CHECK_THAT(error(R"("resent":"yes")"), Catch::Contains("\"resent\" must be true or false"));
  Status s = ParseEvent(R"({"process":1,"type":"ok","f":"txn","results":[],"time":1})", &e);
  CHECK_THAT(s.message(), Catch::Contains("missing field \"succeeded\""));
}

TEST_CASE("ParseHistory refuses txn results that do not fit the branch that ran", "[check][txn]") {
  auto parse = [](const HistoryBuilder& b) {
    History h;
    return ParseHistoryString(b.text(), &h);
  };
  const std::string request =
      R"("success":[{"f":"put","key":"a","value":"1"},{"f":"get","key":"b"}],)"
      R"("failure":[{"f":"get","key":"a"}])";
  Status s = parse(HistoryBuilder().Txn(1, request, R"("succeeded":true,"results":[{}])", 0, 1));
  CHECK_THAT(s.message(),
             Catch::StartsWith("line 2: txn returned 1 results for the 2 ops of its success"));
  s = parse(HistoryBuilder().Txn(1, request, R"("succeeded":false,"results":[])", 0, 1));
  CHECK_THAT(s.message(), Catch::Contains("0 results for the 1 ops of its failure branch"));
  s = parse(HistoryBuilder().Txn(1, request, R"("succeeded":true,"results":[{},{}])", 0, 1));
  CHECK_THAT(s.message(),
             Catch::Contains("line 2: result 2 of the txn, a get's, has no \"value\""));
  // Resent: no results, or all of them.
  CHECK(parse(HistoryBuilder().Txn(1, request, R"("succeeded":true,"results":[],"resent":true)", 0,
                                   1))
            .ok());
  s = parse(
      HistoryBuilder().Txn(1, request, R"("succeeded":true,"results":[{}],"resent":true)", 0, 1));
  CHECK_THAT(s.message(), Catch::Contains("txn returned 1 results"));
  // A txn names no key: its completion matches its invoke all the same.
  CHECK(parse(HistoryBuilder().Txn(1, request, "", 0, 1, "fail")).ok());
}

TEST_CASE("A txn stands for writes and reads of single keys", "[check][txn]") {
  const std::string request =
      R"("compare":[{"key":"a","value":"1"},{"key":"b","absent":true},)"
      R"({"key":"c","present":true},{"key":"d","mod_index":3,"cmp":"eq"}],)"
      R"("success":[{"f":"get","key":"c"},{"f":"put","key":"a","value":"2"},)"
      R"({"f":"put","key":"b","value":"x"}],)"
      R"("failure":[{"f":"get","key":"a"},{"f":"put","key":"z","value":"no"}])";
  HistoryBuilder b;
  b.Put(0, "a", "1", 0, 10);
  SECTION("succeeded: its value and absent conditions, and the success branch") {
    b.Txn(1, request, R"("succeeded":true,"results":[{"value":"c1"},{},{}])", 20, 30);
    History h = b.Parse();
    CHECK(TxnOps(h) == std::vector<std::string>{"a: txn get -> \"1\"", "b: txn get -> not found",
                                                "c: txn get -> \"c1\"", "a: txn put \"2\"",
                                                "b: txn put \"x\""});
    const Operation& write = h.ops.back();
    CHECK(write.outcome == Outcome::kOk);
    CHECK(write.process == 1);
    CHECK(write.invoke_time == 20);
    CHECK(write.return_time == 30);
    CHECK(write.invoke_line == 3);
    CHECK(write.return_line == 4);
    REQUIRE(write.parent < h.ops.size());
    CHECK(h.ops[write.parent].kind == OpKind::kTxn);
  }
  SECTION("failed: the failure branch only, as which condition failed is unknown") {
    b.Txn(1, request, R"("succeeded":false,"results":[{"value":"9"},{}])", 20, 30);
    CHECK(TxnOps(b.Parse()) ==
          std::vector<std::string>{"a: txn get -> \"9\"", "z: txn put \"no\""});
  }
  SECTION("resent without results: the writes only") {
    b.Txn(1, request, R"("succeeded":true,"results":[],"resent":true)", 20, 30);
    CHECK(TxnOps(b.Parse()) == std::vector<std::string>{"a: txn put \"2\"", "b: txn put \"x\""});
  }
  SECTION("unknown outcome: the writes of both branches, each maybe taking effect") {
    SECTION("info") { b.Txn(1, request, "", 20, 30, "info"); }
    SECTION("never completed") { b.TxnLine(1, "invoke", request, 20); }
    History h = b.Parse();
    CHECK(TxnOps(h) ==
          std::vector<std::string>{"a: txn put \"2\"", "b: txn put \"x\"", "z: txn put \"no\""});
    for (const Operation& op : h.ops) {
      if (op.parent == kNoParent) continue;
      CHECK(op.outcome == Outcome::kInfo);
      CHECK(op.return_time == kNever);
    }
  }
  SECTION("failed: nothing") {
    b.Txn(1, request, "", 20, 30, "fail");
    CHECK(TxnOps(b.Parse()).empty());
  }
}

TEST_CASE("A txn writes each key once, its state when the branch ends", "[check][txn]") {
  HistoryBuilder b;
  SECTION("a put then a delete of a key is a delete, a delete then a put a put") {
    b.Txn(1,
          R"("success":[{"f":"put","key":"a","value":"1"},{"f":"delete","key":"b"},)"
          R"({"f":"delete","key":"a"},{"f":"put","key":"b","value":"2"}])",
          R"("succeeded":true,"results":[{},{},{},{}])", 0, 10);
    CHECK(TxnOps(b.Parse()) == std::vector<std::string>{"a: txn delete", "b: txn put \"2\""});
  }
  SECTION("a get after a put of the same key reads the txn's own write: no read") {
    b.Txn(1,
          R"("success":[{"f":"get","key":"a"},{"f":"put","key":"a","value":"1"},)"
          R"({"f":"get","key":"a"},{"f":"get","key":"b"}])",
          R"("succeeded":true,"results":[{"value":"0"},{},{"value":"1"},{"value":null}])", 0, 10);
    CHECK(TxnOps(b.Parse()) == std::vector<std::string>{"a: txn get -> \"0\"", "a: txn put \"1\"",
                                                        "b: txn get -> not found"});
  }
}

TEST_CASE("A scan reads the keys a txn names", "[check][txn][scan]") {
  HistoryBuilder b;
  b.Txn(1,
        R"("compare":[{"key":"c","present":true}],"success":[{"f":"put","key":"b","value":"1"}])",
        R"("succeeded":true,"results":[{}])", 0, 10);
  b.Scan(2, "a", std::nullopt, Kvs{{"b", "1"}}, false, 20, 30);
  CHECK(Parts(b.Parse(), OpKind::kScan) ==
        std::vector<std::string>{"b: scan -> \"1\"", "c: scan -> absent"});
  CHECK(Check(b).verdict == Verdict::kLinearizable);
}

// Accounts a and b, opened in one txn, then two transfers, each moving an
// amount from a to b if a holds what the client last saw.
HistoryBuilder Transfers() {
  HistoryBuilder b;
  b.Txn(0,
        R"("compare":[{"key":"a","absent":true}],)"
        R"("success":[{"f":"put","key":"a","value":"100"},{"f":"put","key":"b","value":"0"}])",
        R"("succeeded":true,"results":[{},{}])", 0, 10);
  b.Txn(1,
        R"("compare":[{"key":"a","value":"100"},{"key":"b","value":"0"}],)"
        R"("success":[{"f":"put","key":"a","value":"70"},{"f":"put","key":"b","value":"30"}],)"
        R"("failure":[{"f":"get","key":"a"},{"f":"get","key":"b"}])",
        R"("succeeded":true,"results":[{},{}])", 20, 30);
  b.Txn(2,
        R"("compare":[{"key":"a","value":"70"}],)"
        R"("success":[{"f":"put","key":"a","value":"50"},{"f":"get","key":"b"},)"
        R"({"f":"put","key":"b","value":"50"}])",
        R"("succeeded":true,"results":[{},{"value":"30"},{}])", 40, 50);
  return b;
}

TEST_CASE("A txn that reads a value no write produced is a violation", "[check][txn]") {
  HistoryBuilder b = Transfers();
  // Lines 7 and 8: a read of both accounts, b's balance made up.
  b.Txn(3, R"("success":[{"f":"get","key":"a"},{"f":"get","key":"b"}])",
        R"("succeeded":true,"results":[{"value":"50"},{"value":"60"}])", 60, 70);
  CheckResult r = Check(b);
  CHECK(r.verdict == Verdict::kNotLinearizable);
  REQUIRE(r.violation);
  CHECK(r.violation->key == "b");
  // "60", which nothing writes, stops the search at b's first operation:
  // the window grows from there to the read.
  CHECK(Witness(b) == std::vector<std::string>{"txn put \"0\"", "txn get -> \"0\"",
                                               "txn put \"30\"", "txn get -> \"30\"",
                                               "txn put \"50\"", "txn get -> \"60\""});
  History h = b.Parse();
  const std::string text = FormatText(h, r, ReportOptions());
  CHECK_THAT(text, Catch::Contains("violation on key \"b\""));
  CHECK_THAT(text, Catch::Contains("txn get -> \"60\""));
  CHECK_THAT(text, Catch::Contains("ok      7,8\n"));
  CHECK_THAT(text, Catch::Contains("including 13 by 4 txns,"));
  CHECK_THAT(FormatJson(h, r), Catch::Contains("\"txns\":4,\"txn_ops\":13"));
  CHECK_THAT(FormatJson(h, r), Catch::Contains("\"f\":\"txn\",\"outcome\":\"ok\",\"key\":\"b\","
                                               "\"result\":\"60\""));
}

TEST_CASE("Concurrent txns that move money correctly are linearizable", "[check][txn]") {
  HistoryBuilder b = Transfers();
  // Overlapping the transfers: one whose condition failed, having read
  // the balance between them, and one whose outcome is unknown.
  b.Txn(3,
        R"("compare":[{"key":"a","value":"100"}],"success":[{"f":"put","key":"a","value":"0"}],)"
        R"("failure":[{"f":"get","key":"a"}])",
        R"("succeeded":false,"results":[{"value":"70"}])", 25, 45);
  b.Txn(4,
        R"("compare":[{"key":"b","value":"50"}],"success":[{"f":"delete","key":"b"}],)"
        R"("failure":[{"f":"put","key":"b","value":"0"}])",
        "", 45, 55, "info");
  // Later reads: b deleted by the unknown txn, then a and b read together.
  b.Get(5, "b", std::nullopt, 60, 65);
  b.Txn(5, R"("success":[{"f":"get","key":"a"},{"f":"get","key":"b"}])",
        R"("succeeded":true,"results":[{"value":"50"},{"value":null}])", 70, 80);
  CHECK(Check(b).verdict == Verdict::kLinearizable);
  // ...but a read of a balance from before the last transfer is stale.
  b.Txn(6, R"("compare":[{"key":"a","value":"70"}])", R"("succeeded":true,"results":[])", 90, 95);
  CHECK(Check(b).verdict == Verdict::kNotLinearizable);
}

}  // namespace
}  // namespace check
}  // namespace kv
