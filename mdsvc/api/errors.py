# -*- test-case-name: tests.test_api_resource -*-
"""
The metadata API's errors: a request that ends with an error status raises L{MetadataError};
its page is rendered by L{mdsvc.hop.error_page}, as every hop's are.
"""

from __future__ import annotations

from mdsvc.hop import TITLES, UNKNOWN_ERROR

__all__ = ["MetadataError", "not_found", "UNKNOWN_ERROR"]


class MetadataError(Exception):
    """
    A request ends with an error status.

    @ivar code: one of 400, 403, 404, 409, 500 (the only statuses Nova returns), or 401 and 405
        of the session tokens (L{mdsvc.api.tokens}); the agent and proxies also use 429, 502,
        503 and 504.
    @ivar explanation: what the guest is told, or None for the generic text of the status.
    @ivar reason: what the log is told: the concrete cause (never a secret).
    """

    def __init__(self, code: int, explanation: str | None = None, reason: str | None = None) -> None:
        super().__init__(code, explanation, reason)
        self.code = code
        self.explanation = explanation
        self.reason = reason or explanation or TITLES[code]


def not_found(reason: str) -> MetadataError:
    """A 404 with WebOb's generic page and C{reason} for the log."""
    return MetadataError(404, None, reason)
