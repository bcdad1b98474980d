"""
Fills Nova's databases with a small cloud through Nova's own code (C{nova.objects}), as
nova-api and nova-compute would have left it. Runs in the Nova virtualenv (bench/install.sh),
never in the project's Python:

    NOVA-VENV/bin/python tests/integration/nova_cloud_build.py NOVA_CONF CELL2_URL OUT_JSON

The databases are those of C{NOVA_CONF} (C{[api_database]} and C{[database]} connections, built
by C{nova-manage}, cell C{cell1} mapped to C{[database]}); C{CELL2_URL} is the database of a
second cell, mapped here. What was made (instances, their ports and security groups, for the
fake Neutron and the tests) is written to C{OUT_JSON}.

The instances:

  - C{web}: boots from an image with a kernel and a ramdisk; two NICs (IPv4 static with a host
    route and a floating IP + IPv6 SLAAC; IPv4 behind a DHCP agent + IPv6 DHCPv6-stateful);
    key pair, metadata, user data, tagged NIC and disk, pinned CPUs, local swap and ephemeral
    disks and a tagged volume, and a password set by Nova's own password code;
  - C{vol}: boots from a volume (no image), a second tagged volume, one NIC, no key, no user data;
  - C{bare}: no network, no key, no block devices (the password POST target);
  - C{race}: like C{bare} (the target of concurrent password POSTs);
  - C{gone}: deleted (a 404);
  - C{far}: in the second cell, with its fixed IP on loopback (remote-address mode).
"""

from __future__ import annotations

import base64
import json
import sys
import warnings

warnings.filterwarnings("ignore")

from nova import config, objects  # noqa: E402
from nova import context as nova_context  # noqa: E402
from nova.api.metadata import password  # noqa: E402
from nova.network import model as network_model  # noqa: E402

PROJECT = "8c0f4c0b2f0a4c8e9d6b1a2f3e4d5c6b"
USER = "5b1f0e6a7c2d4e3f8a9b0c1d2e3f4a5b"
IMAGE = "2f4e6a8c-1b3d-4f5e-8a7b-9c0d1e2f3a4b"
KERNEL = "3a5c7e9b-2d4f-4a6c-8e0b-1d3f5a7c9e2b"
RAMDISK = "4b6d8f0c-3e5a-4b7d-9f1c-2e4a6b8d0f3c"
INSTANCES = {
    "web": "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d",
    "vol": "1b2c3d4e-5f6a-4b7c-9d8e-0f1a2b3c4d5e",
    "bare": "2c3d4e5f-6a7b-4c8d-8e9f-1a2b3c4d5e6f",
    "gone": "3d4e5f6a-7b8c-4d9e-9f0a-2b3c4d5e6f7a",
    "far": "4e5f6a7b-8c9d-4e0f-8a1b-3c4d5e6f7a8b",
    "race": "5f6a7b8c-9d0e-4f1a-9b2c-4d5e6f7a8b9c",
}
ALICE = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIN0vaDbMdsvcParityKeyAliceAliceAliceAlice01 alice@example.org\n"
CAROL = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQDmdsvcCarolKeyCarolKeyCarolKeyCarolKey== carol@example.org"
USER_DATA = b"#cloud-config\nruncmd:\n  - [sh, -c, 'echo \xc3\xa9t\xc3\xa9 > /run/mdsvc-parity']\n"
NOVA_PASSWORD = "c2VjcmV0LXNldC1ieS1ub3Zh" * 12  # 288 characters: two chunks

# Neutron's view: networks, subnets, security groups, ports (the fake Neutron serves these).
GROUPS = {
    "5e1a0c3e-0000-4000-8000-00000000d001": "default",
    "5e1a0c3e-0000-4000-8000-00000000d002": "web",
    "5e1a0c3e-0000-4000-8000-00000000d003": "db",
}


def _ip(address: str, kind: str) -> network_model.IP:
    return network_model.IP(address=address, type=kind)


def _subnet(cidr: str, ips: list[str], gateway: str | None, dns: list[str], routes: list[tuple[str, str]] = (),
            floating: dict[str, list[str]] | None = None, **meta: object) -> network_model.Subnet:
    """A subnet as nova.network.neutron builds it for a port (meta: enable_dhcp, dhcp_server, ipv6_address_mode)."""
    subnet = network_model.Subnet(
        cidr=cidr, gateway=_ip(gateway, "gateway"), dns=[_ip(d, "dns") for d in dns],
        routes=[network_model.Route(cidr=c, gateway=_ip(g, "gateway")) for c, g in routes],
        ips=[network_model.FixedIP(address=a, floating_ips=[_ip(f, "floating") for f in (floating or {}).get(a, [])])
             for a in ips],
        **meta,
    )
    return subnet


