"""Rendering of the documents: network_data.json, devices, block devices, EC2 data, hostnames."""

from __future__ import annotations

import json

from twisted.trial.unittest import SynchronousTestCase

from mdsvc.api.ec2 import block_device_mapping, ec2_meta_data, full_hostname
from mdsvc.api.errors import MetadataError
from mdsvc.api.metadata import InstanceMetadata, normalise_path, render_value
from mdsvc.api.network_data import network_data
from mdsvc.api.openstack import devices, meta_data
from mdsvc.api.versions import openstack_listing
from mdsvc.model import BlockDevice, Device, FixedIp, Instance, KeyPair, Network, Nic, Subnet, instance_from_document

UUID = "0f0f0f0f-0000-4000-8000-000000000001"


def dumps(value: object) -> str:
    return json.dumps(value)


class NetworkDataTests(SynchronousTestCase):
    """network_data.json by Nova's algorithm (spec §2.4.5)."""

    def test_no_networks(self) -> None:
        """No NICs: {}."""
        self.assertEqual(network_data(Instance(uuid="u", name="n", hostname="h")), {})

    def test_static_dual_stack(self) -> None:
        """The upstream static dual-stack vector, byte for byte."""
        nic = Nic(
            port_id=None, mac="aa:aa:aa:aa:aa:aa", vif_type=None, network=Network(id="<net uuid>", mtu=1500),
            fixed_ips=(
                FixedIp("10.10.0.2", Subnet(id="s4", cidr="10.10.0.0/24", gateway="10.10.0.1", dns=("1.2.3.4", "2.3.4.5"),
                                            routes=(("0.0.0.0/24", "192.168.1.1"),), enable_dhcp=False)),
                FixedIp("fd00::2", Subnet(id="s6", cidr="fd00::/48", ip_version=6, gateway="fd00::1", dns=("1:2:3:4::", "2:3:4:5::"),
                                          routes=(("::/48", "fd00::1:1"),), enable_dhcp=False)),
            ),
        )
        expected = (
            '{"links": [{"id": "interface0", "vif_id": null, "type": "phy", "mtu": 1500, "ethernet_mac_address": "aa:aa:aa:aa:aa:aa"}], '
            '"networks": [{"id": "network0", "type": "ipv4", "link": "interface0", "ip_address": "10.10.0.2", "netmask": "255.255.255.0", '
            '"routes": [{"network": "0.0.0.0", "netmask": "0.0.0.0", "gateway": "10.10.0.1"}, {"network": "0.0.0.0", "netmask": "255.255.255.0", "gateway": "192.168.1.1"}], '
            '"network_id": "<net uuid>", "services": [{"type": "dns", "address": "1.2.3.4"}, {"type": "dns", "address": "2.3.4.5"}]}, '
            '{"id": "network1", "type": "ipv6", "link": "interface0", "ip_address": "fd00::2", "netmask": "ffff:ffff:ffff::", '
            '"routes": [{"network": "::", "netmask": "::", "gateway": "fd00::1"}, {"network": "::", "netmask": "ffff:ffff:ffff::", "gateway": "fd00::1:1"}], '
            '"network_id": "<net uuid>", "services": [{"type": "dns", "address": "1:2:3:4::"}, {"type": "dns", "address": "2:3:4:5::"}]}], '
            '"services": [{"type": "dns", "address": "1.2.3.4"}, {"type": "dns", "address": "2.3.4.5"}, {"type": "dns", "address": "1:2:3:4::"}, {"type": "dns", "address": "2:3:4:5::"}]}'
        )
        self.assertEqual(dumps(network_data(Instance(uuid="u", name="n", hostname="h", nics=(nic,)))), expected)

    def test_two_vifs_verified_output(self) -> None:
        """The spec's verified two-VIF output: tap devname, SLAAC, DHCP short form, null MTU."""
        one = Nic(
            port_id="port-1", mac="fa:16:3e:00:00:01", vif_type="ovs", network=Network(id="net-1", mtu=1450),
            fixed_ips=(
                FixedIp("10.10.0.2", Subnet(id="a", cidr="10.10.0.0/24", gateway="10.10.0.1", dns=("1.2.3.4",),
                                            routes=(("0.0.0.0/24", "192.168.1.1"),), enable_dhcp=False)),
                FixedIp("fd00::2", Subnet(id="b", cidr="fd00::/48", ip_version=6, gateway="fd00::1", dns=("1:2:3:4::",),
                                          ipv6_address_mode="slaac")),
            ),
        )
        two = Nic(
            port_id=None, mac="fa:16:3e:00:00:02", vif_type="unknown", network=Network(id="net-2", mtu=1500),
            fixed_ips=(FixedIp("192.168.0.5", Subnet(id="c", cidr="192.168.0.0/24", dns=("8.8.8.8",), dhcp_server="192.168.0.2")),),
        )
        expected = (
            '{"links": [{"id": "tapport-1", "vif_id": "port-1", "type": "ovs", "mtu": 1450, "ethernet_mac_address": "fa:16:3e:00:00:01"}, '
            '{"id": "interface1", "vif_id": null, "type": "phy", "mtu": null, "ethernet_mac_address": "fa:16:3e:00:00:02"}], '
            '"networks": [{"id": "network0", "type": "ipv4", "link": "tapport-1", "ip_address": "10.10.0.2", "netmask": "255.255.255.0", '
            '"routes": [{"network": "0.0.0.0", "netmask": "0.0.0.0", "gateway": "10.10.0.1"}, {"network": "0.0.0.0", "netmask": "255.255.255.0", "gateway": "192.168.1.1"}], '
            '"network_id": "net-1", "services": [{"type": "dns", "address": "1.2.3.4"}]}, '
            '{"id": "network1", "type": "ipv6_slaac", "link": "tapport-1", "ip_address": "fd00::2", "netmask": "ffff:ffff:ffff::", '
            '"routes": [{"network": "::", "netmask": "::", "gateway": "fd00::1"}], "network_id": "net-1", "services": [{"type": "dns", "address": "1:2:3:4::"}]}, '
            '{"id": "network2", "type": "ipv4_dhcp", "link": "interface1", "network_id": "net-2"}], '
            '"services": [{"type": "dns", "address": "1.2.3.4"}, {"type": "dns", "address": "1:2:3:4::"}, {"type": "dns", "address": "8.8.8.8"}]}'
        )
        self.assertEqual(dumps(network_data(Instance(uuid="u", name="n", hostname="h", nics=(one, two)))), expected)

    def test_devname_from_port(self) -> None:
        """The link id is "tap" + the port id, cut to 14 characters (Neutron's device name)."""
        nic = Nic(port_id="cd9f6d46-4a3a-43ab-a466-994af9db96fc", mac="fa:16:3e:9c:bf:3d", vif_type="bridge",
                  network=Network(id="99e88329"), fixed_ips=(FixedIp("10.0.0.3", Subnet(cidr="10.0.0.0/24", dns=("8.8.8.8",))),))
        data = network_data(Instance(uuid="u", name="n", hostname="h", nics=(nic,)))
        self.assertEqual(data["links"][0]["id"], "tapcd9f6d46-4a")
        self.assertEqual(data["networks"], [{"id": "network0", "type": "ipv4_dhcp", "link": "tapcd9f6d46-4a", "network_id": "99e88329"}])

    def test_only_first_subnet_per_family_and_skip_empty_vif(self) -> None:
        """Extra subnets of a family are ignored; a VIF without subnets takes no interface index."""
        empty = Nic(port_id=None, mac="fa:16:3e:00:00:09")
        nic = Nic(port_id=None, mac="fa:16:3e:00:00:01", fixed_ips=(
            FixedIp("10.0.0.5", Subnet(id="a", cidr="10.0.0.0/24", enable_dhcp=False)),
            FixedIp("10.1.0.5", Subnet(id="b", cidr="10.1.0.0/24", enable_dhcp=False)),
        ))
        data = network_data(Instance(uuid="u", name="n", hostname="h", nics=(empty, nic)))
        self.assertEqual([link["id"] for link in data["links"]], ["interface0"])
        self.assertEqual([n["ip_address"] for n in data["networks"]], ["10.0.0.5"])

    def test_address_mode_wins_over_dhcp(self) -> None:
        """An IPv6 address mode gives ipv6_<mode> in full static form even with DHCP enabled."""
        nic = Nic(port_id=None, mac="fa:16:3e:00:00:01", fixed_ips=(
            FixedIp("fd00::5", Subnet(cidr="fd00::/64", ip_version=6, enable_dhcp=True, ipv6_address_mode="dhcpv6-stateful")),))
        net = network_data(Instance(uuid="u", name="n", hostname="h", nics=(nic,)))["networks"][0]
        self.assertEqual((net["type"], net["ip_address"], net["netmask"]), ("ipv6_dhcpv6-stateful", "fd00::5", "ffff:ffff:ffff:ffff::"))


