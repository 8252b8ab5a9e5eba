"""A local kvstore cluster for end-to-end tests: real processes, free ports,
temporary data directories, status polling with deadlines, and cleanup that
always runs (use it as a context manager).

Talks to nodes with pyzmq + msgpack (Debian's python3-zmq, python3-msgpack)
using only the documented client protocol (docs/protocol.md).
"""
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import msgpack
import zmq

from harness import HarnessError

RAFT_PORT_OFFSET = 1000
PUB_PORT_OFFSET = 2000
METRICS_PORT_OFFSET = 3000


def free_base_port(count):
    """A port P such that P..P+count-1, and each +1000, +2000 and +3000, are free.

    Looks below the kernel's ephemeral range, so that no outgoing connection
    (ZeroMQ's among them) takes one of the ports between this check and the
    nodes' bind; starts at a random place so that parallel tests spread out.
    """
    low, high = 10000, _ephemeral_low() - METRICS_PORT_OFFSET - count
    span = (high - low) // 10
    first = random.randrange(span)
    for step in range(span):
        base = low + 10 * ((first + step) % span)
        ports = [base + i + off for i in range(count)
                 for off in (0, RAFT_PORT_OFFSET, PUB_PORT_OFFSET, METRICS_PORT_OFFSET)]
        if all(_port_free(p) for p in ports):
            return base
    raise HarnessError(f"no free range of {count} ports (and +1000..+3000) in {low}..{high}")


def _ephemeral_low():
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _port_free(port):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def wait_until(condition, timeout, interval=0.02, what="condition"):
    """Polls condition() until it returns a truthy value or the deadline passes."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def finish_checked_load(test, load, kvcheck, hist, min_ops):
    """Waits for `load`, a `kvload --verify --history HIST --json` process:
    checks with `test` (a unittest.TestCase) that it succeeded, lost no
    acknowledged write, did more than `min_ops` operations, and that kvcheck
    finds its history linearizable; deletes the history and returns
    kvload's summary."""
    out, err = load.communicate(timeout=300)
    test.assertEqual(load.returncode, 0, err)
    summary = json.loads(out)
    test.assertEqual(summary["verify"]["lost"], 0)
    test.assertGreater(summary["ops"], min_ops)
    chk = subprocess.run([kvcheck, hist], capture_output=True, text=True, timeout=600)
    test.assertEqual(chk.returncode, 0, chk.stdout + chk.stderr)
    os.unlink(hist)
    return summary


class Keys:
    """A secure cluster's CurveZMQ keys (docs/protocol.md, "Security"), as
    `kvctl keygen` writes them: NAME.key (secret, Z85) and NAME.pub, for
    every node (node-ID, room for joiners) and a client per role (admin,
    write, read); `peers` lists the founders ("ID KEY HOST:PORT", what
    nodes take as --peer-keys and clients as --server-keys) and `clients`
    the client keys with their roles (--client-keys)."""

    ROLES = ("admin", "write", "read")

    def __init__(self, directory, endpoints, spare_nodes=2):
        self.dir = directory
        os.makedirs(directory, exist_ok=True)
        self.public = {}
        for i in range(1, len(endpoints) + spare_nodes + 1):
            self.make(f"node-{i}")
        for role in self.ROLES:
            self.make(role)
        self.peers = os.path.join(directory, "peers")
        with open(self.peers, "w") as f:
            for i, endpoint in enumerate(endpoints, 1):
                f.write(f"{i} {self.public[f'node-{i}']} {endpoint}\n")
        self.clients = os.path.join(directory, "clients")
        self.write_clients(self.ROLES)

    def make(self, name):
        public, secret = zmq.curve_keypair()
        path = os.path.join(self.dir, name)
        fd = os.open(path + ".key", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secret.decode() + "\n")
        with open(path + ".pub", "w") as f:
            f.write(public.decode() + "\n")
        self.public[name] = public.decode()
        return public, secret

    def pair(self, name):
        """(public, secret) of key NAME, as bytes, for pyzmq."""
        with open(os.path.join(self.dir, name + ".key")) as f:
            return self.public[name].encode(), f.read().strip().encode()

    def write_clients(self, names):
        """Rewrites the client keys file with these keys (a role name is
        also its key's name); a running node reads it again on SIGHUP."""
        with open(self.clients, "w") as f:
            f.write("# role public-key name\n")
            for name in names:
                f.write(f"{name.split('-')[0]} {self.public[name]} {name}\n")

    def node_args(self, node_id):
        return ["--key", os.path.join(self.dir, f"node-{node_id}.key"),
                "--peer-keys", self.peers, "--client-keys", self.clients]

    def client_args(self, name="admin"):
        """A tool's arguments to talk to the cluster with key NAME."""
        return ["--key", os.path.join(self.dir, name + ".key"), "--server-keys", self.peers]


