"""Hibernation end to end (issue 19): 3 nodes, 16 shards. Idle groups
hibernate on every node (kvstore_raft_hibernating on /metrics) and start no
election while they sleep; writes wake them without an election. A light
load (each group idle between its writes, so groups keep falling asleep and
waking) runs through a kill -9 of the node that leads the most groups, its
restart, and a SIGSTOP of the next leader for 3 s (silent, then back with a
stale view): no acknowledged write is lost, kvcheck finds the history
linearizable, and every group hibernates again once the load ends.

Run by ctest as: python3 test_hibernation.py BUILD_DIR.
"""
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.error
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from harness import HarnessError, case_failed, unittest_main  # noqa: E402
from kvcluster import METRICS_PORT_OFFSET, Cluster, finish_checked_load, wait_until  # noqa: E402

BUILD = None
SHARDS = 16
TICK_MS = 50
ELECTION_S = 10 * TICK_MS / 1000  # the harness's 10 election ticks
HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))
_SAMPLE = re.compile(r'^(kvstore_raft_\w+)\{group="(\d+)"(?:,role="([\w-]+)")?\} (\S+)$')


def tool(*path):
    return os.path.join(BUILD, "tools", *path)


class HibernationTest(unittest.TestCase):
    def setUp(self):
        # 50 ms ticks, as a real node's (the harness's 20 ms make the 200 ms
        # election timeout a loop stall of a sanitized build can pass).
        self.c = Cluster(os.path.join(BUILD, "src", "node"), nodes=3, tick_ms=TICK_MS,
                         extra_args=["--shards", str(SHARDS)])
        self.c.__enter__()
        self.c.start()
        self.load = None
        wait_until(lambda: self.kvctl("put", "warm", "x").returncode == 0, 60,
                   what="the cluster to take a write")

    def tearDown(self):
        if self.load is not None and self.load.poll() is None:
            self.load.kill()
            self.load.communicate()
        for i in range(1, self.c.n + 1):
            if self.c.alive(i):
                self.c.procs[i].send_signal(signal.SIGCONT)
        self.c.__exit__(Exception if case_failed(self) else None, None, None)

    def kvctl(self, *args):
        return subprocess.run([tool("kvctl"), "--endpoints", ",".join(self.c.endpoints()),
                               "--timeout", "20000", *args], capture_output=True, text=True,
                              timeout=120)

    def raft(self, node_id):
        """{metric: {group: value}} of the node's kvstore_raft_* gauges
        (role: the group's role here), or None when it does not answer."""
        port = self.c.port(node_id) + METRICS_PORT_OFFSET
        try:
            with HTTP.open(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
                text = r.read().decode()
        except (urllib.error.URLError, OSError):
            return None
        out = {}
        for line in text.splitlines():
            m = _SAMPLE.match(line)
            if not m:
                continue
            name, group, role, value = m.groups()
            if name == "kvstore_raft_role":
                if float(value) == 1:
                    out.setdefault("role", {})[int(group)] = role
            else:
                out.setdefault(name, {})[int(group)] = float(value)
        if "kvstore_raft_hibernating" not in out:
            raise HarnessError(f"node {node_id} serves no kvstore_raft_hibernating")
        return out

    def all_hibernating(self):
        """Every group on every node hibernates: each node's gauges, else None."""
        views = {}
        for i in range(1, self.c.n + 1):
            v = self.raft(i)
            if v is None or not all(v["kvstore_raft_hibernating"].values()):
                return None
            views[i] = v
        return views

    def busiest_leader(self):
        views = {i: self.raft(i) for i in range(1, self.c.n + 1) if self.c.alive(i)}
        leads = {i: sum(1 for r in v["role"].values() if r == "leader")
                 for i, v in views.items() if v}
        return max(leads, key=leads.get)

    def test_idle_groups_sleep_and_wake_without_elections(self):
        views = wait_until(self.all_hibernating, 60, what="every group to hibernate")
        self.assertEqual(len(views[1]["kvstore_raft_hibernating"]), SHARDS + 1)
        elections = {i: sum(v["kvstore_raft_elections_total"].values())
                     for i, v in views.items()}
        terms = {i: v["kvstore_raft_term"] for i, v in views.items()}
        # Asleep for 10 election timeouts: nobody campaigns.
        time.sleep(10 * ELECTION_S)
        views = self.all_hibernating()
        self.assertIsNotNone(views, "a group woke up with nothing to do")
        for i, v in views.items():
            self.assertEqual(sum(v["kvstore_raft_elections_total"].values()), elections[i])
        # Writes to every shard wake the groups; no election follows.
        for k in range(100):
            r = self.kvctl("put", f"key{k}", f"v{k}")
            self.assertEqual(r.returncode, 0, r.stderr)
        for i in range(1, self.c.n + 1):
            self.assertEqual(self.raft(i)["kvstore_raft_term"], terms[i])
        wait_until(self.all_hibernating, 60, what="every group to hibernate again")

    def test_faults_under_a_light_load(self):
        wait_until(self.all_hibernating, 60, what="every group to hibernate")
        hist = tempfile.NamedTemporaryFile(suffix=".jsonl", delete=False).name
        # About one write every 1.6 s per group: each group idles between
        # writes for longer than it takes to fall asleep (2 election timeouts).
        self.load = subprocess.Popen(
            [tool("kvload"), "--endpoints", ",".join(self.c.endpoints()), "--threads", "2",
             "--rate", "10", "--duration", "24", "--keys", "200", "--read-ratio", "0.3",
             "--verify", "--history", hist, "--json"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        wait_until(lambda: os.path.getsize(hist) > 500, 60, what="the load to start")
        asleep_under_load = 0
        for _ in range(20):
            v = self.raft(1)
            asleep_under_load = max(asleep_under_load,
                                    sum(v["kvstore_raft_hibernating"].values()))
            time.sleep(0.05)
        self.assertGreater(asleep_under_load, 0, "no group slept between writes")

        victim = self.busiest_leader()
        self.c.kill(victim)
        time.sleep(3)
        self.c.restart(victim)
        time.sleep(3)
        stopped = self.busiest_leader()
        self.c.procs[stopped].send_signal(signal.SIGSTOP)
        time.sleep(3)
        self.c.procs[stopped].send_signal(signal.SIGCONT)

        summary = finish_checked_load(self, self.load, tool("kvcheck", "kvcheck"), hist, 150)
        print(f"light load through kill -9 of node {victim} and SIGSTOP of node {stopped}: "
              f"{summary['ops']} ops, {asleep_under_load} of {SHARDS + 1} groups asleep "
              "at once on node 1 under load", flush=True)
        wait_until(self.all_hibernating, 60, what="every group to hibernate after the faults")


if __name__ == "__main__":
    BUILD = sys.argv.pop(1)
    unittest_main()
