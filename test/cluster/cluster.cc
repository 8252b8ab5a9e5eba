#include "test/cluster/cluster.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <deque>
#include <exception>
#include <filesystem>
#include <fstream>
#include <random>
#include <set>
#include <sstream>
#include <thread>

// The listener interfaces are only declared with this outside the main TU.
#define CATCH_CONFIG_EXTERNAL_INTERFACES
#include <catch2/catch.hpp>

namespace kv::test {

namespace {

// Counts failed assertions, so that a Cluster can tell at destruction
// whether the test that owned it failed (and print the nodes' logs).
std::atomic<int> g_failed_assertions{0};

class FailureCounter : public Catch::TestEventListenerBase {
 public:
  using TestEventListenerBase::TestEventListenerBase;
  bool assertionEnded(const Catch::AssertionStats& stats) override {
    if (!stats.assertionResult.isOk()) g_failed_assertions++;
    return true;
  }
};

CATCH_REGISTER_LISTENER(FailureCounter)

constexpr int kRaftOffset = 1000;
constexpr int kPubOffset = 2000;
constexpr int kMetricsOffset = 3000;  // the node's HTTP port by default

bool CanBind(int port) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  // ZeroMQ binds with SO_REUSEADDR, so a port with connections in TIME_WAIT
  // is fine; a listener anywhere on the port is not.
  const int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  const bool ok =
      bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 && listen(fd, 1) == 0;
  close(fd);
  return ok;
}

int EphemeralLow() {
  std::ifstream in("/proc/sys/net/ipv4/ip_local_port_range");
  int low = 32768, high = 60999;
  if (in >> low >> high) return low;
  return 32768;
}

std::string MakeTempDir() {
  const char* tmp = getenv("TMPDIR");
  std::string templ =
      std::string(tmp != nullptr && *tmp != '\0' ? tmp : "/tmp") + "/kvstore-cluster-XXXXXX";
  std::vector<char> buf(templ.begin(), templ.end());
  buf.push_back('\0');
  if (mkdtemp(buf.data()) == nullptr) {
    throw std::runtime_error("mkdtemp " + templ + ": " + strerror(errno));
  }
  return std::string(buf.data());
}

// fork/exec `args` with stdout and stderr going to `out_fd`, stdin from
// /dev/null. Everything the child touches is prepared before fork, since
// the parent may have other threads.
pid_t Spawn(const std::vector<std::string>& args, int out_fd, const std::string& cwd = "") {
  std::vector<char*> argv;
  for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  const int null_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
  const pid_t parent = getpid();
  const pid_t pid = fork();
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(127);
    if (!cwd.empty() && chdir(cwd.c_str()) != 0) _exit(127);
    if (null_fd >= 0) dup2(null_fd, 0);
    dup2(out_fd, 1);
    dup2(out_fd, 2);
    execv(argv[0], argv.data());
    _exit(127);
  }
  if (null_fd >= 0) close(null_fd);
  return pid;
}

// waitpid with a timeout; returns the wait status, or -1 if still running.
int WaitPid(pid_t pid, Clock::duration timeout) {
  const Clock::time_point deadline = Clock::now() + timeout;
  auto pause = std::chrono::milliseconds(1);
  while (true) {
    int status = 0;
    const pid_t r = waitpid(pid, &status, WNOHANG);
    if (r == pid) return status;
    if (r < 0 && errno != EINTR) return 0;  // not our child any more
    if (Clock::now() >= deadline) return -1;
    std::this_thread::sleep_for(pause);
    pause = std::min(pause * 2, std::chrono::milliseconds(20));
  }
}

std::string Tail(const std::string& path, size_t lines) {
  std::ifstream in(path);
  std::deque<std::string> last;
  std::string line;
  while (std::getline(in, line)) {
    last.push_back(line);
    if (last.size() > lines) last.pop_front();
  }
  std::string out;
  for (const std::string& l : last) out += l + "\n";
  return out;
}

}  // namespace

std::string KvstoreBinary() {
  const char* env = getenv("KVSTORE_BIN");
  if (env != nullptr && *env != '\0') return env;
#ifdef KVSTORE_BIN
  return KVSTORE_BIN;
#else
  return "kvstore";
#endif
}

TempDir::TempDir() : path_(MakeTempDir()) {}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

bool PortsFree(int port) {
  return CanBind(port) && CanBind(port + kRaftOffset) && CanBind(port + kPubOffset) &&
         CanBind(port + kMetricsOffset);
}

