"""Tests for L{mdsvc.model}: instance and router documents and the values they build."""

from __future__ import annotations

import base64
import copy
from typing import Any

import attrs
from twisted.trial.unittest import SynchronousTestCase

from mdsvc.model import (
    BlockDevice,
    Device,
    DocumentError,
    FixedIp,
    Flavor,
    InjectedFile,
    Instance,
    KeyPair,
    Network,
    Nic,
    Route,
    Router,
    Subnet,
    image_ids,
    instance_from_document,
    router_from_document,
    sanitize_hostname,
)
from mdsvc.schema import declared_fields, field_rows

UUID = "b65cee2f-8c69-4aeb-be2f-f79742548fc2"
PORT = "0d0e0f10-1111-4000-8000-0000000000aa"


def fullDocument() -> dict[str, Any]:
    """A document using most fields, as DESIGN.md shows it."""
    return {
        "uuid": UUID,
        "name": "web-1",
        "hostname": "web-1",
        "project_id": "proj",
        "user_id": "user",
        "availability_zone": "az1",
        "launch_index": 2,
        "reservation_id": "r-1a2b3c4d",
        "flavor": {"name": "m1.small", "flavorid": "2", "memory_mb": 2048, "vcpus": 1, "root_gb": 20,
                   "ephemeral_gb": 0, "swap": 0, "extra_specs": {"hw:cpu_policy": "dedicated"}},
        "image_id": "6a1b2c3d-0000-4000-8000-00000000cafe",
        "kernel_id": None,
        "ramdisk_id": "",
        "ec2_ids": {"instance": 42, "images": {"6a1b2c3d-0000-4000-8000-00000000cafe": 7}},
        "root_device_name": "/dev/vda",
        "block_device_mappings": [{"source_type": "image", "destination_type": "local", "boot_index": 0}],
        "key_pairs": [
            {"name": "alice", "type": "ssh", "public_key": "ssh-ed25519 AAAA alice"},
            {"name": "bob", "type": "x509", "public_key": "CERT"},
        ],
        "user_data": base64.b64encode(b"#!/bin/sh\necho hi\n").decode("ascii"),
        "metadata": {"role": "web"},
        "password": None,
        "security_groups": ["default", "web"],
        "device_metadata": [{"type": "nic", "bus": "pci", "address": "0000:00:03.0", "mac": "FA:16:3E:00:00:01", "tags": ["lan"]}],
        "dedicated_cpus": [2, 3],
        "nics": [
            {
                "port_id": PORT,
                "mac": "FA:16:3E:00:00:01",
                "vif_type": "ovs",
                "network": {"id": "net-1", "name": "private", "mtu": 1450},
                "fixed_ips": [
                    {
                        "ip": "10.0.0.5",
                        "floating_ips": ["203.0.113.10"],
                        "subnet": {"id": "sub-1", "cidr": "10.0.0.0/24", "ip_version": 4, "gateway": "10.0.0.1",
                                   "dns": ["10.0.0.2"], "routes": [{"destination": "192.168.0.0/16", "nexthop": "10.0.0.254"}],
                                   "enable_dhcp": True, "ipv6_address_mode": None, "dhcp_server": "10.0.0.2"},
                    },
                    {"ip": "fd00::0005", "subnet": {"id": "sub-6", "cidr": "fd00::/64", "ipv6_address_mode": "slaac"}},
                ],
            },
            {"port_id": "second-port", "mac": "fa:16:3e:00:00:02", "security_groups": ["db", "default"],
             "fixed_ips": [{"ip": "192.168.1.9"}]},
        ],
        "admin_pass": "secret",
        "injected_files": [{"path": "/etc/motd", "contents_b64": base64.b64encode(b"hello").decode("ascii")}],
    }


class InstanceDefaultsTests(SynchronousTestCase):
    """Only C{uuid} is required; every other field gets Nova's default."""

    def test_onlyUuid(self) -> None:
        """A document with just a uuid builds an Instance with Nova's defaults everywhere."""
        instance = instance_from_document({"uuid": UUID})
        self.assertEqual(
            instance,
            Instance(
                uuid=UUID,
                name=f"Server {UUID}",
                hostname=f"server-{UUID}",
                project_id=None,
                availability_zone="nova",
                launch_index=0,
                image_id="",
                security_groups=("default",),
                user_data=None,
                nics=(),
                key_pairs=(),
            ),
        )
        self.assertEqual(instance.metadata, {})
        self.assertIsNone(instance.key_pair)
        self.assertIsNone(instance.flavor)
        self.assertEqual(instance.fixed_ips(), [])
        self.assertEqual(instance.all_security_groups(), [])  # no port, no group (Nova asks Neutron for the ports')

    def test_hostnameFromName(self) -> None:
        """Without a hostname, the name sanitised the way Nova does it becomes the hostname."""
        instance = instance_from_document({"uuid": UUID, "name": "My Web_Server.1"})
        self.assertEqual((instance.name, instance.hostname), ("My Web_Server.1", "my-web-server-1"))

    def test_hostnameGiven(self) -> None:
        """A given hostname is kept as it is, not sanitised again."""
        instance = instance_from_document({"uuid": UUID, "name": "x", "hostname": "Custom.Host"})
        self.assertEqual(instance.hostname, "Custom.Host")

    def test_unsanitisableName(self) -> None:
        """A name with nothing usable falls back to Nova's C{Server-<uuid>} hostname (case kept)."""
        instance = instance_from_document({"uuid": UUID, "name": "!!!"})
        self.assertEqual(instance.hostname, f"Server-{UUID}")

    def test_nullsAreDefaults(self) -> None:
        """A null field is the same as an absent one."""
        instance = instance_from_document(
            {"uuid": UUID, "name": None, "availability_zone": None, "launch_index": None, "security_groups": None,
             "user_data": None, "nics": None, "metadata": None, "ec2_ids": None, "flavor": None}
        )
        self.assertEqual(instance, instance_from_document({"uuid": UUID}))

    def test_emptyKernelIsNone(self) -> None:
        """An empty kernel or ramdisk id means none; an empty image id means boot from volume."""
        instance = instance_from_document({"uuid": UUID, "kernel_id": "", "ramdisk_id": "", "image_id": ""})
        self.assertEqual((instance.kernel_id, instance.ramdisk_id, instance.image_id), (None, None, ""))


