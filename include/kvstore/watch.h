// Watcher: every change to a range of keys, in log order, each once, from a
// log index on, through node deaths and restarts (docs/protocol.md,
// "Watches").
//
// A watch is one stream per shard (one in an unsharded cluster), each served
// by one replica of its shard at a time over a DEALER socket of its own; the
// streams' events are merged as they arrive, each shard's in its log's
// order. A stream moves to another replica, resuming after the last batch it
// had, when its node answers UNAVAILABLE or BUSY, when a batch is missing
// (its `after` is not the previous batch's `upto`), or when its node says
// nothing for kSilence (nodes send progress every second); a node without a
// replica of the shard REDIRECTs it to one. Every replica applies the same
// log, so a move neither skips nor repeats a change, as long as the new node
// still keeps the changes the stream needs: else the watch ends with
// kCompacted (read the range again, then watch from the read's index).
//
// The replicas come from the shard map the Client fetches at the start;
// secure clusters are reached with the Client's credentials and the keys it
// learned, as the Client reaches them.
//
// Thread safety: none. Use a Watcher from the thread that uses its Client,
// which must outlive it.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "kvstore/client.h"

namespace kv::client {

// A change to a watched key.
struct WatchEvent {
  enum Type { kPut, kDelete, kExpire };  // kExpire: removed at its deadline

  Type type = kPut;
  std::string key;
  std::string value;          // a put's, unless the watch is keys only
  uint64_t index = 0;         // the log index (of its shard's log) of the entry that made it
  uint64_t create_index = 0;  // a put: the key's create_index
  uint32_t shard = 0;         // 0 in an unsharded cluster
};

// A stream started on a node: at the watch's start, and at every move.
struct WatchMove {
  uint32_t shard = 0;  // 0 in an unsharded cluster
  std::string endpoint;
  std::string why;  // "start", or why it left the node before, e.g. "no word from HOST:PORT for 3s"
};

struct WatchOptions {
  // The keys [start, end), or from start on without an end.
  std::string start;
  std::optional<std::string> end;
  bool keys_only = false;  // leave the values out
  // The first log index to send changes from, by shard (0 in an unsharded
  // cluster); a shard not named starts with the next entry its node applies.
  // To resume a watch: Position() + 1 for each shard.
  std::map<uint32_t, uint64_t> from_index;
  // Hears each stream's start and every move (from the constructor and Next).
  std::function<void(const WatchMove&)> on_move;
};
// A watch of the keys that start with `prefix` (every key for an empty one).
WatchOptions PrefixWatch(const std::string& prefix);

// Why a watch ended, or could not start.
struct WatchStatus {
  // kOk while it runs. kCompacted: a stream's next change is no longer kept
  // (see shard, oldest). kError, kDenied: a node refused the watch (a bad
  // range or shard; the key's role). kUnavailable: it did not start within
  // the Client's timeout, or no node of a shard can be reached (secure
  // clusters: no known key).
  Code code = Code::kOk;
  std::string error;
  uint32_t shard = 0;   // the stream that ended it
  uint64_t oldest = 0;  // kCompacted: the first index its node still kept
  bool ok() const { return code == Code::kOk; }
};

class Watcher {
 public:
  // A node that says nothing for this long is taken for dead.
  static constexpr std::chrono::seconds kSilence{3};

  // Starts the watch: fetches the shard map through `client`, opens every
  // stream and waits, up to the client's timeout, until each has heard from
  // its node, so that a read made after this returns is covered (Position()
  // says from which index on). On failure status() says why.
  Watcher(Client& client, WatchOptions options);
  // Cancels the streams.
  ~Watcher();
  Watcher(const Watcher&) = delete;
  Watcher& operator=(const Watcher&) = delete;

  // The next change, waiting up to `timeout` for it; nullopt when none came
  // in time, when a signal interrupted the wait, or when the watch has ended
  // (status() is not ok; the changes that came before its end are returned
  // first).
  std::optional<WatchEvent> Next(std::chrono::milliseconds timeout);
  // By shard (0 in an unsharded cluster): the index up to which Next has
  // returned every change.
  std::map<uint32_t, uint64_t> Position() const;
  const WatchStatus& status() const;
  // Whether the cluster is sharded (events and moves name their shard).
  bool sharded() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace kv::client