std::vector<int> FindFreePorts(int count) {
  // Below the ephemeral range, so that no outgoing connection (ZeroMQ's
  // among them) takes one of our ports between this check and the bind.
  const int high = std::min(EphemeralLow(), 65536) - kMetricsOffset - count;
  const int low = 10000;
  std::mt19937 rng(static_cast<uint32_t>(getpid()) * 2654435761u ^
                   static_cast<uint32_t>(Clock::now().time_since_epoch().count()));
  std::uniform_int_distribution<int> pick(low, std::max(low, high - 1));
  for (int attempt = 0; attempt < 200; ++attempt) {
    const int base = pick(rng);
    bool ok = true;
    for (int i = 0; i < count && ok; ++i) ok = PortsFree(base + i);
    if (ok) {
      std::vector<int> ports;
      for (int i = 0; i < count; ++i) ports.push_back(base + i);
      return ports;
    }
  }
  return {};
}

// ---------------------------------------------------------------------------
// Cluster

Cluster::Cluster(ClusterOptions options)
    : options_(std::move(options)), failures_at_start_(g_failed_assertions.load()) {
  std::vector<int> ports;
  if (options_.quick_start) {
    for (int i = 0; i < options_.nodes; ++i) {
      if (!PortsFree(8080 + i)) {
        throw std::runtime_error("port " + std::to_string(8080 + i) +
                                 " (or +1000, +2000, +3000) is taken");
      }
      ports.push_back(8080 + i);
    }
  } else {
    ports = FindFreePorts(options_.nodes);
    if (ports.empty()) throw std::runtime_error("no free ports found");
  }
  dir_ = MakeTempDir();
  for (int i = 0; i < options_.nodes; ++i) {
    procs_[static_cast<uint64_t>(i + 1)].port = ports[static_cast<size_t>(i)];
  }
  client::Options co;
  co.endpoints = addresses();
  co.timeout = options_.status_timeout;
  co.attempt_timeout = options_.status_timeout;
  status_client_ = std::make_unique<client::Client>(co);
}

Cluster::~Cluster() {
  const bool failed =
      g_failed_assertions.load() != failures_at_start_ || std::uncaught_exceptions() > 0;
  for (auto& [id, p] : procs_) {
    if (p.pid > 0) {
      // A node that died on its own during the test is reported as such.
      alive(id);
    }
    if (p.pid > 0) {
      kill(p.pid, SIGKILL);
      WaitPid(p.pid, std::chrono::seconds(30));
      p.pid = -1;
    }
  }
  status_client_.reset();
  if (failed) {
    DumpLogs();
  }
  const char* keep = getenv("KV_CLUSTER_KEEP");
  if (keep != nullptr && std::string(keep) == "1") {
    std::fprintf(stderr, "cluster: kept %s\n", dir_.c_str());
    return;
  }
  std::error_code ec;
  std::filesystem::remove_all(dir_, ec);
}

std::vector<uint64_t> Cluster::ids() const {
  std::vector<uint64_t> out;
  for (const auto& entry : procs_) out.push_back(entry.first);
  return out;
}

int Cluster::port(uint64_t id) const { return procs_.at(id).port; }

std::string Cluster::address(uint64_t id) const { return "127.0.0.1:" + std::to_string(port(id)); }

std::vector<std::string> Cluster::addresses() const {
  std::vector<std::string> out;
  for (const auto& entry : procs_) out.push_back(address(entry.first));
  return out;
}

std::string Cluster::peers() const {
  std::string out;
  for (const auto& entry : procs_) {
    if (!out.empty()) out += ",";
    out += std::to_string(entry.first) + "=" + address(entry.first);
  }
  return out;
}

std::string Cluster::data_dir(uint64_t id) const {
  if (options_.quick_start) return dir_ + "/data/node-" + std::to_string(id);
  return dir_ + "/node-" + std::to_string(id);
}

std::string Cluster::log_path(uint64_t id) const {
  return dir_ + "/node-" + std::to_string(id) + ".log";
}

std::chrono::milliseconds Cluster::election_timeout() const {
  return std::chrono::milliseconds(options_.tick_ms * options_.election_ticks);
}

