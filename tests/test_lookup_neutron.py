"""Tests for L{mdsvc.lookup.neutron}: the Neutron REST lookup backend, against a fake cloud."""

from __future__ import annotations

import json
from typing import Any

from attrs import evolve
from treq.client import HTTPClient
from treq.testing import StubTreq
from twisted.internet.defer import CancelledError, Deferred, fail
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.task import Clock
from twisted.logger import capturedLogs
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET
from zope.interface.verify import verifyObject

from mdsvc.config import NeutronClientConfig
from mdsvc.hop import normalise_address
from mdsvc.interfaces import IInstanceLookup, LookupUnavailable
from mdsvc.lookup.neutron import (
    NETWORKS_PER_QUERY,
    NeutronLookup,
    NoVerificationPolicy,
    address_ports_query,
    build_http_client,
    router_ports_query,
)

PASSWORD = "s3cr3t-Pa55"
CONFIG = NeutronClientConfig(
    auth_url="http://keystone.test:5000/v3",
    username="mdsvc",
    password=PASSWORD,
    project_name="service",
    user_domain_name="UDom",
    project_domain_name="PDom",
    region_name="",
    valid_interfaces=("internal", "public"),
    endpoint_override="",
    cafile="",
    insecure=False,
    timeout=10.0,
)

ROUTER_QUERY = (
    "device_id=rid&device_owner=network:router_interface&device_owner=network:ha_router_replicated_interface"
    "&device_owner=network:router_interface_distributed&fields=network_id"
)


def port(device_id: str, network_id: str, ip: str | None = None, mac: str = "fa:16:3e:00:00:01",
         owner: str = "compute:nova", project: str | None = "proj", tenant: str | None = None) -> dict[str, Any]:
    """A Neutron port as the API lists it."""
    entry: dict[str, Any] = {"device_id": device_id, "device_owner": owner, "network_id": network_id, "mac_address": mac,
                             "fixed_ips": [{"ip_address": ip, "subnet_id": "sub"}] if ip else []}
    if project is not None:
        entry["project_id"] = project
    if tenant is not None:
        entry["tenant_id"] = tenant
    return entry


class FakeCloud(Resource):
    """
    Keystone (POST .../v3/auth/tokens) and Neutron (GET /v2.0/ports) in one resource, recording
    every request as (method, uri, headers, body) and filtering ports as Neutron does.
    """

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[tuple[bytes, bytes, Any, bytes]] = []
        self.ports: list[dict[str, Any]] = []
        self.valid: set[str] = set()
        self.issued = 0
        self.lifetime = "2030-01-01T01:00:00.000000Z"
        self.catalog: list[dict[str, Any]] = [{"type": "network", "name": "neutron", "endpoints": [
            {"interface": "public", "region_id": "RegionOne", "region": "RegionOne", "url": "http://public.neutron.test:9696"},
            {"interface": "internal", "region_id": "RegionOne", "region": "RegionOne", "url": "http://neutron.test:9696/"},
            {"interface": "internal", "region_id": "RegionTwo", "region": "RegionTwo", "url": "http://two.neutron.test:9696"},
        ]}, {"type": "compute", "endpoints": [{"interface": "internal", "url": "http://nova.test:8774"}]}]
        self.keystone_code = 201
        self.neutron_code = 200
        self.neutron_body: bytes | None = None
        self.hang_keystone = False
        self.hang_neutron = False
        self.held: list[Any] = []

    def render(self, request: Any) -> Any:
        body = request.content.read()
        self.requests.append((request.method, request.uri, request.requestHeaders, body))
        if request.method == b"POST" and request.path.endswith(b"/v3/auth/tokens"):
            return self.keystone(request)
        if request.method == b"GET" and request.path == b"/v2.0/ports":
            return self.neutron(request)
        request.setResponseCode(404)
        return b"{}"

    def keystone(self, request: Any) -> Any:
        if self.hang_keystone:
            self.held.append(request)
            return NOT_DONE_YET
        request.setResponseCode(self.keystone_code)
        if self.keystone_code != 201:
            return b'{"error": {"code": 401, "title": "Unauthorized"}}'
        self.issued += 1
        token = f"gAAAA-token-{self.issued}"
        self.valid.add(token)
        request.setHeader(b"X-Subject-Token", token.encode())
        request.setHeader(b"Content-Type", b"application/json")
        return json.dumps({"token": {"issued_at": "2030-01-01T00:00:00.000000Z", "expires_at": self.lifetime,
                                     "catalog": self.catalog, "methods": ["password"]}}).encode()

    def neutron(self, request: Any) -> Any:
        if self.hang_neutron:
            self.held.append(request)
            return NOT_DONE_YET
        if (request.getHeader(b"x-auth-token") or b"").decode() not in self.valid:
            request.setResponseCode(401)
            return b'{"error": "Authentication required"}'
        request.setResponseCode(self.neutron_code)
        if self.neutron_body is not None:
            return self.neutron_body
        args = {k.decode(): [v.decode() for v in vs] for k, vs in request.args.items()}
        found = []
        for p in self.ports:
            if "device_id" in args and p["device_id"] not in args["device_id"]:
                continue
            if "device_owner" in args and p["device_owner"] not in args["device_owner"]:
                continue
            if "network_id" in args and p["network_id"] not in args["network_id"]:
                continue
            if "mac_address" in args and p["mac_address"] not in args["mac_address"]:
                continue
            if "fixed_ips" in args:
                wanted = {f.partition("=")[2] for f in args["fixed_ips"]}
                if not wanted & {f["ip_address"] for f in p["fixed_ips"]}:
                    continue
            fields = args.get("fields")
            found.append({k: v for k, v in p.items() if not fields or k in fields})
        return json.dumps({"ports": found}).encode()

    def uris(self) -> list[tuple[bytes, bytes]]:
        """(method, uri) of every request so far."""
        return [(m, u) for m, u, _, _ in self.requests]


