# -*- test-case-name: tests.test_http -*-
"""
mdsvc's HTTP/1.1 server protocol, for the API, the agent socket and the namespace proxies.

Every byte it reads may come from a hostile guest.  The stream is cut into requests one at a
time (the head ends at the first empty line, the body after Content-Length bytes), and each
request's bytes are checked by llhttp (Node.js's parser, through C{httptools}) in strict mode,
which must find exactly that one request in them: the two can never read the stream
differently, and anything llhttp would not accept is refused.  mdsvc adds what llhttp leaves
to its user: only HTTP/1.0 and HTTP/1.1, exactly one C{Host} on 1.1, no C{Transfer-Encoding}
(no metadata client sends a chunked body; Nova fails on them), no C{CONNECT}, and limits on
the head (exact in bytes, however it is split into reads), the target, the number of fields
and the body.  A malformed request is answered 400 (413, 414 or 431 for the limits) after the
requests before it, and the connection is closed.

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
from collections.abc import Callable
from email.utils import formatdate
from typing import Any

from attrs import define, field
from httptools import HttpParserError, HttpParserUpgrade, HttpRequestParser
from twisted.internet.defer import CancelledError, Deferred, maybeDeferred
from twisted.internet.interfaces import IHalfCloseableProtocol, IPushProducer, IReactorTime
from twisted.internet.protocol import Protocol, ServerFactory
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from mdsvc.hoplimit import limit_hops
from mdsvc.limits import ConnectionLimits
from mdsvc.pages import TITLES, error_page
from mdsvc.wire import loggable

MAX_HEAD = 16 * 1024
"""Bytes of a request head, request line to empty line; haproxy's default buffer is 16 KiB.
Exact, whatever the reads the head arrives in."""

MAX_TARGET = 8 * 1024
"""The request target.  Each hop adds well under 1 KiB of its own headers to what it forwards,
so a request the guest-facing hop accepts is never too large for the hops behind it."""

MAX_FIELDS = 100
"""Header fields in one request."""

MAX_BODY = 64 * 1024
"""Metadata requests carry at most a password (1020 bytes)."""

MAX_PIPELINE = 16
"""Parsed requests that may wait behind the one being answered on one connection."""

CLOSE_GRACE = 5.0
"""Seconds a closing connection has to take its last answer before it is aborted."""

REFUSED_GRACE = 2.0
"""Seconds the answers still owed to a client whose bytes were refused and who then closed its
side may take before the connection is aborted (an attacker that streams garbage behind a slow
request and leaves does not hold the connection for as long as the request takes)."""

CORRELATION_HEADER = b"x-mdsvc-request-id"
"""Set by mdsvc's HTTP client on each request and echoed in the answer by mdsvc's servers, so
the client can tell an answer to its request from a stray one."""

REASONS = {code: title.encode("ascii") for code, title in TITLES.items()}
"""Status line reason phrases."""


@define(eq=False)
class HTTPRequest:
    """
    One parsed request (read-only; not frozen because one is made per request, and a frozen
    attrs instance costs 0.7 µs more to build).

    @ivar target: the request target as sent (path and query), checked by the parser: visible
        ASCII only.
    @ivar version: C{b"HTTP/1.0"} or C{b"HTTP/1.1"}.
    @ivar headers: lower-cased names to every value sent, in order (surrounding whitespace
        removed; values may hold TAB, which HTTP allows inside a value, and bytes above
        0x7f, so check one before passing it on: L{mdsvc.wire.forwardable_value}).
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