class FullDocumentTests(SynchronousTestCase):
    """Every field of a full document lands where it belongs."""

    def setUp(self) -> None:
        self.instance = instance_from_document(fullDocument())

    def test_identity(self) -> None:
        """Identity and placement fields are copied."""
        i = self.instance
        self.assertEqual(
            (i.uuid, i.name, i.hostname, i.project_id, i.user_id, i.availability_zone, i.launch_index, i.reservation_id),
            (UUID, "web-1", "web-1", "proj", "user", "az1", 2, "r-1a2b3c4d"),
        )

    def test_userDataDecoded(self) -> None:
        """C{user_data} is base64 in the document and bytes in the Instance."""
        self.assertEqual(self.instance.user_data, b"#!/bin/sh\necho hi\n")

    def test_userDataWrapped(self) -> None:
        """Base64 wrapped over several lines (as C{base64} and YAML blocks give it) is accepted."""
        encoded = base64.encodebytes(b"x" * 100).decode("ascii")
        self.assertIn("\n", encoded.strip())
        instance = instance_from_document({"uuid": UUID, "user_data": encoded})
        self.assertEqual(instance.user_data, b"x" * 100)

    def test_emptyUserData(self) -> None:
        """An empty user_data string is empty bytes, not absent."""
        self.assertEqual(instance_from_document({"uuid": UUID, "user_data": ""}).user_data, b"")

    def test_flavor(self) -> None:
        """A flavor object becomes a Flavor; a flavor string is its name."""
        self.assertEqual(
            self.instance.flavor,
            Flavor(name="m1.small", flavorid="2", memory_mb=2048, vcpus=1, root_gb=20, ephemeral_gb=0, swap=0,
                   extra_specs={"hw:cpu_policy": "dedicated"}),
        )
        self.assertEqual(instance_from_document({"uuid": UUID, "flavor": "m1.tiny"}).flavor, Flavor(name="m1.tiny"))

    def test_ec2Ids(self) -> None:
        """Given EC2 ids are kept."""
        self.assertEqual(self.instance.ec2_instance_id, 42)
        self.assertEqual(self.instance.ec2_image_ids, {"6a1b2c3d-0000-4000-8000-00000000cafe": 7})

    def test_keyPairs(self) -> None:
        """Key pairs keep their order; the first is the instance's key pair."""
        self.assertEqual(
            self.instance.key_pairs,
            (KeyPair(name="alice", public_key="ssh-ed25519 AAAA alice", type="ssh"), KeyPair(name="bob", public_key="CERT", type="x509")),
        )
        self.assertEqual(self.instance.key_pair, self.instance.key_pairs[0])

    def test_keyPairTypeDefault(self) -> None:
        """A key pair without a type is an ssh key."""
        instance = instance_from_document({"uuid": UUID, "key_pairs": [{"name": "k", "public_key": "ssh-rsa AAA"}]})
        self.assertEqual(instance.key_pair, KeyPair(name="k", public_key="ssh-rsa AAA", type="ssh"))

    def test_nics(self) -> None:
        """NICs, their network and fixed IPs are built; MACs and IPs kept as written (as Nova passes Neutron's on)."""
        nic = self.instance.nics[0]
        self.assertEqual(nic.mac, "FA:16:3E:00:00:01")
        self.assertEqual(nic.network, Network(id="net-1", name="private", mtu=1450))
        self.assertIsNone(nic.security_groups)
        self.assertEqual(
            nic.fixed_ips[0],
            FixedIp(
                ip="10.0.0.5",
                floating_ips=("203.0.113.10",),
                subnet=Subnet(id="sub-1", cidr="10.0.0.0/24", ip_version=4, gateway="10.0.0.1", dns=("10.0.0.2",),
                              routes=(("192.168.0.0/16", "10.0.0.254"),), enable_dhcp=True, dhcp_server="10.0.0.2"),
            ),
        )
        self.assertEqual(nic.fixed_ips[1], FixedIp(ip="fd00::0005", subnet=Subnet(id="sub-6", cidr="fd00::/64", ip_version=6, ipv6_address_mode="slaac")))

    def test_subnetVersionFromCidr(self) -> None:
        """A subnet without ip_version takes it from its cidr."""
        self.assertEqual(self.instance.nics[0].fixed_ips[1].subnet.ip_version, 6)

    def test_subnetVersionFromIp(self) -> None:
        """A subnet with neither cidr nor ip_version is of its fixed IP's version."""
        instance = instance_from_document({"uuid": UUID, "nics": [{"fixed_ips": [{"ip": "fd00::7", "subnet": {"id": "s"}}]}]})
        self.assertEqual(instance.nics[0].fixed_ips[0].subnet, Subnet(id="s", ip_version=6))

    def test_fixedIpWithoutSubnet(self) -> None:
        """A fixed IP without a subnet gets an empty subnet of its version."""
        instance = instance_from_document({"uuid": UUID, "nics": [{"fixed_ips": [{"ip": "fd00::7"}]}]})
        self.assertEqual(instance.nics[0].fixed_ips[0], FixedIp(ip="fd00::7", subnet=Subnet(ip_version=6)))

    def test_fixedIpsOrder(self) -> None:
        """C{fixed_ips()} lists every fixed IP in VIF order, then subnet order."""
        self.assertEqual([f.ip for f in self.instance.fixed_ips()], ["10.0.0.5", "fd00::0005", "192.168.1.9"])

    def test_allSecurityGroups(self) -> None:
        """Every port's groups (its own, else the instance's), in port order, duplicates kept (as Nova lists them)."""
        self.assertEqual(self.instance.all_security_groups(), ["default", "web", "db", "default"])

    def test_allSecurityGroupsOwnOnly(self) -> None:
        """When every NIC gives its own groups, the instance's groups are not listed."""
        instance = instance_from_document({"uuid": UUID, "security_groups": ["other"], "nics": [{"security_groups": ["b", "a", "b"]}]})
        self.assertEqual(instance.all_security_groups(), ["b", "a", "b"])

    def test_allSecurityGroupsEmptyNicList(self) -> None:
        """A NIC with an empty group list contributes nothing (it does not inherit)."""
        instance = instance_from_document({"uuid": UUID, "security_groups": ["x"], "nics": [{"security_groups": []}, {}]})
        self.assertEqual(instance.all_security_groups(), ["x"])

    def test_devname(self) -> None:
        """A NIC's device is C{tap} and the start of its port id, 14 characters in all."""
        self.assertEqual(self.instance.nics[0].devname, "tap0d0e0f10-11")
        self.assertEqual(len(self.instance.nics[0].devname), 14)
        self.assertEqual(Nic(port_id="abc").devname, "tapabc")
        self.assertIsNone(Nic().devname)

    def test_devices(self) -> None:
        """Tagged devices are parsed, the MAC as written."""
        device = self.instance.device_metadata[0]
        self.assertEqual((device.type, device.bus, device.address, device.mac, device.tags),
                         ("nic", "pci", "0000:00:03.0", "FA:16:3E:00:00:01", ("lan",)))

    def test_configDriveOnly(self) -> None:
        """admin_pass and injected files (decoded) are kept."""
        self.assertEqual(self.instance.admin_pass, "secret")
        self.assertEqual(self.instance.injected_files, (InjectedFile(path="/etc/motd", contents=b"hello"),))

    def test_cpusAndBlockDevices(self) -> None:
        """Dedicated CPUs and block device mappings are kept in order."""
        self.assertEqual(self.instance.dedicated_cpus, (2, 3))
        bdm = self.instance.block_device_mappings[0]
        self.assertEqual((bdm.source_type, bdm.destination_type, bdm.boot_index), ("image", "local", 0))

    def test_imageIds(self) -> None:
        """C{image_ids} lists the non-empty Glance ids a document refers to."""
        self.assertEqual(image_ids(fullDocument()), ["6a1b2c3d-0000-4000-8000-00000000cafe"])
        self.assertEqual(image_ids({"image_id": "a", "kernel_id": "k", "ramdisk_id": "r"}), ["a", "k", "r"])
        self.assertEqual(image_ids({"image_id": ""}), [])

    def test_documentNotModified(self) -> None:
        """Parsing does not change the document."""
        doc = fullDocument()
        before = copy.deepcopy(doc)
        instance_from_document(doc)
        self.assertEqual(doc, before)


