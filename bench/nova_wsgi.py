"""
Shape 6: Nova's own metadata app (PyPI C{nova}, C{nova.api.metadata.handler.MetadataRequestHandler})
as a WSGI application for gunicorn, with its database and Neutron calls replaced by in-memory
instances. Runs in the Nova virtualenv that bench/install.sh makes, never in the project's Python:

    MDSVC_BENCH_INSTANCES=instances.json MDSVC_BENCH_SECRET=s \\
        /var/cache/mdsvc-bench/nova-venv/bin/gunicorn -w 2 -b 127.0.0.1:PORT \\
        --chdir bench nova_wsgi:application

What is replaced, and nothing else (the handler, its signature check, its per-worker dict cache,
C{InstanceMetadata} and every renderer run as in a real deployment):

  - C{objects.Instance.get_by_uuid}: a copy of a prebuilt C{Instance} from the same instance
    documents mdsvc imports (C{[api] local_metadata_per_cell = True}, so there is no
    C{InstanceMapping} query either);
  - C{Instance.get_bdms}: an empty C{BlockDeviceMappingList} (the documents have no volumes);
  - C{security_group_api.get_instance_security_groups}: the document's security group names,
    where Nova would ask Neutron.

C{[neutron] service_metadata_proxy = True} with C{metadata_proxy_shared_secret}, so requests must
carry the signed C{X-Instance-ID} headers, as shape 3's do.
"""

from __future__ import annotations

import json
import os
import warnings

warnings.filterwarnings("ignore")

import nova.conf  # noqa: E402
from nova import objects  # noqa: E402

objects.register_all()

from nova.api.metadata import base, handler  # noqa: E402
from nova.network import model as network_model  # noqa: E402
from nova.network import security_group_api  # noqa: E402
from oslo_log import log as oslo_logging  # noqa: E402

CONF = nova.conf.CONF
oslo_logging.register_options(CONF)
CONF([], project="nova", default_config_files=[])
CONF.set_override("service_metadata_proxy", True, group="neutron")
CONF.set_override("metadata_proxy_shared_secret", os.environ.get("MDSVC_BENCH_SECRET", "bench-secret"), group="neutron")
CONF.set_override("local_metadata_per_cell", True, group="api")


def _network_info(doc: dict) -> network_model.NetworkInfo:
    vifs = []
    for nic in doc.get("nics", []):
        subnets = []
        for fixed in nic.get("fixed_ips", []):
            sub = fixed["subnet"]
            ip = network_model.FixedIP(address=fixed["ip"], floating_ips=[
                network_model.IP(address=f, type="floating") for f in fixed.get("floating_ips", [])])
            subnets.append(network_model.Subnet(
                cidr=sub["cidr"], ips=[ip], version=sub.get("ip_version", 4),
                gateway=network_model.IP(address=sub.get("gateway"), type="gateway") if sub.get("gateway") else None,
                dns=[network_model.IP(address=d, type="dns") for d in sub.get("dns", [])],
                routes=[], meta={"dhcp_server": sub.get("dhcp_server")} if sub.get("dhcp_server") else {},
            ))
        net = nic["network"]
        network = network_model.Network(id=net["id"], label=net.get("name"), subnets=subnets,
                                         meta={"mtu": net.get("mtu"), "injected": False})
        vifs.append(network_model.VIF(id=nic["port_id"], address=nic["mac"], network=network,
                                      type=nic.get("vif_type", "ovs"), details={}, devname="tap" + nic["port_id"][:11]))
    return network_model.NetworkInfo(vifs)


def _instance(doc: dict, ec2_id: int) -> objects.Instance:
    keypairs = objects.KeyPairList(objects=[
        objects.KeyPair(name=k["name"], type=k.get("type", "ssh"), public_key=k["public_key"], user_id=doc.get("user_id"))
        for k in doc.get("key_pairs", [])])
    flavor = objects.Flavor(name=doc.get("flavor", "m1.small"), flavorid="2", memory_mb=2048, vcpus=1, root_gb=20,
                            ephemeral_gb=0, swap=0, extra_specs={})
    inst = objects.Instance(
        id=ec2_id, uuid=doc["uuid"], display_name=doc.get("name", doc["uuid"]), hostname=doc.get("hostname") or doc.get("name"),
        project_id=doc.get("project_id"), user_id=doc.get("user_id"), availability_zone=doc.get("availability_zone", "nova"),
        launch_index=0, reservation_id="r-%08x" % ec2_id, image_ref=doc.get("image_id", ""), kernel_id="", ramdisk_id="",
        root_device_name=doc.get("root_device_name", "/dev/vda"), default_ephemeral_device=None, default_swap_device=None,
        key_name=keypairs[0].name if keypairs else None, key_data=keypairs[0].public_key if keypairs else None,
        keypairs=keypairs, user_data=doc.get("user_data"), metadata=dict(doc.get("metadata", {})), system_metadata={},
        flavor=flavor, instance_type_id=1, host="compute-1", node="compute-1", launched_at=None, created_at=None, updated_at=None,
        deleted=False, vm_state="active", task_state=None, power_state=1, device_metadata=None, numa_topology=None,
        ec2_ids=objects.EC2Ids(instance_id="i-%08x" % ec2_id, ami_id="ami-%08x" % 1, kernel_id=None, ramdisk_id=None),
        info_cache=objects.InstanceInfoCache(instance_uuid=doc["uuid"], network_info=_network_info(doc)),
        security_groups=objects.SecurityGroupList(objects=[]), tags=objects.TagList(objects=[]),
        services=objects.ServiceList(objects=[]), pci_devices=objects.PciDeviceList(objects=[]),
        config_drive="", locked=False, cell_name=None, trusted_certs=None, resources=None,
    )
    inst.obj_reset_changes()
    return inst


def _load() -> tuple[dict, dict]:
    path = os.environ.get("MDSVC_BENCH_INSTANCES")
    docs = json.load(open(path)) if path else []
    instances, groups = {}, {}
    for n, doc in enumerate(docs, start=1):
        ec2 = doc.get("ec2_ids", {}).get("instance", n)
        instances[doc["uuid"]] = _instance(doc, ec2)
        groups[doc["uuid"]] = [{"name": g} for g in doc.get("security_groups", ["default"])]
    return instances, groups


INSTANCES, GROUPS = _load()


def _get_by_uuid(cls, context, uuid, expected_attrs=None, use_slave=False):
    """What the cell database would hand back: a fresh copy of the in-memory instance."""
    try:
        return INSTANCES[uuid].obj_clone()
    except KeyError:
        from nova import exception

        raise exception.InstanceNotFound(instance_id=uuid) from None


objects.Instance.get_by_uuid = classmethod(_get_by_uuid)
objects.Instance.get_bdms = lambda self: objects.BlockDeviceMappingList(objects=[])
security_group_api.get_instance_security_groups = lambda context, instance, detailed=False: GROUPS.get(instance.uuid, [])
base.security_group_api = security_group_api

application = handler.MetadataRequestHandler()