@define
class HTTPResponse:
    """
    What a handler answers: status, headers (name, value) and the whole body (read-only; not
    frozen because several are made per request, and a frozen attrs instance costs 0.7 µs more).

    @ivar length: for an answer to HEAD relayed from another server, the C{Content-Length} that
        server announced (the body is empty); None means C{len(body)}.
    @ivar hop_limit: the IP TTL / IPv6 hop limit the answer, and the rest of its connection,
        is sent with (L{mdsvc.hoplimit}); None: the system's.
    @ivar reason: why the request failed, for traces and logs (never sent): set by the hop that
        made the error; an answer relayed over HTTP has none.
    @ivar noted: whether a hop has logged this failure already (in one process, the same object
        crosses every hop).
    """

    code: int
    headers: tuple[tuple[bytes, bytes], ...]
    body: bytes
    length: int | None = None
    hop_limit: int | None = None
    reason: str | None = field(default=None, eq=False, repr=False)
    noted: bool = field(default=False, init=False, eq=False, repr=False)
    _wire: bytes | None = field(default=None, init=False, eq=False, repr=False)
    """The header lines as written, kept: a cached answer is written many times."""

    def wire_headers(self) -> bytes:
        """The headers as lines of the head (C{Name: value}, CR LF each)."""
        wire = self._wire
        if wire is None:
            wire = self._wire = b"".join(name + b": " + value + b"\r\n" for name, value in self.headers)
        return wire


Handler = Callable[[HTTPRequest], "HTTPResponse | Deferred[HTTPResponse]"]


class _DateCache:
    """The Date header, formatted once per second."""

    def __init__(self, clock: IReactorTime) -> None:
        self.clock = clock
        self.second = -1
        self.value = b""
        self._lines: dict[int, bytes] = {}

    def now(self) -> bytes:
        second = int(self.clock.seconds())
        if second != self.second:
            self.second = second
            self.value = formatdate(second, usegmt=True).encode("ascii")
            self._lines = {}
        return self.value

    def status_line(self, code: int) -> bytes:
        """C{HTTP/1.1 CODE REASON}, the Date, and C{Content-Length: } (the length follows)."""
        date = self.now()
        line = self._lines.get(code)
        if line is None:
            reason = REASONS.get(code, b"Unknown")
            line = self._lines[code] = b"HTTP/1.1 %d %s\r\nDate: %s\r\nContent-Length: " % (code, reason, date)
        return line


def error_response(code: int, explanation: str | None, accept: bytes | None = None, reason: str | None = None) -> HTTPResponse:
    """
    An error page (L{mdsvc.pages.error_page}) as the answer of any hop, the protocol's own
    refusals included.

    @param reason: what traces and logs say (default: the explanation); never sent.
    """
    page = error_page(code, explanation, accept)
    return HTTPResponse(code, ((b"Content-Type", page.content_type),), page.body,
                        reason=reason or explanation or TITLES.get(code, str(code)))


class _Refusal(Exception):
    """Ends parsing: the request is answered with C{code} and the connection closed."""

    def __init__(self, code: int, text: str) -> None:
        super().__init__(code, text)
        self.code = code
        self.text = text


def _keeps_alive(version: bytes, headers: dict[bytes, list[bytes]]) -> bool:
    """HTTP/1.1 keeps the connection unless told C{close}; HTTP/1.0 only if told C{keep-alive}."""
    values = headers.get(b"connection")
    if values is None:
        return version == b"HTTP/1.1"
    if len(values) == 1:
        value = values[0].lower()
        if value == b"keep-alive":
            return True
        if value == b"close":
            return False
    tokens = {t.strip().lower() for v in values for t in v.split(b",")}
    return b"close" not in tokens if version == b"HTTP/1.1" else b"keep-alive" in tokens


