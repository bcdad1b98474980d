# -*- test-case-name: tests.test_agent_handler -*-
"""
L{MetadataAgent}: from a proxied guest request to the metadata API's answer (neutron spec §1 hop 2
to hop 4, §4, §5.1).

The identity comes from the namespace proxy (network or router id) and the guest's address;
the agent resolves it to (instance, project) through the lookup backend, signs the instance id
and forwards.  Every failure becomes a status the guest can act on: 400 for malformed proxy
requests, 404 for no instance, 429 when rate-limited, 503 when the API or the lookup backend is
unavailable, 504 when the API is too slow, 502 for an answer the API should never give.
"""

from __future__ import annotations

import re
from typing import Any

from attrs import define, field
from twisted.internet.defer import CancelledError, Deferred, ensureDeferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from mdsvc.agent.forwarder import APIForwarder, UpstreamTimeout, UpstreamUnavailable
from mdsvc.agent.ratelimit import SlidingWindowLimiter
from mdsvc.api.errors import error_page
from mdsvc.api.identify import sign
from mdsvc.http import HTTPResponse
from mdsvc.interfaces import IInstanceLookup, LookupUnavailable
from mdsvc.lookup.address import normalise_address
from mdsvc.wire import UnsafeRequest, is_origin_target, loggable

MEMO_SIZE = 65536
"""Parsed guest addresses and instance signatures kept (both are pure functions of their key)."""

RELAYED_ERRORS = {400, 403, 404, 409, 500, 502, 503, 504}
"""API statuses passed through to the guest (spec §5.1); any other non-200 is the agent's 502."""

_IDENTIFIER = re.compile(r"[0-9A-Za-z][0-9A-Za-z._-]{0,254}")
"""What a network, router, instance or project id may look like to be used or passed on: Neutron
and Nova ids are UUIDs; anything with spaces, controls or punctuation is refused (a tenant sets
its ports' device_id freely, so even a lookup backend's answer is checked)."""


_KNOWN_IDENTIFIERS: set[str] = set()


def is_identifier(value: str) -> bool:
    """Whether C{value} may be used as a network, router, instance or project id (the ids seen
    pass again without the pattern: a node serves a few thousand of them, over and over)."""
    if value in _KNOWN_IDENTIFIERS:
        return True
    if _IDENTIFIER.fullmatch(value) is None:
        return False
    if len(_KNOWN_IDENTIFIERS) >= MEMO_SIZE:
        _KNOWN_IDENTIFIERS.clear()
    _KNOWN_IDENTIFIERS.add(value)
    return True


@define
class AgentRequest:
    """
    A guest request as the namespace proxy hands it over (read-only; not frozen, as it is made
    per request).

    @ivar forwarded_for: the raw C{X-Forwarded-For} values (normally exactly one).
    @ivar network_ids: the network header values (C{X-Neutron-Network-ID} / C{X-OVN-Network-ID}).
    @ivar router_ids: the C{X-Neutron-Router-ID} values.
    """

    method: bytes
    path: bytes
    body: bytes = b""
    forwarded_for: tuple[bytes, ...] = ()
    network_ids: tuple[bytes, ...] = ()
    router_ids: tuple[bytes, ...] = ()
    accept: bytes | None = None


class AgentError(Exception):
    """Ends a request with the agent's own error page."""

    def __init__(self, code: int, explanation: str, log_level: str = "warn") -> None:
        super().__init__(code, explanation)
        self.code = code
        self.explanation = explanation
        self.log_level = log_level


