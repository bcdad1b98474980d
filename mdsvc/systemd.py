# -*- test-case-name: tests.test_systemd -*-
"""
systemd's service notifications (C{Type=notify}): READY, WATCHDOG, RELOADING, STOPPING.

C{sd_notify} is a datagram of C{KEY=VALUE} lines on the UNIX socket named by C{$NOTIFY_SOCKET}
(a path, or an abstract name written with a leading C{@}); a few lines, no library.
L{SystemdNotifier} says READY once the node's listeners are up and its reactor runs, pings the
watchdog every half C{$WATCHDOG_USEC} from the reactor (a reactor that hangs stops pinging, and
systemd restarts the service), says RELOADING and READY around a SIGHUP reload, and STOPPING
when the node begins to stop.  Without C{$NOTIFY_SOCKET} it does nothing.

Socket activation needs nothing here: C{systemd:domain=INET:name=NAME} (or C{index=N}) is a
Twisted endpoint, usable wherever mdsvc takes one (C{[mdsvc] api_endpoint}, C{[proxy]
listeners}).
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Mapping
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

_log = Logger()


def notify_address(environ: Mapping[str, str]) -> str | None:
    """The socket C{$NOTIFY_SOCKET} names (an abstract one as C{\\0name}), or None."""
    address = environ.get("NOTIFY_SOCKET", "")
    if not address or address[0] not in "/@":
        return None
    return "\0" + address[1:] if address[0] == "@" else address


def notify(message: str, environ: Mapping[str, str] | None = None) -> bool:
    """
    Send C{message} (C{KEY=VALUE} lines) to systemd.

    @return: whether it was sent (False without C{$NOTIFY_SOCKET}, or when the socket refuses).
    """
    address = notify_address(os.environ if environ is None else environ)
    if address is None:
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.sendto(message.encode("utf-8"), address)
    except OSError as e:
        _log.warn("cannot notify systemd at {address}: {error}", address=address.replace("\0", "@"), error=str(e))
        return False
    return True


def watchdog_interval(environ: Mapping[str, str]) -> float | None:
    """Seconds between watchdog pings (half of C{$WATCHDOG_USEC}), or None when the watchdog is off or another process's."""
    try:
        usec = int(environ.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    pid = environ.get("WATCHDOG_PID")
    if usec <= 0 or (pid and pid != str(os.getpid())):
        return None
    return usec / 2_000_000


class SystemdNotifier(Service):
    """
    Tells systemd how the node is doing (see the module's docstring).  Put it last in the service
    tree: it is started last (listeners up) and stopped first (STOPPING before the drain).

    @param status: the C{STATUS=} text once ready (C{systemctl status} shows it).
    @param ready: READY waits for it too (the API's workers, L{mdsvc.workers}), if given.
    """

    def __init__(self, reactor: Any, status: str, environ: Mapping[str, str] | None = None, ready: Deferred[Any] | None = None) -> None:
        self.reactor = reactor
        self.status = status
        self.environ = os.environ if environ is None else environ
        self.ready = ready
        self._watchdog: LoopingCall | None = None

    def startService(self) -> None:
        """READY once the reactor runs (and C{ready} fired); the watchdog's pings from then on."""
        super().startService()
        if notify_address(self.environ) is not None:
            if self.ready is not None:
                self.ready.addCallback(lambda _: self.reactor.callWhenRunning(self._ready))
            else:
                self.reactor.callWhenRunning(self._ready)

    def _ready(self) -> None:
        notify(f"READY=1\nSTATUS={self.status}\nMAINPID={os.getpid()}", self.environ)
        interval = watchdog_interval(self.environ)
        if interval is not None and self._watchdog is None:
            self._watchdog = LoopingCall(notify, "WATCHDOG=1", self.environ)
            self._watchdog.clock = self.reactor
            self._watchdog.start(interval, now=True)

    def reloading(self, stage: str) -> None:
        """A hook of L{mdsvc.reload.Reloader}: RELOADING before, READY after."""
        if stage == "reloading":
            notify(f"RELOADING=1\nMONOTONIC_USEC={time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000}", self.environ)
        else:
            notify(f"READY=1\nSTATUS={self.status}", self.environ)

    def stopService(self) -> Any:
        """STOPPING (the watchdog keeps pinging while the node drains)."""
        if notify_address(self.environ) is not None:
            notify("STOPPING=1\nSTATUS=stopping: answering the requests in flight", self.environ)
        return super().stopService()


__all__ = ["SystemdNotifier", "notify", "notify_address", "watchdog_interval"]