class DevicesTests(SynchronousTestCase):
    """The devices list of meta_data.json (spec §2.4.4), with the upstream fixtures."""

    def instance(self, *devs: Device) -> Instance:
        return Instance(uuid="u", name="n", hostname="h", device_metadata=devs)

    def test_fixtures_latest(self) -> None:
        """Each upstream fixture renders with Nova's key order at latest."""
        cases = [
            (Device(type="nic", bus="pci", address="0000:00:01.0", mac="00:00:00:00:00:00", tags=("foo",)),
             '{"vf_trusted": false, "type": "nic", "mac": "00:00:00:00:00:00", "bus": "pci", "address": "0000:00:01.0", "tags": ["foo"]}'),
            (Device(type="disk", bus="ide", address="0:0", serial="disk-vol-2352423", path="/dev/sda", tags=("baz",)),
             '{"type": "disk", "serial": "disk-vol-2352423", "path": "/dev/sda", "bus": "ide", "address": "0:0", "tags": ["baz"]}'),
            (Device(type="disk", bus="usb", address="05c8:021e", serial="disk-vol-2352423", path="/dev/sda", tags=("baz",)),
             '{"type": "disk", "serial": "disk-vol-2352423", "path": "/dev/sda", "bus": "usb", "address": "05c8:021e", "tags": ["baz"]}'),
            (Device(type="nic", bus="pci", address="0000:80:01.0", mac="e3:a0:d0:12:c5:10", vlan=1000),
             '{"vlan": 1000, "vf_trusted": false, "type": "nic", "mac": "e3:a0:d0:12:c5:10", "bus": "pci", "address": "0000:80:01.0"}'),
            (Device(type="nic", bus="pci", address="0000:00:02.0", mac="00:11:22:33:44:55", vf_trusted=True, tags=("trusted",)),
             '{"vf_trusted": true, "type": "nic", "mac": "00:11:22:33:44:55", "bus": "pci", "address": "0000:00:02.0", "tags": ["trusted"]}'),
            (Device(type="share", share_id="ca3c176e-fd5a-438b-b595-e18a358f6909", tag="my_share_tag"),
             '{"type": "share", "share_id": "ca3c176e-fd5a-438b-b595-e18a358f6909", "tag": "my_share_tag", "bus": "none", "address": "none"}'),
        ]
        for device, expected in cases:
            self.assertEqual(dumps(devices(self.instance(device), "2025-04-04")), "[" + expected + "]")

    def test_version_gates(self) -> None:
        """Untagged NICs hide before 2017-02-22; vlan from OCATA; vf_trusted from ROCKY; shares from EPOXY."""
        untagged = Device(type="nic", bus="pci", address="a", mac="00:00:00:00:00:01")
        vlan = Device(type="nic", bus="pci", address="b", mac="00:00:00:00:00:02", vlan=5)
        share = Device(type="share", share_id="s", tag="t")
        inst = self.instance(untagged, vlan, share)
        self.assertEqual(devices(inst, "2016-06-30"), [])
        self.assertEqual([d.get("vlan") for d in devices(inst, "2017-02-22")], [5])
        self.assertEqual(len(devices(inst, "2018-08-27")), 2)
        self.assertEqual(len(devices(inst, "2025-04-04")), 3)

    def test_no_bus(self) -> None:
        """A device without a bus says none/none."""
        d = devices(self.instance(Device(type="disk", tags=("x",))), "2025-04-04")[0]
        self.assertEqual((d["bus"], d["address"]), ("none", "none"))