@define
class MetadataAgent:
    """
    @ivar lookup: the instance-lookup backend (normally a caching one, with C{forget}).
    @ivar limiter: None when rate limiting is off.
    @ivar rate_limit_family: the IP version rate limiting applies to (4 or 6), as Neutron's
        C{ip_versions} allows only one.
    @ivar clock: tells when a 404 last made the agent look an address up afresh.
    @ivar relookup_interval: seconds during which a 404 from the API for the same guest does
        not make the agent forget its cached lookup again (the lookup cache's negative TTL).
    @ivar max_in_flight: requests one guest may have in flight at once (0: no limit); beyond,
        429.
    """

    lookup: IInstanceLookup
    forwarder: APIForwarder
    shared_secret: str = field(repr=False)
    limiter: SlidingWindowLimiter | None = None
    rate_limit_family: int | None = 4
    clock: IReactorTime | None = None
    relookup_interval: float = 2.0
    max_in_flight: int = 0
    _addresses: dict[bytes, tuple[str, str | None]] = field(factory=dict, init=False, repr=False)
    _signatures: dict[str, str] = field(factory=dict, init=False, repr=False)
    _forgotten: dict[tuple[Any, ...], float] = field(factory=dict, init=False, repr=False)
    _in_flight: dict[tuple[Any, ...], int] = field(factory=dict, init=False, repr=False)
    _log = Logger()

    def __attrs_post_init__(self) -> None:
        if self.clock is None:
            from twisted.internet import reactor

            self.clock = reactor  # type: ignore[assignment]

    def handle(self, request: AgentRequest) -> Deferred[HTTPResponse]:
        """Answer one proxied request; the Deferred never fails (except on cancellation)."""
        return ensureDeferred(self._handle(request)).addErrback(self._failed, request)

    def _failed(self, failure: Failure, request: AgentRequest) -> Any:
        if failure.check(CancelledError):
            return failure
        if failure.check(AgentError):
            e = failure.value
            getattr(self._log, e.log_level)("{method} {path}: {code} {reason}", method=request.method.decode("latin-1"),
                                            path=loggable(request.path), code=e.code, reason=e.explanation)
            return self.error(e.code, e.explanation, request.accept)
        self._log.failure("Unexpected error answering {path}", failure, path=loggable(request.path))
        return self.error(500, "An unknown error has occurred. Please try your request again.", request.accept)

    @staticmethod
    def error(code: int, explanation: str, accept: bytes | None) -> HTTPResponse:
        """The agent's own error page (HTML for browsers and curl, like Nova's)."""
        page = error_page(code, explanation, accept)
        return HTTPResponse(code, ((b"Content-Type", page.content_type),), page.body)

    async def _handle(self, request: AgentRequest) -> HTTPResponse:
        if not is_origin_target(request.path):
            raise AgentError(400, "The request target must be a path.")
        network_id, router_id = self._identity(request)
        if len(request.forwarded_for) != 1 or request.forwarded_for[0].find(b",") >= 0:
            raise AgentError(400, "X-Forwarded-For must hold exactly one address.")
        raw = request.forwarded_for[0].strip()
        address = self._addresses.get(raw)
        if address is None:
            try:
                address = normalise_address(raw.decode("ascii"))
            except (ValueError, UnicodeDecodeError):
                raise AgentError(400, "X-Forwarded-For is not an IP address.") from None
            if len(self._addresses) >= MEMO_SIZE:
                self._addresses.clear()
            self._addresses[raw] = address
        ip, mac = address
        if self.limiter is not None and (self.rate_limit_family is None or (":" in ip) == (self.rate_limit_family == 6)):
            if not self.limiter.allow((network_id, router_id, ip)):
                raise AgentError(429, "You have sent too many requests in a given amount of time.", "info")
        guest = (network_id, router_id, ip, mac)
        held = self._in_flight.get(guest, 0)
        if self.max_in_flight and held >= self.max_in_flight:
            raise AgentError(429, "Too many requests of this guest are in flight.", "info")
        self._in_flight[guest] = held + 1
        try:
            return await self._answer(request, guest)
        finally:
            left = self._in_flight[guest] - 1
            if left:
                self._in_flight[guest] = left
            else:
                del self._in_flight[guest]

    async def _answer(self, request: AgentRequest, guest: tuple[Any, ...]) -> HTTPResponse:
        network_id, router_id, ip, mac = guest
        found = await self._lookup(ip, network_id, router_id, mac)
        forwarded = ip.encode("ascii")  # normalised: no ::ffff: form reaches the API (spec §11.7)
        response = await self._forward(request, forwarded, found)
        if response.code == 404 and hasattr(self.lookup, "forget"):
            # The port may have moved to a new instance since it was cached (neutron spec §4):
            # look again, but forget the cached answer at most once per interval per guest, so
            # a guest asking for missing paths costs a cache hit, not a backend lookup each.
            if self._may_forget(guest, found[0]):
                self.lookup.forget(ip, network_id, router_id, mac)
            again = await self._lookup(ip, network_id, router_id, mac)
            if again != found:
                response = await self._forward(request, forwarded, again)
        return self._relay(response)

    def _may_forget(self, guest: tuple[Any, ...], instance: str) -> bool:
        """Whether a 404 for C{guest} may drop its cached lookup now (logged when it does)."""
        now = self.clock.seconds()  # type: ignore[union-attr]
        last = self._forgotten.get(guest)
        if last is not None and now - last < self.relookup_interval:
            return False
        if len(self._forgotten) >= MEMO_SIZE:
            self._forgotten = {k: t for k, t in self._forgotten.items() if now - t < self.relookup_interval}
        self._forgotten[guest] = now
        self._log.info("The instance: {instance} is not present anymore, skipping cache...", instance=instance)
        return True

    def _identity(self, request: AgentRequest) -> tuple[str | None, str | None]:
        if len(request.network_ids) == 1 and not request.router_ids:  # what every proxy sends
            only = request.network_ids[0].strip().decode("latin-1")
            if is_identifier(only):
                return only, None
        networks = {v.strip().decode("latin-1") for v in request.network_ids if v.strip()}
        routers = {v.strip().decode("latin-1") for v in request.router_ids if v.strip()}
        if not all(is_identifier(v) for v in networks | routers):
            raise AgentError(400, "The network or router ID is malformed.")
        if len(networks) > 1 or len(routers) > 1:
            raise AgentError(400, "Only one network or router ID may be given.")
        network = networks.pop() if networks else None
        router = routers.pop() if routers else None
        if network and router:
            raise AgentError(400, f"Both network {network} and router {router} defined.")
        if not network and not router:
            raise AgentError(400, "Neither a network nor a router ID was given.")
        return network, router

    async def _lookup(self, ip: str, network_id: str | None, router_id: str | None, mac: str | None) -> tuple[str, str]:
        try:
            found = await self.lookup.lookup(ip, network_id=network_id, router_id=router_id, mac=mac)
        except LookupUnavailable as e:
            raise AgentError(503, "The instance lookup service is temporarily unavailable. Please try again later.", "warn") from e
        if not found or not found[0]:
            where = f"network {network_id}" if network_id else f"router {router_id}"
            raise AgentError(404, f"Instance was not found on {where}.")
        if not is_identifier(found[0]) or not (found[1] is None or found[1] == "" or is_identifier(found[1])):
            self._log.warn("The port of {ip} names a malformed instance or project id; treated as no instance", ip=ip)
            where = f"network {network_id}" if network_id else f"router {router_id}"
            raise AgentError(404, f"Instance was not found on {where}.")
        return found

    async def _forward(self, request: AgentRequest, forwarded_for: bytes, found: tuple[str, str]) -> HTTPResponse:
        instance_id, project_id = found
        try:
            signature = self._signatures.get(instance_id)
            if signature is None:
                if len(self._signatures) >= MEMO_SIZE:
                    self._signatures.clear()
                signature = self._signatures[instance_id] = sign(self.shared_secret, instance_id)
            return await self.forwarder.forward(
                request.method, request.path, request.body, forwarded_for, instance_id, project_id or "", signature,
            )
        except UpstreamUnavailable as e:
            self._log.warn("The remote metadata server is temporarily unavailable. Please try again later. ({reason})", reason=str(e))
            raise AgentError(503, "The remote metadata server is temporarily unavailable. Please try again later.", "debug") from e
        except UpstreamTimeout as e:
            raise AgentError(504, "The remote metadata server did not answer in time.", "warn") from e
        except UnsafeRequest as e:
            raise AgentError(400, f"The request cannot be forwarded: {e}.", "error") from e

    def _relay(self, response: HTTPResponse) -> HTTPResponse:
        if response.code == 200 or response.code in RELAYED_ERRORS:
            if response.code == 403:
                self._log.warn("The remote metadata server responded with Forbidden. This response usually occurs when shared secrets do not match.")
            elif response.code == 500:
                self._log.warn("Remote metadata server experienced an internal server error.")
            return response
        raise AgentError(502, f"The remote metadata server answered with unexpected status {response.code}.", "error")

