"""Tests for L{mdsvc.lookup.store}: the store lookup backend, and the store's lookup queries."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred, maybeDeferred
from twisted.logger import capturedLogs
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from mdsvc.hop import normalise_address
from mdsvc.interfaces import IInstanceLookup, LookupUnavailable
from mdsvc.lookup.store import StoreLookup
from mdsvc.store.sql import SQLDocuments

MAC_A = "fa:16:3e:00:00:0a"

# The instances' uuids, sorted as their letters
VM_A = "aaaaaaaa-0000-4000-8000-00000000000a"
VM_B = "bbbbbbbb-0000-4000-8000-00000000000b"
VM_C = "cccccccc-0000-4000-8000-00000000000c"
VM_D = "dddddddd-0000-4000-8000-00000000000d"
VM_E = "eeeeeeee-0000-4000-8000-00000000000e"


def nic(network: str, mac: str, *ips: str) -> dict[str, Any]:
    """A NIC document on C{network} with C{ips}."""
    return {"port_id": f"port-{mac}", "mac": mac, "network": {"id": network}, "fixed_ips": [{"ip": ip} for ip in ips]}


def instance(uuid: str, project: str | None, *nics: dict[str, Any]) -> dict[str, Any]:
    """An instance document with C{nics}."""
    doc: dict[str, Any] = {"uuid": uuid, "nics": list(nics)}
    if project is not None:
        doc["project_id"] = project
    return doc


def synchronously(f: Callable[..., Any], *args: Any) -> Deferred[Any]:
    """The test runner: call at once, in this thread."""
    return maybeDeferred(f, *args)


class StoreFixture:
    """A store with instances on three networks and routers in front of some of them."""

    def setUp(self) -> None:
        self.path = os.path.join(self.mktemp(), "mdsvc.sqlite")  # type: ignore[attr-defined]
        self.docs = SQLDocuments("sqlite:" + self.path)
        self.docs.import_instances([
            instance(VM_A, "proj-a", nic("net-a", MAC_A, "10.0.0.5", "fd00::5")),
            instance(VM_B, "proj-b", nic("net-b", "fa:16:3e:00:00:0b", "10.0.0.5")),
            instance(VM_C, "proj-c", nic("net-c", "fa:16:3e:00:00:0c", "192.168.1.1"),
                     nic("net-c2", "52:54:00:de:5b:bf", "172.16.0.9")),
            instance(VM_D, None, nic("net-d", "fa:16:3e:00:00:0d", "10.9.9.9")),
        ])
        self.docs.import_routers([
            {"id": "r-ab", "project_id": "proj-a", "networks": ["net-a", "net-b"]},
            {"id": "r-b", "networks": ["net-b", "net-x", "net-b"]},
            {"id": "r-empty", "networks": []},
        ])
        self.lookup = StoreLookup(self.docs, synchronously)

    def result(self, d: Deferred[Any]) -> Any:
        """The result of a Deferred that has fired."""
        return self.successResultOf(d)  # type: ignore[attr-defined]


class DocumentQueryTests(StoreFixture, SynchronousTestCase):
    """The read methods of L{SQLDocuments} that the lookup uses."""

    def test_routerNetworks(self) -> None:
        """A router's networks come in document order, each once."""
        self.assertEqual(self.docs.router_networks("r-ab"), ["net-a", "net-b"])
        self.assertEqual(self.docs.router_networks("r-b"), ["net-b", "net-x"])

    def test_routerNetworksEmpty(self) -> None:
        """A router without networks has an empty list, an unknown router None."""
        self.assertEqual(self.docs.router_networks("r-empty"), [])
        self.assertIsNone(self.docs.router_networks("r-unknown"))

    def test_routerNetworksReimport(self) -> None:
        """A re-imported router has its new networks only."""
        self.docs.import_routers([{"id": "r-ab", "networks": ["net-c"]}])
        self.assertEqual(self.docs.router_networks("r-ab"), ["net-c"])

    def test_portsByNetworkIp(self) -> None:
        """(uuid, project_id) of the instances holding the IP in the networks given, sorted."""
        self.assertEqual(self.docs.ports_by_network_ip(["net-a"], "10.0.0.5"), [(VM_A, "proj-a")])
        self.assertEqual(self.docs.ports_by_network_ip(["net-b", "net-a"], "10.0.0.5"), [(VM_A, "proj-a"), (VM_B, "proj-b")])
        self.assertEqual(self.docs.ports_by_network_ip(["net-c"], "10.0.0.5"), [])

    def test_portsByNetworkIpEmptyNetworks(self) -> None:
        """No networks match nothing: never a search of all networks."""
        self.assertEqual(self.docs.ports_by_network_ip([], "10.0.0.5"), [])

    def test_portsByNetworkIpCanonical(self) -> None:
        """The IP is compared in canonical form (IPv6 spelling, IPv4-mapped)."""
        self.assertEqual(self.docs.ports_by_network_ip(["net-a"], "FD00:0::5"), [(VM_A, "proj-a")])
        self.assertEqual(self.docs.ports_by_network_ip(["net-c"], "::ffff:192.168.1.1"), [(VM_C, "proj-c")])

    def test_portsByNetworkIpNoProject(self) -> None:
        """An instance without a project gives None as its project."""
        self.assertEqual(self.docs.ports_by_network_ip(["net-d"], "10.9.9.9"), [(VM_D, None)])

    def test_portsByNetworkMac(self) -> None:
        """A NIC with two fixed IPs is one match by MAC; MACs compare in any case."""
        self.assertEqual(self.docs.ports_by_network_mac(["net-a"], MAC_A.upper()), [(VM_A, "proj-a")])
        self.assertEqual(self.docs.ports_by_network_mac(["net-b"], MAC_A), [])
        self.assertEqual(self.docs.ports_by_network_mac([], MAC_A), [])

    def test_portsByUpperCaseMac(self) -> None:
        """A MAC written in upper case (kept so in the document) is found in any case."""
        self.docs.import_instances([instance("aaaaaaaa-0000-4000-8000-0000000000ff", "proj-u", nic("net-u", "FA:16:3E:00:00:0B", "10.7.0.5"))])
        self.assertEqual(self.docs.ports_by_network_mac(["net-u"], "fa:16:3e:00:00:0b"), [("aaaaaaaa-0000-4000-8000-0000000000ff", "proj-u")])
        self.assertEqual(self.docs.ports_by_network_mac(["net-u"], "FA:16:3E:00:00:0B"), [("aaaaaaaa-0000-4000-8000-0000000000ff", "proj-u")])

    def test_deletedInstance(self) -> None:
        """A deleted instance's ports are gone."""
        self.docs.delete_instance(VM_A)
        self.assertEqual(self.docs.ports_by_network_ip(["net-a"], "10.0.0.5"), [])


