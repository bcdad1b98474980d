"""Tests for L{mdsvc.listen}: a listener that cannot listen ends startup with one line naming its option."""

from __future__ import annotations

import errno
import io
import os
import socket
import sys
from typing import Any

from twisted.internet.error import CannotListenError
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase

from mdsvc.listen import ListenFailed, Listening, describe, failed, listen_service
from mdsvc.tap import Options, makeService


class RefusingReactor(MemoryReactorClock):
    """A memory reactor where every listen fails as C{error} says (None: that kind listens)."""

    def __init__(self, tcp: OSError | None = None, unix: OSError | None = None) -> None:
        super().__init__()
        self.tcp = tcp
        self.unix = unix

    def listenTCP(self, port: int, factory: Any, backlog: int = 50, interface: str = "") -> Any:  # noqa: N802
        """Fail with the TCP error, if any."""
        if self.tcp is not None:
            raise CannotListenError(interface, port, self.tcp)
        return super().listenTCP(port, factory, backlog, interface)

    def listenUNIX(self, address: str, factory: Any, backlog: int = 50, mode: int = 0o666, wantPID: int = 0) -> Any:  # noqa: N802,N803
        """Fail with the UNIX error, if any."""
        if self.unix is not None:
            raise CannotListenError(None, address.encode(), self.unix)
        return super().listenUNIX(address, factory, backlog, mode, wantPID)


IN_USE = OSError(errno.EADDRINUSE, os.strerror(errno.EADDRINUSE))
DENIED = OSError(errno.EACCES, os.strerror(errno.EACCES))


class DescribeTests(SynchronousTestCase):
    """What a failure to listen says."""

    def test_tcp(self) -> None:
        """Address and port, and the system's reason."""
        self.assertEqual(describe(CannotListenError("127.0.0.1", 8775, IN_USE)),
                         "cannot listen on 127.0.0.1:8775: Address already in use")

    def test_ipv6_and_any(self) -> None:
        """An IPv6 address is bracketed; no interface is every address."""
        self.assertEqual(describe(CannotListenError("::1", 80, IN_USE)), "cannot listen on [::1]:80: Address already in use")
        self.assertEqual(describe(CannotListenError("", 8775, IN_USE)), "cannot listen on *:8775: Address already in use")

    def test_privileged_port(self) -> None:
        """A refused port below 1024 says what it needs."""
        self.assertEqual(describe(CannotListenError("0.0.0.0", 80, DENIED)),
                         "cannot listen on 0.0.0.0:80: Permission denied (a port below 1024 needs root or CAP_NET_BIND_SERVICE)")
        self.assertEqual(describe(CannotListenError(None, b"/run/a.sock", DENIED)), "cannot listen on /run/a.sock: Permission denied")

    def test_bad_address(self) -> None:
        """A name that does not resolve, an address the host does not have."""
        gai = socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        self.assertEqual(describe(CannotListenError("nowhere.invalid", 80, gai)),
                         "cannot listen on nowhere.invalid:80: Name or service not known")
        self.assertEqual(describe(CannotListenError("10.9.9.9", 80, OSError(errno.EADDRNOTAVAIL, "Cannot assign requested address"))),
                         "cannot listen on 10.9.9.9:80: Cannot assign requested address")
        self.assertEqual(describe(CannotListenError(None, b"/x/" + b"a" * 120, OSError("AF_UNIX path too long"))),
                         "cannot listen on /x/" + "a" * 120 + ": AF_UNIX path too long")

    def test_other_errors(self) -> None:
        """A file error names the file; anything else is its message on one line."""
        self.assertEqual(describe(PermissionError(errno.EACCES, "Permission denied", "/var/lib/x")),
                         "cannot listen: /var/lib/x: Permission denied")
        self.assertEqual(describe(RuntimeError("/s exists and\nis not a socket")), "cannot listen: /s exists and is not a socket")
        self.assertEqual(describe(OverflowError("bind(): port must be 0-65535.")), "cannot listen: bind(): port must be 0-65535.")


class ListeningTests(SynchronousTestCase):
    """L{Listening} and L{listen_service}."""

    def test_privileged_start(self) -> None:
        """A listener failing in privilegedStartService is a ListenFailed of one line naming where."""
        service = listen_service("tcp:8775:interface=127.0.0.1", object(), RefusingReactor(IN_USE), "f.conf: [mdsvc] api_endpoint tcp:8775")
        e = self.assertRaises(ListenFailed, service.privilegedStartService)
        self.assertEqual(str(e), "mdsvc: f.conf: [mdsvc] api_endpoint tcp:8775: cannot listen on 127.0.0.1:8775: Address already in use")

    def test_start(self) -> None:
        """The same when startService is the first to listen."""
        service = listen_service("tcp:8775", object(), RefusingReactor(IN_USE), "where")
        self.assertRaises(ListenFailed, service.startService)

    def test_listens(self) -> None:
        """A listener that can listen does."""
        reactor = RefusingReactor()
        listen_service("tcp:8775", object(), reactor, "where").privilegedStartService()
        self.assertEqual([p[0] for p in reactor.tcpServers], [8775])

    def test_unmakeable_endpoint(self) -> None:
        """An endpoint this Twisted cannot make (an unknown type) is one line too, when the service is built."""
        e = self.assertRaises(ListenFailed, listen_service, "nosuch:1", object(), RefusingReactor(), "f.conf: [mdsvc] agent_endpoint nosuch:1")
        self.assertEqual(str(e), "mdsvc: f.conf: [mdsvc] agent_endpoint nosuch:1: not a server endpoint this Twisted can make: "
                                 "Unknown endpoint type: 'nosuch'")

    def test_excepthook(self) -> None:
        """
        A ListenFailed that ends the process is printed as its one line (no traceback); the hook
        passes every other exception to the previous one.
        """
        seen: list[BaseException] = []
        self.patch(sys, "excepthook", lambda kind, value, tb: seen.append(value))
        problem = failed("mdsvc: where: cannot listen on 127.0.0.1:1: Address already in use")
        failed("again")  # one hook, however many failures
        stderr = io.StringIO()
        self.patch(sys, "stderr", stderr)
        sys.excepthook(ListenFailed, problem, None)
        other = ValueError("x")
        sys.excepthook(ValueError, other, None)
        self.assertEqual(stderr.getvalue(), "mdsvc: where: cannot listen on 127.0.0.1:1: Address already in use\n")
        self.assertEqual(seen, [other])

    def test_nested(self) -> None:
        """The innermost Listening names the failure; outer ones let it through as it is."""
        outer = Listening("outer")
        listen_service("tcp:1", object(), RefusingReactor(IN_USE), "inner").setServiceParent(outer)
        e = self.assertRaises(ListenFailed, outer.privilegedStartService)
        self.assertTrue(str(e).startswith("mdsvc: inner: "), str(e))


