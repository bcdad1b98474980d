"""Tests for L{mdsvc.lookup.static}: the static-file lookup backend."""

from __future__ import annotations

import json
import os
from typing import Any

from twisted.logger import capturedLogs
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from mdsvc.hop import normalise_address
from mdsvc.interfaces import IInstanceLookup, LookupUnavailable
from mdsvc.lookup.static import StaticFileError, StaticLookup, parse_static

CONTENT: dict[str, Any] = {
    "ports": [
        {"network_id": "net1", "ip_address": "10.0.0.5", "mac_address": "FA:16:3E:00:00:01", "device_id": "vm-1", "project_id": "p1"},
        {"network_id": "net2", "ip_address": ["10.0.0.5", "fd00::0005"], "device_id": "vm-2", "project_id": "p2"},
        {"network_id": "net3", "ip_address": "192.168.1.1", "mac_address": "52:54:00:de:5b:bf", "device_id": "vm-3", "project_id": "p3"},
        {"network_id": "net4", "ip_address": "10.4.0.1", "device_id": "", "project_id": "p4"},
        {"network_id": "net5", "mac_address": "fa:16:3e:00:00:05", "device_id": "vm-5", "project_id": "p5"},
    ],
    "routers": {"r12": ["net1", "net2"], "r2": ["net2"], "r-empty": []},
}

YAML = """\
# ports of the lab
ports:
  - network_id: net1
    ip_address: 10.0.0.5
    mac_address: fa:16:3e:00:00:01
    device_id: vm-1
    project_id: p1
routers:
  r1: [net1]
"""


class StaticTestsMixin:
    """A static file in a temporary directory."""

    def write(self, content: Any, name: str = "ports.json") -> str:
        """Write C{content} (JSON-encoded unless text) to C{name}, changing its mtime; return the path."""
        if not hasattr(self, "dir"):
            self.dir = self.mktemp()  # type: ignore[attr-defined]
            os.makedirs(self.dir)
        path = os.path.join(self.dir, name)
        with open(path, "w") as f:
            f.write(content if isinstance(content, str) else json.dumps(content))
        # a distinct mtime for every write, even within the file system's timestamp granularity
        stamp = getattr(self, "_stamp", 1_700_000_000) + 10
        self._stamp = stamp
        os.utime(path, (stamp, stamp))
        return path


class LookupTests(StaticTestsMixin, SynchronousTestCase):
    """Matching: the rules of the store backend (neutron spec §2.1)."""

    def setUp(self) -> None:
        self.lookup = StaticLookup(self.write(CONTENT))
        self.lookup.load()

    def found(self, *args: Any, **kwargs: Any) -> Any:
        """The result of a lookup."""
        return self.successResultOf(self.lookup.lookup(*args, **kwargs))

    def test_interface(self) -> None:
        """StaticLookup provides IInstanceLookup, named static."""
        self.assertTrue(verifyObject(IInstanceLookup, self.lookup))
        self.assertEqual(self.lookup.name, "static")

    def test_network(self) -> None:
        """One port with the IP in the network: its device and project."""
        self.assertEqual(self.found("10.0.0.5", network_id="net1"), ("vm-1", "p1"))
        self.assertEqual(self.found("10.0.0.5", network_id="net2"), ("vm-2", "p2"))

    def test_ipListAndCanonicalForm(self) -> None:
        """An ip_address list; IPv6 compared in canonical form."""
        self.assertEqual(self.found("fd00::5", network_id="net2"), ("vm-2", "p2"))

    def test_normalisedAddresses(self) -> None:
        """192.168.1.1 and ::ffff:192.168.1.1 find the port; fe80::5054:ff:fede:5bbf finds it by MAC (§10 item 5)."""
        for xff in ("192.168.1.1", "::ffff:192.168.1.1", "fe80::5054:ff:fede:5bbf"):
            ip, mac = normalise_address(xff)
            self.assertEqual(self.found(ip, network_id="net3", mac=mac), ("vm-3", "p3"))

    def test_macAnyCase(self) -> None:
        """MACs compare in any case; a port may have a MAC and no IP."""
        self.assertEqual(self.found("fe80::1", network_id="net1", mac="fa:16:3e:00:00:01"), ("vm-1", "p1"))
        self.assertEqual(self.found("fe80::1", network_id="net5", mac="FA:16:3E:00:00:05"), ("vm-5", "p5"))

    def test_notFound(self) -> None:
        """No port: None with Neutron's warning."""
        with capturedLogs() as events:
            self.assertIsNone(self.found("10.0.0.6", network_id="net1"))
        self.assertEqual([(e["log_format"], e["network_id"], e["ip"]) for e in events],
                         [("No port found in network {network_id} with IP address {ip}", "net1", "10.0.0.6")])

    def test_noDevice(self) -> None:
        """A port with an empty device_id is no match."""
        self.assertIsNone(self.found("10.4.0.1", network_id="net4"))

    def test_router(self) -> None:
        """Behind a router: the ports of its networks."""
        self.assertEqual(self.found("fd00::5", router_id="r12"), ("vm-2", "p2"))
        self.assertEqual(self.found("10.0.0.5", router_id="r2"), ("vm-2", "p2"))

    def test_routerAmbiguous(self) -> None:
        """The IP in two of the router's networks: None, the warning naming both instances."""
        with capturedLogs() as events:
            self.assertIsNone(self.found("10.0.0.5", router_id="r12"))
        self.assertEqual([(e["network_id"], e["router_id"], e["instances"]) for e in events], [(None, "r12", "vm-1, vm-2")])

    def test_routerWithoutNetworks(self) -> None:
        """A router without networks finds nothing (no search of all networks)."""
        self.assertIsNone(self.found("10.0.0.5", router_id="r-empty"))

    def test_unknownRouter(self) -> None:
        """An unknown router finds nothing."""
        self.assertIsNone(self.found("10.0.0.5", router_id="r-nope"))

    def test_bothAndNeither(self) -> None:
        """Network wins over router; neither is a TypeError."""
        self.assertEqual(self.found("10.0.0.5", network_id="net1", router_id="r2"), ("vm-1", "p1"))
        self.failureResultOf(self.lookup.lookup("10.0.0.5"), TypeError)

    def test_yaml(self) -> None:
        """A YAML file works the same."""
        lookup = StaticLookup(self.write(YAML, "ports.yaml"))
        self.assertEqual(self.successResultOf(lookup.lookup("10.0.0.5", router_id="r1")), ("vm-1", "p1"))


