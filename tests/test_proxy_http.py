"""The namespace proxy's HTTP side: identity stripping, the guest's address, the agent upstreams."""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred, succeed
from twisted.logger import capturedLogs
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site
from zope.interface import implementer
from zope.interface.verify import verifyObject

from mdsvc.agent.handler import AgentRequest
from mdsvc.http import HTTPRequest, HTTPResponse
from mdsvc.proxy.http import AgentSocketUpstream, InProcessUpstream, IUpstream, NamespaceProxyHandler, guest_address
from tests.http import request, response


@implementer(IUpstream)
class Recording:
    """An upstream that records requests and answers 200."""

    def __init__(self) -> None:
        self.seen: list[AgentRequest] = []

    def forward(self, req: AgentRequest) -> Deferred[HTTPResponse]:
        self.seen.append(req)
        return succeed(HTTPResponse(200, ((b"Content-Type", b"text/plain; charset=UTF-8"),), b"ok"))


class ResourceTests(SynchronousTestCase):
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
        seen = up.seen[0]
        self.assertEqual((seen.method, seen.path, seen.forwarded_for, seen.network_ids, seen.router_ids, seen.accept),
                         (b"GET", b"/latest/meta-data/?x=1", (b"10.0.0.5",), (b"net-a",), (), b"*/*"))

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
        _, channel = request(NamespaceProxyHandler("router", "r-1", up), b"POST", b"/openstack/latest/password", body=b"pw")
        self.assertEqual((up.seen[0].router_ids, up.seen[0].network_ids, up.seen[0].body), ((b"r-1",), (), b"pw"))

    def test_kind_checked(self) -> None:
        """Only network and router listeners exist."""
        self.assertRaises(ValueError, NamespaceProxyHandler, "subnet", "x", Recording())

    def test_guest_address(self) -> None:
        """The zone is dropped and IPv4-mapped addresses become IPv4."""

        def req(host: str) -> HTTPRequest:
            return HTTPRequest(b"GET", b"/", b"HTTP/1.1", {}, b"", host)

        self.assertEqual(guest_address(req("::ffff:10.0.0.5")), b"10.0.0.5")
        self.assertEqual(guest_address(req("fe80::f816:3eff:feaa:1%ifb1")), b"fe80::f816:3eff:feaa:1")

    def test_interfaces(self) -> None:
        """Both upstreams provide IUpstream."""
        self.assertTrue(verifyObject(IUpstream, InProcessUpstream(None)))  # type: ignore[arg-type]
        self.assertTrue(verifyObject(IUpstream, AgentSocketUpstream(reactor, "/nonexistent", reactor, 1)))


class Slow(Resource):
    """An agent that answers some paths never."""

    isLeaf = True

    def render(self, req: Any) -> Any:
        if req.path == b"/hang":
            return NOT_DONE_YET
        req.setHeader(b"content-type", b"application/json")
        headers = {k.decode().lower(): [v.decode() for v in vs] for k, vs in req.requestHeaders.getAllRawHeaders()}
        import json
        return json.dumps(headers).encode()


class SocketUpstreamTests(TestCase):
    """AgentSocketUpstream against a real UNIX socket on the real reactor."""

    def setUp(self) -> None:
        directory = tempfile.mkdtemp(prefix="mdsvc-")
        self.addCleanup(shutil.rmtree, directory, True)
        self.path = os.path.join(directory, "agent")
        self.upstream = AgentSocketUpstream(reactor, self.path, reactor, timeout=0.5)
        self.addCleanup(self.upstream.pool.close)

    def listen(self) -> None:
        port = reactor.listenUNIX(self.path, Site(Slow()))
        self.addCleanup(port.stopListening)

    async def test_headers_to_agent(self) -> None:
        """The agent receives the identity, the guest address and Accept, and the answer comes back."""
        self.listen()
        r = await self.upstream.forward(AgentRequest(b"GET", b"/x", forwarded_for=(b"10.0.0.5",), network_ids=(b"n1",), accept=b"*/*"))
        import json
        seen = json.loads(r.body)
        self.assertEqual((seen["x-forwarded-for"], seen["x-neutron-network-id"], seen["accept"]), (["10.0.0.5"], ["n1"], ["*/*"]))
        self.assertIn((b"Content-Type", b"application/json"), r.headers)

    async def test_no_agent_is_503(self) -> None:
        """No socket: 503 at once."""
        with capturedLogs():
            r = await self.upstream.forward(AgentRequest(b"GET", b"/x", forwarded_for=(b"10.0.0.5",), network_ids=(b"n1",)))
        self.assertEqual(r.code, 503)
        self.assertIn(b"No server is available to handle this request.", r.body)

    async def test_slow_agent_is_504(self) -> None:
        """An agent that does not answer within the timeout: 504."""
        self.listen()
        with capturedLogs():
            r = await self.upstream.forward(AgentRequest(b"GET", b"/hang", forwarded_for=(b"10.0.0.5",), network_ids=(b"n1",)))
        self.assertEqual(r.code, 504)
