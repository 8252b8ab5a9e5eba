"""Watches end to end (issue 16), against clusters of real processes.

- Faults: writers put and delete keys under a prefix while a watcher
  (examples/client.py's Client.watch) runs throughout; the leader is killed
  -9 and restarted, then the node serving the watcher, then the node serving
  it next is "partitioned" with SIGSTOP for about 5 s and SIGCONT (a stopped
  node is silent to clients and peers alike, which is what the watcher must
  survive; a real partition with iptables would need root and leave rules
  behind on a crash). The watcher's events must be exactly the committed
  changes: every acknowledged write once, at its index, in index order;
  writes of unknown outcome at most once; nothing else. The ground truth is
  a fresh watch from the first index on a node never killed (its history),
  and a scan equal to the events applied in order.
- Compaction: a watcher away for longer than a small history gets
  COMPACTED, and rebuilds the state as docs/protocol.md says.
- Sharded: a watch over 4 shards through a kill -9 of the node serving
  every stream, checked per shard as above.
- A slow watcher that reads nothing while 64 KiB values go well past its
  connection's 64 MiB reply budget slows neither the writes nor another
  watcher on the same node, and when read at last ends with COMPACTED,
  without a silent gap.

Run by ctest as: python3 test_watch.py BUILD_DIR. KVSTORE_TEST_SEED=N
replays the writers' choices (not the timing). A failed test keeps its
cluster's directory (logs, data) and says where.
"""
import collections
import os
import random
import shutil
import signal
import sys
import tempfile
import threading
import time
import unittest

import msgpack
import zmq

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "examples"))
from client import Client, Compacted, Unavailable, Unknown  # noqa: E402
from harness import HarnessError, case_failed, unittest_main  # noqa: E402
from kvcluster import Cluster, wait_until  # noqa: E402

BUILD = None
PREFIX = b"w/"
KEYS = [PREFIX + b"k%02d" % i for i in range(16)]
SEED = int(os.environ.get("KVSTORE_TEST_SEED", random.randrange(1 << 30)))


class Writers:
    """Threads that put and delete KEYS with values no other write has,
    each with its own session. Records every acknowledged write with its
    index (a del that found no key as "noop": it changed nothing), every
    write of unknown outcome, and every write refused (never executed)."""

    def __init__(self, endpoints, threads=2, timeout=0.3):
        self.endpoints = endpoints
        self.threads_wanted = threads
        # Deadlines short enough that the writes in flight at a fault often
        # end unknown, so the check of "at most once" has work.
        self.timeout = timeout
        self.lock = threading.Lock()
        self.acked = []  # (type, key, value, index)
        self.unknown = []  # (type, key, value)
        self.refused = 0
        self.stop = threading.Event()
        self.errors = []
        self.threads = []

    def start(self):
        for i in range(self.threads_wanted):
            t = threading.Thread(target=self.loop, args=(f"t{i}", random.Random(SEED + i)),
                                 daemon=True)
            t.start()
            self.threads.append(t)
        return self

    def loop(self, name, rng):
        client = Client(self.endpoints, timeout=self.timeout, attempt_timeout=0.1)
        try:
            n = 0
            while not self.stop.is_set():
                n += 1
                key = rng.choice(KEYS)
                if rng.random() < 0.7:
                    op = ("put", key, f"{name}.{n}".encode())
                    req = {"op": "put", "key": key, "value": op[2]}
                else:
                    op = ("del", key, None)
                    req = {"op": "del", "key": key}
                try:
                    # _request, not delete(): a del's index is in the reply only.
                    reply = client._request(req, write=True)
                except Unknown:
                    with self.lock:
                        self.unknown.append(op)
                    continue
                except Unavailable:
                    with self.lock:
                        self.refused += 1
                    continue
                kind = op[0] if reply["status"] == "OK" else "noop"
                with self.lock:
                    self.acked.append((kind, key, op[2], reply["index"]))
                time.sleep(0.002)  # pacing: leave the 2 cores room for the nodes
        except BaseException as e:  # noqa: BLE001 - re-raised by finish()
            self.errors.append(e)
        finally:
            client.close()

    def count(self):
        with self.lock:
            if self.errors:
                raise self.errors[0]
            return len(self.acked)

    def wait_for_more(self, n, what, timeout=30):
        """Waits until n more writes than now are acknowledged."""
        target = self.count() + n
        wait_until(lambda: self.count() >= target, timeout, what=f"{n} writes {what}")

    def finish(self):
        self.stop.set()
        for t in self.threads:
            t.join(timeout=30)
            if t.is_alive():
                raise HarnessError("a writer did not stop")
        if self.errors:
            raise self.errors[0]


