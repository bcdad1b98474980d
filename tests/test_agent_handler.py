"""The metadata agent: identity headers, lookups, signing, forwarding, status mapping, timeouts."""

from __future__ import annotations

import os
from typing import Any

from twisted.internet.defer import Deferred, fail, maybeDeferred, succeed
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.task import Clock
from twisted.logger import capturedLogs, formatEvent
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from mdsvc.agent.forwarder import APIForwarder
from mdsvc.agent.handler import MetadataAgent
from mdsvc.agent.ratelimit import SlidingWindowLimiter
from mdsvc.agent.server import AgentHandler, socket_mode
from mdsvc.hop import sign
from mdsvc.http import HTTPRequest, HTTPResponse
from mdsvc.httpclient import HTTPPool
from mdsvc.interfaces import ICachingLookup, IInstanceLookup, LookupUnavailable
from mdsvc.testing import MemoryLookup, connect_to
from tests.http import request as raw_request
from tests.http import response as raw_response

NET = "7f1e1b0c-1111-2222-3333-444455556666"


class FakeAPI:
    """An API handler that records what reaches it and answers as told."""

    def __init__(self, code: int = 200, body: bytes = b"web-1.novalocal", ctype: bytes = b"text/plain; charset=UTF-8") -> None:
        self.code, self.body, self.ctype = code, body, ctype
        self.seen: list[dict[str, Any]] = []
        self.codes: list[int] = []

    def __call__(self, request: HTTPRequest) -> HTTPResponse:
        self.seen.append({"method": request.method, "uri": request.target, "body": request.body, "headers": request.headers})
        code = self.codes.pop(0) if self.codes else self.code
        return HTTPResponse(code, ((b"Content-Type", self.ctype),), self.body)


class Harness:
    """An agent over a memory lookup and a fake API reached over an in-memory connection pool."""

    def __init__(self, api: Any = None, connect: Any = None, limiter: SlidingWindowLimiter | None = None) -> None:
        self.clock = Clock()
        self.api = api or FakeAPI()
        self.pool = HTTPPool(connect or connect_to(self.api), b"9.9.9.9:8775", clock=self.clock)
        self.lookup = MemoryLookup({("network", NET, "10.0.0.5"): ("inst-1", "proj-1"),
                                    ("router", "r1", "10.0.0.5"): ("inst-2", "proj-2"),
                                    ("network", NET, "fa:16:3e:12:34:56"): ("inst-6", "proj-6")})
        self.agent = MetadataAgent(self.lookup, APIForwarder(self.pool, "http://9.9.9.9:8775", 20), "secret", limiter, clock=self.clock)

    def request(self, **kw: Any) -> Deferred[HTTPResponse]:
        """
        A proxied request on the agent's socket, as our proxies and Neutron's haproxy send it:
        C{forwarded_for}, C{network_ids}, C{router_ids} are the identity headers' values.
        """
        values: dict[str, Any] = dict(method=b"GET", path=b"/the_path", forwarded_for=(b"10.0.0.5",), network_ids=(NET.encode(),),
                                      router_ids=(), accept=None, body=b"")
        values.update(kw)
        headers: dict[bytes, list[bytes]] = {}
        for name, key in ((b"x-forwarded-for", "forwarded_for"), (b"x-neutron-network-id", "network_ids"),
                          (b"x-neutron-router-id", "router_ids")):
            if values[key]:
                headers[name] = list(values[key])
        if values["accept"]:
            headers[b"accept"] = [values["accept"]]
        request = HTTPRequest(values["method"], values["path"], b"HTTP/1.1", headers, values["body"], None)
        return maybeDeferred(AgentHandler(self.agent), request)

    def handle(self, case: SynchronousTestCase, **kw: Any) -> HTTPResponse:
        """The answer to L{request}, which must come at once."""
        return case.successResultOf(self.request(**kw))