std::vector<std::string> Cluster::Args(uint64_t id) const {
  if (options_.quick_start) return {KvstoreBinary(), std::to_string(port(id)), std::to_string(id)};
  std::vector<std::string> args = {KvstoreBinary(),
                                   "--id",
                                   std::to_string(id),
                                   "--peers",
                                   peers(),
                                   "--data-dir",
                                   data_dir(id),
                                   "--tick-ms",
                                   std::to_string(options_.tick_ms),
                                   "--election-ticks",
                                   std::to_string(options_.election_ticks),
                                   "--heartbeat-ticks",
                                   std::to_string(options_.heartbeat_ticks),
                                   "--log-level",
                                   options_.log_level};
  // No test here reads HTTP: a port fewer per node is a race fewer with the
  // clusters of tests running beside.
  args.push_back("--metrics-port");
  args.push_back("0");
  if (options_.snapshot_entries != 0) {
    args.push_back("--snapshot-entries");
    args.push_back(std::to_string(options_.snapshot_entries));
  }
  // These tests are of an unsharded cluster unless they say otherwise (the
  // binary's default is sharded; the quick start above runs on it).
  if (std::find(options_.extra_args.begin(), options_.extra_args.end(), "--shards") ==
      options_.extra_args.end()) {
    args.push_back("--shards");
    args.push_back("0");
  }
  args.insert(args.end(), options_.extra_args.begin(), options_.extra_args.end());
  return args;
}

client::Options Cluster::ClientOptions(std::chrono::milliseconds timeout) const {
  client::Options o;
  o.endpoints = addresses();
  o.timeout = timeout;
  o.attempt_timeout = std::min(timeout, std::chrono::milliseconds(1000));
  return o;
}

bool Cluster::Start() {
  bool ok = true;
  for (uint64_t id : ids()) ok = StartNode(id) && ok;
  return ok;
}

bool Cluster::StartNode(uint64_t id) {
  Proc& p = procs_.at(id);
  if (p.pid > 0) return false;
  const std::vector<std::string> args = Args(id);
  const int fd = open(log_path(id).c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) return false;
  std::string banner = "=== cluster: start #" + std::to_string(++p.starts) + ":";
  for (const std::string& a : args) banner += " " + a;
  banner += "\n";
  (void)!write(fd, banner.data(), banner.size());
  p.pid = Spawn(args, fd, dir_);
  close(fd);
  p.paused = false;
  return p.pid > 0;
}

int Cluster::WaitExit(uint64_t id, Clock::duration timeout) {
  Proc& p = procs_.at(id);
  if (p.pid <= 0) return 0;
  const int status = WaitPid(p.pid, timeout);
  if (status != -1) Reaped(id, status);
  return status;
}

void Cluster::Reaped(uint64_t id, int status) {
  Proc& p = procs_.at(id);
  p.pid = -1;
  p.last_status = status;
  // Say in the node's log how it ended: a crash or an outside signal shows.
  std::ofstream log(log_path(id), std::ios::app);
  if (WIFSIGNALED(status)) {
    log << "=== cluster: node exited on signal " << WTERMSIG(status) << "\n";
  } else if (WIFEXITED(status)) {
    log << "=== cluster: node exited with code " << WEXITSTATUS(status) << "\n";
  }
}

int Cluster::Kill(uint64_t id, int sig) {
  Proc& p = procs_.at(id);
  if (p.pid <= 0) return 0;
  kill(p.pid, sig);
  if (sig == SIGSTOP) {
    p.paused = true;
    return -1;
  }
  if (sig == SIGCONT) {
    p.paused = false;
    return -1;
  }
  if (sig != SIGKILL && sig != SIGTERM) return -1;
  if (p.paused) kill(p.pid, SIGCONT);  // a stopped process handles SIGTERM only once continued
  p.paused = false;
  int status = WaitExit(id, std::chrono::seconds(sig == SIGTERM ? 60 : 30));
  if (status == -1) {
    std::fprintf(stderr, "cluster: node %llu ignored signal %d; killing it\n",
                 static_cast<unsigned long long>(id), sig);
    kill(p.pid, SIGKILL);
    WaitExit(id, std::chrono::seconds(30));
    status = -1;
  }
  return status;
}

bool Cluster::Restart(uint64_t id) {
  if (procs_.at(id).pid > 0) Kill(id, SIGKILL);
  return StartNode(id);
}

bool Cluster::alive(uint64_t id) {
  Proc& p = procs_.at(id);
  if (p.pid <= 0) return false;
  int status = 0;
  if (waitpid(p.pid, &status, WNOHANG) == p.pid) {
    Reaped(id, status);
    return false;
  }
  return true;
}

bool Cluster::paused(uint64_t id) const { return procs_.at(id).paused; }

std::optional<NodeStatus> Cluster::Status(uint64_t id) {
  const client::NodeReport r = status_client_->Status(address(id));
  if (!r.reachable) return std::nullopt;
  return r.status;
}

std::map<uint64_t, NodeStatus> Cluster::StatusOfLiveNodes() {
  std::map<uint64_t, NodeStatus> out;
  for (uint64_t id : ids()) {
    if (!alive(id) || paused(id)) continue;
    std::optional<NodeStatus> st = Status(id);
    if (st) out[id] = *st;
  }
  return out;
}

