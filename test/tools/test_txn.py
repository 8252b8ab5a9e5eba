"""Transactions under a leader kill (issue 16): a bank of 10 accounts under
one hash tag, 100 each. Workers move money between two accounts at a time
(a txn of gets, then a txn that puts both new balances if neither account's
mod_index moved); readers read all 10 in one txn and check the total is
1000. The leader of the accounts' shard is killed -9 in the middle of the
run and restarted. Checked two ways: every read sums to 1000 (no txn is
ever seen half applied), and kvcheck finds the recorded history
linearizable key by key. Once on a 3-node cluster, once on a sharded one,
where a txn across two shards is refused and the accounts' keys are all
in one shard.

Run by ctest as: python3 test_txn.py BUILD_DIR. KVSTORE_TEST_SEED=N
replays the workers' choices (not the timing).
"""
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "examples"))
from client import Client, KvError, Unavailable, Unknown  # noqa: E402
from harness import HarnessError, SystemFailure, case_failed, unittest_main  # noqa: E402
from kvcluster import Cluster, wait_until  # noqa: E402

BUILD = None
ACCOUNTS = [f"{{bank}}:acct-{i}" for i in range(10)]
TOTAL = 100 * len(ACCOUNTS)
WORKERS, READERS = 6, 2
TRANSFERS_PER_PHASE = 300  # before the kill, after the election, after the restart


def tool(*path):
    return os.path.join(BUILD, "tools", *path)


def balance(value):
    """Values are "BALANCE:WRITER" so that every write is distinct, which
    lets kvcheck tell a stale read from a fresh one."""
    return int(value.split(":", 1)[0])


class History:
    """Operations in kvcheck's format (tools/kvcheck/history.h), appended
    under a lock that also takes the time, so the file's order is the order
    of the times."""

    def __init__(self):
        self.lock = threading.Lock()
        self.events = []
        self.processes = 0

    def new_process(self):
        with self.lock:
            self.processes += 1
            return self.processes

    def add(self, process, type_, **fields):
        with self.lock:
            self.events.append(dict(process=process, type=type_, f="txn",
                                    time=time.monotonic_ns(), **fields))

    def count(self, type_):
        with self.lock:
            return sum(e["type"] == type_ for e in self.events)

    def resent(self):
        with self.lock:
            return sum(e.get("resent", False) for e in self.events)

    def write(self, path):
        with self.lock, open(path, "w") as f:
            for e in self.events:
                f.write(json.dumps(e) + "\n")


def wire(ops):
    """History ops ("f": put/delete/get) in the shape of the protocol."""
    names = {"put": "put", "delete": "del", "get": "get"}
    return [dict({k: v for k, v in op.items() if k != "f"}, op=names[op["f"]]) for op in ops]


class Actor:
    """One thread's client (its own session) and its kvcheck process, which
    changes after an "info": that process may never complete again."""

    def __init__(self, bank, endpoints):
        self.bank = bank
        # Deadlines short enough that the writes in flight at the kill often
        # end unknown, so the run has "info" operations for kvcheck too.
        self.client = Client(endpoints, timeout=0.5, attempt_timeout=0.2)
        self.process = bank.history.new_process()

    def txn(self, compare=(), success=(), failure=()):
        """The TxnResult, or None when it failed or its outcome is unknown."""
        h = self.bank.history
        h.add(self.process, "invoke", compare=list(compare), success=list(success),
              failure=list(failure))
        try:
            r = self.client.txn(compare, wire(success), wire(failure))
        except Unknown:
            h.add(self.process, "info")
            self.process = h.new_process()
            return None
        except Unavailable:  # no attempt could have been executed
            h.add(self.process, "fail")
            return None
        except KvError as e:
            h.add(self.process, "fail")
            raise SystemFailure(f"ERROR for a txn of keys of one shard: {e}") from e
        branch = success if r.succeeded else failure
        results = []
        for op, res in zip(branch, r.results):
            if op["f"] != "get":
                results.append({})
            elif res["status"] == "OK":
                results.append({"value": res["value"].decode()})
            elif res["status"] == "NOT_FOUND":
                results.append({"value": None})
            else:  # BUSY: our replies are tiny, the reply budget is never near
                raise HarnessError(f"unexpected result of a get in a txn: {res}")
        h.add(self.process, "ok", succeeded=r.succeeded, results=results, resent=r.resent)
        return r


