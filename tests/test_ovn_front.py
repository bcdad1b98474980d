"""Tests for L{mdsvc.lookup.ovn.front}: a replica change makes the agent's lookup cache forget."""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from mdsvc.hop import normalise_address
from mdsvc.interfaces import IInstanceLookup, LookupUnavailable
from mdsvc.lookup.cache import CachingLookup
from mdsvc.lookup.ovn.records import DatapathRecord
from tests.test_ovn_lookup import in_sync_lookup
from tests.test_ovn_replica import NET_A, port


class FrontTests(SynchronousTestCase):
    """The front before a real CachingLookup (found answers kept 60 s, misses 60 s)."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.backend = in_sync_lookup(self.clock)
        self.cache = CachingLookup(self.backend, self.clock, 60, 60)
        self.front = self.backend.front(self.cache, self.clock, 60)

    def answer(self, ip: str, mac: str | None = None) -> object:
        return self.successResultOf(self.front.lookup(ip, network_id=NET_A, mac=mac))

    def test_interface(self) -> None:
        """It is an IInstanceLookup named as the cache."""
        self.assertTrue(verifyObject(IInstanceLookup, self.front))
        self.assertEqual(self.front.name, "cache(ovn)")

    def test_new_port_served_at_once(self) -> None:
        """A miss is cached for a minute, but a port created for the address is found on the next lookup."""
        self.assertIsNone(self.answer("10.0.0.20"))
        self.assertIsNone(self.answer("10.0.0.20"))
        self.assertEqual(self.cache.hits, 1)
        self.backend.replica.apply([], [("pn2", port("pn2", "dpA", "fa:16:3e:00:00:20 10.0.0.20", device="vm-new", project="p"))])
        self.assertEqual(self.answer("10.0.0.20"), ("vm-new", "p"))

    def test_deleted_port_refused_at_once(self) -> None:
        """A cached instance is forgotten when its port goes: the next lookup finds nothing."""
        self.assertEqual(self.answer("10.0.0.5"), ("vm-a", "p-a"))
        self.backend.replica.apply([], [("pa", None)])
        self.assertIsNone(self.answer("10.0.0.5"))

    def test_port_moved_to_another_instance(self) -> None:
        """An address given to another instance is answered with the new one."""
        self.assertEqual(self.answer("10.0.0.5"), ("vm-a", "p-a"))
        self.backend.replica.apply([], [("pa", None), ("pz", port("pz", "dpA", "fa:16:3e:00:00:30 10.0.0.5", device="vm-z", project="p-z"))])
        self.assertEqual(self.answer("10.0.0.5"), ("vm-z", "p-z"))

    def test_other_addresses_stay_cached(self) -> None:
        """A change forgets only the keys it touches."""
        self.assertEqual(self.answer("10.0.0.5"), ("vm-a", "p-a"))
        self.backend.replica.apply([], [("pn3", port("pn3", "dpA", "fa:16:3e:00:00:21 10.0.0.21", device="vm-n"))])
        loads = self.cache.lookups
        self.assertEqual(self.answer("10.0.0.5"), ("vm-a", "p-a"))
        self.assertEqual(self.cache.lookups, loads)

    def test_link_local_forgotten_by_mac(self) -> None:
        """A link-local guest's cached answer (keyed by its address and MAC) goes when its port goes."""
        ip, mac = normalise_address("fe80::f816:3eff:fe00:1")
        self.assertEqual(self.answer(ip, mac), ("vm-a", "p-a"))
        self.assertEqual(len(self.front), 1)
        self.backend.replica.apply([], [("pa", None)])
        self.assertIsNone(self.answer(ip, mac))

    def test_link_local_keys_pruned(self) -> None:
        """Link-local keys are remembered no longer than the cache keeps answers."""
        ip, mac = normalise_address("fe80::f816:3eff:fe00:1")
        self.answer(ip, mac)
        self.clock.advance(61)
        other_ip, other_mac = normalise_address("fe80::f816:3eff:fe00:2")
        self.answer(other_ip, other_mac)
        self.assertEqual(len(self.front), 1)

    def test_network_renamed(self) -> None:
        """A datapath standing for another network: the cached answers of the old network are forgotten."""
        self.assertEqual(self.answer("10.0.0.5"), ("vm-a", "p-a"))
        self.backend.replica.apply([("dpA", DatapathRecord("dpA", "elsewhere"))], [])
        self.assertIsNone(self.answer("10.0.0.5"))

    def test_refuses_cached_answers_past_the_bound(self) -> None:
        """Past the replica's bound, even a cached answer is refused (503), until it is in sync again."""
        self.assertEqual(self.answer("10.0.0.5"), ("vm-a", "p-a"))
        self.backend.health.lost("unix:/a", "closed")
        self.clock.advance(20)
        self.assertEqual(self.answer("10.0.0.5"), ("vm-a", "p-a"))
        self.clock.advance(11)
        self.failureResultOf(self.front.lookup("10.0.0.5", network_id=NET_A), LookupUnavailable)
        self.backend.health.synced("unix:/b", 1, 1)
        self.assertEqual(self.answer("10.0.0.5"), ("vm-a", "p-a"))

    def test_forget(self) -> None:
        """The agent's 404 re-lookup reaches the cache."""
        self.answer("10.0.0.5")
        loads = self.cache.lookups
        self.front.forget("10.0.0.5", NET_A)
        self.answer("10.0.0.5")
        self.assertEqual(self.cache.lookups, loads + 1)
