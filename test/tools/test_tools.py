"""End-to-end tests of kvctl, kvload and kvmon against a real 3-node cluster,
and of kvmon against a sharded 5-node one.

Run by ctest as: python3 test_tools.py BIN_DIR (the directory holding
kvstore, kvctl, kvload, kvmon). Every wait is a poll with a deadline.
"""
import json
import os
import re
import shutil
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from harness import unittest_main  # noqa: E402
from kvcluster import Cluster, wait_until  # noqa: E402

BIN = {}


def run(tool, *args, timeout=60, env=None, input=None):
    return subprocess.run([BIN[tool], *args], capture_output=True, text=True, timeout=timeout,
                          env=env, input=input)


def check_scan_load(test, endpoints, limit, during=None):
    """Runs kvload with scans of 12 keys' ranges returning at most `limit`
    keys (and gets, puts, cas) and --history against endpoints, calling
    during(history_path) while it runs; checks what the history records of
    the scans, and has kvcheck check it all: the scans as reads of every key
    in their ranges. kvcheck takes every key to start absent: the cluster
    must hold no key kvload names (key000000000000 on)."""
    d = tempfile.mkdtemp(prefix="kv-scanload-")
    try:
        hist = os.path.join(d, "history.jsonl")
        load = subprocess.Popen(
            [BIN["kvload"], "--endpoints", endpoints, "--threads", "2", "--pipeline", "4",
             "--duration", "4", "--keys", "60", "--read-ratio", "0.3", "--cas-ratio", "0.1",
             "--scan-ratio", "0.2", "--scan-span", "12", "--scan-limit", str(limit),
             "--history", hist, "--json"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            if during:
                during(hist)
            out, err = load.communicate(timeout=120)
        finally:
            if load.poll() is None:
                load.kill()
        test.assertEqual(load.returncode, 0, err)
        summary = json.loads(out)
        with open(hist) as f:
            events = [json.loads(line) for line in f]
        scans = [e for e in events if e["f"] == "scan"]
        oks = [e for e in scans if e["type"] == "ok"]
        test.assertEqual(sum(e["type"] == "invoke" for e in events), summary["ops"])
        test.assertEqual(sum(e["type"] == "invoke" for e in scans), summary["scans"]["count"])
        test.assertGreater(len(oks), 20)
        test.assertEqual(sum(len(e["kvs"]) for e in oks), summary["scans"]["keys"])
        for e in oks:
            keys = [kv["key"] for kv in e["kvs"]]
            test.assertEqual(keys, sorted(set(keys)), e)
            test.assertTrue(all(e["key"] <= k < e["end"] for k in keys), e)
            test.assertLessEqual(len(keys), limit, e)
            test.assertTrue(all(kv["value"] for kv in e["kvs"]), e)
        # Once the keys are written, a range of 12 holds more than `limit`.
        test.assertTrue(any(e["more"] and len(e["kvs"]) == limit for e in oks))
        c = run("kvcheck", "--json", hist, timeout=300)
        if c.returncode != 0:
            test.fail(f"kvcheck exited {c.returncode}:\n" + run("kvcheck", hist, timeout=300).stdout
                      + c.stderr)
        verdict = json.loads(c.stdout)
        test.assertEqual(verdict["verdict"], "linearizable")
        test.assertEqual(verdict["scans"], summary["scans"]["count"])
        test.assertGreaterEqual(verdict["scan_reads"], summary["scans"]["keys"])
        return summary
    finally:
        shutil.rmtree(d, ignore_errors=True)


def tmux_session(name, width, height, command):
    """Starts `command` in a detached tmux session of width x height. Retried:
    right after the last session is killed the tmux server is still exiting,
    and a new session started then fails."""
    def started():
        return subprocess.run(["tmux", "new-session", "-d", "-s", name, "-x", str(width), "-y",
                               str(height), command], capture_output=True).returncode == 0
    wait_until(started, 10, interval=0.2, what=f"tmux to start session {name}")


class KeygenTest(unittest.TestCase):
    """kvctl keygen: no cluster needed."""

    def test_keygen_writes_a_private_secret_and_its_public_key_once(self):
        import zmq  # pyzmq: an independent check of the pair
        d = tempfile.mkdtemp(prefix="kv-keygen-")
        try:
            name = os.path.join(d, "admin")
            r = run("kvctl", "keygen", name)
            self.assertEqual(r.returncode, 0, r.stderr)
            public = r.stdout.strip()
            with open(name + ".key") as f:
                secret = f.read().strip()
            with open(name + ".pub") as f:
                self.assertEqual(f.read().strip(), public)
            self.assertEqual(len(secret), 40)
            self.assertEqual(zmq.curve_public(secret.encode()).decode(), public)
            self.assertEqual(os.stat(name + ".key").st_mode & 0o777, 0o600)
            # A second run never overwrites a key.
            r = run("kvctl", "keygen", name)
            self.assertEqual(r.returncode, 2)
            self.assertIn("exists", r.stderr)
            with open(name + ".key") as f:
                self.assertEqual(f.read().strip(), secret)
        finally:
            shutil.rmtree(d, ignore_errors=True)


class DefaultShardsTest(unittest.TestCase):
    """kvstore without --shards: a new data dir gets 16 shards; one made
    unsharded stays unsharded."""

    def shards_of(self, c):
        st = wait_until(lambda: c.status(1), 60, what="the node to answer status")
        return st.get("shards", 0)

    def test_a_new_cluster_is_sharded_and_an_old_data_dir_keeps_its_layout(self):
        with Cluster(BIN["dir"], nodes=1).start() as c:
            self.assertEqual(self.shards_of(c), 16)
        with Cluster(BIN["dir"], nodes=1, extra_args=["--shards", "0"]).start() as c:
            wait_until(lambda: run("kvctl", "--endpoints", c.endpoint(1), "put", "k", "v")
                       .returncode == 0, 60, what="a write")
            c.extra_args = []  # started again as an upgraded node would be: no --shards
            c.restart(1)
            self.assertEqual(self.shards_of(c), 0)
            r = run("kvctl", "--endpoints", c.endpoint(1), "get", "k")
            self.assertEqual((r.returncode, r.stdout), (0, "v"), r.stderr)


class ToolsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.cluster = Cluster(BIN["dir"], nodes=3, extra_args=["--shards", "0"]).start()
        cls.cluster.wait_for_leader(60)
        cls.eps = ",".join(cls.cluster.endpoints())

    @classmethod
    def tearDownClass(cls):
        cls.cluster.__exit__(None, None, None)

    def kvctl(self, *args, **kw):
        return run("kvctl", "--endpoints", self.eps, *args, **kw)

    def leader(self):
        return self.cluster.wait_for_leader(60)

    def test_kvctl_round_trips_and_exit_codes(self):
        r = self.kvctl("put", "greeting", "hello")
        self.assertEqual((r.returncode, r.stdout.strip()), (0, "OK"), r.stderr)
        r = self.kvctl("get", "greeting")
        self.assertEqual((r.returncode, r.stdout), (0, "hello"))  # exactly the bytes
        r = self.kvctl("get", "greeting", "--hex")
        self.assertEqual(r.stdout.strip(), "hello".encode().hex())
        r = self.kvctl("get", "nothing-here")
        self.assertEqual(r.returncode, 1)
        self.assertIn("NOT_FOUND", r.stderr)
        self.assertEqual(self.kvctl("cas", "greeting", "wrong", "x").returncode, 1)
        self.assertEqual(self.kvctl("cas", "greeting", "hello", "bye").returncode, 0)
        self.assertEqual(self.kvctl("cas", "--absent", "fresh", "v").returncode, 0)
        self.assertEqual(self.kvctl("cas", "--absent", "fresh", "v").returncode, 1)
        r = self.kvctl("get", "greeting", "--json")
        got = json.loads(r.stdout)
        self.assertEqual((got["status"], got["value"]), ("OK", "bye"))
        # Versions: greeting was created by the put and last changed by the cas.
        self.assertLess(got["create_index"], got["mod_index"])
        r = self.kvctl("cas", "greeting", "again", "--expect-index", str(got["create_index"]))
        self.assertEqual(r.returncode, 1, r.stderr)
        r = self.kvctl("--json", "cas", "greeting", "again", "--expect-index", str(got["mod_index"]))
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertGreater(json.loads(r.stdout)["index"], got["mod_index"])
        self.assertEqual(self.kvctl("del", "greeting").returncode, 0)
        self.assertEqual(self.kvctl("del", "greeting").returncode, 1)
        self.assertEqual(self.kvctl("get", "greeting", "--stale").returncode, 1)

    def test_kvctl_scan_and_get_prefix(self):
        for k in ("svc/b", "svc/a", "svc/c", "svd"):
            self.assertEqual(self.kvctl("put", k, "v-" + k).returncode, 0)
        r = self.kvctl("get", "svc/", "--prefix")
        self.assertEqual((r.returncode, r.stdout),
                         (0, "svc/a\nv-svc/a\nsvc/b\nv-svc/b\nsvc/c\nv-svc/c\n"), r.stderr)
        r = self.kvctl("scan", "svc/b", "svd", "--keys-only")
        self.assertEqual((r.returncode, r.stdout), (0, "svc/b\nsvc/c\n"), r.stderr)
        r = self.kvctl("--json", "scan", "svc/", "svd", "--limit", "2")
        got = json.loads(r.stdout)
        self.assertEqual([kv["key"] for kv in got["kvs"]], ["svc/a", "svc/b"])
        self.assertTrue(got["more"])
        self.assertGreater(got["kvs"][0]["mod_index"], 0)
        r = self.kvctl("get", "nothing/", "--prefix")
        self.assertEqual((r.returncode, r.stdout), (1, ""))

    def test_kvctl_ttl_touch_and_expiry(self):
        self.assertEqual(self.kvctl("put", "lease", "v", "--ttl", "60000").returncode, 0)
        r = self.kvctl("ttl", "lease")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertTrue(0 < int(r.stdout) <= 60000, r.stdout)
        self.assertEqual(self.kvctl("touch", "lease", "--ttl", "120000").returncode, 0)
        self.assertGreater(int(self.kvctl("ttl", "lease").stdout), 60000)
        got = json.loads(self.kvctl("--json", "get", "lease").stdout)
        self.assertEqual(got["value"], "v")
        self.assertGreater(got["ttl_ms"], 60000)
        # touch without --ttl (and a put without one) make a key permanent.
        self.assertEqual(self.kvctl("touch", "lease").returncode, 0)
        self.assertEqual(self.kvctl("ttl", "lease").stdout, "permanent\n")
        self.assertEqual(json.loads(self.kvctl("--json", "ttl", "lease").stdout)["ttl_ms"], None)
        self.assertEqual(self.kvctl("cas", "lease", "v", "w", "--ttl", "300").returncode, 0)
        # Gone once its deadline passes: for get, ttl, touch and scan alike.
        wait_until(lambda: self.kvctl("get", "lease").returncode == 1, 10)
        self.assertEqual(self.kvctl("ttl", "lease").returncode, 1)
        self.assertEqual(self.kvctl("touch", "lease", "--ttl", "1000").returncode, 1)
        self.assertEqual(self.kvctl("get", "lease", "--prefix").returncode, 1)
        self.assertEqual(self.kvctl("put", "x", "1", "--ttl", "-5").returncode, 2)

    def txn(self, text, exit_code):
        """Runs kvctl txn on `text`, expecting exit_code; returns the branch
        (SUCCEEDED or FAILED) and index of its first line, and its op lines."""
        r = self.kvctl("txn", input=text)
        self.assertEqual(r.returncode, exit_code, r.stderr)
        first, *ops = r.stdout.splitlines()
        branch, index = re.fullmatch(r"(SUCCEEDED|FAILED) \(index (\d+)\)", first).groups()
        return branch, int(index), ops

    def test_kvctl_txn_takes_a_lock_only_if_absent(self):
        lock = ("# a lock, taken only if nobody holds it\n"
                "if absent txn-lock\n"
                "then put txn-lock me --ttl 60000\n"
                "\n"
                "else get txn-lock\n")
        branch, taken, ops = self.txn(lock, 0)
        self.assertEqual((branch, ops), ("SUCCEEDED", ["put txn-lock OK"]))
        branch, _, ops = self.txn(lock.replace(" me ", " you "), 1)
        self.assertEqual((branch, len(ops)), ("FAILED", 1), ops)
        self.assertRegex(ops[0], rf"^get txn-lock = me \(mod_index {taken}, ttl_ms \d+\)$")

    def test_kvctl_txn_transfers_between_two_counters(self):
        for k, v in (("{acct}:a", "50"), ("{acct}:b", "50")):
            self.assertEqual(self.kvctl("put", k, v).returncode, 0)
        a, b = (json.loads(self.kvctl("--json", "get", k).stdout)["mod_index"]
                for k in ("{acct}:a", "{acct}:b"))
        transfer = (f"if mod {{acct}}:a = {a}\nif mod {{acct}}:b = {b}\n"
                    "then put {acct}:a 70\nthen put {acct}:b 30\n"
                    "else get {acct}:a\nelse get {acct}:b\n")
        branch, index, ops = self.txn(transfer, 0)
        self.assertEqual((branch, ops), ("SUCCEEDED", ["put {acct}:a OK", "put {acct}:b OK"]))
        self.assertEqual(self.kvctl("get", "{acct}:b").stdout, "30")
        # The versions it compared are gone: the else branch reads the new ones.
        branch, _, ops = self.txn(transfer, 1)
        self.assertEqual((branch, ops), ("FAILED", [f"get {{acct}}:a = 70 (mod_index {index})",
                                                    f"get {{acct}}:b = 30 (mod_index {index})"]))
        # --json: one object, the results of each kind of op.
        r = self.kvctl("--json", "txn", input="if value {acct}:a 70\nif present {acct}:b\n"
                       "then del {acct}:b\nthen del {acct}:b\nthen get {acct}:a\n"
                       "then get {acct}:b\nthen put {acct}:c 1\n")
        self.assertEqual(r.returncode, 0, r.stderr)
        got = json.loads(r.stdout)
        self.assertEqual((got["status"], got["succeeded"], got["resent"]), ("OK", True, False))
        self.assertGreater(got["index"], index)
        self.assertEqual([(x["op"], x["key"], x["status"]) for x in got["results"]],
                         [("del", "{acct}:b", "OK"), ("del", "{acct}:b", "NOT_FOUND"),
                          ("get", "{acct}:a", "OK"), ("get", "{acct}:b", "NOT_FOUND"),
                          ("put", "{acct}:c", "OK")])
        self.assertEqual(got["results"][2]["value"], "70")
        self.assertEqual(got["results"][2]["mod_index"], index)
        self.assertNotIn("value", got["results"][3])

    def test_kvctl_txn_syntax_error_names_its_line_and_sends_nothing(self):
        r = self.kvctl("txn", input="then put txn-bad 1\n# fine so far\nif mod txn-bad >= 3\n")
        self.assertEqual(r.returncode, 2)
        self.assertIn("line 3:", r.stderr)
        self.assertEqual(r.stdout, "")
        self.assertEqual(self.kvctl("get", "txn-bad").returncode, 1)
        r = self.kvctl("txn", input='then put "unclosed 1\n')
        self.assertEqual(r.returncode, 2)
        self.assertIn("line 1:", r.stderr)

    def test_kvctl_txn_quoted_keys_and_values(self):
        _, _, ops = self.txn('then put "txn key" "a \\"b\\"\\tc\\x21"\nthen get "txn key"\n', 0)
        self.assertRegex(ops[1], r'^get "txn key" = "a \\"b\\"\\tc!" \(mod_index \d+\)$')
        self.assertEqual(self.kvctl("get", "txn key").stdout, 'a "b"\tc!')

    def watch(self, prefix, write, until):
        """Runs `kvctl watch PREFIX`, calls write() once it has started, and
        returns the lines it printed up to one that contains `until`."""
        watch = subprocess.Popen([BIN["kvctl"], "--endpoints", self.eps, "watch", prefix],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            # Its banner says it started: every change after it shows.
            wait_until(lambda: watch.stderr.readline().startswith("kvctl: watching"), 10)
            write()
            deadline = time.monotonic() + 20
            seen = ""
            while until not in seen and time.monotonic() < deadline:
                if select.select([watch.stdout], [], [], 0.5)[0]:
                    seen += watch.stdout.readline()
            return seen
        finally:
            watch.send_signal(signal.SIGINT)
            watch.wait(timeout=10)
            watch.stdout.close()
            watch.stderr.close()

    def test_kvctl_watch_shows_expirations(self):
        seen = self.watch("exp/", lambda: self.assertEqual(
            self.kvctl("put", "exp/a", "1", "--ttl", "100").returncode, 0), "EXPIRE exp/a")
        self.assertIn("PUT exp/a", seen)
        self.assertIn("EXPIRE exp/a", seen)

    def test_kvctl_usage_and_unavailable_exit_codes(self):
        self.assertEqual(self.kvctl("put", "only-a-key").returncode, 2)
        self.assertEqual(self.kvctl("frobnicate").returncode, 2)
        r = run("kvctl", "--endpoints", "127.0.0.1:1", "--timeout", "300", "get", "k")
        self.assertEqual(r.returncode, 3, r.stderr)
        env = dict(os.environ, KVSTORE_ENDPOINTS=self.eps)
        self.assertEqual(run("kvctl", "put", "via-env", "1", env=env).returncode, 0)

    def test_kvctl_status_members_and_leader_transfer(self):
        leader = self.leader()
        rows = json.loads(self.kvctl("status", "--json").stdout)
        self.assertEqual(len(rows), 3)
        self.assertTrue(all(r["reachable"] and r["leader"] == leader for r in rows))
        members = json.loads(self.kvctl("members", "--json").stdout)
        self.assertEqual(sorted(m["id"] for m in members), [1, 2, 3])
        self.assertEqual([m["id"] for m in members if m["leader"]], [leader])
        target = leader % 3 + 1
        r = self.kvctl("leader", "transfer", str(target), "--timeout", "10000")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(self.leader(), target)
        self.assertEqual(self.kvctl("leader", "transfer", "42").returncode, 4)

    def test_kvctl_watch_sees_key_changes(self):
        def write():
            self.assertEqual(self.kvctl("put", "w/a", "1").returncode, 0)
            self.assertEqual(self.kvctl("put", "other", "1").returncode, 0)
        seen = self.watch("w/", write, "PUT w/a")
        self.assertIn("PUT w/a", seen)
        self.assertNotIn("other", seen)

    def test_kvctl_watch_from_an_index_reads_the_history(self):
        index = json.loads(self.kvctl("--json", "put", "wh/a", "1").stdout)["index"]
        self.assertEqual(self.kvctl("put", "wh/b", "22").returncode, 0)
        self.assertEqual(self.kvctl("del", "wh/a").returncode, 0)
        r = self.kvctl("--json", "watch", "wh/", "--from", str(index), "--count", "3")
        self.assertEqual(r.returncode, 0, r.stderr)
        got = [json.loads(line) for line in r.stdout.splitlines()]
        self.assertEqual([(e["op"], e["key"], e.get("value")) for e in got],
                         [("put", "wh/a", "1"), ("put", "wh/b", "22"), ("del", "wh/a", None)])
        self.assertEqual(got[0]["index"], index)
        self.assertEqual(got[0]["create_index"], index)
        self.assertLess(got[1]["index"], got[2]["index"])
        r = self.kvctl("watch", "wh/", "--from", str(index), "--count", "2", "--keys-only")
        self.assertEqual(r.stdout.splitlines(), [f"PUT wh/a (index {index})",
                                                 f"PUT wh/b (index {got[1]['index']})"])
        r = self.kvctl("watch", "--from", "1=x")
        self.assertEqual(r.returncode, 2)
        self.assertIn("--from", r.stderr)

    def test_kvctl_watch_says_compacted_and_exits_1(self):
        with Cluster(BIN["dir"], nodes=1,
                     extra_args=["--shards", "0", "--watch-history-changes", "2"]).start() as c:
            c.wait_for_leader(60)
            eps = c.endpoints()[0]
            for i in range(5):
                self.assertEqual(run("kvctl", "--endpoints", eps, "put", f"c/{i}", "v").returncode,
                                 0)
            r = run("kvctl", "--endpoints", eps, "watch", "c/", "--from", "1")
            self.assertEqual(r.returncode, 1, r.stderr)
            self.assertIn("COMPACTED", r.stderr)
            self.assertIn("no longer kept", r.stderr)

    def test_kvctl_watch_survives_a_leader_kill_and_a_restart_of_its_node(self):
        watch = subprocess.Popen([BIN["kvctl"], "--endpoints", self.eps, "--json", "watch", "wk/"],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        out, err = [], []
        readers = [threading.Thread(target=lambda f=f, lines=lines: lines.extend(
            iter(f.readline, "")), daemon=True) for f, lines in ((watch.stdout, out),
                                                                 (watch.stderr, err))]
        for r in readers:
            r.start()
        acknowledged = {}  # index -> key
        stop = threading.Event()

        def write():
            i = 0
            while not stop.is_set():
                r = self.kvctl("--json", "--timeout", "10000", "put", f"wk/{i}", str(i))
                if r.returncode == 0:
                    acknowledged[json.loads(r.stdout)["index"]] = f"wk/{i}"
                i += 1

        def more_events(n):
            seen = len(out)
            wait_until(lambda: len(out) >= seen + n, 60, what=f"{n} more events")

        def serving():
            """The node the watch reads from, as its last line about it says."""
            address = re.findall(r"served by ([\d.:]+)", "".join(err))[-1]
            return next(i for i in range(1, 4) if self.cluster.endpoint(i) == address), address

        writer = threading.Thread(target=write)
        try:
            wait_until(lambda: any(line.startswith("kvctl: watching") for line in err), 20,
                       what="the watch to start")
            writer.start()
            more_events(5)
            leader = self.leader()
            self.cluster.kill(leader)
            wait_until(lambda: self.cluster.leader() not in (None, leader), 30, what="a new leader")
            self.cluster.start(leader)
            more_events(5)
            node, address = serving()
            self.cluster.restart(node)
            wait_until(lambda: f"no word from {address}" in "".join(err), 30,
                       what="the watch to move")
            more_events(5)
        finally:
            stop.set()
            if writer.is_alive():
                writer.join()
        last = max(acknowledged)
        wait_until(lambda: json.loads(out[-1])["index"] >= last, 30, what="the last put")
        watch.send_signal(signal.SIGINT)
        self.assertEqual(watch.wait(timeout=10), 0)
        for r in readers:
            r.join()
        watch.stdout.close()
        watch.stderr.close()
        events = [json.loads(line) for line in out]
        indexes = [e["index"] for e in events]
        self.assertEqual(indexes, sorted(set(indexes)), "in order, each once")
        got = {e["index"]: e["key"] for e in events}
        for index, key in acknowledged.items():
            self.assertEqual(got.get(index), key, f"acknowledged put of {key} at {index}")
        self.assertRegex("".join(err), rf"watch: now served by [\d.:]+ \(no word from {address} ")
        self.leader()

    def test_kvload_scans_in_the_history_pass_kvcheck(self):
        # A cluster of its own: kvcheck takes every key to start absent, and
        # the other kvload tests write kvload's keys into the shared one.
        # Its leader is killed while the load runs: scans are resent, and
        # some end with an unknown outcome.
        with Cluster(BIN["dir"], nodes=3, extra_args=["--shards", "0"]).start() as cluster:
            cluster.wait_for_leader(60)

            def kill_the_leader(hist):
                wait_until(lambda: os.path.exists(hist) and os.path.getsize(hist) > 20000, 30,
                           what="load to start")
                victim = cluster.wait_for_leader(60)
                cluster.kill(victim)
                wait_until(lambda: cluster.leader() not in (None, victim), 30, what="a new leader")
                cluster.start(victim)

            check_scan_load(self, ",".join(cluster.endpoints()), limit=8, during=kill_the_leader)

    def test_kvload_verify_and_history_across_a_leader_kill(self):
        hist = tempfile.NamedTemporaryFile(suffix=".jsonl", delete=False).name
        load = subprocess.Popen(
            [BIN["kvload"], "--endpoints", self.eps, "--threads", "4", "--duration", "6",
             "--keys", "200", "--read-ratio", "0.3", "--verify", "--history", hist, "--json"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            # Kill the leader once the load is under way, then bring it back.
            wait_until(lambda: os.path.getsize(hist) > 20000, 30, what="load to start")
            victim = self.leader()
            self.cluster.kill(victim)
            wait_until(lambda: self.cluster.leader() not in (None, victim), 30,
                       what="a new leader")
            self.cluster.start(victim)
            out, err = load.communicate(timeout=120)
        finally:
            if load.poll() is None:
                load.kill()
        self.assertEqual(load.returncode, 0, err)
        summary = json.loads(out)
        self.assertEqual(summary["verify"]["lost"], 0)
        self.assertGreater(summary["verify"]["keys_checked"], 0)
        self.assertGreater(summary["ops"], 100)
        invokes = oks = 0
        with open(hist) as f:
            for line in f:
                op = json.loads(line)
                self.assertIn(op["type"], ("invoke", "ok", "fail", "info"))
                self.assertIn(op["f"], ("get", "put"))
                invokes += op["type"] == "invoke"
                oks += op["type"] == "ok"
        self.assertEqual(invokes, summary["ops"])
        self.assertGreater(oks, 0)
        os.unlink(hist)

    def test_kvload_positional_form(self):
        leader = self.leader()
        port = self.cluster.port(leader)
        r = run("kvload", str(port), "2", "50")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("ops: 100 ", r.stdout)

    def test_kvload_ttl_ms_makes_every_key_it_writes_expire(self):
        r = run("kvload", "--endpoints", self.eps, "--threads", "1", "--pipeline", "8",
                "--keys", "300", "--requests", "600", "--ttl-ms", "500", "--json")
        self.assertEqual(r.returncode, 0, r.stderr)

        def expiring():
            got = self.kvctl("--json", "get", "key", "--prefix", "--limit", "10000")
            return [kv for kv in json.loads(got.stdout)["kvs"] if "ttl_ms" in kv] \
                if got.returncode == 0 else []
        self.assertTrue(expiring(), "kvload wrote no key with a TTL")
        wait_until(lambda: not expiring(), 10, what="kvload's keys to expire")
        self.assertEqual(run("kvload", "--endpoints", self.eps, "--ttl-ms", "5", "--verify",
                             "--requests", "10").returncode, 2)

    def test_kvmon_once_and_json(self):
        r = run("kvmon", "--endpoints", self.eps, "--once")
        self.assertEqual(r.returncode, 0)
        self.assertEqual(r.stdout.count(" up"), 3, r.stdout)
        rows = json.loads(run("kvmon", "--endpoints", self.eps, "--json").stdout)
        self.assertEqual(sorted(r["id"] for r in rows), [1, 2, 3])
        self.assertEqual(sum(r["role"] == "leader" for r in rows), 1)
        # Unsharded: an array of node objects, as before sharding.
        self.assertEqual(set(rows[0]), {"endpoint", "up", "id", "role", "term", "leader",
                                        "commit", "applied", "lag", "keys", "p99_ms",
                                        "fsync_p99_ms"})
        # The latencies come from each node's /metrics: every node syncs its
        # WAL (one the last test restarted, once it hears the current term).
        def synced():
            rows = json.loads(run("kvmon", "--endpoints", self.eps, "--json").stdout)
            return all((r["fsync_p99_ms"] or 0) > 0 for r in rows) and rows
        wait_until(synced, 10, interval=0.2, what="every node's fsync p99 in kvmon --json")
        self.assertNotIn("SHARD", r.stdout)

    @unittest.skipUnless(shutil.which("tmux"), "tmux is not installed")
    def test_kvmon_fits_80_120_and_200_columns_without_wrapping(self):
        expected = {
            80: ["ID", "ADDRESS", "ROLE", "TERM", "LEADER", "LAG", "OPS/S", "STATE"],
            120: ["ID", "ADDRESS", "ROLE", "TERM", "LEADER", "COMMIT", "APPLIED", "LAG", "OPS/S",
                  "P99", "FSYNC99", "STATE"],
            200: ["ID", "ADDRESS", "ROLE", "TERM", "LEADER", "COMMIT", "APPLIED", "LAG", "OPS/S",
                  "P99", "FSYNC99", "THROUGHPUT", "STATE"],
        }
        latency = re.compile(r"^[0-9.]+(us|ms|s)$")
        for width, header in expected.items():
            session = f"kvmon{os.getpid()}w{width}"
            tmux_session(session, width, 30, f"{BIN['kvmon']} --endpoints {self.eps}")
            try:
                def screen():
                    return subprocess.run(["tmux", "capture-pane", "-p", "-t", session],
                                          capture_output=True, text=True).stdout.splitlines()

                def node_rows(lines):
                    # "ID ADDRESS ... up" (the event log's lines start with a time).
                    return [l.split() for l in lines
                            if len(l.split()) > 2 and l.split()[0].isdigit() and
                            ":" in l.split()[1] and l.split()[-1] == "up"]

                def ready():
                    lines = screen()
                    rows = node_rows(lines)
                    # With the latency columns, until every node's /metrics was read.
                    scraped = width < 120 or all(latency.match(r[9]) and latency.match(r[10])
                                                 for r in rows if len(r) > 10)
                    return len(rows) == 3 and scraped and lines
                try:
                    lines = wait_until(ready, 30, what=f"kvmon at {width} columns to show 3 nodes")
                except TimeoutError as e:
                    self.fail(f"{e}; the screen:\n" + "\n".join(screen()))
                self.assertIn(header, [l.split() for l in lines], f"at {width} columns")
                # One line per node: id, address, role ... state, nothing wrapped
                # onto a line of its own.
                for r in node_rows(lines):
                    self.assertIn(r[2], ("leader", "follower", "candidate", "pre-candidate"), r)
                    self.assertTrue(r[3].isdigit() and r[4].isdigit(), r)  # term, leader
                self.assertNotIn(["up"], [l.split() for l in lines])
            finally:
                subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)

    @unittest.skipUnless(shutil.which("tmux"), "tmux is not installed")
    def test_kvmon_in_tmux_shows_the_new_leader_after_a_kill(self):
        # At 80 columns, the classic default: a node that is down says so in its row.
        session = f"kvmon{os.getpid()}"
        tmux_session(session, 80, 40, f"{BIN['kvmon']} --endpoints {self.eps}")
        try:
            def screen():
                return subprocess.run(["tmux", "capture-pane", "-p", "-t", session],
                                      capture_output=True, text=True).stdout
            def table():
                # Node rows: ID ADDRESS ROLE ... STATE (the event log lines are longer prose).
                return [l.split() for l in screen().splitlines()
                        if l.split() and l.split()[-1] in ("up", "DOWN") and ":" in l.split()[1]]
            old = self.leader()
            wait_until(lambda: sum(r[-1] == "up" for r in table()) == 3, 30,
                       what="kvmon to show 3 nodes up")
            self.cluster.kill(old)
            new = wait_until(lambda: self.cluster.leader() not in (None, old) and
                             self.cluster.leader(), 30, what="a new leader")

            def shows_new_leader():
                rows = table()
                leaders = [r[0] for r in rows if r[2] == "leader"]
                down = [r for r in rows if r[-1] == "DOWN"]
                return leaders == [str(new)] and len(down) == 1
            wait_until(shows_new_leader, 30, what="kvmon to show the new leader")
            self.assertIn("is DOWN", screen())
            subprocess.run(["tmux", "send-keys", "-t", session, "q"], check=True)
            wait_until(lambda: subprocess.run(["tmux", "has-session", "-t", session],
                                              capture_output=True).returncode != 0, 10,
                       what="kvmon to quit on q")
        finally:
            subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)
            self.cluster.start(old) if not self.cluster.alive(old) else None
            self.cluster.wait_for_leader(60)


class ShardedKvmonTest(unittest.TestCase):
    """kvmon against 5 nodes holding 8 shards of 3 replicas each."""
    SHARDS = 8

    @classmethod
    def setUpClass(cls):
        cls.cluster = Cluster(BIN["dir"], nodes=5,
                              extra_args=["--shards", str(cls.SHARDS), "--replicas", "3"]).start()
        cls.eps = ",".join(cls.cluster.endpoints())

    @classmethod
    def tearDownClass(cls):
        cls.cluster.__exit__(None, None, None)

    def test_kvctl_scan_merges_every_shard_in_key_order(self):
        self.wait_for_shards(self.settled, "8 shards, each with a leader and 3 voters")
        keys = [f"scan/{i:03d}" for i in range(60)]
        for k in keys:
            r = run("kvctl", "--endpoints", self.eps, "put", k, k.upper())
            self.assertEqual(r.returncode, 0, r.stderr)
        r = run("kvctl", "--endpoints", self.eps, "--json", "get", "scan/", "--prefix")
        self.assertEqual(r.returncode, 0, r.stderr)
        got = json.loads(r.stdout)
        self.assertEqual([kv["key"] for kv in got["kvs"]], keys)
        self.assertEqual([kv["value"] for kv in got["kvs"]], [k.upper() for k in keys])
        self.assertFalse(got["more"])
        r = run("kvctl", "--endpoints", self.eps, "--json", "scan", "scan/010", "scan/050",
                "--limit", "25", "--keys-only")
        got = json.loads(r.stdout)
        self.assertEqual([kv["key"] for kv in got["kvs"]], keys[10:35])
        self.assertTrue(got["more"])
        # A scan names its shard here: keys are spread over them by hash.
        r = self.cluster.request(1, {"id": 3, "op": "scan", "prefix": "scan/"})
        self.assertEqual(r["status"], "ERROR", r)
        self.assertIn("shard", r["error"])
        r = self.cluster.request(1, {"id": 4, "op": "scan", "shard": 8})
        self.assertEqual(r["status"], "ERROR", r)

    def test_hash_tags_put_keys_in_one_shard(self):
        self.wait_for_shards(self.settled, "8 shards, each with a leader and 3 voters")
        tagged = ["{user:42}:name", "{user:42}:email", "cart:{user:42}"]
        for k in tagged:
            r = run("kvctl", "--endpoints", self.eps, "put", k, "v")
            self.assertEqual(r.returncode, 0, r.stderr)
        placed = []
        for k in tagged + ["user:42"]:
            r = run("kvctl", "--endpoints", self.eps, "--json", "shard", k)
            self.assertEqual(r.returncode, 0, r.stderr)
            placed.append(json.loads(r.stdout))
        self.assertEqual(len({p["shard"] for p in placed}), 1, placed)
        # The shard's own leader holds all three: a scan of that shard alone.
        # (Leaderships may still be moving to their preferred nodes: ask
        # whoever the map names until one answers as the leader.)
        def scan_of_the_shard():
            r = run("kvctl", "--endpoints", self.eps, "--json", "shard", tagged[0])
            where = json.loads(r.stdout)
            if not where.get("leader"):
                return None
            r = self.cluster.request(where["leader"], {"id": 5, "op": "scan",
                                                       "shard": where["shard"], "limit": 10000,
                                                       "keys_only": True})
            return r if r and r["status"] == "OK" else None
        r = wait_until(scan_of_the_shard, 30, what="a scan of the tagged keys' shard")
        self.assertTrue(set(k.encode() for k in tagged) <= {kv["key"] for kv in r["kvs"]}, r)
        # Without braces, keys spread: these do not all share that shard.
        spread = set()
        for i in range(16):
            r = run("kvctl", "--endpoints", self.eps, "--json", "shard", f"user:42:{i}")
            spread.add(json.loads(r.stdout)["shard"])
        self.assertGreater(len(spread), 1)

    def test_kvctl_txn_in_one_shard_runs_and_across_two_gets_the_nodes_error(self):
        self.wait_for_shards(self.settled, "8 shards, each with a leader and 3 voters")

        def shard_of(key):
            return json.loads(run("kvctl", "--endpoints", self.eps, "--json", "shard",
                                  key).stdout)["shard"]
        r = run("kvctl", "--endpoints", self.eps, "txn",
                input="then put {txn}:a 1\nthen put {txn}:b 2\n")
        self.assertEqual(r.returncode, 0, r.stderr)
        tagged = shard_of("txn")
        other = next(k for k in (f"txn/{i}" for i in range(100)) if shard_of(k) != tagged)
        r = run("kvctl", "--endpoints", self.eps, "txn",
                input=f"if present {{txn}}:a\nthen put {other} 3\n")
        self.assertEqual(r.returncode, 4, r.stderr)
        self.assertIn("must be in one shard", r.stderr)
        self.assertIn(f"is in shard {tagged},", r.stderr)
        self.assertIn(f"in shard {shard_of(other)} (", r.stderr)
        self.assertEqual(run("kvctl", "--endpoints", self.eps, "get", other).returncode, 1)

    def test_kvctl_watch_follows_every_shard(self):
        self.wait_for_shards(self.settled, "8 shards, each with a leader and 3 voters")

        def kvctl(*args):
            return run("kvctl", "--endpoints", self.eps, *args)
        watch = subprocess.Popen([BIN["kvctl"], "--endpoints", self.eps, "--json", "watch", "ws/",
                                  "--count", "16"],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            banner = watch.stderr.readline()
            self.assertIn(f"in {self.SHARDS} shards", banner)
            written = {}  # (shard, index) -> key
            for i in range(16):
                key = f"ws/{i}"
                index = json.loads(kvctl("--json", "put", key, "v").stdout)["index"]
                written[(json.loads(kvctl("--json", "shard", key).stdout)["shard"], index)] = key
            out, _ = watch.communicate(timeout=60)
        finally:
            if watch.poll() is None:
                watch.kill()
        self.assertEqual(watch.returncode, 0)
        got = {(e["shard"], e["index"]): e["key"] for e in map(json.loads, out.splitlines())}
        self.assertEqual(got, written)
        # A shard's history from one of its indexes; a bare index means no shard.
        (shard, index), key = min(written.items())
        r = kvctl("--json", "watch", "ws/", "--from", f"{shard}={index}", "--count", "1")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(json.loads(r.stdout)["key"], key)
        r = kvctl("watch", "ws/", "--from", str(index))
        self.assertEqual(r.returncode, 2)
        self.assertIn("SHARD=INDEX", r.stderr)

    def test_kvctl_ttl_and_touch_reach_each_keys_shard(self):
        self.wait_for_shards(self.settled, "8 shards, each with a leader and 3 voters")
        keys = [f"ttl/{i}" for i in range(16)]
        for k in keys:
            r = run("kvctl", "--endpoints", self.eps, "put", k, "v", "--ttl", "600000")
            self.assertEqual(r.returncode, 0, r.stderr)
        for k in keys[:8]:
            r = run("kvctl", "--endpoints", self.eps, "touch", k)
            self.assertEqual(r.returncode, 0, r.stderr)
        for k in keys:
            r = run("kvctl", "--endpoints", self.eps, "ttl", k)
            self.assertEqual(r.returncode, 0, r.stderr)
            if k in keys[:8]:
                self.assertEqual(r.stdout, "permanent\n")
            else:
                self.assertTrue(0 < int(r.stdout) <= 600000, r.stdout)
        r = run("kvctl", "--endpoints", self.eps, "touch", keys[8], "--ttl", "200")
        self.assertEqual(r.returncode, 0, r.stderr)
        wait_until(lambda: run("kvctl", "--endpoints", self.eps, "get", keys[8]).returncode == 1,
                   10)
        r = run("kvctl", "--endpoints", self.eps, "--json", "get", "ttl/", "--prefix")
        got = [kv["key"] for kv in json.loads(r.stdout)["kvs"]]
        self.assertEqual(got, sorted(k for k in keys if k != keys[8]))

    def test_kvload_scans_of_every_shard_pass_kvcheck(self):
        # Each scan is a page per shard, merged by kvload: keys of a shard
        # left out, or of one whose page was cut short before them, would
        # read as absent, and kvcheck would flag them. With a limit of 2, a
        # shard often holds more of a range than that.
        self.wait_for_shards(self.settled, "8 shards, each with a leader and 3 voters")
        check_scan_load(self, self.eps, limit=2)

    def kvmon_json(self):
        r = run("kvmon", "--endpoints", self.eps, "--once", "--json")
        return json.loads(r.stdout) if r.returncode == 0 else None

    def wait_for_shards(self, ok, what, timeout=60):
        """Polls kvmon --once --json until ok(out) holds for its output."""
        last = {}

        def check():
            last["out"] = self.kvmon_json()
            return isinstance(last["out"], dict) and ok(last["out"]) and last["out"]
        try:
            return wait_until(check, timeout, interval=0.2, what=what)
        except TimeoutError as e:
            self.fail(f"{e}; kvmon said: {json.dumps(last.get('out'))}")

    def settled(self, out, down=()):
        """Every shard led by a live voter, with 3 voters and no learner, and
        the live nodes' hosts and leads agreeing with the shard table."""
        shards = out["shards"]
        nodes = {n["id"]: n for n in out["nodes"] if n["up"]}
        if sorted(s["shard"] for s in shards) != list(range(self.SHARDS)):
            return False
        for s in shards:
            if (len(set(s["voters"])) != 3 or s["learners"] or s["leader"] in down or
                    s["leader"] not in s["voters"] or s["leader"] not in nodes or
                    s["shard"] not in nodes[s["leader"]]["leads"]):
                return False
            if any(v in nodes and s["shard"] not in nodes[v]["hosts"] for v in s["voters"]):
                return False
        return sum(len(n["leads"]) for n in nodes.values()) == self.SHARDS

    def test_kvmon_json_shows_every_shard_with_a_leader_and_3_voters(self):
        out = self.wait_for_shards(self.settled, "8 shards, each with a leader and 3 voters")
        nodes = out["nodes"]
        self.assertEqual(sorted(n["id"] for n in nodes), [1, 2, 3, 4, 5])
        self.assertTrue(all(n["up"] for n in nodes))
        self.assertEqual(len({s["group"] for s in out["shards"]}), self.SHARDS)
        self.assertNotIn(0, [s["group"] for s in out["shards"]])
        # The node objects keep the unsharded fields, and say which group they describe.
        for n in nodes:
            self.assertLessEqual({"endpoint", "up", "id", "role", "term", "leader", "commit",
                                  "applied", "lag", "keys", "group", "meta", "hosts",
                                  "leads"}, set(n))
        # Replicas: 8 shards x 3 over 5 nodes.
        self.assertEqual(sum(len(n["hosts"]) for n in nodes), 3 * self.SHARDS)
        # The metadata group's leader is the one leader among the rows describing it.
        meta_rows = [n for n in nodes if n["group"] == 1]
        self.assertLessEqual(sum(n["role"] == "leader" for n in meta_rows), 1)

    def test_kvmon_table_shows_shards_and_a_dead_leaders_shards_move(self):
        out = self.wait_for_shards(self.settled, "8 shards, each with a leader and 3 voters")
        r = run("kvmon", "--endpoints", self.eps, "--once")
        self.assertEqual(r.returncode, 0)
        self.assertEqual(r.stdout.count(" up\n"), 5, r.stdout)
        lines = r.stdout.splitlines()
        self.assertIn("SHARDS", lines[0])
        self.assertIn("LEADS", lines[0])
        head = next(i for i, l in enumerate(lines) if l.split()[:3] == ["SHARD", "GROUP", "LEADER"])
        self.assertEqual([int(l.split()[0]) for l in lines[head + 1:]],
                         list(range(self.SHARDS)), r.stdout)
        # Kill a node that leads a shard: kvmon shows it DOWN and other leaders.
        # (A node that never answered this kvmon is known only by its endpoint.)
        victim = next(n["id"] for n in out["nodes"] if n["leads"])
        self.cluster.kill(victim)
        try:
            def victim_row(o):
                return next(n for n in o["nodes"] if n["endpoint"] == self.cluster.endpoint(victim))
            out = self.wait_for_shards(
                lambda o: not victim_row(o)["up"] and self.settled(o, down=(victim,)),
                f"every shard led by a live node after killing node {victim}")
            self.assertEqual(victim_row(out)["leads"], [])
        finally:
            self.cluster.start(victim)
        self.wait_for_shards(lambda o: all(n["up"] for n in o["nodes"]) and self.settled(o),
                             f"node {victim} back")


if __name__ == "__main__":
    bin_dir = sys.argv.pop(1)
    BIN["dir"] = os.path.join(bin_dir, "src", "node")
    BIN["kvctl"] = os.path.join(bin_dir, "tools", "kvctl")
    BIN["kvload"] = os.path.join(bin_dir, "tools", "kvload")
    BIN["kvcheck"] = os.path.join(bin_dir, "tools", "kvcheck", "kvcheck")
    BIN["kvmon"] = os.path.join(bin_dir, "monitor", "kvmon")
    unittest_main()
