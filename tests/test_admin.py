"""The admin socket: what each process answers there (status, trace, checks), how it listens, and the trace command's lines."""

from __future__ import annotations

import errno
import json
import os
import shutil
import socket
import tempfile
from typing import Any

from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase

from mdsvc.admin.server import AdminSocket, socket_path
from mdsvc.admin.trace import TraceError, line, target
from mdsvc.hop import GuestRequest
from mdsvc.http import HTTPRequest, HTTPResponse
from mdsvc.tap import Options, makeService
from tests.test_api_resource import UUID

SECRET = "admin-test-secret-value"
NETWORK = "11111111-0000-4000-8000-000000000001"


class ThreadlessReactor(MemoryReactorClock):
    """A memory reactor whose thread pool runs each call at once (the sqlite store and lookup run in threads)."""

    class _Pool:
        def callInThreadWithCallback(self, on_result: Any, f: Any, *args: Any, **kwargs: Any) -> None:
            try:
                result = f(*args, **kwargs)
            except BaseException:
                from twisted.python.failure import Failure

                on_result(False, Failure())
            else:
                on_result(True, result)

    def getThreadPool(self) -> Any:
        """The pool that runs calls at once."""
        return self._Pool()

    def callFromThread(self, f: Any, *args: Any, **kwargs: Any) -> None:
        """Run C{f} now (there is no other thread)."""
        f(*args, **kwargs)


def get(handler: Any, target: bytes, case: SynchronousTestCase) -> tuple[int, Any]:
    """The status and JSON body of the admin handler's answer to C{GET target}."""
    result = handler(HTTPRequest(b"GET", target, b"HTTP/1.1", {b"host": [b"x"]}, b"", None))
    response: HTTPResponse = result if isinstance(result, HTTPResponse) else case.successResultOf(result)
    return response.code, json.loads(response.body)


class AdminHandlerTests(SynchronousTestCase):
    """An all-in-one process's admin socket, over the parts makeService built."""

    def setUp(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="mdsvc-adm-")
        self.addCleanup(shutil.rmtree, self.dir, True)
        path = os.path.join(self.dir, "aio.conf")
        with open(path, "w") as f:
            f.write(f"[DEFAULT]\nstate_path = {self.dir}\nmetadata_proxy_shared_secret = {SECRET}\n[neutron]\n"
                    f"service_metadata_proxy = true\n[mdsvc]\napi_endpoint = tcp:0\ndemo = true\n[proxy]\nnamespaces = none\n"
                    f"listeners = network {NETWORK} tcp:18090\n")
        options = Options()
        options.parseOptions(["--role", "all-in-one", "--config", path])
        self.reactor = ThreadlessReactor()
        top = makeService(options, self.reactor)
        top.privilegedStartService()
        top.startService()
        self.addCleanup(top.stopService)
        (admin,) = [u for u in self.reactor.unixServers if u[0].endswith(".sock")]
        self.assertEqual((admin[0], admin[3]), (f"{self.dir}/run/all-in-one.sock", 0o600))
        self.handler = admin[1].handler
        self.agent = [p[1] for p in self.reactor.tcpServers if p[0] == 18090][0].handler.upstream

    def test_status(self) -> None:
        """Role, pid, configuration, parts; the secret appears nowhere."""
        code, body = get(self.handler, b"/status", self)
        self.assertNotIn(SECRET, json.dumps(body))
        self.assertEqual((code, body["role"], body["pid"], body["parts"]), (200, "all-in-one", os.getpid(), ["agent", "app", "lookup"]))

    def test_trace(self) -> None:
        """A request of the demo guest: its agent and API records, by instance or by address; newer than a sequence number."""
        from mdsvc.store.demo import demo_document

        doc = demo_document()
        uuid, ip = doc["uuid"], doc["nics"][0]["fixed_ips"][0]["ip"]
        self.successResultOf(self.agent.handle(GuestRequest(b"GET", b"/latest/meta-data/hostname", b"", ip, None, NETWORK, None)))
        self.reactor.advance(1)
        self.successResultOf(self.agent.handle(GuestRequest(b"GET", b"/latest/nope", b"", ip, None, NETWORK, None)))
        code, body = get(self.handler, f"/trace?instance={uuid}".encode(), self)
        self.assertEqual([(r["hop"], r["status"], r["path"]) for r in body["records"]],
                         [("api", 200, "/latest/meta-data/hostname"), ("agent", 200, "/latest/meta-data/hostname"),
                          ("api", 404, "/latest/nope"), ("agent", 404, "/latest/nope")])
        self.assertEqual(body["records"][2]["reason"], "no 'latest/nope' in EC2 version latest")
        last = body["records"][1]["seq"]
        _, newer = get(self.handler, f"/trace?address={ip}&after={last}".encode(), self)
        self.assertEqual([r["status"] for r in newer["records"]], [404, 404])
        self.assertEqual(get(self.handler, b"/trace?after=x", self)[0], 400)

    def test_checks(self) -> None:
        """The lookup backend's own answer for a guest; the secret check is moot in-process; readiness of the parts."""
        from mdsvc.store.demo import demo_document

        doc = demo_document()
        ip = doc["nics"][0]["fixed_ips"][0]["ip"]
        _, found = get(self.handler, f"/check/lookup?address={ip}&network={NETWORK}".encode(), self)
        self.assertEqual((found["backend"], found["found"], found["error"]), ("store", [doc["uuid"], doc["project_id"]], None))
        self.assertEqual(get(self.handler, b"/check/lookup?address=10.9.9.9", self)[0], 400)
        self.assertEqual(get(self.handler, b"/check/secret", self), (200, {"in_process": True}))
        _, ready = get(self.handler, b"/ready", self)
        self.assertEqual([d["problem"] for d in ready["dependencies"]], [None, None])
        self.assertEqual(get(self.handler, b"/nope", self)[0], 404)


