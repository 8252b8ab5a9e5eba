#include "net/client_codec.h"

#include <catch2/catch.hpp>
#include <map>
#include <optional>
#include <random>
#include <vector>

#include "codec_test_util.h"
#include "net/msgpack_util.h"

namespace kv::net {

namespace {

ShardMap ThreeShards() {
  ShardMap map;
  map.version = 7;
  map.shards = 3;
  map.replicas = 2;
  map.members = {{1, "10.0.0.1:8080"}, {2, "10.0.0.2:8080"}, {3, "10.0.0.3:8080"}};
  // Out of order on purpose: the decoder sorts by shard id.
  map.list.push_back(ShardInfo{2, 12, {3, 1}, 0, ""});
  map.list.push_back(ShardInfo{0, 10, {1, 2}, 1, "10.0.0.1:8080"});
  map.list.push_back(ShardInfo{1, 11, {2, 3}, 3, "10.0.0.3:8080"});
  return map;
}

void RequireSameShard(const ShardInfo& a, const ShardInfo& b) {
  REQUIRE(a.shard == b.shard);
  REQUIRE(a.group == b.group);
  REQUIRE(a.replicas == b.replicas);
  REQUIRE(a.leader == b.leader);
  REQUIRE(a.leader_address == b.leader_address);
}

GroupStatus Group(uint64_t id, int64_t shard) {
  GroupStatus g;
  g.group = id;
  g.shard = shard;
  g.role = shard < 0 ? "leader" : "follower";
  g.term = 4 + id;
  g.leader = 2;
  g.commit = 100 + id;
  g.applied = 99 + id;
  g.last_index = 101 + id;
  g.snapshot_index = 50;
  g.digest = 0xfeedULL << 40;
  g.keys = 1000 * id;
  g.voters = {1, 2, 3};
  g.learners = {4};
  return g;
}

void RequireSameGroup(const GroupStatus& a, const GroupStatus& b) {
  REQUIRE(a.group == b.group);
  REQUIRE(a.shard == b.shard);
  REQUIRE(a.role == b.role);
  REQUIRE(a.term == b.term);
  REQUIRE(a.leader == b.leader);
  REQUIRE(a.commit == b.commit);
  REQUIRE(a.applied == b.applied);
  REQUIRE(a.last_index == b.last_index);
  REQUIRE(a.snapshot_index == b.snapshot_index);
  REQUIRE(a.digest == b.digest);
  REQUIRE(a.keys == b.keys);
  REQUIRE(a.voters == b.voters);
  REQUIRE(a.learners == b.learners);
}

NodeStatus SomeStatus() {
  NodeStatus st;
  st.node = 2;
  st.role = "follower";
  st.term = 9;
  st.leader = 1;
  st.leader_address = "10.0.0.1:8080";
  st.commit = 40;
  st.applied = 39;
  st.last_index = 41;
  st.snapshot_index = 20;
  st.event_seq = 77;
  st.digest = 123456789;
  st.keys = 12;
  st.members = {{1, "10.0.0.1:8080"}, {2, "10.0.0.2:8080"}};
  st.voters = {1, 2};
  st.learners = {3};
  return st;
}

bool Contains(const std::string& bytes, const std::string& what) {
  return bytes.find(what) != std::string::npos;
}

}  // namespace

TEST_CASE("A client put request decodes, with set as an alias") {
  for (const char* op : {"put", "set"}) {
    const std::string bytes =
        Map("id", 9, "op", op, "key", "k", "value", "v", "client", 5, "seq", 2);
    ClientRequest r;
    bool id_known = false;
    REQUIRE(DecodeClientRequest(bytes, RequestLimits{}, &r, &id_known).ok());
    REQUIRE(r.id == 9);
    REQUIRE(r.op == ClientOp::kPut);
    REQUIRE(r.key == "k");
    REQUIRE(r.value == "v");
    REQUIRE(r.client == 5);
    REQUIRE(r.seq == 2);
  }
}

TEST_CASE("Every op and every reply status round-trips by its name") {
  for (int k = 0; k <= static_cast<int>(kLastClientOp); ++k) {
    ClientRequest req;
    req.id = 1;
    req.op = static_cast<ClientOp>(k);
    req.key = "k";
    req.target = 2;
    req.node = 3;
    req.address = "h:1";
    req.watch = 4;
    ClientRequest back;
    bool id_known = false;
    INFO(k);
    REQUIRE(DecodeClientRequest(EncodeClientRequest(req), RequestLimits{}, &back, &id_known).ok());
    REQUIRE(back.op == req.op);
  }
  for (int k = 0; k <= static_cast<int>(ReplyStatus::kCompacted); ++k) {
    ClientReply reply;
    reply.status = static_cast<ReplyStatus>(k);
    ClientReply back;
    REQUIRE(DecodeClientReply(EncodeClientReply(reply), &back).ok());
    REQUIRE(back.status == reply.status);
  }
}

TEST_CASE("A cas with a nil expect means only-if-absent, and bin keys are accepted") {
  const std::string bytes = Map("id", 1, "op", "cas", "key", std::vector<char>{'\0', 'k'}, "value",
                                "new", "expect", msgpack::type::nil_t());
  ClientRequest r;
  bool id_known = false;
  REQUIRE(DecodeClientRequest(bytes, RequestLimits{}, &r, &id_known).ok());
  REQUIRE(r.op == ClientOp::kCas);
  REQUIRE_FALSE(r.has_expect);
  REQUIRE(r.key == std::string("\0k", 2));
}

TEST_CASE("Malformed client requests get a reason, and the id when it was readable") {
  struct Case {
    const char* name;
    std::string bytes;
    bool id_known;
    const char* reason;
  };
  RequestLimits limits;
  limits.max_key_bytes = 8;
  limits.max_value_bytes = 16;
  std::vector<Case> cases = {
      {"not msgpack", "\xc1\xc1", false, "not msgpack"},
      {"not a map", "\x93\x01\x02\x03", false, "not a msgpack map"},
      {"no id", Map("op", "get"), false, "missing \"id\""},
      {"unknown op", Map("id", 3, "op", "frobnicate"), true, "unknown op"},
      {"no key", Map("id", 3, "op", "get"), true, "missing \"key\""},
      {"key type", Map("id", 3, "op", "get", "key", 5), true, "wrong type"},
      {"put without value", Map("id", 3, "op", "put", "key", "k"), true, "missing \"value\""},
      {"key too long", Map("id", 3, "op", "get", "key", "123456789"), true, "over the limit"},
      {"value too long", Map("id", 3, "op", "put", "key", "k", "value", std::string(17, 'v')), true,
       "over the limit"},
      {"negative id", Map("id", -1), false, "unsigned"},
      {"expect_index type",
       Map("id", 3, "op", "cas", "key", "k", "value", "v", "expect_index", "1"), true,
       "wrong type"},
      {"expect and expect_index",
       Map("id", 3, "op", "cas", "key", "k", "value", "v", "expect", "o", "expect_index", 1), true,
       "not both"},
      {"scan limit 0", Map("id", 3, "op", "scan", "limit", 0), true, "\"limit\" must be"},
      {"scan limit over", Map("id", 3, "op", "scan", "limit", 10001), true, "\"limit\" must be"},
      {"scan prefix and start", Map("id", 3, "op", "scan", "prefix", "a", "start", "b"), true,
       "\"prefix\" or"},
      {"scan bound too long", Map("id", 3, "op", "scan", "start", "1234567890"), true,
       "over the key limit"},
      {"scan shard type", Map("id", 3, "op", "scan", "shard", "x"), true, "wrong type"},
      {"scan keys_only type", Map("id", 3, "op", "scan", "keys_only", 1), true, "wrong type"},
      {"ttl_ms type", Map("id", 3, "op", "put", "key", "k", "value", "v", "ttl_ms", -5), true,
       "wrong type"},
      {"ttl_ms over ten years",
       Map("id", 3, "op", "touch", "key", "k", "ttl_ms", uint64_t{315360000001}), true,
       "at most 315360000000"},
      {"touch without key", Map("id", 3, "op", "touch", "ttl_ms", 5), true, "missing \"key\""},
      {"txn compare not an array", Map("id", 3, "op", "txn", "compare", 5), true,
       "\"compare\" must be an array"},
      {"txn compare without key", Map("id", 3, "op", "txn", "compare", Array(Map("absent", true))),
       true, "compare[0]: missing \"key\""},
      {"txn compare of two kinds",
       Map("id", 3, "op", "txn", "compare", Array(Map("key", "k", "value", "v", "absent", true))),
       true, "takes one of"},
      {"txn compare of no kind", Map("id", 3, "op", "txn", "compare", Array(Map("key", "k"))), true,
       "takes one of"},
      {"txn cmp without mod_index",
       Map("id", 3, "op", "txn", "compare", Array(Map("key", "k", "value", "v", "cmp", "lt"))),
       true, "goes with"},
      {"txn unknown cmp",
       Map("id", 3, "op", "txn", "compare", Array(Map("key", "k", "mod_index", 1, "cmp", "le"))),
       true, "\"eq\", \"lt\" or \"gt\""},
      {"txn compare value too long",
       Map("id", 3, "op", "txn", "compare", Array(Map("key", "k", "value", std::string(17, 'v')))),
       true, "over the limit"},
      {"txn unknown op", Map("id", 3, "op", "txn", "success", Array(Map("op", "cas", "key", "k"))),
       true, "success[0]: \"op\" is"},
      {"txn put without value",
       Map("id", 3, "op", "txn", "failure",
           Array(Map("op", "get", "key", "a"), Map("op", "put", "key", "k"))),
       true, "failure[1]: missing \"value\""},
      {"txn key too long",
       Map("id", 3, "op", "txn", "success", Array(Map("op", "del", "key", "123456789"))), true,
       "over the limit"},
      {"txn ttl over ten years",
       Map("id", 3, "op", "txn", "success",
           Array(Map("op", "put", "key", "k", "value", "v", "ttl_ms", uint64_t{315360000001}))),
       true, "at most 315360000000"},
      {"txn op not a map", Map("id", 3, "op", "txn", "success", Array(5)), true,
       "not a msgpack map"},
      {"txn seq without client", Map("id", 3, "op", "txn", "seq", 2), true, "without \"client\""},
  };
  for (const auto& c : cases) {
    INFO(c.name);
    ClientRequest r;
    bool id_known = true;
    Status s = DecodeClientRequest(c.bytes, limits, &r, &id_known);
    REQUIRE(s.IsInvalidArgument());
    REQUIRE(id_known == c.id_known);
    REQUIRE(s.message().find(c.reason) != std::string::npos);
    if (c.id_known) REQUIRE(r.id == 3);
  }
}

TEST_CASE("A txn round-trips every compare and op; its limits hold") {
  using C = kv::TxnCompare;
  using O = kv::TxnOp;
  ClientRequest req;
  req.id = 9;
  req.op = ClientOp::kTxn;
  req.client = 5;
  req.seq = 2;
  req.compare = {{C::Kind::kValue, "a", std::string("\0v", 2), 0},
                 {C::Kind::kAbsent, "b", "", 0},
                 {C::Kind::kPresent, "c", "", 0},
                 {C::Kind::kModEqual, "d", "", 0},
                 {C::Kind::kModLess, "d", "", 7},
                 {C::Kind::kModGreater, "d", "", 1ULL << 50}};
  req.success = {{O::Kind::kPut, "a", "x", 0, 1000}, {O::Kind::kDelete, "b", "", 0, 0}};
  req.failure = {{O::Kind::kGet, "a", "", 0, 0}};
  ClientRequest back;
  bool id_known = false;
  REQUIRE(DecodeClientRequest(EncodeClientRequest(req), RequestLimits{}, &back, &id_known).ok());
  CHECK(back.op == ClientOp::kTxn);
  CHECK(back.compare == req.compare);
  CHECK(back.success == req.success);
  CHECK(back.failure == req.failure);
  CHECK((back.client == 5 && back.seq == 2));
  // The documented shape, with the defaults: cmp "eq", "set" for put, no branches.
  REQUIRE(DecodeClientRequest(
              Map("id", 1, "op", "txn", "compare", Array(Map("key", "k", "mod_index", 4)),
                  "success", Array(Map("op", "set", "key", "k", "value", "v"))),
              RequestLimits{}, &back, &id_known)
              .ok());
  CHECK(back.compare == std::vector<C>{{C::Kind::kModEqual, "k", "", 4}});
  CHECK(back.success == std::vector<O>{{O::Kind::kPut, "k", "v", 0, 0}});
  CHECK(back.failure.empty());
  // At most kMaxTxnOps items in each list.
  std::string many = Map("op", "get", "key", "k");
  std::string array;
  msgpack::sbuffer header;
  msgpack::packer<msgpack::sbuffer>(header).pack_array(kv::kMaxTxnOps + 1);
  array.assign(header.data(), header.size());
  for (size_t i = 0; i <= kv::kMaxTxnOps; ++i) array += many;
  Status s = DecodeClientRequest(Map("id", 1, "op", "txn", "success", Packed(array)),
                                 RequestLimits{}, &back, &id_known);
  REQUIRE(s.IsInvalidArgument());
  CHECK(s.message().find("at most 128") != std::string::npos);
}

TEST_CASE("A watch request and its messages round-trip") {
  ClientRequest req;
  req.id = 5;
  req.op = ClientOp::kWatch;
  req.scan = kv::PrefixRange("app/");
  req.scan.keys_only = true;
  req.from_index = 120;
  req.shard = 3;
  ClientRequest back;
  bool id_known = false;
  REQUIRE(DecodeClientRequest(EncodeClientRequest(req), RequestLimits{}, &back, &id_known).ok());
  CHECK((back.op == ClientOp::kWatch && back.scan.start == "app/" && back.scan.end == "app0" &&
         back.scan.keys_only && back.from_index == 120 && back.shard == 3));
  req = ClientRequest{};
  req.op = ClientOp::kCancel;
  req.watch = 5;
  REQUIRE(DecodeClientRequest(EncodeClientRequest(req), RequestLimits{}, &back, &id_known).ok());
  CHECK((back.op == ClientOp::kCancel && back.watch == 5));

  WatchReply batch;
  batch.node = 2;
  batch.after = 10;
  batch.upto = 14;
  WatchEvent put, del, expire;
  put.key = std::string("k\0", 2);
  put.has_value = true;
  put.value = "v";
  put.index = 11;
  put.create_index = 9;
  del.type = WatchEvent::Type::kDelete;
  del.key = "d";
  del.index = 12;
  expire.type = WatchEvent::Type::kExpire;
  expire.key = "e";
  expire.index = 14;
  batch.events = {put, del, expire};
  uint64_t id = 0;
  WatchReply got;
  REQUIRE(DecodeWatchReply(EncodeWatchReply(8, batch), &id, &got).ok());
  CHECK((id == 8 && got.status == ReplyStatus::kOk && got.node == 2 && got.after == 10 &&
         got.upto == 14));
  REQUIRE(got.events.size() == 3);
  CHECK((got.events[0].key == put.key && got.events[0].value == "v" &&
         got.events[0].create_index == 9 && got.events[0].index == 11));
  CHECK((got.events[1].type == WatchEvent::Type::kDelete && !got.events[1].has_value));
  CHECK((got.events[2].type == WatchEvent::Type::kExpire && got.events[2].index == 14));
  WatchReply end;
  end.status = ReplyStatus::kCompacted;
  end.oldest = 77;
  end.error = "gone";
  REQUIRE(DecodeWatchReply(EncodeWatchReply(8, end), &id, &got).ok());
  CHECK((got.status == ReplyStatus::kCompacted && got.oldest == 77 && got.error == "gone"));
  // Malformed: upto below after, an event without its index, an unknown type.
  CHECK(DecodeWatchReply(Map("id", 1, "status", "OK", "after", 5, "upto", 4), &id, &got)
            .IsInvalidArgument());
  CHECK(
      DecodeWatchReply(
          Map("id", 1, "status", "OK", "events", Array(Map("type", "put", "key", "k"))), &id, &got)
          .IsInvalidArgument());
  CHECK(DecodeWatchReply(Map("id", 1, "status", "OK", "events",
                             Array(Map("type", "touch", "key", "k", "index", 1))),
                         &id, &got)
            .IsInvalidArgument());
}

TEST_CASE("A txn reply round-trips its branch and results") {
  ClientReply reply;
  reply.id = 3;
  reply.index = 77;
  reply.is_txn = true;
  reply.succeeded = true;
  TxnResult put, missing, got, busy;
  missing.status = ReplyStatus::kNotFound;
  got.has_value = true;
  got.value = std::string("v\0", 2);
  got.create_index = 5;
  got.mod_index = 70;
  got.ttl_ms = 900;
  busy.status = ReplyStatus::kBusy;
  busy.error = "over budget";
  reply.results = {put, missing, got, busy};
  ClientReply back;
  REQUIRE(DecodeClientReply(EncodeClientReply(reply), &back).ok());
  CHECK((back.is_txn && back.succeeded && !back.resent && back.index == 77));
  REQUIRE(back.results.size() == 4);
  CHECK((back.results[0].status == ReplyStatus::kOk && !back.results[0].has_value));
  CHECK(back.results[1].status == ReplyStatus::kNotFound);
  CHECK((back.results[2].value == got.value && back.results[2].create_index == 5 &&
         back.results[2].mod_index == 70 && back.results[2].ttl_ms == 900));
  CHECK((back.results[3].status == ReplyStatus::kBusy && back.results[3].error == "over budget"));
  reply.succeeded = false;
  reply.resent = true;
  reply.results.clear();
  REQUIRE(DecodeClientReply(EncodeClientReply(reply), &back).ok());
  CHECK((back.is_txn && !back.succeeded && back.resent && back.results.empty()));
  // A result without a status is malformed.
  CHECK(DecodeClientReply(
            Map("id", 1, "status", "OK", "succeeded", true, "results", Array(Map("value", "v"))),
            &back)
            .IsInvalidArgument());
}

TEST_CASE("A scan request round-trips; a prefix decodes into its range; defaults apply") {
  ClientRequest req;
  req.id = 4;
  req.op = ClientOp::kScan;
  req.scan.start = "a";
  req.scan.end = std::string("b\0", 2);
  req.scan.limit = 7;
  req.scan.keys_only = true;
  req.stale = true;
  req.shard = 3;
  ClientRequest back;
  bool id_known = false;
  REQUIRE(DecodeClientRequest(EncodeClientRequest(req), RequestLimits{}, &back, &id_known).ok());
  CHECK(back.op == ClientOp::kScan);
  CHECK(back.scan.start == "a");
  CHECK(back.scan.end == req.scan.end);
  CHECK(back.scan.limit == 7);
  CHECK(back.scan.keys_only);
  CHECK(back.stale);
  CHECK(back.shard == 3);

  REQUIRE(DecodeClientRequest(Map("id", 1, "op", "scan", "prefix", "app/"), RequestLimits{}, &back,
                              &id_known)
              .ok());
  CHECK(back.scan.start == "app/");
  CHECK(back.scan.end == std::optional<std::string>("app0"));
  CHECK(back.scan.limit == kv::kDefaultScanLimit);
  CHECK(back.shard == -1);
  CHECK_FALSE(back.scan.keys_only);

  REQUIRE(DecodeClientRequest(Map("id", 1, "op", "scan"), RequestLimits{}, &back, &id_known).ok());
  CHECK(back.scan.start.empty());
  CHECK_FALSE(back.scan.end.has_value());
}

TEST_CASE("A scan reply round-trips its page; keys-only pages carry no values") {
  ClientReply reply;
  reply.id = 8;
  reply.is_scan = true;
  reply.page.kvs = {{"a", "1", {3, 5}}, {"b", "", {4, 4}}};
  reply.page.more = true;
  reply.page.next = std::string("b\0", 2);
  const std::string bytes = EncodeClientReply(reply);
  ClientReply back;
  REQUIRE(DecodeClientReply(bytes, &back).ok());
  REQUIRE(back.is_scan);
  REQUIRE(back.page.kvs.size() == 2);
  CHECK(back.page.kvs[0].key == "a");
  CHECK(back.page.kvs[0].value == "1");
  CHECK(back.page.kvs[0].version.mod_index == 5);
  CHECK(back.page.kvs[1].key == "b");
  CHECK(back.page.more);
  CHECK(back.page.next == reply.page.next);
  CHECK(Contains(bytes, "value"));

  reply.page.keys_only = true;
  reply.page.more = false;
  const std::string keys_only = EncodeClientReply(reply);
  CHECK_FALSE(Contains(keys_only, "value"));
  CHECK_FALSE(Contains(keys_only, "next"));
  REQUIRE(DecodeClientReply(keys_only, &back).ok());
  CHECK(back.page.kvs[0].value.empty());
  CHECK_FALSE(back.page.more);

  ClientReply empty;
  empty.is_scan = true;
  REQUIRE(DecodeClientReply(EncodeClientReply(empty), &back).ok());
  CHECK(back.is_scan);
  CHECK(back.page.kvs.empty());

  ClientReply plain;
  REQUIRE(DecodeClientReply(EncodeClientReply(plain), &back).ok());
  CHECK_FALSE(back.is_scan);
}

TEST_CASE("Malformed scan pages are refused") {
  ClientReply back;
  CHECK_FALSE(DecodeClientReply(Map("id", 1, "status", "OK", "kvs", 5), &back).ok());
  CHECK_FALSE(DecodeClientReply(Map("id", 1, "status", "OK", "kvs", Array(5)), &back).ok());
  CHECK_FALSE(
      DecodeClientReply(Map("id", 1, "status", "OK", "kvs", Array(Map("value", "v"))), &back).ok());
  CHECK_FALSE(DecodeClientReply(Map("id", 1, "status", "OK", "more", "yes"), &back).ok());
}

TEST_CASE("A cas on expect_index round-trips; the reply's indexes travel when set") {
  ClientRequest req;
  req.id = 5;
  req.op = ClientOp::kCas;
  req.key = "k";
  req.value = "v";
  req.has_expect_index = true;
  req.expect_index = 0;  // "absent" is still a comparison on the index
  ClientRequest back;
  bool id_known = false;
  REQUIRE(DecodeClientRequest(EncodeClientRequest(req), RequestLimits{}, &back, &id_known).ok());
  REQUIRE(back.has_expect_index);
  REQUIRE(back.expect_index == 0);
  REQUIRE_FALSE(back.has_expect);

  ClientReply write;
  write.index = 1234;
  ClientReply read;
  read.has_value = true;
  read.create_index = 7;
  read.mod_index = 9;
  ClientReply got;
  REQUIRE(DecodeClientReply(EncodeClientReply(write), &got).ok());
  REQUIRE(got.index == 1234);
  REQUIRE(got.mod_index == 0);
  REQUIRE(DecodeClientReply(EncodeClientReply(read), &got).ok());
  REQUIRE(got.index == 0);
  REQUIRE((got.create_index == 7 && got.mod_index == 9));
  // Without them, the reply is what it was before versions.
  REQUIRE(EncodeClientReply(ClientReply{}) == Map("id", 0, "status", "OK"));
}

TEST_CASE("ttl_ms travels on put, cas and touch requests, get replies and scanned keys") {
  for (ClientOp op : {ClientOp::kPut, ClientOp::kCas, ClientOp::kTouch}) {
    ClientRequest req;
    req.id = 5;
    req.op = op;
    req.key = "k";
    req.value = "v";
    req.ttl_ms = 315360000000;  // the longest allowed
    req.client = 4;
    req.seq = 9;
    ClientRequest back;
    bool id_known = false;
    INFO(static_cast<int>(op));
    REQUIRE(DecodeClientRequest(EncodeClientRequest(req), RequestLimits{}, &back, &id_known).ok());
    REQUIRE(back.op == op);
    REQUIRE(back.ttl_ms == req.ttl_ms);
    REQUIRE((back.client == 4 && back.seq == 9));
  }
  // A touch without ttl_ms (the key becomes permanent) carries no value.
  ClientRequest touch;
  touch.op = ClientOp::kTouch;
  touch.key = "k";
  REQUIRE(EncodeClientRequest(touch) == Map("id", 0, "op", "touch", "key", std::vector<char>{'k'}));

  ClientReply read;
  read.has_value = true;
  read.mod_index = 3;
  read.create_index = 3;
  read.ttl_ms = 1500;
  ClientReply got;
  REQUIRE(DecodeClientReply(EncodeClientReply(read), &got).ok());
  REQUIRE(got.ttl_ms == 1500);
  read.ttl_ms = 0;  // a permanent key: no field
  REQUIRE(DecodeClientReply(EncodeClientReply(read), &got).ok());
  REQUIRE(got.ttl_ms == 0);
  REQUIRE(EncodeClientReply(read).find("ttl_ms") == std::string::npos);

  ClientReply page;
  page.is_scan = true;
  page.page.kvs.push_back(kv::ScannedKey{"a", "1", {1, 1}, 250});
  page.page.kvs.push_back(kv::ScannedKey{"b", "2", {2, 2}, 0});
  REQUIRE(DecodeClientReply(EncodeClientReply(page), &got).ok());
  REQUIRE(got.page.kvs.size() == 2);
  REQUIRE(got.page.kvs[0].ttl_ms == 250);
  REQUIRE(got.page.kvs[1].ttl_ms == 0);
}

TEST_CASE("Client replies round-trip through the reply codec") {
  ClientReply reply;
  reply.id = 77;
  reply.status = ReplyStatus::kRedirect;
  reply.leader = "127.0.0.1:8081";
  reply.has_value = true;
  reply.value = std::string("\0v", 2);
  ClientReply back;
  REQUIRE(DecodeClientReply(EncodeClientReply(reply), &back).ok());
  REQUIRE(back.id == 77);
  REQUIRE(back.status == ReplyStatus::kRedirect);
  REQUIRE(back.leader == reply.leader);
  REQUIRE(back.has_value);
  REQUIRE(back.value == reply.value);
  REQUIRE(back.error.empty());
}

// ---- Sharding: the shards op, shard fields in replies, groups in status ----

TEST_CASE("A shards request round-trips and carries no key") {
  ClientRequest req;
  req.id = 12;
  req.op = ClientOp::kShards;
  req.key = "ignored";
  const std::string bytes = EncodeClientRequest(req);
  REQUIRE(Contains(bytes, "shards"));
  REQUIRE_FALSE(Contains(bytes, "ignored"));
  ClientRequest back;
  bool id_known = false;
  REQUIRE(DecodeClientRequest(bytes, RequestLimits{}, &back, &id_known).ok());
  REQUIRE(back.op == ClientOp::kShards);
  REQUIRE(back.id == 12);
}

TEST_CASE("A shard map round-trips through the shards reply, sorted by shard") {
  const ShardMap map = ThreeShards();
  uint64_t id = 0;
  ShardMap back;
  REQUIRE(DecodeShardsReply(EncodeShardsReply(31, map), &id, &back).ok());
  REQUIRE(id == 31);
  REQUIRE(back.version == 7);
  REQUIRE(back.shards == 3);
  REQUIRE(back.replicas == 2);
  REQUIRE(back.placement == 0);  // as a node before placement rules says
  REQUIRE(back.members == map.members);
  REQUIRE(back.list.size() == 3);
  RequireSameShard(back.list[0], map.list[1]);
  RequireSameShard(back.list[1], map.list[2]);
  RequireSameShard(back.list[2], map.list[0]);
  ShardMap ruled = map;
  ruled.placement = 2;
  REQUIRE(DecodeShardsReply(EncodeShardsReply(31, ruled), &id, &back).ok());
  REQUIRE(back.placement == 2);
  // Any client reply decoder can still read its id and status.
  ClientReply peek;
  REQUIRE(DecodeClientReply(EncodeShardsReply(31, map), &peek).ok());
  REQUIRE(peek.id == 31);
  REQUIRE(peek.status == ReplyStatus::kOk);
}

TEST_CASE("An unsharded cluster's shard map has no shards and an empty list") {
  ShardMap map;
  map.version = 1;
  map.replicas = 3;
  map.members = {{1, "a:1"}};
  uint64_t id = 0;
  ShardMap back;
  REQUIRE(DecodeShardsReply(EncodeShardsReply(5, map), &id, &back).ok());
  REQUIRE(back.shards == 0);
  REQUIRE(back.list.empty());
  REQUIRE(back.members == map.members);
}

TEST_CASE("Malformed shards replies are refused with a reason") {
  auto entry = [](uint64_t shard) { return Map("shard", shard, "leader_address", "h:1"); };
  auto reply = [](uint64_t shards, const Packed& list) {
    return Map("id", 1, "status", "OK", "shards", shards, "map", list);
  };
  struct Case {
    const char* name;
    std::string bytes;
    const char* reason;
  };
  std::vector<Case> cases = {
      {"an older node's ERROR", EncodeClientReply([] {
         ClientReply r;
         r.id = 4;
         r.status = ReplyStatus::kError;
         r.error = "unknown op \"shards\"";
         return r;
       }()),
       "unknown op"},
      {"not a map", "\x93\x01\x02\x03", "not a msgpack map"},
      {"no map", Map("id", 1, "status", "OK", "shards", 0), "without id, shards or map"},
      {"a shard missing", reply(2, Array(entry(0))), "lists 1 of 2"},
      {"a shard twice", reply(2, Array(entry(1), entry(1))), "listed twice"},
      {"a shard out of range", reply(1, Array(entry(5))), "listed twice"},
      {"a shard count over 2^32", reply(uint64_t{1} << 32, Array()), "field \"shards\""},
      {"an entry without its shard id", reply(1, Array(Map("leader", 2))), "field \"map\""},
      {"replicas not ids", reply(1, Array(Map("shard", 0, "replicas", Array("x")))),
       "field \"map\""},
      {"members with a non-numeric id",
       Map("id", 1, "status", "OK", "shards", 0, "map", Array(), "members", Map("one", "h:1")),
       "field \"members\""},
  };
  for (const auto& c : cases) {
    INFO(c.name);
    uint64_t id = 0;
    ShardMap map;
    Status s = DecodeShardsReply(c.bytes, &id, &map);
    REQUIRE(s.IsInvalidArgument());
    REQUIRE(s.message().find(c.reason) != std::string::npos);
  }
}

TEST_CASE("REDIRECT and UNAVAILABLE carry the shard and the map version") {
  ClientReply reply;
  reply.id = 3;
  reply.status = ReplyStatus::kRedirect;
  reply.leader = "10.0.0.3:8080";
  reply.shard = 0;
  reply.map_version = 12;
  ClientReply back;
  REQUIRE(DecodeClientReply(EncodeClientReply(reply), &back).ok());
  REQUIRE(back.shard == 0);
  REQUIRE(back.map_version == 12);
  REQUIRE(back.leader == reply.leader);

  reply.status = ReplyStatus::kUnavailable;
  reply.leader.clear();
  reply.shard = 4294967295;
  REQUIRE(DecodeClientReply(EncodeClientReply(reply), &back).ok());
  REQUIRE(back.status == ReplyStatus::kUnavailable);
  REQUIRE(back.shard == 4294967295);

  // Unsharded: neither field travels, and the decoder reports shard -1.
  reply.shard = -1;
  const std::string bytes = EncodeClientReply(reply);
  REQUIRE_FALSE(Contains(bytes, "shard"));
  REQUIRE_FALSE(Contains(bytes, "map_version"));
  REQUIRE(DecodeClientReply(bytes, &back).ok());
  REQUIRE(back.shard == -1);
  REQUIRE(back.map_version == 0);
}

TEST_CASE("The reply decoder reads a nil shard as none and refuses bad ones") {
  auto with_shard = [](const auto& shard) {
    return std::string(
        Map("id", 1, "status", "REDIRECT", "shard", shard, "some_future_field", Array()));
  };
  ClientReply back;
  REQUIRE(DecodeClientReply(with_shard(msgpack::type::nil_t()), &back).ok());
  REQUIRE(back.shard == -1);
  REQUIRE(DecodeClientReply(with_shard(9), &back).ok());
  REQUIRE(back.shard == 9);
  for (const std::string& bad : {with_shard(-1), with_shard(uint64_t{1} << 32), with_shard("0")}) {
    Status s = DecodeClientReply(bad, &back);
    REQUIRE(s.IsInvalidArgument());
    REQUIRE(s.message().find("\"shard\"") != std::string::npos);
  }
}

TEST_CASE("A status reply round-trips, and carries shards and groups only when sharded") {
  NodeStatus st = SomeStatus();
  std::string bytes = EncodeStatusReply(8, st);
  REQUIRE_FALSE(Contains(bytes, "shards"));
  REQUIRE_FALSE(Contains(bytes, "groups"));
  uint64_t id = 0;
  NodeStatus back;
  REQUIRE(DecodeStatusReply(bytes, &id, &back).ok());
  REQUIRE(id == 8);
  REQUIRE(back.node == st.node);
  REQUIRE(back.role == st.role);
  REQUIRE(back.term == st.term);
  REQUIRE(back.leader == st.leader);
  REQUIRE(back.leader_address == st.leader_address);
  REQUIRE(back.commit == st.commit);
  REQUIRE(back.applied == st.applied);
  REQUIRE(back.last_index == st.last_index);
  REQUIRE(back.snapshot_index == st.snapshot_index);
  REQUIRE(back.event_seq == st.event_seq);
  REQUIRE(back.digest == st.digest);
  REQUIRE(back.keys == st.keys);
  REQUIRE(back.members == st.members);
  REQUIRE(back.voters == st.voters);
  REQUIRE(back.learners == st.learners);
  REQUIRE(back.shards == 0);
  REQUIRE(back.groups.empty());

  st.shards = 16;
  st.groups = {Group(1, -1), Group(2, 0), Group(7, 15)};
  bytes = EncodeStatusReply(9, st);
  REQUIRE(DecodeStatusReply(bytes, &id, &back).ok());
  REQUIRE(back.shards == 16);
  REQUIRE(back.groups.size() == 3);
  for (size_t i = 0; i < 3; ++i) RequireSameGroup(back.groups[i], st.groups[i]);
  REQUIRE(back.node == st.node);
}

TEST_CASE("A status group reads a missing or nil shard as the metadata group") {
  const std::string bytes = Map(
      "id", 1, "groups", Array(Map("group", 1), Map("group", 2, "shard", msgpack::type::nil_t())));
  uint64_t id = 0;
  NodeStatus back;
  REQUIRE(DecodeStatusReply(bytes, &id, &back).ok());
  REQUIRE(back.groups.size() == 2);
  REQUIRE(back.groups[0].shard == -1);
  REQUIRE(back.groups[1].shard == -1);
  REQUIRE(back.groups[1].group == 2);
}

TEST_CASE("Malformed status groups are refused") {
  for (const std::string& bad :
       {Map("groups", 1), Map("groups", Array(1)), Map("groups", Array(Map("term", "x"))),
        Map("groups", Array(Map("shard", -1))), Map("shards", uint64_t{1} << 33)}) {
    uint64_t id = 0;
    NodeStatus back;
    Status s = DecodeStatusReply(bad, &id, &back);
    REQUIRE(s.IsInvalidArgument());
    REQUIRE(s.message().find("status field") != std::string::npos);
  }
}

TEST_CASE("Truncated and flipped shard maps and statuses never crash the decoders") {
  NodeStatus st = SomeStatus();
  st.shards = 3;
  st.groups = {Group(1, -1), Group(2, 0)};
  const std::string status = EncodeStatusReply(1, st);
  const std::string shards = EncodeShardsReply(1, ThreeShards());
  for (const std::string& enc : {status, shards}) {
    for (size_t n = 0; n < enc.size(); ++n) {
      uint64_t id = 0;
      NodeStatus st_back;
      ShardMap map_back;
      REQUIRE_FALSE(DecodeStatusReply(enc.substr(0, n), &id, &st_back).ok());
      REQUIRE_FALSE(DecodeShardsReply(enc.substr(0, n), &id, &map_back).ok());
    }
  }
  std::mt19937_64 rng(99);
  for (int i = 0; i < 5000; ++i) {
    std::string bytes = i % 2 ? status : shards;
    bytes[rng() % bytes.size()] = static_cast<char>(rng());
    uint64_t id = 0;
    NodeStatus st_back;
    ShardMap map_back;
    ClientReply reply;
    (void)DecodeStatusReply(bytes, &id, &st_back);
    if (DecodeShardsReply(bytes, &id, &map_back).ok()) {
      REQUIRE(map_back.list.size() == map_back.shards);
    }
    (void)DecodeClientReply(bytes, &reply);
  }
}

}  // namespace kv::net