class ForwardingTests(SynchronousTestCase):
    """What reaches the API, and what comes back (neutron spec §10 items 1-4)."""

    def test_exact_upstream_request(self) -> None:
        """One call: method, URL with path and query, exactly the four identity headers, body."""
        h = Harness()
        r = h.handle(self, method=b"POST", path=b"/openstack/latest/password?x=1", body=b"pw", accept=b"*/*")
        self.assertEqual((r.code, r.body), (200, b"web-1.novalocal"))
        self.assertEqual(len(h.api.seen), 1)
        seen = h.api.seen[0]
        self.assertEqual((seen["method"], seen["uri"], seen["body"]), (b"POST", b"/openstack/latest/password?x=1", b"pw"))
        identity = {k: v for k, v in seen["headers"].items() if k.startswith(b"x-")}
        self.assertEqual(identity, {
            b"x-forwarded-for": [b"10.0.0.5"], b"x-instance-id": [b"inst-1"], b"x-tenant-id": [b"proj-1"],
            b"x-instance-id-signature": [sign("secret", "inst-1").encode()],
            b"x-mdsvc-request-id": [b"1"],  # the pool's correlation id, echoed by mdsvc's API
        })
        self.assertNotIn(b"accept", seen["headers"])

    def test_content_type_relayed(self) -> None:
        """A 200 keeps the API's content type and body."""
        h = Harness(FakeAPI(200, b'{"uuid": "x"}', b"application/json"))
        r = h.handle(self)
        self.assertIn((b"Content-Type", b"application/json"), r.headers)
        self.assertEqual(r.body, b'{"uuid": "x"}')

    def test_statuses_relayed(self) -> None:
        """400, 403, 409, 500, 502, 503 and 504 of the API reach the guest as they are."""
        for code in (400, 403, 409, 500, 502, 503, 504):
            with capturedLogs():
                r = Harness(FakeAPI(code, b"nova says")).handle(self)
            self.assertEqual((r.code, r.body), (code, b"nova says"))

    def test_forbidden_warns_about_secret(self) -> None:
        """A 403 logs the shared-secret warning."""
        with capturedLogs() as events:
            Harness(FakeAPI(403)).handle(self)
        self.assertTrue(any("shared secrets do not match" in e.get("log_format", "") for e in events))

    def test_unexpected_status_is_502(self) -> None:
        """A redirect or other status the API never sends is the agent's 502."""
        with capturedLogs():
            r = Harness(FakeAPI(302)).handle(self, accept=b"text/plain")
        self.assertEqual(r.code, 502)
        self.assertIn(b"unexpected status 302", r.body)

    def test_api_unreachable_is_503(self) -> None:
        """A refused connection is 503 with Neutron's text."""
        with capturedLogs():
            r = Harness(connect=lambda factory: fail(ConnectionRefusedError())).handle(self, accept=b"text/plain")
        self.assertEqual(r.code, 503)
        self.assertIn(b"The remote metadata server is temporarily unavailable. Please try again later.", r.body)

    def test_api_timeout_is_504(self) -> None:
        """An API that does not answer within the timeout is the agent's 504, not a hang."""
        h = Harness(api=lambda request: Deferred())
        d = h.request(path=b"/x")
        h.clock.advance(19.9)
        self.assertNoResult(d)
        with capturedLogs():
            h.clock.advance(0.1)
        self.assertEqual(self.successResultOf(d).code, 504)

    def test_router_lookup(self) -> None:
        """A router header looks up behind the router."""
        h = Harness()
        h.handle(self, network_ids=(), router_ids=(b"r1",))
        self.assertEqual(h.lookup.calls, [("10.0.0.5", None, "r1", None)])
        self.assertEqual(h.api.seen[0]["headers"][b"x-instance-id"], [b"inst-2"])

    def test_ovn_network_header(self) -> None:
        """X-OVN-Network-ID counts as the network header (the server passes it in network_ids)."""
        h = Harness()
        _, channel = raw_request(AgentHandler(h.agent), b"GET", b"/latest", {b"X-OVN-Network-ID": NET.encode(), b"X-Forwarded-For": b"10.0.0.5"})
        self.assertEqual(raw_response(channel).code, 200)  # type: ignore[union-attr]

    def test_ovn_network_header_tokens(self) -> None:
        """
        Behind OVN's haproxy (X-OVN-Network-ID), a guest's session token PUT and its token reach
        the API signed for the instance found on that network, as behind Neutron's.
        """
        h = Harness()
        headers = {b"X-OVN-Network-ID": NET.encode(), b"X-Forwarded-For": b"10.0.0.5"}
        _, channel = raw_request(AgentHandler(h.agent), b"PUT", b"/latest/api/token",
                                 {**headers, b"X-aws-ec2-metadata-token-ttl-seconds": b"60"})
        self.assertEqual(raw_response(channel).code, 200)  # type: ignore[union-attr]
        _, channel = raw_request(AgentHandler(h.agent), b"GET", b"/latest/meta-data/", {**headers, b"X-aws-ec2-metadata-token": b"T0K"})
        self.assertEqual(raw_response(channel).code, 200)  # type: ignore[union-attr]
        self.assertEqual(h.lookup.calls[0][:2], ("10.0.0.5", NET))
        put, get = h.api.seen
        self.assertEqual((put["method"], put["headers"][b"x-aws-ec2-metadata-token-ttl-seconds"]), (b"PUT", [b"60"]))
        self.assertEqual(get["headers"][b"x-aws-ec2-metadata-token"], [b"T0K"])
        self.assertEqual(put["headers"][b"x-instance-id"], get["headers"][b"x-instance-id"])


