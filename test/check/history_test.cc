#include "kvcheck/history.h"

#include <catch2/catch.hpp>

namespace kv {
namespace check {
namespace {

TEST_CASE("ParseEvent reads every field of kvload's format", "[check][history]") {
  Event e;
  Status s = ParseEvent(
      R"({"process":3,"type":"invoke","f":"cas","key":"k1","value":"new","expected":"old","time":123456789012})",
      &e);
  REQUIRE(s.ok());
  CHECK(e.process == 3);
  CHECK(e.type == EventType::kInvoke);
  CHECK(e.kind == OpKind::kCas);
  CHECK(e.key == "k1");
  REQUIRE(e.value);
  CHECK(*e.value == "new");
  REQUIRE(e.expected);
  CHECK(*e.expected == "old");
  CHECK(e.time == 123456789012);
}

TEST_CASE("ParseEvent decodes escapes, null and ignores unknown fields", "[check][history]") {
  Event e;
  Status s = ParseEvent(
      R"( { "time" : 5, "extra": {"a":[1,2.5,true,null]}, "key":"a\"b\\c\u00e9\ud83d\ude00",)"
      R"( "f":"get", "type":"ok", "value":null, "process":-1 } )",
      &e);
  REQUIRE(s.ok());
  CHECK(e.key == "a\"b\\c\xC3\xA9\xF0\x9F\x98\x80");
  CHECK_FALSE(e.value);
  CHECK_FALSE(e.expected);
  CHECK(e.process == -1);
  CHECK(e.type == EventType::kOk);
}

TEST_CASE("ParseEvent explains malformed lines", "[check][history]") {
  Event e;
  auto error = [&](const char* line) {
    Status s = ParseEvent(line, &e);
    REQUIRE_FALSE(s.ok());
    CHECK(s.IsInvalidArgument());
    return s.message();
  };
  CHECK_THAT(error(R"({"process":1,"type":"invoke","f":"get","key":"k","time":1)"),
             Catch::Contains("expected ',' or '}'"));
  CHECK_THAT(error(R"({"process":1,"type":"invoke","f":"get","time":1})"),
             Catch::Contains("missing field \"key\""));
  CHECK_THAT(error(R"({"process":1,"type":"begin","f":"get","key":"k","time":1})"),
             Catch::Contains("unknown \"type\" \"begin\""));
  CHECK_THAT(error(R"({"process":1,"type":"ok","f":"incr","key":"k","time":1})"),
             Catch::Contains("unknown \"f\" \"incr\""));
  CHECK_THAT(error(R"({"process":1,"type":"ok","f":"get","key":"k","time":1.5})"),
             Catch::Contains("\"time\" must be an integer"));
  CHECK_THAT(error(R"({"process":1,"type":"ok","f":"get","key":"k","time":99999999999999999999})"),
             Catch::Contains("out of range"));
  CHECK_THAT(error(R"({"process":1,"type":"ok","f":"get","key":"k","value":7,"time":1})"),
             Catch::Contains("\"value\" must be a string or null"));
  CHECK_THAT(error(R"({"process":1,"type":"ok","f":"get","key":"k\q","time":1})"),
             Catch::Contains("bad escape"));
  CHECK_THAT(error(R"({"process":1,"type":"ok","f":"get","key":"k)"),
             Catch::Contains("unterminated string"));
  CHECK_THAT(error(R"({"process":1} trailing)"), Catch::Contains("unexpected text"));
  CHECK_THAT(error("not json"), Catch::Contains("column 1"));
}

TEST_CASE("ParseHistory pairs invokes with completions", "[check][history]") {
  // The lines kvload writes today: no "expected", put completions repeat
  // the value, gets complete with the value read.
  const char* text =
      R"({"process":0,"type":"invoke","f":"put","key":"key1","value":"1-1-x","time":100})"
      "\n"
      R"({"process":1,"type":"invoke","f":"get","key":"key1","value":null,"time":110})"
      "\n\n"
      R"({"process":0,"type":"ok","f":"put","key":"key1","value":"1-1-x","time":200})"
      "\n"
      R"({"process":1,"type":"ok","f":"get","key":"key1","value":"1-1-x","time":210})"
      "\n"
      R"({"process":2,"type":"invoke","f":"put","key":"key2","value":"2-1-x","time":300})"
      "\n"
      R"({"process":2,"type":"info","f":"put","key":"key2","value":"2-1-x","time":900})"
      "\n"
      R"({"process":3,"type":"invoke","f":"cas","key":"key2","value":"n","expected":null,"time":950})"
      "\n"
      R"({"process":3,"type":"fail","f":"cas","key":"key2","value":"n","time":960})"
      "\n"
      R"({"process":4,"type":"invoke","f":"delete","key":"key1","value":null,"time":1000})"
      "\n";
  History h;
  Status s = ParseHistoryString(text, &h);
  REQUIRE(s.ok());
  CHECK(h.events == 9);
  REQUIRE(h.ops.size() == 5);
  CHECK(h.ops[0].kind == OpKind::kPut);
  CHECK(h.ops[0].outcome == Outcome::kOk);
  CHECK(*h.ops[0].value == "1-1-x");
  CHECK(h.ops[0].invoke_time == 100);
  CHECK(h.ops[0].return_time == 200);
  CHECK(h.ops[0].invoke_line == 1);
  CHECK(h.ops[0].return_line == 4);
  CHECK(h.ops[1].kind == OpKind::kGet);
  REQUIRE(h.ops[1].result);
  CHECK(*h.ops[1].result == "1-1-x");
  CHECK(h.ops[2].outcome == Outcome::kInfo);
  CHECK(h.ops[2].return_time == kNever);
  CHECK(h.ops[3].kind == OpKind::kCas);
  CHECK(h.ops[3].outcome == Outcome::kFail);
  CHECK_FALSE(h.ops[3].expected);
  // Never completed: unknown outcome.
  CHECK(h.ops[4].kind == OpKind::kDelete);
  CHECK(h.ops[4].outcome == Outcome::kInfo);
  CHECK(h.ops[4].return_line == 0);
}

TEST_CASE("ParseHistory names the line of a bad event", "[check][history]") {
  History h;
  auto error = [&](const std::string& text) {
    Status s = ParseHistoryString(text, &h);
    REQUIRE_FALSE(s.ok());
    return s.message();
  };
  const std::string ok_line =
      R"({"process":0,"type":"invoke","f":"get","key":"k","value":null,"time":1})"
      "\n";
  CHECK_THAT(error(ok_line + "\n{\"process\":0,\n"), Catch::StartsWith("line 3: column"));
  CHECK_THAT(error(ok_line + ok_line), Catch::StartsWith("line 2: process 0 invokes while"));
  CHECK_THAT(error(R"({"process":5,"type":"ok","f":"get","key":"k","value":null,"time":1})"),
             Catch::StartsWith("line 1: process 5 completes an operation it never invoked"));
  CHECK_THAT(
      error(ok_line + R"({"process":0,"type":"ok","f":"put","key":"k","value":null,"time":2})"),
      Catch::Contains("does not match its invoke on line 1"));
  CHECK_THAT(
      error(ok_line + R"({"process":0,"type":"ok","f":"get","key":"k","value":null,"time":0})"),
      Catch::Contains("completes before its invoke"));
}

TEST_CASE("AppendJsonString round-trips through the parser", "[check][history]") {
  const std::string nasty = "q\"b\\s\n\t\x01 end";
  std::string line = R"({"process":1,"type":"invoke","f":"put","time":1,"key":"k","value":)";
  AppendJsonString(nasty, &line);
  line += "}";
  Event e;
  REQUIRE(ParseEvent(line, &e).ok());
  REQUIRE(e.value);
  CHECK(*e.value == nasty);
}

}  // namespace
}  // namespace check
}  // namespace kv
