"""
mdsvc answers exactly as Nova 34.0.0 does: every path of both trees (EC2 and OpenStack, every
version), the content blobs and the config drive's files, for the instance documents of
C{tests/nova_parity/instances.json} under four configurations (C{[DEFAULT] flat_injected} on and
off, C{[api] dhcp_domain} set and empty).

The expected answers in C{tests/nova_parity/expected.json} were made by Nova's own metadata code
(C{tests/nova_parity/generate.py}, run in the Nova virtualenv of C{bench/install.sh}); nothing in
them is written by hand.  mdsvc is configured from a C{nova.conf}, fed the documents through the
embedded store's import, and asked over HTTP with the signed headers of Neutron's metadata agent.
"""

from __future__ import annotations

import base64
import calendar
import hashlib
import ipaddress
import json
import os
import re
from functools import cache
from importlib import resources
from typing import Any

from twisted.internet.defer import Deferred, ensureDeferred, maybeDeferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from mdsvc.api.addresses import broadcast_text, netaddr_text, netmask_text, network_of, network_text
from mdsvc.api.app import MetadataApp
from mdsvc.api.factory import app_from_config
from mdsvc.api.handler import APIHandler
from mdsvc.api.injected import TEMPLATE
from mdsvc.config import load_config
from mdsvc.configdrive import drive_files
from mdsvc.model import Instance, instance_from_document
from mdsvc.store.sql import SQLDocuments
from mdsvc.store.threaded import DocumentStore
from tests.http import request, response

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "nova_parity")
NOW = calendar.timegm((2026, 11, 24, 12, 0, 0))
SEED_PATTERN = re.compile(rb'"random_seed": "[A-Za-z0-9+/=]*"')
SG_PORTS = "a0000000-0000-4000-8000-000000000001"
DUAL_STACK = "a0000000-0000-4000-8000-000000000002"
V6_ONLY = "a0000000-0000-4000-8000-000000000003"


@cache
def expected() -> dict[str, Any]:
    """C{expected.json}: Nova's answers."""
    with open(os.path.join(HERE, "expected.json")) as f:
        return json.load(f)  # type: ignore[no-any-return]


@cache
def documents() -> list[dict[str, Any]]:
    """C{instances.json}: the instance documents both were given."""
    with open(os.path.join(HERE, "instances.json")) as f:
        return json.load(f)  # type: ignore[no-any-return]


def body(key: str) -> bytes:
    """An expected body by its key (non-UTF-8 bodies are kept as C{base64:...})."""
    text = expected()["bodies"][key]
    if text.startswith("base64:"):
        return base64.b64decode(text[len("base64:"):])
    return text.encode("utf-8")  # type: ignore[no-any-return]


def masked(data: bytes) -> bytes:
    """C{data} with C{random_seed}'s value replaced as the generator replaces it."""
    return SEED_PATTERN.sub(b'"random_seed": "' + expected()["seed"].encode() + b'"', data)


def synchronous(f: Any, *args: Any) -> Deferred[Any]:
    """The store's runner: the blocking call at once."""
    return maybeDeferred(f, *args)


NOVA_CONF = """\
[DEFAULT]
flat_injected = {flat_injected}
{default}

[api]
dhcp_domain = {dhcp_domain}

[neutron]
service_metadata_proxy = true
metadata_proxy_shared_secret = {secret}
"""


