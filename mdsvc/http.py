# -*- test-case-name: tests.test_http -*-
"""
A lean HTTP/1.1 server protocol for mdsvc's hot paths (API, agent socket, namespace proxies).

Metadata requests are small GETs and, rarely, a password POST of at most 1020 bytes, so the
protocol does only what they need, and does it with little per-request machinery: the request
head is parsed in one pass, the response written in one call.  It keeps connections alive
(HTTP/1.1, and HTTP/1.0 with C{Connection: keep-alive}), answers pipelined requests in order,
honours C{Expect: 100-continue}, and bounds everything a client controls: head size, body size,
time to send a request, idle time.  Chunked request bodies are refused with 400 (no metadata
client sends one; Nova fails on them, spec §2.6 Q12).
"""

from __future__ import annotations

from email.utils import formatdate
from typing import Any, Callable

from attrs import frozen
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure

MAX_HEAD = 16 * 1024
"""Request line and headers; haproxy's default buffer is 16 KiB too."""

MAX_BODY = 64 * 1024
"""Metadata requests carry at most a password (1020 bytes)."""

REASONS = {
    100: b"Continue", 200: b"OK", 400: b"Bad Request", 403: b"Forbidden", 404: b"Not Found", 408: b"Request Timeout",
    409: b"Conflict", 413: b"Payload Too Large", 429: b"Too Many Requests", 431: b"Request Header Fields Too Large",
    500: b"Internal Server Error", 502: b"Bad Gateway", 503: b"Service Unavailable", 504: b"Gateway Timeout",
}


@frozen
class HTTPRequest:
    """
    One parsed request.

    @ivar target: the request target as sent (path and query).
    @ivar headers: lower-cased names to every value sent, in order.
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
    """What a handler answers: status, headers (name, value) and the whole body."""

    code: int
    headers: tuple[tuple[bytes, bytes], ...]
    body: bytes


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


class LeanHTTPProtocol(Protocol):
    """One connection: parse, hand each request to the handler in turn, write the answers."""

    _log = Logger()

    def __init__(self, factory: "LeanHTTPFactory") -> None:
        self.factory = factory
        self._buffer = b""
        self._head: tuple[bytes, bytes, bytes, dict[bytes, list[bytes]], int, bool] | None = None
        self._pending: Deferred[Any] | None = None
        self._closing = False
        self.deadline: float | None = None
        self._peer: str | None = None
        self._processing = False

    def connectionMade(self) -> None:
        """Remember the peer and start the timer for the first request."""
        self._peer = getattr(self.transport.getPeer(), "host", None)
        self._arm(self.factory.request_timeout)

    def _arm(self, seconds: float) -> None:
        # a deadline the factory's sweep checks, not a timer per connection (cheaper per request)
        self.deadline = self.factory.clock.seconds() + seconds
        self.factory._watch(self)

    def _disarm(self) -> None:
        self.deadline = None

    def timed_out(self) -> None:
        """The factory's sweep found the deadline passed: 408 mid-request, else just close."""
        self.deadline = None
        if self._pending is None:
            if self._buffer or self._head is not None:
                self._write(plain_response(408, "The request was not sent in time."), close=True)
            else:
                self.transport.loseConnection()

    def dataReceived(self, data: bytes) -> None:
        """Buffer, then answer every complete request (one at a time)."""
        if self._closing:
            return
        self._buffer += data
        self._process()

    def _process(self) -> None:
        if self._processing:
            return  # an answer that came synchronously, inside this loop: the loop goes on
        self._processing = True
        try:
            self._process_buffer()
        finally:
            self._processing = False

    def _process_buffer(self) -> None:
        while self._pending is None and not self._closing:
            if self._head is None:
                end = self._buffer.find(b"\r\n\r\n")
                if end < 0:
                    if len(self._buffer) > MAX_HEAD:
                        self._write(plain_response(431, "The request head is too large."), close=True)
                    return
                if end > MAX_HEAD:
                    self._write(plain_response(431, "The request head is too large."), close=True)
                    return
                head = self._buffer[:end]
                self._buffer = self._buffer[end + 4:]
                try:
                    self._head = self._parse(head)
                except ValueError as e:
                    self._write(plain_response(400, str(e)), close=True)
                    return
                if self._head[4] and self._head[3].get(b"expect", [b""])[0].lower() == b"100-continue":
                    self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            method, target, version, headers, length, keep = self._head
            if len(self._buffer) < length:
                self._arm(self.factory.request_timeout)
                return
            body, self._buffer = self._buffer[:length], self._buffer[length:]
            self._head = None
            self._dispatch(HTTPRequest(method, target, version, headers, body, self._peer), keep)

    def _parse(self, head: bytes) -> tuple[bytes, bytes, bytes, dict[bytes, list[bytes]], int, bool]:
        lines = head.split(b"\r\n")
        parts = lines[0].split(b" ")
        if len(parts) != 3 or not parts[2].startswith(b"HTTP/1.") or not parts[0].isalpha():
            raise ValueError("Malformed request line.")
        method, target, version = parts
        headers: dict[bytes, list[bytes]] = {}
        for line in lines[1:]:
            name, colon, value = line.partition(b":")
            if not colon or not name or name != name.strip():
                raise ValueError("Malformed header line.")
            headers.setdefault(name.lower(), []).append(value.strip())
        if b"transfer-encoding" in headers:
            raise ValueError("Chunked request bodies are not supported; send Content-Length.")
        lengths = headers.get(b"content-length")
        length = 0
        if lengths:
            if len(set(lengths)) != 1 or not lengths[0].isdigit():
                raise ValueError("Malformed Content-Length.")
            length = int(lengths[0])
            if length > MAX_BODY:
                raise ValueError("Request is too large.")
        connection = b",".join(headers.get(b"connection", [])).lower()
        keep = (b"close" not in connection) if version == b"HTTP/1.1" else (b"keep-alive" in connection)
        return method.upper(), target, version, headers, length, keep

    def _dispatch(self, request: HTTPRequest, keep: bool) -> None:
        self._disarm()
        try:
            result = self.factory.handler(request)
        except Exception:
            self._log.failure("unhandled error answering {path}", path=request.target)
            result = plain_response(500, "An unknown error has occurred. Please try your request again.")
        if isinstance(result, Deferred):
            # it may fire now (a cached answer) or later; either way _finished answers
            self._pending = result
            result.addBoth(self._finished, request, keep)
            return
        self._answer(result, request, keep)

    def _finished(self, result: Any, request: HTTPRequest, keep: bool) -> None:
        self._pending = None
        if isinstance(result, Failure) and result.check(CancelledError):
            return
        if self._closing:
            return
        self._answer(result, request, keep)
        if not self._closing:
            self._process()

    def _answer(self, result: Any, request: HTTPRequest, keep: bool) -> None:
        if isinstance(result, Failure):
            self._log.failure("unhandled error answering {path}", result, path=request.target)
            result = plain_response(500, "An unknown error has occurred. Please try your request again.")
        self._write(result, close=not keep, head_only=request.method == b"HEAD")
        if keep:
            self._arm(self.factory.idle_timeout)

    def _write(self, response: HTTPResponse, close: bool, head_only: bool = False) -> None:
        reason = REASONS.get(response.code, b"Unknown")
        parts = [b"HTTP/1.1 %d %s\r\nDate: %s\r\nContent-Length: %d\r\n" % (response.code, reason, self.factory.date.now(), len(response.body))]
        for name, value in response.headers:
            parts.append(name + b": " + value + b"\r\n")
        if close:
            parts.append(b"Connection: close\r\n")
        parts.append(b"\r\n")
        if not head_only:
            parts.append(response.body)
        self.transport.write(b"".join(parts))
        if close:
            self._closing = True
            self._disarm()
            self.transport.loseConnection()

    def connectionLost(self, reason: Failure) -> None:
        """Cancel whatever the handler still works on for this client."""
        self._closing = True
        self._disarm()
        self.factory._unwatch(self)
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.cancel()


