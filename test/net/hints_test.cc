#include <catch2/catch.hpp>
#include <random>

#include "codec_test_util.h"
#include "net/peer_codec.h"

namespace kv::net {

TEST_CASE("Leader hints round trip and are told apart from Raft messages") {
  LeaderHints h;
  h.from = 3;
  h.leads = {{1, 7}, {5, 2}, {17, 1ULL << 40}};
  h.map_version = 1234;
  h.members = {{1, "127.0.0.1:8080"}, {3, "10.0.0.3:9000"}};
  const std::string bytes = EncodeLeaderHints(h);
  LeaderHints back;
  REQUIRE(DecodePeerFrameAs(bytes, &back).ok());
  REQUIRE(back.from == 3);
  REQUIRE(back.leads == h.leads);
  REQUIRE(back.map_version == 1234);
  REQUIRE(back.members == h.members);

  // Neither decoder accepts the other's frames.
  raft::Message m;
  REQUIRE_FALSE(DecodeRaftMessage(bytes, &m).ok());
  m.type = raft::MessageType::kHeartbeat;
  m.group = 2;
  m.from = 1;
  m.to = 3;
  REQUIRE_FALSE(DecodePeerFrameAs(EncodeRaftMessage(m), &back).ok());
  RemovedNotice n;
  REQUIRE_FALSE(DecodePeerFrameAs(bytes, &n).ok());
  REQUIRE_FALSE(DecodePeerFrameAs(EncodeRemovedNotice({4, 9, 3}), &back).ok());
}

TEST_CASE(
    "The placement rule rides in the leads as group 0, in the frame nodes before rules read") {
  LeaderHints h;
  h.from = 3;
  h.leads = {{1, 7}, {5, 2}};
  h.map_version = 9;
  h.members = {{1, "a:1"}};
  h.placement_rule = 2;
  const std::string bytes = EncodeLeaderHints(h);
  LeaderHints back;
  REQUIRE(DecodePeerFrameAs(bytes, &back).ok());
  REQUIRE(back == h);  // not among the leads
  // The shape a decoder from before rules checks: six elements, each lead
  // two unsigned numbers; the rule is one more lead, of group 0.
  msgpack::object_handle oh = msgpack::unpack(bytes.data(), bytes.size());
  const msgpack::object& o = oh.get();
  REQUIRE(o.type == msgpack::type::ARRAY);
  REQUIRE(o.via.array.size == 6);
  const msgpack::object& leads = o.via.array.ptr[3];
  REQUIRE(leads.via.array.size == 3);
  for (uint32_t i = 0; i < leads.via.array.size; ++i) {
    const msgpack::object& lead = leads.via.array.ptr[i];
    REQUIRE(lead.type == msgpack::type::ARRAY);
    REQUIRE(lead.via.array.size == 2);
    REQUIRE(lead.via.array.ptr[0].type == msgpack::type::POSITIVE_INTEGER);
    REQUIRE(lead.via.array.ptr[1].type == msgpack::type::POSITIVE_INTEGER);
  }
  REQUIRE(leads.via.array.ptr[2].via.array.ptr[0].as<uint64_t>() == 0);
  REQUIRE(leads.via.array.ptr[2].via.array.ptr[1].as<uint64_t>() == 2);
  // Without a rule the frame is byte for byte what nodes before rules send.
  h.placement_rule = 0;
  REQUIRE(DecodePeerFrameAs(EncodeLeaderHints(h), &back).ok());
  REQUIRE(back.placement_rule == 0);
  REQUIRE(back.leads == h.leads);
}

TEST_CASE("A removed notice round trips") {
  RemovedNotice n;
  REQUIRE(DecodePeerFrameAs(EncodeRemovedNotice({4, 9, 3}), &n).ok());
  REQUIRE(n.from == 4);
  REQUIRE(n.group == 9);
}

TEST_CASE("Malformed peer frames never decode as hints or notices") {
  LeaderHints h;
  h.from = 1;
  h.leads = {{2, 3}};
  h.members = {{1, "a:1"}};
  const std::string good = EncodeLeaderHints(h);
  std::mt19937 rng(7);
  for (int i = 0; i < 2000; ++i) {
    std::string bad = good;
    if (i % 2 == 0) {
      bad.resize(rng() % good.size());  // truncated
    } else {
      bad[rng() % bad.size()] = static_cast<char>(rng());  // a flipped byte
    }
    LeaderHints out;
    RemovedNotice n;
    (void)DecodePeerFrameAs(bad, &out);  // must not crash; may or may not decode
    (void)DecodePeerFrameAs(bad, &n);
  }
  LeaderHints out;
  REQUIRE_FALSE(DecodePeerFrameAs("", &out).ok());
  REQUIRE_FALSE(DecodePeerFrameAs(std::string("\x96\x01\xa5leads\x01\x90\x01\x91\x92\x01\x01", 14),
                                  &out)
                    .ok());  // a member address that is not a string
}

}  // namespace kv::net
