# -*- test-case-name: tests.test_httpclient -*-
"""
A lean pooled HTTP/1.1 client for mdsvc's own hops (agent to API, proxy to agent socket).

Both ends of these hops are known: small requests, small answers with a Content-Length (or
chunked, which is decoded), one server.  The pool keeps up to C{size} persistent connections.
A request takes an idle connection, or opens a new one.  POSTs are never pipelined, nor is
anything pipelined behind them.  A request that fails on a shared connection before its answer
arrived (the server closed it) is sent once more on a fresh connection if it is idempotent.
Cancelling the request whose answer the connection is waiting for aborts the connection (the
others on it are retried); cancelling one further back just drops its answer.

Nothing is written that could be read as more than one request: every request head is checked
by L{mdsvc.wire.check_request} before it is sent.  Every request carries a correlation id
(C{X-Mdsvc-Request-Id}) that mdsvc's own servers echo: an answer with another id is a stray and
kills its connection.  GETs are pipelined (when all C{size} connections are busy, behind the one
with the fewest in flight, at most C{depth}) only while the server echoes, so every pipelined
answer is checked against its request; an answer without an id (Nova, or a load balancer that
mixes servers) makes whatever was pipelined behind it go again on another connection, and
nothing is pipelined until ids come back.  A connection on which anything arrives that no
request awaits is aborted, never reused.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Callable
from itertools import count
from typing import Any

from attrs import define, field, frozen
from twisted.application.service import Service
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure

from mdsvc.http import CORRELATION_HEADER, HTTPResponse
from mdsvc.wire import check_request

MAX_RESPONSE_HEAD = 64 * 1024
MAX_RESPONSE_BODY = 16 * 1024 * 1024
IDEMPOTENT = {b"GET", b"HEAD", b"OPTIONS", b"PUT", b"DELETE"}
HOP_BY_HOP = {b"connection", b"keep-alive", b"proxy-authenticate", b"proxy-authorization", b"te", b"trailers",
              b"transfer-encoding", b"upgrade", b"content-length", b"date", b"server", CORRELATION_HEADER}


class ConnectionFailed(Exception):
    """The server could not be reached, or closed the connection before a whole answer."""


class BadResponse(Exception):
    """The server's answer is not HTTP/1.x as expected."""


class RequestTimedOut(Exception):
    """No whole answer within the request's timeout."""


@define(eq=False)
class _Pending:
    """A request sent on a connection, waiting for its answer."""

    deferred: Deferred[HTTPResponse]
    head_only: bool
    pipelinable: bool
    sent_at: float
    correlation: bytes
    cancelled: bool = False


@frozen
class _Outgoing:
    """A request as written, and how the pool may treat it."""

    data: bytes
    correlation: bytes
    head_only: bool
    pipelinable: bool
    retry: bool


@define(eq=False)
class _Response:
    """The answer being read."""

    status: int = 0
    headers: list[tuple[bytes, bytes]] = field(factory=list)
    length: int | None = None
    announced: int | None = None
    chunked: bool = False
    close: bool = False
    unverified: bool = False
    body: list[bytes] = field(factory=list)
    received: int = 0


_STATUS_LINE = re.compile(rb"HTTP/1\.([01]) ([1-9][0-9]{2})(?: [\t\x20-\x7e\x80-\xff]*)?")
_HEADER_LINE = re.compile(rb"([!#$%&'*+\-.^_`|~0-9A-Za-z]+):[ \t]*([\t\x20-\x7e\x80-\xff]*?)[ \t]*")
_CHUNK_SIZE = re.compile(rb"([0-9A-Fa-f]{1,8})(?:;[\t\x20-\x7e]*)?")


