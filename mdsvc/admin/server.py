# -*- test-case-name: tests.test_admin -*-
"""
The admin socket of one process: C{ADMIN_DIR/ROLE.sock}, mode 0600 in a 0700 directory, serving
JSON over mdsvc's own HTTP/1.1 server:

  - C{GET /status}: role, pid, version, configuration files, the parts it runs.
  - C{GET /trace?instance=UUID&address=IP&after=SEQ&limit=N}: the trace ring's records.
  - C{GET /ready}: each dependency of the role and why it does not answer (L{mdsvc.readiness}).
  - C{GET /metrics}: the process's Prometheus exposition (text, not JSON): how the supervisor of
    C{metadata_workers} gathers its workers' metrics, whose workers open no metrics listener.
  - C{GET /namespaces}: (proxies) every namespace discovered, its listeners, the last problem.
  - C{GET /check/lookup?address=IP&network=ID|router=ID}: (agent) the lookup backend's own answer
    for a guest, past the cache.
  - C{GET /check/secret?instance=UUID&project=ID}: (agent, API elsewhere) a request signed as this
    agent signs and one signed wrongly, sent to the API: what it answered to each.

Every answer passes through the node's L{mdsvc.logs.Redactor}.
"""

from __future__ import annotations

import errno
import json
import os
import socket
import stat
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs

from attrs import define, field
from twisted.application.service import Service
from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger

from mdsvc import __version__
from mdsvc.hop import SignedRequest, sign
from mdsvc.http import HTTPRequest, HTTPResponse
from mdsvc.logs import Redactor
from mdsvc.readiness import PROBE_ADDRESS, PROBE_UUID

JSON = b"application/json"

WRONG_SIGNATURE = "0" * 64
"""What the secret check signs wrongly with: no HMAC-SHA256 of an id is this (to any use)."""


def socket_path(admin_dir: str, role: str) -> str:
    """The admin socket of a process of C{role}."""
    return os.path.join(admin_dir, f"{role}.sock")


@define(eq=False)
class AdminState:
    """
    What the admin socket of a process answers from: its role's parts as L{mdsvc.tap} built them.

    @ivar parts: C{metrics}, C{readiness}, and as the role has them C{agent} (the
        L{mdsvc.agent.handler.MetadataAgent}), C{lookup} (the backend, without cache), C{proxies},
        C{app}; C{exposition} (returns the C{/metrics} text, or a Deferred of it); in the
        supervisor of C{metadata_workers}, C{supervisor} (its L{mdsvc.workers.WorkerSupervisor}).
    """

    role: str
    sources: tuple[str, ...]
    parts: dict[str, Any]
    redactor: Redactor = field(factory=lambda: Redactor(()))
    started: float = 0.0


