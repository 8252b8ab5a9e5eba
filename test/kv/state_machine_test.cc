#include "kv/state_machine.h"

#include <algorithm>
#include <catch2/catch.hpp>
#include <cstdio>
#include <optional>
#include <string>
#include <vector>

namespace kv {

namespace {
Command Put(std::string key, std::string value, uint64_t client = 0, uint64_t seq = 0) {
  Command c;
  c.op = OpType::kPut;
  c.key = std::move(key);
  c.value = std::move(value);
  c.client = client;
  c.seq = seq;
  return c;
}
Command Del(std::string key) {
  Command c;
  c.op = OpType::kDelete;
  c.key = std::move(key);
  return c;
}
Command Cas(std::string key, const char* expect, std::string value) {
  Command c;
  c.op = OpType::kCas;
  c.key = std::move(key);
  c.has_expect = expect != nullptr;
  if (expect) c.expect = expect;
  c.value = std::move(value);
  return c;
}
}  // namespace

TEST_CASE("Put, get, delete and a delete of a missing key") {
  StateMachine sm;
  bool dup = false;
  REQUIRE(sm.Apply(1, Put("a", "1"), &dup) == ApplyResult::kOk);
  std::string v;
  REQUIRE(sm.Get("a", &v));
  REQUIRE(v == "1");
  REQUIRE(sm.Apply(2, Del("a"), &dup) == ApplyResult::kOk);
  REQUIRE_FALSE(sm.Get("a", &v));
  REQUIRE(sm.Apply(3, Del("a"), &dup) == ApplyResult::kNotFound);
  REQUIRE(sm.applied_index() == 3);
}

TEST_CASE("ScanPrefix lists exactly the keys with the prefix, in order") {
  StateMachine sm;
  bool dup = false;
  uint64_t index = 0;
  for (const char* key : {"member/2", "member/10", "members", "member/", "a", "member"}) {
    REQUIRE(sm.Apply(++index, Put(key, std::string("v-") + key), &dup) == ApplyResult::kOk);
  }
  const auto found = sm.ScanPrefix("member/");
  REQUIRE(found == std::map<std::string, std::string>{{"member/", "v-member/"},
                                                      {"member/10", "v-member/10"},
                                                      {"member/2", "v-member/2"}});
  REQUIRE(sm.ScanPrefix("zzz").empty());
  REQUIRE(sm.ScanPrefix("").size() == 6);
}

// The keys of a scan page, in order.
std::vector<std::string> Keys(const ScanPage& page) {
  std::vector<std::string> keys;
  for (const ScannedKey& k : page.kvs) keys.push_back(k.key);
  return keys;
}

TEST_CASE("Scan reads a range in key order, with values and versions, or keys only") {
  StateMachine sm;
  bool dup = false;
  uint64_t index = 0;
  for (const char* key : {"b", "a", "c/1", "c/2", "d"}) {
    REQUIRE(sm.Apply(++index, Put(key, std::string("v-") + key), &dup) == ApplyResult::kOk);
  }
  ScanSpec all;
  ScanPage page = sm.Scan(all);
  CHECK(Keys(page) == std::vector<std::string>{"a", "b", "c/1", "c/2", "d"});
  CHECK_FALSE(page.more);
  CHECK(page.kvs[0].value == "v-a");
  CHECK(page.kvs[0].version.mod_index == 2);

  ScanSpec range;
  range.start = "b";
  range.end = "c/2";
  CHECK(Keys(sm.Scan(range)) == std::vector<std::string>{"b", "c/1"});
  range.keys_only = true;
  page = sm.Scan(range);
  CHECK(page.kvs[1].value.empty());
  CHECK(page.kvs[1].version.mod_index == 3);

  CHECK(Keys(sm.Scan(PrefixRange("c/"))) == std::vector<std::string>{"c/1", "c/2"});
  CHECK(sm.Scan(PrefixRange("x")).kvs.empty());
  CHECK(Keys(sm.Scan(PrefixRange(""))).size() == 5);
}

TEST_CASE("A prefix range ends after the last key with the prefix, 0xff bytes too") {
  CHECK(PrefixRange("ab").end == std::optional<std::string>("ac"));
  CHECK(PrefixRange(std::string("a\xff", 2)).end == std::optional<std::string>("b"));
  CHECK_FALSE(PrefixRange(std::string("\xff\xff", 2)).end.has_value());
  CHECK_FALSE(PrefixRange("").end.has_value());
  StateMachine sm;
  bool dup = false;
  REQUIRE(sm.Apply(1, Put(std::string("a\xff\x01", 3), "1"), &dup) == ApplyResult::kOk);
  REQUIRE(sm.Apply(2, Put("b", "2"), &dup) == ApplyResult::kOk);
  CHECK(sm.Scan(PrefixRange(std::string("a\xff", 2))).kvs.size() == 1);
}

TEST_CASE("Scan pages by count and by bytes, and next resumes where a page stopped") {
  StateMachine sm;
  bool dup = false;
  for (uint64_t i = 1; i <= 25; ++i) {
    char key[8];
    snprintf(key, sizeof key, "k%02d", static_cast<int>(i));
    REQUIRE(sm.Apply(i, Put(key, std::string(100, 'v')), &dup) == ApplyResult::kOk);
  }
  ScanSpec spec;
  spec.limit = 10;
  std::vector<std::string> seen;
  int pages = 0;
  for (;; ++pages) {
    ScanPage page = sm.Scan(spec);
    for (auto& k : Keys(page)) seen.push_back(k);
    if (!page.more) break;
    CHECK(page.kvs.size() == 10);
    spec.start = page.next;
  }
  CHECK(pages == 2);
  CHECK(seen.size() == 25);
  CHECK(std::is_sorted(seen.begin(), seen.end()));

  ScanSpec small;
  small.max_bytes = 350;  // three keys of 103 bytes
  ScanPage page = sm.Scan(small);
  CHECK(page.kvs.size() == 3);
  CHECK(page.more);
  small.max_bytes = 1;  // one key always fits
  CHECK(sm.Scan(small).kvs.size() == 1);
  small.keys_only = true;  // values do not count then
  small.max_bytes = 9;
  CHECK(sm.Scan(small).kvs.size() == 3);
}

TEST_CASE("Compare-and-swap succeeds only on the expected value or absence") {
  StateMachine sm;
  bool dup = false;
  REQUIRE(sm.Apply(1, Cas("k", nullptr, "first"), &dup) == ApplyResult::kOk);
  REQUIRE(sm.Apply(2, Cas("k", nullptr, "again"), &dup) == ApplyResult::kCasFailed);
  REQUIRE(sm.Apply(3, Cas("k", "wrong", "x"), &dup) == ApplyResult::kCasFailed);
  REQUIRE(sm.Apply(4, Cas("k", "first", "second"), &dup) == ApplyResult::kOk);
  std::string v;
  REQUIRE(sm.Get("k", &v));
  REQUIRE(v == "second");
  REQUIRE(sm.Apply(5, Cas("missing", "x", "y"), &dup) == ApplyResult::kCasFailed);
}

TEST_CASE("A retried write with the same client and seq applies once") {
  StateMachine sm;
  bool dup = false;
  Command cas = Cas("k", nullptr, "v1");
  cas.client = 7;
  cas.seq = 1;
  REQUIRE(sm.Apply(1, cas, &dup) == ApplyResult::kOk);
  REQUIRE_FALSE(dup);
  // Someone else changes the key; the retry must not apply (and must not fail).
  REQUIRE(sm.Apply(2, Put("k", "other"), &dup) == ApplyResult::kOk);
  REQUIRE(sm.Apply(3, cas, &dup) == ApplyResult::kOk);
  REQUIRE(dup);
  std::string v;
  REQUIRE(sm.Get("k", &v));
  REQUIRE(v == "other");
}

TEST_CASE("Sessions are bounded and evict the least recently written") {
  StateMachine sm(2);
  bool dup = false;
  sm.Apply(1, Put("a", "1", /*client=*/1, 1), &dup);
  sm.Apply(2, Put("b", "1", 2, 1), &dup);
  sm.Apply(3, Put("a", "2", 1, 2), &dup);  // client 1 is now the most recent
  sm.Apply(4, Put("c", "1", 3, 1), &dup);  // evicts client 2
  REQUIRE(sm.session_count() == 2);
  sm.Apply(5, Put("a", "x", 1, 2), &dup);
  REQUIRE(dup);  // client 1 kept its session
  sm.Apply(6, Put("b", "again", 2, 1), &dup);
  REQUIRE_FALSE(dup);  // client 2's session was evicted, so this applies
}

TEST_CASE("Digest is order independent and tracks contents") {
  StateMachine x, y;
  bool dup = false;
  x.Apply(1, Put("a", "1"), &dup);
  x.Apply(2, Put("b", "2"), &dup);
  y.Apply(1, Put("b", "2"), &dup);
  y.Apply(2, Put("a", "1"), &dup);
  REQUIRE(x.Digest() == y.Digest());
  y.Apply(3, Put("a", "changed"), &dup);
  REQUIRE(x.Digest() != y.Digest());
  y.Apply(4, Put("a", "1"), &dup);
  REQUIRE(x.Digest() == y.Digest());
  x.Apply(3, Del("a"), &dup);
  x.Apply(4, Del("b"), &dup);
  REQUIRE(x.Digest() == 0);
}

Command CasIndex(std::string key, uint64_t expect_index, std::string value) {
  Command c = Cas(std::move(key), nullptr, std::move(value));
  c.has_expect_index = true;
  c.expect_index = expect_index;
  return c;
}

TEST_CASE("Every key records the index that created it and the one that last changed it") {
  StateMachine sm;
  bool dup = false;
  uint64_t at = 0;
  sm.Apply(3, Put("a", "1"), &dup, &at);
  REQUIRE(at == 3);
  sm.Apply(5, Put("a", "2"), &dup);
  sm.Apply(6, Cas("a", "2", "3"), &dup);
  std::string v;
  KeyVersion ver;
  REQUIRE(sm.Get("a", &v, &ver));
  REQUIRE(ver.create_index == 3);
  REQUIRE(ver.mod_index == 6);
  // A failed cas and a delete of another key change nothing.
  sm.Apply(7, Cas("a", "wrong", "x"), &dup);
  sm.Apply(8, Del("b"), &dup);
  REQUIRE(sm.Get("a", &v, &ver));
  REQUIRE(ver.mod_index == 6);
  // Deleted and written again: a new life, a new create_index.
  sm.Apply(9, Del("a"), &dup);
  sm.Apply(10, Put("a", "again"), &dup);
  REQUIRE(sm.Get("a", &v, &ver));
  REQUIRE(ver.create_index == 10);
  REQUIRE(ver.mod_index == 10);
}

TEST_CASE("cas on expect_index compares the key's mod_index; 0 means absent") {
  StateMachine sm;
  bool dup = false;
  REQUIRE(sm.Apply(1, CasIndex("k", 0, "first"), &dup) == ApplyResult::kOk);
  REQUIRE(sm.Apply(2, CasIndex("k", 0, "again"), &dup) == ApplyResult::kCasFailed);
  REQUIRE(sm.Apply(3, CasIndex("k", 2, "x"), &dup) == ApplyResult::kCasFailed);
  REQUIRE(sm.Apply(4, CasIndex("k", 1, "second"), &dup) == ApplyResult::kOk);
  REQUIRE(sm.Apply(5, CasIndex("k", 1, "stale"), &dup) == ApplyResult::kCasFailed);
  std::string v;
  KeyVersion ver;
  REQUIRE(sm.Get("k", &v, &ver));
  REQUIRE(v == "second");
  REQUIRE(ver.mod_index == 4);
  REQUIRE(sm.Apply(6, CasIndex("missing", 4, "y"), &dup) == ApplyResult::kCasFailed);
}

TEST_CASE("A duplicate is answered with the index of the write that applied") {
  StateMachine sm;
  bool dup = false;
  uint64_t at = 0;
  sm.Apply(4, Put("a", "1", 7, 1), &dup, &at);
  REQUIRE(at == 4);
  sm.Apply(9, Put("a", "1", 7, 1), &dup, &at);
  REQUIRE(dup);
  REQUIRE(at == 4);
  sm.Apply(10, Put("a", "2", 7, 2), &dup, &at);
  REQUIRE(sm.Apply(11, Put("a", "old", 7, 1), &dup, &at) == ApplyResult::kStaleSeq);
  REQUIRE(at == 0);
}

TEST_CASE("Versions survive a snapshot; an older snapshot's keys get its index") {
  StateMachine sm;
  bool dup = false;
  sm.Apply(1, Put("a", "1"), &dup);
  sm.Apply(2, Put("b", "2"), &dup);
  sm.Apply(3, Put("a", "3"), &dup);
  StateMachine copy;
  REQUIRE(copy.Restore(sm.Serialize()).ok());
  std::string v;
  KeyVersion ver;
  REQUIRE(copy.Get("a", &v, &ver));
  REQUIRE((ver.create_index == 1 && ver.mod_index == 3));
  REQUIRE(copy.Get("b", &v, &ver));
  REQUIRE((ver.create_index == 2 && ver.mod_index == 2));
  // Version 2 (before versions): header 2, applied 7, no sessions, one key
  // "k" = "v", no members.
  REQUIRE(copy.Restore(std::string("\x02\x07\x00\x01\x01k\x01v\x00", 9)).ok());
  REQUIRE(copy.Get("k", &v, &ver));
  REQUIRE(v == "v");
  REQUIRE((ver.create_index == 7 && ver.mod_index == 7));
  // A version past the snapshot's own index is refused.
  REQUIRE(copy.Restore(std::string("\x03\x07\x00\x01\x01k\x01v\x01\x08\x00", 11)).IsCorruption());
}

TEST_CASE("bytes() counts the keys and values stored, through overwrites and deletes") {
  StateMachine sm;
  bool dup = false;
  sm.Apply(1, Put("ab", "123"), &dup);
  REQUIRE(sm.bytes() == 5);
  sm.Apply(2, Put("ab", "1"), &dup);
  REQUIRE(sm.bytes() == 3);
  sm.Apply(3, Cas("c", nullptr, "4567"), &dup);
  REQUIRE(sm.bytes() == 8);
  sm.Apply(4, Del("ab"), &dup);
  REQUIRE(sm.bytes() == 5);
  StateMachine copy;
  REQUIRE(copy.Restore(sm.Serialize()).ok());
  REQUIRE(copy.bytes() == 5);
  REQUIRE(copy.Restore("garbage").IsCorruption());
  REQUIRE(copy.bytes() == 0);
}

TEST_CASE("Snapshot restores data, sessions and applied index") {
  StateMachine sm;
  bool dup = false;
  sm.Apply(1, Put("a", std::string("\0\1", 2), 5, 1), &dup);
  sm.Apply(2, Put("b", "2"), &dup);
  StateMachine copy;
  REQUIRE(copy.Restore(sm.Serialize()).ok());
  REQUIRE(copy.applied_index() == 2);
  REQUIRE(copy.Digest() == sm.Digest());
  REQUIRE(copy.size() == 2);
  copy.Apply(3, Put("a", "dup", 5, 1), &dup);
  REQUIRE(dup);
}

TEST_CASE("A view serializes the state of its moment, whatever is applied after it") {
  StateMachine sm;
  bool dup = false;
  sm.Apply(1, Put("a", "1", 5, 1), &dup);
  sm.Apply(2, Put("b", "2"), &dup);
  sm.SetMember(3, 1, "10.0.0.1:8080");
  const std::string before = sm.Serialize();
  const StateView view = sm.TakeView();
  sm.Apply(4, Put("a", "changed", 5, 2), &dup);
  sm.Apply(5, Del("b"), &dup);
  sm.Apply(6, Put("c", "3"), &dup);
  sm.SetMember(7, 2, "10.0.0.2:8080");
  REQUIRE(view.Serialize() == before);
  StateMachine copy;
  REQUIRE(copy.Restore(view.Serialize()).ok());
  REQUIRE(copy.applied_index() == 3);
  REQUIRE(copy.size() == 2);
  REQUIRE(copy.members().size() == 1);
}

TEST_CASE("A view serialized in pieces gives the same bytes, of the size it announces") {
  StateMachine sm;
  bool dup = false;
  for (uint64_t i = 1; i <= 300; ++i) {
    sm.Apply(i, Put("key" + std::to_string(i), std::string(i * 7, 'v'), i % 5 + 1, i), &dup);
  }
  sm.SetMember(301, 1, "10.0.0.1:8080");
  const StateView view = sm.TakeView();
  const std::string whole = view.Serialize();
  REQUIRE(view.SerializedSize() == whole.size());
  std::string joined;
  int pieces = 0;
  REQUIRE(view.SerializeTo(1000,
                           [&](std::string_view piece) {
                             pieces++;
                             joined.append(piece);
                             return Status::OK();
                           })
              .ok());
  REQUIRE(joined == whole);
  REQUIRE(pieces > 100);
  // The first error of emit stops it and comes back.
  pieces = 0;
  Status s = view.SerializeTo(1000, [&](std::string_view) {
    return ++pieces == 3 ? Status::IOError("disk full") : Status::OK();
  });
  REQUIRE(s.IsIOError());
  REQUIRE(pieces == 3);
}

TEST_CASE("A view's pieces resume from any cursor; a data-only view restores without sessions") {
  StateMachine sm;
  bool dup = false;
  for (uint64_t i = 1; i <= 50; ++i) {
    sm.Apply(i, Put("key" + std::to_string(i), std::string(i * 3, 'v'), 7, i), &dup);
  }
  sm.SetMember(51, 1, "10.0.0.1:8080");
  const StateView view = sm.TakeView();
  const std::string whole = view.Serialize();
  std::string joined;
  std::vector<uint64_t> cursors;
  std::vector<std::string> pieces;
  uint64_t cursor = 0;
  bool last = false;
  while (!last) {
    cursors.push_back(cursor);
    pieces.emplace_back();
    last = view.SerializePiece(&cursor, 100, &pieces.back());
    joined += pieces.back();
  }
  REQUIRE(joined == whole);
  REQUIRE(pieces.size() > 10);
  // Asking again from a cursor gives the same piece (a resent request).
  std::string again;
  uint64_t c = cursors[5];
  REQUIRE_FALSE(view.SerializePiece(&c, 100, &again));
  REQUIRE(again == pieces[5]);
  REQUIRE(c == cursors[6]);
  // Past the end there is nothing more.
  std::string none;
  REQUIRE(view.SerializePiece(&cursor, 100, &none));
  REQUIRE(none.empty());

  const StateView data = sm.TakeDataView();
  REQUIRE(data.applied_index() == 51);
  REQUIRE(data.keys() == 50);
  StateMachine copy;
  REQUIRE(copy.Restore(data.Serialize()).ok());
  REQUIRE(copy.Digest() == sm.Digest());
  REQUIRE(copy.session_count() == 0);
  REQUIRE(copy.members().empty());
  REQUIRE(copy.applied_index() == 51);
  REQUIRE(copy.clock_ms() == sm.clock_ms());
}

TEST_CASE("A corrupt snapshot is refused and leaves the state machine empty") {
  StateMachine sm;
  bool dup = false;
  sm.Apply(1, Put("key", "value", 5, 1), &dup);
  const std::string bytes = sm.Serialize();
  for (size_t n = 0; n + 1 < bytes.size(); ++n) {
    StateMachine copy;
    copy.Apply(1, Put("stale", "x"), &dup);
    REQUIRE(copy.Restore(bytes.substr(0, n)).IsCorruption());
    REQUIRE(copy.size() == 0);
    REQUIRE(copy.applied_index() == 0);
  }
}

}  // namespace kv

