"""The lean pooled HTTP client: reuse, queueing, retries, chunked answers, failures."""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred, fail
from twisted.internet.endpoints import UNIXClientEndpoint
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.protocol import Protocol
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase, TestCase

from mdsvc.http import HTTPRequest, HTTPResponse, LeanHTTPFactory
from mdsvc.httpclient import BadResponse, ConnectionFailed, HTTPPool, RequestTimedOut, relayed, relayed_headers
from mdsvc.testing import connect_to, connect_to_protocol


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

    connect_raw = connect_to_protocol(lambda _: Scripted())

    def connect(factory: Any) -> Deferred[Any]:
        d = connect_raw(factory)
        d.addCallback(lambda client: made.append(client) or client)
        return d

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
        pool = HTTPPool(connect_to(slow), b"api", clock=clock, **kw)
        # one answered request first: the server echoes its correlation id, so the connection
        # may take pipelined GETs from now on
        warm = pool.request(b"GET", b"/warm", [])
        waiting.pop(0)[1].callback(HTTPResponse(200, (), b"warm"))
        self.successResultOf(warm)
        return pool, waiting, clock

    def test_pipelining(self) -> None:
        """With the pool full, GETs go behind in-flight ones (up to depth) and come back in order."""
        pool, waiting, _ = self.slow_pool(size=1, depth=3, ceiling=1)
        results = [pool.request(b"GET", b"/%d" % n, []) for n in range(4)]
        self.assertEqual(pool.connections_made, 1)
        self.assertEqual(len(pool._live[0].pending), 3)
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


ANSWER = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s"


def answer(body: bytes, *headers: bytes) -> bytes:
    """A raw 200 answer with C{body} and extra header lines."""
    extra = b"".join(h + b"\r\n" for h in headers)
    return b"HTTP/1.1 200 OK\r\n" + extra + b"Content-Length: %d\r\n\r\n" % len(body) + body


