# -*- test-case-name: tests.test_agent_inprocess -*-
"""
The agent's hop to an API in the same process (all-in-one): the signed request goes through the
API's own identification and answering code, without a socket or HTTP in between.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure

from mdsvc.api.app import MAX_PASSWORD_SIZE, MetadataApp
from mdsvc.api.errors import UNKNOWN_ERROR, MetadataError, error_page
from mdsvc.api.metadata import Answer
from mdsvc.http import HTTPResponse
from mdsvc.wire import loggable


class InProcessAPI:
    """Same contract as L{mdsvc.agent.forwarder.APIForwarder}, calling L{MetadataApp.handle}."""

    _log = Logger()

    def __init__(self, app: MetadataApp) -> None:
        self.app = app

    def forward(
        self, method: bytes, path: bytes, body: bytes, forwarded_for: bytes, instance_id: str, tenant_id: str, signature: str
    ) -> Deferred[HTTPResponse]:
        """Answer as the API would over HTTP (the agent sends no Accept: plain-text error pages)."""
        headers = {
            b"x-forwarded-for": [forwarded_for],
            b"x-instance-id": [instance_id.encode("utf-8")],
            b"x-tenant-id": [tenant_id.encode("utf-8")],
            b"x-instance-id-signature": [signature.encode("ascii")],
        }
        raw_path = path.split(b"?", 1)[0]
        try:
            answer = self.app.handle(method, raw_path, headers, None, lambda: body if len(body) <= MAX_PASSWORD_SIZE else None)
        except Exception:
            return succeed(self._failed(Failure(), method, path, forwarded_for))
        if isinstance(answer, Answer):
            return succeed(_ok(answer))
        return answer.addCallbacks(_ok, self._failed, errbackArgs=(method, path, forwarded_for))

    def _failed(self, failure: Failure, method: bytes, path: bytes, forwarded_for: bytes) -> Any:
        if failure.check(CancelledError):
            return failure
        if failure.check(MetadataError):
            self.app.log_error(failure.value, method, path, forwarded_for.decode("latin-1"))
            return _page(failure.value)
        self._log.failure("unhandled error answering {path}", failure, path=loggable(path))
        return _page(MetadataError(500, UNKNOWN_ERROR, "internal error"))


def _ok(answer: Answer) -> HTTPResponse:
    return HTTPResponse(200, ((b"Content-Type", answer.content_type),), answer.body)


def _page(error: MetadataError) -> HTTPResponse:
    page = error_page(error.code, error.explanation, None)
    return HTTPResponse(error.code, ((b"Content-Type", page.content_type),), page.body)

