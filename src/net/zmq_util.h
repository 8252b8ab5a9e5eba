// Guarded ZeroMQ sends and receives: the one place that turns ZeroMQ's
// exceptions into results, so that no caller repeats the try/catch.
// Thread safety: as the socket's (its owner thread only).
#pragma once

#include <initializer_list>
#include <string>
#include <string_view>
#include <vector>
#include <zmq.hpp>

#include "common/status.h"

namespace kv::net {

// A node's ZeroMQ context runs two I/O threads; sockets name theirs by
// ZMQ_AFFINITY (a bit mask, set before bind or connect). Raft traffic has its
// own, so that a flood of client bytes (32 clients x 256 x 64 KiB is 512 MiB)
// never holds a heartbeat back behind it.
constexpr int kIoThreads = 2;
constexpr uint64_t kClientIoThread = uint64_t{1} << 0;  // clients, events
constexpr uint64_t kPeerIoThread = uint64_t{1} << 1;    // Raft

// Binds the socket to `endpoint`. InvalidArgument (naming the endpoint) when
// it cannot listen there, for example because the port is taken.
Status BindSocket(zmq::socket_t& socket, const std::string& endpoint);

// Sends `frames` as one multipart message without blocking: all or nothing
// (once the first part is queued ZeroMQ queues the rest). False when the
// queue is full, there is no peer or ZeroMQ fails (logged at debug level as
// `what`): every caller's protocol copes with a lost message.
bool SendFrames(zmq::socket_t& socket, const std::string_view* frames, size_t count,
                const char* what);
inline bool SendFrames(zmq::socket_t& socket, std::initializer_list<std::string_view> frames,
                       const char* what) {
  return SendFrames(socket, frames.begin(), frames.size(), what);
}

// The same, with `last` as the final frame, handed over without a copy.
bool SendFrames(zmq::socket_t& socket, std::initializer_list<std::string_view> frames,
                zmq::message_t last, const char* what);

// Reads one waiting multipart message into *frames without blocking. False
// when none waits (or ZeroMQ fails, logged as `what`). ZMQ_FD's signal is
// edge-triggered: a drain calls this until it is false. A false answer has
// processed ZeroMQ's pending commands as a ZMQ_EVENTS check would, so the
// signal fires again for the next input; and a message costs no ZMQ_EVENTS
// check of its own (each is a poll and a getpid system call in libzmq).
bool ReceiveFrames(zmq::socket_t& socket, std::vector<zmq::message_t>* frames, const char* what);

// Makes `socket` a CURVE server with this secret key (Z85), whose
// connections the ZAP handler checks under `zap_domain`. Before bind.
void MakeCurveServer(zmq::socket_t& socket, const std::string& secret_key, const char* zap_domain);
// The user id the ZAP handler gave the connection `message` came over
// (ZeroMQ's "User-Id" property); empty without one.
std::string_view UserId(const zmq::message_t& message);

}  // namespace kv::net
