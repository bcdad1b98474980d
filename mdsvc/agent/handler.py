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

from typing import Any

from attrs import define, field, frozen
from twisted.internet.defer import CancelledError, Deferred, ensureDeferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from mdsvc.agent.forwarder import APIForwarder, UpstreamTimeout, UpstreamUnavailable
from mdsvc.agent.ratelimit import SlidingWindowLimiter
from mdsvc.api.errors import error_page
from mdsvc.api.identify import sign
from mdsvc.http import HTTPResponse
from mdsvc.interfaces import IInstanceLookup, LookupUnavailable
from mdsvc.lookup.address import normalise_address

MEMO_SIZE = 65536
"""Parsed guest addresses and instance signatures kept (both are pure functions of their key)."""

RELAYED_ERRORS = {400, 403, 404, 409, 500, 502, 503, 504}
"""API statuses passed through to the guest (spec §5.1); any other non-200 is the agent's 502."""


@frozen
class AgentRequest:
    """
    A guest request as the namespace proxy hands it over.

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
    """

    lookup: IInstanceLookup
    forwarder: APIForwarder
    shared_secret: str = field(repr=False)
    limiter: SlidingWindowLimiter | None = None
    rate_limit_family: int | None = 4
    _addresses: dict[bytes, tuple[str, str | None]] = field(factory=dict, init=False, repr=False)
    _signatures: dict[str, str] = field(factory=dict, init=False, repr=False)
    _log = Logger()

    def handle(self, request: AgentRequest) -> Deferred[HTTPResponse]:
        """Answer one proxied request; the Deferred never fails (except on cancellation)."""
        return ensureDeferred(self._handle(request)).addErrback(self._failed, request)

    def _failed(self, failure: Failure, request: AgentRequest) -> Any:
        if failure.check(CancelledError):
            return failure
        if failure.check(AgentError):
            e = failure.value
            getattr(self._log, e.log_level)("{method} {path}: {code} {reason}", method=request.method.decode("latin-1"),
                                            path=request.path.decode("latin-1"), code=e.code, reason=e.explanation)
            return self.error(e.code, e.explanation, request.accept)
        self._log.failure("Unexpected error answering {path}", failure, path=request.path.decode("latin-1"))
        return self.error(500, "An unknown error has occurred. Please try your request again.", request.accept)

    @staticmethod
    def error(code: int, explanation: str, accept: bytes | None) -> HTTPResponse:
        """The agent's own error page (HTML for browsers and curl, like Nova's)."""
        page = error_page(code, explanation, accept)
        return HTTPResponse(code, ((b"Content-Type", page.content_type),), page.body)

    async def _handle(self, request: AgentRequest) -> HTTPResponse:
        network_id, router_id = self._identity(request)
        if len(request.forwarded_for) != 1 or b"," in request.forwarded_for[0]:
            raise AgentError(400, "X-Forwarded-For must hold exactly one address.")
        raw = request.forwarded_for[0].strip()
        address = self._addresses.get(raw)
        if address is None:
            try:
                address = normalise_address(raw.decode("ascii"))
            except (ValueError, UnicodeDecodeError):
                raise AgentError(400, f"X-Forwarded-For {raw.decode('latin-1')!r} is not an IP address.") from None
            if len(self._addresses) >= MEMO_SIZE:
                self._addresses.clear()
            self._addresses[raw] = address
        ip, mac = address
        if self.limiter is not None and (self.rate_limit_family is None or (":" in ip) == (self.rate_limit_family == 6)):
            if not self.limiter.allow((network_id, router_id, ip)):
                raise AgentError(429, "You have sent too many requests in a given amount of time.", "info")
        found = await self._lookup(ip, network_id, router_id, mac)
        forwarded = ip.encode("ascii")  # normalised: no ::ffff: form reaches the API (spec §11.7)
        response = await self._forward(request, forwarded, found)
        if response.code == 404 and hasattr(self.lookup, "forget"):
            # the port may have moved to a new instance since it was cached (neutron spec §4)
            self._log.info("The instance: {instance} is not present anymore, skipping cache...", instance=found[0])
            self.lookup.forget(ip, network_id, router_id, mac)
            again = await self._lookup(ip, network_id, router_id, mac)
            if again != found:
                response = await self._forward(request, forwarded, again)
        return self._relay(response)

    def _identity(self, request: AgentRequest) -> tuple[str | None, str | None]:
        if len(request.network_ids) == 1 and not request.router_ids:  # what every proxy sends
            only = request.network_ids[0].strip()
            if only and b"," not in only:
                return only.decode("latin-1"), None
        networks = {v.strip() for v in request.network_ids if v.strip()}
        routers = {v.strip() for v in request.router_ids if v.strip()}
        if len(networks) > 1 or len(routers) > 1 or any(b"," in v for v in networks | routers):
            raise AgentError(400, "Only one network or router ID may be given.")
        network = networks.pop().decode("latin-1") if networks else None
        router = routers.pop().decode("latin-1") if routers else None
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

    def _relay(self, response: HTTPResponse) -> HTTPResponse:
        if response.code == 200 or response.code in RELAYED_ERRORS:
            if response.code == 403:
                self._log.warn("The remote metadata server responded with Forbidden. This response usually occurs when shared secrets do not match.")
            elif response.code == 500:
                self._log.warn("Remote metadata server experienced an internal server error.")
            return HTTPResponse(response.code, response.headers, response.body)
        raise AgentError(502, f"The remote metadata server answered with unexpected status {response.code}.", "error")
