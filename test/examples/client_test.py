#!/usr/bin/python3
"""End-to-end test of examples/client.py against a real 3-node cluster.

Starts three freshly built kvstore processes on free loopback ports in a temp
dir, drives them through examples/client.py (its command line and its Client
class) and through raw DEALER sockets for what docs/protocol.md promises,
then stops them. Every wait polls a condition under a deadline; the nodes
are stopped on any exit (finally, SIGTERM/SIGINT handlers, and a parent-death
signal in case this driver is killed outright).

With --secure the cluster is a secure one (test/lib/kvcluster.py makes the
keys: a pair per node, a client key per role) and the client talks CurveZMQ
to it, learning the keys it was not given (docs/protocol.md, "Security").

    client_test.py --kvstore build/src/node/kvstore --client examples/client.py [--secure]
"""

import argparse
import ctypes
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import msgpack
import zmq

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from harness import HarnessError, run_script  # noqa: E402
import kvcluster  # noqa: E402

PR_SET_PDEATHSIG = 1
TIMEOUT_SCALE = float(os.environ.get("KV_TEST_TIMEOUT_SCALE", "1"))
MAX_TTL_MS = 315_360_000_000  # ten years: the largest ttl_ms a node takes
EVENT_PORT_OFFSET = 2000


class Failure(Exception):
    pass


def check(cond, what):
    if not cond:
        raise Failure(what)
    print(f"ok: {what}", flush=True)


def within(ms, low, high):
    """Whether ms is an int in (low, high]."""
    return type(ms) is int and low < ms <= high


def raised(fn, *args, **kwargs):
    """The exception fn(*args, **kwargs) raised, or None if it returned."""
    try:
        fn(*args, **kwargs)
    except Exception as e:  # noqa: BLE001 - the caller checks which
        return e
    return None


def wait_for(cond, seconds, what):
    """Polls cond() until it returns a true value; fails after the deadline."""
    deadline = time.monotonic() + seconds * TIMEOUT_SCALE
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise Failure(f"timed out after {seconds}s waiting for {what}")
        time.sleep(0.05)


def die_with_parent():
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


class Cluster:
    def __init__(self, kvstore, root, n=3):
        self.kvstore, self.root, self.n = kvstore, root, n
        self.procs = {}
        self.base = 0

    def endpoint(self, node):
        return f"127.0.0.1:{self.base + node - 1}"

    def endpoints(self):
        return [self.endpoint(i) for i in range(1, self.n + 1)]

    def log(self, node):
        return os.path.join(self.root, f"node-{node}.log")

    def start(self):
        """Starts the nodes on free ports; picks new ports if another process
        grabbed one between the check and the bind."""
        for _ in range(5):
            self.base = kvcluster.free_base_port(self.n)
            peers = ",".join(f"{i}={self.endpoint(i)}" for i in range(1, self.n + 1))
            for i in range(1, self.n + 1):
                with open(self.log(i), "ab") as log:
                    self.procs[i] = subprocess.Popen(
                        [self.kvstore, "--id", str(i), "--peers", peers, "--data-dir",
                         os.path.join(self.root, f"node-{i}"), "--shards", "0"],
                        stdout=log, stderr=subprocess.STDOUT, preexec_fn=die_with_parent)
            try:
                wait_for(lambda: self.leader() or self.any_exited(), 20, "a leader")
            except Failure:
                self.stop()
                raise
            if not self.any_exited():
                return
            self.stop()
            if not any("cannot listen" in open(self.log(i)).read() for i in self.procs):
                raise Failure("a node exited at start")
        raise HarnessError("five ranges of free ports were taken before the nodes bound them")

    def any_exited(self):
        return any(p.poll() is not None for p in self.procs.values())

    def status(self, node, timeout=0.5):
        return raw_call(self.endpoint(node), {"op": "status"}, timeout)

    def leader(self):
        """The leader's node id once every node reports the same one."""
        leaders = set()
        for i in range(1, self.n + 1):
            st = self.status(i)
            if st is None or st["leader"] == 0:
                return None
            leaders.add(st["leader"])
        return leaders.pop() if len(leaders) == 1 else None

    def stop(self):
        """SIGTERM, wait for a clean exit, SIGKILL what does not go."""
        for p in self.procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        codes = {}
        deadline = time.monotonic() + 10 * TIMEOUT_SCALE
        for i, p in self.procs.items():
            try:
                codes[i] = p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                codes[i] = f"killed: {p.wait()}"
        self.procs = {}
        return codes


_ctx = zmq.Context.instance()


def raw_call(endpoint, request, timeout=2.0, raw_bytes=None):
    """One request on a fresh DEALER; the decoded reply or None on timeout."""
    s = _ctx.socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 0)
    s.connect(f"tcp://{endpoint}")
    try:
        s.send(raw_bytes if raw_bytes is not None else msgpack.packb(dict(request, id=request.get("id", 1))))
        if not s.poll(int(timeout * 1000 * TIMEOUT_SCALE)):
            return None
        return msgpack.unpackb(s.recv(), raw=False)
    finally:
        s.close()


def load_client(client_py):
    """examples/client.py as a module."""
    spec = importlib.util.spec_from_file_location("kvclient", client_py)
    kvclient = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(kvclient)
    return kvclient


def run_cli(client_py, endpoints, *args, env=None, stdin=b""):
    """Runs the client's command line (a later --timeout in args wins)."""
    r = subprocess.run([sys.executable, client_py, "--endpoints", ",".join(endpoints),
                        "--timeout", str(10 * TIMEOUT_SCALE), *args],
                       capture_output=True, timeout=30 * TIMEOUT_SCALE, input=stdin,
                       env=dict(os.environ, **(env or {})))
    return r.returncode, r.stdout.decode(errors="replace").strip(), r.stderr.decode(errors="replace").strip()


