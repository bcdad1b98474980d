# -*- test-case-name: tests.test_agent_server -*-
"""
The agent's HTTP/1.1 server: a twisted.web resource on the UNIX socket that namespace proxies
(ours, or Neutron's haproxy) forward to, and the service that owns the socket file.
"""

from __future__ import annotations

import grp
import os
import pwd
import stat
from typing import Any, Callable

from twisted.application.service import Service
from twisted.internet.defer import CancelledError, ensureDeferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from mdsvc.agent.handler import AgentRequest, AgentResponse, MetadataAgent

MAX_BODY = 64 * 1024
"""Metadata requests carry at most a password (1020 bytes); anything far larger is refused."""


def agent_request(request: Request) -> AgentRequest:
    """The identity headers and the request line of a proxied request."""
    headers = request.requestHeaders
    content = request.content
    body = b""
    if content is not None:
        content.seek(0)
        body = content.read(MAX_BODY + 1)
    return AgentRequest(
        method=request.method,
        path=request.uri,
        body=body,
        forwarded_for=tuple(headers.getRawHeaders(b"x-forwarded-for") or ()),
        network_ids=tuple((headers.getRawHeaders(b"x-neutron-network-id") or []) + (headers.getRawHeaders(b"x-ovn-network-id") or [])),
        router_ids=tuple(headers.getRawHeaders(b"x-neutron-router-id") or ()),
        accept=headers.getRawHeaders(b"accept", [None])[0],
    )


def write_response(request: Request, response: AgentResponse) -> None:
    """Send an L{AgentResponse} (status, relayed headers, exact Content-Length, body)."""
    request.setResponseCode(response.code)
    for name, value in response.headers:
        request.responseHeaders.addRawHeader(name, value)
    request.setHeader(b"content-length", b"%d" % len(response.body))
    request.write(response.body)
    request.finish()


def serve(request: Request, answer: Callable[[], Any], log: Logger) -> Any:
    """Run the coroutine C{answer()} for C{request}, cancelling it if the client goes away."""
    finished = request.notifyFinish()
    d = ensureDeferred(answer())
    gone: list[bool] = []

    def lost(_: Failure) -> None:
        gone.append(True)
        d.cancel()

    def send(response: AgentResponse) -> None:
        if not gone and not request.finished:
            write_response(request, response)

    def failed(failure: Failure) -> None:
        if gone or request.finished or failure.check(CancelledError):
            return
        log.failure("unhandled error answering {path}", failure, path=request.uri)
        write_response(request, MetadataAgent.error(500, "An unknown error has occurred. Please try your request again.", None))

    finished.addErrback(lost)
    d.addCallbacks(send, failed)
    return NOT_DONE_YET


class AgentResource(Resource):
    """The root of the agent's server: every path and method is a proxied metadata request."""

    isLeaf = True
    _log = Logger()

    def __init__(self, agent: MetadataAgent) -> None:
        super().__init__()
        self.agent = agent

    def render(self, request: Request) -> Any:
        """Hand the request to the agent."""
        parsed = agent_request(request)
        if len(parsed.body) > MAX_BODY:
            write_response(request, MetadataAgent.error(400, "Request is too large.", parsed.accept))
            return NOT_DONE_YET
        return serve(request, lambda: self.agent.handle(parsed), self._log)


def socket_mode(mode: str, proxy_user: str, proxy_group: str) -> int:
    """
    C{metadata_proxy_socket_mode} as Neutron deduces it (neutron spec §6): user 0644, group 0664,
    all 0666; C{deduce} picks user when the proxies run as this process's user, else group when
    they share its group, else all.

    @raise ValueError: for a user or group that does not exist.
    """
    if mode == "user":
        return 0o644
    if mode == "group":
        return 0o664
    if mode == "all":
        return 0o666
    euid, egid = os.geteuid(), os.getegid()
    if proxy_user in ("", "0", "root") or _uid(proxy_user) == euid:
        return 0o644
    if proxy_group == "" or _gid(proxy_group) == egid:
        return 0o664
    return 0o666


def _uid(user: str) -> int:
    try:
        return int(user) if user.isdigit() else pwd.getpwnam(user).pw_uid
    except KeyError:
        raise ValueError(f"Invalid user/uid: '{user}'") from None


def _gid(group: str) -> int:
    try:
        return int(group) if group.isdigit() else grp.getgrnam(group).gr_gid
    except KeyError:
        raise ValueError(f"Invalid group/gid: '{group}'") from None


class SocketDirectory(Service):
    """
    Prepares the socket path before the listener binds it: creates the directory (0755) and
    removes a stale socket left by a crashed agent.  A non-socket file there is an error.
    """

    _log = Logger()

    def __init__(self, path: str) -> None:
        self.path = path

    def privilegedStartService(self) -> None:
        """Runs before the listener's own privilegedStartService (it is added first)."""
        super().privilegedStartService()
        directory = os.path.dirname(os.path.abspath(self.path))
        if not os.path.isdir(directory):
            os.makedirs(directory, mode=0o755, exist_ok=True)
        try:
            st = os.lstat(self.path)
        except FileNotFoundError:
            return
        if not stat.S_ISSOCK(st.st_mode):
            raise RuntimeError(f"{self.path} exists and is not a socket")
        try:
            os.unlink(self.path)
            self._log.info("removed stale socket {path}", path=self.path)
        except FileNotFoundError:
            pass