class BlockDeviceMappingTests(SynchronousTestCase):
    """block-device-mapping (spec §2.3.6)."""

    def test_defaults_without_root(self) -> None:
        """No root device: Nova's fixed defaults."""
        self.assertEqual(block_device_mapping(Instance(uuid="u", name="n", hostname="h")),
                         {"ami": "sda1", "ephemeral0": "sda2", "root": "/dev/sda1", "swap": "sda3"})

    def test_upstream_example(self) -> None:
        """The upstream example: listing ami, ebs0, ephemeral0, root, swap."""
        inst = Instance(uuid="u", name="n", hostname="h", root_device_name="/dev/sda1", default_ephemeral_device="/dev/sdb",
                        default_swap_device="/dev/sdc", block_device_mappings=(BlockDevice(source_type="volume", destination_type="volume", device_name="/dev/sdh"),))
        mapping = block_device_mapping(inst)
        self.assertEqual(mapping, {"ami": "sda1", "root": "/dev/sda1", "ephemeral0": "/dev/sdb", "swap": "/dev/sdc", "ebs0": "/dev/sdh"})
        self.assertEqual(render_value(mapping), b"ami\nebs0\nephemeral0\nroot\nswap")

    def test_blank_disks_and_ebs_order(self) -> None:
        """Volumes are numbered by device name; blank swap wins; blank disks become ephemeralN."""
        inst = Instance(uuid="u", name="n", hostname="h", root_device_name="/dev/vda", default_swap_device="/dev/vdz", block_device_mappings=(
            BlockDevice(source_type="volume", destination_type="volume", device_name="/dev/vdd"),
            BlockDevice(source_type="volume", destination_type="volume", device_name="/dev/vdc"),
            BlockDevice(source_type="blank", destination_type="local", device_name="/dev/vde", guest_format="swap"),
            BlockDevice(source_type="blank", destination_type="local", device_name="/dev/vdf"),
        ))
        self.assertEqual(block_device_mapping(inst), {"ami": "vda", "root": "/dev/vda", "swap": "/dev/vde", "ebs0": "/dev/vdc",
                                                      "ebs1": "/dev/vdd", "ephemeral0": "/dev/vdf"})