def scenario(cluster, client_py):
    leader = cluster.leader()
    followers = [i for i in range(1, cluster.n + 1) if i != leader]
    lead_ep, foll_ep = cluster.endpoint(leader), cluster.endpoint(followers[0])
    print(f"leader is node {leader} at {lead_ep}", flush=True)

    # The documented REDIRECT, on a raw socket.
    r = raw_call(foll_ep, {"id": 9, "op": "put", "key": "k", "value": "v"})
    check(r == {"id": 9, "status": "REDIRECT", "leader": lead_ep},
          f"a follower answers a put with REDIRECT to the leader ({r})")

    # The command line, given only a follower: it must follow the REDIRECT.
    only_follower = [foll_ep]
    check(run_cli(client_py, only_follower, "put", "k1", "v1") == (0, "OK", ""),
          "put through a follower follows the REDIRECT")
    check(run_cli(client_py, only_follower, "get", "k1") == (0, "v1", ""), "get k1 == v1")
    check(run_cli(client_py, cluster.endpoints(), "set", "k2", "v2")[0] == 0, "set (alias) k2")
    check(run_cli(client_py, cluster.endpoints(), "get", "missing")[0] == 1, "get missing: exit 1")
    check(run_cli(client_py, cluster.endpoints(), "del", "k2")[:2] == (0, "OK"), "del k2")
    check(run_cli(client_py, cluster.endpoints(), "del", "k2")[:2] == (1, "NOT_FOUND"),
          "del k2 again: NOT_FOUND")
    check(run_cli(client_py, cluster.endpoints(), "cas", "k1", "nope", "v2")[:2] == (1, "CAS_FAILED"),
          "cas with a wrong expectation fails")
    check(run_cli(client_py, cluster.endpoints(), "cas", "k1", "v1", "v2")[:2] == (0, "OK"),
          "cas with the right expectation succeeds")
    check(run_cli(client_py, cluster.endpoints(), "cas", "--absent", "k1", "v3")[:2] == (1, "CAS_FAILED"),
          "cas --absent on a present key fails")
    check(run_cli(client_py, cluster.endpoints(), "cas", "--absent", "k3", "v3")[:2] == (0, "OK"),
          "cas --absent on an absent key succeeds")
    check(run_cli(client_py, cluster.endpoints(), "get", "k1")[:2] == (0, "v2"), "get k1 == v2")
    code, out, _ = run_cli(client_py, cluster.endpoints(), "status")
    check(code == 0 and out.count('"reachable": true') == cluster.n, "status: every node reachable")

    # The library: binary values, stale reads on a follower (eventually equal).
    kvclient = load_client(client_py)
    c = kvclient.Client(cluster.endpoints(), timeout=10 * TIMEOUT_SCALE)
    try:
        c.put(b"bin\x00key", b"\xff\x00\x01")
        check(c.get(b"bin\x00key") == b"\xff\x00\x01", "binary key and value round trip")
        stale = kvclient.Client([foll_ep], timeout=10 * TIMEOUT_SCALE)
        wait_for(lambda: stale.get(b"bin\x00key", stale=True) == b"\xff\x00\x01", 5,
                 "a stale read on a follower to catch up")
        stale.close()
        check(True, "stale read on a follower returns the value")
        # Versions: the index of each write, a key's create and mod indexes,
        # and cas on the mod_index (docs/protocol.md, "Versions").
        first = c.put(b"ver", b"1")
        second = c.put(b"ver", b"2")
        check(0 < first < second, f"put returns its entry's index, growing ({first}, {second})")
        check(c.get_versioned(b"ver") == (b"2", first, second),
              f"get_versioned gives the value, create_index and mod_index ({c.get_versioned(b'ver')})")
        check(not c.cas(b"ver", None, b"x", expect_index=first),
              "cas on an old mod_index fails")
        check(c.cas(b"ver", None, b"3", expect_index=second), "cas on the current mod_index succeeds")
        check(not c.cas(b"ver", None, b"x", expect_index=0), "cas on expect_index 0 fails when present")
        check(c.cas(b"ver-new", None, b"n", expect_index=0), "cas on expect_index 0 creates a key")
        r = raw_call(lead_ep, {"id": 5, "op": "cas", "key": "ver", "value": "y", "expect": "3",
                               "expect_index": 1})
        check(r["status"] == "ERROR" and "not both" in r["error"],
              f"cas with expect and expect_index is refused ({r})")
        code, out, _ = run_cli(client_py, cluster.endpoints(), "get", "ver", "--versions")
        _, created, modified = c.get_versioned(b"ver")
        check(code == 0 and json.loads(out) == {"value": "3", "create_index": created,
                                                "mod_index": modified},
              f"get --versions prints the indexes ({out})")
        check(run_cli(client_py, cluster.endpoints(), "cas", "ver", "4", "--expect-index",
                      str(modified))[:2] == (0, "OK"), "cas --expect-index on the command line")
        # Scans (docs/protocol.md, "Scans"): ranges, prefixes, pages, keys only.
        for k in (b"scan/c", b"scan/a", b"scan/e", b"scan/b", b"scan/d", b"scan0", b"scam"):
            c.put(k, b"v-" + k)
        found, more = c.scan(prefix=b"scan/")
        check([k for k, _, _ in found] == [b"scan/a", b"scan/b", b"scan/c", b"scan/d", b"scan/e"]
              and not more and found[0][1] == b"v-scan/a" and found[0][2] > 0,
              f"scan --prefix lists the prefix's keys in order, with values and mod_index ({found})")
        found, more = c.scan(prefix=b"scan/", limit=2)
        check([k for k, _, _ in found] == [b"scan/a", b"scan/b"] and more,
              f"a scan's limit cuts it and says more ({found}, {more})")
        found, _ = c.scan(b"scan/b", b"scan/d", keys_only=True)
        check(found == [(b"scan/b", None, found[0][2]), (b"scan/c", None, found[1][2])],
              f"scan [start, end) with keys only ({found})")
        r = raw_call(lead_ep, {"id": 6, "op": "scan", "prefix": "scan/", "limit": 3})
        check(r["status"] == "OK" and len(r["kvs"]) == 3 and r["more"]
              and r["next"] == b"scan/c\x00", f"a raw scan page says where to go on ({r})")
        r = raw_call(lead_ep, {"id": 7, "op": "scan", "limit": 0})
        check(r["status"] == "ERROR" and "limit" in r["error"], f"limit 0 is refused ({r})")
        code, out, _ = run_cli(client_py, cluster.endpoints(), "scan", "--prefix", "scan/",
                               "--keys-only")
        check(code == 0 and [json.loads(line)["key"] for line in out.splitlines()]
              == ["scan/a", "scan/b", "scan/c", "scan/d", "scan/e"],
              f"scan on the command line prints a line per key ({out})")
        check(run_cli(client_py, cluster.endpoints(), "scan", "--prefix", "none/")[0] == 1,
              "scan of an empty range: exit 1")
        try:
            c.put("x" * 5000, "v")
            check(False, "an over-long key is refused")
        except kvclient.KvError as e:
            check("limit" in str(e), f"an over-long key gets ERROR ({e})")
    finally:
        c.close()

    # Exactly-once: a retried write (same client and seq) is applied once.
    w = {"op": "put", "key": "once", "client": 4242, "seq": 1}
    r1 = raw_call(lead_ep, dict(w, id=1, value="first"))
    r2 = raw_call(lead_ep, dict(w, id=2, value="second"))
    r3 = raw_call(lead_ep, {"id": 3, "op": "get", "key": "once"})
    check(r1["status"] == r2["status"] == "OK" and r3.get("value") == b"first",
          "a retried session write is answered OK and applied once")
    check(r1["index"] == r2["index"] == r3["mod_index"],
          f"the retry is answered with the original's index ({r1}, {r2}, {r3})")

    # Pipelining: many requests in flight on one connection, matched by id.
    s = _ctx.socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 0)
    s.connect(f"tcp://{lead_ep}")
    for i in range(1, 41):
        op = {"op": "put", "key": f"p{i}", "value": str(i)} if i % 2 else {"op": "get", "key": "k1"}
        s.send(msgpack.packb(dict(op, id=i)))
    got = {}
    deadline = time.monotonic() + 10 * TIMEOUT_SCALE
    while len(got) < 40 and s.poll(max(1, int((deadline - time.monotonic()) * 1000))):
        r = msgpack.unpackb(s.recv(), raw=False)
        got[r["id"]] = r
    s.close()
    check(sorted(got) == list(range(1, 41)) and all(r["status"] == "OK" for r in got.values()),
          "40 pipelined requests on one connection all answered OK")

    # A backup's part: the start's reply says what it is, the pieces add up
    # to it (a state machine snapshot, format 4: its first byte).
    c = kvclient.Client(cluster.endpoints(), timeout=10 * TIMEOUT_SCALE)
    try:
        info, data = c.backup_part()
        keys = len(c.scan(limit=10000)[0])
        check(info["status"] == "OK" and info["keys"] == keys and info["size"] == len(data)
              and data[:1] == b"\x04" and info["cluster"] == "default" and info["shards"] == 0,
              f"a backup part holds every key, and the bytes it announced ({info}, {keys})")
        r = raw_call(lead_ep, {"id": 79, "op": "backup", "backup": info["backup"], "cursor": 0})
        check(r["status"] == "ERROR" and "no backup" in r["error"],
              f"a backup read to its end is closed ({r})")
        r = raw_call(lead_ep, {"id": 80, "op": "backup"})
        closed = raw_call(lead_ep, {"id": 81, "op": "backup", "backup": r["backup"], "close": True})
        piece = raw_call(lead_ep, {"id": 82, "op": "backup", "backup": r["backup"], "cursor": 0})
        check(r["status"] == closed["status"] == "OK" and piece["status"] == "ERROR",
              f"a backup closed before its end is gone ({r}, {closed}, {piece})")
    finally:
        c.close()

    # Malformed input: ERROR with the id when it can be read, node keeps serving.
    r = raw_call(lead_ep, None, raw_bytes=b"\xc1 not msgpack")
    check(r is not None and r["status"] == "ERROR" and r["id"] == 0, f"garbage bytes get ERROR ({r})")
    r = raw_call(lead_ep, {"id": 77, "op": "frobnicate", "key": "k"})
    check(r is not None and r["status"] == "ERROR" and r["id"] == 77 and "unknown op" in r["error"],
          f"an unknown op gets ERROR with its id ({r})")
    r = raw_call(lead_ep, {"id": 78, "op": "put", "key": "k"})
    check(r is not None and r["status"] == "ERROR" and r["id"] == 78, f"a put without value gets ERROR ({r})")
    check(run_cli(client_py, [lead_ep], "get", "k1")[:2] == (0, "v2"),
          "the leader still serves after malformed requests")
    check(not cluster.any_exited(), "no node exited")


