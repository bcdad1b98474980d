# -*- test-case-name: tests.test_agent_ratelimit -*-
"""
Rate limiting per source address (neutron spec §7): two sliding windows, "base" and "burst".

A request is refused when, counting it, more than C{limit} requests of the key fall within a
window; refused requests count too (haproxy tracks before it denies), so a client that keeps
polling stays refused until it slows down.  Only the newest C{max(limit) + 1} times of a key
are kept, so memory stays bounded whatever a client sends.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable
from typing import Any

from attrs import define, field
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

_log = Logger()


@define
class SlidingWindowLimiter:
    """
    @ivar windows: C{(duration seconds, limit)} pairs; every one must admit a request.
    """

    clock: IReactorTime
    windows: tuple[tuple[float, int], ...]
    _seen: dict[Hashable, deque[float]] = field(factory=dict, init=False)
    _next_sweep: float = field(default=0.0, init=False)

    def allow(self, key: Hashable) -> bool:
        """Record a request of C{key}; True if it is within every window's limit."""
        now = self.clock.seconds()
        times = self._seen.get(key)
        if times is None:
            times = self._seen[key] = deque(maxlen=max(limit for _, limit in self.windows) + 1)
        times.append(now)
        allowed = True
        for duration, limit in self.windows:
            # more than `limit` requests within `duration`: the (limit+1)-th newest is recent
            if len(times) > limit and times[-(limit + 1)] > now - duration:
                allowed = False
        if now >= self._next_sweep:
            self._sweep(now)
        return allowed

    def _sweep(self, now: float) -> None:
        horizon = max(duration for duration, _ in self.windows)
        for key in [k for k, times in self._seen.items() if times[-1] <= now - horizon]:
            del self._seen[key]
        self._next_sweep = now + horizon

    def __len__(self) -> int:
        return len(self._seen)


def rate_limiter(limit: Any, clock: IReactorTime) -> SlidingWindowLimiter | None:
    """
    The limiter C{[metadata_rate_limiting]} asks for (a L{mdsvc.config.RateLimitConfig}): None
    when off, or when C{ip_versions} names both versions (as in Neutron: off, with a warning).
    """
    if not limit.enabled:
        return None
    if limit.ip_version is None:
        _log.warn("Invalid metadata address IP versions. Metadata rate limiting will not be enabled.")
        return None
    return SlidingWindowLimiter(clock, ((limit.base_window, limit.base_limit), (limit.burst_window, limit.burst_limit)))
