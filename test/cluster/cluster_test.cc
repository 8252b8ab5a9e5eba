// Cluster tests: three real kvstore processes on loopback, driven through the
// client library and raw DEALER sockets, killed, paused and restarted.
// Every wait is on a condition with a deadline; the deadlines are generous
// because the suite runs in an ASAN Debug build on shared cores.
#include "test/cluster/cluster.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <cctype>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <set>
#include <sstream>
#include <thread>

#include "kv/layout.h"
#include "kvstore/watch.h"
#include "net/peer_codec.h"

namespace kv::test {
namespace {

using namespace std::chrono_literals;
using client::Code;
using net::ReplyStatus;

// Timing for tests that assert the leader never changes, or that send bulky
// frames on a raw connection (no retries): elections only after 1..2 s, so
// that a loaded machine (ASAN, two cores, tests beside them) does not cause
// one.
ClusterOptions SteadyLeader() {
  ClusterOptions o;
  o.election_ticks = 50;
  return o;
}

// Deadlines. Generous: three ASAN nodes and the test share two cores.
constexpr auto kLeaderTimeout = 30s;
constexpr auto kCatchUpTimeout = 60s;
constexpr auto kReplyTimeout = 10000ms;

// Hand-made msgpack values, so that tests can send what no encoder would:
// wrong types, missing fields, unknown ops. Each returns encoded bytes;
// Map and Array take encoded values.
namespace mp {

std::string BigEndian(uint8_t tag, uint64_t v, int bytes) {
  std::string out(1, static_cast<char>(tag));
  for (int i = bytes - 1; i >= 0; --i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
  return out;
}

std::string Uint(uint64_t v) { return BigEndian(0xcf, v, 8); }
std::string Int(int64_t v) { return BigEndian(0xd3, static_cast<uint64_t>(v), 8); }
std::string Str(std::string_view s) { return BigEndian(0xdb, s.size(), 4) + std::string(s); }
std::string Bin(std::string_view s) { return BigEndian(0xc6, s.size(), 4) + std::string(s); }
std::string Nil() { return std::string(1, static_cast<char>(0xc0)); }

// Keys are given as encoded values too, so that a test can use a non-string.
std::string MapOf(const std::vector<std::pair<std::string, std::string>>& entries) {
  std::string out = BigEndian(0xdf, entries.size(), 4);
  for (const auto& [k, v] : entries) out += k + v;
  return out;
}

// A map with string keys.
std::string Map(const std::vector<std::pair<std::string, std::string>>& fields) {
  std::vector<std::pair<std::string, std::string>> entries;
  for (const auto& [name, v] : fields) entries.emplace_back(Str(name), v);
  return MapOf(entries);
}

std::string Array(const std::vector<std::string>& items) {
  std::string out = BigEndian(0xdd, items.size(), 4);
  for (const std::string& i : items) out += i;
  return out;
}

}  // namespace mp

net::ClientRequest Request(uint64_t id, net::ClientOp op, std::string key = "",
                           std::string value = "") {
  net::ClientRequest r;
  r.id = id;
  r.op = op;
  r.key = std::move(key);
  r.value = std::move(value);
  return r;
}

std::string StatusName(const std::optional<net::ClientReply>& r) {
  return r ? std::string(net::ReplyStatusName(r->status)) +
                 (r->error.empty() ? "" : ": " + r->error)
           : "no reply";
}

// Starts a cluster and waits for its first leader; REQUIREs both.
uint64_t StartAndElect(Cluster& cluster) {
  REQUIRE(cluster.Start());
  const uint64_t leader = cluster.WaitForLeader(kLeaderTimeout);
  REQUIRE(leader != 0);
  return leader;
}

uint64_t SomeFollower(const Cluster& cluster, uint64_t leader) {
  for (uint64_t id : cluster.ids()) {
    if (id != leader) return id;
  }
  return 0;
}

// Waits until every live node has applied the same index with the same
// digest (writes must have stopped). Returns that status of `reference`.
bool WaitForConvergence(Cluster& cluster, std::map<uint64_t, NodeStatus>* out) {
  return cluster.WaitUntil(
      [&] {
        std::map<uint64_t, NodeStatus> all = cluster.StatusOfLiveNodes();
        size_t live = 0;
        for (uint64_t id : cluster.ids()) live += cluster.alive(id) && !cluster.paused(id);
        if (all.size() != live || all.empty()) return false;
        const NodeStatus& first = all.begin()->second;
        for (const auto& [id, st] : all) {
          if (st.applied != first.applied || st.digest != first.digest || st.applied < st.commit ||
              st.leader == 0) {
            return false;
          }
        }
        *out = std::move(all);
        return true;
      },
      kCatchUpTimeout);
}

std::string Describe(const std::map<uint64_t, NodeStatus>& all) {
  std::ostringstream os;
  for (const auto& [id, st] : all) {
    os << "node " << id << ": " << st.role << " term " << st.term << " leader " << st.leader
       << " commit " << st.commit << " applied " << st.applied << " last " << st.last_index
       << " snapshot " << st.snapshot_index << " digest " << st.digest << " keys " << st.keys
       << "\n";
  }
  return os.str();
}

// One write of a load and what the cluster answered.
struct Write {
  std::string key;
  std::string value;
  Code code;
};

// Client threads writing distinct keys until stopped, each recording every
// answer. Keys never repeat, so an acknowledged key must hold exactly its
// value, and an unacknowledged one its value or nothing.
class WriteLoad {
 public:
  WriteLoad(client::Options options, int threads, const std::string& prefix) {
    for (int t = 0; t < threads; ++t) {
      threads_.emplace_back([this, options, t, prefix] { Run(options, t, prefix); });
    }
  }
  ~WriteLoad() { Stop(); }

  void Stop() {
    stop_ = true;
    for (std::thread& t : threads_) {
      if (t.joinable()) t.join();
    }
  }
  uint64_t acked() const { return acked_; }
  // After Stop.
  const std::vector<Write>& writes() const { return writes_; }

