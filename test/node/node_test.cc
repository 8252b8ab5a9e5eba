// A node run in-process over the fault-injecting Env: what it does when its
// storage fails, and what survives a crash of the machine it runs on.
#include "node/node.h"

#include <catch2/catch.hpp>
#include <chrono>
#include <map>
#include <random>
#include <thread>
#include <vector>

#include "kvstore/async_client.h"
#include "kvstore/client.h"
#include "storage/fault_injection_env.h"

namespace kv::node {
namespace {

using Peers = std::map<raft::NodeId, HostPort>;

// A node running Node::Run on a thread of its own.
class InProcessNode {
 public:
  // Node `id` of `peers`, its data in env; started() is false (and nothing
  // touched) when one of its ports is taken.
  InProcessNode(storage::Env* env, raft::NodeId id, const Peers& peers, const NodeConfig& base) {
    cfg_ = base;
    cfg_.id = id;
    cfg_.peers = peers;
    cfg_.data_dir = "/data/node-" + std::to_string(id);
    REQUIRE(cfg_.Finish().ok());
    node_ = std::make_unique<Node>(cfg_, env);
    Status s = node_->Start();
    if (!s.ok()) {
      REQUIRE(s.IsInvalidArgument());  // a port in use
      return;
    }
    thread_ = std::thread([this] { run_status_ = node_->Run(); });
  }
  ~InProcessNode() { Stop(); }

  bool started() const { return thread_.joinable(); }
  std::string endpoint() const { return cfg_.self().ToString(); }

  // Stops the node and returns what Run returned.
  Status Stop() {
    if (thread_.joinable()) {
      node_->RequestStop();
      thread_.join();
    }
    return run_status_;
  }

