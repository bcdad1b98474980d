# -*- test-case-name: tests.test_api_resource -*-
"""
The twisted.web glue of the metadata API: one leaf resource answering every path and method.

Every request ends in a status of {200, 400, 403, 404, 409, 500} (spec §3.3); every 404 and 500
is logged with its concrete reason; an unexpected exception is logged with its traceback and
answered with the generic 500, never with a traceback.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import CancelledError, ensureDeferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from mdsvc.api.app import MAX_PASSWORD_SIZE, MetadataApp
from mdsvc.api.errors import UNKNOWN_ERROR, MetadataError, error_page
from mdsvc.api.metadata import Answer


class MetadataResource(Resource):
    """The root of the metadata API: C{Site(MetadataResource(app))}."""

    isLeaf = True
    _log = Logger()

    def __init__(self, app: MetadataApp) -> None:
        super().__init__()
        self.app = app

    def render(self, request: Request) -> Any:
        """Answer any method on any path (Nova never answers 405)."""
        try:
            return self._render(request)
        except Exception:
            self._log.failure("unhandled error answering {method} {path}", method=request.method, path=request.uri)
            return self._error(request, MetadataError(500, UNKNOWN_ERROR, "internal error"))

    def _render(self, request: Request) -> Any:
        d = ensureDeferred(self.app.handle(request.method, request.path, _headers(request), _peer(request),
                                           lambda: _read_password(request)))
        if d.called:  # answered without waiting (the root, an error, a cached instance)
            result: list[Any] = []
            d.addBoth(result.append)
            if isinstance(result[0], Failure):
                return self._failure_page(request, result[0])
            return self._answer(request, result[0])
        finished = request.notifyFinish()
        gone: list[bool] = []

        def lost(_: Failure) -> None:
            gone.append(True)
            d.cancel()

        finished.addErrback(lost)
        d.addCallbacks(lambda answer: self._send(request, answer, gone), lambda f: self._failed(request, f, gone))
        return NOT_DONE_YET

    # -- responses ------------------------------------------------------------------------------

    def _answer(self, request: Request, answer: Answer) -> bytes:
        request.setResponseCode(200)
        request.setHeader(b"content-type", answer.content_type)
        request.setHeader(b"content-length", b"%d" % len(answer.body))
        return answer.body

    def _send(self, request: Request, answer: Answer, gone: list[bool]) -> None:
        if gone or request.finished:
            return
        request.write(self._answer(request, answer))
        request.finish()

    def _error(self, request: Request, error: MetadataError) -> bytes:
        self.app.log_error(error, request.method, request.uri, _peer(request))
        page = error_page(error.code, error.explanation, request.getHeader(b"accept"))
        request.setResponseCode(error.code)
        request.setHeader(b"content-type", page.content_type)
        request.setHeader(b"content-length", b"%d" % len(page.body))
        return page.body

    def _failure_page(self, request: Request, failure: Failure) -> bytes:
        if failure.check(MetadataError):
            error = failure.value
        else:
            self._log.failure("unhandled error answering {method} {path}", failure, method=request.method, path=request.uri)
            error = MetadataError(500, UNKNOWN_ERROR, f"internal error: {failure.getErrorMessage()}")
        return self._error(request, error)

    def _failed(self, request: Request, failure: Failure, gone: list[bool]) -> None:
        if gone or request.finished or failure.check(CancelledError):
            return
        request.write(self._failure_page(request, failure))
        request.finish()


def _headers(request: Request) -> dict[bytes, list[bytes]]:
    return {name.lower(): values for name, values in request.requestHeaders.getAllRawHeaders()}


def _peer(request: Request) -> str | None:
    address = request.getClientAddress()
    host = getattr(address, "host", None)
    if host and host.startswith("::ffff:") and "." in host:
        return host[7:]
    return host


def _read_password(request: Request) -> bytes | None:
    """The POSTed password, or None when it is larger than Nova accepts (1020 bytes)."""
    length = request.getHeader(b"content-length")
    if length is not None and length.strip().isdigit() and int(length) > MAX_PASSWORD_SIZE:
        return None
    content = request.content
    if content is None:
        return b""
    content.seek(0)
    body = content.read(MAX_PASSWORD_SIZE + 1)
    return None if len(body) > MAX_PASSWORD_SIZE else body
