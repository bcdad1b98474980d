# -*- test-case-name: tests.test_reload -*-
"""
SIGHUP: the configuration read again, and what can change safely applied to the running node.

What a SIGHUP applies is what each part of the node says it can take (L{IReloadable}): the
vendordata file, rate limits, the log level, session token mode, cache lifetime, and the shared
secret.  Everything else that changed in the files (listeners, the store, the lookup backend...)
is named in one warning: it takes effect at the next restart.  A configuration that would not
start (a bad value, a startup check failing) is refused as a whole, in one logged line, and
the node goes on with the configuration it runs.

A new shared secret does not break the requests of nodes that have not been given it yet: for
C{[mdsvc] secret_rotation_window} seconds the previous secret is still accepted (L{Rotation}),
by the API (signatures and session tokens made with it) and by the agent (a request the API
refuses is signed again with the previous secret), so the nodes of a cloud can get the new secret
one after the other, in either order.
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from twisted.application.service import Service
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from zope.interface import Attribute, Interface, implementer

from mdsvc.config import Config, ConfigError, load_config, load_values
from mdsvc.loglevel import LogLevelFilter


class IReloadable(Interface):
    """A part of the node that applies a new configuration while it runs."""

    options = Attribute("The C{(section, name)} of the options it applies (others need a restart).")

    def reload(config):
        """
        Apply C{config} (a L{Config} that passed the startup checks).  Must not fail: whatever
        cannot be applied is logged.
        """


class Rotation:
    """
    A shared secret, and the one before it while a rotation window lasts.

    @param on_change: called with C{(secret, previous secrets)} whenever either changes: when
        a new secret is set, and when the window of the previous one ends.
    """

    def __init__(self, clock: IReactorTime, secret: str, on_change: Callable[[str, tuple[str, ...]], None]) -> None:
        self.clock = clock
        self.secret = secret
        self.previous: tuple[str, ...] = ()
        self._on_change = on_change
        self._expiry: IDelayedCall | None = None

    def set(self, secret: str, window: float) -> bool:
        """
        Use C{secret} from now on, the current one accepted for C{window} seconds more.

        @return: whether the secret changed.
        """
        if secret == self.secret:
            return False
        self.cancel()
        self.previous = (self.secret,) if window > 0 else ()
        self.secret = secret
        if self.previous:
            self._expiry = self.clock.callLater(window, self._expire)
        self._on_change(self.secret, self.previous)
        return True

    def _expire(self) -> None:
        self._expiry = None
        self.previous = ()
        self._on_change(self.secret, ())

    def cancel(self) -> None:
        """Stop the window's timer (the node is stopping)."""
        if self._expiry is not None and self._expiry.active():
            self._expiry.cancel()
        self._expiry = None


class Reloader(Service):
    """
    Reads the node's configuration files again on SIGHUP (or L{reload}) and hands the new
    configuration to the node's L{IReloadable} parts.

    @param check: the startup checks of the node's roles, one line per problem (a new
        configuration with problems is not applied).
    @param hooks: called with C{"reloading"} before and C{"reloaded"} after applying (systemd's
        notification, L{mdsvc.systemd}).
    @param sources: the files to read, asked again at each reload (C{--config-dir}: the
        directory's C{*.conf} files as they are now, as oslo.config lists them again); by
        default the files read at startup.
    """

    _log = Logger()

    def __init__(
        self, reactor: Any, config: Config, parts: Iterable[IReloadable], check: Callable[[Config], list[str]] | None = None,
        install_signal: bool = True, sources: Callable[[], Sequence[str] | None] | None = None,
    ) -> None:
        self.reactor = reactor
        self.config = config
        self.parts = list(parts)
        self.check = check or (lambda config: [])
        self.install_signal = install_signal
        self.sources = sources or (lambda: self.config.sources)
        self.hooks: list[Callable[[str], None]] = []
        self._values = load_values(config.sources or None)
        self._previous_handler: Any = None

    def startService(self) -> None:
        """Reload on SIGHUP from now on."""
        super().startService()
        if self.install_signal:
            self._previous_handler = signal.signal(signal.SIGHUP, self._signalled)

    def stopService(self) -> Any:
        """SIGHUP does what it did before."""
        if self.install_signal and self._previous_handler is not None:
            signal.signal(signal.SIGHUP, self._previous_handler)
            self._previous_handler = None
        return super().stopService()

    def _signalled(self, signum: int, frame: Any) -> None:
        self.reactor.callFromThread(self.reload)

    def reload(self) -> bool:
        """
        Read the files again and apply what the parts can take.

        @return: whether a new configuration was applied (False: it was refused, logged).
        """
        try:
            sources = self.sources()
        except ConfigError as e:  # a --config-dir that cannot be listed now
            self._log.error("SIGHUP: {error}; the running configuration is kept", error=str(e))
            return False
        if not sources:
            self._log.info("SIGHUP: no configuration file was given; nothing to read again")
            return False
        for hook in self.hooks:
            hook("reloading")
        try:
            try:
                config = load_config(sources)
                values = load_values(sources)
            except ConfigError as e:
                self._log.error("SIGHUP: {error}; the running configuration is kept", error=str(e))
                return False
            problems = self.check(config)
            if problems:
                self._log.error("SIGHUP: {error}; the running configuration is kept", error=problems[0])
                return False
            changed = sorted(key for key, value in values.items() if value != self._values.get(key))
            handled = {key for part in self.parts for key in part.options}
            later = [key for key in changed if key not in handled]
            if later:
                self._log.warn("SIGHUP: changed, taking effect at the next restart: {options}", options=_names(later))
            for part in self.parts:
                part.reload(config)
            applied = [key for key in changed if key in handled]
            self._log.info("SIGHUP: read {files} again; applied: {options}", files=", ".join(sources),
                           options=_names(applied) or "no change")
            self.config, self._values = config, values
            return True
        finally:
            for hook in self.hooks:
                hook("reloaded")


def _names(keys: Iterable[tuple[str, str]]) -> str:
    """Options for a log line, by name (never a value)."""
    return ", ".join(f"[{section}] {name}" for section, name in keys)


@implementer(IReloadable)
class LogLevelReload:
    """C{[DEFAULT] debug}: the process's log level (L{mdsvc.loglevel})."""

    options = frozenset({("DEFAULT", "debug")})

    def __init__(self, level: LogLevelFilter) -> None:
        self.level = level

    def reload(self, config: Config) -> None:
        """See L{IReloadable.reload}."""
        self.level.set_debug(config.debug)


__all__ = ["IReloadable", "LogLevelReload", "Reloader", "Rotation"]