class Deployment:
    """mdsvc's API configured as one variant, the documents imported into its embedded store."""

    def __init__(self, case: SynchronousTestCase, variant: str, default: str = "") -> None:
        """
        @param default: more C{[DEFAULT]} option lines.
        """
        options = expected()["variants"][variant]["options"]
        directory = case.mktemp()
        os.makedirs(directory)
        path = os.path.join(directory, "nova.conf")
        with open(path, "w") as f:
            f.write(NOVA_CONF.format(secret=expected()["secret"], default=default, **options))
        self.case = case
        self.config = load_config(path)
        self.documents = SQLDocuments("sqlite:" + os.path.join(directory, "mdsvc.sqlite"))
        self.documents.import_instances(documents())
        self.store = DocumentStore(self.documents, synchronous)
        self.case.addCleanup(self.documents.close)
        clock = Clock()
        clock.advance(NOW)
        self.app: MetadataApp = app_from_config(self.config, self.store, clock)
        self.handler = APIHandler(self.app)

    def get(self, path: str, headers: dict[str, str]) -> list[Any]:
        """C{[status, content type, body]} of a GET."""
        _, connection = request(self.handler, b"GET", path.encode(), {k.encode(): v.encode() for k, v in headers.items()})
        answer = response(connection)
        assert answer is not None, f"no answer to {path}"
        content_type = answer.header(b"content-type")
        return [answer.code, content_type.decode("latin-1") if content_type else None, masked(answer.body)]

    def instance(self, uuid: str) -> Instance:
        """The instance as the store has it."""
        instance = self.case.successResultOf(self.store.get(uuid))
        assert instance is not None
        return instance

    def drive(self, uuid: str) -> list[tuple[str, bytes]]:
        """The instance's config drive files, in order."""
        files = drive_files(self.app, self.instance(uuid), self.config.api.config_drive_skip_versions)
        return [(path, masked(data)) for path, data in self.case.successResultOf(ensureDeferred(files))]


def answer_differences(deployment: Deployment, variant: str) -> tuple[int, list[str]]:
    """How many paths were compared, and each one answered differently (C{variant}, uuid, path, both answers)."""
    compared, differences = 0, []
    for uuid, nova in expected()["variants"][variant]["instances"].items():
        for path, (status, content_type, key) in nova["answers"].items():
            compared += 1
            got = deployment.get(path, nova["headers"])
            want = [status, content_type, body(key)]
            if got != want:
                differences.append(f"{variant} {uuid} {path}: Nova {want!r}, mdsvc {got!r}")
    return compared, differences


def drive_differences(deployment: Deployment, variant: str) -> tuple[int, list[str]]:
    """How many drive files were compared, and each difference (missing, extra, order, content)."""
    compared, differences = 0, []
    for uuid, nova in expected()["variants"][variant]["instances"].items():
        want = [(path, body(key)) for path, key in nova["drive"]]
        got = deployment.drive(uuid)
        compared += len(want)
        if [p for p, _ in got] != [p for p, _ in want]:
            differences.append(f"{variant} {uuid} drive files: Nova {[p for p, _ in want]}, mdsvc {[p for p, _ in got]}")
        differences += [f"{variant} {uuid} drive {path}: Nova {w!r}, mdsvc {g!r}"
                        for (path, w), (_, g) in zip(want, got, strict=False) if w != g]
    return compared, differences


class EveryPathTests(SynchronousTestCase):
    """Every path Nova answers for the documents, and every drive file, byte for byte."""

    def check_answers(self, variant: str) -> None:
        """Status, content type and body of every path of every instance under C{variant}."""
        compared, differences = answer_differences(Deployment(self, variant), variant)
        nova = expected()["variants"][variant]["instances"]
        self.assertEqual(compared, sum(len(i["answers"]) for i in nova.values()))
        self.assertEqual(differences, [], f"{len(differences)} of {compared} answers differ from Nova's")

    def check_drive(self, variant: str) -> None:
        """The config drive's file list and every file of every instance under C{variant}."""
        compared, differences = drive_differences(Deployment(self, variant), variant)
        self.assertGreater(compared, 0)
        self.assertEqual(differences, [], f"{len(differences)} drive differences from Nova's")

    def test_made_by_nova(self) -> None:
        """The expected answers were made by Nova 34.0.0's code."""
        self.assertEqual(expected()["made_by"], "tests/nova_parity/generate.py with Nova 34.0.0")

    def test_variants(self) -> None:
        """The expected answers cover the four configurations, each for all three documents."""
        variants = expected()["variants"]
        self.assertEqual(
            {name: (v["options"]["flat_injected"], v["options"]["dhcp_domain"]) for name, v in variants.items()},
            {"default": (False, "novalocal"), "flat_injected": (True, "novalocal"),
             "flat_injected_no_domain": (True, ""), "no_domain": (False, "")},
        )
        for variant in variants.values():
            self.assertEqual(sorted(variant["instances"]), sorted(doc["uuid"] for doc in documents()))

    def test_default_answers(self) -> None:
        """Default options: every path as Nova answers it."""
        self.check_answers("default")

    def test_flat_injected_answers(self) -> None:
        """C{flat_injected = True}: every path as Nova answers it."""
        self.check_answers("flat_injected")

    def test_flat_injected_no_domain_answers(self) -> None:
        """C{flat_injected = True}, C{dhcp_domain} empty: every path as Nova answers it."""
        self.check_answers("flat_injected_no_domain")

    def test_no_domain_answers(self) -> None:
        """C{dhcp_domain} empty: every path as Nova answers it."""
        self.check_answers("no_domain")

    def test_default_drive(self) -> None:
        """Default options: the config drive as Nova writes it."""
        self.check_drive("default")

    def test_flat_injected_drive(self) -> None:
        """C{flat_injected = True}: the config drive as Nova writes it."""
        self.check_drive("flat_injected")

    def test_flat_injected_no_domain_drive(self) -> None:
        """C{flat_injected = True}, C{dhcp_domain} empty: the config drive as Nova writes it."""
        self.check_drive("flat_injected_no_domain")

    def test_no_domain_drive(self) -> None:
        """C{dhcp_domain} empty: the config drive as Nova writes it."""
        self.check_drive("no_domain")


