# -*- test-case-name: tests.test_api_render -*-
"""The OpenStack tree's documents: C{meta_data.json} and its C{devices} (spec §2.4.3, §2.4.4)."""

from __future__ import annotations

from typing import Any

from mdsvc.api.ec2 import full_hostname
from mdsvc.api.versions import (
    EPOXY,
    GRIZZLY,
    HAVANA,
    LIBERTY,
    NEWTON_ONE,
    NEWTON_TWO,
    OCATA,
    ROCKY,
    VICTORIA,
    openstack_version,
)
from mdsvc.model import Device, Instance

RANDOM_SEED = "\x00random_seed\x00"
"""Placeholder for C{random_seed}: the document is rendered once, the seed spliced in per request."""


def at_least(version: str, since: str) -> bool:
    """Whether OpenStack C{version} (a date) is C{since} or newer."""
    return version >= since


def devices(instance: Instance, version: str) -> list[dict[str, Any]]:
    """The C{devices} list of C{meta_data.json} for C{version} (device role tagging)."""
    out = []
    for device in instance.device_metadata:
        entry = _device(device, version)
        if entry is not None:
            out.append(entry)
    return out


def _device(device: Device, version: str) -> dict[str, Any] | None:
    if device.bus is None or device.bus == "none":
        bus, address = "none", "none"
    else:
        bus, address = device.bus, device.address or "none"
    entry: dict[str, Any] = {}
    if device.type == "nic":
        if at_least(version, OCATA) and device.vlan is not None:
            entry["vlan"] = device.vlan
        if at_least(version, ROCKY):
            entry["vf_trusted"] = bool(device.vf_trusted)
        if not (device.tags or entry):
            return None
        entry.update(type="nic", mac=device.mac, bus=bus, address=address)
    elif device.type == "disk":
        entry["type"] = "disk"
        if device.serial is not None:
            entry["serial"] = device.serial
        if device.path is not None:
            entry["path"] = device.path
        entry.update(bus=bus, address=address)
    elif device.type == "share":
        if not at_least(version, EPOXY):
            return None
        return {"type": "share", "share_id": device.share_id, "tag": device.tag, "bus": "none", "address": "none"}
    else:
        return None
    if device.tags:
        entry["tags"] = list(device.tags)
    return entry


def meta_data(
    instance: Instance,
    version: str,
    dhcp_domain: str,
    *,
    files: list[dict[str, str]] | None = None,
    extra: dict[str, Any] | None = None,
    network_config: dict[str, str] | None = None,
    random_seed: str = RANDOM_SEED,
) -> dict[str, Any]:
    """
    The C{meta_data.json} dict of C{version}, keys in Nova's order.

    @param files: config drive only: C{[{"path", "content_path"}]} of injected files.
    @param extra: config drive only: keys merged after C{files} (C{admin_pass}).
    @param random_seed: the seed to embed (by default a placeholder to splice per request).
    """
    md: dict[str, Any] = {"uuid": instance.uuid}
    if instance.metadata:
        md["meta"] = dict(instance.metadata)
    if files:
        md["files"] = files
    if extra:
        md.update(extra)
    if network_config:
        md["network_config"] = network_config
    key = instance.key_pair
    if key is not None:
        md["public_keys"] = {key.name: key.public_key}
        md["keys"] = [{"name": key.name, "type": key.type, "data": key.public_key}]
    md["hostname"] = full_hostname(instance.hostname, dhcp_domain)
    md["name"] = instance.name
    md["launch_index"] = instance.launch_index
    md["availability_zone"] = instance.availability_zone
    if at_least(version, GRIZZLY):
        md["random_seed"] = random_seed
    if at_least(version, LIBERTY):
        md["project_id"] = instance.project_id
    if at_least(version, NEWTON_ONE):
        md["devices"] = devices(instance, version)
    if at_least(version, VICTORIA):
        md["dedicated_cpus"] = sorted(instance.dedicated_cpus)
    return md


def version_listing(version: str, has_user_data: bool) -> list[str]:
    """The files C{GET /openstack/<version>} lists, in Nova's fixed order."""
    listing = ["meta_data.json"]
    if has_user_data:
        listing.append("user_data")
    if at_least(version, GRIZZLY):
        listing.append("password")
    if at_least(version, HAVANA):
        listing.append("vendor_data.json")
    if at_least(version, LIBERTY):
        listing.append("network_data.json")
    if at_least(version, NEWTON_TWO):
        listing.append("vendor_data2.json")
    return listing


__all__ = ["meta_data", "devices", "version_listing", "at_least", "openstack_version", "RANDOM_SEED"]