namespace kv {

TEST_CASE("Members' addresses survive a snapshot and can be removed") {
  StateMachine sm;
  sm.SetMember(1, 4, "10.0.0.4:8080");
  sm.SetMember(2, 5, "10.0.0.5:8080");
  sm.SetMember(3, 4, "");
  REQUIRE(sm.applied_index() == 3);
  StateMachine copy;
  REQUIRE(copy.Restore(sm.Serialize()).ok());
  REQUIRE(copy.members() == std::map<uint64_t, std::string>{{5, "10.0.0.5:8080"}});
}

}  // namespace kv

namespace kv {

TEST_CASE("A seq below the session's last is refused, and seq 0 means no session") {
  StateMachine sm;
  bool dup = false;
  REQUIRE(sm.Apply(1, Put("a", "1", 9, 2), &dup) == ApplyResult::kOk);
  REQUIRE(sm.Apply(2, Put("a", "old", 9, 1), &dup) == ApplyResult::kStaleSeq);
  REQUIRE(dup);
  std::string v;
  REQUIRE(sm.Get("a", &v));
  REQUIRE(v == "1");
  // Without a seq nothing is deduplicated: both writes apply.
  REQUIRE(sm.Apply(3, Put("b", "first", 10, 0), &dup) == ApplyResult::kOk);
  REQUIRE(sm.Apply(4, Put("b", "second", 10, 0), &dup) == ApplyResult::kOk);
  REQUIRE_FALSE(dup);
  REQUIRE(sm.Get("b", &v));
  REQUIRE(v == "second");
}

}  // namespace kv

