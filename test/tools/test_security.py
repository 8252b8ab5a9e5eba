"""Security end to end (issue "Security"): secure 3-node clusters, every
port a CurveZMQ server.

Peer port: forged peer traffic from a plain socket, from a CURVE client
with a key that is no member's, and from a member's key claiming another
member's id; none of it may change a term or a leader.
Client port: roles (read, write, admin) and DENIED, strangers refused at
the handshake, client keys reloaded on SIGHUP, a member added with its key.
Event port: only allowed keys receive events.

Run by ctest as: python3 test_security.py BUILD_DIR.
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import unittest

import msgpack
import zmq

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from harness import unittest_main  # noqa: E402
from kvcluster import PUB_PORT_OFFSET, RAFT_PORT_OFFSET, Cluster, wait_until  # noqa: E402

BIN = {}


def append(group, sender, to, term):
    """A Raft Append (peer protocol v1, docs/protocol.md), as a forger builds it."""
    return msgpack.packb([1, 0, group, sender, to, term, 0, 0, 0, False, 0, b"", [], None])


def removed(sender, group, term):
    return msgpack.packb([1, "removed", sender, group, term])


def timeout_now(group, sender, to, term):
    return msgpack.packb([1, 9, group, sender, to, term, 0, 0, 0, False, 0, b"", [], None])


def handshake(monitor, timeout=10):
    """The first handshake event of a socket's monitor (success or failure)."""
    if not monitor.poll(timeout * 1000):
        raise TimeoutError("no handshake event")
    from zmq.utils.monitor import recv_monitor_message
    return recv_monitor_message(monitor)["event"]


HANDSHAKE_EVENTS = (zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL |
                    zmq.EVENT_HANDSHAKE_FAILED_AUTH | zmq.EVENT_HANDSHAKE_SUCCEEDED)


class SecureClusterTest(unittest.TestCase):
    """A secure 3-node cluster per test class."""

    @classmethod
    def setUpClass(cls):
        cls.cluster = Cluster(BIN["dir"], nodes=3, secure=True, extra_args=["--shards", "0"]).start()
        cls.cluster.wait_for_leader(60)
        cls.keys = cls.cluster.keys
        cls.public = {i: cls.keys.public[f"node-{i}"] for i in (1, 2, 3)}
        cls.ctx = zmq.Context()

    @classmethod
    def tearDownClass(cls):
        cls.ctx.destroy(linger=0)
        cls.cluster.__exit__(None, None, None)

    def log(self, node):
        with open(self.cluster.log_path(node), errors="replace") as f:
            return f.read()


