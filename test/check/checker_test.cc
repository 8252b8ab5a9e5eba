#include "kvcheck/checker.h"

#include <algorithm>
#include <catch2/catch.hpp>

#include "kvcheck/report.h"
#include "test/check/check_helpers.h"
#include "test/check/history_builder.h"

namespace kv {
namespace check {
namespace {

using testing::Check;
using testing::HistoryBuilder;
using testing::VerdictOf;
using testing::Witness;

TEST_CASE("An empty history is linearizable", "[check]") {
  CHECK(VerdictOf(HistoryBuilder()) == Verdict::kLinearizable);
}

TEST_CASE("A sequential history that reads what it wrote is linearizable", "[check]") {
  HistoryBuilder b;
  b.Get(0, "k", std::nullopt, 0, 1).Put(0, "k", "a", 2, 3).Get(0, "k", "a", 4, 5);
  b.Delete(0, "k", 6, 7).Get(0, "k", std::nullopt, 8, 9);
  CHECK(VerdictOf(b) == Verdict::kLinearizable);
}

TEST_CASE("A stale read is a violation", "[check]") {
  // b's write completed before the read began, yet the read saw a.
  HistoryBuilder b;
  b.Put(0, "k", "a", 0, 10).Put(1, "k", "b", 20, 30).Get(2, "k", "a", 40, 50);
  CheckResult r = Check(b);
  CHECK(r.verdict == Verdict::kNotLinearizable);
  REQUIRE(r.violation);
  CHECK(r.violation->key == "k");
  CHECK(Witness(b) == std::vector<std::string>{"put \"b\"", "get -> \"a\""});
}

TEST_CASE("A read concurrent with a write may see either value", "[check]") {
  HistoryBuilder b;
  b.Put(0, "k", "a", 0, 10).Put(1, "k", "b", 20, 60).Get(2, "k", "a", 30, 40);
  b.Get(2, "k", "b", 41, 50);
  CHECK(VerdictOf(b) == Verdict::kLinearizable);
  // ...but not go back once it has seen the new one.
  b.Get(3, "k", "a", 51, 55);
  CHECK(VerdictOf(b) == Verdict::kNotLinearizable);
}

TEST_CASE("A lost write is a violation", "[check]") {
  // put b was acknowledged; a later read with nothing concurrent sees a.
  HistoryBuilder b;
  b.Put(0, "k", "a", 0, 10).Get(1, "k", "a", 11, 12).Put(0, "k", "b", 20, 30);
  b.Get(1, "k", "a", 40, 50).Put(0, "k", "c", 60, 70).Get(1, "k", "c", 80, 90);
  CHECK(VerdictOf(b) == Verdict::kNotLinearizable);
  CHECK(Witness(b) == std::vector<std::string>{"put \"b\"", "get -> \"a\""});
}

TEST_CASE("A lost first write reads as not found", "[check]") {
  HistoryBuilder b;
  b.Put(0, "k", "a", 0, 10).Get(1, "k", std::nullopt, 20, 30);
  CHECK(VerdictOf(b) == Verdict::kNotLinearizable);
  CHECK(Witness(b) == std::vector<std::string>{"put \"a\"", "get -> not found"});
}

TEST_CASE("Reading a value never written is a violation", "[check]") {
  HistoryBuilder b;
  b.Put(0, "k", "a", 0, 10).Get(1, "k", "zzz", 20, 30);
  CHECK(VerdictOf(b) == Verdict::kNotLinearizable);
  // A read of a value written only later.
  HistoryBuilder c;
  c.Get(1, "k", "later", 0, 10).Put(0, "k", "later", 20, 30);
  CHECK(VerdictOf(c) == Verdict::kNotLinearizable);
  CHECK(Witness(c) == std::vector<std::string>{"get -> \"later\""});
}

TEST_CASE("Concurrent writes read in two different orders are a violation", "[check]") {
  // Writes a and b overlap each other and both readers. Reader 2 sees a
  // then b; reader 3 sees b then a: no single order of the writes explains
  // both.
  HistoryBuilder b;
  b.Put(0, "k", "a", 0, 100).Put(1, "k", "b", 0, 100);
  b.Get(2, "k", "a", 10, 20).Get(2, "k", "b", 30, 40);
  b.Get(3, "k", "b", 10, 20).Get(3, "k", "a", 30, 40);
  CheckResult r = Check(b);
  CHECK(r.verdict == Verdict::kNotLinearizable);
  REQUIRE(r.violation);
  CHECK(r.violation->witness.size() == 6);
}

TEST_CASE("Concurrent writes read in one consistent order are linearizable", "[check]") {
  HistoryBuilder b;
  b.Put(0, "k", "a", 0, 100).Put(1, "k", "b", 0, 100);
  b.Get(2, "k", "a", 10, 20).Get(2, "k", "b", 30, 40);
  b.Get(3, "k", "a", 10, 20).Get(3, "k", "b", 30, 40);
  b.Get(4, "k", "b", 150, 160);
  CHECK(VerdictOf(b) == Verdict::kLinearizable);
}

TEST_CASE("Equal timestamps count as concurrent", "[check]") {
  HistoryBuilder b;
  b.Put(0, "k", "a", 0, 10).Put(1, "k", "b", 10, 20).Get(2, "k", "a", 20, 30);
  CHECK(VerdictOf(b) == Verdict::kLinearizable);
}

TEST_CASE("An info write may take effect late", "[check]") {
  HistoryBuilder b;
  b.Put(0, "k", "a", 0, 10).InfoPut(1, "k", "b", 20);
  b.Get(2, "k", "a", 30, 40).Get(2, "k", "a", 50, 60).Get(2, "k", "b", 1000, 1010);
  CHECK(VerdictOf(b) == Verdict::kLinearizable);
}

TEST_CASE("An info write may never take effect", "[check]") {
  HistoryBuilder b;
  b.Put(0, "k", "a", 0, 10).InfoPut(1, "k", "b", 20).Get(2, "k", "a", 1000, 1010);
  CHECK(VerdictOf(b) == Verdict::kLinearizable);
  // An invoke never completed is treated the same way.
  HistoryBuilder c;
  c.Put(0, "k", "a", 0, 10).Pending(1, "put", "k", std::string("b"), 20);
  c.Get(2, "k", "a", 1000, 1010);
  CHECK(VerdictOf(c) == Verdict::kLinearizable);
}

TEST_CASE("An info write cannot take effect before its invoke", "[check]") {
  HistoryBuilder b;
  b.Put(0, "k", "a", 0, 10).Get(2, "k", "b", 20, 30).InfoPut(1, "k", "b", 40);
  CHECK(VerdictOf(b) == Verdict::kNotLinearizable);
}

TEST_CASE("An info write takes effect once, not twice", "[check]") {
  HistoryBuilder b;
  b.Put(0, "k", "a", 0, 10).InfoPut(1, "k", "b", 20);
  b.Get(2, "k", "b", 30, 40).Put(0, "k", "c", 50, 60).Get(2, "k", "c", 70, 80);
  CHECK(VerdictOf(b) == Verdict::kLinearizable);
  b.Get(2, "k", "b", 90, 100);
  CHECK(VerdictOf(b) == Verdict::kNotLinearizable);
}

TEST_CASE("A failed write did not happen", "[check]") {
  HistoryBuilder b;
  b.Put(0, "k", "a", 0, 10).Put(1, "k", "b", 20, 30, "fail").Get(2, "k", "a", 40, 50);
  CHECK(VerdictOf(b) == Verdict::kLinearizable);
  b.Get(2, "k", "b", 60, 70);
  CHECK(VerdictOf(b) == Verdict::kNotLinearizable);
}

TEST_CASE("Failed and info reads constrain nothing", "[check]") {
  HistoryBuilder b;
  b.Put(0, "k", "a", 0, 10).Get(1, "k", "zzz", 20, 30, "fail").Get(1, "k", "yyy", 40, 50, "info");
  CHECK(VerdictOf(b) == Verdict::kLinearizable);
}

TEST_CASE("cas succeeds only on the expected value", "[check][cas]") {
  SECTION("a sequential cas from the current value") {
    HistoryBuilder b;
    b.Put(0, "k", "a", 0, 10).Cas(0, "k", std::string("a"), "b", 20, 30).Get(0, "k", "b", 40, 50);
    CHECK(VerdictOf(b) == Verdict::kLinearizable);
  }
  SECTION("an acknowledged cas from a value the key did not hold") {
    HistoryBuilder b;
    b.Put(0, "k", "a", 0, 10).Cas(0, "k", std::string("x"), "b", 20, 30);
    CHECK(VerdictOf(b) == Verdict::kNotLinearizable);
  }
  SECTION("cas from absent on a new key") {
    HistoryBuilder b;
    b.Cas(0, "k", std::nullopt, "a", 0, 10).Get(0, "k", "a", 20, 30);
    CHECK(VerdictOf(b) == Verdict::kLinearizable);
  }
  SECTION("cas from absent on a key that exists") {
    HistoryBuilder b;
    b.Put(0, "k", "a", 0, 10).Cas(1, "k", std::nullopt, "b", 20, 30);
    CHECK(VerdictOf(b) == Verdict::kNotLinearizable);
  }
  SECTION("cas from absent after a delete") {
    HistoryBuilder b;
    b.Put(0, "k", "a", 0, 10).Delete(0, "k", 20, 30).Cas(1, "k", std::nullopt, "b", 40, 50);
    CHECK(VerdictOf(b) == Verdict::kLinearizable);
  }
  SECTION("two concurrent cas from the same value cannot both succeed") {
    HistoryBuilder b;
    b.Put(0, "k", "a", 0, 10);
    b.Cas(1, "k", std::string("a"), "b", 20, 40).Cas(2, "k", std::string("a"), "c", 20, 40);
    CHECK(VerdictOf(b) == Verdict::kNotLinearizable);
  }
  SECTION("a chain of concurrent cas orders itself") {
    HistoryBuilder b;
    b.Put(0, "k", "a", 0, 10);
    b.Cas(1, "k", std::string("b"), "c", 20, 40).Cas(2, "k", std::string("a"), "b", 20, 40);
    b.Get(3, "k", "c", 50, 60);
    CHECK(VerdictOf(b) == Verdict::kLinearizable);
  }
  SECTION("a failed cas did not happen") {
    HistoryBuilder b;
    b.Put(0, "k", "a", 0, 10).Cas(1, "k", std::string("x"), "b", 20, 30, "fail");
    b.Get(0, "k", "a", 40, 50);
    CHECK(VerdictOf(b) == Verdict::kLinearizable);
  }
  SECTION("an info cas may take effect if the value matched") {
    HistoryBuilder b;
    b.Put(0, "k", "a", 0, 10).InfoCas(1, "k", std::string("a"), "b", 20);
    b.Get(0, "k", "a", 30, 40).Get(0, "k", "b", 50, 60);
    CHECK(VerdictOf(b) == Verdict::kLinearizable);
  }
  SECTION("an info cas cannot take effect if the value never matched") {
    HistoryBuilder b;
    b.Put(0, "k", "a", 0, 10).InfoCas(1, "k", std::string("x"), "b", 20);
    b.Get(0, "k", "b", 50, 60);
    CHECK(VerdictOf(b) == Verdict::kNotLinearizable);
  }
}

TEST_CASE("Keys are checked independently", "[check]") {
  HistoryBuilder b;
  b.Put(0, "x", "1", 0, 10).Put(0, "y", "1", 20, 30).Get(1, "x", "1", 40, 50);
  b.Put(2, "y", "2", 60, 70).Get(1, "y", "1", 80, 90);
  CheckResult r = Check(b);
  CHECK(r.verdict == Verdict::kNotLinearizable);
  REQUIRE(r.keys.size() == 2);
  CHECK(r.keys[0].key == "x");
  CHECK(r.keys[0].verdict == Verdict::kLinearizable);
  CHECK(r.keys[1].verdict == Verdict::kNotLinearizable);
  CHECK(r.keys[1].ops == 3);
  REQUIRE(r.violation);
  CHECK(r.violation->key == "y");
  CHECK(r.ops == 5);
}

TEST_CASE("The witness leaves out operations that do not matter", "[check]") {
  // A long correct prefix, the stale read, and a long correct suffix.
  HistoryBuilder b;
  int64_t t = 0;
  for (int i = 0; i < 50; i++, t += 100) {
    b.Put(0, "k", "v" + std::to_string(i), t, t + 10)
        .Get(1, "k", "v" + std::to_string(i), t + 20, t + 30);
  }
  b.Put(0, "k", "new", t, t + 10).Get(1, "k", "v49", t + 20, t + 30);
  t += 100;
  for (int i = 0; i < 50; i++, t += 100) {
    b.Put(0, "k", "w" + std::to_string(i), t, t + 10);
  }
  CHECK(Witness(b) == std::vector<std::string>{"put \"new\"", "get -> \"v49\""});
}

TEST_CASE("A search over budget is unknown, not a hang", "[check]") {
  // 24 overlapping writes of two values, and 30 reads during them that
  // alternate between the values: each switch needs a write of its own,
  // and there are not enough. The search must try many subsets of the writes before
  // it knows (the problem is NP-complete in general).
  HistoryBuilder b;
  for (int p = 0; p < 24; p++) b.Put(p, "k", p % 2 ? "y" : "x", 0, 1000);
  for (int i = 0; i < 30; i++) b.Get(100, "k", i % 2 ? "y" : "x", 10 + 20 * i, 20 + 20 * i);
  CheckOptions o;
  o.max_steps = 20000;
  CheckResult r = Check(b, o);
  CHECK(r.verdict == Verdict::kUnknown);
  REQUIRE(r.keys.size() == 1);
  CHECK_THAT(r.keys[0].unknown_reason, Catch::Contains("step budget"));
  o.max_steps = 0;
  o.key_timeout_seconds = 0.05;
  r = Check(b, o);
  CHECK(r.verdict == Verdict::kUnknown);
  CHECK(r.keys[0].unknown_reason == "timed out");
  o.key_timeout_seconds = 0;
  o.total_timeout_seconds = 0.05;
  r = Check(b, o);
  CHECK(r.verdict == Verdict::kUnknown);
  CHECK(r.keys[0].unknown_reason == "timed out");
}

TEST_CASE("The text and JSON reports name the verdict and the witness", "[check]") {
  HistoryBuilder b;
  b.Put(0, "k", "a", 1000, 2000).Put(1, "k", "b", 3000, 4000).Get(2, "k", "a", 5000, 6000);
  History h = b.Parse();
  CheckResult r = CheckHistory(h, CheckOptions());
  const std::string text = FormatText(h, r, ReportOptions());
  CHECK_THAT(text, Catch::StartsWith("verdict: NOT linearizable"));
  CHECK_THAT(text, Catch::Contains("violation on key \"k\""));
  CHECK_THAT(text, Catch::Contains("get -> \"a\""));
  const std::string json = FormatJson(h, r);
  CHECK_THAT(json, Catch::StartsWith("{\"verdict\":\"not linearizable\""));
  CHECK_THAT(json, Catch::Contains("\"witness\":[{\"index\":1,"));
  CHECK(json.back() == '\n');
}

TEST_CASE("Parallel checking gives the same answer", "[check]") {
  HistoryBuilder b;
  for (int k = 0; k < 8; k++) {
    const std::string key = "k" + std::to_string(k);
    b.Put(0, key, "a", k * 100, k * 100 + 10).Get(1, key, "a", k * 100 + 20, k * 100 + 30);
  }
  b.Put(0, "k3", "b", 1000, 1010).Get(1, "k3", "a", 1020, 1030);
  CheckOptions o;
  o.jobs = 4;
  CheckResult r = Check(b, o);
  CHECK(r.verdict == Verdict::kNotLinearizable);
  REQUIRE(r.violation);
  CHECK(r.violation->key == "k3");
}

}  // namespace
}  // namespace check
}  // namespace kv
