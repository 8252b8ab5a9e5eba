// Client codec: msgpack encodings of the client protocol v1 (docs/protocol.md):
// a request is one msgpack map, a reply another. Also the body of a key
// event (the event protocol), until it moves to the typed events.
// Decoders never trust their input: anything malformed, of the wrong type,
// or over the limits gives InvalidArgument with the reason, never a crash.
// Thread safety: pure functions.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "kv/command.h"
#include "kv/layout.h"
#include "kv/scan.h"
#include "kvstore/node_status.h"

namespace kv::net {

// ---- Client protocol v1 ----------------------------------------------------

enum class ClientOp : uint8_t {
  kGet,
  kPut,
  kDelete,
  kCas,
  kStatus,
  kTransferLeader,
  kMemberAdd,
  kMemberRemove,
  kShards,  // the shard map (docs/protocol.md, "Shard map reply")
  kScan,    // a page of a key range (docs/protocol.md, "Scans")
  kTouch,   // a new deadline for a key, its value kept (docs/protocol.md, "Expiry")
  kBackup,  // a shard's whole state, in pieces (docs/protocol.md, "Backups")
  kTxn,     // compares and two branches of ops, atomic (docs/protocol.md, "Transactions")
  kWatch,   // a stream of the changes to a range (docs/protocol.md, "Watches")
  kCancel,  // ends a watch of the connection's
};
constexpr ClientOp kLastClientOp = ClientOp::kCancel;

// Whether op changes data (and so takes a session's client and seq).
constexpr bool IsWrite(ClientOp op) {
  return op == ClientOp::kPut || op == ClientOp::kDelete || op == ClientOp::kCas ||
         op == ClientOp::kTouch || op == ClientOp::kTxn;
}

// The op's name on the wire: "get", "put", ...
const char* ClientOpName(ClientOp op);

struct ClientRequest {
  uint64_t id = 0;
  ClientOp op = ClientOp::kGet;
  std::string key;
  std::string value;
  bool has_expect = false;  // cas: false (nil or missing) means "only if absent"
  std::string expect;
  // cas: compare the key's mod_index with expect_index (0: absent) instead
  // of its value with expect.
  bool has_expect_index = false;
  uint64_t expect_index = 0;
  // put, cas, touch: the key expires this long after the write; 0 = never.
  uint64_t ttl_ms = 0;
  uint64_t client = 0;  // session for exactly-once writes; 0 = none
  uint64_t seq = 0;
  bool stale = false;  // get, scan: serve from this node's state without ReadIndex
  // scan: the range and page size ("prefix" on the wire is decoded into a
  // range); in a sharded cluster, the shard to scan (-1: none named).
  kv::ScanSpec scan;
  int64_t shard = -1;
  uint64_t target = 0;  // transfer_leader: the node to hand leadership to
  uint64_t node = 0;    // member_add, member_remove: the member's id
  std::string address;  // member_add: its client address host:port
  std::string pub;      // member_add, secure clusters: its CURVE public key (Z85)
  // backup: 0 starts one (of `shard`); else the backup to read on from
  // `cursor` (the last piece's "cursor").
  uint64_t backup = 0;
  uint64_t cursor = 0;
  bool close = false;  // backup: let it go now (a client that stops early)
  // txn: at most kv::kMaxTxnOps compares and ops per branch; a put's TTL
  // is in its ttl_ms.
  std::vector<kv::TxnCompare> compare;
  std::vector<kv::TxnOp> success, failure;
  // watch: the range (in `scan`: start/end, or a prefix's range, and
  // keys_only), the first log index to send changes from (0: the next one
  // applied) and, in a sharded cluster, `shard`.
  uint64_t from_index = 0;
  // cancel: the id of the watch request to end.
  uint64_t watch = 0;
};

struct RequestLimits {
  size_t max_key_bytes = kDefaultMaxKeyBytes;
  size_t max_value_bytes = kDefaultMaxValueBytes;
};

// Writes only the fields of request.op (docs/protocol.md, "Operations"):
// "op" by its name, a session's client and seq only on writes with a client.
std::string EncodeClientRequest(const ClientRequest& request);

// Decodes one request ("set" is read as put; unknown fields are ignored).
// InvalidArgument for malformed input, a field the op needs that is missing,
// a key or value over `limits`, or a session's seq without its client (or
// the reverse). On error, *id_known tells whether request->id was read, so
// that the ERROR reply can still carry it.
Status DecodeClientRequest(std::string_view bytes, const RequestLimits& limits,
                           ClientRequest* request, bool* id_known);

enum class ReplyStatus : uint8_t {
  kOk,
  kNotFound,
  kRedirect,
  kCasFailed,
  kUnavailable,
  kUnknown,
  kError,
  kDenied,  // the client's key lacks the role the op needs (not executed)
  kBusy,    // the node sheds load: not executed, retry after a backoff
  // A watch's from_index is older than the changes the node keeps: read
  // the range again, then watch from the read's index (docs/protocol.md).
  kCompacted,
};

// The status's name on the wire: "OK", "NOT_FOUND", "REDIRECT", ...
const char* ReplyStatusName(ReplyStatus s);

// What one op of a transaction's branch did (docs/protocol.md, "Transactions").
struct TxnResult {
  ReplyStatus status = ReplyStatus::kOk;  // OK or NOT_FOUND; BUSY for a get over the reply budget
  // A get answered OK: the value and, as for a get, its version and TTL.
  bool has_value = false;
  std::string value;
  uint64_t create_index = 0;
  uint64_t mod_index = 0;
  uint64_t ttl_ms = 0;
  std::string error;  // BUSY: why
};

struct ClientReply {
  uint64_t id = 0;
  ReplyStatus status = ReplyStatus::kOk;
  bool has_value = false;
  std::string value;
  // A write answered OK, NOT_FOUND or CAS_FAILED: the log index of its entry
  // (of the original, for a session's resend); 0 for none.
  uint64_t index = 0;
  // A get answered OK: the key's version (both sent when mod_index != 0).
  uint64_t create_index = 0;
  uint64_t mod_index = 0;
  // A get answered OK, of a key with a deadline: ms left before it expires.
  uint64_t ttl_ms = 0;
  std::string leader;      // kRedirect: the leader's client address, host:port
  std::string leader_key;  // kRedirect, secure clusters: the leader's CURVE public key
  std::string error;       // kError, kUnavailable, kDenied, kBusy: why
  // Sharded clusters, REDIRECT and UNAVAILABLE of a key op: the key's shard
  // (0..S-1) and the version of the shard map the node answered from. Both
  // travel only when shard >= 0; -1 means "not about a shard".
  int64_t shard = -1;
  uint64_t map_version = 0;
  // A scan answered OK: its page ("kvs", "more", "next" on the wire).
  bool is_scan = false;
  kv::ScanPage page;
  // A txn answered OK: whether its success branch ran, and one result per
  // op of the branch that ran; for a session's resend, `resent` and no
  // results (they are not kept).
  bool is_txn = false;
  bool succeeded = false;
  bool resent = false;
  std::vector<TxnResult> results;
};

// Leaves out what is empty: value unless has_value, leader, leader_key, error, shard
// and map_version unless shard >= 0, the page unless is_scan, and the
// transaction's fields unless is_txn.
std::string EncodeClientReply(const ClientReply& reply);
// Decodes any reply's id and status (and the fields above, when present), so
// it also reads those of a status or shards reply. InvalidArgument for
// malformed input and a reply without id or status.
Status DecodeClientReply(std::string_view bytes, ClientReply* reply);

// The status reply. "shards" is encoded only when status.shards > 0 and
// "groups" only when status.groups is not empty, so an unsharded node's reply
// is what it was before sharding.
std::string EncodeStatusReply(uint64_t request_id, const NodeStatus& status);
// InvalidArgument for malformed input.
Status DecodeStatusReply(std::string_view bytes, uint64_t* request_id, NodeStatus* status);

// The answer to "op": "shards". REQUIRES: map.list holds shards 0..S-1 (S =
// map.shards), each once; an unsharded cluster has S = 0 and an empty list.
std::string EncodeShardsReply(uint64_t request_id, const ShardMap& map);
// On OK, map->list holds every shard 0..map->shards-1 once, sorted by shard
// id. InvalidArgument for malformed input, a list that is not exactly the
// shards 0..S-1, and a reply whose status is not OK (an ERROR's text is in
// the message: a node that predates sharding answers "unknown op").
Status DecodeShardsReply(std::string_view bytes, uint64_t* request_id, ShardMap* map);

// The answers to "op": "backup" (docs/protocol.md, "Backups"): the start's
// (what the part is) or a piece's (its data).
struct BackupReply {
  uint64_t backup = 0;  // the node's handle of this backup
  // The start: the part's log index and clock, its keys and data size, and
  // the cluster's name, shards and replicas (for the file's header).
  uint64_t index = 0;
  uint64_t clock_ms = 0;
  uint64_t keys = 0;
  uint64_t size = 0;
  std::string cluster;
  uint32_t shards = 0;
  uint32_t replicas = 0;
  // A piece: its bytes, the cursor of the next one, whether it was the last.
  bool is_piece = false;
  std::string data;
  uint64_t cursor = 0;
  bool done = false;
};

// A change a watch sends (docs/protocol.md, "Watches").
struct WatchEvent {
  enum class Type : uint8_t { kPut, kDelete, kExpire };
  Type type = Type::kPut;
  std::string key;
  bool has_value = false;  // a put, unless the watch is keys only
  std::string value;
  uint64_t index = 0;         // the log index of the entry that made it
  uint64_t create_index = 0;  // a put: the key's create_index
};

// A message of a watch's stream: OK with the changes in (after, upto], or
// its end (COMPACTED with `oldest`, UNAVAILABLE or ERROR with `error`).
struct WatchReply {
  ReplyStatus status = ReplyStatus::kOk;
  uint64_t node = 0;  // the node that serves the watch
  uint64_t after = 0;
  uint64_t upto = 0;
  std::vector<WatchEvent> events;
  uint64_t oldest = 0;  // COMPACTED: the first index the node still has
  std::string error;
};

std::string EncodeWatchReply(uint64_t request_id, const WatchReply& reply);
// InvalidArgument for malformed input or an OK batch whose `upto` is below
// its `after`.
Status DecodeWatchReply(std::string_view bytes, uint64_t* request_id, WatchReply* reply);

std::string EncodeBackupReply(uint64_t request_id, const BackupReply& reply);
// InvalidArgument for malformed input, a reply that is not OK (the error's
// text in the message) and one without id or backup.
Status DecodeBackupReply(std::string_view bytes, uint64_t* request_id, BackupReply* reply);

}  // namespace kv::net