class Bank:
    """The accounts, the threads that use them and what they saw."""

    def __init__(self, cluster, seed):
        self.endpoints = cluster.endpoints()
        self.seed = seed
        self.history = History()
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.transfers = self.conflicts = self.reads = 0
        self.violations = []
        self.errors = []
        self.threads = []

    def open(self):
        """Puts 100 in each account, recorded as the history's first txn
        (kvcheck takes every key to start absent)."""
        a = Actor(self, self.endpoints)
        a.client.timeout = 30.0  # the cluster may still be electing
        r = a.txn(success=[{"f": "put", "key": k, "value": "100:open"} for k in ACCOUNTS])
        a.client.close()
        if r is None or not r.succeeded:
            raise SystemFailure(f"could not open the accounts: {r}")

    def start(self):
        for i in range(WORKERS + READERS):
            body = self.transfer_loop if i < WORKERS else self.read_loop
            t = threading.Thread(target=self.guard, args=(body, random.Random(self.seed + i)),
                                 daemon=True)
            t.start()
            self.threads.append(t)

    def finish(self):
        self.stop.set()
        for t in self.threads:
            t.join(timeout=30)
            if t.is_alive():
                raise HarnessError("a bank thread did not stop")
        if self.errors:
            raise self.errors[0]

    def guard(self, body, rng):
        actor = None
        try:
            actor = Actor(self, self.endpoints)
            body(actor, rng)
        except BaseException as e:  # noqa: BLE001 - re-raised by finish()
            self.errors.append(e)
            self.stop.set()
        finally:
            if actor:
                actor.client.close()

    def transfer_loop(self, actor, rng):
        n = 0
        while not self.stop.is_set():
            a, b = rng.sample(ACCOUNTS, 2)
            r = actor.txn(success=[{"f": "get", "key": a}, {"f": "get", "key": b}])
            if r is None or r.resent:  # a resend's results are not kept
                continue
            got = dict(zip((a, b), r.results))
            if any(res["status"] != "OK" for res in got.values()):
                self.violation(f"an account is missing: {r}")
                continue
            if balance(got[a]["value"].decode()) == 0:
                a, b = b, a
            have = balance(got[a]["value"].decode())
            if have == 0:
                continue
            amount = rng.randint(1, have)
            n += 1
            tag = f"p{actor.process}.{n}"
            new_a = f"{have - amount}:{tag}"
            new_b = f"{balance(got[b]['value'].decode()) + amount}:{tag}"
            w = actor.txn(compare=[{"key": k, "mod_index": got[k]["mod_index"], "cmp": "eq"}
                                   for k in (a, b)],
                          success=[{"f": "put", "key": a, "value": new_a},
                                   {"f": "put", "key": b, "value": new_b}])
            if w is not None:
                with self.lock:
                    if w.succeeded:
                        self.transfers += 1
                    else:
                        self.conflicts += 1

    def read_loop(self, actor, rng):
        while not self.stop.is_set():
            self.read_all(actor)
            time.sleep(rng.uniform(0, 0.01))  # pacing: leave room for the transfers

    def read_all(self, actor):
        """Reads every account in one txn; checks the total. The txn's
        result, or None when it gave no results to check."""
        r = actor.txn(success=[{"f": "get", "key": k} for k in ACCOUNTS])
        if r is None or r.resent:
            return None
        with self.lock:
            self.reads += 1
        if any(res["status"] != "OK" for res in r.results):
            self.violation(f"an account is missing: {r}")
        else:
            total = sum(balance(res["value"].decode()) for res in r.results)
            if total != TOTAL:
                self.violation(f"total {total} at index {r.index}: "
                               f"{[res['value'] for res in r.results]}")
        return r

    def violation(self, what):
        with self.lock:
            self.violations.append(what)

    def transfers_reach(self, n):
        with self.lock:
            if self.errors:
                raise self.errors[0]
            return self.transfers >= n