def _vif(port: str, mac: str, network_id: str, label: str, mtu: int, subnets: list[network_model.Subnet],
         vif_type: str = "ovs") -> network_model.VIF:
    network = network_model.Network(
        id=network_id, bridge="br-int", label=label, subnets=subnets,
        meta={"injected": False, "tenant_id": PROJECT, "mtu": mtu, "physical_network": None, "tunneled": True},
    )
    return network_model.VIF(
        id=port, address=mac, network=network, type=vif_type, details={"port_filter": True, "datapath_type": "system"},
        devname=("tap" + port)[:14], ovs_interfaceid=port, vnic_type="normal", profile={}, active=True,
    )


def _flavor(name: str, flavorid: str, memory: int, vcpus: int, root: int, ephemeral: int = 0, swap: int = 0,
            extra_specs: dict[str, str] | None = None) -> objects.Flavor:
    return objects.Flavor(
        id=int(flavorid), flavorid=flavorid, name=name, memory_mb=memory, vcpus=vcpus, root_gb=root, ephemeral_gb=ephemeral,
        swap=swap, rxtx_factor=1.0, vcpu_weight=0, disabled=False, is_public=True, extra_specs=extra_specs or {},
        description=None,
    )


def _instance(ctxt: nova_context.RequestContext, name: str, **fields: object) -> objects.Instance:
    uuid = INSTANCES[name]
    values: dict[str, object] = dict(
        uuid=uuid, display_name=name.capitalize() + " server", hostname=name, project_id=PROJECT, user_id=USER,
        availability_zone="az-1", launch_index=0, reservation_id="r-" + uuid[:8], image_ref="", kernel_id="", ramdisk_id="",
        root_device_name="/dev/vda", vm_state="active", power_state=1, host="compute-1", node="compute-1", compute_id=1,
        launched_on="compute-1", config_drive="", locked=False, os_type=None, architecture="x86_64",
        system_metadata={"image_min_disk": "1", "image_min_ram": "0", "image_disk_format": "qcow2",
                         "image_container_format": "bare", "owner_user_name": "alice", "owner_project_name": "demo"},
        metadata={}, keypairs=objects.KeyPairList(objects=[]),
        info_cache=objects.InstanceInfoCache(network_info=network_model.NetworkInfo([])),
    )
    values.update(fields)
    instance = objects.Instance(ctxt, **values)
    instance.create()
    return instance


def _bdm(ctxt: nova_context.RequestContext, instance: objects.Instance, **fields: object) -> None:
    objects.BlockDeviceMapping(ctxt, instance_uuid=instance.uuid, delete_on_termination=True, **fields).create()


def _keypair(name: str, public_key: str, kind: str = "ssh") -> objects.KeyPair:
    return objects.KeyPair(name=name, user_id=USER, fingerprint="00:11:22", public_key=public_key, type=kind)


