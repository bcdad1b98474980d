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
from twisted.internet import error as netError
from twisted.internet.defer import Deferred, TimeoutError as DeferredTimeout, ensureDeferred
from twisted.internet.endpoints import UNIXClientEndpoint
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.web._newclient import RequestTransmissionFailed, ResponseNeverReceived
from twisted.web.client import Agent, HTTPConnectionPool, ResponseFailed, readBody
from twisted.web.http_headers import Headers
from twisted.web.iweb import IAgentEndpointFactory
from zope.interface import Interface, implementer

from mdsvc.agent.forwarder import HOP_BY_HOP, _Bytes
from mdsvc.agent.handler import AgentRequest, MetadataAgent
from mdsvc.http import HTTPRequest, HTTPResponse


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
        return ensureDeferred(self.agent.handle(request))


@implementer(IAgentEndpointFactory)
@frozen
class _AgentSocket:
    """Every request goes to the agent's UNIX socket (one host name, so the pool keys are right)."""

    reactor: Any
    path: str
    connect_timeout: float

    def endpointForURI(self, uri: Any) -> UNIXClientEndpoint:
        return UNIXClientEndpoint(self.reactor, self.path, timeout=self.connect_timeout)


@implementer(IUpstream)
class AgentSocketUpstream:
    """
    The agent behind its UNIX socket, over pooled persistent HTTP/1.1 connections.  A missing or
    refusing socket is answered 503 at once, a slow agent 504 after C{timeout}, like haproxy.
    """

    _log = Logger()

    def __init__(self, reactor: Any, path: str, clock: IReactorTime, timeout: float, pool_size: int = 64) -> None:
        self.pool = HTTPConnectionPool(reactor, persistent=True)
        self.pool.maxPersistentPerHost = pool_size
        self.pool.cachedConnectionTimeout = 120
        self._agent = Agent.usingEndpointFactory(reactor, _AgentSocket(reactor, path, min(timeout, 5)), pool=self.pool)
        self._clock = clock
        self._timeout = timeout
        self.path = path

    def forward(self, request: AgentRequest) -> Deferred[HTTPResponse]:
        """See L{IUpstream.forward}."""
        raw: dict[bytes, list[bytes]] = {b"X-Forwarded-For": list(request.forwarded_for)}
        if request.network_ids:
            raw[b"X-Neutron-Network-ID"] = list(request.network_ids)
        if request.router_ids:
            raw[b"X-Neutron-Router-ID"] = list(request.router_ids)
        if request.accept:
            raw[b"Accept"] = [request.accept]
        producer = _Bytes(request.body) if request.body or request.method in (b"POST", b"PUT", b"PATCH") else None
        d = self._agent.request(request.method, b"http://agent" + request.path, Headers(raw), producer)
        d.addCallback(self._read)
        d.addTimeout(self._timeout, self._clock, onTimeoutCancel=_timed_out)
        d.addErrback(self._failed, request)
        return d

    def _read(self, response: Any) -> Deferred[HTTPResponse]:
        headers = tuple(
            (name, value) for name, values in response.headers.getAllRawHeaders() if name.lower() not in HOP_BY_HOP for value in values
        )
        return readBody(response).addCallback(lambda body: HTTPResponse(response.code, headers, body))

    def _failed(self, failure: Any, request: AgentRequest) -> Any:
        if failure.check(DeferredTimeout):
            self._log.warn("agent at {path} did not answer within {timeout}s", path=self.path, timeout=self._timeout)
            return MetadataAgent.error(504, "The server didn't respond in time.", request.accept)
        if failure.check(netError.ConnectError, netError.ConnectionLost, ResponseFailed, ResponseNeverReceived, RequestTransmissionFailed):
            self._log.warn("agent at {path} is unavailable: {reason}", path=self.path, reason=failure.getErrorMessage())
            return MetadataAgent.error(503, "No server is available to handle this request.", request.accept)
        return failure


def _timed_out(result: Any, timeout: float) -> Any:
    # a cancelled Agent request fails with ResponseNeverReceived([CancelledError]): name it
    raise DeferredTimeout(f"no answer within {timeout:g}s")


def guest_address(request: HTTPRequest) -> bytes:
    """The guest's address as the connection shows it: zone dropped, IPv4-mapped as IPv4."""
    host = (request.peer or "").split("%", 1)[0]
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host.encode("ascii", "replace")
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return str(address).encode("ascii")


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
        """Forward with the listener's identity; the guest's own identity headers never pass."""
        return self.upstream.forward(AgentRequest(
            method=request.method,
            path=request.target,
            body=request.body,
            forwarded_for=(guest_address(request),),
            network_ids=self._networks,
            router_ids=self._routers,
            accept=request.header(b"accept"),
        ))
