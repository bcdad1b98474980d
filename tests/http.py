"""Test helper: drive a twisted.web resource with a raw HTTP request and parse the raw response."""

from __future__ import annotations

from io import BytesIO

from attrs import frozen
from twisted.internet.address import IPv4Address
from twisted.web.resource import IResource
from twisted.web.server import Request, Site
from twisted.web.test.requesthelper import DummyChannel


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
    """Parse one HTTP/1.x response with a Content-Length (or none, for HEAD)."""
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    code = int(lines[0].split(b" ")[1])
    headers: dict[bytes, list[bytes]] = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers.setdefault(name.strip().lower(), []).append(value.strip())
    return RawResponse(code, headers, body, raw)


def request(
    resource: IResource,
    method: bytes,
    path: bytes,
    headers: dict[bytes, bytes | list[bytes]] | None = None,
    body: bytes = b"",
    peer: str = "127.0.0.1",
) -> tuple[Request, DummyChannel]:
    """
    Start a real L{twisted.web.server.Request} for C{resource}; the response bytes collect in
    C{channel.transport.written}.
    """
    channel = DummyChannel(peer=IPv4Address("TCP", peer, 40000))
    channel.site = Site(resource)
    req = Request(channel)
    for name, value in (headers or {}).items():
        req.requestHeaders.setRawHeaders(name, value if isinstance(value, list) else [value])
    if body and not req.requestHeaders.hasHeader(b"content-length"):
        req.requestHeaders.setRawHeaders(b"content-length", [b"%d" % len(body)])
    req.content = BytesIO(body)
    req.requestReceived(method, path, b"HTTP/1.1")
    return req, channel


def response(channel: DummyChannel) -> RawResponse | None:
    """The response written so far, or None if nothing has been written."""
    raw = channel.transport.written.getvalue()
    return parse_response(raw) if raw else None
