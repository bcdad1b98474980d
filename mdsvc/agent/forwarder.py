# -*- test-case-name: tests.test_agent_handler -*-
"""
The agent's hop to the metadata API (neutron spec §1 hop 4): a new request carrying exactly the
four identity headers, over a pool of persistent connections, bounded by timeouts shorter than
the guest's so a slow or dead API becomes the agent's own 503 or 504, never a hang.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure
from zope.interface import implementer

from mdsvc.config import AgentConfig
from mdsvc.hop import IAPIHop, SignedRequest, UpstreamTimeout, UpstreamUnavailable, signed_request_headers
from mdsvc.http import HTTPResponse
from mdsvc.httpclient import BadResponse, ConnectionFailed, HTTPPool, RequestTimedOut, relayed


@implementer(IAPIHop)
class APIForwarder:
    """
    Sends one guest request to the metadata API and reads the whole answer.

    @param pool: persistent connections to the API (L{HTTPPool}).
    @param where: the API's URL, for messages.
    """

    def __init__(self, pool: HTTPPool, where: str, timeout: float) -> None:
        self.pool = pool
        self.where = where
        self._timeout = timeout

    def forward(self, request: SignedRequest) -> Deferred[HTTPResponse]:
        """
        See L{IAPIHop.forward}: the request with exactly Neutron's four identity headers.

        @raise UpstreamUnavailable: (as a failure) the API cannot be reached.
        @raise UpstreamTimeout: (as a failure) no complete answer within the timeout.
        @raise mdsvc.wire.UnsafeRequest: (raised) a field holds bytes that must not be sent.
        """
        d = self.pool.request(request.method, request.target, signed_request_headers(request), request.body, timeout=self._timeout)
        d.addCallback(relayed)
        d.addErrback(self._classify)
        return d

    def _classify(self, failure: Failure) -> Any:
        if failure.check(RequestTimedOut):
            raise UpstreamTimeout(f"no answer from {self.where} within {self._timeout:g}s")
        if failure.check(ConnectionFailed, BadResponse):
            raise UpstreamUnavailable(f"{self.where}: {failure.getErrorMessage()}")
        return failure


def api_pool(agent: AgentConfig, reactor: Any) -> HTTPPool:
    """
    Persistent connections from the agent to the API, TLS as metadata_agent.ini says.

    @raise ValueError: or L{OSError}, for certificates that cannot be read.
    """
    from twisted.internet.endpoints import HostnameEndpoint, wrapClientTLS

    from mdsvc.agent.tls import AgentTLSPolicy

    host, port = agent.api_host, agent.api_port
    endpoint: Any = HostnameEndpoint(reactor, host, port, timeout=agent.api_connect_timeout)
    if agent.api_url.startswith("https:"):
        policy = AgentTLSPolicy(agent.api_ca_cert, agent.api_client_cert, agent.api_client_key, agent.api_insecure)
        endpoint = wrapClientTLS(policy.creatorForNetloc(host.encode("idna"), port), endpoint)
    netloc = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return HTTPPool(endpoint.connect, netloc.encode("idna"), agent.api_pool_size, agent.api_pipeline_depth, clock=reactor)