class BankTest:
    """The run, for a cluster made by the subclass's setUp."""

    SHARDS = 0

    def setUp(self):
        args = ["--shards", str(self.SHARDS), "--replicas", "3"] if self.SHARDS else []
        self.c = Cluster(os.path.join(BUILD, "src", "node"), nodes=3, extra_args=args)
        self.keep = tempfile.mkdtemp(prefix="kv-txn-bank-")
        self.addCleanup(self.clean_up)  # runs even when start() fails
        self.c.start()

    def clean_up(self):
        failed = case_failed(self)
        self.c.__exit__(Exception if failed else None, None, None)
        if failed:
            print(f"kept the history under {self.keep}", file=sys.stderr)
        else:
            shutil.rmtree(self.keep, ignore_errors=True)

    def kvctl(self, *args):
        r = subprocess.run([tool("kvctl"), "--endpoints", ",".join(self.c.endpoints()),
                            "--timeout", "20000", "--json", *args],
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        return json.loads(r.stdout)

    def run_bank(self, shard):
        seed = int(os.environ.get("KVSTORE_TEST_SEED", random.randrange(1 << 30)))
        print(f"{type(self).__name__}: seed {seed}", file=sys.stderr)
        bank = Bank(self.c, seed)
        hist = os.path.join(self.keep, "history.jsonl")
        started = time.monotonic()
        try:
            bank.open()
            bank.start()
            wait_until(lambda: bank.transfers_reach(TRANSFERS_PER_PHASE), 30,
                       what="transfers before the kill")
            victim = wait_until(lambda: self.c.leader_of(shard), 20, what="the accounts' leader")
            self.c.kill(victim, signal.SIGKILL)
            killed_at = bank.transfers
            new = wait_until(lambda: self.c.leader_of(shard), 20, what="a new leader")
            self.assertNotEqual(new, victim)
            wait_until(lambda: bank.transfers_reach(killed_at + TRANSFERS_PER_PHASE), 30,
                       what="transfers after the election")
            self.c.start(victim)
            self.c.wait_caught_up(victim, shard)
            back_at = bank.transfers
            wait_until(lambda: bank.transfers_reach(back_at + TRANSFERS_PER_PHASE), 30,
                       what="transfers after the restart")
        finally:
            bank.finish()
            bank.history.write(hist)  # kept if the run failed
        # A final read of every account, after every thread stopped.
        final = Actor(bank, self.c.endpoints())
        final.client.timeout = 20.0
        last = bank.read_all(final)
        final.client.close()
        bank.history.write(hist)
        print(f"{type(self).__name__}: {bank.transfers} transfers, {bank.conflicts} conflicts, "
              f"{bank.reads} reads checked, {bank.history.count('info')} info, "
              f"{bank.history.count('fail')} fail, {bank.history.resent()} resent; killed node "
              f"{victim}, node {new} led next; {time.monotonic() - started:.1f}s",
              file=sys.stderr)
        self.assertIsNotNone(last, "the final read gave no results")
        self.assertFalse(bank.violations, f"{len(bank.violations)} violations, the first: "
                         f"{bank.violations[:3]} (seed {seed}, history {hist})")
        self.assertGreaterEqual(bank.transfers, 3 * TRANSFERS_PER_PHASE)
        chk = subprocess.run([tool("kvcheck", "kvcheck"), "--json", hist], capture_output=True,
                             text=True, timeout=300)
        if chk.returncode == 2:
            raise HarnessError(f"kvcheck cannot read {hist}: {chk.stdout}{chk.stderr}")
        if chk.returncode != 0:
            report = subprocess.run([tool("kvcheck", "kvcheck"), hist], capture_output=True,
                                    text=True, timeout=300)
            self.fail(f"kvcheck exited {chk.returncode} (seed {seed}, history {hist}):\n"
                      + report.stdout + report.stderr)
        self.assertEqual(json.loads(chk.stdout)["verdict"], "linearizable")


class UnshardedBankTest(BankTest, unittest.TestCase):
    def test_transfers_keep_the_total_through_a_leader_kill(self):
        self.run_bank(None)


class ShardedBankTest(BankTest, unittest.TestCase):
    SHARDS = 4

    def test_transfers_keep_the_total_through_a_kill_of_the_shard_leader(self):
        shards = {self.kvctl("shard", k)["shard"] for k in ACCOUNTS}
        self.assertEqual(len(shards), 1, "keys sharing a hash tag are in several shards")
        (shard,) = shards
        # A key whose tag lands in another shard: a txn naming both is
        # refused, saying which shards, and writes nothing.
        other = next(k for k in (f"{{t{i}}}:x" for i in range(100))
                     if self.kvctl("shard", k)["shard"] != shard)
        other_shard = self.kvctl("shard", other)["shard"]
        c = Client(self.c.endpoints(), timeout=20.0)
        with self.assertRaises(KvError) as refused:
            c.txn(compare=[{"key": ACCOUNTS[0], "absent": True}],
                  success=[{"op": "put", "key": other, "value": "x"}])
        self.assertIn(f"in shard {shard}", str(refused.exception))
        self.assertIn(f"in shard {other_shard}", str(refused.exception))
        self.assertIsNone(c.get(other))
        c.close()
        # Leaderships move to the placement's preferred leaders soon after the
        # start; let them settle, so that the leader picked for the kill is
        # not handing its shard over at that moment.
        def balanced():
            leaders = [self.c.leader_of(s) for s in range(self.SHARDS)]
            counts = [leaders.count(i) for i in range(1, self.c.n + 1)]
            return None not in leaders and max(counts) - min(counts) <= 1
        wait_until(balanced, 30, interval=0.1, what="one leader per shard, spread evenly")
        self.run_bank(shard)


if __name__ == "__main__":
    BUILD = sys.argv.pop(1)
    unittest_main()
