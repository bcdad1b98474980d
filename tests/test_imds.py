"""
Session tokens across the hops: what a proxy passes on (L{mdsvc.imds}), the headers on the
agent's socket and to the API, the whole chain in memory (over HTTP and in one process), and the
hop limit of the answer to a PUT (L{mdsvc.hoplimit}).
"""

from __future__ import annotations

import socket
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.testing import StringTransport
from twisted.logger import capturedLogs
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from mdsvc.agent.forwarder import APIForwarder
from mdsvc.agent.handler import MetadataAgent
from mdsvc.agent.server import AgentHandler
from mdsvc.api.handler import APIHandler
from mdsvc.api.inprocess import InProcessAPI
from mdsvc.api.tokens import SessionTokens
from mdsvc.hop import GuestRequest, IAgentHop, SignedRequest, guest_request_headers, read_guest_request, signed_request_headers
from mdsvc.hoplimit import limit_hops
from mdsvc.http import HTTPRequest, HTTPResponse
from mdsvc.imds import MALFORMED, carried
from mdsvc.proxy.http import AgentSocketUpstream, NamespaceProxyHandler
from mdsvc.testing import MemoryLookup, stub_pool
from tests.http import Connection, request, response
from tests.test_api_resource import UUID, Harness, fixture
from tests.test_proxy_http import Recording

NET = "7f1e1b0c-1111-2222-3333-444455556666"
TTL = b"X-aws-ec2-metadata-token-ttl-seconds"
TOKEN = b"X-aws-ec2-metadata-token"


class CarriedTests(SynchronousTestCase):
    """What a hop passes on of a guest's token header."""

    def test_absent(self) -> None:
        """No header: nothing."""
        self.assertIsNone(carried(None))
        self.assertIsNone(carried([]))

    def test_one_value(self) -> None:
        """One value of visible ASCII passes as it is (surrounding blanks dropped)."""
        self.assertEqual(carried([b" AbC-_09= "]), b"AbC-_09=")

    def test_malformed(self) -> None:
        """Two values, inner blanks, controls, non-ASCII, empty or over 128 bytes pass as MALFORMED, never dropped."""
        for values in ([b"a", b"b"], [b"a b"], [b"a\tb"], [b"a\x00"], [b"\xff"], [b""], [b"a" * 129]):
            self.assertEqual(carried(values), MALFORMED, values)
        self.assertEqual(carried([b"a" * 128]), b"a" * 128)


class HeaderTests(SynchronousTestCase):
    """The token headers on the agent's socket and to the API."""

    def test_guest_request_round_trip(self) -> None:
        """A GuestRequest's token and TTL are written as headers and read back the same."""
        guest = GuestRequest(b"PUT", b"/latest/api/token", b"", "10.0.0.5", None, NET, None, None, b"tok", b"60")
        headers: dict[bytes, list[bytes]] = {}
        for name, value in guest_request_headers(guest):
            headers.setdefault(name.lower(), []).append(value)
        self.assertEqual(headers[b"x-aws-ec2-metadata-token"], [b"tok"])
        self.assertEqual(headers[b"x-aws-ec2-metadata-token-ttl-seconds"], [b"60"])
        read = read_guest_request(HTTPRequest(b"PUT", b"/latest/api/token", b"HTTP/1.1", headers, b"", None))
        self.assertEqual(read, guest)

    def test_without_tokens(self) -> None:
        """Without them, the headers are Neutron's, as before."""
        guest = GuestRequest(b"GET", b"/", b"", "10.0.0.5", None, NET, None)
        self.assertEqual([n for n, _ in guest_request_headers(guest)], [b"X-Forwarded-For", b"X-Neutron-Network-ID"])
        signed = SignedRequest(b"GET", b"/", b"", "10.0.0.5", UUID, "p", "sig")
        self.assertEqual(len(signed_request_headers(signed)), 4)

    def test_signed_request(self) -> None:
        """The agent passes the token headers on to the API, after Neutron's four."""
        signed = SignedRequest(b"GET", b"/", b"", "10.0.0.5", UUID, "p", "sig", b"tok", None)
        self.assertEqual(signed_request_headers(signed)[4:], [(TOKEN, b"tok")])

    def test_haproxy_passes_guest_headers(self) -> None:
        """Neutron's haproxy passes the guest's token headers through: the agent reads them (checked)."""
        headers = {b"x-forwarded-for": [b"10.0.0.5"], b"x-neutron-network-id": [NET.encode()],
                   b"x-aws-ec2-metadata-token": [b"a", b"b"]}
        read = read_guest_request(HTTPRequest(b"GET", b"/", b"HTTP/1.1", headers, b"", None))
        self.assertEqual((read.token, read.token_ttl), (MALFORMED, None))


class SocketTransport(StringTransport):
    """A string transport over a real (unconnected) socket, to read the options set on it."""

    def __init__(self, family: int, peer: Any) -> None:
        super().__init__(peerAddress=peer)
        self.sock = socket.socket(family, socket.SOCK_STREAM)

    def getHandle(self) -> socket.socket:
        return self.sock


