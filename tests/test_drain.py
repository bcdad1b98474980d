"""Stopping without dropping a request: L{mdsvc.http.LeanHTTPFactory.drain} and L{mdsvc.drain.Drain}."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import capturedLogs, formatEvent
from twisted.trial.unittest import SynchronousTestCase

from mdsvc.drain import Drain
from mdsvc.http import HTTPRequest, HTTPResponse, LeanHTTPFactory
from tests.http import parse_response


class Server:
    """A factory over a handler whose answers the test releases, and its connections."""

    def __init__(self) -> None:
        self.clock = Clock()
        self.pending: list[Deferred[HTTPResponse]] = []
        self.factory = LeanHTTPFactory(self.handle, self.clock)

    def handle(self, request: HTTPRequest) -> Any:
        if request.target == b"/slow":
            d: Deferred[HTTPResponse] = Deferred()
            self.pending.append(d)
            return d
        return succeed(HTTPResponse(200, ((b"Content-Type", b"text/plain"),), b"ok"))

    def connect(self) -> tuple[Any, StringTransport]:
        from twisted.internet.address import IPv4Address

        protocol = self.factory.buildProtocol(IPv4Address("TCP", "10.0.0.5", 4000))
        transport = StringTransport(peerAddress=IPv4Address("TCP", "10.0.0.5", 4000))
        protocol.makeConnection(transport)
        return protocol, transport

    def close_if_asked(self, protocol: Any, transport: StringTransport) -> bool:
        """What the reactor does for a transport asked to close: the protocol's connectionLost."""
        if transport.disconnecting:
            protocol.connectionLost(None)
            return True
        return False


def answers(transport: StringTransport) -> list[bytes]:
    """The status line and Connection header of each answer written."""
    out = []
    for raw in transport.value().split(b"HTTP/1.1 ")[1:]:
        response = parse_response(b"HTTP/1.1 " + raw)
        out.append(b"%d %s" % (response.code, response.header(b"connection") or b"keep"))
    return out