class NovaAnswers:
    """One variant's expected answers of one instance, and mdsvc's, by path."""

    def __init__(self, case: SynchronousTestCase, variant: str, uuid: str) -> None:
        self.nova = expected()["variants"][variant]["instances"][uuid]
        self.deployment = Deployment(case, variant)
        self.uuid = uuid

    def want(self, path: str) -> bytes:
        """Nova's body of C{path}."""
        return body(self.nova["answers"][path][2])

    def got(self, path: str) -> bytes:
        """mdsvc's body of C{path}."""
        status, _, data = self.deployment.get(path, self.nova["headers"])
        assert status == self.nova["answers"][path][0], (path, status)
        return data  # type: ignore[no-any-return]

    def drive_want(self) -> dict[str, bytes]:
        """Nova's drive files."""
        return {path: body(key) for path, key in self.nova["drive"]}

    def drive_got(self) -> dict[str, bytes]:
        """mdsvc's drive files."""
        return dict(self.deployment.drive(self.uuid))


class SecurityGroupTests(SynchronousTestCase):
    """Issue 14 (1): the groups per port, in port order, duplicates kept."""

    def test_issue_example(self) -> None:
        """Two ports, the first in C{default} and C{web}, the second in the instance's C{default}."""
        instance = instance_from_document({"uuid": "11111111-0000-4000-8000-000000000001", "security_groups": ["default"], "nics": [
            {"port_id": "p1", "mac": "fa:16:3e:00:00:01", "security_groups": ["default", "web"]},
            {"port_id": "p2", "mac": "fa:16:3e:00:00:02"},
        ]})
        self.assertEqual(instance.all_security_groups(), ["default", "web", "default"])

    def test_no_ports(self) -> None:
        """An instance without ports is in no group: Nova asks Neutron for its ports' groups."""
        self.assertEqual(instance_from_document({"uuid": "11111111-0000-4000-8000-000000000001", "security_groups": ["default"]}).all_security_groups(), [])

    def test_ec2_tree(self) -> None:
        """C{security-groups} of every EC2 version: Nova's list (a port with its own groups, a
        port with the instance's, a port without any, a port with its own in another order)."""
        answers = NovaAnswers(self, "default", SG_PORTS)
        self.assertEqual(answers.want("/latest/meta-data/security-groups"), b"default\nweb\ndefault\nweb\ndefault")
        for version in ("1.0", "2007-01-19", "2009-04-04", "latest"):
            path = f"/{version}/meta-data/security-groups"
            self.assertEqual(answers.got(path), answers.want(path))

    def test_port_without_fixed_ip(self) -> None:
        """A port without a fixed IP still brings its groups (Nova lists every port's)."""
        answers = NovaAnswers(self, "default", V6_ONLY)
        self.assertEqual(answers.want("/latest/meta-data/security-groups"), b"mgmt\ndefault\ndefault")
        self.assertEqual(answers.got("/latest/meta-data/security-groups"), answers.want("/latest/meta-data/security-groups"))

    def test_drive_meta_data_json(self) -> None:
        """The drives' C{ec2/*/meta-data.json} list the same groups as Nova's."""
        answers = NovaAnswers(self, "default", SG_PORTS)
        want, got = answers.drive_want(), answers.drive_got()
        for path in ("ec2/2009-04-04/meta-data.json", "ec2/latest/meta-data.json"):
            self.assertEqual(json.loads(want[path])["security-groups"], ["default", "web", "default", "web", "default"])
            self.assertEqual(got[path], want[path])