def expiry_scenario(cluster, client_py):
    """Keys with a deadline (docs/protocol.md, "Expiry"): ttl_ms on put and
    cas, touch, what get and scan say is left, keys vanishing on time and
    not before, and the kv.expire event."""
    leader = cluster.leader()
    follower = next(i for i in range(1, cluster.n + 1) if i != leader)
    lead_ep, foll_ep = cluster.endpoint(leader), cluster.endpoint(follower)
    kvclient = load_client(client_py)
    short = int(300 * TIMEOUT_SCALE)  # ms: a deadline the test waits for
    long = 600_000  # ms: one it never reaches
    c = kvclient.Client(cluster.endpoints(), timeout=10 * TIMEOUT_SCALE)
    sub = _ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.LINGER, 0)
    sub.setsockopt(zmq.SUBSCRIBE, b"kv.")
    sub.connect(f"tcp://127.0.0.1:{int(lead_ep.rsplit(':', 1)[1]) + EVENT_PORT_OFFSET}")

    def events():
        """The key events that arrived, as (topic, body)."""
        got = []
        while sub.poll(0):
            topic, body = sub.recv_multipart()
            got.append((topic, msgpack.unpackb(body, raw=False)))
        return got

    def subscribed():
        # A subscription reaches the publisher a moment after connect: write
        # until one of our own events comes through.
        c.put(b"ttl-probe", b"p")
        return sub.poll(int(100 * TIMEOUT_SCALE)) and events()

    def ttl_of(key):
        """c.ttl(key), or "absent"."""
        try:
            return c.ttl(key)
        except kvclient.NotFound:
            return "absent"

    def follower_ttl():
        """ttl/extended's ttl_ms on the follower once it hides ttl/short."""
        if stale.get(b"ttl/short", stale=True) is not None:
            return None
        found = stale.get_versioned(b"ttl/extended", stale=True)
        return found and found.ttl_ms

    def expire_event():
        return next((body for topic, body in events()
                     if topic == b"kv.expire" and body.get("key") == b"ttl/short"), None)

    stale = kvclient.Client([foll_ep], timeout=10 * TIMEOUT_SCALE)
    try:
        wait_for(subscribed, 10, "the event subscription to take")
        # Keys put before the witness (ttl/short) have deadlines at or
        # before its own: once the witness is gone, each of them would be
        # gone too, but for the touch or put that changed its deadline.
        c.put(b"ttl/extended", b"e", ttl_ms=short)
        c.put(b"ttl/touched-permanent", b"t", ttl_ms=short)
        c.put(b"ttl/put-permanent", b"p", ttl_ms=short)
        start = time.time()  # the node stamps writes with the wall clock
        put_index = c.put(b"ttl/short", b"s", ttl_ms=short)
        got = c.get_versioned(b"ttl/short")
        check(got == (b"s", put_index, put_index) and within(got.ttl_ms, 0, short),
              f"a key put with ttl_ms {short} is there right after, with 1..{short} ms left "
              f"({got}, ttl_ms {got and got.ttl_ms})")
        left = c.ttl(b"ttl/short")
        check(within(left, 0, got.ttl_ms),
              f"ttl() gives what is left, no more than get did ({left})")
        before = c.get_versioned(b"ttl/extended")
        touch_index = c.touch(b"ttl/extended", ttl_ms=long)
        after = c.get_versioned(b"ttl/extended")
        check(touch_index is not None and touch_index > put_index,
              f"touch returns its own index ({touch_index}, after {put_index})")
        check(before is not None and after == before and within(after.ttl_ms, short, long),
              f"touch sets a new deadline and keeps the value, create_index and mod_index "
              f"({before} -> {after}, ttl_ms {before and before.ttl_ms} -> "
              f"{after and after.ttl_ms})")
        check(c.touch(b"ttl/touched-permanent") is not None
              and ttl_of(b"ttl/touched-permanent") is None,
              "touch without ttl_ms makes a key permanent")
        c.put(b"ttl/put-permanent", b"p2")
        check(ttl_of(b"ttl/put-permanent") is None,
              "a put without ttl_ms makes a key with a deadline permanent again")

        def witness_gone():
            return c.get(b"ttl/short") is None and time.time()

        gone_at = wait_for(witness_gone, 10, f"the key put with ttl_ms {short} to expire")
        waited = (gone_at - start) * 1000
        check(waited >= short - 2, f"it expired no sooner than {short} ms after the put "
                                   f"(NOT_FOUND {waited:.0f} ms after)")
        check(c.get(b"ttl/extended") == b"e" and within(ttl_of(b"ttl/extended"), short, long),
              "the touched key outlives its first deadline")
        check(c.get(b"ttl/touched-permanent") == b"t", "the key touched without ttl_ms stays")
        check(c.get(b"ttl/put-permanent") == b"p2", "the key put again without ttl_ms stays")
        found, more = c.scan(prefix=b"ttl/")
        check([e.key for e in found] == [b"ttl/extended", b"ttl/put-permanent",
                                         b"ttl/touched-permanent"] and not more
              and within(found[0].ttl_ms, short, long) and found[1].ttl_ms is None
              and found[2].ttl_ms is None,
              f"a scan skips the expired key and gives ttl_ms where there is a deadline "
              f"({[(e, e.ttl_ms) for e in found]})")
        ms = wait_for(follower_ttl, 10, "a follower to hide the expired key")
        check(within(ms, short, long),
              f"a stale read on a follower hides the expired key and gives ttl_ms ({ms})")
        ev = wait_for(expire_event, 10, "the leader's kv.expire event for the expired key")
        check(ev.get("node") == leader and ev.get("size") == 0 and ev.get("index", 0) > put_index
              and set(ev) == {"node", "seq", "key", "index", "size"},
              f"kv.expire names the key, the deleting entry's index and size 0 ({ev})")

        check(c.touch(b"ttl/short") is None, "touch of an expired key: NOT_FOUND")
        check(c.touch(b"ttl/never") is None, "touch of an absent key: NOT_FOUND")
        e = raised(c.ttl, b"ttl/never")
        check(isinstance(e, kvclient.NotFound), f"ttl() of an absent key raises NotFound ({e!r})")
        check(not c.delete(b"ttl/short"), "del of an expired key: NOT_FOUND")
        check(c.cas(b"ttl/short", None, b"again") and ttl_of(b"ttl/short") is None,
              "cas 'only if absent' succeeds on an expired key, which comes back permanent")

        # cas takes ttl_ms as put does; a cas that fails changes no deadline.
        check(c.cas(b"ttl/cas", None, b"1", ttl_ms=long)
              and within(ttl_of(b"ttl/cas"), short, long), "cas creates a key with a deadline")
        check(c.cas(b"ttl/cas", b"1", b"2") and ttl_of(b"ttl/cas") is None,
              "cas without ttl_ms makes the key permanent")
        check(not c.cas(b"ttl/cas", b"nope", b"3", ttl_ms=long) and ttl_of(b"ttl/cas") is None,
              "a failed cas with ttl_ms leaves the key permanent")
        modified = c.get_versioned(b"ttl/cas").mod_index
        check(c.cas(b"ttl/cas", None, b"4", expect_index=modified, ttl_ms=long)
              and within(ttl_of(b"ttl/cas"), short, long), "cas on expect_index with ttl_ms")

        # Refused ttl_ms: ERROR, nothing executed.
        for bad in (MAX_TTL_MS + 1, 2**64 - 1, -1, "100", 1.5, True):
            e = raised(c.put, b"ttl/bad", b"v", ttl_ms=bad)
            check(isinstance(e, kvclient.KvError) and c.get(b"ttl/bad") is None,
                  f"put with ttl_ms {bad!r} gets ERROR and writes nothing ({e!r})")
        e = raised(c.cas, b"ttl/cas", None, b"5", expect_index=0, ttl_ms=MAX_TTL_MS + 1)
        check(isinstance(e, kvclient.KvError), f"cas with ttl_ms over the maximum: ERROR ({e!r})")
        e = raised(c.touch, b"ttl/extended", ttl_ms=MAX_TTL_MS + 1)
        check(isinstance(e, kvclient.KvError) and within(ttl_of(b"ttl/extended"), short, long),
              f"touch with ttl_ms over the maximum: ERROR, the deadline unchanged ({e!r})")
        e = raised(c.touch, b"ttl/extended", ttl_ms="1")
        check(isinstance(e, kvclient.KvError), f"touch with a str ttl_ms: ERROR ({e!r})")
        e = raised(c.put, b"ttl/max", b"v", ttl_ms=MAX_TTL_MS)
        check(e is None and within(ttl_of(b"ttl/max"), MAX_TTL_MS - 60_000, MAX_TTL_MS),
              f"ttl_ms {MAX_TTL_MS} (ten years) is taken ({e!r})")
    except (kvclient.KvError, kvclient.Denied, kvclient.Unavailable, kvclient.NotFound) as e:
        raise Failure(f"the client raised {e!r}") from e
    finally:
        c.close()
        stale.close()
        sub.close()

    # The wire (docs/protocol.md): ttl_ms in get replies and scan entries
    # only for keys with a deadline; touch like any write.
    r = raw_call(lead_ep, {"id": 21, "op": "put", "key": "raw/ttl", "value": "v", "ttl_ms": long})
    check(r == {"id": 21, "status": "OK", "index": r.get("index")} and r["index"] > 0,
          f"a put with ttl_ms is answered OK with its index ({r})")
    r = raw_call(lead_ep, {"id": 22, "op": "get", "key": "raw/ttl"})
    check(r["status"] == "OK" and set(r) == {"id", "status", "value", "create_index", "mod_index",
                                             "ttl_ms"}
          and within(r["ttl_ms"], long - 60_000, long),
          f"get of a key with a deadline carries ttl_ms ({r})")
    r = raw_call(lead_ep, {"id": 23, "op": "put", "key": "raw/zero", "value": "v", "ttl_ms": 0})
    check(r["status"] == "OK", f"a put with ttl_ms 0 is answered OK ({r})")
    r = raw_call(lead_ep, {"id": 24, "op": "get", "key": "raw/zero"})
    check(r["status"] == "OK" and "ttl_ms" not in r,
          f"ttl_ms 0 makes a permanent key: get has no ttl_ms ({r})")
    r = raw_call(lead_ep, {"id": 25, "op": "scan", "prefix": "raw/"})
    check(r["status"] == "OK" and [kv["key"] for kv in r["kvs"]] == [b"raw/ttl", b"raw/zero"]
          and within(r["kvs"][0].get("ttl_ms"), long - 60_000, long)
          and "ttl_ms" not in r["kvs"][1],
          f"scan entries carry ttl_ms only for keys with a deadline ({r})")
    r = raw_call(lead_ep, {"id": 26, "op": "scan", "prefix": "raw/", "keys_only": True})
    check(r["status"] == "OK" and r["kvs"] and "ttl_ms" in r["kvs"][0]
          and "value" not in r["kvs"][0], f"keys_only leaves the values out, not ttl_ms ({r})")
    r = raw_call(foll_ep, {"id": 27, "op": "touch", "key": "raw/ttl"})
    check(r == {"id": 27, "status": "REDIRECT", "leader": lead_ep},
          f"a follower answers touch with REDIRECT, as a write ({r})")
    before = raw_call(lead_ep, {"id": 28, "op": "get", "key": "raw/ttl"})
    touch = {"op": "touch", "key": "raw/ttl", "client": 4343, "seq": 1, "value": "ignored"}
    r1 = raw_call(lead_ep, dict(touch, id=29))
    r2 = raw_call(lead_ep, dict(touch, id=30, ttl_ms=short))
    after = raw_call(lead_ep, {"id": 31, "op": "get", "key": "raw/ttl"})
    check(r1 == {"id": 29, "status": "OK", "index": r1.get("index")}
          and r1["index"] > before["mod_index"] and r2 == dict(r1, id=30),
          f"touch is answered OK with its index, a session resend with the original's "
          f"({r1}, {r2})")
    check(after["status"] == "OK" and "ttl_ms" not in after and after["value"] == b"v"
          and (after["create_index"], after["mod_index"])
          == (before["create_index"], before["mod_index"]),
          f"touch without ttl_ms made the key permanent, once, and kept its value and versions "
          f"({before} -> {after})")
    r = raw_call(lead_ep, {"id": 32, "op": "touch", "key": "raw/absent"})
    check(r == {"id": 32, "status": "NOT_FOUND", "index": r.get("index")} and r["index"] > 0,
          f"touch of an absent key: NOT_FOUND with index ({r})")
    for i, (op, bad) in enumerate([("put", MAX_TTL_MS + 1), ("put", "5"), ("put", -5),
                                   ("put", 2.5), ("put", False), ("cas", MAX_TTL_MS + 1),
                                   ("touch", MAX_TTL_MS + 1), ("touch", b"\x05")], 40):
        r = raw_call(lead_ep, {"id": i, "op": op, "key": "raw/ttl", "value": "new", "ttl_ms": bad})
        check(r["status"] == "ERROR" and r["id"] == i and r.get("error"),
              f"{op} with ttl_ms {bad!r}: ERROR ({r})")
    r = raw_call(lead_ep, {"id": 50, "op": "get", "key": "raw/ttl"})
    check(r["value"] == b"v" and "ttl_ms" not in r and r["mod_index"] == after["mod_index"],
          f"the refused writes changed nothing ({r})")

    # The command line.
    eps = cluster.endpoints()

    def cli_ttl(key):
        """What `ttl KEY` printed, as an int when it is one."""
        code, out, err = run_cli(client_py, eps, "ttl", key)
        return int(out) if code == 0 and out.isdigit() else (code, out, err)

    check(run_cli(client_py, eps, "put", "cli/ttl", "v", "--ttl", str(long)) == (0, "OK", ""),
          "put --ttl")
    ms = cli_ttl("cli/ttl")
    check(within(ms, long - 60_000, long), f"ttl prints the ms left ({ms})")
    code, out, _ = run_cli(client_py, eps, "get", "cli/ttl", "--versions")
    check(code == 0 and within(json.loads(out).get("ttl_ms"), long - 60_000, long),
          f"get --versions prints ttl_ms ({out})")
    code, out, _ = run_cli(client_py, eps, "scan", "--prefix", "cli/")
    check(code == 0 and within(json.loads(out).get("ttl_ms"), long - 60_000, long),
          f"scan prints ttl_ms ({out})")
    check(run_cli(client_py, eps, "touch", "cli/ttl") == (0, "OK", ""), "touch without --ttl")
    check(cli_ttl("cli/ttl") == (0, "permanent", ""), "ttl of a permanent key prints permanent")
    code, out, _ = run_cli(client_py, eps, "get", "cli/ttl", "--versions")
    check(code == 0 and "ttl_ms" not in json.loads(out),
          f"get --versions of a permanent key has no ttl_ms ({out})")
    check(run_cli(client_py, eps, "touch", "cli/ttl", "--ttl", str(long)) == (0, "OK", ""),
          "touch --ttl")
    ms = cli_ttl("cli/ttl")
    check(within(ms, long - 60_000, long), f"touch --ttl set a deadline ({ms})")
    check(run_cli(client_py, eps, "put", "cli/ttl", "v2") == (0, "OK", "")
          and cli_ttl("cli/ttl") == (0, "permanent", ""),
          "put without --ttl makes the key permanent again")
    check(run_cli(client_py, eps, "cas", "cli/ttl", "v2", "v3", "--ttl", str(long)) == (0, "OK", "")
          and within(cli_ttl("cli/ttl"), long - 60_000, long), "cas --ttl")
    check(run_cli(client_py, eps, "cas", "--absent", "cli/new", "n", "--ttl", str(long))[:2]
          == (0, "OK") and within(cli_ttl("cli/new"), long - 60_000, long), "cas --absent --ttl")
    check(run_cli(client_py, eps, "touch", "cli/absent")[:2] == (1, "NOT_FOUND"),
          "touch of an absent key: NOT_FOUND, exit 1")
    check(cli_ttl("cli/absent") == (1, "", "NOT_FOUND"), "ttl of an absent key: exit 1")
    code, _, err = run_cli(client_py, eps, "put", "cli/ttl", "x", "--ttl", str(MAX_TTL_MS + 1))
    check(code == 4 and err.startswith("ERROR:"), f"--ttl over the maximum: exit 4 ({code}, {err})")
    code, _, err = run_cli(client_py, eps, "put", "cli/ttl", "x", "--ttl", "-1")
    check(code == 2 and "--ttl" in err, f"a negative --ttl is a usage error ({code})")
    check(run_cli(client_py, eps, "get", "cli/ttl")[:2] == (0, "v3"),
          "the refused puts wrote nothing")
    check(not cluster.any_exited(), "no node exited")


