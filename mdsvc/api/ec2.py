# -*- test-case-name: tests.test_api_render -*-
"""The EC2-compatible C{meta-data} tree of one instance (spec §2.3)."""

from __future__ import annotations

from typing import Any

from mdsvc.api.versions import ec2_at_least
from mdsvc.model import Instance


def ec2_id(prefix: str, number: int | None) -> str | None:
    """Nova's EC2 id formatting: C{i-0000002a}, C{ami-00000007}."""
    return None if number is None else "%s-%08x" % (prefix, number)


def image_ec2_id(instance: Instance, image: str | None, prefix: str) -> str | None:
    """The C{ami-}/C{aki-}/C{ari-} id of a Glance image, None for no image."""
    if not image:
        return None
    return ec2_id(prefix, instance.ec2_image_ids.get(image))


def full_hostname(hostname: str, dhcp_domain: str) -> str:
    """
    The hostname with C{dhcp_domain} appended, as Nova does; an empty domain appends nothing.

    Unlike Nova, a hostname that already is an FQDN (has a dot) is left as it is (spec §9.10).
    """
    if dhcp_domain and "." not in hostname:
        return f"{hostname}.{dhcp_domain}"
    return hostname


def block_device_mapping(instance: Instance) -> dict[str, str | None]:
    """The C{block-device-mapping} dict (spec §2.3.6)."""
    root = instance.root_device_name
    if not root:
        return {"ami": "sda1", "ephemeral0": "sda2", "root": "/dev/sda1", "swap": "sda3"}
    mapping: dict[str, str | None] = {"ami": root[5:] if root.startswith("/dev/") else root, "root": root}
    if instance.default_ephemeral_device:
        mapping["ephemeral0"] = instance.default_ephemeral_device
    if instance.default_swap_device:
        mapping["swap"] = instance.default_swap_device
    volumes = sorted((b.device_name for b in instance.block_device_mappings if b.destination_type == "volume"),
                     key=lambda name: (name is not None, name or ""))
    for n, name in enumerate(volumes):
        mapping[f"ebs{n}"] = name
    blanks = [b for b in instance.block_device_mappings if b.destination_type != "volume" and b.source_type == "blank"]
    swaps = [b for b in blanks if b.guest_format == "swap"]
    if swaps:
        mapping["swap"] = swaps[-1].device_name
    for n, bdm in enumerate(b for b in blanks if b.guest_format != "swap"):
        mapping[f"ephemeral{n}"] = bdm.device_name
    return mapping


LOCAL_IPV4_FROM_REQUEST = object()
"""Stands for C{local-ipv4} when the instance has no fixed IPv4: the request's address is used."""


def ec2_meta_data(instance: Instance, version: str, dhcp_domain: str) -> dict[str, Any]:
    """
    The C{meta-data} dict of EC2 C{version}, in Nova's insertion order (which the config drive's
    C{meta-data.json} keeps; listings sort it).
    """
    hostname = full_hostname(instance.hostname, dhcp_domain)
    v4 = [f for f in instance.fixed_ips() if f.subnet.ip_version == 4]
    floating = [ip for f in instance.fixed_ips() for ip in f.floating_ips]
    md: dict[str, Any] = {
        "ami-id": image_ec2_id(instance, instance.image_id, "ami"),
        "ami-launch-index": instance.launch_index,
        "ami-manifest-path": "FIXME",
        "instance-id": ec2_id("i", instance.ec2_instance_id),
        "hostname": hostname,
        "local-ipv4": v4[0].ip if v4 else LOCAL_IPV4_FROM_REQUEST,
        "reservation-id": instance.reservation_id,
        "security-groups": instance.all_security_groups(),
    }
    key = instance.key_pair
    if key is not None:
        md["public-keys"] = {"0": {"_name": f"0={key.name}", "openssh-key": key.public_key}}
    if ec2_at_least(version, "2007-01-19"):
        md["local-hostname"] = hostname
        md["public-hostname"] = hostname
        md["public-ipv4"] = floating[0] if floating else ""
    if ec2_at_least(version, "2007-08-29"):
        md["instance-type"] = instance.flavor.name if instance.flavor else None
    if ec2_at_least(version, "2007-12-15"):
        md["block-device-mapping"] = block_device_mapping(instance)
        kernel = image_ec2_id(instance, instance.kernel_id, "aki")
        if kernel:
            md["kernel-id"] = kernel
        ramdisk = image_ec2_id(instance, instance.ramdisk_id, "ari")
        if ramdisk:
            md["ramdisk-id"] = ramdisk
    if ec2_at_least(version, "2008-02-01"):
        md["placement"] = {"availability-zone": instance.availability_zone}
    if ec2_at_least(version, "2008-09-01"):
        md["instance-action"] = "none"
    return md
