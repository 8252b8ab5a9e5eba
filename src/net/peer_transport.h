// PeerTransport: a node's connections to the other members, for Raft
// messages and the node-level notices (leader hints, removed notices).
//
// Inbound: one ROUTER that every peer's DEALER connects to; each ZeroMQ
// message is the peer's routing id and then one frame per encoded message.
// Outbound: a DEALER per peer. Raft messages queued in a loop pass go to
// each peer as one ZeroMQ message (many groups' messages in one send), and a
// failed send is reported per group so that Raft backs off. Snapshots stream
// in chunks over a second DEALER per peer with a short queue, so heartbeats
// and appends never wait behind them (net/snapshot_stream.h).
// Thread safety: none; the node's loop thread owns every socket here.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <vector>
#include <zmq.hpp>

#include "common/status.h"
#include "net/snapshot_stream.h"
#include "net/socket_monitor.h"
#include "raft/types.h"

namespace kv::net {

class PeerTransport {
 public:
  // Inbound frames over max_frame bytes cost their sender the connection.
  PeerTransport(zmq::context_t* ctx, int64_t max_frame, size_t snapshot_chunk_bytes);

  // Makes the transport use CURVE with this node's key pair (Z85): the
  // inbound ROUTER becomes a CURVE server of ZAP domain kZapDomain (a
  // ZapHandler decides who may connect), and every connection to a peer
  // authenticates the peer by its public key. REQUIRES: before Bind and
  // Connect.
  void UseCurve(const std::string& public_key, const std::string& secret_key);
  static constexpr const char* kZapDomain = "raft";

  // Binds the inbound ROUTER. InvalidArgument when the endpoint is taken.
  Status Bind(const std::string& endpoint);
  // The inbound socket's ZMQ_FD, for the event loop.
  int fd() const;
  // Reads the waiting messages (up to a slice of bytes: the event loop calls
  // again while it returns true) and calls on_frame for each of their frames,
  // with the user id the ZapHandler gave the sender's connection (empty
  // without CURVE). Returns whether anything was read.
  bool Drain(const std::function<void(std::string_view frame, std::string_view user)>& on_frame);

  // Connects to a peer's Raft port (no-op when connected already); with
  // CURVE, `server_key` is the peer's public key (Z85).
  void Connect(raft::NodeId node, const std::string& host, int port,
               const std::string& server_key = "");
  void Disconnect(raft::NodeId node);
  // Reads what each connection to a peer reported (once a tick): whether
  // it is up, and with CURVE whether the peer refused this node's key at
  // the handshake. Connects again to each peer that refused it a while ago
  // (ZeroMQ never retries a refused one): a joining node dials the members
  // before they have recorded its key.
  void WatchLinks();
  // Peers whose connection is up (handshake done), as WatchLinks last read.
  size_t connected() const;

  // Queues a Raft message for its peer; a snapshot starts a chunked stream.
  void Queue(const raft::Message& m);
  // Sends every peer's queue. For each peer whose send failed, reports each
  // group that had messages in it.
  void Flush(const std::function<void(raft::NodeId to, raft::GroupId group)>& unreachable);
  // Sends one encoded frame to one peer at once; false if it could not.
  bool SendNow(raft::NodeId to, std::string_view frame);
  // Sends one encoded frame to every connected peer.
  void Broadcast(std::string_view frame);
  // Moves the snapshot streams along; `done` reports a finished stream.
  void PumpSnapshots(const SnapshotSender::Done& done);

  // Messages that came in empty or undecodable, for the log's rate limit.
  uint64_t CountBadMessage() { return ++bad_messages_; }

 private:
  struct Batch {
    std::vector<std::string> frames;      // encoded messages
    std::vector<std::string_view> views;  // of frames, for the send (kept to reuse its memory)
    std::vector<raft::GroupId> groups;    // the group of each, to report a failed send
  };

  // Where a peer is, and the monitor of the connection to it: whether it is
  // up, and with CURVE whether the peer refused this node's key.
  struct Link {
    std::string host;
    int port = 0;
    std::string server_key;
    SocketMonitor monitor;  // of the peer's DEALER
    bool up = false;
    std::chrono::steady_clock::time_point refused_at{};  // epoch: not refused
  };

  zmq::context_t* ctx_;
  std::string public_key_, secret_key_;  // CURVE, when set
  std::map<raft::NodeId, Link> links_;
  zmq::socket_t in_;                                    // ROUTER, peers' DEALERs
  std::map<raft::NodeId, zmq::socket_t> out_;           // DEALER to each peer
  std::map<raft::NodeId, zmq::socket_t> snapshot_out_;  // DEALER to each peer, snapshots
  std::map<raft::NodeId, Batch> batches_;
  SnapshotSender snapshot_sender_;
  uint64_t bad_messages_ = 0;
};

}  // namespace kv::net
