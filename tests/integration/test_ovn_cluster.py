"""
The ovn lookup on a three-member Southbound Raft cluster (C{ovsdb-tool create-cluster} /
C{join-cluster}) while its members die: killing the leader, lookups go on (a majority lives, and
a port created then is served); killing a second member, the replica answers alone for its bound
(C{ovn_replica_max_age}), then the guests get 503; a member coming back, answers again.  No
guest ever gets another's instance, nor a 404 for its own.
"""

from __future__ import annotations

import os
import time

from tests.integration.netns import curl, new_id
from tests.integration.ovn import OvnCentral, create_network, create_port, ovnmeta_network, require_ovn
from tests.integration.test_network_node import META, NodeCase, instance

MAX_AGE = 6.0


class ClusterTests(NodeCase):
    """api + network-node on a 3-member SB cluster, guests in two networks at the same address."""

    def setUp(self) -> None:
        super().setUp()
        require_ovn()
        self.central = OvnCentral(sb_members=3)
        self.addCleanup(self.central.stop)
        self.net_a, self.net_b = new_id(), new_id()
        self.ids = {k: new_id() for k in "abc"}
        self.macs = {"a": "fa:16:3e:aa:00:01", "b": "fa:16:3e:bb:00:01", "c": "fa:16:3e:cc:00:01"}
        self.config_path = self.config(
            "node.conf",
            # this test's namespaces only (not another test's, on a machine running several)
            f"namespaces = ovnmeta-{self.net_a}, ovnmeta-{self.net_b}\n[mdsvc]\nlookup = ovn\n"
            f"ovn_replica_max_age = {MAX_AGE}\n[ovn]\novn_sb_connection = {self.central.sb_remote}\n"
            "[cache]\nenabled = false\n",
        )
        self.import_docs(self.config_path, [
            instance(self.ids[k], f"guest-{k}", f"proj-{k}", net, ip, self.macs[k])
            for k, net, ip in (("a", self.net_a, "10.0.0.5"), ("b", self.net_b, "10.0.0.5"), ("c", self.net_a, "10.0.0.6"))
        ])
        for net in (self.net_a, self.net_b):
            create_network(self.central, net)
        for key, net in (("a", self.net_a), ("b", self.net_b)):
            create_port(self.central, net, new_id(), self.macs[key], ["10.0.0.5"], self.ids[key], f"proj-{key}")
        self.guests = {"a": f"ga-{self.net_a[:6]}", "b": f"gb-{self.net_b[:6]}"}
        ovnmeta_network(self.cloud, self.net_a, self.guests["a"], "10.0.0.5", self.macs["a"])
        ovnmeta_network(self.cloud, self.net_b, self.guests["b"], "10.0.0.5", self.macs["b"])
        self.start("api", self.config_path)
        self.node = self.start("network-node", self.config_path, ready=lambda p: os.path.exists(self.socket))
        self.seen: list[tuple[float, str, int]] = []

    def ask(self, key: str, *extra: str) -> int:
        """One request of guest C{key} (C{extra}: curl options); a 200 must be its own instance."""
        code, body, _ = curl(self.guests[key], META + "latest/meta-data/hostname", *extra, timeout=3)
        own = f"guest-{key}.novalocal" if not extra else "guest-c.novalocal"
        if code == 200:
            self.assertEqual(body.decode(errors="replace"), own, "a guest got another instance")
        self.seen.append((time.monotonic(), key, code))
        return code

    def observe(self, seconds: float, allowed: set[int], until: int | None = None) -> list[int]:
        """Both guests ask, over and over, for C{seconds} (or until one gets C{until}); every code in C{allowed}."""
        codes = []
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            for key in ("a", "b"):
                code = self.ask(key)
                self.assertIn(code, allowed, f"guest {key} got {code}")
                codes.append(code)
                if code == until:
                    return codes
            time.sleep(0.05)
        return codes

    def test_members_die(self) -> None:
        """Leader killed: still served, a new port too; second member killed: served within the bound, then 503; back: served."""
        self.eventually(self.guests["a"], META + "latest/meta-data/hostname", b"guest-a")
        self.eventually(self.guests["b"], META + "latest/meta-data/hostname", b"guest-b")
        self.observe(1, {200})

        first = self.central.leader()
        self.central.sb[first].kill()
        self.observe(3, {200})
        second = self.central.leader()  # the two left elect a leader; the replica follows the cluster
        self.assertNotEqual(first, second)
        create_port(self.central, self.net_a, new_id(), self.macs["c"], ["10.0.0.6"], self.ids["c"], "proj-c")
        os.system(f"ip -n {self.guests['a']} addr add 10.0.0.6/24 dev eth0")
        deadline = time.monotonic() + 10
        while self.ask("a", "--interface", "10.0.0.6") != 200:
            self.assertLess(time.monotonic(), deadline, "the port created after the leader died was never served")
            time.sleep(0.1)
        self.observe(1, {200})

        killed_at = time.monotonic()
        self.central.sb[second].kill()
        codes = self.observe(MAX_AGE + 15, {200, 503}, until=503)
        self.assertEqual(codes[-1], 503, "the replica never stopped answering after losing its majority")
        first_503 = next(t for t, _, code in self.seen if code == 503)
        self.assertGreaterEqual(first_503 - killed_at, MAX_AGE, "503 before the replica's bound")
        self.observe(1, {503})
        # each change of state logged once: a loss per loss (the first kill may have cut the monitor's
        # member too, then it was in sync again with another), one refusal
        log = self.node.log()
        self.assertEqual(log.count("OVN Southbound replica lost"), log.count("in sync again with") + 1, log[-3000:])
        self.assertEqual(log.count("no member of"), 1, log[-3000:])

        self.central.sb[first].start()  # a majority again
        codes = self.observe(30, {200, 503}, until=200)
        self.assertEqual(codes[-1], 200, "the replica never came back with its majority")
        self.observe(1, {200})
        self.assertIn("in sync again with", self.node.log())