class AddressTests(SynchronousTestCase):
    """Guest addresses (neutron spec §10 item 5)."""

    def test_ipv4_mapped(self) -> None:
        """::ffff:10.0.0.5 is looked up (and forwarded) as 10.0.0.5."""
        h = Harness()
        h.handle(self, forwarded_for=(b"::ffff:10.0.0.5",))
        self.assertEqual(h.lookup.calls[0][0], "10.0.0.5")
        self.assertEqual(h.api.seen[0]["headers"][b"x-forwarded-for"], [b"10.0.0.5"])

    def test_link_local_by_mac(self) -> None:
        """An IPv6 link-local address is looked up by the MAC it derives from."""
        h = Harness()
        r = h.handle(self, forwarded_for=(b"fe80::f816:3eff:fe12:3456",))
        self.assertEqual(h.lookup.calls[0][3], "fa:16:3e:12:34:56")
        self.assertEqual((r.code, h.api.seen[0]["headers"][b"x-instance-id"]), (200, [b"inst-6"]))


class RefusalTests(SynchronousTestCase):
    """Malformed proxy requests are refused before any lookup."""

    def check(self, code: int, text: bytes, **kw: Any) -> None:
        h = Harness()
        with capturedLogs():
            r = h.handle(self, accept=b"text/plain", **kw)
        self.assertEqual(r.code, code)
        self.assertIn(text, r.body)
        self.assertEqual((h.lookup.calls, h.api.seen), ([], []))

    def test_both_headers(self) -> None:
        """Network and router headers together: 400, no lookup (spec §10 item 8)."""
        self.check(400, f"Both network {NET} and router r1 defined.".encode(), router_ids=(b"r1",))

    def test_no_identity(self) -> None:
        """Neither header: 400."""
        self.check(400, b"Neither a network nor a router ID", network_ids=())

    def test_multi_valued_forwarded_for(self) -> None:
        """A guest-supplied X-Forwarded-For next to the proxy's is refused, in both forms."""
        self.check(400, b"exactly one address", forwarded_for=(b"10.0.0.99", b"10.0.0.5"))
        self.check(400, b"exactly one address", forwarded_for=(b"10.0.0.99, 10.0.0.5",))
        self.check(400, b"exactly one address", forwarded_for=())

    def test_bad_address(self) -> None:
        """An X-Forwarded-For that is no address: 400."""
        self.check(400, b"is not an IP address", forwarded_for=(b"nonsense",))

    def test_two_network_values(self) -> None:
        """Two different network ids (a forged OVN header next to the real one): 400."""
        self.check(400, b"Only one network or router ID", network_ids=(NET.encode(), b"forged"))