class Harness:
    """A NeutronLookup over StubTreq(FakeCloud) with a Clock."""

    def __init__(self, test: SynchronousTestCase, config: NeutronClientConfig = CONFIG) -> None:
        self.test = test
        self.cloud = FakeCloud()
        self.stub = StubTreq(self.cloud)
        self.clock = Clock()
        self.lookup = NeutronLookup(config, self.stub, self.clock)

    def start(self, *args: Any, **kwargs: Any) -> Deferred[Any]:
        """Start a lookup and let the fake cloud answer."""
        d = self.lookup.lookup(*args, **kwargs)
        self.stub.flush()
        return d

    def result(self, *args: Any, **kwargs: Any) -> Any:
        """The result of a lookup."""
        return self.test.successResultOf(self.start(*args, **kwargs))

    def failure(self, *args: Any, **kwargs: Any) -> str:
        """The LookupUnavailable message of a failed lookup."""
        return str(self.test.failureResultOf(self.start(*args, **kwargs), LookupUnavailable).value)


class QueryTests(SynchronousTestCase):
    """The exact requests (neutron spec §10 items 5-7)."""

    def setUp(self) -> None:
        self.h = Harness(self)
        self.h.cloud.ports = [
            port("rid", "net1", "10.0.0.1", owner="network:router_interface"),
            port("rid", "net2", "10.1.0.1", owner="network:ha_router_replicated_interface"),
            port("rid", "net2", "fd00::1", owner="network:router_interface_distributed"),
            port("rid", "ext", "203.0.113.1", owner="network:router_gateway"),
            port("device_id", "net2", "10.1.0.5", project="project_id"),
            port("vm-other", "net3", "10.1.0.5"),
        ]

    def test_interface(self) -> None:
        """NeutronLookup provides IInstanceLookup, named neutron."""
        self.assertTrue(verifyObject(IInstanceLookup, self.h.lookup))
        self.assertEqual(self.h.lookup.name, "neutron")

    def test_queryStrings(self) -> None:
        """The query builders' exact output."""
        self.assertEqual(router_ports_query("rid"), ROUTER_QUERY)
        self.assertEqual(address_ports_query(["net1", "net2"], "1.2.3.4", None),
                         "network_id=net1&network_id=net2&fixed_ips=ip_address%3D1.2.3.4&fields=device_id&fields=project_id&fields=tenant_id")
        self.assertEqual(address_ports_query(["the_id"], "fe80::1", "11:22:33:44:55:66"),
                         "network_id=the_id&mac_address=11:22:33:44:55:66&fields=device_id&fields=project_id&fields=tenant_id")

    def test_routerCase(self) -> None:
        """Authenticate, then the router's interface networks, then the port in them (§10 item 6)."""
        self.assertEqual(self.h.result("10.1.0.5", router_id="rid"), ("device_id", "project_id"))
        self.assertEqual(self.h.cloud.uris(), [
            (b"POST", b"/v3/auth/tokens"),
            (b"GET", b"/v2.0/ports?" + ROUTER_QUERY.encode()),
            (b"GET", b"/v2.0/ports?network_id=net1&network_id=net2&fixed_ips=ip_address%3D10.1.0.5"
                     b"&fields=device_id&fields=project_id&fields=tenant_id"),
        ])

    def test_keystoneRequest(self) -> None:
        """The v3 password authentication scoped to the project; Neutron gets the token."""
        self.h.result("10.1.0.5", network_id="net2")
        method, uri, headers, body = self.h.cloud.requests[0]
        self.assertEqual(json.loads(body), {"auth": {
            "identity": {"methods": ["password"], "password": {"user": {"name": "mdsvc", "domain": {"name": "UDom"}, "password": PASSWORD}}},
            "scope": {"project": {"name": "service", "domain": {"name": "PDom"}}}}})
        self.assertEqual(headers.getRawHeaders(b"content-type"), [b"application/json"])
        _, _, neutron_headers, _ = self.h.cloud.requests[1]
        self.assertEqual(neutron_headers.getRawHeaders(b"x-auth-token"), [b"gAAAA-token-1"])
        self.assertEqual(neutron_headers.getRawHeaders(b"accept"), [b"application/json"])

    def test_routerEmpty(self) -> None:
        """No port behind the router: None (§10 item 6)."""
        self.assertIsNone(self.h.result("10.9.9.9", router_id="rid"))

    def test_routerWithoutNetworks(self) -> None:
        """A router without interfaces: None after one query, never a search of all networks."""
        with capturedLogs() as events:
            self.assertIsNone(self.h.result("10.1.0.5", router_id="r-lonely"))
        self.assertEqual([u for m, u in self.h.cloud.uris() if m == b"GET"], [b"/v2.0/ports?" + ROUTER_QUERY.replace("rid", "r-lonely").encode()])
        self.assertEqual([e["router_id"] for e in events if e["log_level"].name == "warn"], ["r-lonely"])

    def test_networkCase(self) -> None:
        """One query with the network only (§10 item 7)."""
        self.h.cloud.ports.append(port("vm-1", "the_id", "192.168.1.1", project="p1"))
        ip, mac = normalise_address("::ffff:192.168.1.1")
        self.assertEqual(self.h.result(ip, network_id="the_id", mac=mac), ("vm-1", "p1"))
        self.assertEqual([u for m, u in self.h.cloud.uris() if m == b"GET"], [
            b"/v2.0/ports?network_id=the_id&fixed_ips=ip_address%3D192.168.1.1&fields=device_id&fields=project_id&fields=tenant_id"])

    def test_linkLocalByMac(self) -> None:
        """fe80::5054:ff:fede:5bbf looks up mac_address=52:54:00:de:5b:bf (§10 item 5)."""
        self.h.cloud.ports.append(port("vm-1", "the_id", "10.0.0.9", mac="52:54:00:de:5b:bf", project="p1"))
        ip, mac = normalise_address("fe80::5054:ff:fede:5bbf")
        self.assertEqual(self.h.result(ip, network_id="the_id", mac=mac), ("vm-1", "p1"))
        self.assertEqual([u for m, u in self.h.cloud.uris() if m == b"GET"], [
            b"/v2.0/ports?network_id=the_id&mac_address=52:54:00:de:5b:bf&fields=device_id&fields=project_id&fields=tenant_id"])

    def test_bothHeaders(self) -> None:
        """Given a network and a router, only the network query is made (§10 item 9)."""
        self.assertEqual(self.h.result("10.1.0.5", network_id="net2", router_id="rid"), ("device_id", "project_id"))
        self.assertEqual(len([m for m, _ in self.h.cloud.uris() if m == b"GET"]), 1)

    def test_neither(self) -> None:
        """Given neither, a TypeError and no request."""
        self.failureResultOf(self.h.start("10.1.0.5"), TypeError)
        self.assertEqual(self.h.cloud.requests, [])

    def test_tenantFallback(self) -> None:
        """A port without project_id (older Neutron) gives its tenant_id."""
        self.h.cloud.ports = [port("vm-1", "n", "10.0.0.5", project=None, tenant="t1")]
        self.assertEqual(self.h.result("10.0.0.5", network_id="n"), ("vm-1", "t1"))

    def test_emptyDevice(self) -> None:
        """A matched port with an empty device_id is no instance."""
        self.h.cloud.ports = [port("", "n", "10.0.0.5")]
        self.assertIsNone(self.h.result("10.0.0.5", network_id="n"))

    def test_severalPorts(self) -> None:
        """Two ports of two instances: None, the warning naming them."""
        self.h.cloud.ports = [port("vm-1", "n", "10.0.0.5"), port("vm-2", "n", "10.0.0.5")]
        with capturedLogs() as events:
            self.assertIsNone(self.h.result("10.0.0.5", network_id="n"))
        self.assertEqual([e["instances"] for e in events if "instances" in e], ["vm-1, vm-2"])

    def test_noPort(self) -> None:
        """No port: None, with Neutron's warning."""
        with capturedLogs() as events:
            self.assertIsNone(self.h.result("10.0.0.77", network_id="n"))
        warnings = [e for e in events if e["log_level"].name == "warn"]
        self.assertEqual([(e["log_format"], e["network_id"], e["ip"]) for e in warnings],
                         [("No port found in network {network_id} with IP address {ip}", "n", "10.0.0.77")])

    def test_manyNetworks(self) -> None:
        """A router with more networks than fit one query: the networks go in batches, results combined."""
        count = NETWORKS_PER_QUERY + 20
        self.h.cloud.ports = [port("rid", f"net{i:03d}", f"10.{i}.0.1", owner="network:router_interface") for i in range(count)]
        self.h.cloud.ports.append(port("vm-last", f"net{count - 1:03d}", "10.0.0.5", project="p"))
        self.assertEqual(self.h.result("10.0.0.5", router_id="rid"), ("vm-last", "p"))
        queries = [u for m, u in self.h.cloud.uris() if m == b"GET"][1:]
        self.assertEqual([u.count(b"network_id=") for u in queries], [NETWORKS_PER_QUERY, 20])

    def test_authUrlWithoutVersion(self) -> None:
        """An auth_url without /v3 gets it appended."""
        h = Harness(self, evolve(CONFIG, auth_url="http://keystone.test:5000/"))
        h.result("10.0.0.5", network_id="n")
        self.assertEqual(h.cloud.uris()[0], (b"POST", b"/v3/auth/tokens"))


