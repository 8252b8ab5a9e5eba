// StateMachine: one shard's key-value map, fed by committed Raft entries.
//
// Deterministic: every replica that applies the same commands in the same
// order holds the same map, the same client sessions and the same Digest().
// Client sessions make writes exactly-once: a command with a (client, seq)
// already applied is answered with the original result and not applied
// again. A session's writes are sequential (seq 1, 2, ...; one in flight): a
// seq below the last one applied is refused as stale. Sessions are bounded; the one least recently
// written is evicted first (deterministically, by log index).
// Every key carries its version: the log index of the write that created it
// and of the one that last changed it (as etcd's create and mod revisions).
// The keys are kept in order (kv/store.h), each in an immutable record, so
// a snapshot takes a view (TakeView) instead of a copy of the data.
// Expiry: a key may carry a deadline (the leader's wall clock plus a TTL).
// Each command carries the leader's clock; the state machine's clock is
// the largest applied, so it never goes back, and a key whose deadline it
// has reached is gone for every command (and removed when one touches it).
// Reads take the reader's clock too: a key hides once either clock reaches
// its deadline. The leader finds expired keys (ExpiredKeys) and proposes
// their removal (OpType::kExpire), which every replica applies alike.
// Thread safety: none; the node serialises access per shard. A StateView
// may be serialized on another thread while the state machine goes on.
#pragma once

#include <absl/container/btree_set.h>

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "common/status.h"
#include "kv/command.h"
#include "kv/record.h"
#include "kv/scan.h"
#include "kv/store.h"

namespace kv {

// A transaction's result is the branch that ran: kOk for success,
// kCasFailed for failure (a session keeps it, as it keeps a cas's).
enum class ApplyResult : uint8_t {
  kOk = 0,
  kNotFound = 1,
  kCasFailed = 2,
  kStaleSeq = 3,  // a seq below the session's last: not applied
};

const char* ApplyResultName(ApplyResult r);

// A change a command made to the keys, as watchers see it: the changes of
// one command come in the order it made them.
struct Change {
  enum class Kind : uint8_t { kPut, kDelete, kExpire };
  Kind kind = Kind::kPut;
  RecordRef record;  // kPut: the record written (its key, value, version, deadline)
  std::string key;   // kDelete, kExpire: the key removed
  std::string_view changed_key() const { return kind == Kind::kPut ? record->key() : key; }
};

// What one op of a transaction's branch found, in the branch's order.
struct TxnOpResult {
  ApplyResult result = ApplyResult::kOk;  // kNotFound: a del or get of an absent key
  RecordRef record;                       // a get's key, when found
};

// A point-in-time copy of a state machine for a snapshot, taken in time and
// memory linear in the number of keys but not in their bytes (the records
// are shared, see kv/record.h), and serialized on any thread while the
// state machine goes on applying.
class StateView {
 public:
  using Emit = std::function<Status(std::string_view piece)>;
  // The snapshot format StateMachine::Restore reads, in one string.
  std::string Serialize() const;
  // The same bytes handed to emit in pieces of about piece_bytes (a piece
  // holds whole keys, so a large value makes a larger one), so that they
  // can go to a file without ever being one string. Returns emit's first
  // error.
  Status SerializeTo(size_t piece_bytes, const Emit& emit) const;
  // The same bytes again, a piece at a time, resumable: appends the piece
  // that starts at *cursor (0: the first) to *out, about piece_bytes of it
  // (whole keys), and moves *cursor past it. True once the last piece is
  // out (then *cursor stays at the end). A cursor from an earlier call on
  // the same view gives the same piece again.
  bool SerializePiece(uint64_t* cursor, size_t piece_bytes, std::string* out) const;
  // The number of bytes Serialize and SerializeTo produce.
  uint64_t SerializedSize() const;

  // Whether SerializePiece can start at `cursor` (one it gave, or 0).
  bool ValidCursor(uint64_t cursor) const { return cursor <= records_.size() + 2; }
  uint64_t applied_index() const { return applied_index_; }
  uint64_t clock_ms() const { return clock_ms_; }
  size_t keys() const { return records_.size(); }

 private:
  friend class StateMachine;
  struct SessionRow {
    uint64_t client, seq, index;
    uint8_t result;
  };
  uint64_t applied_index_ = 0;
  uint64_t clock_ms_ = 0;
  std::vector<SessionRow> sessions_;
  std::vector<const Record*> records_;  // in key order, kept alive by pin_
  std::shared_ptr<const void> pin_;     // kv/store.h, Store::View
  std::map<uint64_t, std::string> members_;
};

class StateMachine {
 public:
  explicit StateMachine(size_t max_sessions = 100000) : max_sessions_(max_sessions) {}