class LeanHTTPFactory(Factory):
    """
    Serves C{handler} over L{LeanHTTPProtocol}.

    @param request_timeout: seconds a client has to send a whole request.
    @param idle_timeout: seconds a kept-alive connection may stay idle.
    (Both are checked once a second, so a connection goes within a second of its deadline.)
    @param name: how logs name the server (C{metadata-api starting on 8775}).
    """

    def __init__(
        self, handler: Handler, clock: IReactorTime | None = None, request_timeout: float = 30, idle_timeout: float = 60,
        name: str = "http",
    ) -> None:
        if clock is None:
            from twisted.internet import reactor as clock  # type: ignore[assignment]
        self.name = name
        self.handler = handler
        self.clock = clock
        self.request_timeout = request_timeout
        self.idle_timeout = idle_timeout
        self.date = _DateCache(clock)
        self.sweep_interval = 1.0
        self._watched: dict[LeanHTTPProtocol, None] = {}
        self._sweeper: Any = None

    def _watch(self, protocol: LeanHTTPProtocol) -> None:
        if protocol not in self._watched:
            self._watched[protocol] = None
            if self._sweeper is None or not self._sweeper.running:
                from twisted.internet.task import LoopingCall

                self._sweeper = LoopingCall(self._sweep)
                self._sweeper.clock = self.clock
                self._sweeper.start(self.sweep_interval, now=False)

    def _unwatch(self, protocol: LeanHTTPProtocol) -> None:
        self._watched.pop(protocol, None)
        if not self._watched and self._sweeper is not None and self._sweeper.running:
            self._sweeper.stop()

    def _sweep(self) -> None:
        """Time out the connections whose deadline has passed (checked every C{sweep_interval})."""
        now = self.clock.seconds()
        for protocol in [p for p in self._watched if p.deadline is not None and p.deadline <= now]:
            protocol.timed_out()

    def logPrefix(self) -> str:
        """What the listening port's log lines call this server (metadata-api, ...)."""
        return self.name

    def buildProtocol(self, addr: Any) -> LeanHTTPProtocol:
        """One protocol per connection."""
        return LeanHTTPProtocol(self)

    def doStart(self) -> None:
        """Quiet: no log line per listener start (a proxy may own a thousand)."""
        self.numPorts += 1

    def doStop(self) -> None:
        """Quiet."""
        self.numPorts -= 1


__all__ = ["HTTPRequest", "HTTPResponse", "LeanHTTPFactory", "LeanHTTPProtocol", "plain_response"]