class Watcher:
    """A Client.watch of PREFIX read by a thread of its own: records each
    event (as keep(event) makes it), each move, and how far it has got."""

    def __init__(self, endpoints, from_index=None, keep=lambda e: e):
        self.lock = threading.Lock()
        self.moves = []  # (time, shard, endpoint, why)
        self.events = []
        self.keep = keep
        self.error = None
        self.stop = threading.Event()
        self.client = Client(endpoints, timeout=10.0)
        self.watch = self.client.watch(prefix=PREFIX, from_index=from_index, on_move=self.moved)
        # The first index of each shard the watch covers.
        self.first = {shard: upto + 1 for shard, upto in self.watch.position().items()}
        self.position = self.watch.position()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def moved(self, shard, endpoint, why):
        with self.lock:
            self.moves.append((time.monotonic(), shard, endpoint, why))

    def run(self):
        try:
            while not self.stop.is_set():
                event = self.watch.next_event(0.2)
                with self.lock:
                    if event is not None:
                        self.events.append(self.keep(event))
                    self.position = self.watch.position()
        except BaseException as e:  # noqa: BLE001 - re-raised by reached() and finish()
            self.error = e
        finally:
            self.watch.close()
            self.client.close()

    def serving(self):
        """{shard: the endpoint serving its stream}."""
        with self.lock:
            return {shard: endpoint for _, shard, endpoint, _ in self.moves}

    def moves_since(self, t):
        with self.lock:
            return [m for m in self.moves if m[0] >= t]

    def reached(self, bound):
        """Whether every shard's stream got past bound[shard]."""
        with self.lock:
            if self.error:
                raise self.error
            return all(self.position[s] >= index for s, index in bound.items())

    def finish(self):
        self.stop.set()
        self.thread.join(timeout=10)
        if self.thread.is_alive():
            raise HarnessError("the watcher thread did not stop")
        if self.error:
            raise self.error
        return self.events


def apply(events, state=None):
    """The state (key -> value) the events make, in order, of `state`."""
    state = dict(state or {})
    for e in events:
        if e.type == "put":
            state[e.key] = e.value
        else:
            state.pop(e.key, None)
    return state


def take(watch, enough, timeout=20):
    """The watch's next events, until there are `enough` (a count, or a
    predicate of the events taken)."""
    done = enough if callable(enough) else lambda events: len(events) >= enough
    events, deadline = [], time.monotonic() + timeout
    while not done(events):
        assert time.monotonic() < deadline, f"the watch stalled after {len(events)} events"
        event = watch.next_event(0.5)
        if event is not None:
            events.append(event)
    return events


def scan(endpoints):
    client = Client(endpoints, timeout=20.0)
    try:
        found, more = client.scan(prefix=PREFIX, limit=10000)
    finally:
        client.close()
    assert not more, "more keys under the prefix than written"
    return {e.key: e.value for e in found}


