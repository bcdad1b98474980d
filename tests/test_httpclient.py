"""The lean pooled HTTP client: reuse, queueing, retries, chunked answers, failures."""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import Any

from twisted.internet import reactor
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.endpoints import UNIXClientEndpoint
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.protocol import Protocol
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase, TestCase

from mdsvc.http import HTTPRequest, HTTPResponse, LeanHTTPFactory
from mdsvc.httpclient import BadResponse, ConnectionFailed, HTTPPool, RequestTimedOut, relayed_headers
from tests.loopback import Pipe, connect_to


def echo(request: HTTPRequest) -> HTTPResponse:
    return HTTPResponse(200, ((b"Content-Type", b"text/plain"), (b"X-Path", request.target)), request.method + b" " + request.body)


def raw_server(script: list[bytes]) -> Any:
    """A connect() whose servers answer each request with the next raw bytes of C{script} (b'' closes)."""
    made: list[Any] = []

    class Scripted(Protocol):
        def dataReceived(self, data: bytes) -> None:
            answer = script.pop(0) if script else b""
            if answer:
                self.transport.write(answer)
            else:
                self.transport.loseConnection()

    def connect(factory: Any) -> Deferred[Any]:
        a, b = IPv4Address("TCP", "127.0.0.1", 1), IPv4Address("TCP", "127.0.0.1", 2)
        to_server, to_client = Pipe(a, b), Pipe(b, a)
        to_server.other, to_client.other = to_client, to_server
        client, server = factory.buildProtocol(b), Scripted()
        to_server.protocol, to_client.protocol = client, server
        server.makeConnection(to_client)
        client.makeConnection(to_server)
        made.append(client)
        return succeed(client)

    connect.made = made  # type: ignore[attr-defined]
    return connect


