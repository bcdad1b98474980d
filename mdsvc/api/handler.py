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

from mdsvc.api.app import ROOT_ANSWER, MetadataApp, ok
from mdsvc.api.identify import first_forwarded
from mdsvc.api.metadata import Answer
from mdsvc.hop import canonical_ip
from mdsvc.http import HTTPRequest, HTTPResponse


class APIHandler:
    """C{LeanHTTPFactory(APIHandler(app))} serves the metadata API."""

    _log = Logger()

    def __init__(self, app: MetadataApp, debug: bool = False, meter: Any = None) -> None:
        """
        @param meter: the API hop's L{mdsvc.metrics.HopMeter}, which notes every answer; None: none.
        """
        self.app = app
        self.debug = debug
        self.meter = meter
        self._cache = traced_cache(app)

    def __call__(self, request: HTTPRequest) -> HTTPResponse | Deferred[HTTPResponse]:
        """Answer any method on any path (Nova never answers 405)."""
        if self.debug:
            self._log.debug("Metadata request headers: {headers}", headers=masked_headers(request.headers))
        meter = self.meter
        if meter is None:
            try:
                answer = self.app.handle(request.method, request.path, request.headers, _peer(request), request.body)
            except Exception:
                return self._failure(request, Failure())
            if isinstance(answer, Answer):
                return ok(answer)
            return answer.addBoth(self._done, request)
        now = meter.now  # (the meter's callables loaded as attributes, not as methods: see HopMeter)
        started = now()
        try:
            answer = self.app.handle(request.method, request.path, request.headers, _peer(request), request.body)
        except Exception:
            return self._note(self._failure(request, Failure()), request, started, None)
        if isinstance(answer, Answer):  # answered at once: from the render cache (or the version list of /)
            response = ok(answer)
            if answer is not ROOT_ANSWER:  # (the instance and address the app identified: no header read again)
                app = self.app
                note = meter.note
                note(("api", started, now(), 200, None, app.answered_address or request.peer, None, app.answered_instance,
                      request.method, request.target, "hit", None))
                return response
            return self._note(response, request, started, None)  # (/: the instance the agent named, as any other answer)
        # what the cache did, as its get decided it, before any wait (a provider's address is
        # looked up first: its outcome is the previous request's)
        outcome = self._cache.outcome if self._cache is not None else None
        return answer.addBoth(self._done, request).addCallback(self._note, request, started, outcome)

    def _done(self, result: Answer | Failure, request: HTTPRequest) -> Any:
        if isinstance(result, Failure):
            if result.check(CancelledError):
                return result
            return self._failure(request, result)
        return ok(result)

    def _note(self, response: HTTPResponse, request: HTTPRequest, started: float, cache: str | None) -> HTTPResponse:
        """Note the answer with the hop's meter: the instance the agent named, the guest's address."""
        self.meter.note(("api", started, self.meter.now(), response.code, response if response.reason is not None else None,
                         _address(request), None, request.header(b"x-instance-id"),
                         request.method, request.target, cache, None))
        return response

    def _failure(self, request: HTTPRequest, failure: Failure) -> HTTPResponse:
        return self.app.failed(failure, request.method, request.target, _peer(request), request.header(b"accept"))


def _address(request: HTTPRequest) -> str | None:
    """The guest's address as a record notes it: the first X-Forwarded-For address (as the app identifies it), else the peer's."""
    return first_forwarded(request.header(b"x-forwarded-for")) or request.peer


def traced_cache(app: MetadataApp) -> Any:
    """The app's render cache if it tells what each get did (C{outcome}), else None."""
    return app.cache if hasattr(app.cache, "outcome") else None


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
