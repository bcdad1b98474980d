# -*- test-case-name: tests.test_ovn_service -*-
"""
L{ReplicaService}: runs the Southbound monitor's thread beside the agent and applies what it
hands over, in the reactor's thread, to the replica and its health; writes the status file at
every change of state.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger

from mdsvc.lookup.ovn.health import ReplicaHealth
from mdsvc.lookup.ovn.monitor import Changed, Event, Lost, Note, Stopped, Synced
from mdsvc.lookup.ovn.replica import SouthboundReplica
from mdsvc.lookup.ovn.status import write_status

#: seconds stopService waits for the monitor's thread
STOP_TIMEOUT = 5.0


class ReplicaService(Service):
    """
    @ivar monitor_factory: C{factory(deliver)} makes the monitor (with C{start} and C{stop}),
        whose thread calls C{deliver(event)}.
    """

    _log = Logger()

    def __init__(self, reactor: Any, monitor_factory: Callable[[Callable[[Event], None]], Any],
                 replica: SouthboundReplica, health: ReplicaHealth, status_path: str | None = None) -> None:
        self.reactor = reactor
        self.monitor_factory = monitor_factory
        self.replica = replica
        self.health = health
        self.status_path = status_path
        self.monitor: Any = None
        self._stopped: list[Deferred[None]] = []
        self._status_failed = False
        health.listeners.append(self.write_status)

    def startService(self) -> None:
        """Start the monitor's thread."""
        super().startService()
        self._log.info("OVN Southbound replica: connecting to {members} (lookups answer 503 until it is in sync)",
                       members=", ".join(self.health.remotes))
        self.monitor = self.monitor_factory(self._from_thread)
        self.monitor.start()
        self.write_status()

    def _from_thread(self, event: Event) -> None:
        """The monitor's C{deliver}: hand the event to the reactor's thread."""
        self.reactor.callFromThread(self.handle, event)

    def handle(self, event: Event) -> None:
        """Apply one event of the monitor (in the reactor's thread)."""
        if isinstance(event, Changed):
            self.replica.apply(event.datapaths, event.ports)
        elif isinstance(event, Synced):
            self.replica.replace(event.datapaths, event.ports)
            self.health.synced(event.remote, self.replica.port_count, self.replica.network_count)
        elif isinstance(event, Lost):
            self.health.lost(event.remote, event.reason)
        elif isinstance(event, Note):
            getattr(self._log, event.level, self._log.info)("{text}", text=event.text)
        elif isinstance(event, Stopped):
            waiting, self._stopped = self._stopped, []
            for d in waiting:
                d.callback(None)

    def stopService(self) -> Deferred[None]:
        """Stop the monitor's thread (waiting for it at most L{STOP_TIMEOUT} seconds)."""
        super().stopService()
        self.health.stop()
        monitor, self.monitor = self.monitor, None
        if monitor is None or not getattr(monitor, "running", True):
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._stopped.append(d)
        monitor.stop()
        d.addTimeout(STOP_TIMEOUT, self.reactor, onTimeoutCancel=lambda result, timeout: None)
        return d

    def status(self) -> dict[str, Any]:
        """The replica's status (L{ReplicaHealth.status} with its size and this process)."""
        import os

        status = self.health.status()
        status.update(ports=self.replica.port_count, networks=self.replica.network_count, pid=os.getpid())
        return status

    def write_status(self) -> None:
        """Write the status file (a failure is logged once, and the service goes on)."""
        if self.status_path is None:
            return
        try:
            write_status(self.status_path, self.status())
        except OSError as e:
            if not self._status_failed:
                self._status_failed = True
                self._log.warn("cannot write the OVN replica status to {path}: {error}", path=self.status_path, error=str(e))
