"""The namespace proxy's HTTP side: identity stripping, the guest's address, the agent's socket."""

from __future__ import annotations

import os
import shutil
import tempfile

from twisted.internet import reactor
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import deferLater
from twisted.logger import capturedLogs
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from mdsvc.hop import GuestRequest, IAgentHop
from mdsvc.http import HTTPRequest, HTTPResponse, LeanHTTPFactory
from mdsvc.proxy.http import AgentSocketUpstream, NamespaceProxyHandler
from tests.http import request, response


@implementer(IAgentHop)
class Recording:
    """An agent that records requests and answers 200."""

    def __init__(self) -> None:
        self.seen: list[GuestRequest] = []

    def handle(self, req: GuestRequest) -> Deferred[HTTPResponse]:
        self.seen.append(req)
        return succeed(HTTPResponse(200, ((b"Content-Type", b"text/plain; charset=UTF-8"),), b"ok"))


class HandlerTests(SynchronousTestCase):
    """NamespaceProxyHandler."""

    def test_identity_headers_stripped(self) -> None:
        """Guest-sent identity headers never pass; the listener's identity and the peer address do."""
        up = Recording()
        res = NamespaceProxyHandler("network", "net-a", up)
        _, channel = request(res, b"GET", b"/latest/meta-data/?x=1", {
            b"X-Neutron-Network-ID": b"net-b", b"X-Neutron-Router-ID": b"r", b"X-OVN-Network-ID": b"net-c",
            b"X-Forwarded-For": b"10.0.0.99", b"X-Instance-ID": b"someone", b"Accept": b"*/*",
        }, peer="10.0.0.5")
        self.assertEqual(response(channel).body, b"ok")  # type: ignore[union-attr]
        self.assertEqual(up.seen, [GuestRequest(b"GET", b"/latest/meta-data/?x=1", b"", "10.0.0.5", None, "net-a", None, b"*/*")])

    def test_only_checked_bytes_pass(self) -> None:
        """An Accept with anything but visible ASCII is dropped; a target that is not a path gets 400, not forwarded."""
        up = Recording()
        res = NamespaceProxyHandler("network", "net-a", up)
        for accept in [b"text/plain\xff", b"a" * 2000]:
            request(res, b"GET", b"/latest", {b"Accept": accept})
        self.assertEqual([s.accept for s in up.seen], [None, None])
        _, channel = request(res, b"OPTIONS", b"*")
        self.assertEqual(response(channel).code, 400)  # type: ignore[union-attr]
        self.assertEqual(len(up.seen), 2)

    def test_router_identity_and_body(self) -> None:
        """A router listener states the router; a POST body is passed on."""
        up = Recording()
        request(NamespaceProxyHandler("router", "r-1", up), b"POST", b"/openstack/latest/password", body=b"pw")
        self.assertEqual((up.seen[0].router_id, up.seen[0].network_id, up.seen[0].body), ("r-1", None, b"pw"))

    def test_kind_checked(self) -> None:
        """Only network and router listeners exist."""
        self.assertRaises(ValueError, NamespaceProxyHandler, "subnet", "x", Recording())

    def test_guest_address(self) -> None:
        """The peer as the guest's address: IPv4-mapped as IPv4, link-local with its MAC, zone dropped."""
        up = Recording()
        res = NamespaceProxyHandler("network", "n", up)
        for peer in ("::ffff:10.0.0.5", "fe80::f816:3eff:feaa:1%ifb1"):
            request(res, b"GET", b"/", peer=peer)
        self.assertEqual([(s.address, s.mac) for s in up.seen],
                         [("10.0.0.5", None), ("fe80::f816:3eff:feaa:1", "fa:16:3e:aa:00:01")])

    def test_interfaces(self) -> None:
        """The socket upstream is an IAgentHop, as the agent itself is."""
        self.assertTrue(verifyObject(IAgentHop, AgentSocketUpstream(reactor, "/nonexistent", reactor, 1)))


def _echo_agent(request: HTTPRequest) -> HTTPResponse | Deferred[HTTPResponse]:
    """An agent socket server that answers with the identity headers it got (or hangs on /hang)."""
    if request.path == b"/hang":
        return Deferred()
    seen = b"|".join(b"%s=%s" % (n, b",".join(v)) for n, v in sorted(request.headers.items()) if n.startswith(b"x-"))
    return HTTPResponse(200, ((b"Content-Type", b"text/plain"),), seen)


class AgentSocketTests(TestCase):
    """AgentSocketUpstream against a real UNIX socket."""

    def setUp(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="mdsvc-")
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.path = os.path.join(self.dir, "agent.sock")
        self.upstream = AgentSocketUpstream(reactor, self.path, reactor, 1)
        self.addCleanup(self.upstream.pool.close)

    async def test_headers_to_agent(self) -> None:
        """The guest request goes out with Neutron's haproxy headers."""
        port = reactor.listenUNIX(self.path, LeanHTTPFactory(_echo_agent, reactor))
        self.addCleanup(port.stopListening)
        r = await self.upstream.handle(GuestRequest(b"GET", b"/x", b"", "10.0.0.5", None, "n1", None, None))
        self.assertEqual(r.code, 200)
        self.assertIn(b"x-forwarded-for=10.0.0.5", r.body)
        self.assertIn(b"x-neutron-network-id=n1", r.body)

    async def test_no_agent_is_503(self) -> None:
        """No socket: 503 at once, as haproxy."""
        with capturedLogs():
            r = await self.upstream.handle(GuestRequest(b"GET", b"/x", b"", "10.0.0.5", None, "n1", None, None))
        self.assertEqual(r.code, 503)

    async def test_slow_agent_is_504(self) -> None:
        """An agent that does not answer in time: 504."""
        factory = LeanHTTPFactory(_echo_agent, reactor)
        port = reactor.listenUNIX(self.path, factory)
        self.addCleanup(port.stopListening)
        with capturedLogs():
            r = await self.upstream.handle(GuestRequest(b"GET", b"/hang", b"", "10.0.0.5", None, "n1", None, None))
        self.assertEqual(r.code, 504)
        for server in list(factory._watched):  # the agent's side of the aborted connection
            server.transport.abortConnection()
        await deferLater(reactor, 0, lambda: None)