@implementer(IPushProducer, IHalfCloseableProtocol)
class LeanHTTPProtocol(Protocol):
    """One connection: parse, hand each request to the handler in turn, write the answers."""

    transport: Any  # a TCP or UNIX transport: also a push consumer that can half-close and abort
    _log = Logger()

    def __init__(self, factory: LeanHTTPFactory, source: str | None = None) -> None:
        self.factory = factory
        self.source = source
        self._parser = HttpRequestParser(self)
        self._heads_seen = 0
        self._messages_seen = 0
        self._upgrade = False
        self._buffer = b""  # bytes read and not yet cut into requests, from _position on
        self._position = 0
        self._scanned = 0  # where the search for the end of the head goes on
        self._fed = 0  # how far llhttp has read
        self._head: tuple[HTTPRequest, int, bool] | None = None  # the request whose body is awaited
        self._continue = False  # its client waits for 100 Continue
        self._started: float | None = None  # when the first byte of the request being read came
        self._backlog = False  # whole requests may wait in the buffer: the queue was full
        self._queue: deque[tuple[HTTPRequest, bool] | _Refusal] = deque()
        self._pending: Deferred[Any] | None = None
        self._refused = False
        self._last = False  # a request that ends the connection has been read
        self._closing = False
        self._read_closed = False
        self._write_paused = False
        self._reading = True
        self._processing = False
        self._draining = False
        self._kept_alive = False  # it has had an answer and was kept for more
        self._idle_since = 0.0
        self._idle_limit = factory.request_timeout
        self._stalled_since = 0.0
        self._close_by = 0.0
        self.deadline: float | None = None
        self._peer: str | None = None
        self._began = 0.0  # when the request being answered was taken up (metered listeners)

    # -- the connection ----------------------------------------------------------------------

    def connectionMade(self) -> None:
        """Remember the peer, watch the transport's write buffer, start the first deadline."""
        self._peer = getattr(self.transport.getPeer(), "host", None)
        self.transport.registerProducer(self, True)
        self._idle_since = self.factory.clock.seconds()
        self._rearm()
        self.factory.connection_opened(self)

    def dataReceived(self, data: bytes) -> None:
        """Cut what arrived into requests (within the bounds), then answer what can be answered."""
        if self._closing or self._refused or self._read_closed or self._last:
            return  # bytes after a refusal or a last request are read and dropped while the connection closes
        if self._position < len(self._buffer):
            self._buffer = self._buffer[self._position:] + data  # one copy per read, never per request
            self._scanned -= self._position
            self._fed -= self._position
        else:
            self._buffer = data
            self._scanned = self._fed = 0
            if self._head is None:
                self._started = None
        self._position = 0
        self._frame()
        if self._started is None and (self._head is not None or self._position < len(self._buffer)):
            self._started = self.factory.clock.seconds()  # a request began in this read and is not whole yet
        self._advance()

    def readConnectionLost(self) -> None:
        """
        The client half-closed: answer what it sent in full, then close.  A client whose bytes
        were refused gets its answers only if they come within C{REFUSED_GRACE} seconds; then
        the connection goes, and whatever was still being answered for it is cancelled.
        """
        self._read_closed = True
        self._forget_partial()  # a request cut short can never complete
        if self._closing:
            self.transport.loseConnection()  # the close we began: both sides are done
            return
        if self._refused:
            self._close_by = self.factory.clock.seconds() + REFUSED_GRACE
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

    # -- cutting requests out of the stream --------------------------------------------------

    @property
    def _reading_request(self) -> bool:
        """Whether part of a request has arrived and not all of it."""
        return self._head is not None or self._position < len(self._buffer)

    def _forget_partial(self) -> None:
        self._buffer, self._position, self._scanned, self._fed, self._head, self._started = b"", 0, 0, 0, None, None
        self._continue = False

    def _refuse(self, refusal: _Refusal) -> None:
        self._refused = True
        self._forget_partial()
        self._queue.append(refusal)

    def _frame(self) -> None:
        """
        Cut whole requests out of the buffer, one at a time, while the queue has room: the head
        ends at the first empty line (CR LF CR LF; a bare CR or LF anywhere in a head is
        refused), the body after as many bytes as Content-Length says.  Each request's bytes, and only those, are
        handed to llhttp, which must find exactly one request in them: any disagreement is a
        refusal, so the two can never read the stream differently.
        """
        buffer = self._buffer
        self._backlog = False
        parser = self._parser
        queue = self._queue
        try:
            while True:
                if len(queue) >= MAX_PIPELINE:
                    self._backlog = self._position < len(buffer)  # the rest waits, unread beyond
                    return
                position = self._position
                if self._head is None:
                    fed = self._fed
                    while buffer.startswith(b"\r\n", position) and fed <= position:
                        position += 2  # empty lines before a request line are ignored
                        self._position = self._scanned = self._fed = fed = position
                    if position >= len(buffer):
                        return
                    end = buffer.find(b"\r\n\r\n", self._scanned if self._scanned > position else position)
                    if end < 0:
                        # llhttp reads the head as it comes, so a malformed one is refused at once
                        upto = min(len(buffer), position + MAX_HEAD + 1)
                        self._feed(buffer[fed:upto], "head")
                        self._fed = upto
                        if self._heads_seen:
                            raise _Refusal(400, "Malformed request: the head does not end where it should.")
                        if len(buffer) - position > MAX_HEAD:
                            raise _Refusal(431, "The request head is too large.")
                        self._scanned = max(position, len(buffer) - 3)
                        return
                    end += 4
                    if end - position > MAX_HEAD:
                        raise _Refusal(431, "The request head is too large.")
                    whole = not position and end == len(buffer)  # the usual read: one request head, nothing else
                    try:
                        parser.feed_data(buffer if whole and not fed else buffer[fed:end])
                    except HttpParserUpgrade:
                        self._upgrade = True
                    except HttpParserError as e:
                        raise _Refusal(400, f"Malformed request head: {e}.") from None
                    self._fed = end
                    self._head = self._parse_head(buffer if whole else buffer[position:end])
                    self._position = position = end
                request, length, keep = self._head
                if length:
                    if len(buffer) - position < length:
                        return  # (a client waiting for 100 Continue gets it when its turn comes: _advance)
                    request.body = buffer[position:position + length]
                    self._feed(request.body, "body")
                if self._messages_seen != 1:
                    raise _Refusal(400, "Malformed request: the request does not end where its length says.")
                self._position = self._scanned = self._fed = position = position + length
                self._heads_seen = self._messages_seen = 0
                self._head = None
                self._continue = False
                queue.append((request, keep))
                if not keep:  # (HTTP/1.0 without keep-alive, Connection: close, or a request to upgrade)
                    self._last = True  # nothing after it will be answered: the rest is read and dropped
                    self._forget_partial()
                    return
                if position < len(buffer):
                    self._started = self.factory.clock.seconds()
                else:
                    self._started = None
                    return
        except _Refusal as refusal:
            self._refuse(refusal)

    def _feed(self, data: bytes, what: str) -> None:
        """Hand bytes of one request to llhttp; its errors become a 400 naming them."""
        try:
            self._parser.feed_data(data)
        except HttpParserUpgrade:
            self._upgrade = True
        except HttpParserError as e:
            raise _Refusal(400, f"Malformed request {what}: {e}.") from None

    def on_headers_complete(self) -> None:
        """httptools: llhttp found the end of the head."""
        self._heads_seen += 1

    def on_message_complete(self) -> None:
        """httptools: llhttp found the end of a request."""
        self._messages_seen += 1

    def _parse_head(self, head: bytes) -> tuple[HTTPRequest, int, bool]:
        """
        Take apart one whole head that llhttp has just accepted (the same bytes, so there is
        nothing left to guess), and refuse what mdsvc does not serve.

        @return: the request (its body still to come), the body's length, whether to keep the
            connection after the answer.
        @raise _Refusal: with the status to answer.
        """
        if self._heads_seen != 1:
            raise _Refusal(400, "Malformed request: the head does not end where it should.")
        crlf = head.count(b"\r\n")
        if head.count(b"\n") != crlf or head.count(b"\r") != crlf:
            # llhttp ends an HTTP/0.9 request line at a bare LF even in strict mode (so
            # "GET http://a<LF>X-Instance-ID: v/latest HTTP/1.1" is, to it, a 0.9 request with a
            # header); lines here end at CR LF only, and nothing else may look like a line end
            raise _Refusal(400, "Malformed request: a bare CR or LF in the head.")
        lines = head[:-4].split(b"\r\n")
        request_line = lines[0].split(b" ")
        if len(request_line) != 3 or request_line[0] != self._parser.get_method():
            raise _Refusal(400, "Malformed request line.")
        method, target, version = request_line
        if len(target) > MAX_TARGET:
            raise _Refusal(414, "The request target is too long.")
        if version != b"HTTP/1.1" and version != b"HTTP/1.0":
            raise _Refusal(400, "Only HTTP/1.0 and HTTP/1.1 are supported.")
        if len(lines) > MAX_FIELDS + 1:
            raise _Refusal(431, "The request has too many header fields.")
        headers: dict[bytes, list[bytes]] = {}
        setdefault = headers.setdefault
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            setdefault(name.lower(), []).append(value.strip(b" \t"))
        hosts = headers.get(b"host")
        if hosts is None:
            if version == b"HTTP/1.1":
                raise _Refusal(400, "An HTTP/1.1 request must carry exactly one Host header.")
        elif len(hosts) > 1:
            raise _Refusal(400, "A request may carry one Host header at most.")
        if method == b"CONNECT":
            raise _Refusal(400, "CONNECT is not supported.")
        if b"transfer-encoding" in headers:
            raise _Refusal(400, "Chunked request bodies are not supported; send Content-Length.")
        length = 0
        lengths = headers.get(b"content-length")
        if lengths:
            length = int(lengths[0])  # llhttp allows digits only, and one value
            if length > MAX_BODY:
                raise _Refusal(413, "Request is too large.")
            if length and version == b"HTTP/1.1":
                expect = headers.get(b"expect")
                self._continue = expect is not None and expect[0].lower() == b"100-continue"
        if (length == 0) != (self._messages_seen == 1):
            raise _Refusal(400, "Malformed request: llhttp and the Content-Length disagree.")
        if b"connection" in headers or version != b"HTTP/1.1":
            keep = _keeps_alive(version, headers) and not self._upgrade
        else:
            keep = not self._upgrade
        return HTTPRequest(method, target, version, headers, b"", self._peer), length, keep

    def _send_continue(self) -> None:
        """Tell an HTTP/1.1 client waiting with its body to send it, once its turn has come."""
        if self._continue and self._pending is None and not self._queue and not self._closing:
            self._continue = False
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
                elif self._backlog:
                    self._frame()
                else:
                    break
            if self._closing:
                return
            if self._pending is None and not self._queue:
                if self._read_closed or self._refused or self._last:
                    self._close()
                    return
                if not self._write_paused and self._position >= len(self._buffer) and self._head is None:
                    self.deadline = self._idle_since + self._idle_limit  # the usual case, inline
                else:
                    self._send_continue()
                    self._rearm()
            else:
                self._rearm()
            if self._reading is (self._write_paused or self._backlog or len(self._queue) >= MAX_PIPELINE):
                self._update_reading()
        finally:
            self._processing = False

    def _serve(self, item: tuple[HTTPRequest, bool] | _Refusal) -> None:
        every = self.factory.meter_every
        if every is not None:
            now = every.now  # (an attribute, not a method: loaded as one; see HopMeter)
            self._began = now()
        if isinstance(item, _Refusal):
            self._write(error_response(item.code, item.text), None, keep=False)
            return
        request, keep = item
        if (self._refused or self._read_closed or self._draining) and not self._queue:
            keep = False  # nothing will follow this answer
        try:
            result = self.factory.handler(request)
        except Exception:
            self._log.failure("unhandled error answering {path}", path=loggable(request.target))
            result = error_response(500, "An unknown error has occurred. Please try your request again.")
        if type(result) is not HTTPResponse and isinstance(result, Deferred):  # (the first test is the cheap one)
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
            result = error_response(500, "An unknown error has occurred. Please try your request again.")
        self._write(result, request, keep)
        self._advance()
        return None

    def _write(self, response: HTTPResponse, request: HTTPRequest | None, keep: bool) -> None:
        if self._draining and keep and not self._queue:
            keep = False  # the server is stopping: this was the last request of the connection
        head_only = request is not None and request.method == b"HEAD"
        length = response.length if head_only and response.length is not None else len(response.body)
        parts = [self.factory.date.status_line(response.code), b"%d\r\n" % length, response.wire_headers()]
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
        if response.hop_limit is not None:
            limit_hops(self.transport, response.hop_limit)
        self.transport.write(b"".join(parts))
        factory = self.factory
        meter = factory.meter
        if meter is not None:
            clock = meter.now  # (an attribute, not a method: loaded as one; see HopMeter)
            now = clock()  # the answer's time, and the start of the idle time that follows
            if request is None:  # the protocol's own refusal
                meter.answered(response, self._began or now, self.source or self._peer, factory.scope, None, b"-", b"-", None)
            elif factory.meter_every is not None:
                inner = meter.inner  # an agent of this process that answered within this call: one record for both
                note = meter.note
                if inner is None:
                    note((meter.hop, self._began, now, response.code, response if response.reason is not None else None,
                          self.source or self._peer, factory.scope, None, request.method, request.target, None, None))
                else:
                    meter.inner = None
                    note((inner[0], self._began, now, response.code, response if response.reason is not None else None,
                          self.source or self._peer, factory.scope, inner[1], request.method, request.target, inner[2], inner[3]))
            if keep:
                self._idle_since = now
                self._idle_limit = factory.idle_timeout
                self._kept_alive = True
            else:
                self._close()
        elif keep:
            self._idle_since = factory.clock.seconds()
            self._idle_limit = factory.idle_timeout
            self._kept_alive = True
        else:
            self._close()

    def _close(self) -> None:
        """
        End the connection after the last answer.  Where the transport can half-close, only our
        side is closed, and whatever the client still sends is read and dropped until it closes
        too (at most C{CLOSE_GRACE} seconds): closing a socket with unread bytes in it makes the
        kernel send a reset, which can destroy the last answer before the client has read it.
        """
        if self._closing:
            return
        self._closing = True
        self._close_by = self.factory.clock.seconds() + CLOSE_GRACE
        self._rearm()
        self.transport.unregisterProducer()
        half_close = getattr(self.transport, "loseWriteConnection", None)
        if half_close is None or self._read_closed:
            self.transport.loseConnection()
            return
        half_close()
        if not self._reading:
            self._reading = True
            self.transport.resumeProducing()

    # -- reading and deadlines ----------------------------------------------------------------

    def _update_reading(self) -> None:
        """Read only while what was read so far fits the bounds and the client takes its answers."""
        if self._closing:
            return  # the transport stops reading by itself
        want = not (self._write_paused or self._backlog or len(self._queue) >= MAX_PIPELINE)
        if want != self._reading:
            self._reading = want
            if want:
                self.transport.resumeProducing()
            else:
                self.transport.pauseProducing()

    def _rearm(self) -> None:
        """The moment this connection has overstayed, from its state (checked by the sweep)."""
        if self._closing or (self._refused and self._read_closed):
            self.deadline = self._close_by
        elif self._write_paused:
            self.deadline = self._stalled_since + self.factory.idle_timeout
        elif self._pending is not None or self._queue:
            self.deadline = None  # the handler's own timeouts bound the wait
        elif self._reading_request:
            started = self._started if self._started is not None else self.factory.clock.seconds()
            self.deadline = started + self.factory.request_timeout
        else:
            self.deadline = self._idle_since + self._idle_limit

    def drain(self, grace: float) -> None:
        """
        The server is stopping (L{LeanHTTPFactory.drain}): the requests read or being read are
        answered, the last one with C{Connection: close}, and the connection closed after it; a
        kept-alive connection waiting for its next request gets C{grace} seconds to send one.
        A connection that has not sent its first request yet keeps its request deadline.
        """
        self._draining = True
        if self._closing:
            return
        if self._kept_alive and self._pending is None and not self._queue:
            self._idle_limit = self.factory.clock.seconds() - self._idle_since + grace
        self._rearm()

    def timed_out(self) -> None:
        """The sweep found the deadline passed: 408 mid-request, else close (abort if stuck)."""
        self.deadline = None
        if self._closing or self._write_paused or (self._refused and self._read_closed):
            self.transport.abortConnection()  # it does not take the bytes we owe it, or is gone
        elif self._reading_request:
            self._refuse(_Refusal(408, "The request was not sent in time."))
            self._advance()
        else:
            self._close()