class ValidationTests(SynchronousTestCase):
    """Every error names the dotted path of the bad field."""

    def assertBad(self, doc: Any, where: str, problem: str | None = None) -> DocumentError:
        """Parsing C{doc} fails at C{where} (and with C{problem}, when given)."""
        e = self.assertRaises(DocumentError, instance_from_document, doc)
        self.assertEqual(e.where, where)
        if problem is not None:
            self.assertEqual(e.problem, problem)
        self.assertEqual(str(e), f"{where}: {e.problem}")
        return e

    def withNic(self, **fixed_ip: Any) -> dict[str, Any]:
        return {"uuid": UUID, "nics": [{"fixed_ips": [fixed_ip]}]}

    def test_notAnObject(self) -> None:
        """A document that is not an object is refused."""
        e = self.assertRaises(DocumentError, instance_from_document, ["uuid"])
        self.assertEqual((e.where, e.problem, str(e)), ("", "expected an object, got a list", "expected an object, got a list"))

    def test_uuidRequired(self) -> None:
        """uuid is required."""
        self.assertBad({"name": "x"}, "uuid", "is required")

    def test_uuidWithSpace(self) -> None:
        """A uuid with whitespace or a slash is refused (it ends up in URLs and file names)."""
        rule = " (a canonical UUID: 8-4-4-4-12 lowercase hexadecimal digits, such as 6e7f5b2a-1c1d-4a55-9f3e-2b9d1c0a7e11)"
        self.assertBad({"uuid": "a b"}, "uuid", "'a b' is not a valid uuid" + rule)
        self.assertBad({"uuid": "a/b"}, "uuid", "'a/b' is not a valid uuid" + rule)

    def test_uuidNotAUUID(self) -> None:
        """A short id such as "x" or "i-1" is not an instance uuid: Nova's are canonical UUIDs."""
        for bad in ("x", "i-1", "u_1", "vm.1", "x" * 255, UUID[:-1], UUID + "0", UUID.replace("-", "_"), "g" + UUID[1:]):
            e = self.assertBad({"uuid": bad}, "uuid")
            self.assertIn("is not a valid uuid (a canonical UUID", str(e))

    def test_uuidOtherSpelling(self) -> None:
        """A UUID spelled otherwise (capitals, no dashes, braces, urn:uuid:) is refused, naming its canonical form."""
        for spelling in (UUID.upper(), UUID.replace("-", ""), "{" + UUID + "}", "urn:uuid:" + UUID):
            e = self.assertBad({"uuid": spelling}, "uuid")
            self.assertTrue(str(e).endswith(f"; write it {UUID})"), str(e))

    def test_uuidTrailingNewline(self) -> None:
        """A trailing newline (from a YAML block scalar) does not slip through the pattern."""
        self.assertBad({"uuid": UUID + "\n"}, "uuid")
        self.assertIn(f"'{UUID}\\n' is not a valid uuid", str(self.assertRaises(DocumentError, instance_from_document, {"uuid": UUID + "\n"})))

    def test_unknownTopLevel(self) -> None:
        """An unknown top-level field is named."""
        self.assertBad({"uuid": UUID, "bogus": 1}, "bogus", "unknown field")

    def test_unknownNested(self) -> None:
        """An unknown field deep in a NIC is named by its full path."""
        doc = self.withNic(ip="10.0.0.5", subnet={"cidr": "10.0.0.0/24", "bogus": True})
        self.assertBad(doc, "nics[0].fixed_ips[0].subnet.bogus", "unknown field")

    def test_whereprefix(self) -> None:
        """The C{where} argument prefixes every path (a batch position)."""
        e = self.assertRaises(DocumentError, instance_from_document, {"uuid": UUID, "launch_index": -1}, "[3]")
        self.assertEqual(str(e), "[3].launch_index: must be >= 0, got -1")

    def test_badMac(self) -> None:
        """A MAC that is not six hex pairs is refused."""
        self.assertBad({"uuid": UUID, "nics": [{}, {"mac": "fa:16:3e:00:00"}]}, "nics[1].mac", "'fa:16:3e:00:00' is not valid")
        self.assertBad({"uuid": UUID, "nics": [{"mac": "fa:16:3e:00:00:0g"}]}, "nics[0].mac")

    def test_badIp(self) -> None:
        """A fixed IP that is not an address is refused."""
        self.assertBad(self.withNic(ip="10.0.0.256"), "nics[0].fixed_ips[0].ip", "'10.0.0.256' is not an IP address")

    def test_ipRequired(self) -> None:
        """A fixed IP entry needs its ip."""
        self.assertBad(self.withNic(floating_ips=[]), "nics[0].fixed_ips[0].ip", "is required")

    def test_badFloatingIp(self) -> None:
        """A bad floating IP is named with its index."""
        self.assertBad(self.withNic(ip="10.0.0.5", floating_ips=["203.0.113.1", "nope"]), "nics[0].fixed_ips[0].floating_ips[1]")

    def test_badDns(self) -> None:
        """A bad DNS server address is named with its index."""
        self.assertBad(self.withNic(ip="10.0.0.5", subnet={"dns": ["x"]}), "nics[0].fixed_ips[0].subnet.dns[0]")

    def test_badGateway(self) -> None:
        """A bad gateway is named."""
        self.assertBad(self.withNic(ip="10.0.0.5", subnet={"gateway": "10.0.0"}), "nics[0].fixed_ips[0].subnet.gateway",
                       "'10.0.0' is not an IP address")

    def test_badUserData(self) -> None:
        """user_data that is not base64 is refused."""
        self.assertBad({"uuid": UUID, "user_data": "not base64!"}, "user_data", "is not valid base64")
        self.assertBad({"uuid": UUID, "user_data": "abc"}, "user_data", "is not valid base64")
        self.assertBad({"uuid": UUID, "user_data": "é"}, "user_data", "is not valid base64")

    def test_userDataNotString(self) -> None:
        """user_data must be a string."""
        self.assertBad({"uuid": UUID, "user_data": 12}, "user_data", "expected a string, got an integer")

    def test_badCidr(self) -> None:
        """A subnet cidr that is not a network is refused."""
        self.assertBad(self.withNic(ip="10.0.0.5", subnet={"cidr": "10.0.0.0/33"}), "nics[0].fixed_ips[0].subnet.cidr",
                       "'10.0.0.0/33' is not a CIDR")

    def test_badRouteDestination(self) -> None:
        """A route destination that is not a CIDR is refused."""
        doc = self.withNic(ip="10.0.0.5", subnet={"routes": [{"destination": "nowhere", "nexthop": "10.0.0.1"}]})
        self.assertBad(doc, "nics[0].fixed_ips[0].subnet.routes[0].destination")

    def test_cidrVersionMismatch(self) -> None:
        """An ip_version that contradicts the cidr is refused."""
        doc = self.withNic(ip="10.0.0.5", subnet={"cidr": "10.0.0.0/24", "ip_version": 6})
        self.assertBad(doc, "nics[0].fixed_ips[0].subnet.ip_version", "is 6 but cidr 10.0.0.0/24 is IPv4")

    def test_ipVersionMismatch(self) -> None:
        """A fixed IP of another version than its subnet is refused, naming the ip."""
        doc = self.withNic(ip="fd00::5", subnet={"cidr": "10.0.0.0/24"})
        self.assertBad(doc, "nics[0].fixed_ips[0].ip", "fd00::5 is not an IPv4 address like its subnet")

    def test_badIpVersion(self) -> None:
        """ip_version is 4 or 6."""
        self.assertBad(self.withNic(ip="10.0.0.5", subnet={"ip_version": 5}), "nics[0].fixed_ips[0].subnet.ip_version",
                       "must be 4 or 6, got 5")

    def test_badIpv6Mode(self) -> None:
        """ipv6_address_mode is one of Neutron's modes."""
        self.assertBad(self.withNic(ip="fd00::5", subnet={"ipv6_address_mode": "magic"}),
                       "nics[0].fixed_ips[0].subnet.ipv6_address_mode", "'magic' is not one of slaac, dhcpv6-stateful, dhcpv6-stateless")

    def test_badMtu(self) -> None:
        """A network MTU below IPv4's minimum is refused."""
        self.assertBad({"uuid": UUID, "nics": [{"network": {"mtu": 10}}]}, "nics[0].network.mtu", "must be >= 68, got 10")

    def test_badKeyPairType(self) -> None:
        """A key pair type other than ssh or x509 is refused."""
        doc = {"uuid": UUID, "key_pairs": [{"name": "k", "type": "fake_type", "public_key": "x"}]}
        self.assertBad(doc, "key_pairs[0].type", "'fake_type' is not one of ssh, x509")

    def test_keyPairNeedsKey(self) -> None:
        """A key pair needs a public key."""
        self.assertBad({"uuid": UUID, "key_pairs": [{"name": "k"}]}, "key_pairs[0].public_key", "is required")

    def test_negativeLaunchIndex(self) -> None:
        """A negative launch index is refused."""
        self.assertBad({"uuid": UUID, "launch_index": -1}, "launch_index", "must be >= 0, got -1")

    def test_boolIsNotInt(self) -> None:
        """true is not an integer launch index."""
        self.assertBad({"uuid": UUID, "launch_index": True}, "launch_index", "expected an integer, got a boolean")

    def test_nonStringMetadata(self) -> None:
        """A metadata value that is not a string is named by its key."""
        self.assertBad({"uuid": UUID, "metadata": {"role": "web", "count": 3}}, "metadata.count", "expected a string, got an integer")
        self.assertBad({"uuid": UUID, "system_metadata": {"x": None}}, "system_metadata.x", "expected a string, got null")

    def test_metadataNotObject(self) -> None:
        """metadata must be an object."""
        self.assertBad({"uuid": UUID, "metadata": ["a"]}, "metadata", "expected an object, got a list")

    def test_badInjectedFilePath(self) -> None:
        """An injected file path must be absolute."""
        doc = {"uuid": UUID, "injected_files": [{"path": "etc/motd", "contents_b64": ""}]}
        self.assertBad(doc, "injected_files[0].path", "'etc/motd' is not an absolute path")

    def test_badInjectedFileContents(self) -> None:
        """Injected file contents must be base64."""
        doc = {"uuid": UUID, "injected_files": [{"path": "/a", "contents_b64": "%%"}]}
        self.assertBad(doc, "injected_files[0].contents_b64", "is not valid base64")

    def test_badEc2Ids(self) -> None:
        """EC2 ids are 32-bit unsigned integers."""
        self.assertBad({"uuid": UUID, "ec2_ids": {"instance": 2**32}}, "ec2_ids.instance", "must be between 0 and 4294967295")
        self.assertBad({"uuid": UUID, "ec2_ids": {"images": {"img": "7"}}}, "ec2_ids.images.img", "expected an integer, got a string")
        self.assertBad({"uuid": UUID, "ec2_ids": {"bogus": 1}}, "ec2_ids.bogus", "unknown field")

    def test_badDedicatedCpu(self) -> None:
        """A negative CPU number is refused with its index."""
        self.assertBad({"uuid": UUID, "dedicated_cpus": [0, -1]}, "dedicated_cpus[1]", "must be >= 0, got -1")

    def test_badDevice(self) -> None:
        """A tagged device needs a known type."""
        self.assertBad({"uuid": UUID, "device_metadata": [{"bus": "pci"}]}, "device_metadata[0].type", "is required")
        self.assertBad({"uuid": UUID, "device_metadata": [{"type": "gpu"}]}, "device_metadata[0].type")

    def test_badFlavor(self) -> None:
        """A flavor object needs a name; a flavor of another type is refused."""
        self.assertBad({"uuid": UUID, "flavor": {"vcpus": 1}}, "flavor.name", "is required")
        self.assertBad({"uuid": UUID, "flavor": 3}, "flavor", "expected an object, got an integer")

    def test_badSecurityGroup(self) -> None:
        """Security group names are strings."""
        self.assertBad({"uuid": UUID, "security_groups": ["a", 1]}, "security_groups[1]", "expected a string, got an integer")
        self.assertBad({"uuid": UUID, "security_groups": "default"}, "security_groups", "expected a list, got a string")


