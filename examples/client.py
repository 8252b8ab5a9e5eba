#!/usr/bin/python3
"""A small kvstore client, written from docs/protocol.md (client protocol v1).

It needs only pyzmq and msgpack (Debian: python3-zmq, python3-msgpack).

    examples/client.py --endpoints 127.0.0.1:8080,127.0.0.1:8081 put k v
    examples/client.py get k
    examples/client.py del k
    examples/client.py cas k old new        (cas k new --absent: only if absent)
    examples/client.py get k --versions     (prints {"value", "create_index", "mod_index"}
                                            and "ttl_ms" when k has a deadline)
    examples/client.py cas k new --expect-index 42   (only if k's mod_index is 42; 0: absent)
    examples/client.py put k v --ttl 60000  (k expires in a minute; also cas --ttl)
    examples/client.py touch k --ttl 5000   (a new deadline, the value kept; no --ttl: permanent)
    examples/client.py ttl k                (the ms k has left, or "permanent")
    examples/client.py scan --prefix app/   (every key under app/, a JSON line each)
    examples/client.py scan a m --limit 10 --keys-only   (keys in [a, m), at most 10)
    echo '{"compare": [{"key": "lock", "absent": true}],
           "success": [{"op": "put", "key": "lock", "value": "me"}],
           "failure": [{"op": "get", "key": "lock"}]}' | examples/client.py txn
                                            (a transaction from stdin, in the wire shape of
                                            docs/protocol.md; prints the reply as JSON)
    examples/client.py watch app/ --from 120 (every change to keys under app/ from log
                                            index 120 on, a JSON line each; --count N: stop
                                            after N; moves between nodes on its own)
    examples/client.py status
    examples/client.py shards               (the shard map; shards 0: not sharded)
    examples/client.py --key me.key --server-keys peers get k   (a secure cluster)

Exit codes: 0 success, 1 key not found (get, del, touch, ttl), no key in range
(scan) or compare failed (cas; txn: the failure branch ran),
2 usage error, 3 cluster unavailable / timed out / write fate unknown,
4 the server answered ERROR, 5 DENIED (the key's role does not allow it).

As a library:

    c = Client(["127.0.0.1:8080", "127.0.0.1:8081", "127.0.0.1:8082"])
    c.put(b"k", b"v"); c.get(b"k")  # -> b"v", or None when absent

Every key carries the log index of the write that created it and of the one
that last changed it (docs/protocol.md, "Versions"); get_versioned returns
them, and cas with expect_index compares on them instead of on the value:

    value, created, modified = c.get_versioned(b"k")
    c.cas(b"k", None, b"new", expect_index=modified)  # False if k changed meanwhile

Scans read a range of keys in key order (docs/protocol.md, "Scans"):

    found, more = c.scan(prefix=b"app/", limit=100)  # [(key, value, mod_index)], bool

A key may expire (docs/protocol.md, "Expiry"): put and cas take ttl_ms
(None: permanent), touch sets a new one without sending the value again, and
ttl tells what is left. get_versioned's tuple and each scan entry carry
ttl_ms too, as an attribute beside the tuple's fields (None: permanent):

    c.put(b"session", b"data", ttl_ms=30000)  # gone 30 s after the write
    c.touch(b"session", ttl_ms=30000)         # 30 s from now; None: key absent
    c.ttl(b"session")                         # ms left, None: permanent
    c.get_versioned(b"session").ttl_ms

A transaction (docs/protocol.md, "Transactions") checks conditions and runs
one of two lists of ops atomically; its keys must be in one shard (a common
hash tag, {tag}, puts them there). The lists are in the wire shape; keys and
values may be str or bytes:

    t = c.txn(compare=[{"key": "{acct}:a", "mod_index": 41}],
              success=[{"op": "put", "key": "{acct}:a", "value": "70"}],
              failure=[{"op": "get", "key": "{acct}:a"}])
    t.succeeded, t.results  # bool, one reply map per op of the branch that ran

A watch streams every change to a range of keys, in log order, each once,
from a log index on, moving to another node when the one serving it dies
(docs/protocol.md, "Watches"):

    w = c.watch(prefix=b"app/")          # from now; from_index=N: from index N
    for event in w:                       # WatchEvent(type, key, value, index, ...)
        ...
    w.position()                          # {shard: last index seen}: resume from it + 1

A secure cluster (nodes started with --key; docs/protocol.md, "Security")
answers only CurveZMQ clients whose key it knows. Give this client its
secret key (NAME.key from `kvctl keygen NAME`) and the members' public keys
(lines "ID PUBLIC-KEY [HOST:PORT]", a node's --peer-keys file), with --key
and --server-keys or KVSTORE_KEY and KVSTORE_SERVER_KEYS:

    c = Client(endpoints, key=load_key("me.key"), server_keys=load_server_keys("peers"))

Every socket is then a CURVE client with the node's public key as server
key. The client learns the keys it was not given from the cluster: a
REDIRECT carries the leader's ("leader_key"), status and shards replies
every member's ("member_keys").

Sharded clusters work unchanged: a node that does not lead the key's shard
answers REDIRECT with that shard's leader in "leader" (and the shard's id in
"shard", its map version in "map_version"), and this client simply follows
it. It does not compute key -> shard itself (that needs the ring of
docs/protocol.md, "Key to shard"), so it remembers one leader, the last one
a REDIRECT named: a key of another shard may cost one extra hop.

An overloaded leader answers BUSY (not executed). This client, like the
C++ one, waits and tries again: after BUSY, UNAVAILABLE, UNKNOWN or no
answer it backs off exponentially with full jitter (10 ms, growing to 1 s),
so that many clients turned away together do not all come back together,
and gives up at the deadline.
"""

