"""
The OVN test fixture (L{tests.integration.ovn}): real NB and SB databases and ovn-northd on private
sockets, and Neutron's rows written into NB arriving in SB as the OVN metadata agent reads them.
"""

from __future__ import annotations

import json

from twisted.trial.unittest import SynchronousTestCase

from tests.integration.netns import new_id
from tests.integration.ovn import CHASSIS, OvnCentral, create_network, create_port, delete_port, ovn_name, shared_central


def sb_rows(central: OvnCentral, table: str, *conditions: str) -> list[dict[str, object]]:
    """Rows of an SB table (C{ovn-sbctl --format=json find}), each as a dict of column to value."""
    out = json.loads(central.sbctl("--format=json", "find", table, *conditions))
    return [dict(zip(out["headings"], row, strict=True)) for row in out["data"]]


def ovsdb_map(value: object) -> dict[str, str]:
    """An OVSDB JSON map (C{["map", [[k, v], ...]]}) as a dict."""
    assert isinstance(value, list) and value[0] == "map"
    return dict(value[1])


class FixtureTests(SynchronousTestCase):
    """The shared NB + SB + northd."""

    def test_network_and_port_reach_the_southbound_database(self) -> None:
        """A network and a bound port written as Neutron writes them are in SB as the metadata agent reads them."""
        central = shared_central()
        network, port, instance = new_id(), new_id(), new_id()
        create_network(central, network)
        create_port(central, network, port, "fa:16:3e:12:34:56", ["10.0.0.5", "fd00::5"], instance, "project-1")
        [datapath] = [d for d in sb_rows(central, "Datapath_Binding") if ovsdb_map(d["external_ids"]).get("name") == ovn_name(network)]
        [binding] = sb_rows(central, "Port_Binding", f"logical_port={port}")
        self.assertEqual(binding["mac"], "fa:16:3e:12:34:56 10.0.0.5 fd00::5")
        self.assertEqual(binding["datapath"], datapath["_uuid"])
        ids = ovsdb_map(binding["external_ids"])
        self.assertEqual((ids["neutron:device_id"], ids["neutron:project_id"], ids["neutron:device_owner"]),
                         (instance, "project-1", "compute:nova"))
        [chassis] = sb_rows(central, "Chassis", f"name={CHASSIS}")
        self.assertEqual(binding["chassis"], chassis["_uuid"])
        [metadata] = sb_rows(central, "Port_Binding", f"logical_port=ovnmeta-port-{network}")
        self.assertEqual((metadata["type"], metadata["chassis"]), ("localport", ["set", []]))
        delete_port(central, port)
        self.assertEqual(sb_rows(central, "Port_Binding", f"logical_port={port}"), [])