class HostileDocumentTests(SynchronousTestCase):
    """
    Fields a guest ends up parsing (its hostname, its ids) or that size what it is served are
    checked on import: each bad value is an error naming the field.
    """

    def assertBad(self, doc: Any, where: str, problem: str | None = None, function: Any = instance_from_document) -> DocumentError:
        """Parsing C{doc} fails at C{where} in one line (with C{problem}, when given)."""
        e = self.assertRaises(DocumentError, function, doc)
        self.assertEqual(e.where, where)
        if problem is not None:
            self.assertEqual(e.problem, problem)
        self.assertEqual(str(e).splitlines(), [str(e)])
        return e

    def test_userDataLimit(self) -> None:
        """user_data of more than 65,535 base64 characters (Nova's limit) is refused, naming the limit."""
        encoded = base64.b64encode(b"x" * 49152).decode("ascii")  # 65,536 characters
        e = self.assertBad({"uuid": UUID, "user_data": encoded}, "user_data")
        self.assertIn("65535", e.problem)
        self.assertIn("65536", e.problem)
        huge = base64.b64encode(b"x" * (17 * 1024 * 1024)).decode("ascii")
        self.assertBad({"uuid": UUID, "user_data": huge}, "user_data")

    def test_userDataAtLimit(self) -> None:
        """The longest user_data Nova takes passes, also wrapped over lines (line breaks do not count)."""
        data = b"y" * 49149  # 65,532 base64 characters, the most below 65,535
        encoded = base64.b64encode(data).decode("ascii")
        self.assertEqual(len(encoded), 65532)
        self.assertEqual(instance_from_document({"uuid": UUID, "user_data": encoded}).user_data, data)
        wrapped = base64.encodebytes(data).decode("ascii")
        self.assertEqual(instance_from_document({"uuid": UUID, "user_data": wrapped}).user_data, data)

    def test_hostnameEmpty(self) -> None:
        """An empty hostname is refused (a missing one defaults to the sanitised name)."""
        self.assertBad({"uuid": UUID, "hostname": ""}, "hostname", "must not be empty")

    def test_hostnameInjection(self) -> None:
        """Line feeds, NUL, control characters, blanks and other characters are refused."""
        for bad in ("web-1\nevil", "web-1\r\nX-Injected: 1", "web\x00", "web\t1", "web 1", "w\u00e9b", "web;reboot",
                    "$(reboot)", "web/1", "caf\u00e9"):
            e = self.assertBad({"uuid": UUID, "hostname": bad}, "hostname")
            self.assertIn("is not a valid hostname", e.problem)

    def test_hostnameShape(self) -> None:
        """Labels start and end with a letter or digit, are 1 to 63 long, and the whole is at most 255."""
        for bad in ("-rf", "web-", "a..b", ".web", "web.", "a" * 64, ".".join(["a" * 63] * 4) + ".abcd"):
            self.assertBad({"uuid": UUID, "hostname": bad}, "hostname")

    def test_hostnameGood(self) -> None:
        """Hostnames and FQDNs Nova accepts are kept as given."""
        for good in ("web-1", "Custom.Host", "a", "x1", "web_1", "a" * 63, ".".join(["a" * 63] * 4)[:255].rstrip("."),
                     "web-1.example.org", "1st"):
            self.assertEqual(instance_from_document({"uuid": UUID, "hostname": good}).hostname, good)

    def test_longBadValueShortened(self) -> None:
        """An error quoting a bad value quotes its start only."""
        e = self.assertBad({"uuid": UUID, "hostname": "x\n" * 100000}, "hostname")
        self.assertLess(len(str(e)), 400)

    def test_uuidControlCharacters(self) -> None:
        """An instance uuid with NUL, control characters, non-ASCII or punctuation is refused."""
        for bad in ("abc\x00", "\x00", "a\x01b", "a\x7fb", "\u00e9t\u00e9", "a\u2028b", "a\tb", "..", ".", "-rf", "a;b",
                    "a:b", "a" * 256, ""):
            self.assertBad({"uuid": bad}, "uuid")

    def test_uuidGood(self) -> None:
        """Canonical UUIDs are accepted, whatever their version."""
        for good in (UUID, "00000000-0000-0000-0000-000000000000", "ffffffff-ffff-ffff-ffff-ffffffffffff"):
            self.assertEqual(instance_from_document({"uuid": good}).uuid, good)

    def test_idsNoControlCharacters(self) -> None:
        """Every id a document carries refuses control characters, NUL, blanks and non-ASCII, naming the field."""
        for bad in ("p\x00", "p\nq", "p q", "\u00e9", "p\x7f", ""):
            self.assertBad({"uuid": UUID, "project_id": bad}, "project_id")
            self.assertBad({"uuid": UUID, "user_id": bad}, "user_id")
            self.assertBad({"uuid": UUID, "reservation_id": bad}, "reservation_id")
            self.assertBad({"uuid": UUID, "nics": [{"port_id": bad}]}, "nics[0].port_id")
            self.assertBad({"uuid": UUID, "nics": [{"network": {"id": bad}}]}, "nics[0].network.id")
            self.assertBad({"uuid": UUID, "nics": [{"fixed_ips": [{"ip": "10.0.0.5", "subnet": {"id": bad}}]}]},
                           "nics[0].fixed_ips[0].subnet.id")
            self.assertBad({"uuid": UUID, "block_device_mappings": [{"volume_id": bad}]}, "block_device_mappings[0].volume_id")
            self.assertBad({"id": bad}, "id", function=router_from_document)
            self.assertBad({"id": "r1", "project_id": bad}, "project_id", function=router_from_document)
            self.assertBad({"id": "r1", "networks": ["n1", bad]}, "networks[1]", function=router_from_document)
        for bad in ("img\x00", "img\n", "img \u00e9"):
            for field in ("image_id", "kernel_id", "ramdisk_id"):
                self.assertBad({"uuid": UUID, field: bad}, field)
            e = self.assertBad({"uuid": UUID, "ec2_ids": {"images": {bad: 7}}}, "ec2_ids.images")
            self.assertIn(repr(bad), e.problem)

    def test_emptyImageIdsAllowed(self) -> None:
        """An empty image id still means boot from volume, an empty kernel or ramdisk id none."""
        instance = instance_from_document({"uuid": UUID, "image_id": "", "kernel_id": "", "ramdisk_id": ""})
        self.assertEqual((instance.image_id, instance.kernel_id, instance.ramdisk_id), ("", None, None))

    def test_ec2ImagesList(self) -> None:
        """ec2_ids.images must map image ids to integers: a list, even an empty one, is refused."""
        self.assertBad({"uuid": UUID, "ec2_ids": {"images": []}}, "ec2_ids.images", "expected an object, got a list")
        self.assertBad({"uuid": UUID, "ec2_ids": {"images": [7]}}, "ec2_ids.images", "expected an object, got a list")
        self.assertBad({"uuid": UUID, "ec2_ids": {"images": ""}}, "ec2_ids.images", "expected an object, got a string")
        self.assertEqual(instance_from_document({"uuid": UUID, "ec2_ids": {"images": {}}}).ec2_image_ids, {})
        self.assertEqual(instance_from_document({"uuid": UUID, "ec2_ids": {"images": None}}).ec2_image_ids, {})

    def test_storedDocumentsReadLeniently(self) -> None:
        """
        A document stored before a rule existed is still read (strict=False): the rules above
        apply to imports, and the API never fails an instance over them.
        """
        doc = {"uuid": "old\u00e9", "hostname": "", "project_id": "p q", "user_data": base64.b64encode(b"z" * 60000).decode()}
        self.assertRaises(DocumentError, instance_from_document, doc)
        instance = instance_from_document(doc, strict=False)
        self.assertEqual((instance.uuid, instance.hostname, instance.project_id), ("old\u00e9", "", "p q"))
        self.assertRaises(DocumentError, instance_from_document, {"uuid": UUID, "launch_index": -1}, strict=False)