class Ec2Tests(SynchronousTestCase):
    """The EC2 meta-data dict."""

    def test_insertion_order_for_config_drive(self) -> None:
        """Keys come in Nova's insertion order (the config drive's meta-data.json keeps it)."""
        inst = Instance(uuid="u", name="n", hostname="h", key_pairs=(KeyPair("k", "ssh-ed25519 A"),), kernel_id="k1",
                        ec2_image_ids={"k1": 3}, ec2_instance_id=42)
        md = ec2_meta_data(inst, "2009-04-04", "novalocal")
        self.assertEqual(list(md), [
            "ami-id", "ami-launch-index", "ami-manifest-path", "instance-id", "hostname", "local-ipv4", "reservation-id",
            "security-groups", "public-keys", "local-hostname", "public-hostname", "public-ipv4", "instance-type",
            "block-device-mapping", "kernel-id", "placement", "instance-action",
        ])
        self.assertEqual((md["instance-id"], md["kernel-id"]), ("i-0000002a", "aki-00000003"))
        self.assertEqual(md["public-keys"], {"0": {"_name": "0=k", "openssh-key": "ssh-ed25519 A"}})

    def test_ami_id(self) -> None:
        """ami-id is ami-%08x of the image's EC2 id, and None for boot from volume."""
        inst = Instance(uuid="u", name="n", hostname="h", image_id="img", ec2_image_ids={"img": 255})
        self.assertEqual(ec2_meta_data(inst, "1.0", "")["ami-id"], "ami-000000ff")

    def test_hostname_domain(self) -> None:
        """dhcp_domain is appended; empty appends nothing; an FQDN is left alone."""
        self.assertEqual(full_hostname("test", "novalocal"), "test.novalocal")
        self.assertEqual(full_hostname("test", ""), "test")
        self.assertEqual(full_hostname("web.example.com", "novalocal"), "web.example.com")

    def test_non_ascii_values(self) -> None:
        """EC2 values are raw UTF-8, JSON documents escape non-ASCII."""
        inst = instance_from_document({"uuid": UUID, "name": "Café", "hostname": "cafe", "metadata": {"k": "é"}})
        md = InstanceMetadata(inst, "")
        self.assertIn(b'"name": "Caf\\u00e9"', md.meta_data_json("2012-08-10"))
        self.assertIn(b'"meta": {"k": "\\u00e9"}', md.meta_data_json("2012-08-10"))