class AddressTextTests(SynchronousTestCase):
    """Issue 14 (2): addresses as Neutron wrote them; what Nova computes, as netaddr prints it."""

    def test_netaddr_text(self) -> None:
        """Network, netmask, broadcast, address part and prefix length of each range of the
        generator's list (mapped and compatible IPv6, zero runs, /31, /32, /0), as netaddr prints them."""
        vectors = expected()["netaddr"]
        self.assertGreater(len(vectors), 20)
        for cidr, want in vectors.items():
            net = network_of(cidr)
            address = netaddr_text(ipaddress.ip_interface(cidr).ip)
            got = [network_text(net), netmask_text(net), broadcast_text(net), address, str(net.prefixlen)]
            self.assertEqual(got, want, cidr)

    def network_data(self, variant: str = "default") -> tuple[dict[str, Any], dict[str, Any]]:
        answers = NovaAnswers(self, variant, DUAL_STACK)
        path = "/openstack/latest/network_data.json"
        return json.loads(answers.want(path)), json.loads(answers.got(path))

    def test_fixed_ips_as_written(self) -> None:
        """IPv6 fixed IPs in C{network_data.json} are Neutron's text, compressed or not."""
        want, got = self.network_data()
        addresses = [n.get("ip_address") for n in want["networks"]]
        self.assertIn("2001:db8:10::f816:3eff:fe4c:2a01", addresses)
        self.assertIn("2001:0db8:0020:0000:f816:3eff:fe00:0202", addresses)
        self.assertEqual([n.get("ip_address") for n in got["networks"]], addresses)

    def test_gateways_routes_dns_as_written(self) -> None:
        """Gateways, next hops and DNS servers as written; route networks and netmasks as netaddr
        prints them (an IPv4-mapped range with its dotted tail)."""
        want, got = self.network_data()
        static = want["networks"][1]
        self.assertEqual(static["routes"][0]["gateway"], "2001:DB8:10::1")
        self.assertEqual(static["routes"][1], {"network": "2001:db8:20::", "netmask": "ffff:ffff:ffff:ffff::", "gateway": "2001:db8:10:0::fe"})
        self.assertEqual(static["routes"][2]["network"], "::ffff:0.0.0.0")
        self.assertEqual(static["services"][0], {"type": "dns", "address": "2001:4860:4860:0:0:0:0:8888"})
        self.assertEqual(got, want)

    def test_mac_as_written(self) -> None:
        """A MAC in upper case stays so in C{network_data.json} and the interfaces template, as in Nova."""
        answers = NovaAnswers(self, "flat_injected", V6_ONLY)
        links = json.loads(answers.want("/openstack/latest/network_data.json"))["links"]
        self.assertEqual(links[-1]["ethernet_mac_address"], "FA:16:3E:00:03:03")
        self.assertIn(b"hwaddress ether FA:16:3E:00:03:03\n", answers.want("/openstack/content/0000"))
        for path in ("/openstack/latest/network_data.json", "/openstack/content/0000"):
            self.assertEqual(answers.got(path), answers.want(path))

    def test_forwarded_address_as_sent(self) -> None:
        """An instance without IPv4 has the request's address as C{local-ipv4}, as the proxy sent it."""
        answers = NovaAnswers(self, "default", V6_ONLY)
        self.assertEqual(answers.want("/latest/meta-data/local-ipv4"), b"2001:DB8:50:0:0:0:0:5")
        self.assertEqual(answers.got("/latest/meta-data/local-ipv4"), answers.want("/latest/meta-data/local-ipv4"))


