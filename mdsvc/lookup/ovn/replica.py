# -*- test-case-name: tests.test_ovn_replica -*-
"""
L{SouthboundReplica}: the in-memory index of the Southbound rows the C{ovn} lookup reads.

It is fed whole (L{SouthboundReplica.replace}, after each (re)connection) and by changes
(L{SouthboundReplica.apply}), both in the reactor's thread, and answers which ports hold an
address in a network with a few dict reads: Neutron's agent scans every C{Port_Binding} per
request (neutron spec §11 item 10); this index does not.  Every change names the
C{(network id, address word)} keys whose answer it may change, to the listeners (the agent's
lookup cache is told to forget them: L{mdsvc.lookup.ovn.front}).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from attrs import define, field

from mdsvc.lookup.ovn.records import DatapathRecord, PortRecord

Key = tuple[str, str]
"""C{(network id, address word)}: what a change may change the answer of."""


@define(eq=False)
class SouthboundReplica:
    """
    Datapaths and port bindings, indexed by C{(datapath, address word)}.

    @ivar listeners: called with the set of L{Key}s each change touches.
    """

    listeners: list[Callable[[set[Key]], None]] = field(factory=list)
    _ports: dict[str, PortRecord] = field(factory=dict, init=False)
    _datapaths: dict[str, str | None] = field(factory=dict, init=False)
    _network_datapaths: dict[str, tuple[str, ...]] = field(factory=dict, init=False)
    _datapath_ports: dict[str, set[str]] = field(factory=dict, init=False)
    _index: dict[tuple[str, str], tuple[str, ...]] = field(factory=dict, init=False)

    # -- reading -------------------------------------------------------------------------------

    def ports(self, network_id: str, ip: str, mac: str | None = None) -> list[PortRecord]:
        """
        The bound port bindings of the network C{network_id} whose first C{mac} entry holds
        C{mac} (when given) or C{ip} (Neutron's C{get_network_port_bindings_by_ip}: either
        matches; C{ip} in normal form, C{mac} lower-case).
        """
        datapaths = self._network_datapaths.get(network_id)
        if not datapaths:
            return []
        if mac is None and len(datapaths) == 1:  # what nearly every lookup is
            uuids = self._index.get((datapaths[0], ip))
            return [p for p in map(self._ports.__getitem__, uuids) if p.bound] if uuids else []
        found: dict[str, PortRecord] = {}
        for datapath in datapaths:
            for word in (ip,) if mac is None else (mac, ip):
                for uuid in self._index.get((datapath, word), ()):
                    port = self._ports[uuid]
                    if port.bound:
                        found[uuid] = port
        return list(found.values())

    @property
    def port_count(self) -> int:
        """How many port bindings are held."""
        return len(self._ports)

    @property
    def network_count(self) -> int:
        """How many networks (datapath names) are known."""
        return len(self._network_datapaths)

    def __len__(self) -> int:
        """How many rows are held (port bindings and datapaths)."""
        return len(self._ports) + len(self._datapaths)

    # -- writing -------------------------------------------------------------------------------

    def replace(self, datapaths: Iterable[DatapathRecord], ports: Iterable[PortRecord]) -> set[Key]:
        """
        Hold exactly these rows from now on (the monitor's whole snapshot after a connection);
        the listeners hear of every key whose rows differ from those held before.

        @return: the keys that changed.
        """
        new_datapaths = {d.uuid: d.network_id for d in datapaths}
        new_ports = {p.uuid: p for p in ports}
        gone_datapaths = [(u, None) for u in self._datapaths if u not in new_datapaths]
        gone_ports = [(u, None) for u in self._ports if u not in new_ports]
        changed_datapaths = [(u, DatapathRecord(u, n)) for u, n in new_datapaths.items() if self._datapaths.get(u, ...) != n]
        changed_ports = [(u, p) for u, p in new_ports.items() if self._ports.get(u) != p]
        datapath_changes: list[tuple[str, DatapathRecord | None]] = [*changed_datapaths, *gone_datapaths]
        port_changes: list[tuple[str, PortRecord | None]] = [*changed_ports, *gone_ports]
        return self.apply(datapath_changes, port_changes)

    def apply(self, datapaths: Iterable[tuple[str, DatapathRecord | None]],
              ports: Iterable[tuple[str, PortRecord | None]]) -> set[Key]:
        """
        Apply changes: each C{(uuid, record)} inserts or updates a row, C{(uuid, None)} deletes
        it.  New and changed datapaths are applied first, then ports, then deleted datapaths (so
        that the keys of a network's ports are known while they go, and when they come).

        @return: the keys that changed (also given to the listeners, when there are any).
        """
        changed: set[Key] = set()
        datapaths = list(datapaths)
        for uuid, datapath in datapaths:
            if datapath is not None:
                self._set_datapath(uuid, datapath.network_id, changed)
        for uuid, port in ports:
            self._set_port(uuid, port, changed)
        for uuid, datapath in datapaths:
            if datapath is None:
                self._set_datapath(uuid, None, changed, delete=True)
        if changed:
            for listener in self.listeners:
                listener(changed)
        return changed

    def _keys(self, port: PortRecord) -> set[Key]:
        network = self._datapaths.get(port.datapath) if port.datapath is not None else None
        return set() if network is None else {(network, word) for word in port.addresses}

    def _set_port(self, uuid: str, port: PortRecord | None, changed: set[Key]) -> None:
        old = self._ports.pop(uuid, None)
        if old is not None:
            changed |= self._keys(old)
            if old.datapath is not None:
                for word in old.addresses:
                    self._unindex((old.datapath, word), uuid)
                members = self._datapath_ports.get(old.datapath)
                if members is not None:
                    members.discard(uuid)
                    if not members:
                        del self._datapath_ports[old.datapath]
        if port is None:
            return
        self._ports[uuid] = port
        changed |= self._keys(port)
        if port.datapath is not None:
            for word in port.addresses:
                key = (port.datapath, word)
                self._index[key] = self._index.get(key, ()) + (uuid,)
            self._datapath_ports.setdefault(port.datapath, set()).add(uuid)

    def _unindex(self, key: tuple[str, str], uuid: str) -> None:
        held = tuple(u for u in self._index.get(key, ()) if u != uuid)
        if held:
            self._index[key] = held
        else:
            self._index.pop(key, None)

    def _set_datapath(self, uuid: str, network: str | None, changed: set[Key], delete: bool = False) -> None:
        known = uuid in self._datapaths
        old = self._datapaths.get(uuid)
        if known and old == network and not delete:
            return
        # the ports of this datapath answer for another network (or none) from now on
        for port_uuid in self._datapath_ports.get(uuid, ()):
            changed |= self._keys(self._ports[port_uuid])
        if old is not None:
            held = tuple(d for d in self._network_datapaths.get(old, ()) if d != uuid)
            if held:
                self._network_datapaths[old] = held
            else:
                self._network_datapaths.pop(old, None)
        if delete:
            self._datapaths.pop(uuid, None)
            return
        self._datapaths[uuid] = network
        if network is not None:
            self._network_datapaths[network] = self._network_datapaths.get(network, ()) + (uuid,)
        for port_uuid in self._datapath_ports.get(uuid, ()):
            changed |= self._keys(self._ports[port_uuid])