class ReloadTests(StaticTestsMixin, SynchronousTestCase):
    """The file is read again when it changes; bad content keeps the last good."""

    def test_reloadOnChange(self) -> None:
        """A changed file is read again; an unchanged one is not."""
        path = self.write(CONTENT)
        lookup = StaticLookup(path)
        first = lookup.load()
        self.assertIs(lookup.load(), first)
        self.write({"ports": [{"network_id": "net1", "ip_address": "10.0.0.5", "device_id": "vm-new", "project_id": "p"}]})
        self.assertEqual(self.successResultOf(lookup.lookup("10.0.0.5", network_id="net1")), ("vm-new", "p"))

    def test_missingFile(self) -> None:
        """A missing file with nothing loaded before: LookupUnavailable, logged once."""
        path = os.path.join(self.mktemp(), "ports.json")
        lookup = StaticLookup(path)
        with capturedLogs() as events:
            first = self.failureResultOf(lookup.lookup("10.0.0.5", network_id="net1"), LookupUnavailable)
            self.failureResultOf(lookup.lookup("10.0.0.5", network_id="net1"), LookupUnavailable)
        self.assertEqual(str(first.value), f"{path}: file does not exist")
        self.assertEqual([e["reason"] for e in events], [str(first.value)])

    def test_badFileNoGoodContent(self) -> None:
        """A bad first file: LookupUnavailable naming the file and the entry."""
        content = json.loads(json.dumps(CONTENT))
        content["ports"][3]["ip_address"] = "x"
        path = self.write(content)
        failure = self.failureResultOf(StaticLookup(path).lookup("10.0.0.5", network_id="net1"), LookupUnavailable)
        self.assertEqual(str(failure.value), f"{path}: ports[3].ip_address: 'x' is not an IP address")

    def test_badFileKeepsLastGood(self) -> None:
        """A file turned bad: the last good content is served, with one warning per change."""
        path = self.write(CONTENT)
        lookup = StaticLookup(path)
        lookup.load()
        self.write("{not json")
        with capturedLogs() as events:
            self.assertEqual(self.successResultOf(lookup.lookup("10.0.0.5", network_id="net1")), ("vm-1", "p1"))
            self.assertEqual(self.successResultOf(lookup.lookup("10.0.0.5", network_id="net1")), ("vm-1", "p1"))
        self.assertEqual([(e["log_format"], e["reason"]) for e in events],
                         [("{reason}; still using the last good content", f"{path}:1: invalid JSON: Expecting property name enclosed in double quotes")])
        self.write({"ports": "nope"})
        with capturedLogs() as events:
            self.successResultOf(lookup.lookup("10.0.0.5", network_id="net1"))
        self.assertEqual([e["reason"] for e in events], [f"{path}: ports: expected a list, got a string"])
        self.write(CONTENT)
        with capturedLogs() as events:
            self.successResultOf(lookup.lookup("10.0.0.5", network_id="net1"))
        self.assertEqual([e["log_format"] for e in events], ["loaded {ports} port addresses and {routers} routers from {path}"])

    def test_deletedFileKeepsLastGood(self) -> None:
        """A file removed after a good load: the last good content is served."""
        path = self.write(CONTENT)
        lookup = StaticLookup(path)
        lookup.load()
        os.remove(path)
        with capturedLogs() as events:
            self.assertEqual(self.successResultOf(lookup.lookup("10.0.0.5", network_id="net1")), ("vm-1", "p1"))
        self.assertEqual([e["reason"] for e in events], [f"{path}: file does not exist"])


