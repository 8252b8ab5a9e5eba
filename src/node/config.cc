#include "node/config.h"

#include <algorithm>
#include <memory>
#include <set>
#include <sstream>

#include "net/curve_keys.h"

namespace kv::node {

namespace {

bool ParseUint(const std::string& s, uint64_t* v) {
  if (s.empty() || s.size() > 19) return false;
  uint64_t r = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    r = r * 10 + static_cast<uint64_t>(c - '0');
  }
  *v = r;
  return true;
}

// Creates `path` and every missing parent, each made durable in its parent.
Status MakeDirs(storage::Env* env, const std::string& path) {
  std::string dir = !path.empty() && path[0] == '/' ? "/" : "";
  std::stringstream ss(path);
  std::string part;
  while (std::getline(ss, part, '/')) {
    if (part.empty()) continue;
    const std::string parent = dir.empty() ? "." : dir;
    dir += (dir.empty() || dir == "/" ? "" : "/") + part;
    Status s = env->CreateDir(dir);
    if (s.ok()) s = env->SyncDir(parent);
    if (!s.ok()) return s;
  }
  return Status::OK();
}

}  // namespace

Status ParsePeerKeys(const std::string& text, std::map<raft::NodeId, std::string>* keys,
                     std::map<raft::NodeId, HostPort>* addresses) {
  std::stringstream lines(text);
  std::string line;
  for (int n = 1; std::getline(lines, line); ++n) {
    std::stringstream words(line);
    std::string id_text, key, address, extra;
    if (!(words >> id_text) || id_text[0] == '#') continue;
    uint64_t id = 0;
    HostPort hp;
    const bool has_address = static_cast<bool>(words >> key >> address);
    if (key.empty() || (words >> extra) || !ParseUint(id_text, &id) || id == 0 ||
        !net::IsZ85Key(key) || (has_address && !ParseHostPort(address, &hp).ok())) {
      return Status::InvalidArgument("peer keys line " + std::to_string(n) +
                                     ": want \"ID PUBLIC-KEY [HOST:PORT]\" (a node id, a "
                                     "40-character Z85 key and optionally its client address)");
    }
    if (!keys->emplace(id, key).second) {
      return Status::InvalidArgument("peer keys line " + std::to_string(n) + ": node " +
                                     std::to_string(id) + " appears twice");
    }
    if (has_address) (*addresses)[id] = hp;
  }
  return Status::OK();
}

std::string MemberRecord(const HostPort& address, const std::string& key) {
  return key.empty() ? address.ToString() : address.ToString() + " " + key;
}

Status ParseMemberRecord(const std::string& record, HostPort* address, std::string* key) {
  const size_t space = record.find(' ');
  key->clear();
  if (space != std::string::npos) {
    *key = record.substr(space + 1);
    if (!net::IsZ85Key(*key)) {
      return Status::InvalidArgument("\"" + record + "\" is not HOST:PORT [PUBLIC-KEY]");
    }
  }
  return ParseHostPort(record.substr(0, space), address);
}

bool IsLoopbackHost(const std::string& host) {
  return host == "localhost" || host == "::1" || host == "[::1]" || host.rfind("127.", 0) == 0;
}

Status ParseHostPort(const std::string& text, HostPort* hp) {
  const size_t colon = text.rfind(':');
  uint64_t port = 0;
  if (colon == std::string::npos || colon == 0 || !ParseUint(text.substr(colon + 1), &port) ||
      port == 0 || port > 65535) {
    return Status::InvalidArgument("\"" + text + "\" is not host:port");
  }
  hp->host = text.substr(0, colon);
  hp->port = static_cast<int>(port);
  return Status::OK();
}

Status ParsePeers(const std::string& text, std::map<raft::NodeId, HostPort>* peers) {
  peers->clear();
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ',')) {
    const size_t eq = item.find('=');
    uint64_t id = 0;
    HostPort hp;
    if (eq == std::string::npos || !ParseUint(item.substr(0, eq), &id)) {
      return Status::InvalidArgument("peer \"" + item + "\" is not ID=host:port");
    }
    if (id == 0) return Status::InvalidArgument("node id 0 is reserved; ids start at 1");
    Status s = ParseHostPort(item.substr(eq + 1), &hp);
    if (!s.ok()) return s;
    if (!peers->emplace(id, hp).second) {
      return Status::InvalidArgument("node id " + std::to_string(id) + " appears twice in --peers");
    }
  }
  if (peers->empty()) return Status::InvalidArgument("--peers is empty");
  return Status::OK();
}

