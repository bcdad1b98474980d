# -*- test-case-name: tests.test_agent_inprocess -*-
"""
The API as the agent's hop when both run in one process (all-in-one): the agent's
L{SignedRequest} is answered by the API's own code, with the identity the agent vouches for,
without a socket, HTTP or headers in between.
"""

from __future__ import annotations

from typing import Any

from attrs import define, field
from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.python.failure import Failure
from zope.interface import implementer

from mdsvc.api.app import MetadataApp, ok
from mdsvc.api.handler import traced_cache
from mdsvc.api.identify import ByInstanceId
from mdsvc.api.metadata import Answer
from mdsvc.hop import IAPIHop, SignedRequest
from mdsvc.http import HTTPResponse
from mdsvc.trace import WITH_API


@implementer(IAPIHop)
@define(eq=False)
class InProcessAPI:
    """
    An L{IAPIHop} calling L{MetadataApp.handle_identified}.

    @ivar meter: the API hop's L{mdsvc.metrics.HopMeter}, which notes every answer; None: none.
    """

    app: MetadataApp
    meter: Any = None
    _cache: Any = field(default=None, init=False, repr=False)

    def __attrs_post_init__(self) -> None:
        self._cache = traced_cache(self.app)

    def forward(self, request: SignedRequest) -> Deferred[HTTPResponse]:
        """See L{IAPIHop.forward}: answered as the API would over HTTP (the agent sends no Accept)."""
        meter = self.meter
        if meter is None:
            result = self._answer(request)
            return succeed(result) if type(result) is HTTPResponse else result  # type: ignore[return-value]
        now = meter.now  # (the meter's callables loaded as attributes, not as methods: see HopMeter)
        started = now()
        result = self._answer(request)
        if type(result) is HTTPResponse:  # answered at once: from the render cache, no callback to add
            note = meter.note
            note(("api", started, now(), result.code, result if result.reason is not None else None, request.address,
                  None, request.instance_id, request.method, request.target, "hit" if result.code == 200 else None, None))
            return succeed(result)
        # what the cache did, as its get decided it, before any wait
        outcome = self._cache.outcome if self._cache is not None else None
        return result.addCallback(self._note, request, started, outcome)  # type: ignore[union-attr]

    def forward_within(self, request: SignedRequest, seen: list[Any]) -> Deferred[HTTPResponse]:
        """
        L{forward} for the metered agent of this process: an answer given at once is not noted
        here but in the agent's own record, which stands for both hops (its hops, C{seen[0]},
        become those with the API: L{mdsvc.trace.WITH_API}; L{mdsvc.metrics.HopMeter}); a later
        one is noted here, timed.
        """
        result = self._answer(request)
        if type(result) is HTTPResponse:
            seen[0] = WITH_API[seen[0]]
            return succeed(result)
        started = self.meter.now()  # (what ran before the wait took microseconds)
        outcome = self._cache.outcome if self._cache is not None else None
        return result.addCallback(self._note, request, started, outcome)  # type: ignore[union-attr]

    def _note(self, response: HTTPResponse, request: SignedRequest, started: float, cache: str | None) -> HTTPResponse:
        self.meter.note(("api", started, self.meter.now(), response.code, response if response.reason is not None else None,
                         request.address, None, request.instance_id, request.method, request.target, cache, None))
        return response

    def _answer(self, request: SignedRequest) -> HTTPResponse | Deferred[HTTPResponse]:
        """The app's answer: at once when it has it, else a Deferred."""
        identity = ByInstanceId(request.instance_id, request.project_id, request.address)
        path = request.target.split(b"?", 1)[0]
        try:
            answer = self.app.handle_identified(request.method, path, identity, request.body, request.token, request.token_ttl)
        except Exception:
            return self.app.failed(Failure(), request.method, path, request.address, None)
        if isinstance(answer, Answer):
            return ok(answer)
        return answer.addCallbacks(ok, self._failed, errbackArgs=(request, path))

    def _failed(self, failure: Failure, request: SignedRequest, path: bytes) -> Any:
        if failure.check(CancelledError):
            return failure
        return self.app.failed(failure, request.method, path, request.address, None)
