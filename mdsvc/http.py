# -*- test-case-name: tests.test_http -*-
"""
mdsvc's HTTP/1.1 server protocol, for the API, the agent socket and the namespace proxies.

Every byte it reads may come from a hostile guest, so parsing is llhttp's (Node.js's parser,
through C{httptools}) in strict mode, and mdsvc adds what llhttp leaves to its user: only
HTTP/1.0 and HTTP/1.1, exactly one C{Host} on 1.1, no C{Transfer-Encoding} (no metadata client
sends a chunked body; Nova fails on them), no C{CONNECT}, and limits on the target, the head,
the number of fields and the body.  A malformed request is answered 400 (413, 414 or 431 for
the limits) after the requests before it, and the connection is closed.

What one connection may hold is bounded: at most C{MAX_PIPELINE} parsed requests wait behind the
one being answered, and one read's worth of bytes behind them; beyond that, and whenever the
client does not read its answers (the transport's write buffer is full), the protocol stops
reading from the socket.  Every request has one deadline for its head and body together, from
its first byte; a kept-alive connection one idle deadline; a connection being closed is aborted
if the client will not take the last bytes.  The deadlines are checked by one sweep per
listener, not a timer per connection.

Answers keep the order of requests; HEAD answers carry the length GET would have; HTTP/1.0
keep-alive is confirmed in the answer; C{100 Continue} goes only to HTTP/1.1 clients that wait
for it; a client that half-closes after its request still gets its answer.
"""

from __future__ import annotations

from collections import deque
from email.utils import formatdate
from typing import Any, Callable

from attrs import frozen
from httptools import HttpParserCallbackError, HttpParserError, HttpParserUpgrade, HttpRequestParser
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import IHalfCloseableProtocol, IPushProducer, IReactorTime
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from mdsvc.limits import ConnectionLimits
from mdsvc.wire import loggable

MAX_HEAD = 16 * 1024
"""Request line and header fields (their text, as parsed); haproxy's default buffer is 16 KiB."""

MAX_HEAD_BYTES = 4 * MAX_HEAD
"""Bytes a head may take on the wire, whitespace included (a backstop to L{MAX_HEAD})."""

MAX_TARGET = 8 * 1024
"""The request target.  Each hop adds well under 1 KiB of its own headers to what it forwards,
so a request the guest-facing hop accepts is never too large for the hops behind it."""

MAX_FIELDS = 100
"""Header fields in one request."""

MAX_BODY = 64 * 1024
"""Metadata requests carry at most a password (1020 bytes)."""

MAX_PIPELINE = 16
"""Parsed requests that may wait behind the one being answered on one connection."""

FEED_SLICE = 2048
"""Bytes handed to the parser at a time, so a burst of tiny pipelined requests in one read
cannot queue more than a slice's worth of requests past L{MAX_PIPELINE}."""

CLOSE_GRACE = 5.0
"""Seconds a closing connection has to take its last answer before it is aborted."""

CORRELATION_HEADER = b"x-mdsvc-request-id"
"""Set by mdsvc's HTTP client on each request and echoed in the answer by mdsvc's servers, so
the client can tell an answer to its request from a stray one."""

REASONS = {
    100: b"Continue", 200: b"OK", 400: b"Bad Request", 403: b"Forbidden", 404: b"Not Found", 408: b"Request Timeout",
    409: b"Conflict", 413: b"Payload Too Large", 414: b"URI Too Long", 429: b"Too Many Requests",
    431: b"Request Header Fields Too Large", 500: b"Internal Server Error", 502: b"Bad Gateway",
    503: b"Service Unavailable", 504: b"Gateway Timeout",
}


