# -*- test-case-name: tests.test_ovn_monitor -*-
"""
L{SouthboundMonitor}: an OVSDB monitor of the Southbound columns the lookup reads, kept by the
C{ovs} library's IDL (the RFC 7047 client Open vSwitch ships, which ovsdbapp and Neutron build
on) in a thread of its own, so that its blocking poll loop never holds the reactor.

The IDL replicates only C{Port_Binding} (C{datapath}, C{mac}, C{chassis}, C{external_ids},
C{logical_port}), C{Datapath_Binding} (C{external_ids}) and C{Chassis} (C{name}: what
C{Port_Binding.chassis} refers to); it connects to the members of C{ovn_sb_connection} in turn
with back-off, follows no leader (a read-only monitor needs none: C{leader_only=False}), moves on
from a member that is not connected to its cluster or that is behind what it has already seen,
and resumes with C{monitor_cond_since} after a reconnection.

Of the IDL's internals, three are read, each where ovsdbapp reads it too: C{_session} (whether
the connection is up, and its sequence number, which changes with each reconnection), a row's
C{_table.name} in the C{notify} hook, and a row's C{_data} (the replicated datums: the row's
attributes rebuild their values for transactions on every read, which a monitor never makes).

The thread hands the reactor immutable events through C{deliver} (in production
C{reactor.callFromThread}): L{Synced} with the whole replica each time it is in sync with a member
after a (re)connection, L{Changed} with the rows of each later update, L{Lost} when it is no
longer in sync, L{Note} for a line to log, L{Stopped} when the thread ends.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable
from typing import Any

from attrs import define, field, frozen

from mdsvc.lookup.ovn.records import DatapathRecord, PortRecord, network_of, port_record

DATABASE = "OVN_Southbound"
#: the tables and columns replicated
COLUMNS: dict[str, list[str]] = {
    "Port_Binding": ["datapath", "mac", "chassis", "external_ids", "logical_port"],
    "Datapath_Binding": ["external_ids"],
    "Chassis": ["name"],
}


@frozen
class Synced:
    """The replica is in sync with C{remote}: these are all the rows."""

    remote: str
    datapaths: tuple[DatapathRecord, ...]
    ports: tuple[PortRecord, ...]


@frozen
class Changed:
    """Rows changed (C{(uuid, record)}; C{(uuid, None)}: deleted), in sync with C{remote}."""

    remote: str
    datapaths: tuple[tuple[str, DatapathRecord | None], ...]
    ports: tuple[tuple[str, PortRecord | None], ...]


@frozen
class Lost:
    """The replica is no longer in sync (C{remote}: the member it was in sync with)."""

    remote: str | None
    reason: str


@frozen
class Note:
    """A line for the log, at C{level} (C{info}, C{warn} or C{error})."""

    level: str
    text: str


@frozen
class Stopped:
    """The monitor's thread has ended."""


Event = Synced | Changed | Lost | Note | Stopped


# -- rows to records ------------------------------------------------------------------------------

def _uuid_of(atom: Any, base: Any) -> Any:
    """A reference as its uuid (what L{_column} asks of C{Datum.to_python})."""
    return atom


def _column(row: Any, name: str) -> Any:
    """
    A column's value, references as uuids.  The IDL row's attribute re-checks and re-builds the
    value on every read (for transactions this monitor never makes), a third of a first sync's
    time: the replicated datum is read directly when the row has one.
    """
    data = getattr(row, "_data", None)
    datum = data.get(name) if isinstance(data, dict) else None
    if datum is None:
        return getattr(row, name)
    return datum.to_python(_uuid_of)


def _uuid_text(value: Any) -> str | None:
    """A reference (a row, or its uuid) as text; None for none."""
    if value is None or value == []:
        return None
    if isinstance(value, list):
        value = value[0]
    return str(getattr(value, "uuid", value))


def port_from_row(row: Any) -> PortRecord:
    """A L{PortRecord} from an IDL C{Port_Binding} row."""
    return port_record(
        str(row.uuid), _uuid_text(_column(row, "datapath")), _column(row, "mac"), bool(_column(row, "chassis")),
        _column(row, "external_ids"), _column(row, "logical_port"),
    )


def datapath_from_row(row: Any) -> DatapathRecord:
    """A L{DatapathRecord} from an IDL C{Datapath_Binding} row."""
    return DatapathRecord(str(row.uuid), network_of(_column(row, "external_ids")))


