// A node run in-process over the fault-injecting Env: what it does when its
// storage fails, and what survives a crash of the machine it runs on.
#include "node/node.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <map>
#include <random>
#include <thread>
#include <vector>

#include "kvstore/async_client.h"
#include "kvstore/client.h"
#include "net/client_codec.h"
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
  int metrics_port() const { return cfg_.metrics_port; }

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

// GET http://127.0.0.1:port/path: the status code and the body ("" and 0
// when nothing answers).
std::pair<int, std::string> HttpGet(int port, const std::string& path) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  REQUIRE(fd >= 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  std::string reply;
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) {
    const std::string request = "GET " + path + " HTTP/1.0\r\nHost: localhost\r\n\r\n";
    REQUIRE(write(fd, request.data(), request.size()) == static_cast<ssize_t>(request.size()));
    char buf[4096];
    for (ssize_t n; (n = read(fd, buf, sizeof buf)) > 0;) reply.append(buf, static_cast<size_t>(n));
  }
  close(fd);
  const size_t body = reply.find("\r\n\r\n");
  if (reply.compare(0, 9, "HTTP/1.1 ") != 0 || body == std::string::npos) return {0, ""};
  return {std::stoi(reply.substr(9, 3)), reply.substr(body + 4)};
}

client::Options ClientOptions(const Cluster& nodes) {
  client::Options o;
  o.endpoints.clear();  // not the default local cluster's
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

TEST_CASE("node: a sharded data dir from before hash tags is refused, saying why") {
  storage::FaultInjectionEnv env;
  NodeConfig cfg;
  cfg.id = 1;
  cfg.peers[1] = HostPort{"127.0.0.1", 8080};
  cfg.shards = 16;
  cfg.replicas = 3;
  cfg.data_dir = "/d/node-1";
  REQUIRE(cfg.Finish().ok());
  std::unique_ptr<storage::WritableFile> f;
  REQUIRE(env.OpenWritable(cfg.data_dir + "/IDENTITY", &f).ok());
  REQUIRE(f->Append("node 1\ncluster default\nshards 16 replicas 3\n").ok());
  const Status s = ClaimDataDir(&env, cfg);
  CHECK(s.IsInvalidArgument());
  CHECK(s.message().find("by the part in braces") != std::string::npos);

  // A new one records the rule; an unsharded one needs none.
  cfg.data_dir = "/d/new";
  REQUIRE(ClaimDataDir(&env, cfg).ok());
  std::string identity;
  REQUIRE(storage::ReadFileToString(&env, "/d/new/IDENTITY", &identity).ok());
  CHECK(identity == "node 1\ncluster default\nshards 16 replicas 3\nkeys by hash tag\n");
  REQUIRE(ClaimDataDir(&env, cfg).ok());
}

TEST_CASE("node: a data dir tells the layout it was created with, for a start without --shards") {
  storage::FaultInjectionEnv env;
  uint32_t shards = 99, replicas = 99;
  bool found = true;
  REQUIRE(ReadDataDirLayout(&env, "/none", &shards, &replicas, &found).ok());
  CHECK_FALSE(found);
  CHECK(shards == 99);  // untouched: the caller's defaults stand

  NodeConfig cfg;
  cfg.id = 1;
  cfg.peers[1] = HostPort{"127.0.0.1", 8080};
  cfg.data_dir = "/d/unsharded";
  REQUIRE(cfg.Finish().ok());
  REQUIRE(ClaimDataDir(&env, cfg).ok());
  REQUIRE(ReadDataDirLayout(&env, cfg.data_dir, &shards, &replicas, &found).ok());
  CHECK(found);
  CHECK(shards == 0);  // made unsharded: stays so

  cfg.data_dir = "/d/sharded";
  cfg.shards = 8;
  cfg.replicas = 5;
  REQUIRE(ClaimDataDir(&env, cfg).ok());
  REQUIRE(ReadDataDirLayout(&env, cfg.data_dir, &shards, &replicas, &found).ok());
  CHECK(found);
  CHECK(shards == 8);
  CHECK(replicas == 5);
}

TEST_CASE("node: a failed WAL sync stops the node, which says why and acknowledges nothing") {
  storage::FaultInjectionEnv env;
  Cluster node = StartCluster({&env});
  client::Client c(ClientOptions(node));
  REQUIRE(c.Put("before", "1").ok());
  CHECK(HttpGet(node[0]->metrics_port(), "/healthz") == std::make_pair(200, std::string("ok\n")));
  env.FailNextSyncs(1000000);
  client::Result r = c.Put("after", "2");
  CHECK_FALSE(r.ok());
  Status s = node[0]->Stop();
  CHECK(s.IsIOError());
  // Until the process ends, the health check says why.
  const auto [code, body] = HttpGet(node[0]->metrics_port(), "/healthz");
  CHECK(code == 503);
  CHECK_THAT(body, Catch::Contains("storage failed"));
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

// Waits until every node's state machine holds `keys` keys (what its
// status reports: entries applied, not what reads hide); false at the deadline.
bool WaitForKeyCount(client::Client& c, const Cluster& nodes, uint64_t keys,
                     std::chrono::steady_clock::time_point deadline) {
  while (std::chrono::steady_clock::now() < deadline) {
    bool all = true;
    for (const auto& n : nodes) {
      const client::NodeReport r = c.Status(n->endpoint());
      all = all && r.reachable && r.status.keys == keys;
    }
    if (all) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return false;
}

TEST_CASE("node: expired keys vanish from reads at once and from every replica soon after") {
  storage::FaultInjectionEnv envs[3];
  Cluster nodes = StartCluster({&envs[0], &envs[1], &envs[2]});
  client::Client c(ClientOptions(nodes));
  REQUIRE(c.Put("permanent", "p").ok());
  constexpr int kKeys = 20;
  constexpr auto kTtl = std::chrono::milliseconds(2000);
  for (int i = 0; i < kKeys; ++i) REQUIRE(c.Put("ttl" + std::to_string(i), "v", kTtl).ok());
  const auto written = std::chrono::steady_clock::now();
  client::Result r = c.Get("ttl" + std::to_string(kKeys - 1));
  REQUIRE(r.ok());
  CHECK((r.ttl_ms >= 1 && r.ttl_ms <= 2000));
  CHECK(c.Get("permanent").ttl_ms == 0);
  // Linearizable reads on the leader say NOT_FOUND once the deadline passed.
  while (std::chrono::steady_clock::now() < written + kTtl + std::chrono::milliseconds(20)) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  CHECK(c.Get("ttl0").code == client::Code::kNotFound);
  CHECK(c.Touch("ttl1", std::chrono::seconds(10)).code == client::Code::kNotFound);
  // The leader's removal reaches every replica's state machine.
  CHECK(WaitForKeyCount(c, nodes, 1, std::chrono::steady_clock::now() + std::chrono::seconds(10)));
  CHECK(c.Get("permanent").ok());
}

TEST_CASE("node: deadlines survive a leader change and the new leader removes the keys") {
  storage::FaultInjectionEnv envs[3];
  NodeConfig cfg = FastTicks();
  cfg.election_ticks = 100;  // 1 to 2 s: the only leader change is the transfer
  Cluster nodes = StartCluster({&envs[0], &envs[1], &envs[2]}, cfg);
  client::Client c(ClientOptions(nodes));
  REQUIRE(c.Put("warm", "up").ok());
  constexpr auto kTtl = std::chrono::milliseconds(1500);
  for (int i = 0; i < 10; ++i) REQUIRE(c.Put("t" + std::to_string(i), "v", kTtl).ok());
  const auto acknowledged = std::chrono::steady_clock::now();
  const client::NodeReport before = c.Status(nodes[0]->endpoint());
  REQUIRE(before.reachable);
  const uint64_t old_leader = before.status.leader;
  const uint64_t target = old_leader % 3 + 1;
  REQUIRE(c.TransferLeader(target).ok());
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (c.Status(nodes[0]->endpoint()).status.leader != target &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  REQUIRE(c.Status(nodes[0]->endpoint()).status.leader == target);
  // The new leader keeps the deadline the old one stamped: what is left is
  // at most the TTL less the time since the writes were acknowledged.
  client::Result r = c.Get("t9");
  const auto since = std::chrono::duration_cast<std::chrono::milliseconds>(
      std::chrono::steady_clock::now() - acknowledged);
  if (since < kTtl - std::chrono::milliseconds(50)) {
    REQUIRE(r.ok());
    CHECK(r.ttl_ms <= static_cast<uint64_t>((kTtl - since).count()) + 2);
  }
  CHECK(WaitForKeyCount(c, nodes, 1, deadline));
  for (int i = 0; i < 10; ++i)
    CHECK(c.Get("t" + std::to_string(i)).code == client::Code::kNotFound);
}

TEST_CASE("node: a thousand expiring keys of the largest size reach every replica's removal") {
  // 1,000 keys of 4 KiB are 4 MiB of keys: more than one append may carry,
  // so the leader must remove them in several entries.
  storage::FaultInjectionEnv envs[3];
  Cluster nodes = StartCluster({&envs[0], &envs[1], &envs[2]});
  client::Client c(ClientOptions(nodes));
  REQUIRE(c.Put("permanent", "p").ok());
  client::Topology top;
  REQUIRE(client::Discover(ClientOptions(nodes), &top).ok());
  client::AsyncOptions ao;
  ao.endpoints = ClientOptions(nodes).endpoints;
  client::AsyncClient writer(ao, top);
  constexpr int kKeys = 1000;
  for (int i = 0; i < kKeys; ++i) {
    client::Request put;
    put.op = client::Op::kPut;
    put.key = std::to_string(i) + std::string(kDefaultMaxKeyBytes - 4, 'k');
    put.value = "v";
    put.ttl_ms = 1000;
    writer.Submit(i, std::move(put));
  }
  std::vector<client::Completion> done;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (done.size() < kKeys && std::chrono::steady_clock::now() < deadline) {
    writer.Poll(std::chrono::milliseconds(20), &done);
  }
  REQUIRE(done.size() == kKeys);
  for (const client::Completion& d : done) REQUIRE(d.code == client::Code::kOk);
  CHECK(WaitForKeyCount(c, nodes, 1, deadline));
}

TEST_CASE("node: an expired key does not come back after a restart") {
  storage::FaultInjectionEnv env;
  {
    Cluster node = StartCluster({&env});
    client::Client c(ClientOptions(node));
    REQUIRE(c.Put("short", "1", std::chrono::milliseconds(100)).ok());
    REQUIRE(c.Put("long", "2", std::chrono::hours(1)).ok());
    CHECK(WaitForKeyCount(c, node, 1, std::chrono::steady_clock::now() + std::chrono::seconds(10)));
  }
  Cluster node = StartCluster({&env});
  client::Client c(ClientOptions(node));
  CHECK(c.Get("short").code == client::Code::kNotFound);
  client::Result r = c.Get("long");
  REQUIRE(r.ok());
  CHECK((r.ttl_ms > 3500 * 1000 && r.ttl_ms <= 3600 * 1000));
  CHECK(WaitForKeyCount(c, node, 1, std::chrono::steady_clock::now() + std::chrono::seconds(10)));
}

TEST_CASE("node: a client that pipelines scans and reads no reply gets BUSY past its budget") {
  storage::FaultInjectionEnv env;
  NodeConfig cfg = FastTicks();
  cfg.max_connection_reply_bytes = 8 << 20;  // two full pages of 4 MiB
  Cluster node = StartCluster({&env}, cfg);
  client::Client c(ClientOptions(node));
  const std::string value(256 << 10, 'v');
  for (int i = 0; i < 16; ++i) REQUIRE(c.Put("big" + std::to_string(i), value).ok());

  // A raw connection whose own queue takes one message: what the node sends
  // beyond that waits in the node's queue (TCP pushes back).
  zmq::context_t zmq;
  zmq::socket_t s(zmq, zmq::socket_type::dealer);
  s.set(zmq::sockopt::rcvhwm, 1);
  s.set(zmq::sockopt::rcvbuf, 64 << 10);
  s.set(zmq::sockopt::linger, 0);
  s.connect("tcp://" + node[0]->endpoint());
  const auto scan = [&](uint64_t id) {
    net::ClientRequest req;
    req.id = id;
    req.op = net::ClientOp::kScan;
    req.scan.start = "big";
    REQUIRE(s.send(zmq::buffer(net::EncodeClientRequest(req)), zmq::send_flags::none));
  };
  const auto receive = [&]() {
    zmq::pollitem_t item{s.handle(), 0, ZMQ_POLLIN, 0};
    REQUIRE(zmq::poll(&item, 1, std::chrono::seconds(30)) == 1);
    zmq::message_t m;
    REQUIRE(s.recv(m, zmq::recv_flags::none));
    net::ClientReply reply;
    REQUIRE(net::DecodeClientReply(m.to_string_view(), &reply).ok());
    return reply;
  };
  constexpr int kScans = 64;  // 256 MiB of pages if the node built them all
  for (int i = 1; i <= kScans; ++i) scan(i);
  int ok = 0, busy = 0;
  for (int i = 0; i < kScans; ++i) {
    const net::ClientReply r = receive();
    if (r.status == net::ReplyStatus::kOk) {
      ++ok;
      CHECK(r.page.kvs.size() == 15);  // 4 MiB: all but one of the 256 KiB values
    } else {
      REQUIRE(r.status == net::ReplyStatus::kBusy);
      CHECK_THAT(r.error, Catch::Contains("unread"));
      ++busy;
    }
  }
  CHECK(ok >= 2);
  CHECK(busy > 0);
  // Read, the replies no longer count: the next scan is served.
  scan(kScans + 1);
  CHECK(receive().status == net::ReplyStatus::kOk);

  // Gets of large values, pipelined: each counts once its value is read.
  constexpr int kGets = 128;  // 32 MiB of values
  for (int i = 1; i <= kGets; ++i) {
    net::ClientRequest req;
    req.id = 1000 + i;
    req.op = net::ClientOp::kGet;
    req.key = "big" + std::to_string(i % 16);
    REQUIRE(s.send(zmq::buffer(net::EncodeClientRequest(req)), zmq::send_flags::none));
  }
  ok = busy = 0;
  for (int i = 0; i < kGets; ++i) {
    const net::ClientReply r = receive();
    if (r.status == net::ReplyStatus::kOk) {
      ++ok;
      CHECK(r.value == value);
    } else {
      REQUIRE(r.status == net::ReplyStatus::kBusy);
      ++busy;
    }
  }
  CHECK(ok >= 8 * 4 - 1);  // the budget's worth, at least (8 MiB of 256 KiB values)
  CHECK(busy > 0);
}

}  // namespace
}  // namespace kv::node
