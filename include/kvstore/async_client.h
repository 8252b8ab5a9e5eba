// AsyncClient: a pipelined, shard-aware client for many requests in flight.
//
// Submit sends a request at once and returns; Poll waits for replies and
// hands back the completed requests by the tag given to Submit. Every
// request in flight has its own session (client id and sequence number), so
// a write resent after REDIRECT, UNAVAILABLE, UNKNOWN or a timeout keeps its
// sequence number and the cluster applies it exactly once.
//
// Routing: the client keeps `connections` DEALERs to each node it talks to,
// made on first use, and spreads requests over them. Against an unsharded
// cluster every request goes to the current target (the leader, as far as
// the client knows), and a REDIRECT moves the target with every request in
// flight at the old one. Against a sharded cluster each request goes to the
// leader of its key's shard, as the shard map and the REDIRECTs naming a
// shard tell (a request whose shard leader is unknown goes to the current
// target); a reply naming a shard the client cannot place, or a newer map,
// makes it fetch the map again.
//
// Not amplifying overload (docs/protocol.md, "Backoff, resends and retry
// budgets"). A request answered BUSY (the leader shed it: not executed),
// UNAVAILABLE or UNKNOWN waits in the client for an exponential backoff
// with full jitter (10 ms growing to 1 s per refusal of that request)
// before it is sent again (same session and seq). A request unanswered for
// its resend timeout is resent: alone when its node answered others since
// (slow, not dead), else with every request in flight there, to another
// node. The resend timeout adapts: at least request_timeout, at least 4
// times the smoothed latency of recent answers, plus 1 ms per 16 KiB of the
// request, doubled for each timeout of that request in a row, at most 30 s;
// so a write still queued at a slow leader is not sent a second time just
// because a fixed timer fired. And every resend (after a refusal or a
// timeout, not after REDIRECT) draws on a retry budget, and is given back
// if its request then completes: over the last 2 s, wasted resends may be
// at most 20% of the requests submitted, plus 2 per second; beyond it a
// request keeps waiting (for the answer to its attempt in flight, if any).
//
// Scans: a scan request reads one page of a range, from one shard of a
// sharded cluster (Request::shard, 0..shards()-1) through that shard's
// leader, as the key ops go to theirs. Merging the shards' pages and paging
// on with Completion::next are the caller's, as Client::Scan does them.
//
// A request completes with OK, NOT_FOUND, CAS_FAILED, ERROR or DENIED; it is
// retried until one of these comes: a caller that stops waiting treats what
// is still in flight as of unknown outcome (a write may still take effect).
//
// Secure clusters (AsyncOptions::credentials): every connection is a CURVE
// client of its node, as for Client. A node whose key is unknown is never
// connected; a request that could go to no node whose key is known (the
// leader a REDIRECT names without its key, or no endpoint with a key)
// completes with UNAVAILABLE and an error saying which key is missing: it
// was not sent (an earlier attempt may have been, so a write's fate is
// unknown unless that is its first attempt).
//
// Thread safety: none. Use one AsyncClient per thread; each has its own
// sockets (the process's AsyncClients share one ZeroMQ context, which is
// thread-safe).
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "kvstore/client.h"
#include "kvstore/credentials.h"
#include "kvstore/node_status.h"

namespace kv::client {

// Where a cluster's requests go first: its leader and, for a sharded
// cluster, its shard map (shards 0 when unsharded or not known).
struct Topology {
  std::string leader;  // host:port; an endpoint when no leader is known
  ShardMap map;
  // Secure clusters: the nodes' public keys by address, as given and learned.
  std::map<std::string, std::string> server_keys;
};

// Asks the endpoints for their status until one names the leader, and a
// sharded cluster for its shard map. Fills *out in any case (the first
// endpoint as the leader when none is known); not OK (kError or
// kUnavailable, with the reason) when the cluster is sharded but its map
// could not be fetched: the client then learns it from REDIRECTs.
Result Discover(const Options& options, Topology* out);

struct AsyncOptions {
  // host:port of the members to fall back on when a target is silent.
  std::vector<std::string> endpoints = ParseEndpoints(DefaultEndpoints());
  int connections = 1;  // DEALERs per node
  // A request unanswered this long, at least, is resent (with the same
  // session and seq); longer when answers are slow or the request large.
  std::chrono::milliseconds request_timeout{1000};
  // This client's key pair and the nodes' public keys; empty: no CURVE.
  Credentials credentials;
};

enum class Op : uint8_t { kGet, kPut, kDelete, kCas, kScan };

struct Request {
  Op op = Op::kGet;
  std::string key;
  std::string value;                  // put, cas
  std::optional<std::string> expect;  // cas: nullopt means "only if absent"
  // cas: compare the key's mod_index with this instead of its value with
  // expect (0: the key must be absent).
  std::optional<uint64_t> expect_index;
  bool stale = false;   // get: no linearizable check
  uint64_t ttl_ms = 0;  // put, cas: the key expires this long after the write; 0: never
  // scan: the range and one page of it (at most scan.limit keys, at most
  // 10000, and about 4 MiB; scan.keys_only and scan.stale as for
  // Client::Scan), read from shard `shard` of a sharded cluster (-1:
  // unsharded; a sharded cluster answers ERROR to a scan that names none).
  ScanOptions scan;
  int64_t shard = -1;
};

struct Completion {
  uint64_t tag = 0;
  // kOk, kNotFound, kCasFailed, kError, kDenied; kUnavailable: not sent, no
  // server key known (see above).
  Code code = Code::kOk;
  std::string value;   // get: the value
  std::string error;   // kError, kDenied, kUnavailable: why
  uint64_t index = 0;  // put, del, cas executed: the log index of the entry
  // get answered kOk: the key's version (see Result in client.h).
  uint64_t create_index = 0;
  uint64_t mod_index = 0;
  // scan answered kOk: the page's keys in key order; more when the range
  // (in that shard) holds keys after the last of them, and then next, the
  // start of the next page. (Braced, as brace-initialized Completions leave
  // them out.)
  std::vector<KeyValue> kvs{};
  bool more = false;
  std::string next{};
};

class AsyncClient {
 public:
  // REQUIRES: options.endpoints is not empty, options.connections >= 1.
  AsyncClient(AsyncOptions options, const Topology& start);
  ~AsyncClient();
  AsyncClient(const AsyncClient&) = delete;
  AsyncClient& operator=(const AsyncClient&) = delete;

  // Sends `request` now; Poll reports its completion under `tag`. Tags are
  // the caller's: they need not be distinct, but are not interpreted.
  void Submit(uint64_t tag, Request request);

  // Resends what timed out or waited its backoff, waits up to `wait` for
  // replies (returning early once some request completed) and appends the
  // requests completed to *out.
  void Poll(std::chrono::milliseconds wait, std::vector<Completion>* out);

  // Requests submitted and not completed yet.
  size_t in_flight() const;
  // The shards of the cluster as this client knows them (from the Topology
  // or fetched since): 0 when unsharded or not known yet.
  uint32_t shards() const;
  // REDIRECT replies followed, and resends for any other reason (BUSY,
  // UNAVAILABLE, UNKNOWN, a timeout), so far.
  uint64_t redirects() const;
  uint64_t retries() const;
  // BUSY replies so far (each retried after a backoff: not an outcome).
  uint64_t busy() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace kv::client
