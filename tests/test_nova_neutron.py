"""
What store = nova asks Neutron (L{mdsvc.store.nova.neutron}), as Nova's metadata API asks it;
and the API's 503 when the store cannot answer.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.logger import capturedLogs
from twisted.trial.unittest import SynchronousTestCase

from mdsvc.api.app import MetadataApp
from mdsvc.api.errors import MetadataError
from mdsvc.api.identify import ByInstanceId, Identifier
from mdsvc.interfaces import LookupUnavailable, StoreUnavailable
from mdsvc.store.nova.neutron import MAX_QUERY_NETWORKS, NovaNeutron
from mdsvc.testing import MemoryInstanceStore

UUID = "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"


class FakeClient:
    """L{NeutronLookup.list_resources} answered from tables, recording each query."""

    def __init__(self, answers: dict[str, Any]) -> None:
        self.answers = answers
        self.queries: list[tuple[str, list[tuple[str, str]]]] = []

    async def list_resources(self, collection: str, query: str) -> list[dict[str, Any]]:
        """The table's answer for C{collection} (a callable is given the query's pairs), recording the query."""
        pairs = parse_qsl(query)
        self.queries.append((collection, pairs))
        answer = self.answers[collection]
        if isinstance(answer, Exception):
            raise answer
        return answer(pairs) if callable(answer) else list(answer)


class SecurityGroupTests(SynchronousTestCase):
    """Nova's get_instance_security_groups."""

    def test_groups_by_port(self) -> None:
        """
        The instance's ports by device_id, then their groups by id (names; a nameless group shows
        its id; one Neutron does not show is left out), each port's in its own order.
        """
        client = FakeClient({
            "ports": [{"id": "p1", "device_id": UUID, "security_groups": ["g2", "g1"]},
                      {"id": "p2", "device_id": UUID, "security_groups": ["g1", "hidden", "g3"]}],
            "security-groups": [{"id": "g1", "name": "default"}, {"id": "g2", "name": "web"}, {"id": "g3", "name": ""}],
        })
        groups = self.successResultOf(Deferred.fromCoroutine(NovaNeutron(client).security_groups(UUID)))  # type: ignore[arg-type]
        self.assertEqual(groups, {"p1": ["web", "default"], "p2": ["default", "g3"]})
        self.assertEqual(client.queries[0], ("ports", [("device_id", UUID), ("fields", "security_groups"), ("fields", "device_id"),
                                                       ("fields", "id")]))
        self.assertEqual(client.queries[1], ("security-groups", [("id", "g2"), ("id", "g1"), ("id", "hidden"), ("id", "g3"),
                                                                 ("fields", "id"), ("fields", "name")]))

    def test_unavailable(self) -> None:
        """Neutron down is the store's unavailability (the API's 503)."""
        client = FakeClient({"ports": LookupUnavailable("Neutron at http://n: refused")})
        failure = self.failureResultOf(Deferred.fromCoroutine(NovaNeutron(client).security_groups(UUID)),  # type: ignore[arg-type]
                                       StoreUnavailable)
        self.assertIn("refused", str(failure.value))


class AddressTests(SynchronousTestCase):
    """Remote-address and provider modes, as Nova asks Neutron."""

    def test_devices_with_address(self) -> None:
        """The ports holding the IP, any network; ports without a device do not count."""
        client = FakeClient({"ports": [{"device_id": UUID}, {"device_id": ""}]})
        found = self.successResultOf(Deferred.fromCoroutine(NovaNeutron(client).devices_with_address("10.0.0.5")))  # type: ignore[arg-type]
        self.assertEqual(found, [UUID])
        self.assertEqual(client.queries, [("ports", [("fixed_ips", "ip_address=10.0.0.5"), ("fields", "device_id")])])

    def test_provider(self) -> None:
        """The provider's subnets' networks, then the IP's ports in them, 160 networks per query."""
        networks = [{"network_id": f"net-{n}"} for n in range(200)]
        client = FakeClient({"subnets": networks, "ports": lambda pairs: [{"device_id": UUID, "tenant_id": "p"}]
                             if ("network_id", "net-199") in pairs else []})
        found = self.successResultOf(Deferred.fromCoroutine(NovaNeutron(client).provider_ports("edge-1", "10.0.0.5")))  # type: ignore[arg-type]
        self.assertEqual(found, [(UUID, "p")])
        port_queries = [q for c, q in client.queries if c == "ports"]
        self.assertEqual([sum(1 for k, _ in q if k == "network_id") for q in port_queries], [MAX_QUERY_NETWORKS, 40])

    def test_provider_without_subnets(self) -> None:
        """A provider serving no subnet: None (the API's 400 "Could not find any subnets")."""
        client = FakeClient({"subnets": []})
        self.assertIsNone(self.successResultOf(Deferred.fromCoroutine(NovaNeutron(client).provider_ports("edge-1", "10.0.0.5"))))  # type: ignore[arg-type]


class ServiceUnavailableTests(SynchronousTestCase):
    """The API answers a store's unavailability with 503, logged once a minute."""

    def test_503(self) -> None:
        """503 with the reason in the log (the password masked by the store); later ones counted, not logged."""
        clock = Clock()
        down = StoreUnavailable("mysql+pymysql://mdsvc:***@db/nova_api: (2003, Can't connect)")
        app = MetadataApp(store=MemoryInstanceStore(broken=down), identifier=Identifier(True, ""), clock=clock)
        identity = ByInstanceId(UUID, "p", None)
        with capturedLogs() as events:
            for _ in range(3):
                failure = self.failureResultOf(Deferred.fromCoroutine(app.metadata_for(identity)), MetadataError)
                self.assertEqual(failure.value.code, 503)
            clock.advance(61)
            self.failureResultOf(Deferred.fromCoroutine(app.metadata_for(identity)), MetadataError)
        lines = [e["log_format"].format(**e) for e in events if "unavailable" in e["log_format"]]
        self.assertEqual(lines, [
            "the instance store is unavailable: mysql+pymysql://mdsvc:***@db/nova_api: (2003, Can't connect)",
            "the instance store is unavailable: mysql+pymysql://mdsvc:***@db/nova_api: (2003, Can't connect) "
            "(2 more requests answered 503 in the last minute)",
        ])
