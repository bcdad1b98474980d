"""Tests for L{mdsvc.lookup.ovn.lookup} and L{mdsvc.lookup.ovn.health}: the match and the replica's bound."""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.logger import capturedLogs
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from mdsvc.hop import normalise_address
from mdsvc.interfaces import IInstanceLookup, LookupUnavailable
from mdsvc.lookup.ovn.health import CONNECTING, IN_SYNC, LOST, STALE, ReplicaHealth
from mdsvc.lookup.ovn.lookup import OvnLookup
from mdsvc.lookup.ovn.records import DatapathRecord
from mdsvc.lookup.ovn.replica import SouthboundReplica
from mdsvc.lookup.replicated import IReplicatedLookup
from mdsvc.readiness import IHealthCheck, NotReady
from tests.test_ovn_replica import NET_A, NET_B, port


def in_sync_lookup(clock: Clock, max_age: float = 30) -> OvnLookup:
    """An OvnLookup whose replica holds two networks with a guest at 10.0.0.5 each, in sync."""
    replica = SouthboundReplica()
    replica.replace(
        [DatapathRecord("dpA", NET_A), DatapathRecord("dpB", NET_B)],
        [port("pa", "dpA", "fa:16:3e:00:00:01 10.0.0.5 fd00::5", device="vm-a", project="p-a"),
         port("pb", "dpB", "fa:16:3e:00:00:02 10.0.0.5", device="vm-b", project="p-b"),
         port("pm", "dpA", "fa:16:3e:00:00:09 10.0.0.2", device=f"ovnmeta-{NET_A}", owner="network:distributed", bound=False),
         port("pr", "dpA", "fa:16:3e:00:00:0a 10.0.0.1", device="router-1", owner="network:router_interface"),
         port("pn", "dpA", "fa:16:3e:00:00:0b 10.0.0.8", device="", owner="compute:nova"),
         port("p1", "dpB", "fa:16:3e:00:00:0c 10.0.0.9", device="vm-c", project="p-c"),
         port("p2", "dpB", "fa:16:3e:00:00:0d 10.0.0.9", device="vm-d", project="p-d"),
         port("p3", "dpB", "fa:16:3e:00:00:0e 10.0.0.10", device="vm-e", project=None)],
    )
    health = ReplicaHealth(clock, max_age, ("unix:/a", "unix:/b"))
    health.synced("unix:/a", replica.port_count, replica.network_count)
    return OvnLookup(replica, health)


class LookupTests(SynchronousTestCase):
    """The match of Neutron's OVN metadata agent, on the replica."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.lookup = in_sync_lookup(self.clock)

    def answer(self, ip: str, network_id: str | None = NET_A, router_id: str | None = None, mac: str | None = None) -> object:
        return self.successResultOf(self.lookup.lookup(ip, network_id=network_id, router_id=router_id, mac=mac))

    def test_interface(self) -> None:
        """It provides IReplicatedLookup (and so IInstanceLookup)."""
        self.assertTrue(verifyObject(IReplicatedLookup, self.lookup))
        self.assertTrue(verifyObject(IInstanceLookup, self.lookup))
        self.assertEqual(self.lookup.name, "ovn")

    def test_each_network_its_own(self) -> None:
        """The same address in two networks: each network's instance and project."""
        self.assertEqual(self.answer("10.0.0.5", NET_A), ("vm-a", "p-a"))
        self.assertEqual(self.answer("10.0.0.5", NET_B), ("vm-b", "p-b"))
        self.assertEqual(self.answer("fd00::5", NET_A), ("vm-a", "p-a"))

    def test_link_local_by_mac(self) -> None:
        """An IPv6 link-local guest is found by the MAC in its address (normalise_address derives it)."""
        ip, mac = normalise_address("fe80::f816:3eff:fe00:1")
        self.assertEqual(mac, "fa:16:3e:00:00:01")
        self.assertEqual(self.answer(ip, NET_A, mac=mac), ("vm-a", "p-a"))
        self.assertEqual(self.answer(ip, NET_B, mac=mac), None)
        self.assertEqual(self.answer(ip, NET_A, mac="FA:16:3E:00:00:01"), ("vm-a", "p-a"))

    def test_not_instances(self) -> None:
        """Metadata, router and deviceless ports are no instance; an unknown address and network neither."""
        for ip in ("10.0.0.2", "10.0.0.1", "10.0.0.8", "10.0.0.77"):
            self.assertIsNone(self.answer(ip, NET_A), ip)
        self.assertIsNone(self.answer("10.0.0.5", "no-such-network"))

    def test_ambiguous(self) -> None:
        """Two instances at one address: no answer, and a warning naming them."""
        with capturedLogs() as events:
            self.assertIsNone(self.answer("10.0.0.9", NET_B))
        self.assertIn("vm-c, vm-d", events[-1]["instances"])

    def test_no_project(self) -> None:
        """A port without a project answers with None for it."""
        self.assertEqual(self.answer("10.0.0.10", NET_B), ("vm-e", None))

    def test_router(self) -> None:
        """OVN has no router header: a router lookup finds nothing (with a warning)."""
        with capturedLogs() as events:
            self.assertIsNone(self.answer("10.0.0.5", None, router_id="router-1"))
        self.assertEqual(events[0]["router_id"], "router-1")

    def test_neither(self) -> None:
        """Neither a network nor a router: TypeError, as every backend."""
        self.failureResultOf(self.lookup.lookup("10.0.0.5"), TypeError)

    def test_readiness(self) -> None:
        """
        /readyz and the doctor ask the replica's health, not a probe lookup: ready in sync and
        while lost within max_age; not ready past it, saying why; nothing logged either way.
        """
        self.assertTrue(verifyObject(IHealthCheck, self.lookup))
        with capturedLogs() as events:
            self.assertIsNone(self.successResultOf(self.lookup.check()))
            self.lookup.health.lost("unix:/a", "connection closed")
            self.clock.advance(29)
            self.assertIsNone(self.successResultOf(self.lookup.check()))
            self.clock.advance(2)
            why = self.failureResultOf(self.lookup.check(), NotReady).getErrorMessage()
        self.assertIn("31 s old, over [mdsvc] ovn_replica_max_age = 30", why)
        self.assertEqual([e for e in events if "No port found" in e.get("log_format", "")], [])


