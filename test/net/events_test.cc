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
}

TEST_CASE("Topics are the protocol's") {
  CHECK(std::string(EventTopic(RoleEvent{})) == "role");
  CHECK(std::string(EventTopic(CommitEvent{})) == "commit");
  CHECK(std::string(EventTopic(SnapshotEvent{})) == "snapshot");
  CHECK(std::string(EventTopic(MembershipEvent{})) == "membership");
  CHECK(std::string(EventTopic(ShardsEvent{})) == "shards");
  CHECK(std::string(EventTopic(PutEvent{})) == "kv.put");
  CHECK(std::string(EventTopic(DeleteEvent{})) == "kv.del");
}

// Publishes through the field-list API and the typed one, each from a fresh
// Publisher of the same node, and compares the frames.
class Wire {
 public:
  Wire() : out_(ctx_, zmq::socket_type::pair), in_(ctx_, zmq::socket_type::pair) {
    in_.bind("inproc://events");
    out_.connect("inproc://events");
  }
  std::pair<std::string, std::string> Old(std::string_view topic,
                                          const std::vector<EventField>& fields) {
    Publisher(&out_, 7).Publish(topic, fields);
    return Receive();
  }
  std::pair<std::string, std::string> New(const Event& event) {
    Publisher(&out_, 7).Publish(event);
    return Receive();
  }

 private:
  std::pair<std::string, std::string> Receive() {
    zmq::message_t topic, body;
    REQUIRE(in_.recv(topic));
    REQUIRE(topic.more());
    REQUIRE(in_.recv(body));
    return {topic.to_string(), body.to_string()};
  }
  zmq::context_t ctx_;
  zmq::socket_t out_, in_;
};

uint64_t U(uint64_t v) { return v; }

TEST_CASE("Typed events are byte-compatible with the node's field lists") {
  Wire w;
  // The field lists as src/node/node.cc publishes them.
  CHECK(
      w.Old("role",
            {{"group", U(2)}, {"role", std::string("leader")}, {"term", U(3)}, {"leader", U(7)}}) ==
      w.New(RoleEvent{0, 0, 2, "leader", 3, 7}));
  CHECK(
      w.Old("commit", {{"group", U(2)}, {"term", U(3)}, {"commit", U(300)}, {"applied", U(299)}}) ==
      w.New(CommitEvent{0, 0, 2, 3, 300, 299}));
  CHECK(
      w.Old("snapshot", {{"group", U(1)}, {"event", std::string("taken")}, {"index", U(70000)}}) ==
      w.New(SnapshotEvent{0, 0, 1, false, 70000, 0}));
  CHECK(w.Old("snapshot", {{"group", U(1)},
                           {"event", std::string("installed")},
                           {"index", U(70000)},
                           {"term", U(5)}}) == w.New(SnapshotEvent{0, 0, 1, true, 70000, 5}));
  CHECK(w.Old("membership", {{"group", U(1)},
                             {"index", U(12)},
                             {"change", std::string("add-learner")},
                             {"member", U(4)},
                             {"voters", U(3)},
                             {"learners", U(1)}}) ==
        w.New(MembershipEvent{0, 0, 1, 12, "add-learner", 4, 3, 1}));
  CHECK(w.Old("membership", {{"group", U(5)}, {"change", std::string("left")}, {"member", U(7)}}) ==
        w.New(MembershipEvent{0, 0, 5, 0, "left", 7, 0, 0}));
  CHECK(w.Old("shards", {{"version", U(9)}, {"members", U(5)}}) == w.New(ShardsEvent{0, 0, 9, 5}));
  const std::string key(300, 'k');  // long enough for bin 16
  CHECK(
      w.Old("kv.put", {{"key", EventBytes{key}}, {"index", U(1ULL << 40)}, {"size", U(1 << 20)}}) ==
      w.New(PutEvent{0, 0, key, 1ULL << 40, 1 << 20}));
  CHECK(w.Old("kv.del", {{"key", EventBytes{"a"}}, {"index", U(8)}, {"size", U(0)}}) ==
        w.New(DeleteEvent{0, 0, "a", 8, 0}));
}

TEST_CASE("The publisher stamps node and seq on typed events") {
  zmq::context_t ctx;
  zmq::socket_t out(ctx, zmq::socket_type::pair), in(ctx, zmq::socket_type::pair);
  in.bind("inproc://stamp");
  out.connect("inproc://stamp");
  Publisher pub(&out, 9);
  pub.Publish("commit", {{"group", uint64_t{1}}});
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
