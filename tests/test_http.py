"""
mdsvc's HTTP/1.1 server protocol: parsing (strict, on llhttp), keep-alive, pipelining, limits,
deadlines, framing of answers, and what one connection may hold.

The malformed-request vectors include those of twisted.web's request smuggling tests
(GHSA-c2jg-hw38-jrqq: duplicated, signed and non-numeric Content-Length, Content-Length with
Transfer-Encoding, pipelined behind them) and h11's reader tests (obsolete line folding,
whitespace before the colon, an empty header name), plus the attacks that reached another guest
through mdsvc (CR, LF, NUL, TAB inside the target and header values; HTTP/1.1x; a missing Host).
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.error import ConnectionLost
from twisted.internet.task import Clock
from twisted.logger import capturedLogs
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from mdsvc.http import MAX_BODY, MAX_FIELDS, MAX_HEAD, MAX_PIPELINE, MAX_TARGET, HTTPRequest, HTTPResponse, LeanHTTPFactory
from mdsvc.limits import ConnectionLimits
from tests.http import Connection, parse_response

OK = HTTPResponse(200, ((b"Content-Type", b"text/plain"),), b"hello")
GET = b"GET / HTTP/1.1\r\nHost: h\r\n\r\n"


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
    """Split back-to-back responses by their Content-Length (interim 100s on their own)."""
    out = []
    while raw:
        head, _, rest = raw.partition(b"\r\n\r\n")
        if head.startswith(b"HTTP/1.1 100 "):
            out.append(head + b"\r\n\r\n")
            raw = rest
            continue
        length = int([line for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")][0].split(b":")[1])
        out.append(head + b"\r\n\r\n" + rest[:length])
        raw = rest[length:]
    return out


def codes(raw: bytes) -> list[int]:
    """The status of every response in C{raw}."""
    return [parse_response(r).code for r in responses(raw)]


class ProtocolTests(SynchronousTestCase):
    """Parsing, keep-alive, pipelining and deadlines."""

    def test_request_parsed(self) -> None:
        """Method, target, lower-cased repeated headers, body and peer reach the handler."""
        h = Recorder()
        c = Connection(h, peer="10.0.0.5")
        c.protocol.dataReceived(b"POST /a?b=1 HTTP/1.1\r\nHost: h\r\nX-Thing: 1\r\nx-thing: 2  \r\nContent-Length: 3\r\n\r\nabc")
        r = h.seen[0]
        self.assertEqual((r.method, r.target, r.version, r.path, r.headers[b"x-thing"], r.body, r.peer),
                         (b"POST", b"/a?b=1", b"HTTP/1.1", b"/a", [b"1", b"2"], b"abc", "10.0.0.5"))
        resp = parse_response(c.written())
        self.assertEqual((resp.code, resp.body, resp.header(b"content-length")), (200, b"hello", b"5"))
        self.assertIsNone(resp.header(b"connection"))
        self.assertFalse(c.transport.disconnecting)

    def test_body_in_pieces_and_pipelining(self) -> None:
        """A body split over reads waits; pipelined requests are answered in order."""
        h = Recorder()
        c = Connection(h)
        c.protocol.dataReceived(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\n\r\nab")
        self.assertEqual(h.seen, [])
        c.protocol.dataReceived(b"cdGET /2 HTTP/1.1\r\nHost: h\r\n\r\nGET /3 HTTP/1.1\r\nHost: h\r\n\r\n")
        self.assertEqual([(r.target, r.body) for r in h.seen], [(b"/", b"abcd"), (b"/2", b""), (b"/3", b"")])
        self.assertEqual(len(responses(c.written())), 3)

    def test_every_segmentation_parses_alike(self) -> None:
        """A request split at every possible byte boundary, or sent a byte at a time, parses the same."""
        raw = b"POST /x?y HTTP/1.1\r\nHost: h\r\nAccept: */*\r\nContent-Length: 2\r\n\r\nok" + GET
        for cut in [1, 5, 17, 30, 52, len(raw) - 1]:
            h = Recorder()
            c = Connection(h)
            c.protocol.dataReceived(raw[:cut])
            c.protocol.dataReceived(raw[cut:])
            self.assertEqual([(r.method, r.target, r.body) for r in h.seen], [(b"POST", b"/x?y", b"ok"), (b"GET", b"/", b"")], cut)
        h = Recorder()
        c = Connection(h)
        for i in range(len(raw)):
            c.protocol.dataReceived(raw[i:i + 1])
        self.assertEqual(len(h.seen), 2)

    def test_deferred_answers_keep_order(self) -> None:
        """The next pipelined request waits for the answer to the one before."""
        h = Recorder(defer=True)
        c = Connection(h)
        c.protocol.dataReceived(b"GET /1 HTTP/1.1\r\nHost: h\r\n\r\nGET /2 HTTP/1.1\r\nHost: h\r\n\r\n")
        self.assertEqual(len(h.seen), 1)
        h.waiting[0].callback(HTTPResponse(200, (), b"one"))
        self.assertEqual(len(h.seen), 2)
        h.waiting[1].callback(HTTPResponse(404, (), b"two"))
        self.assertEqual([parse_response(r).body for r in responses(c.written())], [b"one", b"two"])

    def test_head(self) -> None:
        """HEAD gets the headers with the full Content-Length and no body."""
        c = Connection(Recorder())
        c.protocol.dataReceived(b"HEAD / HTTP/1.1\r\nHost: h\r\n\r\n")
        self.assertTrue(c.written().endswith(b"\r\n\r\n"))
        self.assertIn(b"Content-Length: 5\r\n", c.written())

    def test_head_relayed_length(self) -> None:
        """A HEAD answer relayed from another server announces that server's length, not 0."""
        c = Connection(lambda r: HTTPResponse(200, (), b"", length=1234))
        c.protocol.dataReceived(b"HEAD / HTTP/1.1\r\nHost: h\r\n\r\n")
        self.assertIn(b"Content-Length: 1234\r\n", c.written())
        self.assertTrue(c.written().endswith(b"\r\n\r\n"))

    def test_http10(self) -> None:
        """HTTP/1.0 closes unless asked to keep alive; when kept alive the answer says so."""
        for request in (b"GET / HTTP/1.0\r\n\r\n", b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"):
            c = Connection(Recorder())
            c.protocol.dataReceived(request)
            self.assertIn(b"Connection: close\r\n", c.written())
            self.assertTrue(c.transport.disconnecting)
        c = Connection(Recorder())
        c.protocol.dataReceived(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        self.assertFalse(c.transport.disconnecting)
        self.assertEqual(parse_response(c.written()).header(b"connection"), b"keep-alive")
        c = Connection(Recorder())
        c.protocol.dataReceived(GET)
        self.assertIsNone(parse_response(c.written()).header(b"connection"))

    def test_expect_continue(self) -> None:
        """Expect: 100-continue with a body gets 100 Continue first (HTTP/1.1 only)."""
        c = Connection(Recorder())
        c.protocol.dataReceived(b"POST / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n")
        self.assertEqual(c.written(), b"HTTP/1.1 100 Continue\r\n\r\n")
        c.protocol.dataReceived(b"pw")
        self.assertIn(b"HTTP/1.1 200 OK", c.written())
        c = Connection(Recorder())
        c.protocol.dataReceived(b"POST / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n")
        self.assertEqual(c.written(), b"")
        c.protocol.dataReceived(b"pw")
        self.assertEqual(codes(c.written()), [200])

    def test_continue_waits_its_turn(self) -> None:
        """A 100 Continue is never written into the middle of an earlier request's answer."""
        h = Recorder(defer=True)
        c = Connection(h)
        c.protocol.dataReceived(GET + b"POST / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n")
        self.assertEqual(c.written(), b"")
        h.waiting[0].callback(OK)
        self.assertEqual(codes(c.written()), [200, 100])
        c.protocol.dataReceived(b"pw")
        h.waiting[1].callback(OK)
        self.assertEqual(codes(c.written()), [200, 100, 200])

    def test_slow_request_and_idle(self) -> None:
        """A request not sent within the timeout gets 408; an idle kept-alive connection is closed."""
        clock = Clock()
        c = Connection(Recorder(), clock=clock)
        c.protocol.dataReceived(b"GET / HTTP/1.1\r\n")
        clock.advance(30)
        self.assertEqual(parse_response(c.written()).code, 408)
        c = Connection(Recorder(), clock=clock)
        c.protocol.dataReceived(GET)
        clock.advance(59)
        self.assertFalse(c.transport.disconnecting)
        clock.advance(1)
        self.assertTrue(c.transport.disconnecting)

    def test_deadline_is_per_request_not_per_byte(self) -> None:
        """A body sent one byte every 20 s does not re-arm the deadline: 408 at 30 s from its start."""
        clock = Clock()
        h = Recorder()
        c = Connection(h, clock=clock)
        c.protocol.dataReceived(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 100\r\n\r\n")
        clock.advance(20)
        c.protocol.dataReceived(b"x")
        clock.advance(10)
        self.assertEqual((codes(c.written()), h.seen), ([408], []))
        self.assertTrue(c.transport.disconnecting)

    def test_silent_connection_closed(self) -> None:
        """A connection that never sends a byte is closed after the request timeout, without an answer."""
        clock = Clock()
        c = Connection(Recorder(), clock=clock)
        clock.advance(29)
        self.assertFalse(c.transport.disconnecting)
        clock.advance(1)
        self.assertTrue(c.transport.disconnecting)
        self.assertEqual(c.written(), b"")

    def test_connection_lost_cancels(self) -> None:
        """A client that goes away cancels the pending answer, and nothing is written."""
        h = Recorder(defer=True)
        c = Connection(h)
        c.protocol.dataReceived(GET)
        c.protocol.connectionLost(Failure(ConnectionLost()))
        self.assertEqual(h.cancelled, h.seen)
        self.assertEqual(c.written(), b"")

    def test_half_close_answered(self) -> None:
        """A client that half-closes after a whole request still gets its answer, then the close."""
        c = Connection(Recorder())
        c.protocol.dataReceived(GET)
        c.protocol.readConnectionLost()
        self.assertEqual(codes(c.written()), [200])
        self.assertTrue(c.transport.disconnecting)
        h = Recorder(defer=True)
        c = Connection(h)
        c.protocol.dataReceived(GET + GET)
        c.protocol.readConnectionLost()
        self.assertFalse(c.transport.disconnecting)
        h.waiting[0].callback(OK)
        h.waiting[1].callback(OK)
        raw = c.written()
        self.assertEqual(codes(raw), [200, 200])
        self.assertEqual(parse_response(responses(raw)[1]).header(b"connection"), b"close")
        self.assertTrue(c.transport.disconnecting)

    def test_half_close_mid_request(self) -> None:
        """A half-close in the middle of a request closes the connection (it can never complete)."""
        h = Recorder()
        c = Connection(h)
        c.protocol.dataReceived(b"GET / HTTP/1.1\r\nHo")
        c.protocol.readConnectionLost()
        self.assertEqual((h.seen, c.written()), ([], b""))
        self.assertTrue(c.transport.disconnecting)

    def test_handler_errors_are_500(self) -> None:
        """A handler that raises, or fails its Deferred, gives a plain 500 and a logged failure."""

        def boom(request: HTTPRequest) -> Any:
            raise ZeroDivisionError()

        c = Connection(boom)
        c.protocol.dataReceived(GET)
        self.assertEqual(parse_response(c.written()).code, 500)
        c = Connection(lambda r: succeed(None).addCallback(lambda _: 1 / 0))
        c.protocol.dataReceived(GET)
        self.assertEqual(parse_response(c.written()).code, 500)
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 2)

    def test_upgrade_answered_then_closed(self) -> None:
        """A request asking to upgrade is answered as usual; what follows is not read; the connection closes."""
        h = Recorder()
        c = Connection(h)
        c.protocol.dataReceived(b"GET / HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n" + GET)
        self.assertEqual((len(h.seen), codes(c.written())), (1, [200]))
        self.assertIn(b"Connection: close", c.written())
        self.assertTrue(c.transport.disconnecting)

    def test_correlation_id_echoed(self) -> None:
        """An X-Mdsvc-Request-Id of up to 32 letters and digits is echoed; anything else is not."""
        for value, echoed in [(b"1f", True), (b"a" * 32, True), (b"a" * 33, False), (b"1 2", False), (b"x-y", False)]:
            c = Connection(Recorder())
            c.protocol.dataReceived(b"GET / HTTP/1.1\r\nHost: h\r\nX-Mdsvc-Request-Id: " + value + b"\r\n\r\n")
            self.assertEqual(parse_response(c.written()).header(b"x-mdsvc-request-id"), value if echoed else None, value)


def rejected(test: SynchronousTestCase, data: bytes, code: int = 400, answered: int = 0) -> Connection:
    """Send C{data}: the first C{answered} requests are served, then C{code} and a close, and nothing else reaches the handler."""
    h = Recorder()
    c = Connection(h)
    c.protocol.dataReceived(data)
    test.assertEqual(codes(c.written()), [200] * answered + [code], data[:80])
    test.assertEqual(len(h.seen), answered, data[:80])
    test.assertTrue(c.transport.disconnecting, data[:80])
    return c


def head(*lines: bytes) -> bytes:
    """Request lines joined with CRLF, ended by an empty line."""
    return b"\r\n".join(lines) + b"\r\n\r\n"


class StrictParsingTests(SynchronousTestCase):
    """Every malformed request is refused with 400 and the connection closed; nothing is guessed."""

    def test_control_bytes_in_target(self) -> None:
        """TAB, CR, LF, NUL, DEL, other controls, spaces and bytes above 0x7f in the target (the attack that reached another guest)."""
        for bad in [b"\t", b"\r", b"\n", b"\x00", b"\x7f", b"\x01", b"\x1b", b"\xff", b" x"]:
            rejected(self, b"GET /latest" + bad + b"meta-data HTTP/1.1\r\nHost: h\r\n\r\n")

    def test_http09_line_end_inside_absolute_target(self) -> None:
        """
        A bare LF inside an absolute-form target, which llhttp reads as the end of an HTTP/0.9
        request line (making the rest of the line a header): refused, as are bare CRs and LFs
        anywhere else in a head, whatever llhttp would make of them.
        """
        rejected(self, b"GET http://a\nX-Instance-ID:\tvictim/latest/meta-data/hostname HTTP/1.1\r\nHost: h\r\n\r\n")
        rejected(self, b"GET /a HTTP/1.1\r\nHost: h\nX-Instance-ID: victim\r\n\r\n")
        rejected(self, b"GET /a HTTP/1.1\r\nHost: h\rX-Instance-ID: victim\r\n\r\n")

    def test_smuggled_request_in_target(self) -> None:
        """A target carrying a request line and identity headers of its own is refused, not split."""
        rejected(self, b"GET /x HTTP/1.1\r\nX-Instance-ID: victim\r\n\r\nGET /openstack/latest/user_data HTTP/1.1\r\nHost: h\r\n\r\n",
                 answered=0)

    def test_control_bytes_in_header_values(self) -> None:
        """CR, LF, NUL and other controls inside a header value are refused; TAB (which HTTP allows there) is parsed, never forwarded (tests.test_wire)."""
        for bad in [b"\r", b"\n", b"\x00", b"\x01", b"\x7f", b"\x0b", b"\x0c", b"\r\nGET / HTTP/1.1"]:
            rejected(self, b"GET / HTTP/1.1\r\nHost: h\r\nAccept: text/plain" + bad + b"x\r\n\r\n")
        h = Recorder()
        Connection(h).protocol.dataReceived(b"GET / HTTP/1.1\r\nHost: h\r\nAccept: text/plain\tX-Instance-ID: v\r\n\r\n")
        self.assertEqual(h.seen[0].headers[b"accept"], [b"text/plain\tX-Instance-ID: v"])
        self.assertNotIn(b"x-instance-id", h.seen[0].headers)

    def test_header_names(self) -> None:
        """Non-token names, whitespace before the colon, an empty name, obsolete line folding (h11)."""
        for line in [b"Ho(st: h", b"Host : h", b"Host\t: h", b": h", b"X Y: z", b"X\x00: y", b"\xffX: y"]:
            rejected(self, head(b"GET / HTTP/1.1", b"Host: h", line))
        rejected(self, head(b"GET / HTTP/1.1", b"Host: h", b"Some: multi-line", b" header"))
        rejected(self, head(b"GET / HTTP/1.1", b"  folded: line", b"Host: h"))

    def test_versions(self) -> None:
        """HTTP/1.1x, HTTP/1.2, HTTP/2.0, HTTP/0.9 and garbage versions; bare LF line ends."""
        for version in [b"HTTP/1.1x", b"HTTP/1.2", b"HTTP/2.0", b"HTTP/1.9", b"http/1.1", b"HTTP/1", b"HTTP/1.1 x"]:
            rejected(self, b"GET / " + version + b"\r\nHost: h\r\n\r\n")
        rejected(self, b"GET /\r\n\r\n")
        rejected(self, b"GET / HTTP/1.1\nHost: h\n\n")
        rejected(self, b"GET / HTTP/1.1\r\nHost: h\n\r\n")

    def test_host(self) -> None:
        """HTTP/1.1 needs exactly one Host; HTTP/1.0 may carry none."""
        rejected(self, head(b"GET / HTTP/1.1"))
        rejected(self, head(b"GET / HTTP/1.1", b"Host: a", b"Host: b"))
        rejected(self, head(b"GET / HTTP/1.0", b"Host: a", b"Host: b"))
        c = Connection(Recorder())
        c.protocol.dataReceived(head(b"GET / HTTP/1.0"))
        self.assertEqual(codes(c.written()), [200])

    def test_methods(self) -> None:
        """Unknown, lower-case and non-ASCII methods, and CONNECT, are refused."""
        for method in [b"get", b"FOO", b"G\xc3\x89T", b"GE T", b"CONNECT"]:
            target = b"h:80" if method == b"CONNECT" else b"/"
            rejected(self, method + b" " + target + b" HTTP/1.1\r\nHost: h\r\n\r\n")

    def test_content_length_smuggling(self) -> None:
        """twisted.web's GHSA-c2jg-hw38-jrqq vectors: duplicated, signed, negative, non-numeric lengths; CL with TE."""
        for lines in [
            [b"Content-Length: 56", b"Content-Length: 0"],
            [b"Content-Length: 3", b"Content-Length: 3"],
            [b"Content-Length: 3, 3"],
            [b"Content-Length: +100"],
            [b"Content-Length: -100"],
            [b"Content-Length: 0x10"],
            [b"Content-Length: 1_0"],
            [b"Content-Length: MORE THAN NINE THOUSAND!"],
            [b"Transfer-Encoding: chunked", b"Content-Length: 0"],
            [b"Transfer-Encoding: chunked"],
            [b"Transfer-Encoding: identity"],
            [b"Transfer-Encoding: unknown"],
            [b"Transfer-Encoding: chunked, gzip"],
        ]:
            rejected(self, head(b"POST /a HTTP/1.1", b"Host: host.invalid", *lines) + b"0\r\n\r\n" + GET)

    def test_chunked_on_http10(self) -> None:
        """Transfer-Encoding on HTTP/1.0 (which llhttp would accept) is refused too."""
        rejected(self, head(b"POST / HTTP/1.0", b"Transfer-Encoding: chunked") + b"0\r\n\r\n")

    def test_earlier_pipelined_requests_answered_first(self) -> None:
        """Good requests before a malformed one are answered in order, then the 400 and the close."""
        rejected(self, GET + GET + b"GET /\x00 HTTP/1.1\r\nHost: h\r\n\r\n" + GET, answered=2)

    def test_no_bytes_read_after_refusal(self) -> None:
        """After a refusal nothing more is parsed, however much follows."""
        c = rejected(self, head(b"GET / HTTP/1.1"))
        c.protocol.dataReceived(GET * 100)
        self.assertEqual(codes(c.written()), [400])


class LimitTests(SynchronousTestCase):
    """What one request and one connection may hold."""

    def test_head_limit_exact_and_independent_of_segments(self) -> None:
        """A head of exactly MAX_HEAD bytes is served and one byte more gets 431, whole, in 1000-byte reads or a byte at a time."""
        prefix, suffix = b"GET / HTTP/1.1\r\nHost: h\r\nX: ", b"\r\n\r\n"
        for extra, code in [(0, 200), (1, 431)]:
            raw = prefix + b"a" * (MAX_HEAD - len(prefix) - len(suffix) + extra) + suffix
            self.assertEqual(len(raw), MAX_HEAD + extra)
            for step in (len(raw), 1000, 1):
                h = Recorder()
                c = Connection(h)
                for i in range(0, len(raw), step):
                    c.protocol.dataReceived(raw[i:i + step])
                self.assertEqual(codes(c.written()), [code], (extra, step))

    def test_never_ending_head(self) -> None:
        """A head that never ends is refused as soon as it passes MAX_HEAD bytes."""
        h = Recorder()
        c = Connection(h)
        c.protocol.dataReceived(b"GET / HTTP/1.1\r\nHost: h\r\nX: ")
        sent = 28
        while not c.written():
            c.protocol.dataReceived(b"a" * 1000)
            sent += 1000
        self.assertEqual(codes(c.written()), [431])
        self.assertLessEqual(sent, MAX_HEAD + 1000)

    def test_target_too_long(self) -> None:
        """A target over MAX_TARGET gets 414 (the inner hops can then always take what the edge forwards)."""
        rejected(self, b"GET /" + b"a" * MAX_TARGET + b" HTTP/1.1\r\nHost: h\r\n\r\n", 414)
        c = Connection(Recorder())
        c.protocol.dataReceived(b"GET /" + b"a" * (MAX_TARGET - 1) + b" HTTP/1.1\r\nHost: h\r\n\r\n")
        self.assertEqual(codes(c.written()), [200])

    def test_too_many_fields(self) -> None:
        """More than MAX_FIELDS header fields get 431."""
        rejected(self, head(b"GET / HTTP/1.1", b"Host: h", *[b"X-%d: y" % i for i in range(MAX_FIELDS)]), 431)

    def test_body_too_large(self) -> None:
        """A Content-Length over MAX_BODY gets 413 before any of the body is read."""
        rejected(self, head(b"POST / HTTP/1.1", b"Host: h", b"Content-Length: %d" % (MAX_BODY + 1)), 413)

    def test_pipelined_flood_is_bounded(self) -> None:
        """
        Thousands of pipelined requests behind a pending one: a bounded number is parsed, the
        transport stops reading, and the rest is parsed as answers go out.
        """
        h = Recorder(defer=True)
        c = Connection(h)
        flood = GET * 3000
        c.protocol.dataReceived(flood)
        self.assertLessEqual(len(c.protocol._queue), MAX_PIPELINE)
        self.assertLessEqual(len(c.protocol._buffer), len(flood))
        self.assertEqual(c.transport.producerState, "paused")
        for _ in range(3000):
            h.waiting[len(h.seen) - 1].callback(OK)
        self.assertEqual(len(h.seen), 3000)
        self.assertEqual(len(responses(c.written())), 3000)
        self.assertEqual(c.transport.producerState, "producing")

    def test_client_not_reading(self) -> None:
        """
        When the transport's buffer is full (the client does not read), nothing more is answered
        or read; after the idle timeout the connection is aborted, not left open.
        """
        clock = Clock()
        h = Recorder()
        c = Connection(h, clock=clock)
        c.protocol.dataReceived(GET)
        c.protocol.pauseProducing()  # what the transport does when its buffer passes its size
        self.assertEqual(c.transport.producerState, "paused")
        c.protocol.dataReceived(GET * 5)
        self.assertEqual(len(h.seen), 1)
        clock.advance(59)
        self.assertFalse(c.transport.disconnecting)
        clock.advance(2)
        self.assertTrue(c.transport.disconnected)  # aborted

    def test_client_resumes_reading(self) -> None:
        """When the client drains its answers, the queued requests are answered."""
        h = Recorder()
        c = Connection(h)
        c.protocol.dataReceived(GET)
        c.protocol.pauseProducing()
        c.protocol.dataReceived(GET * 3)
        c.protocol.resumeProducing()
        self.assertEqual(len(h.seen), 4)
        self.assertEqual(c.transport.producerState, "producing")

    def test_closing_connection_aborted_when_stuck(self) -> None:
        """A connection closed after its answer, whose client never takes it, is aborted after a grace."""
        clock = Clock()
        c = Connection(Recorder(), clock=clock)
        c.protocol.dataReceived(b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
        self.assertTrue(c.transport.disconnecting)
        self.assertFalse(c.transport.disconnected)
        clock.advance(6)
        self.assertTrue(c.transport.disconnected)


class ConnectionLimitTests(SynchronousTestCase):
    """Per-guest and per-process connection caps."""

    def test_per_source(self) -> None:
        """A guest past its limit gets no protocol (closed at once); another guest still does."""
        from twisted.internet.address import IPv4Address

        clock = Clock()
        limits = ConnectionLimits(clock, per_source=2, total=10)
        factory = LeanHTTPFactory(Recorder(), clock, limits=limits, name="ns")
        a = IPv4Address("TCP", "10.0.0.5", 1)
        made = [factory.buildProtocol(a) for _ in range(3)]
        self.assertIsNone(made[2])
        self.assertIsNotNone(factory.buildProtocol(IPv4Address("TCP", "10.0.0.6", 1)))
        other = LeanHTTPFactory(Recorder(), clock, limits=limits, name="other-ns")
        self.assertIsNotNone(other.buildProtocol(a), "the same address on another listener is another guest")

    def test_released_and_logged_once(self) -> None:
        """A closed connection frees its slot; refusals are logged once per interval."""
        from twisted.internet.address import IPv4Address
        from twisted.internet.testing import StringTransport

        clock = Clock()
        limits = ConnectionLimits(clock, per_source=1, total=0)
        factory = LeanHTTPFactory(Recorder(), clock, limits=limits, name="ns")
        a = IPv4Address("TCP", "10.0.0.5", 1)
        first = factory.buildProtocol(a)
        assert first is not None
        first.makeConnection(StringTransport(peerAddress=a))
        with capturedLogs() as events:
            for _ in range(100):
                self.assertIsNone(factory.buildProtocol(a))
        self.assertEqual(len([e for e in events if "limit" in e["log_format"]]), 1)
        first.connectionLost(Failure(ConnectionLost()))
        self.assertEqual(limits.open, 0)
        self.assertIsNotNone(factory.buildProtocol(a))

    def test_process_total(self) -> None:
        """Past the process-wide total, every new connection is refused whatever its source."""
        from twisted.internet.address import IPv4Address

        clock = Clock()
        limits = ConnectionLimits(clock, per_source=0, total=3)
        factory = LeanHTTPFactory(Recorder(), clock, limits=limits)
        made = [factory.buildProtocol(IPv4Address("TCP", f"10.0.0.{i}", 1)) for i in range(5)]
        self.assertEqual([m is not None for m in made], [True, True, True, False, False])

    def test_not_guest_facing(self) -> None:
        """A listener whose sources are not guests (the API behind agents) only counts toward the total."""
        from twisted.internet.address import IPv4Address

        clock = Clock()
        limits = ConnectionLimits(clock, per_source=1, total=10)
        factory = LeanHTTPFactory(Recorder(), clock, limits=limits, guest_facing=False)
        a = IPv4Address("TCP", "10.0.0.5", 1)
        self.assertTrue(all(factory.buildProtocol(a) is not None for _ in range(5)))


class RequestTests(SynchronousTestCase):
    """HTTPRequest helpers."""

    def test_path(self) -> None:
        """The path drops the query, and scheme and host of the absolute form."""
        for target, path in [(b"/a/b?c=d", b"/a/b"), (b"http://169.254.169.254/latest/meta-data?x", b"/latest/meta-data"),
                             (b"HTTP://h", b"/"), (b"https://h:443/x", b"/x"), (b"*", b"*")]:
            self.assertEqual(HTTPRequest(b"GET", target, b"HTTP/1.1", {}, b"", None).path, path, target)
        absolute = HTTPRequest(b"GET", b"http://169.254.169.254/latest?x=1", b"HTTP/1.1", {}, b"", None)
        self.assertEqual(absolute.origin_target, b"/latest?x=1")


class RefusedThenGoneTests(SynchronousTestCase):
    """A client whose bytes were refused and who then closes is not waited for."""

    def test_refused_and_closed_while_pending(self) -> None:
        """
        Garbage streamed behind a pending request, then a close: the pending answer still goes
        out if it comes within the grace (the 400 after it), else the connection is aborted
        and the pending answer cancelled.
        """
        clock = Clock()
        h = Recorder(defer=True)
        c = Connection(h, clock=clock)
        c.protocol.dataReceived(GET + b"x" * 65536)
        c.protocol.dataReceived(b"x" * 65536)
        c.protocol.readConnectionLost()
        h.waiting[0].callback(OK)
        self.assertEqual(codes(c.written()), [200, 400])
        self.assertTrue(c.transport.disconnecting)

        h = Recorder(defer=True)
        c = Connection(h, clock=clock)
        c.protocol.dataReceived(GET + b"x" * 65536)
        c.protocol.readConnectionLost()
        clock.advance(3)
        self.assertTrue(c.transport.disconnected)
        c.protocol.connectionLost(Failure(ConnectionLost()))
        self.assertEqual(h.cancelled, h.seen)


class HalfClosingTransport:
    """A StringTransport that can close its writing side, as TCP and UNIX transports can."""

    @staticmethod
    def connect(handler: Any, clock: Clock) -> Connection:
        """A connection whose transport records loseWriteConnection."""
        c = Connection(handler, clock=clock)
        c.transport.write_closed = False  # type: ignore[attr-defined]

        def lose_write() -> None:
            c.transport.write_closed = True  # type: ignore[attr-defined]

        c.transport.loseWriteConnection = lose_write  # type: ignore[attr-defined]
        return c


class LingeringCloseTests(SynchronousTestCase):
    """Closing after a last answer never destroys that answer with a reset."""

    def test_last_answer_then_half_close(self) -> None:
        """
        After a request that ends the connection, only our side is closed; what the client still
        sends is read and dropped (never answered, never left unread to turn the close into a
        reset); the connection goes when the client closes its side.
        """
        clock = Clock()
        h = Recorder()
        c = HalfClosingTransport.connect(h, clock)
        c.protocol.dataReceived(b"HEAD / HTTP/1.0\r\n\r\n" + GET + GET)
        self.assertEqual((len(h.seen), codes(c.written())), (1, [200]))
        self.assertTrue(c.transport.write_closed)  # type: ignore[attr-defined]
        self.assertFalse(c.transport.disconnecting)
        c.protocol.dataReceived(GET * 50)
        self.assertEqual(len(h.seen), 1)
        c.protocol.readConnectionLost()
        self.assertTrue(c.transport.disconnecting)

    def test_lingering_has_an_end(self) -> None:
        """A client that never closes its side is aborted after the grace."""
        clock = Clock()
        c = HalfClosingTransport.connect(Recorder(), clock)
        c.protocol.dataReceived(b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
        clock.advance(6)
        self.assertTrue(c.transport.disconnected)

    def test_refusal_lingers_too(self) -> None:
        """A 400 is not lost to a reset either: the client's further bytes are drained."""
        c = HalfClosingTransport.connect(Recorder(), Clock())
        c.protocol.dataReceived(b"GET /\x00 HTTP/1.1\r\nHost: h\r\n\r\n" + b"x" * 5000)
        self.assertEqual(codes(c.written()), [400])
        self.assertTrue(c.transport.write_closed)  # type: ignore[attr-defined]
