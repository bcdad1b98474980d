# -*- test-case-name: tests.test_api_cache -*-
"""
L{ExpiringCache}: the keyed cache behind the API's per-instance render cache (nova spec §5) and
the agent's lookup cache (neutron spec §4).

Found values are kept C{ttl} seconds, None ("nothing there") C{negative_ttl} seconds, failures
never.  Concurrent misses for one key share one load; each caller gets its own Deferred, so a
caller that cancels (its guest went away) does not cancel the load the others wait for.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any

from attrs import define, field
from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.python.failure import Failure
from zope.interface import implementer

from mdsvc.interfaces import ICache


@implementer(ICache)
@define(eq=False)
class ExpiringCache:
    """
    @ivar ttl: seconds a value is kept (0: not kept; concurrent misses are still coalesced).
    @ivar negative_ttl: seconds a None is kept (0: not kept).
    @ivar loads: how many loads were started (misses).
    @ivar hits: how many gets and peeks found a fresh value.
    @ivar coalesced: how many gets waited for a load another get had started.
    @ivar outcome: what the last get or successful peek did: C{hit}, C{miss} (it started a
        load) or C{wait} (it joined one); read by whoever traces a request right after its call.
    """

    clock: IReactorTime
    ttl: float
    negative_ttl: float = 0
    _entries: dict[Hashable, tuple[float, Any]] = field(factory=dict, init=False)
    _pending: dict[Hashable, list[Deferred[Any]]] = field(factory=dict, init=False)
    _next_sweep: float = field(default=0.0, init=False)
    loads: int = field(default=0, init=False)
    hits: int = field(default=0, init=False)
    coalesced: int = field(default=0, init=False)
    outcome: str | None = field(default=None, init=False)

    def peek(self, key: Hashable) -> Any:
        """The fresh value of C{key}, or None (nothing is loaded)."""
        entry = self._entries.get(key)
        if entry is not None and entry[0] > self.clock.seconds():
            self.hits += 1
            self.outcome = "hit"
            return entry[1]
        return None

    def get(self, key: Hashable, load: Callable[[Hashable], Any]) -> Deferred[Any]:
        """See L{ICache.get}."""
        entry = self._entries.get(key)
        if entry is not None:
            if entry[0] > self.clock.seconds():
                self.hits += 1
                self.outcome = "hit"
                return succeed(entry[1])
            del self._entries[key]
        waiter: Deferred[Any] = Deferred()
        waiters = self._pending.get(key)
        if waiters is not None:
            waiters.append(waiter)
            self.coalesced += 1
            self.outcome = "wait"
            return waiter
        waiters = self._pending[key] = [waiter]
        self.loads += 1
        self.outcome = "miss"
        maybeDeferred(load, key).addBoth(self._loaded, key, waiters)
        return waiter

    def _loaded(self, result: Any, key: Hashable, waiters: list[Deferred[Any]]) -> None:
        # A load that started before invalidate(key) still answers its own callers, but its
        # result is not stored: the entry was dropped because it was stale.
        if self._pending.get(key) is waiters:
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

    def invalidate(self, key: Hashable) -> None:
        """See L{ICache.invalidate}; a load in progress for C{key} will not be stored."""
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