def check_history(events, truth, writes, state):
    """events, what the watcher got, are exactly the committed changes:
    those of truth (a fresh watch's events), per shard in index order, and
    of the writes: every acknowledged one once at its index, each of unknown
    outcome at most once, nothing else; applied in order they make `state`
    (a scan)."""
    shard_of = {}
    per_shard = collections.defaultdict(list)
    for e in events:
        assert shard_of.setdefault(e.key, e.shard) == e.shard, f"{e.key} in two shards: {e}"
        per_shard[e.shard].append(e)
    for shard, es in per_shard.items():
        for a, b in zip(es, es[1:]):
            assert a.index < b.index, f"shard {shard}: {b} after {a}, out of index order"
    # (key, index) names one change: a key is in one shard, one write per entry.
    unmatched = {(e.key, e.index): e for e in events}
    at = {(e.shard, e.index) for e in events}
    for kind, key, value, index in writes.acked:
        e = unmatched.pop((key, index), None)
        if kind == "noop":
            assert (shard_of.get(key), index) not in at, \
                f"an event at {index}, where a del of an absent {key} changed nothing"
            continue
        assert e is not None, f"acknowledged {kind} of {key} {value} at {index} never came"
        assert (e.type, e.value) == (kind, value), \
            f"acknowledged {kind} of {key} {value} at {index}, but the event is {e}"
    unknown_puts = {value: key for kind, key, value in writes.unknown if kind == "put"}
    unknown_dels = collections.Counter(key for kind, key, _ in writes.unknown if kind == "del")
    for e in sorted(unmatched.values(), key=lambda e: (str(e.shard), e.index)):
        if e.type == "put":
            assert unknown_puts.pop(e.value, None) == e.key, \
                f"{e}: no write of that value, or one seen twice"
        else:
            assert e.type == "del" and unknown_dels[e.key] > 0, f"{e}: more dels than writes"
            unknown_dels[e.key] -= 1
    truth_per_shard = collections.defaultdict(list)
    for e in truth:
        truth_per_shard[e.shard].append(e)
    for shard in set(per_shard) | set(truth_per_shard):
        got, want = per_shard[shard], truth_per_shard[shard]
        if got != want:
            diff = next((i for i, (a, b) in enumerate(zip(got, want)) if a != b),
                        min(len(got), len(want)))
            raise AssertionError(f"shard {shard}: the watcher's event {diff} of {len(got)} "
                                 f"differs from the node's history (of {len(want)}): "
                                 f"{got[diff:diff + 2]} vs {want[diff:diff + 2]}")
    assert apply(events) == state, "the watched events do not make the scanned state"
    return len(unmatched)