class _ClientProtocol(Protocol):
    """
    One connection; answers come back in the order the requests went out.

    Answers are parsed strictly (status line, header lines, one Content-Length or chunked, never
    both); anything else, bytes that arrive when no answer is awaited, bytes left over after the
    last awaited answer, or an answer carrying another request's correlation id, make the
    connection dead and aborted: no stray answer is ever handed to a request.
    """

    transport: Any  # a TCP, TLS or UNIX transport, which can abort

    def __init__(self, pool: HTTPPool) -> None:
        self.pool = pool
        self._buffer = b""
        self.pending: deque[_Pending] = deque()
        self._response: _Response | None = None
        self.used = 0
        self.dead = False
        self.echoes = pool.echoes
        self._unpipelinable = 0

    @property
    def pipelinable(self) -> bool:
        """Whether a GET may go behind what is in flight: the server echoes request ids (so every
        answer is checked against its request), no POST among it, not closing."""
        return self.echoes and not self.dead and not self._unpipelinable

    def send(self, data: bytes, head_only: bool, pipelinable: bool, correlation: bytes) -> Deferred[HTTPResponse]:
        """Write one whole request; the Deferred fires with its answer, in order."""
        entry = _Pending(Deferred(self._cancel), head_only, pipelinable, self.pool.clock.seconds(), correlation)
        self.pending.append(entry)
        if not pipelinable:
            self._unpipelinable += 1
        self.used += 1
        self.transport.write(data)  # (an in-memory server may answer before this returns)
        return entry.deferred

    def _cancel(self, deferred: Deferred[HTTPResponse]) -> None:
        for entry in self.pending:
            if entry.deferred is deferred:
                entry.cancelled = True
                if entry is self.pending[0]:
                    # its answer is the one the connection waits for: the connection goes
                    self._kill()
                return

    def _kill(self) -> None:
        self.dead = True
        if self.transport is not None:
            self.transport.abortConnection()

    def dataReceived(self, data: bytes) -> None:
        """Parse as many whole answers as have arrived."""
        if self.dead:
            return
        if not self.pending:
            self._stray("bytes arrived while no answer was awaited")
            return
        self._buffer += data
        try:
            while self.pending and self._buffer and not self.dead and self._parse():
                pass
        except BadResponse as e:
            self.dead = True
            self._fail_all(Failure(e))
            self._kill()

    def _stray(self, what: str) -> None:
        self.pool._log.warn("{host}: {what}; connection dropped", host=self.pool.host.decode("latin-1"), what=what)
        self._kill()

    def _parse(self) -> bool:
        """Parse what is buffered; True when an answer was completed (more may follow)."""
        if self._response is None:
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self._buffer) > MAX_RESPONSE_HEAD:
                    raise BadResponse("response head too large")
                return False
            head, self._buffer = self._buffer[:end], self._buffer[end + 4:]
            lines = head.split(b"\r\n")
            status = _STATUS_LINE.fullmatch(lines[0])
            if status is None:
                raise BadResponse(f"bad status line {lines[0][:80]!r}")
            code = int(status.group(2))
            if code == 101:
                raise BadResponse("the server switched protocols")
            if code < 200:  # 100 Continue, 103 Early Hints: the real answer follows
                return True
            response = _Response(status=code)
            for line in lines[1:]:
                field = _HEADER_LINE.fullmatch(line)
                if field is None:
                    raise BadResponse("bad header line")
                response.headers.append((field.group(1), field.group(2)))
            lowered: dict[bytes, list[bytes]] = {}
            for name, value in response.headers:
                lowered.setdefault(name.lower(), []).append(value)
            connection = b",".join(lowered.get(b"connection", [])).lower()
            response.close = b"close" in connection or status.group(1) == b"0"
            encodings = lowered.get(b"transfer-encoding")
            lengths = lowered.get(b"content-length")
            if encodings is not None:
                if lengths is not None:
                    raise BadResponse("both Content-Length and Transfer-Encoding")
                if b",".join(encodings).strip().lower() != b"chunked":
                    raise BadResponse("a transfer coding other than chunked")
                response.chunked = True
            elif lengths is not None:
                values = {v.strip() for length in lengths for v in length.split(b",")}
                if len(values) != 1:
                    raise BadResponse("conflicting Content-Length values")
                (length,) = values
                if not length.isdigit() or len(length) > 12:
                    raise BadResponse("bad Content-Length")
                response.length = int(length)
            entry = self.pending[0]
            correlation = lowered.get(b"x-mdsvc-request-id")
            if correlation is not None:
                if correlation != [entry.correlation]:
                    raise BadResponse("an answer to another request (correlation id mismatch)")
                self.echoes = self.pool.echoes = True
            else:
                # an answer that cannot be checked (Nova, or a load balancer mixing servers):
                # fine alone on its connection, but nothing may stay pipelined behind it
                self.echoes = self.pool.echoes = False
                response.unverified = len(self.pending) > 1
            if entry.head_only or code in (204, 304):
                response.announced = response.length
                response.length, response.chunked = 0, False
            if response.length is not None and response.length > MAX_RESPONSE_BODY:
                raise BadResponse("response body too large")
            self._response = response
        response = self._response
        if response.chunked:
            return self._parse_chunks(response)
        if response.length is not None:
            if len(self._buffer) < response.length:
                return False
            body, self._buffer = self._buffer[:response.length], self._buffer[response.length:]
            self._done(response, body)
            return True
        if len(self._buffer) > MAX_RESPONSE_BODY:
            raise BadResponse("response body too large")
        return False  # no length, not chunked: the body ends when the connection does

    def _parse_chunks(self, response: _Response) -> bool:
        while True:
            end = self._buffer.find(b"\r\n")
            if end < 0:
                if len(self._buffer) > 1024:
                    raise BadResponse("bad chunk size line")
                return False
            size_line = _CHUNK_SIZE.fullmatch(self._buffer[:end])
            if size_line is None:
                raise BadResponse("bad chunk size")
            size = int(size_line.group(1), 16)
            if size == 0:
                rest = self._buffer[end + 2:]
                if rest.startswith(b"\r\n"):
                    self._buffer = rest[2:]
                else:  # trailers, ended by an empty line
                    trailers_end = rest.find(b"\r\n\r\n")
                    if trailers_end < 0:
                        if len(rest) > MAX_RESPONSE_HEAD:
                            raise BadResponse("trailers too large")
                        return False
                    self._buffer = rest[trailers_end + 4:]
                self._done(response, b"".join(response.body))
                return True
            if response.received + size > MAX_RESPONSE_BODY:
                raise BadResponse("response body too large")
            if len(self._buffer) < end + 2 + size + 2:
                return False
            if self._buffer[end + 2 + size:end + 2 + size + 2] != b"\r\n":
                raise BadResponse("chunk not followed by CRLF")
            response.body.append(self._buffer[end + 2:end + 2 + size])
            response.received += size
            self._buffer = self._buffer[end + 2 + size + 2:]

    def _done(self, response: _Response, body: bytes) -> None:
        entry = self.pending.popleft()
        if not entry.pipelinable:
            self._unpipelinable -= 1
        self._response = None
        if not self.pending and self._buffer:
            # more than was asked for: whatever it is, it is nobody's answer
            self._buffer = b""
            self._stray("bytes beyond the last awaited answer")
        elif response.unverified:
            # requests pipelined behind an answer without an id: theirs could not be told apart
            # from strays, so they are sent again on another connection
            self._buffer = b""
            self.dead = True
            self._fail_all(Failure(ConnectionFailed("the server stopped echoing request ids")))
            self.transport.abortConnection()
        elif response.close:
            self.dead = True
            self.transport.loseConnection()
        if not self.dead and not self.pending:
            self.pool._release(self)  # before the callback, which may send the next request
        if not entry.cancelled:
            entry.deferred.callback(HTTPResponse(response.status, tuple(response.headers), body, response.announced))

    def _fail_all(self, failure: Failure) -> None:
        pending, self.pending = self.pending, deque()
        for entry in pending:
            if not entry.cancelled:
                entry.deferred.errback(failure)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        """Fail what is still waiting (a close-delimited body ends here instead)."""
        self.dead = True
        self.pool._lost(self)
        response = self._response
        if response is not None and self.pending and response.length is None and not response.chunked:
            body, self._buffer = self._buffer, b""
            self._done(response, body)  # the body ran to the end of the connection
        self._fail_all(Failure(ConnectionFailed(f"connection closed before a whole answer ({reason.getErrorMessage()})")))


