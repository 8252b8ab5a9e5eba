// NodeConfig: everything a kvstore node needs to know at start, and the
// checks that refuse a wrong configuration before any data is touched.
//
// Addresses: each member is named by its client address host:port (what
// clients and REDIRECT replies use). Its Raft port is always client port +
// 1000 and its event (PUB) port client port + 2000: every member derives any
// other member's ports the same way.
// Thread safety: plain values.
#pragma once

#include <algorithm>
#include <cstdint>
#include <map>
#include <string>

#include "common/status.h"
#include "kv/layout.h"
#include "raft/types.h"
#include "storage/env.h"

namespace kv::node {

constexpr uint32_t kMaxShards = 65536;
// Entries per Raft append message, in bytes (at least one entry).
constexpr int64_t kMaxAppendBytes = 1 << 20;
// Snapshots travel to followers in chunks of this size.
constexpr int64_t kSnapshotChunkBytes = 1 << 20;

struct HostPort {
  std::string host;
  int port = 0;
  std::string ToString() const { return host + ":" + std::to_string(port); }
};

struct NodeConfig {
  raft::NodeId id = 0;
  // Every initial member's client address, this node included.
  std::map<raft::NodeId, HostPort> peers;
  std::string cluster = "default";  // a data dir belongs to one cluster
  std::string data_dir;             // default ./data/node-<id>
  std::string listen_host;          // default: the host of this node's address
  std::string join;                 // host:port of a member, to join an existing cluster
  // Listen on a non-loopback address although nothing authenticates peers
  // and clients: for a network where every host that can reach the ports
  // is trusted.
  bool insecure = false;
  // CURVE on the peer port: this node's secret key (Z85; empty: no CURVE),
  // its public key (derived by Finish) and every member's public key. Peers
  // then authenticate each other by key and a peer message's sender must be
  // the member whose key its connection was made with.
  std::string secret_key;
  std::string public_key;
  std::map<raft::NodeId, std::string> peer_keys;
  // The client addresses --peer-keys gave beside some keys: how a joining
  // node finds the key of the member it joins through.
  std::map<raft::NodeId, HostPort> peer_key_addresses;
  // With CURVE: the file of client keys and their roles (node/access.h),
  // read at start and again on SIGHUP.
  std::string client_keys_file;

  // HTTP port of /metrics, /healthz and /readyz: -1 (default) is the client
  // port + kMetricsPortOffset, 0 serves none.
  int metrics_port = -1;

  int tick_ms = 50;
  int election_ticks = 10;  // election timeout 500 ms, randomized up to 1 s
  int heartbeat_ticks = 2;
  bool fsync = true;
  uint64_t wal_segment_bytes = 64 << 20;  // preallocated size of each WAL segment
  size_t max_key_bytes = kDefaultMaxKeyBytes;
  size_t max_value_bytes = kDefaultMaxValueBytes;
  uint64_t snapshot_entries = 50000;  // take a snapshot after this many applied entries
  int workers = 2;                    // threads that apply entries and serve reads
  // Bytes of entries waiting for this node's WAL past which its writes are
  // shed with BUSY: followers may commit faster than a leader's own disk
  // takes entries, and the leader holds each until it is written. Not a
  // flag; tests lower it.
  uint64_t max_unwritten_bytes = 64 << 20;
  // Bytes of replies a client connection, and the node in all, may have
  // queued unread before reads get BUSY (node/reply_budget.h). Not flags.
  uint64_t max_connection_reply_bytes = 64 << 20;
  uint64_t max_node_reply_bytes = 512 << 20;
  // What each group keeps of its recent changes for watches to start and
  // resume from (node/watch_hub.h).
  size_t watch_history_changes = 100000;
  size_t watch_history_bytes = 32 << 20;
  // Sharding, fixed when the cluster is created: the key space is cut into
  // `shards` Raft groups of `replicas` members each, placed by the hash ring
  // (kv/ring.h) over the founding members. 0 shards: one group holds every key.
  // (The kvstore binary's default is kDefaultShards; this struct's is 0.)
  uint32_t shards = 0;
  uint32_t replicas = 3;

  const HostPort& self() const { return peers.at(id); }
  int client_port() const { return self().port; }
  int raft_port() const { return client_port() + kRaftPortOffset; }
  int pub_port() const { return client_port() + kEventsPortOffset; }

  bool sharded() const { return shards > 0; }
  bool curve() const { return !secret_key.empty(); }
  // The largest frame a client may send: the largest valid request (a cas
  // carries a value and an expected value) plus room for the map around it.
  // ZeroMQ drops the connection of a client that sends more.
  int64_t max_client_frame() const {
    return static_cast<int64_t>(max_key_bytes + 2 * max_value_bytes + 4096);
  }
  // The largest frame a peer may send: an append of kMaxAppendBytes of
  // entries (the last of which may be the largest a client can write) or one
  // snapshot chunk, plus room around them. Anything more is not from a
  // member: ZeroMQ drops the connection before the node allocates it.
  int64_t max_peer_frame() const {
    return std::max<int64_t>(kMaxAppendBytes + max_client_frame(), kSnapshotChunkBytes) +
           (64 << 10);
  }

  // Fills in defaults and checks consistency: id present in peers, ports in
  // range and distinct, sharding settings possible, a non-loopback listen
  // address only with `insecure`. InvalidArgument with one
  // line saying what is wrong.
  Status Finish();
};

// Whether `host` names this machine's loopback interface only (localhost,
// 127.0.0.0/8, ::1).
bool IsLoopbackHost(const std::string& host);

// Parses a peer keys file: one "ID PUBLIC-KEY-Z85 [HOST:PORT]" per line (the
// member's client address is optional; clients' --server-keys use the same
// file); blank lines and lines starting with # are skipped. InvalidArgument
// naming the line for anything else, a duplicate id or an invalid key.
Status ParsePeerKeys(const std::string& text, std::map<raft::NodeId, std::string>* keys,
                     std::map<raft::NodeId, HostPort>* addresses);

// A member as the cluster's configuration records it (in a membership
// change, a metadata key, a leader hint): "HOST:PORT", followed in a secure
// cluster by " PUBLIC-KEY-Z85".
std::string MemberRecord(const HostPort& address, const std::string& key);
// InvalidArgument when `record` is neither form; *key is empty without one.
Status ParseMemberRecord(const std::string& record, HostPort* address, std::string* key);

// Parses "1=host:port,2=host:port". InvalidArgument on a malformed list,
// a duplicate or zero id.
Status ParsePeers(const std::string& text, std::map<raft::NodeId, HostPort>* peers);
Status ParseHostPort(const std::string& text, HostPort* hp);

// What a new cluster gets without --shards.
constexpr uint32_t kDefaultShards = 16;

// The shards and replicas an existing data dir was created with (its
// IDENTITY), for a node started without --shards: a data dir keeps its
// layout. *found is false when the dir has no IDENTITY yet.
Status ReadDataDirLayout(storage::Env* env, const std::string& data_dir, uint32_t* shards,
                         uint32_t* replicas, bool* found);

// Claims the data directory for this node and cluster, creating it when new.
// InvalidArgument if it belongs to another node id or cluster.
// The IDENTITY file is written through `env` and synced, like every durable
// file. IOError if the data dir cannot be created or written.
Status ClaimDataDir(storage::Env* env, const NodeConfig& cfg);

}  // namespace kv::node
