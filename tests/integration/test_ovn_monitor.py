"""
L{mdsvc.lookup.ovn.monitor.SouthboundMonitor} against the real Southbound database: the IDL's
thread syncs, then hands over each port created or deleted in NB (through ovn-northd).
"""

from __future__ import annotations

import queue
import time
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from mdsvc.lookup.ovn.monitor import Changed, SouthboundMonitor, Stopped, Synced
from mdsvc.lookup.ovn.replica import SouthboundReplica
from tests.integration.netns import new_id
from tests.integration.ovn import create_network, create_port, delete_port, shared_central


class MonitorTests(SynchronousTestCase):
    """The monitor's thread, its events read from a queue in the test's thread."""

    def setUp(self) -> None:
        self.central = shared_central()
        self.events: queue.Queue[Any] = queue.Queue()
        self.monitor = SouthboundMonitor(tuple(self.central.sb_remotes), self.events.put)
        self.monitor.start()
        self.addCleanup(self.stop)
        self.replica = SouthboundReplica()

    def stop(self) -> None:
        self.monitor.stop()
        while not isinstance(self.events.get(timeout=5), Stopped):
            pass
        self.assertFalse(self.monitor.running)

    def next(self, kind: type, timeout: float = 5) -> Any:
        """The next event of C{kind} (applying every event to the replica on the way)."""
        deadline = time.monotonic() + timeout
        while True:
            event = self.events.get(timeout=max(0.01, deadline - time.monotonic()))
            if isinstance(event, Synced):
                self.replica.replace(event.datapaths, event.ports)
            elif isinstance(event, Changed):
                self.replica.apply(event.datapaths, event.ports)
            if isinstance(event, kind):
                return event

    def test_sync_then_changes(self) -> None:
        """The replica syncs with the SB database; a port created, then deleted, arrives within a second each."""
        network, port, instance = new_id(), new_id(), new_id()
        create_network(self.central, network)
        synced = self.next(Synced)
        self.assertEqual(synced.remote, self.central.sb_remotes[0])
        started = time.monotonic()
        create_port(self.central, network, port, "fa:16:3e:55:00:01", ["10.0.0.5"], instance, "p1")
        while not [p for p in self.replica.ports(network, "10.0.0.5") if p.device_id == instance]:
            self.next(Changed, timeout=1)
        self.assertLess(time.monotonic() - started, 1.5)
        delete_port(self.central, port)
        while self.replica.ports(network, "10.0.0.5"):
            self.next(Changed, timeout=1)