def txn_scenario(cluster, client_py):
    """docs/protocol.md, "Transactions": the wire shape, both branches, every
    kind of compare and op, sessions, errors, and the command line."""
    leader = cluster.leader()
    follower = next(i for i in range(1, cluster.n + 1) if i != leader)
    lead_ep, foll_ep = cluster.endpoint(leader), cluster.endpoint(follower)
    lock = {"compare": [{"key": "lock", "absent": True}],
            "success": [{"op": "put", "key": "lock", "value": "me", "ttl_ms": 60000}],
            "failure": [{"op": "get", "key": "lock"}]}
    r = raw_call(foll_ep, dict(lock, op="txn", id=4))
    check(r == {"id": 4, "status": "REDIRECT", "leader": lead_ep},
          f"a follower answers a txn with REDIRECT to the leader ({r})")
    r = raw_call(lead_ep, dict(lock, op="txn", id=5))
    check(r["status"] == "OK" and r["succeeded"] is True and r["index"] > 0
          and r["results"] == [{"status": "OK"}],
          f"a lock taken only if absent: the success branch ran ({r})")
    taken_at = r["index"]
    r = raw_call(lead_ep, dict(lock, op="txn", id=6))
    got = r["results"][0] if r.get("results") else {}
    check(r["status"] == "OK" and r["succeeded"] is False and len(r["results"]) == 1
          and got["status"] == "OK" and got["value"] == b"me" and got["create_index"] == taken_at
          and got["mod_index"] == taken_at and within(got.get("ttl_ms"), 50000, 60000),
          f"the lock again: the failure branch's get reads the holder, its versions and ttl ({r})")

    kvclient = load_client(client_py)
    c = kvclient.Client(cluster.endpoints(), timeout=10 * TIMEOUT_SCALE)
    try:
        # A transfer between two counters, on their mod_index.
        c.put(b"{acct}:a", b"100")
        c.put(b"{acct}:b", b"0")
        _, _, a_mod = c.get_versioned(b"{acct}:a")
        _, _, b_mod = c.get_versioned(b"{acct}:b")
        transfer = dict(compare=[{"key": "{acct}:a", "mod_index": a_mod},
                                 {"key": "{acct}:b", "mod_index": b_mod, "cmp": "eq"}],
                        success=[{"op": "put", "key": "{acct}:a", "value": "70"},
                                 {"op": "put", "key": "{acct}:b", "value": "30"},
                                 {"op": "get", "key": "{acct}:a"}],
                        failure=[{"op": "get", "key": "{acct}:a"}, {"op": "get", "key": "{acct}:b"}])
        t = c.txn(**transfer)
        check(t.succeeded and t.results[2]["value"] == b"70" and t.results[2]["mod_index"] == t.index,
              f"a transfer on both mod_indexes applies, and its get sees its own put ({t})")
        check([c.get_versioned(k)[::2] for k in (b"{acct}:a", b"{acct}:b")]
              == [(b"70", t.index), (b"30", t.index)], "both keys written at the txn's index")
        t = c.txn(**transfer)
        check(not t.succeeded and [r["value"] for r in t.results] == [b"70", b"30"],
              f"the same transfer again fails: the mod_indexes moved; failure's gets ran ({t})")
        check(c.txn([{"key": "{acct}:a", "mod_index": t.index, "cmp": "lt"},
                     {"key": "{acct}:a", "mod_index": 1, "cmp": "gt"},
                     {"key": "{acct}:a", "value": "70"}, {"key": "{acct}:a", "present": True},
                     {"key": "nowhere", "mod_index": 0}]).succeeded,
              "lt, gt, value, present and mod_index 0 of an absent key hold")
        t = c.txn(success=[{"op": "del", "key": "{acct}:b"}, {"op": "del", "key": "{acct}:b"},
                           {"op": "get", "key": "{acct}:b"}])
        check(t.succeeded and [r["status"] for r in t.results] == ["OK", "NOT_FOUND", "NOT_FOUND"],
              f"no compares: success runs; a del of what an earlier op deleted is NOT_FOUND ({t})")
        check(c.get(b"{acct}:b") is None, "the txn's del took effect")
    finally:
        c.close()

    # Sessions: a resend is answered with its first index, resent and no results.
    once = dict(op="txn", client=4242, seq=1, success=[{"op": "put", "key": "once", "value": "1"}])
    first = raw_call(lead_ep, dict(once, id=7))
    again = raw_call(lead_ep, dict(once, id=8))
    check(first["succeeded"] and again == {"id": 8, "status": "OK", "index": first["index"],
                                           "succeeded": True, "resent": True, "results": []},
          f"a resent txn is not applied again ({first}, {again})")

    # Malformed: ERROR naming the item; nothing applied.
    r = raw_call(lead_ep, {"id": 9, "op": "txn", "compare": [{"key": "k", "value": "v",
                                                              "absent": True}]})
    check(r["status"] == "ERROR" and r["error"].startswith("compare[0]:"),
          f"a compare of two kinds is refused, naming it ({r})")
    r = raw_call(lead_ep, {"id": 9, "op": "txn",
                           "success": [{"op": "get", "key": "k"}] * 129})
    check(r["status"] == "ERROR" and "at most 128" in r["error"], f"129 ops are refused ({r})")

    # The command line: JSON on stdin, the reply as JSON, exit 1 for failure.
    code, out, err = run_cli(client_py, cluster.endpoints(), "txn",
                             stdin=json.dumps(dict(lock, compare=[{"key": "lock", "value": "me"}]))
                             .encode())
    check(code == 0 and json.loads(out)["results"] == [{"status": "OK"}],
          f"txn on the command line runs the success branch ({code}, {out}, {err})")
    code, out, _ = run_cli(client_py, cluster.endpoints(), "txn", stdin=json.dumps(lock).encode())
    check(code == 1 and json.loads(out)["results"][0]["value"] == "me",
          f"txn on the command line exits 1 when the failure branch ran ({code}, {out})")
    code, _, err = run_cli(client_py, cluster.endpoints(), "txn", stdin=b"[1]")
    check(code == 2 and "JSON object" in err, f"txn with a stdin that is not an object: exit 2 ({err})")