class HTTPPool:
    """
    Persistent connections to one server.

    @param connect: returns a Deferred connecting a protocol made by the given factory (an
        endpoint's C{connect}, e.g. C{TCP4ClientEndpoint(...).connect}).
    @param host: the C{Host} header value.
    @param size: connections to keep; more are opened only when every one is stalled.
    @param depth: most requests in flight on one connection (1: no pipelining).
    @param clock: tells how long a connection has waited for its answer.
    @param stall: seconds after which a connection waiting for an answer takes no more GETs
        behind it (a slow answer, say dynamic vendordata, holds up no one else).
    @param ceiling: most connections ever open at once.
    """

    _log = Logger()

    def __init__(
        self, connect: Callable[[Any], Deferred[Any]], host: bytes, size: int = 64, depth: int = 1,
        clock: Any = None, stall: float = 0.05, ceiling: int | None = None,
    ) -> None:
        if clock is None:
            from twisted.internet import reactor as clock
        self._connect = connect
        self.host = host
        self.size = size
        self.depth = depth
        self.clock = clock
        self.stall = stall
        self.ceiling = max(size, ceiling if ceiling is not None else 16 * size)
        self._idle: deque[_ClientProtocol] = deque()
        self._live: list[_ClientProtocol] = []
        self._opening = 0
        self._queue: deque[tuple[Deferred[_ClientProtocol], bool]] = deque()
        self._deadlines: dict[Deferred[HTTPResponse], float] = {}
        self._expired: set[Deferred[HTTPResponse]] = set()
        self._sweeper: Any = None
        self._ids = count(1)
        self.echoes = False
        """Whether the server's last answer echoed its request id (mdsvc's own servers do)."""
        self.connections_made = 0

    @property
    def open_connections(self) -> int:
        """Connections open or being opened."""
        return len(self._live) + self._opening

    @property
    def idle_connections(self) -> int:
        """Open connections waiting for a request."""
        return len(self._idle)

    @property
    def waiters(self) -> int:
        """Requests waiting for a connection (every one is busy and no more may be opened)."""
        return len(self._queue)

    def request(
        self, method: bytes, target: bytes, headers: list[tuple[bytes, bytes]], body: bytes = b"", timeout: float | None = None,
    ) -> Deferred[HTTPResponse]:
        """
        Send one request; fires with the whole L{HTTPResponse} (for HEAD: no body, and the
        length the server announced in C{length}).

        @param timeout: seconds for the whole answer, waiting for a connection included
            (checked by one sweep of the pool, within a quarter second).
        @raise mdsvc.wire.UnsafeRequest: (raised at once) the method, target or a header holds
            bytes that must not be written; nothing is sent.
        @raise ConnectionFailed: (as a failure) the server cannot be reached or dropped the connection.
        @raise RequestTimedOut: (as a failure) no whole answer in time.
        """
        check_request(method, target, headers)
        correlation = b"%x" % next(self._ids)
        lines = [method + b" " + target + b" HTTP/1.1", b"Host: " + self.host, b"X-Mdsvc-Request-Id: " + correlation]
        lines.extend(name + b": " + value for name, value in headers)
        if body or method in (b"POST", b"PUT", b"PATCH"):
            lines.append(b"Content-Length: %d" % len(body))
        outgoing = _Outgoing(b"\r\n".join(lines) + b"\r\n\r\n" + body, correlation, method == b"HEAD",
                             method in (b"GET", b"HEAD"), method in IDEMPOTENT)
        attempt = self._get(outgoing.pipelinable).addCallback(self._send, outgoing)
        result: Deferred[HTTPResponse] = Deferred(lambda _: attempt.cancel())
        if timeout is not None:
            self._deadlines[result] = self.clock.seconds() + timeout
            result.addBoth(self._settled, result)
            self._start_sweep()
        attempt.addBoth(_settle, result)
        return result

    def _send(self, protocol: _ClientProtocol, outgoing: _Outgoing) -> Deferred[HTTPResponse]:
        """Send on C{protocol}; if a shared connection turns out dead, once more on a fresh one."""
        shared = protocol.used > 0 or bool(protocol.pending)
        d = protocol.send(outgoing.data, outgoing.head_only, outgoing.pipelinable, outgoing.correlation)
        if shared and outgoing.retry:
            d.addErrback(self._again, outgoing)
        return d

    def _again(self, failure: Failure, outgoing: _Outgoing) -> Any:
        if not failure.check(ConnectionFailed):
            return failure
        fresh = self._get(outgoing.pipelinable, fresh=True)
        return fresh.addCallback(lambda p: p.send(outgoing.data, outgoing.head_only, outgoing.pipelinable, outgoing.correlation))

    def _settled(self, outcome: Any, result: Deferred[HTTPResponse]) -> Any:
        self._deadlines.pop(result, None)
        if result in self._expired:
            self._expired.discard(result)
            if isinstance(outcome, Failure):
                # cancelled by the sweep: however the cancellation surfaced (a connect being made
                # fails as a lookup or connect error), the request ran out of time
                return Failure(RequestTimedOut(f"no answer from {self.host.decode('latin-1')} in time"))
        return outcome

    def _start_sweep(self) -> None:
        if self._sweeper is None or not self._sweeper.running:
            from twisted.internet.task import LoopingCall

            self._sweeper = LoopingCall(self._sweep)
            self._sweeper.clock = self.clock
            self._sweeper.start(0.25, now=False)

    def _sweep(self) -> None:
        """Cancel, as timed out, the requests past their deadline (one timer for the pool)."""
        now = self.clock.seconds()
        for result in [r for r, deadline in self._deadlines.items() if deadline <= now]:
            self._expired.add(result)
            result.cancel()
        if not self._deadlines and self._sweeper is not None and self._sweeper.running:
            self._sweeper.stop()

    def _get(self, pipelinable: bool, fresh: bool = False) -> Deferred[_ClientProtocol]:
        while self._idle and not fresh:
            protocol = self._idle.pop()
            if not protocol.dead and not protocol.pending:
                return _succeed(protocol)
        open_now = len(self._live) + self._opening
        if fresh or open_now < self.size:
            return self._new()
        if pipelinable and self.depth > 1:
            recent = self.clock.seconds() - self.stall
            candidates = [p for p in self._live
                          if p.pipelinable and p.pending and len(p.pending) < self.depth and p.pending[0].sent_at > recent]
            if candidates:
                return _succeed(min(candidates, key=lambda p: len(p.pending)))
        if open_now < self.ceiling:
            return self._new()  # every connection is full or stalled
        waiter: Deferred[_ClientProtocol] = Deferred(lambda d: self._drop_waiter(d))
        self._queue.append((waiter, pipelinable))
        return waiter

    def _drop_waiter(self, d: Deferred[_ClientProtocol]) -> None:
        self._queue = deque(w for w in self._queue if w[0] is not d)

    def _new(self) -> Deferred[_ClientProtocol]:
        self._opening += 1
        self.connections_made += 1
        factory = Factory.forProtocol(lambda: _ClientProtocol(self))
        factory.noisy = False
        d = self._connect(factory)

        def made(protocol: _ClientProtocol) -> _ClientProtocol:
            self._opening -= 1
            self._live.append(protocol)
            return protocol

        def failed(failure: Failure) -> Failure:
            self._opening -= 1
            self._serve_queue()
            if failure.check(CancelledError):
                return failure
            raise ConnectionFailed(failure.getErrorMessage() or type(failure.value).__name__)

        return d.addCallbacks(made, failed)

    def _release(self, protocol: _ClientProtocol) -> None:
        if self._queue:
            waiter, _ = self._queue.popleft()
            waiter.callback(protocol)
            return
        if len(self._live) > self.size:
            protocol.dead = True  # an extra opened while the others stalled: not kept
            protocol.transport.loseConnection()
            return
        self._idle.append(protocol)

    def _lost(self, protocol: _ClientProtocol) -> None:
        if protocol in self._live:
            self._live.remove(protocol)
        try:
            self._idle.remove(protocol)
        except ValueError:
            pass
        self._serve_queue()

    def _serve_queue(self) -> None:
        while self._queue and len(self._live) + self._opening < self.ceiling:
            waiter, _ = self._queue.popleft()
            self._new().chainDeferred(waiter)

    def close(self) -> Deferred[None]:
        """Close the idle connections and stop the timeout sweep (the node is stopping)."""
        from twisted.internet.defer import succeed

        if self._sweeper is not None and self._sweeper.running:
            self._sweeper.stop()
        while self._idle:
            protocol = self._idle.pop()
            if protocol.transport is not None:
                protocol.transport.loseConnection()
        return succeed(None)