namespace kv::net {
namespace {

TEST_CASE("ClaimsFit: containers may claim no more elements in all than the frame holds") {
  CHECK(ClaimsFit(Array(1, Array(2, 3), Map("a", 1, "b", std::string("text")))));
  CHECK(ClaimsFit(EncodeClientReply(ClientReply{})));
  // Three nested arrays of 5: each fits the 8-byte frame alone, not together.
  const std::string nested("\x95\x95\x95\x01\x01\x01\x01\x01", 8);
  CHECK_FALSE(ClaimsFit(nested));
  msgpack::object_handle oh;
  const Status s = Unpack(nested, &oh);
  CHECK(s.IsInvalidArgument());
  CHECK(s.message().find("claim more elements") != std::string::npos);
  // A map entry counts two: a map of 3 entries needs 6 bytes at least.
  CHECK_FALSE(ClaimsFit(std::string("\x83\x01\x01", 3)));
  // Input that ends early counts as fitting: msgpack reports it.
  CHECK(ClaimsFit(std::string("\x92\x01", 2)));
  CHECK(ClaimsFit(std::string("\xdb\x00\x00\x10", 4)));
}

TEST_CASE("A backup's requests and replies round-trip; its errors decode as errors") {
  ClientRequest start;
  start.id = 4;
  start.op = ClientOp::kBackup;
  start.shard = 3;
  ClientRequest back;
  bool id_known = false;
  REQUIRE(DecodeClientRequest(EncodeClientRequest(start), RequestLimits{}, &back, &id_known).ok());
  CHECK(back.op == ClientOp::kBackup);
  CHECK(back.shard == 3);
  CHECK(back.backup == 0);
  ClientRequest next = start;
  next.backup = 77;
  next.cursor = 12;
  REQUIRE(DecodeClientRequest(EncodeClientRequest(next), RequestLimits{}, &back, &id_known).ok());
  CHECK(back.backup == 77);
  CHECK(back.cursor == 12);
  CHECK_FALSE(back.close);
  next.close = true;
  REQUIRE(DecodeClientRequest(EncodeClientRequest(next), RequestLimits{}, &back, &id_known).ok());
  CHECK(back.close);

  BackupReply begun;
  begun.backup = 77;
  begun.index = 1000;
  begun.clock_ms = 5;
  begun.keys = 10;
  begun.size = 2000;
  begun.cluster = "prod";
  begun.shards = 16;
  begun.replicas = 3;
  uint64_t id = 0;
  BackupReply r;
  REQUIRE(DecodeBackupReply(EncodeBackupReply(4, begun), &id, &r).ok());
  CHECK(id == 4);
  CHECK_FALSE(r.is_piece);
  CHECK((r.backup == 77 && r.index == 1000 && r.clock_ms == 5 && r.keys == 10 && r.size == 2000));
  CHECK((r.cluster == "prod" && r.shards == 16 && r.replicas == 3));
  BackupReply piece;
  piece.backup = 77;
  piece.is_piece = true;
  piece.data = std::string("\0bytes\xff", 7);
  piece.cursor = 13;
  piece.done = true;
  REQUIRE(DecodeBackupReply(EncodeBackupReply(5, piece), &id, &r).ok());
  CHECK((r.is_piece && r.data == piece.data && r.cursor == 13 && r.done));

  ClientReply error;
  error.id = 6;
  error.status = ReplyStatus::kError;
  error.error = "no backup 77 here";
  const Status s = DecodeBackupReply(EncodeClientReply(error), &id, &r);
  CHECK(s.IsInvalidArgument());
  CHECK(s.message().find("no backup 77 here") != std::string::npos);
}

}  // namespace
}  // namespace kv::net
