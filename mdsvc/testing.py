# -*- test-case-name: tests.test_api_resource -*-
"""In-memory fakes of mdsvc's interfaces, for tests (here and in vendors' plugins)."""

from __future__ import annotations

from typing import Any

from attrs import define, evolve, field
from twisted.internet.defer import Deferred, fail, succeed
from zope.interface import implementer

from mdsvc.interfaces import AmbiguousAddress, IInstanceLookup, IInstanceStore
from mdsvc.model import Instance


@implementer(IInstanceStore)
@define
class MemoryInstanceStore:
    """
    An L{IInstanceStore} in a dict.

    @ivar addresses: extra address -> uuid entries for remote-address lookups, on top of the
        instances' own fixed IPs.
    @ivar reads: how many loads it served (to check the cache coalesces).
    @ivar broken: when set, every call fails with it.
    """

    instances: dict[str, Instance] = field(factory=dict)
    addresses: dict[str, str] = field(factory=dict)
    providers: dict[str, list[str]] = field(factory=dict)
    reads: int = 0
    broken: Exception | None = None
    hold: list[Deferred[Any]] | None = None

    def add(self, instance: Instance) -> None:
        """Store (or replace) an instance."""
        self.instances[instance.uuid] = instance

    def _result(self, value: Any) -> Deferred[Any]:
        self.reads += 1
        if self.broken is not None:
            return fail(self.broken)
        if self.hold is not None:
            d: Deferred[Any] = Deferred()
            self.hold.append(d)
            d.addCallback(lambda _: value)
            return d
        return succeed(value)

    def get(self, uuid: str) -> Deferred[Instance | None]:
        """See L{IInstanceStore.get}."""
        return self._result(self.instances.get(uuid))

    def by_address(self, ip: str) -> Deferred[Instance | None]:
        """See L{IInstanceStore.by_address}."""
        uuids = {u for u, i in self.instances.items() if any(f.ip == ip for f in i.fixed_ips())}
        if ip in self.addresses:
            uuids.add(self.addresses[ip])
        if len(uuids) > 1:
            self.reads += 1
            return fail(AmbiguousAddress(ip, sorted(uuids)))
        return self._result(self.instances.get(uuids.pop()) if uuids else None)

    def by_provider(self, provider_id: str, ip: str) -> Deferred[list[tuple[str, str | None]] | None]:
        """See L{IInstanceStore.by_provider}: C{providers} maps a provider to its network ids."""
        networks = self.providers.get(provider_id)
        if not networks:
            return succeed(None)
        found = sorted({(i.uuid, i.project_id) for i in self.instances.values() for nic in i.nics
                        if nic.network.id in networks and any(f.ip == ip for f in nic.fixed_ips)})
        return succeed(found)

    def set_password(self, uuid: str, password: str) -> Deferred[bool]:
        """See L{IInstanceStore.set_password}."""
        instance = self.instances.get(uuid)
        if instance is None:
            return fail(KeyError(uuid))
        if instance.password:
            return succeed(False)
        self.instances[uuid] = evolve(instance, password=password)
        return succeed(True)


@implementer(IInstanceLookup)
@define
class MemoryLookup:
    """
    An L{IInstanceLookup} over a dict: C{{("network", id, ip or mac): (instance, project)}} (or
    C{"router"}); records every call and can be made to fail or to forget.
    """

    entries: dict[tuple[str, str, str], tuple[str, str]] = field(factory=dict)
    calls: list[tuple[str, str | None, str | None, str | None]] = field(factory=list)
    forgotten: list[tuple[str, str | None, str | None, str | None]] = field(factory=list)
    broken: Exception | None = None
    name = "memory"

    def lookup(self, ip: str, network_id: str | None = None, router_id: str | None = None, mac: str | None = None) -> Deferred[Any]:
        """See L{IInstanceLookup.lookup}."""
        self.calls.append((ip, network_id, router_id, mac))
        if self.broken is not None:
            return fail(self.broken)
        kind, ident = ("network", network_id) if network_id else ("router", router_id)
        return succeed(self.entries.get((kind, ident or "", mac or ip)))

    def forget(self, ip: str, network_id: str | None = None, router_id: str | None = None, mac: str | None = None) -> None:
        """Record that the agent asked to drop a cached answer."""
        self.forgotten.append((ip, network_id, router_id, mac))
