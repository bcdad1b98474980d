# -*- test-case-name: tests.test_proxy_http -*-
"""
The namespace proxy's HTTP side: what haproxy does in Neutron's namespaces (neutron spec §1 hop 1),
as a handler with a fixed identity per listener.

Whatever identity headers the guest sent are dropped: the proxy itself states the network or
router the listener belongs to and the guest's address as the connection shows it, in a
L{GuestRequest} for an L{IAgentHop}: the agent itself when it runs in this process
(network-node, all-in-one), or L{AgentSocketUpstream}, which writes it on the agent's UNIX socket.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.endpoints import UNIXClientEndpoint
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from zope.interface import implementer

from mdsvc.hop import GuestRequest, IAgentHop, error_response, guest_request_headers, peer_address
from mdsvc.http import HTTPRequest, HTTPResponse
from mdsvc.httpclient import BadResponse, ConnectionFailed, HTTPPool, RequestTimedOut, relayed
from mdsvc.imds import HOP_LIMIT, TOKEN_HEADER, TTL_HEADER, carried
from mdsvc.wire import UnsafeRequest, forwardable_value, is_origin_target


@implementer(IAgentHop)
class AgentSocketUpstream:
    """
    The agent behind its UNIX socket, over pooled persistent HTTP/1.1 connections.  A missing or
    refusing socket is answered 503 at once, a slow agent 504 after C{timeout}, like haproxy.
    """

    _log = Logger()

    def __init__(self, reactor: Any, path: str, clock: IReactorTime, timeout: float, pool_size: int = 64) -> None:
        endpoint = UNIXClientEndpoint(reactor, path, timeout=min(timeout, 5))
        self.pool = HTTPPool(endpoint.connect, b"169.254.169.254", pool_size, clock=clock)
        self._timeout = timeout
        self.path = path

    def handle(self, request: GuestRequest) -> Deferred[HTTPResponse]:
        """See L{IAgentHop.handle}."""
        try:
            d = self.pool.request(request.method, request.target, guest_request_headers(request), request.body, timeout=self._timeout)
        except UnsafeRequest as e:
            self._log.error("refused to forward a request to the agent: {reason}", reason=str(e))
            return succeed(error_response(400, "The request cannot be forwarded.", request.accept))
        d.addCallback(relayed)
        d.addErrback(self._failed, request)
        return d

    def _failed(self, failure: Any, request: GuestRequest) -> Any:
        if failure.check(RequestTimedOut):
            self._log.warn("agent at {path} did not answer within {timeout}s", path=self.path, timeout=self._timeout)
            return error_response(504, "The server didn't respond in time.", request.accept,
                                  reason=f"the agent at {self.path} did not answer within {self._timeout:g}s")
        if failure.check(ConnectionFailed, BadResponse):
            self._log.warn("agent at {path} is unavailable: {reason}", path=self.path, reason=failure.getErrorMessage())
            return error_response(503, "No server is available to handle this request.", request.accept,
                                  reason=f"the agent at {self.path} is unavailable: {failure.getErrorMessage()}")
        return failure


class NamespaceProxyHandler:
    """One listener's handler: C{kind} is C{"network"} or C{"router"}, C{ident} its id."""

    def __init__(self, kind: str, ident: str, upstream: IAgentHop) -> None:
        if kind not in ("network", "router"):
            raise ValueError(f"kind must be network or router, not {kind!r}")
        self.kind = kind
        self.ident = ident
        self.upstream = upstream
        self._network = ident if kind == "network" else None
        self._router = ident if kind == "router" else None
        # an agent in this process is called within the listener's call (MetadataAgent.handle_in_process)
        self._handle = getattr(upstream, "handle_in_process", None) or upstream.handle

    def __call__(self, request: HTTPRequest) -> Deferred[HTTPResponse]:
        """
        Forward with the listener's identity; the guest's own identity headers never pass, and
        of the rest only what was checked does: the method (a token, by the parser), the target
        in origin form (visible ASCII, by the parser; anything but a path is refused here),
        C{Accept} if it is plain visible ASCII, the session token headers as L{carried} makes
        them, and the body (framed by its length).

        The answer to a C{PUT} (the session token's) leaves with IP TTL / hop limit
        L{HOP_LIMIT}: it reaches the guest and no further, so a container behind the guest
        cannot get a token (as AWS's default).
        """
        accept = forwardable_value(request.header(b"accept"))
        target = request.origin_target
        if not is_origin_target(target):
            return succeed(error_response(400, "The request target must be a path.", accept))
        try:
            address, mac = peer_address(request.peer or "")
        except ValueError:
            return succeed(error_response(400, "The guest's address is not an IP address.", accept))
        headers = request.headers
        token = carried(headers.get(TOKEN_HEADER)) if TOKEN_HEADER in headers else None
        ttl = carried(headers.get(TTL_HEADER)) if TTL_HEADER in headers else None
        guest = GuestRequest(request.method, target, request.body, address, mac, self._network, self._router, accept, token, ttl)
        answer = self._handle(guest)
        if request.method == b"PUT":
            answer.addCallback(_hop_limited)
        return answer


def _hop_limited(response: HTTPResponse) -> HTTPResponse:
    """C{response}, to be sent with IP TTL / hop limit L{HOP_LIMIT}."""
    return HTTPResponse(response.code, response.headers, response.body, response.length, hop_limit=HOP_LIMIT,
                        reason=response.reason)