class AdminHandler:
    """C{LeanHTTPFactory(AdminHandler(state))}: the admin socket's requests."""

    _log = Logger()

    def __init__(self, state: AdminState) -> None:
        self.state = state

    def __call__(self, request: HTTPRequest) -> HTTPResponse | Deferred[HTTPResponse]:
        """Answer one request (GET only)."""
        if request.method != b"GET":
            return self._json(405, {"error": "GET only"})
        query = {k: v[-1] for k, v in parse_qs(request.target.partition(b"?")[2].decode("latin-1")).items()}
        route: Callable[[dict[str, str]], Any] | None = {
            b"/status": self._status, b"/trace": self._trace, b"/ready": self._ready, b"/namespaces": self._namespaces,
            b"/check/lookup": self._check_lookup, b"/check/secret": self._check_secret,
        }.get(request.path)
        if request.path == b"/metrics":
            return self._metrics()
        if route is None:
            return self._json(404, {"error": f"no {request.path.decode('latin-1')} here"})
        try:
            result = route(query)
        except ValueError as e:
            return self._json(400, {"error": str(e)})
        if isinstance(result, Deferred):
            return result.addCallback(lambda body: self._json(200, body))
        return self._json(200, result)

    def _json(self, code: int, body: dict[str, Any]) -> HTTPResponse:
        data = json.dumps(self.state.redactor.value(body), sort_keys=True).encode("utf-8")
        return HTTPResponse(code, ((b"Content-Type", JSON),), data)

    def _metrics(self) -> HTTPResponse | Deferred[HTTPResponse]:
        exposition = self.state.parts.get("exposition")
        if exposition is None:
            return self._json(404, {"error": "this process has no metrics"})
        from prometheus_client import CONTENT_TYPE_LATEST

        def response(text: bytes) -> HTTPResponse:
            return HTTPResponse(200, ((b"Content-Type", CONTENT_TYPE_LATEST.encode("ascii")),), text)

        result = exposition()
        return result.addCallback(response) if isinstance(result, Deferred) else response(result)

    def _status(self, query: dict[str, str]) -> dict[str, Any]:
        parts = self.state.parts
        status = {"role": self.state.role, "pid": os.getpid(), "version": __version__, "sources": list(self.state.sources),
                  "started": self.state.started,
                  "parts": sorted(name for name in ("app", "agent", "proxies", "lookup") if name in parts),
                  "agent_in_process_api": "app" in parts and "agent" in parts,
                  "worker": parts["worker_index"] if parts.get("worker_fd") is not None else None}
        supervisor = parts.get("supervisor")
        if supervisor is not None:
            status["workers"] = [{"index": w.index, "pid": w.pid if w.process is not None else None, "ready": w.ready,
                                  "restarts": w.restarts} for w in supervisor.workers]
        return status

    def _trace(self, query: dict[str, str]) -> dict[str, Any]:
        try:
            after = int(query.get("after", "0"))
            limit = int(query["limit"]) if "limit" in query else None
        except ValueError:
            raise ValueError("after and limit are integers") from None
        metrics = self.state.parts.get("metrics")  # (none in the supervisor of metadata_workers: its workers answer)
        records = metrics.select(query.get("instance"), query.get("address"), after, limit) if metrics is not None else []
        return {"role": self.state.role, "pid": os.getpid(), "records": records}

    def _ready(self, query: dict[str, str]) -> Deferred[dict[str, Any]]:
        return self.state.parts["readiness"].check().addCallback(
            lambda results: {"dependencies": [{"name": name, "problem": problem} for name, problem in results]})

    def _namespaces(self, query: dict[str, str]) -> dict[str, Any]:
        proxies = self.state.parts.get("proxies")
        if proxies is None:
            return {"served": False, "namespaces": {}}
        return {"served": True, "directory": proxies.directory, "namespaces": proxies.status(),
                "waiting_for_ipv6": proxies.waiting_for_ipv6()}

    def _check_lookup(self, query: dict[str, str]) -> Deferred[dict[str, Any]]:
        lookup = self.state.parts.get("lookup")
        if lookup is None:
            raise ValueError("this process runs no agent")
        address = query.get("address") or PROBE_ADDRESS
        network, router = query.get("network"), query.get("router")
        if not network and not router:
            raise ValueError("give network=ID or router=ID")
        from mdsvc.hop import normalise_address

        try:
            ip, mac = normalise_address(address)
        except ValueError:
            raise ValueError(f"not an IP address: {address}") from None
        d = lookup.lookup(ip, network_id=network or None, router_id=router or None, mac=mac)
        return d.addCallbacks(lambda found: {"backend": getattr(lookup, "name", "?"), "found": list(found) if found else None,
                                             "error": None},
                              lambda f: {"backend": getattr(lookup, "name", "?"), "found": None,
                                         "error": f.getErrorMessage() or f.type.__name__})

    def _check_secret(self, query: dict[str, str]) -> dict[str, Any] | Deferred[dict[str, Any]]:
        agent = self.state.parts.get("agent")
        if agent is None:
            raise ValueError("this process runs no agent")
        if "app" in self.state.parts:
            return {"in_process": True}
        instance, project = query.get("instance") or PROBE_UUID, query.get("project", "")
        right = SignedRequest(b"GET", b"/openstack", b"", PROBE_ADDRESS, instance, project, sign(agent.shared_secret, instance))
        wrong = SignedRequest(b"GET", b"/openstack", b"", PROBE_ADDRESS, instance, project, WRONG_SIGNATURE)
        results: dict[str, Any] = {"in_process": False, "instance": instance}

        def sent(name: str, request: SignedRequest) -> Deferred[None]:
            def answered(response: Any) -> None:
                results[name] = response.code

            def failed(f: Any) -> None:
                results[name] = None
                results["error"] = f.getErrorMessage() or f.type.__name__

            return agent.api.forward(request).addCallbacks(answered, failed)

        return sent("signed", right).addCallback(lambda _: sent("wrong", wrong)).addCallback(lambda _: results)


class AdminSocket(Service):
    """
    Listens on the admin socket: its directory made 0700 if it is not there, a socket left by a
    process that is gone removed, a live one refused (another process of the same role serves
    it), the socket 0600; removed when the process stops.
    """

    _log = Logger()

    def __init__(self, reactor: Any, path: str, factory: Any) -> None:
        self.reactor = reactor
        self.path = path
        self.factory = factory
        self.port: Any = None

    def privilegedStartService(self) -> None:
        """Listen before privileges are dropped (the socket belongs to the user the service starts as)."""
        super().privilegedStartService()
        self._listen()

    def startService(self) -> None:
        """Listen, if not yet."""
        super().startService()
        if self.port is None:
            self._listen()

    def _listen(self) -> None:
        directory = os.path.dirname(self.path)
        os.makedirs(directory, mode=0o700, exist_ok=True)
        try:
            st = os.lstat(self.path)
        except FileNotFoundError:
            pass
        else:
            if not stat.S_ISSOCK(st.st_mode):
                raise OSError(errno.EEXIST, f"{self.path} exists and is not a socket")
            if _answers(self.path):
                raise OSError(errno.EADDRINUSE, f"another mdsvc process serves {self.path}")
            os.unlink(self.path)
        self.port = self.reactor.listenUNIX(self.path, self.factory, mode=0o600, wantPID=False)

    def stopService(self) -> Any:
        """Stop listening (Twisted removes the socket file)."""
        super().stopService()
        port, self.port = self.port, None
        return port.stopListening() if port is not None else succeed(None)


def _answers(path: str) -> bool:
    """Whether a process accepts connections on the UNIX socket C{path}."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1)
    try:
        probe.connect(path)
        return True
    except OSError:
        return False
    finally:
        probe.close()


__all__ = ["AdminHandler", "AdminSocket", "AdminState", "WRONG_SIGNATURE", "socket_path"]