def watch_scenario(cluster, client_py):
    """docs/protocol.md, "Watches": the stream on the wire, resuming from an
    index, keys only, cancel, errors, the library and the command line."""
    leader = cluster.leader()
    follower = next(i for i in range(1, cluster.n + 1) if i != leader)
    foll_ep = cluster.endpoint(follower)
    kvclient = load_client(client_py)
    c = kvclient.Client(cluster.endpoints(), timeout=10 * TIMEOUT_SCALE)
    try:
        # On the wire, from a follower: the first message says who serves it
        # and where it starts; then the changes to the range, in batches
        # that chain (after = the last upto).
        s = _ctx.socket(zmq.DEALER)
        s.setsockopt(zmq.LINGER, 0)
        s.connect(f"tcp://{foll_ep}")
        s.send(msgpack.packb({"id": 70, "op": "watch", "prefix": "w/"}))
        check(s.poll(5000 * TIMEOUT_SCALE), "a watch is answered at once")
        first = msgpack.unpackb(s.recv(), raw=False)
        check(first["id"] == 70 and first["status"] == "OK" and first["node"] == follower
              and first["events"] == [] and first["upto"] == first["after"],
              f"its first message names the node serving it, with no change yet ({first})")
        put1 = c.put(b"w/1", b"a")
        c.put(b"x", b"not watched")
        c.delete(b"w/1")
        put2 = c.put(b"w/2", b"b")
        events, upto = [], first["upto"]
        while len(events) < 3:
            check(s.poll(5000 * TIMEOUT_SCALE), "the watch's changes come")
            m = msgpack.unpackb(s.recv(), raw=False)
            check(m["id"] == 70 and m["status"] == "OK" and m["after"] == upto,
                  f"a batch follows the last one ({m})")
            upto = m["upto"]
            events += m["events"]
        check([(e["type"], e["key"], e.get("value")) for e in events]
              == [("put", b"w/1", b"a"), ("del", b"w/1", None), ("put", b"w/2", b"b")]
              and events[0]["index"] == put1 and events[2]["index"] == put2
              and events[0]["create_index"] == put1,
              f"the follower streams the range's changes in log order with their indexes ({events})")
        s.send(msgpack.packb({"id": 71, "op": "cancel", "watch": 70}))
        deadline = time.monotonic() + 5 * TIMEOUT_SCALE
        while True:
            check(time.monotonic() < deadline and s.poll(5000), "cancel is answered")
            m = msgpack.unpackb(s.recv(), raw=False)
            if m["id"] == 71:
                break
        check(m["status"] == "OK", f"cancel ends the watch ({m})")
        c.put(b"w/3", b"c")
        check(not s.poll(int(1500 * TIMEOUT_SCALE)), "no message after cancel")
        s.send(msgpack.packb({"id": 72, "op": "cancel", "watch": 70}))
        check(s.poll(5000) and msgpack.unpackb(s.recv(), raw=False)["status"] == "NOT_FOUND",
              "cancel of no watch: NOT_FOUND")
        s.close()
        r = raw_call(foll_ep, {"id": 3, "op": "watch", "prefix": "w/", "shard": 2})
        check(r["status"] == "ERROR" and "not sharded" in r["error"],
              f"a watch naming a shard of an unsharded cluster: ERROR ({r})")
        r = raw_call(foll_ep, {"id": 3, "op": "cancel"})
        check(r["status"] == "ERROR" and "watch" in r["error"], f"cancel without watch: ERROR ({r})")
        req = _ctx.socket(zmq.REQ)
        req.setsockopt(zmq.LINGER, 0)
        req.connect(f"tcp://{foll_ep}")
        req.send(msgpack.packb({"id": 4, "op": "watch"}))
        check(req.poll(5000), "a watch on a REQ socket is answered")
        r = msgpack.unpackb(req.recv(), raw=False)
        req.close()
        check(r["status"] == "ERROR" and "DEALER" in r["error"], f"a REQ socket cannot watch ({r})")

        # The library, from an index in the past (the history), keys only.
        w = c.watch(prefix=b"w/", from_index=put1, keys_only=True)
        got = [w.next_event(5 * TIMEOUT_SCALE) for _ in range(4)]
        check([(e.type, e.key, e.value, e.index) for e in got if e]
              == [("put", b"w/1", None, put1), ("del", b"w/1", None, put1 + 2),
                  ("put", b"w/2", None, put2), ("put", b"w/3", None, put2 + 1)],
              f"a watch from an older index reads the history, then goes on ({got})")
        c.put(b"w/4", b"d")
        e = w.next_event(5 * TIMEOUT_SCALE)
        check(e is not None and e.key == b"w/4" and w.position()[None] >= e.index,
              f"and then the live changes; position() is where it is ({e}, {w.position()})")
        w.close()
    finally:
        c.close()
    # The command line: a JSON line per change, --count stops it.
    code, out, err = run_cli(client_py, cluster.endpoints(), "watch", "w/", "--from", str(put1),
                             "--count", "2")
    lines = [json.loads(line) for line in out.splitlines()]
    check(code == 0 and [(x["type"], x["key"], x.get("value")) for x in lines]
          == [("put", "w/1", "a"), ("del", "w/1", None)] and "now served by" in err,
          f"watch on the command line ({code}, {out}, {err})")


