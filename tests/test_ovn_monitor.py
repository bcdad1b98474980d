"""
Tests for L{mdsvc.lookup.ovn.monitor}: rows to records, and the events one run of the IDL makes
(with fake rows; the IDL against a real ovsdb-server is in tests/integration/test_ovn_monitor.py).
"""

from __future__ import annotations

import queue
import time
import uuid as uuidlib
from typing import Any

from attrs import define, field
from twisted.trial.unittest import SynchronousTestCase

from mdsvc.lookup.ovn.monitor import Changed, ChangeTracker, Lost, SouthboundMonitor, Stopped, Synced, datapath_from_row, port_from_row
from mdsvc.lookup.ovn.records import DatapathRecord


@define
class FakeRow:
    """An IDL row: a uuid and column attributes."""

    uuid: uuidlib.UUID = field(factory=uuidlib.uuid4)
    external_ids: dict[str, str] = field(factory=dict)
    datapath: Any = None
    mac: list[str] = field(factory=list)
    chassis: list[Any] = field(factory=list)
    logical_port: str = ""


def tables(datapaths: list[FakeRow], ports: list[FakeRow]) -> Any:
    return lambda name: {"Datapath_Binding": datapaths, "Port_Binding": ports}[name]


class RowTests(SynchronousTestCase):
    """IDL rows become records."""

    def test_rows(self) -> None:
        """A datapath's network and a port's columns are read as Neutron reads them."""
        dp = FakeRow(external_ids={"name": "neutron-net1", "name2": "private"})
        pb = FakeRow(datapath=dp, mac=["fa:16:3e:00:00:01 10.0.0.5"], chassis=[FakeRow()], logical_port="port-1",
                     external_ids={"neutron:device_id": "vm", "neutron:device_owner": "compute:nova", "neutron:project_id": "p"})
        self.assertEqual(datapath_from_row(dp), DatapathRecord(str(dp.uuid), "net1"))
        record = port_from_row(pb)
        self.assertEqual((record.uuid, record.datapath, record.addresses, record.bound, record.device_id, record.project_id),
                         (str(pb.uuid), str(dp.uuid), ("fa:16:3e:00:00:01", "10.0.0.5"), True, "vm", "p"))
        self.assertFalse(port_from_row(FakeRow(datapath=dp)).bound)


class TrackerTests(SynchronousTestCase):
    """What one run of the IDL hands the reactor."""

    def setUp(self) -> None:
        self.tracker = ChangeTracker()
        self.dp = FakeRow(external_ids={"name": "neutron-net1"})
        self.pb = FakeRow(datapath=self.dp, mac=["fa:16:3e:00:00:01 10.0.0.5"], chassis=[FakeRow()])

    def test_first_sync_is_a_snapshot(self) -> None:
        """Not in sync: nothing; in sync: the whole replica, and the notices of that run are dropped."""
        self.assertEqual(self.tracker.after_run(False, 1, "unix:/a", tables([], [])), [])
        self.tracker.notice("Port_Binding", False, self.pb)  # the initial dump, before in sync
        [event] = self.tracker.after_run(True, 1, "unix:/a", tables([self.dp], [self.pb]))
        assert isinstance(event, Synced)
        self.assertEqual((event.remote, len(event.datapaths), len(event.ports)), ("unix:/a", 1, 1))
        self.assertEqual(self.tracker.after_run(True, 1, "unix:/a", tables([self.dp], [self.pb])), [])

    def test_changes_while_in_sync(self) -> None:
        """In sync, each run's row changes are one Changed, deletions as None, in order."""
        self.tracker.after_run(True, 1, "unix:/a", tables([self.dp], [self.pb]))
        other = FakeRow(datapath=self.dp, mac=["fa:16:3e:00:00:02 10.0.0.6"])
        self.tracker.notice("Port_Binding", False, other)
        self.tracker.notice("Port_Binding", True, self.pb)
        self.tracker.notice("Datapath_Binding", False, self.dp)
        self.tracker.notice("Chassis", False, FakeRow())
        [event] = self.tracker.after_run(True, 1, "unix:/a", tables([], []))
        assert isinstance(event, Changed)
        self.assertEqual([(u, r is None) for u, r in event.ports], [(str(other.uuid), False), (str(self.pb.uuid), True)])
        self.assertEqual([u for u, _ in event.datapaths], [str(self.dp.uuid)])

    def test_lost_then_resynced(self) -> None:
        """Out of sync: one Lost naming the member; in sync again: a whole new snapshot."""
        self.tracker.after_run(True, 1, "unix:/a", tables([self.dp], [self.pb]))
        [lost] = self.tracker.after_run(False, 2, "unix:/b", tables([], []))
        self.assertEqual(lost, Lost("unix:/a", "connection to unix:/a closed or no longer usable"))
        self.assertEqual(self.tracker.after_run(False, 3, "unix:/c", tables([], [])), [])
        [synced] = self.tracker.after_run(True, 3, "unix:/c", tables([self.dp], []))
        assert isinstance(synced, Synced)
        self.assertEqual((synced.remote, synced.ports), ("unix:/c", ()))

    def test_reconnected_within_one_run(self) -> None:
        """A new connection already in sync (the session's number changed): Lost, then a new snapshot."""
        self.tracker.after_run(True, 1, "unix:/a", tables([self.dp], [self.pb]))
        lost, synced = self.tracker.after_run(True, 2, "unix:/b", tables([self.dp], [self.pb]))
        self.assertIsInstance(lost, Lost)
        self.assertIsInstance(synced, Synced)


class FailingMonitor(SouthboundMonitor):
    """A monitor whose first run fails (a bug, a library error), the second waits to be stopped."""

    runs = 0

    def _monitor(self) -> None:
        self.runs += 1
        if self.runs == 1:
            raise RuntimeError("boom")
        self._stopping.wait(10)


class ThreadTests(SynchronousTestCase):
    """The monitor's thread, without a database."""

    def test_error_reported_and_started_over(self) -> None:
        """An error in the thread is a Lost and a Note (logged as an error), then it starts over; stop ends it."""
        events: queue.Queue[Any] = queue.Queue()
        monitor = FailingMonitor(("unix:/nonexistent",), events.put, retry_after_error=0.01)
        monitor.start()
        lost, note = events.get(timeout=5), events.get(timeout=5)
        self.assertEqual(lost, Lost(None, "monitor error: RuntimeError: boom"))
        self.assertEqual((note.level, note.text), ("error", "OVN Southbound monitor failed (RuntimeError: boom); starting over"))
        deadline = time.monotonic() + 5
        while monitor.runs < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        self.assertEqual(monitor.runs, 2)
        monitor.stop()
        self.assertIsInstance(events.get(timeout=5), Stopped)
        self.assertFalse(monitor.running)
