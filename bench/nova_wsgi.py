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
  - Nova's Neutron client (C{nova.network.neutron.get_client}): C{bench/nova_neutron.py}, which
    answers Nova's port, subnet, floating IP and security group queries from the documents.

Nova's own code builds each instance's network info cache from those answers
(C{_build_vif_model}, networks C{injected} as C{[DEFAULT] flat_injected} at the time) and lists
its security groups (C{get_instance_security_groups}: per port, in port order).
C{tests/nova_parity/generate.py} drives the same app for the expected answers of mdsvc's parity
tests.

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

import nova_neutron  # noqa: E402
from nova.api.metadata import handler  # noqa: E402
from nova.network import model as network_model  # noqa: E402
from oslo_log import log as oslo_logging  # noqa: E402

CONF = nova.conf.CONF
oslo_logging.register_options(CONF)
CONF([], project="nova", default_config_files=[])
CONF.set_override("service_metadata_proxy", True, group="neutron")
CONF.set_override("metadata_proxy_shared_secret", os.environ.get("MDSVC_BENCH_SECRET", "bench-secret"), group="neutron")
CONF.set_override("local_metadata_per_cell", True, group="api")


def _flavor(doc: dict) -> objects.Flavor:
    flavor = doc.get("flavor") or "m1.small"
    name = flavor if isinstance(flavor, str) else flavor["name"]
    return objects.Flavor(name=name, flavorid="2", memory_mb=2048, vcpus=1, root_gb=20, ephemeral_gb=0, swap=0, extra_specs={})


def _ec2_ids(doc: dict, ec2_id: int) -> objects.EC2Ids:
    images = doc.get("ec2_ids", {}).get("images", {})

    def image(key: str, prefix: str) -> str | None:
        ref = doc.get(key)
        return "%s-%08x" % (prefix, images.get(ref, 1)) if ref else None

    return objects.EC2Ids(instance_id="i-%08x" % ec2_id, ami_id=image("image_id", "ami"),
                          kernel_id=image("kernel_id", "aki"), ramdisk_id=image("ramdisk_id", "ari"))


def _instance(doc: dict, ec2_id: int, network_info: network_model.NetworkInfo) -> objects.Instance:
    keypairs = objects.KeyPairList(objects=[
        objects.KeyPair(name=k["name"], type=k.get("type", "ssh"), public_key=k["public_key"], user_id=doc.get("user_id"))
        for k in doc.get("key_pairs", [])])
    name = doc.get("name") or "Server %s" % doc["uuid"]
    inst = objects.Instance(
        id=ec2_id, uuid=doc["uuid"], display_name=name, hostname=doc.get("hostname") or name,
        project_id=doc.get("project_id"), user_id=doc.get("user_id"), availability_zone=doc.get("availability_zone", "nova"),
        launch_index=doc.get("launch_index", 0), reservation_id=doc.get("reservation_id") or "r-%08x" % ec2_id,
        image_ref=doc.get("image_id", ""), kernel_id=doc.get("kernel_id") or "", ramdisk_id=doc.get("ramdisk_id") or "",
        root_device_name=doc.get("root_device_name"), default_ephemeral_device=None, default_swap_device=None,
        key_name=keypairs[0].name if keypairs else None, key_data=keypairs[0].public_key if keypairs else None,
        keypairs=keypairs, user_data=doc.get("user_data"), metadata=dict(doc.get("metadata", {})), system_metadata={},
        flavor=_flavor(doc), instance_type_id=1, host="compute-1", node="compute-1", launched_at=None, created_at=None,
        updated_at=None, deleted=False, vm_state="active", task_state=None, power_state=1, device_metadata=None,
        numa_topology=None, ec2_ids=_ec2_ids(doc, ec2_id),
        info_cache=objects.InstanceInfoCache(instance_uuid=doc["uuid"], network_info=network_info),
        security_groups=objects.SecurityGroupList(objects=[]), tags=objects.TagList(objects=[]),
        services=objects.ServiceList(objects=[]), pci_devices=objects.PciDeviceList(objects=[]),
        config_drive="", locked=False, cell_name=None, trusted_certs=None, resources=None,
    )
    inst.obj_reset_changes()
    return inst


INSTANCES: dict = {}


def use_documents(docs: list) -> None:
    """Replace the in-memory instances and Neutron's ports with those of C{docs} (network info
    built under the current C{[DEFAULT] flat_injected}, as Nova builds it)."""
    neutron = nova_neutron.use(docs)
    INSTANCES.clear()
    for n, doc in enumerate(docs, start=1):
        ec2 = doc.get("ec2_ids", {}).get("instance", n)
        INSTANCES[doc["uuid"]] = _instance(doc, ec2, neutron.network_info(doc["uuid"]))


def _load() -> None:
    path = os.environ.get("MDSVC_BENCH_INSTANCES")
    if path:
        with open(path) as f:
            use_documents(json.load(f))


_load()


def _get_by_uuid(cls, context, uuid, expected_attrs=None, use_slave=False):
    """What the cell database would hand back: a fresh copy of the in-memory instance."""
    try:
        return INSTANCES[uuid].obj_clone()
    except KeyError:
        from nova import exception

        raise exception.InstanceNotFound(instance_id=uuid) from None


objects.Instance.get_by_uuid = classmethod(_get_by_uuid)
objects.Instance.get_bdms = lambda self: objects.BlockDeviceMappingList(objects=[])

application = handler.MetadataRequestHandler()
