"""
Listening sockets made inside real network namespaces (C{ip netns add}), from this process.

Every test creates its own namespace C{mdsvc-t-<random>} and deletes it afterwards, whatever
happens; the tests are skipped when not root or when C{ip} is missing.
"""

from __future__ import annotations

import errno
import os
import select
import shutil
import socket
import subprocess
import sys
import uuid
from typing import Any

from twisted.internet import reactor
from twisted.internet.utils import getProcessOutputAndValue
from twisted.trial.unittest import SkipTest, SynchronousTestCase, TestCase
from twisted.web.resource import Resource
from twisted.web.server import Site

from mdsvc.proxy import netns
from mdsvc.proxy.netns import NamespaceError, NamespaceEscapeError, adopt, interfaces_with_address, listening_socket_in_namespace

IP = shutil.which("ip")
CONNECT = (
    "import socket, sys\n"
    "s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5)\n"
    "s.sendall(b'ping from ' + sys.argv[1].encode())\n"
    "s.close()\n"
)


def own_namespace() -> int:
    """The inode of the calling thread's network namespace."""
    return os.stat("/proc/thread-self/ns/net").st_ino


class NamespaceCase:
    """
    A fresh namespace per test: C{lo} up, and a veth pair C{tap0}/C{tap0p} up, C{tap0} with
    192.0.2.10/24 (veth rather than dummy: some kernels, this sandbox's among them, have no dummy).
    """

    def setUp(self) -> None:
        """Skip unless root with `ip`; create the namespace and schedule its deletion."""
        if os.geteuid() != 0 or IP is None:
            raise SkipTest("needs root and ip netns")
        self.home = own_namespace()
        self.ns = f"mdsvc-t-{uuid.uuid4().hex[:10]}"
        self.path = f"/run/netns/{self.ns}"
        subprocess.run([IP, "netns", "add", self.ns], check=True, capture_output=True)
        self.addCleanup(subprocess.run, [IP, "netns", "del", self.ns], capture_output=True)  # type: ignore[attr-defined]
        self.ip("link", "set", "lo", "up")
        self.ip("link", "add", "tap0", "type", "veth", "peer", "name", "tap0p")
        self.ip("link", "set", "tap0p", "up")
        self.ip("link", "set", "tap0", "up")
        self.ip("addr", "add", "192.0.2.10/24", "dev", "tap0")

    def ip(self, *args: str) -> None:
        """Run C{ip -n NS ARGS}."""
        subprocess.run([IP, "-n", self.ns, *args], check=True, capture_output=True)  # type: ignore[list-item]

    def inside(self, *args: str, check: bool = True) -> str:
        """Run a command inside the namespace; its standard output."""
        done = subprocess.run([IP, "netns", "exec", self.ns, *args], capture_output=True, text=True, timeout=20)  # type: ignore[list-item]
        if check and done.returncode:
            raise AssertionError(f"{args!r} failed ({done.returncode}): {done.stderr}")
        return done.stdout

    def listen(self, *args: Any, **kw: Any) -> socket.socket:
        """listening_socket_in_namespace in this namespace; the socket is closed after the test."""
        sock = listening_socket_in_namespace(self.path, *args, **kw)
        self.addCleanup(sock.close)  # type: ignore[attr-defined]
        return sock

    def connect_from_inside(self, sock: socket.socket, host: str, port: int) -> tuple[bytes, Any]:
        """Connect to host:port from a process inside the namespace; accept on sock; what it sent, and its address."""
        self.inside(sys.executable, "-c", CONNECT, host, str(port))
        readable, _, _ = select.select([sock], [], [], 5)
        assert readable, "no connection to accept"
        conn, peer = sock.accept()
        with conn:
            conn.settimeout(5)
            return conn.recv(100), peer


