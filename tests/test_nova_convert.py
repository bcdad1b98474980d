"""
Nova's rows as mdsvc's instance: the versioned objects of C{instance_extra}, the network model of
C{instance_info_caches}, and the whole instance (L{mdsvc.store.nova.convert}).
"""

from __future__ import annotations

import base64
import json
from datetime import datetime
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from mdsvc.api.metadata import InstanceMetadata
from mdsvc.model import Device, KeyPair
from mdsvc.store.nova import convert, netinfo, ovo
from mdsvc.store.nova.rows import InstanceRows

UUID = "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"


def obj(name: str, data: dict[str, Any], version: str = "1.0") -> dict[str, Any]:
    """An oslo.versionedobjects primitive."""
    return {"nova_object.name": name, "nova_object.namespace": "nova", "nova_object.version": version, "nova_object.data": data}


def vif(port: str, subnets: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    """A VIF of Nova's network model, as its JSON."""
    return {"id": port, "address": "FA:16:3E:00:00:01", "type": "ovs", "devname": ("tap" + port)[:14], "vnic_type": "normal",
            "network": {"id": "net-1", "label": "private", "meta": {"mtu": 1450, "injected": False}, "subnets": subnets}, **extra}


def subnet(cidr: str, ips: list[str], **meta: Any) -> dict[str, Any]:
    """A subnet of Nova's network model, as its JSON."""
    version = 6 if ":" in cidr else 4
    return {"cidr": cidr, "version": version, "meta": meta,
            "gateway": {"address": None, "type": "gateway", "version": None, "meta": {}},
            "dns": [{"address": "10.0.0.2", "type": "dns", "version": 4, "meta": {}}],
            "routes": [{"cidr": "172.16.0.0/16", "gateway": {"address": "10.0.0.254"}, "interface": None, "meta": {}}],
            "ips": [{"address": ip, "type": "fixed", "version": version, "meta": {},
                     "floating_ips": [{"address": "203.0.113.9", "type": "floating"}] if ip == "10.0.0.5" else []} for ip in ips]}


class VersionedObjectTests(SynchronousTestCase):
    """C{instance_extra}'s columns."""

    def test_flavor(self) -> None:
        """The current flavor of the C{{cur, old, new}} document."""
        text = json.dumps({"cur": obj("Flavor", {"name": "m1.small", "flavorid": "2", "memory_mb": 2048, "vcpus": 1, "root_gb": 20,
                                                 "ephemeral_gb": 0, "swap": 0, "extra_specs": {"hw:cpu_policy": "shared"}}, "1.2"),
                           "old": obj("Flavor", {"name": "m1.tiny"}), "new": None})
        flavor = ovo.flavor(text, UUID)
        assert flavor is not None
        self.assertEqual((flavor.name, flavor.flavorid, flavor.memory_mb, dict(flavor.extra_specs)),
                         ("m1.small", "2", 2048, {"hw:cpu_policy": "shared"}))

    def test_no_flavor(self) -> None:
        """No column, broken JSON, or a flavor without a name: no flavor (never an error)."""
        for text in (None, "", "{not json", json.dumps({"cur": obj("Flavor", {})})):
            self.assertIsNone(ovo.flavor(text, UUID), text)

    def test_keypairs(self) -> None:
        """The key pairs in order, their type kept (x509 too)."""
        text = json.dumps(obj("KeyPairList", {"objects": [
            obj("KeyPair", {"name": "alice", "public_key": "ssh-ed25519 AAAA alice", "type": "ssh"}),
            obj("KeyPair", {"name": "cert", "public_key": "-----BEGIN CERTIFICATE-----", "type": "x509"}),
            obj("KeyPair", {"name": "broken"}),
        ]}))
        self.assertEqual(ovo.keypairs(text, UUID), (KeyPair("alice", "ssh-ed25519 AAAA alice", "ssh"),
                                                     KeyPair("cert", "-----BEGIN CERTIFICATE-----", "x509")))

    def test_devices(self) -> None:
        """NICs, disks and shares on known buses; a device on a bus Nova does not name is left out, as by Nova."""
        text = json.dumps(obj("InstanceDeviceMetadata", {"devices": [
            obj("NetworkInterfaceMetadata", {"mac": "fa:16:3e:00:00:01", "vlan": 100, "vf_trusted": True,
                                             "bus": obj("PCIDeviceBus", {"address": "0000:00:03.0"}), "tags": ["a"]}),
            obj("DiskMetadata", {"serial": "s1", "bus": obj("IDEDeviceBus", {"address": "0:1"})}),
            obj("DiskMetadata", {"path": "/dev/sdz", "bus": obj("FutureBus", {"address": "x"}), "tags": ["lost"]}),
            obj("ShareMetadata", {"share_id": "share-1", "tag": "t"}),
            obj("SomethingElse", {}),
        ]}))
        self.assertEqual(ovo.devices(text, UUID), (
            Device(type="nic", bus="pci", address="0000:00:03.0", mac="fa:16:3e:00:00:01", tags=("a",), vlan=100, vf_trusted=True),
            Device(type="disk", bus="ide", address="0:1", serial="s1"),
            Device(type="share", bus="none", share_id="share-1", tag="t"),
        ))

    def test_dedicated_cpus(self) -> None:
        """The union of the cells' pcpuset, sorted; a 1.4 cell with the dedicated policy kept them in cpuset."""
        text = json.dumps(obj("InstanceNUMATopology", {"cells": [
            obj("InstanceNUMACell", {"id": 0, "cpuset": [], "pcpuset": [3, 1], "cpu_policy": "dedicated"}, "1.6"),
            obj("InstanceNUMACell", {"id": 1, "cpuset": [6, 5], "cpu_policy": "dedicated"}, "1.4"),
            obj("InstanceNUMACell", {"id": 2, "cpuset": [8, 9], "cpu_policy": "shared"}, "1.4"),
            obj("InstanceNUMACell", {"id": 3, "cpuset": [10], "pcpuset": [], "cpu_policy": "dedicated"}, "1.5"),
        ]}))
        self.assertEqual(ovo.dedicated_cpus(text, UUID), (1, 3, 5, 6))

    def test_legacy_topology(self) -> None:
        """A pre-Liberty topology (no object name) has no pinned CPUs, as Nova migrates it."""
        self.assertEqual(ovo.dedicated_cpus(json.dumps({"cells": [{"id": 0, "cpus": "0-3"}]}), UUID), ())


class NetworkInfoTests(SynchronousTestCase):
    """C{instance_info_caches.network_info} as ports."""

    def test_ports(self) -> None:
        """Each fixed IP with its subnet, the subnet's meta, routes, DNS, floating IPs; addresses as written."""
        text = json.dumps([vif("port-1", [subnet("10.0.0.0/24", ["10.0.0.5", "10.0.0.6"], enable_dhcp=False),
                                          subnet("2001:DB8::/64", ["2001:DB8::5"], enable_dhcp=True, ipv6_address_mode="slaac",
                                                 dhcp_server="2001:db8::2")])])
        (nic,) = netinfo.nics(text, UUID)
        self.assertEqual((nic.port_id, nic.mac, nic.vif_type, nic.network.id, nic.network.name, nic.network.mtu),
                         ("port-1", "FA:16:3E:00:00:01", "ovs", "net-1", "private", 1450))
        self.assertEqual([f.ip for f in nic.fixed_ips], ["10.0.0.5", "10.0.0.6", "2001:DB8::5"])
        v4, _, v6 = nic.fixed_ips
        self.assertEqual(v4.floating_ips, ("203.0.113.9",))
        self.assertEqual((v4.subnet.cidr, v4.subnet.gateway, v4.subnet.dns, v4.subnet.routes, v4.subnet.enable_dhcp),
                         ("10.0.0.0/24", None, ("10.0.0.2",), (("172.16.0.0/16", "10.0.0.254"),), False))
        self.assertEqual((v6.subnet.ip_version, v6.subnet.ipv6_address_mode, v6.subnet.dhcp_server), (6, "slaac", "2001:db8::2"))

    def test_nothing(self) -> None:
        """No cache, an empty one, or one that is not JSON: no ports."""
        for text in (None, "[]", "{]"):
            self.assertEqual(netinfo.nics(text, UUID), ())


def rows(**changes: Any) -> InstanceRows:
    """The rows of an instance as L{mdsvc.store.nova.rows.read_instance} returns them."""
    values: dict[str, Any] = dict(
        instance={"uuid": UUID, "display_name": "Web", "hostname": "web", "project_id": "p", "user_id": "u",
                  "availability_zone": "az", "launch_index": 2, "reservation_id": "r-1", "image_ref": "img", "kernel_id": "",
                  "ramdisk_id": None, "key_name": "alice", "user_data": base64.b64encode(b"#!/bin/sh\n").decode(),
                  "root_device_name": "/dev/vda", "default_ephemeral_device": None, "default_swap_device": None,
                  "created_at": datetime(2026, 1, 2, 3, 4, 5)},
        extra={"keypairs": json.dumps(obj("KeyPairList", {"objects": [obj("KeyPair", {"name": "alice", "public_key": "k"})]}))},
        network_info=json.dumps([vif("port-1", [subnet("10.0.0.0/24", ["10.0.0.5"])]), vif("port-2", [])]),
        metadata=[("b", "2"), ("a", "1")],
        system_metadata=[("password_1", "world"), ("image_min_disk", "1"), ("password_0", "hello "), ("password_2", "")],
        block_devices=[{"source_type": "volume", "destination_type": "volume", "device_name": "/dev/vdb", "tag": "data"}],
        ec2_instance_id=42,
        ec2_image_ids={"img": 7},
    )
    values.update(changes)
    return InstanceRows(**values)


class InstanceTests(SynchronousTestCase):
    """The whole instance."""

    def test_instance(self) -> None:
        """Identity, EC2 numbers, key, user data, metadata in row order, password, ports with their groups."""
        instance = convert.instance(rows(), {"port-1": ["default", "web"]})
        self.assertEqual((instance.uuid, instance.name, instance.hostname, instance.launch_index, instance.created_at),
                         (UUID, "Web", "web", 2, "2026-01-02T03:04:05Z"))
        self.assertEqual((instance.image_id, instance.kernel_id, instance.ramdisk_id), ("img", None, None))
        self.assertEqual((instance.ec2_instance_id, dict(instance.ec2_image_ids)), (42, {"img": 7}))
        self.assertEqual(instance.key_pairs, (KeyPair("alice", "k"),))
        self.assertEqual(instance.user_data, b"#!/bin/sh\n")
        self.assertEqual(list(instance.metadata.items()), [("b", "2"), ("a", "1")])
        self.assertEqual(instance.password, "hello world")
        self.assertEqual([n.security_groups for n in instance.nics], [("default", "web"), ()])
        self.assertEqual(instance.block_device_mappings[0].tag, "data")
        md = InstanceMetadata(instance, "novalocal")
        self.assertEqual(md.ec2_tree("2009-04-04")["meta-data"]["instance-id"], "i-0000002a")
        self.assertEqual(md.ec2_tree("2009-04-04")["meta-data"]["security-groups"], ["default", "web"])

    def test_no_key_name(self) -> None:
        """Without a key name the instance shows no key, whatever instance_extra holds (Nova's test)."""
        instance = convert.instance(rows(instance=dict(rows().instance, key_name=None)), {})
        self.assertEqual(instance.key_pairs, ())

    def test_loose_columns(self) -> None:
        """No display name, no hostname, no launch index, no password rows: what the renderer can show."""
        loose = dict(rows().instance, display_name=None, hostname=None, launch_index=None, user_data=None, image_ref="")
        instance = convert.instance(rows(instance=loose, system_metadata=[("password_0", "")]), {})
        self.assertEqual((instance.name, instance.hostname, instance.launch_index, instance.user_data, instance.password,
                          instance.image_id), ("", f"Server-{UUID}", 0, None, None, ""))

    def test_password(self) -> None:
        """Nova's extract_password: the password_* values by sorted key; empty is none."""
        self.assertEqual(convert.password({"password_1": "b", "password_0": "a", "x": "y"}), "ab")
        self.assertIsNone(convert.password({"password_0": "", "password_1": None}))