 private:
  NodeConfig cfg_;
  std::unique_ptr<Node> node_;
  std::thread thread_;
  Status run_status_;
};

using Cluster = std::vector<std::unique_ptr<InProcessNode>>;

NodeConfig FastTicks() {
  NodeConfig cfg;
  cfg.tick_ms = 10;
  return cfg;
}

// A cluster of one node per env, on free ports: a node refuses ports in use
// (InvalidArgument, nothing touched), so other bases are tried until every
// node starts.
Cluster StartCluster(const std::vector<storage::Env*>& envs, const NodeConfig& cfg = FastTicks()) {
  std::mt19937 rng(std::random_device{}());
  for (int attempt = 0; attempt < 50; ++attempt) {
    const int base = 20000 + static_cast<int>(rng() % 9000);
    Peers peers;
    for (size_t i = 0; i < envs.size(); ++i) {
      peers[i + 1] = HostPort{"127.0.0.1", base + static_cast<int>(i)};
    }
    Cluster nodes;
    for (size_t i = 0; i < envs.size(); ++i) {
      nodes.push_back(std::make_unique<InProcessNode>(envs[i], i + 1, peers, cfg));
      if (!nodes.back()->started()) break;
    }
    if (nodes.size() == envs.size() && nodes.back()->started()) return nodes;
  }
  FAIL("no free ports for the cluster");
  return {};
}

client::Options ClientOptions(const Cluster& nodes) {
  client::Options o;
  for (const auto& n : nodes) o.endpoints.push_back(n->endpoint());
  o.timeout = std::chrono::milliseconds(3000);
  o.attempt_timeout = std::chrono::milliseconds(300);
  return o;
}

TEST_CASE("node: an acknowledged write survives a crash of the machine") {
  storage::FaultInjectionEnv env;
  {
    Cluster node = StartCluster({&env});
    client::Client c(ClientOptions(node));
    REQUIRE(c.Put("k", "v").ok());
    env.SimulateCrash(storage::FaultInjectionEnv::CrashMode::kDropUnsynced, 1);
  }
  env.Restart();
  Cluster node = StartCluster({&env});
  client::Client c(ClientOptions(node));
  client::Result r = c.Get("k");
  REQUIRE(r.ok());
  CHECK(r.value == "v");
}

TEST_CASE("node: the data dir's IDENTITY is synced before the node serves") {
  storage::FaultInjectionEnv env;
  {
    Cluster node = StartCluster({&env});
    CHECK(env.DirSyncCount("/data/node-1") >= 1);
  }
  env.SimulateCrash(storage::FaultInjectionEnv::CrashMode::kDropUnsynced, 2);
  env.Restart();
  std::string identity;
  REQUIRE(storage::ReadFileToString(&env, "/data/node-1/IDENTITY", &identity).ok());
  CHECK(identity == "node 1\ncluster default\n");
}

TEST_CASE("node: a failed WAL sync stops the node, which says why and acknowledges nothing") {
  storage::FaultInjectionEnv env;
  Cluster node = StartCluster({&env});
  client::Client c(ClientOptions(node));
  REQUIRE(c.Put("before", "1").ok());
  env.FailNextSyncs(1000000);
  client::Result r = c.Put("after", "2");
  CHECK_FALSE(r.ok());
  Status s = node[0]->Stop();
  CHECK(s.IsIOError());
}

TEST_CASE("node: a leader whose own WAL falls behind its followers sheds writes with BUSY") {
  storage::FaultInjectionEnv envs[3];
  NodeConfig cfg = FastTicks();
  cfg.election_ticks = 100;  // 1 to 2 s: no election while a sanitized build copies
  cfg.max_unwritten_bytes = 2 << 20;
  Cluster nodes = StartCluster({&envs[0], &envs[1], &envs[2]}, cfg);
  client::Client c(ClientOptions(nodes));
  REQUIRE(c.Put("warm", "up").ok());
  const std::string leader_address = c.Status(nodes[0]->endpoint()).status.leader_address;
  size_t leader = 0;
  while (leader < nodes.size() && nodes[leader]->endpoint() != leader_address) ++leader;
  REQUIRE(leader < nodes.size());

  // The leader's disk stops (every sync blocks) while its followers go on
  // committing: what it has not written piles up, past the bound.
  storage::FaultInjectionEnv& disk = envs[leader];
  disk.HoldSyncs();
  struct Release {
    storage::FaultInjectionEnv& disk;
    ~Release() { disk.ReleaseSyncs(); }
  } release{disk};
  client::Topology top;
  top.leader = leader_address;
  client::AsyncOptions ao;
  ao.endpoints = ClientOptions(nodes).endpoints;
  client::AsyncClient writer(ao, top);
  constexpr int kWrites = 64;  // of 64 KiB: twice the bound
  for (int i = 0; i < kWrites; ++i) {
    client::Request put;
    put.op = client::Op::kPut;
    put.key = "big" + std::to_string(i);
    put.value = std::string(64 << 10, static_cast<char>('a' + i % 26));
    writer.Submit(i, std::move(put));
  }
  std::vector<client::Completion> done;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (writer.busy() == 0 && std::chrono::steady_clock::now() < deadline) {
    writer.Poll(std::chrono::milliseconds(20), &done);
  }
  REQUIRE(writer.busy() > 0);
  client::Result shed = c.Put("one-more", "x");
  CHECK(shed.code == client::Code::kUnavailable);
  CHECK_THAT(shed.error, Catch::Contains("WAL is"));

  // Once the disk comes back, every write the leader took is written and
  // answered, and the shed ones go through on their retries.
  disk.ReleaseSyncs();  // (again at the end of the scope: harmless)
  while (done.size() < kWrites && std::chrono::steady_clock::now() < deadline) {
    writer.Poll(std::chrono::milliseconds(20), &done);
  }
  REQUIRE(done.size() == kWrites);
  for (const client::Completion& d : done) CHECK(d.code == client::Code::kOk);
  client::Result last = c.Get("big" + std::to_string(kWrites - 1));
  REQUIRE(last.ok());
  CHECK(last.value.size() == size_t{64} << 10);
}

}  // namespace
}  // namespace kv::node
