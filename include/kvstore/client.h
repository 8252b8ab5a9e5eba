// kvstore client library: talks client protocol v1 (docs/protocol.md) to a
// cluster.
//
// A Client connects to any of the given endpoints, follows REDIRECT to the
// leader (and remembers it), retries BUSY, UNAVAILABLE and timeouts until
// the operation's deadline, and makes writes exactly-once with a
// session: a retried write carries the same (client id, seq), so the cluster
// applies it once and answers with the original result. That is why a write
// whose first attempt timed out can be retried safely, and why the client
// only reports kUnknown when the deadline passes with the fate of a write
// still unknown.
//
// Not amplifying overload: a BUSY, UNAVAILABLE or UNKNOWN answer is retried
// after an exponential backoff with full jitter (10 ms growing to 1 s,
// client/retry.h); BUSY (the leader shed the request, not executed) keeps
// the leader, and at the deadline gives kUnavailable, or kUnknown for a
// write an earlier attempt may have delivered. An attempt's timeout adapts:
// at least attempt_timeout, at least 4 times the smoothed latency of recent
// answers, plus time for the request's bytes, doubled after each attempt in
// a row that got no answer; the deadline bounds it all.
//
// Sharded clusters: the first reply that names a shard (a REDIRECT or
// UNAVAILABLE of a key op) makes the client fetch the shard map; from then on
// each key op goes straight to the leader of its key's shard, as the map or
// the last REDIRECT for that shard said. A reply with a newer map version
// makes it fetch the map again (at most once per operation). An unsharded
// cluster never names a shard, so it costs nothing extra.
//
// Secure clusters (Options::credentials with a key, kvstore/credentials.h):
// every connection is a CURVE handshake with the node's public key. The
// client talks only to nodes whose key it knows, given or learned (a
// REDIRECT's leader_key, the member_keys of status and shards replies): an
// endpoint whose key is unknown is skipped, and an operation that could go
// nowhere else ends at once with kUnavailable and an error naming the
// address and the line --server-keys lacks. A node that refuses the
// client's key at the handshake never answers: its requests time out.
//
// Thread safety: none. Use one Client per thread; each has its own sockets
// and session, and has at most one operation in flight.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "kvstore/credentials.h"
#include "kvstore/node_status.h"

namespace kv::client {

// "127.0.0.1:8080,127.0.0.1:8081,127.0.0.1:8082": the default local
// cluster's client addresses (kv/layout.h), as a flag's default.
const char* DefaultEndpoints();
// Parses "host:port,host:port,..." (a bare port means 127.0.0.1:PORT).
std::vector<std::string> ParseEndpoints(const std::string& text);
// The ZeroMQ address of a node's event stream (PUB), given its client
// address host:port: the same host, port + 2000 (docs/protocol.md).
std::string EventEndpoint(const std::string& client_endpoint);
// The Raft group a node's status describes in its top-level fields: the
// main group (the only one of an unsharded cluster, the metadata group of a
// sharded one) when the node hosts it, else the first group it hosts.
uint64_t MainGroup(const NodeStatus& status);

struct Options {
  // host:port of any members; at least one. Others are learned from REDIRECT.
  std::vector<std::string> endpoints = ParseEndpoints(DefaultEndpoints());
  // Deadline of one operation, all retries included.
  std::chrono::milliseconds timeout{5000};
  // How long to wait for one node's answer before trying another, at least
  // (longer when recent answers were slow or the request is large; see above).
  std::chrono::milliseconds attempt_timeout{1000};
  // Session id for exactly-once writes; 0 picks a random one. Two Clients
  // must never share an id.
  uint64_t client_id = 0;
  // This client's key pair and the nodes' public keys; empty: no CURVE.
  Credentials credentials;
};

enum class Code {
  kOk,
  kNotFound,     // get: no such key; del: nothing to delete
  kCasFailed,    // cas: the current value was not the expected one (not executed)
  kUnavailable,  // no answer from a leader (or only BUSY) before the deadline (not executed)
  kUnknown,      // a write whose fate is unknown at the deadline: it may take effect
  kError,        // the server refused the request (not executed); see Result::error
  kDenied,       // the client key's role does not allow the op (not executed, never
                 // retried); Result::error says which role it needs
  kCompacted,    // a watch's next change is no longer kept (kvstore/watch.h)
};

// "OK", "NOT_FOUND", ...: the protocol's name of the status.
const char* CodeName(Code code);

struct Result {
  Code code = Code::kOk;
  std::string value;  // get
  std::string error;  // kError / kDenied / kUnavailable / kUnknown: why
  // put, del, cas answered kOk, kNotFound or kCasFailed: the log index of the
  // write's entry (the index at which the answer holds; 0 from a node that
  // predates versions).
  uint64_t index = 0;
  // get answered kOk: the log indexes of the write that created the key and
  // of the one that last changed it (0 from a node that predates versions).
  uint64_t create_index = 0;
  uint64_t mod_index = 0;
  // get answered kOk, of a key with a deadline: the ms left before it
  // expires; 0 for a key that never does.
  uint64_t ttl_ms = 0;
  bool ok() const { return code == Code::kOk; }
};

// A range of keys to scan: [start, end), or from start on without an end.
struct ScanOptions {
  std::string start;
  std::optional<std::string> end;
  size_t limit = 1000;     // keys in all, at least 1
  bool keys_only = false;  // leave the values out
  bool stale = false;      // read from any node, without a quorum check
};
// The keys that start with `prefix` (every key for an empty one).
ScanOptions PrefixScan(const std::string& prefix);

struct KeyValue {
  std::string key;
  std::string value;  // empty with keys_only
  uint64_t mod_index = 0;
  uint64_t ttl_ms = 0;  // as in Result
};

struct ScanResult {
  Code code = Code::kOk;
  std::string error;          // not kOk: why
  std::vector<KeyValue> kvs;  // in key order (bytewise)
  bool more = false;          // the range holds keys after the last one (past limit)
  bool ok() const { return code == Code::kOk; }
};

// A condition of a transaction on one key (docs/protocol.md,
// "Transactions"). A key past its deadline is absent.
struct Compare {
  enum Kind {
    kValue,     // present, holding exactly `value`
    kAbsent,    // absent
    kPresent,   // present
    kModIndex,  // its mod_index (0 when absent) compared by `order` with `mod_index`
  };
  enum Order { kEqual, kLess, kGreater };  // kModIndex: the key's ==, < or > mod_index

