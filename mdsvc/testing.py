# -*- test-case-name: tests.test_api_resource -*-
"""
In-memory fakes of mdsvc's interfaces and of its pooled HTTP client, for tests (here and in
vendors' plugins): L{MemoryInstanceStore}, L{MemoryLookup}, and L{stub_pool} / L{connect_to},
which put an HTTP handler behind an L{HTTPPool} without a socket.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from attrs import define, evolve, field
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from zope.interface import implementer

from mdsvc.http import LeanHTTPFactory
from mdsvc.httpclient import HTTPPool
from mdsvc.interfaces import AmbiguousAddress, ICachingLookup, IInstanceStore
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


@implementer(ICachingLookup)
@define
class MemoryLookup:
    """
    An L{ICachingLookup} over a dict: C{{("network", id, ip or mac): (instance, project)}} (or
    C{"router"}); records every call and every L{forget} (it keeps nothing itself), and can be
    made to fail.
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
        """See L{ICachingLookup.forget}: records that the agent asked to drop a kept answer."""
        self.forgotten.append((ip, network_id, router_id, mac))


# -- the pooled HTTP client, in memory (as treq ships StubTreq) -----------------------------------

class Pipe:
    """One direction of an in-memory connection: what one side writes, the other receives at once
    (a transport for L{connect_to}; its write buffer never fills)."""

    disconnecting = False

    def __init__(self, host: IPv4Address, peer: IPv4Address) -> None:
        self.host, self.peer = host, peer
        self.protocol: Any = None
        self.other: Pipe | None = None
        self.connected = True

    def write(self, data: bytes) -> None:
        if self.connected and self.other is not None and self.other.protocol is not None:
            self.other.protocol.dataReceived(data)

    def writeSequence(self, data: list[bytes]) -> None:
        self.write(b"".join(data))

    def loseConnection(self) -> None:
        if not self.connected:
            return
        self.connected = False
        assert self.other is not None
        self.other.connected = False
        self.protocol.connectionLost(Failure(ConnectionDone()))
        self.other.protocol.connectionLost(Failure(ConnectionDone()))

    abortConnection = loseConnection

    def getPeer(self) -> IPv4Address:
        return self.peer

    # the producer side of a transport: writes are delivered at once, so the buffer never fills
    producer: Any = None

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        self.producer = producer

    def unregisterProducer(self) -> None:
        self.producer = None

    def pauseProducing(self) -> None:
        pass

    def resumeProducing(self) -> None:
        pass

    def getHost(self) -> IPv4Address:
        return self.host


def connect_to_protocol(make_server: Callable[[Any], Any], peer: str = "127.0.0.1") -> Callable[[Any], Deferred[Any]]:
    """
    A C{connect(factory)} for L{mdsvc.httpclient.HTTPPool} whose every connection reaches a
    server protocol made by C{make_server(client_address)}, over in-memory L{Pipe}s.
    C{connect.connections} lists the (to server, to client) pipes made.
    """
    connections: list[tuple[Pipe, Pipe]] = []

    def connect(factory: Any) -> Deferred[Any]:
        client_address, server_address = IPv4Address("TCP", peer, 50000 + len(connections)), IPv4Address("TCP", "127.0.0.1", 8775)
        to_server, to_client = Pipe(client_address, server_address), Pipe(server_address, client_address)
        to_server.other, to_client.other = to_client, to_server
        client = factory.buildProtocol(server_address)
        server = make_server(client_address)
        to_server.protocol, to_client.protocol = client, server
        connections.append((to_server, to_client))
        server.makeConnection(to_client)
        client.makeConnection(to_server)
        return succeed(client)

    connect.connections = connections  # type: ignore[attr-defined]
    return connect


def connect_to(handler: Any, clock: Clock | None = None, peer: str = "127.0.0.1") -> Callable[[Any], Deferred[Any]]:
    """
    A C{connect(factory)} for L{mdsvc.httpclient.HTTPPool} that reaches C{handler} (an
    L{mdsvc.http.Handler}) served by a real L{LeanHTTPFactory} over in-memory connections:
    everything the pool and the server do happens, synchronously, with no socket.
    C{connect.connections} lists the (to server, to client) pipes made.
    """
    return connect_to_protocol(LeanHTTPFactory(handler, clock or Clock()).buildProtocol, peer)


def stub_pool(handler: Any, host: bytes = b"api", clock: Clock | None = None, **options: Any) -> HTTPPool:
    """
    An L{HTTPPool} whose server is C{handler}, in memory: what a test of code that takes a pool
    (an agent, a proxy's upstream) needs instead of a socket.
    """
    clock = clock or Clock()
    return HTTPPool(connect_to(handler, clock), host, clock=clock, **options)


def services_in(tree: Any) -> list[Any]:
    """C{tree} and every service below it (a L{twisted.application.service.MultiService}'s children), depth first."""
    return [tree] + [s for child in getattr(tree, "services", []) for s in services_in(child)]
