# -*- test-case-name: tests.test_lookup_cache -*-
"""
The lookup cache: an L{IInstanceLookup} in front of another, as C{twisted.names.cache}
is a resolver in front of resolvers (neutron spec §4, C{[cache]} of metadata_agent.ini).

cloud-init makes about thirty requests per boot within seconds; with the cache they cost one
lookup.  Found instances are kept C{ttl} seconds, "no instance" answers C{negative_ttl} seconds
(so a port that appears just after a miss is seen soon), failures never.  When the metadata API
answers 404 for a cached instance the agent calls L{CachingLookup.forget} and looks up once
more (stale-port protection, LP #1868867).
"""

from __future__ import annotations

from typing import Any

from attrs import define, field
from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.python.failure import Failure
from zope.interface import implementer

from mdsvc.interfaces import IInstanceLookup

Key = tuple[str, "str | None", "str | None", "str | None"]


def _provides_lookup(instance: Any, attribute: Any, value: Any) -> None:
    if not IInstanceLookup.providedBy(value):
        raise TypeError(f"{attribute.name} must provide IInstanceLookup, got {value!r}")


@implementer(IInstanceLookup)
@define(eq=False)
class CachingLookup:
    """
    Caches the answers of C{inner}, keyed by C{(ip, network_id, router_id, mac)}.

    Concurrent misses for one key share one inner lookup; each caller gets its own Deferred, so
    a caller that cancels (its guest went away) does not cancel the lookup the others wait for.

    @ivar inner: the backend.
    @ivar clock: for expiry.
    @ivar ttl: seconds a found instance is kept (0: not kept).
    @ivar negative_ttl: seconds a "no instance" answer is kept (0: not kept).
    @ivar lookups: how many lookups were passed to C{inner}.
    @ivar hits: how many lookups were answered from the cache.
    """

    inner: IInstanceLookup = field(validator=_provides_lookup)
    clock: IReactorTime
    ttl: float
    negative_ttl: float = 0
    _entries: dict[Key, tuple[float, Any]] = field(factory=dict, init=False)
    _pending: dict[Key, list[Deferred[Any]]] = field(factory=dict, init=False)
    _next_sweep: float = field(default=0.0, init=False)
    lookups: int = field(default=0, init=False)
    hits: int = field(default=0, init=False)

    @property
    def name(self) -> str:
        """C{cache(<inner name>)}."""
        return f"cache({self.inner.name})"

    def lookup(
        self, ip: str, network_id: str | None = None, router_id: str | None = None, mac: str | None = None
    ) -> Deferred[tuple[str, str | None] | None]:
        """See L{IInstanceLookup.lookup}."""
        key: Key = (ip, network_id, router_id, mac)
        entry = self._entries.get(key)
        if entry is not None:
            if entry[0] > self.clock.seconds():
                self.hits += 1
                return succeed(entry[1])
            del self._entries[key]
        waiter: Deferred[Any] = Deferred()
        waiters = self._pending.get(key)
        if waiters is not None:
            waiters.append(waiter)
            return waiter
        waiters = self._pending[key] = [waiter]
        self.lookups += 1
        maybeDeferred(self.inner.lookup, ip, network_id=network_id, router_id=router_id, mac=mac).addBoth(
            self._done, key, waiters
        )
        return waiter

    def _done(self, result: Any, key: Key, waiters: list[Deferred[Any]]) -> None:
        # A lookup that started before forget(key) still answers its own callers, but its
        # result is not stored: the entry was forgotten because it was stale.
        current = self._pending.get(key) is waiters
        if current:
            del self._pending[key]
            if not isinstance(result, Failure):
                ttl = self.ttl if result is not None else self.negative_ttl
                if ttl > 0:
                    now = self.clock.seconds()
                    self._entries[key] = (now + ttl, result)
                    if now >= self._next_sweep:
                        self.sweep()
        for waiter in waiters:
            if isinstance(result, Failure):
                waiter.errback(Failure(result.value, result.type, result.tb))
            else:
                waiter.callback(result)

    def forget(self, ip: str, network_id: str | None = None, router_id: str | None = None, mac: str | None = None) -> None:
        """
        Drop the entry of one key, and detach a lookup in progress for it, so that the next
        lookup asks C{inner} again.
        """
        key: Key = (ip, network_id, router_id, mac)
        self._entries.pop(key, None)
        self._pending.pop(key, None)

    def sweep(self) -> None:
        """Drop expired entries (done by itself as entries are added, at most once per TTL)."""
        now = self.clock.seconds()
        for key in [k for k, (expires, _) in self._entries.items() if expires <= now]:
            del self._entries[key]
        self._next_sweep = now + max(self.ttl, self.negative_ttl, 1.0)

    def __len__(self) -> int:
        """How many entries are held (expired ones included until swept)."""
        return len(self._entries)