def secure_scenario(cluster, client_py):
    keys = cluster.keys
    leader = cluster.wait_for_leader(60 * TIMEOUT_SCALE)
    follower = next(i for i in range(1, cluster.n + 1) if i != leader)
    lead_ep, foll_ep = cluster.endpoint(leader), cluster.endpoint(follower)
    print(f"secure cluster: leader is node {leader} at {lead_ep}", flush=True)

    # The client is given one member's key: the leader's must come from a
    # REDIRECT's leader_key, the others' from status replies.
    one_member = os.path.join(cluster.dir, "one-member")
    with open(one_member, "w") as f:
        f.write(f"# one member is enough\n{follower} {keys.public[f'node-{follower}']} {foll_ep}\n")

    def key(name):
        return os.path.join(keys.dir, name + ".key")

    def cli(name, endpoints, *args, env=None, stdin=b""):
        return run_cli(client_py, endpoints, "--key", key(name), "--server-keys", one_member, *args,
                       env=env, stdin=stdin)

    check(cli("write", [foll_ep], "put", "sk", "sv") == (0, "OK", ""),
          "a write key puts through a follower, following REDIRECT with leader_key")
    from_env = {"KVSTORE_KEY": key("read"), "KVSTORE_SERVER_KEYS": one_member}
    check(run_cli(client_py, [foll_ep], "get", "sk", env=from_env) == (0, "sv", ""),
          "a read key from KVSTORE_KEY and KVSTORE_SERVER_KEYS gets the value")
    code, _, err = run_cli(client_py, [foll_ep], "put", "sk", "no", env=from_env)
    check(code == 5 and err.startswith("DENIED") and "write role" in err,
          f"a read key's put is DENIED, exit 5 ({code}, {err})")
    check(run_cli(client_py, cluster.endpoints(), "get", "sk", env=from_env)[:2] == (0, "sv"),
          "DENIED changed nothing")
    code, _, err = run_cli(client_py, [foll_ep], "touch", "sk", "--ttl", "60000", env=from_env)
    check(code == 5 and err.startswith("DENIED") and "write role" in err,
          f"a read key's touch is DENIED, exit 5 ({code}, {err})")
    check(run_cli(client_py, [foll_ep], "ttl", "sk", env=from_env) == (0, "permanent", ""),
          "a read key reads the ttl: the DENIED touch set none")
    check(cli("write", [foll_ep], "touch", "sk") == (0, "OK", ""), "a write key may touch")
    only_reads = json.dumps({"success": [{"op": "get", "key": "sk"}]}).encode()
    code, _, err = run_cli(client_py, [foll_ep], "txn", env=from_env, stdin=only_reads)
    check(code == 5 and "write role" in err,
          f"a read key's txn is DENIED, even one of gets only ({code}, {err})")
    code, out, _ = cli("write", [foll_ep], "txn", stdin=only_reads)
    check(code == 0 and json.loads(out)["results"][0]["value"] == "sv",
          f"a write key's txn runs ({code}, {out})")
    code, _, err = cli("write", [foll_ep], "cas", "sk", "sv", "sw")
    check(code == 0, f"a write key's cas succeeds ({code}, {err})")
    order = [foll_ep] + [e for e in cluster.endpoints() if e != foll_ep]
    code, out, _ = cli("read", order, "status")
    check(code == 0 and out.count('"reachable": true') == cluster.n,
          "status: every node reachable, the keys learned from the first one's member_keys")

    code, _, err = cli("write", [lead_ep], "get", "sk")
    check(code == 3 and err.startswith(f"UNAVAILABLE: no server key for {lead_ep}"),
          f"an endpoint whose key is unknown is not connected, and says so ({err})")
    code, _, err = run_cli(client_py, cluster.endpoints(), "get", "sk", "--timeout", "2")
    check(code == 3, f"a plain client gets no answer from a secure cluster ({code}, {err})")
    public, secret = zmq.curve_keypair()
    with open(os.path.join(cluster.dir, "stranger.key"), "w") as f:
        f.write(secret.decode() + "\n")
    code, _, err = run_cli(client_py, cluster.endpoints(), "--key",
                           os.path.join(cluster.dir, "stranger.key"), "--server-keys", keys.peers,
                           "get", "sk", "--timeout", "2")
    check(code == 3, f"a key the cluster does not know gets no answer ({code}, {err})")

    # The library, with the peers file every node was started with.
    kvclient = load_client(client_py)
    c = kvclient.Client(cluster.endpoints(), timeout=10 * TIMEOUT_SCALE,
                        key=kvclient.load_key(key("admin")),
                        server_keys=kvclient.load_server_keys(keys.peers))
    try:
        c.put(b"bin\x00key", b"\xff\x00")
        check(c.get(b"bin\x00key") == b"\xff\x00", "the library round-trips over CURVE")
        check(c.shards()["shards"] == 0, "shards over CURVE: not sharded")
    finally:
        c.close()
    check(all(cluster.alive(i) for i in range(1, cluster.n + 1)), "no node exited")