 private:
  void Run(client::Options options, int t, const std::string& prefix) {
    client::Client c(options);
    for (uint64_t n = 0; !stop_; ++n) {
      const std::string key = prefix + "/" + std::to_string(t) + "/" + std::to_string(n);
      const std::string value = "value of " + key + " from client " + std::to_string(c.client_id());
      const client::Result r = c.Put(key, value);
      std::lock_guard<std::mutex> lock(mu_);
      writes_.push_back({key, value, r.code});
      if (r.ok()) acked_++;
    }
  }

  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> acked_{0};
  std::mutex mu_;
  std::vector<Write> writes_;  // guarded by mu_
  std::vector<std::thread> threads_;
};

// Reads back every write of a load: acknowledged ones must hold their value;
// the others their value or nothing. Returns the number acknowledged.
size_t VerifyWrites(Cluster& cluster, const std::vector<Write>& writes) {
  client::Client c(cluster.ClientOptions(20000ms));
  size_t acked = 0, lost = 0, wrong = 0, unreadable = 0;
  for (const Write& w : writes) {
    // A cluster that cannot serve reads would make this loop take hours.
    if (unreadable >= 5) break;
    const client::Result r = c.Get(w.key);
    if (w.code == Code::kOk) acked++;
    if (r.code != Code::kOk && r.code != Code::kNotFound) {
      if (++unreadable <= 5) {
        UNSCOPED_INFO("get " << w.key << ": " << client::CodeName(r.code) << " " << r.error);
      }
    } else if (r.ok() && r.value != w.value) {
      if (++wrong <= 5) UNSCOPED_INFO(w.key << " holds \"" << r.value << "\"");
    } else if (!r.ok() && w.code == Code::kOk) {
      if (++lost <= 5) UNSCOPED_INFO("acknowledged write of " << w.key << " lost");
    }
  }
  INFO(writes.size() << " writes, " << acked << " acknowledged");
  CHECK(lost == 0);
  CHECK(wrong == 0);
  CHECK(unreadable == 0);
  return acked;
}

// Writes key/value pairs pipelined on one raw DEALER connection to the
// leader, `window` requests in flight; whatever is not answered OK (a
// leader change) is written again through the client library. REQUIREs
// every pair to be written.
void PipelinedPuts(Cluster& cluster, const std::vector<std::pair<std::string, std::string>>& kvs,
                   size_t window) {
  std::vector<size_t> retry;
  uint64_t leader = cluster.WaitForLeader(kLeaderTimeout);
  REQUIRE(leader != 0);
  RawConnection conn(cluster.address(leader));
  uint64_t next_id = 1;
  for (size_t start = 0; start < kvs.size(); start += window) {
    const size_t end = std::min(kvs.size(), start + window);
    std::map<uint64_t, size_t> waiting;
    for (size_t i = start; i < end; ++i) {
      const uint64_t id = next_id++;
      conn.Send(
          net::EncodeClientRequest(Request(id, net::ClientOp::kPut, kvs[i].first, kvs[i].second)));
      waiting[id] = i;
    }
    const Clock::time_point deadline = Clock::now() + 30s;
    while (!waiting.empty() && Clock::now() < deadline) {
      std::optional<std::string> bytes = conn.Receive(1000ms);
      net::ClientReply reply;
      if (!bytes || !net::DecodeClientReply(*bytes, &reply).ok()) continue;
      auto it = waiting.find(reply.id);
      if (it == waiting.end()) continue;
      if (reply.status != ReplyStatus::kOk) retry.push_back(it->second);
      waiting.erase(it);
    }
    for (const auto& entry : waiting) retry.push_back(entry.second);
  }
  client::Client c(cluster.ClientOptions(20000ms));
  for (size_t i : retry) {
    INFO("retrying " << kvs[i].first);
    REQUIRE(c.Put(kvs[i].first, kvs[i].second).ok());
  }
}

// Polls every node's status on its own thread and records which nodes
// claimed leadership in which term, and whether any node's term went back.
class LeaderObserver {
 public:
  explicit LeaderObserver(std::vector<std::string> addresses)
      : thread_([this, addresses] { Run(addresses); }) {}
  ~LeaderObserver() { Stop(); }
  void Stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }
  // After Stop.
  const std::map<uint64_t, std::set<uint64_t>>& leaders_by_term() const { return leaders_; }
  uint64_t samples() const { return samples_; }
  std::vector<std::string> term_regressions() const { return regressions_; }

 private:
  void Run(const std::vector<std::string>& addresses) {
    client::Options o;
    o.endpoints = addresses;
    o.attempt_timeout = 300ms;
    client::Client c(o);
    std::map<uint64_t, uint64_t> last_term;
    while (!stop_) {
      for (const std::string& a : addresses) {
        const client::NodeReport r = c.Status(a);
        if (!r.reachable) continue;
        samples_++;
        if (r.status.role == "leader") leaders_[r.status.term].insert(r.status.node);
        uint64_t& last = last_term[r.status.node];
        if (r.status.term < last) {
          regressions_.push_back("node " + std::to_string(r.status.node) + " term " +
                                 std::to_string(last) + " -> " + std::to_string(r.status.term));
        }
        last = std::max(last, r.status.term);
      }
      std::this_thread::sleep_for(5ms);
    }
  }