class LookupOutcomeTests(SynchronousTestCase):
    """What the lookup says, the guest sees."""

    def test_not_found(self) -> None:
        """No port: 404 naming the network, no API call."""
        h = Harness()
        with capturedLogs():
            r = h.handle(self, forwarded_for=(b"10.0.0.77",), accept=b"text/plain")
        self.assertEqual(r.code, 404)
        self.assertIn(f"Instance was not found on network {NET}.".encode(), r.body)
        self.assertEqual(h.api.seen, [])

    def test_backend_down(self) -> None:
        """A failing backend: 503 at once."""
        h = Harness()
        h.lookup.broken = LookupUnavailable("neutron: connection refused")
        with capturedLogs():
            r = h.handle(self)
        self.assertEqual(r.code, 503)

    def test_relookup_after_404(self) -> None:
        """An API 404 makes the agent forget the cached answer and, if the port moved, ask again once."""
        api = FakeAPI(200)
        api.codes = [404]
        h = Harness(api)

        class Moving(MemoryLookup):
            """The port gets a new instance right after the first lookup."""

            def lookup(self, ip: str, network_id: Any = None, router_id: Any = None, mac: Any = None) -> Any:
                d = super().lookup(ip, network_id, router_id, mac)
                self.entries[("network", NET, "10.0.0.5")] = ("inst-new", "proj-1")
                return d

        h.lookup = Moving(dict(h.lookup.entries))
        h.agent.lookup = h.lookup
        with capturedLogs() as events:
            r = h.handle(self)
        self.assertEqual(r.code, 200)
        self.assertEqual(h.lookup.forgotten, [("10.0.0.5", NET, None, None)])
        self.assertEqual([s["headers"][b"x-instance-id"] for s in api.seen], [[b"inst-1"], [b"inst-new"]])
        said = [formatEvent(e) for e in events]
        self.assertEqual(said, ["10.0.0.5: the metadata API does not know instance inst-1; the address now belongs to instance "
                                "inst-new: asking again for it"])

    def test_404_instance_gone(self) -> None:
        """When the fresh lookup finds no instance, the guest gets 404 and the log says the instance is gone."""
        h = Harness(FakeAPI(404))

        class Vanishing(MemoryLookup):
            """The port is deleted right after the first lookup."""

            def lookup(self, ip: str, network_id: Any = None, router_id: Any = None, mac: Any = None) -> Any:
                d = super().lookup(ip, network_id, router_id, mac)
                self.entries.pop(("network", NET, "10.0.0.5"), None)
                return d

        h.lookup = Vanishing(dict(h.lookup.entries))
        h.agent.lookup = h.lookup
        with capturedLogs() as events:
            r = h.handle(self)
        self.assertEqual(r.code, 404)
        said = [formatEvent(e) for e in events]
        self.assertIn("10.0.0.5: instance inst-1 is not present anymore (the metadata API does not know it, and a fresh lookup "
                      "finds no instance)", said)
        self.assertFalse([line for line in said if "skipping cache" in line])

    def test_404_of_a_path_not_an_instance(self) -> None:
        """
        An ordinary 404 (the instance is there, the path is not) does not log Neutron's "is not
        present anymore" line: only a debug line saying the instance is still found.
        """
        h = Harness(FakeAPI(404))
        with capturedLogs() as events:
            r = h.handle(self, path=b"/latest/meta-data/nothing-here")
        self.assertEqual(r.code, 404)
        self.assertEqual([(e["log_level"].name, formatEvent(e)) for e in events], [
            ("debug", "GET /latest/meta-data/nothing-here: 404 for instance inst-1, which a fresh lookup still finds: no such path"),
        ])

    def test_no_relookup_without_cache(self) -> None:
        """
        A backend that keeps no answers (not an L{ICachingLookup}) is asked once: an API 404 is
        relayed, with nothing to forget and no second lookup.
        """
        h = Harness(FakeAPI(404))

        @implementer(IInstanceLookup)
        class Uncached:
            """Only what IInstanceLookup asks for: a lookup, counted."""

            name = "uncached"

            def __init__(self) -> None:
                self.calls = 0

            def lookup(self, ip: str, network_id: Any = None, router_id: Any = None, mac: Any = None) -> Any:
                self.calls += 1
                return succeed(("inst-1", "proj-1"))

        uncached = Uncached()
        self.assertTrue(verifyObject(IInstanceLookup, uncached))
        self.assertFalse(ICachingLookup.providedBy(uncached))
        h.agent.lookup = uncached
        with capturedLogs():
            r = h.handle(self)
        self.assertEqual((r.code, uncached.calls, len(h.api.seen)), (404, 1, 1))

    def test_memory_lookup_interface(self) -> None:
        """mdsvc.testing's MemoryLookup is an ICachingLookup, as the lookup cache is: the agent forgets through it."""
        self.assertTrue(verifyObject(ICachingLookup, Harness().lookup))

    def test_404_same_instance_not_retried(self) -> None:
        """When the fresh lookup finds the same instance, the 404 stands and the API is asked once."""
        h = Harness(FakeAPI(404))
        with capturedLogs():
            r = h.handle(self)
        self.assertEqual((r.code, len(h.api.seen)), (404, 1))