class NetworkLookupTests(StoreFixture, SynchronousTestCase):
    """Lookups by network (the network header; neutron spec §2.1 and §10 item 7)."""

    def test_interface(self) -> None:
        """StoreLookup provides IInstanceLookup, named store."""
        self.assertTrue(verifyObject(IInstanceLookup, self.lookup))
        self.assertEqual(self.lookup.name, "store")

    def test_found(self) -> None:
        """The one instance with the IP in the network, and its project."""
        self.assertEqual(self.result(self.lookup.lookup("10.0.0.5", network_id="net-b")), (VM_B, "proj-b"))

    def test_foundIPv6(self) -> None:
        """A global IPv6 address is looked up by IP."""
        self.assertEqual(self.result(self.lookup.lookup("fd00::5", network_id="net-a")), (VM_A, "proj-a"))

    def test_noProject(self) -> None:
        """An instance without a project is found with project None."""
        self.assertEqual(self.result(self.lookup.lookup("10.9.9.9", network_id="net-d")), (VM_D, None))

    def test_notFound(self) -> None:
        """No port in that network: None, with Neutron's warning and named fields."""
        with capturedLogs() as events:
            self.assertIsNone(self.result(self.lookup.lookup("10.0.0.5", network_id="net-c")))
        self.assertEqual(len(events), 1)
        self.assertEqual(events[0]["log_format"], "No port found in network {network_id} with IP address {ip}")
        self.assertEqual(events[0]["log_level"].name, "warn")
        self.assertEqual((events[0]["network_id"], events[0]["ip"], events[0]["router_id"], events[0]["mac"]),
                         ("net-c", "10.0.0.5", None, None))

    def test_byMac(self) -> None:
        """With a MAC, the port is found by MAC, not by the (link-local) IP."""
        ip, mac = normalise_address("fe80::5054:ff:fede:5bbf")
        self.assertEqual(mac, "52:54:00:de:5b:bf")
        self.assertEqual(self.result(self.lookup.lookup(ip, network_id="net-c2", mac=mac)), (VM_C, "proj-c"))

    def test_byMacTwoFixedIps(self) -> None:
        """A NIC with two fixed IPs is one match by MAC."""
        self.assertEqual(self.result(self.lookup.lookup("fe80::f816:3eff:fe00:a", network_id="net-a", mac=MAC_A)), (VM_A, "proj-a"))

    def test_byMacOtherNetwork(self) -> None:
        """A MAC in another network is no match."""
        self.assertIsNone(self.result(self.lookup.lookup("fe80::f816:3eff:fe00:a", network_id="net-b", mac=MAC_A)))

    def test_normalisedAddresses(self) -> None:
        """192.168.1.1 and ::ffff:192.168.1.1 find the same port (neutron spec §10 item 5)."""
        for xff in ("192.168.1.1", "::ffff:192.168.1.1"):
            ip, mac = normalise_address(xff)
            self.assertEqual(self.result(self.lookup.lookup(ip, network_id="net-c", mac=mac)), (VM_C, "proj-c"))

    def test_ambiguous(self) -> None:
        """Two instances with the IP in the network: None, with a warning naming both."""
        self.docs.import_instances([instance(VM_E, "proj-e", nic("net-b", "fa:16:3e:00:00:0e", "10.0.0.5"))])
        with capturedLogs() as events:
            self.assertIsNone(self.result(self.lookup.lookup("10.0.0.5", network_id="net-b")))
        self.assertEqual(len(events), 1)
        self.assertEqual(events[0]["log_level"].name, "warn")
        self.assertEqual(events[0]["instances"], f"{VM_B}, {VM_E}")
        self.assertEqual(
            events[0]["log_format"], "More than one port found in network {network_id} with IP address {ip}: instances {instances}"
        )

    def test_bothNetworkAndRouter(self) -> None:
        """Given a network and a router, the network is used (neutron spec §10 item 9)."""
        self.assertEqual(self.result(self.lookup.lookup("10.0.0.5", network_id="net-b", router_id="r-unknown")), (VM_B, "proj-b"))

    def test_neither(self) -> None:
        """Given neither network nor router, the lookup fails with TypeError."""
        self.failureResultOf(self.lookup.lookup("10.0.0.5"), TypeError)


