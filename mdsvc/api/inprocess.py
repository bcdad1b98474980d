# -*- test-case-name: tests.test_agent_inprocess -*-
"""
The API as the agent's hop when both run in one process (all-in-one): the agent's
L{SignedRequest} is answered by the API's own code, with the identity the agent vouches for,
without a socket, HTTP or headers in between.
"""

from __future__ import annotations

from typing import Any

from attrs import frozen
from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.python.failure import Failure
from zope.interface import implementer

from mdsvc.api.app import MetadataApp, ok
from mdsvc.api.identify import ByInstanceId
from mdsvc.api.metadata import Answer
from mdsvc.hop import IAPIHop, SignedRequest
from mdsvc.http import HTTPResponse


@implementer(IAPIHop)
@frozen
class InProcessAPI:
    """An L{IAPIHop} calling L{MetadataApp.handle_identified}."""

    app: MetadataApp

    def forward(self, request: SignedRequest) -> Deferred[HTTPResponse]:
        """See L{IAPIHop.forward}: answered as the API would over HTTP (the agent sends no Accept)."""
        identity = ByInstanceId(request.instance_id, request.project_id, request.address)
        path = request.target.split(b"?", 1)[0]
        try:
            answer = self.app.handle_identified(request.method, path, identity, request.body, request.token, request.token_ttl)
        except Exception:
            return succeed(self.app.failed(Failure(), request.method, path, request.address, None))
        if isinstance(answer, Answer):
            return succeed(ok(answer))
        return answer.addCallbacks(ok, self._failed, errbackArgs=(request, path))

    def _failed(self, failure: Failure, request: SignedRequest, path: bytes) -> Any:
        if failure.check(CancelledError):
            return failure
        return self.app.failed(failure, request.method, path, request.address, None)