namespace kv {

namespace {
// A write as the leader stamps it: its clock, and a deadline if ttl_ms > 0.
// The keys of `changes` removed because their deadline had passed.
std::vector<std::string> Expired(const std::vector<Change>& changes) {
  std::vector<std::string> keys;
  for (const Change& c : changes) {
    if (c.kind == Change::Kind::kExpire) keys.push_back(c.key);
  }
  return keys;
}
Command At(Command c, uint64_t now_ms, uint64_t ttl_ms = 0) {
  c.now_ms = now_ms;
  c.deadline_ms = ttl_ms > 0 ? now_ms + ttl_ms : 0;
  return c;
}
Command Touch(std::string key, uint64_t now_ms, uint64_t ttl_ms) {
  Command c;
  c.op = OpType::kTouch;
  c.key = std::move(key);
  return At(std::move(c), now_ms, ttl_ms);
}
Command Expire(std::vector<std::string> keys, uint64_t now_ms) {
  Command c;
  c.op = OpType::kExpire;
  c.keys = std::move(keys);
  c.now_ms = now_ms;
  return c;
}
}  // namespace

TEST_CASE("A key with a deadline is gone once a clock reaches it, for reads and writes") {
  StateMachine sm;
  bool dup = false;
  sm.Apply(1, At(Put("a", "1"), 1000, 500), &dup);
  sm.Apply(2, At(Put("b", "2"), 1000), &dup);
  REQUIRE(sm.clock_ms() == 1000);
  REQUIRE(sm.next_deadline() == 1500);
  // A reader's clock hides it; the state machine's own has not reached it.
  REQUIRE(sm.Find("a", 1499) != nullptr);
  REQUIRE(sm.Find("a", 1500) == nullptr);
  std::string v;
  REQUIRE(sm.Get("a", &v));
  ScanSpec all;
  REQUIRE(sm.Scan(all, 1200).kvs.size() == 2);
  REQUIRE(sm.Scan(all, 1200).kvs[0].ttl_ms == 300);
  REQUIRE(sm.Scan(all, 1200).kvs[1].ttl_ms == 0);
  REQUIRE(sm.Scan(all, 1500).kvs.size() == 1);
  // A write stamped past the deadline: the key is gone for it and for reads.
  std::vector<Change> changes;
  uint64_t at = 0;
  REQUIRE(sm.Apply(3, At(Cas("a", nullptr, "new"), 1600), &dup, &at, &changes) == ApplyResult::kOk);
  REQUIRE(Expired(changes) == std::vector<std::string>{"a"});
  KeyVersion ver;
  REQUIRE(sm.Get("a", &v, &ver));
  REQUIRE((v == "new" && ver.create_index == 3));
  REQUIRE(sm.next_deadline() == 0);
  sm.Apply(4, At(Put("c", "3"), 1600, 100), &dup);
  REQUIRE(sm.Apply(5, At(Del("c"), 1700), &dup) == ApplyResult::kNotFound);
  REQUIRE(sm.size() == 2);
}

TEST_CASE("The state machine's clock never goes back, and expired keys stay gone") {
  StateMachine sm;
  bool dup = false;
  sm.Apply(1, At(Put("a", "1"), 2000, 100), &dup);
  sm.Apply(2, At(Put("b", "2"), 2200), &dup);
  // A new leader whose clock is behind: a write stamped 1000 still sees "a" expired.
  std::vector<Change> changes;
  REQUIRE(sm.Apply(3, At(Del("a"), 1000), &dup, nullptr, &changes) == ApplyResult::kNotFound);
  REQUIRE(Expired(changes) == std::vector<std::string>{"a"});
  REQUIRE(sm.clock_ms() == 2200);
  // Commands of before version 3 carry no clock: they apply at the state machine's.
  sm.Apply(4, At(Put("c", "3"), 2200, 50), &dup);
  REQUIRE(sm.Find("c", 0) != nullptr);
  sm.Apply(5, Put("d", "4"), &dup);
  REQUIRE(sm.clock_ms() == 2200);
}

TEST_CASE("touch sets a new deadline and keeps the value and versions") {
  StateMachine sm;
  bool dup = false;
  sm.Apply(1, At(Put("a", "1"), 1000, 100), &dup);
  uint64_t at = 0;
  REQUIRE(sm.Apply(2, Touch("a", 1050, 1000), &dup, &at) == ApplyResult::kOk);
  REQUIRE(at == 2);
  const Record* r = sm.Find("a", 1500);
  REQUIRE(r != nullptr);
  REQUIRE(r->value() == "1");
  REQUIRE((r->version().create_index == 1 && r->version().mod_index == 1));
  REQUIRE(r->deadline_ms() == 2050);
  // Without a ttl the key becomes permanent; so does a put without one.
  REQUIRE(sm.Apply(3, Touch("a", 1100, 0), &dup) == ApplyResult::kOk);
  REQUIRE(sm.Find("a", UINT64_MAX - 1) != nullptr);
  REQUIRE(sm.next_deadline() == 0);
  sm.Apply(4, At(Put("b", "2"), 1100, 10), &dup);
  sm.Apply(5, At(Put("b", "3"), 1105), &dup);
  REQUIRE(sm.next_deadline() == 0);
  REQUIRE(sm.Find("b", 5000) != nullptr);
  // Absent, or expired: NOT_FOUND, and the session remembers it.
  REQUIRE(sm.Apply(6, Touch("zz", 1200, 10), &dup) == ApplyResult::kNotFound);
  sm.Apply(7, At(Put("c", "4"), 1200, 10), &dup);
  Command t = Touch("c", 1300, 1000);
  t.client = 4;
  t.seq = 1;
  REQUIRE(sm.Apply(8, t, &dup) == ApplyResult::kNotFound);
  REQUIRE(sm.Apply(9, t, &dup, &at) == ApplyResult::kNotFound);
  REQUIRE((dup && at == 8));
  REQUIRE(sm.Find("c", 0) == nullptr);
}

TEST_CASE("An expire entry removes the listed keys whose deadline passed, not keys written since") {
  StateMachine sm;
  bool dup = false;
  sm.Apply(1, At(Put("a", "1"), 1000, 100), &dup);
  sm.Apply(2, At(Put("b", "2"), 1000, 50), &dup);
  sm.Apply(3, At(Put("c", "3"), 1000, 900), &dup);
  // Earliest deadline first, up to max.
  REQUIRE(sm.ExpiredKeys(1100, 10, 100) == std::vector<std::string>{"b", "a"});
  REQUIRE(sm.ExpiredKeys(1100, 1, 100) == std::vector<std::string>{"b"});
  REQUIRE(sm.ExpiredKeys(1100, 10, 1) == std::vector<std::string>{"b"});  // by bytes
  REQUIRE(sm.ExpiredKeys(1100, 10, 0) == std::vector<std::string>{"b"});  // one always fits
  REQUIRE(sm.ExpiredKeys(1049, 10, 100).empty());
  // "b" is written again (permanent) before the leader's removal applies.
  sm.Apply(4, At(Put("b", "4"), 1020), &dup);
  std::vector<Change> changes;
  REQUIRE(sm.Apply(5, Expire({"b", "a", "nothing"}, 1100), &dup, nullptr, &changes) ==
          ApplyResult::kOk);
  REQUIRE(Expired(changes) == std::vector<std::string>{"a"});
  REQUIRE(sm.size() == 2);
  REQUIRE(sm.applied_index() == 5);
  REQUIRE(sm.next_deadline() == 1900);
  // The same state as a replica that never had "a": the digest agrees.
  StateMachine other;
  other.Apply(2, At(Put("b", "4"), 1020), &dup);
  other.Apply(3, At(Put("c", "3"), 1000, 900), &dup);
  REQUIRE(other.Digest() == sm.Digest());
}

TEST_CASE("Deadlines and the clock survive a snapshot; older snapshots have none") {
  StateMachine sm;
  bool dup = false;
  sm.Apply(1, At(Put("a", "1"), 1000, 100), &dup);
  sm.Apply(2, At(Put("b", "2"), 1200), &dup);
  sm.Apply(3, At(Put("c", "3"), 1300, 5000), &dup);
  StateMachine copy;
  REQUIRE(copy.Restore(sm.Serialize()).ok());
  REQUIRE(copy.clock_ms() == 1300);
  REQUIRE(copy.Digest() == sm.Digest());
  REQUIRE(copy.next_deadline() == 1100);
  REQUIRE(copy.Find("a", 0) == nullptr);  // expired by the restored clock
  REQUIRE(copy.Find("c", 6299) != nullptr);
  REQUIRE(copy.Find("c", 6300) == nullptr);
  REQUIRE(copy.ExpiredKeys(0, 10, 100) == std::vector<std::string>{"a"});
  // A deadline changes the digest: replicas that disagree on one differ.
  StateMachine permanent;
  permanent.Apply(1, At(Put("a", "1"), 1000), &dup);
  StateMachine expiring;
  expiring.Apply(1, At(Put("a", "1"), 1000, 100), &dup);
  REQUIRE(permanent.Digest() != expiring.Digest());
}

}  // namespace kv

