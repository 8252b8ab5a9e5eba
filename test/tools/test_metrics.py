"""The metrics port end to end (issue 17): a real Prometheus (Debian's
prometheus package) scrapes a 3-node cluster every second while kvload
writes; what it computes must agree with kvload (requests, proposals), and
a killed leader must show as down with a new leader beside it that
campaigned, its survivors one peer short, and a snapshot sent to it when it
comes back behind the leader's log. Also client connections and sessions,
/healthz and /readyz, the port rule (client port + 3000), --metrics-port N
and 0, and `promtool check metrics` on every node's output.

Run by ctest as: python3 test_metrics.py BUILD_DIR. Every wait is a poll
with a deadline; a wait for Prometheus to have seen something is a wait for
a scrape that started after it happened (the sample's timestamp), never a
sleep.
"""
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.error
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from harness import HarnessError, unittest_main  # noqa: E402
from kvcluster import (PUB_PORT_OFFSET, RAFT_PORT_OFFSET, Cluster, _port_free,  # noqa: E402
                       wait_until)

BIN = {}
METRICS_PORT_OFFSET = 3000
# The node's default timing (50 ms ticks, elections after 0.5 to 1 s): no
# election while kvload and Prometheus share two cores with the cluster.
TICK_MS = 50
# kvload's count of OK puts and Prometheus's must agree this closely.
TOLERANCE = 0.2
LOAD_SECONDS = 6
# Small enough that a few thousand writes while a node is down leave it
# behind the leader's snapshot (it then gets one), large enough that the
# load takes few.
SNAPSHOT_ENTRIES = 1000
# Requests that bypass any http_proxy of the environment: every address here
# is local.
HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class Ports:
    """Hands out free ports, none twice: a cluster's ranges (client, Raft,
    events and metrics ports) and single ports."""

    def __init__(self):
        self.given = set()
        self.next = 20000 + (os.getpid() * 37) % 10000

    def _take(self, ports):
        if any(p in self.given or not _port_free(p) for p in ports):
            return False
        self.given.update(ports)
        return True

    def cluster(self, nodes):
        """P such that P..P+nodes-1 and each +1000, +2000 and +3000 are free."""
        offsets = (0, RAFT_PORT_OFFSET, PUB_PORT_OFFSET, METRICS_PORT_OFFSET)
        for base in range(self.next, 56000, 10):
            if self._take([base + i + off for i in range(nodes) for off in offsets]):
                return base
        raise HarnessError("no free range of ports for a cluster")

    def single(self):
        for port in range(self.next + 5, 56000, 10):
            if self._take([port]):
                return port
        raise HarnessError("no free port")


