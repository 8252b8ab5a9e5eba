// A node run in-process over the fault-injecting Env: what it does when its
// storage fails, and what survives a crash of the machine it runs on.
#include "node/node.h"

#include <catch2/catch.hpp>
#include <chrono>
#include <random>
#include <thread>

#include "kvstore/client.h"
#include "storage/fault_injection_env.h"

namespace kv::node {
namespace {

// A one-node cluster running Node::Run on a thread of its own.
class InProcessNode {
 public:
  explicit InProcessNode(storage::Env* env) : env_(env) {
    std::mt19937 rng(std::random_device{}());
    // The node refuses ports in use (InvalidArgument, nothing touched): try
    // other bases until one is free.
    for (int attempt = 0; attempt < 50 && !started_; ++attempt) {
      port_ = 20000 + static_cast<int>(rng() % 9000);
      cfg_.id = 1;
      cfg_.peers = {{1, HostPort{"127.0.0.1", port_}}};
      cfg_.data_dir = "/data/node-1";
      cfg_.tick_ms = 10;
      REQUIRE(cfg_.Finish().ok());
      node_ = std::make_unique<Node>(cfg_, env_);
      Status s = node_->Start();
      if (s.ok()) {
        started_ = true;
      } else {
        REQUIRE(s.IsInvalidArgument());  // a port in use
      }
    }
    REQUIRE(started_);
    thread_ = std::thread([this] { run_status_ = node_->Run(); });
  }
  ~InProcessNode() { Stop(); }

  // Stops the node and returns what Run returned.
  Status Stop() {
    if (thread_.joinable()) {
      node_->RequestStop();
      thread_.join();
    }
    return run_status_;
  }

  client::Client Client() {
    client::Options o;
    o.endpoints = {"127.0.0.1:" + std::to_string(port_)};
    o.timeout = std::chrono::milliseconds(3000);
    o.attempt_timeout = std::chrono::milliseconds(300);
    return client::Client(o);
  }

 private:
  storage::Env* env_;
  NodeConfig cfg_;
  int port_ = 0;
  bool started_ = false;
  std::unique_ptr<Node> node_;
  std::thread thread_;
  Status run_status_;
};

TEST_CASE("node: an acknowledged write survives a crash of the machine") {
  storage::FaultInjectionEnv env;
  {
    InProcessNode node(&env);
    client::Client c = node.Client();
    REQUIRE(c.Put("k", "v").ok());
    env.SimulateCrash(storage::FaultInjectionEnv::CrashMode::kDropUnsynced, 1);
  }
  env.Restart();
  InProcessNode node(&env);
  client::Client c = node.Client();
  client::Result r = c.Get("k");
  REQUIRE(r.ok());
  CHECK(r.value == "v");
}

TEST_CASE("node: the data dir's IDENTITY is synced before the node serves") {
  storage::FaultInjectionEnv env;
  {
    InProcessNode node(&env);
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
  InProcessNode node(&env);
  client::Client c = node.Client();
  REQUIRE(c.Put("before", "1").ok());
  env.FailNextSyncs(1000000);
  client::Result r = c.Put("after", "2");
  CHECK_FALSE(r.ok());
  Status s = node.Stop();
  CHECK(s.IsIOError());
}

}  // namespace
}  // namespace kv::node