class AccessLog:
    """Wraps a handler to log one line per answered request (C{[mdsvc] access_log = true})."""

    _log = Logger()

    def __init__(self, handler: Any) -> None:
        self.handler = handler

    def __call__(self, request: HTTPRequest) -> Deferred[HTTPResponse]:
        """Answer through the wrapped handler, then log the request and its status."""
        def logged(response: Any) -> Any:
            self._log.info("{peer} {method} {target} {code} {size}", peer=request.peer, method=request.method.decode("latin-1"),
                           target=loggable(request.target), code=getattr(response, "code", "-"),
                           size=len(getattr(response, "body", b"")))
            return response

        return maybeDeferred(self.handler, request).addCallback(logged)


class LeanHTTPFactory(ServerFactory):
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
    @param meter: the hop's L{mdsvc.metrics.HopMeter}: the protocol's own refusals are noted
        with it, and every answer when C{meter_answers} (a hop whose handler notes its answers
        itself, with more to say about them, leaves it off).
    @param scope: what the listener's traces name as the guest's network or router.
    (Deadlines are checked once a second, so a connection goes within a second of its deadline.)
    """

    def __init__(
        self, handler: Handler, clock: IReactorTime | None = None, request_timeout: float = 30, idle_timeout: float = 60,
        name: str = "http", limits: ConnectionLimits | None = None, guest_facing: bool = True,
        meter: Any = None, meter_answers: bool = True, scope: str | None = None,
    ) -> None:
        if clock is None:
            from twisted.internet import reactor

            clock = reactor
        self.name = name
        self.handler = handler
        self.clock: IReactorTime = clock
        self.request_timeout = request_timeout
        self.idle_timeout = idle_timeout
        self.limits = limits
        self.guest_facing = guest_facing
        self.meter = meter
        self.meter_answers = meter_answers
        self.meter_every = meter if meter_answers else None
        self.scope = scope
        self.date = _DateCache(clock)
        self.sweep_interval = 1.0
        self._watched: dict[LeanHTTPProtocol, None] = {}
        self._sweeper: Any = None
        self._drain: tuple[float, Deferred[None]] | None = None

    def connection_opened(self, protocol: LeanHTTPProtocol) -> None:
        """A connection built here is up: its deadlines are watched."""
        self._watched[protocol] = None
        if self._drain is not None:
            protocol.drain(self._drain[0])
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
            if not self._watched and self._drain is not None and not self._drain[1].called:
                self._drain[1].callback(None)

    def drain(self, grace: float = 0.5) -> Deferred[None]:
        """
        Answer what the connections have asked and close them (the listeners have stopped
        accepting): see L{LeanHTTPProtocol.drain}.  A connection still open when the caller gives
        up can be cut with L{abort_all}.

        @return: a Deferred that fires once every connection is closed.
        """
        if self._drain is None:
            self._drain = (grace, Deferred())
            for protocol in list(self._watched):
                protocol.drain(grace)
            if not self._watched:
                self._drain[1].callback(None)
        return self._drain[1]

    @property
    def open_connections(self) -> int:
        """How many connections built here are open."""
        return len(self._watched)

    def abort_all(self) -> None:
        """Cut every connection still open (a drain that took too long)."""
        for protocol in list(self._watched):
            if protocol.transport is not None:
                protocol.transport.abortConnection()

    def doStart(self) -> None:
        """Quiet: no log line per listener start (a proxy may own a thousand)."""
        self.numPorts += 1

    def doStop(self) -> None:
        """Quiet."""
        self.numPorts -= 1


__all__ = ["AccessLog", "HTTPRequest", "HTTPResponse", "LeanHTTPFactory", "LeanHTTPProtocol", "error_response"]