@frozen
class HTTPRequest:
    """
    One parsed request.

    @ivar target: the request target as sent (path and query), checked by the parser: visible
        ASCII only.
    @ivar version: C{b"HTTP/1.0"} or C{b"HTTP/1.1"}.
    @ivar headers: lower-cased names to every value sent, in order (surrounding whitespace
        removed; values hold no control bytes but may hold bytes above 0x7f, so check one
        before passing it on).
    @ivar peer: the client's host (IP address), or None (UNIX sockets).
    """

    method: bytes
    target: bytes
    version: bytes
    headers: dict[bytes, list[bytes]]
    body: bytes
    peer: str | None

    @property
    def path(self) -> bytes:
        """The target's path: no query string, and no scheme and host if the client sent the
        absolute form (C{GET http://169.254.169.254/latest/...}, as through an HTTP proxy)."""
        target = self.target.split(b"?", 1)[0]
        if target[:7].lower() == b"http://" or target[:8].lower() == b"https://":
            slash = target.find(b"/", target.find(b"//") + 2)
            return target[slash:] if slash >= 0 else b"/"
        return target

    @property
    def origin_target(self) -> bytes:
        """The target in origin form (path and query), whatever form the client sent."""
        path = self.path
        query = self.target.partition(b"?")[2]
        return path + b"?" + query if b"?" in self.target else path

    def header(self, name: bytes) -> bytes | None:
        """The first value of a header (lower-case name), or None."""
        values = self.headers.get(name)
        return values[0] if values else None


@frozen
class HTTPResponse:
    """
    What a handler answers: status, headers (name, value) and the whole body.

    @ivar length: for an answer to HEAD relayed from another server, the C{Content-Length} that
        server announced (the body is empty); None means C{len(body)}.
    """

    code: int
    headers: tuple[tuple[bytes, bytes], ...]
    body: bytes
    length: int | None = None


Handler = Callable[[HTTPRequest], "HTTPResponse | Deferred[HTTPResponse]"]


class _DateCache:
    """The Date header, formatted once per second."""

    def __init__(self, clock: IReactorTime) -> None:
        self.clock = clock
        self.second = -1
        self.value = b""

    def now(self) -> bytes:
        second = int(self.clock.seconds())
        if second != self.second:
            self.second = second
            self.value = formatdate(second, usegmt=True).encode("ascii")
        return self.value


def plain_response(code: int, text: str) -> HTTPResponse:
    """A short plain-text answer (protocol-level errors)."""
    body = f"{code} {REASONS.get(code, b'').decode()}\n\n{text}\n".encode("utf-8")
    return HTTPResponse(code, ((b"Content-Type", b"text/plain; charset=UTF-8"),), body)


class _Refusal(Exception):
    """Ends parsing: the request is answered with C{code} and the connection closed."""

    def __init__(self, code: int, text: str) -> None:
        super().__init__(code, text)
        self.code = code
        self.text = text


_OWS = (b" ", b"\t")

_VERSIONS = {"1.1": b"HTTP/1.1", "1.0": b"HTTP/1.0"}


