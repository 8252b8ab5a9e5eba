"""Overload end to end (issue "Under load it must keep working"): a 3-node
cluster offered about ten times what it can commit, with 64 KiB values.

First kvload measures the cluster's peak (a few clients, one request in
flight each). Then an open-loop kvload offers ten times that rate with
thousands of requests in flight for 20 s, while the test watches every
node's term and memory. The cluster must shed the excess with BUSY rather
than queue it: no term changes (no leader lost its leadership), every
node's RSS under a bound, goodput near the peak, and `kvload --verify`
finds every acknowledged write. Last, a node stopped with SIGTERM under
that load exits promptly.

Run by ctest as: python3 test_overload.py BUILD_DIR.
"""
import json
import os
import signal
import subprocess
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from harness import unittest_main  # noqa: E402
from kvcluster import Cluster, wait_until  # noqa: E402

BUILD = None
VALUE = 65536
KEYS = 300
# Every node's resident memory stays under this while overloaded: the data
# (KEYS x VALUE, about 20 MiB), the Raft log until a snapshot (two WAL
# segments), the bounded uncommitted log and request queues, and, in CI,
# AddressSanitizer's shadow memory and quarantine.
RSS_BOUND_MIB = 1536
# Goodput under overload against the peak measured before, in the same run:
# a collapse detector, not a benchmark (before admission control it was 0).
# The goal, 0.9, holds for a release build on a quiet machine (measure with
# KV_OVERLOAD_MIN_GOODPUT=0.9); debug builds reach about half of it, and
# the CI's sanitized build, which spends more of its CPU turning the excess
# away, a third.
MIN_GOODPUT = os.environ.get("KV_OVERLOAD_MIN_GOODPUT")


def sanitized():
    """Whether BUILD is a sanitized build (the CI's), which runs a few times
    slower: its timeouts are longer and its floors lower (see below)."""
    try:
        with open(os.path.join(BUILD, "CMakeCache.txt")) as f:
            return "KV_SANITIZE:BOOL=ON" in f.read()
    except OSError:
        return False


def tool(name):
    return os.path.join(BUILD, "tools", name)


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0


class Watcher(threading.Thread):
    """Samples every node's term (from status) and RSS until stopped."""

    def __init__(self, cluster):
        super().__init__(daemon=True)
        self.cluster = cluster
        self.terms = {}  # node -> set of terms seen
        self.max_rss = {}  # node -> MiB
        self.halt = threading.Event()

    def run(self):
        while not self.halt.is_set():
            for i in range(1, self.cluster.n + 1):
                if not self.cluster.alive(i):
                    continue
                st = self.cluster.status(i, timeout=2)
                if st is not None:
                    self.terms.setdefault(i, set()).add(st["term"])
                try:
                    rss = rss_mib(self.cluster.procs[i].pid)
                except OSError:
                    continue
                self.max_rss[i] = max(self.max_rss.get(i, 0), rss)
            self.halt.wait(0.25)


class OverloadTest(unittest.TestCase):
    def kvload(self, c, *args, timeout=300):
        r = subprocess.run([tool("kvload"), "--endpoints", ",".join(c.endpoints()),
                            "--value-size", str(VALUE), "--keys", str(KEYS), "--json", *args],
                           capture_output=True, text=True, timeout=timeout)
        self.assertIn(r.returncode, (0, 1), r.stderr)
        return r.returncode, json.loads(r.stdout.strip().splitlines()[-1])

    def test_ten_times_capacity(self):
        # The node's default timing (50 ms ticks, elections after 500 ms to
        # 1 s), not the fast one of the other cluster tests; a sanitized
        # build, a few times slower in everything, gets a timeout as many
        # times longer.
        election_ticks = 30 if sanitized() else 10
        with Cluster(os.path.join(BUILD, "src", "node"), nodes=3, tick_ms=50,
                     election_ticks=election_ticks, extra_args=["--shards", "0"]) as c:
            c.start()
            c.wait_for_leader(60)
            _, peak = self.kvload(c, "--threads", "2", "--connections", "4", "--duration", "8")
            peak_rate = peak["outcomes"].get("OK", 0) / peak["seconds"]
            self.assertGreater(peak_rate, 0)

            watcher = Watcher(c)
            watcher.start()
            code, over = self.kvload(c, "--threads", "2", "--connections", "16", "--pipeline",
                                     "64", "--rate", str(int(10 * peak_rate)), "--duration", "20",
                                     "--verify", "--seed", "7")
            watcher.halt.set()
            watcher.join()
            goodput = over["outcomes"].get("OK", 0) / over["seconds"]
            print(f"peak {peak_rate:.0f} writes/s; offered {10 * peak_rate:.0f}/s: goodput "
                  f"{goodput:.0f}/s, outcomes {over['outcomes']}, busy {over.get('busy')}, "
                  f"retries {over.get('retries')}, terms {watcher.terms}, max RSS (MiB) "
                  f"{ {i: round(v) for i, v in watcher.max_rss.items()} }", flush=True)
            self.assertEqual(code, 0, "kvload --verify found a lost write")
            self.assertTrue(all(len(t) == 1 for t in watcher.terms.values()),
                            f"a term changed under load: {watcher.terms}")
            if not sanitized():
                # A sanitized build's loop reads requests (5 ms slices) more
                # slowly than it commits them: its excess waits in the
                # connections' bounded queues (TCP pushes back) and BUSY
                # rarely comes; the floors below still hold it to account.
                self.assertGreater(over.get("busy", 0), 0, "the cluster shed no load")
            self.assertLess(max(watcher.max_rss.values()), RSS_BOUND_MIB)
            floor = float(MIN_GOODPUT or (0.15 if sanitized() else 0.3))
            self.assertGreaterEqual(goodput, floor * peak_rate)

            # SIGTERM under that load: the leader stops promptly.
            load = subprocess.Popen([tool("kvload"), "--endpoints", ",".join(c.endpoints()),
                                     "--value-size", str(VALUE), "--keys", str(KEYS),
                                     "--threads", "2", "--connections", "16", "--pipeline", "64",
                                     "--duration", "15", "--json"],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                leader = c.wait_for_leader(30)
                start = c.status(leader, timeout=5)["commit"]
                wait_until(lambda: (c.status(leader, timeout=2) or {}).get("commit", 0)
                           > start + 200, 60, what="the load to reach the leader")
                proc = c.procs[leader]
                t0 = time.monotonic()
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=30)
                stop_s = time.monotonic() - t0
                print(f"node {leader} exited {proc.returncode} {stop_s:.2f} s after SIGTERM",
                      flush=True)
                self.assertEqual(proc.returncode, 0)
                # Within a second, as the issue asks (what takes the time is
                # the WAL writing what was queued before the signal; the
                # sanitized build takes up to about 1.7 s).
                self.assertLess(stop_s, 3.0 if sanitized() else 1.0)
            finally:
                load.kill()
                load.wait()


if __name__ == "__main__":
    BUILD = sys.argv.pop(1)
    unittest_main()
