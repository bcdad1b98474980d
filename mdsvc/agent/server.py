# -*- test-case-name: tests.test_agent_server -*-
"""
The agent's HTTP/1.1 server: the handler namespace proxies (ours, or Neutron's haproxy) reach on
the UNIX socket, and the service that owns the socket file.
"""

from __future__ import annotations

import grp
import os
import pwd
import stat
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.logger import Logger

from mdsvc.hop import HopError, IAgentHop, error_response, read_guest_request
from mdsvc.http import HTTPRequest, HTTPResponse
from mdsvc.wire import forwardable_value, loggable


class AgentHandler:
    """C{LeanHTTPFactory(AgentHandler(agent))}: every path and method is a proxied metadata request."""

    _log = Logger()

    def __init__(self, agent: IAgentHop, meter: Any = None) -> None:
        """
        @param meter: the agent hop's L{mdsvc.metrics.HopMeter}, which notes the requests refused
            here (the agent notes the others).
        """
        self.agent = agent
        self.meter = meter

    def __call__(self, request: HTTPRequest) -> HTTPResponse | Deferred[HTTPResponse]:
        """Read the proxy's identity headers, then hand the request to the agent (400 if they are wrong)."""
        try:
            guest = read_guest_request(request)
        except HopError as e:
            self._log.warn("{method} {path}: {code} {reason}", method=request.method.decode("latin-1"),
                           path=loggable(request.target), code=e.code, reason=e.explanation)
            response = error_response(e.code, e.explanation, forwardable_value(request.header(b"accept")))
            if self.meter is not None:
                self.meter.answered(response, self.meter.now(), None, None, None, request.method, request.target, None)
            return response
        return self.agent.handle(guest)


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


class UnixSocketListener(Service):
    """
    Owns the agent's UNIX socket: creates its directory (0755), removes a stale socket left by a
    crashed agent, listens with the configured backlog and mode, and listens again by itself if
    the socket file is removed or replaced while it runs (checked every C{interval} seconds).
    A non-socket file at the path is an error.
    """

    _log = Logger()

    def __init__(self, reactor: Any, path: str, factory: Any, backlog: int, mode: int, interval: float = 2.0) -> None:
        self.reactor = reactor
        self.path = path
        self.factory = factory
        self.backlog = backlog
        self.mode = mode
        self.interval = interval
        self.port: Any = None
        self._inode: int | None = None
        self._loop: Any = None

    def privilegedStartService(self) -> None:
        """Listen before privileges are dropped."""
        super().privilegedStartService()
        self._listen()

    def startService(self) -> None:
        """Start watching the socket file."""
        from twisted.internet.task import LoopingCall

        super().startService()
        if self.port is None:
            self._listen()
        self._loop = LoopingCall(self.check)
        self._loop.clock = self.reactor
        self._loop.start(self.interval, now=False)

    def stopService(self) -> Any:
        """Stop listening and remove the socket."""
        super().stopService()
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        port, self.port = self.port, None
        if port is not None:
            return port.stopListening()
        return None

    def _prepare(self) -> None:
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

    def _listen(self) -> None:
        self._prepare()
        self.port = self.reactor.listenUNIX(self.path, self.factory, backlog=self.backlog, mode=self.mode, wantPID=False)
        self._inode = _inode(self.path)
        self._log.info("agent listening on {path} (mode {mode:o}, backlog {backlog})", path=self.path, mode=self.mode, backlog=self.backlog)

    def check(self) -> None:
        """Listen again if our socket file is gone or is no longer ours."""
        if self._inode is None and self.port is not None:
            return  # a reactor that makes no file (tests' memory reactor): nothing to watch
        if _inode(self.path) == self._inode and self.port is not None:
            return
        self._log.warn("socket {path} was removed or replaced; listening again", path=self.path)
        port, self.port = self.port, None
        if port is not None:
            # The path is no longer ours, and the new socket will be there by the time the old
            # port's connectionLost runs: point the old port at an abstract-namespace name so
            # Twisted does not unlink whatever is at the path then.
            port._bindPath = b"\0mdsvc-replaced-socket"
            port.stopListening()
        try:
            self._listen()
        except Exception as e:
            self._log.error("cannot listen on {path}: {error}", path=self.path, error=str(e))


def _inode(path: str) -> int | None:
    try:
        return os.stat(path).st_ino
    except FileNotFoundError:
        return None
