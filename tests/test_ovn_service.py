"""Tests for L{mdsvc.lookup.ovn.service} and L{mdsvc.lookup.ovn.status}: events applied, status written and read."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

from attrs import define, field
from twisted.internet.task import Clock
from twisted.logger import capturedLogs
from twisted.trial.unittest import SynchronousTestCase

from mdsvc.lookup.ovn.health import ReplicaHealth
from mdsvc.lookup.ovn.monitor import Changed, Event, Lost, Note, Stopped, Synced
from mdsvc.lookup.ovn.records import DatapathRecord
from mdsvc.lookup.ovn.replica import SouthboundReplica
from mdsvc.lookup.ovn.service import STOP_TIMEOUT, ReplicaService
from mdsvc.lookup.ovn.status import describe_status
from tests.test_ovn_replica import NET_A, port


class ThreadlessReactor(Clock):
    """A Clock whose callFromThread calls at once (the monitor's thread is a fake here)."""

    def callFromThread(self, f: Callable[..., Any], *args: Any) -> None:
        f(*args)


@define
class FakeMonitor:
    """A monitor without a thread: the test delivers its events."""

    deliver: Callable[[Event], None]
    started: bool = False
    stopped: bool = False
    running: bool = field(default=False)

    def start(self) -> None:
        self.started = self.running = True

    def stop(self) -> None:
        self.stopped = True


class ServiceTests(SynchronousTestCase):
    """The reactor's side of the monitor."""

    def setUp(self) -> None:
        self.reactor = ThreadlessReactor()
        self.reactor.advance(5000)
        self.replica = SouthboundReplica()
        self.health = ReplicaHealth(self.reactor, 30, ("unix:/a",))
        self.status_path = os.path.join(self.mktemp(), "ovn-sb-replica.json")
        self.monitors: list[FakeMonitor] = []
        self.service = ReplicaService(self.reactor, self._monitor, self.replica, self.health, self.status_path)

    def _monitor(self, deliver: Callable[[Event], None]) -> FakeMonitor:
        monitor = FakeMonitor(deliver)
        self.monitors.append(monitor)
        return monitor

    def status(self) -> dict[str, Any]:
        with open(self.status_path) as f:
            return dict(json.load(f))

    def test_events_applied(self) -> None:
        """Synced fills the replica and the health; Changed changes it; Lost ages it; the status file follows."""
        with capturedLogs() as events:
            self.service.startService()
        self.assertEqual(events[0]["members"], "unix:/a")
        [monitor] = self.monitors
        self.assertTrue(monitor.started)
        self.assertEqual(self.status()["state"], "connecting")
        monitor.deliver(Synced("unix:/a", (DatapathRecord("dpA", NET_A),), (port("pa", "dpA", "fa:16:3e:00:00:01 10.0.0.5"),)))
        self.assertEqual([p.uuid for p in self.replica.ports(NET_A, "10.0.0.5")], ["pa"])
        status = self.status()
        self.assertEqual((status["state"], status["remote"], status["ports"], status["networks"], status["pid"]),
                         ("in-sync", "unix:/a", 1, 1, os.getpid()))
        monitor.deliver(Changed("unix:/a", (), (("pa", None),)))
        self.assertEqual(self.replica.ports(NET_A, "10.0.0.5"), [])
        monitor.deliver(Lost("unix:/a", "closed"))
        self.assertEqual(self.status()["state"], "lost")
        self.reactor.advance(31)
        self.assertEqual(self.status()["state"], "stale")

    def test_notes_logged(self) -> None:
        """A Note is logged at its level."""
        self.service.startService()
        with capturedLogs() as events:
            self.monitors[0].deliver(Note("warn", "unix:/a has no OVN_Southbound database"))
        self.assertEqual((events[0]["text"], events[0]["log_level"].name), ("unix:/a has no OVN_Southbound database", "warn"))

    def test_stop_waits_for_the_thread(self) -> None:
        """stopService asks the monitor to stop and fires when its thread says it has."""
        self.service.startService()
        d = self.service.stopService()
        self.assertTrue(self.monitors[0].stopped)
        self.assertNoResult(d)
        self.monitors[0].deliver(Stopped())
        self.successResultOf(d)

    def test_stop_gives_up(self) -> None:
        """A thread that does not end does not hold the shutdown longer than STOP_TIMEOUT."""
        self.service.startService()
        d = self.service.stopService()
        self.reactor.advance(STOP_TIMEOUT)
        self.successResultOf(d)

    def test_status_unwritable(self) -> None:
        """A status file that cannot be written is logged once; the service goes on."""
        os.makedirs(os.path.dirname(self.status_path))
        os.makedirs(self.status_path)  # a directory where the file should be
        with capturedLogs() as events:
            self.service.startService()
            self.monitors[0].deliver(Synced("unix:/a", (), ()))
        self.assertEqual(len([e for e in events if "cannot write" in e["log_format"]]), 1)
        self.assertEqual(self.health.state, "in-sync")


class DescribeTests(SynchronousTestCase):
    """C{mdsvc-manage ovn-status}: the replica's age, now."""

    def write(self, **status: Any) -> str:
        path = self.mktemp()
        base = {"state": "in-sync", "remote": "unix:/a", "remotes": ["unix:/a", "unix:/b"], "synced_at": 1000.0,
                "changed_at": 1000.0, "max_age": 60, "ports": 10, "networks": 2, "pid": os.getpid()}
        base.update(status)
        with open(path, "w") as f:
            json.dump(base, f)
        return path

    def test_in_sync(self) -> None:
        """In sync: age 0, the member, the size."""
        lines = describe_status(self.write(), now=2000)
        self.assertEqual(lines, ["state: in-sync (member unix:/a)", "replica age: 0 s (in sync)", "members: unix:/a, unix:/b",
                                 "port bindings: 10 in 2 networks (at the last change of state)"])

    def test_lost(self) -> None:
        """Lost: the age now, and whether it still answers."""
        self.assertIn("replica age: 20.0 s (max 60 s: answering)", describe_status(self.write(state="lost"), now=1020))
        self.assertIn("replica age: 70.0 s (max 60 s: refusing lookups (503))", describe_status(self.write(state="stale"), now=1070))
        self.assertIn("replica age: none (never in sync)", describe_status(self.write(state="connecting", synced_at=None), now=1070))

    def test_agent_gone(self) -> None:
        """A status whose process is gone says so first."""
        lines = describe_status(self.write(pid=2**22 + 12345), now=2000)
        self.assertTrue(lines[0].startswith("agent: not running"), lines[0])

    def test_missing(self) -> None:
        """No status file: one line naming it."""
        e = self.assertRaises(ValueError, describe_status, "/nonexistent/ovn-sb-replica.json")
        self.assertIn("/nonexistent/ovn-sb-replica.json: cannot read", str(e))
