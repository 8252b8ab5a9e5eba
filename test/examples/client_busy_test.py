#!/usr/bin/python3
"""examples/client.py against a fake node: BUSY is retried after a backoff.

A real node answers BUSY only under overload, so a ROUTER socket in a thread
plays the leader here and answers each request as the test scripts it,
recording when each arrived. No cluster is needed.

    client_busy_test.py --client examples/client.py
"""

import argparse
import importlib.util
import os
import sys
import threading
import time

import msgpack
import zmq

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from harness import run_script  # noqa: E402


class FakeNode:
    """A ROUTER on a free loopback port that answers each request with
    answer(request) (a dict of reply fields, or None: no answer) and records
    (arrival time, request)."""

    def __init__(self, answer):
        self.answer = answer
        self.received = []
        self._ctx = zmq.Context()
        self._sock = self._ctx.socket(zmq.ROUTER)
        self._sock.setsockopt(zmq.LINGER, 0)
        port = self._sock.bind_to_random_port("tcp://127.0.0.1")
        self.endpoint = f"127.0.0.1:{port}"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self):
        while not self._stop.is_set():
            if not self._sock.poll(10):
                continue
            identity, body = self._sock.recv_multipart()
            req = msgpack.unpackb(body, raw=False)
            self.received.append((time.monotonic(), req))
            reply = self.answer(req)
            if reply is not None:
                self._sock.send_multipart([identity, msgpack.packb(dict(reply, id=req["id"]))])

    def close(self):
        self._stop.set()
        self._thread.join()
        self._sock.close()
        self._ctx.term()


def load(client_py):
    spec = importlib.util.spec_from_file_location("kvclient", client_py)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def busy(req):
    return {"status": "BUSY", "error": "too many uncommitted bytes"}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--client", required=True)
    kvclient = load(os.path.abspath(ap.parse_args().client))

    # BUSY twice, then OK: the same write (client, seq), each retry at least
    # the minimum backoff after the attempt before it.
    calls = []

    def busy_twice(req):
        calls.append(req)
        return busy(req) if len(calls) <= 2 else {"status": "OK"}

    node = FakeNode(busy_twice)
    try:
        c = kvclient.Client([node.endpoint], timeout=5)
        c.put("k", "v")
        c.close()
        times = [t for t, _ in node.received]
        sessions = {(r["client"], r["seq"]) for _, r in node.received}
        assert len(node.received) == 3, f"3 attempts: BUSY, BUSY, OK ({len(node.received)})"
        assert len(sessions) == 1, f"every attempt is the same write ({sessions})"
        gaps = [b - a for a, b in zip(times, times[1:])]
        assert all(g >= kvclient.MIN_BACKOFF for g in gaps), f"each retry backed off ({gaps})"
        print(f"ok: BUSY, BUSY, OK: one write, retried after {', '.join(f'{g:.3f}' for g in gaps)} s")
    finally:
        node.close()

    # BUSY until the deadline: not executed, so Unavailable (never Unknown),
    # with BUSY's reason; the backoff grows, so few attempts.
    node = FakeNode(busy)
    try:
        c = kvclient.Client([node.endpoint], timeout=0.5)
        for op in (lambda: c.get("k"), lambda: c.put("k", "v")):
            try:
                op()
                raise AssertionError("an always-BUSY node answered")
            except kvclient.Unknown as e:
                raise AssertionError(f"BUSY is not executed, yet the client says unknown ({e})")
            except kvclient.Unavailable as e:
                assert "BUSY" in str(e) and "too many uncommitted bytes" in str(e), str(e)
        c.close()
        attempts = len(node.received)
        assert attempts < 2 * 0.5 / kvclient.MIN_BACKOFF, f"the backoff grows ({attempts} attempts)"
        print(f"ok: BUSY until the deadline: Unavailable for a get and a put ({attempts} attempts)")
    finally:
        node.close()
    print("PASS")
    return 0


if __name__ == "__main__":
    run_script(main)
