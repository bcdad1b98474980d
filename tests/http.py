"""Test helper: drive an HTTP handler with a raw request over L{LeanHTTPProtocol} and parse the raw answer."""

from __future__ import annotations

from typing import Any

from attrs import frozen
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from mdsvc.http import LeanHTTPFactory, LeanHTTPProtocol


@frozen
class RawResponse:
    """What went over the wire: status, headers (lower-cased names) and body."""

    code: int
    headers: dict[bytes, list[bytes]]
    body: bytes
    raw: bytes

    def header(self, name: bytes) -> bytes | None:
        values = self.headers.get(name.lower())
        return values[0] if values else None


def parse_response(raw: bytes) -> RawResponse:
    """Parse one HTTP/1.x response (its Content-Length says where the body ends; HEAD has none)."""
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    code = int(lines[0].split(b" ")[1])
    headers: dict[bytes, list[bytes]] = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers.setdefault(name.strip().lower(), []).append(value.strip())
    return RawResponse(code, headers, body, raw)


class Connection:
    """A client connection to a handler, over a StringTransport."""

    def __init__(self, handler: Any, peer: str = "127.0.0.1", clock: Clock | None = None) -> None:
        self.factory = LeanHTTPFactory(handler, clock or Clock())
        self.protocol: LeanHTTPProtocol = self.factory.buildProtocol(None)
        address = IPv6Address("TCP", peer, 40000) if ":" in peer else IPv4Address("TCP", peer, 40000)
        self.transport = StringTransport(peerAddress=address)
        self.protocol.makeConnection(self.transport)

    def send(self, method: bytes, path: bytes, headers: dict[bytes, bytes | list[bytes]] | None = None, body: bytes = b"") -> None:
        lines = [method + b" " + path + b" HTTP/1.1", b"Host: 169.254.169.254"]
        for name, value in (headers or {}).items():
            name = name.encode("ascii") if isinstance(name, str) else name
            for v in value if isinstance(value, list) else [value]:
                lines.append(name + b": " + v)
        if body and not any(n.lower() == b"content-length" for n in (headers or {})):
            lines.append(b"Content-Length: %d" % len(body))
        self.protocol.dataReceived(b"\r\n".join(lines) + b"\r\n\r\n" + body)

    def written(self) -> bytes:
        return self.transport.value()


def request(
    handler: Any, method: bytes, path: bytes, headers: dict[bytes, bytes | list[bytes]] | None = None, body: bytes = b"",
    peer: str = "127.0.0.1",
) -> tuple[LeanHTTPProtocol, Connection]:
    """Send one request to C{handler}; the answer collects in the returned connection."""
    connection = Connection(handler, peer)
    connection.send(method, path, headers, body)
    return connection.protocol, connection


def response(connection: Connection) -> RawResponse | None:
    """The response written so far, or None if nothing has been written."""
    raw = connection.written()
    return parse_response(raw) if raw else None
