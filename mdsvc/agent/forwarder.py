# -*- test-case-name: tests.test_agent_handler -*-
"""
The agent's hop to the metadata API (neutron spec §1 hop 4): a new request carrying exactly the
four identity headers, over a persistent connection pool, bounded by timeouts shorter than the
guest's so a slow or dead API becomes the agent's own 503 or 504, never a hang.
"""

from __future__ import annotations

from typing import Any

from attrs import frozen
from twisted.internet import error as netError
from twisted.internet.defer import Deferred, TimeoutError as DeferredTimeout
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.web._newclient import RequestTransmissionFailed, ResponseNeverReceived
from twisted.web.client import FileBodyProducer, ResponseFailed, readBody
from twisted.web.http_headers import Headers

HOP_BY_HOP = {
    b"connection", b"keep-alive", b"proxy-authenticate", b"proxy-authorization", b"te", b"trailers",
    b"transfer-encoding", b"upgrade", b"content-length", b"date", b"server",
}


class UpstreamUnavailable(Exception):
    """The API could not be reached (refused, unresolvable, TLS failure, connect timeout)."""


class UpstreamTimeout(Exception):
    """The API did not answer within the configured time."""


@frozen
class UpstreamResponse:
    """What the API answered: status, the headers worth relaying, and the whole body."""

    code: int
    headers: tuple[tuple[bytes, bytes], ...]
    body: bytes


class _Bytes:
    """A minimal in-memory body producer for small request bodies (password POSTs)."""

    def __init__(self, body: bytes) -> None:
        self.body = body
        self.length = len(body)

    def startProducing(self, consumer: Any) -> Deferred[None]:
        consumer.write(self.body)
        from twisted.internet.defer import succeed

        return succeed(None)

    def pauseProducing(self) -> None:
        """Nothing to pause: the body is written at once."""

    def resumeProducing(self) -> None:
        """Nothing to resume."""

    def stopProducing(self) -> None:
        """Nothing to stop."""


class APIForwarder:
    """
    Sends one guest request to the metadata API and reads the whole answer.

    @param agent: an C{IAgent} with a persistent pool and a connect timeout.
    @param base_url: C{http://127.0.0.1:8775} (no trailing slash).
    """

    _log = Logger()

    def __init__(self, agent: Any, base_url: str, clock: IReactorTime, timeout: float) -> None:
        self._agent = agent
        self._base = base_url.rstrip("/").encode("ascii")
        self._clock = clock
        self._timeout = timeout

    def forward(
        self, method: bytes, path: bytes, body: bytes, forwarded_for: bytes, instance_id: str, tenant_id: str, signature: str
    ) -> Deferred[UpstreamResponse]:
        """
        Forward C{method} C{path} (with its query) and C{body}.

        @raise UpstreamUnavailable: the API cannot be reached.
        @raise UpstreamTimeout: no complete answer within the timeout.
        """
        headers = Headers({
            b"X-Forwarded-For": [forwarded_for],
            b"X-Instance-ID": [instance_id.encode("utf-8")],
            b"X-Tenant-ID": [tenant_id.encode("utf-8")],
            b"X-Instance-ID-Signature": [signature.encode("ascii")],
        })
        producer = _Bytes(body) if body or method in (b"POST", b"PUT", b"PATCH") else None
        d = self._agent.request(method, self._base + path, headers, producer)
        d.addCallback(self._read)
        d.addTimeout(self._timeout, self._clock, onTimeoutCancel=self._timed_out)
        d.addErrback(self._classify)
        return d

    def _timed_out(self, result: Any, timeout: float) -> Any:
        # A cancelled Agent request fails with ResponseNeverReceived([CancelledError]), which
        # addTimeout's default translation does not recognise: say what happened ourselves.
        raise UpstreamTimeout(f"no answer from {self._base.decode()} within {timeout:g}s")

    def _read(self, response: Any) -> Deferred[UpstreamResponse]:
        relayed = tuple(
            (name, value)
            for name, values in response.headers.getAllRawHeaders()
            if name.lower() not in HOP_BY_HOP
            for value in values
        )
        return readBody(response).addCallback(lambda body: UpstreamResponse(response.code, relayed, body))

    def _classify(self, failure: Any) -> Any:
        if failure.check(UpstreamTimeout):
            return failure
        if failure.check(DeferredTimeout):
            raise UpstreamTimeout(f"no answer from {self._base.decode()} within {self._timeout:g}s")
        if failure.check(
            netError.ConnectError, netError.DNSLookupError, netError.ConnectionLost, ResponseFailed, ResponseNeverReceived,
            RequestTransmissionFailed,
        ):
            raise UpstreamUnavailable(f"{self._base.decode()}: {failure.getErrorMessage() or failure.type.__name__}")
        return failure


__all__ = ["APIForwarder", "UpstreamResponse", "UpstreamTimeout", "UpstreamUnavailable", "FileBodyProducer"]