class FactoryDrainTests(SynchronousTestCase):
    """What a draining server does with each kind of connection."""

    def test_nothing_open(self) -> None:
        """No connection: drained at once."""
        self.successResultOf(Server().factory.drain())

    def test_request_in_flight(self) -> None:
        """A request being answered is answered, with Connection: close; then the drain is over."""
        server = Server()
        protocol, transport = server.connect()
        protocol.dataReceived(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
        drained = server.factory.drain()
        self.assertNoResult(drained)
        server.pending.pop().callback(HTTPResponse(200, (), b"late"))
        self.assertEqual(answers(transport), [b"200 close"])
        self.assertTrue(server.close_if_asked(protocol, transport))
        self.successResultOf(drained)

    def test_pipelined(self) -> None:
        """Requests already read are all answered; only the last answer closes."""
        server = Server()
        protocol, transport = server.connect()
        protocol.dataReceived(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\nGET /fast HTTP/1.1\r\nHost: x\r\n\r\n")
        drained = server.factory.drain()
        server.pending.pop().callback(HTTPResponse(200, (), b"late"))
        self.assertEqual(answers(transport), [b"200 keep", b"200 close"])
        server.close_if_asked(protocol, transport)
        self.successResultOf(drained)

    def test_idle_keep_alive(self) -> None:
        """A kept-alive connection between requests is closed after the grace, unless a request comes."""
        server = Server()
        protocol, transport = server.connect()
        protocol.dataReceived(b"GET /fast HTTP/1.1\r\nHost: x\r\n\r\n")
        drained = server.factory.drain(0.5)
        server.clock.advance(0.4)
        self.assertFalse(transport.disconnecting)
        server.clock.advance(1.0)  # (deadlines are swept once a second)
        self.assertTrue(server.close_if_asked(protocol, transport))
        self.successResultOf(drained)

    def test_request_within_grace(self) -> None:
        """A request arriving within the grace is answered, with Connection: close."""
        server = Server()
        protocol, transport = server.connect()
        protocol.dataReceived(b"GET /fast HTTP/1.1\r\nHost: x\r\n\r\n")
        server.factory.drain(0.5)
        protocol.dataReceived(b"GET /fast HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertEqual(answers(transport), [b"200 keep", b"200 close"])

    def test_fresh_connection(self) -> None:
        """A connection that has not sent its first request yet is not cut: its request is answered, then it closes."""
        server = Server()
        protocol, transport = server.connect()
        drained = server.factory.drain(0.5)
        server.clock.advance(5)
        self.assertFalse(transport.disconnecting)
        protocol.dataReceived(b"GET /fast HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertEqual(answers(transport), [b"200 close"])
        server.close_if_asked(protocol, transport)
        self.successResultOf(drained)

    def test_accepted_while_draining(self) -> None:
        """A connection accepted after the drain began drains too."""
        server = Server()
        server.factory.drain()
        protocol, transport = server.connect()
        protocol.dataReceived(b"GET /fast HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertEqual(answers(transport), [b"200 close"])


class DrainServiceTests(SynchronousTestCase):
    """L{Drain}: every factory's connections, bounded by the timeout."""

    def test_waits(self) -> None:
        """stopService fires when the connections are answered and closed."""
        server = Server()
        protocol, transport = server.connect()
        protocol.dataReceived(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
        drain = Drain(server.clock, [server.factory], 30)
        drain.startService()
        with capturedLogs() as events:
            stopped = drain.stopService()
            self.assertNoResult(stopped)
            server.pending.pop().callback(HTTPResponse(200, (), b"late"))
            server.close_if_asked(protocol, transport)
            self.successResultOf(stopped)
        self.assertIn("answering the requests of 1 open connections", "\n".join(formatEvent(e) for e in events))

    def test_timeout(self) -> None:
        """After the timeout what is still open is cut, and stopService fires."""
        server = Server()
        protocol, transport = server.connect()
        protocol.dataReceived(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
        drain = Drain(server.clock, [server.factory], 2)
        drain.startService()
        with capturedLogs() as events:
            stopped = drain.stopService()
            server.clock.advance(1.9)
            self.assertNoResult(stopped)
            server.clock.advance(0.1)
            self.successResultOf(stopped)
        self.assertTrue(transport.disconnecting)  # (StringTransport's abortConnection)
        self.assertIn("1 connections still open after drain_timeout (2 s)", "\n".join(formatEvent(e) for e in events))

    def test_factories_added_later(self) -> None:
        """The list is read when stopping: a namespace's factory made after start is drained too."""
        factories: list[Any] = []
        drain = Drain(Clock(), factories, 2)
        server = Server()
        factories.append(server.factory)
        drain.startService()
        self.successResultOf(drain.stopService())
        self.assertTrue(server.factory._drain is not None)


class BackendTests(SynchronousTestCase):
    """L{Drain}'s children, the node's backends: stopped only once the drain is over."""

    def drain_with_backend(self, timeout: float = 30) -> tuple[Server, Any, Drain, Any]:
        """A server with a request in flight, and a started drain over it with one child service."""
        from twisted.application.service import Service

        server = Server()
        protocol, transport = server.connect()
        protocol.dataReceived(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
        drain = Drain(server.clock, [server.factory], timeout)
        backend = Service()
        backend.setServiceParent(drain)
        drain.startService()
        self.assertTrue(backend.running)
        return server, (protocol, transport), drain, backend

    def test_after_drain(self) -> None:
        """A backend runs while a request is answered, and is stopped once it is."""
        server, (protocol, transport), drain, backend = self.drain_with_backend()
        stopped = drain.stopService()
        self.assertTrue(backend.running)
        server.pending.pop().callback(HTTPResponse(200, (), b"late"))
        self.assertTrue(backend.running)  # (answered, the connection not closed yet)
        server.close_if_asked(protocol, transport)
        self.successResultOf(stopped)
        self.assertFalse(backend.running)

    def test_after_timeout(self) -> None:
        """Past the drain's timeout the connections are cut, then the backends stopped."""
        server, _, drain, backend = self.drain_with_backend(timeout=2)
        stopped = drain.stopService()
        server.clock.advance(1.9)
        self.assertTrue(backend.running)
        server.clock.advance(0.1)
        self.successResultOf(stopped)
        self.assertFalse(backend.running)

    def test_waits_for_backends(self) -> None:
        """The drain's stop fires once the backends' own stops have."""
        from twisted.application.service import Service

        class Slow(Service):
            def stopService(self) -> Deferred[None]:
                super().stopService()
                self.done: Deferred[None] = Deferred()
                return self.done

        drain = Drain(Clock(), [], 2)
        backend = Slow()
        backend.setServiceParent(drain)
        drain.startService()
        stopped = drain.stopService()
        self.assertNoResult(stopped)
        backend.done.callback(None)
        self.successResultOf(stopped)