class WatchTest(unittest.TestCase):
    def start_cluster(self, *args):
        self.dir = tempfile.mkdtemp(prefix="kv-watch-")
        self.c = Cluster(os.path.join(BUILD, "src", "node"), nodes=3, extra_args=args,
                         workdir=self.dir)
        self.addCleanup(self.clean_up)  # runs even when start() fails
        self.c.start()
        return self.c

    def clean_up(self):
        failed = case_failed(self)
        self.c.__exit__(Exception if failed else None, None, None)
        if failed:
            print(f"kept the cluster's logs and data under {self.dir} (seed {SEED})",
                  file=sys.stderr)
        else:
            shutil.rmtree(self.dir, ignore_errors=True)

    def node_of(self, endpoint):
        return self.c.endpoints().index(endpoint) + 1

    def wait_moved(self, watcher, node, since, shards):
        """Waits until every stream of `shards` moved off `node` after `since`."""
        def moved():
            away = {s for _, s, e, _ in watcher.moves_since(since) if e != self.c.endpoint(node)}
            return away >= set(shards) and all(self.node_of(watcher.serving()[s]) != node
                                               for s in shards)
        wait_until(moved, 15, what=f"the watch to move off node {node}")

    def quiet_commit(self, shard):
        """The commit index of the shard's leader once its log is all
        committed and applied (no write in flight)."""
        def quiet():
            leader = self.c.leader_of(shard)
            g = self.c.group(leader, shard) if leader else None
            if g and g["commit"] == g["last_index"] == g["applied"]:
                return g["commit"]
            return None
        return wait_until(quiet, 20, what=f"shard {shard}'s log to settle")

    def finish_and_check(self, writers, watcher, shards, never_killed):
        """Stops the writers, waits for the watcher to get all that was
        committed, and checks it against a fresh watch on never_killed and
        a scan."""
        writers.finish()
        bound = {s: self.quiet_commit(s) for s in shards}
        wait_until(lambda: watcher.reached(bound), 30, what=f"the watcher to reach {bound}")
        state = scan(self.c.endpoints())
        events = watcher.finish()
        # The ground truth: the history of a node never killed, from the start.
        fresh = Watcher([self.c.endpoint(never_killed)],
                        from_index=watcher.first if shards != [None] else watcher.first[None])
        wait_until(lambda: fresh.reached(bound), 30, what="the fresh watch to catch up")
        truth = fresh.finish()
        self.assertEqual({e for _, _, e, _ in fresh.moves}, {self.c.endpoint(never_killed)},
                         "the fresh watch moved off its node")
        unknown_seen = check_history(events, truth, writes=writers, state=state)
        return events, unknown_seen

    def report(self, name, started, writers, watcher, events, unknown_seen):
        moves = [(round(t - started, 1), s, e, why) for t, s, e, why in watcher.moves]
        print(f"{name}: {len(events)} events, {len(writers.acked)} writes acknowledged, "
              f"{len(writers.unknown)} of unknown outcome ({unknown_seen} of them seen), "
              f"{writers.refused} refused; {len(moves) - len(watcher.first)} moves: {moves}; "
              f"{time.monotonic() - started:.1f}s (seed {SEED})", file=sys.stderr)

    def test_a_watcher_gets_exactly_the_committed_changes_through_faults(self):
        started = time.monotonic()
        c = self.start_cluster("--shards", "0")
        leader = c.wait_for_leader()
        follower, third = [i for i in range(1, 4) if i != leader]
        # Served by a follower first, so that the leader's kill and the
        # serving node's are two nodes and the third is never killed.
        watcher = Watcher([c.endpoint(i) for i in (follower, leader, third)])
        writers = Writers(c.endpoints()).start()
        try:
            writers.wait_for_more(100, "before the faults")
            c.kill(leader)
            wait_until(lambda: c.leader() not in (None, leader), 20, what="a new leader")
            writers.wait_for_more(100, "after the election")
            c.start(leader)
            c.wait_caught_up(leader)

            serving = self.node_of(watcher.serving()[None])
            killed = {leader, serving}
            t = time.monotonic()
            c.kill(serving)
            self.wait_moved(watcher, serving, t, [None])
            writers.wait_for_more(100, f"after node {serving}'s kill")
            c.start(serving)
            c.wait_caught_up(serving)

            stopped = self.node_of(watcher.serving()[None])
            t = time.monotonic()
            c.kill(stopped, signal.SIGSTOP)
            try:
                self.wait_moved(watcher, stopped, t, [None])
                # A stopped node's last word came at most a progress interval
                # (1 s) before the stop: a move sooner than 2 s after it was
                # not for the 3 s of silence.
                moved_at = watcher.moves_since(t)[0][0]
                self.assertGreater(moved_at - t, 2.0, "the watcher moved before 3 s of silence")
                writers.wait_for_more(50, f"while node {stopped} is stopped")
                # The partition lasts about 5 s, however soon the above came.
                time.sleep(max(0.0, t + 5 - time.monotonic()))
            finally:
                c.kill(stopped, signal.SIGCONT)
            c.wait_caught_up(stopped)
            writers.wait_for_more(100, "after the partition")
        finally:
            writers.stop.set()
        never_killed = min(set(range(1, 4)) - killed, key=lambda i: i == stopped)
        events, unknown_seen = self.finish_and_check(writers, watcher, [None], never_killed)
        self.report("faults", started, writers, watcher, events, unknown_seen)

    def test_a_watcher_away_longer_than_the_history_gets_compacted_and_recovers(self):
        c = self.start_cluster("--shards", "0", "--watch-history-changes", "50")
        c.wait_for_leader()
        client = Client(c.endpoints(), timeout=20.0)
        self.addCleanup(client.close)
        w = client.watch(prefix=PREFIX)
        for i in range(10):
            client.put(KEYS[i], b"before")
        take(w, 10)
        position = w.position()[None]
        w.close()
        last = 0
        for i in range(200):
            last = client.put(KEYS[i % len(KEYS)], b"away-%d" % i)
        late = client.watch(prefix=PREFIX, from_index=position + 1)
        self.addCleanup(late.close)
        with self.assertRaises(Compacted) as compacted:
            late.next_event(10)
        oldest = compacted.exception.oldest
        self.assertTrue(position + 1 < oldest <= last, f"oldest {oldest}, position {position}, "
                        f"last write {last}")
        # The recovery of docs/protocol.md: a new watch first, then a scan,
        # then the watch's changes on top; some of them, written between the
        # two, are in the scan already, and applying them again changes
        # nothing.
        w = client.watch(prefix=PREFIX)
        self.addCleanup(w.close)
        rng = random.Random(SEED)
        for i in range(60):
            if i == 20:
                state = scan(c.endpoints())
            key = rng.choice(KEYS)
            if rng.random() < 0.3:
                last = client._request({"op": "del", "key": key}, write=True)["index"]
            else:
                last = client.put(key, b"after-%d" % i)
        events = take(w, lambda events: w.position()[None] >= last)
        self.assertEqual(apply(events, state), scan(c.endpoints()),
                         "the rebuilt state differs from a scan")
        print(f"compacted: resumed from {position + 1}, oldest kept {oldest}, "
              f"{len(events)} events since the new watch", file=sys.stderr)

    def test_a_watch_of_every_shard_gets_each_write_once_through_a_kill(self):
        started = time.monotonic()
        shards = list(range(4))
        c = self.start_cluster("--shards", "4", "--replicas", "3")
        wait_until(lambda: all(c.leader_of(s) for s in shards), 30, what="a leader per shard")
        watcher = Watcher(c.endpoints())
        writers = Writers(c.endpoints()).start()
        try:
            writers.wait_for_more(100, "before the kill")
            # Every stream starts on the first endpoint: its kill moves them all.
            serving = {self.node_of(e) for e in watcher.serving().values()}
            self.assertEqual(len(serving), 1, f"streams on several nodes: {watcher.serving()}")
            (victim,) = serving
            t = time.monotonic()
            c.kill(victim)
            self.wait_moved(watcher, victim, t, shards)
            writers.wait_for_more(100, f"after node {victim}'s kill")
            c.start(victim)
            for s in shards:
                c.wait_caught_up(victim, s)
            writers.wait_for_more(100, "after the restart")
        finally:
            writers.stop.set()
        never_killed = next(i for i in range(1, 4) if i != victim)
        events, unknown_seen = self.finish_and_check(writers, watcher, shards, never_killed)
        self.assertEqual({e.shard for e in events}, set(shards), "a shard had no write")
        self.report("sharded", started, writers, watcher, events, unknown_seen)

    def test_a_slow_watcher_slows_neither_writes_nor_other_watchers(self):
        started = time.monotonic()
        # A small history, so that a watch paused at its connection's budget
        # (64 MiB unread) is out of it once the writes go 24 MiB further.
        c = self.start_cluster("--shards", "0", "--watch-history-bytes", str(8 << 20))
        node = c.wait_for_leader()  # the one busiest with the writes
        value_bytes, writes = 64 << 10, (96 << 20) // (64 << 10)
        slow = c.ctx.socket(zmq.DEALER)
        slow.setsockopt(zmq.LINGER, 0)
        # Little room on the client's side: what it does not read stays
        # with the node, counted against the connection's budget.
        slow.setsockopt(zmq.RCVHWM, 1)
        slow.setsockopt(zmq.RCVBUF, 64 << 10)
        slow.connect(f"tcp://{c.endpoint(node)}")
        self.addCleanup(slow.close)
        slow.send(msgpack.packb({"id": 1, "op": "watch", "prefix": PREFIX}))

        watcher = Watcher([c.endpoint(node)], keep=lambda e: (
            e.index, e.value.split(b":", 1)[0], len(e.value), time.monotonic()))
        client = Client([c.endpoint(node)], timeout=20.0)
        self.addCleanup(client.close)
        acked = {}  # index -> (header, when acknowledged)
        slowest_write = 0.0
        for i in range(writes):
            header = b"v%d" % i
            t = time.monotonic()
            index = client.put(KEYS[i % len(KEYS)], header + b":" + b"x" * (value_bytes -
                                                                           len(header) - 1))
            acked[index] = (header, time.monotonic())
            slowest_write = max(slowest_write, acked[index][1] - t)
        wait_until(lambda: watcher.reached({None: index}), 30, what="the normal watcher")
        received = watcher.finish()
        self.assertEqual([(i, h, n) for i, h, n, _ in received],
                         [(i, h, value_bytes) for i, (h, _) in sorted(acked.items())],
                         "the normal watcher did not get every write once, in order")
        lag = max(when - acked[i][1] for i, _, _, when in received)
        self.assertEqual(len(watcher.moves), 1, f"the normal watcher moved: {watcher.moves}")
        self.assertLess(slowest_write, 2.0, "a write was slow")
        self.assertLess(lag, 2.0, "the normal watcher lagged")

        # The slow watcher, read at last: gap-free up to where it stops.
        upto, first, seen, got_bytes = None, None, [], 0
        while True:
            self.assertTrue(slow.poll(10000), f"the slow watch went silent after {upto}")
            frame = slow.recv()
            m = msgpack.unpackb(frame, raw=False)
            got_bytes += len(frame)
            if m["status"] != "OK":
                break
            if upto is None:
                first = m["after"]
            else:
                self.assertEqual(m["after"], upto, "a silent gap in the slow watch")
            for e in m["events"]:
                self.assertTrue(m["after"] < e["index"] <= m["upto"], f"{e['index']} in {m}")
                self.assertEqual(e["value"].split(b":", 1)[0], acked[e["index"]][0])
                seen.append(e["index"])
            upto = m["upto"]
            if upto >= index:
                break
        self.assertIsNotNone(upto, f"the slow watch's first message: {m}")
        self.assertEqual(seen, [i for i in sorted(acked) if first < i <= upto],
                         "the slow watch's messages miss writes they claim to cover")
        # It paused at its budget and fell out of the history while it read
        # nothing; had it been sent everything, the node would have held
        # all of it for a client that never read.
        self.assertEqual(m["status"], "COMPACTED",
                         f"the slow watch got all {got_bytes >> 20} MiB: nothing paused it")
        self.assertGreater(m["oldest"], upto + 1, f"COMPACTED, yet {upto + 1} is kept: {m}")
        self.assertLess(got_bytes, 80 << 20, "more than the budget (and buffers) went out")
        print(f"slow watcher: {writes} writes of 64 KiB, slowest {slowest_write * 1000:.0f} ms; "
              f"the normal watcher got {len(received)} events, lagging at most "
              f"{lag * 1000:.0f} ms; the slow one {len(seen)} events ({got_bytes >> 20} MiB) up to "
              f"{upto}, then COMPACTED (oldest {m['oldest']}); "
              f"{time.monotonic() - started:.1f}s", file=sys.stderr)


if __name__ == "__main__":
    BUILD = sys.argv.pop(1)
    unittest_main()
