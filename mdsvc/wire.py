# -*- test-case-name: tests.test_wire -*-
"""
What may be written into an HTTP/1.1 request head, checked byte by byte, and how a guest's bytes
may appear in a log line.

Every hop of mdsvc builds its upstream requests from fields it parsed out of a guest's request;
these checks decide which of those bytes may travel on.  A method is a token, a target is an
origin-form path of visible ASCII, a header name a token and a value visible ASCII with inner
spaces: no byte that could end a line, a field or the request line (CR, LF, NUL, TAB, SP, other
controls, DEL, non-ASCII) ever reaches an upstream connection.  The HTTP client calls
L{check_request} on everything it writes (defence in depth: the callers validated already), so
a request that would be read as two by a proxy in between is refused before it is sent.
"""

from __future__ import annotations

import re

_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_ORIGIN_TARGET = re.compile(rb"/[\x21-\x7e]*")
_FIELD_VALUE = re.compile(rb"(?:[\x21-\x7e](?:[\x20-\x7e]*[\x21-\x7e])?)?")

_IDENTIFIER = re.compile(r"[0-9A-Za-z][0-9A-Za-z._-]{0,254}")
"""What a network, router, instance or project id may look like to be used or passed on: Neutron
and Nova ids are UUIDs; anything with spaces, controls or punctuation is refused (a tenant sets
its ports' device_id freely, so even a lookup backend's answer is checked)."""

_KNOWN_IDENTIFIERS: set[str] = set()

MAX_FORWARDED_VALUE = 1024
"""The longest header value a hop passes on from a guest (C{Accept}); longer ones are dropped."""


class UnsafeRequest(ValueError):
    """A request head field holds bytes that must not be written to an upstream connection."""


def is_identifier(value: str) -> bool:
    """Whether C{value} may be used as a network, router, instance or project id (the ids seen
    pass again without the pattern: a node serves a few thousand of them, over and over)."""
    if value in _KNOWN_IDENTIFIERS:
        return True
    if _IDENTIFIER.fullmatch(value) is None:
        return False
    if len(_KNOWN_IDENTIFIERS) >= 65536:
        _KNOWN_IDENTIFIERS.clear()
    _KNOWN_IDENTIFIERS.add(value)
    return True


def is_token(value: bytes) -> bool:
    """Whether C{value} is an RFC 9110 token (a method or a header name)."""
    return _TOKEN.fullmatch(value) is not None


def is_origin_target(value: bytes) -> bool:
    """Whether C{value} is an origin-form request target: C{/}, then visible ASCII only."""
    return _ORIGIN_TARGET.fullmatch(value) is not None


def is_field_value(value: bytes) -> bool:
    """Whether C{value} is visible ASCII with single inner spaces allowed (no TAB, no controls)."""
    return _FIELD_VALUE.fullmatch(value) is not None


def forwardable_value(value: bytes | None) -> bytes | None:
    """
    A guest's header value as a hop may pass it on (C{Accept}), or None when it may not: too
    long, or holding anything but visible ASCII and spaces.  Surrounding whitespace is dropped.
    """
    if value is None:
        return None
    value = value.strip(b" \t")
    if not value or len(value) > MAX_FORWARDED_VALUE or not is_field_value(value):
        return None
    return value


def check_request(method: bytes, target: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    """
    Refuse a request head that is not safe to write.

    @raise UnsafeRequest: naming the field (never echoing its bytes).
    """
    if not is_token(method):
        raise UnsafeRequest("the method is not a token")
    if not is_origin_target(target):
        raise UnsafeRequest("the target is not an origin-form path of visible ASCII")
    for name, value in headers:
        if not is_token(name):
            raise UnsafeRequest("a header name is not a token")
        if not is_field_value(value):
            raise UnsafeRequest(f"the value of {name.decode('ascii')} holds bytes other than visible ASCII")


def loggable(value: bytes | str | None, limit: int = 200) -> str:
    """
    A guest-supplied value (a path, a header) for a log line: printable ASCII only (anything else
    as C{?}) and at most C{limit} characters, with the full length said when cut.
    """
    if value is None:
        return ""
    text = value.decode("latin-1") if isinstance(value, bytes) else value
    shown = "".join(c if " " <= c < "\x7f" else "?" for c in text[:limit])
    return shown if len(text) <= limit else f"{shown}... ({len(text)} characters)"
