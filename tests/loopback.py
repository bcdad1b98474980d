"""Test helper: an in-memory, synchronous connection from an HTTP client protocol to a handler."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, succeed
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.python.failure import Failure

from mdsvc.http import LeanHTTPFactory


class Pipe:
    """One direction of an in-memory connection: what one side writes, the other receives at once."""

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


def connect_to(handler: Any, clock: Clock | None = None, peer: str = "127.0.0.1") -> Callable[[Any], Deferred[Any]]:
    """A C{connect(factory)} for L{mdsvc.httpclient.HTTPPool} that reaches C{handler} in memory."""
    server_factory = LeanHTTPFactory(handler, clock or Clock())
    connections: list[tuple[Pipe, Pipe]] = []

    def connect(factory: Any) -> Deferred[Any]:
        client_address, server_address = IPv4Address("TCP", peer, 50000 + len(connections)), IPv4Address("TCP", "127.0.0.1", 8775)
        to_server, to_client = Pipe(client_address, server_address), Pipe(server_address, client_address)
        to_server.other, to_client.other = to_client, to_server
        client = factory.buildProtocol(server_address)
        server = server_factory.buildProtocol(client_address)
        to_server.protocol, to_client.protocol = client, server
        connections.append((to_server, to_client))
        server.makeConnection(to_client)
        client.makeConnection(to_server)
        return succeed(client)

    connect.connections = connections  # type: ignore[attr-defined]
    return connect
