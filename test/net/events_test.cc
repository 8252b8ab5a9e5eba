// The typed events: round trips, byte-compatibility with the field-list
// encoding the node publishes today, and hostile input.
#include "net/events.h"

#include <catch2/catch.hpp>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#define MSGPACK_NO_BOOST
#include <msgpack.hpp>

#include "codec_test_util.h"
#include "net/publisher.h"

namespace kv::net {
namespace {

Event RoundTrip(const Event& e) {
  Event again;
  const Status s = DecodeEvent(EventTopic(e), EncodeEvent(e), &again);
  INFO(s.ToString());
  REQUIRE(s.ok());
  REQUIRE(again.index() == e.index());
  return again;
}

TEST_CASE("Every event type survives a round trip") {
  const auto role = std::get<RoleEvent>(RoundTrip(RoleEvent{1, 2, 3, "leader", 4, 1}));
  CHECK((role.node == 1 && role.seq == 2 && role.group == 3 && role.role == "leader" &&
         role.term == 4 && role.leader == 1));
  const auto commit = std::get<CommitEvent>(RoundTrip(CommitEvent{1, 2, 3, 4, 5, 6}));
  CHECK((commit.group == 3 && commit.term == 4 && commit.commit == 5 && commit.applied == 6));
  const auto taken = std::get<SnapshotEvent>(RoundTrip(SnapshotEvent{1, 2, 3, false, 9, 0}));
  CHECK((!taken.installed && taken.index == 9));
  const auto installed = std::get<SnapshotEvent>(RoundTrip(SnapshotEvent{1, 2, 3, true, 9, 7}));
  CHECK((installed.installed && installed.index == 9 && installed.term == 7));
  const auto add =
      std::get<MembershipEvent>(RoundTrip(MembershipEvent{1, 2, 3, 10, "add-voter", 4, 4, 0}));
  CHECK((add.index == 10 && add.change == "add-voter" && add.member == 4 && add.voters == 4));
  const auto left = std::get<MembershipEvent>(RoundTrip(MembershipEvent{1, 2, 3, 0, "left", 1}));
  CHECK((left.change == "left" && left.member == 1 && left.group == 3));
  const auto shards = std::get<ShardsEvent>(RoundTrip(ShardsEvent{1, 2, 5, 3}));
  CHECK((shards.version == 5 && shards.members == 3));
  const std::string key("k\0\xff", 3);
  const auto put = std::get<PutEvent>(RoundTrip(PutEvent{1, 2, key, 11, 100}));
  CHECK((put.key == key && put.index == 11 && put.size == 100));
  const auto del = std::get<DeleteEvent>(RoundTrip(DeleteEvent{1, 2, key, 12, 0}));
  CHECK((del.key == key && del.index == 12));
  const auto expired = std::get<ExpireEvent>(RoundTrip(ExpireEvent{1, 2, key, 13, 0}));
  CHECK((expired.key == key && expired.index == 13));
}

TEST_CASE("Topics are the protocol's") {
  CHECK(std::string(EventTopic(RoleEvent{})) == "role");
  CHECK(std::string(EventTopic(CommitEvent{})) == "commit");
  CHECK(std::string(EventTopic(SnapshotEvent{})) == "snapshot");
  CHECK(std::string(EventTopic(MembershipEvent{})) == "membership");
  CHECK(std::string(EventTopic(ShardsEvent{})) == "shards");
  CHECK(std::string(EventTopic(PutEvent{})) == "kv.put");
  CHECK(std::string(EventTopic(DeleteEvent{})) == "kv.del");
  CHECK(std::string(EventTopic(ExpireEvent{})) == "kv.expire");
}

// Publishes a typed event from a fresh Publisher of node 7 (so its seq is 1)
// and returns the topic and body frames.
class Wire {
 public:
  Wire() : out_(ctx_, zmq::socket_type::pair), in_(ctx_, zmq::socket_type::pair) {
    in_.bind("inproc://events");
    out_.connect("inproc://events");
  }
  std::pair<std::string, std::string> Publish(const Event& event) {
    Publisher(&out_, 7).Publish(event);
    zmq::message_t topic, body;
    REQUIRE(in_.recv(topic));
    REQUIRE(topic.more());
    REQUIRE(in_.recv(body));
    return {topic.to_string(), body.to_string()};
  }