@define
class ChangeTracker:
    """
    Turns what one C{run()} of the IDL did into events: the IDL calls L{notice} for each row it
    changed (its C{notify} hook), then L{after_run} looks at the connection.

    A (re)connection may load the whole database again (the IDL clears its tables without a
    notice when C{monitor_cond_since} cannot resume), so each time the IDL is in sync after not
    being so, the event is a whole L{Synced} snapshot, and the notices of that run are dropped.
    """

    in_sync: bool = False
    remote: str | None = None
    session: int | None = None
    _ports: list[tuple[str, PortRecord | None]] = field(factory=list)
    _datapaths: list[tuple[str, DatapathRecord | None]] = field(factory=list)

    def notice(self, table: str, deleted: bool, row: Any) -> None:
        """One row changed (only rows of the data tables, and only while in sync, are kept)."""
        if not self.in_sync:
            return
        uuid = str(row.uuid)
        if table == "Port_Binding":
            self._ports.append((uuid, None if deleted else port_from_row(row)))
        elif table == "Datapath_Binding":
            self._datapaths.append((uuid, None if deleted else datapath_from_row(row)))

    def after_run(self, in_sync: bool, session: int, remote: str, tables: Callable[[str], Iterable[Any]]) -> list[Event]:
        """
        The events of the run that just ended.

        @param in_sync: whether the IDL is connected and monitoring.
        @param session: the connection's sequence number (it changes with every reconnection).
        @param remote: the member connected to (or last tried).
        @param tables: the rows of a replicated table.
        """
        events: list[Event] = []
        ports, datapaths = self._ports, self._datapaths
        self._ports, self._datapaths = [], []
        if in_sync and (not self.in_sync or session != self.session):
            if self.in_sync:
                events.append(Lost(self.remote, "reconnected"))
            snapshot = Synced(
                remote,
                tuple(datapath_from_row(r) for r in tables("Datapath_Binding")),
                tuple(port_from_row(r) for r in tables("Port_Binding")),
            )
            events.append(snapshot)
        elif in_sync and (ports or datapaths):
            events.append(Changed(remote, tuple(datapaths), tuple(ports)))
        elif not in_sync and self.in_sync:
            events.append(Lost(self.remote, f"connection to {self.remote} closed or no longer usable"))
        self.in_sync, self.session = in_sync, session
        if in_sync:
            self.remote = remote
        return events


# -- the thread ---------------------------------------------------------------------------------