class PoolTests(SynchronousTestCase):
    """HTTPPool over in-memory connections."""

    def test_request_and_reuse(self) -> None:
        """Method, target, headers and body go out; the answer comes back; the connection is reused."""
        pool = HTTPPool(connect_to(echo), b"api:8775", size=4)
        for n in range(3):
            r = self.successResultOf(pool.request(b"POST", b"/p?%d" % n, [(b"X-A", b"1")], b"body"))
            self.assertEqual((r.code, r.body), (200, b"POST body"))
            self.assertIn((b"X-Path", b"/p?%d" % n), r.headers)
        self.assertEqual(pool.connections_made, 1)
        self.assertEqual(relayed_headers(r), ((b"Content-Type", b"text/plain"), (b"X-Path", b"/p?2")))

    def test_queue_beyond_size(self) -> None:
        """With every connection busy, requests wait their turn and are all answered."""
        waiting: list[Deferred[HTTPResponse]] = []

        def slow(request: HTTPRequest) -> Deferred[HTTPResponse]:
            d: Deferred[HTTPResponse] = Deferred()
            waiting.append(d)
            return d

        pool = HTTPPool(connect_to(slow), b"api", size=2, ceiling=2)
        results = [pool.request(b"GET", b"/%d" % n, []) for n in range(5)]
        self.assertEqual((pool.connections_made, len(waiting)), (2, 2))
        while waiting:
            waiting.pop(0).callback(HTTPResponse(200, (), b"ok"))
        self.assertEqual([self.successResultOf(d).body for d in results], [b"ok"] * 5)
        self.assertEqual(pool.connections_made, 2)

    def slow_pool(self, **kw: Any) -> tuple[HTTPPool, list[tuple[HTTPRequest, Deferred[HTTPResponse]]], Clock]:
        waiting: list[tuple[HTTPRequest, Deferred[HTTPResponse]]] = []

        def slow(request: HTTPRequest) -> Deferred[HTTPResponse]:
            d: Deferred[HTTPResponse] = Deferred()
            waiting.append((request, d))
            return d

        clock = Clock()
        return HTTPPool(connect_to(slow), b"api", clock=clock, **kw), waiting, clock

    def test_pipelining(self) -> None:
        """With the pool full, GETs go behind in-flight ones (up to depth) and come back in order."""
        pool, waiting, _ = self.slow_pool(size=1, depth=3, ceiling=1)
        results = [pool.request(b"GET", b"/%d" % n, []) for n in range(4)]
        self.assertEqual(pool.connections_made, 1)
        answered = []
        while waiting:
            request, d = waiting.pop(0)
            answered.append(request.target)
            d.callback(HTTPResponse(200, (), request.target))
        self.assertEqual(answered, [b"/0", b"/1", b"/2", b"/3"])
        self.assertEqual([self.successResultOf(d).body for d in results], [b"/0", b"/1", b"/2", b"/3"])

    def test_post_not_pipelined(self) -> None:
        """A POST waits for a connection of its own, and nothing goes behind a POST."""
        pool, waiting, _ = self.slow_pool(size=1, depth=8, ceiling=1)
        post = pool.request(b"POST", b"/password", [], b"pw")
        get = pool.request(b"GET", b"/x", [])
        self.assertEqual(len(pool._live[0].pending), 1)
        waiting.pop(0)[1].callback(HTTPResponse(200, (), b"stored"))
        self.assertEqual(self.successResultOf(post).body, b"stored")
        waiting.pop(0)[1].callback(HTTPResponse(200, (), b"x"))
        self.assertEqual(self.successResultOf(get).body, b"x")

    def test_stalled_connection_skipped(self) -> None:
        """A connection waiting too long for an answer takes no more GETs: another is opened."""
        pool, waiting, clock = self.slow_pool(size=1, depth=8, stall=0.05, ceiling=4)
        pool.request(b"GET", b"/slow", [])
        clock.advance(0.1)
        pool.request(b"GET", b"/quick", [])
        self.assertEqual(pool.connections_made, 2)
        self.assertEqual([r.target for r, _ in waiting], [b"/slow", b"/quick"])

    def test_cancel_behind_keeps_connection(self) -> None:
        """Cancelling a pipelined request drops only its answer; the one ahead is still answered."""
        pool, waiting, _ = self.slow_pool(size=1, depth=4, ceiling=1)
        first = pool.request(b"GET", b"/1", [])
        second = pool.request(b"GET", b"/2", [])
        second.cancel()
        self.failureResultOf(second)
        waiting.pop(0)[1].callback(HTTPResponse(200, (), b"one"))
        self.assertEqual(self.successResultOf(first).body, b"one")
        waiting.pop(0)[1].callback(HTTPResponse(200, (), b"two"))
        self.assertEqual(len(pool._live), 1)

    def test_timeout(self) -> None:
        """A request without an answer in time fails as timed out, also one still waiting for a connection."""
        pool, waiting, clock = self.slow_pool(size=1, depth=1, ceiling=1)
        sent = pool.request(b"GET", b"/hang", [], timeout=1)
        queued = pool.request(b"GET", b"/later", [], timeout=2)
        clock.advance(0.75)
        self.assertNoResult(sent)
        clock.advance(0.25)
        self.failureResultOf(sent, RequestTimedOut)
        # the connection waiting for that answer is gone; the queued request got a new one
        self.assertEqual((pool.connections_made, len(pool._live)), (2, 1))
        clock.advance(1)
        self.failureResultOf(queued, RequestTimedOut)
        self.assertFalse(pool._sweeper.running)

    def test_retry_idempotent_on_stale_connection(self) -> None:
        """A GET on a reused connection the server dropped is sent again on a fresh one."""
        connect = raw_server([b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\na", b"", b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nb"])
        pool = HTTPPool(connect, b"api")
        self.assertEqual(self.successResultOf(pool.request(b"GET", b"/", [])).body, b"a")
        self.assertEqual(self.successResultOf(pool.request(b"GET", b"/", [])).body, b"b")
        self.assertEqual(len(connect.made), 2)

    def test_no_retry_for_post(self) -> None:
        """A POST is never sent twice."""
        connect = raw_server([b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\na", b""])
        pool = HTTPPool(connect, b"api")
        self.successResultOf(pool.request(b"GET", b"/", []))
        self.failureResultOf(pool.request(b"POST", b"/", [], b"pw"), ConnectionFailed)
        self.assertEqual(len(connect.made), 1)

    def test_chunked_and_close_delimited(self) -> None:
        """Chunked answers are decoded; an answer without length ends with the connection."""
        connect = raw_server([b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n"])
        self.assertEqual(self.successResultOf(HTTPPool(connect, b"api").request(b"GET", b"/", [])).body, b"abcde")
        connect = raw_server([b"HTTP/1.0 200 OK\r\n\r\nuntil the end"])
        pool = HTTPPool(connect, b"api")
        d = pool.request(b"GET", b"/", [])
        self.assertNoResult(d)
        connect.made[0].transport.loseConnection()
        self.assertEqual(self.successResultOf(d).body, b"until the end")

    def test_bad_answers(self) -> None:
        """A non-HTTP answer is BadResponse; a refused connection is ConnectionFailed."""
        self.failureResultOf(HTTPPool(raw_server([b"SSH-2.0\r\n\r\n"]), b"api").request(b"GET", b"/", []), BadResponse)
        self.failureResultOf(HTTPPool(lambda f: fail(ConnectionRefusedError()), b"api").request(b"GET", b"/", []), ConnectionFailed)

    def test_cancel_aborts_connection(self) -> None:
        """Cancelling a request drops its connection (it is in an unknown state)."""
        pool = HTTPPool(connect_to(lambda r: Deferred()), b"api")
        d = pool.request(b"GET", b"/", [])
        d.cancel()
        self.failureResultOf(d)
        self.assertEqual(pool._live, [])


class RealSocketTests(TestCase):
    """HTTPPool against a real LeanHTTP server on a UNIX socket."""

    async def test_unix_socket(self) -> None:
        """Requests over a real socket, reused, and a refused socket after the server goes."""
        directory = tempfile.mkdtemp(prefix="mdsvc-")
        self.addCleanup(shutil.rmtree, directory, True)
        path = os.path.join(directory, "s")
        port = reactor.listenUNIX(path, LeanHTTPFactory(echo, reactor))
        pool = HTTPPool(UNIXClientEndpoint(reactor, path).connect, b"agent")
        for _ in range(3):
            r = await pool.request(b"GET", b"/x", [])
            self.assertEqual(r.body, b"GET ")
        self.assertEqual(pool.connections_made, 1)
        await pool.close()
        await port.stopListening()
        with self.assertRaises(ConnectionFailed):
            await pool.request(b"GET", b"/x", [])
