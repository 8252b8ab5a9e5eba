#include "node/ready_pipeline.h"

#include <catch2/catch.hpp>
#include <memory>
#include <vector>

#include "storage/fault_injection_env.h"

namespace kv::node {
namespace {

// Records what the pipeline hands over, and what the storage held then.
class Recorder : public ReadyHandler {
 public:
  struct Handed {
    raft::Index index;
    raft::Index durable_commit;  // the group storage's commit index at that moment
  };

  void OnRoleChange(Group&, const raft::SoftState&) override {}
  void QueueMessages(const std::vector<raft::Message>&) override {}
  void FlushMessages() override {}
  void PumpSnapshots() override {}
  void OnSnapshot(Group&, raft::Snapshot) override {}
  void OnCommitted(Group& g, std::vector<raft::Entry> entries) override {
    for (const raft::Entry& e : entries) {
      committed.push_back(Handed{e.index, g.storage->hard_state().commit});
    }
  }
  void OnReadStates(Group&, const std::vector<raft::ReadState>&) override {}
  void OnFatal(const Status& s) override { fatal = s; }

  std::vector<Handed> committed;
  Status fatal;
};

std::vector<raft::Index> Indexes(const std::vector<Recorder::Handed>& handed) {
  std::vector<raft::Index> out;
  for (const Recorder::Handed& h : handed) out.push_back(h.index);
  return out;
}

// One follower group (node 1 of 1, 2, 3) over real storage on a fault
// injection file system, driven by appends from leader 2 as the node would
// drive it, with the WAL's reports taken by hand.
class Follower {
 public:
  Follower() : cfg_(MakeConfig()), ctx_(cfg_) {
    REQUIRE(env_.CreateDir("/d").ok());
    REQUIRE(storage::NodeStorage::Open(&env_, "/d/node", {}, &storage_).ok());
    REQUIRE(loop_.Init().ok());
    ctx_.loop = &loop_;
    ctx_.storage = storage_.get();
    GroupOptions options;
    options.self = 1;
    std::unique_ptr<Group> g;
    REQUIRE(OpenGroup(kMainGroup, {1, 2, 3}, storage_->Group(kMainGroup), options, &g).ok());
    group_ = ctx_.groups.Add(std::move(g));
    pipeline_ = std::make_unique<ReadyPipeline>(&ctx_, &recorder_);
  }
  ~Follower() {
    env_.ReleaseSyncs();
    pipeline_->WaitForWrites();
  }

  // Leader 2's append of entries (prev, last] at term 1, with its commit.
  void Append(raft::Index prev, raft::Index last, raft::Index commit) {
    raft::Message m;
    m.type = raft::MessageType::kAppend;
    m.group = kMainGroup;
    m.from = 2;
    m.to = 1;
    m.term = 1;
    m.index = prev;
    m.log_term = prev == 0 ? 0 : 1;
    for (raft::Index i = prev + 1; i <= last; ++i) {
      raft::Entry e;
      e.index = i;
      e.term = 1;
      e.data = "entry " + std::to_string(i);
      m.entries.push_back(e);
    }
    m.commit = commit;
    group_->raft->Step(m);
    pipeline_->Process();
  }
  // What the loop runs when the WAL thread reports a write done (the loop
  // itself is not run here: what the WAL thread posts to it stays queued).
  void Finish() { pipeline_->Finish(); }

  storage::FaultInjectionEnv env_;
  Recorder recorder_;
  std::unique_ptr<ReadyPipeline> pipeline_;

 private:
  static NodeConfig MakeConfig() {
    NodeConfig cfg;
    cfg.id = 1;
    for (uint64_t n = 1; n <= 3; ++n) cfg.peers[n] = HostPort{"127.0.0.1", 9000 + int(n)};
    return cfg;
  }

  NodeConfig cfg_;
  NodeContext ctx_;
  net::EventLoop loop_;
  std::unique_ptr<storage::NodeStorage> storage_;
  Group* group_ = nullptr;
};

TEST_CASE("ready pipeline: committed entries wait for their own write, not for a commit index's",
          "[ready_pipeline]") {
  Follower f;
  // A new group's log holds its founders' three configuration entries,
  // committed: the first pass writes them and hands them over once durable.
  f.Append(0, 3, 3);
  f.pipeline_->WaitForWrites();
  REQUIRE(Indexes(f.recorder_.committed) == std::vector<raft::Index>{1, 2, 3});

  // Entries 4..6 arrive; their write is held inside its fdatasync.
  f.env_.HoldSyncs();
  f.Append(3, 6, 3);
  f.env_.WaitForHeldSyncs(1);
  // The leader says they are committed: a pass that only moves the commit
  // index. The entries are not durable here yet: nothing may be handed over.
  f.Append(6, 6, 6);
  CHECK(f.recorder_.committed.size() == 3);
  f.Finish();
  CHECK(f.recorder_.committed.size() == 3);

  // Once their write is durable they go, once each, in order.
  f.env_.ReleaseSyncs();
  f.pipeline_->WaitForWrites();
  f.Finish();
  CHECK(Indexes(f.recorder_.committed) == std::vector<raft::Index>{1, 2, 3, 4, 5, 6});

  // Entry 7 arrives and is written; then the commit index moves to it with
  // nothing in flight: entry 7 is handed over at once, before the write of
  // the new commit index is done (the storage still says 6).
  f.Append(6, 7, 6);
  f.pipeline_->WaitForWrites();
  REQUIRE(f.recorder_.committed.size() == 6);
  f.Append(7, 7, 7);
  REQUIRE(f.recorder_.committed.size() == 7);
  CHECK(f.recorder_.committed.back().index == 7);
  CHECK(f.recorder_.committed.back().durable_commit == 6);
  // And not again when that write is done.
  f.pipeline_->WaitForWrites();
  f.Finish();
  CHECK(Indexes(f.recorder_.committed) == std::vector<raft::Index>{1, 2, 3, 4, 5, 6, 7});
  CHECK(f.recorder_.fatal.ok());
}

}  // namespace
}  // namespace kv::node
