#include "net/peer_codec.h"

#include <catch2/catch.hpp>
#include <map>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "codec_test_util.h"

namespace kv::net {

namespace {

raft::Message FullMessage() {
  raft::Message m;
  m.type = raft::MessageType::kSnapshot;
  m.group = 42;
  m.from = 1;
  m.to = 3;
  m.term = 1ULL << 40;
  m.log_term = 7;
  m.index = 99;
  m.commit = 98;
  m.reject = true;
  m.reject_hint = 12;
  m.context = std::string("ctx\0bin", 7);
  m.entries.push_back(raft::Entry{7, 100, raft::EntryType::kNormal, "data"});
  m.entries.push_back(raft::Entry{7, 101, raft::EntryType::kConfChange, std::string(3, '\0')});
  m.snapshot.meta.index = 90;
  m.snapshot.meta.term = 6;
  m.snapshot.meta.conf.voters = {1, 2, 3};
  m.snapshot.meta.conf.learners = {4};
  m.snapshot.data = std::string(5000, 'x');
  return m;
}

LeaderHints SomeHints() {
  LeaderHints h;
  h.from = 3;
  h.leads = {{1, 7}, {5, 2}, {17, 1ULL << 40}};
  h.map_version = 1234;
  h.members = {{1, "127.0.0.1:8080"}, {3, "10.0.0.3:9000"}};
  h.placement_rule = 2;
  return h;
}

// One of each kind of frame, a snapshot chunk included.
std::vector<std::string> OneOfEach() {
  return {EncodeRaftMessage(FullMessage()), EncodeSnapshotChunk(FullMessage(), 1024, 100),
          EncodeLeaderHints(SomeHints()), EncodeRemovedNotice({4, 9, 3})};
}

// A Raft message's version and header fields (12 elements), then `rest`.
template <typename... T>
std::string Message(uint64_t type, const T&... rest) {
  return Array(1, type, 1, 1, 1, 1, 1, 1, 1, false, 0, std::vector<char>{}, rest...);
}

}  // namespace

TEST_CASE("A raft message round-trips through the peer codec with every field") {
  const raft::Message m = FullMessage();
  PeerFrame frame;
  REQUIRE(DecodePeerFrame(EncodeRaftMessage(m), &frame).ok());
  REQUIRE(std::get<RaftFrame>(frame) == RaftFrame{m, SnapshotChunk{}});
}

TEST_CASE("Non-snapshot raft messages drop the snapshot field") {
  raft::Message m = FullMessage();
  m.type = raft::MessageType::kAppend;
  PeerFrame frame;
  REQUIRE(DecodePeerFrame(EncodeRaftMessage(m), &frame).ok());
  const raft::Message& back = std::get<RaftFrame>(frame).message;
  REQUIRE(back.snapshot.IsEmpty());
  REQUIRE(back.entries == m.entries);
}

TEST_CASE("Leader hints and removed notices round-trip through the peer frame decoder") {
  PeerFrame frame;
  REQUIRE(DecodePeerFrame(EncodeLeaderHints(SomeHints()), &frame).ok());
  REQUIRE(std::get<LeaderHints>(frame) == SomeHints());
  REQUIRE(DecodePeerFrame(EncodeLeaderHints(LeaderHints{}), &frame).ok());
  REQUIRE(std::get<LeaderHints>(frame) == LeaderHints{});
  REQUIRE(DecodePeerFrame(EncodeRemovedNotice({4, 9, 3}), &frame).ok());
  REQUIRE(std::get<RemovedNotice>(frame) == RemovedNotice{4, 9, 3});
  // A frame decoded into a variant that held another kind holds only the new one.
  REQUIRE(DecodePeerFrame(EncodeRaftMessage(FullMessage()), &frame).ok());
  REQUIRE(std::get<RaftFrame>(frame).message == FullMessage());
}

TEST_CASE("A snapshot travels in chunks that decode to slices of it") {
  raft::Message m = FullMessage();
  const std::string& data = m.snapshot.data;
  std::string rebuilt;
  for (uint64_t off = 0; off < data.size(); off += 1024) {
    PeerFrame frame;
    REQUIRE(DecodePeerFrame(EncodeSnapshotChunk(m, off, 1024), &frame).ok());
    const RaftFrame& part = std::get<RaftFrame>(frame);
    REQUIRE(part.chunk == SnapshotChunk{off, data.size()});
    REQUIRE(part.message.snapshot.meta == m.snapshot.meta);
    rebuilt += part.message.snapshot.data;
  }
  REQUIRE(rebuilt == data);
}

TEST_CASE("The single-kind decoders refuse the other kinds, and chunks where none is expected") {
  const raft::Message m = FullMessage();
  raft::Message whole;
  SnapshotChunk chunk;
  REQUIRE(DecodeRaftMessage(EncodeRaftMessage(m), &whole, &chunk).ok());
  REQUIRE(whole == m);
  REQUIRE(chunk.total == 0);
  REQUIRE(DecodeRaftMessage(EncodeSnapshotChunk(m, 0, 10), &whole, &chunk).ok());
  REQUIRE(chunk == SnapshotChunk{0, m.snapshot.data.size()});
  REQUIRE(DecodeRaftMessage(EncodeSnapshotChunk(m, 0, 10), &whole).IsInvalidArgument());
  REQUIRE(DecodeRaftMessage(EncodeRemovedNotice({4, 9, 3}), &whole).IsInvalidArgument());
  RemovedNotice notice;
  REQUIRE(DecodePeerFrameAs(EncodeRaftMessage(m), &notice).IsInvalidArgument());
}

TEST_CASE("Hostile peer frames give InvalidArgument") {
  const std::vector<int> none;
  const msgpack::type::nil_t nil;
  using std::make_tuple;
  struct Case {
    const char* name;
    std::string bytes;
    const char* reason;
  };
  const std::vector<Case> cases = {
      {"empty", "", "insufficient bytes"},
      {"not msgpack", "\xc1", "parse error"},
      {"trailing bytes", EncodeRemovedNotice({4, 9, 3}) + "x", "trailing bytes"},
      {"a map", "\x80", "not an array"},
      {"an array of one", Array(1), "not an array"},
      {"version 2", Array(2, "removed", 1, 1, 1), "codec version"},
      {"version as a str", Array("1", "removed", 1, 1, 1), "codec version"},
      {"kind a bool", Array(1, true, 1, 1), "no kind"},
      {"kind a negative int", Array(1, -1, 1, 1), "no kind"},
      {"unknown kind", Array(1, "gossip", 1, 1), "unknown kind"},
      {"unknown message type", Message(200, none, nil), "unknown type"},
      {"message type over 255", Message(256 + 2, none, nil), "unknown type"},
      {"13 elements", Message(0, none), "14 or 16"},
      {"15 elements", Message(0, none, nil, 1), "14 or 16"},
      {"a header field of the wrong type",
       Array(1, 0, 1, 1, 1, "1", 1, 1, 1, false, 0, std::vector<char>{}, none, nil),
       "bad header field"},
      {"entries not an array", Message(0, std::map<int, int>{}, nil), "entries"},
      {"an entry of 3", Message(0, make_tuple(make_tuple(1, 1, 0)), nil), "bad entry"},
      {"an entry of unknown type",
       Message(0, make_tuple(make_tuple(1, 1, 2, std::vector<char>{})), nil), "bad entry"},
      {"snapshot not an array", Message(8, none, 1), "bad snapshot"},
      {"a chunk of a non-snapshot message", Message(0, none, nil, 0, 10), "bad snapshot chunk"},
      {"leader hints of 5", Array(1, "leads", 1, none, 1), "not 6 elements"},
      {"leads not pairs", Array(1, "leads", 1, make_tuple(make_tuple(1)), 1, none),
       "malformed entry"},
      {"a placement rule 0", Array(1, "leads", 1, make_tuple(make_tuple(0, 0)), 1, none),
       "placement rule"},
      {"two placement rules",
       Array(1, "leads", 1, make_tuple(make_tuple(0, 2), make_tuple(0, 2)), 1, none),
       "placement rule"},
      {"a placement rule over 32 bits",
       Array(1, "leads", 1, make_tuple(make_tuple(0, 1ULL << 32)), 1, none), "placement rule"},
      {"a member address as bin",
       Array(1, "leads", 1, none, 1, make_tuple(make_tuple(1, std::vector<char>{'a'}))),
       "malformed member"},
      {"a removed notice of 4", Array(1, "removed", 1, 1), "removed notice"},
      {"a removed notice of 6", Array(1, "removed", 1, 1, 1, 1), "removed notice"},
      {"a removed notice's group a str", Array(1, "removed", 1, "1", 1), "removed notice"},
      {"a removed notice's term a str", Array(1, "removed", 1, 1, "1"), "removed notice"},
      {"an array claiming 2^32-1 elements", "\xdd\xff\xff\xff\xff\x01", "claim more elements"},
      {"a map claiming 2^32-1 entries", "\xdf\xff\xff\xff\xff", "claim more elements"},
      // Refused before msgpack allocates the elements, as the frame is too
      // short to hold them.
      {"an array claiming 2^20 elements", std::string("\xdd\x00\x10\x00\x00\x01", 6),
       "claim more elements"},
      {"a map claiming 1024 entries", std::string("\xde\x04\x00\x01\x01", 5),
       "claim more elements"},
      {"a bin claiming 4 GiB", "\x94" + Array(1, "removed", 1).substr(1) + "\xc6\xff\xff\xff\xff",
       "insufficient bytes"},
      {"nested too deep", std::string(100, '\x91') + '\x01', "depth size overflow"},
  };
  for (const auto& c : cases) {
    INFO(c.name);
    PeerFrame frame;
    const Status s = DecodePeerFrame(c.bytes, &frame);
    REQUIRE(s.IsInvalidArgument());
    REQUIRE(s.message().find(c.reason) != std::string::npos);
  }
}

TEST_CASE("Snapshot chunks that do not fit their total are refused") {
  raft::Message m = FullMessage();
  m.snapshot.data = "0123456789";
  PeerFrame frame;
  REQUIRE(DecodePeerFrame(EncodeSnapshotChunk(m, 10, 0), &frame).ok());  // empty, at the end
  // The chunk's two trailing uints are its last bytes: rewrite them.
  std::string bytes = EncodeSnapshotChunk(m, 4, 3);
  const std::string::size_type tail = bytes.size() - 2;
  for (auto [offset, total] : {std::pair<char, char>{4, 0}, {9, 10}, {11, 10}, {8, 5}}) {
    bytes[tail] = offset;
    bytes[tail + 1] = total;
    INFO(int{offset} << " of " << int{total});
    REQUIRE(DecodePeerFrame(bytes, &frame).IsInvalidArgument());
  }
  bytes[tail] = 7;
  bytes[tail + 1] = 10;
  REQUIRE(DecodePeerFrame(bytes, &frame).ok());
}

TEST_CASE("Every truncation of every kind of peer frame is refused") {
  for (const std::string& enc : OneOfEach()) {
    for (size_t n = 0; n < enc.size(); n += (n < 200 ? 1 : 97)) {
      PeerFrame frame;
      REQUIRE(DecodePeerFrame(enc.substr(0, n), &frame).IsInvalidArgument());
    }
  }
}

TEST_CASE("Random bytes and flipped bytes never crash the peer decoder") {
  std::mt19937_64 rng(1234);
  int rejected = 0;
  for (const std::string& enc : OneOfEach()) {
    for (int i = 0; i < 2000; ++i) {
      std::string bytes = enc.substr(0, 200);
      bytes[rng() % bytes.size()] = static_cast<char>(rng());
      PeerFrame frame;
      if (!DecodePeerFrame(bytes, &frame).ok()) rejected++;
      std::string noise(rng() % 64, '\0');
      for (char& c : noise) c = static_cast<char>(rng());
      (void)DecodePeerFrame(noise, &frame);
    }
  }
  REQUIRE(rejected > 0);
}

}  // namespace kv::net