 private:
  zmq::context_t ctx_;
  zmq::socket_t out_, in_;
};

// What the node published before the events were typed: the topic, and a map
// of node, seq and the topic's fields in this order, built independently of
// net/events.cc.
template <typename... T>
std::pair<std::string, std::string> Wire1(const std::string& topic, const T&... fields) {
  return {topic, Map(std::string("node"), 7, std::string("seq"), 1, fields...)};
}

std::vector<char> Bin(const std::string& s) { return std::vector<char>(s.begin(), s.end()); }

TEST_CASE("Typed events are byte-compatible with the field lists the node published") {
  using S = std::string;
  Wire w;
  CHECK(w.Publish(RoleEvent{0, 0, 2, "leader", 3, 7}) ==
        Wire1("role", S("group"), 2, S("role"), S("leader"), S("term"), 3, S("leader"), 7));
  CHECK(w.Publish(CommitEvent{0, 0, 2, 3, 300, 299}) ==
        Wire1("commit", S("group"), 2, S("term"), 3, S("commit"), 300, S("applied"), 299));
  CHECK(w.Publish(SnapshotEvent{0, 0, 1, false, 70000, 0}) ==
        Wire1("snapshot", S("group"), 1, S("event"), S("taken"), S("index"), 70000));
  CHECK(w.Publish(SnapshotEvent{0, 0, 1, true, 70000, 5}) ==
        Wire1("snapshot", S("group"), 1, S("event"), S("installed"), S("index"), 70000, S("term"),
              5));
  CHECK(w.Publish(MembershipEvent{0, 0, 1, 12, "add-learner", 4, 3, 1}) ==
        Wire1("membership", S("group"), 1, S("index"), 12, S("change"), S("add-learner"),
              S("member"), 4, S("voters"), 3, S("learners"), 1));
  CHECK(w.Publish(MembershipEvent{0, 0, 5, 0, "left", 7, 0, 0}) ==
        Wire1("membership", S("group"), 5, S("change"), S("left"), S("member"), 7));
  CHECK(w.Publish(ShardsEvent{0, 0, 9, 5}) == Wire1("shards", S("version"), 9, S("members"), 5));
  const std::string key(300, 'k');  // long enough for bin 16
  CHECK(w.Publish(PutEvent{0, 0, key, 1ULL << 40, 1 << 20}) ==
        Wire1("kv.put", S("key"), Bin(key), S("index"), uint64_t{1} << 40, S("size"), 1 << 20));
  CHECK(w.Publish(DeleteEvent{0, 0, "a", 8, 0}) ==
        Wire1("kv.del", S("key"), Bin("a"), S("index"), 8, S("size"), 0));
  CHECK(w.Publish(ExpireEvent{0, 0, "b", 9, 0}) ==
        Wire1("kv.expire", S("key"), Bin("b"), S("index"), 9, S("size"), 0));
}

TEST_CASE("The publisher stamps node and seq on typed events") {
  zmq::context_t ctx;
  zmq::socket_t out(ctx, zmq::socket_type::pair), in(ctx, zmq::socket_type::pair);
  in.bind("inproc://stamp");
  out.connect("inproc://stamp");
  Publisher pub(&out, 9);
  pub.Publish(CommitEvent{0, 0, 1, 0, 0, 0});
  pub.Publish(RoleEvent{123, 456, 1, "follower", 2, 0});
  CHECK(pub.seq() == 2);
  zmq::message_t topic, body;
  REQUIRE(in.recv(topic));
  REQUIRE(in.recv(body));
  REQUIRE(in.recv(topic));
  REQUIRE(in.recv(body));
  Event e;
  REQUIRE(DecodeEvent(topic.to_string_view(), body.to_string_view(), &e).ok());
  CHECK(EventNode(e) == 9);
  CHECK(EventSeq(e) == 2);
}

std::string Pack(const std::function<void(msgpack::packer<msgpack::sbuffer>&)>& fill) {
  msgpack::sbuffer buf;
  msgpack::packer<msgpack::sbuffer> pk(buf);
  fill(pk);
  return std::string(buf.data(), buf.size());
}

TEST_CASE("Hostile event bodies give a Status, never a crash") {
  Event e;
  CHECK(DecodeEvent("role", "", &e).IsInvalidArgument());
  CHECK(DecodeEvent("role", "\xc1", &e).IsInvalidArgument());              // never-used byte
  CHECK(DecodeEvent("role", "\x93\x01\x02\x03", &e).IsInvalidArgument());  // an array
  // Truncated: a map of 3 entries holding 1.
  CHECK(DecodeEvent("role", std::string("\x83\xa4node\x01", 7), &e).IsInvalidArgument());
  // A map32 claiming 4 billion entries in 5 bytes.
  CHECK(DecodeEvent("role", std::string("\xdf\xff\xff\xff\xff", 5), &e).IsInvalidArgument());
  // A bin32 claiming 4 GiB.
  CHECK(DecodeEvent("kv.put", std::string("\x81\xa3key\xc6\xff\xff\xff\xff", 10), &e)
            .IsInvalidArgument());
  CHECK(DecodeEvent("role", std::string(kMaxEventBytes + 1, '\x90'), &e).IsInvalidArgument());
  const std::string good = EncodeEvent(CommitEvent{1, 2, 3, 4, 5, 6});
  CHECK(DecodeEvent("commit", good + "x", &e).IsInvalidArgument());  // trailing bytes
  CHECK(DecodeEvent("no-such-topic", good, &e).IsNotFound());
  // Missing node or seq.
  CHECK(DecodeEvent("shards", Pack([](auto& pk) {
                      pk.pack_map(1);
                      pk.pack("seq");
                      pk.pack(1);
                    }),
                    &e)
            .IsInvalidArgument());
  // A field of the wrong type, a negative number, a non-string map key.
  CHECK(DecodeEvent("commit", Pack([](auto& pk) {
                      pk.pack_map(3);
                      pk.pack("node");
                      pk.pack(1);
                      pk.pack("seq");
                      pk.pack(1);
                      pk.pack("commit");
                      pk.pack("ten");
                    }),
                    &e)
            .IsInvalidArgument());
  CHECK(DecodeEvent("commit", Pack([](auto& pk) {
                      pk.pack_map(1);
                      pk.pack("node");
                      pk.pack(-1);
                    }),
                    &e)
            .IsInvalidArgument());
  CHECK(DecodeEvent("commit", Pack([](auto& pk) {
                      pk.pack_map(1);
                      pk.pack(1);
                      pk.pack(1);
                    }),
                    &e)
            .IsInvalidArgument());
  // Nested containers are refused by the depth limit.
  CHECK(DecodeEvent("role", Pack([](auto& pk) {
                      pk.pack_map(1);
                      pk.pack("role");
                      pk.pack_array(1);
                      pk.pack_array(0);
                    }),
                    &e)
            .IsInvalidArgument());
  // A snapshot event that is neither taken nor installed.
  CHECK(DecodeEvent("snapshot", Pack([](auto& pk) {
                      pk.pack_map(3);
                      pk.pack("node");
                      pk.pack(1);
                      pk.pack("seq");
                      pk.pack(1);
                      pk.pack("event");
                      pk.pack("lost");
                    }),
                    &e)
            .IsInvalidArgument());
}

TEST_CASE("Unknown fields of a known topic are skipped") {
  Event e;
  const std::string body = Pack([](auto& pk) {
    pk.pack_map(4);
    pk.pack("node");
    pk.pack(1);
    pk.pack("seq");
    pk.pack(2);
    pk.pack("future");
    pk.pack("field");
    pk.pack("version");
    pk.pack(3);
  });
  REQUIRE(DecodeEvent("shards", body, &e).ok());
  CHECK(std::get<ShardsEvent>(e).version == 3);
}

}  // namespace
}  // namespace kv::net