class HopLimitTests(SynchronousTestCase):
    """The namespace proxy's answer to a PUT leaves with hop limit 1; other answers with the system's."""

    def connection(self, handler: Any, family: int = socket.AF_INET) -> tuple[Connection, SocketTransport]:
        from twisted.internet.address import IPv4Address, IPv6Address

        connection = Connection(handler)
        peer = IPv6Address("TCP", "fe80::f816:3eff:fe12:3456", 4000) if family == socket.AF_INET6 else IPv4Address("TCP", "10.0.0.5", 4000)
        transport = SocketTransport(family, peer)
        self.addCleanup(transport.sock.close)
        connection.protocol = connection.factory.buildProtocol(None)
        connection.transport = transport
        connection.protocol.makeConnection(transport)
        return connection, transport

    def test_put_answer_ipv4(self) -> None:
        """A PUT through the proxy: the guest connection's IP TTL becomes 1 before the answer is written."""
        up = Recording()
        connection, transport = self.connection(NamespaceProxyHandler("network", NET, up))
        default = transport.sock.getsockopt(socket.IPPROTO_IP, socket.IP_TTL)
        connection.send(b"GET", b"/latest/meta-data/")
        self.assertEqual(transport.sock.getsockopt(socket.IPPROTO_IP, socket.IP_TTL), default)
        connection.send(b"PUT", b"/latest/api/token", {TTL: b"60"})
        self.assertEqual(transport.sock.getsockopt(socket.IPPROTO_IP, socket.IP_TTL), 1)
        self.assertEqual(up.seen[-1].token_ttl, b"60")
        self.assertEqual(transport.value().count(b"HTTP/1.1 200 OK"), 2)

    def test_put_answer_ipv6(self) -> None:
        """On an IPv6 listener, the hop limit (and the TTL of IPv4-mapped peers) becomes 1."""
        connection, transport = self.connection(NamespaceProxyHandler("network", NET, Recording()), socket.AF_INET6)
        connection.send(b"PUT", b"/latest/api/token", {TTL: b"60"})
        self.assertEqual(transport.sock.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS), 1)
        self.assertEqual(transport.sock.getsockopt(socket.IPPROTO_IP, socket.IP_TTL), 1)

    def test_not_a_socket(self) -> None:
        """A transport without an IP socket (UNIX, tests) is left alone."""
        self.assertFalse(limit_hops(StringTransport(), 1))

    def test_error_answers_too(self) -> None:
        """Whatever the answer to a PUT (a 401, a 404), it is hop-limited too."""
        @implementer(IAgentHop)
        class Refusing:
            def handle(self, req: GuestRequest) -> Deferred[HTTPResponse]:
                return succeed(HTTPResponse(404, (), b""))

        connection, transport = self.connection(NamespaceProxyHandler("network", NET, Refusing()))
        connection.send(b"PUT", b"/latest/api/token", {TTL: b"60"})
        self.assertEqual(transport.sock.getsockopt(socket.IPPROTO_IP, socket.IP_TTL), 1)


class ChainTests(SynchronousTestCase):
    """A guest's token through proxy, agent and API, in memory: over HTTP hops and in one process."""

    def chain(self, mode: str, in_process: bool) -> tuple[Harness, NamespaceProxyHandler]:
        h = Harness(self, secret="s3cret")
        h.store.add(fixture())
        h.app.tokens = SessionTokens(h.clock, mode == "required", "s3cret")
        lookup = MemoryLookup({("network", NET, "10.0.0.5"): (UUID, "test")})
        api: Any = InProcessAPI(h.app) if in_process else APIForwarder(stub_pool(APIHandler(h.app), clock=h.clock), "api", 20)
        agent = MetadataAgent(lookup, api, "s3cret", clock=h.clock)
        if in_process:
            return h, NamespaceProxyHandler("network", NET, agent)
        upstream = AgentSocketUpstream(None, "/nonexistent", h.clock, 20)
        upstream.pool = stub_pool(AgentHandler(agent), clock=h.clock)
        return h, NamespaceProxyHandler("network", NET, upstream)

    def guest(self, proxy: NamespaceProxyHandler, method: bytes, path: bytes, headers: dict[bytes, bytes] | None = None) -> Any:
        _, connection = request(proxy, method, path, headers, peer="10.0.0.5")  # type: ignore[arg-type]
        return response(connection)

    def test_required(self) -> None:
        """With tokens required: 401 without, a token from the PUT, 200 with it; over HTTP hops and in one process."""
        for in_process in (False, True):
            h, proxy = self.chain("required", in_process)
            with capturedLogs():
                self.assertEqual(self.guest(proxy, b"GET", b"/latest/meta-data/instance-id").code, 401)
            put = self.guest(proxy, b"PUT", b"/latest/api/token", {TTL: b"120"})
            self.assertEqual((put.code, put.header(b"x-aws-ec2-metadata-token-ttl-seconds")), (200, b"120"))
            r = self.guest(proxy, b"GET", b"/latest/meta-data/instance-id", {TOKEN: put.body})
            self.assertEqual((r.code, r.body), (200, b"i-00000001"))
            with capturedLogs():
                self.assertEqual(self.guest(proxy, b"GET", b"/latest/meta-data/instance-id", {TOKEN: b"x" * 200}).code, 401)

    def test_guest_forwarded_for_dropped(self) -> None:
        """Behind the proxies a guest's X-Forwarded-For is dropped, not refused: the PUT is answered."""
        _, proxy = self.chain("required", False)
        put = self.guest(proxy, b"PUT", b"/latest/api/token", {TTL: b"120", b"X-Forwarded-For": b"1.2.3.4"})
        self.assertEqual(put.code, 200)

    def test_bad_ttl_through_chain(self) -> None:
        """A malformed TTL reaches the API as MALFORMED: 400, as the API answers any bad TTL."""
        _, proxy = self.chain("optional", False)
        self.assertEqual(self.guest(proxy, b"PUT", b"/latest/api/token", {TTL: b"6 0"}).code, 400)
        self.assertEqual(self.guest(proxy, b"PUT", b"/latest/api/token").code, 400)