class DeclarationTests(SynchronousTestCase):
    """Every field of the document types is declared once, and what is declared is what is read."""

    def test_everyFieldDeclared(self) -> None:
        """Each attribute of every document type is a declared field (reading one with a plain attribute fails)."""
        for cls in (Instance, Nic, FixedIp, Subnet, Route, Network, KeyPair, BlockDevice, Device, Flavor, InjectedFile, Router):
            self.assertEqual([f.attr for f in declared_fields(cls)], [a.name for a in attrs.fields(cls)], cls.__name__)

    def test_documentedPathsRead(self) -> None:
        """
        Every documented path is a field an import reads where the table says: a value of no
        field's type put there in a full document is refused by exactly that path.
        """
        for row in field_rows(Instance):
            doc = fullDocument()
            *parents, leaf = row.path.split(".")
            target: Any = doc
            for part in parents:
                target = target[part.removesuffix("[]")]
                if part.endswith("[]"):
                    target = target[0]
            target[leaf] = 1.5
            e = self.assertRaises(DocumentError, instance_from_document, doc)
            self.assertEqual(e.where, row.path.replace("[]", "[0]"))

    def test_routeKeptAsPair(self) -> None:
        """A route is read as an object and kept as a (destination, nexthop) pair; both are required."""
        doc = {"uuid": UUID, "nics": [{"fixed_ips": [{"ip": "10.0.0.5", "subnet": {"routes": [{"nexthop": "10.0.0.1", "destination": "0.0.0.0/0"}]}}]}]}
        self.assertEqual(instance_from_document(doc).nics[0].fixed_ips[0].subnet.routes, (("0.0.0.0/0", "10.0.0.1"),))
        del doc["nics"][0]["fixed_ips"][0]["subnet"]["routes"][0]["nexthop"]
        e = self.assertRaises(DocumentError, instance_from_document, doc)
        self.assertEqual(str(e), "nics[0].fixed_ips[0].subnet.routes[0].nexthop: is required")

    def test_lenientKeysAndLists(self) -> None:
        """Import-only id checks on map keys and list items are skipped for stored documents too."""
        doc = {"uuid": UUID, "ec2_ids": {"images": {"img \u00e9": 7}}}
        self.assertRaises(DocumentError, instance_from_document, doc)
        self.assertEqual(instance_from_document(doc, strict=False).ec2_image_ids, {"img \u00e9": 7})
        router = {"id": "r1", "networks": ["n 1"]}
        self.assertRaises(DocumentError, router_from_document, router)
        self.assertEqual(router_from_document(router, strict=False).networks, ("n 1",))

    def test_nonStringImageKey(self) -> None:
        """A YAML key that is not a string in ec2_ids.images is refused, naming the map."""
        e = self.assertRaises(DocumentError, instance_from_document, {"uuid": UUID, "ec2_ids": {"images": {7: 7}}})
        self.assertEqual((e.where, e.problem), ("ec2_ids.images", "expected a string, got an integer"))