Status NodeConfig::Finish() {
  if (id == 0) return Status::InvalidArgument("node id must be given and non-zero");
  if (peers.count(id) == 0) {
    return Status::InvalidArgument("node id " + std::to_string(id) + " is not in --peers");
  }
  std::set<std::string> addresses;
  for (const auto& [node, hp] : peers) {
    if (!addresses.insert(hp.ToString()).second) {
      return Status::InvalidArgument("address " + hp.ToString() + " appears twice in --peers");
    }
    if (hp.port + kEventsPortOffset > 65535) {
      return Status::InvalidArgument("port " + std::to_string(hp.port) +
                                     " leaves no room for the derived Raft and PUB ports");
    }
  }
  if (metrics_port < 0) {
    // A client port near the top leaves the default no room: none then.
    metrics_port =
        client_port() + kMetricsPortOffset <= 65535 ? client_port() + kMetricsPortOffset : 0;
  }
  if (metrics_port > 65535) {
    return Status::InvalidArgument("--metrics-port " + std::to_string(metrics_port) +
                                   " is not a port");
  }
  if (data_dir.empty()) data_dir = "data/node-" + std::to_string(id);
  if (listen_host.empty()) listen_host = self().host;
  if (curve()) {
    if (!net::PublicKeyOf(secret_key, &public_key)) {
      return Status::InvalidArgument("--key does not hold a valid secret key");
    }
    auto own = peer_keys.find(id);
    if (own != peer_keys.end() && own->second != public_key) {
      return Status::InvalidArgument("--peer-keys gives node " + std::to_string(id) +
                                     " another public key than the one of its --key");
    }
    peer_keys[id] = public_key;
    for (const auto& [node, hp] : peers) {
      if (peer_keys.count(node) == 0) {
        return Status::InvalidArgument("--peer-keys has no key for node " + std::to_string(node));
      }
    }
  } else if (!peer_keys.empty() || !client_keys_file.empty()) {
    return Status::InvalidArgument(
        "--peer-keys and --client-keys need --key (this node's secret key)");
  }
  if (!curve() && !insecure && !IsLoopbackHost(listen_host)) {
    // As Redis's protected mode: without authentication, anyone who reaches
    // the ports can read and write every key and speak Raft to the node.
    return Status::InvalidArgument(
        "refusing to listen on " + listen_host +
        ": nothing authenticates peers or clients, so anyone who can reach the ports could "
        "read and write every key and disrupt the cluster; listen on a loopback address, or "
        "pass --insecure if every host that can reach them is trusted");
  }
  if (tick_ms <= 0 || heartbeat_ticks <= 0 || election_ticks <= heartbeat_ticks) {
    return Status::InvalidArgument(
        "timing: need tick-ms > 0 and election-ticks > heartbeat-ticks > 0");
  }
  if (workers < 1) return Status::InvalidArgument("--workers must be at least 1");
  if (wal_segment_bytes < (1 << 20)) {
    return Status::InvalidArgument("--wal-segment-mb must be at least 1");
  }
  if (max_key_bytes == 0 || max_value_bytes == 0) {
    return Status::InvalidArgument("key and value limits must be positive");
  }
  if (sharded()) {
    if (shards > kMaxShards) {
      return Status::InvalidArgument("--shards must be at most " + std::to_string(kMaxShards));
    }
    // A shard gets min(replicas, nodes) replicas: more once nodes join.
    if (replicas < 1) return Status::InvalidArgument("--replicas must be at least 1");
  }
  return Status::OK();
}

Status ReadDataDirLayout(storage::Env* env, const std::string& data_dir, uint32_t* shards,
                         uint32_t* replicas, bool* found) {
  std::string have;
  Status s = storage::ReadFileToString(env, data_dir + "/IDENTITY", &have);
  *found = s.ok();
  if (s.IsNotFound()) return Status::OK();
  if (!s.ok()) return s;
  // ClaimDataDir's format: an unsharded dir has no "shards" line.
  *shards = 0;
  std::istringstream lines(have);
  std::string line;
  while (std::getline(lines, line)) {
    std::istringstream words(line);
    std::string shards_word, replicas_word;
    uint32_t n = 0, r = 0;
    if (words >> shards_word >> n >> replicas_word >> r && shards_word == "shards" &&
        replicas_word == "replicas") {
      *shards = n;
      *replicas = r;
    }
  }
  return Status::OK();
}

Status ClaimDataDir(storage::Env* env, const NodeConfig& cfg) {
  Status s = MakeDirs(env, cfg.data_dir);
  if (!s.ok()) return s;
  const std::string path = cfg.data_dir + "/IDENTITY";
  std::string want = "node " + std::to_string(cfg.id) + "\ncluster " + cfg.cluster + "\n";
  // The layout of a sharded cluster is fixed at creation: a data dir made with
  // other settings holds other groups.
  if (cfg.sharded()) {
    want +=
        "shards " + std::to_string(cfg.shards) + " replicas " + std::to_string(cfg.replicas) + "\n";
  }
  // Which keys go to which shard: by their hash tags (kv/ring.h) since this
  // line; a sharded dir without it placed keys by their whole bytes.
  const std::string before_tags = want;
  if (cfg.sharded()) want += "keys by hash tag\n";
  std::string have;
  s = storage::ReadFileToString(env, path, &have);
  if (s.ok()) {
    if (have == want) return Status::OK();
    if (cfg.sharded() && have == before_tags) {
      return Status::InvalidArgument(
          "data dir " + cfg.data_dir +
          " was written by a kvstore that placed keys on shards by their whole bytes; this one "
          "places a key holding {...} by the part in braces (docs/protocol.md, \"Key to "
          "shard\"), so it would look for such keys in the wrong shard. Run the version that "
          "wrote it, or move the data to a new cluster through a client (scan, then put)");
    }
    std::string says = have.substr(0, 80);
    std::replace(says.begin(), says.end(), '\n', ' ');
    while (!says.empty() && says.back() == ' ') says.pop_back();
    return Status::InvalidArgument("data dir " + cfg.data_dir + " belongs to another node or " +
                                   "cluster (its IDENTITY says \"" + says +
                                   "\"); use the right --id/--cluster/--shards/--replicas "
                                   "or another --data-dir");
  }
  if (!s.IsNotFound()) return s;
  // Written like every durable file: a synced temporary file renamed over.
  const std::string tmp = path + ".tmp";
  std::unique_ptr<storage::WritableFile> file;
  s = env->OpenWritable(tmp, &file);
  if (s.ok()) s = file->Truncate(0);
  if (s.ok()) s = file->Append(want);
  if (s.ok()) s = file->Sync();
  file.reset();
  if (s.ok()) s = env->Rename(tmp, path);
  if (s.ok()) s = env->SyncDir(cfg.data_dir);
  if (!s.ok()) return Status::IOError("cannot write " + path + ": " + s.message());
  return Status::OK();
}

}  // namespace kv::node