@implementer(IPushProducer, IHalfCloseableProtocol)
class LeanHTTPProtocol(Protocol):
    """One connection: parse, hand each request to the handler in turn, write the answers."""

    _log = Logger()

    def __init__(self, factory: "LeanHTTPFactory", source: str | None = None) -> None:
        self.factory = factory
        self.source = source
        self._parser = HttpRequestParser(self)
        # the request being parsed: its target (None between requests), raw header fields, body
        self._url: bytes | None = None
        self._fields: list[tuple[bytes, bytes]] = []
        self._headers: dict[bytes, list[bytes]] = {}
        self._body: list[bytes] | None = None
        self._version = b"HTTP/1.1"
        self._in_head = True
        self._raw_head = 0
        self._started: float | None = None  # set after the read it began in, if it did not end there
        self._wants_continue = False
        self._queue: deque[tuple[HTTPRequest, bool] | _Refusal] = deque()
        self._unfed = b""
        self._pending: Deferred[Any] | None = None
        self._refused = False
        self._closing = False
        self._read_closed = False
        self._write_paused = False
        self._reading = True
        self._processing = False
        self._idle_since = 0.0
        self._idle_limit = factory.request_timeout
        self._stalled_since = 0.0
        self._close_by = 0.0
        self.deadline: float | None = None
        self._peer: str | None = None

    # -- the connection ----------------------------------------------------------------------

    def connectionMade(self) -> None:
        """Remember the peer, watch the transport's write buffer, start the first deadline."""
        self._peer = getattr(self.transport.getPeer(), "host", None)
        self.transport.registerProducer(self, True)
        self._idle_since = self.factory.clock.seconds()
        self._rearm()
        self.factory.connection_opened(self)

    def dataReceived(self, data: bytes) -> None:
        """Parse what arrived (within the bounds), then answer what can be answered."""
        if self._closing or self._refused or self._read_closed:
            return  # bytes after a refusal are read and dropped while the connection closes
        if self._unfed:
            self._unfed += data  # at most one more read: reading is paused already
        else:
            self._feed(data)
        self._advance()

    def readConnectionLost(self) -> None:
        """
        The client half-closed: answer what it sent in full, then close.  A client whose bytes
        were refused gets nothing more: the connection goes at once, and so does whatever was
        still being answered for it.
        """
        self._read_closed = True
        self._next_request()  # a request cut short can never complete
        if self._refused:
            self.transport.abortConnection()
            return
        self._advance()

    def writeConnectionLost(self) -> None:
        """The client will read no more: nothing left to do on this connection."""
        self.transport.abortConnection()

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        """Cancel whatever the handler still works on for this client; free its slot."""
        self._closing = True
        self.deadline = None
        self.factory.connection_closed(self)
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.cancel()

    # -- IPushProducer: the transport tells when the client stops taking our answers ---------

    def pauseProducing(self) -> None:
        """The write buffer is full (the client does not read): answer and read nothing more."""
        self._write_paused = True
        self._stalled_since = self.factory.clock.seconds()
        self._rearm()
        self._update_reading()

    def resumeProducing(self) -> None:
        """The write buffer drained: go on."""
        self._write_paused = False
        self._advance()

    def stopProducing(self) -> None:
        """The connection is going away; connectionLost follows."""

    # -- parsing (httptools callbacks) --------------------------------------------------------

    def _feed(self, data: bytes) -> None:
        end = len(data)
        view = memoryview(data) if end > FEED_SLICE else data
        position = 0
        while position < end:
            if len(self._queue) >= MAX_PIPELINE:
                self._unfed = bytes(view[position:])
                return
            piece = view[position:position + FEED_SLICE] if end > FEED_SLICE else data
            position += len(piece)
            try:
                self._parser.feed_data(piece)
            except HttpParserUpgrade:
                # the request before the upgrade is complete and queued; nothing after it is read
                self._refused = True
                return
            except HttpParserCallbackError as e:
                cause = e.__context__
                if not isinstance(cause, _Refusal):
                    raise
                self._refuse(cause)
                return
            except HttpParserError as e:
                self._refuse(_Refusal(400, f"Malformed request: {e}."))
                return
            if self._url is not None:
                # a request still incomplete after this read: its deadline runs from now
                if self._started is None:
                    self._started = self.factory.clock.seconds()
                if self._in_head:
                    self._raw_head += len(piece)
                    if self._raw_head > MAX_HEAD_BYTES:
                        self._refuse(_Refusal(431, "The request head is too large."))
                        return

    def _refuse(self, refusal: _Refusal) -> None:
        self._refused = True
        self._next_request()
        self._unfed = b""
        self._queue.append(refusal)

    def _next_request(self) -> None:
        """Forget the request being parsed (it is complete, refused or cut short)."""
        self._url = None
        self._fields = []
        self._headers = {}
        self._body = None
        self._in_head = True
        self._raw_head = 0
        self._started = None
        self._wants_continue = False

    def on_url(self, url: bytes) -> None:
        """httptools: (part of) the target; the first part starts a request."""
        if self._url is None:
            self._url = url
        else:
            self._url += url
        if len(self._url) > MAX_TARGET:
            raise _Refusal(414, "The request target is too long.")

    def on_header(self, name: bytes, value: bytes) -> None:
        """httptools: one header field, whole: kept as it is, checked with the others at the end of the head."""
        fields = self._fields
        fields.append((name, value))
        if len(fields) > MAX_FIELDS:
            raise _Refusal(431, "The request has too many header fields.")

    def on_headers_complete(self) -> None:
        """httptools: the head is complete; check it, and refuse what mdsvc does not serve."""
        self._in_head = False
        size = len(self._url or b"")
        headers = self._headers
        for name, value in self._fields:
            size += len(name) + len(value)
            value = value.rstrip(b" \t")  # (llhttp drops leading whitespace, not trailing)
            key = name.lower()
            values = headers.get(key)
            if values is None:
                headers[key] = [value]
            else:
                values.append(value)
        if size + 4 * len(self._fields) > MAX_HEAD:
            raise _Refusal(431, "The request head is too large.")
        for values in headers.values():
            for value in values:
                if value.find(b"\t") >= 0:  # (not `b"\t" in value`: that tries the byte as an int first, and raises inside)
                    raise _Refusal(400, "Malformed request: a header value holds a TAB.")
        parser = self._parser
        version = _VERSIONS.get(parser.get_http_version())
        if version is None:
            raise _Refusal(400, "Only HTTP/1.0 and HTTP/1.1 are supported.")
        self._version = version
        hosts = headers.get(b"host")
        if hosts is None:
            if version == b"HTTP/1.1":
                raise _Refusal(400, "An HTTP/1.1 request must carry exactly one Host header.")
        elif len(hosts) > 1:
            raise _Refusal(400, "A request may carry one Host header at most.")
        if parser.should_upgrade() and parser.get_method() == b"CONNECT":
            raise _Refusal(400, "CONNECT is not supported.")
        if b"transfer-encoding" in headers:
            raise _Refusal(400, "Chunked request bodies are not supported; send Content-Length.")
        lengths = headers.get(b"content-length")
        if lengths:
            length = int(lengths[0])  # llhttp allows digits only, and one value
            if length > MAX_BODY:
                raise _Refusal(413, "Request is too large.")
            if length and version == b"HTTP/1.1":
                expect = headers.get(b"expect")
                if expect and expect[0].lower() == b"100-continue":
                    self._wants_continue = True
                    self._send_continue()

    def on_body(self, data: bytes) -> None:
        """httptools: part of the body (never more than the announced, bounded, length)."""
        if self._body is None:
            self._body = [data]
        else:
            self._body.append(data)

    def on_message_complete(self) -> None:
        """httptools: a whole request; it joins the queue."""
        parser = self._parser
        headers = self._headers
        body = self._body
        request = HTTPRequest(parser.get_method(), self._url, self._version, headers, b"".join(body) if body else b"", self._peer)
        self._queue.append((request, parser.should_keep_alive() and b"upgrade" not in headers))
        self._next_request()

    def _send_continue(self) -> None:
        """Tell an HTTP/1.1 client waiting with its body to send it, once its turn has come."""
        if self._wants_continue and self._pending is None and not self._queue and not self._closing:
            self._wants_continue = False
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    # -- answering ----------------------------------------------------------------------------

    def _advance(self) -> None:
        """Answer queued requests in order, parse held-back bytes, and decide whether to read."""
        if self._processing:
            return  # an answer that came synchronously, inside this loop: the loop goes on
        self._processing = True
        try:
            while not self._closing and self._pending is None and not self._write_paused:
                if self._queue:
                    self._serve(self._queue.popleft())
                elif self._unfed:
                    data, self._unfed = self._unfed, b""
                    self._feed(data)
                else:
                    break
            if self._closing:
                return
            if self._pending is None and not self._queue:
                if self._read_closed or self._refused:
                    self._close()
                    return
                if self._url is None and not self._write_paused:
                    self.deadline = self._idle_since + self._idle_limit  # the usual case, inline
                else:
                    if self._wants_continue:
                        self._send_continue()
                    self._rearm()
            else:
                self._rearm()
            if self._reading is (self._write_paused or bool(self._unfed) or len(self._queue) >= MAX_PIPELINE):
                self._update_reading()
        finally:
            self._processing = False

    def _serve(self, item: tuple[HTTPRequest, bool] | _Refusal) -> None:
        if isinstance(item, _Refusal):
            self._write(plain_response(item.code, item.text), None, keep=False)
            return
        request, keep = item
        if (self._refused or self._read_closed) and not self._queue:
            keep = False  # nothing will follow this answer
        try:
            result = self.factory.handler(request)
        except Exception:
            self._log.failure("unhandled error answering {path}", path=loggable(request.target))
            result = plain_response(500, "An unknown error has occurred. Please try your request again.")
        if isinstance(result, Deferred):
            self._pending = result
            result.addBoth(self._answered, result, request, keep)
            return
        self._write(result, request, keep)

    def _answered(self, result: Any, deferred: Deferred[Any], request: HTTPRequest, keep: bool) -> None:
        if self._pending is not deferred:
            return None  # the connection is gone and the answer with it
        self._pending = None
        if isinstance(result, Failure):
            if result.check(CancelledError):
                return None
            self._log.failure("unhandled error answering {path}", result, path=loggable(request.target))
            result = plain_response(500, "An unknown error has occurred. Please try your request again.")
        self._write(result, request, keep)
        self._advance()
        return None

    def _write(self, response: HTTPResponse, request: HTTPRequest | None, keep: bool) -> None:
        head_only = request is not None and request.method == b"HEAD"
        length = response.length if head_only and response.length is not None else len(response.body)
        reason = REASONS.get(response.code, b"Unknown")
        parts = [b"HTTP/1.1 %d %s\r\nDate: %s\r\nContent-Length: %d\r\n" % (response.code, reason, self.factory.date.now(), length)]
        for name, value in response.headers:
            parts.append(name + b": " + value + b"\r\n")
        if not keep:
            parts.append(b"Connection: close\r\n")
        elif request is not None and request.version == b"HTTP/1.0":
            parts.append(b"Connection: keep-alive\r\n")
        if request is not None:
            correlation = request.headers.get(CORRELATION_HEADER)
            if correlation and len(correlation) == 1 and len(correlation[0]) <= 32 and correlation[0].isalnum():
                parts.append(b"X-Mdsvc-Request-Id: " + correlation[0] + b"\r\n")
        parts.append(b"\r\n")
        if not head_only:
            parts.append(response.body)
        self.transport.write(b"".join(parts))
        if keep:
            self._idle_since = self.factory.clock.seconds()
            self._idle_limit = self.factory.idle_timeout
        else:
            self._close()

    def _close(self) -> None:
        if self._closing:
            return
        self._closing = True
        self._close_by = self.factory.clock.seconds() + CLOSE_GRACE
        self._rearm()
        self.transport.unregisterProducer()
        self.transport.loseConnection()

    # -- reading and deadlines ----------------------------------------------------------------

    def _update_reading(self) -> None:
        """Read only while what was read so far fits the bounds and the client takes its answers."""
        if self._closing:
            return  # the transport stops reading by itself
        want = not (self._write_paused or self._unfed or len(self._queue) >= MAX_PIPELINE)
        if want != self._reading:
            self._reading = want
            if want:
                self.transport.resumeProducing()
            else:
                self.transport.pauseProducing()

    def _rearm(self) -> None:
        """The moment this connection has overstayed, from its state (checked by the sweep)."""
        if self._closing:
            self.deadline = self._close_by
        elif self._write_paused:
            self.deadline = self._stalled_since + self.factory.idle_timeout
        elif self._pending is not None or self._queue:
            self.deadline = None  # the handler's own timeouts bound the wait
        elif self._url is not None:
            started = self._started if self._started is not None else self.factory.clock.seconds()
            self.deadline = started + self.factory.request_timeout
        else:
            self.deadline = self._idle_since + self._idle_limit

    def timed_out(self) -> None:
        """The sweep found the deadline passed: 408 mid-request, else close (abort if stuck)."""
        self.deadline = None
        if self._closing or self._write_paused:
            self.transport.abortConnection()  # it does not take the bytes we owe it
        elif self._url is not None:
            self._refuse(_Refusal(408, "The request was not sent in time."))
            self._advance()
        else:
            self._close()


