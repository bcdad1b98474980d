"""Tests for L{mdsvc.lookup.ovn.records} and L{mdsvc.lookup.ovn.replica}: the rows kept and their index."""

from __future__ import annotations

from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from mdsvc.lookup.ovn.records import DatapathRecord, PortRecord, address_words, network_of, port_record
from mdsvc.lookup.ovn.replica import SouthboundReplica

NET_A, NET_B = "5f3e0d8c-0000-4000-8000-00000000000a", "5f3e0d8c-0000-4000-8000-00000000000b"


def port(uuid: str, datapath: str | None, mac: str, device: str = "vm", owner: str = "compute:nova",
         project: str | None = "p1", bound: bool = True) -> PortRecord:
    """A port record from the columns of a Port_Binding."""
    ids: dict[str, Any] = {"neutron:device_id": device, "neutron:device_owner": owner}
    if project is not None:
        ids["neutron:project_id"] = project
    return port_record(uuid, datapath, [mac] if mac else [], bound, ids, f"lp-{uuid}")


class RecordTests(SynchronousTestCase):
    """Neutron's rules for reading a row."""

    def test_network_of(self) -> None:
        """The network is the datapath's name without its first C{neutron-} (Neutron's C{replace(..., 1)})."""
        self.assertEqual(network_of({"name": f"neutron-{NET_A}", "name2": "private"}), NET_A)
        self.assertEqual(network_of({"name": "neutron-neutron-x"}), "neutron-x")
        self.assertEqual(network_of({"name": "other"}), "other")
        self.assertIsNone(network_of({"logical-switch": "x"}))

    def test_address_words(self) -> None:
        """The first C{mac} entry's words: IPs in normal form, the rest lower-case; later entries ignored."""
        self.assertEqual(address_words(["FA:16:3E:00:00:01 10.0.0.5 FD00::0005 ::ffff:10.0.0.6"]),
                         ("fa:16:3e:00:00:01", "10.0.0.5", "fd00::5", "10.0.0.6"))
        self.assertEqual(address_words(["unknown", "fa:16:3e:00:00:01 10.0.0.5"]), ("fa:16:3e:00:00:01", "10.0.0.5"))
        self.assertEqual(address_words(["router"]), ("router",))
        self.assertEqual(address_words(["fa:16:3e:00:00:01 10.0.0.1/24"]), ("fa:16:3e:00:00:01", "10.0.0.1/24"))
        self.assertEqual(address_words([]), ())

    def test_port_record(self) -> None:
        """Device, owner and project come from the Neutron keys of C{external_ids}; a missing project is None."""
        record = port("u1", "dp1", "fa:16:3e:00:00:01 10.0.0.5", project=None)
        self.assertEqual((record.device_id, record.device_owner, record.project_id, record.logical_port),
                         ("vm", "compute:nova", None, "lp-u1"))
        self.assertTrue(record.is_instance)
        self.assertFalse(port("u2", "dp1", "x", owner="network:distributed").is_instance)
        self.assertFalse(port("u3", "dp1", "x", device="").is_instance)