uint64_t Cluster::WaitForLeader(Clock::duration timeout) {
  uint64_t leader = 0;
  WaitUntil(
      [&] {
        size_t live = 0;
        for (uint64_t id : ids()) live += alive(id) && !paused(id) ? 1 : 0;
        const std::map<uint64_t, NodeStatus> all = StatusOfLiveNodes();
        if (all.empty() || all.size() != live) return false;
        const NodeStatus& first = all.begin()->second;
        for (const auto& [id, st] : all) {
          if (st.leader == 0 || st.leader != first.leader || st.term != first.term) return false;
          if ((st.role == "leader") != (id == st.leader)) return false;
        }
        if (all.count(first.leader) == 0) return false;
        leader = first.leader;
        return true;
      },
      timeout);
  return leader;
}

bool Cluster::WaitUntil(const std::function<bool()>& condition, Clock::duration timeout) {
  const Clock::time_point deadline = Clock::now() + timeout;
  while (true) {
    if (condition()) return true;
    if (Clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

std::string Cluster::LogTail(uint64_t id, size_t lines) const { return Tail(log_path(id), lines); }

void Cluster::DumpLogs() const {
  for (const auto& entry : procs_) {
    if (entry.second.starts == 0) continue;
    std::fprintf(stderr, "----- node %llu (%s), last lines of %s -----\n%s",
                 static_cast<unsigned long long>(entry.first), address(entry.first).c_str(),
                 log_path(entry.first).c_str(), LogTail(entry.first, 40).c_str());
  }
  std::fprintf(stderr, "----- end of node logs -----\n");
}

// ---------------------------------------------------------------------------
// One-shot runs

RunResult RunKvstore(const std::vector<std::string>& args, std::chrono::milliseconds timeout) {
  RunResult result;
  std::vector<std::string> full = {KvstoreBinary()};
  full.insert(full.end(), args.begin(), args.end());
  const TempDir cwd;
  const std::string path = cwd.path() + "/output";
  const int fd = open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) return result;
  const pid_t pid = Spawn(full, fd, cwd.path());
  int status = WaitPid(pid, timeout);
  if (status == -1) {
    kill(pid, SIGKILL);
    WaitPid(pid, std::chrono::seconds(30));
  } else if (WIFEXITED(status)) {
    result.exit_code = WEXITSTATUS(status);
  }
  lseek(fd, 0, SEEK_SET);
  char buf[4096];
  ssize_t n = 0;
  while ((n = read(fd, buf, sizeof(buf))) > 0) result.output.append(buf, static_cast<size_t>(n));
  close(fd);
  return result;
}

// ---------------------------------------------------------------------------
// RawConnection

RawConnection::RawConnection(const std::string& address) : socket_(ctx_, zmq::socket_type::dealer) {
  socket_.set(zmq::sockopt::linger, 0);
  socket_.connect("tcp://" + address);
}

void RawConnection::Send(std::string_view bytes) {
  socket_.send(zmq::buffer(bytes.data(), bytes.size()), zmq::send_flags::none);
}

void RawConnection::SendFrames(const std::vector<std::string>& frames) {
  for (size_t i = 0; i < frames.size(); ++i) {
    socket_.send(zmq::buffer(frames[i]),
                 i + 1 < frames.size() ? zmq::send_flags::sndmore : zmq::send_flags::none);
  }
}

std::optional<std::string> RawConnection::Receive(std::chrono::milliseconds timeout) {
  zmq::pollitem_t item{static_cast<void*>(socket_), 0, ZMQ_POLLIN, 0};
  zmq::poll(&item, 1, timeout);
  if (!(item.revents & ZMQ_POLLIN)) return std::nullopt;
  // A reply to a REQ-style request carries an empty delimiter frame first.
  std::string last;
  bool more = true;
  bool any = false;
  while (more) {
    zmq::message_t msg;
    if (!socket_.recv(msg, any ? zmq::recv_flags::none : zmq::recv_flags::dontwait)) break;
    any = true;
    last = msg.to_string();
    more = msg.more();
  }
  if (!any) return std::nullopt;
  return last;
}

std::optional<net::ClientReply> RawConnection::Call(const net::ClientRequest& request,
                                                    std::chrono::milliseconds timeout) {
  Send(net::EncodeClientRequest(request));
  const Clock::time_point deadline = Clock::now() + timeout;
  while (Clock::now() < deadline) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    std::optional<std::string> bytes = Receive(std::max(left, std::chrono::milliseconds(1)));
    if (!bytes) continue;
    net::ClientReply reply;
    if (!net::DecodeClientReply(*bytes, &reply).ok()) return std::nullopt;
    if (reply.id == request.id) return reply;
  }
  return std::nullopt;
}

}  // namespace kv::test