class LeanHTTPFactory(Factory):
    """
    Serves C{handler} over L{LeanHTTPProtocol}.

    @param request_timeout: seconds a client has to send a whole request (head and body), from
        its first byte; also how long a new connection may stay silent.
    @param idle_timeout: seconds a kept-alive connection may stay idle, and a client may leave
        an answer unread.
    @param name: how logs name the server (C{metadata-api starting on 8775}).
    @param limits: admission of connections, shared by the process's listeners; None admits all.
    @param guest_facing: whether each source address is a guest, held to the per-guest limit
        (the namespace proxies; not the API behind agents or a load balancer, whose few
        sources carry every guest's requests).
    (Deadlines are checked once a second, so a connection goes within a second of its deadline.)
    """

    def __init__(
        self, handler: Handler, clock: IReactorTime | None = None, request_timeout: float = 30, idle_timeout: float = 60,
        name: str = "http", limits: ConnectionLimits | None = None, guest_facing: bool = True,
    ) -> None:
        if clock is None:
            from twisted.internet import reactor as clock  # type: ignore[assignment]
        self.name = name
        self.handler = handler
        self.clock = clock
        self.request_timeout = request_timeout
        self.idle_timeout = idle_timeout
        self.limits = limits
        self.guest_facing = guest_facing
        self.date = _DateCache(clock)
        self.sweep_interval = 1.0
        self._watched: dict[LeanHTTPProtocol, None] = {}
        self._sweeper: Any = None

    def connection_opened(self, protocol: LeanHTTPProtocol) -> None:
        """A connection built here is up: its deadlines are watched."""
        self._watched[protocol] = None
        if self._sweeper is None or not self._sweeper.running:
            from twisted.internet.task import LoopingCall

            self._sweeper = LoopingCall(self._sweep)
            self._sweeper.clock = self.clock
            self._sweeper.start(self.sweep_interval, now=False)

    def _sweep(self) -> None:
        """Time out the connections whose deadline has passed (checked every C{sweep_interval})."""
        now = self.clock.seconds()
        for protocol in [p for p in self._watched if p.deadline is not None and p.deadline <= now]:
            protocol.timed_out()

    def logPrefix(self) -> str:
        """What the listening port's log lines call this server (metadata-api, ...)."""
        return self.name

    def buildProtocol(self, addr: Any) -> LeanHTTPProtocol | None:
        """One protocol per admitted connection; None (the connection is closed) past a limit."""
        source = getattr(addr, "host", None)
        if isinstance(source, str) and self.guest_facing:
            source = source.split("%", 1)[0]
        else:
            source = None
        if self.limits is not None and not self.limits.admit(self, source, self.name):
            return None
        return LeanHTTPProtocol(self, source)

    def connection_closed(self, protocol: LeanHTTPProtocol) -> None:
        """A connection built here is gone: no more deadlines, its admission released."""
        if self._watched.pop(protocol, False) is None:
            if self.limits is not None:
                self.limits.release(self, protocol.source)
            if not self._watched and self._sweeper is not None and self._sweeper.running:
                self._sweeper.stop()

    def doStart(self) -> None:
        """Quiet: no log line per listener start (a proxy may own a thousand)."""
        self.numPorts += 1

    def doStop(self) -> None:
        """Quiet."""
        self.numPorts -= 1


__all__ = ["HTTPRequest", "HTTPResponse", "LeanHTTPFactory", "LeanHTTPProtocol", "plain_response"]
