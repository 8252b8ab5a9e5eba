#include "net/peer_codec.h"

#include <catch2/catch.hpp>
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
