# -*- test-case-name: tests.test_api_tokens -*-
"""
IMDSv2-style session tokens (C{[api] imds_tokens = off | optional | required}).

Nova has no session tokens; AWS's instance metadata service has them as its defence against
server-side request forgery: a request must first C{PUT /latest/api/token} (which an open proxy
or a forged GET cannot do, and which is refused when it carries C{X-Forwarded-For}), and show
the token it got on every read.

A token needs no shared state: it is the instance id's HMAC with its expiry, keyed with a key
derived from C{metadata_proxy_shared_secret}, so any API worker or node with that secret checks
any token, and none can be made without it::

    token = base64url(version (1 byte) | key hint (1) | expiry, Unix seconds (8) | HMAC-SHA256 (32))
    HMAC-SHA256(key, version | key hint | expiry | instance uuid)
    key   = HMAC-SHA256(secret, "mdsvc imds session token v1")

That is 42 bytes, 56 characters: bounded, and compared in constant time.  A token is bound to
the instance it was issued to (another instance's requests refuse it) and to its expiry.  While
a secret is being rotated (L{mdsvc.reload}), tokens made with the previous secret's key are
accepted too; the key hint says which key made a token.  Tokens are never logged.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import struct

from attrs import field, frozen
from twisted.internet.interfaces import IReactorTime

from mdsvc.api.errors import MetadataError
from mdsvc.config import Config, located

MODES = ("off", "optional", "required")
"""The values of C{[api] imds_tokens}."""

MIN_TTL = 1
MAX_TTL = 21600
"""A token lives 1 second to 6 hours, as AWS's."""

TOKEN_LENGTH = 56
"""Characters of a token (42 bytes, base64url without padding)."""

_VERSION = 1
_CONTEXT = b"mdsvc imds session token v1"
_TOKEN = re.compile(rb"[A-Za-z0-9_-]{56}")
_TTL = re.compile(rb"[0-9]{1,5}")

UNAUTHORIZED = "A valid session token is needed: PUT /latest/api/token first."
"""What a request without a good token is told (401)."""


def token_key(secret: str) -> bytes:
    """The key tokens are signed with, derived from the shared secret (never the secret itself)."""
    return hmac.new(secret.encode("utf-8"), _CONTEXT, hashlib.sha256).digest()


def _hint(key: bytes) -> int:
    return hashlib.sha256(key).digest()[0]


def parse_ttl(value: bytes | None) -> int:
    """
    The lifetime a token PUT asks for.

    @raise MetadataError: 400 when the header is missing or not an integer from 1 to 21600.
    """
    if value is None:
        raise MetadataError(400, "The X-aws-ec2-metadata-token-ttl-seconds header is missing.", "token PUT without a TTL")
    if _TTL.fullmatch(value) is None or not MIN_TTL <= int(value) <= MAX_TTL:
        raise MetadataError(400, f"X-aws-ec2-metadata-token-ttl-seconds must be an integer from {MIN_TTL} to {MAX_TTL}.",
                            "token PUT with a bad TTL")
    return int(value)


@frozen
class SessionTokens:
    """
    Makes and checks the session tokens of one API (any worker, any node with the same secret).

    @ivar required: C{[api] imds_tokens = required}: every request needs a token (else 401);
        C{optional}: a request may come without one, but one it carries must be good.
    @ivar secret: the shared secret tokens are made with.
    @ivar previous: secrets whose tokens are still accepted (during a rotation).
    """

    clock: IReactorTime
    required: bool
    secret: str = field(repr=False)
    previous: tuple[str, ...] = field(default=(), repr=False)
    _keys: dict[int, tuple[bytes, ...]] = field(init=False, repr=False, eq=False)
    _current: bytes = field(init=False, repr=False, eq=False)

    def __attrs_post_init__(self) -> None:
        current = token_key(self.secret)
        keys: dict[int, tuple[bytes, ...]] = {}
        for key in (current, *(token_key(s) for s in self.previous)):
            keys[_hint(key)] = keys.get(_hint(key), ()) + (key,)
        object.__setattr__(self, "_current", current)
        object.__setattr__(self, "_keys", keys)

    def issue(self, instance_id: str, ttl: int) -> bytes:
        """A token for C{instance_id}, good for C{ttl} seconds from now."""
        expires = int(self.clock.seconds()) + ttl
        head = struct.pack(">BBQ", _VERSION, _hint(self._current), expires)
        mac = hmac.new(self._current, head + instance_id.encode("utf-8"), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(head + mac).rstrip(b"=")

    def valid(self, token: bytes, instance_id: str) -> bool:
        """Whether C{token} was made for C{instance_id} with one of our keys and has not expired."""
        if _TOKEN.fullmatch(token) is None:
            return False
        raw = base64.urlsafe_b64decode(token)  # 56 characters of the alphabet: always 42 bytes
        version, hint, expires = struct.unpack(">BBQ", raw[:10])
        if version != _VERSION or expires <= self.clock.seconds():
            return False
        message = raw[:10] + instance_id.encode("utf-8")
        good = False
        for key in self._keys.get(hint, ()):
            good |= hmac.compare_digest(hmac.new(key, message, hashlib.sha256).digest(), raw[10:])
        return good

    def check(self, token: bytes | None, instance_id: str) -> None:
        """
        Let a request through, or refuse it.

        @raise MetadataError: 401 without a token when they are required, or with a token that
            is not L{valid} for the instance (expired, another instance's, made with another
            secret, malformed).
        """
        if token is None:
            if self.required:
                raise MetadataError(401, UNAUTHORIZED, "no session token (imds_tokens = required)")
            return
        if not self.valid(token, instance_id):
            raise MetadataError(401, UNAUTHORIZED, f"session token not valid for instance {instance_id} (expired, another "
                                                    "instance's or another secret's)")


def config_problems(config: Config) -> list[str]:
    """
    What stops the API from making tokens, one line each naming the file and line: tokens on
    without a shared secret (their key would be public: anyone could make them).
    """
    if config.api.imds_tokens != "off" and not config.api.shared_secret:
        return [f"{located(config, 'api', 'imds_tokens')} = {config.api.imds_tokens}: session tokens are signed with a key "
                "derived from [neutron] metadata_proxy_shared_secret, which is not set"]
    return []


__all__ = ["config_problems", "MAX_TTL", "MIN_TTL", "MODES", "SessionTokens", "TOKEN_LENGTH", "UNAUTHORIZED", "parse_ttl", "token_key"]