class WireSafetyTests(SynchronousTestCase):
    """Nothing unsafe is written; nothing stray is delivered."""

    def test_unsafe_requests_never_sent(self) -> None:
        """A target or header value with CR, LF, NUL, TAB, SP or non-ASCII is refused before any byte is written."""
        from mdsvc.wire import UnsafeRequest

        connect = raw_server([])
        pool = HTTPPool(connect, b"api")
        for target, headers in [
            (b"/x HTTP/1.1\r\nX-Instance-ID: victim\r\n\r\nGET /y", []),
            (b"/a\nb", []), (b"/a\x00", []), (b"/a\tb", []), (b"/a b", []), (b"/\xff", []), (b"relative", []),
            (b"/", [(b"Accept", b"a\r\nX-Instance-ID: victim")]), (b"/", [(b"Accept", b"a\nb")]),
            (b"/", [(b"X Y", b"1")]), (b"/", [(b"X-Ok", b"\tx")]),
        ]:
            with self.assertRaises(UnsafeRequest):
                pool.request(b"GET", target, headers)
        with self.assertRaises(UnsafeRequest):
            pool.request(b"GE T", b"/", [])
        self.assertEqual(connect.made, [])

    def test_extra_answer_in_same_read_never_delivered(self) -> None:
        """A server answering one request twice: the first answer is used, the second goes to no one and the connection is dropped."""
        connect = raw_server([answer(b"mine") + answer(b"attacker"), answer(b"next")])
        pool = HTTPPool(connect, b"api")
        self.assertEqual(self.successResultOf(pool.request(b"GET", b"/a", [])).body, b"mine")
        self.assertTrue(connect.made[0].dead)
        self.assertEqual(self.successResultOf(pool.request(b"GET", b"/b", [])).body, b"next")
        self.assertEqual(len(connect.made), 2)

    def test_late_stray_answer_kills_idle_connection(self) -> None:
        """Bytes arriving on an idle pooled connection abort it; the next request gets a fresh connection."""
        connect = raw_server([answer(b"one"), answer(b"two")])
        pool = HTTPPool(connect, b"api")
        self.assertEqual(self.successResultOf(pool.request(b"GET", b"/a", [])).body, b"one")
        connect.made[0].dataReceived(answer(b"attacker"))
        self.assertEqual(self.successResultOf(pool.request(b"GET", b"/b", [])).body, b"two")
        self.assertEqual(len(connect.made), 2)

    def test_correlation_mismatch(self) -> None:
        """An answer carrying another request's correlation id fails the request; the connection goes."""
        connect = raw_server([answer(b"stray", b"X-Mdsvc-Request-Id: 99")])
        pool = HTTPPool(connect, b"api")
        self.failureResultOf(pool.request(b"GET", b"/a", []), BadResponse)
        self.assertTrue(connect.made[0].dead)

    def test_answer_without_id_stops_pipelining(self) -> None:
        """A lone answer without an id is delivered (it cannot be a stray's victim), and pipelining stops."""
        connect = raw_server([answer(b"a", b"X-Mdsvc-Request-Id: 1"), answer(b"b")])
        pool = HTTPPool(connect, b"api")
        self.assertEqual(self.successResultOf(pool.request(b"GET", b"/a", [])).body, b"a")
        self.assertTrue(pool.echoes)
        self.assertEqual(self.successResultOf(pool.request(b"GET", b"/b", [])).body, b"b")
        self.assertFalse(pool.echoes)

    def test_no_pipelining_to_servers_that_do_not_echo(self) -> None:
        """
        A server that does not echo correlation ids (Nova) never gets a request behind another
        on one connection; mdsvc's own server, once it has echoed, does.
        """
        for echo_ids, expected in [(False, 1), (True, 2)]:
            servers: list[Any] = []

            class Held(Protocol):
                def connectionMade(self, servers: list[Any] = servers) -> None:
                    servers.append(self)
                    self.requests = 0

                def dataReceived(self, data: bytes) -> None:
                    self.requests += data.count(b"\r\n\r\n")

            connect = connect_to_protocol(lambda _: Held())

            pool = HTTPPool(connect, b"api", size=1, depth=8, ceiling=1)
            warm = pool.request(b"GET", b"/warm", [])
            servers[0].transport.write(answer(b"w", b"X-Mdsvc-Request-Id: 1") if echo_ids else answer(b"w"))
            self.successResultOf(warm)
            pool.request(b"GET", b"/1", [])
            pool.request(b"GET", b"/2", [])
            self.assertEqual(servers[0].requests, 1 + expected, echo_ids)

    def test_strict_answers(self) -> None:
        """Ambiguous framing and malformed answers are BadResponse, never guessed at."""
        for raw in [
            b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
            b"HTTP/1.1 200 OK\r\nContent-Length: +3\r\n\r\nabc",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0x3\r\nabc\r\n0\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcX\r\n0\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nX: a\r\n folded\r\nContent-Length: 0\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nX : a\r\nContent-Length: 0\r\n\r\n",
            b"HTTP/1.1x 200 OK\r\nContent-Length: 0\r\n\r\n",
            b"HTTP/1.1 20 OK\r\nContent-Length: 0\r\n\r\n",
            b"HTTP/1.1 101 Switching Protocols\r\n\r\n",
        ]:
            self.failureResultOf(HTTPPool(raw_server([raw]), b"api").request(b"GET", b"/", []), BadResponse)

    def test_head_length_kept(self) -> None:
        """A HEAD answer has no body; the length the server announced is kept for the next hop."""
        connect = raw_server([b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n", answer(b"after")])
        pool = HTTPPool(connect, b"api")
        r = self.successResultOf(pool.request(b"HEAD", b"/", []))
        self.assertEqual((r.body, r.length, relayed(r).length), (b"", 1234, 1234))
        self.assertEqual(self.successResultOf(pool.request(b"GET", b"/", [])).body, b"after")

    def test_unverified_answer_resends_what_was_pipelined_behind_it(self) -> None:
        """An answer without an id on a pipelined connection: it is delivered, the requests behind it go again elsewhere."""
        servers: list[Any] = []

        class Held(Protocol):
            def connectionMade(self) -> None:
                servers.append(self)

        connect = connect_to_protocol(lambda _: Held())

        pool = HTTPPool(connect, b"api", size=1, depth=8, ceiling=2)
        pool.echoes = True  # the server echoed before
        first = pool.request(b"GET", b"/1", [])
        second = pool.request(b"GET", b"/2", [])
        self.assertEqual(len(pool._live[0].pending), 2, "pipelined")
        servers[0].transport.write(answer(b"one"))  # no id: cannot be checked
        self.assertEqual(self.successResultOf(first).body, b"one")
        self.assertEqual(len(servers), 2, "the second request went again on a new connection")
        servers[1].transport.write(answer(b"two"))
        self.assertEqual(self.successResultOf(second).body, b"two")
        self.assertFalse(pool.echoes)

    def test_timeout_while_connecting_is_a_timeout(self) -> None:
        """A request whose connection is still being made when its time runs out fails as timed out, not as unreachable."""
        from twisted.internet.error import DNSLookupError

        clock = Clock()

        def connect(factory: Any) -> Deferred[Any]:
            return Deferred(lambda d: d.errback(DNSLookupError("Couldn't find the hostname")))

        pool = HTTPPool(connect, b"api", clock=clock)
        d = pool.request(b"GET", b"/", [], timeout=1)
        clock.advance(1.25)
        self.failureResultOf(d, RequestTimedOut)


class StubPoolTests(SynchronousTestCase):
    """mdsvc.testing.stub_pool: the test double vendors and tests use instead of a socket."""

    def test_stub_pool(self) -> None:
        """A handler behind a pool, in memory: the request arrives as a server would parse it, the answer comes back."""
        from mdsvc.testing import stub_pool

        seen: list[HTTPRequest] = []

        def handler(request: HTTPRequest) -> HTTPResponse:
            seen.append(request)
            return HTTPResponse(200, ((b"Content-Type", b"text/plain"),), b"hello")

        pool = stub_pool(handler, b"api:8775")
        r = self.successResultOf(pool.request(b"GET", b"/x?y", [(b"X-Thing", b"1")]))
        self.assertEqual((r.code, r.body, seen[0].target, seen[0].headers[b"x-thing"], seen[0].headers[b"host"]),
                         (200, b"hello", b"/x?y", [b"1"], [b"api:8775"]))
