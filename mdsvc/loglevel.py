# -*- test-case-name: tests.test_reload -*-
"""
The process's log level (C{[DEFAULT] debug}: debug, else info), changed at once on SIGHUP.

twistd writes every event its observers get, whatever its level.  L{LogLevelFilter} wraps the
observers the log publisher has once logging has begun (twistd's file or stdout observer, or
whatever C{--logger} or a C{.tac} gave it) in one L{FilteringLogObserver} each, sharing one
predicate: changing the level changes what every observer writes, from the next event on.
Events without a level pass.
"""

from __future__ import annotations

from typing import Any

from twisted.application.service import Service
from twisted.logger import FilteringLogObserver, ILogFilterPredicate, ILogObserver, LogEvent, LogLevel, LogPublisher, PredicateResult
from zope.interface import implementer


@implementer(ILogFilterPredicate)
class LogLevelFilter:
    """
    The minimum level of the events the observers of C{publisher} write.

    @ivar level: the current minimum level.
    """

    def __init__(self, debug: bool = False, publisher: LogPublisher | None = None) -> None:
        if publisher is None:
            from twisted.logger import globalLogPublisher

            publisher = globalLogPublisher
        self.publisher = publisher
        self.level = LogLevel.debug if debug else LogLevel.info
        self._wrapped: list[tuple[ILogObserver, ILogObserver]] = []  # (wrapper, the observer it wraps)

    def set_debug(self, debug: bool) -> None:
        """Debug level when C{debug}, else info."""
        self.level = LogLevel.debug if debug else LogLevel.info

    def __call__(self, event: LogEvent) -> Any:
        """The predicate: drop an event below L{level}."""
        level = event.get("log_level")
        if level is not None and level < self.level:
            return PredicateResult.no
        return PredicateResult.maybe

    def install(self) -> None:
        """Wrap each observer of the publisher (those not wrapped yet) so that it writes only what passes."""
        for observer in list(getattr(self.publisher, "_observers", ())):
            if any(observer is w for w, _ in self._wrapped):
                continue
            wrapper = FilteringLogObserver(observer, [self])
            self._wrapped.append((wrapper, observer))
            self.publisher.removeObserver(observer)
            self.publisher.addObserver(wrapper)

    def uninstall(self) -> None:
        """Give the publisher back the observers it had (those still there): nothing filtered any more."""
        observers = getattr(self.publisher, "_observers", ())
        for wrapper, observer in self._wrapped:
            if any(wrapper is o for o in observers):
                self.publisher.removeObserver(wrapper)
                self.publisher.addObserver(observer)
        self._wrapped = []


class LogLevelService(Service):
    """Installs a L{LogLevelFilter} once the process's logging has begun (twistd begins it after building the services)."""

    def __init__(self, level: LogLevelFilter) -> None:
        self.level = level

    def startService(self) -> None:
        """Filter the observers twistd set up."""
        super().startService()
        self.level.install()

    def stopService(self) -> Any:
        """Unwrap the observers again (a process stops; a service tree in a test leaves the publisher as it found it)."""
        self.level.uninstall()
        return super().stopService()


__all__ = ["LogLevelFilter", "LogLevelService"]