class EndpointTests(SynchronousTestCase):
    """Which Neutron endpoint is called."""

    def neutron_host(self, config: NeutronClientConfig, catalog: list[dict[str, Any]] | None = None) -> bytes:
        """The Host header of the Neutron request after one lookup."""
        h = Harness(self, config)
        if catalog is not None:
            h.cloud.catalog = catalog
        h.result("10.0.0.5", network_id="n")
        return h.cloud.requests[1][2].getRawHeaders(b"host")[0]

    def test_firstValidInterface(self) -> None:
        """The first of valid_interfaces present in the catalog."""
        self.assertEqual(self.neutron_host(CONFIG), b"neutron.test:9696")
        self.assertEqual(self.neutron_host(evolve(CONFIG, valid_interfaces=("public", "internal"))), b"public.neutron.test:9696")
        self.assertEqual(self.neutron_host(evolve(CONFIG, valid_interfaces=("admin", "public"))), b"public.neutron.test:9696")

    def test_region(self) -> None:
        """With region_name, only that region's endpoints."""
        self.assertEqual(self.neutron_host(evolve(CONFIG, region_name="RegionTwo")), b"two.neutron.test:9696")

    def test_override(self) -> None:
        """endpoint_override wins over the catalog; a /v2.0 suffix is not doubled."""
        h = Harness(self, evolve(CONFIG, endpoint_override="http://override.test:9696/v2.0/"))
        h.result("10.0.0.5", network_id="n")
        self.assertEqual(h.cloud.requests[1][2].getRawHeaders(b"host"), [b"override.test:9696"])
        self.assertTrue(h.cloud.requests[1][1].startswith(b"/v2.0/ports?"))

    def test_noEndpoint(self) -> None:
        """No usable endpoint in the catalog: LookupUnavailable saying what was looked for."""
        h = Harness(self, evolve(CONFIG, region_name="Mars"))
        self.assertEqual(h.failure("10.0.0.5", network_id="n"),
                         "Keystone at http://keystone.test:5000/v3: the service catalog has no network endpoint "
                         "with interface internal or public in region Mars")

    def test_noAuth(self) -> None:
        """Without auth_url, endpoint_override is called without a token."""
        h = Harness(self, evolve(CONFIG, auth_url="", endpoint_override="http://neutron.test:9696"))
        h.cloud.neutron = lambda request: b'{"ports": [{"device_id": "vm", "project_id": "p"}]}'  # type: ignore[method-assign]
        self.assertEqual(h.result("10.0.0.5", network_id="n"), ("vm", "p"))
        self.assertEqual(h.cloud.uris()[0][0], b"GET")
        self.assertIsNone(h.cloud.requests[0][2].getRawHeaders(b"x-auth-token"))

    def test_configChecked(self) -> None:
        """Neither auth_url nor endpoint_override, or no username: ValueError at construction."""
        e = self.assertRaises(ValueError, NeutronLookup, evolve(CONFIG, auth_url=""), None, Clock())
        self.assertEqual(str(e), "lookup = neutron needs [neutron] auth_url (or endpoint_override for a Neutron without authentication)")
        e = self.assertRaises(ValueError, NeutronLookup, evolve(CONFIG, username=""), None, Clock())
        self.assertEqual(str(e), "lookup = neutron needs [neutron] username and project_name with auth_url")