  Kind kind = kValue;
  std::string key;
  std::string value;
  Order order = kEqual;
  uint64_t mod_index = 0;

  static Compare Value(std::string key, std::string value);
  static Compare Absent(std::string key);
  static Compare Present(std::string key);
  // ModIndex(key, Compare::kLess, 5): key's mod_index is below 5.
  static Compare ModIndex(std::string key, Order order, uint64_t mod_index);
};

// An op of a transaction's branch; each sees the effects of those before it.
struct TxnOp {
  enum Kind { kPut, kDelete, kGet };

  Kind kind = kGet;
  std::string key;
  std::string value;                 // kPut
  std::chrono::milliseconds ttl{0};  // kPut: as Client::Put's

  static TxnOp Put(std::string key, std::string value,
                   std::chrono::milliseconds ttl = std::chrono::milliseconds(0));
  static TxnOp Delete(std::string key);
  static TxnOp Get(std::string key);
};

// If every one of `compare` holds (or there is none), the ops of `success`
// run, else those of `failure`; either way atomically, in one log entry. At
// most 128 of each; all the keys in one shard (give them a common hash tag,
// as {acct}:a and {acct}:b).
struct Transaction {
  std::vector<Compare> compare;
  std::vector<TxnOp> success;
  std::vector<TxnOp> failure;
};

struct TxnResult {
  Code code = Code::kOk;   // kOk whichever branch ran; else as for any write
  std::string error;       // not kOk: why
  uint64_t index = 0;      // kOk: the log index of the txn's entry
  bool succeeded = false;  // kOk: the success branch ran (else the failure one)
  // kOk: the cluster had applied this txn before (a resend after a lost
  // answer); results is then empty, as the gets' values are not kept.
  bool resent = false;
  // kOk: one per op of the branch that ran, in order. A put: kOk; a del:
  // kOk, or kNotFound when the key was absent; a get: as Client::Get answers
  // (value, create_index, mod_index, ttl_ms), or kUnavailable, with the
  // reason in error, when its value did not fit in the connection's reply
  // budget (the txn applied all the same: read the key again). Their index
  // is 0: the txn's is above.
  std::vector<Result> results;
  bool ok() const { return code == Code::kOk; }
};

// What a shard's part of a backup is (Client::BackupShard).
struct BackupPartInfo {
  uint64_t index = 0;     // the log index the shard's state is at
  uint64_t clock_ms = 0;  // its state machine's clock (deadlines are absolute)
  uint64_t keys = 0;
  uint64_t size = 0;  // bytes of data to come
  // The cluster's name and layout, for the backup's header.
  std::string cluster;
  uint32_t shards = 0;
  uint32_t replicas = 0;
};

// One node's answer to a status request.
struct NodeReport {
  std::string endpoint;
  bool reachable = false;  // false: no answer within the attempt timeout, or no key
  std::string error;       // !reachable: why
  NodeStatus status;
};

class Client {
 public:
  explicit Client(Options options);
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // Writes with a ttl above zero make the key expire that long after the
  // leader took the write (docs/protocol.md, "Expiry"); without one the key
  // is permanent, even if it had a deadline before.
  Result Put(const std::string& key, const std::string& value,
             std::chrono::milliseconds ttl = std::chrono::milliseconds(0));
  // stale: read from whichever node answers, without a linearizable check.
  Result Get(const std::string& key, bool stale = false);
  Result Delete(const std::string& key);
  // Puts value if the current value equals *expect, or if the key is absent
  // when expect is nullopt.
  Result Cas(const std::string& key, const std::optional<std::string>& expect,
             const std::string& value,
             std::chrono::milliseconds ttl = std::chrono::milliseconds(0));
  // Puts value if the key's mod_index (Result::mod_index of a get) equals
  // expect_index, or if the key is absent when expect_index is 0:
  // optimistic concurrency without sending the old value back.
  Result CasIndex(const std::string& key, uint64_t expect_index, const std::string& value,
                  std::chrono::milliseconds ttl = std::chrono::milliseconds(0));
  // Gives the key a new deadline, ttl from now (zero: none, the key becomes
  // permanent), keeping its value and version; kNotFound if it is absent.
  Result Touch(const std::string& key,
               std::chrono::milliseconds ttl = std::chrono::milliseconds(0));
  // Runs a transaction (see Transaction) through the leader of its keys'
  // shard (found by its first key). A write, exactly-once like the others:
  // kUnknown when its fate is unknown at the deadline. A failed condition is
  // no error: kOk with succeeded false. kError when its keys are in more
  // than one shard (the node's error names two of them and their shards).
  TxnResult Txn(const Transaction& txn);