class RouterLookupTests(StoreFixture, SynchronousTestCase):
    """Lookups by router (the router header; neutron spec §2.1 and §10 item 6)."""

    def test_found(self) -> None:
        """The instance with the IP in one of the router's networks."""
        self.assertEqual(self.result(self.lookup.lookup("10.0.0.5", router_id="r-b")), (VM_B, "proj-b"))

    def test_ambiguousAcrossNetworks(self) -> None:
        """The IP in two of the router's networks, held by two instances: None."""
        with capturedLogs() as events:
            self.assertIsNone(self.result(self.lookup.lookup("10.0.0.5", router_id="r-ab")))
        self.assertEqual([e["instances"] for e in events], [f"{VM_A}, {VM_B}"])

    def test_notBehindRouter(self) -> None:
        """An instance in a network the router is not attached to is not found; network_id logs None."""
        with capturedLogs() as events:
            self.assertIsNone(self.result(self.lookup.lookup("192.168.1.1", router_id="r-ab")))
        self.assertEqual([(e["network_id"], e["ip"], e["router_id"]) for e in events], [(None, "192.168.1.1", "r-ab")])

    def test_byMac(self) -> None:
        """By MAC behind a router."""
        self.assertEqual(self.result(self.lookup.lookup("fe80::f816:3eff:fe00:a", router_id="r-ab", mac=MAC_A)), (VM_A, "proj-a"))

    def test_routerWithoutNetworks(self) -> None:
        """A router with no networks finds nothing, not a search of all networks (§11 item 6)."""
        with capturedLogs() as events:
            self.assertIsNone(self.result(self.lookup.lookup("192.168.1.1", router_id="r-empty")))
        self.assertEqual([(e["log_format"], e["router_id"]) for e in events],
                         [("Router {router_id} has no internal networks: no instance can be found behind it", "r-empty")])

    def test_unknownRouter(self) -> None:
        """An unknown router finds nothing."""
        with capturedLogs() as events:
            self.assertIsNone(self.result(self.lookup.lookup("192.168.1.1", router_id="r-unknown")))
        self.assertEqual([(e["log_format"], e["router_id"]) for e in events],
                         [("Router {router_id} is unknown: no instance can be found behind it", "r-unknown")])


class StoreErrorTests(SynchronousTestCase):
    """A store that cannot be read makes the backend unavailable."""

    def test_notADatabase(self) -> None:
        """A file that is not SQLite: LookupUnavailable naming the file."""
        path = self.mktemp()
        with open(path, "wb") as f:
            f.write(b"this is not a database" * 100)
        lookup = StoreLookup(SQLDocuments("sqlite:" + path), synchronously)
        failure = self.failureResultOf(lookup.lookup("10.0.0.5", network_id="net-a"), LookupUnavailable)
        self.assertEqual(str(failure.value), f"instance store {path}: file is not a database")

    def test_unreadableDirectory(self) -> None:
        """A store path whose directory cannot be created: LookupUnavailable."""
        blocker = self.mktemp()
        with open(blocker, "w") as f:
            f.write("a file where a directory should be")
        lookup = StoreLookup(SQLDocuments("sqlite:" + os.path.join(blocker, "mdsvc.sqlite")), synchronously)
        failure = self.failureResultOf(lookup.lookup("10.0.0.5", router_id="r"), LookupUnavailable)
        self.assertTrue(str(failure.value).startswith(f"instance store {blocker}/mdsvc.sqlite: "), str(failure.value))

    def test_otherErrorsPropagate(self) -> None:
        """An unexpected error (a bug) is not disguised as unavailability."""

        def broken(f: Callable[..., Any], *args: Any) -> Deferred[Any]:
            return maybeDeferred(lambda: 1 / 0)

        lookup = StoreLookup(SQLDocuments("sqlite:" + self.mktemp()), broken)
        self.failureResultOf(lookup.lookup("10.0.0.5", network_id="net-a"), ZeroDivisionError)

    def test_inThreads(self) -> None:
        """in_threads accepts a store URL and keeps the documents it opens."""
        lookup = StoreLookup.in_threads("sqlite:some/path.sqlite", reactor=None)
        self.assertEqual(lookup.documents.path, "some/path.sqlite")
        self.assertTrue(verifyObject(IInstanceLookup, lookup))
