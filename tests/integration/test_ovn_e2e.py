"""
An ML2/OVN cloud end to end, with real OVN: networks and ports written into the Northbound
database as Neutron's OVN driver writes them, ovn-northd filling the Southbound database, and
guests in real namespaces behind C{ovnmeta-<network>} namespaces reading their own metadata
through mdsvc (C{network-node} role on C{lookup = ovn}, C{api} role on the embedded store).
Two networks hold a guest at the same address; a third guest sits behind a stock haproxy with
the OVN metadata agent's template (C{X-OVN-Network-ID}) in front of mdsvc's agent socket.  Ports
created or deleted in NB are served or refused within a second, without restarts.
"""

from __future__ import annotations

import json
import os
import subprocess
import time

from twisted.trial.unittest import SkipTest

from tests.integration.netns import curl, new_id
from tests.integration.ovn import create_network, create_port, delete_port, haproxy_ovn_config, ovnmeta_network, require_ovn, shared_central
from tests.integration.processes import manage
from tests.integration.test_network_node import META, NodeCase, instance

HAPROXY = "/usr/sbin/haproxy" if os.path.exists("/usr/sbin/haproxy") else "haproxy"


class OvnCloudTests(NodeCase):
    """api + network-node (lookup = ovn) serving guests of two OVN networks."""

    def setUp(self) -> None:
        super().setUp()
        require_ovn()
        self.central = shared_central()
        self.net_a, self.net_b = new_id(), new_id()
        self.ids = {k: new_id() for k in "abcd"}
        self.macs = {"a": "fa:16:3e:aa:00:01", "b": "fa:16:3e:bb:00:01", "c": "fa:16:3e:cc:00:01", "d": "fa:16:3e:dd:00:01"}
        self.config_path = self.config(
            "node.conf",
            # the ovnmeta- namespaces of this test's networks, followed as they come (not another
            # test's, on a machine running several)
            f"namespaces = ovnmeta-{self.net_a}, ovnmeta-{self.net_b}\n[mdsvc]\nlookup = ovn\n[ovn]\n"
            f"ovn_sb_connection = {self.central.sb_remote}\n"
            # long cache times: what is served within a second is so because the replica's change
            # reached the cache, not because an entry expired
            "[cache]\nexpiration_time = 300\nnegative_expiration_time = 300\n",
        )
        docs = [instance(self.ids[k], f"guest-{k}", f"proj-{k}", net, ip, self.macs[k])
                for k, net, ip in (("a", self.net_a, "10.0.0.5"), ("b", self.net_b, "10.0.0.5"),
                                   ("c", self.net_a, "10.0.0.6"), ("d", self.net_a, "10.0.0.7"))]
        self.import_docs(self.config_path, docs)
        for net in (self.net_a, self.net_b):
            create_network(self.central, net)
        for key, net in (("a", self.net_a), ("b", self.net_b)):
            create_port(self.central, net, new_id(), self.macs[key], ["10.0.0.5"], self.ids[key], f"proj-{key}")
        self.guest_a, self.guest_b = f"ga-{self.net_a[:6]}", f"gb-{self.net_b[:6]}"
        ovnmeta_network(self.cloud, self.net_a, self.guest_a, "10.0.0.5", self.macs["a"])
        self.api = self.start("api", self.config_path)
        self.node = self.start("network-node", self.config_path, ready=lambda p: os.path.exists(self.socket))
        ovnmeta_network(self.cloud, self.net_b, self.guest_b, "10.0.0.5", self.macs["b"])

    def hostname(self, guest: str, *extra: str) -> tuple[int, bytes]:
        code, body, _ = curl(guest, META + "latest/meta-data/hostname", *extra, timeout=3)
        return code, body

    def test_each_guest_gets_its_own(self) -> None:
        """Two guests at 10.0.0.5 in two OVN networks each read their own instance."""
        for guest, key in ((self.guest_a, "a"), (self.guest_b, "b")):
            self.assertEqual(self.eventually(guest, META + "latest/meta-data/hostname", f"guest-{key}".encode()),
                             f"guest-{key}.novalocal".encode())
            code, body, _ = curl(guest, META + "openstack/latest/meta_data.json")
            self.assertEqual((code, json.loads(body)["uuid"], json.loads(body)["project_id"]), (200, self.ids[key], f"proj-{key}"))
        self.assertIn("OVN Southbound replica in sync with unix:", self.node.log())

    def test_ipv6_link_local(self) -> None:
        """A guest reaching [fe80::a9fe:a9fe] from its link-local address is found by its MAC."""
        url = "http://[fe80::a9fe:a9fe%25eth0]/openstack/latest/meta_data.json"
        body = self.eventually(self.guest_a, url, self.ids["a"].encode())
        self.assertEqual(json.loads(body)["name"], "guest-a")

    def wait_for(self, guest: str, source: str, expect: int, started: float, limit: float = 1.0) -> float:
        """Poll until the guest's request from C{source} gets C{expect}; the seconds since C{started}."""
        while True:
            code, _ = self.hostname(guest, "--interface", source)
            elapsed = time.monotonic() - started
            if code == expect:
                return elapsed
            if elapsed > limit + 2:
                self.fail(f"{source} still answered {code}, not {expect}, {elapsed:.2f} s after the change in NB")
            time.sleep(0.02)

    def test_port_created_and_deleted(self) -> None:
        """A port created in NB is served within 1 s (despite a cached miss), and refused within 1 s once deleted."""
        self.eventually(self.guest_a, META + "latest/meta-data/hostname", b"guest-a")
        subprocess.run(["ip", "-n", self.guest_a, "addr", "add", "10.0.0.6/24", "dev", "eth0"], check=True)
        self.assertEqual(self.hostname(self.guest_a, "--interface", "10.0.0.6")[0], 404)  # a miss, cached 300 s
        port = new_id()
        started = time.monotonic()
        create_port(self.central, self.net_a, port, self.macs["c"], ["10.0.0.6"], self.ids["c"], "proj-c")
        served = self.wait_for(self.guest_a, "10.0.0.6", 200, started)
        self.assertEqual(self.hostname(self.guest_a, "--interface", "10.0.0.6"), (200, b"guest-c.novalocal"))
        started = time.monotonic()
        delete_port(self.central, port, wait=False)
        refused = self.wait_for(self.guest_a, "10.0.0.6", 404, started)
        self.assertLess(served, 1.0)
        self.assertLess(refused, 1.0)

    def test_stock_haproxy_with_the_ovn_template(self) -> None:
        """Neutron's OVN haproxy template in front of the agent's socket: X-OVN-Network-ID identifies the network."""
        if not os.path.exists(HAPROXY) and subprocess.run(["which", "haproxy"], capture_output=True).returncode:
            raise SkipTest("haproxy is not installed (bash bench/install.sh installs it; CI does)")
        port = new_id()
        create_port(self.central, self.net_a, port, self.macs["d"], ["10.0.0.7"], self.ids["d"], "proj-d")
        guest = f"gd-{self.net_a[:6]}"
        namespace = ovnmeta_network(self.cloud, self.net_a, guest, "10.0.0.7", self.macs["d"], prefix="hameta")
        config = haproxy_ovn_config(os.path.join(self.dir, "haproxy.conf"), self.net_a, self.socket)
        haproxy = subprocess.Popen(["ip", "netns", "exec", namespace, HAPROXY, "-db", "-f", config],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.addCleanup(lambda: (haproxy.terminate(), haproxy.wait()))
        body = self.eventually(guest, META + "openstack/latest/meta_data.json", self.ids["d"].encode())
        self.assertEqual(json.loads(body)["name"], "guest-d")
        # haproxy adds its header to a guest's own: two networks named, refused (never the other network)
        code, _, _ = curl(guest, META + "latest/meta-data/hostname", "-H", f"X-OVN-Network-ID: {self.net_b}")
        self.assertEqual(code, 400)

    def test_status(self) -> None:
        """mdsvc-manage ovn-status tells the operator the replica is in sync, with its age."""
        self.eventually(self.guest_a, META + "latest/meta-data/hostname", b"guest-a")
        out = manage(self.config_path, "ovn-status").stdout
        self.assertIn("state: in-sync (member unix:", out)
        self.assertIn("replica age: 0 s (in sync)", out)

