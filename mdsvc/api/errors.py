# -*- test-case-name: tests.test_api_resource -*-
"""
HTTP errors of the metadata API and their pages, in the three formats WebOb negotiates (spec §3.4).

Guests only look at the status; the bodies follow Nova's so that humans with curl see the same
page they know.
"""

from __future__ import annotations

import json

from attrs import frozen

TITLES = {
    400: "Bad Request", 403: "Forbidden", 404: "Not Found", 409: "Conflict", 429: "Too Many Requests",
    500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout",
}
DEFAULT_EXPLANATIONS = {
    400: "The server could not comply with the request since it is either malformed or otherwise incorrect.",
    403: "Access was denied to this resource.",
    404: "The resource could not be found.",
    409: "There was a conflict when trying to complete your request.",
    429: "You have sent too many requests in a given amount of time.",
    500: "The server has either erred or is incapable of performing the requested operation.",
    502: "Bad gateway.",
    503: "The server is currently unavailable. Please try your request again at a later time.",
    504: "The gateway has timed out.",
}
UNKNOWN_ERROR = "An unknown error has occurred. Please try your request again."


class MetadataError(Exception):
    """
    A request ends with an error status.

    @ivar code: one of 400, 403, 404, 409, 500 (the only statuses Nova returns); the agent and
        proxies also use 429, 502, 503 and 504.
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


@frozen
class ErrorPage:
    """The body and content type of an error page."""

    body: bytes
    content_type: bytes


def error_page(code: int, explanation: str | None, accept: bytes | None) -> ErrorPage:
    """Render the page WebOb would for C{code}, in the format the C{Accept} header asks for."""
    title = f"{code} {TITLES[code]}"
    text = explanation if explanation is not None else DEFAULT_EXPLANATIONS[code]
    wants = _negotiate(accept)
    if wants == "html":
        body = (
            f"<html>\n <head>\n  <title>{title}</title>\n </head>\n <body>\n  <h1>{title}</h1>\n"
            f"  {_escape(text)}<br /><br />\n\n\n\n </body>\n</html>"
        )
        return ErrorPage(body.encode("utf-8"), b"text/html; charset=UTF-8")
    if wants == "json":
        body = json.dumps({"message": f"{text}<br /><br />\n\n\n", "code": title, "title": TITLES[code]})
        return ErrorPage(body.encode("utf-8"), b"application/json")
    return ErrorPage(f"{title}\n\n{text}\n\n   ".encode("utf-8"), b"text/plain; charset=UTF-8")


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _negotiate(accept: bytes | None) -> str:
    if not accept:
        return "plain"
    ranges = []
    for part in accept.decode("latin-1").split(","):
        media, _, params = part.strip().partition(";")
        q = 1.0
        for param in params.split(";"):
            k, _, v = param.strip().partition("=")
            if k == "q":
                try:
                    q = float(v)
                except ValueError:
                    q = 0.0
        if q > 0:
            ranges.append(media.strip().lower())
    if any(m in ("text/html", "*/*", "text/*") for m in ranges):
        return "html"
    if any(m in ("application/json", "application/*") for m in ranges):
        return "json"
    return "plain"