class PeerPortTest(SecureClusterTest):

    def terms(self):
        return {i: (st["term"], st["leader"]) for i in (1, 2, 3)
                if (st := self.cluster.status(i)) is not None}

    def raft_endpoint(self, node):
        host, port = self.cluster.endpoint(node).rsplit(":", 1)
        return f"tcp://{host}:{int(port) + RAFT_PORT_OFFSET}"

    def forge(self, node, frames, curve_key=None):
        """Sends frames to node's Raft port; returns the socket's monitor."""
        s = self.ctx.socket(zmq.DEALER)
        s.setsockopt(zmq.LINGER, 0)
        if curve_key is not None:
            public, secret = curve_key
            s.curve_serverkey = self.public[node].encode()
            s.curve_publickey = public
            s.curve_secretkey = secret
        monitor = s.get_monitor_socket(HANDSHAKE_EVENTS)
        s.connect(self.raft_endpoint(node))
        for f in frames:
            s.send(f)
        return s, monitor

    def assert_unchanged(self, before):
        after = self.terms()
        self.assertEqual(after, before, "a forged peer message changed a term or a leader")

    def test_key_configuration_errors_exit_2(self):
        d = tempfile.mkdtemp(prefix="kv-keycfg-")
        try:
            base = [os.path.join(BIN["dir"], "kvstore"), "--id", "1", "--peers",
                    "1=127.0.0.1:1,2=127.0.0.1:2", "--data-dir", os.path.join(d, "data")]
            peers = self.keys.peers
            only_one = os.path.join(d, "one")
            with open(only_one, "w") as f:
                f.write(f"1 {self.public[1]}\n")
            garbage = os.path.join(d, "garbage")
            with open(garbage, "w") as f:
                f.write("1 not-a-key\n")
            cases = [
                (["--peer-keys", peers], "need --key"),
                (["--client-keys", self.keys.clients], "need --key"),
                (["--key", os.path.join(self.keys.dir, "node-2.key"), "--peer-keys", peers],
                 "another public key"),
                (["--key", os.path.join(self.keys.dir, "node-1.key"), "--peer-keys", only_one],
                 "no key for node 2"),
                (["--key", os.path.join(self.keys.dir, "node-1.key"), "--peer-keys", garbage],
                 "line 1"),
                (["--key", os.path.join(self.keys.dir, "node-1.key"), "--peer-keys", peers,
                  "--client-keys", garbage], "client keys line 1"),
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
            self.assertNotEqual(handshake(mon), zmq.EVENT_HANDSHAKE_SUCCEEDED)
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
            self.assertEqual(handshake(mon), zmq.EVENT_HANDSHAKE_FAILED_AUTH)
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
        member_key = self.keys.pair(f"node-{third}")
        term = before[follower][0]
        s, mon = self.forge(follower, [append(1, leader, follower, term + 100),
                                       removed(leader, 1, term + 100),
                                       timeout_now(1, leader, follower, term + 100)],
                            curve_key=member_key)
        try:
            self.assertEqual(handshake(mon), zmq.EVENT_HANDSHAKE_SUCCEEDED)
            wait_until(lambda: self.log(follower).count(
                f"claiming to be from node {leader} over the connection of peer:{third}") >= 1,
                10, what="the dropped messages in the log")
            self.assert_unchanged(before)
            self.assertNotIn("was removed", self.log(follower))
        finally:
            s.close()
            mon.close()


class ClientPortTest(SecureClusterTest):
    def put(self, key_name, node=None, key="k", value="v"):
        node = node or self.cluster.wait_for_leader(60)
        return self.cluster.request(node, {"id": 1, "op": "put", "key": key, "value": value},
                                    timeout=10, key=key_name)

    def test_roles(self):
        leader = self.cluster.wait_for_leader(60)
        self.assertEqual(self.put("write")["status"], "OK")
        r = self.cluster.request(leader, {"id": 2, "op": "get", "key": "k"}, key="read")
        self.assertEqual((r["status"], r["value"]), ("OK", b"v"))
        r = self.put("read")
        self.assertEqual(r["status"], "DENIED")
        self.assertIn("needs the write role", r["error"])
        for op in ({"op": "member_remove", "node": 3}, {"op": "transfer_leader", "target": 3},
                   {"op": "member_add", "node": 9, "address": "127.0.0.1:1"}):
            r = self.cluster.request(leader, dict(op, id=3), key="write")
            self.assertEqual(r["status"], "DENIED", op)
            self.assertIn("needs the admin role", r["error"])
        self.assertEqual(self.cluster.request(leader, {"id": 4, "op": "status"}, key="read")
                         ["status"], "OK")

    def kvctl(self, key, *argv):
        return subprocess.run([BIN["kvctl"], "--endpoints", ",".join(self.cluster.endpoints()),
                               "--timeout", "10000"] + self.keys.client_args(key) + list(argv),
                              capture_output=True, text=True, timeout=60)

    def test_kvctl_with_keys(self):
        r = self.kvctl("write", "--json", "put", "tool", "v")
        self.assertEqual(r.returncode, 0, r.stderr)
        index = json.loads(r.stdout)["index"]
        r = self.kvctl("read", "get", "tool")
        self.assertEqual((r.returncode, r.stdout), (0, "v"), r.stderr)
        r = self.kvctl("read", "put", "tool", "w")
        self.assertEqual(r.returncode, 5, r.stderr)
        self.assertIn("DENIED", r.stderr)
        # A watch's streams are CURVE connections too (the read role may watch).
        r = self.kvctl("read", "watch", "tool", "--from", str(index), "--count", "1")
        self.assertEqual((r.returncode, r.stdout), (0, f"PUT tool (index {index}, 1 bytes)\n"),
                         r.stderr)

    def test_redirect_carries_the_leaders_key(self):
        leader = self.cluster.wait_for_leader(60)
        follower = next(i for i in (1, 2, 3) if i != leader)
        r = self.put("write", node=follower)
        self.assertEqual(r["status"], "REDIRECT")
        self.assertEqual(r["leader_key"], self.public[leader])
        st = self.cluster.status(follower)
        self.assertEqual(st["member_keys"], {str(i): k for i, k in self.public.items()})

    def assert_no_reply(self, node, sock, expect_event):
        monitor = sock.get_monitor_socket(HANDSHAKE_EVENTS)
        try:
            sock.connect(f"tcp://{self.cluster.endpoint(node)}")
            sock.send(msgpack.packb({"id": 1, "op": "get", "key": "k"}))
            event = handshake(monitor)
            if expect_event is None:  # a plain socket: how it fails varies
                self.assertNotEqual(event, zmq.EVENT_HANDSHAKE_SUCCEEDED)
            else:
                self.assertEqual(event, expect_event)
            self.assertEqual(sock.poll(500), 0, "a refused client got a reply")
        finally:
            sock.disable_monitor()
            monitor.close()
            sock.close()

    def test_a_plain_client_gets_no_reply(self):
        leader = self.cluster.wait_for_leader(60)
        s = self.ctx.socket(zmq.DEALER)
        s.setsockopt(zmq.LINGER, 0)
        self.assert_no_reply(leader, s, None)

    def test_an_unknown_key_gets_no_reply(self):
        leader = self.cluster.wait_for_leader(60)
        s = self.ctx.socket(zmq.DEALER)
        s.setsockopt(zmq.LINGER, 0)
        s.curve_serverkey = self.public[leader].encode()
        s.curve_publickey, s.curve_secretkey = zmq.curve_keypair()
        self.assert_no_reply(leader, s, zmq.EVENT_HANDSHAKE_FAILED_AUTH)


class ReloadTest(SecureClusterTest):
    def test_a_key_removed_on_sighup_is_refused(self):
        leader = self.cluster.wait_for_leader(60)
        # A connection made before the reload, kept open across it.
        s = self.ctx.socket(zmq.DEALER)
        s.setsockopt(zmq.LINGER, 0)
        self.cluster.curve_client(s, leader, "write")
        s.connect(f"tcp://{self.cluster.endpoint(leader)}")

        def put(request_id):
            s.send(msgpack.packb({"id": request_id, "op": "put", "key": "r", "value": "v"}))
            self.assertTrue(s.poll(10000), "no reply")
            return msgpack.unpackb(s.recv(), raw=False)

        self.assertEqual(put(1)["status"], "OK")
        self.keys.write_clients(["admin", "read"])
        for i in (1, 2, 3):
            self.cluster.kill(i, signal.SIGHUP)
        wait_until(lambda: all("1 removed" in self.log(i) for i in (1, 2, 3)), 10,
                   what="every node to reload its client keys")
        r = put(2)
        self.assertEqual(r["status"], "DENIED")
        self.assertIn("no longer allowed", r["error"])
        s.close()
        # A new connection with it is refused at the handshake.
        self.assertIsNone(self.cluster.request(leader, {"id": 3, "op": "get", "key": "r"},
                                               key="write"))
        self.assertIn("is not allowed there", self.log(leader))
        # The others still work; a broken file keeps the keys loaded before.
        with open(self.keys.clients, "a") as f:
            f.write("superuser nonsense\n")
        self.cluster.kill(leader, signal.SIGHUP)
        wait_until(lambda: "keeping the 2 client keys" in self.log(leader), 10,
                   what="the reload error in the log")
        r = self.cluster.request(leader, {"id": 4, "op": "get", "key": "r"}, key="read")
        self.assertEqual(r["status"], "OK")


class MemberKeysTest(SecureClusterTest):
    def test_an_admin_adds_a_member_with_its_key(self):
        leader = self.cluster.wait_for_leader(60)
        joiner = self.cluster.start_joiner(via=leader)
        r = self.cluster.request(leader, {"id": 1, "op": "member_add", "node": joiner,
                                          "address": self.cluster.endpoint(joiner)},
                                 timeout=10)
        self.assertEqual(r["status"], "ERROR")
        self.assertIn("public key", r["error"])
        r = self.cluster.request(leader, {"id": 2, "op": "member_add", "node": joiner,
                                          "address": self.cluster.endpoint(joiner),
                                          "pub": self.keys.public[f"node-{joiner}"]},
                                 timeout=60)
        self.assertEqual(r["status"], "OK", r)
        # Every member, the new one included, knows its key from the
        # configuration, and it serves reads like any member.
        want = self.keys.public[f"node-{joiner}"]
        for i in (1, 2, 3, joiner):
            wait_until(lambda: ((self.cluster.status(i) or {}).get("member_keys") or {})
                       .get(str(joiner)) == want, 30, what=f"node {i} to know the new key")
        self.assertEqual(self.cluster.request(leader, {"id": 3, "op": "put", "key": "j",
                                                       "value": "1"}, timeout=10)["status"], "OK")
        wait_until(lambda: (self.cluster.request(joiner, {"id": 4, "op": "get", "key": "j",
                                                          "stale": True}) or {}).get("value")
                   == b"1", 30, what="the new member to apply the write")
        r = self.cluster.request(leader, {"id": 5, "op": "member_remove", "node": joiner},
                                 timeout=30)
        self.assertEqual(r["status"], "OK", r)


class EventPortTest(SecureClusterTest):
    def subscriber(self, node, key=None):
        sub = self.ctx.socket(zmq.SUB)
        sub.setsockopt(zmq.LINGER, 0)
        sub.setsockopt(zmq.SUBSCRIBE, b"")
        if key == "stranger":
            sub.curve_serverkey = self.public[node].encode()
            sub.curve_publickey, sub.curve_secretkey = zmq.curve_keypair()
        elif key:
            self.cluster.curve_client(sub, node, key)
        host, port = self.cluster.endpoint(node).rsplit(":", 1)
        monitor = sub.get_monitor_socket(HANDSHAKE_EVENTS)
        sub.connect(f"tcp://{host}:{int(port) + PUB_PORT_OFFSET}")
        return sub, monitor

    def test_only_allowed_keys_receive_events(self):
        leader = self.cluster.wait_for_leader(60)
        subs = {name: self.subscriber(leader, name) for name in (None, "stranger", "read")}
        try:
            events = {name: handshake(mon) for name, (_, mon) in subs.items()}
            # A plain socket fails the handshake (how it says so varies).
            self.assertNotEqual(events.pop(None), zmq.EVENT_HANDSHAKE_SUCCEEDED)
            self.assertEqual(events, {"stranger": zmq.EVENT_HANDSHAKE_FAILED_AUTH,
                                      "read": zmq.EVENT_HANDSHAKE_SUCCEEDED})
            reader = subs["read"][0]

            def received():
                # Puts until the reader sees one (a SUB joins asynchronously).
                self.cluster.request(leader, {"id": 1, "op": "put", "key": "e", "value": "v"},
                                     timeout=5)
                return reader.poll(100) != 0
            wait_until(received, 20, what="an event for the read key")
            for name in (None, "stranger"):
                self.assertEqual(subs[name][0].poll(0), 0, f"{name} received an event")
        finally:
            for sub, mon in subs.values():
                sub.disable_monitor()
                mon.close()
                sub.close()


if __name__ == "__main__":
    bin_dir = sys.argv.pop(1)
    BIN["dir"] = os.path.join(bin_dir, "src", "node")
    BIN["kvctl"] = os.path.join(bin_dir, "tools", "kvctl")
    unittest_main()