class MetaDataTests(SynchronousTestCase):
    """meta_data.json fields."""

    def test_no_hyphenated_top_level_keys(self) -> None:
        """No top-level key contains '-' (an upstream assertion)."""
        inst = instance_from_document({"uuid": UUID, "metadata": {"a": "b"}, "key_pairs": [{"name": "k", "public_key": "x"}], "dedicated_cpus": [3, 1]})
        md = meta_data(inst, "2025-04-04", "novalocal")
        self.assertFalse([k for k in md if "-" in k])
        self.assertEqual(md["dedicated_cpus"], [1, 3])

    def test_config_drive_extras_order(self) -> None:
        """files and admin_pass come after meta and before the keys, as Nova merges them."""
        inst = instance_from_document({"uuid": UUID, "metadata": {"a": "b"}, "key_pairs": [{"name": "k", "public_key": "x"}]})
        md = meta_data(inst, "2012-08-10", "", files=[{"path": "/etc/x", "content_path": "/content/0000"}], extra={"admin_pass": "p"})
        self.assertEqual(list(md)[:5], ["uuid", "meta", "files", "admin_pass", "public_keys"])


class PathTests(SynchronousTestCase):
    """Path normalisation (spec §2.5)."""

    def test_normalise(self) -> None:
        """Root forms give None; other paths their segments."""
        for root in (b"/", b"", b"//", b"/foo/../", b"/./", b"/.."):
            self.assertIsNone(normalise_path(root), root)
        self.assertEqual(normalise_path(b"//latest/meta-data/"), ("latest", "meta-data"))
        self.assertEqual(normalise_path(b"/openstack/latest/meta_data.json/"), ("openstack", "latest", "meta_data.json"))
        self.assertEqual(normalise_path(b"/a/%2e%2e/b"), ("b",))

    def test_bad_paths(self) -> None:
        """Non-UTF-8 and NUL are 400."""
        for bad in (b"/%ff", b"/a%00b"):
            self.assertEqual(self.assertRaises(MetadataError, normalise_path, bad).code, 400)

    def test_openstack_listing_by_date(self) -> None:
        """Versions after today are hidden."""
        self.assertEqual(openstack_listing("2013-05-01"), ["2012-08-10", "2013-04-04", "latest"])