class HealthTests(SynchronousTestCase):
    """In sync, lost, stale: what the replica may answer, and what is logged once."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1000)
        self.replica = SouthboundReplica()
        self.health = ReplicaHealth(self.clock, 30, ("unix:/a", "unix:/b"))
        self.lookup = OvnLookup(self.replica, self.health)
        self.changes: list[str] = []
        self.health.listeners.append(lambda: self.changes.append(self.health.state))

    def refused(self) -> str:
        failure = self.failureResultOf(self.lookup.lookup("10.0.0.5", network_id=NET_A), LookupUnavailable)
        return str(failure.value)

    def test_before_first_sync(self) -> None:
        """Before the first sync lookups fail, naming the members tried; the age is unknown."""
        self.assertEqual(self.health.state, CONNECTING)
        self.assertIsNone(self.health.age())
        self.assertIn("unix:/a, unix:/b", self.refused())

    def test_lost_then_stale_then_back(self) -> None:
        """Lost: answers for max_age seconds with a growing age; then 503 (logged once); back in sync: answers."""
        with capturedLogs() as events:
            self.health.synced("unix:/a", 3, 2)
            self.clock.advance(100)
            self.assertEqual(self.health.age(), 0.0)
            self.health.lost("unix:/a", "connection closed")
            self.health.lost("unix:/a", "connection closed")  # told twice: one state change
            self.clock.advance(29)
            self.assertEqual(self.health.age(), 29.0)
            self.assertIsNone(self.successResultOf(self.lookup.lookup("10.0.0.5", network_id=NET_A)))
            self.clock.advance(1.5)
            self.assertIn("over [mdsvc] ovn_replica_max_age = 30", self.refused())
            self.health.synced("unix:/b", 3, 2)
            self.assertEqual(self.health.age(), 0.0)
            self.assertIsNone(self.successResultOf(self.lookup.lookup("10.0.0.5", network_id=NET_A)))
        self.assertEqual(self.changes, [IN_SYNC, LOST, STALE, IN_SYNC])
        events = [e for e in events if e["log_namespace"].endswith("ReplicaHealth")]
        texts = [e["log_format"] for e in events]
        self.assertEqual(len(texts), 4, texts)
        self.assertEqual(events[1]["remote"], "unix:/a")
        self.assertEqual(events[2]["log_level"].name, "error")
        self.assertIn("again", texts[3])
        self.assertAlmostEqual(events[3]["seconds"], 30.5)

    def test_refuses_past_bound_before_the_timer(self) -> None:
        """Past max_age the replica refuses even if its timer has not fired yet (the clock decides)."""
        self.health.synced("unix:/a", 0, 0)
        self.health.lost(None, "gone")
        self.clock.rightNow += 31  # time passes without the timer running
        self.assertIn("31 s old", self.refused())

    def test_stop_cancels_the_timer(self) -> None:
        """Stopping the service leaves no timer behind."""
        self.health.synced("unix:/a", 0, 0)
        self.health.lost(None, "gone")
        self.health.stop()
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_status(self) -> None:
        """The status names the state, member, members, last sync and bound."""
        self.health.synced("unix:/a", 0, 0)
        status = self.health.status()
        self.assertEqual((status["state"], status["remote"], status["remotes"], status["synced_at"], status["max_age"]),
                         (IN_SYNC, "unix:/a", ["unix:/a", "unix:/b"], 1000, 30))