class HostileInputTests(SynchronousTestCase):
    """Nothing a guest (or a tenant's port) sends reaches the API unchecked."""

    def test_malformed_ids_refused(self) -> None:
        """Network or router ids with controls, spaces or punctuation get 400 and no lookup, no forward."""
        h = Harness()
        for field in ("network_ids", "router_ids"):
            for bad in [b"net\r\nX-Instance-ID: victim", b"a b", b"net\x00", b"../x", b"n" * 300]:
                with capturedLogs():
                    r = h.handle(self, **{"network_ids": (), field: (bad,)})
                self.assertEqual(r.code, 400, bad)
                self.assertNotIn(b"victim", r.body)
        self.assertEqual(h.api.seen, [])

    def test_unsafe_target_refused(self) -> None:
        """A target that is not an origin-form path of visible ASCII gets 400 and is not forwarded."""
        h = Harness()
        for path in [b"/a\r\nX-Instance-ID: v", b"/a b", b"*", b"h:80", b"/\xff"]:
            with capturedLogs():
                self.assertEqual(h.handle(self, path=path).code, 400, path)
        self.assertEqual(h.api.seen, [])

    def test_hostile_device_id_never_forwarded(self) -> None:
        """A port whose device_id holds header-injection bytes (a tenant sets it freely) is no instance: 404."""
        h = Harness()
        h.lookup.entries[("network", NET, "10.0.0.5")] = ("inst-1\r\nX-Instance-ID: victim", "proj-1")
        with capturedLogs():
            r = h.handle(self)
        self.assertEqual(r.code, 404)
        self.assertEqual(h.api.seen, [])

    def test_bad_forwarded_for_not_echoed(self) -> None:
        """A malformed X-Forwarded-For gets 400 without its bytes in the page."""
        h = Harness()
        with capturedLogs():
            r = h.handle(self, forwarded_for=(b"<script>" + b"x" * 5000,))
        self.assertEqual(r.code, 400)
        self.assertNotIn(b"<script>", r.body)
        self.assertLess(len(r.body), 1000)

    def test_missing_paths_bounded_relookup(self) -> None:
        """
        A guest asking for 100 missing paths costs one forget of its cached lookup (and one debug
        line) per interval, not one each; after the interval the next 404 looks afresh again.
        """
        h = Harness(FakeAPI(404))
        h.agent.relookup_interval = 2.0
        with capturedLogs() as events:
            codes = [h.handle(self, path=b"/missing/%d" % i).code for i in range(100)]
        self.assertEqual(set(codes), {404})
        self.assertEqual(len(h.lookup.forgotten), 1)
        self.assertEqual(len([e for e in events if "not present anymore" in e["log_format"]]), 0)
        self.assertEqual(len([e for e in events if "no such path" in e["log_format"]]), 1)
        self.assertEqual(len(h.api.seen), 100)
        h.clock.advance(2)
        with capturedLogs():
            h.handle(self, path=b"/missing/again")
        self.assertEqual(len(h.lookup.forgotten), 2)

    def test_in_flight_cap(self) -> None:
        """Past its in-flight limit a guest gets 429; its other requests and other guests go on."""
        waiting: list[Deferred[HTTPResponse]] = []

        def slow(request: HTTPRequest) -> Deferred[HTTPResponse]:
            d: Deferred[HTTPResponse] = Deferred()
            waiting.append(d)
            return d

        h = Harness(api=slow)
        h.pool.size = h.pool.ceiling = 10
        h.agent.max_in_flight = 2
        pending = [h.request(path=b"/p") for _ in range(2)]
        with capturedLogs():
            self.assertEqual(h.handle(self).code, 429)
        h.lookup.entries[("network", NET, "10.0.0.6")] = ("inst-3", "p")
        other = h.request(path=b"/p", forwarded_for=(b"10.0.0.6",))
        for d in waiting:
            d.callback(HTTPResponse(200, (), b"ok"))
        self.assertEqual([self.successResultOf(d).code for d in pending + [other]], [200, 200, 200])
        again = h.request(path=b"/p")
        waiting[-1].callback(HTTPResponse(200, (), b"ok"))
        self.assertEqual(self.successResultOf(again).code, 200, "the slots were given back")