class TokenTests(SynchronousTestCase):
    """Token reuse, expiry and re-authentication."""

    def setUp(self) -> None:
        self.h = Harness(self)
        self.h.cloud.ports = [port("vm-1", "n", "10.0.0.5", project="p")]

    def auths(self) -> int:
        """How many authentications Keystone saw."""
        return len([m for m, _ in self.h.cloud.uris() if m == b"POST"])

    def test_reused(self) -> None:
        """Lookups share one token."""
        for _ in range(3):
            self.assertEqual(self.h.result("10.0.0.5", network_id="n"), ("vm-1", "p"))
        self.assertEqual(self.auths(), 1)

    def test_renewedBeforeExpiry(self) -> None:
        """A one-hour token is renewed 60 s before it expires (by Keystone's issued_at/expires_at)."""
        self.h.result("10.0.0.5", network_id="n")
        self.h.clock.advance(3600 - 60 - 1)
        self.h.result("10.0.0.5", network_id="n")
        self.assertEqual(self.auths(), 1)
        self.h.clock.advance(1)
        self.h.result("10.0.0.5", network_id="n")
        self.assertEqual(self.auths(), 2)
        self.assertEqual(self.h.cloud.requests[-1][2].getRawHeaders(b"x-auth-token"), [b"gAAAA-token-2"])

    def test_shortToken(self) -> None:
        """A token shorter than two minutes is renewed at half its life."""
        self.h.cloud.lifetime = "2030-01-01T00:01:00Z"
        self.h.result("10.0.0.5", network_id="n")
        self.h.clock.advance(29)
        self.h.result("10.0.0.5", network_id="n")
        self.assertEqual(self.auths(), 1)
        self.h.clock.advance(1)
        self.h.result("10.0.0.5", network_id="n")
        self.assertEqual(self.auths(), 2)

    def test_reauthenticateOn401(self) -> None:
        """A revoked token: Neutron's 401 makes one new authentication and the query is repeated."""
        self.h.result("10.0.0.5", network_id="n")
        self.h.cloud.valid.clear()
        self.assertEqual(self.h.result("10.0.0.5", network_id="n"), ("vm-1", "p"))
        self.assertEqual(self.h.cloud.uris()[2:], [
            (b"GET", b"/v2.0/ports?network_id=n&fixed_ips=ip_address%3D10.0.0.5&fields=device_id&fields=project_id&fields=tenant_id"),
            (b"POST", b"/v3/auth/tokens"),
            (b"GET", b"/v2.0/ports?network_id=n&fixed_ips=ip_address%3D10.0.0.5&fields=device_id&fields=project_id&fields=tenant_id"),
        ])

    def test_401Twice(self) -> None:
        """Neutron refusing the new token too: LookupUnavailable after exactly two authentications."""
        self.h.cloud.valid = set()
        self.h.cloud.keystone = lambda request, k=self.h.cloud.keystone: (k(request), self.h.cloud.valid.clear())[0]  # type: ignore[method-assign]
        self.assertEqual(self.h.failure("10.0.0.5", network_id="n"),
                         "Neutron at http://neutron.test:9696 refused a new token too (HTTP 401) for GET /v2.0/ports")
        self.assertEqual(self.auths(), 2)

    def test_keystoneRefuses(self) -> None:
        """Bad credentials: LookupUnavailable naming the user, never the password."""
        self.h.cloud.keystone_code = 401
        with capturedLogs() as events:
            message = self.h.failure("10.0.0.5", network_id="n")
        self.assertEqual(message, "Keystone at http://keystone.test:5000/v3 refused the credentials of user 'mdsvc' (HTTP 401)")
        self.assertNotIn(PASSWORD, repr(events))

    def test_keystoneNoToken(self) -> None:
        """A Keystone answer without X-Subject-Token: LookupUnavailable."""
        original = self.h.cloud.keystone

        def keystone(request: Any) -> Any:
            body = original(request)
            request.responseHeaders.removeHeader(b"x-subject-token")
            return body

        self.h.cloud.keystone = keystone  # type: ignore[method-assign]
        self.assertEqual(self.h.failure("10.0.0.5", network_id="n"),
                         "Keystone at http://keystone.test:5000/v3: the authentication answer has no X-Subject-Token header")

    def test_keystoneGarbage(self) -> None:
        """A Keystone answer that is not a token: LookupUnavailable."""
        self.h.cloud.keystone = lambda request: (request.setResponseCode(201), request.setHeader(b"X-Subject-Token", b"t"), b"<html>")[2]  # type: ignore[method-assign]
        self.assertTrue(self.h.failure("10.0.0.5", network_id="n").startswith(
            "Keystone at http://keystone.test:5000/v3: the authentication answer is not a Keystone token: "))

    def test_concurrentShareAuthentication(self) -> None:
        """Lookups waiting for a token share one authentication; cancelling one leaves the other."""
        self.h.cloud.hang_keystone = True
        first = self.h.start("10.0.0.5", network_id="n")
        second = self.h.start("10.0.0.5", network_id="n")
        self.assertEqual(self.auths(), 1)
        first.cancel()
        self.failureResultOf(first, CancelledError)
        self.h.cloud.hang_keystone = False
        held = self.h.cloud.held.pop()
        held.write(self.h.cloud.keystone(held))
        held.finish()
        self.h.stub.flush()
        self.assertEqual(self.successResultOf(second), ("vm-1", "p"))
        self.assertEqual(self.auths(), 1)

    def test_secretsNotLogged(self) -> None:
        """Neither the password nor the token appears in logs or in the object's repr."""
        with capturedLogs() as events:
            self.h.result("10.0.0.5", network_id="n")
            self.h.cloud.valid.clear()
            self.h.result("10.0.0.5", network_id="n")
        text = repr(events) + repr(self.h.lookup)
        self.assertNotIn(PASSWORD, text)
        self.assertNotIn("gAAAA-token", text)