class ListeningSocketTests(NamespaceCase, SynchronousTestCase):
    """listening_socket_in_namespace and interfaces_with_address against real namespaces."""

    def test_listens_inside(self) -> None:
        """The socket listens inside the namespace, not outside, and the thread is back home."""
        sock = self.listen(socket.AF_INET, "192.0.2.10", 8080)
        self.assertEqual(own_namespace(), self.home)
        self.assertFalse(sock.getblocking())
        self.assertIn("192.0.2.10:8080", self.inside("ss", "-ltnH"))
        self.assertNotIn("192.0.2.10:8080", subprocess.run(["ss", "-ltnH"], capture_output=True, text=True).stdout)
        data, peer = self.connect_from_inside(sock, "192.0.2.10", 8080)
        self.assertEqual(data, b"ping from 192.0.2.10")
        self.assertEqual(peer[0], "192.0.2.10")

    def test_backlog(self) -> None:
        """The backlog is passed to listen(2) (ss shows it as Send-Q)."""
        self.listen(socket.AF_INET, "192.0.2.10", 8081, backlog=77)
        line = [ln for ln in self.inside("ss", "-ltnH").splitlines() if "192.0.2.10:8081" in ln][0]
        self.assertEqual(line.split()[2], "77")

    def test_freebind_metadata_address(self) -> None:
        """169.254.169.254:80 binds before the address exists, and serves once it is added."""
        sock = self.listen(socket.AF_INET, "169.254.169.254", 80)
        self.assertIn("169.254.169.254:80", self.inside("ss", "-ltnH"))
        self.ip("addr", "add", "169.254.169.254/32", "dev", "tap0")
        data, _ = self.connect_from_inside(sock, "169.254.169.254", 80)
        self.assertEqual(data, b"ping from 169.254.169.254")

    def test_without_freebind(self) -> None:
        """Without freebind, an address not configured yet cannot be bound: a one-line NamespaceError."""
        e = self.assertRaises(NamespaceError, listening_socket_in_namespace, self.path, socket.AF_INET,
                              "169.254.169.254", 80, freebind=False)
        self.assertEqual(str(e), f"{self.ns}: cannot bind 169.254.169.254:80: [Errno 99] Cannot assign requested address")
        self.assertEqual((e.namespace, e.errno), (self.ns, errno.EADDRNOTAVAIL))
        self.assertEqual(own_namespace(), self.home)

    def test_address_in_use(self) -> None:
        """A second listener on the same address and port fails with the namespace and address named."""
        self.listen(socket.AF_INET, "169.254.169.254", 80)
        fds = len(os.listdir("/proc/self/fd"))
        e = self.assertRaises(NamespaceError, listening_socket_in_namespace, self.path, socket.AF_INET,
                              "169.254.169.254", 80)
        self.assertEqual(str(e), f"{self.ns}: cannot bind 169.254.169.254:80: [Errno 98] Address already in use")
        self.assertNotIn("\n", str(e))
        self.assertEqual(own_namespace(), self.home)
        self.assertEqual(len(os.listdir("/proc/self/fd")), fds)

    def test_same_address_in_two_namespaces(self) -> None:
        """Each namespace has its own 169.254.169.254:80: a second namespace binds it too."""
        self.listen(socket.AF_INET, "169.254.169.254", 80)
        other = f"mdsvc-t-{uuid.uuid4().hex[:10]}"
        subprocess.run([IP, "netns", "add", other], check=True)  # type: ignore[list-item]
        self.addCleanup(subprocess.run, [IP, "netns", "del", other], capture_output=True)
        sock = listening_socket_in_namespace(f"/run/netns/{other}", socket.AF_INET, "169.254.169.254", 80)
        sock.close()

    def test_missing_namespace(self) -> None:
        """A namespace that does not exist is a NamespaceError, and the thread has not moved."""
        e = self.assertRaises(NamespaceError, listening_socket_in_namespace, "/run/netns/mdsvc-t-missing",
                              socket.AF_INET, "169.254.169.254", 80)
        self.assertTrue(str(e).startswith("mdsvc-t-missing: cannot open namespace: [Errno 2]"), str(e))
        self.assertEqual(own_namespace(), self.home)

    def test_not_a_namespace(self) -> None:
        """A plain file (as `ip netns add` leaves it for a moment before mounting) is not a namespace."""
        path = os.path.abspath(self.mktemp())
        open(path, "w").close()
        e = self.assertRaises(NamespaceError, listening_socket_in_namespace, path, socket.AF_INET, "169.254.169.254", 80)
        self.assertEqual(str(e), f"{os.path.basename(path)}: cannot enter namespace: not a network namespace")
        self.assertEqual(own_namespace(), self.home)

    def test_bad_arguments(self) -> None:
        """A family/address mismatch or a non-address is a NamespaceError before entering anything."""
        for family, address in ((socket.AF_INET, "fe80::a9fe:a9fe"), (socket.AF_INET6, "169.254.169.254"),
                                (socket.AF_INET, "metadata")):
            e = self.assertRaises(NamespaceError, listening_socket_in_namespace, self.path, family, address, 80)
            self.assertTrue(str(e).startswith(f"{self.ns}: cannot bind "), str(e))

    def test_dual_stack(self) -> None:
        """'::' is bound dual-stack (as haproxy's `bind :::9697`): IPv4 clients arrive as ::ffff:a.b.c.d."""
        sock = self.listen(socket.AF_INET6, "::", 9697)
        self.assertEqual(sock.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY), 0)
        data, peer = self.connect_from_inside(sock, "192.0.2.10", 9697)
        self.assertEqual(peer[0], "::ffff:192.0.2.10")
        data, peer = self.connect_from_inside(sock, "::1", 9697)
        self.assertEqual(peer[0], "::1")

    def test_router_ipv4_any(self) -> None:
        """0.0.0.0:9697 (the L3 case without IPv6) takes connections on any address of the namespace."""
        sock = self.listen(socket.AF_INET, "0.0.0.0", 9697)
        data, _ = self.connect_from_inside(sock, "127.0.0.1", 9697)
        self.assertEqual(data, b"ping from 127.0.0.1")

    def test_ipv6_link_local(self) -> None:
        """fe80::a9fe:a9fe with the tap's scope (found by interfaces_with_address) serves [fe80::a9fe:a9fe%tap0]:80."""
        self.ip("-6", "addr", "add", "fe80::a9fe:a9fe/128", "dev", "tap0", "nodad")
        self.assertEqual(interfaces_with_address(self.path, "fe80::a9fe:a9fe"), ["tap0"])
        self.assertEqual(own_namespace(), self.home)
        sock = self.listen(socket.AF_INET6, "fe80::a9fe:a9fe", 80, interface="tap0")
        self.assertEqual(sock.getsockname()[3], int(self.inside("cat", "/sys/class/net/tap0/ifindex")))
        self.assertIn("[fe80::a9fe:a9fe]%tap0:80", self.inside("ss", "-ltnH"))
        data, peer = self.connect_from_inside(sock, "fe80::a9fe:a9fe%tap0", 80)
        self.assertEqual(data, b"ping from fe80::a9fe:a9fe%tap0")

    def test_ipv6_link_local_before_address(self) -> None:
        """With freebind, the link-local listener can be made before the address is configured."""
        sock = self.listen(socket.AF_INET6, "fe80::a9fe:a9fe", 80, interface="tap0")
        self.assertEqual(interfaces_with_address(self.path, "fe80::a9fe:a9fe"), [])
        self.ip("-6", "addr", "add", "fe80::a9fe:a9fe/128", "dev", "tap0", "nodad")
        data, _ = self.connect_from_inside(sock, "fe80::a9fe:a9fe%tap0", 80)
        self.assertEqual(data, b"ping from fe80::a9fe:a9fe%tap0")

    def test_ipv6_tentative(self) -> None:
        """
        During DAD (a veth, not nodad) the address is listed but tentative: only freebind binds it.

        (Dummy devices would skip DAD altogether: they are IFF_NOARP.)
        """
        self.ip("-6", "addr", "add", "fe80::a9fe:a9fe/128", "dev", "tap0")
        self.assertIn("tentative", self.inside("ip", "-6", "addr", "show", "dev", "tap0"))
        self.assertEqual(interfaces_with_address(self.path, "fe80::a9fe:a9fe"), ["tap0"])
        e = self.assertRaises(NamespaceError, listening_socket_in_namespace, self.path, socket.AF_INET6,
                              "fe80::a9fe:a9fe", 80, interface="tap0", freebind=False)
        self.assertEqual(str(e), f"{self.ns}: cannot bind [fe80::a9fe:a9fe%tap0]:80: [Errno 99] Cannot assign requested address")
        self.listen(socket.AF_INET6, "fe80::a9fe:a9fe", 80, interface="tap0")

    def test_unknown_interface(self) -> None:
        """An interface that is not in the namespace is named in the error."""
        e = self.assertRaises(NamespaceError, listening_socket_in_namespace, self.path, socket.AF_INET6,
                              "fe80::a9fe:a9fe", 80, interface="tap-nope")
        self.assertEqual(str(e), f"{self.ns}: cannot bind [fe80::a9fe:a9fe%tap-nope]:80: [Errno 19] no interface tap-nope in the namespace")
        self.assertEqual(own_namespace(), self.home)

    def test_interface_binds_device(self) -> None:
        """An IPv4 listener with an interface is bound to that device (haproxy's `interface` keyword)."""
        sock = self.listen(socket.AF_INET, "0.0.0.0", 8082, interface="tap0")
        self.assertEqual(sock.getsockopt(socket.SOL_SOCKET, 25, 16).rstrip(b"\0"), b"tap0")  # SO_BINDTODEVICE
        self.assertIn("%tap0:8082", self.inside("ss", "-ltnH"))

    def test_interfaces_with_address(self) -> None:
        """Every device holding the address is listed, in any notation; the thread comes back."""
        self.ip("link", "add", "tap1", "type", "veth", "peer", "name", "tap1p")
        self.ip("link", "set", "tap1", "up")
        for dev in ("tap0", "tap1"):
            self.ip("-6", "addr", "add", "fe80::a9fe:a9fe/128", "dev", dev, "nodad")
        self.assertEqual(sorted(interfaces_with_address(self.path, "FE80:0:0:0:0:0:A9FE:A9FE")), ["tap0", "tap1"])
        self.assertEqual(interfaces_with_address(self.path, "fe80::1234"), [])
        self.assertEqual(interfaces_with_address(self.path, "::1"), ["lo"])
        self.assertEqual(own_namespace(), self.home)
        self.assertRaises(NamespaceError, interfaces_with_address, self.path, "169.254.169.254")
        self.assertRaises(NamespaceError, interfaces_with_address, "/run/netns/mdsvc-t-missing", "::1")

    def test_many_listeners(self) -> None:
        """Thirty listeners in a row leave the thread at home and no descriptor behind but the sockets."""
        fds = len(os.listdir("/proc/self/fd"))
        socks = [self.listen(socket.AF_INET, "192.0.2.10", 9000 + i) for i in range(30)]
        self.assertEqual(len(os.listdir("/proc/self/fd")), fds + len(socks))
        self.assertEqual(own_namespace(), self.home)

    def test_return_failure_is_fatal(self) -> None:
        """If the thread cannot come back, the process is abandoned (os._exit by default), never left running."""
        calls: list[int] = []
        real = netns._setns
        stranded: list[tuple[str, OSError]] = []

        def flaky(fd: int) -> None:
            """The real setns, but report failure on the way back."""
            calls.append(fd)
            real(fd)  # really move, so this test process stays where it belongs
            if len(calls) == 2:
                raise OSError(errno.EPERM, "Operation not permitted")

        self.patch(netns, "_setns", flaky)
        self.patch(netns, "_abandon_process", lambda name, error: stranded.append((name, error)))
        with self.assertRaises(NamespaceEscapeError) as caught:
            listening_socket_in_namespace(self.path, socket.AF_INET, "169.254.169.254", 80)
        self.assertNotIsInstance(caught.exception, Exception)
        self.assertEqual([(name, e.errno) for name, e in stranded], [(self.ns, errno.EPERM)])
        self.assertEqual(len(calls), 2)
        self.assertEqual(own_namespace(), self.home)