class RateLimitTests(SynchronousTestCase):
    """Rate limiting in the agent answers 429."""

    def test_429(self) -> None:
        """Past the limit a guest gets 429; another guest is unaffected."""
        clock = Clock()
        h = Harness(limiter=SlidingWindowLimiter(clock, ((10, 2),)))
        with capturedLogs():
            codes = [h.handle(self).code for _ in range(3)]
        self.assertEqual(codes, [200, 200, 429])
        h.lookup.entries[("network", NET, "10.0.0.6")] = ("inst-3", "p")
        self.assertEqual(h.handle(self, forwarded_for=(b"10.0.0.6",)).code, 200)


class SocketModeTests(SynchronousTestCase):
    """metadata_proxy_socket_mode (neutron spec §6, §10 item 13)."""

    def test_modes(self) -> None:
        """Fixed modes and deduction."""
        self.assertEqual(socket_mode("user", "", ""), 0o644)
        self.assertEqual(socket_mode("group", "", ""), 0o664)
        self.assertEqual(socket_mode("all", "", ""), 0o666)
        self.assertEqual(socket_mode("deduce", "", ""), 0o644)
        self.assertEqual(socket_mode("deduce", str(os.geteuid()), ""), 0o644)
        self.assertEqual(socket_mode("deduce", "nobody", ""), 0o664 if os.geteuid() != 65534 else 0o644)
        self.assertEqual(socket_mode("deduce", "nobody", str(os.getegid())), 0o664)
        self.assertEqual(socket_mode("deduce", "nobody", "nogroup"), 0o666 if os.getegid() != 65534 else 0o664)

    def test_unknown_user(self) -> None:
        """An unknown user is a clear error."""
        e = self.assertRaises(ValueError, socket_mode, "deduce", "no-such-user-xyz", "")
        self.assertEqual(str(e), "Invalid user/uid: 'no-such-user-xyz'")
