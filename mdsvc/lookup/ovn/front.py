# -*- test-case-name: tests.test_ovn_front -*-
"""
L{ReplicaCacheFront}: what the agent calls in front of its lookup cache when the backend is a
live replica.

The agent's cache keeps a found instance C{[cache] expiration_time} seconds and a miss
C{negative_expiration_time}; a replica knows at once when a port comes or goes.  Every change of
the replica names the C{(network, address)} keys it may change (L{SouthboundReplica}), and the
front makes the cache forget them: the next guest request looks the address up afresh, so a
port created or deleted is served or refused as soon as the replica has it.  The front also
refuses, before the cache is read, once the replica is older than its bound: a cached answer
outlives its backend no more than a fresh one.

Cache keys are those of L{mdsvc.lookup.cache.CachingLookup}, C{(ip, network_id, router_id,
mac)}.  Those of addresses are known from a change's words; those of IPv6 link-local guests
(found by the MAC derived from the address) are remembered as they are asked, for as long as the
cache may hold them.
"""

from __future__ import annotations

from typing import Any

from attrs import define, field
from twisted.internet.defer import Deferred, fail
from twisted.internet.interfaces import IReactorTime
from zope.interface import implementer

from mdsvc.interfaces import IInstanceLookup, LookupUnavailable
from mdsvc.lookup.ovn.health import ReplicaHealth
from mdsvc.lookup.ovn.replica import Key

CacheKey = tuple[str, str | None, str | None, str | None]


@implementer(IInstanceLookup)
@define(eq=False)
class ReplicaCacheFront:
    """
    @ivar cache: the agent's lookup cache (it has C{forget}, as L{CachingLookup}).
    @ivar health: the replica's; refusing, it refuses before the cache answers.
    @ivar clock: for how long link-local keys are remembered.
    @ivar keep: seconds a link-local key is remembered (the longest the cache keeps an answer).
    """

    cache: Any
    health: ReplicaHealth
    clock: IReactorTime
    keep: float
    _link_local: dict[Key, dict[CacheKey, float]] = field(factory=dict, init=False)
    _next_prune: float = field(default=0.0, init=False)

    @property
    def name(self) -> str:
        """The cache's name (C{cache(ovn)})."""
        return str(self.cache.name)

    def lookup(
        self, ip: str, network_id: str | None = None, router_id: str | None = None, mac: str | None = None
    ) -> Deferred[tuple[str, str | None] | None]:
        """See L{IInstanceLookup.lookup}: the cache's answer, unless the replica refuses."""
        refusal = self.health.refusal()
        if refusal is not None:
            return fail(LookupUnavailable(refusal))
        if mac is not None and network_id is not None:
            self._remember((ip, network_id, router_id, mac), network_id, ip, mac.lower())
        result: Deferred[tuple[str, str | None] | None] = self.cache.lookup(ip, network_id=network_id, router_id=router_id, mac=mac)
        return result

    def forget(self, ip: str, network_id: str | None = None, router_id: str | None = None, mac: str | None = None) -> None:
        """The cache's C{forget} (the agent's 404 re-lookup)."""
        self.cache.forget(ip, network_id, router_id, mac)

    def changed(self, keys: set[Key]) -> None:
        """A replica listener: make the cache forget every answer C{keys} may have changed."""
        for network_id, word in keys:
            self.cache.forget(word, network_id, None, None)
            remembered = self._link_local.pop((network_id, word), None)
            if remembered:
                for key in remembered:
                    self.cache.forget(*key)

    def _remember(self, key: CacheKey, network_id: str, ip: str, mac: str) -> None:
        now = self.clock.seconds()
        for word in (mac, ip):
            self._link_local.setdefault((network_id, word), {})[key] = now
        if now >= self._next_prune:
            self._prune(now)

    def _prune(self, now: float) -> None:
        """Forget link-local keys the cache no longer holds (asked more than C{keep} seconds ago)."""
        for where in list(self._link_local):
            held = {k: t for k, t in self._link_local[where].items() if now - t <= self.keep}
            if held:
                self._link_local[where] = held
            else:
                del self._link_local[where]
        self._next_prune = now + max(self.keep, 1.0)

    def __len__(self) -> int:
        """How many link-local keys are remembered."""
        return len({key for keys in self._link_local.values() for key in keys})
