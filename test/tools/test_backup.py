"""Backup and restore end to end (issue 17): `kvctl snapshot save` while
kvload writes, `kvctl snapshot status`, and `kvstore restore` into a new
cluster on other ports, unsharded and sharded. The restored cluster must
hold every write acknowledged before the save started (its value or a
later one) and nothing written after the save finished, and take writes.
A damaged backup is refused with a clear message, and so is a data dir
that is not empty.

Run by ctest as: python3 test_backup.py BUILD_DIR.
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from harness import HarnessError, case_failed, unittest_main  # noqa: E402
from kvcluster import Cluster, wait_until  # noqa: E402

BUILD = None
KEYS = 400


def tool(name):
    return os.path.join(BUILD, "tools", name)


def kvstore():
    return os.path.join(BUILD, "src", "node", "kvstore")


def run(argv, timeout=120):
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout)


class Put:
    def __init__(self, key, value, invoke):
        self.key, self.value, self.invoke = key, value, invoke
        self.ok = None        # monotonic ns of its "ok"
        self.failed = False   # "fail": certainly not applied


def read_puts(history_path):
    """Every put of a kvload --history, by value (kvload's are unique)."""
    open_ops, puts = {}, {}
    with open(history_path) as f:
        for line in f:
            e = json.loads(line)
            if e["f"] != "put":
                raise HarnessError(f"kvload wrote a {e['f']} where only puts were asked for")
            if e["type"] == "invoke":
                p = Put(e["key"], e["value"], e["time"])
                open_ops[e["process"]] = p
                puts[p.value] = p
            elif e["process"] in open_ops:
                p = open_ops.pop(e["process"])
                if e["type"] == "ok":
                    p.ok = e["time"]
                elif e["type"] == "fail":
                    p.failed = True
    return puts


class BackupTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="kv-backup-")
        self.clusters = []

    def tearDown(self):
        failed = case_failed(self)
        for c in self.clusters:
            c.__exit__(Exception if failed else None, None, None)
        shutil.rmtree(self.dir, ignore_errors=True)

    def cluster(self, extra_args=(), nodes=3):
        c = Cluster(os.path.join(BUILD, "src", "node"), nodes=nodes, tick_ms=50,
                    extra_args=list(extra_args))
        c.__enter__()
        self.clusters.append(c)
        return c

    def kvctl(self, c, *args):
        return run([tool("kvctl"), "--endpoints", ",".join(c.endpoints()), "--timeout", "20000",
                    *args])

    def scan_all(self, c):
        r = self.kvctl(c, "scan", "--json", "--limit", "10000")
        self.assertIn(r.returncode, (0, 1), r.stderr)
        return {kv["key"]: kv["value"] for kv in json.loads(r.stdout)["kvs"]}

    def save_while_writing(self, c, path):
        """Saves a backup of c while kvload writes; returns (puts by value,
        save start and end in monotonic ns)."""
        hist = os.path.join(self.dir, "history.jsonl")
        load = subprocess.Popen(
            [tool("kvload"), "--endpoints", ",".join(c.endpoints()), "--threads", "2",
             "--pipeline", "4", "--duration", "4", "--keys", str(KEYS), "--read-ratio", "0",
             "--cas-ratio", "0", "--value-size", "64", "--history", hist, "--json"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            # Mid-load: once kvload has had a good number of writes answered.
            wait_until(lambda: os.path.exists(hist) and os.path.getsize(hist) > 200_000, 30,
                       what="kvload's first writes")
            start = time.monotonic_ns()
            r = self.kvctl(c, "snapshot", "save", path)
            end = time.monotonic_ns()
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertIn("saved " + path, r.stdout)
            out, err = load.communicate(timeout=120)
        finally:
            if load.poll() is None:
                load.kill()
                load.communicate()
        self.assertEqual(load.returncode, 0, err)
        return read_puts(hist), start, end

    def check_restored(self, restored, puts, start, end):
        """What the restored cluster holds against kvload's history."""
        by_key = {}
        for p in puts.values():
            by_key.setdefault(p.key, []).append(p)
        acked_before = 0
        for key, writes in by_key.items():
            before = [p for p in writes if p.ok is not None and p.ok < start]
            acked_before += len(before)
            value = restored.get(key)
            if before:
                self.assertIsNotNone(value, f"{key}: acknowledged before the save, not restored")
            if value is None:
                continue
            p = puts.get(value)
            self.assertIsNotNone(p, f"{key}: restored value {value!r} was never written")
            self.assertEqual(p.key, key)
            self.assertFalse(p.failed, f"{key}: restored a write kvload saw fail")
            self.assertLess(p.invoke, end, f"{key}: restored a write made after the save ended")
            for q in before:
                # q was acknowledged before the save started and began after
                # p was acknowledged: p's value is older than the backup.
                self.assertFalse(p.ok is not None and q.invoke > p.ok,
                                 f"{key}: restored {p.value!r}, older than {q.value!r}")
        # Some writes were acknowledged before the save, some came after it.
        self.assertGreater(acked_before, 100)
        self.assertTrue(any(p.invoke > end for p in puts.values()),
                        "kvload wrote nothing after the save: the test proves nothing")
        self.assertEqual(set(restored) - set(by_key), set())

    def restore(self, path, target, shards_args=()):
        """Restores every member of the not yet started cluster `target`."""
        for i in range(1, target.n + 1):
            r = run([kvstore(), "restore", path, "--id", str(i), "--peers", target.peers(),
                     "--data-dir", os.path.join(target.dir, f"node-{i}")])
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertIn(f"restored node {i}", r.stdout)
        target.start()
        target.wait_for_leader()

    def save_and_restore(self, shard_args):
        a = self.cluster(shard_args)
        a.start()
        a.wait_for_leader()
        path = os.path.join(self.dir, "cluster.backup")
        puts, start, end = self.save_while_writing(a, path)

        r = self.kvctl(a, "--json", "snapshot", "status", path)
        self.assertEqual(r.returncode, 0, r.stderr)
        status = json.loads(r.stdout)
        self.assertTrue(status["checksum_ok"])
        self.assertEqual(status["cluster"], "default")
        self.assertEqual(status["bytes"], os.path.getsize(path))
        self.assertEqual(len(status["parts"]), max(1, status["shards"]))
        self.assertEqual(status["keys"], sum(p["keys"] for p in status["parts"]))

        b = self.cluster(shard_args)  # other ports: a's are taken
        self.assertNotEqual(a.base, b.base)
        self.restore(path, b)
        restored = wait_until(lambda: self.scan_all(b), 30, what="the restored keys")
        self.assertEqual(len(restored), status["keys"])
        self.check_restored(restored, puts, start, end)

        # A new cluster: it takes writes, and a's members are not its own.
        r = self.kvctl(b, "put", "after-restore", "yes")
        self.assertEqual(r.returncode, 0, r.stderr)
        r = self.kvctl(b, "get", "after-restore")
        self.assertEqual(r.stdout, "yes")
        r = self.kvctl(b, "--json", "status")
        self.assertNotIn(str(a.base), r.stdout)
        return path, b

    def test_unsharded_save_while_writing_and_restore(self):
        path, b = self.save_and_restore(["--shards", "0"])

        # A damaged backup is refused by status and restore, which then
        # write nothing.
        damaged = os.path.join(self.dir, "damaged.backup")
        shutil.copy(path, damaged)
        with open(damaged, "r+b") as f:
            f.seek(os.path.getsize(damaged) // 2)
            byte = f.read(1)
            f.seek(-1, os.SEEK_CUR)
            f.write(bytes([byte[0] ^ 0x10]))
        r = run([tool("kvctl"), "snapshot", "status", damaged])
        self.assertEqual(r.returncode, 1)
        self.assertIn("checksum  BAD", r.stdout)
        self.assertIn("checksum mismatch", r.stdout)
        fresh = os.path.join(self.dir, "fresh")
        r = run([kvstore(), "restore", damaged, "--id", "1", "--peers", b.peers(),
                 "--data-dir", fresh])
        self.assertEqual(r.returncode, 1)
        self.assertIn("damaged", r.stderr)
        self.assertFalse(os.path.exists(fresh))
        # Nor does restore write over a data dir in use.
        r = run([kvstore(), "restore", path, "--id", "1", "--peers", b.peers(),
                 "--data-dir", os.path.join(b.dir, "node-1")])
        self.assertEqual(r.returncode, 2)
        self.assertIn("is not empty", r.stderr)

    def test_a_member_started_without_restore_gets_the_data_anyway(self):
        # One node, one put: the backup's index (3) is within the three
        # entries a new 3-node cluster's founders write in term 1.
        a = self.cluster(nodes=1)
        a.start()
        a.wait_for_leader()
        r = self.kvctl(a, "put", "k2", "v2")
        self.assertEqual(r.returncode, 0, r.stderr)
        path = os.path.join(self.dir, "small.backup")
        r = self.kvctl(a, "snapshot", "save", path)
        self.assertEqual(r.returncode, 0, r.stderr)

        # Restore listens on nothing: members on other hosts are no concern.
        far = os.path.join(self.dir, "far")
        r = run([kvstore(), "restore", path, "--id", "2", "--peers",
                 "1=10.0.0.1:8080,2=10.0.0.2:8080,3=10.0.0.3:8080", "--data-dir", far])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("--data-dir " + far, r.stdout)
        self.assertTrue(os.path.isfile(os.path.join(far, "IDENTITY")))
        self.assertFalse(os.path.exists(far + ".restoring"))

        # Node 3 is started fresh by mistake: its own bootstrap log must not
        # pass for the restored state, so it gets that state from the leader.
        b = self.cluster()
        for i in (1, 2):
            r = run([kvstore(), "restore", path, "--id", str(i), "--peers", b.peers(),
                     "--data-dir", os.path.join(b.dir, f"node-{i}")])
            self.assertEqual(r.returncode, 0, r.stderr)
        b.start()
        b.wait_for_leader()

        def stale_get_on_3():
            r = run([tool("kvctl"), "--endpoints", b.endpoint(3), "--timeout", "1000", "get",
                     "--stale", "k2"])
            return r.returncode == 0 and r.stdout == "v2"
        wait_until(stale_get_on_3, 30, what="node 3 to hold the restored keys")

    def test_sharded_save_while_writing_and_restore(self):
        _, b = self.save_and_restore(["--shards", "4", "--replicas", "2"])
        r = self.kvctl(b, "--json", "shards")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(json.loads(r.stdout)["shards"], 4)


if __name__ == "__main__":
    BUILD = os.path.abspath(sys.argv.pop(1))
    unittest_main()
