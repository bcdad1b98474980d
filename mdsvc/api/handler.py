# -*- test-case-name: tests.test_api_resource -*-
"""
The HTTP face of the metadata API: L{APIHandler} turns an L{HTTPRequest} into an answer of
L{MetadataApp}, for L{mdsvc.http.LeanHTTPFactory}.

Every request ends in a status of {200, 400, 403, 404, 409, 500} (spec §3.3), and with session
tokens on (C{[api] imds_tokens}, L{mdsvc.api.tokens}) also 401 and 405; every 404 and 500
is logged with its concrete reason; an unexpected exception is logged with its traceback and
answered with the generic 500, never with a traceback.  HEAD is answered like GET without the
body (the protocol drops it). With C{[DEFAULT] debug} every request's headers are logged at
debug level, secrets masked.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import CancelledError, Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from mdsvc.api.app import MetadataApp, ok
from mdsvc.api.metadata import Answer
from mdsvc.hop import canonical_ip
from mdsvc.http import HTTPRequest, HTTPResponse


class APIHandler:
    """C{LeanHTTPFactory(APIHandler(app))} serves the metadata API."""

    _log = Logger()

    def __init__(self, app: MetadataApp, debug: bool = False) -> None:
        self.app = app
        self.debug = debug

    def __call__(self, request: HTTPRequest) -> HTTPResponse | Deferred[HTTPResponse]:
        """Answer any method on any path (Nova never answers 405)."""
        if self.debug:
            self._log.debug("Metadata request headers: {headers}", headers=masked_headers(request.headers))
        try:
            answer = self.app.handle(request.method, request.path, request.headers, _peer(request), request.body)
        except Exception:
            return self._failure(request, Failure())
        if isinstance(answer, Answer):
            return ok(answer)
        return answer.addBoth(self._done, request)

    def _done(self, result: Answer | Failure, request: HTTPRequest) -> Any:
        if isinstance(result, Failure):
            if result.check(CancelledError):
                return result
            return self._failure(request, result)
        return ok(result)

    def _failure(self, request: HTTPRequest, failure: Failure) -> HTTPResponse:
        return self.app.failed(failure, request.method, request.target, _peer(request), request.header(b"accept"))


def _peer(request: HTTPRequest) -> str | None:
    """The connection's address in normal form (an IPv4-mapped address as IPv4)."""
    host = request.peer
    if not host:
        return host
    return canonical_ip(host) or host


_SECRET_HEADERS = (b"signature", b"password", b"token", b"authorization", b"cookie")


def masked_headers(headers: dict[bytes, list[bytes]]) -> dict[str, str]:
    """Headers for a debug log line, with signatures, tokens and the like masked (as Nova does)."""
    return {
        name.decode("latin-1"): "***" if any(word in name for word in _SECRET_HEADERS) else b", ".join(values).decode("latin-1")
        for name, values in headers.items()
    }
