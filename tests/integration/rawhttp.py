"""
A raw HTTP/1.1 client for hostile-guest tests: it writes exactly the bytes it is given (any
framing, any garbage) from a chosen source address, and reads back every answer with a strict
response parser, so that extra, missing or misplaced answers are seen rather than smoothed over.
"""

from __future__ import annotations

import socket
import time

from attrs import define, field, frozen


class BadAnswer(Exception):
    """The server's bytes are not a well-formed HTTP/1.1 response."""


@frozen
class Answer:
    """One final (non-1xx) response: status, lower-cased headers, the whole body."""

    status: int
    headers: dict[bytes, bytes]
    body: bytes

    @property
    def closes(self) -> bool:
        """Whether the server said it closes the connection after this answer."""
        return b"close" in self.headers.get(b"connection", b"").lower()


@define
class ResponseReader:
    """
    Incremental parser of a stream of responses. C{head_only} holds the indexes (0-based, in
    answer order) of the requests that were HEAD: their answers have no body.
    """

    head_only: frozenset[int] = frozenset()
    maybe_head_from: int | None = None
    """From this answer on, a request may have been HEAD: an answer whose body is not there
    (the next answer or the end follows its head) is taken as bodiless."""
    answers: list[Answer] = field(factory=list)
    interim: int = 0
    _buffer: bytes = b""

    def feed(self, data: bytes) -> None:
        """Add received bytes; complete answers are appended to C{answers}.

        @raise BadAnswer: the bytes cannot be a response.
        """
        self._buffer += data
        while self._parse_one():
            pass

    def finish(self) -> None:
        """The connection closed: leftover bytes are an error (unless a bodiless answer to a HEAD)."""
        while self._buffer and self._parse_one(at_end=True):
            pass
        if self._buffer:
            raise BadAnswer(f"{len(self._buffer)} bytes of an incomplete answer: {self._buffer[:120]!r}")

    def _maybe_head(self) -> bool:
        return self.maybe_head_from is not None and len(self.answers) >= self.maybe_head_from

    def _parse_one(self, at_end: bool = False) -> bool:
        end = self._buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(self._buffer) > 65536 or not b"HTTP/1.".startswith(self._buffer[:7]):
                raise BadAnswer(f"not a response: {self._buffer[:120]!r}")
            return False
        lines = self._buffer[:end].split(b"\r\n")
        status_line = lines[0].split(b" ", 2)
        if len(status_line) < 2 or status_line[0] not in (b"HTTP/1.1", b"HTTP/1.0") or not status_line[1].isdigit() \
                or len(status_line[1]) != 3:
            raise BadAnswer(f"bad status line {lines[0][:120]!r}")
        headers: dict[bytes, bytes] = {}
        for line in lines[1:]:
            name, colon, value = line.partition(b":")
            if not colon or not name or name != name.strip():
                raise BadAnswer(f"bad header line {line[:120]!r}")
            headers[name.lower()] = value.strip()
        status = int(status_line[1])
        rest = self._buffer[end + 4:]
        if 100 <= status < 200:
            self.interim += 1
            self._buffer = rest
            return True
        length = self._body_length(status, headers, rest, at_end)
        if len(rest) < length:
            return False
        self.answers.append(Answer(status, headers, rest[:length]))
        self._buffer = rest[length:]
        return True

    def _body_length(self, status: int, headers: dict[bytes, bytes], rest: bytes, at_end: bool) -> int:
        if len(self.answers) in self.head_only or status in (204, 304):
            return 0
        if self._maybe_head() and (rest[:9] == b"HTTP/1.1 " or (at_end and not rest)):
            return 0
        raw_length = headers.get(b"content-length")
        if raw_length is None or not raw_length.isdigit():
            raise BadAnswer(f"answer {status} without a usable Content-Length: {raw_length!r}")
        return int(raw_length)


@frozen
class Exchange:
    """
    What came back on one connection.

    @ivar closed: the server closed the connection (EOF or reset) before we gave up.
    @ivar hung: neither all the expected answers nor a close came within the timeout.
    @ivar extra: answers beyond the expected number that were already there when we stopped.
    @ivar error: why the answers could not be parsed or the connection not made, else None.
    """

    answers: tuple[Answer, ...]
    interim: int
    closed: bool
    hung: bool
    extra: int
    error: str | None
    seconds: float


def connect(port: int, source: str, timeout: float = 5.0, host: str = "127.0.0.1") -> socket.socket:
    """A TCP connection to C{host:port} from C{source} (any 127/8 address works on loopback)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((source, 0))
        sock.settimeout(timeout)
        sock.connect((host, port))
    except BaseException:
        sock.close()
        raise
    return sock


def send(sock: socket.socket, chunks: list[bytes] | tuple[bytes, ...], pause: float = 0.0, half_close: bool = False) -> bool:
    """Write each chunk (C{pause} seconds apart); False when the server closed before all were written."""
    try:
        for i, chunk in enumerate(chunks):
            if i and pause:
                time.sleep(pause)
            sock.sendall(chunk)
        if half_close:
            sock.shutdown(socket.SHUT_WR)
    except OSError:  # EPIPE, ECONNRESET: it answered (or gave up) before reading everything
        return False
    return True


def receive(sock: socket.socket, reader: ResponseReader, expect: int, deadline: float, linger: float = 0.0) -> tuple[bool, bool]:
    """
    Read until C{expect} answers, a close, or C{deadline}; then C{linger} seconds more for
    answers nobody asked for.  Returns (closed, hung).
    """
    closed = hung = False
    while True:
        wanted = len(reader.answers) < expect
        left = (deadline - time.monotonic()) if wanted else linger
        if left <= 0:
            hung = wanted
            break
        sock.settimeout(left)
        try:
            data = sock.recv(65536)
        except TimeoutError:
            hung = wanted
            break
        except ConnectionResetError:
            closed = True
            break
        if not data:
            closed = True
            reader.finish()
            break
        reader.feed(data)
        if not wanted:
            linger = 0.0  # read what had arrived, nothing more
    return closed, hung


def exchange(
    port: int, source: str, chunks: list[bytes] | tuple[bytes, ...], expect: int, head_only: frozenset[int] = frozenset(),
    timeout: float = 10.0, half_close: bool = False, pause: float = 0.0, linger: float = 0.0,
    sock: socket.socket | None = None,
) -> Exchange:
    """
    Send C{chunks} on a new connection (or on C{sock}, left open when still usable), then read
    until C{expect} answers arrived, the server closed, or C{timeout} seconds passed without
    either (a hang); then up to C{linger} seconds for extra answers.
    """
    started = time.monotonic()
    reader = ResponseReader(head_only)
    own = sock is None
    closed = hung = False
    error = None
    try:
        if sock is None:
            sock = connect(port, source, timeout)
        send(sock, chunks, pause, half_close)
        closed, hung = receive(sock, reader, expect, started + timeout, linger)
    except BadAnswer as e:
        error = str(e)
    except OSError as e:
        closed, error = True, f"{type(e).__name__}: {e}"
    finally:
        if sock is not None and (own or closed or hung or error):
            sock.close()
    extra = max(0, len(reader.answers) - expect)
    return Exchange(tuple(reader.answers[:expect]), reader.interim, closed, hung, extra, error, time.monotonic() - started)
