// kvstore: one node of a kvstore cluster.
//
//   kvstore 8080 1          node 1 of the default local cluster
//   kvstore --id 2 --peers 1=10.0.0.1:8080,2=10.0.0.2:8080,3=10.0.0.3:8080
//   kvstore restore BACKUP --id 2 --peers ... --data-dir DIR   (node/restore.h)
//
// Exit codes: 0 after a clean stop (SIGTERM/SIGINT), 1 on a storage failure
// while running, 2 on a configuration error (nothing touched).
#include <malloc.h>
#include <signal.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <thread>

#include "common/logging.h"
#include "common/thread_name.h"
#include "kv/layout.h"
#include "net/curve_keys.h"
#include "node/config.h"
#include "node/node.h"
#include "node/restore.h"

namespace {

int ConfigError(const std::string& what) {
  std::fprintf(stderr, "kvstore: %s\n", what.c_str());
  return 2;
}

// Values of up to a few MiB are copied several times on their way from the
// socket to the map. glibc hands each such buffer out as a fresh mmap and
// trims freed heap above 128 KiB, so every copy page-faulted anew: a 1 MiB
// write spent most of its time in the kernel (p50 19-21 ms on one node,
// 7-8 ms with these settings). Keep buffers up to 4 MiB on the heap, and up
// to 32 MiB of freed heap for reuse before giving it back.
void KeepLargeBuffersOnTheHeap() {
  mallopt(M_MMAP_THRESHOLD, 4 << 20);
  mallopt(M_TRIM_THRESHOLD, 32 << 20);
}

// kvstore restore: makes a new member's data dir from a backup, then exits.
int Restore(int argc, char** argv) {
  CLI::App app{
      "kvstore restore: make the data dir of a member of a new cluster from a backup written by "
      "`kvctl snapshot save`. Run it on every member with the same BACKUP and --peers, then start "
      "the members as usual (with --shards/--replicas of the backup when it is sharded)."};
  std::string backup, peers;
  kv::node::NodeConfig cfg;
  app.add_option("backup", backup, "The backup file")->required()->check(CLI::ExistingFile);
  app.add_option("--id", cfg.id, "This member's id in the new cluster")->required();
  app.add_option("--peers", peers, "Every member of the new cluster as ID=HOST:PORT,...")
      ->required();
  app.add_option("--data-dir", cfg.data_dir,
                 "The data dir to create (default ./data/node-ID); must not exist or be empty");
  app.add_option("--cluster", cfg.cluster, "The new cluster's name (default: the backup's)");
  app.name("kvstore restore");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e);
    return code == 0 ? 0 : 2;
  }
  kv::Status s = kv::node::ParsePeers(peers, &cfg.peers);
  std::string summary;
  if (s.ok()) {
    s = kv::node::RestoreDataDir(kv::storage::Env::Posix(), cfg, app.count("--cluster") > 0, backup,
                                 &summary);
  }
  if (s.IsInvalidArgument()) return ConfigError(s.message());
  if (!s.ok()) {
    std::fprintf(stderr, "kvstore: restore failed: %s\n", s.ToString().c_str());
    return 1;
  }
  std::printf("%s\n", summary.c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc > 1 && std::string(argv[1]) == "restore") return Restore(argc - 1, argv + 1);
  KeepLargeBuffersOnTheHeap();
  CLI::App app{
      "kvstore: a node of a replicated key-value store (Raft, ZeroMQ, msgpack).\n"
      "Quick start, a local 3-node cluster:\n"
      "  kvstore 8080 1 & kvstore 8081 2 & kvstore 8082 3 &\n"
      "A new member from a backup: kvstore restore --help"};
  app.set_config("--config", "", "Read options from a TOML/INI file (same names as the flags)");

  int port = 0;
  uint64_t id = 0;
  std::string peers = kv::kDefaultPeers;
  std::string log_level = "info";
  kv::node::NodeConfig cfg;
  bool no_fsync = false;

  app.add_option("port", port, "Client port (the positional form: kvstore PORT ID)");
  app.add_option("id", id, "Node id (the positional form: kvstore PORT ID)");
  app.add_option("--id", id, "This node's id (>= 1); must appear in --peers");
  app.add_option("--port", port, "Client port; defaults to this node's port in --peers");
  app.add_option("--peers", peers,
                 "Every member as ID=HOST:PORT,... (client addresses; Raft uses PORT+1000 and "
                 "events PORT+2000)")
      ->capture_default_str();
  app.add_option("--join", cfg.join,
                 "Join a running cluster through this member's client address (host:port); "
                 "then --peers may name only this node, and 'kvctl member add' admits it");
  app.add_option("--cluster", cfg.cluster, "Cluster name; a data dir serves one cluster")
      ->capture_default_str();
  app.add_option("--data-dir", cfg.data_dir, "Data directory (default ./data/node-ID)");
  app.add_option("--metrics-port", cfg.metrics_port,
                 "HTTP port of /metrics (Prometheus), /healthz and /readyz (default: the client "
                 "port + 3000; 0: none)");
  app.add_option("--listen", cfg.listen_host,
                 "Host/IP to bind (default: this node's host in --peers; 0.0.0.0 for all)");
  app.add_flag("--insecure", cfg.insecure,
               "Allow a non-loopback --listen address although nothing authenticates peers or "
               "clients (only on a network where every host that can reach the ports is trusted)");
  std::string key_file, peer_keys_file;
  app.add_option("--key", key_file,
                 "This node's secret key file (kvctl keygen NAME writes NAME.key): every port "
                 "then speaks CurveZMQ and admits only known keys")
      ->check(CLI::ExistingFile);
  app.add_option("--peer-keys", peer_keys_file,
                 "The founding members' public keys, one \"ID PUBLIC-KEY [HOST:PORT]\" line each "
                 "(with --key; the address is needed for the member --join names)")
      ->check(CLI::ExistingFile);
  app.add_option("--client-keys", cfg.client_keys_file,
                 "Clients' public keys and roles, one \"ROLE PUBLIC-KEY [name]\" line each, ROLE "
                 "read, write or admin (with --key; read again on SIGHUP)")
      ->check(CLI::ExistingFile);
  app.add_option("--tick-ms", cfg.tick_ms, "Raft tick in milliseconds")->capture_default_str();
  app.add_option("--election-ticks", cfg.election_ticks,
                 "Election timeout in ticks (randomized up to twice that)")
      ->capture_default_str();
  app.add_option("--heartbeat-ticks", cfg.heartbeat_ticks, "Leader heartbeat interval in ticks")
      ->capture_default_str();
  app.add_flag("--no-fsync", no_fsync,
               "Do not fdatasync the WAL (fast, but a machine crash loses acknowledged writes)");
  app.add_option("--max-key-bytes", cfg.max_key_bytes, "Largest key accepted")
      ->capture_default_str();
  app.add_option("--max-value-bytes", cfg.max_value_bytes, "Largest value accepted")
      ->capture_default_str();
  app.add_option("--snapshot-entries", cfg.snapshot_entries,
                 "Take a snapshot after this many entries since the last one")
      ->capture_default_str();
  uint64_t wal_segment_mb = cfg.wal_segment_bytes >> 20;
  app.add_option("--wal-segment-mb", wal_segment_mb, "Preallocated size of each WAL segment")
      ->capture_default_str();
  app.add_option("--workers", cfg.workers, "Threads applying entries and serving reads")
      ->capture_default_str();
  app.add_option("--watch-history-changes", cfg.watch_history_changes,
                 "Recent changes each shard keeps for watches to start and resume from")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--watch-history-bytes", cfg.watch_history_bytes,
                 "Bytes of keys and values of those changes, at most")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  cfg.shards = kv::node::kDefaultShards;
  CLI::Option* shards_option =
      app.add_option("--shards", cfg.shards,
                     "Shards (Raft groups) the key space is cut into, fixed when the cluster is "
                     "created; 0 keeps every key in one group. Without it, a data dir keeps the "
                     "layout it was created with")
          ->capture_default_str();
  CLI::Option* replicas_option =
      app.add_option("--replicas", cfg.replicas,
                     "Replicas of each shard (sharded clusters; at most the number of nodes)")
          ->capture_default_str();
  app.add_option("--log-level", log_level, "debug, info, warn or error")->capture_default_str();

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e);
    return code == 0 ? 0 : 2;
  }

  if (log_level == "debug") {
    kv::SetLogLevel(kv::LogLevel::kDebug);
  } else if (log_level == "warn") {
    kv::SetLogLevel(kv::LogLevel::kWarn);
  } else if (log_level == "error") {
    kv::SetLogLevel(kv::LogLevel::kError);
  } else if (log_level != "info") {
    return ConfigError("--log-level must be debug, info, warn or error");
  }

  if (!cfg.join.empty() && app.count("--peers") == 0) {
    // Joining: this node's own address is all it needs to start with.
    if (id == 0 || port == 0) return ConfigError("--join needs --id and --port");
    peers = std::to_string(id) + "=" + (cfg.listen_host.empty() ? "127.0.0.1" : cfg.listen_host) +
            ":" + std::to_string(port);
  }
  kv::Status s = kv::node::ParsePeers(peers, &cfg.peers);
  if (!s.ok()) return ConfigError(s.message());
  cfg.id = id;
  cfg.fsync = !no_fsync;
  cfg.wal_segment_bytes = wal_segment_mb << 20;
  if (id != 0 && port != 0 && cfg.peers.count(id) != 0 && cfg.peers.at(id).port != port) {
    return ConfigError("port " + std::to_string(port) + " does not match node " +
                       std::to_string(id) + "'s address " + cfg.peers.at(id).ToString() +
                       " in --peers");
  }
  if (!key_file.empty()) {
    std::string error;
    if (!kv::net::ReadKeyFile(key_file, &cfg.secret_key, &error)) return ConfigError(error);
  }
  if (!peer_keys_file.empty()) {
    std::ifstream in(peer_keys_file);
    std::stringstream text;
    text << in.rdbuf();
    s = kv::node::ParsePeerKeys(text.str(), &cfg.peer_keys, &cfg.peer_key_addresses);
    if (!s.ok()) return ConfigError(peer_keys_file + ": " + s.message());
  }
  s = cfg.Finish();
  if (!s.ok()) return ConfigError(s.message());
  if (shards_option->count() == 0) {
    // An existing data dir keeps its layout: one made unsharded stays so.
    uint32_t shards = cfg.shards, replicas = cfg.replicas;
    bool found = false;
    s = kv::node::ReadDataDirLayout(kv::storage::Env::Posix(), cfg.data_dir, &shards, &replicas,
                                    &found);
    if (!s.ok()) return ConfigError(s.message());
    if (found) {
      cfg.shards = shards;
      if (replicas_option->count() == 0) cfg.replicas = replicas;
    }
  }
  kv::SetLogPrefix("node " + std::to_string(cfg.id));

  // Signals go to a dedicated thread (blocked everywhere else), which asks
  // the node to stop (the loop finishes its round and the WAL its syncs) or,
  // on SIGHUP, to read --client-keys again.
  sigset_t handled;
  sigemptyset(&handled);
  sigaddset(&handled, SIGTERM);
  sigaddset(&handled, SIGINT);
  sigaddset(&handled, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &handled, nullptr);
  signal(SIGPIPE, SIG_IGN);

  kv::node::Node node(cfg);
  s = node.Start();
  if (!s.ok()) {
    if (s.IsInvalidArgument()) return ConfigError(s.message());
    std::fprintf(stderr, "kvstore: cannot start: %s\n", s.ToString().c_str());
    return 1;
  }
  std::thread signal_thread([&] {
    kv::NameThisThread("kv-signal");
    int sig = 0;
    while (sigwait(&handled, &sig) == 0 && sig == SIGHUP) node.RequestReload();
    node.RequestStop();
  });
  s = node.Run();
  // Wake the signal thread if the node stopped on its own.
  pthread_kill(signal_thread.native_handle(), SIGTERM);
  signal_thread.join();
  if (!s.ok()) {
    std::fprintf(stderr, "kvstore: stopped on error: %s\n", s.ToString().c_str());
    return 1;
  }
  return 0;
}