class Cluster:
    """N kvstore nodes on 127.0.0.1 (or on given hosts, for the chaos suite).

    secure=True: every node gets a key (Keys, in DIR/keys) and requests go
    over CURVE with the admin key (request(..., key=NAME) for another)."""

    def __init__(self, bin_dir, nodes=3, hosts=None, extra_args=(), wrap=None,
                 workdir=None, tick_ms=20, node_args=None, secure=False, election_ticks=10):
        self.bin_dir = bin_dir
        self.n = nodes
        # Local: every node on 127.0.0.1, consecutive ports. Given hosts (the
        # chaos suite's namespaces): every node on its own address, port 8080.
        self.local = hosts is None
        self.hosts = hosts or ["127.0.0.1"] * nodes
        # Room for two nodes joining later.
        self.base = free_base_port(nodes + 2) if self.local else 8080
        self.extra_args = list(extra_args)
        # Arguments of one node only (its key files, say): node_args(node_id).
        self.node_args = node_args or (lambda node_id: [])
        self.wrap = wrap or (lambda node_id, argv: argv)  # e.g. ip netns exec
        self.tick_ms = tick_ms
        self.election_ticks = election_ticks
        self.dir = workdir or tempfile.mkdtemp(prefix="kvcluster-")
        self._own_dir = workdir is None
        self.procs = {}
        self.ctx = zmq.Context()
        self.keys = Keys(os.path.join(self.dir, "keys"), self.endpoints()) if secure else None
        if self.keys:
            own_args = self.node_args
            self.node_args = lambda node_id: self.keys.node_args(node_id) + own_args(node_id)

    # -- addresses -----------------------------------------------------------
    def port(self, node_id):
        return self.base + (node_id - 1 if self.local else 0)

    def endpoint(self, node_id):
        return f"{self.hosts[node_id - 1]}:{self.port(node_id)}"

    def endpoints(self):
        return [self.endpoint(i) for i in range(1, self.n + 1)]

    def peers(self):
        return ",".join(f"{i}={self.endpoint(i)}" for i in range(1, self.n + 1))

    def log_path(self, node_id):
        return os.path.join(self.dir, f"node-{node_id}.log")

    # -- processes -----------------------------------------------------------
    def argv(self, node_id):
        return [os.path.join(self.bin_dir, "kvstore"), "--id", str(node_id),
                "--peers", self.peers(),
                "--data-dir", os.path.join(self.dir, f"node-{node_id}"),
                "--tick-ms", str(self.tick_ms), "--election-ticks", str(self.election_ticks),
                "--heartbeat-ticks", "2"] + self.extra_args + self.node_args(node_id)

    def start(self, node_id=None):
        ids = [node_id] if node_id else range(1, self.n + 1)
        for i in ids:
            self._spawn(i, self.argv(i))
        return self

    def _spawn(self, node_id, argv):
        log = open(self.log_path(node_id), "ab")
        self.procs[node_id] = subprocess.Popen(self.wrap(node_id, argv), stdout=log,
                                               stderr=subprocess.STDOUT)
        log.close()

    def start_joiner(self, via):
        """Starts node n+1 with --join through node `via`; returns its id.

        The cluster then counts it (endpoint, status, stop); admit it with
        the member_add request (kvctl member add)."""
        self.n += 1
        self.hosts.append(self.hosts[0])
        i = self.n
        argv = [os.path.join(self.bin_dir, "kvstore"), "--id", str(i), "--port",
                str(self.port(i)), "--join", self.endpoint(via),
                "--data-dir", os.path.join(self.dir, f"node-{i}"),
                "--tick-ms", str(self.tick_ms), "--election-ticks", str(self.election_ticks),
                "--heartbeat-ticks", "2"] + self.extra_args + self.node_args(i)
        self._spawn(i, argv)
        return i

    def kill(self, node_id, sig=signal.SIGKILL):
        p = self.procs.get(node_id)
        if p and p.poll() is None:
            p.send_signal(sig)
            if sig in (signal.SIGKILL, signal.SIGTERM):
                p.wait(timeout=30)

    def alive(self, node_id):
        p = self.procs.get(node_id)
        return p is not None and p.poll() is None

    def restart(self, node_id):
        self.kill(node_id)
        self.start(node_id)

    def stop(self):
        for i, p in self.procs.items():
            if p.poll() is None:
                p.send_signal(signal.SIGCONT)
                p.send_signal(signal.SIGTERM)
        for p in self.procs.values():
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.ctx.destroy(linger=0)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        self.stop()
        if exc_type is not None:
            self.dump_logs()
        if self._own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)
        return False

    def dump_logs(self, lines=30):
        for i in range(1, self.n + 1):
            try:
                with open(self.log_path(i), "rb") as f:
                    tail = f.read().decode(errors="replace").splitlines()[-lines:]
                print(f"---- node {i} log (last {lines} lines) ----")
                print("\n".join(tail))
            except OSError:
                pass

    # -- requests ------------------------------------------------------------
    def curve_client(self, sock, node_id, key="admin"):
        """Makes sock a CURVE client of node_id's ports with key NAME."""
        sock.curve_serverkey = self.keys.public[f"node-{node_id}"].encode()
        sock.curve_publickey, sock.curve_secretkey = self.keys.pair(key)

    def request(self, node_id, msg, timeout=1.0, key="admin"):
        """One request to one node; the reply map, or None on timeout."""
        s = self.ctx.socket(zmq.DEALER)
        s.setsockopt(zmq.LINGER, 0)
        if self.keys:
            self.curve_client(s, node_id, key)
        try:
            s.connect(f"tcp://{self.endpoint(node_id)}")
            s.send(msgpack.packb(msg))
            if s.poll(int(timeout * 1000)):
                return msgpack.unpackb(s.recv(), raw=False)
            return None
        finally:
            s.close()

    def status(self, node_id, timeout=0.5):
        return self.request(node_id, {"id": 1, "op": "status"}, timeout)

    def group(self, node_id, shard=None):
        """The node's status of the group holding `shard` (None: of its main
        group, the status itself), or None when the node does not answer or
        hosts no replica of the shard."""
        st = self.status(node_id)
        if st is None or shard is None:
            return st
        return next((g for g in st.get("groups", []) if g.get("shard") == shard), None)

    def leader_of(self, shard=None):
        """The id every reachable node agrees leads the shard's group (None:
        the main group), or None."""
        seen = {(g["leader"], g["term"]) for g in
                (self.group(i, shard) for i in range(1, self.n + 1) if self.alive(i)) if g}
        leaders = {leader for leader, _ in seen}
        if len(leaders) == 1 and 0 not in leaders:
            (leader,) = leaders
            return leader if self.alive(leader) else None
        return None

    def leader(self):
        """The id every reachable node agrees leads, or None."""
        return self.leader_of(None)

    def wait_caught_up(self, node_id, shard=None, timeout=30):
        """Waits until node_id has applied what the shard's leader (None:
        the main group's) had committed when asked."""
        leader = wait_until(lambda: self.leader_of(shard), timeout, what="a leader")
        commit = wait_until(lambda: (self.group(leader, shard) or {}).get("commit"), timeout,
                            what=f"node {leader}'s commit index")
        wait_until(lambda: (self.group(node_id, shard) or {}).get("applied", 0) >= commit,
                   timeout, what=f"node {node_id} to catch up to {commit}")

    def wait_for_leader(self, timeout=30):
        return wait_until(self.leader, timeout, what="an agreed leader")
