# -*- test-case-name: tests.test_api_resource -*-
"""
The HTTP face of the metadata API: L{APIHandler} turns an L{HTTPRequest} into an answer of
L{MetadataApp}, for L{mdsvc.http.LeanHTTPFactory}.

Every request ends in a status of {200, 400, 403, 404, 409, 500} (spec §3.3); every 404 and 500
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

from mdsvc.api.app import MAX_PASSWORD_SIZE, MetadataApp
from mdsvc.api.errors import UNKNOWN_ERROR, MetadataError, error_page
from mdsvc.api.metadata import Answer
from mdsvc.http import HTTPRequest, HTTPResponse
from mdsvc.wire import loggable


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
            answer = self.app.handle(request.method, request.path, request.headers, _peer(request), lambda: _password(request))
        except Exception:
            return self._failure(request, Failure())
        if isinstance(answer, Answer):
            return HTTPResponse(200, ((b"Content-Type", answer.content_type),), answer.body)
        return answer.addBoth(self._done, request)

    def _done(self, result: Answer | Failure, request: HTTPRequest) -> Any:
        if isinstance(result, Failure):
            if result.check(CancelledError):
                return result
            return self._failure(request, result)
        return HTTPResponse(200, ((b"Content-Type", result.content_type),), result.body)

    def _failure(self, request: HTTPRequest, failure: Failure) -> HTTPResponse:
        if failure.check(MetadataError):
            error = failure.value
        else:
            self._log.failure("unhandled error answering {method} {path}", failure, method=request.method, path=loggable(request.target))
            error = MetadataError(500, UNKNOWN_ERROR, f"internal error: {failure.getErrorMessage()}")
        self.app.log_error(error, request.method, request.target, _peer(request))
        page = error_page(error.code, error.explanation, request.header(b"accept"))
        return HTTPResponse(error.code, ((b"Content-Type", page.content_type),), page.body)


def _peer(request: HTTPRequest) -> str | None:
    host = request.peer
    if host and host.startswith("::ffff:") and "." in host:
        return host[7:]
    return host


def _password(request: HTTPRequest) -> bytes | None:
    """The POSTed password, or None when it is larger than Nova accepts (1020 bytes)."""
    return None if len(request.body) > MAX_PASSWORD_SIZE else request.body


_SECRET_HEADERS = (b"signature", b"password", b"token", b"authorization", b"cookie")


def masked_headers(headers: dict[bytes, list[bytes]]) -> dict[str, str]:
    """Headers for a debug log line, with signatures, tokens and the like masked (as Nova does)."""
    return {
        name.decode("latin-1"): "***" if any(word in name for word in _SECRET_HEADERS) else b", ".join(values).decode("latin-1")
        for name, values in headers.items()
    }
