// Cluster: a test harness that runs real `kvstore` processes on loopback.
//
// A Cluster picks free ports (each node's client port, and the derived Raft,
// PUB and default metrics ports at +1000, +2000 and +3000), makes a temp
// directory with one data dir and one log file per node, and starts each
// node with fork/exec, fast Raft timing and no metrics port. Tests kill,
// stop, continue and restart nodes, poll their status, and wait on conditions with deadlines (never
// fixed sleeps).
//
// Cleanup is unconditional: the destructor SIGKILLs every node it started
// and removes the temp directory; the nodes also get PR_SET_PDEATHSIG, so a
// crashed or killed test binary takes its nodes with it. When the test that
// owns the cluster has failed (a Catch2 assertion failed, or an exception is
// unwinding), the destructor first prints the tail of every node's log.
// Set KV_CLUSTER_KEEP=1 to keep the temp directory for inspection.
//
// Thread safety: none; use a Cluster from the test's main thread only (a
// node's PR_SET_PDEATHSIG fires when the thread that forked it exits). Other
// threads may talk to the nodes with their own clients, using addresses().
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>
#include <zmq.hpp>

#include "kvstore/client.h"
#include "kvstore/node_status.h"
#include "net/client_codec.h"

namespace kv::test {

using Clock = std::chrono::steady_clock;

// The kvstore binary under test: $KVSTORE_BIN if set, else the one CMake built.
std::string KvstoreBinary();

struct ClusterOptions {
  int nodes = 3;
  // Fast timing: 20 ms ticks, elections after 200..400 ms, heartbeats every 40 ms.
  int tick_ms = 20;
  int election_ticks = 10;
  int heartbeat_ticks = 2;
  uint64_t snapshot_entries = 0;  // 0: the node's default
  std::string log_level = "info";
  std::vector<std::string> extra_args;  // appended to every node's command line
  // How long one status request may take before the node counts as silent.
  std::chrono::milliseconds status_timeout{1000};
  // Start nodes as the README's quick start does: `kvstore PORT ID` on the
  // default ports 8080.. with the default data dirs ./data/node-ID (in the
  // temp directory) and no other flags. The constructor throws if those
  // ports are taken.
  bool quick_start = false;
};

class Cluster {
 public:
  explicit Cluster(ClusterOptions options = {});
  ~Cluster();
  Cluster(const Cluster&) = delete;
  Cluster& operator=(const Cluster&) = delete;

  // Starts every node. False if a process could not be started.
  bool Start();
  // Starts node `id` (which must not be running) with its usual arguments;
  // its output is appended to its log file.
  bool StartNode(uint64_t id);
  // Sends `sig` to node `id`. For SIGKILL and SIGTERM, waits for the process
  // to exit (SIGKILL follows if SIGTERM has no effect within a minute) and
  // returns its wait status; for other signals returns -1 at once. SIGSTOP
  // and SIGCONT mark the node as stopped / running again.
  int Kill(uint64_t id, int sig);
  // Kills node `id` with SIGKILL if it runs, then starts it again on the
  // same ports and data dir.
  bool Restart(uint64_t id);

  // True while the process exists (it is reaped here if it exited).
  bool alive(uint64_t id);
  // True between Kill(id, SIGSTOP) and Kill(id, SIGCONT).
  bool paused(uint64_t id) const;

  // One node's status, or nullopt if it did not answer within status_timeout.
  std::optional<NodeStatus> Status(uint64_t id);
  // The status of every node that is alive, not paused, and answers.
  std::map<uint64_t, NodeStatus> StatusOfLiveNodes();
  // Waits until every live, unpaused node answers status and they all agree
  // on one leader (itself among them, in role leader) and one term. Returns
  // the leader's id, or 0 at the timeout.
  uint64_t WaitForLeader(Clock::duration timeout);
  // Polls `condition` until it holds (true) or the timeout passes (false).
  bool WaitUntil(const std::function<bool()>& condition, Clock::duration timeout);

  std::vector<uint64_t> ids() const;
  int port(uint64_t id) const;             // client port; Raft +1000, PUB +2000
  std::string address(uint64_t id) const;  // 127.0.0.1:port
  std::vector<std::string> addresses() const;
  std::string peers() const;  // the --peers value
  std::string data_dir(uint64_t id) const;
  std::string log_path(uint64_t id) const;
  const std::string& dir() const { return dir_; }
  std::chrono::milliseconds election_timeout() const;
  // The command line node `id` is started with (argv[0] included).
  std::vector<std::string> Args(uint64_t id) const;

  // Client options for this cluster: every node's address, the given
  // per-operation deadline and a shorter per-attempt timeout.
  client::Options ClientOptions(std::chrono::milliseconds timeout) const;

  // The last `lines` lines of node `id`'s log.
  std::string LogTail(uint64_t id, size_t lines) const;
  // Prints the tail of every node's log to stderr.
  void DumpLogs() const;

 private:
  struct Proc {
    int port = 0;
    pid_t pid = -1;  // -1: not running
    bool paused = false;
    int starts = 0;
    int last_status = -1;  // wait status of the last exit, -1 if none yet
  };

  int WaitExit(uint64_t id, Clock::duration timeout);
  void Reaped(uint64_t id, int status);

  ClusterOptions options_;
  std::string dir_;
  std::map<uint64_t, Proc> procs_;
  std::unique_ptr<client::Client> status_client_;
  int failures_at_start_ = 0;
};

// A temp directory, removed with everything in it at destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// True if P, P+1000, P+2000 and P+3000 can all be bound on 127.0.0.1 right now.
bool PortsFree(int port);

// Finds `count` client ports P (consecutive, so all 3*count ports differ)
// such that P, P+1000, P+2000 and P+3000 can all be bound on 127.0.0.1 right now,
// below the kernel's ephemeral range. Empty if none was found.
std::vector<int> FindFreePorts(int count);

// Runs kvstore with `args` (argv[0] excluded) to completion, with output
// captured. exit_code is -1 if it did not exit within the timeout (it is
// then killed) or died of a signal.
struct RunResult {
  int exit_code = -1;
  std::string output;
};
RunResult RunKvstore(const std::vector<std::string>& args, std::chrono::milliseconds timeout);

// A plain DEALER connection to one node's client port, for raw requests.
class RawConnection {
 public:
  explicit RawConnection(const std::string& address);
  // Sends one frame / several frames as one message.
  void Send(std::string_view bytes);
  void SendFrames(const std::vector<std::string>& frames);
  // The next reply (the last frame of the next message, so that an echoed
  // empty delimiter frame is skipped), or nullopt at the timeout.
  std::optional<std::string> Receive(std::chrono::milliseconds timeout);
  // Sends `request` and waits for the reply with its id (others are
  // dropped). nullopt at the timeout or on an undecodable reply.
  std::optional<net::ClientReply> Call(const net::ClientRequest& request,
                                       std::chrono::milliseconds timeout);

 private:
  zmq::context_t ctx_{1};
  zmq::socket_t socket_;
};

}  // namespace kv::test