import argparse
import collections
import json
import os
import random
import sys
import time

import msgpack
import zmq


class KvError(Exception):
    """The server answered ERROR: the request was malformed, not executed."""


class Unavailable(Exception):
    """No answer before the deadline. For a read or a failed attempt that was
    never executed this is harmless; see Unknown for writes."""


class Unknown(Unavailable):
    """A write whose fate is unknown: it may or may not have taken effect."""


class Denied(Exception):
    """The server answered DENIED: this client's key lacks the role the op
    needs (read, write or admin); not executed."""


class NotFound(Exception):
    """ttl(): the key is absent (or expired). The other methods say so in
    what they return (get: None, delete: False, touch: None), but ttl's
    None already means "permanent"."""


class Versioned(collections.namedtuple("Versioned", "value create_index mod_index")):
    """get_versioned's answer. ttl_ms, the ms the key has left (None:
    permanent), is an attribute, not a field: the tuple unpacks and compares
    as (value, create_index, mod_index)."""

    def __new__(cls, value, create_index, mod_index, ttl_ms=None):
        self = super().__new__(cls, value, create_index, mod_index)
        self.ttl_ms = ttl_ms
        return self


class TxnResult(collections.namedtuple("TxnResult", "succeeded results index resent")):
    """txn's answer: whether the success branch ran, one map per op of the
    branch that ran ({"status", "value", ...} as docs/protocol.md says), the
    log index of the txn, and whether it was a resend the cluster had applied
    before (then results is empty: they are not kept)."""


class Compacted(Exception):
    """A watch's next change is no longer kept by the nodes (it stopped for
    longer than their history): read the range again (scan), then watch
    from the read's index on. `oldest` is the first index still kept;
    `shard` the shard (None: unsharded)."""

    def __init__(self, message, oldest, shard):
        super().__init__(message)
        self.oldest, self.shard = oldest, shard


WatchEvent = collections.namedtuple("WatchEvent", "type key value index create_index shard")
WatchEvent.__doc__ = """A change a watch saw: type "put", "del" or "expire"; value None
for del, expire and keys-only watches; index the log index of the entry that
made it (of its shard's log); create_index for a put."""


class Entry(collections.namedtuple("Entry", "key value mod_index")):
    """A key of a scan, with ttl_ms as Versioned has it."""

    def __new__(cls, key, value, mod_index, ttl_ms=None):
        self = super().__new__(cls, key, value, mod_index)
        self.ttl_ms = ttl_ms
        return self


def _bytes(x):
    return x if isinstance(x, bytes) else str(x).encode()


def load_key(path):
    """(public, secret) CURVE keys from a NAME.key file (Z85 text)."""
    with open(path) as f:
        secret = f.read().strip().encode()
    return zmq.curve_public(secret), secret


def load_server_keys(path):
    """{"ID" or "HOST:PORT": public key} from lines "ID KEY [HOST:PORT]"."""
    keys = {}
    with open(path) as f:
        for n, line in enumerate(f, 1):
            words = line.split()
            if not words or words[0].startswith("#"):
                continue
            if len(words) not in (2, 3) or not words[0].isdigit() or len(words[1]) != 40:
                raise ValueError(f"{path} line {n}: want \"ID PUBLIC-KEY [HOST:PORT]\"")
            keys[words[0]] = words[1].encode()
            if len(words) == 3:
                keys[words[2]] = words[1].encode()
    return keys


MIN_BACKOFF, MAX_BACKOFF = 0.01, 1.0  # seconds


def backoff(refusals):
    """Seconds to wait after the n-th refusal in a row: exponential with
    full jitter, never below MIN_BACKOFF."""
    return random.uniform(MIN_BACKOFF, min(MAX_BACKOFF, MIN_BACKOFF * 2 ** (refusals - 1)))


