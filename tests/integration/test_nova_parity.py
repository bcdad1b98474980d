"""
Parity with Nova on the same database: Nova's own metadata WSGI app (nova.wsgi.metadata, Nova
34.0.0, in its virtualenv) and mdsvc's api role with C{[mdsvc] store = nova} read one MariaDB
whose schemas C{nova-manage} made and whose instances C{nova.objects} made
(tests/integration/nova_cloud.py), and ask one Neutron.  Every path of both trees, as found by
walking Nova's own listings, must answer the same status, content type and bytes, the
C{random_seed} of C{meta_data.json} aside.
"""

from __future__ import annotations

import re
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from tests.integration.nova_cloud import NovaCloud, request, shared_nova_cloud, sign

OPENSTACK_FILES = ("meta_data.json", "user_data", "password", "vendor_data.json", "network_data.json", "vendor_data2.json",
                   "version", "nonexistent")
SEED = re.compile(rb'"random_seed": "[A-Za-z0-9+/=]{684}"')

_servers: dict[str, Any] = {}


def servers(proxy: bool) -> tuple[NovaCloud, int, int]:
    """The cloud, Nova's app port and mdsvc's port, for one identification mode (started once)."""
    cloud = shared_nova_cloud()
    key = "proxy" if proxy else "address"
    if key not in _servers:
        nova = cloud.start_nova_app(proxy=proxy, cache=15)
        api = cloud.start_mdsvc(cloud.workdir(f"mdsvc-parity-{key}-"), proxy=proxy, cache=15)
        _servers[key] = (nova.port, api.port)
    return (cloud, *_servers[key])


def get(port: int, path: str, headers: dict[str, str], source: str | None = None) -> tuple[int, str, bytes]:
    """One GET from C{source} (a loopback address); status, content type and body."""
    return request(port, "GET", path, headers, source=source)


def crawl(nova_port: int, headers: dict[str, str], source: str | None = None) -> list[str]:
    """
    Every path of both trees, as Nova's listings show them: the EC2 versions and each one's
    tree (a C{name/} line is a directory, C{0=keyname} the public key's), the OpenStack versions
    and each one's files (those listed and those that are not, which some versions refuse).
    """
    paths = ["/", "/ec2", "/ec2/", "/openstack", "/openstack/"]

    def walk(path: str) -> None:
        paths.append(path)
        status, _, body = get(nova_port, path, headers, source)
        if status != 200:
            return
        for line in body.decode("utf-8").split("\n"):
            if line.endswith("/"):
                walk(f"{path}/{line[:-1]}")
            elif "=" in line and path.endswith("public-keys"):
                walk(f"{path}/{line.split('=', 1)[0]}")
            elif line:
                paths.append(f"{path}/{line}")

    _, _, versions = get(nova_port, "/", headers, source)
    for version in versions.decode().split("\n"):
        walk(f"/{version}")
    walk("/ec2/latest/meta-data")
    _, _, versions = get(nova_port, "/openstack", headers, source)
    for version in versions.decode().split("\n"):
        paths.append(f"/openstack/{version}")
        paths.append(f"/openstack/{version}/")
        paths += [f"/openstack/{version}/{name}" for name in OPENSTACK_FILES]
    paths += ["/latest/meta-data/", "/latest/meta-data/placement/", "/openstack/latest/meta_data.json/", "/9999-99-99",
              "/openstack/9999-01-01/meta_data.json", "/latest/nonexistent", "/openstack/content/0000"]
    return list(dict.fromkeys(paths))


class ParityCase(SynchronousTestCase):
    """Comparisons of Nova's answers and mdsvc's."""

    def compare(self, nova_port: int, mdsvc_port: int, paths: list[str], headers: dict[str, str],
                source: str | None = None) -> int:
        """
        Ask both every path; fail listing every difference.

        @return: how many paths answered 200 (so a test sees it compared something real).
        """
        differences = []
        found = 0
        for path in paths:
            nova = get(nova_port, path, headers, source)
            mine = get(mdsvc_port, path, headers, source)
            if nova[0] == 200:
                found += 1
                same = (nova[0], nova[1], SEED.sub(b"SEED", nova[2])) == (mine[0], mine[1], SEED.sub(b"SEED", mine[2]))
            else:
                same = nova[0] == mine[0]
            if not same:
                differences.append(f"{path}:\n  nova  {nova[0]} {nova[1]!r} {nova[2][:600]!r}\n  mdsvc {mine[0]} {mine[1]!r} {mine[2][:600]!r}")
        self.assertEqual(differences, [], "\n".join(differences))
        return found


