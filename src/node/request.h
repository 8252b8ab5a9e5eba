// Pending: a client request waiting for its answer, and the replies and
// events a worker strand hands back to the loop thread.
// Thread safety: plain values.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "kv/scan.h"
#include "kvstore/events.h"
#include "net/client_codec.h"
#include "node/reply_budget.h"
#include "raft/types.h"

namespace kv::node {

struct Pending {
  std::string routing;     // the client's ROUTER identity frame
  bool delimiter = false;  // the client is a REQ socket: echo an empty frame
  uint64_t id = 0;
  int op = -1;  // its net::ClientOp, -1 while (or if) it could not be read
  std::chrono::steady_clock::time_point received;  // for the latency metrics
  raft::Term term = 0;                             // writes: the term the entry was proposed in
  std::string key;                                 // reads: the key to read
  std::optional<kv::ScanSpec> scan;                // a scan instead (its range and page size)
  bool backup = false;                             // the start of a backup instead (node/backups.h)
  // Reads: their claim on the connection's reply budget, held until the
  // last copy of the request is gone (node/reply_budget.h).
  std::shared_ptr<ReplyBudget::Reservation> reservation;
};

// A reply a worker encoded, for the loop thread to send.
struct EncodedReply {
  EncodedReply() = default;
  EncodedReply(Pending p, net::ReplyStatus s, std::string b)
      : to(std::move(p)), status(s), bytes(std::move(b)) {}

  Pending to;
  net::ReplyStatus status = net::ReplyStatus::kOk;  // counted in the metrics
  std::string bytes;
  // A watch's message (node/watch_hub.h): charged to the connection's reply
  // budget until ZeroMQ has sent it; `ends_watch` on the watch's last.
  std::shared_ptr<ReplyBudget::Reservation> watch_charge;
  bool ends_watch = false;
};

// Replies and events a worker produced, for the loop thread to send.
struct Outgoing {
  std::vector<EncodedReply> replies;
  std::vector<Event> events;
  // The metadata group's member keys and placement rule, when either
  // changed, at this applied index.
  std::optional<std::map<std::string, std::string>> member_keys;
  uint32_t placement_rule = 0;
  uint64_t member_version = 0;
};

}  // namespace kv::node