class AdminSocketTests(SynchronousTestCase):
    """The socket: its directory 0700, 0600 itself; a stale one replaced, a live one refused."""

    def setUp(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="mdsvc-as-")
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.path = socket_path(os.path.join(self.dir, "run"), "agent")

    def test_listens(self) -> None:
        """A new directory is made 0700; the socket is listened on with mode 0600."""
        reactor = MemoryReactorClock()
        AdminSocket(reactor, self.path, object()).privilegedStartService()
        self.assertEqual(os.stat(os.path.dirname(self.path)).st_mode & 0o777, 0o700)
        self.assertEqual([(u[0], u[3]) for u in reactor.unixServers], [(self.path, 0o600)])

    def test_stale_and_live(self) -> None:
        """A socket nobody listens on (a process that died) is removed; one a process serves is not taken over."""
        os.makedirs(os.path.dirname(self.path))
        stale = socket.socket(socket.AF_UNIX)
        stale.bind(self.path)
        stale.close()
        reactor = MemoryReactorClock()
        AdminSocket(reactor, self.path, object()).privilegedStartService()
        self.assertFalse(os.path.exists(self.path))  # removed (the memory reactor makes no file)
        live = socket.socket(socket.AF_UNIX)
        live.bind(self.path)
        live.listen(1)
        self.addCleanup(live.close)
        e = self.assertRaises(OSError, AdminSocket(MemoryReactorClock(), self.path, object()).privilegedStartService)
        self.assertEqual((e.errno, e.strerror), (errno.EADDRINUSE, f"another mdsvc process serves {self.path}"))


class TraceLineTests(SynchronousTestCase):
    """What mdsvc-manage trace takes and prints."""

    def test_target(self) -> None:
        """An IP address (in its normal form) or an instance id; anything else is refused."""
        self.assertEqual(target("::ffff:10.0.0.5"), (None, "10.0.0.5"))
        self.assertEqual(target(UUID), (UUID, None))
        self.assertRaises(TraceError, target, "a b")

    def test_line(self) -> None:
        """One record, one line: time (UTC, ms), hop, status, latency, cache, address, instance, request, reason."""
        record = {"seq": 1, "time": 1796230000.25, "hop": "agent", "address": "10.0.0.5", "scope": "n", "instance": None,
                  "method": "GET", "path": "/latest\x1b", "status": 503, "latency": 0.0123, "cache": "miss",
                  "reason": "The remote metadata server is temporarily unavailable."}
        self.assertEqual(line(record), "2026-12-02T16:46:40.250Z  agent     503    12.3 ms  miss   10.0.0.5         -"
                                       "                                     GET /latest?  The remote metadata server is "
                                       "temporarily unavailable.")