def http_get(port, path, timeout=5):
    """(status, body) of GET http://127.0.0.1:PORT/PATH; None when the
    connection is refused (nothing listens there)."""
    try:
        with HTTP.open(f"http://127.0.0.1:{port}{path}", timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except urllib.error.URLError as e:
        if isinstance(e.reason, ConnectionRefusedError):
            return None
        raise


_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$')
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def parse_metrics(text):
    """[(name, {label: value}, value)] of a text exposition."""
    samples = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        if not m:
            raise AssertionError(f"not a sample line: {line!r}")
        samples.append((m.group(1), dict(_LABEL.findall(m.group(2) or "")), float(m.group(3))))
    return samples


def sample(samples, name, **labels):
    """The value of the one sample NAME{LABELS...}, or None."""
    found = [v for n, l, v in samples
             if n == name and all(l.get(k) == w for k, w in labels.items())]
    return found[0] if len(found) == 1 else None


def listening_ports(pid):
    """The TCP ports process PID listens on, from /proc."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if link.startswith("socket:["):
            inodes.add(link[len("socket:["):-1])
    ports = set()
    for table in ("tcp", "tcp6"):
        with open(f"/proc/{pid}/net/{table}") as f:
            next(f)
            for line in f:
                fields = line.split()
                if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                    ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


class Prometheus:
    """A Prometheus server scraping the given targets ({node id: port})
    every second, with its data in a temporary directory."""

    def __init__(self, port, targets, workdir):
        self.port = port
        self.log_path = os.path.join(workdir, "prometheus.log")
        config = os.path.join(workdir, "prometheus.yml")
        with open(config, "w") as f:
            f.write("global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
                    "scrape_configs:\n  - job_name: kvstore\n    static_configs:\n")
            for node_id, target in sorted(targets.items()):
                f.write(f"      - targets: ['127.0.0.1:{target}']\n"
                        f"        labels: {{node: '{node_id}'}}\n")
        if not shutil.which(BIN["prometheus"]):
            raise HarnessError(f"{BIN['prometheus']} is not installed (Debian's prometheus "
                               f"package; scripts/install-deps.sh installs it)")
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [BIN["prometheus"], "--config.file", config,
                 "--storage.tsdb.path", os.path.join(workdir, "tsdb"),
                 "--web.listen-address", f"127.0.0.1:{port}", "--log.level", "warn"],
                stdout=log, stderr=subprocess.STDOUT)

    def log_tail(self, lines=20):
        try:
            with open(self.log_path, "rb") as f:
                return "\n".join(f.read().decode(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def wait_ready(self, timeout=30):
        def ready():
            if self.proc.poll() is not None:
                raise HarnessError(f"Prometheus exited {self.proc.returncode} while starting "
                                   f"(port {self.port} taken?):\n{self.log_tail()}")
            try:
                got = http_get(self.port, "/-/ready", timeout=2)
            except (urllib.error.URLError, OSError):
                return False
            return got is not None and got[0] == 200
        try:
            wait_until(ready, timeout, interval=0.1, what="Prometheus to be ready")
        except TimeoutError as e:
            raise HarnessError(f"{e}:\n{self.log_tail()}") from None

    def query(self, expr, at=None):
        """The instant vector EXPR at time AT (default: now), as
        [({label: value}, value)]."""
        params = {"query": expr}
        if at is not None:
            params["time"] = f"{at:.3f}"
        url = (f"http://127.0.0.1:{self.port}/api/v1/query?"
               + urllib.parse.urlencode(params))
        try:
            with HTTP.open(url, timeout=10) as r:
                reply = json.load(r)
        except urllib.error.HTTPError as e:
            raise HarnessError(f"Prometheus refused {expr!r}: {e.read().decode()}") from None
        except (urllib.error.URLError, OSError) as e:
            raise HarnessError(f"Prometheus did not answer {expr!r}: {e}\n{self.log_tail()}") \
                from None
        if reply.get("status") != "success" or reply["data"]["resultType"] != "vector":
            raise HarnessError(f"Prometheus answered {expr!r} with {reply}")
        return [(r["metric"], float(r["value"][1])) for r in reply["data"]["result"]]

    def by_node(self, expr, at=None):
        """{node id: value} of EXPR, whose series carry the node label."""
        return {int(m["node"]): v for m, v in self.query(expr, at)}

    def scalar(self, expr, at=None):
        """The value of an EXPR that sums to one series; 0 when it has none."""
        got = self.query(expr, at)
        return got[0][1] if got else 0.0

    def scraped_since(self, t, nodes):
        """Whether the latest scrape of each of NODES started at or after
        time T (every sample it holds was read from the node after T)."""
        stamps = self.by_node('timestamp(up{job="kvstore"})')
        return all(stamps.get(n, 0) >= t for n in nodes)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class MetricsTest(unittest.TestCase):
    """One 3-node cluster scraped by Prometheus, and two single nodes: one
    whose peers never start (with --metrics-port N), one with
    --metrics-port 0. The single nodes boot while the cluster elects."""

    @classmethod
    def setUpClass(cls):
        cls.stack = contextlib.ExitStack()
        try:
            cls._start()
        except BaseException:
            cls.stack.close()
            raise

    @classmethod
    def _start(cls):
        ports = Ports()
        cls.dir = tempfile.mkdtemp(prefix="kv-metrics-")
        cls.stack.callback(shutil.rmtree, cls.dir, ignore_errors=True)

        def cluster(nodes, extra_args=()):
            c = Cluster(BIN["dir"], nodes=nodes, tick_ms=TICK_MS,
                        extra_args=["--shards", "0", *extra_args])
            c.base = ports.cluster(nodes)
            return cls.stack.enter_context(c)

        cls.cluster = cluster(3, ["--snapshot-entries", str(SNAPSHOT_ENTRIES)]).start()
        # Node 1 of three, whose peers never start: it can never learn a leader.
        cls.lone_metrics_port = ports.single()
        cls.lone = cluster(3, ["--metrics-port", str(cls.lone_metrics_port)]).start(1)
        cls.silent = cluster(1, ["--metrics-port", "0"]).start()

        cls.prom = Prometheus(ports.single(), {i: cls.metrics_port(i) for i in (1, 2, 3)},
                              cls.dir)
        cls.stack.callback(cls.prom.stop)
        cls.prom.wait_ready()
        cls.cluster.wait_for_leader(60)

    @classmethod
    def tearDownClass(cls):
        cls.stack.close()

    @classmethod
    def metrics_port(cls, node_id):
        return cls.cluster.port(node_id) + METRICS_PORT_OFFSET

    def metrics(self, port):
        got = http_get(port, "/metrics")
        self.assertIsNotNone(got, f"nothing listens on metrics port {port}")
        self.assertEqual(got[0], 200, got)
        return got[1]

    def scrape(self, node_id):
        """Node NODE_ID's samples, read from it now (not through Prometheus)."""
        return parse_metrics(self.metrics(self.metrics_port(node_id)))

    def kvload(self, *args):
        r = subprocess.run([BIN["kvload"], "--endpoints", ",".join(self.cluster.endpoints()),
                            "--json", *args], capture_output=True, text=True, timeout=120)
        self.assertEqual(r.returncode, 0, r.stderr)
        return json.loads(r.stdout.strip().splitlines()[-1])

    def wait_all_up(self, what="Prometheus to see every node up and ready"):
        """Polls Prometheus until it scraped all three nodes, each up and
        ready."""
        def all_up():
            return (self.prom.by_node('up{job="kvstore"}') == {1: 1, 2: 1, 3: 1} and
                    self.prom.by_node("kvstore_up") == {1: 1, 2: 1, 3: 1} and
                    self.prom.by_node("kvstore_ready") == {1: 1, 2: 1, 3: 1})
        wait_until(all_up, 30, interval=0.2, what=what)

    # -- the HTTP endpoints -------------------------------------------------

    def test_healthz_and_readyz_answer_200_on_a_healthy_cluster(self):
        for i in (1, 2, 3):
            port = self.metrics_port(i)
            # Ready once the node knows the leader and applied what it knows committed.
            got = wait_until(lambda: (lambda r: r if r and r[0] == 200 else None)(
                http_get(port, "/readyz")), 30, what=f"node {i}'s /readyz to answer 200")
            self.assertEqual(got, (200, "ready\n"))
            self.assertEqual(http_get(port, "/healthz"), (200, "ok\n"))
            samples = parse_metrics(self.metrics(port))
            self.assertEqual(sample(samples, "kvstore_up"), 1)
            self.assertEqual(sample(samples, "kvstore_ready"), 1)
            self.assertEqual(http_get(port, "/no-such-page")[0], 404)
            # Connected to both other members (the connections come up
            # within a reconnect interval of their start).
            wait_until(lambda: sample(self.scrape(i), "kvstore_peer_connections") == 2, 30,
                       what=f"node {i} to be connected to both peers")

    def test_a_node_whose_peers_never_start_is_healthy_but_not_ready(self):
        port = self.lone_metrics_port
        pid = self.lone.procs[1].pid

        # Once it has timed out waiting for a leader and stood for election in vain.
        def campaigned():
            got = http_get(port, "/metrics")
            if got is None or got[0] != 200:
                return None
            samples = parse_metrics(got[1])
            return any(sample(samples, "kvstore_raft_role", group="1", role=r) == 1
                       for r in ("pre-candidate", "candidate")) and samples
        samples = wait_until(campaigned, 30, what="the lone node to stand for election")
        self.assertEqual(sample(samples, "kvstore_raft_leader", group="1"), 0)
        self.assertGreaterEqual(sample(samples, "kvstore_raft_elections_total", group="1"), 1)
        self.assertEqual(sample(samples, "kvstore_raft_proposals_total", group="1"), 0)
        self.assertEqual(sample(samples, "kvstore_peer_connections"), 0)
        self.assertEqual(sample(samples, "kvstore_up"), 1)
        self.assertEqual(sample(samples, "kvstore_ready"), 0)
        self.assertEqual(http_get(port, "/healthz"), (200, "ok\n"))
        status, reason = http_get(port, "/readyz")
        self.assertEqual(status, 503, reason)
        self.assertIn("group 1", reason)
        self.assertIn("leader", reason)
        # --metrics-port N: port N, nothing on the client port + 3000.
        client = self.lone.port(1)
        self.assertIsNone(http_get(client + METRICS_PORT_OFFSET, "/healthz"))
        self.assertEqual(listening_ports(pid),
                         {client, client + RAFT_PORT_OFFSET, client + PUB_PORT_OFFSET, port})

    def test_metrics_port_0_serves_nothing(self):
        self.silent.wait_for_leader(30)  # up and serving clients
        client = self.silent.port(1)
        self.assertIsNone(http_get(client + METRICS_PORT_OFFSET, "/metrics"))
        self.assertEqual(listening_ports(self.silent.procs[1].pid),
                         {client, client + RAFT_PORT_OFFSET, client + PUB_PORT_OFFSET})

    def test_each_nodes_metrics_port_is_its_client_port_plus_3000(self):
        for i in (1, 2, 3):
            client = self.cluster.port(i)
            self.assertEqual(listening_ports(self.cluster.procs[i].pid),
                             {client, client + RAFT_PORT_OFFSET, client + PUB_PORT_OFFSET,
                              client + METRICS_PORT_OFFSET}, f"node {i}")

    # -- Prometheus ---------------------------------------------------------

    def test_prometheus_put_rate_agrees_with_kvload_and_promtool_accepts_the_output(self):
        self.wait_all_up()
        # One put first, so that the leader's put counter exists before the
        # load (a counter appears with its first request) and a window
        # opening before the load holds a sample of it from before.
        r = subprocess.run([BIN["kvctl"], "--endpoints", ",".join(self.cluster.endpoints()),
                            "put", "metrics/first", "1"], capture_output=True, text=True,
                           timeout=30)
        self.assertEqual(r.returncode, 0, r.stderr)
        t_first = time.time()
        wait_until(lambda: self.prom.scraped_since(t_first, (1, 2, 3)), 30, interval=0.1,
                   what="Prometheus to scrape every node after the first put")
        puts = 'sum(kvstore_requests_total{job="kvstore",op="put",status="OK"})'
        proposals = 'sum(kvstore_raft_proposals_total{job="kvstore",group="1"})'
        before = self.prom.scalar(puts)
        proposed_before = self.prom.scalar(proposals)
        self.assertGreaterEqual(before, 1)
        self.assertGreaterEqual(proposed_before, 1)

        load = self.kvload("--threads", "2", "--pipeline", "4", "--keys", "1000",
                           "--read-ratio", "0", "--duration", str(LOAD_SECONDS))
        t_end = time.time()
        ok = load["outcomes"].get("OK", 0)
        self.assertGreater(ok, 100, load)

        wait_until(lambda: self.prom.scraped_since(t_end, (1, 2, 3)), 30, interval=0.1,
                   what="Prometheus to scrape every node after the load")
        counted = self.prom.scalar(puts) - before
        proposed = self.prom.scalar(proposals) - proposed_before
        # rate() over a window from the first put to the last scrape of the
        # put counters: ended anywhere else, Prometheus would extrapolate
        # the window's flat tail at the load's rate.
        at = max(self.prom.by_node(
            'timestamp(kvstore_requests_total{job="kvstore",op="put",status="OK"})').values())
        window_ms = int((at - t_first) * 1000)
        rate = self.prom.scalar(
            f'sum(rate(kvstore_requests_total{{job="kvstore",op="put",status="OK"}}'
            f'[{window_ms}ms]))', at)
        print(f"kvload: {ok} puts OK in {load['seconds']} s ({load['outcomes']}, redirects "
              f"{load['redirects']}, retries {load['retries']}, busy {load['busy']}); "
              f"Prometheus: counters +{counted:.0f}, rate {rate:.1f}/s over {window_ms} ms "
              f"= {rate * window_ms / 1000:.0f} puts", flush=True)
        # The first put is in the window, not in kvload's count.
        for name, value in (("the counters' growth", counted),
                            ("rate() x window", rate * window_ms / 1000)):
            self.assertLessEqual(abs(value - 1 - ok), TOLERANCE * ok,
                                 f"{name}: {value:.0f} puts, kvload {ok}")
        # Every put answered OK was proposed (once, or again after a retry)
        # by the leader of the time: nothing else proposes in an idle
        # unsharded cluster.
        self.assertGreaterEqual(proposed, ok, f"{proposed:.0f} proposals, kvload {ok} puts")
        self.assertLessEqual(proposed, ok * (1 + TOLERANCE),
                             f"{proposed:.0f} proposals, kvload {ok} puts")
        # kvload's writers hold sessions; every replica applies the same.
        sessions = wait_until(
            lambda: (lambda s: s if len(set(s)) == 1 else None)(
                [sample(self.scrape(i), "kvstore_sessions", group="1") for i in (1, 2, 3)]),
            30, what="every replica to hold the same sessions")
        self.assertGreaterEqual(sessions[0], 1)

        # Every node's output as it is after the load (histograms filled).
        for i in (1, 2, 3):
            text = self.metrics(self.metrics_port(i))
            check = subprocess.run([BIN["promtool"], "check", "metrics"], input=text,
                                   capture_output=True, text=True, timeout=30)
            self.assertEqual(check.returncode, 0,
                             f"promtool check metrics on node {i}: {check.stdout}{check.stderr}"
                             f"\n{text}")
            # Each answered request is counted once by status and timed once.
            samples = parse_metrics(text)
            ops = {l["op"] for n, l, _ in samples if n == "kvstore_requests_total"}
            for op in ops:
                answered = sum(v for n, l, v in samples
                               if n == "kvstore_requests_total" and l["op"] == op)
                # An op never asked has its OK series at 0 and no histogram.
                timed = sample(samples, "kvstore_request_duration_seconds_count", op=op)
                self.assertEqual(timed if timed is not None else 0, answered,
                                 f"node {i}, op {op}")
        lone = self.metrics(self.lone_metrics_port)
        check = subprocess.run([BIN["promtool"], "check", "metrics"], input=lone,
                               capture_output=True, text=True, timeout=30)
        self.assertEqual(check.returncode, 0, f"{check.stdout}{check.stderr}\n{lone}")

    def group_view(self):
        """What Prometheus last scraped of group 1: {up, leader (the nodes
        whose role metric says leader), leader_of (each node's
        kvstore_raft_leader), term, changes}."""
        return {
            "up": self.prom.by_node('up{job="kvstore"}'),
            "leader": sorted(self.prom.by_node(
                'kvstore_raft_role{job="kvstore",group="1",role="leader"} == 1')),
            "leader_of": self.prom.by_node('kvstore_raft_leader{job="kvstore",group="1"}'),
            "term": self.prom.by_node('kvstore_raft_term{job="kvstore",group="1"}'),
            "changes": self.prom.by_node(
                'kvstore_raft_leader_changes_total{job="kvstore",group="1"}'),
            "elections": self.prom.by_node(
                'kvstore_raft_elections_total{job="kvstore",group="1"}'),
            "peers": self.prom.by_node('kvstore_peer_connections{job="kvstore"}'),
        }

    def wait_for_view(self, agreed, what):
        """Polls group_view() until agreed(view) holds; returns that view."""
        last = {}

        def check():
            last["view"] = self.group_view()
            return agreed(last["view"]) and last["view"]
        try:
            return wait_until(check, 30, interval=0.2, what=what)
        except TimeoutError as e:
            raise TimeoutError(f"{e}; Prometheus last saw {last.get('view')}") from None

    def test_prometheus_sees_a_killed_leader_down_and_a_new_leader(self):
        self.wait_all_up()

        def one_leader(view, nodes):
            return (len(view["leader"]) == 1 and
                    all(view["leader_of"].get(n) == view["leader"][0] for n in nodes) and
                    self.cluster.leader() == view["leader"][0])
        before = self.wait_for_view(
            lambda v: one_leader(v, (1, 2, 3)) and v["peers"] == {1: 2, 2: 2, 3: 2},
            "Prometheus and the nodes to agree on a leader, all connected")
        old = before["leader"][0]
        # Where the old leader's log ends: its replica is behind a snapshot
        # once the new leader has taken one past it.
        old_last = self.cluster.status(old)["last_index"]
        self.cluster.kill(old)
        survivors = [n for n in (1, 2, 3) if n != old]
        after = self.wait_for_view(
            lambda v: (v["up"].get(old) == 0 and one_leader(v, survivors) and
                       all(v["peers"].get(n) == 1 for n in survivors)),
            f"Prometheus to see node {old} down, a new leader and one peer left to each")
        new = after["leader"][0]
        self.assertNotEqual(new, old)
        self.assertEqual(after["up"], {old: 0, **{n: 1 for n in survivors}})
        self.assertGreater(after["term"][new], before["term"][old])
        for n in survivors:
            self.assertGreater(after["changes"][n], before["changes"][n],
                               f"node {n}'s leader changes")
        # The new leader campaigned for it.
        self.assertGreater(after["elections"][new], before["elections"][new])
        # The dead node's series went stale with its failed scrape.
        self.assertNotIn(old, after["term"])
        self.assertNotIn(old, self.prom.by_node("kvstore_up"))

        # Writes until the new leader's snapshot passes the old leader's
        # log: coming back, it can only catch up from a snapshot.
        deadline = time.monotonic() + 60
        while self.cluster.status(new)["snapshot_index"] <= old_last:
            self.assertLess(time.monotonic(), deadline,
                            f"node {new} took no snapshot past index {old_last}")
            self.kvload("--threads", "2", "--pipeline", "4", "--keys", "1000",
                        "--read-ratio", "0", "--requests", str(SNAPSHOT_ENTRIES // 2))
        sent = sample(self.scrape(new), "kvstore_raft_snapshots_sent_total", group="1")

        # Back again: up and ready, connected, and caught up from a snapshot.
        self.cluster.start(old)
        self.wait_all_up(f"Prometheus to see node {old} back")
        wait_until(lambda: sample(self.scrape(old), "kvstore_raft_snapshots_installed_total",
                                  group="1") == 1, 30,
                   what=f"node {old} to install the leader's snapshot")
        self.assertGreater(
            sample(self.scrape(new), "kvstore_raft_snapshots_sent_total", group="1"), sent)
        self.assertGreater(sample(self.scrape(old), "kvstore_snapshot_bytes", group="1"), 0)
        self.wait_for_view(lambda v: v["peers"] == {1: 2, 2: 2, 3: 2},
                           "Prometheus to see every node connected to both peers again")

    # -- connections --------------------------------------------------------

    def test_client_connections_count_what_is_open(self):
        import zmq
        node = 1
        port = self.cluster.port(node)

        def open_now():
            return sample(self.scrape(node), "kvstore_client_connections")

        def wait_for(n, what):
            wait_until(lambda: open_now() == n, 30, interval=0.05, what=what)
        # No tool or test talks to the node now: whatever connected closed.
        wait_for(0, f"node {node} to have no client connections")
        ctx = zmq.Context()
        sockets = []
        try:
            for _ in range(3):
                s = ctx.socket(zmq.DEALER)
                s.setsockopt(zmq.LINGER, 0)
                s.connect(f"tcp://127.0.0.1:{port}")
                sockets.append(s)
            wait_for(3, "three client connections")
            sockets.pop().close()
            sockets.pop().close()
            wait_for(1, "one client connection after two closed")
        finally:
            for s in sockets:
                s.close()
            ctx.term()
        wait_for(0, "no client connection after the last closed")

if __name__ == "__main__":
    build = sys.argv.pop(1)
    BIN["dir"] = os.path.join(build, "src", "node")
    BIN["kvctl"] = os.path.join(build, "tools", "kvctl")
    BIN["kvload"] = os.path.join(build, "tools", "kvload")
    BIN["prometheus"] = "/usr/bin/prometheus"
    BIN["promtool"] = "/usr/bin/promtool"
    unittest_main()
