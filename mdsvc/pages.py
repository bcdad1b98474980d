# -*- test-case-name: tests.test_hop -*-
"""
The status texts and error pages every hop of mdsvc answers with, rendered in one place: the
pages WebOb renders for Nova (nova spec §3.4), in the format the client's C{Accept} asks for.
Guests only look at the status; the bodies are Nova's so that humans with curl see the pages
they know.
"""

from __future__ import annotations

import json

from attrs import frozen

TITLES = {
    100: "Continue", 200: "OK", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
    405: "Method Not Allowed", 408: "Request Timeout",
    409: "Conflict", 413: "Payload Too Large", 414: "URI Too Long", 429: "Too Many Requests",
    431: "Request Header Fields Too Large", 500: "Internal Server Error", 502: "Bad Gateway",
    503: "Service Unavailable", 504: "Gateway Timeout",
}
"""The reason phrase of every status mdsvc answers with."""
DEFAULT_EXPLANATIONS = {
    400: "The server could not comply with the request since it is either malformed or otherwise incorrect.",
    401: "This server could not verify that you are authorized to access the document you requested.",
    403: "Access was denied to this resource.",
    404: "The resource could not be found.",
    405: "The method is not allowed for this resource.",
    408: "The request was not sent in time.",
    409: "There was a conflict when trying to complete your request.",
    413: "Request is too large.",
    414: "The request target is too long.",
    429: "You have sent too many requests in a given amount of time.",
    431: "The request head is too large.",
    500: "The server has either erred or is incapable of performing the requested operation.",
    502: "Bad gateway.",
    503: "The server is currently unavailable. Please try your request again at a later time.",
    504: "The gateway has timed out.",
}
UNKNOWN_ERROR = "An unknown error has occurred. Please try your request again."


@frozen
class ErrorPage:
    """The body and content type of an error page."""

    body: bytes
    content_type: bytes


def error_page(code: int, explanation: str | None, accept: bytes | None) -> ErrorPage:
    """
    Render the page WebOb would for C{code} (nova spec §3.4), in the format the C{Accept} header
    asks for: HTML for browsers and curl, JSON, or plain text.  Guests only look at the status;
    the bodies are Nova's so that humans with curl see the pages they know.
    """
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
    return ErrorPage(f"{title}\n\n{text}\n\n   ".encode(), b"text/plain; charset=UTF-8")


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