  std::atomic<bool> stop_{false};
  std::map<uint64_t, std::set<uint64_t>> leaders_;
  std::vector<std::string> regressions_;
  uint64_t samples_ = 0;
  std::thread thread_;
};

void CheckOneLeaderPerTerm(const LeaderObserver& observer) {
  CHECK(observer.samples() > 0);
  for (const auto& [term, leaders] : observer.leaders_by_term()) {
    INFO("term " << term << " had " << leaders.size() << " leaders");
    CHECK(leaders.size() == 1);
  }
  for (const std::string& r : observer.term_regressions()) FAIL_CHECK("term went back: " << r);
}

// The files under `dir` with their contents, to show that nothing changed.
std::map<std::string, std::string> Fingerprint(const std::string& dir) {
  std::map<std::string, std::string> out;
  std::error_code ec;
  if (!std::filesystem::exists(dir, ec)) return out;
  for (const auto& entry : std::filesystem::recursive_directory_iterator(dir, ec)) {
    const std::string rel = std::filesystem::relative(entry.path(), dir).string();
    if (entry.is_directory()) {
      out[rel + "/"] = "";
      continue;
    }
    std::ifstream in(entry.path(), std::ios::binary);
    std::ostringstream content;
    content << in.rdbuf();
    out[rel] = content.str();
  }
  return out;
}

// The lines of a node's output that are not its log lines ("I 08:50:52.265
// node 1 ...]"), i.e. what it says on stderr besides logging.
std::vector<std::string> NonLogLines(const std::string& s) {
  std::vector<std::string> out;
  std::istringstream in(s);
  std::string line;
  while (std::getline(in, line)) {
    const bool log_line = line.size() > 2 &&
                          std::string("DIWE").find(line[0]) != std::string::npos &&
                          line[1] == ' ' && std::isdigit(static_cast<unsigned char>(line[2]));
    if (!line.empty() && !log_line) out.push_back(line);
  }
  return out;
}

// A listening socket that holds a port for as long as it lives.
class PortHolder {
 public:
  explicit PortHolder(int port) {
    fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    // As ZeroMQ does: connections of an earlier owner in TIME_WAIT are fine.
    // SO_REUSEPORT too, as a listener that would share the port with
    // another of the same user's would set it: the node must refuse still.
    const int one = 1;
    if (fd_ >= 0) setsockopt(fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (fd_ >= 0) setsockopt(fd_, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ok_ = fd_ >= 0 && bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 &&
          listen(fd_, 1) == 0;
  }
  ~PortHolder() {
    if (fd_ >= 0) close(fd_);
  }
  bool ok() const { return ok_; }

 private:
  int fd_ = -1;
  bool ok_ = false;
};

std::string PeersOn(const std::vector<int>& ports) {
  std::string out;
  for (size_t i = 0; i < ports.size(); ++i) {
    if (!out.empty()) out += ",";
    out += std::to_string(i + 1) + "=127.0.0.1:" + std::to_string(ports[i]);
  }
  return out;
}

// Asserts a config-error run: exit code 2 and one clear error line, which
// names what is wrong.
void CheckConfigError(const RunResult& r, const std::vector<std::string>& mentions) {
  INFO("output: " << r.output);
  CHECK(r.exit_code == 2);
  const std::vector<std::string> lines = NonLogLines(r.output);
  CHECK(lines.size() == 1);
  if (!lines.empty()) {
    CHECK(lines[0].rfind("kvstore: ", 0) == 0);
    bool named = false;
    for (const std::string& m : mentions) named = named || lines[0].find(m) != std::string::npos;
    CHECK(named);
  }
}

// ---------------------------------------------------------------------------
// Client protocol

TEST_CASE("put get del and cas round trip through the client library", "[cluster]") {
  Cluster cluster;
  StartAndElect(cluster);
  client::Client c(cluster.ClientOptions(kReplyTimeout));

  const std::string binary("bin\0ary\xff", 8);
  REQUIRE(c.Put("k", "v1").code == Code::kOk);
  CHECK(c.Get("k").value == "v1");
  REQUIRE(c.Put("k", "v2").ok());
  CHECK(c.Get("k").value == "v2");
  REQUIRE(c.Put(binary, binary).ok());
  CHECK(c.Get(binary).value == binary);

  // cas: only on the expected value; nullopt means "only if absent".
  CHECK(c.Cas("k", std::string("v1"), "v3").code == Code::kCasFailed);
  CHECK(c.Get("k").value == "v2");
  CHECK(c.Cas("k", std::nullopt, "v3").code == Code::kCasFailed);
  CHECK(c.Cas("k", std::string("v2"), "v3").code == Code::kOk);
  CHECK(c.Get("k").value == "v3");
  CHECK(c.Cas("new", std::nullopt, "n1").code == Code::kOk);
  CHECK(c.Get("new").value == "n1");
  CHECK(c.Cas("absent", std::string("x"), "y").code == Code::kCasFailed);
  CHECK(c.Get("absent").code == Code::kNotFound);

  REQUIRE(c.Delete("k").code == Code::kOk);
  CHECK(c.Get("k").code == Code::kNotFound);
  CHECK(c.Delete("k").code == Code::kNotFound);
  CHECK(c.Get("never written").code == Code::kNotFound);

  // Stale reads from every node see the value once it is applied there.
  for (const std::string& address : cluster.addresses()) {
    client::Options o = cluster.ClientOptions(kReplyTimeout);
    o.endpoints = {address};
    client::Client local(o);
    INFO("stale read from " << address);
    CHECK(cluster.WaitUntil([&] { return local.Get("new", /*stale=*/true).value == "n1"; },
                            kCatchUpTimeout));
  }
}

TEST_CASE("transactions through the client library: a lock and a transfer and every op kind",
          "[cluster]") {
  Cluster cluster;
  StartAndElect(cluster);
  client::Client c(cluster.ClientOptions(kReplyTimeout));
  using client::Compare;
  using client::Transaction;
  using client::TxnOp;

  // A lock taken only if nobody holds it; else the failure branch says who does.
  const auto lock = [&](const std::string& who) {
    return c.Txn(Transaction{
        {Compare::Absent("lock")}, {TxnOp::Put("lock", who, 60s)}, {TxnOp::Get("lock")}});
  };
  const client::TxnResult alice = lock("alice");
  INFO(alice.error);
  REQUIRE(alice.ok());
  CHECK(alice.succeeded);
  REQUIRE(alice.results.size() == 1);
  CHECK(alice.results[0].code == Code::kOk);
  const client::TxnResult bob = lock("bob");
  REQUIRE(bob.ok());
  CHECK_FALSE(bob.succeeded);
  CHECK(bob.index > alice.index);
  REQUIRE(bob.results.size() == 1);
  CHECK(bob.results[0].value == "alice");
  CHECK(bob.results[0].mod_index == alice.index);
  CHECK(bob.results[0].ttl_ms > 0);

  // A transfer between two accounts, only if neither changed since read.
  REQUIRE(c.Put("{acct}:a", "50").ok());
  REQUIRE(c.Put("{acct}:b", "50").ok());
  const client::Result a = c.Get("{acct}:a"), b = c.Get("{acct}:b");
  const Transaction transfer{{Compare::ModIndex("{acct}:a", Compare::kEqual, a.mod_index),
                              Compare::ModIndex("{acct}:b", Compare::kEqual, b.mod_index)},
                             {TxnOp::Put("{acct}:a", "70"), TxnOp::Put("{acct}:b", "30")},
                             {TxnOp::Get("{acct}:a"), TxnOp::Get("{acct}:b")}};
  const client::TxnResult moved = c.Txn(transfer);
  REQUIRE(moved.ok());
  CHECK(moved.succeeded);
  CHECK(c.Get("{acct}:a").mod_index == moved.index);
  CHECK(c.Get("{acct}:b").value == "30");
  const client::TxnResult stale = c.Txn(transfer);  // the versions it read are gone
  REQUIRE(stale.ok());
  CHECK_FALSE(stale.succeeded);
  REQUIRE(stale.results.size() == 2);
  CHECK(stale.results[0].value == "70");
  CHECK(stale.results[1].mod_index == moved.index);

  // Every compare and op kind; each op sees the ones before it.
  const client::TxnResult all = c.Txn(Transaction{
      {Compare::Value("{acct}:a", "70"), Compare::Present("{acct}:b"), Compare::Absent("none"),
       Compare::ModIndex("{acct}:a", Compare::kLess, moved.index + 1),
       Compare::ModIndex("{acct}:a", Compare::kGreater, moved.index - 1)},
      {TxnOp::Put("new", "n", 60s), TxnOp::Get("new"), TxnOp::Delete("{acct}:b"),
       TxnOp::Delete("{acct}:b"), TxnOp::Get("{acct}:b")},
      {}});
  REQUIRE(all.ok());
  CHECK(all.succeeded);
  REQUIRE(all.results.size() == 5);
  CHECK(all.results[0].code == Code::kOk);
  CHECK(all.results[1].value == "n");
  CHECK(all.results[1].create_index == all.index);
  CHECK(all.results[1].ttl_ms > 0);
  CHECK(all.results[2].code == Code::kOk);
  CHECK(all.results[3].code == Code::kNotFound);
  CHECK(all.results[4].code == Code::kNotFound);
  CHECK(c.Get("{acct}:b").code == Code::kNotFound);

  // A resend (the same session and seq, as after a lost answer) is answered
  // with the first run's index and branch, and not applied again: here it
  // would fail its compare.
  client::Options o = cluster.ClientOptions(kReplyTimeout);
  o.client_id = 4242;  // one session for both
  client::Client first(o), again(o);
  const auto bump = [](client::Client& cl, uint64_t mod_index) {
    return cl.Txn(Transaction{
        {Compare::ModIndex("new", Compare::kEqual, mod_index)}, {TxnOp::Put("new", "bumped")}, {}});
  };
  const client::TxnResult once = bump(first, all.index);
  REQUIRE(once.ok());
  CHECK(once.succeeded);
  CHECK_FALSE(once.resent);
  const client::TxnResult resent = bump(again, all.index);
  REQUIRE(resent.ok());
  CHECK(resent.resent);
  CHECK(resent.succeeded);
  CHECK(resent.index == once.index);
  CHECK(resent.results.empty());
  CHECK(c.Get("new").mod_index == once.index);
}

// A watch's events as "put KEY=VALUE@INDEX", "del KEY@INDEX".
std::string Describe(const client::WatchEvent& e) {
  static const char* kNames[] = {"put", "del", "expire"};
  std::string out = std::string(kNames[e.type]) + " " + e.key;
  if (e.type == client::WatchEvent::kPut) out += "=" + e.value;
  return out + "@" + std::to_string(e.index);
}

// The next `n` events of `w`, or fewer if they do not all come within the
// catch-up timeout.
std::vector<client::WatchEvent> NextEvents(client::Watcher& w, size_t n) {
  std::vector<client::WatchEvent> out;
  const Clock::time_point deadline = Clock::now() + kCatchUpTimeout;
  while (out.size() < n && Clock::now() < deadline) {
    if (auto e = w.Next(100ms)) out.push_back(std::move(*e));
  }
  return out;
}

std::vector<std::string> Described(const std::vector<client::WatchEvent>& events) {
  std::vector<std::string> out;
  for (const client::WatchEvent& e : events) out.push_back(Describe(e));
  return out;
}

TEST_CASE("a watch sees puts and dels in order, reads the history, and leaves values out",
          "[cluster][watch]") {
  Cluster cluster;
  StartAndElect(cluster);
  client::Client c(cluster.ClientOptions(kReplyTimeout));
  const client::Result a = c.Put("w/a", "1");
  REQUIRE(a.ok());
  std::map<uint64_t, NodeStatus> converged;  // so that whichever node serves has applied it
  REQUIRE(WaitForConvergence(cluster, &converged));

  // From now: what is written after the start, in the range only.
  client::Watcher live(c, client::PrefixWatch("w/"));
  REQUIRE(live.status().ok());
  CHECK(!live.sharded());
  CHECK(live.Position().at(0) >= a.index);
  const client::Result b = c.Put("w/b", "2");
  REQUIRE(c.Put("x", "not watched").ok());
  const client::Result d = c.Delete("w/a");
  REQUIRE((b.ok() && d.ok()));
  std::vector<client::WatchEvent> seen = NextEvents(live, 2);
  CHECK(Described(seen) == std::vector<std::string>{"put w/b=2@" + std::to_string(b.index),
                                                    "del w/a@" + std::to_string(d.index)});
  REQUIRE(seen.size() == 2);
  CHECK(seen[0].create_index == b.index);
  CHECK(live.Position().at(0) >= d.index);

  // From an older index: the history first, then on; keys only.
  client::WatchOptions o = client::PrefixWatch("w/");
  o.from_index[0] = a.index;
  o.keys_only = true;
  client::Watcher old(c, o);
  REQUIRE(old.status().ok());
  const client::Result e = c.Put("w/c", "3");
  REQUIRE(e.ok());
  CHECK(Described(NextEvents(old, 4)) ==
        std::vector<std::string>{
            "put w/a=@" + std::to_string(a.index), "put w/b=@" + std::to_string(b.index),
            "del w/a@" + std::to_string(d.index), "put w/c=@" + std::to_string(e.index)});
  CHECK(old.Position().at(0) >= e.index);
  CHECK(Described(NextEvents(live, 1)) ==
        std::vector<std::string>{"put w/c=3@" + std::to_string(e.index)});
}

TEST_CASE("a watch moves off a node killed with -9 and misses no acknowledged write",
          "[cluster][watch]") {
  Cluster cluster;
  StartAndElect(cluster);
  client::Client c(cluster.ClientOptions(kReplyTimeout));
  std::vector<client::WatchMove> moves;
  client::WatchOptions o = client::PrefixWatch("k/");
  o.on_move = [&](const client::WatchMove& m) { moves.push_back(m); };
  client::Watcher w(c, o);
  REQUIRE(w.status().ok());
  REQUIRE(moves.size() == 1);
  uint64_t victim = 0;
  for (uint64_t id : cluster.ids()) {
    if (cluster.address(id) == moves[0].endpoint) victim = id;
  }
  REQUIRE(victim != 0);

  // Writes go on all along, from a client of their own.
  std::atomic<bool> stop{false};
  std::mutex mu;
  std::map<uint64_t, std::string> acknowledged;  // index -> key
  const client::Options writer_options = cluster.ClientOptions(kReplyTimeout);
  std::thread writer([&] {
    client::Client wc(writer_options);
    for (int i = 0; !stop; ++i) {
      const std::string key = "k/" + std::to_string(i);
      const client::Result r = wc.Put(key, std::to_string(i));
      std::lock_guard<std::mutex> lock(mu);
      if (r.ok()) acknowledged[r.index] = key;
    }
  });
  std::vector<client::WatchEvent> seen = NextEvents(w, 20);
  const size_t before_kill = seen.size();
  REQUIRE(before_kill == 20);
  REQUIRE(cluster.Kill(victim, SIGKILL) != -1);
  // The stream moves within kSilence; then changes flow again.
  const Clock::time_point deadline = Clock::now() + kCatchUpTimeout;
  while ((moves.size() < 2 || seen.size() < before_kill + 20) && Clock::now() < deadline) {
    if (auto e = w.Next(100ms)) seen.push_back(std::move(*e));
  }
  stop = true;
  writer.join();
  REQUIRE(w.status().ok());
  REQUIRE(moves.size() >= 2);
  CHECK(moves[1].endpoint != moves[0].endpoint);
  CHECK(moves[1].why.find("no word from " + moves[0].endpoint) != std::string::npos);
  // Everything acknowledged comes, each once, in index order.
  REQUIRE(!acknowledged.empty());
  const uint64_t last = acknowledged.rbegin()->first;
  while (seen.back().index < last && Clock::now() < deadline) {
    if (auto e = w.Next(100ms)) seen.push_back(std::move(*e));
  }
  std::map<uint64_t, std::string> got;
  for (size_t i = 0; i < seen.size(); ++i) {
    INFO("event " << i << ": " << Describe(seen[i]));
    CHECK((i == 0 || seen[i].index > seen[i - 1].index));
    got[seen[i].index] = seen[i].key;
  }
  for (const auto& [index, key] : acknowledged) {
    INFO("acknowledged " << key << " at " << index);
    CHECK(got[index] == key);
  }
  REQUIRE(cluster.StartNode(victim));
}

TEST_CASE("a watch from an index the nodes no longer keep ends with COMPACTED",
          "[cluster][watch]") {
  ClusterOptions options;
  options.extra_args = {"--watch-history-changes", "5"};
  Cluster cluster(options);
  StartAndElect(cluster);
  client::Client c(cluster.ClientOptions(kReplyTimeout));
  const client::Result first = c.Put("c/0", "0");
  REQUIRE(first.ok());
  for (int i = 1; i < 10; ++i) REQUIRE(c.Put("c/" + std::to_string(i), "x").ok());
  std::map<uint64_t, NodeStatus> converged;  // every node's history dropped the first
  REQUIRE(WaitForConvergence(cluster, &converged));

  client::WatchOptions o = client::PrefixWatch("c/");
  o.from_index[0] = first.index;
  client::Watcher w(c, o);
  CHECK(w.status().code == Code::kCompacted);
  CHECK(w.status().oldest > first.index);
  CHECK(w.status().error.find("no longer kept") != std::string::npos);
  CHECK(!w.Next(0ms));

  // From the oldest index kept it starts.
  o.from_index[0] = w.status().oldest;
  client::Watcher kept(c, o);
  CHECK(kept.status().ok());
}

TEST_CASE("a plain DEALER client and a REQ client get their replies", "[cluster]") {
  Cluster cluster;
  const uint64_t leader = StartAndElect(cluster);

  RawConnection conn(cluster.address(leader));
  auto put = conn.Call(Request(41, net::ClientOp::kPut, "raw", "value"), kReplyTimeout);
  INFO(StatusName(put));
  REQUIRE(put);
  CHECK(put->status == ReplyStatus::kOk);
  auto get = conn.Call(Request(42, net::ClientOp::kGet, "raw"), kReplyTimeout);
  REQUIRE(get);
  CHECK(get->status == ReplyStatus::kOk);
  CHECK(get->value == "value");
  auto del = conn.Call(Request(43, net::ClientOp::kDelete, "raw"), kReplyTimeout);
  REQUIRE(del);
  CHECK(del->status == ReplyStatus::kOk);
  auto gone = conn.Call(Request(44, net::ClientOp::kGet, "raw"), kReplyTimeout);
  REQUIRE(gone);
  CHECK(gone->status == ReplyStatus::kNotFound);
  // "set" is an alias of "put".
  conn.Send(mp::Map({{"id", mp::Uint(45)},
                     {"op", mp::Str("set")},
                     {"key", mp::Str("alias")},
                     {"value", mp::Str("a")}}));
  std::optional<std::string> set_bytes = conn.Receive(kReplyTimeout);
  REQUIRE(set_bytes);
  net::ClientReply set_reply;
  REQUIRE(net::DecodeClientReply(*set_bytes, &set_reply).ok());
  CHECK(set_reply.id == 45);
  CHECK(set_reply.status == ReplyStatus::kOk);

  // A REQ socket's empty delimiter frame is accepted and echoed.
  zmq::context_t ctx(1);
  zmq::socket_t req(ctx, zmq::socket_type::req);
  req.set(zmq::sockopt::linger, 0);
  req.set(zmq::sockopt::rcvtimeo, 10000);
  req.connect("tcp://" + cluster.address(leader));
  req.send(zmq::buffer(net::EncodeClientRequest(Request(46, net::ClientOp::kGet, "alias"))),
           zmq::send_flags::none);
  zmq::message_t msg;
  REQUIRE(req.recv(msg));
  net::ClientReply reply;
  REQUIRE(net::DecodeClientReply(msg.to_string_view(), &reply).ok());
  CHECK(reply.id == 46);
  CHECK(reply.status == ReplyStatus::kOk);
  CHECK(reply.value == "a");
}

TEST_CASE("a follower answers REDIRECT with the leader's address and does not execute",
          "[cluster]") {
  Cluster cluster;
  const uint64_t leader = StartAndElect(cluster);
  for (uint64_t follower : cluster.ids()) {
    if (follower == leader) continue;
    INFO("follower " << follower << ", leader " << leader);
    RawConnection conn(cluster.address(follower));
    for (net::ClientOp op :
         {net::ClientOp::kPut, net::ClientOp::kGet, net::ClientOp::kDelete, net::ClientOp::kCas}) {
      const uint64_t id = 1000 + static_cast<uint64_t>(op);
      auto reply = conn.Call(Request(id, op, "redirected", "v"), kReplyTimeout);
      INFO("op " << static_cast<int>(op) << ": " << StatusName(reply));
      REQUIRE(reply);
      CHECK(reply->id == id);
      CHECK(reply->status == ReplyStatus::kRedirect);
      CHECK(reply->leader == cluster.address(leader));
    }
  }
  // REDIRECT means not executed: the put never happened.
  RawConnection conn(cluster.address(leader));
  auto get = conn.Call(Request(7, net::ClientOp::kGet, "redirected"), kReplyTimeout);
  REQUIRE(get);
  CHECK(get->status == ReplyStatus::kNotFound);

  // The client library follows the redirect from a follower-only start.
  client::Options o = cluster.ClientOptions(kReplyTimeout);
  o.endpoints = {cluster.address(SomeFollower(cluster, leader))};
  client::Client c(o);
  CHECK(c.Put("via follower", "x").ok());
  CHECK(c.redirects() >= 1);
  CHECK(c.leader() == cluster.address(leader));
  CHECK(c.Get("via follower").value == "x");
}

TEST_CASE("pipelined requests on one DEALER connection are all answered", "[cluster]") {
  Cluster cluster;
  const uint64_t leader = StartAndElect(cluster);
  RawConnection conn(cluster.address(leader));
  constexpr uint64_t kCount = 500;

  // All puts go out before any reply is read.
  std::map<uint64_t, std::string> sent;
  for (uint64_t i = 1; i <= kCount; ++i) {
    const std::string key = "pipelined-" + std::to_string(i);
    conn.Send(net::EncodeClientRequest(
        Request(i, net::ClientOp::kPut, key, "v" + std::to_string(i * 7))));
    sent[i] = key;
  }
  std::map<uint64_t, int> answered;
  std::map<std::string, int> statuses;
  std::vector<std::string> undecodable;
  auto collect = [&](uint64_t want) {
    const Clock::time_point deadline = Clock::now() + 60s;
    while (answered.size() < want && Clock::now() < deadline) {
      std::optional<std::string> bytes = conn.Receive(1000ms);
      if (!bytes) continue;
      net::ClientReply reply;
      if (!net::DecodeClientReply(*bytes, &reply).ok()) {
        undecodable.push_back(*bytes);
        continue;
      }
      answered[reply.id]++;
      statuses[net::ReplyStatusName(reply.status)]++;
      if (reply.status == ReplyStatus::kOk && reply.id > kCount && reply.id <= 2 * kCount) {
        // A get: its value must be the one its put wrote.
        CHECK(reply.value == "v" + std::to_string((reply.id - kCount) * 7));
      }
    }
  };
  collect(kCount);
  CHECK(undecodable.empty());
  CHECK(answered.size() == kCount);
  CHECK(statuses["OK"] == static_cast<int>(kCount));
  for (const auto& [id, times] : answered) {
    INFO("id " << id);
    CHECK(sent.count(id) == 1);
    CHECK(times == 1);
  }

  // Then pipelined gets of the same keys, interleaved with status requests.
  answered.clear();
  statuses.clear();
  for (uint64_t i = 1; i <= kCount; ++i) {
    conn.Send(net::EncodeClientRequest(Request(kCount + i, net::ClientOp::kGet, sent[i])));
  }
  collect(kCount);
  CHECK(answered.size() == kCount);
  CHECK(statuses["OK"] == static_cast<int>(kCount));
  for (const auto& [id, times] : answered) {
    INFO("id " << id);
    CHECK(id > kCount);
    CHECK(id <= 2 * kCount);
    CHECK(times == 1);
  }
}

TEST_CASE("status agrees across nodes on leader and term and members and applied state",
          "[cluster]") {
  Cluster cluster;
  const uint64_t leader = StartAndElect(cluster);
  client::Client c(cluster.ClientOptions(kReplyTimeout));
  for (int i = 0; i < 20; ++i) REQUIRE(c.Put("status-" + std::to_string(i), "v").ok());

  std::map<uint64_t, NodeStatus> all;
  REQUIRE(WaitForConvergence(cluster, &all));
  INFO(Describe(all));
  REQUIRE(all.size() == 3);
  const NodeStatus& lead = all.at(leader);
  std::map<uint64_t, std::string> members;
  for (uint64_t id : cluster.ids()) members[id] = cluster.address(id);
  int leaders = 0;
  for (const auto& [id, st] : all) {
    INFO("node " << id);
    CHECK(st.node == id);
    CHECK(st.term == lead.term);
    CHECK(st.leader == leader);
    CHECK(st.leader_address == cluster.address(leader));
    CHECK(st.role == (id == leader ? "leader" : "follower"));
    leaders += st.role == "leader";
    CHECK(st.members == members);
    CHECK(st.voters == std::vector<uint64_t>{1, 2, 3});
    CHECK(st.learners.empty());
    CHECK(st.keys == 20);
    CHECK(st.applied >= 20);
    CHECK(st.applied <= st.commit);
    CHECK(st.commit <= st.last_index);
    CHECK(st.digest == lead.digest);
  }
  CHECK(leaders == 1);
}

TEST_CASE("the README quick start: kvstore PORT ID on the default ports", "[cluster]") {
  std::unique_ptr<Cluster> cluster;
  ClusterOptions options;
  options.quick_start = true;
  try {
    cluster = std::make_unique<Cluster>(options);
  } catch (const std::exception& e) {
    WARN("skipped: " << e.what());
    return;
  }
  StartAndElect(*cluster);
  client::Client c(client::Options{});  // the client's default endpoints
  REQUIRE(c.Put("quick", "start").ok());
  CHECK(c.Get("quick").value == "start");
  for (uint64_t id : cluster->ids()) {
    INFO("node " << id);
    CHECK(std::filesystem::exists(cluster->dir() + "/data/node-" + std::to_string(id)));
  }
}

// ---------------------------------------------------------------------------
// Failures

TEST_CASE(
    "a killed leader is replaced within a few election timeouts and rejoins as a "
    "follower that catches up",
    "[cluster]") {
  Cluster cluster;
  const uint64_t old_leader = StartAndElect(cluster);
  client::Client c(cluster.ClientOptions(20000ms));
  for (int i = 0; i < 50; ++i) REQUIRE(c.Put("before/" + std::to_string(i), "b").ok());
  const uint64_t old_term = cluster.Status(old_leader).value_or(NodeStatus{}).term;

  const Clock::time_point killed = Clock::now();
  cluster.Kill(old_leader, SIGKILL);
  const uint64_t new_leader = cluster.WaitForLeader(kLeaderTimeout);
  const auto took = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - killed);
  INFO("new leader " << new_leader << " after " << took.count() << " ms (election timeout "
                     << cluster.election_timeout().count() << " ms)");
  REQUIRE(new_leader != 0);
  CHECK(new_leader != old_leader);
  // A follower notices within 2 election timeouts (randomized), then one
  // pre-vote and one vote round; the rest is slack for ASAN on shared cores.
  CHECK(took < 20 * cluster.election_timeout());
  const std::optional<NodeStatus> st = cluster.Status(new_leader);
  REQUIRE(st);
  CHECK(st->term > old_term);

  for (int i = 0; i < 50; ++i) REQUIRE(c.Put("after/" + std::to_string(i), "a").ok());

  REQUIRE(cluster.Restart(old_leader));
  REQUIRE(cluster.WaitForLeader(kLeaderTimeout) != 0);
  std::map<uint64_t, NodeStatus> all;
  REQUIRE(WaitForConvergence(cluster, &all));
  INFO(Describe(all));
  REQUIRE(all.count(old_leader) == 1);
  const NodeStatus& rejoined = all.at(old_leader);
  CHECK(rejoined.role == "follower");
  CHECK(rejoined.leader != old_leader);
  CHECK(rejoined.keys == 100);
  CHECK(rejoined.applied == all.at(rejoined.leader).applied);
  CHECK(rejoined.digest == all.at(rejoined.leader).digest);
  for (int i = 0; i < 50; ++i) {
    CHECK(c.Get("before/" + std::to_string(i)).value == "b");
    CHECK(c.Get("after/" + std::to_string(i)).value == "a");
  }
}

TEST_CASE("every acknowledged write survives kill -9 of all nodes under load", "[cluster]") {
  Cluster cluster;
  StartAndElect(cluster);
  WriteLoad load(cluster.ClientOptions(3000ms), 4, "crash");
  REQUIRE(cluster.WaitUntil([&] { return load.acked() >= 300; }, 120s));
  for (uint64_t id : cluster.ids()) cluster.Kill(id, SIGKILL);
  load.Stop();
  const uint64_t acked_before_crash = load.acked();

  for (uint64_t id : cluster.ids()) REQUIRE(cluster.StartNode(id));
  REQUIRE(cluster.WaitForLeader(kLeaderTimeout) != 0);
  CHECK(VerifyWrites(cluster, load.writes()) == acked_before_crash);
  std::map<uint64_t, NodeStatus> all;
  CHECK(WaitForConvergence(cluster, &all));
}

TEST_CASE("a follower that missed compacted entries catches up by InstallSnapshot", "[cluster]") {
  // The follower is stopped cleanly (SIGTERM: exit code 0) or killed.
  const int signal = GENERATE(SIGTERM, SIGKILL);
  ClusterOptions options;
  options.snapshot_entries = 200;
  Cluster cluster(options);
  const uint64_t leader = StartAndElect(cluster);
  const uint64_t follower = SomeFollower(cluster, leader);

  std::vector<std::pair<std::string, std::string>> first, second;
  for (int i = 0; i < 100; ++i) first.emplace_back("early/" + std::to_string(i), "e");
  PipelinedPuts(cluster, first, 100);
  std::map<uint64_t, NodeStatus> all;
  REQUIRE(WaitForConvergence(cluster, &all));
  const uint64_t follower_last = all.at(follower).last_index;

  INFO("follower " << follower << " stopped by signal " << signal);
  const int status = cluster.Kill(follower, signal);
  if (signal == SIGTERM) {
    CHECK(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) == 0);
  }