class Hello(Resource):
    """Answers 200 with a fixed body."""

    isLeaf = True

    def render_GET(self, request: Any) -> bytes:
        """200 and the client's address."""
        return b"hello " + request.getClientAddress().host.encode()


class AdoptTests(NamespaceCase, TestCase):
    """adopt() on the real reactor: a twisted.web Site served inside the namespace."""

    async def test_site_in_namespace(self) -> None:
        """A Site adopted on 169.254.169.254:80 answers curl run inside the namespace; stopListening frees it."""
        if shutil.which("curl") is None:
            raise SkipTest("needs curl")
        sock = listening_socket_in_namespace(self.path, socket.AF_INET, "169.254.169.254", 80)
        port = adopt(reactor, sock, Site(Hello()))
        self.assertEqual(sock.fileno(), -1)
        self.assertEqual(port.getHost().port, 80)
        self.ip("addr", "add", "169.254.169.254/32", "dev", "tap0")
        out, err, code = await getProcessOutputAndValue(
            IP, ["netns", "exec", self.ns, "curl", "-sS", "-m", "10", "-w", " %{http_code}", "http://169.254.169.254/"],
            env=dict(os.environ),
        )
        self.assertEqual((out, code), (b"hello 169.254.169.254 200", 0), err)
        await port.stopListening()
        self.assertNotIn("169.254.169.254:80", self.inside("ss", "-ltnH"))

    async def test_adopt_ipv6_link_local(self) -> None:
        """
        The link-local listener adopted as AF_INET6 answers curl -g 'http://[fe80::a9fe:a9fe%tap0]/'.

        The client address Twisted reports carries a scope suffix named in the host namespace.
        """
        if shutil.which("curl") is None:
            raise SkipTest("needs curl")
        self.ip("-6", "addr", "add", "fe80::a9fe:a9fe/128", "dev", "tap0", "nodad")
        (tap,) = interfaces_with_address(self.path, "fe80::a9fe:a9fe")
        port = adopt(reactor, listening_socket_in_namespace(self.path, socket.AF_INET6, "fe80::a9fe:a9fe", 80,
                                                            interface=tap), Site(Hello()))
        self.addCleanup(port.stopListening)
        out, err, code = await getProcessOutputAndValue(
            IP, ["netns", "exec", self.ns, "curl", "-sS", "-g", "-m", "10", "-w", " %{http_code}",
                 "http://[fe80::a9fe:a9fe%tap0]/"],
            env=dict(os.environ),
        )
        self.assertEqual(code, 0, err)
        hello, client, status = out.split()
        self.assertEqual((hello, status), (b"hello", b"200"))
        # Twisted names the peer's scope with if_indextoname() in the reactor thread's own
        # namespace, so the suffix is whatever host device shares tap0's index (or a bare number):
        # consumers must drop it rather than trust it.
        self.assertEqual(client.split(b"%")[0], b"fe80::a9fe:a9fe")

    def test_adopt_closes_socket_on_refusal(self) -> None:
        """The caller's socket is closed even when the reactor refuses it."""
        sock = listening_socket_in_namespace(self.path, socket.AF_INET, "192.0.2.10", 8083)

        class Refusing:
            """A reactor that cannot adopt anything."""

            def adoptStreamPort(self, fd: int, family: int, factory: Any) -> Any:
                """Fail."""
                raise OSError("refused")

        self.assertRaises(OSError, adopt, Refusing(), sock, Site(Hello()))
        self.assertEqual(sock.fileno(), -1)
