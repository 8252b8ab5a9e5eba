#include "node/read_batch.h"

#include <catch2/catch.hpp>

#include "raft/memory_storage.h"

namespace kv::node {
namespace {

Pending Read(uint64_t id) {
  Pending p;
  p.id = id;
  return p;
}

// A follower of a three-node group that has heard of no leader yet.
struct LeaderlessFollower {
  raft::MemoryStorage storage;
  std::unique_ptr<raft::Raft> raft;
  LeaderlessFollower() {
    raft::Config c;
    c.id = 1;
    c.group = 1;
    c.peers = {1, 2, 3};
    c.storage = &storage;
    raft = std::make_unique<raft::Raft>(c);
  }
};

TEST_CASE("ReadBatch: reads Raft cannot start a round for come back unexecuted") {
  LeaderlessFollower f;
  ReadBatch batch;
  batch.Add(Read(1));
  batch.Add(Read(2));
  std::vector<Pending> refused = batch.Start(*f.raft);
  REQUIRE(refused.size() == 2);
  CHECK(refused[0].id == 1);
  CHECK(refused[1].id == 2);
  CHECK(batch.TakeAll().empty());
}

TEST_CASE("ReadBatch: nothing gathered starts no round") {
  LeaderlessFollower f;
  ReadBatch batch;
  CHECK(batch.Start(*f.raft).empty());
}

TEST_CASE("ReadBatch: a round not started here confirms nothing, and TakeAll returns every read") {
  ReadBatch batch;
  batch.Add(Read(7));
  raft::ReadState foreign;
  foreign.index = 5;
  foreign.context = "1";
  CHECK(batch.Confirmed(foreign).empty());
  std::vector<Pending> all = batch.TakeAll();
  REQUIRE(all.size() == 1);
  CHECK(all[0].id == 7);
  CHECK(batch.TakeAll().empty());
}

}  // namespace
}  // namespace kv::node
