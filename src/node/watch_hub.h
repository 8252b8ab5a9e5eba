// WatchHub: one group's watches and the recent history they are served from
// (docs/protocol.md, "Watches").
//
// The history holds the changes of the last entries applied (bounded by
// count and bytes; whole entries are dropped, oldest first), so a watch
// may start, or resume after a reconnect, from any index it still covers:
// everything from first_index() on. A put's change shares the record the
// state machine wrote, so a key's value is not copied into the history.
//
// A watch is either live or behind. A live watch is indexed by its range
// and gets each change as it is applied: matching costs a hash lookup per
// distinct prefix length of the live prefix watches (and a comparison per
// live watch of a range that is not a prefix), not a look at every watch,
// so idle watches cost writes next to nothing. A behind watch (new, or
// paused because its connection had too many replies unread) reads the
// history from where it stopped, a batch at a time while its connection
// has room, until it reaches the last applied index and is live again; one
// whose next change is no longer in the history ends with COMPACTED. So a
// slow watcher never holds up writes nor other watchers, and never misses
// a change without being told.
//
// Each batch says it holds every matching change in (after, upto]: a
// client checks that a batch's `after` is the last one's `upto`, so that
// no lost message can go unnoticed, and resumes from upto + 1.
// Thread safety: none; the group's strand owns it.
#pragma once

#include <absl/container/flat_hash_map.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "kv/scan.h"
#include "kv/state_machine.h"
#include "net/client_codec.h"

namespace kv::node {

struct WatchLimits {
  // The node's are its flags (NodeConfig); these defaults are for tests.
  size_t history_changes = 100000;  // changes kept per group
  size_t history_bytes = 32 << 20;  // of their keys and values
  size_t batch_events = 1000;       // per message, at most (an entry's changes stay together)
  size_t batch_bytes = 1 << 20;     // per message, about (at least one entry's)
  // A live watch that heard nothing for this long gets an empty batch: it
  // learns how far the node has applied (and that it is alive).
  std::chrono::milliseconds progress{1000};
};

class WatchHub {
 public:
  using Clock = std::chrono::steady_clock;
  // A message for watch `handle`; `last`: the watch is over.
  struct Out {
    uint64_t handle = 0;
    net::WatchReply reply;
    bool last = false;
  };
  // Whether watch `handle`'s connection has room for another batch.
  using HasRoom = std::function<bool(uint64_t handle)>;

  // Starts with the state machine at `applied` (see Reset).
  explicit WatchHub(WatchLimits limits = {}, uint64_t applied = 0)
      : limits_(limits), applied_(applied), first_(applied + 1) {}

  // The state machine is at `applied` and what came before is unknown here
  // (a start, or a snapshot installed): the history restarts after it, and
  // a watch that still needed older changes ends with COMPACTED.
  void Reset(uint64_t applied, std::vector<Out>* out);
  // Entry `index` was applied, with these changes (none for entries that
  // change nothing); takes them, leaving *changes empty.
  void Applied(uint64_t index, std::vector<Change>* changes);

  // Starts watch `handle` (a new one, unique) on `range` (its keys_only
  // too), from `from_index` (0: the next entry applied); its first message
  // goes out at the next Deliver, even if empty.
  void Add(uint64_t handle, const ScanSpec& range, uint64_t from_index);
  // Ends a watch (the client cancelled it or went away); false if unknown.
  bool Remove(uint64_t handle);

  // Sends each watch what it has not had, up to the last applied index:
  // the live ones' changes and the behind ones' next batch from the
  // history (after an apply, and on a timer while some are behind).
  void Deliver(Clock::time_point now, const HasRoom& has_room, std::vector<Out>* out);
  // An empty batch to each watch that heard nothing for the progress
  // interval (on a timer); to one that is behind, one that claims nothing
  // new.
  void Progress(Clock::time_point now, const HasRoom& has_room, std::vector<Out>* out);
  // Whether some watch waits to read the history (Deliver has work even
  // without a new entry).
  bool has_behind() const { return !behind_.empty(); }

  size_t watches() const { return watches_.size(); }
  // The first index whose changes the history still holds (every one after
  // it too, up to applied()).
  uint64_t first_index() const { return first_; }
  uint64_t applied() const { return applied_; }
  size_t history_changes() const { return history_.size(); }
  uint64_t history_bytes() const { return history_bytes_; }

 private:
  struct Watch {
    ScanSpec range;
    std::optional<std::string> prefix;  // when the range is a prefix's
    uint64_t next = 0;                  // behind: the first index not yet read from the history
    uint64_t sent_upto = 0;             // the last batch's upto
    bool live = false;
    bool greeted = false;                  // its first message went out
    std::vector<net::WatchEvent> pending;  // live: matched, not yet sent
    Clock::time_point last_sent;
  };
  struct Item {
    uint64_t index;
    Change change;
  };

  static bool InRange(const Watch& w, std::string_view key);
  static net::WatchEvent EventOf(uint64_t index, const Change& c, bool keys_only);
  static size_t BytesOf(const Change& c);
  void MakeLive(uint64_t handle, Watch& w);
  void MakeBehind(uint64_t handle, Watch& w);
  // Reads the history for a behind watch: one batch.
  void CatchUp(uint64_t handle, Watch& w, Clock::time_point now, std::vector<Out>* out);
  void Send(uint64_t handle, Watch& w, uint64_t upto, std::vector<net::WatchEvent> events,
            Clock::time_point now, std::vector<Out>* out);
  void Compacted(uint64_t handle, std::vector<Out>* out);
  void Trim();

  WatchLimits limits_;
  uint64_t applied_ = 0;
  uint64_t first_ = 1;
  std::deque<Item> history_;
  uint64_t history_bytes_ = 0;

  std::map<uint64_t, Watch> watches_;
  std::set<uint64_t> behind_;
  std::set<uint64_t> dirty_;  // live watches with pending changes
  // Live watches by prefix, and the prefix lengths in use (with counts).
  absl::flat_hash_map<std::string, std::set<uint64_t>> by_prefix_;
  std::map<size_t, size_t> prefix_lengths_;
  std::set<uint64_t> live_ranges_;  // live watches of a range that is no prefix's
};

}  // namespace kv::node
