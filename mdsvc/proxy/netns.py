# -*- test-case-name: tests.test_proxy_netns -*-
"""
Listening sockets inside other network namespaces, created from this process.

Neutron runs one haproxy inside every C{qdhcp-}, C{qrouter-} and C{ovnmeta-} namespace (neutron
spec §0, §1 hop 1, §8).  mdsvc instead keeps every listener in one process: the calling thread
enters the tenant namespace with C{setns(2)}, creates, binds and listens on a TCP socket there,
and comes straight back.  A socket belongs to the namespace it was created in for its whole life,
so the reactor can then serve it like any other (L{adopt}).

Only the calling thread changes namespace, and only for the few system calls that create the
socket; it always returns to where it was.  If it cannot return, the process must not go on
running in a tenant's namespace: it logs a critical event and exits (L{NamespaceEscapeError}).

Python 3.11 has no C{os.setns}, so C{setns(2)} is called through ctypes.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import ipaddress
import os
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from twisted.internet.interfaces import IListeningPort, IReactorSocket
from twisted.internet.protocol import ServerFactory
from twisted.logger import Logger

__all__ = [
    "CLONE_NEWNET",
    "NamespaceError",
    "NamespaceEscapeError",
    "adopt",
    "interfaces_with_address",
    "listening_socket_in_namespace",
]

CLONE_NEWNET = 0x40000000
"""The C{nstype} argument of C{setns(2)} for network namespaces (C{<sched.h>})."""

# Linux values; the socket module of 3.11 does not name them all.
_IP_FREEBIND = getattr(socket, "IP_FREEBIND", 15)
_IPV6_FREEBIND = getattr(socket, "IPV6_FREEBIND", 78)
_SO_BINDTODEVICE = getattr(socket, "SO_BINDTODEVICE", 25)

_THREAD_NETNS = "/proc/thread-self/ns/net"
_IF_INET6 = "/proc/thread-self/net/if_inet6"

_log = Logger(namespace="mdsvc.proxy.netns")

_libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
_libc.setns.argtypes = [ctypes.c_int, ctypes.c_int]
_libc.setns.restype = ctypes.c_int


class NamespaceError(Exception):
    """
    A listener could not be set up in a namespace.

    C{str()} is one line naming the namespace and what failed, for instance
    C{qdhcp-abc: cannot bind 169.254.169.254:80: [Errno 98] Address already in use}.

    @ivar namespace: the namespace's name (the last component of its path).
    @ivar errno: the C{errno} of the underlying system error, or None.
    """

    def __init__(self, namespace: str, message: str, errno: int | None = None) -> None:
        super().__init__(f"{namespace}: {message}")
        self.namespace = namespace
        self.errno = errno


class NamespaceEscapeError(BaseException):
    """
    The thread could not return to its own namespace after working in another one.

    Deliberately not an L{Exception}: nothing should handle it.  It is raised only when
    L{_abandon_process} returns, which the default never does (it ends the process).
    """


def _setns(fd: int) -> None:
    """Move the calling thread into the network namespace open as C{fd}."""
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))


def _abandon_process(namespace: str, error: OSError) -> None:
    """
    The thread is stranded in a tenant namespace: log, and end the process at once.

    Nothing else may run in that state (a connection to Nova or a lookup would leave from the
    tenant's network), so this does not unwind through Twisted, whose Deferreds would catch
    even a L{BaseException}.  Exit status 70 is C{EX_SOFTWARE}.  Tests replace this function.
    """
    _log.critical(
        "cannot return from network namespace {namespace}: {error}; exiting",
        namespace=namespace,
        error=str(error),
    )
    sys.stderr.write(f"mdsvc: cannot return from network namespace {namespace}: {error}; exiting\n")
    sys.stderr.flush()
    os._exit(70)


def _name(netns_path: str) -> str:
    return os.path.basename(os.path.normpath(netns_path)) or netns_path


@contextmanager
def _inside(netns_path: str) -> Iterator[None]:
    """
    Run the body with the calling thread in the network namespace at C{netns_path}.

    Raise L{NamespaceError} if the namespace cannot be entered (the thread has not moved then).
    On the way out, whatever the body did, the thread goes back to its original namespace.
    """
    name = _name(netns_path)
    try:
        home = os.open(_THREAD_NETNS, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as e:
        raise NamespaceError(name, f"cannot open own namespace: {e}", e.errno) from None
    try:
        try:
            target = os.open(netns_path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as e:
            raise NamespaceError(name, f"cannot open namespace: {e}", e.errno) from None
        try:
            try:
                _setns(target)
            except OSError as e:
                reason = "not a network namespace" if e.errno == errno.EINVAL else str(e)
                raise NamespaceError(name, f"cannot enter namespace: {reason}", e.errno) from None
        finally:
            os.close(target)
        try:
            yield
        finally:
            try:
                _setns(home)
            except OSError as e:
                _abandon_process(name, e)
                raise NamespaceEscapeError(f"{name}: cannot return to own namespace: {e}") from None
    finally:
        os.close(home)


def _endpoint(address: str, port: int, interface: str | None, family: int) -> str:
    if family == socket.AF_INET6:
        scope = f"%{interface}" if interface else ""
        return f"[{address}{scope}]:{port}"
    return f"{address}:{port}" + (f" on {interface}" if interface else "")


def listening_socket_in_namespace(
    netns_path: str,
    family: int,
    address: str,
    port: int,
    *,
    backlog: int = 1024,
    freebind: bool = True,
    interface: str | None = None,
) -> socket.socket:
    """
    Create a listening TCP socket inside the network namespace at C{netns_path}.

    Call it from the reactor thread (or any one thread: only the calling thread moves).  The
    thread enters the namespace, creates the socket, and always returns to the namespace it was
    in, closing every descriptor it opened except the socket's.

    @param netns_path: a namespace file, e.g. C{/run/netns/qdhcp-<network id>}.
    @param family: C{socket.AF_INET} or C{socket.AF_INET6}.
    @param address: the address to bind: C{169.254.169.254}, C{0.0.0.0}, C{fe80::a9fe:a9fe}, C{::}.
        Binding C{::} turns C{IPV6_V6ONLY} off, so IPv4 clients reach it too (as
        C{::ffff:a.b.c.d}); any other IPv6 address is bound IPv6-only.
    @param port: the TCP port.
    @param backlog: the C{listen(2)} backlog (haproxy's C{maxconn} in Neutron's template is 1024).
    @param freebind: set C{IP_FREEBIND} / C{IPV6_FREEBIND}, so the address may be bound before it
        is configured in the namespace (the DHCP port gets C{169.254.169.254/32} on its own
        schedule, and an IPv6 address may still be tentative).
    @param interface: a device in that namespace, as haproxy's C{bind ... interface}: the socket
        is bound to it (C{SO_BINDTODEVICE}), and an IPv6 address takes its scope id from it
        (required for link-local addresses such as C{fe80::a9fe:a9fe}).
    @return: a non-blocking, close-on-exec listening socket, which the caller owns.
    @raise NamespaceError: the namespace could not be entered or the socket not set up; the
        thread is back in its own namespace and nothing is left open.
    """
    name = _name(netns_path)
    where = _endpoint(address, port, interface, family)
    if family not in (socket.AF_INET, socket.AF_INET6):
        raise NamespaceError(name, f"cannot bind {where}: unsupported address family {family!r}")
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        raise NamespaceError(name, f"cannot bind {where}: not an IP address") from None
    if (ip.version == 6) != (family == socket.AF_INET6):
        raise NamespaceError(name, f"cannot bind {where}: address does not match the address family")
    sock: socket.socket | None = None
    step = "bind"
    with _inside(netns_path):
        try:
            step = "create a socket for"
            sock = socket.socket(family, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
            step = "bind"
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0 if ip.is_unspecified else 1)
            if freebind:
                _set_freebind(sock, family)
            scope = 0
            if interface:
                step = "bind"
                # Interface indexes are per namespace: resolve the name while inside.
                try:
                    scope = socket.if_nametoindex(interface)
                except OSError:
                    raise OSError(errno.ENODEV, f"no interface {interface} in the namespace") from None
                sock.setsockopt(socket.SOL_SOCKET, _SO_BINDTODEVICE, interface.encode() + b"\0")
            if family == socket.AF_INET6:
                sock.bind((address, port, 0, scope))
            else:
                sock.bind((address, port))
            step = "listen on"
            sock.listen(backlog)
            sock.setblocking(False)
        except OSError as e:
            if sock is not None:
                sock.close()
            raise NamespaceError(name, f"cannot {step} {where}: {_oserror(e)}", e.errno) from None
    return sock


def _set_freebind(sock: socket.socket, family: int) -> None:
    if family == socket.AF_INET6:
        try:
            sock.setsockopt(socket.IPPROTO_IPV6, _IPV6_FREEBIND, 1)
            return
        except OSError as e:
            if e.errno != errno.ENOPROTOOPT:  # kernels before 4.15: IP_FREEBIND covers IPv6 too
                raise
    sock.setsockopt(socket.IPPROTO_IP, _IP_FREEBIND, 1)


def _oserror(e: OSError) -> str:
    if e.errno is not None and e.strerror:
        return f"[Errno {e.errno}] {e.strerror}"
    return str(e)


def interfaces_with_address(netns_path: str, address: str) -> list[str]:
    """
    Name the devices in a namespace that hold an IPv6 address, in the kernel's order.

    Used to find the DHCP or OVN metadata tap holding C{fe80::a9fe:a9fe}, for a link-local
    listener's C{interface}.  A tentative address (DAD not finished) is listed too; an address
    that failed DAD is not.  A namespace without IPv6 has none.

    @param netns_path: a namespace file, e.g. C{/run/netns/ovnmeta-<network id>}.
    @param address: an IPv6 address in any notation.
    @raise NamespaceError: the namespace could not be entered or read, or C{address} is not an
        IPv6 address.
    """
    name = _name(netns_path)
    try:
        wanted = ipaddress.IPv6Address(address.split("%", 1)[0]).packed.hex()
    except ValueError:
        raise NamespaceError(name, f"not an IPv6 address: {address!r}") from None
    with _inside(netns_path):
        try:
            with open(_IF_INET6) as f:
                table = f.read()
        except FileNotFoundError:
            return []
        except OSError as e:
            raise NamespaceError(name, f"cannot read {_IF_INET6}: {_oserror(e)}", e.errno) from None
    found: list[str] = []
    for line in table.splitlines():
        fields = line.split()
        # address, ifindex, prefix length, scope, flags, device (all hex but the last)
        if len(fields) < 6 or fields[0] != wanted:
            continue
        if int(fields[4], 16) & 0x08:  # IFA_F_DADFAILED
            continue
        if fields[5] not in found:
            found.append(fields[5])
    return found


def adopt(reactor: IReactorSocket, sock: socket.socket, factory: ServerFactory) -> IListeningPort:
    """
    Serve a listening socket with the reactor, and close the caller's socket object.

    The reactor keeps its own duplicate of the descriptor, so the port stays in the namespace the
    socket was created in; stop it with C{stopListening()}.  The socket is closed even when the
    reactor refuses it.

    @param reactor: an L{IReactorSocket} provider (the global reactor on Linux).
    @param sock: a listening socket, e.g. from L{listening_socket_in_namespace}.
    @param factory: the protocol factory serving the connections.
    """
    try:
        return reactor.adoptStreamPort(sock.fileno(), sock.family, factory)
    finally:
        sock.close()