class ReplicaTests(SynchronousTestCase):
    """The index: what is found, and what each change says it changed."""

    def setUp(self) -> None:
        self.changes: list[set[tuple[str, str]]] = []
        self.replica = SouthboundReplica(listeners=[self.changes.append])
        self.replica.replace(
            [DatapathRecord("dpA", NET_A), DatapathRecord("dpB", NET_B), DatapathRecord("dpR", "router-1")],
            [port("pa", "dpA", "fa:16:3e:00:00:01 10.0.0.5 fd00::5", device="vm-a"),
             port("pb", "dpB", "fa:16:3e:00:00:02 10.0.0.5", device="vm-b"),
             port("pu", "dpA", "fa:16:3e:00:00:03 10.0.0.7", device="vm-u", bound=False)],
        )
        self.changes.clear()

    def devices(self, network: str, ip: str, mac: str | None = None) -> list[str]:
        return [p.device_id for p in self.replica.ports(network, ip, mac)]

    def test_same_ip_two_networks(self) -> None:
        """One address in two networks: each network finds its own port."""
        self.assertEqual(self.devices(NET_A, "10.0.0.5"), ["vm-a"])
        self.assertEqual(self.devices(NET_B, "10.0.0.5"), ["vm-b"])
        self.assertEqual(self.devices(NET_A, "fd00::5"), ["vm-a"])
        self.assertEqual(self.devices("unknown", "10.0.0.5"), [])

    def test_mac_or_ip(self) -> None:
        """Given a MAC, a port holding it or the address matches (Neutron's link-local rule)."""
        self.assertEqual(self.devices(NET_A, "fe80::1", "fa:16:3e:00:00:01"), ["vm-a"])
        self.assertEqual(self.devices(NET_A, "10.0.0.5", "fa:16:3e:00:00:09"), ["vm-a"])
        self.assertEqual(self.devices(NET_A, "fe80::1", "fa:16:3e:00:00:02"), [])

    def test_unbound_not_found(self) -> None:
        """A port no chassis has bound is not found."""
        self.assertEqual(self.devices(NET_A, "10.0.0.7"), [])

    def test_counts(self) -> None:
        """Ports and networks are counted."""
        self.assertEqual((self.replica.port_count, self.replica.network_count, len(self.replica)), (3, 3, 6))

    def test_port_added_and_removed(self) -> None:
        """A new port is found at once and its keys are told; removed, it is gone and told again."""
        self.replica.apply([], [("pc", port("pc", "dpA", "fa:16:3e:00:00:04 10.0.0.9", device="vm-c"))])
        self.assertEqual(self.devices(NET_A, "10.0.0.9"), ["vm-c"])
        self.assertEqual(self.changes, [{(NET_A, "fa:16:3e:00:00:04"), (NET_A, "10.0.0.9")}])
        self.replica.apply([], [("pc", None)])
        self.assertEqual(self.devices(NET_A, "10.0.0.9"), [])
        self.assertEqual(self.changes[-1], {(NET_A, "fa:16:3e:00:00:04"), (NET_A, "10.0.0.9")})

    def test_port_moves_address(self) -> None:
        """A port's new address is found, its old one no longer; both keys are told."""
        self.replica.apply([], [("pb", port("pb", "dpB", "fa:16:3e:00:00:02 10.0.0.8", device="vm-b"))])
        self.assertEqual(self.devices(NET_B, "10.0.0.5"), [])
        self.assertEqual(self.devices(NET_B, "10.0.0.8"), ["vm-b"])
        self.assertEqual(self.changes, [{(NET_B, "fa:16:3e:00:00:02"), (NET_B, "10.0.0.5"), (NET_B, "10.0.0.8")}])

    def test_binding_changes(self) -> None:
        """A port becoming bound is found from then on (its keys are told)."""
        self.replica.apply([], [("pu", port("pu", "dpA", "fa:16:3e:00:00:03 10.0.0.7", device="vm-u"))])
        self.assertEqual(self.devices(NET_A, "10.0.0.7"), ["vm-u"])
        self.assertIn((NET_A, "10.0.0.7"), self.changes[0])

    def test_network_deleted(self) -> None:
        """A network deleted with its ports: nothing found, every key told."""
        self.replica.apply([("dpA", None)], [("pa", None), ("pu", None)])
        self.assertEqual(self.devices(NET_A, "10.0.0.5"), [])
        self.assertEqual(self.changes[0], {(NET_A, w) for w in ("fa:16:3e:00:00:01", "10.0.0.5", "fd00::5", "fa:16:3e:00:00:03", "10.0.0.7")})
        self.assertEqual(self.replica.network_count, 2)

    def test_ports_before_their_datapath(self) -> None:
        """A network and its port in one change: the port is found, and its keys are told."""
        self.replica.apply([("dpC", DatapathRecord("dpC", "net-c"))], [("pd", port("pd", "dpC", "fa:16:3e:00:00:05 10.9.0.5", device="vm-d"))])
        self.assertEqual(self.devices("net-c", "10.9.0.5"), ["vm-d"])
        self.assertIn(("net-c", "10.9.0.5"), self.changes[0])

    def test_datapath_renamed(self) -> None:
        """A datapath standing for another network: its ports answer there, and both networks' keys are told."""
        self.replica.apply([("dpB", DatapathRecord("dpB", "net-z"))], [])
        self.assertEqual(self.devices(NET_B, "10.0.0.5"), [])
        self.assertEqual(self.devices("net-z", "10.0.0.5"), ["vm-b"])
        self.assertEqual(self.changes[0], {(NET_B, "10.0.0.5"), (NET_B, "fa:16:3e:00:00:02"), ("net-z", "10.0.0.5"), ("net-z", "fa:16:3e:00:00:02")})

    def test_two_datapaths_one_name(self) -> None:
        """Two datapaths with one network's name: the ports of both are found (Neutron compares names)."""
        self.replica.apply([("dpA2", DatapathRecord("dpA2", NET_A))], [("px", port("px", "dpA2", "fa:16:3e:00:00:06 10.0.0.5", device="vm-x"))])
        self.assertEqual(sorted(self.devices(NET_A, "10.0.0.5")), ["vm-a", "vm-x"])

    def test_replace_tells_differences_only(self) -> None:
        """A whole new snapshot tells the keys of the rows that differ, and only those."""
        changed = self.replica.replace(
            [DatapathRecord("dpA", NET_A), DatapathRecord("dpB", NET_B), DatapathRecord("dpR", "router-1")],
            [port("pa", "dpA", "fa:16:3e:00:00:01 10.0.0.5 fd00::5", device="vm-a"),
             port("pb", "dpB", "fa:16:3e:00:00:02 10.0.0.5", device="vm-b2")],
        )
        self.assertEqual(changed, {(NET_B, "10.0.0.5"), (NET_B, "fa:16:3e:00:00:02"), (NET_A, "10.0.0.7"), (NET_A, "fa:16:3e:00:00:03")})
        self.assertEqual(self.devices(NET_B, "10.0.0.5"), ["vm-b2"])
        self.assertEqual(self.replica.port_count, 2)
        self.assertEqual(self.replica.replace([DatapathRecord("dpA", NET_A), DatapathRecord("dpB", NET_B), DatapathRecord("dpR", "router-1")],
                                              [port("pa", "dpA", "fa:16:3e:00:00:01 10.0.0.5 fd00::5", device="vm-a"),
                                               port("pb", "dpB", "fa:16:3e:00:00:02 10.0.0.5", device="vm-b2")]), set())
        self.assertEqual(len(self.changes), 1)