class FailureTests(SynchronousTestCase):
    """Neutron or Keystone unable to answer: LookupUnavailable with one line."""

    def setUp(self) -> None:
        self.h = Harness(self)

    def test_neutronTimeout(self) -> None:
        """Neutron not answering within timeout: LookupUnavailable then, not before."""
        self.h.result("10.0.0.5", network_id="n")  # authenticated
        self.h.cloud.hang_neutron = True
        d = self.h.start("10.0.0.5", network_id="n")
        self.h.clock.advance(9.9)
        self.assertNoResult(d)
        self.h.clock.advance(0.1)
        self.assertEqual(str(self.failureResultOf(d, LookupUnavailable).value), "Neutron at http://neutron.test:9696: no answer within 10 s")

    def test_keystoneTimeout(self) -> None:
        """Keystone not answering within timeout: LookupUnavailable."""
        self.h.cloud.hang_keystone = True
        d = self.h.start("10.0.0.5", network_id="n")
        self.h.clock.advance(10)
        self.assertEqual(str(self.failureResultOf(d, LookupUnavailable).value),
                         "Keystone at http://keystone.test:5000/v3: no answer within 10 s")
        self.h.cloud.hang_keystone = False
        self.assertIsNone(self.h.result("10.0.0.5", network_id="n"))  # the next lookup authenticates again

    def test_serverError(self) -> None:
        """A 500: LookupUnavailable with the status."""
        self.h.cloud.neutron_code = 500
        self.h.cloud.neutron_body = b"<html>oops</html>"
        self.assertEqual(self.h.failure("10.0.0.5", network_id="n"), "Neutron at http://neutron.test:9696 answered HTTP 500 to GET /v2.0/ports")

    def test_badRequest(self) -> None:
        """Any status other than 200 and 401: LookupUnavailable."""
        self.h.cloud.neutron_code = 400
        self.assertEqual(self.h.failure("10.0.0.5", network_id="n"), "Neutron at http://neutron.test:9696 answered HTTP 400 to GET /v2.0/ports")

    def test_garbageJson(self) -> None:
        """An answer that is not JSON: LookupUnavailable."""
        self.h.cloud.neutron_body = b"<html>\nproxy error\n</html>"
        self.assertEqual(self.h.failure("10.0.0.5", network_id="n"),
                         "Neutron at http://neutron.test:9696: the answer to GET /v2.0/ports is not JSON: Expecting value: line 1 column 1 (char 0)")

    def test_wrongShape(self) -> None:
        """JSON without a list of ports: LookupUnavailable."""
        for body in (b'{"networks": []}', b'[]', b'{"ports": ["x"]}'):
            self.h.cloud.neutron_body = body
            self.assertEqual(self.h.failure("10.0.0.5", network_id="n"),
                             "Neutron at http://neutron.test:9696: the answer to GET /v2.0/ports has no list of ports")

    def test_connectionRefused(self) -> None:
        """A connection error: LookupUnavailable naming it in one line."""

        class Refusing:
            def request(self, *args: Any, **kwargs: Any) -> Deferred[Any]:
                return fail(ConnectionRefusedError("Connection refused"))

        lookup = NeutronLookup(CONFIG, Refusing(), Clock())
        failure = self.failureResultOf(lookup.lookup("10.0.0.5", network_id="n"), LookupUnavailable)
        self.assertEqual(str(failure.value),
                         "Keystone at http://keystone.test:5000/v3: ConnectionRefusedError: Connection was refused by other side: Connection refused.")


