#include "net/snapshot_stream.h"

#include <algorithm>
#include <catch2/catch.hpp>
#include <map>

#include "codec_test_util.h"

namespace kv::net {
namespace {

raft::Message SnapshotTo(raft::NodeId to, size_t bytes) {
  raft::Message m;
  m.type = raft::MessageType::kSnapshot;
  m.group = 1;
  m.from = 1;
  m.to = to;
  m.term = 3;
  m.snapshot.meta.index = 100;
  m.snapshot.meta.term = 2;
  m.snapshot.meta.conf.voters = {1, 2, 3};
  m.snapshot.data.resize(bytes);
  for (size_t i = 0; i < bytes; ++i) m.snapshot.data[i] = static_cast<char>(i * 7);
  return m;
}

}  // namespace

TEST_CASE("Chunks sent under backpressure reassemble into the snapshot") {
  SnapshotSender sender(1000, std::chrono::seconds(5));
  SnapshotAssembler assembler(1 << 20);
  const raft::Message original = SnapshotTo(2, 4500);
  auto now = SnapshotSender::Clock::now();
  sender.Start(original, now);
  std::vector<std::string> wire;
  int room = 2;  // the peer's queue takes two frames per pump
  std::vector<std::pair<raft::NodeId, bool>> done;
  auto try_send = [&](raft::NodeId, const std::string& frame) {
    if (room == 0) return false;
    room--;
    wire.push_back(frame);
    return true;
  };
  auto on_done = [&](raft::GroupId, raft::NodeId to, bool ok) { done.emplace_back(to, ok); };
  while (done.empty()) {
    room = 2;
    sender.Pump(try_send, on_done, now);
  }
  REQUIRE(wire.size() == 5);
  REQUIRE(done == std::vector<std::pair<raft::NodeId, bool>>{{2, true}});
  raft::Message whole;
  bool complete = false;
  for (size_t i = 0; i < wire.size(); ++i) {
    raft::Message part;
    SnapshotChunk chunk;
    REQUIRE(DecodeRaftMessage(wire[i], &part, &chunk).ok());
    REQUIRE(assembler.Add(std::move(part), chunk, &whole, &complete).ok());
    REQUIRE(complete == (i + 1 == wire.size()));
  }
  REQUIRE(whole == original);
}

TEST_CASE("A stalled snapshot stream is abandoned and reported failed") {
  SnapshotSender sender(1000, std::chrono::seconds(5));
  auto now = SnapshotSender::Clock::now();
  sender.Start(SnapshotTo(3, 3000), now);
  std::vector<std::pair<raft::NodeId, bool>> done;
  auto never = [](raft::NodeId, const std::string&) { return false; };
  auto on_done = [&](raft::GroupId, raft::NodeId to, bool ok) { done.emplace_back(to, ok); };
  sender.Pump(never, on_done, now + std::chrono::seconds(1));
  REQUIRE(done.empty());
  sender.Pump(never, on_done, now + std::chrono::seconds(6));
  REQUIRE(done == std::vector<std::pair<raft::NodeId, bool>>{{3, false}});
  REQUIRE(sender.idle());
}

TEST_CASE("An out-of-sequence or oversized chunk drops the partial snapshot") {
  SnapshotAssembler assembler(4000);
  const raft::Message m = SnapshotTo(2, 3000);
  raft::Message part, whole;
  SnapshotChunk chunk;
  bool complete = false;
  REQUIRE(DecodeRaftMessage(EncodeSnapshotChunk(m, 1000, 1000), &part, &chunk).ok());
  REQUIRE(assembler.Add(part, chunk, &whole, &complete).IsInvalidArgument());
  const raft::Message big = SnapshotTo(2, 5000);
  REQUIRE(DecodeRaftMessage(EncodeSnapshotChunk(big, 0, 1000), &part, &chunk).ok());
  REQUIRE(assembler.Add(part, chunk, &whole, &complete).IsInvalidArgument());
  REQUIRE_FALSE(complete);
}

}  // namespace kv::net

namespace kv::net {

TEST_CASE("Two groups stream snapshots to one peer side by side") {
  SnapshotSender sender(1000, std::chrono::seconds(5));
  SnapshotAssembler assembler(1 << 20);
  raft::Message a = SnapshotTo(2, 2500);
  raft::Message b = SnapshotTo(2, 1500);
  b.group = 7;
  b.snapshot.data.assign(1500, 'b');
  auto now = SnapshotSender::Clock::now();
  sender.Start(a, now);
  sender.Start(b, now);
  std::vector<std::string> wire;
  std::vector<std::pair<raft::GroupId, bool>> done;
  // One frame per pump: the two streams' chunks interleave on the wire.
  int room = 0;
  auto try_send = [&](raft::NodeId to, const std::string& frame) {
    REQUIRE(to == 2);
    if (room == 0) return false;
    room--;
    wire.push_back(frame);
    return true;
  };
  while (done.size() < 2) {
    room = 1;
    sender.Pump(
        try_send, [&](raft::GroupId g, raft::NodeId, bool ok) { done.emplace_back(g, ok); }, now);
  }
  std::sort(done.begin(), done.end());
  REQUIRE(done == std::vector<std::pair<raft::GroupId, bool>>{{1, true}, {7, true}});
  std::map<raft::GroupId, raft::Message> assembled;
  for (const std::string& frame : wire) {
    raft::Message part, whole;
    SnapshotChunk chunk;
    bool complete = false;
    REQUIRE(DecodeRaftMessage(frame, &part, &chunk).ok());
    REQUIRE(assembler.Add(std::move(part), chunk, &whole, &complete).ok());
    if (complete) assembled[whole.group] = whole;
  }
  REQUIRE(assembled.size() == 2);
  REQUIRE(assembled[1] == a);
  REQUIRE(assembled[7] == b);
}

}  // namespace kv::net