def build(conf: str, cell2_url: str, out: str) -> None:
    config.parse_args(["nova-cloud-build", "--config-file", conf])
    objects.register_all()
    ctxt = nova_context.get_admin_context()
    cells = {c.name: c for c in objects.CellMappingList.get_all(ctxt)}
    cell2 = objects.CellMapping(ctxt, uuid="7f6e5d4c-3b2a-4190-8f7e-6d5c4b3a2910", name="cell2", transport_url="fake://",
                                database_connection=cell2_url)
    cell2.create()
    ports: list[dict[str, object]] = []

    def port(instance: str, vif: network_model.VIF, groups: list[str]) -> network_model.VIF:
        fixed = [{"subnet_id": f"subnet-{s['cidr']}", "ip_address": ip["address"]}
                 for s in vif["network"]["subnets"] for ip in s["ips"]]
        ports.append({"id": vif["id"], "device_id": INSTANCES[instance], "device_owner": "compute:az-1",
                      "project_id": PROJECT, "tenant_id": PROJECT, "network_id": vif["network"]["id"],
                      "mac_address": vif["address"], "fixed_ips": fixed, "security_groups": groups})
        return vif

    made: dict[str, dict[str, object]] = {}
    with nova_context.target_cell(ctxt, cells["cell1"]) as cctxt:
        # web: image boot, two NICs (v4 + v6 each), everything tagged and set
        nics = network_model.NetworkInfo([
            port("web", _vif("c0ffee00-1111-4aaa-8bbb-000000000001", "fa:16:3e:12:34:01", "6a1b0c2d-1111-4000-8000-0000000000a1",
                             "private", 1450, [
                                 _subnet("10.10.0.0/24", ["10.10.0.5"], "10.10.0.1", ["10.10.0.2", "192.0.2.53"],
                                         [("172.16.0.0/16", "10.10.0.254")], {"10.10.0.5": ["203.0.113.17"]}, enable_dhcp=False),
                                 _subnet("2001:db8:10::/64", ["2001:db8:10::5"], "2001:db8:10::1", ["2001:db8:10::2"],
                                         enable_dhcp=True, ipv6_address_mode="slaac"),
                             ]),
                 ["5e1a0c3e-0000-4000-8000-00000000d001", "5e1a0c3e-0000-4000-8000-00000000d002"]),
            port("web", _vif("c0ffee00-2222-4aaa-8bbb-000000000002", "fa:16:3e:12:34:02", "6a1b0c2d-2222-4000-8000-0000000000a2",
                             "storage", 9000, [
                                 _subnet("192.168.50.0/24", ["192.168.50.9"], None, ["192.168.50.2"], enable_dhcp=True,
                                         dhcp_server="192.168.50.2"),
                                 _subnet("2001:db8:50::/64", ["2001:db8:50::9"], "2001:db8:50::1", [], enable_dhcp=True,
                                         ipv6_address_mode="dhcpv6-stateful", dhcp_server="2001:db8:50::2"),
                             ], vif_type="bridge"),
                 # "default" on both ports: Nova lists a group once per port that has it
                 ["5e1a0c3e-0000-4000-8000-00000000d001", "5e1a0c3e-0000-4000-8000-00000000d003"]),
        ])
        devices = objects.InstanceDeviceMetadata(devices=[
            objects.NetworkInterfaceMetadata(bus=objects.PCIDeviceBus(address="0000:00:03.0"), mac="fa:16:3e:12:34:01",
                                             tags=["frontend"], vlan=1000, vf_trusted=False),
            objects.NetworkInterfaceMetadata(bus=objects.PCIDeviceBus(address="0000:00:04.0"), mac="fa:16:3e:12:34:02",
                                             vf_trusted=True),
            objects.DiskMetadata(bus=objects.SCSIDeviceBus(address="0:0:0:1"), serial="vol-data-0001", path="/dev/sdb",
                                 tags=["data"]),
            objects.DiskMetadata(bus=objects.IDEDeviceBus(address="0:1"), serial="cdrom-1", tags=["iso"]),
        ])
        numa = objects.InstanceNUMATopology(cells=[
            objects.InstanceNUMACell(id=0, cpuset=set(), pcpuset={0, 1}, memory=1024, cpu_policy="dedicated",
                                     cpu_pinning={0: 4, 1: 5}),
            objects.InstanceNUMACell(id=1, cpuset=set(), pcpuset={2, 3}, memory=1024, cpu_policy="dedicated",
                                     cpu_pinning={2: 10, 3: 11}),
        ])
        web = _instance(
            cctxt, "web", image_ref=IMAGE, kernel_id=KERNEL, ramdisk_id=RAMDISK, key_name="alice", key_data=ALICE,
            keypairs=objects.KeyPairList(objects=[_keypair("alice", ALICE)]),
            flavor=_flavor("m1.pinned", "42", 2048, 4, 20, ephemeral=5, swap=512, extra_specs={"hw:cpu_policy": "dedicated"}),
            user_data=base64.b64encode(USER_DATA).decode(), metadata={"role": "web", "tier": "front", "zone": "b"},
            display_name="Web server \u00e9t\u00e9", default_ephemeral_device="/dev/vdb", default_swap_device="/dev/vdc",
            info_cache=objects.InstanceInfoCache(network_info=nics), device_metadata=devices, numa_topology=numa,
        )
        _bdm(cctxt, web, source_type="image", destination_type="local", boot_index=0, image_id=IMAGE, device_name="/dev/vda",
             device_type="disk", disk_bus="virtio", guest_format=None, volume_size=20)
        _bdm(cctxt, web, source_type="blank", destination_type="local", boot_index=-1, device_name="/dev/vdb",
             device_type="disk", guest_format=None, volume_size=5)
        _bdm(cctxt, web, source_type="blank", destination_type="local", boot_index=-1, device_name="/dev/vdc",
             device_type="disk", guest_format="swap", volume_size=1)
        _bdm(cctxt, web, source_type="volume", destination_type="volume", boot_index=-1, device_name="/dev/sdb",
             volume_id="9d8c7b6a-0000-4000-8000-0000000000b1", device_type="disk", disk_bus="scsi", tag="data", volume_size=10)
        web.system_metadata.update(password.convert_password(cctxt, NOVA_PASSWORD))
        web.save()
        made["web"] = {"cell": "cell1"}

        # vol: boot from volume, no image, no key, no user data
        vol = _instance(
            cctxt, "vol", flavor=_flavor("m1.small", "2", 2048, 1, 0), metadata={"role": "db"},
            root_device_name="/dev/vda",
            info_cache=objects.InstanceInfoCache(network_info=network_model.NetworkInfo([
                port("vol", _vif("c0ffee00-3333-4aaa-8bbb-000000000003", "fa:16:3e:12:34:03", "6a1b0c2d-1111-4000-8000-0000000000a1",
                                 "private", 1450, [
                                     _subnet("10.10.0.0/24", ["10.10.0.6"], "10.10.0.1", ["10.10.0.2"], enable_dhcp=True),
                                     _subnet("2001:db8:10::/64", ["2001:db8:10::6"], "2001:db8:10::1", ["2001:db8:10::2"],
                                             enable_dhcp=True, ipv6_address_mode="dhcpv6-stateless"),
                                 ]),
                     ["5e1a0c3e-0000-4000-8000-00000000d001", "5e1a0c3e-0000-4000-8000-00000000d003"]),
            ])),
            device_metadata=objects.InstanceDeviceMetadata(devices=[
                objects.DiskMetadata(bus=objects.PCIDeviceBus(address="0000:00:07.0"), serial="9d8c7b6a-0000-4000-8000-0000000000b3",
                                     path="/dev/vdb", tags=["logs"]),
            ]),
        )
        _bdm(cctxt, vol, source_type="volume", destination_type="volume", boot_index=0, device_name="/dev/vda",
             volume_id="9d8c7b6a-0000-4000-8000-0000000000b2", device_type="disk", disk_bus="virtio", volume_size=30)
        _bdm(cctxt, vol, source_type="volume", destination_type="volume", boot_index=-1, device_name="/dev/vdb",
             volume_id="9d8c7b6a-0000-4000-8000-0000000000b3", device_type="disk", disk_bus="virtio", tag="logs",
             volume_size=50)
        made["vol"] = {"cell": "cell1"}

        # bare: nothing but itself (the target of a password POST)
        _instance(cctxt, "bare", image_ref=IMAGE, flavor=_flavor("m1.tiny", "1", 512, 1, 1), root_device_name=None)
        made["bare"] = {"cell": "cell1"}
        _instance(cctxt, "race", image_ref=IMAGE, flavor=_flavor("m1.tiny", "1", 512, 1, 1))
        made["race"] = {"cell": "cell1"}

        # gone: created, then deleted
        gone = _instance(cctxt, "gone", image_ref=IMAGE, flavor=_flavor("m1.tiny", "1", 512, 1, 1))
        gone.destroy()
        made["gone"] = {"cell": "cell1", "deleted": True}

    with nova_context.target_cell(ctxt, cell2) as cctxt:
        _instance(
            cctxt, "far", image_ref=IMAGE, flavor=_flavor("m1.small", "2", 2048, 1, 20), key_name="carol", key_data=CAROL,
            keypairs=objects.KeyPairList(objects=[_keypair("carol", CAROL)]), availability_zone="az-2",
            info_cache=objects.InstanceInfoCache(network_info=network_model.NetworkInfo([
                port("far", _vif("c0ffee00-4444-4aaa-8bbb-000000000004", "fa:16:3e:12:34:04", "6a1b0c2d-4444-4000-8000-0000000000a4",
                                 "loopback", 1500, [_subnet("127.0.0.0/8", ["127.0.0.3"], "127.0.0.1", [], enable_dhcp=False)]),
                     ["5e1a0c3e-0000-4000-8000-00000000d001"]),
            ])),
        )
        made["far"] = {"cell": "cell2"}

    for name in made:
        cell = cells["cell1"] if made[name]["cell"] == "cell1" else cell2
        objects.InstanceMapping(ctxt, instance_uuid=INSTANCES[name], cell_mapping=cell, project_id=PROJECT, user_id=USER,
                                queued_for_delete=bool(made[name].get("deleted"))).create()
        made[name]["uuid"] = INSTANCES[name]
    with open(out, "w") as f:
        json.dump({
            "project_id": PROJECT, "instances": made, "ports": ports, "nova_password": NOVA_PASSWORD,
            "security_groups": [{"id": gid, "name": name, "project_id": PROJECT, "tenant_id": PROJECT} for gid, name in GROUPS.items()],
            # the private network's subnet is served by the metadata provider edge-1 (an NSX edge)
            "subnets": [{"id": "b1c2d3e4-0000-4000-8000-0000000000c1", "network_id": "6a1b0c2d-1111-4000-8000-0000000000a1",
                         "cidr": "10.10.0.0/24", "advanced_service_providers": ["edge-1"]}],
            "user_data": base64.b64encode(USER_DATA).decode(),
        }, f, indent=1)


if __name__ == "__main__":
    build(*sys.argv[1:4])
