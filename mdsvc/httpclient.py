# -*- test-case-name: tests.test_httpclient -*-
"""
A lean pooled HTTP/1.1 client for mdsvc's own hops (agent to API, proxy to agent socket).

Both ends of these hops are known: small requests, small answers with a Content-Length (or
chunked, which is decoded), one server.  The pool keeps up to C{size} persistent connections.
A request takes an idle connection, or opens a new one; when all C{size} are busy, a GET is
pipelined behind the connection with the fewest requests in flight (at most C{depth}), so a
burst of guests costs a few writes and reads on this hop instead of one each.  POSTs are never
pipelined, nor is anything pipelined behind them.  A request that fails on a shared connection
before its answer arrived (the server closed it) is sent once more on a fresh connection if it
is idempotent.  Cancelling the request whose answer the connection is waiting for aborts the
connection (the others on it are retried); cancelling one further back just drops its answer.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Callable

from attrs import define, field
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from mdsvc.http import HTTPResponse

MAX_RESPONSE_HEAD = 64 * 1024
MAX_RESPONSE_BODY = 16 * 1024 * 1024
IDEMPOTENT = {b"GET", b"HEAD", b"OPTIONS", b"PUT", b"DELETE"}
HOP_BY_HOP = {b"connection", b"keep-alive", b"proxy-authenticate", b"proxy-authorization", b"te", b"trailers",
              b"transfer-encoding", b"upgrade", b"content-length", b"date", b"server"}


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
    cancelled: bool = False


@define(eq=False)
class _Response:
    """The answer being read."""

    status: int = 0
    headers: list[tuple[bytes, bytes]] = field(factory=list)
    length: int | None = None
    chunked: bool = False
    close: bool = False
    body: list[bytes] = field(factory=list)
    received: int = 0


class _ClientProtocol(Protocol):
    """One connection; answers come back in the order the requests went out."""

    def __init__(self, pool: "HTTPPool") -> None:
        self.pool = pool
        self._buffer = b""
        self.pending: deque[_Pending] = deque()
        self._response: _Response | None = None
        self.used = 0
        self.dead = False
        self._unpipelinable = 0

    @property
    def pipelinable(self) -> bool:
        """Whether a GET may go behind what is in flight (no POST among it, not closing)."""
        return not self.dead and not self._unpipelinable

    def send(self, data: bytes, head_only: bool, pipelinable: bool) -> Deferred[HTTPResponse]:
        """Write one whole request; the Deferred fires with its answer, in order."""
        entry = _Pending(Deferred(self._cancel), head_only, pipelinable, self.pool.clock.seconds())
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
                    self.dead = True
                    self.transport.abortConnection()
                return

    def dataReceived(self, data: bytes) -> None:
        """Parse as many whole answers as have arrived."""
        if not self.pending:
            self.dead = True  # unsolicited bytes: the connection is in no known state
            self.transport.abortConnection()
            return
        self._buffer += data
        try:
            while self.pending and self._buffer and self._parse():
                pass
        except BadResponse as e:
            self.dead = True
            self._fail_all(Failure(e))
            self.transport.abortConnection()

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
            status = lines[0].split(b" ", 2)
            if len(status) < 2 or not status[0].startswith(b"HTTP/1.") or not status[1].isdigit():
                raise BadResponse(f"bad status line {lines[0][:80]!r}")
            if status[1] == b"100":  # 100 Continue: the real answer follows
                return True
            response = _Response(status=int(status[1]))
            for line in lines[1:]:
                name, colon, value = line.partition(b":")
                if not colon:
                    raise BadResponse("bad header line")
                response.headers.append((name.strip(), value.strip()))
            lowered = {n.lower(): v for n, v in response.headers}
            response.close = b"close" in lowered.get(b"connection", b"").lower() or status[0] == b"HTTP/1.0"
            response.chunked = b"chunked" in lowered.get(b"transfer-encoding", b"").lower()
            length = lowered.get(b"content-length")
            response.length = int(length) if length is not None and length.isdigit() else None
            if self.pending[0].head_only or response.status in (204, 304):
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
        return False  # no length, not chunked: the body ends when the connection does

    def _parse_chunks(self, response: _Response) -> bool:
        while True:
            end = self._buffer.find(b"\r\n")
            if end < 0:
                return False
            try:
                size = int(self._buffer[:end].split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise BadResponse("bad chunk size") from None
            if size == 0:
                rest = self._buffer[end + 2:]
                if rest.startswith(b"\r\n"):
                    self._buffer = rest[2:]
                else:  # trailers, ended by an empty line
                    trailers_end = rest.find(b"\r\n\r\n")
                    if trailers_end < 0:
                        return False
                    self._buffer = rest[trailers_end + 4:]
                self._done(response, b"".join(response.body))
                return True
            if len(self._buffer) < end + 2 + size + 2:
                return False
            response.body.append(self._buffer[end + 2:end + 2 + size])
            response.received += size
            if response.received > MAX_RESPONSE_BODY:
                raise BadResponse("response body too large")
            self._buffer = self._buffer[end + 2 + size + 2:]

    def _done(self, response: _Response, body: bytes) -> None:
        entry = self.pending.popleft()
        if not entry.pipelinable:
            self._unpipelinable -= 1
        self._response = None
        if response.close:
            self.dead = True
            self.transport.loseConnection()
        if not self.dead and not self.pending:
            self.pool._release(self)  # before the callback, which may send the next request
        if not entry.cancelled:
            entry.deferred.callback(HTTPResponse(response.status, tuple(response.headers), body))

    def _fail_all(self, failure: Failure) -> None:
        pending, self.pending = self.pending, deque()
        for entry in pending:
            if not entry.cancelled:
                entry.deferred.errback(failure)

    def connectionLost(self, reason: Failure) -> None:
        """Fail what is still waiting (a close-delimited body ends here instead)."""
        self.dead = True
        self.pool._lost(self)
        response = self._response
        if response is not None and self.pending and response.length is None and not response.chunked:
            self._done(response, self._buffer)  # the body ran to the end of the connection
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
        self, connect: Callable[[Factory], Deferred[Any]], host: bytes, size: int = 64, depth: int = 1,
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
        self.connections_made = 0

    def request(
        self, method: bytes, target: bytes, headers: list[tuple[bytes, bytes]], body: bytes = b"", timeout: float | None = None,
    ) -> Deferred[HTTPResponse]:
        """
        Send one request; fires with the whole L{HTTPResponse}.

        @param timeout: seconds for the whole answer, waiting for a connection included
            (checked by one sweep of the pool, within a quarter second).
        @raise ConnectionFailed: (as a failure) the server cannot be reached or dropped the connection.
        @raise RequestTimedOut: (as a failure) no whole answer in time.
        """
        lines = [method + b" " + target + b" HTTP/1.1", b"Host: " + self.host]
        lines.extend(name + b": " + value for name, value in headers)
        if body or method in (b"POST", b"PUT", b"PATCH"):
            lines.append(b"Content-Length: %d" % len(body))
        data = b"\r\n".join(lines) + b"\r\n\r\n" + body
        result: Deferred[HTTPResponse] = Deferred(lambda d: attempt.cancel())
        retry = method in IDEMPOTENT
        pipelinable = method in (b"GET", b"HEAD")
        head_only = method == b"HEAD"

        def send(protocol: _ClientProtocol) -> Deferred[HTTPResponse]:
            shared = protocol.used > 0 or bool(protocol.pending)
            d = protocol.send(data, head_only, pipelinable)

            def again(failure: Failure) -> Any:
                if shared and retry and failure.check(ConnectionFailed):
                    return self._get(pipelinable, fresh=True).addCallback(lambda p: p.send(data, head_only, pipelinable))
                return failure

            return d.addErrback(again)

        if timeout is not None:
            self._deadlines[result] = self.clock.seconds() + timeout
            result.addBoth(self._settled, result)
            self._start_sweep()
        attempt = self._get(pipelinable).addCallback(send)
        attempt.addBoth(lambda r: None if result.called else (result.errback(r) if isinstance(r, Failure) else result.callback(r)))
        return result

    def _settled(self, outcome: Any, result: Deferred[HTTPResponse]) -> Any:
        self._deadlines.pop(result, None)
        if result in self._expired:
            self._expired.discard(result)
            if isinstance(outcome, Failure) and outcome.check(CancelledError):
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
                          if p.pipelinable and len(p.pending) < self.depth and p.pending[0].sent_at > recent]
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
            raise ConnectionFailed(failure.getErrorMessage() or failure.type.__name__)

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


def _succeed(value: Any) -> Deferred[Any]:
    d: Deferred[Any] = Deferred()
    d.callback(value)
    return d


def relayed_headers(response: HTTPResponse) -> tuple[tuple[bytes, bytes], ...]:
    """The headers of an answer worth passing on (no hop-by-hop or length headers)."""
    return tuple((n, v) for n, v in response.headers if n.lower() not in HOP_BY_HOP)