  // Applies cmd, committed at `index` (> applied_index()). When (client, seq)
  // was applied before, sets *duplicate and returns the original result.
  // *decided_at (if given): the index of the write whose application gave
  // the result: `index`, the original's for a duplicate, 0 for a stale seq.
  // *changes (if given) gets what the command changed, in order: the keys
  // it wrote and removed, and those it found past their deadline and so
  // removed (a kExpire's, or a key a write found expired); a touch is no
  // change (only the deadline moves), nor is a duplicate.
  // *txn (if given) gets a transaction's results, one per op of the branch
  // that ran (none for a duplicate: they are not kept).
  ApplyResult Apply(uint64_t index, const Command& cmd, bool* duplicate,
                    uint64_t* decided_at = nullptr, std::vector<Change>* changes = nullptr,
                    std::vector<TxnOpResult>* txn = nullptr);
  // Index was applied but carried no command (a leader's no-op).
  void Skip(uint64_t index) { applied_index_ = index; }
  // A membership change at `index`: the member's client address, kept so that
  // a node restored from a snapshot still knows how to reach every member.
  // An empty address removes the member.
  void SetMember(uint64_t index, uint64_t node, const std::string& address);
  const std::map<uint64_t, std::string>& members() const { return members_; }

  // The key's record, or nullptr if it is absent or expired at now_ms (a
  // wall clock; the state machine's own clock if that is later).
  const Record* Find(std::string_view key, uint64_t now_ms = 0) const;
  // False if the key is absent or expired at the state machine's clock.
  // version (if given) gets the key's version.
  bool Get(std::string_view key, std::string* value, KeyVersion* version = nullptr) const;
  // Every key starting with `prefix`, with its value, in key order.
  std::map<std::string, std::string> ScanPrefix(std::string_view prefix) const;
  // The first page of spec's range: up to spec.limit keys and spec.max_bytes,
  // leaving out keys expired at now_ms (as in Find).
  ScanPage Scan(const ScanSpec& spec, uint64_t now_ms = 0) const;
  // Keys whose deadline is at or before now_ms (or the state machine's
  // clock), earliest first: up to max_keys of them, and no more than fit in
  // max_bytes (one key always does).
  std::vector<std::string> ExpiredKeys(uint64_t now_ms, size_t max_keys, size_t max_bytes) const;
  // The earliest deadline of any key, or 0 when no key has one.
  uint64_t next_deadline() const;
  // The largest leader clock applied (ms since the Unix epoch).
  uint64_t clock_ms() const { return clock_ms_; }

  uint64_t applied_index() const { return applied_index_; }
  size_t size() const { return data_.size(); }
  // Bytes of keys and values stored (what a snapshot of the data writes).
  uint64_t bytes() const { return data_bytes_; }
  size_t session_count() const { return sessions_.size(); }
  // An order-independent hash of the keys and values: replicas at the same
  // applied index must agree on it.
  uint64_t Digest() const { return digest_; }

  // The whole state (data, sessions, members, applied index) as a view to
  // serialize later, or as bytes now; and back. Restore returns Corruption on
  // malformed input and then leaves the state machine empty.
  StateView TakeView() const;
  // The data and the clock only, without client sessions and members: what
  // a backup keeps (a cluster restored from it starts with its own).
  StateView TakeDataView() const;
  std::string Serialize() const { return TakeView().Serialize(); }
  Status Restore(std::string_view bytes);

 private:
  struct Session {
    uint64_t seq = 0;
    uint64_t index = 0;  // where the session was last written
    ApplyResult result = ApplyResult::kOk;
  };
  // What a record adds to the digest.
  static uint64_t Hash(std::string_view key, std::string_view value, uint64_t deadline_ms);
  // Stores `value` as key's, with version v and the deadline (0: none);
  // returns the new record.
  const Record* PutValue(std::string_view key, std::string_view value, KeyVersion v,
                         uint64_t deadline_ms);
  // A put or a del of a command, stored and noted in *changes (if given).
  void Write(std::string_view key, std::string_view value, KeyVersion v, uint64_t deadline_ms,
             std::vector<Change>* changes);
  void Remove(const Record* r, Change::Kind why, std::vector<Change>* changes);
  // Erases key's record r.
  void EraseValue(const Record* r);
  // The key's record if it is live at the state machine's clock, else
  // nullptr; an expired one is removed first (a kExpire change).
  const Record* LiveRecord(std::string_view key, std::vector<Change>* changes);
  // Runs a transaction at `index`: returns the branch that ran.
  ApplyResult ApplyTxn(uint64_t index, const Command& cmd, std::vector<Change>* changes,
                       std::vector<TxnOpResult>* results);
  void RecordSession(uint64_t client, uint64_t seq, uint64_t index, ApplyResult result);
  void Clear();

  const size_t max_sessions_;
  Store data_;
  std::unordered_map<uint64_t, Session> sessions_;
  std::map<uint64_t, uint64_t> sessions_by_index_;  // index -> client, for eviction
  std::map<uint64_t, std::string> members_;         // node id -> client address
  // The keys that have a deadline, by deadline.
  absl::btree_set<std::pair<uint64_t, std::string>> deadlines_;
  uint64_t applied_index_ = 0;
  uint64_t clock_ms_ = 0;
  uint64_t digest_ = 0;
  uint64_t data_bytes_ = 0;
};

}  // namespace kv
