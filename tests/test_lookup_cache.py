"""Tests for L{mdsvc.lookup.cache}: the lookup cache in front of a backend."""

from __future__ import annotations

from typing import Any

from attrs import define, field
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from mdsvc.interfaces import ICachingLookup, IInstanceLookup, LookupUnavailable
from mdsvc.lookup.cache import CachingLookup


@implementer(IInstanceLookup)
@define
class HeldLookup:
    """A backend whose answers the test gives by firing the Deferreds it hands out."""

    name = "held"
    calls: list[tuple[Any, ...]] = field(factory=list)
    pending: list[Deferred[Any]] = field(factory=list)

    def lookup(self, ip: str, network_id: str | None = None, router_id: str | None = None, mac: str | None = None) -> Deferred[Any]:
        """Record the call; answer later."""
        self.calls.append((ip, network_id, router_id, mac))
        d: Deferred[Any] = Deferred()
        self.pending.append(d)
        return d

    def answer(self, value: Any) -> None:
        """Fire the oldest pending lookup with C{value} (an exception fails it)."""
        d = self.pending.pop(0)
        if isinstance(value, Exception):
            d.errback(value)
        else:
            d.callback(value)


class CacheTests(SynchronousTestCase):
    """TTLs, coalescing, forget."""

    def setUp(self) -> None:
        self.inner = HeldLookup()
        self.clock = Clock()
        self.cache = CachingLookup(self.inner, self.clock, ttl=10, negative_ttl=2)

    def get(self, *args: Any, **kwargs: Any) -> Any:
        """Look up, let the inner backend (if asked) answer ("vm", "p"), return the result."""
        d = self.cache.lookup(*args, **kwargs)
        if self.inner.pending:
            self.inner.answer(("vm", "p"))
        return self.successResultOf(d)

    def test_interface(self) -> None:
        """CachingLookup provides ICachingLookup (an IInstanceLookup whose answers can be forgotten), named after its backend."""
        self.assertTrue(verifyObject(ICachingLookup, self.cache))
        self.assertTrue(verifyObject(IInstanceLookup, self.cache))
        self.assertTrue(verifyObject(IInstanceLookup, self.inner))
        self.assertEqual(self.cache.name, "cache(held)")

    def test_innerMustProvide(self) -> None:
        """The backend must provide IInstanceLookup."""
        self.assertRaises(TypeError, CachingLookup, object(), self.clock, 10)

    def test_positiveTTL(self) -> None:
        """A found instance is served from the cache for ttl seconds, then looked up again."""
        self.assertEqual(self.get("10.0.0.5", network_id="n"), ("vm", "p"))
        self.clock.advance(9.9)
        self.assertEqual(self.get("10.0.0.5", network_id="n"), ("vm", "p"))
        self.assertEqual(len(self.inner.calls), 1)
        self.assertEqual((self.cache.lookups, self.cache.hits), (1, 1))
        self.clock.advance(0.1)
        self.assertEqual(self.get("10.0.0.5", network_id="n"), ("vm", "p"))
        self.assertEqual(len(self.inner.calls), 2)

    def test_keyHasEveryArgument(self) -> None:
        """ip, network, router and MAC are all part of the key; arguments reach the backend as given."""
        self.get("10.0.0.5", network_id="n")
        self.get("10.0.0.5", network_id="m")
        self.get("10.0.0.5", router_id="n")
        self.get("10.0.0.5", network_id="n", mac="fa:16:3e:00:00:01")
        self.get("10.0.0.6", network_id="n")
        self.assertEqual(self.inner.calls, [
            ("10.0.0.5", "n", None, None), ("10.0.0.5", "m", None, None), ("10.0.0.5", None, "n", None),
            ("10.0.0.5", "n", None, "fa:16:3e:00:00:01"), ("10.0.0.6", "n", None, None),
        ])

    def test_negativeTTL(self) -> None:
        """No instance is kept negative_ttl seconds."""
        d = self.cache.lookup("10.0.0.5", network_id="n")
        self.inner.answer(None)
        self.assertIsNone(self.successResultOf(d))
        self.clock.advance(1.9)
        self.assertIsNone(self.successResultOf(self.cache.lookup("10.0.0.5", network_id="n")))
        self.assertEqual(len(self.inner.calls), 1)
        self.clock.advance(0.1)
        self.assertEqual(self.get("10.0.0.5", network_id="n"), ("vm", "p"))
        self.assertEqual(len(self.inner.calls), 2)

    def test_negativeTTLZero(self) -> None:
        """negative_ttl 0: no instance is not kept at all."""
        cache = CachingLookup(self.inner, self.clock, ttl=10, negative_ttl=0)
        for _ in range(2):
            d = cache.lookup("10.0.0.5", network_id="n")
            self.inner.answer(None)
            self.assertIsNone(self.successResultOf(d))
        self.assertEqual(len(self.inner.calls), 2)
        self.assertEqual(len(cache), 0)

    def test_ttlZero(self) -> None:
        """ttl 0: found instances are not kept, but concurrent misses still share a lookup."""
        cache = CachingLookup(self.inner, self.clock, ttl=0)
        first, second = cache.lookup("10.0.0.5", network_id="n"), cache.lookup("10.0.0.5", network_id="n")
        self.inner.answer(("vm", "p"))
        self.assertEqual((self.successResultOf(first), self.successResultOf(second)), (("vm", "p"), ("vm", "p")))
        self.assertEqual(len(self.inner.calls), 1)
        self.assertEqual(len(cache), 0)

    def test_failureNotCached(self) -> None:
        """A failure reaches every waiter and is not kept."""
        first, second = self.cache.lookup("10.0.0.5", network_id="n"), self.cache.lookup("10.0.0.5", network_id="n")
        self.inner.answer(LookupUnavailable("neutron down"))
        self.assertEqual(str(self.failureResultOf(first, LookupUnavailable).value), "neutron down")
        self.assertEqual(str(self.failureResultOf(second, LookupUnavailable).value), "neutron down")
        self.assertEqual(self.get("10.0.0.5", network_id="n"), ("vm", "p"))
        self.assertEqual(len(self.inner.calls), 2)

    def test_coalesced(self) -> None:
        """Concurrent misses for one key make one inner lookup; each caller gets its own Deferred."""
        waiters = [self.cache.lookup("10.0.0.5", network_id="n") for _ in range(3)]
        self.assertEqual(len(self.inner.calls), 1)
        self.assertEqual(len({id(d) for d in waiters}), 3)
        for d in waiters:
            self.assertNoResult(d)
        self.inner.answer(("vm", "p"))
        self.assertEqual([self.successResultOf(d) for d in waiters], [("vm", "p")] * 3)

    def test_cancelOneWaiter(self) -> None:
        """Cancelling one caller's Deferred leaves the shared lookup and the others alone."""
        first, second = self.cache.lookup("10.0.0.5", network_id="n"), self.cache.lookup("10.0.0.5", network_id="n")
        first.cancel()
        self.failureResultOf(first, CancelledError)
        self.assertNoResult(self.inner.pending[0])
        self.inner.answer(("vm", "p"))
        self.assertEqual(self.successResultOf(second), ("vm", "p"))
        self.assertEqual(self.get("10.0.0.5", network_id="n"), ("vm", "p"))
        self.assertEqual(len(self.inner.calls), 1)

    def test_forget(self) -> None:
        """forget drops one entry: the next lookup of that key asks the backend, others stay cached."""
        self.get("10.0.0.5", network_id="n")
        self.get("10.0.0.6", network_id="n")
        self.cache.forget("10.0.0.5", network_id="n")
        self.get("10.0.0.5", network_id="n")
        self.get("10.0.0.6", network_id="n")
        self.assertEqual([c[0] for c in self.inner.calls], ["10.0.0.5", "10.0.0.6", "10.0.0.5"])

    def test_forgetByRouterAndMac(self) -> None:
        """forget takes the same key arguments as lookup."""
        self.get("fe80::1", router_id="r", mac="fa:16:3e:00:00:01")
        self.cache.forget("fe80::1", network_id="r", mac="fa:16:3e:00:00:01")  # not that key
        self.get("fe80::1", router_id="r", mac="fa:16:3e:00:00:01")
        self.assertEqual(len(self.inner.calls), 1)
        self.cache.forget("fe80::1", router_id="r", mac="fa:16:3e:00:00:01")
        self.get("fe80::1", router_id="r", mac="fa:16:3e:00:00:01")
        self.assertEqual(len(self.inner.calls), 2)

    def test_forgetDuringLookup(self) -> None:
        """A lookup in progress when its key is forgotten answers its callers but is not stored."""
        old = self.cache.lookup("10.0.0.5", network_id="n")
        self.cache.forget("10.0.0.5", network_id="n")
        new = self.cache.lookup("10.0.0.5", network_id="n")
        self.assertEqual(len(self.inner.calls), 2)
        self.inner.answer(("stale", "p"))
        self.assertEqual(self.successResultOf(old), ("stale", "p"))
        self.assertNoResult(new)
        self.inner.answer(("fresh", "p"))
        self.assertEqual(self.successResultOf(new), ("fresh", "p"))
        self.assertEqual(self.successResultOf(self.cache.lookup("10.0.0.5", network_id="n")), ("fresh", "p"))

    def test_forgetUnknown(self) -> None:
        """Forgetting a key that is not cached does nothing."""
        self.cache.forget("10.9.9.9", network_id="n")
        self.assertEqual(len(self.cache), 0)

    def test_sweep(self) -> None:
        """Expired entries are dropped when later entries are added, at most once per TTL."""
        self.get("10.0.0.1", network_id="n")
        self.get("10.0.0.2", network_id="n")
        self.assertEqual(len(self.cache), 2)
        self.clock.advance(11)
        self.get("10.0.0.3", network_id="n")
        self.assertEqual(len(self.cache), 1)

    def test_sweepExplicit(self) -> None:
        """sweep drops expired entries now."""
        d = self.cache.lookup("10.0.0.1", network_id="n")
        self.inner.answer(None)
        self.successResultOf(d)
        self.get("10.0.0.2", network_id="n")
        self.clock.advance(2)
        self.cache.sweep()
        self.assertEqual(len(self.cache), 1)
        self.clock.advance(8)
        self.cache.sweep()
        self.assertEqual(len(self.cache), 0)

    def test_synchronousInnerError(self) -> None:
        """A backend raising synchronously fails the lookup; nothing is cached or left pending."""

        @implementer(IInstanceLookup)
        class Raising:
            name = "raising"

            def lookup(self, ip: str, network_id: str | None = None, router_id: str | None = None, mac: str | None = None) -> Any:
                raise LookupUnavailable("no")

        cache = CachingLookup(Raising(), self.clock, ttl=10)
        self.failureResultOf(cache.lookup("10.0.0.5", network_id="n"), LookupUnavailable)
        self.failureResultOf(cache.lookup("10.0.0.5", network_id="n"), LookupUnavailable)
        self.assertEqual((len(cache), cache.lookups), (0, 2))
