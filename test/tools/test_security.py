"""Security end to end: a 3-node cluster whose members authenticate each
other with CurveZMQ keys on the Raft port, attacked with forged peer
traffic (issue "Security"): from a plain socket, from a CURVE client with a
key that is no member's, and from a member's key claiming another member's
id. None of it may change a term or a leader.

Run by ctest as: python3 test_security.py BUILD_DIR.
"""
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

import msgpack
import zmq

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from harness import unittest_main  # noqa: E402
from kvcluster import RAFT_PORT_OFFSET, Cluster, wait_until  # noqa: E402

BIN = {}


def append(group, sender, to, term):
    """A Raft Append (peer protocol v1, docs/protocol.md), as a forger builds it."""
    return msgpack.packb([1, 0, group, sender, to, term, 0, 0, 0, False, 0, b"", [], None])


def removed(sender, group, term):
    return msgpack.packb([1, "removed", sender, group, term])


def timeout_now(group, sender, to, term):
    return msgpack.packb([1, 9, group, sender, to, term, 0, 0, 0, False, 0, b"", [], None])


class PeerPortTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.keys = tempfile.mkdtemp(prefix="kv-keys-")
        cls.public = {}
        for i in (1, 2, 3):
            r = subprocess.run([BIN["kvctl"], "keygen", os.path.join(cls.keys, f"node-{i}")],
                               capture_output=True, text=True)
            assert r.returncode == 0, r.stderr
            cls.public[i] = r.stdout.strip()
        with open(os.path.join(cls.keys, "peers"), "w") as f:
            f.write("# the members' public keys\n")
            for i, key in cls.public.items():
                f.write(f"{i} {key}\n")
        cls.cluster = Cluster(BIN["dir"], nodes=3, node_args=lambda i: [
            "--key", os.path.join(cls.keys, f"node-{i}.key"),
            "--peer-keys", os.path.join(cls.keys, "peers")]).start()
        cls.cluster.wait_for_leader(60)
        cls.ctx = zmq.Context()

    @classmethod
    def tearDownClass(cls):
        cls.ctx.destroy(linger=0)
        cls.cluster.__exit__(None, None, None)
        shutil.rmtree(cls.keys, ignore_errors=True)

    def terms(self):
        return {i: (st["term"], st["leader"]) for i in (1, 2, 3)
                if (st := self.cluster.status(i)) is not None}

    def raft_endpoint(self, node):
        host, port = self.cluster.endpoint(node).rsplit(":", 1)
        return f"tcp://{host}:{int(port) + RAFT_PORT_OFFSET}"

    def log(self, node):
        with open(self.cluster.log_path(node), errors="replace") as f:
            return f.read()

    def forge(self, node, frames, curve_key=None):
        """Sends frames to node's Raft port; returns the socket's monitor."""
        s = self.ctx.socket(zmq.DEALER)
        s.setsockopt(zmq.LINGER, 0)
        if curve_key is not None:
            public, secret = curve_key
            s.curve_serverkey = self.public[node].encode()
            s.curve_publickey = public
            s.curve_secretkey = secret
        monitor = s.get_monitor_socket(zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL |
                                       zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL |
                                       zmq.EVENT_HANDSHAKE_FAILED_AUTH |
                                       zmq.EVENT_HANDSHAKE_SUCCEEDED)
        s.connect(self.raft_endpoint(node))
        for f in frames:
            s.send(f)
        return s, monitor

    def handshake(self, monitor, timeout=10):
        """The first handshake event of a forging socket (success or failure)."""
        if not monitor.poll(timeout * 1000):
            raise TimeoutError("no handshake event")
        from zmq.utils.monitor import recv_monitor_message
        return recv_monitor_message(monitor)["event"]

    def assert_unchanged(self, before):
        after = self.terms()
        self.assertEqual(after, before, "a forged peer message changed a term or a leader")

    def test_key_configuration_errors_exit_2(self):
        d = tempfile.mkdtemp(prefix="kv-keycfg-")
        try:
            base = [os.path.join(BIN["dir"], "kvstore"), "--id", "1", "--peers",
                    "1=127.0.0.1:1,2=127.0.0.1:2", "--data-dir", os.path.join(d, "data")]
            peers = os.path.join(self.keys, "peers")
            only_one = os.path.join(d, "one")
            with open(only_one, "w") as f:
                f.write(f"1 {self.public[1]}\n")
            garbage = os.path.join(d, "garbage")
            with open(garbage, "w") as f:
                f.write("1 not-a-key\n")
            cases = [
                (["--peer-keys", peers], "needs --key"),
                (["--key", os.path.join(self.keys, "node-2.key"), "--peer-keys", peers],
                 "another public key"),
                (["--key", os.path.join(self.keys, "node-1.key"), "--peer-keys", only_one],
                 "no key for node 2"),
                (["--key", os.path.join(self.keys, "node-1.key"), "--peer-keys", garbage],
                 "line 1"),
            ]
            for extra, says in cases:
                r = subprocess.run(base + extra, capture_output=True, text=True, timeout=30)
                self.assertEqual(r.returncode, 2, (extra, r.stderr))
                self.assertIn(says, r.stderr)
            self.assertFalse(os.path.exists(os.path.join(d, "data")))
        finally:
            shutil.rmtree(d, ignore_errors=True)

    def test_cluster_runs_with_keys(self):
        leader = self.cluster.wait_for_leader(60)
        r = self.cluster.request(leader, {"id": 1, "op": "put", "key": "k", "value": "v"},
                                 timeout=10)
        self.assertEqual(r["status"], "OK")

    def test_a_plain_socket_cannot_speak_raft(self):
        before = self.terms()
        leader = self.cluster.wait_for_leader(60)
        follower = next(i for i in (1, 2, 3) if i != leader)
        term = before[follower][0]
        s, mon = self.forge(follower, [append(1, leader, follower, term + 100),
                                       removed(leader, 1, term + 100),
                                       timeout_now(1, leader, follower, term + 100)])
        try:
            # A NULL-mechanism client never completes a handshake with a
            # CURVE server: nothing it sent can have been read.
            self.assertNotEqual(self.handshake(mon), zmq.EVENT_HANDSHAKE_SUCCEEDED)
            self.assert_unchanged(before)
        finally:
            s.close()
            mon.close()

    def test_a_stranger_key_is_refused_at_the_handshake(self):
        before = self.terms()
        leader = self.cluster.wait_for_leader(60)
        follower = next(i for i in (1, 2, 3) if i != leader)
        stranger = zmq.curve_keypair()
        s, mon = self.forge(follower, [append(1, leader, follower, before[follower][0] + 100)],
                            curve_key=stranger)
        try:
            self.assertEqual(self.handshake(mon), zmq.EVENT_HANDSHAKE_FAILED_AUTH)
            wait_until(lambda: stranger[0].decode() in self.log(follower), 10,
                       what="the refusal in the log")
            self.assert_unchanged(before)
        finally:
            s.close()
            mon.close()

    def test_a_member_cannot_speak_for_another(self):
        before = self.terms()
        leader = self.cluster.wait_for_leader(60)
        follower = next(i for i in (1, 2, 3) if i != leader)
        third = next(i for i in (1, 2, 3) if i not in (leader, follower))
        with open(os.path.join(self.keys, f"node-{third}.key")) as f:
            secret = f.read().strip().encode()
        member_key = (self.public[third].encode(), secret)
        term = before[follower][0]
        s, mon = self.forge(follower, [append(1, leader, follower, term + 100),
                                       removed(leader, 1, term + 100),
                                       timeout_now(1, leader, follower, term + 100)],
                            curve_key=member_key)
        try:
            self.assertEqual(self.handshake(mon), zmq.EVENT_HANDSHAKE_SUCCEEDED)
            wait_until(lambda: self.log(follower).count(
                f"claiming to be from node {leader} over the connection of peer:{third}") >= 1,
                10, what="the dropped messages in the log")
            self.assert_unchanged(before)
            self.assertNotIn("was removed", self.log(follower))
        finally:
            s.close()
            mon.close()


if __name__ == "__main__":
    bin_dir = sys.argv.pop(1)
    BIN["dir"] = os.path.join(bin_dir, "src", "node")
    BIN["kvctl"] = os.path.join(bin_dir, "tools", "kvctl")
    unittest_main()
