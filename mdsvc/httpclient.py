# -*- test-case-name: tests.test_httpclient -*-
"""
A lean pooled HTTP/1.1 client for mdsvc's own hops (agent to API, proxy to agent socket).

Both ends of these hops are known: small requests, small answers with a Content-Length (or
chunked, which is decoded), one server.  The pool keeps up to C{size} persistent connections;
a request takes an idle one, opens a new one, or waits its turn.  A request that fails on a
reused connection before any answer arrived (the server closed it while idle) is sent once more
on a fresh connection if it is idempotent.  Cancelling a request aborts its connection.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Callable

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


class _ClientProtocol(Protocol):
    """One connection; one request at a time."""

    def __init__(self, pool: "HTTPPool") -> None:
        self.pool = pool
        self._buffer = b""
        self._waiting: Deferred[HTTPResponse] | None = None
        self._state = "idle"
        self._status = 0
        self._headers: list[tuple[bytes, bytes]] = []
        self._length: int | None = None
        self._chunked = False
        self._close = False
        self._body: list[bytes] = []
        self._received = 0
        self._head_only = False
        self.used = 0
        self.answered_any = False

    def send(self, data: bytes, head_only: bool) -> Deferred[HTTPResponse]:
        waiting: Deferred[HTTPResponse] = Deferred(self._cancel)
        self._waiting = waiting
        self._state = "head"
        self._head_only = head_only
        self.used += 1
        self.transport.write(data)  # (an in-memory server may answer before this returns)
        return waiting

    def _cancel(self, waiting: Deferred[HTTPResponse]) -> None:
        """The caller gave up: the connection is in an unknown state, so it goes."""
        if self._waiting is waiting:
            self._waiting = None
            self._state = "dead"
        self.transport.abortConnection()

    def dataReceived(self, data: bytes) -> None:
        if self._waiting is None:
            # unsolicited bytes: the connection is no longer in a known state
            self.transport.abortConnection()
            return
        self._buffer += data
        try:
            self._parse()
        except BadResponse as e:
            self._fail(Failure(e))
            self.transport.abortConnection()

    def _parse(self) -> None:
        if self._state == "head":
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self._buffer) > MAX_RESPONSE_HEAD:
                    raise BadResponse("response head too large")
                return
            head, self._buffer = self._buffer[:end], self._buffer[end + 4:]
            lines = head.split(b"\r\n")
            status = lines[0].split(b" ", 2)
            if len(status) < 2 or not status[0].startswith(b"HTTP/1.") or not status[1].isdigit():
                raise BadResponse(f"bad status line {lines[0][:80]!r}")
            self._status = int(status[1])
            if self._status == 100:  # 100 Continue: the real answer follows
                self._parse()
                return
            headers = []
            for line in lines[1:]:
                name, colon, value = line.partition(b":")
                if not colon:
                    raise BadResponse("bad header line")
                headers.append((name.strip(), value.strip()))
            self._headers = headers
            lowered = {n.lower(): v for n, v in headers}
            self._close = b"close" in lowered.get(b"connection", b"").lower() or status[0] == b"HTTP/1.0"
            self._chunked = b"chunked" in lowered.get(b"transfer-encoding", b"").lower()
            length = lowered.get(b"content-length")
            self._length = int(length) if length is not None and length.isdigit() else None
            if self._head_only or self._status in (204, 304):
                self._length = 0
                self._chunked = False
            if self._length is not None and self._length > MAX_RESPONSE_BODY:
                raise BadResponse("response body too large")
            self._state = "body"
        if self._state == "body":
            if self._chunked:
                self._parse_chunks()
            elif self._length is not None:
                if len(self._buffer) >= self._length:
                    body, self._buffer = self._buffer[:self._length], self._buffer[self._length:]
                    self._done(body)
            # no length and not chunked: the body ends when the connection does

    def _parse_chunks(self) -> None:
        while True:
            end = self._buffer.find(b"\r\n")
            if end < 0:
                return
            size_text = self._buffer[:end].split(b";", 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                raise BadResponse("bad chunk size") from None
            if size == 0:
                rest = self._buffer[end + 2:]
                if rest.startswith(b"\r\n"):
                    self._buffer = rest[2:]
                else:  # trailers, ended by an empty line
                    trailers_end = rest.find(b"\r\n\r\n")
                    if trailers_end < 0:
                        return
                    self._buffer = rest[trailers_end + 4:]
                self._done(b"".join(self._body))
                return
            if len(self._buffer) < end + 2 + size + 2:
                return
            self._body.append(self._buffer[end + 2:end + 2 + size])
            self._received += size
            if self._received > MAX_RESPONSE_BODY:
                raise BadResponse("response body too large")
            self._buffer = self._buffer[end + 2 + size + 2:]

    def _done(self, body: bytes) -> None:
        waiting, self._waiting = self._waiting, None
        response = HTTPResponse(self._status, tuple(self._headers), body)
        self._state = "idle"
        self._body = []
        self._received = 0
        self.answered_any = True
        if self._close or self._buffer:
            self.transport.loseConnection()
        else:
            self.pool._release(self)
        if waiting is not None:
            waiting.callback(response)

    def _fail(self, failure: Failure) -> None:
        waiting, self._waiting = self._waiting, None
        self._state = "dead"
        if waiting is not None:
            waiting.errback(failure)

    def connectionLost(self, reason: Failure) -> None:
        self.pool._lost(self)
        if self._waiting is not None:
            if self._state == "body" and self._length is None and not self._chunked:
                self._done(self._buffer)  # the body ran to the end of the connection
                return
            self._fail(Failure(ConnectionFailed(f"connection closed before a whole answer ({reason.getErrorMessage()})")))


class HTTPPool:
    """
    Persistent connections to one server.

    @param connect: returns a Deferred connecting a protocol made by the given factory (an
        endpoint's C{connect}, e.g. C{TCP4ClientEndpoint(...).connect}).
    @param host: the C{Host} header value.
    @param size: most connections open at once.
    """

    _log = Logger()

    def __init__(self, connect: Callable[[Factory], Deferred[Any]], host: bytes, size: int = 64) -> None:
        self._connect = connect
        self.host = host
        self.size = size
        self._idle: deque[_ClientProtocol] = deque()
        self._open = 0
        self._queue: deque[tuple[Deferred[_ClientProtocol], bool]] = deque()
        self.connections_made = 0

    def request(self, method: bytes, target: bytes, headers: list[tuple[bytes, bytes]], body: bytes = b"") -> Deferred[HTTPResponse]:
        """
        Send one request; fires with the whole L{HTTPResponse}.

        @raise ConnectionFailed: (as a failure) the server cannot be reached or dropped the connection.
        """
        lines = [method + b" " + target + b" HTTP/1.1", b"Host: " + self.host]
        lines.extend(name + b": " + value for name, value in headers)
        if body or method in (b"POST", b"PUT", b"PATCH"):
            lines.append(b"Content-Length: %d" % len(body))
        data = b"\r\n".join(lines) + b"\r\n\r\n" + body
        result: Deferred[HTTPResponse] = Deferred(lambda d: attempt.cancel())
        retry = method in IDEMPOTENT

        def send(protocol: _ClientProtocol) -> Deferred[HTTPResponse]:
            reused = protocol.used > 0
            d = protocol.send(data, method == b"HEAD")

            def again(failure: Failure) -> Any:
                if reused and retry and failure.check(ConnectionFailed):
                    return self._get(fresh=True).addCallback(lambda p: p.send(data, method == b"HEAD"))
                return failure

            return d.addErrback(again)

        attempt = self._get().addCallback(send)
        attempt.addBoth(lambda r: None if result.called else (result.errback(r) if isinstance(r, Failure) else result.callback(r)))
        return result

    def _get(self, fresh: bool = False) -> Deferred[_ClientProtocol]:
        while self._idle and not fresh:
            protocol = self._idle.pop()
            if protocol.transport is not None and protocol.transport.connected and protocol._state == "idle":
                return _succeed(protocol)
        if self._open < self.size or fresh:
            return self._new()
        waiter: Deferred[_ClientProtocol] = Deferred(lambda d: self._drop_waiter(d))
        self._queue.append((waiter, fresh))
        return waiter

    def _drop_waiter(self, d: Deferred[_ClientProtocol]) -> None:
        self._queue = deque(w for w in self._queue if w[0] is not d)

    def _new(self) -> Deferred[_ClientProtocol]:
        self._open += 1
        self.connections_made += 1
        factory = Factory.forProtocol(lambda: _ClientProtocol(self))
        factory.noisy = False
        d = self._connect(factory)

        def failed(failure: Failure) -> Failure:
            self._open -= 1
            self._serve_queue()
            if failure.check(CancelledError):
                return failure
            raise ConnectionFailed(failure.getErrorMessage() or failure.type.__name__)

        return d.addErrback(failed)

    def _release(self, protocol: _ClientProtocol) -> None:
        if self._queue:
            waiter, _ = self._queue.popleft()
            waiter.callback(protocol)
            return
        self._idle.append(protocol)

    def _lost(self, protocol: _ClientProtocol) -> None:
        self._open -= 1
        try:
            self._idle.remove(protocol)
        except ValueError:
            pass
        self._serve_queue()

    def _serve_queue(self) -> None:
        while self._queue and self._open < self.size:
            waiter, _ = self._queue.popleft()
            self._new().chainDeferred(waiter)

    def close(self) -> Deferred[None]:
        """Close the idle connections (the node is stopping)."""
        from twisted.internet.defer import succeed

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
