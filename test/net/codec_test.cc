#include "net/codec.h"

#define MSGPACK_NO_BOOST
#include <msgpack.hpp>

#include <catch2/catch.hpp>
#include <map>
#include <random>

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

// Packs a map of string keys to values given as msgpack-packable variants.
template <typename F>
std::string PackMap(uint32_t n, F body) {
  msgpack::sbuffer buf;
  msgpack::packer<msgpack::sbuffer> pk(buf);
  pk.pack_map(n);
  body(pk);
  return std::string(buf.data(), buf.size());
}

}  // namespace

TEST_CASE("A raft message round-trips through the peer codec with every field") {
  const raft::Message m = FullMessage();
  raft::Message back;
  REQUIRE(DecodeRaftMessage(EncodeRaftMessage(m), &back).ok());
  REQUIRE(back == m);
}

TEST_CASE("Non-snapshot raft messages drop the snapshot field") {
  raft::Message m = FullMessage();
  m.type = raft::MessageType::kAppend;
  raft::Message back;
  REQUIRE(DecodeRaftMessage(EncodeRaftMessage(m), &back).ok());
  REQUIRE(back.snapshot.IsEmpty());
  REQUIRE(back.entries == m.entries);
}

TEST_CASE("Every truncation of a raft message is rejected without a crash") {
  const std::string enc = EncodeRaftMessage(FullMessage());
  for (size_t n = 0; n < enc.size(); n += (n < 200 ? 1 : 97)) {
    raft::Message back;
    REQUIRE_FALSE(DecodeRaftMessage(enc.substr(0, n), &back).ok());
  }
}

TEST_CASE("Random bytes and flipped bytes never crash the peer decoder") {
  std::mt19937_64 rng(1234);
  const std::string enc = EncodeRaftMessage(FullMessage());
  int rejected = 0;
  for (int i = 0; i < 3000; ++i) {
    std::string bytes = enc.substr(0, 200);
    bytes[rng() % bytes.size()] = static_cast<char>(rng());
    raft::Message back;
    if (!DecodeRaftMessage(bytes, &back).ok()) rejected++;
    std::string noise(rng() % 64, '\0');
    for (char& c : noise) c = static_cast<char>(rng());
    (void)DecodeRaftMessage(noise, &back);
  }
  REQUIRE(rejected > 0);
}

TEST_CASE("A client put request decodes, with set as an alias") {
  for (const char* op : {"put", "set"}) {
    std::string bytes = PackMap(6, [&](auto& pk) {
      pk.pack("id"); pk.pack(uint64_t{9});
      pk.pack("op"); pk.pack(op);
      pk.pack("key"); pk.pack("k");
      pk.pack("value"); pk.pack("v");
      pk.pack("client"); pk.pack(uint64_t{5});
      pk.pack("seq"); pk.pack(uint64_t{2});
    });
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

TEST_CASE("A cas with a nil expect means only-if-absent; bin keys are accepted") {
  std::string bytes = PackMap(5, [&](auto& pk) {
    pk.pack("id"); pk.pack(uint64_t{1});
    pk.pack("op"); pk.pack("cas");
    pk.pack("key"); pk.pack_bin(2); pk.pack_bin_body("\0k", 2);
    pk.pack("value"); pk.pack("new");
    pk.pack("expect"); pk.pack_nil();
  });
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
      {"no id", PackMap(1, [](auto& pk) { pk.pack("op"); pk.pack("get"); }), false, "missing \"id\""},
      {"unknown op", PackMap(2, [](auto& pk) {
         pk.pack("id"); pk.pack(uint64_t{3}); pk.pack("op"); pk.pack("frobnicate");
       }), true, "unknown op"},
      {"no key", PackMap(2, [](auto& pk) {
         pk.pack("id"); pk.pack(uint64_t{3}); pk.pack("op"); pk.pack("get");
       }), true, "missing \"key\""},
      {"key type", PackMap(3, [](auto& pk) {
         pk.pack("id"); pk.pack(uint64_t{3}); pk.pack("op"); pk.pack("get");
         pk.pack("key"); pk.pack(uint64_t{5});
       }), true, "wrong type"},
      {"put without value", PackMap(3, [](auto& pk) {
         pk.pack("id"); pk.pack(uint64_t{3}); pk.pack("op"); pk.pack("put");
         pk.pack("key"); pk.pack("k");
       }), true, "missing \"value\""},
      {"key too long", PackMap(3, [](auto& pk) {
         pk.pack("id"); pk.pack(uint64_t{3}); pk.pack("op"); pk.pack("get");
         pk.pack("key"); pk.pack("123456789");
       }), true, "over the limit"},
      {"value too long", PackMap(4, [](auto& pk) {
         pk.pack("id"); pk.pack(uint64_t{3}); pk.pack("op"); pk.pack("put");
         pk.pack("key"); pk.pack("k"); pk.pack("value"); pk.pack(std::string(17, 'v'));
       }), true, "over the limit"},
      {"negative id", PackMap(1, [](auto& pk) { pk.pack("id"); pk.pack(int64_t{-1}); }), false,
       "unsigned"},
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

}  // namespace kv::net

namespace kv::net {

TEST_CASE("A snapshot travels in chunks that decode to slices of it") {
  raft::Message m = FullMessage();
  const std::string& data = m.snapshot.data;
  std::string rebuilt;
  for (uint64_t off = 0; off < data.size(); off += 1024) {
    raft::Message part;
    SnapshotChunk chunk;
    REQUIRE(DecodeRaftMessage(EncodeSnapshotChunk(m, off, 1024), &part, &chunk).ok());
    REQUIRE(chunk.offset == off);
    REQUIRE(chunk.total == data.size());
    REQUIRE(part.snapshot.meta == m.snapshot.meta);
    rebuilt += part.snapshot.data;
  }
  REQUIRE(rebuilt == data);
  // A whole message still decodes as one, and a chunk is refused where
  // chunks are not expected.
  raft::Message whole;
  SnapshotChunk chunk;
  REQUIRE(DecodeRaftMessage(EncodeRaftMessage(m), &whole, &chunk).ok());
  REQUIRE(chunk.total == 0);
  REQUIRE_FALSE(DecodeRaftMessage(EncodeSnapshotChunk(m, 0, 10), &whole).ok());
}

}  // namespace kv::net