  for (int i = 0; i < 3000; ++i) {
    second.emplace_back("late/" + std::to_string(i), "value " + std::to_string(i));
  }
  PipelinedPuts(cluster, second, 250);
  // The live nodes have compacted past everything the follower has: it can
  // only catch up from a snapshot.
  REQUIRE(cluster.WaitUntil(
      [&] {
        all = cluster.StatusOfLiveNodes();
        if (all.size() != 2) return false;
        for (const auto& [id, st] : all) {
          if (st.snapshot_index <= follower_last + 1) return false;
        }
        return true;
      },
      kCatchUpTimeout));

  REQUIRE(cluster.StartNode(follower));
  REQUIRE(WaitForConvergence(cluster, &all));
  INFO(Describe(all));
  const NodeStatus& f = all.at(follower);
  const NodeStatus& l = all.at(f.leader);
  CHECK(f.applied == l.applied);
  CHECK(f.digest == l.digest);
  CHECK(f.keys == 3100);
  CHECK(f.snapshot_index > follower_last);
  // Its log starts after a snapshot it could only have been sent.
  std::ifstream log(cluster.log_path(follower));
  std::stringstream text;
  text << log.rdbuf();
  const std::string restarted = text.str().substr(text.str().rfind("=== cluster: start"));
  CHECK(restarted.find("installed snapshot") != std::string::npos);