  // The first options.limit keys of a range, in key order, fetched in pages
  // (docs/protocol.md, "Scans"). A sharded cluster is read shard by shard,
  // each by its leader (the shards' first pages in parallel), and the pages
  // merged; each page is its own linearizable read (unless stale), so a
  // scan is not one snapshot.
  ScanResult Scan(const ScanOptions& options);

  // Reads the whole state of shard `shard` (0 in an unsharded cluster; in a
  // sharded one, fetch the map first with Shards) at one linearizable point,
  // through its leader: `begin` hears what it is, then `data` gets its
  // bytes in order (a state machine snapshot; docs/protocol.md, "Backups").
  // A callback returning false stops it. Each piece must come within the
  // timeout; a piece whose answer was lost is asked for again. Needs the
  // admin role on a secure cluster. kError when the node that holds the
  // copy lost it (it restarted, say): the part must be read anew (begin is
  // not called twice: call BackupShard again).
  Result BackupShard(uint32_t shard, const std::function<bool(const BackupPartInfo&)>& begin,
                     const std::function<bool(std::string_view)>& data);
  // Asks the leader to hand leadership to `target` (a voter). OK means the
  // transfer started; watch Status for the new leader.
  Result TransferLeader(uint64_t target);

  // Adds node `node`, reachable at `address` (its client host:port), as a
  // learner, and answers once the leader has promoted it to voter (after it
  // caught up). Start the node first with `kvstore --id N --join ...`.
  // A secure cluster records the new member's CURVE public key (Z85),
  // `public_key`, in its configuration; empty sends none.
  Result AddMember(uint64_t node, const std::string& address, const std::string& public_key = "");
  // Removes a member (the leader included); answers once applied.
  Result RemoveMember(uint64_t node);

  // Asks one node for its status (no retries beyond the attempt timeout).
  NodeReport Status(const std::string& endpoint);

  // Fetches the shard map (op "shards") from the leader or the endpoints in
  // turn, retrying until the deadline, and caches it for routing. An
  // unsharded cluster answers shards = 0 and an empty list. kError when the
  // node refused the op (one that predates sharding: "unknown op") or sent a
  // malformed map; kUnavailable when no node answered.
  Result Shards(ShardMap* out);

  // The shard `key` belongs to (docs/protocol.md, "Key to shard": a key
  // holding {TAG} goes with TAG), from the map Shards fetched; -1 when the
  // cluster is not sharded or no map is known yet.
  int64_t ShardOf(const std::string& key) const;
  uint64_t client_id() const { return client_id_; }
  const Options& options() const;
  // The leader's address as last learned, or empty. In a sharded cluster,
  // where each shard has its own, this is the one non-key ops last found.
  std::string leader() const;
  // REDIRECT replies followed so far.
  uint64_t redirects() const { return redirects_; }
  // BUSY replies (retried after a backoff) so far.
  uint64_t busy() const { return busy_; }
  // Secure clusters: the public key of every node this client can reach, by
  // client address, as given and as learned so far.
  std::map<std::string, std::string> server_keys() const;

 private:
  struct Impl;
  struct ScanCursor;  // a shard's place in a scan (client.cc)
  // Fills each cursor with its next page: one through Run, several in
  // parallel. Not kOk: the first failure.
  Result FetchPages(const std::vector<ScanCursor*>& need);

  std::unique_ptr<Impl> impl_;
  uint64_t client_id_;
  uint64_t redirects_ = 0;
  uint64_t busy_ = 0;
};

}  // namespace kv::client