class RoleListenerTests(SynchronousTestCase):
    """Every listener of every role names its option and address when it cannot listen."""

    def start(self, role: str, text: str, reactor: RefusingReactor) -> tuple[str, str]:
        """Start C{role} on a config of C{text} and C{reactor}; (the config's path, the one line)."""
        state = os.path.abspath(self.mktemp())
        path = os.path.abspath(self.mktemp())
        with open(path, "w") as f:
            f.write(f"[DEFAULT]\nstate_path = {state}\n[proxy]\nnamespaces = none\n{text}")
        options = Options()
        options.parseOptions(["--role", role, "--config", path])
        top = makeService(options, reactor)
        self.addCleanup(lambda: top.running and top.stopService())
        e = self.assertRaises(ListenFailed, top.privilegedStartService)
        self.assertEqual(str(e).splitlines(), [str(e)])
        return path, str(e)

    def test_api_endpoint(self) -> None:
        """The API's [mdsvc] api_endpoint."""
        path, line = self.start("api", "[mdsvc]\napi_endpoint = tcp:8775:interface=127.0.0.1\n", RefusingReactor(IN_USE))
        self.assertEqual(line, f"mdsvc: {path}: [mdsvc] api_endpoint tcp:8775:interface=127.0.0.1: "
                               "cannot listen on 127.0.0.1:8775: Address already in use")

    def test_api_listen_options(self) -> None:
        """Without api_endpoint, nova.conf's metadata_listen and metadata_listen_port."""
        path, line = self.start("api", "[DEFAULT]\nmetadata_listen = 192.0.2.1\nmetadata_listen_port = 80\n", RefusingReactor(DENIED))
        self.assertEqual(line, f"mdsvc: {path}: [DEFAULT] metadata_listen 192.0.2.1, metadata_listen_port 80: cannot listen on "
                               "192.0.2.1:80: Permission denied (a port below 1024 needs root or CAP_NET_BIND_SERVICE)")

    def test_agent_socket(self) -> None:
        """The agent's metadata_proxy_socket, in every role that runs the agent."""
        for role in ("agent", "network-node", "all-in-one"):
            path, line = self.start(role, "[DEFAULT]\nmetadata_proxy_socket = /run/m/agent.sock\n[mdsvc]\napi_endpoint = tcp:0\n",
                                    RefusingReactor(unix=DENIED))
            self.assertEqual(line, f"mdsvc: {path}: [DEFAULT] metadata_proxy_socket /run/m/agent.sock: "
                                   "cannot listen on /run/m/agent.sock: Permission denied", role)

    def test_agent_socket_directory(self) -> None:
        """A socket directory that cannot be made (under a file) names the socket option."""
        blocker = os.path.abspath(self.mktemp())
        open(blocker, "w").close()
        path, line = self.start("agent", f"[DEFAULT]\nmetadata_proxy_socket = {blocker}/sub/agent.sock\n", RefusingReactor())
        self.assertTrue(line.startswith(f"mdsvc: {path}: [DEFAULT] metadata_proxy_socket {blocker}/sub/agent.sock: cannot listen: "), line)
        self.assertIn("Not a directory", line)

    def test_agent_endpoint(self) -> None:
        """The agent's extra [mdsvc] agent_endpoint."""
        path, line = self.start("agent", "[mdsvc]\nagent_endpoint = tcp:9697:interface=127.0.0.1\n", RefusingReactor(IN_USE))
        self.assertEqual(line, f"mdsvc: {path}: [mdsvc] agent_endpoint tcp:9697:interface=127.0.0.1: "
                               "cannot listen on 127.0.0.1:9697: Address already in use")

    def test_proxy_listeners(self) -> None:
        """A fixed proxy listener, in the proxy and network-node roles."""
        for role in ("proxy", "network-node"):
            path, line = self.start(role, "listeners = network n1 tcp:8080:interface=127.0.0.1\n", RefusingReactor(IN_USE))
            self.assertEqual(line, f"mdsvc: {path}: [proxy] listeners network n1 tcp:8080:interface=127.0.0.1: "
                                   "cannot listen on 127.0.0.1:8080: Address already in use", role)
