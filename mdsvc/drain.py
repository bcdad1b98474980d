# -*- test-case-name: tests.test_drain -*-
"""
Stopping without dropping a request (SIGTERM, C{systemctl stop}, a restart).

twistd stops a node's services when it gets SIGTERM; every listener stops accepting at once (a
socket systemd passed in stays open in systemd, which queues the connections that come while
the node is down for the next one).  L{Drain}, stopped last, then waits until every connection
of the node's HTTP servers has been answered and closed (L{mdsvc.http.LeanHTTPFactory.drain}):
a request being read or answered is answered, with C{Connection: close}; a kept-alive
connection between requests is closed after a short grace; and only then does the process
exit.  The wait is bounded by C{[mdsvc] drain_timeout}: what is still open then is cut.

What those requests need to be answered outlives them: L{Drain}'s own child services, the node's
backends (an instance store with its database threads and pooled connections, such as
C{store = nova}'s; a vendordata provider's connections; the agent's OVN replica), are started
before any listener and stopped only once the drain is over.
"""

from __future__ import annotations

from typing import Any

from twisted.application.service import MultiService, Service
from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

GRACE = 0.5
"""Seconds a kept-alive connection waiting for its next request may still send one."""


class Drain(MultiService):
    """
    Drains the HTTP servers C{factories} when the node stops (a list: factories made later,
    such as a new namespace's, are added to it); its children (the node's backends) are stopped
    after that.
    """

    _log = Logger()

    def __init__(self, clock: IReactorTime, factories: list[Any], timeout: float) -> None:
        super().__init__()
        self.clock = clock
        self.factories = factories
        self.timeout = timeout

    def stopService(self) -> Deferred[Any]:
        """
        Wait (at most C{timeout} seconds) until every connection is answered and closed, then stop
        the children (the backends those connections' requests used).
        """
        Service.stopService(self)
        open_now = sum(f.open_connections for f in self.factories)
        started = self.clock.seconds()
        if open_now:
            self._log.info("stopping: answering the requests of {count} open connections (at most {timeout} s)",
                           count=open_now, timeout=self.timeout)
        drained = DeferredList([f.drain(GRACE) for f in self.factories])
        done: Deferred[Any] = Deferred()
        timer = self.clock.callLater(self.timeout, self._give_up, done)

        def finished(_: Any) -> None:
            if not done.called:
                timer.cancel()
                if open_now:
                    self._log.info("stopping: every connection answered and closed in {seconds:.2f} s",
                                   seconds=self.clock.seconds() - started)
                done.callback(None)

        drained.addCallback(finished)
        done.addCallback(lambda _: MultiService.stopService(self))
        return done

    def _give_up(self, done: Deferred[Any]) -> None:
        left = sum(f.open_connections for f in self.factories)
        self._log.warn("stopping: {count} connections still open after drain_timeout ({timeout} s): closing them",
                       count=left, timeout=self.timeout)
        for factory in self.factories:
            factory.abort_all()
        done.callback(None)


__all__ = ["GRACE", "Drain"]
