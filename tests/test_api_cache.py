"""The render cache: expiry by the injected clock, coalesced misses, no caching of failures."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from mdsvc.cache import ExpiringCache
from mdsvc.interfaces import ICache


class ExpiringCacheTests(SynchronousTestCase):
    """ExpiringCache behaviour."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.cache = ExpiringCache(self.clock, 10)
        self.calls: list[Any] = []

    def load(self, key: Any) -> Deferred[Any]:
        self.calls.append(key)
        return succeed(f"value-{key}-{len(self.calls)}")

    def test_interface(self) -> None:
        """ExpiringCache provides ICache."""
        self.assertTrue(verifyObject(ICache, self.cache))

    def test_peek(self) -> None:
        """
        peek (what the API's answer-at-once path uses, part of ICache) gives a held fresh value,
        else None: nothing held, a load in progress, an expired value; it never loads, and a
        fresh value found counts as a hit (the render cache's hits include the answer-at-once path).
        """
        self.assertIsNone(self.cache.peek("a"))
        pending: Deferred[Any] = Deferred()
        self.cache.get("a", lambda key: pending)
        self.assertIsNone(self.cache.peek("a"))
        pending.callback("loaded")
        self.assertEqual(self.cache.peek("a"), "loaded")
        self.clock.advance(10)
        self.assertIsNone(self.cache.peek("a"))
        self.assertEqual((self.calls, self.cache.loads, self.cache.hits), ([], 1, 1))

    def test_hit_until_expiry(self) -> None:
        """A value is reused for ttl seconds, then loaded again."""
        self.assertEqual(self.successResultOf(self.cache.get("a", self.load)), "value-a-1")
        self.clock.advance(9.9)
        self.assertEqual(self.successResultOf(self.cache.get("a", self.load)), "value-a-1")
        self.clock.advance(0.1)
        self.assertEqual(self.successResultOf(self.cache.get("a", self.load)), "value-a-2")

    def test_coalesced(self) -> None:
        """Concurrent misses share one load; each caller has its own Deferred."""
        pending: Deferred[Any] = Deferred()
        loads: list[Any] = []
        one = self.cache.get("a", lambda k: loads.append(k) or pending)
        two = self.cache.get("a", lambda k: loads.append(k) or pending)
        self.assertIsNot(one, two)
        self.assertEqual(loads, ["a"])
        two.cancel()
        self.failureResultOf(two)
        pending.callback("v")
        self.assertEqual(self.successResultOf(one), "v")

    def test_failures_and_none_not_cached(self) -> None:
        """A failed load reaches every waiter and is retried next time; None is not cached."""
        pending: Deferred[Any] = Deferred()
        one = self.cache.get("a", lambda k: pending)
        two = self.cache.get("a", lambda k: pending)
        pending.errback(ValueError("boom"))
        self.failureResultOf(one, ValueError)
        self.failureResultOf(two, ValueError)
        self.assertIsNone(self.successResultOf(self.cache.get("b", lambda k: succeed(None))))
        self.assertEqual(self.successResultOf(self.cache.get("b", lambda k: succeed(1))), 1)

    def test_ttl_zero(self) -> None:
        """With ttl 0 nothing is kept."""
        cache = ExpiringCache(self.clock, 0)
        cache.get("a", self.load)
        cache.get("a", self.load)
        self.assertEqual(len(self.calls), 2)
        self.assertEqual(len(cache), 0)

    def test_invalidate_and_sweep(self) -> None:
        """invalidate forgets a key; expired entries are swept as new ones arrive."""
        self.cache.get("a", self.load)
        self.cache.invalidate("a")
        self.cache.get("a", self.load)
        self.assertEqual(len(self.calls), 2)
        self.clock.advance(20)
        self.cache.get("b", self.load)
        self.assertEqual(len(self.cache), 1)
