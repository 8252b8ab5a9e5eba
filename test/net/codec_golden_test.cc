// Golden bytes: every encoder's output, field order included, pinned as hex
// so that a change of the codec's code can never change the wire
// (docs/protocol.md is the contract). The expected strings were produced by
// the codec before it was split by protocol.
#include <catch2/catch.hpp>
#include <string>
#include <string_view>

#include "net/client_codec.h"
#include "net/msgpack_util.h"
#include "net/peer_codec.h"

namespace kv::net {

namespace {

std::string Hex(std::string_view bytes) {
  static const char kDigits[] = "0123456789abcdef";
  std::string hex;
  for (unsigned char c : bytes) {
    hex += kDigits[c >> 4];
    hex += kDigits[c & 15];
  }
  return hex;
}

raft::Message Append() {
  raft::Message m;
  m.type = raft::MessageType::kAppend;
  m.group = 3;
  m.from = 1;
  m.to = 2;
  m.term = 1ULL << 40;
  m.log_term = 300;
  m.index = 70000;
  m.commit = 69999;
  m.reject = true;
  m.reject_hint = 5;
  m.context = std::string("c\0", 2);
  m.entries.push_back(raft::Entry{9, 70001, raft::EntryType::kNormal, "put"});
  m.entries.push_back(raft::Entry{9, 70002, raft::EntryType::kConfChange, ""});
  return m;
}

raft::Message Snapshot() {
  raft::Message m;
  m.type = raft::MessageType::kSnapshot;
  m.group = 1;
  m.from = 1;
  m.to = 3;
  m.term = 2;
  m.snapshot.meta.index = 12;
  m.snapshot.meta.term = 2;
  m.snapshot.meta.conf.voters = {1, 2, 3};
  m.snapshot.meta.conf.learners = {4};
  m.snapshot.data = "0123456789";
  return m;
}

ClientRequest Request(ClientOp op) {
  ClientRequest r;
  r.id = 7;
  r.op = op;
  r.key = "k";
  r.value = "v";
  r.expect = "e";
  r.has_expect = true;
  r.client = 11;
  r.seq = 2;
  r.stale = true;
  r.target = 3;
  r.node = 4;
  r.address = "h:1";
  return r;
}

GroupStatus Group(uint64_t id, int64_t shard) {
  GroupStatus g;
  g.group = id;
  g.shard = shard;
  g.role = "leader";
  g.term = 4;
  g.leader = 2;
  g.commit = 100;
  g.applied = 99;
  g.last_index = 101;
  g.snapshot_index = 50;
  g.digest = 0xfeed;
  g.keys = 1000;
  g.voters = {1, 2};
  g.learners = {3};
  return g;
}

NodeStatus Status(bool sharded) {
  NodeStatus st;
  st.node = 2;
  st.role = "follower";
  st.term = 9;
  st.leader = 1;
  st.leader_address = "a:1";
  st.commit = 40;
  st.applied = 39;
  st.last_index = 41;
  st.snapshot_index = 20;
  st.event_seq = 77;
  st.digest = 1234567;
  st.keys = 12;
  st.members = {{1, "a:1"}, {2, "b:2"}};
  st.voters = {1, 2};
  st.learners = {3};
  if (sharded) {
    st.shards = 2;
    st.groups = {Group(1, -1), Group(2, 0)};
  }
  return st;
}

}  // namespace

TEST_CASE("Golden bytes: peer frames") {
  CHECK(Hex(EncodeRaftMessage(Append())) ==
        "9e0100030102cf0000010000000000cd012cce00011170ce0001116fc305c4026300929409ce0001117100c403"
        "7075749409ce0001117201c400c0");
  CHECK(Hex(EncodeRaftMessage(Snapshot())) ==
        "9e010801010302000000c200c40090950c02930102039104c40a30313233343536373839");
  CHECK(Hex(EncodeSnapshotChunk(Snapshot(), 4, 3)) ==
        "dc0010010801010302000000c200c40090950c02930102039104c403343536040a");
  LeaderHints hints;
  hints.from = 2;
  hints.leads = {{1, 7}, {5, 1ULL << 33}};
  hints.map_version = 12;
  hints.members = {{1, "a:1"}, {2, "b:2"}};
  CHECK(Hex(EncodeLeaderHints(hints)) ==
        "9601a56c6561647302929201079205cf00000002000000000c929201a3613a319202a3623a32");
  CHECK(Hex(EncodeLeaderHints(LeaderHints{})) == "9601a56c6561647300900090");
  hints.placement_rule = 2;  // one more lead: [0, 2]
  CHECK(Hex(EncodeLeaderHints(hints)) ==
        "9601a56c6561647302939201079205cf00000002000000009200020c929201a3613a319202a3623a32");
  CHECK(Hex(EncodeRemovedNotice({4, 9, 3})) == "9501a772656d6f766564040903");
}

TEST_CASE("Golden bytes: client requests of every op") {
  CHECK(Hex(EncodeClientRequest(Request(ClientOp::kGet))) ==
        "84a2696407a26f70a3676574a36b6579c4016ba57374616c65c3");
  ClientRequest get = Request(ClientOp::kGet);
  get.stale = false;
  CHECK(Hex(EncodeClientRequest(get)) == "83a2696407a26f70a3676574a36b6579c4016b");
  CHECK(Hex(EncodeClientRequest(Request(ClientOp::kPut))) ==
        "86a2696407a26f70a3707574a36b6579c4016ba576616c7565c40176a6636c69656e740ba373657102");
  ClientRequest put = Request(ClientOp::kPut);
  put.client = 0;
  CHECK(Hex(EncodeClientRequest(put)) ==
        "84a2696407a26f70a3707574a36b6579c4016ba576616c7565c40176");
  CHECK(Hex(EncodeClientRequest(Request(ClientOp::kDelete))) ==
        "85a2696407a26f70a364656ca36b6579c4016ba6636c69656e740ba373657102");
  CHECK(Hex(EncodeClientRequest(Request(ClientOp::kCas))) ==
        "87a2696407a26f70a3636173a36b6579c4016ba576616c7565c40176a6657870656374c40165a6636c69656e74"
        "0ba373657102");
  ClientRequest cas = Request(ClientOp::kCas);
  cas.has_expect = false;
  CHECK(Hex(EncodeClientRequest(cas)) ==
        "87a2696407a26f70a3636173a36b6579c4016ba576616c7565c40176a6657870656374c0a6636c69656e740ba3"
        "73657102");
  CHECK(Hex(EncodeClientRequest(Request(ClientOp::kStatus))) == "82a2696407a26f70a6737461747573");
  CHECK(Hex(EncodeClientRequest(Request(ClientOp::kTransferLeader))) ==
        "83a2696407a26f70af7472616e736665725f6c6561646572a674617267657403");
  CHECK(Hex(EncodeClientRequest(Request(ClientOp::kMemberAdd))) ==
        "84a2696407a26f70aa6d656d6265725f616464a46e6f646504a761646472657373a3683a31");
  CHECK(Hex(EncodeClientRequest(Request(ClientOp::kMemberRemove))) ==
        "83a2696407a26f70ad6d656d6265725f72656d6f7665a46e6f646504");
  CHECK(Hex(EncodeClientRequest(Request(ClientOp::kShards))) == "82a2696407a26f70a6736861726473");
}

TEST_CASE("Golden bytes: client replies of every status") {
  ClientReply r;
  r.id = 300;
  CHECK(Hex(EncodeClientReply(r)) == "82a26964cd012ca6737461747573a24f4b");
  r.has_value = true;
  r.value = std::string("\0v", 2);
  CHECK(Hex(EncodeClientReply(r)) == "83a26964cd012ca6737461747573a24f4ba576616c7565c4020076");
  r = ClientReply{};
  r.id = 1;
  r.status = ReplyStatus::kNotFound;
  CHECK(Hex(EncodeClientReply(r)) == "82a2696401a6737461747573a94e4f545f464f554e44");
  r.status = ReplyStatus::kRedirect;
  r.leader = "h:2";
  r.shard = 3;
  r.map_version = 70000;
  CHECK(Hex(EncodeClientReply(r)) ==
        "85a2696401a6737461747573a85245444952454354a66c6561646572a3683a32a5736861726403ab6d61705f76"
        "657273696f6ece00011170");
  r = ClientReply{};
  r.status = ReplyStatus::kCasFailed;
  CHECK(Hex(EncodeClientReply(r)) == "82a2696400a6737461747573aa4341535f4641494c4544");
  r.status = ReplyStatus::kUnavailable;
  r.error = "no leader";
  r.shard = 0;
  CHECK(Hex(EncodeClientReply(r)) ==
        "85a2696400a6737461747573ab554e415641494c41424c45a56572726f72a96e6f206c6561646572a573686172"
        "6400ab6d61705f76657273696f6e00");
  r.shard = -1;
  r.status = ReplyStatus::kUnknown;
  CHECK(Hex(EncodeClientReply(r)) ==
        "83a2696400a6737461747573a7554e4b4e4f574ea56572726f72a96e6f206c6561646572");
  r.status = ReplyStatus::kError;
  CHECK(Hex(EncodeClientReply(r)) ==
        "83a2696400a6737461747573a54552524f52a56572726f72a96e6f206c6561646572");
}

TEST_CASE("Golden bytes: status and shards replies") {
  CHECK(Hex(EncodeStatusReply(5, Status(false))) ==
        "de0011a2696405a6737461747573a24f4ba46e6f646502a4726f6c65a8666f6c6c6f776572a47465726d09a66c"
        "656164657201a6636f6d6d697428a76170706c69656427aa6c6173745f696e64657829ae736e617073686f745f"
        "696e64657814a6646967657374ce0012d687a46b6579730ca6766f74657273920102a86c6561726e6572739103"
        "ae6c65616465725f61646472657373a3613a31a96576656e745f7365714da76d656d6265727382a131a3613a31"
        "a132a3623a32");
  CHECK(Hex(EncodeStatusReply(6, Status(true))) ==
        "de0013a2696406a6737461747573a24f4ba46e6f646502a4726f6c65a8666f6c6c6f776572a47465726d09a66c"
        "656164657201a6636f6d6d697428a76170706c69656427aa6c6173745f696e64657829ae736e617073686f745f"
        "696e64657814a6646967657374ce0012d687a46b6579730ca6766f74657273920102a86c6561726e6572739103"
        "ae6c65616465725f61646472657373a3613a31a96576656e745f7365714da76d656d6265727382a131a3613a31"
        "a132a3623a32a673686172647302a667726f757073928ca567726f757001a4726f6c65a66c6561646572a47465"
        "726d04a66c656164657202a6636f6d6d697464a76170706c69656463aa6c6173745f696e64657865ae736e6170"
        "73686f745f696e64657832a6646967657374cdfeeda46b657973cd03e8a6766f74657273920102a86c6561726e"
        "65727391038da567726f757002a5736861726400a4726f6c65a66c6561646572a47465726d04a66c6561646572"
        "02a6636f6d6d697464a76170706c69656463aa6c6173745f696e64657865ae736e617073686f745f696e646578"
        "32a6646967657374cdfeeda46b657973cd03e8a6766f74657273920102a86c6561726e6572739103");
  ShardMap map;
  map.version = 7;
  map.shards = 2;
  map.replicas = 2;
  map.members = {{1, "a:1"}, {2, "b:2"}};
  map.list.push_back(ShardInfo{0, 10, {1, 2}, 1, "a:1"});
  map.list.push_back(ShardInfo{1, 11, {2, 1}, 0, ""});
  CHECK(Hex(EncodeShardsReply(8, map)) ==
        "87a2696408a6737461747573a24f4ba776657273696f6e07a673686172647302a87265706c6963617302a76d65"
        "6d6265727382a131a3613a31a132a3623a32a36d61709285a5736861726400a567726f75700aa87265706c6963"
        "6173920102a66c656164657201ae6c65616465725f61646472657373a3613a3185a5736861726401a567726f75"
        "700ba87265706c69636173920201a66c656164657200ae6c65616465725f61646472657373a0");
  map.placement = 2;  // one more field
  CHECK(Hex(EncodeShardsReply(8, map)) ==
        "88a2696408a6737461747573a24f4ba776657273696f6e07a673686172647302a87265706c6963617302a9706c"
        "6163656d656e7402a76d656d6265727382a131a3613a31a132a3623a32a36d61709285a5736861726400a56772"
        "6f75700aa87265706c69636173920102a66c656164657201ae6c65616465725f61646472657373a3613a3185a5"
        "736861726401a567726f75700ba87265706c69636173920201a66c656164657200ae6c65616465725f61646472"
        "657373a0");
  CHECK(Hex(EncodeShardsReply(9, ShardMap{})) ==
        "87a2696409a6737461747573a24f4ba776657273696f6e00a673686172647300a87265706c6963617300a76d65"
        "6d6265727380a36d617090");
}

TEST_CASE("A map writer writes the header pack_map would, at every size boundary") {
  for (uint32_t n : {0u, 1u, 15u, 16u, 65535u, 65536u}) {
    INFO(n);
    std::string expected = "x";
    StringBuffer buffer(&expected);
    Packer pk(buffer);
    pk.pack_map(n);
    std::string got = "x";
    MapWriter map(&got);
    for (uint32_t i = 0; i < n; ++i) {
      PackStr(pk, "k");
      pk.pack_uint64(i);
      map.Uint("k", i);
    }
    map.Finish();
    REQUIRE(got == expected);
  }
}

TEST_CASE("Map writers nest, a longer header of the inner map shifting nothing before it") {
  std::string expected;
  StringBuffer buffer(&expected);
  Packer pk(buffer);
  pk.pack_map(2);
  PackStr(pk, "inner");
  pk.pack_map(20);
  for (uint64_t i = 0; i < 20; ++i) {
    PackStr(pk, std::to_string(i));
    pk.pack_uint64(i);
  }
  PackStr(pk, "after");
  pk.pack_true();

  std::string got;
  MapWriter outer(&got);
  outer.Field("inner");
  MapWriter inner(&got);
  for (uint64_t i = 0; i < 20; ++i) inner.Uint(std::to_string(i), i);
  inner.Finish();
  outer.Field("after").pack_true();
  outer.Finish();
  REQUIRE(Hex(got) == Hex(expected));
}

}  // namespace kv::net
