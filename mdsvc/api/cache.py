# -*- test-case-name: tests.test_api_cache -*-
"""
The per-instance render cache (spec §5): entries live C{metadata_cache_expiration} seconds, and
concurrent misses for one key share one load.
"""

from __future__ import annotations

from typing import Any, Callable, Hashable

from attrs import define, field
from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.python.failure import Failure
from zope.interface import implementer

from mdsvc.interfaces import ICache


@implementer(ICache)
@define
class RenderCache:
    """
    Positive results are kept C{ttl} seconds (0: nothing is kept, but concurrent misses are still
    coalesced); a load that fails or finds nothing is not cached.
    """

    clock: IReactorTime
    ttl: float
    _entries: dict[Hashable, tuple[float, Any]] = field(factory=dict, init=False)
    _pending: dict[Hashable, list[Deferred[Any]]] = field(factory=dict, init=False)
    _next_sweep: float = field(default=0.0, init=False)
    loads: int = field(default=0, init=False)

    def peek(self, key: Hashable) -> Any:
        """The fresh value of C{key}, or None (nothing is loaded)."""
        entry = self._entries.get(key)
        if entry is not None and entry[0] > self.clock.seconds():
            return entry[1]
        return None

    def get(self, key: Hashable, load: Callable[[Hashable], Any]) -> Deferred[Any]:
        """See L{ICache.get}.  Each caller gets its own Deferred, so one cancelling hurts no other."""
        entry = self._entries.get(key)
        if entry is not None:
            if entry[0] > self.clock.seconds():
                return succeed(entry[1])
            del self._entries[key]
        waiter: Deferred[Any] = Deferred()
        waiters = self._pending.get(key)
        if waiters is not None:
            waiters.append(waiter)
            return waiter
        self._pending[key] = [waiter]
        self.loads += 1
        maybeDeferred(load, key).addBoth(self._loaded, key)
        return waiter

    def _loaded(self, result: Any, key: Hashable) -> None:
        waiters = self._pending.pop(key)
        if not isinstance(result, Failure) and result is not None and self.ttl > 0:
            now = self.clock.seconds()
            self._entries[key] = (now + self.ttl, result)
            if now >= self._next_sweep:
                self._sweep(now)
        for waiter in waiters:
            if isinstance(result, Failure):
                waiter.errback(Failure(result.value, result.type, result.tb))
            else:
                waiter.callback(result)

    def _sweep(self, now: float) -> None:
        for key in [k for k, (expires, _) in self._entries.items() if expires <= now]:
            del self._entries[key]
        self._next_sweep = now + self.ttl

    def invalidate(self, key: Hashable) -> None:
        """See L{ICache.invalidate}."""
        self._entries.pop(key, None)

    def __len__(self) -> int:
        return len(self._entries)