@define(eq=False)
class SouthboundMonitor:
    """
    The monitor's thread (see the module docstring).

    @ivar remotes: the members (C{tcp:}, C{ssl:}, C{unix:} remotes).
    @ivar deliver: how an event reaches the reactor (called in the monitor's thread).
    @ivar probe_interval: milliseconds of silence before an echo probe (0: none; C{unix:}
        remotes never need one).
    @ivar ssl: C{(private key, certificate, CA certificates)} for C{ssl:} remotes, or None.
    """

    remotes: tuple[str, ...]
    deliver: Callable[[Event], None]
    probe_interval: int = 60000
    ssl: tuple[str, str, str] | None = None
    retry_after_error: float = 1.0
    _stopping: threading.Event = field(factory=threading.Event, init=False)
    _thread: threading.Thread | None = field(default=None, init=False)
    _wake: tuple[int, int] | None = field(default=None, init=False)

    def start(self) -> None:
        """Start the thread."""
        import ovs.stream

        from mdsvc.lookup.ovn.fastjson import install

        install()  # without the library's C parser, a first sync of 10,000 ports is 3x slower

        if self.ssl is not None:
            key, certificate, ca = self.ssl
            ovs.stream.Stream.ssl_set_private_key_file(key)
            ovs.stream.Stream.ssl_set_certificate_file(certificate)
            ovs.stream.Stream.ssl_set_ca_cert_file(ca)
        self._stopping.clear()
        self._wake = os.pipe()
        for fd in self._wake:
            os.set_blocking(fd, False)
        self._thread = threading.Thread(target=self._main, name="mdsvc-ovn-sb-monitor", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Ask the thread to end (it delivers L{Stopped} when it has)."""
        self._stopping.set()
        if self._wake is not None:
            try:
                os.write(self._wake[1], b"x")
            except OSError:
                pass

    @property
    def running(self) -> bool:
        """Whether the thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    def _main(self) -> None:
        try:
            while not self._stopping.is_set():
                try:
                    self._monitor()
                except Exception as e:  # a bug or a library error: say so, start over
                    self.deliver(Lost(None, f"monitor error: {type(e).__name__}: {e}"))
                    self.deliver(Note("error", f"OVN Southbound monitor failed ({type(e).__name__}: {e}); starting over"))
                    self._stopping.wait(self.retry_after_error)
        finally:
            wake, self._wake = self._wake, None
            if wake is not None:
                for fd in wake:
                    os.close(fd)
            self.deliver(Stopped())

    def _block(self, poller: Any) -> None:
        """Wait for the IDL's sockets and timers, or for L{stop}."""
        import ovs.poller

        assert self._wake is not None
        poller.fd_wait(self._wake[0], ovs.poller.POLLIN)
        poller.block()
        try:
            os.read(self._wake[0], 64)
        except BlockingIOError:
            pass

    def _monitor(self) -> None:
        """Fetch the schema, then keep the IDL running until stopped."""
        import ovs.db.idl
        import ovs.poller

        schema = self._schema()
        if schema is None:
            return
        helper = ovs.db.idl.SchemaHelper(schema_json=schema)
        for table, columns in COLUMNS.items():
            helper.register_columns(table, columns)
        tracker = ChangeTracker()
        idl = _idl_class()(",".join(self.remotes), helper, tracker, probe_interval=self.probe_interval, leader_only=False)
        try:
            while not self._stopping.is_set():
                idl.run()
                in_sync = idl._session.is_connected() and idl.state == idl.IDL_S_MONITORING
                for event in tracker.after_run(in_sync, idl._session.get_seqno(), idl.session_name(),
                                               lambda name: idl.tables[name].rows.values()):
                    self.deliver(event)
                poller = ovs.poller.Poller()
                idl.wait(poller)
                self._block(poller)
        finally:
            idl.close()

    def _schema(self) -> Any:
        """The C{OVN_Southbound} schema from the first member that answers (None: stopped first)."""
        import ovs.jsonrpc
        import ovs.poller

        session = ovs.jsonrpc.Session.open_multiple(list(self.remotes), probe_interval=self.probe_interval)
        request, asked_on, told = None, None, set()
        try:
            while not self._stopping.is_set():
                session.run()
                if session.is_connected():
                    if request is None or asked_on != session.get_seqno():
                        request = ovs.jsonrpc.Message.create_request("get_schema", [DATABASE])
                        asked_on = session.get_seqno()
                        session.send(request)
                    message = session.recv()
                    if message is not None and message.id == request.id:
                        if message.type == ovs.jsonrpc.Message.T_REPLY:
                            return message.result
                        problem = f"{session.get_name()} has no {DATABASE} database ({message.error}); trying the others"
                        if problem not in told:
                            told.add(problem)
                            self.deliver(Note("warn", problem))
                        session.force_reconnect()
                    if message is not None:
                        continue
                poller = ovs.poller.Poller()
                session.wait(poller)
                session.recv_wait(poller)
                self._block(poller)
            return None
        finally:
            session.close()


_IDL_CLASS: list[type] = []


def _idl_class() -> type:
    """The IDL subclass whose C{notify} feeds a L{ChangeTracker} (made once, on first use)."""
    if _IDL_CLASS:
        return _IDL_CLASS[0]
    import ovs.db.idl

    class ReplicaIdl(ovs.db.idl.Idl):
        """An IDL telling its L{ChangeTracker} of every row change of the data tables."""

        def __init__(self, remote: str, helper: Any, tracker: ChangeTracker, **kwargs: Any) -> None:
            super().__init__(remote, helper, **kwargs)
            self.tracker = tracker

        def notify(self, event: str, row: Any, updates: Any = None) -> None:
            """The IDL's hook, for each row it creates, updates or deletes."""
            table = row._table.name
            if table in COLUMNS:
                self.tracker.notice(table, event == ovs.db.idl.ROW_DELETE, row)

    _IDL_CLASS.append(ReplicaIdl)
    return ReplicaIdl


__all__ = ["SouthboundMonitor", "ChangeTracker", "Synced", "Changed", "Lost", "Note", "Stopped", "COLUMNS"]