namespace kv {

namespace {
TxnCompare ModIs(TxnCompare::Kind kind, std::string key, uint64_t index) {
  return TxnCompare{kind, std::move(key), "", index};
}
TxnOp TxnPut(std::string key, std::string value, uint64_t deadline_ms = 0) {
  return TxnOp{TxnOp::Kind::kPut, std::move(key), std::move(value), deadline_ms};
}
TxnOp TxnDel(std::string key) { return TxnOp{TxnOp::Kind::kDelete, std::move(key), "", 0}; }
TxnOp TxnGet(std::string key) { return TxnOp{TxnOp::Kind::kGet, std::move(key), "", 0}; }
Command Txn(std::vector<TxnCompare> compare, std::vector<TxnOp> success,
            std::vector<TxnOp> failure = {}) {
  Command c;
  c.op = OpType::kTxn;
  c.compare = std::move(compare);
  c.success = std::move(success);
  c.failure = std::move(failure);
  return c;
}
std::string ValueOf(const TxnOpResult& r) {
  return r.record.get() != nullptr ? std::string(r.record->value()) : "<none>";
}
}  // namespace

TEST_CASE("A transaction runs its success branch only when every compare holds") {
  StateMachine sm;
  bool dup = false;
  sm.Apply(1, Put("a", "1"), &dup);
  sm.Apply(2, Put("b", "2"), &dup);
  using K = TxnCompare::Kind;
  struct Case {
    TxnCompare compare;
    bool holds;
  } cases[] = {
      {{K::kValue, "a", "1", 0}, true},      {{K::kValue, "a", "2", 0}, false},
      {{K::kValue, "x", "", 0}, false},      {{K::kAbsent, "x", "", 0}, true},
      {{K::kAbsent, "a", "", 0}, false},     {{K::kPresent, "a", "", 0}, true},
      {{K::kPresent, "x", "", 0}, false},    {ModIs(K::kModEqual, "b", 2), true},
      {ModIs(K::kModEqual, "b", 1), false},  {ModIs(K::kModEqual, "x", 0), true},
      {ModIs(K::kModLess, "b", 3), true},    {ModIs(K::kModLess, "b", 2), false},
      {ModIs(K::kModGreater, "b", 1), true}, {ModIs(K::kModGreater, "b", 2), false},
      {ModIs(K::kModLess, "x", 1), true},
  };
  uint64_t index = 3;
  for (const Case& c : cases) {
    CAPTURE(c.compare.key, static_cast<int>(c.compare.kind), c.compare.value, c.compare.index);
    std::vector<TxnOpResult> results;
    const ApplyResult r =
        sm.Apply(index++, Txn({c.compare}, {TxnGet("a")}, {TxnGet("b"), TxnGet("x")}), &dup,
                 nullptr, nullptr, &results);
    REQUIRE(r == (c.holds ? ApplyResult::kOk : ApplyResult::kCasFailed));
    REQUIRE(results.size() == (c.holds ? 1 : 2));
    REQUIRE(ValueOf(results[0]) == (c.holds ? "1" : "2"));
    if (!c.holds) REQUIRE(results[1].result == ApplyResult::kNotFound);
  }
  // Every compare must hold; none at all always does.
  REQUIRE(sm.Apply(index++, Txn({{K::kPresent, "a", "", 0}, {K::kPresent, "x", "", 0}}, {}),
                   &dup) == ApplyResult::kCasFailed);
  REQUIRE(sm.Apply(index++, Txn({}, {}), &dup) == ApplyResult::kOk);
}

TEST_CASE("A transaction's ops apply in order at one index and see each other") {
  StateMachine sm;
  bool dup = false;
  sm.Apply(1, Put("from", "10"), &dup);
  sm.Apply(2, Put("gone", "x"), &dup);
  std::vector<TxnOpResult> results;
  uint64_t at = 0;
  const Command transfer =
      Txn({ModIs(TxnCompare::Kind::kModEqual, "from", 1)},
          {TxnPut("from", "7"), TxnPut("to", "3"), TxnGet("to"), TxnDel("gone"), TxnDel("gone"),
           TxnGet("gone"), TxnPut("to", "4"), TxnGet("from")});
  REQUIRE(sm.Apply(3, transfer, &dup, &at, nullptr, &results) == ApplyResult::kOk);
  REQUIRE(at == 3);
  REQUIRE(results.size() == 8);
  REQUIRE(ValueOf(results[2]) == "3");
  REQUIRE(results[3].result == ApplyResult::kOk);
  REQUIRE(results[4].result == ApplyResult::kNotFound);
  REQUIRE(results[5].result == ApplyResult::kNotFound);
  REQUIRE(ValueOf(results[7]) == "7");
  REQUIRE(results[7].record->version().create_index == 1);
  REQUIRE(results[7].record->version().mod_index == 3);
  std::string v;
  KeyVersion ver;
  REQUIRE(sm.Get("to", &v, &ver));
  REQUIRE((v == "4" && ver.create_index == 3 && ver.mod_index == 3));
  REQUIRE_FALSE(sm.Get("gone", &v));
  // The state is what applying the same writes one by one gives.
  StateMachine one_by_one;
  one_by_one.Apply(1, Put("from", "10"), &dup);
  one_by_one.Apply(2, Put("gone", "x"), &dup);
  one_by_one.Apply(3, Put("from", "7"), &dup);
  one_by_one.Apply(4, Put("to", "4"), &dup);
  one_by_one.Apply(5, Del("gone"), &dup);
  REQUIRE(sm.Digest() == one_by_one.Digest());
  REQUIRE(sm.bytes() == one_by_one.bytes());
  // The same compare again fails: "from" changed at 3.
  REQUIRE(sm.Apply(4, transfer, &dup) == ApplyResult::kCasFailed);
  REQUIRE(sm.Get("from", &v));
  REQUIRE(v == "7");
}

TEST_CASE("A transaction resent in its session applies once and keeps its branch") {
  StateMachine sm;
  bool dup = false;
  Command take =
      Txn({{TxnCompare::Kind::kAbsent, "lock", "", 0}}, {TxnPut("lock", "me")}, {TxnGet("lock")});
  take.client = 5;
  take.seq = 1;
  std::vector<TxnOpResult> results;
  REQUIRE(sm.Apply(1, take, &dup, nullptr, nullptr, &results) == ApplyResult::kOk);
  REQUIRE_FALSE(dup);
  REQUIRE(results.size() == 1);
  uint64_t at = 0;
  REQUIRE(sm.Apply(2, take, &dup, &at, nullptr, &results) == ApplyResult::kOk);
  REQUIRE(dup);
  REQUIRE(at == 1);
  REQUIRE(results.empty());  // not kept: the reply says so
  // Another session finds the lock taken, and that survives a snapshot.
  take.client = 6;
  REQUIRE(sm.Apply(3, take, &dup, nullptr, nullptr, &results) == ApplyResult::kCasFailed);
  REQUIRE(ValueOf(results[0]) == "me");
  StateMachine restored;
  REQUIRE(restored.Restore(sm.Serialize()).ok());
  REQUIRE(restored.Apply(4, take, &dup) == ApplyResult::kCasFailed);
  REQUIRE(dup);
}

TEST_CASE("Apply reports every change a command made, in order") {
  StateMachine sm;
  bool dup = false;
  std::vector<Change> changes;
  auto seen = [&] {
    std::vector<std::string> out;
    for (const Change& c : changes) {
      const char* kinds[] = {"put ", "del ", "expire "};
      out.push_back(kinds[static_cast<int>(c.kind)] + std::string(c.changed_key()) +
                    (c.kind == Change::Kind::kPut ? "=" + std::string(c.record->value()) : ""));
    }
    return out;
  };
  sm.Apply(1, At(Put("a", "1"), 1000, 100), &dup, nullptr, &changes);
  REQUIRE(seen() == std::vector<std::string>{"put a=1"});
  REQUIRE(changes[0].record->version().mod_index == 1);
  sm.Apply(2, At(Put("b", "2"), 1000), &dup, nullptr, &changes);
  // A delete of a missing key, a failed cas and a touch change nothing.
  sm.Apply(3, At(Del("x"), 1000), &dup, nullptr, &changes);
  REQUIRE(changes.empty());
  sm.Apply(4, At(Cas("b", "wrong", "3"), 1000), &dup, nullptr, &changes);
  REQUIRE(changes.empty());
  sm.Apply(5, Touch("b", 1000, 5000), &dup, nullptr, &changes);
  REQUIRE(changes.empty());
  // A transaction's writes in its order, after the key it found expired.
  sm.Apply(6,
           At(Txn({{TxnCompare::Kind::kAbsent, "a", "", 0}},
                  {TxnPut("c", "3"), TxnDel("b"), TxnPut("c", "4"), TxnGet("c")}),
              1200),
           &dup, nullptr, &changes);
  REQUIRE(seen() == std::vector<std::string>{"expire a", "put c=3", "del b", "put c=4"});
  // A duplicate changes nothing.
  Command put = Put("d", "5", 9, 1);
  sm.Apply(7, put, &dup, nullptr, &changes);
  sm.Apply(8, put, &dup, nullptr, &changes);
  REQUIRE((dup && changes.empty()));
}

TEST_CASE("A transaction sees expired keys as absent, and puts with deadlines") {
  StateMachine sm;
  bool dup = false;
  sm.Apply(1, At(Put("lease", "old"), 1000, 100), &dup);
  std::vector<Change> changes;
  std::vector<TxnOpResult> results;
  Command take = At(Txn({{TxnCompare::Kind::kAbsent, "lease", "", 0}},
                        {TxnPut("lease", "new", 1300), TxnGet("lease")}),
                    1200);
  REQUIRE(sm.Apply(2, take, &dup, nullptr, &changes, &results) == ApplyResult::kOk);
  REQUIRE(Expired(changes) == std::vector<std::string>{"lease"});
  REQUIRE(results[1].record->deadline_ms() == 1300);
  REQUIRE(results[1].record->version().create_index == 2);
  REQUIRE(sm.next_deadline() == 1300);
  REQUIRE(sm.Find("lease", 1299) != nullptr);
  REQUIRE(sm.Find("lease", 1300) == nullptr);
}

}  // namespace kv
