# -*- test-case-name: tests.test_agent_handler -*-
"""
L{MetadataAgent}: from a guest's request to the metadata API's answer (neutron spec §1 hop 2
to hop 4, §4, §5.1).

The identity comes from the namespace proxy (network or router id) and the guest's address;
the agent resolves it to (instance, project) through the lookup backend, signs the instance id
and hands a L{SignedRequest} to the API.  Every failure becomes a status the guest can act on:
404 for no instance, 429 when rate-limited or too many of a guest's requests are in flight, 503
when the API or the lookup backend is unavailable, 504 when the API is too slow, 502 for an
answer the API should never give.
"""

from __future__ import annotations

from typing import Any

from attrs import define, evolve, field
from twisted.internet.defer import CancelledError, Deferred, ensureDeferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from mdsvc.agent.ratelimit import SlidingWindowLimiter
from mdsvc.hop import (
    UNKNOWN_ERROR,
    GuestRequest,
    HopError,
    IAgentHop,
    IAPIHop,
    SignedRequest,
    UpstreamTimeout,
    UpstreamUnavailable,
    error_response,
    sign,
)
from mdsvc.http import HTTPResponse
from mdsvc.interfaces import ICachingLookup, IInstanceLookup, LookupUnavailable
from mdsvc.trace import PROXY_AGENT, WITHOUT_API
from mdsvc.wire import UnsafeRequest, is_identifier, loggable

MEMO_SIZE = 65536
"""Instance signatures kept (a pure function of the id)."""

RELAYED_ERRORS = {400, 401, 403, 404, 405, 409, 500, 502, 503, 504}
"""API statuses passed through to the guest (spec §5.1, and the session tokens' 401 and 405);
any other non-200 is the agent's 502."""


