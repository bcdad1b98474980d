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

from mdsvc.http import HTTPResponse
from mdsvc.httpclient import BadResponse, ConnectionFailed, HTTPPool, RequestTimedOut, relayed


class UpstreamUnavailable(Exception):
    """The API could not be reached (refused, unresolvable, TLS failure, connect timeout)."""


class UpstreamTimeout(Exception):
    """The API did not answer within the configured time."""


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

    def forward(
        self, method: bytes, path: bytes, body: bytes, forwarded_for: bytes, instance_id: str, tenant_id: str, signature: str
    ) -> Deferred[HTTPResponse]:
        """
        Forward C{method} C{path} (with its query) and C{body}.

        @raise UpstreamUnavailable: the API cannot be reached.
        @raise UpstreamTimeout: no complete answer within the timeout.
        """
        headers = [
            (b"X-Forwarded-For", forwarded_for),
            (b"X-Instance-ID", instance_id.encode("utf-8")),
            (b"X-Tenant-ID", tenant_id.encode("utf-8")),
            (b"X-Instance-ID-Signature", signature.encode("ascii")),
        ]
        d = self.pool.request(method, path, headers, body, timeout=self._timeout)
        d.addCallback(relayed)
        d.addErrback(self._classify)
        return d

    def _classify(self, failure: Failure) -> Any:
        if failure.check(RequestTimedOut):
            raise UpstreamTimeout(f"no answer from {self.where} within {self._timeout:g}s")
        if failure.check(ConnectionFailed, BadResponse):
            raise UpstreamUnavailable(f"{self.where}: {failure.getErrorMessage()}")
        return failure
