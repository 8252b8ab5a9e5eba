"""Membership end to end: a node joins a running cluster with --join and
`kvctl member add`, catches up, votes; the leader removes itself; the
group keeps serving throughout.

Run by ctest as: python3 test_membership.py BUILD_DIR.
"""
import json
import os
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from harness import unittest_main  # noqa: E402
from kvcluster import Cluster, wait_until  # noqa: E402

BUILD = None


def tool(name):
    return os.path.join(BUILD, "tools", name)


class MembershipTest(unittest.TestCase):
    def test_join_promote_and_remove_the_leader(self):
        with Cluster(os.path.join(BUILD, "src", "node"), nodes=3,
                     extra_args=["--shards", "0", "--snapshot-entries", "500"]) as c:
            c.start()
            c.wait_for_leader(60)

            def kvctl(*args):
                return subprocess.run([tool("kvctl"), "--endpoints", ",".join(c.endpoints()),
                                       "--timeout", "20000", *args],
                                      capture_output=True, text=True, timeout=120)

            # Enough writes that the leader compacts: the newcomer needs a snapshot.
            load = subprocess.run([tool("kvload"), "--endpoints", ",".join(c.endpoints()),
                                   "--threads", "2", "--requests", "1000", "--keys", "300",
                                   "--json"], capture_output=True, text=True, timeout=300)
            self.assertEqual(load.returncode, 0, load.stderr)
            self.assertEqual(kvctl("put", "before-join", "yes").returncode, 0)

            new = c.start_joiner(via=1)
            r = kvctl("member", "add", str(new), c.endpoint(new))
            self.assertEqual(r.returncode, 0, r.stderr)
            members = json.loads(kvctl("members", "--json").stdout)
            self.assertIn({"id": new, "kind": "voter"},
                          [{"id": m["id"], "kind": m["kind"]} for m in members])
            # The newcomer holds the data written before it joined.
            wait_until(lambda: c.request(new, {"id": 7, "op": "get", "key": "before-join",
                                               "stale": True}).get("status") == "OK", 30,
                       what="the new member to catch up")
            self.assertGreater(c.status(new)["snapshot_index"], 0)

            # The leader removes itself; a new leader is elected among the rest.
            old = c.wait_for_leader(30)
            self.assertEqual(kvctl("member", "remove", str(old)).returncode, 0)
            c.kill(old)
            new_leader = wait_until(lambda: c.leader() not in (None, old) and c.leader(), 30,
                                    what="a leader after the removal")
            self.assertNotEqual(new_leader, old)
            self.assertEqual(kvctl("put", "after-remove", "yes").returncode, 0)
            self.assertEqual(kvctl("get", "before-join").stdout, "yes")
            voters = c.status(new_leader)["voters"]
            self.assertEqual(sorted(voters), sorted(i for i in range(1, new + 1) if i != old))
            # Adding an existing member or removing a stranger is refused.
            self.assertEqual(kvctl("member", "add", str(new), c.endpoint(new)).returncode, 4)
            self.assertEqual(kvctl("member", "remove", "99").returncode, 4)

            # A removed follower learns it (the leader tells it) and says so.
            follower = next(i for i in voters if i != new_leader)
            self.assertEqual(kvctl("member", "remove", str(follower)).returncode, 0)
            wait_until(lambda: "was removed" in open(c.log_path(follower)).read(), 30,
                       what="the removed follower to log its removal")


if __name__ == "__main__":
    BUILD = sys.argv.pop(1)
    unittest_main()