@implementer(IAgentHop)
@define
class MetadataAgent:
    """
    @ivar lookup: the instance-lookup backend; when it is an L{ICachingLookup} (the lookup
        cache), an API 404 makes the agent forget its answer and look the guest up once more.
    @ivar api: where signed requests go (L{mdsvc.agent.forwarder.APIForwarder} over HTTP, or
        the API in this process).
    @ivar limiter: None when rate limiting is off.
    @ivar rate_limit_family: the IP version rate limiting applies to (4 or 6), as Neutron's
        C{ip_versions} allows only one.
    @ivar clock: tells when a 404 last made the agent look an address up afresh.
    @ivar relookup_interval: seconds during which a 404 from the API for the same guest does
        not make the agent forget its cached lookup again (the lookup cache's negative TTL).
    @ivar max_in_flight: requests one guest may have in flight at once (0: no limit); beyond,
        429.
    @ivar previous_secrets: while a new shared secret is rolled out (L{mdsvc.reload}), the
        secrets before it: a request the API refuses (403) is signed again with each, for an
        API that has not been given the new secret yet.
    @ivar meter: notes every answer (L{mdsvc.metrics.HopMeter} of the C{agent} hop), or None.
    @ivar time_api: (with a meter) whether each answer's record says how long the API took
        (C{agent_to_api}); not for an API in this process, which notes its own time.
    @ivar front: (with a meter) the meter of the namespace proxies' listeners that call this agent
        in the same process (L{handle_in_process}), whose records stand for the agent too.
    @ivar rate_limited: requests refused (429) by the rate limiter.
    @ivar in_flight_refused: requests refused (429) because their guest had too many in flight.
    """

    lookup: IInstanceLookup
    api: IAPIHop
    shared_secret: str = field(repr=False)
    limiter: SlidingWindowLimiter | None = None
    rate_limit_family: int | None = 4
    clock: IReactorTime | None = None
    relookup_interval: float = 2.0
    max_in_flight: int = 0
    previous_secrets: tuple[str, ...] = field(default=(), repr=False)
    meter: Any = None
    time_api: bool = False
    front: Any = None
    rate_limited: int = field(default=0, init=False)
    in_flight_refused: int = field(default=0, init=False)
    _caching: Any = field(default=None, init=False, repr=False)
    _within: Any = field(default=None, init=False, repr=False)
    _api_clock: Any = field(default=None, init=False, repr=False)
    _signatures: dict[str, str] = field(factory=dict, init=False, repr=False)
    _forgotten: dict[tuple[Any, ...], float] = field(factory=dict, init=False, repr=False)
    _in_flight: dict[tuple[Any, ...], int] = field(factory=dict, init=False, repr=False)
    _told_previous: bool = field(default=False, init=False, repr=False)
    _log = Logger()

    def __attrs_post_init__(self) -> None:
        if self.clock is None:
            from twisted.internet import reactor

            self.clock = reactor
        if self.meter is not None and getattr(self.lookup, "outcome", False) is not False:
            # tells what each lookup did in its cache, for the meter (the cache's own attribute when it has one)
            self._caching = getattr(self.lookup, "tracker", self.lookup)
        if self.meter is not None and getattr(self.api, "meter", None) is not None:
            self._within = getattr(self.api, "forward_within", None)  # an API in this process: one record for both
        if self.meter is not None and self.time_api:
            self._api_clock = self.meter.now  # each answer's record says how long the API took

    def handle(self, request: GuestRequest) -> Deferred[HTTPResponse]:
        """See L{IAgentHop.handle}: the Deferred never fails (except on cancellation)."""
        return ensureDeferred(self._handle(request)).addErrback(self._failed, request)

    def handle_in_process(self, request: GuestRequest) -> Deferred[HTTPResponse]:
        """
        L{handle} for a namespace proxy's listener in this process, which calls it within its
        own call and notes its answer right after the agent's: the agent leaves what it knows in
        the listener's meter (C{front.inner}: its hops, the instance, the lookup cache's outcome,
        the API's time), whose one record stands for both hops, with the listener's times (L{mdsvc.metrics.HopMeter}).
        """
        return ensureDeferred(self._handle(request, self.front)).addErrback(self._failed, request)

    def _failed(self, failure: Failure, request: GuestRequest) -> Any:
        if failure.check(CancelledError):
            return failure
        self._log.failure("Unexpected error answering {path}", failure, path=loggable(request.target))
        return error_response(500, UNKNOWN_ERROR, request.accept)

    def _refusal(self, e: HopError, request: GuestRequest) -> HTTPResponse:
        """The agent's own error page for C{e}, logged at its level; its reason names the cause."""
        getattr(self._log, e.log_level)("{method} {path}: {code} {reason}", method=request.method.decode("latin-1"),
                                        path=loggable(request.target), code=e.code, reason=e.explanation)
        cause = e.__cause__
        reason = f"{e.explanation} ({cause})" if cause is not None and str(cause) else e.explanation
        return error_response(e.code, e.explanation, request.accept, reason=reason)

    async def _handle(self, request: GuestRequest, front: Any = None) -> HTTPResponse:
        meter = self.meter
        # what this hop's record says: the hops it stands for (with the API of this
        # process once it answered at once: L{mdsvc.api.inprocess.InProcessAPI.forward_within}),
        # the instance, the lookup cache's outcome, seconds the API took
        if front is not None:  # the listener's record, with the listener's times, stands for this hop
            seen: list[Any] = [PROXY_AGENT, None, None, None]
        else:
            seen = ["agent", None, None, None]
            if meter is not None:
                now = meter.now  # (loaded as an attribute, not as a method: see HopMeter)
                started = now()
        ip = request.address
        try:
            if self.limiter is not None and (self.rate_limit_family is None or (":" in ip) == (self.rate_limit_family == 6)):
                if not self.limiter.allow((request.network_id, request.router_id, ip)):
                    self.rate_limited += 1
                    raise HopError(429, "You have sent too many requests in a given amount of time.", "info")
            guest = (request.network_id, request.router_id, ip, request.mac)
            held = self._in_flight.get(guest, 0)
            if self.max_in_flight and held >= self.max_in_flight:
                self.in_flight_refused += 1
                raise HopError(429, "Too many requests of this guest are in flight.", "info")
            self._in_flight[guest] = held + 1
            try:
                response = await self._answer(request, seen)
            finally:
                left = self._in_flight[guest] - 1
                if left:
                    self._in_flight[guest] = left
                else:
                    del self._in_flight[guest]
        except HopError as e:
            response = self._refusal(e, request)
        if front is not None:  # the listener calling, within its call, notes next: its record stands for this hop
            front.inner = seen
        elif meter is not None:
            note = meter.note
            note((seen[0], started, now(), response.code, response if response.reason is not None else None, ip,
                  request.network_id or request.router_id, seen[1], request.method, request.target, seen[2], seen[3]))
        return response

    async def _answer(self, request: GuestRequest, seen: list[Any]) -> HTTPResponse:
        found = await self._lookup(request, seen)
        seen[1] = found[0]
        response = await self._forward(request, found, seen)
        if response.code == 404 and ICachingLookup.providedBy(self.lookup):
            # The port may have moved to a new instance since it was cached (neutron spec §4):
            # look again, but forget the cached answer at most once per interval per guest, so
            # a guest asking for missing paths costs a cache hit, not a backend lookup each.
            # Unlike Neutron, which logs "The instance ... is not present anymore" for every
            # 404, what is logged is what the fresh lookup found.
            fresh = self._may_forget(request)
            if fresh:
                ICachingLookup(self.lookup).forget(request.address, request.network_id, request.router_id, request.mac)
            try:
                again = await self._lookup(request)
            except HopError as e:
                if fresh and e.code == 404:
                    self._log.info("{ip}: instance {instance} is not present anymore (the metadata API does not know it, "
                                   "and a fresh lookup finds no instance)", ip=request.address, instance=found[0])
                raise
            if again != found:
                self._log.info("{ip}: the metadata API does not know instance {instance}; the address now belongs to "
                               "instance {now}: asking again for it", ip=request.address, instance=found[0], now=again[0])
                seen[1] = again[0]
                if seen[0] in WITHOUT_API:  # the API's first answer, given at once: a record of its own (the agent's is for the second)
                    seen[0] = WITHOUT_API[seen[0]]
                    self.meter.note(("api", self.meter.now(), self.meter.now(), response.code,
                                     response if response.reason is not None else None, request.address, None, found[0],
                                     request.method, request.target, None, None))
                response = await self._forward(request, again, seen)
            elif fresh:
                self._log.debug("{method} {path}: 404 for instance {instance}, which a fresh lookup still finds: no such "
                                "path", method=request.method.decode("latin-1"), path=loggable(request.target),
                                instance=found[0])
        return self._relay(response)

    def _may_forget(self, request: GuestRequest) -> bool:
        """Whether a 404 for this guest may drop its cached lookup now (once per C{relookup_interval})."""
        guest = (request.network_id, request.router_id, request.address, request.mac)
        now = self.clock.seconds()  # type: ignore[union-attr]
        last = self._forgotten.get(guest)
        if last is not None and now - last < self.relookup_interval:
            return False
        if len(self._forgotten) >= MEMO_SIZE:
            self._forgotten = {k: t for k, t in self._forgotten.items() if now - t < self.relookup_interval}
        self._forgotten[guest] = now
        return True

    async def _lookup(self, request: GuestRequest, seen: list[Any] | None = None) -> tuple[str, str]:
        network_id, router_id = request.network_id, request.router_id
        try:
            pending = self.lookup.lookup(request.address, network_id=network_id, router_id=router_id, mac=request.mac)
            if seen is not None and self._caching is not None:
                seen[2] = self._caching.outcome  # decided by the call itself, before any wait
            found = await pending
        except LookupUnavailable as e:
            raise HopError(503, "The instance lookup service is temporarily unavailable. Please try again later.", "warn") from e
        where = f"network {network_id}" if network_id else f"router {router_id}"
        if not found or not found[0]:
            raise HopError(404, f"Instance was not found on {where}.")
        if not is_identifier(found[0]) or not (found[1] is None or found[1] == "" or is_identifier(found[1])):
            self._log.warn("The port of {ip} names a malformed instance or project id; treated as no instance", ip=request.address)
            raise HopError(404, f"Instance was not found on {where}.")
        return found

    async def _forward(self, request: GuestRequest, found: tuple[str, str], seen: list[Any] | None = None) -> HTTPResponse:
        instance_id, project_id = found
        signature = self._signatures.get(instance_id)
        if signature is None:
            if len(self._signatures) >= MEMO_SIZE:
                self._signatures.clear()
            signature = self._signatures[instance_id] = sign(self.shared_secret, instance_id)
        signed = SignedRequest(request.method, request.target, request.body, request.address, instance_id, project_id or "", signature,
                               request.token, request.token_ttl)
        response = await self._send(signed, seen)
        for secret in self.previous_secrets if response.code == 403 else ():
            # the API refused the new secret's signature (it runs with the previous secret
            # still): nothing was done, so the request goes once more, signed as it expects
            again = await self._send(evolve(signed, signature=sign(secret, instance_id)), seen)
            if again.code != 403:
                if not self._told_previous:
                    self._told_previous = True
                    self._log.warn("The metadata API refuses the new metadata_proxy_shared_secret and takes the previous "
                                   "one: requests are signed with it while the rotation window lasts; give the API the new "
                                   "secret (SIGHUP)")
                return again
        return response

    def set_secret(self, secret: str, previous: tuple[str, ...]) -> None:
        """Sign with C{secret} from now on, falling back on C{previous} (L{previous_secrets})."""
        if secret != self.shared_secret:
            self._signatures.clear()
        self.shared_secret = secret
        self.previous_secrets = previous
        self._told_previous = False

    async def _send(self, signed: SignedRequest, seen: list[Any] | None) -> HTTPResponse:
        clock = self._api_clock
        timed = clock is not None and seen is not None
        sent = clock() if timed else 0.0
        try:
            if self._within is not None and seen is not None:
                return await self._within(signed, seen)
            return await self.api.forward(signed)
        except UpstreamUnavailable as e:
            self._log.warn("The remote metadata server is temporarily unavailable. Please try again later. ({reason})", reason=str(e))
            raise HopError(503, "The remote metadata server is temporarily unavailable. Please try again later.", "debug") from e
        except UpstreamTimeout as e:
            raise HopError(504, "The remote metadata server did not answer in time.", "warn") from e
        except UnsafeRequest as e:
            raise HopError(400, f"The request cannot be forwarded: {e}.", "error") from e
        finally:
            if timed:
                seen[3] = clock() - sent  # type: ignore[index]

    def _relay(self, response: HTTPResponse) -> HTTPResponse:
        if response.code == 200 or response.code in RELAYED_ERRORS:
            if response.code == 403:
                self._log.warn("The remote metadata server responded with Forbidden. This response usually occurs when shared secrets do not match.")
            elif response.code == 500:
                self._log.warn("Remote metadata server experienced an internal server error.")
            return response
        raise HopError(502, f"The remote metadata server answered with unexpected status {response.code}.", "error")
