#!/usr/bin/python3
"""A small kvstore client, written from docs/protocol.md (client protocol v1).

It needs only pyzmq and msgpack (Debian: python3-zmq, python3-msgpack).

    examples/client.py --endpoints 127.0.0.1:8080,127.0.0.1:8081 put k v
    examples/client.py get k
    examples/client.py del k
    examples/client.py cas k old new        (cas k new --absent: only if absent)
    examples/client.py status
    examples/client.py shards               (the shard map; shards 0: not sharded)

Exit codes: 0 success, 1 key not found (get, del) or compare failed (cas),
2 usage error, 3 cluster unavailable / timed out / write fate unknown,
4 the server answered ERROR.

As a library:

    c = Client(["127.0.0.1:8080", "127.0.0.1:8081", "127.0.0.1:8082"])
    c.put(b"k", b"v"); c.get(b"k")  # -> b"v", or None when absent

Sharded clusters work unchanged: a node that does not lead the key's shard
answers REDIRECT with that shard's leader in "leader" (and the shard's id in
"shard", its map version in "map_version"), and this client simply follows
it. It does not compute key -> shard itself (that needs the ring of
docs/protocol.md, "Key to shard"), so it remembers one leader, the last one
a REDIRECT named: a key of another shard may cost one extra hop.
"""

import argparse
import json
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


def _bytes(x):
    return x if isinstance(x, bytes) else str(x).encode()


class Client:
    """A synchronous client: one request at a time, over one DEALER socket
    per node. Writes use a session (client id + seq), so a write retried
    after a timeout or an UNKNOWN answer is applied at most once."""

    def __init__(self, endpoints, timeout=5.0, attempt_timeout=2.0, session=True):
        self.endpoints = list(endpoints)
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

    def put(self, key, value):
        self._request({"op": "put", "key": _bytes(key), "value": _bytes(value)}, write=True)

    def delete(self, key):
        """True if the key was there, False if it was absent."""
        return self._request({"op": "del", "key": _bytes(key)}, write=True)["status"] == "OK"

    def cas(self, key, expect, value):
        """Sets key to value if its current value is expect (None: if the key
        is absent). True if it did, False on CAS_FAILED."""
        req = {"op": "cas", "key": _bytes(key), "value": _bytes(value),
               "expect": None if expect is None else _bytes(expect)}
        return self._request(req, write=True)["status"] == "OK"

    def status(self, endpoint):
        """One node's own status (no redirect), or None if it does not answer."""
        return self._call(endpoint, {"op": "status"}, self.attempt_timeout)

    def shards(self):
        """The shard map: {"version", "shards", "replicas", "members", "map"};
        "shards" is 0 and "map" empty when the cluster is not sharded."""
        return self._request({"op": "shards"}, write=False)

    # ---- the protocol ---------------------------------------------------

    def _request(self, req, write):
        if write and self.client_id:
            self.seq += 1  # one seq per write, kept across its retries
            req["client"], req["seq"] = self.client_id, self.seq
        deadline = time.monotonic() + self.timeout
        backoff = 0.05
        maybe_executed = False  # a write attempt whose fate we do not know
        turn = redirects = 0
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            if self.leader is None:
                endpoint = self.endpoints[turn % len(self.endpoints)]
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
            if status == "REDIRECT" and reply.get("leader"):
                # The leader (in a sharded cluster: of the key's shard, named
                # in reply["shard"]). Follow it: a new attempt, same seq.
                self.leader = reply["leader"]
                redirects += 1
                if redirects <= len(self.endpoints):
                    continue  # straight on; back off only if nodes disagree
            elif status == "REDIRECT":
                status = "UNAVAILABLE"  # a REDIRECT without a leader: retry
            if status in ("TIMEOUT", "UNKNOWN"):
                if write:
                    maybe_executed = True
                    if not self.client_id:
                        # Without a session a retry could apply it twice.
                        raise Unknown(f"{req['op']}: {status} from {endpoint}")
            # UNAVAILABLE, a retry that the session makes safe, or nodes that
            # disagree on the leader: wait a little, longer each time.
            if status != "REDIRECT":
                self.leader = None
            time.sleep(min(backoff, max(0.0, deadline - time.monotonic())))
            backoff = min(backoff * 2, 1.0)
        if maybe_executed:
            raise Unknown(f"{req['op']}: no definite answer within {self.timeout}s")
        raise Unavailable(f"{req['op']}: cluster unavailable for {self.timeout}s")

    def _call(self, endpoint, req, timeout):
        """Sends one attempt with a fresh id; the matching reply, or None."""
        req = dict(req, id=self._next_id)
        self._next_id += 1
        sock = self._sockets.get(endpoint)
        if sock is None:
            sock = self._ctx.socket(zmq.DEALER)
            sock.setsockopt(zmq.LINGER, 0)
            sock.connect(f"tcp://{endpoint}")
            self._sockets[endpoint] = sock
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


# ---- command line ---------------------------------------------------------

def main(argv=None):
    ap = argparse.ArgumentParser(description="kvstore example client (protocol v1)")
    ap.add_argument("--endpoints", default="127.0.0.1:8080,127.0.0.1:8081,127.0.0.1:8082",
                    help="comma-separated host:port list of client addresses")
    ap.add_argument("--timeout", type=float, default=5.0, help="deadline per operation, seconds")
    ap.add_argument("--stale", action="store_true", help="get: local read, may be stale")
    ap.add_argument("--absent", action="store_true", help="cas KEY NEW: only if KEY is absent")
    ap.add_argument("--no-session", action="store_true", help="writes without client/seq")
    ap.add_argument("op", choices=["put", "set", "get", "del", "cas", "status", "shards"])
    ap.add_argument("args", nargs="*")
    a = ap.parse_intermixed_args(argv)
    arity = {"put": 2, "set": 2, "get": 1, "del": 1, "cas": 2 if a.absent else 3, "status": 0,
             "shards": 0}
    if len(a.args) != arity[a.op]:
        ap.error(f"{a.op} takes {arity[a.op]} argument(s)")
    c = Client([e.strip() for e in a.endpoints.split(",") if e.strip()], timeout=a.timeout,
               session=not a.no_session)
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
        if a.op in ("put", "set"):
            c.put(*a.args)
            print("OK")
            return 0
        if a.op == "get":
            value = c.get(a.args[0], stale=a.stale)
            if value is None:
                print("NOT_FOUND", file=sys.stderr)
                return 1
            sys.stdout.buffer.write(value + b"\n")
            return 0
        if a.op == "del":
            found = c.delete(a.args[0])
            print("OK" if found else "NOT_FOUND")
            return 0 if found else 1
        expect, new = (None, a.args[1]) if a.absent else (a.args[1], a.args[2])
        ok = c.cas(a.args[0], expect, new)
        print("OK" if ok else "CAS_FAILED")
        return 0 if ok else 1
    except KvError as e:
        print(f"ERROR: {e}", file=sys.stderr)
        return 4
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
