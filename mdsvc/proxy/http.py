# -*- test-case-name: tests.test_proxy_http -*-
"""
The namespace proxy's HTTP side: what haproxy does in Neutron's namespaces (neutron spec §1 hop 1),
as a handler with a fixed identity per listener.

Whatever identity headers the guest sent are dropped: the proxy itself states the network or
router the listener belongs to and the guest's address as the connection shows it.  The request
goes to the agent either in-process (network-node, all-in-one) or over its UNIX socket.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from attrs import frozen
from twisted.internet.defer import Deferred, succeed
from twisted.internet.endpoints import UNIXClientEndpoint
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from zope.interface import Interface, implementer

from mdsvc.agent.handler import AgentRequest, MetadataAgent
from mdsvc.http import HTTPRequest, HTTPResponse
from mdsvc.httpclient import BadResponse, ConnectionFailed, HTTPPool, RequestTimedOut, relayed
from mdsvc.wire import UnsafeRequest, forwardable_value, is_origin_target


class IUpstream(Interface):
    """Where a namespace proxy sends requests: the metadata agent."""

    def forward(request):
        """
        @param request: an L{AgentRequest} with the proxy's identity and the guest's address.
        @return: a Deferred of an L{HTTPResponse}; never fails except on cancellation.
        """


@implementer(IUpstream)
@frozen
class InProcessUpstream:
    """The agent in this process: no socket, no HTTP, just a call."""

    agent: MetadataAgent

    def forward(self, request: AgentRequest) -> Deferred[HTTPResponse]:
        """See L{IUpstream.forward}."""
        return self.agent.handle(request)


@implementer(IUpstream)
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

    def forward(self, request: AgentRequest) -> Deferred[HTTPResponse]:
        """See L{IUpstream.forward}."""
        headers = [(b"X-Forwarded-For", v) for v in request.forwarded_for]
        headers += [(b"X-Neutron-Network-ID", v) for v in request.network_ids]
        headers += [(b"X-Neutron-Router-ID", v) for v in request.router_ids]
        if request.accept:
            headers.append((b"Accept", request.accept))
        try:
            d = self.pool.request(request.method, request.path, headers, request.body, timeout=self._timeout)
        except UnsafeRequest as e:
            self._log.error("refused to forward a request to the agent: {reason}", reason=str(e))
            return succeed(MetadataAgent.error(400, "The request cannot be forwarded.", request.accept))
        d.addCallback(relayed)
        d.addErrback(self._failed, request)
        return d

    def _failed(self, failure: Any, request: AgentRequest) -> Any:
        if failure.check(RequestTimedOut):
            self._log.warn("agent at {path} did not answer within {timeout}s", path=self.path, timeout=self._timeout)
            return MetadataAgent.error(504, "The server didn't respond in time.", request.accept)
        if failure.check(ConnectionFailed, BadResponse):
            self._log.warn("agent at {path} is unavailable: {reason}", path=self.path, reason=failure.getErrorMessage())
            return MetadataAgent.error(503, "No server is available to handle this request.", request.accept)
        return failure


_GUEST_ADDRESSES: dict[str | None, bytes] = {}


def guest_address(request: HTTPRequest) -> bytes:
    """The guest's address as the connection shows it: zone dropped, IPv4-mapped as IPv4
    (remembered per peer: a guest sends its whole boot from the same address)."""
    peer = request.peer
    known = _GUEST_ADDRESSES.get(peer)
    if known is not None:
        return known
    host = (peer or "").split("%", 1)[0]
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host.encode("ascii", "replace")
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if len(_GUEST_ADDRESSES) >= 65536:
        _GUEST_ADDRESSES.clear()
    known = _GUEST_ADDRESSES[peer] = str(address).encode("ascii")
    return known


class NamespaceProxyHandler:
    """One listener's handler: C{kind} is C{"network"} or C{"router"}, C{ident} its id."""

    def __init__(self, kind: str, ident: str, upstream: IUpstream) -> None:
        if kind not in ("network", "router"):
            raise ValueError(f"kind must be network or router, not {kind!r}")
        self.kind = kind
        self.ident = ident.encode("ascii")
        self.upstream = upstream
        self._networks = (self.ident,) if kind == "network" else ()
        self._routers = (self.ident,) if kind == "router" else ()

    def __call__(self, request: HTTPRequest) -> Deferred[HTTPResponse]:
        """
        Forward with the listener's identity; the guest's own identity headers never pass, and
        of the rest only what was checked does: the method (a token, by the parser), the target
        in origin form (visible ASCII, by the parser; anything but a path is refused here),
        C{Accept} if it is plain visible ASCII, and the body (framed by its length).
        """
        accept = forwardable_value(request.header(b"accept"))
        path = request.origin_target
        if not is_origin_target(path):
            return succeed(MetadataAgent.error(400, "The request target must be a path.", accept))
        return self.upstream.forward(AgentRequest(
            method=request.method,
            path=path,
            body=request.body,
            forwarded_for=(guest_address(request),),
            network_ids=self._networks,
            router_ids=self._routers,
            accept=accept,
        ))
