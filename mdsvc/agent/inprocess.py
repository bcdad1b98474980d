# -*- test-case-name: tests.test_agent_inprocess -*-
"""
The agent's hop to an API in the same process (all-in-one): the signed request goes through the
API's own identification and answering code, without a socket or HTTP in between.
"""

from __future__ import annotations

from twisted.internet.defer import CancelledError, Deferred, ensureDeferred
from twisted.logger import Logger

from mdsvc.api.app import MAX_PASSWORD_SIZE, MetadataApp
from mdsvc.api.errors import UNKNOWN_ERROR, MetadataError, error_page
from mdsvc.http import HTTPResponse


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
        return ensureDeferred(self._answer(method, path, body, headers))

    async def _answer(self, method: bytes, path: bytes, body: bytes, headers: dict[bytes, list[bytes]]) -> HTTPResponse:
        raw_path = path.split(b"?", 1)[0]
        try:
            answer = await self.app.handle(method, raw_path, headers, None, lambda: body if len(body) <= MAX_PASSWORD_SIZE else None)
        except MetadataError as e:
            self.app.log_error(e, method, path, headers[b"x-forwarded-for"][0].decode("latin-1"))
            return _page(e)
        except CancelledError:
            raise
        except Exception:
            self._log.failure("unhandled error answering {path}", path=path)
            return _page(MetadataError(500, UNKNOWN_ERROR, "internal error"))
        return HTTPResponse(200, ((b"Content-Type", answer.content_type),), answer.body)


def _page(error: MetadataError) -> HTTPResponse:
    page = error_page(error.code, error.explanation, None)
    return HTTPResponse(error.code, ((b"Content-Type", page.content_type),), page.body)

