"""The lean HTTP/1.1 server protocol."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.error import ConnectionLost
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from mdsvc.http import MAX_HEAD, HTTPRequest, HTTPResponse
from tests.http import Connection, parse_response

OK = HTTPResponse(200, ((b"Content-Type", b"text/plain"),), b"hello")


class Recorder:
    """A handler recording requests; answers OK, or a Deferred kept in C{waiting}."""

    def __init__(self, defer: bool = False) -> None:
        self.seen: list[HTTPRequest] = []
        self.defer = defer
        self.waiting: list[Deferred[HTTPResponse]] = []
        self.cancelled: list[HTTPRequest] = []

    def __call__(self, request: HTTPRequest) -> Any:
        self.seen.append(request)
        if self.defer:
            d: Deferred[HTTPResponse] = Deferred(lambda _: self.cancelled.append(request))
            self.waiting.append(d)
            return d
        return OK


def responses(raw: bytes) -> list[bytes]:
    """Split back-to-back responses by their Content-Length."""
    out = []
    while raw:
        head, _, rest = raw.partition(b"\r\n\r\n")
        length = int([l for l in head.split(b"\r\n") if l.lower().startswith(b"content-length:")][0].split(b":")[1])
        out.append(head + b"\r\n\r\n" + rest[:length])
        raw = rest[length:]
    return out


class ProtocolTests(SynchronousTestCase):
    """Parsing, keep-alive, pipelining and limits."""

    def test_request_parsed(self) -> None:
        """Method, target, lower-cased repeated headers, body and peer reach the handler."""
        h = Recorder()
        c = Connection(h, peer="10.0.0.5")
        c.protocol.dataReceived(b"POST /a?b=1 HTTP/1.1\r\nX-Thing: 1\r\nx-thing: 2\r\nContent-Length: 3\r\n\r\nabc")
        r = h.seen[0]
        self.assertEqual((r.method, r.target, r.path, r.headers[b"x-thing"], r.body, r.peer),
                         (b"POST", b"/a?b=1", b"/a", [b"1", b"2"], b"abc", "10.0.0.5"))
        resp = parse_response(c.written())
        self.assertEqual((resp.code, resp.body, resp.header(b"content-length")), (200, b"hello", b"5"))
        self.assertIsNone(resp.header(b"connection"))
        self.assertFalse(c.transport.disconnecting)

    def test_body_in_pieces_and_pipelining(self) -> None:
        """A body split over reads waits; pipelined requests are answered in order."""
        h = Recorder()
        c = Connection(h)
        c.protocol.dataReceived(b"POST / HTTP/1.1\r\nContent-Length: 4\r\n\r\nab")
        self.assertEqual(h.seen, [])
        c.protocol.dataReceived(b"cdGET /2 HTTP/1.1\r\n\r\nGET /3 HTTP/1.1\r\n\r\n")
        self.assertEqual([(r.target, r.body) for r in h.seen], [(b"/", b"abcd"), (b"/2", b""), (b"/3", b"")])
        self.assertEqual(len(responses(c.written())), 3)

    def test_deferred_answers_keep_order(self) -> None:
        """The next pipelined request waits for the answer to the one before."""
        h = Recorder(defer=True)
        c = Connection(h)
        c.protocol.dataReceived(b"GET /1 HTTP/1.1\r\n\r\nGET /2 HTTP/1.1\r\n\r\n")
        self.assertEqual(len(h.seen), 1)
        h.waiting[0].callback(HTTPResponse(200, (), b"one"))
        self.assertEqual(len(h.seen), 2)
        h.waiting[1].callback(HTTPResponse(404, (), b"two"))
        self.assertEqual([parse_response(r).body for r in responses(c.written())], [b"one", b"two"])

    def test_head(self) -> None:
        """HEAD gets the headers with the full Content-Length and no body."""
        c = Connection(Recorder())
        c.protocol.dataReceived(b"HEAD / HTTP/1.1\r\n\r\n")
        self.assertTrue(c.written().endswith(b"\r\n\r\n"))
        self.assertIn(b"Content-Length: 5\r\n", c.written())

    def test_http10_closes(self) -> None:
        """HTTP/1.0 without keep-alive, and Connection: close, end the connection after the answer."""
        for request in (b"GET / HTTP/1.0\r\n\r\n", b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n"):
            c = Connection(Recorder())
            c.protocol.dataReceived(request)
            self.assertIn(b"Connection: close\r\n", c.written())
            self.assertTrue(c.transport.disconnecting)
        c = Connection(Recorder())
        c.protocol.dataReceived(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        self.assertFalse(c.transport.disconnecting)

    def test_expect_continue(self) -> None:
        """Expect: 100-continue with a body gets 100 Continue first."""
        c = Connection(Recorder())
        c.protocol.dataReceived(b"POST / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n")
        self.assertEqual(c.written(), b"HTTP/1.1 100 Continue\r\n\r\n")
        c.protocol.dataReceived(b"pw")
        self.assertIn(b"HTTP/1.1 200 OK", c.written())

    def test_refusals(self) -> None:
        """Chunked bodies, bad lines, huge heads and huge bodies are refused and the connection closed."""
        cases = [
            (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
            (b"NONSENSE\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nbad header\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nContent-Length: x\r\n\r\n", 400),
            (b"POST / HTTP/1.1\r\nContent-Length: 999999\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nX: " + b"a" * MAX_HEAD + b"\r\n\r\n", 431),
            (b"GET / HTTP/1.1\r\nX: " + b"a" * (MAX_HEAD + 10), 431),
        ]
        for data, code in cases:
            h = Recorder()
            c = Connection(h)
            c.protocol.dataReceived(data)
            self.assertEqual((parse_response(c.written()).code, h.seen), (code, []), data[:40])
            self.assertTrue(c.transport.disconnecting)

    def test_slow_request_and_idle(self) -> None:
        """A request not sent within the timeout gets 408; an idle kept-alive connection is closed."""
        clock = Clock()
        c = Connection(Recorder(), clock=clock)
        c.protocol.dataReceived(b"GET / HTTP/1.1\r\n")
        clock.advance(30)
        self.assertEqual(parse_response(c.written()).code, 408)
        c = Connection(Recorder(), clock=clock)
        c.protocol.dataReceived(b"GET / HTTP/1.1\r\n\r\n")
        clock.advance(59)
        self.assertFalse(c.transport.disconnecting)
        clock.advance(1)
        self.assertTrue(c.transport.disconnecting)

    def test_connection_lost_cancels(self) -> None:
        """A client that goes away cancels the pending answer, and nothing is written."""
        h = Recorder(defer=True)
        c = Connection(h)
        c.protocol.dataReceived(b"GET / HTTP/1.1\r\n\r\n")
        c.protocol.connectionLost(Failure(ConnectionLost()))
        self.assertEqual(h.cancelled, h.seen)
        self.assertEqual(c.written(), b"")

    def test_handler_errors_are_500(self) -> None:
        """A handler that raises, or fails its Deferred, gives a plain 500 and a logged failure."""

        def boom(request: HTTPRequest) -> Any:
            raise ZeroDivisionError()

        c = Connection(boom)
        c.protocol.dataReceived(b"GET / HTTP/1.1\r\n\r\n")
        self.assertEqual(parse_response(c.written()).code, 500)
        c = Connection(lambda r: succeed(None).addCallback(lambda _: 1 / 0))
        c.protocol.dataReceived(b"GET / HTTP/1.1\r\n\r\n")
        self.assertEqual(parse_response(c.written()).code, 500)
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 2)


class RequestTests(SynchronousTestCase):
    """HTTPRequest helpers."""

    def test_path(self) -> None:
        """The path drops the query, and scheme and host of the absolute form."""
        for target, path in [(b"/a/b?c=d", b"/a/b"), (b"http://169.254.169.254/latest/meta-data?x", b"/latest/meta-data"),
                             (b"HTTP://h", b"/"), (b"https://h:443/x", b"/x"), (b"*", b"*")]:
            self.assertEqual(HTTPRequest(b"GET", target, b"HTTP/1.1", {}, b"", None).path, path, target)
        absolute = HTTPRequest(b"GET", b"http://169.254.169.254/latest?x=1", b"HTTP/1.1", {}, b"", None)
        self.assertEqual(absolute.origin_target, b"/latest?x=1")