class Client:
    """A synchronous client: one request at a time, over one DEALER socket
    per node. Writes use a session (client id + seq), so a write retried
    after a timeout or an UNKNOWN answer is applied at most once."""

    def __init__(self, endpoints, timeout=5.0, attempt_timeout=2.0, session=True, key=None,
                 server_keys=None):
        self.endpoints = list(endpoints)
        self.key = key  # (public, secret) for CURVE; None: plain sockets
        # Node public keys by "HOST:PORT", and by node id ("3") until the
        # cluster tells the id's address.
        self.server_keys = dict(server_keys or {})
        self.timeout = timeout
        self.attempt_timeout = attempt_timeout
        self.leader = None  # the node we believe leads; tried first
        self.client_id = random.getrandbits(63) | 1 if session else 0
        self.seq = 0
        self._next_id = 1
        self._ctx = zmq.Context.instance()
        self._sockets = {}

    def close(self):
        for s in self._sockets.values():
            s.close(linger=0)
        self._sockets.clear()

    # ---- the operations -------------------------------------------------

    def get(self, key, stale=False):
        """The value (bytes), or None when the key is absent."""
        req = {"op": "get", "key": _bytes(key)}
        if stale:
            req["stale"] = True
        reply = self._request(req, write=False)
        return reply.get("value") if reply["status"] == "OK" else None

    def get_versioned(self, key, stale=False):
        """(value, create_index, mod_index) with the attribute ttl_ms (see
        Versioned), or None when the key is absent."""
        req = {"op": "get", "key": _bytes(key)}
        if stale:
            req["stale"] = True
        reply = self._request(req, write=False)
        if reply["status"] != "OK":
            return None
        return Versioned(reply["value"], reply.get("create_index", 0), reply.get("mod_index", 0),
                         reply.get("ttl_ms"))

    def ttl(self, key, stale=False):
        """The ms the key has left (at least 1), or None when it is
        permanent; raises NotFound when the key is absent."""
        found = self.get_versioned(key, stale=stale)
        if found is None:
            raise NotFound(f"{_bytes(key)!r} not found")
        return found.ttl_ms

    def put(self, key, value, ttl_ms=None):
        """The log index of the write. With ttl_ms the key expires that many
        ms after the write; without (or 0) it is permanent, even if it had a
        deadline before."""
        req = {"op": "put", "key": _bytes(key), "value": _bytes(value)}
        if ttl_ms is not None:
            req["ttl_ms"] = ttl_ms
        return self._request(req, write=True).get("index", 0)

    def touch(self, key, ttl_ms=None):
        """Gives the key a new deadline, ttl_ms from now (None or 0: none,
        the key becomes permanent), and keeps its value and versions. The
        log index of the write, or None when the key is absent."""
        req = {"op": "touch", "key": _bytes(key)}
        if ttl_ms is not None:
            req["ttl_ms"] = ttl_ms
        reply = self._request(req, write=True)
        return reply.get("index", 0) if reply["status"] == "OK" else None

    def delete(self, key):
        """True if the key was there, False if it was absent."""
        return self._request({"op": "del", "key": _bytes(key)}, write=True)["status"] == "OK"

    def cas(self, key, expect, value, expect_index=None, ttl_ms=None):
        """Sets key to value if its current value is expect (None: if the key
        is absent), or, given expect_index, if its mod_index is expect_index
        (0: if it is absent); ttl_ms as put's. True if it did, False on
        CAS_FAILED."""
        req = {"op": "cas", "key": _bytes(key), "value": _bytes(value)}
        if expect_index is not None:
            req["expect_index"] = expect_index
        else:
            req["expect"] = None if expect is None else _bytes(expect)
        if ttl_ms is not None:
            req["ttl_ms"] = ttl_ms
        return self._request(req, write=True)["status"] == "OK"

    def txn(self, compare=(), success=(), failure=()):
        """Runs success's ops if every condition of compare holds, else
        failure's, atomically (docs/protocol.md, "Transactions"). Each item
        is a map of the wire shape; keys and values may be str or bytes. A
        TxnResult."""
        def items(maps, byte_fields):
            return [{k: _bytes(v) if k in byte_fields else v for k, v in m.items()} for m in maps]
        req = {"op": "txn", "compare": items(compare, ("key", "value")),
               "success": items(success, ("key", "value")),
               "failure": items(failure, ("key", "value"))}
        reply = self._request(req, write=True)
        return TxnResult(reply.get("succeeded", False), reply.get("results", []),
                         reply.get("index", 0), reply.get("resent", False))

    def scan(self, start=b"", end=None, prefix=None, limit=1000, keys_only=False, stale=False):
        """The first `limit` keys of [start, end) (end None: to the last key),
        or of the keys starting with `prefix`, in key order: a list of
        (key, value, mod_index) with the attribute ttl_ms (see Entry), value
        None with keys_only, and whether the range holds more. Pages of up
        to 10000 keys; a sharded cluster is scanned shard by shard and the
        results merged."""
        if limit < 1:
            raise ValueError("limit must be at least 1")
        if prefix is not None:
            start, end = _bytes(prefix), _prefix_end(_bytes(prefix))
        start, end = _bytes(start), None if end is None else _bytes(end)
        shard_count = self.shards().get("shards", 0)
        # One cursor per shard, merged in key order: the smallest buffered key
        # goes out next; a shard whose buffer runs dry is asked for its next
        # page first. Pages of about twice a shard's fair share.
        page = min(limit, 10000, max(100, 2 * limit // max(shard_count, 1)))
        cursors = []
        for shard in range(shard_count) if shard_count else [None]:
            req = {"op": "scan", "start": start, "limit": page}
            if end is not None:
                req["end"] = end
            if keys_only:
                req["keys_only"] = True
            if stale:
                req["stale"] = True
            if shard is not None:
                req["shard"] = shard
            cursors.append({"req": req, "buffered": collections.deque(), "more": True})
        found = []
        while len(found) < limit:
            for c in cursors:
                if not c["buffered"] and c["more"]:
                    reply = self._request(c["req"], write=False)
                    c["buffered"] = collections.deque(
                        Entry(kv["key"], kv.get("value"), kv.get("mod_index", 0),
                              kv.get("ttl_ms")) for kv in reply["kvs"])
                    c["more"] = reply.get("more", False)
                    c["req"]["start"] = reply.get("next", b"")
                    if c["more"] and (not c["buffered"]
                                      or c["req"]["start"] <= c["buffered"][-1][0]):
                        raise KvError("malformed scan reply: \"next\" does not go on")
            ready = [c for c in cursors if c["buffered"]]
            if not ready:
                break
            smallest = min(ready, key=lambda c: c["buffered"][0][0])
            found.append(smallest["buffered"].popleft())
        return found, any(c["more"] or c["buffered"] for c in cursors)

    def watch(self, prefix=None, start=b"", end=None, from_index=None, keys_only=False,
              on_move=None):
        """A Watch of the keys that start with `prefix` (or of [start, end)):
        every change from `from_index` on (None: from now; in a sharded
        cluster a dict {shard: index}), in log order per shard, each once,
        through node deaths and restarts (docs/protocol.md, "Watches").
        on_move(shard, endpoint, why) hears when a stream moves to a node."""
        if prefix is not None:
            start, end = _bytes(prefix), _prefix_end(_bytes(prefix))
        shard_count = self.shards().get("shards", 0)
        shards = list(range(shard_count)) if shard_count else [None]
        if isinstance(from_index, dict):
            starts = {s: from_index.get(s) for s in shards}
        else:
            if from_index is not None and shard_count:
                raise ValueError("a sharded cluster's from_index is a dict {shard: index}")
            starts = {s: from_index for s in shards}
        return Watch(self, _bytes(start), None if end is None else _bytes(end), keys_only,
                     starts, on_move)

    def backup_part(self, shard=None):
        """A shard's whole state (shard None: an unsharded cluster's) at one
        linearizable point, read through its leader and then piece by piece
        from the node that took it (docs/protocol.md, "Backups"): (info,
        data), info the start's reply ("index", "clock_ms", "keys", "size",
        "cluster", ...) and data the state machine snapshot. Needs the admin
        role on a secure cluster."""
        req = {"op": "backup"}
        if shard is not None:
            req["shard"] = shard
        info = self._request(req, write=False)
        holder = self.leader
        data = bytearray()
        cursor = 0
        try:
            while True:
                ask = {"op": "backup", "backup": info["backup"], "cursor": cursor}
                deadline = time.monotonic() + self.timeout
                refusals = 0
                while True:  # a piece is asked for again (same cursor) until it comes
                    reply = self._call(holder, ask, self.attempt_timeout)
                    if reply and reply["status"] != "BUSY":
                        break
                    if time.monotonic() >= deadline:
                        raise Unavailable(f"backup: no piece from {holder} in {self.timeout}s")
                    refusals += 1
                    time.sleep(backoff(refusals))
                if reply["status"] != "OK":
                    raise KvError(reply.get("error", reply["status"]))
                data += reply["data"]
                cursor = reply["cursor"]
                if reply.get("done"):
                    break
        finally:
            # Done or not, the node may let its copy go now.
            self._call(holder, {"op": "backup", "backup": info["backup"], "cursor": cursor,
                                "close": True}, self.attempt_timeout)
        if len(data) != info["size"]:
            raise KvError(f"backup: {len(data)} bytes where {info['size']} were announced")
        return info, bytes(data)

    def status(self, endpoint):
        """One node's own status (no redirect), or None if it does not answer
        (or, secure, if its key is unknown)."""
        if not self._can_reach(endpoint):
            return None
        return self._learn(self._call(endpoint, {"op": "status"}, self.attempt_timeout))

    def shards(self):
        """The shard map: {"version", "shards", "replicas", "members", "map"};
        "shards" is 0 and "map" empty when the cluster is not sharded."""
        return self._learn(self._request({"op": "shards"}, write=False))

    # ---- the protocol ---------------------------------------------------

    def _can_reach(self, endpoint):
        return self.key is None or endpoint in self.server_keys

    def _learn(self, reply):
        """Takes the member keys of a status or shards reply (which came
        over a connection authenticated with a key we trust)."""
        if reply:
            keys = reply.get("member_keys", {})
            for node, address in reply.get("members", {}).items():
                key = keys.get(node) or self.server_keys.get(node)
                if key:
                    self.server_keys[node] = self.server_keys[address] = _bytes(key)
        return reply

    def _request(self, req, write):
        if write and self.client_id:
            self.seq += 1  # one seq per write, kept across its retries
            req["client"], req["seq"] = self.client_id, self.seq
        deadline = time.monotonic() + self.timeout
        refusals = 0
        why = "no answer"  # the last refusal or timeout, for the final error
        maybe_executed = False  # a write attempt whose fate we do not know
        turn = redirects = 0
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            if self.leader is None:
                reachable = [e for e in self.endpoints if self._can_reach(e)]
                if not reachable:
                    raise Unavailable(_no_key(self.endpoints))
                endpoint = reachable[turn % len(reachable)]
                turn += 1
            else:
                endpoint = self.leader
            reply = self._call(endpoint, req, min(remaining, self.attempt_timeout))
            status = reply["status"] if reply else "TIMEOUT"
            if status in ("OK", "NOT_FOUND", "CAS_FAILED"):
                self.leader = endpoint
                return reply
            if status == "ERROR":
                raise KvError(reply.get("error", "error"))
            if status == "DENIED":
                raise Denied(reply.get("error", "denied"))
            if status == "REDIRECT" and reply.get("leader"):
                # The leader (in a sharded cluster: of the key's shard, named
                # in reply["shard"]). Follow it: a new attempt, same seq.
                if reply.get("leader_key"):
                    self.server_keys[reply["leader"]] = _bytes(reply["leader_key"])
                if not self._can_reach(reply["leader"]):
                    raise (Unknown if maybe_executed else Unavailable)(_no_key([reply["leader"]]))
                self.leader = reply["leader"]
                redirects += 1
                if redirects <= len(self.endpoints):
                    continue  # straight on; back off only if nodes disagree
            elif status == "REDIRECT":
                status = "UNAVAILABLE"  # a REDIRECT without a leader: retry
            why = f"{status} from {endpoint}"
            if reply and reply.get("error"):
                why += f": {reply['error']}"
            if status in ("TIMEOUT", "UNKNOWN"):
                if write:
                    maybe_executed = True
                    if not self.client_id:
                        # Without a session a retry could apply it twice.
                        raise Unknown(f"{req['op']}: {status} from {endpoint}")
            # BUSY, UNAVAILABLE, a retry that the session makes safe, or
            # nodes that disagree on the leader: wait, longer each time. BUSY
            # (not executed) comes from the leader: it stays the leader.
            if status not in ("REDIRECT", "BUSY"):
                self.leader = None
            refusals += 1
            pause = backoff(refusals)
            if time.monotonic() + pause + MIN_BACKOFF >= deadline:
                break  # no time left for another attempt's answer
            time.sleep(pause)
        if maybe_executed:
            raise Unknown(f"{req['op']}: no definite answer within {self.timeout}s (last: {why})")
        raise Unavailable(f"{req['op']}: cluster unavailable for {self.timeout}s (last: {why})")

    def _connect(self, endpoint):
        """A new DEALER socket connected to the node."""
        sock = self._ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        if self.key:
            # CURVE: set before connect, as the handshake starts with the
            # connection. A node that refuses our key never answers.
            sock.curve_publickey, sock.curve_secretkey = self.key
            sock.curve_serverkey = self.server_keys[endpoint]
        sock.connect(f"tcp://{endpoint}")
        return sock

    def _call(self, endpoint, req, timeout):
        """Sends one attempt with a fresh id; the matching reply, or None."""
        req = dict(req, id=self._next_id)
        self._next_id += 1
        sock = self._sockets.get(endpoint)
        if sock is None:
            sock = self._sockets[endpoint] = self._connect(endpoint)
        sock.send(msgpack.packb(req))
        deadline = time.monotonic() + timeout
        while True:
            ms = int((deadline - time.monotonic()) * 1000)
            if ms <= 0 or not sock.poll(ms):
                # Drop the socket so that a late reply cannot be mistaken
                # for the answer to a later request.
                self._sockets.pop(endpoint).close(linger=0)
                return None
            reply = msgpack.unpackb(sock.recv(), raw=False, unicode_errors="replace")
            if reply.get("id") == req["id"]:
                return reply
            # A reply to an attempt we gave up on: ignore it.


class Watch:
    """A watch's streams, one per shard, merged (Client.watch). Iterate it,
    or call next_event(timeout) for the next WatchEvent (None when none came
    in time). position() tells where each shard's stream is (resume a later
    watch from it + 1). Raises Compacted, KvError, Denied.

    Each stream is served by one node at a time. It moves to another node,
    resuming from the index after the last it saw, when its node answers
    UNAVAILABLE (it stopped serving the shard), when a message is missing
    (a batch's "after" is not the last one's "upto") or when the node says
    nothing for SILENCE seconds (nodes send progress every second)."""

    SILENCE = 3.0

    def __init__(self, client, start, end, keys_only, starts, on_move):
        self.client, self.on_move = client, on_move
        self.request = {"op": "watch", "start": start}
        if end is not None:
            self.request["end"] = end
        if keys_only:
            self.request["keys_only"] = True
        self.streams = {shard: {"shard": shard, "upto": None if f is None else f - 1,
                                "socket": None, "endpoint": None, "id": None, "turn": 0,
                                "heard": 0.0}
                        for shard, f in starts.items()}
        self.pending = collections.deque()
        self.poller = zmq.Poller()
        for stream in self.streams.values():
            self._open(stream, "start")
        # Started when each stream's first message has come: position() then
        # says from where (a scan after this misses nothing the watch will
        # not send).
        deadline = time.monotonic() + client.timeout
        while any(s["upto"] is None for s in self.streams.values()):
            if time.monotonic() > deadline:
                self.close()
                raise Unavailable(f"watch: not started within {client.timeout}s")
            self._poll(0.1)

    def __iter__(self):
        while True:
            event = self.next_event(None)
            if event is not None:
                yield event

    def position(self):
        """{shard: the last index every change up to which was delivered}
        (shard None in an unsharded cluster)."""
        position = {shard: stream["upto"] for shard, stream in self.streams.items()}
        # A message's changes are handed out one by one: those still queued
        # were not delivered, and a watch resumed after this must send them.
        for event in self.pending:
            position[event.shard] = min(position[event.shard], event.index - 1)
        return position

    def close(self):
        for stream in self.streams.values():
            self._close(stream, cancel=True)

    def next_event(self, timeout):
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.pending:
            wait = 1.0 if deadline is None else min(1.0, deadline - time.monotonic())
            if wait <= 0:
                return None
            self._poll(wait)
        return self.pending.popleft()

    def _poll(self, wait):
        """Takes in what the streams sent within `wait` seconds; moves the
        silent ones."""
        for sock, _ in self.poller.poll(int(wait * 1000)):
            stream = next(s for s in self.streams.values() if s["socket"] is sock)
            while stream["socket"] is sock and sock.poll(0):
                self._receive(stream, msgpack.unpackb(sock.recv(), raw=False,
                                                      unicode_errors="replace"))
        now = time.monotonic()
        for stream in self.streams.values():
            if now - stream["heard"] > self.SILENCE:
                self._open(stream, f"no word from {stream['endpoint']} for {self.SILENCE}s")

    def _receive(self, stream, reply):
        if reply.get("id") != stream["id"]:
            return  # a message of a stream we left
        stream["heard"] = time.monotonic()
        status = reply["status"]
        if status == "OK":
            if stream["upto"] is not None and reply["after"] != stream["upto"]:
                return self._open(stream, f"a message from {stream['endpoint']} is missing")
            for e in reply["events"]:
                self.pending.append(WatchEvent(e["type"], e["key"], e.get("value"), e["index"],
                                               e.get("create_index"), stream["shard"]))
            stream["upto"] = reply["upto"]
        elif status == "COMPACTED":
            raise Compacted(reply.get("error", "compacted"), reply.get("oldest"), stream["shard"])
        elif status == "ERROR":
            raise KvError(reply.get("error", "error"))
        elif status == "DENIED":
            raise Denied(reply.get("error", "denied"))
        elif status == "REDIRECT" and reply.get("leader"):
            self._open(stream, f"{stream['endpoint']} has no replica of the shard",
                       endpoint=reply["leader"])
        else:  # UNAVAILABLE, BUSY: another node
            time.sleep(backoff(1))
            self._open(stream, f"{status} from {stream['endpoint']}: {reply.get('error', '')}")

    def _open(self, stream, why, endpoint=None):
        """(Re)starts the stream on a node: `endpoint`, or the next one."""
        self._close(stream, cancel=False)
        client = self.client
        if endpoint is None:
            reachable = [e for e in client.endpoints if client._can_reach(e)]
            if not reachable:
                raise Unavailable(_no_key(client.endpoints))
            endpoint = reachable[stream["turn"] % len(reachable)]
            stream["turn"] += 1
        sock = client._connect(endpoint)  # a connection of its own: a stream
        req = dict(self.request, id=client._next_id)
        client._next_id += 1
        if stream["upto"] is not None:
            req["from_index"] = stream["upto"] + 1
        if stream["shard"] is not None:
            req["shard"] = stream["shard"]
        sock.send(msgpack.packb(req))
        stream.update(socket=sock, endpoint=endpoint, id=req["id"], heard=time.monotonic())
        self.poller.register(sock, zmq.POLLIN)
        if self.on_move:
            self.on_move(stream["shard"], endpoint, why)

    def _close(self, stream, cancel):
        sock = stream["socket"]
        if sock is None:
            return
        if cancel:
            sock.send(msgpack.packb({"id": 0, "op": "cancel", "watch": stream["id"]}))
        self.poller.unregister(sock)
        sock.close(linger=100 if cancel else 0)
        stream["socket"] = None


def _prefix_end(prefix):
    """The first key after every key that starts with prefix; None: none."""
    end = prefix.rstrip(b"\xff")
    return end[:-1] + bytes([end[-1] + 1]) if end else None


def _no_key(endpoints):
    lines = " and ".join(f'"ID KEY {e}"' for e in endpoints)
    return f"no server key for {', '.join(endpoints)}: add {lines} to --server-keys"


# ---- command line ---------------------------------------------------------

def main(argv=None):
    ap = argparse.ArgumentParser(description="kvstore example client (protocol v1)")
    ap.add_argument("--endpoints", default="127.0.0.1:8080,127.0.0.1:8081,127.0.0.1:8082",
                    help="comma-separated host:port list of client addresses")
    ap.add_argument("--timeout", type=float, default=5.0, help="deadline per operation, seconds")
    ap.add_argument("--stale", action="store_true", help="get, ttl, scan: local read, may be stale")
    ap.add_argument("--absent", action="store_true", help="cas KEY NEW: only if KEY is absent")
    ap.add_argument("--expect-index", type=int, default=None, metavar="INDEX",
                    help="cas KEY NEW: only if KEY's mod_index is INDEX (0: if it is absent)")
    ap.add_argument("--versions", action="store_true",
                    help="get: print the value and the key's create_index and mod_index (and "
                         "ttl_ms, if it has a deadline) as JSON")
    ap.add_argument("--ttl", type=int, default=None, metavar="MS",
                    help="put, cas: the key expires MS ms after the write; touch: MS ms from now "
                         "(touch without --ttl: the key becomes permanent)")
    ap.add_argument("--prefix", default=None, help="scan: the keys that start with PREFIX")
    ap.add_argument("--limit", type=int, default=1000, help="scan: at most this many keys")
    ap.add_argument("--keys-only", action="store_true", help="scan: the keys without values")
    ap.add_argument("--no-session", action="store_true", help="writes without client/seq")
    ap.add_argument("--key", default=os.environ.get("KVSTORE_KEY"),
                    help="this client's secret key file (NAME.key), for a secure cluster "
                         "(env KVSTORE_KEY)")
    ap.add_argument("--server-keys", default=os.environ.get("KVSTORE_SERVER_KEYS"),
                    help="the members' public keys, lines \"ID PUBLIC-KEY [HOST:PORT]\" "
                         "(env KVSTORE_SERVER_KEYS)")
    ap.add_argument("--from", dest="from_index", type=int, default=None, metavar="INDEX",
                    help="watch: the first log index to send changes from (unsharded clusters)")
    ap.add_argument("--count", type=int, default=None,
                    help="watch: stop after this many changes")
    ap.add_argument("op", choices=["put", "set", "get", "del", "cas", "touch", "ttl", "scan",
                                   "txn", "watch", "status", "shards"])
    ap.add_argument("args", nargs="*")
    a = ap.parse_intermixed_args(argv)
    two = a.absent or a.expect_index is not None
    arity = {"put": 2, "set": 2, "get": 1, "del": 1, "cas": 2 if two else 3, "touch": 1,
             "ttl": 1, "txn": 0, "watch": min(len(a.args), 1), "status": 0, "shards": 0}
    if a.absent and a.expect_index is not None:
        ap.error("--absent and --expect-index exclude each other")
    if a.ttl is not None and a.ttl < 0:
        ap.error("--ttl must be at least 0")
    if a.op == "scan":
        arity["scan"] = min(len(a.args), 0 if a.prefix is not None else 2)
        if a.limit < 1:
            ap.error("--limit must be at least 1")
    if len(a.args) != arity[a.op]:
        ap.error(f"{a.op} takes {arity[a.op]} argument(s)")
    if bool(a.key) != bool(a.server_keys):
        ap.error("--key and --server-keys go together")
    try:
        key = load_key(a.key) if a.key else None
        server_keys = load_server_keys(a.server_keys) if a.server_keys else None
    except (OSError, ValueError) as e:
        ap.error(str(e))
    c = Client([e.strip() for e in a.endpoints.split(",") if e.strip()], timeout=a.timeout,
               session=not a.no_session, key=key, server_keys=server_keys)
    try:
        if a.op == "status":
            down = 0
            for ep in c.endpoints:
                st = c.status(ep)
                if st is None:
                    down += 1
                    print(json.dumps({"endpoint": ep, "reachable": False}))
                else:
                    print(json.dumps(dict(st, endpoint=ep, reachable=True)))
            return 3 if down == len(c.endpoints) else 0
        if a.op == "shards":
            m = c.shards()
            print(json.dumps({k: m[k] for k in ("version", "shards", "replicas", "members", "map")
                              if k in m}))
            return 0
        if a.op == "scan":
            # One JSON line per key, in key order; exit 1 when none matched.
            found, more = c.scan(*a.args, prefix=a.prefix, limit=a.limit,
                                 keys_only=a.keys_only, stale=a.stale)
            for entry in found:
                line = {"key": entry.key.decode("utf-8", "replace"), "mod_index": entry.mod_index}
                if entry.value is not None:
                    line["value"] = entry.value.decode("utf-8", "replace")
                if entry.ttl_ms is not None:
                    line["ttl_ms"] = entry.ttl_ms
                print(json.dumps(line))
            if more:
                print(f"(more than {a.limit} keys)", file=sys.stderr)
            return 0 if found else 1
        if a.op == "watch":
            def moved(shard, endpoint, why):
                where = "" if shard is None else f"shard {shard} "
                print(f"watch: {where}now served by {endpoint} ({why})", file=sys.stderr,
                      flush=True)
            w = c.watch(prefix=a.args[0] if a.args else b"", from_index=a.from_index,
                        keys_only=a.keys_only, on_move=moved)
            seen = 0
            try:
                for e in w:
                    line = {"type": e.type, "key": e.key.decode("utf-8", "replace"),
                            "index": e.index}
                    if e.value is not None:
                        line["value"] = e.value.decode("utf-8", "replace")
                    if e.shard is not None:
                        line["shard"] = e.shard
                    print(json.dumps(line), flush=True)
                    seen += 1
                    if a.count is not None and seen >= a.count:
                        return 0
            except Compacted as e:
                print(f"COMPACTED: {e} (oldest kept: {e.oldest})", file=sys.stderr)
                return 1
            finally:
                w.close()
        if a.op == "txn":
            try:
                spec = json.load(sys.stdin)
                if not isinstance(spec, dict):
                    raise ValueError("not a JSON object")
            except ValueError as e:
                print(f"txn: stdin must hold a JSON object {{compare, success, failure}}: {e}",
                      file=sys.stderr)
                return 2
            t = c.txn(spec.get("compare", []), spec.get("success", []), spec.get("failure", []))
            results = [{k: v.decode("utf-8", "replace") if isinstance(v, bytes) else v
                        for k, v in r.items()} for r in t.results]
            line = {"succeeded": t.succeeded, "index": t.index, "results": results}
            if t.resent:
                line["resent"] = True
            print(json.dumps(line))
            return 0 if t.succeeded else 1
        if a.op in ("put", "set"):
            c.put(*a.args, ttl_ms=a.ttl)
            print("OK")
            return 0
        if a.op in ("get", "ttl"):
            found = c.get_versioned(a.args[0], stale=a.stale)
            if found is None:
                print("NOT_FOUND", file=sys.stderr)
                return 1
            value, created, modified = found
            if a.op == "ttl":
                print("permanent" if found.ttl_ms is None else found.ttl_ms)
            elif a.versions:
                line = {"value": value.decode("utf-8", "replace"), "create_index": created,
                        "mod_index": modified}
                if found.ttl_ms is not None:
                    line["ttl_ms"] = found.ttl_ms
                print(json.dumps(line))
            else:
                sys.stdout.buffer.write(value + b"\n")
            return 0
        if a.op in ("del", "touch"):
            if a.op == "del":
                found = c.delete(a.args[0])
            else:
                found = c.touch(a.args[0], ttl_ms=a.ttl) is not None
            print("OK" if found else "NOT_FOUND")
            return 0 if found else 1
        expect, new = (None, a.args[1]) if two else (a.args[1], a.args[2])
        ok = c.cas(a.args[0], expect, new, expect_index=a.expect_index, ttl_ms=a.ttl)
        print("OK" if ok else "CAS_FAILED")
        return 0 if ok else 1
    except KvError as e:
        print(f"ERROR: {e}", file=sys.stderr)
        return 4
    except Denied as e:
        print(f"DENIED: {e}", file=sys.stderr)
        return 5
    except Unknown as e:
        print(f"UNKNOWN: {e}", file=sys.stderr)
        return 3
    except Unavailable as e:
        print(f"UNAVAILABLE: {e}", file=sys.stderr)
        return 3
    finally:
        c.close()


if __name__ == "__main__":
    sys.exit(main())