  // Its own data, read locally, matches what was written.
  client::Options o = cluster.ClientOptions(kReplyTimeout);
  o.endpoints = {cluster.address(follower)};
  client::Client local(o);
  for (size_t i = 0; i < second.size(); i += 97) {
    INFO(second[i].first);
    CHECK(local.Get(second[i].first, /*stale=*/true).value == second[i].second);
  }
  CHECK(local.Get("early/7", /*stale=*/true).value == "e");
}

TEST_CASE("a paused leader steps down after SIGCONT and no acknowledged write is lost",
          "[cluster]") {
  Cluster cluster;
  const uint64_t old_leader = StartAndElect(cluster);
  const uint64_t old_term = cluster.Status(old_leader).value_or(NodeStatus{}).term;
  LeaderObserver observer(cluster.addresses());
  WriteLoad load(cluster.ClientOptions(5000ms), 3, "pause");
  REQUIRE(cluster.WaitUntil([&] { return load.acked() >= 100; }, 120s));

  // A connection to the old leader, on which writes wait while it is paused.
  RawConnection queued(cluster.address(old_leader));
  auto probe = queued.Call(Request(1, net::ClientOp::kPut, "probe", "p"), kReplyTimeout);
  REQUIRE(probe);

  const Clock::time_point paused = Clock::now();
  cluster.Kill(old_leader, SIGSTOP);
  constexpr uint64_t kQueued = 20;
  for (uint64_t i = 1; i <= kQueued; ++i) {
    queued.Send(net::EncodeClientRequest(
        Request(100 + i, net::ClientOp::kPut, "queued/" + std::to_string(i), "q")));
  }
  const uint64_t new_leader = cluster.WaitForLeader(kLeaderTimeout);
  REQUIRE(new_leader != 0);
  CHECK(new_leader != old_leader);
  // Stay paused for several election timeouts, while the new leader
  // acknowledges writes.
  const uint64_t acked_at_election = load.acked();
  REQUIRE(cluster.WaitUntil(
      [&] {
        return load.acked() >= acked_at_election + 100 &&
               Clock::now() - paused >= 5 * cluster.election_timeout();
      },
      120s));

  cluster.Kill(old_leader, SIGCONT);
  // The old leader learns of the new term and follows.
  REQUIRE(cluster.WaitUntil(
      [&] {
        const std::optional<NodeStatus> st = cluster.Status(old_leader);
        return st && st->term > old_term && st->leader != 0 &&
               (st->role == "follower" || st->leader == old_leader);
      },
      kLeaderTimeout));
  REQUIRE(cluster.WaitForLeader(kLeaderTimeout) != 0);
  // The writes that waited at the old leader: whatever it answers must hold
  // (OK: the write is there; REDIRECT, UNAVAILABLE, ERROR: it is not).
  std::map<uint64_t, net::ClientReply> queued_replies;
  cluster.WaitUntil(
      [&] {
        std::optional<std::string> bytes = queued.Receive(100ms);
        net::ClientReply reply;
        if (bytes && net::DecodeClientReply(*bytes, &reply).ok()) queued_replies[reply.id] = reply;
        return queued_replies.size() == kQueued;
      },
      kReplyTimeout);
  {
    std::map<std::string, int> seen;
    for (const auto& entry : queued_replies) seen[net::ReplyStatusName(entry.second.status)]++;
    std::string summary;
    for (const auto& [name, n] : seen) summary += name + "=" + std::to_string(n) + " ";
    INFO("replies to the writes queued at the paused leader: " << summary);
    CHECK(queued_replies.size() == kQueued);
  }
  const uint64_t acked_at_resume = load.acked();
  REQUIRE(cluster.WaitUntil([&] { return load.acked() >= acked_at_resume + 50; }, 120s));
  load.Stop();
  observer.Stop();

  CheckOneLeaderPerTerm(observer);
  CHECK(observer.leaders_by_term().size() >= 2);
  VerifyWrites(cluster, load.writes());
  client::Client reader(cluster.ClientOptions(20000ms));
  for (const auto& [id, reply] : queued_replies) {
    const std::string key = "queued/" + std::to_string(id - 100);
    const client::Result r = reader.Get(key);
    INFO(key << " answered " << net::ReplyStatusName(reply.status) << ", reads "
             << client::CodeName(r.code));
    if (reply.status == ReplyStatus::kOk) {
      CHECK(r.value == "q");
    } else if (reply.status != ReplyStatus::kUnknown) {
      CHECK(r.code == Code::kNotFound);
    }
  }
  std::map<uint64_t, NodeStatus> all;
  CHECK(WaitForConvergence(cluster, &all));
}

// ---------------------------------------------------------------------------
// Bad input

TEST_CASE("malformed requests get ERROR and the node keeps serving", "[cluster]") {
  Cluster cluster(SteadyLeader());
  const uint64_t leader = StartAndElect(cluster);
  RawConnection conn(cluster.address(leader));
  uint64_t good_id = 1u << 20;

  // A normal put and get on the same connection still work.
  auto serves = [&] {
    const std::string key = "good-" + std::to_string(good_id);
    auto put = conn.Call(Request(++good_id, net::ClientOp::kPut, key, "ok"), kReplyTimeout);
    INFO("put after bad input: " << StatusName(put));
    CHECK((put && put->status == ReplyStatus::kOk));
    auto get = conn.Call(Request(++good_id, net::ClientOp::kGet, key), kReplyTimeout);
    CHECK((get && get->value == "ok"));
  };
  auto expect_error = [&](const std::string& what, uint64_t id,
                          const std::vector<std::string>& frames) {
    INFO(what);
    conn.SendFrames(frames);
    std::optional<std::string> bytes = conn.Receive(kReplyTimeout);
    REQUIRE(bytes);
    net::ClientReply reply;
    REQUIRE(net::DecodeClientReply(*bytes, &reply).ok());
    CHECK(reply.status == ReplyStatus::kError);
    CHECK(reply.id == id);
    CHECK(!reply.error.empty());
    serves();
  };
  using mp::Map;
  using mp::Str;
  using mp::Uint;
  const std::string get_k = Map({{"id", Uint(6)}, {"op", Str("get")}, {"key", Str("k")}});
  const std::string huge_value((1 << 20) + 1, 'v');
  struct Case {
    const char* what;
    uint64_t id;  // the id the ERROR reply must carry: 0 when unknown
    std::vector<std::string> frames;
  };
  const std::vector<Case> cases = {
      {"not msgpack", 0, {std::string("\xc1\xc1 this is not msgpack", 22)}},
      {"empty frame", 0, {std::string()}},
      {"truncated map", 0, {get_k.substr(0, get_k.size() - 3)}},
      {"trailing bytes", 0, {get_k + "xx"}},
      {"an array, not a map", 0, {mp::Array({Uint(1), Str("get")})}},
      {"a map without id", 0, {Map({{"op", Str("get")}, {"key", Str("k")}})}},
      {"id of the wrong type",
       0,
       {Map({{"id", Str("seven")}, {"op", Str("get")}, {"key", Str("k")}})}},
      {"negative id", 0, {Map({{"id", mp::Int(-3)}, {"op", Str("get")}, {"key", Str("k")}})}},
      {"unknown op", 11, {Map({{"id", Uint(11)}, {"op", Str("frobnicate")}, {"key", Str("k")}})}},
      {"missing op", 12, {Map({{"id", Uint(12)}, {"key", Str("k")}})}},
      {"op of the wrong type", 13, {Map({{"id", Uint(13)}, {"op", Uint(1)}, {"key", Str("k")}})}},
      {"key of the wrong type",
       14,
       {Map({{"id", Uint(14)}, {"op", Str("put")}, {"key", Uint(99)}, {"value", Str("v")}})}},
      {"value of the wrong type",
       15,
       {Map({{"id", Uint(15)}, {"op", Str("put")}, {"key", Str("k")}, {"value", Map({})}})}},
      {"stale of the wrong type",
       16,
       {Map({{"id", Uint(16)}, {"op", Str("get")}, {"key", Str("k")}, {"stale", Str("yes")}})}},
      {"seq of the wrong type",
       17,
       {Map({{"id", Uint(17)},
             {"op", Str("put")},
             {"key", Str("k")},
             {"value", Str("v")},
             {"client", Uint(1)},
             {"seq", Str("one")}})}},
      {"nil key", 25, {Map({{"id", Uint(25)}, {"op", Str("get")}, {"key", mp::Nil()}})}},
      {"missing key", 18, {Map({{"id", Uint(18)}, {"op", Str("put")}, {"value", Str("v")}})}},
      {"put without value", 19, {Map({{"id", Uint(19)}, {"op", Str("put")}, {"key", Str("k")}})}},
      {"non-string map key", 20, {mp::MapOf({{Uint(1), Uint(2)}, {Str("id"), Uint(20)}})}},
      {"key over the limit",
       21,
       {Map({{"id", Uint(21)},
             {"op", Str("put")},
             {"key", mp::Bin(std::string(4097, 'k'))},
             {"value", Str("v")}})}},
      {"value over the limit",
       22,
       {Map({{"id", Uint(22)},
             {"op", Str("put")},
             {"key", Str("big")},
             {"value", mp::Bin(huge_value)}})}},
      {"cas expect over the limit",
       23,
       {Map({{"id", Uint(23)},
             {"op", Str("cas")},
             {"key", Str("big")},
             {"value", Str("v")},
             {"expect", mp::Bin(huge_value)}})}},
      {"a multi-frame message",
       0,
       {net::EncodeClientRequest(Request(24, net::ClientOp::kGet, "k")), "second"}},
      {"three frames after a delimiter", 0, {"", "a", "b"}},
  };
  for (const Case& c : cases) expect_error(c.what, c.id, c.frames);

  // ERROR means not executed: the over-limit put left nothing.
  auto big = conn.Call(Request(30, net::ClientOp::kGet, "big"), kReplyTimeout);
  REQUIRE(big);
  CHECK(big->status == ReplyStatus::kNotFound);

  // The limits are not off by one: a 4 KiB key and a 1 MiB value are fine.
  auto at_limit = conn.Call(
      Request(31, net::ClientOp::kPut, std::string(4096, 'k'), std::string(1 << 20, 'v')), 30000ms);
  INFO(StatusName(at_limit));
  REQUIRE(at_limit);
  CHECK(at_limit->status == ReplyStatus::kOk);

  // A frame over ZMQ_MAXMSGSIZE costs its sender the connection, nothing else.
  {
    RawConnection huge(cluster.address(leader));
    huge.Send(std::string(8 << 20, 'x'));
    CHECK(!huge.Receive(1000ms));
  }
  serves();
  // A follower handles bad input the same way.
  RawConnection follower(cluster.address(SomeFollower(cluster, leader)));
  follower.Send("\xc1");
  std::optional<std::string> bytes = follower.Receive(kReplyTimeout);
  REQUIRE(bytes);
  net::ClientReply reply;
  REQUIRE(net::DecodeClientReply(*bytes, &reply).ok());
  CHECK(reply.status == ReplyStatus::kError);

  for (uint64_t id : cluster.ids()) {
    INFO("node " << id);
    CHECK(cluster.alive(id));
    CHECK(cluster.Status(id));
  }
}

TEST_CASE("junk and oversized frames on the peer port change nothing", "[cluster]") {
  Cluster cluster(SteadyLeader());
  const uint64_t leader = StartAndElect(cluster);
  const std::optional<NodeStatus> before = cluster.Status(leader);
  REQUIRE(before);
  std::vector<std::unique_ptr<RawConnection>> peers;  // open until the checks are done
  for (uint64_t id : cluster.ids()) {
    // The Raft port is the client port + 1000 (docs/protocol.md).
    peers.push_back(
        std::make_unique<RawConnection>("127.0.0.1:" + std::to_string(cluster.port(id) + 1000)));
    peers.back()->Send("\xc1 not a peer frame");
    peers.back()->SendFrames({"", std::string(100, '\0')});
    // Over the largest legal peer frame: ZeroMQ drops the connection before
    // the node allocates it.
    peers.back()->Send(std::string(64 << 20, 'x'));
  }
  for (uint64_t id : cluster.ids()) {
    INFO("node " << id << " logs the junk it dropped");
    CHECK(cluster.WaitUntil(
        [&] { return cluster.LogTail(id, 50).find("dropped a peer message") != std::string::npos; },
        10s));
  }
  // Every node still serves, under the same leader in the same term.
  RawConnection conn(cluster.address(leader));
  auto put = conn.Call(Request(1, net::ClientOp::kPut, "after-junk", "v"), kReplyTimeout);
  REQUIRE(put);
  CHECK(put->status == ReplyStatus::kOk);
  for (uint64_t id : cluster.ids()) {
    INFO("node " << id);
    CHECK(cluster.alive(id));
    const std::optional<NodeStatus> st = cluster.Status(id);
    REQUIRE(st);
    CHECK(st->leader == leader);
    CHECK(st->term == before->term);
  }
}

TEST_CASE("a removed notice from a stranger or of an older term is ignored", "[cluster]") {
  Cluster cluster(SteadyLeader());
  const uint64_t leader = StartAndElect(cluster);
  const uint64_t follower = SomeFollower(cluster, leader);
  const std::optional<NodeStatus> st = cluster.Status(follower);
  REQUIRE(st);
  REQUIRE(st->term > 0);
  RawConnection peer("127.0.0.1:" + std::to_string(cluster.port(follower) + 1000));
  // From a node that is no member, and from a member in an earlier term.
  peer.Send(net::EncodeRemovedNotice({99, kMainGroup, st->term}));
  peer.Send(net::EncodeRemovedNotice({leader, kMainGroup, st->term - 1}));
  // Frames on one connection arrive in order: once the junk after them is
  // logged, both notices have been handled.
  peer.Send("\xc1 junk after the notices");
  REQUIRE(cluster.WaitUntil(
      [&] {
        return cluster.LogTail(follower, 50).find("dropped a peer message") != std::string::npos;
      },
      10s));
  CHECK(cluster.LogTail(follower, 200).find("was removed") == std::string::npos);
  RawConnection conn(cluster.address(leader));
  auto put = conn.Call(Request(1, net::ClientOp::kPut, "still-member", "v"), kReplyTimeout);
  REQUIRE(put);
  CHECK(put->status == ReplyStatus::kOk);
}

// ---------------------------------------------------------------------------
// Configuration errors: exit code 2, one line, nothing touched

TEST_CASE("config error: own id missing from --peers exits 2 and touches nothing", "[cluster]") {
  const std::vector<int> ports = FindFreePorts(3);
  REQUIRE(ports.size() == 3);
  TempDir scratch;
  const std::string dir = scratch.path() + "/missing-id";
  const RunResult r = RunKvstore({"--id", "4", "--peers", PeersOn(ports), "--data-dir", dir}, 30s);
  CheckConfigError(r, {"id 4", "4 is not", "node 4"});
  CHECK(!std::filesystem::exists(dir));
}

TEST_CASE("config error: a non-loopback listen address without --insecure exits 2", "[cluster]") {
  const std::vector<int> ports = FindFreePorts(3);
  REQUIRE(ports.size() == 3);
  TempDir scratch;
  const std::string dir = scratch.path() + "/open";
  const RunResult r = RunKvstore(
      {"--id", "1", "--peers", PeersOn(ports), "--listen", "0.0.0.0", "--data-dir", dir}, 30s);
  CheckConfigError(r, {"--insecure"});
  CHECK(!std::filesystem::exists(dir));
}

TEST_CASE("config error: duplicate ids in --peers exit 2 and touch nothing", "[cluster]") {
  const std::vector<int> ports = FindFreePorts(3);
  REQUIRE(ports.size() == 3);
  TempDir scratch;
  const std::string dir = scratch.path() + "/duplicate";
  const std::string peers = "1=127.0.0.1:" + std::to_string(ports[0]) +
                            ",2=127.0.0.1:" + std::to_string(ports[1]) +
                            ",1=127.0.0.1:" + std::to_string(ports[2]);
  const RunResult r = RunKvstore({"--id", "1", "--peers", peers, "--data-dir", dir}, 30s);
  CheckConfigError(r, {"twice", "duplicate", "more than once"});
  CHECK(!std::filesystem::exists(dir));
}

TEST_CASE("config error: a port in use exits 2 and touches no data", "[cluster]") {
  const std::vector<int> ports = FindFreePorts(3);
  REQUIRE(ports.size() == 3);
  TempDir scratch;
  const std::string peers = PeersOn(ports);
  for (int offset : {0, 1000, 2000, 3000}) {
    INFO("port " << ports[0] + offset << " (client port + " << offset << ") in use");
    PortHolder holder(ports[0] + offset);
    REQUIRE(holder.ok());
    const std::string dir = scratch.path() + "/in-use-" + std::to_string(offset);
    const RunResult r = RunKvstore({"--id", "1", "--peers", peers, "--data-dir", dir}, 30s);
    CheckConfigError(r, {std::to_string(ports[0] + offset)});
    CHECK(!std::filesystem::exists(dir));
  }
}

TEST_CASE("config error: a restart while the port is taken exits 2 and leaves its data alone",
          "[cluster]") {
  Cluster cluster;
  StartAndElect(cluster);
  client::Client c(cluster.ClientOptions(kReplyTimeout));
  for (int i = 0; i < 20; ++i) REQUIRE(c.Put("k" + std::to_string(i), "v").ok());
  std::map<uint64_t, NodeStatus> all;
  REQUIRE(WaitForConvergence(cluster, &all));
  const int status = cluster.Kill(1, SIGTERM);
  CHECK((WIFEXITED(status) && WEXITSTATUS(status) == 0));
  const auto before = Fingerprint(cluster.data_dir(1));
  REQUIRE(!before.empty());

  PortHolder holder(cluster.port(1));
  REQUIRE(holder.ok());
  std::vector<std::string> args = cluster.Args(1);
  args.erase(args.begin());
  const RunResult r = RunKvstore(args, 60s);
  CheckConfigError(r, {std::to_string(cluster.port(1))});
  const auto after = Fingerprint(cluster.data_dir(1));
  CHECK(after.size() == before.size());
  for (const auto& [path, content] : before) {
    INFO(path);
    CHECK(after.count(path) == 1);
    if (after.count(path)) CHECK((after.at(path) == content));
  }
  for (const auto& entry : after) {
    INFO("new file " << entry.first);
    CHECK(before.count(entry.first) == 1);
  }
}

TEST_CASE("config error: a data dir of another node id or cluster exits 2 and is left alone",
          "[cluster]") {
  Cluster cluster;
  StartAndElect(cluster);
  client::Client c(cluster.ClientOptions(kReplyTimeout));
  REQUIRE(c.Put("k", "v").ok());
  std::map<uint64_t, NodeStatus> all;
  REQUIRE(WaitForConvergence(cluster, &all));
  const int status = cluster.Kill(2, SIGTERM);
  CHECK((WIFEXITED(status) && WEXITSTATUS(status) == 0));
  const auto before = Fingerprint(cluster.data_dir(2));
  REQUIRE(!before.empty());

  // Fresh ports, so that only the data dir is wrong.
  const std::vector<int> ports = FindFreePorts(3);
  REQUIRE(ports.size() == 3);
  SECTION("another node id") {
    const RunResult r = RunKvstore(
        {"--id", "1", "--peers", PeersOn(ports), "--data-dir", cluster.data_dir(2)}, 60s);
    CheckConfigError(r, {cluster.data_dir(2)});
  }
  SECTION("another cluster") {
    const RunResult r = RunKvstore({"--id", "2", "--peers", PeersOn(ports), "--cluster", "other",
                                    "--data-dir", cluster.data_dir(2)},
                                   60s);
    CheckConfigError(r, {cluster.data_dir(2)});
  }
  CHECK(Fingerprint(cluster.data_dir(2)) == before);
}

// ---------------------------------------------------------------------------
// The checks themselves: a scenario that loses every write must fail them.

TEST_CASE("self-check: wiping every data dir makes the write check fail",
          "[cluster][!shouldfail]") {
  Cluster cluster;
  StartAndElect(cluster);
  WriteLoad load(cluster.ClientOptions(3000ms), 2, "wiped");
  REQUIRE(cluster.WaitUntil([&] { return load.acked() >= 50; }, 120s));
  load.Stop();
  for (uint64_t id : cluster.ids()) {
    cluster.Kill(id, SIGKILL);
    std::filesystem::remove_all(cluster.data_dir(id));
  }
  for (uint64_t id : cluster.ids()) REQUIRE(cluster.StartNode(id));
  REQUIRE(cluster.WaitForLeader(kLeaderTimeout) != 0);
  VerifyWrites(cluster, load.writes());
}

}  // namespace
}  // namespace kv::test
