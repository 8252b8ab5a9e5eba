#include "net/peer_transport.h"

#include <algorithm>

#include "common/logging.h"
#include "net/event_loop.h"
#include "net/peer_codec.h"
#include "net/zmq_util.h"

namespace kv::net {

namespace {

// Queue lengths: Raft messages per peer (Raft resends what is lost), and
// snapshot chunks per peer (a few chunks in memory at most).
constexpr int kPeerQueue = 10000;
constexpr int kSnapshotQueue = 4;
constexpr int kInboundQueue = 100000;
// How soon a DEALER reconnects to a peer that went away, and at most.
constexpr int kReconnectMs = 100;
constexpr int kReconnectMaxMs = 1000;
// How long a closed connection to a removed peer may still send what it has.
constexpr int kDisconnectLingerMs = 200;
// What one Drain reads at most (in bytes; at least one message), so that
// a backlog of large appends is taken in slices between which the loop
// ticks and sends (net/event_loop.h).
constexpr size_t kMaxBytesPerDrain = 8 << 20;
// How long after a peer refused this node's key it is dialled again.
constexpr std::chrono::seconds kRefusedRetry(1);
// A snapshot stream that makes no progress this long is abandoned.
constexpr std::chrono::seconds kSnapshotStall(30);

}  // namespace

PeerTransport::PeerTransport(zmq::context_t* ctx, int64_t max_frame, size_t snapshot_chunk_bytes)
    : ctx_(ctx),
      in_(*ctx, zmq::socket_type::router),
      snapshot_sender_(snapshot_chunk_bytes, kSnapshotStall) {
  in_.set(zmq::sockopt::linger, 0);
  in_.set(zmq::sockopt::affinity, kPeerIoThread);
  in_.set(zmq::sockopt::maxmsgsize, max_frame);
  in_.set(zmq::sockopt::rcvhwm, kInboundQueue);
}

void PeerTransport::UseCurve(const std::string& public_key, const std::string& secret_key) {
  public_key_ = public_key;
  secret_key_ = secret_key;
  MakeCurveServer(in_, secret_key_, kZapDomain);
}

Status PeerTransport::Bind(const std::string& endpoint) { return BindSocket(in_, endpoint); }

int PeerTransport::fd() const { return in_.get(zmq::sockopt::fd); }

bool PeerTransport::Drain(
    const std::function<void(std::string_view frame, std::string_view user)>& on_frame) {
  bool found = false;
  size_t bytes = 0;
  std::vector<zmq::message_t> frames;
  const DrainSlice slice;
  while (bytes < kMaxBytesPerDrain && (!found || !slice.over()) &&
         ReceiveFrames(in_, &frames, "raft socket")) {
    found = true;
    for (const zmq::message_t& f : frames) bytes += f.size();
    // The peer's routing id, then one frame per message.
    if (frames.size() < 2) {
      if (ShouldLogSampled(CountBadMessage())) {
        KV_LOG(kWarn) << "dropped an empty peer message (" << bad_messages_ << " so far)";
      }
      continue;
    }
    const std::string_view user = UserId(frames[1]);
    for (size_t i = 1; i < frames.size(); ++i) on_frame(frames[i].to_string_view(), user);
  }
  return found;
}

void PeerTransport::Connect(raft::NodeId node, const std::string& host, int port,
                            const std::string& server_key) {
  if (out_.count(node) != 0) return;
  auto dealer = [&](int hwm) {
    zmq::socket_t sock(*ctx_, zmq::socket_type::dealer);
    if (!secret_key_.empty()) {
      sock.set(zmq::sockopt::curve_serverkey, server_key);
      sock.set(zmq::sockopt::curve_publickey, public_key_);
      sock.set(zmq::sockopt::curve_secretkey, secret_key_);
    }
    sock.set(zmq::sockopt::linger, 0);
    sock.set(zmq::sockopt::affinity, kPeerIoThread);
    sock.set(zmq::sockopt::sndhwm, hwm);
    // Do not queue for a peer that is down: Raft resends what matters.
    sock.set(zmq::sockopt::immediate, true);
    sock.set(zmq::sockopt::reconnect_ivl, kReconnectMs);
    sock.set(zmq::sockopt::reconnect_ivl_max, kReconnectMaxMs);
    return sock;
  };
  const std::string endpoint = "tcp://" + host + ":" + std::to_string(port);
  zmq::socket_t out = dealer(kPeerQueue);
  Link link{host, port, server_key, SocketMonitor(), false, {}};
  int events = ZMQ_EVENT_HANDSHAKE_SUCCEEDED | ZMQ_EVENT_DISCONNECTED;
  if (!secret_key_.empty()) {
    events |= ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL | ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL |
              ZMQ_EVENT_HANDSHAKE_FAILED_AUTH;
  }
  // The socket has not connected yet: the monitor sees its first handshake.
  Status s = link.monitor.Start(ctx_, out, events);
  if (!s.ok()) KV_LOG(kWarn) << "connection to node " << node << " unmonitored: " << s.ToString();
  out.connect(endpoint);
  zmq::socket_t snapshots = dealer(kSnapshotQueue);
  snapshots.connect(endpoint);
  out_.emplace(node, std::move(out));
  snapshot_out_.emplace(node, std::move(snapshots));
  links_[node] = std::move(link);
}

void PeerTransport::WatchLinks() {
  const auto now = std::chrono::steady_clock::now();
  std::vector<raft::NodeId> retry;
  for (auto& entry : links_) {
    const raft::NodeId node = entry.first;
    Link& link = entry.second;
    link.monitor.Read([&](int event) {
      if (event == ZMQ_EVENT_HANDSHAKE_SUCCEEDED) {
        link.up = true;
      } else if (event == ZMQ_EVENT_DISCONNECTED) {
        link.up = false;
      } else if (link.refused_at == std::chrono::steady_clock::time_point{}) {
        KV_LOG(kDebug) << "node " << node << " refused this node's key; retrying in "
                       << kRefusedRetry.count() << " s";
        link.refused_at = now;
      }
    });
    if (link.refused_at != std::chrono::steady_clock::time_point{} &&
        now - link.refused_at >= kRefusedRetry) {
      retry.push_back(node);
    }
  }
  for (raft::NodeId node : retry) {
    Link link = std::move(links_.at(node));
    out_.erase(node);  // LINGER 0: what it queued was never delivered anyway
    snapshot_out_.erase(node);
    links_.erase(node);
    Connect(node, link.host, link.port, link.server_key);
  }
}

size_t PeerTransport::connected() const {
  size_t up = 0;
  for (const auto& entry : links_) up += entry.second.up ? 1 : 0;
  return up;
}

void PeerTransport::Disconnect(raft::NodeId node) {
  auto it = out_.find(node);
  if (it != out_.end()) {
    // What was just sent (a removed notice, say) still leaves: ZeroMQ's I/O
    // thread gets a moment to send it after the close.
    it->second.set(zmq::sockopt::linger, kDisconnectLingerMs);
    out_.erase(it);
  }
  snapshot_out_.erase(node);
  batches_.erase(node);
  links_.erase(node);
}

void PeerTransport::Queue(const raft::Message& m) {
  if (m.type == raft::MessageType::kSnapshot) {
    snapshot_sender_.Start(m, std::chrono::steady_clock::now());
    return;
  }
  Batch& batch = batches_[m.to];
  batch.frames.push_back(EncodeRaftMessage(m));
  batch.groups.push_back(m.group);
}

void PeerTransport::Flush(
    const std::function<void(raft::NodeId to, raft::GroupId group)>& unreachable) {
  for (auto& [to, batch] : batches_) {
    if (batch.frames.empty()) continue;
    auto it = out_.find(to);
    batch.views.assign(batch.frames.begin(), batch.frames.end());
    const bool sent = it != out_.end() && SendFrames(it->second, batch.views.data(),
                                                     batch.views.size(), "send to peer");
    if (!sent) {
      std::sort(batch.groups.begin(), batch.groups.end());
      batch.groups.erase(std::unique(batch.groups.begin(), batch.groups.end()), batch.groups.end());
      for (raft::GroupId group : batch.groups) unreachable(to, group);
    }
    batch.frames.clear();
    batch.views.clear();
    batch.groups.clear();
  }
}

bool PeerTransport::SendNow(raft::NodeId to, std::string_view frame) {
  auto it = out_.find(to);
  return it != out_.end() && SendFrames(it->second, {frame}, "send to peer");
}

void PeerTransport::Broadcast(std::string_view frame) {
  for (auto& [node, sock] : out_) SendFrames(sock, {frame}, "send to peer");
}

void PeerTransport::PumpSnapshots(const SnapshotSender::Done& done) {
  if (snapshot_sender_.idle()) return;
  snapshot_sender_.Pump(
      [this](raft::NodeId to, const std::string& frame) {
        auto it = snapshot_out_.find(to);
        return it != snapshot_out_.end() && SendFrames(it->second, {frame}, "snapshot chunk");
      },
      done, std::chrono::steady_clock::now());
}

}  // namespace kv::net
