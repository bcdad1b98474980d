# -*- test-case-name: tests.test_limits -*-
"""
Bounds on what guests may hold: connections per guest and per process, and the file descriptors
that back them.

One proxy process serves every tenant network of a node, so one guest opening connections until
the process runs out of descriptors would cut off every other guest.  L{ConnectionLimits} admits
a connection only while its guest (its source address on one listener: the same address on two
tenant networks is two guests) holds fewer than C{per_source} and the process fewer than
C{total}; a refused connection is closed at once, and the refusal is logged once per interval,
not once per connection.
"""

from __future__ import annotations

import resource
from collections.abc import Hashable
from typing import Any

from attrs import define, field
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

DESCRIPTOR_RESERVE = 256
"""Descriptors kept free of guest connections: listeners, the store, log files, upstreams."""


@define
class LogThrottle:
    """
    Lets a kind of log line through once per C{interval} seconds and counts what it held back,
    so a flood of the same event costs one line a minute, not one per event.
    """

    clock: IReactorTime
    interval: float = 60.0
    _next: dict[Hashable, float] = field(factory=dict, init=False)
    _held: dict[Hashable, int] = field(factory=dict, init=False)
    _pruned_at: float = field(default=0.0, init=False)

    def allow(self, key: Hashable) -> int | None:
        """None to stay quiet; else how many lines of C{key} were held back since the last one."""
        now = self.clock.seconds()
        if now < self._next.get(key, 0.0):
            self._held[key] = self._held.get(key, 0) + 1
            return None
        if now >= self._pruned_at + self.interval:
            # keys may be many (one per guest): once per interval, drop those quiet for a whole one
            self._next = {k: t for k, t in self._next.items() if t > now - self.interval}
            self._held = {k: n for k, n in self._held.items() if k in self._next}
            self._pruned_at = now
        self._next[key] = now + self.interval
        return self._held.pop(key, 0)


@define(eq=False)
class ConnectionLimits:
    """
    Admission of guest connections, shared by every listener of a process.

    @ivar per_source: most connections one guest may hold on one listener (0: no limit).
    @ivar total: most guest connections of the whole process (0: no limit).
    """

    clock: IReactorTime
    per_source: int = 0
    total: int = 0
    _by_source: dict[tuple[Any, str], int] = field(factory=dict, init=False)
    open: int = field(default=0, init=False)
    refused: int = field(default=0, init=False)
    _throttle: LogThrottle = field(default=None, init=False)
    _log = Logger()

    def __attrs_post_init__(self) -> None:
        self._throttle = LogThrottle(self.clock)

    def admit(self, scope: Any, source: str | None, where: str) -> bool:
        """
        Count a new connection of C{source} on C{scope} (a listener), or refuse it.

        @param where: how the log names the listener.
        """
        if self.total and self.open >= self.total:
            self._refuse("process", "connection limit reached: {open} guest connections open (limit {limit}); "
                         "refusing new ones ({held} more refused since the last line)", where, source, self.total)
            return False
        if source is not None and self.per_source:
            key = (scope, source)
            held = self._by_source.get(key, 0)
            if held >= self.per_source:
                self._refuse(key, "guest {source} on {where} holds {limit} connections, its limit; "
                             "refusing more ({held} more refused since the last line)", where, source, self.per_source)
                return False
            self._by_source[key] = held + 1
        self.open += 1
        return True

    def release(self, scope: Any, source: str | None) -> None:
        """A connection admitted by L{admit} is gone."""
        self.open -= 1
        if source is not None and self.per_source:
            key = (scope, source)
            held = self._by_source.get(key, 0) - 1
            if held > 0:
                self._by_source[key] = held
            else:
                self._by_source.pop(key, None)

    def held_by(self, scope: Any, source: str) -> int:
        """How many connections C{source} holds on C{scope}."""
        return self._by_source.get((scope, source), 0)

    def _refuse(self, key: Hashable, message: str, where: str, source: str | None, limit: int) -> None:
        self.refused += 1
        held = self._throttle.allow(key)
        if held is not None:
            self._log.warn(message, open=self.open, limit=limit, held=held, where=where, source=source)


def raise_descriptor_limit() -> tuple[int, int]:
    """
    Raise this process's soft limit on open files to its hard limit (what systemd's
    C{LimitNOFILE} or the shell allows); return the (soft, hard) limits in force after.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard_cap = 1 << 20
    else:
        hard_cap = hard
    if soft != resource.RLIM_INFINITY and soft < hard_cap:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard_cap, hard))
            soft = hard_cap
        except (ValueError, OSError):
            pass
    return soft, hard


def connection_budget(configured: int, soft_limit: int) -> int:
    """
    The process-wide connection cap: C{configured}, lowered so that guest connections can
    never take the descriptors the process needs for everything else.
    """
    available = max(64, soft_limit - DESCRIPTOR_RESERVE)
    return min(configured, available) if configured else available