class ProxyModeParityTests(ParityCase):
    """Behind a Neutron metadata agent (signed X-Instance-ID): every instance, every path."""

    def check(self, name: str, minimum: int, forwarded_for: str | None = "10.10.0.5") -> None:
        """Compare every path of instance C{name}; at least C{minimum} of them answer 200."""
        cloud, nova_port, mdsvc_port = servers(proxy=True)
        headers = cloud.proxy_headers(name, forwarded_for)
        paths = crawl(nova_port, headers)
        self.assertGreaterEqual(self.compare(nova_port, mdsvc_port, paths, headers), minimum)

    def test_image_booted_two_nics(self) -> None:
        """
        C{web}: an image with kernel and ramdisk, two NICs each IPv4 and IPv6 (static, SLAAC,
        DHCP, DHCPv6-stateful), floating IP, key pair, metadata, user data, tagged NICs and
        disks, pinned CPUs, local and volume disks, a password Nova's own code set: the same
        answer on every path.
        """
        self.check("web", 300)

    def test_volume_booted(self) -> None:
        """C{vol}: boots from a volume (no image: C{ami-id} None), a tagged second volume, no key, no user data."""
        self.check("vol", 250)

    def test_no_network(self) -> None:
        """C{bare}: no ports (network_data C{{}}, C{local-ipv4} from X-Forwarded-For), no root device name."""
        self.check("bare", 250, forwarded_for="192.0.2.77")

    def test_second_cell(self) -> None:
        """C{far}: in the second cell, whose EC2 image number Nova or mdsvc makes on first read."""
        self.check("far", 250)

    def test_deleted(self) -> None:
        """C{gone} was deleted: 404 from both, on every path but the root."""
        cloud, nova_port, mdsvc_port = servers(proxy=True)
        headers = cloud.proxy_headers("gone")
        for path in ("/latest/meta-data/", "/openstack/latest/meta_data.json", "/openstack"):
            self.assertEqual((get(nova_port, path, headers)[0], get(mdsvc_port, path, headers)[0]), (404, 404), path)
        self.assertEqual(get(mdsvc_port, "/", headers)[0], 200)

    def test_wrong_tenant(self) -> None:
        """A tenant that does not own the instance: 404 from both."""
        cloud, nova_port, mdsvc_port = servers(proxy=True)
        headers = dict(cloud.proxy_headers("web"), **{"X-Tenant-ID": "someone-else"})
        path = "/openstack/latest/meta_data.json"
        self.assertEqual((get(nova_port, path, headers)[0], get(mdsvc_port, path, headers)[0]), (404, 404))


class ProviderModeParityTests(ParityCase):
    """A metadata provider (an NSX edge) vouches for the guest's address in its networks."""

    def test_provider(self) -> None:
        """edge-1 and 10.10.0.5: Neutron's ports in edge-1's networks say C{web}; every path the same."""
        _, nova_port, mdsvc_port = servers(proxy=True)
        headers = {"X-Metadata-Provider": "edge-1", "X-Metadata-Provider-Signature": sign("edge-1"), "X-Forwarded-For": "10.10.0.5"}
        paths = crawl(nova_port, headers)
        self.assertGreaterEqual(self.compare(nova_port, mdsvc_port, paths, headers), 300)

    def test_provider_without_subnets(self) -> None:
        """A provider serving no subnet: 400 from both."""
        _, nova_port, mdsvc_port = servers(proxy=True)
        headers = {"X-Metadata-Provider": "edge-9", "X-Metadata-Provider-Signature": sign("edge-9"), "X-Forwarded-For": "10.10.0.5"}
        path = "/latest/meta-data/instance-id"
        self.assertEqual((get(nova_port, path, headers)[0], get(mdsvc_port, path, headers)[0]), (400, 400))


class RemoteAddressParityTests(ParityCase):
    """No proxy: the instance is found by the request's source address, through Neutron's ports."""

    def test_found_by_address(self) -> None:
        """From 127.0.0.3 (C{far}'s fixed IP, in the second cell): every path the same."""
        _, nova_port, mdsvc_port = servers(proxy=False)
        paths = crawl(nova_port, {}, source="127.0.0.3")
        self.assertGreaterEqual(self.compare(nova_port, mdsvc_port, paths, {}, source="127.0.0.3"), 250)

    def test_unknown_address(self) -> None:
        """From an address no port holds: 404 from both."""
        _, nova_port, mdsvc_port = servers(proxy=False)
        path = "/latest/meta-data/instance-id"
        self.assertEqual((get(nova_port, path, {}, "127.0.0.9")[0], get(mdsvc_port, path, {}, "127.0.0.9")[0]), (404, 404))