class ValidationTests(SynchronousTestCase):
    """Every problem is one line: file, entry, what is wrong."""

    def bad(self, data: Any, name: str = "ports.json") -> str:
        """The message for C{data} (JSON-encoded unless text)."""
        text = data if isinstance(data, str) else json.dumps(data)
        return str(self.assertRaises(StaticFileError, parse_static, name, text))

    def port(self, **fields: Any) -> dict[str, Any]:
        """A valid port entry with C{fields} changed (None: removed)."""
        entry: dict[str, Any] = {"network_id": "n", "ip_address": "10.0.0.1", "device_id": "d", "project_id": "p"}
        entry.update(fields)
        return {k: v for k, v in entry.items() if v is not None}

    def test_messages(self) -> None:
        """The messages for each kind of bad entry."""
        cases = [
            ([], "ports.json: expected a mapping with 'ports' and 'routers', got a list"),
            ({"ports": [], "extra": 1}, "ports.json: unknown key 'extra' (allowed: ports, routers)"),
            ({"ports": {}}, "ports.json: ports: expected a list, got a mapping"),
            ({"ports": ["x"]}, "ports.json: ports[0]: expected a mapping, got a string"),
            ({"ports": [self.port(ip_address="x")]}, "ports.json: ports[0].ip_address: 'x' is not an IP address"),
            ({"ports": [self.port(), self.port(ip_address=["10.0.0.1", "10.0.0.300"])]},
             "ports.json: ports[1].ip_address[1]: '10.0.0.300' is not an IP address"),
            ({"ports": [self.port(ip_address=5)]}, "ports.json: ports[0].ip_address: expected a string, got an integer"),
            ({"ports": [self.port(mac_address="fa:16:3e")]},
             "ports.json: ports[0].mac_address: 'fa:16:3e' is not a MAC address (expected six colon-separated hex bytes)"),
            ({"ports": [self.port(network_id=None)]}, "ports.json: ports[0]: network_id is missing"),
            ({"ports": [self.port(project_id=None)]}, "ports.json: ports[0]: project_id is missing"),
            ({"ports": [self.port(network_id="")]}, "ports.json: ports[0].network_id: must not be empty"),
            ({"ports": [self.port(device_id=7)]}, "ports.json: ports[0].device_id: expected a string, got an integer"),
            ({"ports": [self.port(ip_address=None)]}, "ports.json: ports[0]: needs an ip_address or a mac_address"),
            ({"ports": [self.port(tenant_id="t")]},
             "ports.json: ports[0]: unknown key 'tenant_id' (allowed: network_id, ip_address, mac_address, device_id, project_id)"),
            ({"routers": []}, "ports.json: routers: expected a mapping of router id to networks, got a list"),
            ({"routers": {"r": "net1"}}, "ports.json: routers['r']: expected a list of network ids, got a string"),
            ({"routers": {"r": ["net1", None]}}, "ports.json: routers['r'][1]: expected a string, got null"),
            ("{\n  \"ports\": [,]\n}", "ports.json:2: invalid JSON: Expecting value"),
        ]
        for data, message in cases:
            self.assertEqual(self.bad(data), message)

    def test_yamlSyntax(self) -> None:
        """A YAML syntax error names the line."""
        self.assertEqual(self.bad("ports:\n  - [a\n  b: c\n", "ports.yaml"), "ports.yaml:3: invalid YAML: expected ',' or ']', but got ':'")

    def test_yamlIdsStayText(self) -> None:
        """A YAML id that looks like a number is refused, naming it, not silently converted."""
        self.assertEqual(self.bad("ports:\n  - {network_id: 12, ip_address: 10.0.0.1, device_id: d, project_id: p}\n", "ports.yaml"),
                         "ports.yaml: ports[0].network_id: expected a string, got an integer")

    def test_emptyFile(self) -> None:
        """An empty YAML file is a mapping-less document: refused."""
        self.assertEqual(self.bad("", "ports.yaml"), "ports.yaml: expected a mapping with 'ports' and 'routers', got null")

    def test_emptyLists(self) -> None:
        """A file with no ports and no routers is valid (and matches nothing)."""
        content = parse_static("ports.json", '{"ports": [], "routers": {}}')
        self.assertEqual((content.by_ip, content.by_mac, content.routers), ({}, {}, {}))
