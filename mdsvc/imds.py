# -*- test-case-name: tests.test_imds -*-
"""
IMDSv2-style session token headers, as they cross the hops (proxy, agent, API).

A token-first client (the AWS SDKs, C{ec2-metadata}, cloud-init's EC2 datasource) first asks
C{PUT /latest/api/token} with C{X-aws-ec2-metadata-token-ttl-seconds}, then sends the token it
got in C{X-aws-ec2-metadata-token} on every request.  Both headers are a guest's bytes: a hop
passes one on only as L{carried} makes it (one value, visible ASCII, bounded), and a value that
may not be passed on travels as L{MALFORMED}, which the API refuses as it would any bad value
(400 for a TTL, 401 for a token), so that what a guest sent is never silently dropped into a
request without a token.  The tokens themselves are made and checked by the API only
(L{mdsvc.api.tokens}); this module is what proxy, agent and API share.
"""

from __future__ import annotations

TOKEN_HEADER = b"x-aws-ec2-metadata-token"
"""The header carrying a session token on every request (lower case, as parsed)."""

TTL_HEADER = b"x-aws-ec2-metadata-token-ttl-seconds"
"""The header of the token PUT asking for a lifetime, and of its answer stating it."""

TOKEN_HEADER_NAME = b"X-aws-ec2-metadata-token"
"""L{TOKEN_HEADER} as written on a hop."""

TTL_HEADER_NAME = b"X-aws-ec2-metadata-token-ttl-seconds"
"""L{TTL_HEADER} as written on a hop and in the token answer."""

MAX_CARRIED = 128
"""The longest token or TTL value passed on (mdsvc's tokens are 56 characters, AWS's 56 too)."""

MALFORMED = b"-"
"""What a hop passes on for a value it may not pass on as sent: never a token, never a TTL."""

HOP_LIMIT = 1
"""The IP TTL / IPv6 hop limit of a namespace proxy's answer to a PUT (as AWS's default): the
token answer reaches the guest and dies at the first router behind it (a container's bridge)."""


def carried(values: list[bytes] | None) -> bytes | None:
    """
    One token header as a hop passes it on: None when the guest sent none, its value when it
    sent exactly one made of visible ASCII of at most L{MAX_CARRIED} characters, else
    L{MALFORMED} (two values, control bytes, spaces, too long).
    """
    if not values:
        return None
    if len(values) != 1:
        return MALFORMED
    value = values[0].strip(b" \t")
    if not value or len(value) > MAX_CARRIED or not all(0x21 <= b <= 0x7E for b in value):
        return MALFORMED
    return value


def token_headers(token: bytes | None, ttl: bytes | None) -> list[tuple[bytes, bytes]]:
    """The token headers a hop writes for a request carrying C{token} and C{ttl} (either may be None)."""
    headers = []
    if token is not None:
        headers.append((TOKEN_HEADER_NAME, token))
    if ttl is not None:
        headers.append((TTL_HEADER_NAME, ttl))
    return headers


__all__ = ["HOP_LIMIT", "MALFORMED", "MAX_CARRIED", "TOKEN_HEADER", "TOKEN_HEADER_NAME", "TTL_HEADER", "TTL_HEADER_NAME",
           "carried", "token_headers"]