def run_secure(kvstore, client_py):
    """The secure scenario on a kvcluster.Cluster; exit code 0 or 1."""
    start = time.monotonic()
    try:
        with kvcluster.Cluster(os.path.dirname(kvstore), nodes=3, secure=True,
                               extra_args=["--shards", "0"]) as cluster:
            cluster.start()
            secure_scenario(cluster, client_py)
    except Failure as e:
        print(f"FAIL: {e}", file=sys.stderr)
        return 1
    print(f"PASS in {time.monotonic() - start:.1f}s")
    return 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kvstore", required=True)
    ap.add_argument("--client", required=True)
    ap.add_argument("--secure", action="store_true", help="a secure cluster (CurveZMQ)")
    a = ap.parse_args()
    if a.secure:
        return run_secure(os.path.abspath(a.kvstore), os.path.abspath(a.client))
    root = tempfile.mkdtemp(prefix="kv-examples-")
    cluster = Cluster(os.path.abspath(a.kvstore), root)

    def on_signal(signum, _frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    ok = False
    start = time.monotonic()
    try:
        cluster.start()
        scenario(cluster, os.path.abspath(a.client))
        expiry_scenario(cluster, os.path.abspath(a.client))
        txn_scenario(cluster, os.path.abspath(a.client))
        watch_scenario(cluster, os.path.abspath(a.client))
        codes = cluster.stop()
        check(all(c == 0 for c in codes.values()), f"SIGTERM stops every node cleanly ({codes})")
        ok = True
    except Failure as e:
        print(f"FAIL: {e}", file=sys.stderr)
    finally:
        cluster.stop()
        if not ok:
            for name in sorted(os.listdir(root)):
                if name.endswith(".log"):
                    with open(os.path.join(root, name), errors="replace") as f:
                        tail = f.readlines()[-30:]
                    print(f"--- {name} (last lines)\n{''.join(tail)}", file=sys.stderr)
        shutil.rmtree(root, ignore_errors=True)
    print(f"{'PASS' if ok else 'FAIL'} in {time.monotonic() - start:.1f}s")
    return 0 if ok else 1


if __name__ == "__main__":
    run_script(main)