def _settle(outcome: Any, result: Deferred[HTTPResponse]) -> None:
    """Hand an attempt's outcome to the caller's Deferred, unless it was settled already (cancelled, timed out)."""
    if not result.called:
        if isinstance(outcome, Failure):
            result.errback(outcome)
        else:
            result.callback(outcome)


def _succeed(value: Any) -> Deferred[Any]:
    d: Deferred[Any] = Deferred()
    d.callback(value)
    return d


def relayed_headers(response: HTTPResponse) -> tuple[tuple[bytes, bytes], ...]:
    """The headers of an answer worth passing on (no hop-by-hop, length or correlation headers)."""
    return tuple((n, v) for n, v in response.headers if n.lower() not in HOP_BY_HOP)


def relayed(response: HTTPResponse) -> HTTPResponse:
    """An upstream answer as a hop passes it on: its own headers only, and a HEAD answer's length."""
    return HTTPResponse(response.code, relayed_headers(response), response.body, response.length)


class PoolService(Service):
    """Closes an L{HTTPPool}'s connections when the node stops (twistd waits for it)."""

    def __init__(self, pool: HTTPPool) -> None:
        self.pool = pool

    def stopService(self) -> Deferred[None]:
        """Close the idle connections."""
        super().stopService()
        return self.pool.close()