class HTTPClientTests(SynchronousTestCase):
    """build_http_client's TLS choices."""

    def test_default(self) -> None:
        """A treq HTTPClient with a pooled agent."""
        from twisted.internet.testing import MemoryReactorClock

        client = build_http_client(MemoryReactorClock(), CONFIG)
        self.assertIsInstance(client, HTTPClient)
        self.assertEqual(client._agent._pool.maxPersistentPerHost, 10)

    def test_insecure(self) -> None:
        """insecure: a policy that does not verify certificates."""
        from twisted.internet.testing import MemoryReactorClock

        client = build_http_client(MemoryReactorClock(), evolve(CONFIG, insecure=True))
        policy = client._agent._endpointFactory._policyForHTTPS
        self.assertIsInstance(policy, NoVerificationPolicy)
        self.assertFalse(policy.creatorForNetloc(b"neutron.test", 443).verify)

    def test_cafile(self) -> None:
        """cafile: trusted roots from the file; an unreadable or empty file is a ValueError."""
        import datetime

        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID
        from twisted.internet.testing import MemoryReactorClock

        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test-ca")])
        now = datetime.datetime.now(datetime.UTC)
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                .serial_number(1).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
                .sign(key, hashes.SHA256()))
        path = self.mktemp()
        with open(path, "wb") as f:
            f.write(cert.public_bytes(serialization.Encoding.PEM))
        self.assertIsInstance(build_http_client(MemoryReactorClock(), evolve(CONFIG, cafile=path)), HTTPClient)
        e = self.assertRaises(ValueError, build_http_client, MemoryReactorClock(), evolve(CONFIG, cafile=path + ".missing"))
        self.assertEqual(str(e), f"[neutron] cafile {path}.missing: cannot read: No such file or directory")
        with open(path, "w") as f:
            f.write("nothing here")
        e = self.assertRaises(ValueError, build_http_client, MemoryReactorClock(), evolve(CONFIG, cafile=path))
        self.assertEqual(str(e), f"[neutron] cafile {path}: holds no PEM certificate")


class CancellationTests(SynchronousTestCase):
    """A caller that goes away."""

    def test_cancelDuringQuery(self) -> None:
        """Cancelling a lookup waiting for Neutron is a cancellation, not unavailability."""
        h = Harness(self)
        h.result("10.0.0.5", network_id="n")
        h.cloud.hang_neutron = True
        d = h.start("10.0.0.5", network_id="n")
        d.cancel()
        self.failureResultOf(d, CancelledError)
        h.clock.advance(10)
        self.assertEqual(h.clock.getDelayedCalls(), [])