class RouterTests(SynchronousTestCase):
    """Router documents."""

    def test_router(self) -> None:
        """A router document builds a Router."""
        self.assertEqual(
            router_from_document({"id": "r1", "project_id": "p", "networks": ["n1", "n2"]}),
            Router(id="r1", project_id="p", networks=("n1", "n2")),
        )

    def test_routerDefaults(self) -> None:
        """Only the id is required."""
        self.assertEqual(router_from_document({"id": "r1"}), Router(id="r1", project_id=None, networks=()))

    def test_routerErrors(self) -> None:
        """Router errors name the field."""
        e = self.assertRaises(DocumentError, router_from_document, {"project_id": "p"})
        self.assertEqual(str(e), "id: is required")
        e = self.assertRaises(DocumentError, router_from_document, {"id": "r", "networks": ["n", 5]}, "[2]")
        self.assertEqual(str(e), "[2].networks[1]: expected a string, got an integer")
        e = self.assertRaises(DocumentError, router_from_document, {"id": "r", "ports": []})
        self.assertEqual(str(e), "ports: unknown field")


class SanitizeHostnameTests(SynchronousTestCase):
    """L{sanitize_hostname} behaves like Nova's."""

    def test_examples(self) -> None:
        """Spaces, underscores and dots become dashes; other punctuation goes; lower case."""
        self.assertEqual(sanitize_hostname("My Web_Server.1"), "my-web-server-1")
        self.assertEqual(sanitize_hostname("a!b@c#d"), "abcd")
        self.assertEqual(sanitize_hostname("--Name--"), "name")
        self.assertEqual(sanitize_hostname("...x..."), "x")

    def test_nonLatin1(self) -> None:
        """Characters outside Latin-1 are dropped; Latin-1 letters stay (as Nova keeps them)."""
        self.assertEqual(sanitize_hostname("caf\u00e9\u2603"), "caf\u00e9")

    def test_truncated(self) -> None:
        """The name is cut to 63 characters before cleaning."""
        self.assertEqual(sanitize_hostname("a" * 70), "a" * 63)
        self.assertEqual(sanitize_hostname("a" * 62 + "-b"), "a" * 62)

    def test_default(self) -> None:
        """An empty result falls back to the default, cut to 63 characters; without one it is ''."""
        self.assertEqual(sanitize_hostname("!!!", "Server-" + "x" * 70), "Server-" + "x" * 56)
        self.assertEqual(sanitize_hostname("!!!"), "")
