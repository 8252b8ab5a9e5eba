// NodeContext: what the parts of a running node share: its configuration,
// the groups it hosts, the members' addresses, the time in ticks, and the
// services every part uses (loop, storage, workers, events, peer transport).
// Node owns it and every service in it, and wires the parts to it.
// Thread safety: loop thread only, except the services' own thread-safe calls
// (EventLoop::Post, WorkerPool::Post, Backups) and each group's strand-owned fields.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <map>
#include <vector>

#include "common/logging.h"
#include "net/event_loop.h"
#include "net/peer_transport.h"
#include "net/publisher.h"
#include "node/backups.h"
#include "node/config.h"
#include "node/group.h"
#include "node/metrics.h"
#include "node/worker_pool.h"
#include "storage/node_storage.h"

namespace kv::node {

// A learner this close to the leader's log is promoted to voter (by
// Membership in an unsharded cluster, by ShardManager's rebalancing).
constexpr raft::Index kPromoteLag = 1000;

// The wall clock in ms since the Unix epoch: what writes are stamped with and
// what reads compare deadlines against (docs/protocol.md, "Expiry").
inline uint64_t WallClockMs() {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                   std::chrono::system_clock::now().time_since_epoch())
                                   .count());
}

inline bool Contains(const std::vector<raft::NodeId>& ids, raft::NodeId id) {
  return std::find(ids.begin(), ids.end(), id) != ids.end();
}

struct NodeContext {
  explicit NodeContext(const NodeConfig& config) : cfg(config) {}

  const NodeConfig& cfg;
  net::EventLoop* loop = nullptr;
  storage::NodeStorage* storage = nullptr;
  WorkerPool* workers = nullptr;
  net::Publisher* events = nullptr;
  net::PeerTransport* peers = nullptr;
  Metrics* metrics = nullptr;
  Backups* backups = nullptr;

  Groups groups;
  std::map<raft::NodeId, HostPort> members;  // every member's client address
  // With CURVE: the public key (Z85) of every member whose key is known:
  // --peer-keys, then the cluster's configuration (member records).
  std::map<raft::NodeId, std::string> member_keys;
  uint64_t ticks = 0;

  // The record of a member (config.h, MemberRecord): its address, and its
  // key when known.
  std::string RecordOf(raft::NodeId node, const HostPort& address) const {
    auto k = member_keys.find(node);
    return MemberRecord(address, k == member_keys.end() ? "" : k->second);
  }
  // Learns a member's key from a record; a record without one changes nothing.
  void LearnKey(raft::NodeId node, const std::string& key) {
    if (!key.empty()) member_keys[node] = key;
  }

  // Connects the peer transport to a member in `members` (not to itself);
  // with CURVE, only to a member whose public key is known.
  void ConnectPeer(raft::NodeId node) {
    auto it = members.find(node);
    if (node == cfg.id || it == members.end()) return;
    std::string key;
    if (cfg.curve()) {
      auto k = member_keys.find(node);
      if (k == member_keys.end()) {
        KV_LOG(kError) << "no public key known for node " << node
                       << " (--peer-keys, or kvctl member add --pub): not connecting";
        return;
      }
      key = k->second;
    }
    peers->Connect(node, it->second.host, it->second.port + kRaftPortOffset, key);
  }
};

}  // namespace kv::node