class InjectedTemplateTests(SynchronousTestCase):
    """Issue 14 (3): C{flat_injected} renders Nova's interfaces template, byte for byte."""

    def test_rendered(self) -> None:
        """C{/openstack/content/0000} of each instance, with and without C{dhcp_domain}: IPv4 and
        IPv6 static subnets rendered, DHCP subnets (a DHCP server) left out, /31 without broadcast."""
        for variant in ("flat_injected", "flat_injected_no_domain"):
            for uuid in (SG_PORTS, DUAL_STACK, V6_ONLY):
                answers = NovaAnswers(self, variant, uuid)
                self.assertTrue(answers.want("/openstack/content/0000").startswith(b"# Injected by Nova on instance boot\n"))
                self.assertEqual(answers.got("/openstack/content/0000"), answers.want("/openstack/content/0000"), (variant, uuid))

    def test_template_values(self) -> None:
        """Every value handed to an operator's C{injected_network_template} (IPv4 routes included,
        which Nova's own template leaves out) is Nova's: a template printing them as JSON renders
        the same bytes."""
        values = os.path.join(HERE, "values.template")
        deployment = Deployment(self, "flat_injected", f"injected_network_template = {values}")
        self.assertIn('"routes": [{"cidr": ', expected()["template_values"][SG_PORTS])
        for uuid, want in expected()["template_values"].items():
            got = deployment.get("/openstack/content/0000", expected()["variants"]["flat_injected"]["instances"][uuid]["headers"])
            self.assertEqual(got[:3:2], [200, want.encode()], uuid)

    def test_nova_template(self) -> None:
        """The template mdsvc ships is Nova's file unchanged, after mdsvc's leading comment."""
        text = resources.files("mdsvc").joinpath(TEMPLATE).read_bytes()
        nova = text[text.index(b"#}\n") + 3:]
        self.assertEqual(hashlib.sha256(nova).hexdigest(), expected()["interfaces_template_sha256"])

    def test_what_it_holds(self) -> None:
        """Nova's rendering (the expected data) holds what the issue asks for: static IPv4 with
        and without gateway and DNS, a /31, static IPv6 with the prefix length, DHCP ports skipped."""
        text = NovaAnswers(self, "flat_injected", DUAL_STACK).want("/openstack/content/0000").decode()
        self.assertIn("iface eth0 inet static\n", text)
        self.assertIn("iface eth0 inet6 static\n    hwaddress ether fa:16:3e:00:02:01\n    address 2001:db8:10::f816:3eff:fe4c:2a01\n    netmask 64\n", text)
        self.assertNotIn("eth2", text)  # DHCPv6 stateful, with a DHCP server
        v4 = NovaAnswers(self, "flat_injected", SG_PORTS).want("/openstack/content/0000").decode()
        self.assertIn("    broadcast None\n", v4)
        self.assertNotIn("eth1", v4)  # a DHCP server on its subnet

    def test_network_config(self) -> None:
        """C{meta_data.json} points at it (C{network_config}) in every version, and not without C{flat_injected}."""
        answers = NovaAnswers(self, "flat_injected", DUAL_STACK)
        for version in ("2012-08-10", "latest"):
            path = f"/openstack/{version}/meta_data.json"
            self.assertEqual(json.loads(answers.want(path))["network_config"], {"name": "network_config", "content_path": "/content/0000"})
            self.assertEqual(answers.got(path), answers.want(path))
        plain = NovaAnswers(self, "default", DUAL_STACK)
        self.assertNotIn("network_config", json.loads(plain.got("/openstack/latest/meta_data.json")))
        self.assertEqual(plain.deployment.get("/openstack/content/0000", plain.nova["headers"])[0], 404)

    def test_drive(self) -> None:
        """On drives the template is C{content/0000} and the injected files follow it."""
        answers = NovaAnswers(self, "flat_injected", SG_PORTS)
        want, got = answers.drive_want(), answers.drive_got()
        self.assertEqual(json.loads(want["openstack/latest/meta_data.json"])["files"], [{"path": "/etc/motd", "content_path": "/content/0001"}])
        for path in ("openstack/content/0000", "openstack/content/0001", "openstack/latest/meta_data.json"):
            self.assertEqual(got[path], want[path])
