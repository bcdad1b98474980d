#!/usr/bin/env python3
"""
Shapes 1 and 2: the smallest twisted.web server there is, answering every GET with 200 bytes.

    python3 bench/tiny_server.py tcp:8000:interface=127.0.0.1     # shape 1, the baseline
    python3 bench/tiny_server.py unix:/tmp/x/metadata_proxy        # shape 2, behind haproxy

One leaf resource, one C{Site} without the access log (the mdsvc roles' proxy and agent sites
have none either), the default (epoll) reactor. Prints C{listening on ...} once it listens.
"""

from __future__ import annotations

import sys

from twisted.internet import endpoints, reactor
from twisted.web.resource import Resource
from twisted.web.server import Site

BODY = (b"instance-id: i-00000001\nlocal-hostname: bench.novalocal\n" * 4)[:199] + b"\n"
assert len(BODY) == 200


class Answer(Resource):
    """Every path: 200 bytes of text."""

    isLeaf = True

    def render_GET(self, request):
        request.setHeader(b"content-type", b"text/plain; charset=UTF-8")
        return BODY


class QuietSite(Site):
    """No access log line per request."""

    def log(self, request):
        pass


def main(description: str) -> None:
    endpoint = endpoints.serverFromString(reactor, description)
    d = endpoint.listen(QuietSite(Answer()))
    d.addCallback(lambda port: print(f"listening on {description}", flush=True))
    d.addErrback(lambda f: (print(f"cannot listen on {description}: {f.getErrorMessage()}", file=sys.stderr), reactor.stop()))
    reactor.run()


if __name__ == "__main__":
    main(sys.argv[1])
