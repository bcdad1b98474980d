# -*- test-case-name: tests.test_nova_convert -*-
"""
One instance's rows of Nova's cell database (L{InstanceRows}) and its ports' security groups
(from Neutron) as mdsvc's L{Instance}, which the renderer serves as Nova's metadata API would.

Where Nova's own object is loose (a column that may be NULL), the value the renderer can show
is chosen: no display name is the empty name, no hostname the sanitised display name.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any

import attrs

from mdsvc.model import BlockDevice, Instance, Nic, sanitize_hostname
from mdsvc.store.nova import netinfo, ovo
from mdsvc.store.nova.rows import InstanceRows

PASSWORD_PREFIX = "password_"


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def password(system_metadata: Mapping[str, str | None]) -> str | None:
    """Nova's C{password.extract_password}: the C{password_*} values by sorted key; C{""} is none."""
    joined = "".join(system_metadata[key] or "" for key in sorted(system_metadata) if key.startswith(PASSWORD_PREFIX))
    return joined or None


def user_data(text: str | None) -> bytes | None:
    """The user data Nova stores base64-encoded, decoded (None for none or undecodable text)."""
    if text is None:
        return None
    try:
        return base64.b64decode(text.encode("ascii"))
    except (binascii.Error, UnicodeEncodeError, ValueError):
        ovo.log.warn("user data is not base64; left out")
        return None


def block_device(row: Mapping[str, Any]) -> BlockDevice:
    """One C{block_device_mapping} row."""
    return BlockDevice(
        source_type=_text(row.get("source_type")), destination_type=_text(row.get("destination_type")),
        device_name=_text(row.get("device_name")), guest_format=_text(row.get("guest_format")),
        boot_index=row.get("boot_index"), volume_id=_text(row.get("volume_id")), volume_size=row.get("volume_size"),
        image_id=_text(row.get("image_id")), snapshot_id=_text(row.get("snapshot_id")), tag=_text(row.get("tag")),
        delete_on_termination=row.get("delete_on_termination"), disk_bus=_text(row.get("disk_bus")),
        device_type=_text(row.get("device_type")),
    )


def with_security_groups(nics: tuple[Nic, ...], groups: Mapping[str, list[str]]) -> tuple[Nic, ...]:
    """
    Each port with the names of its security groups in Neutron (C{groups}: port id to names, in
    the port's order); a port Neutron does not know has none.
    """
    return tuple(attrs.evolve(nic, security_groups=tuple(groups.get(nic.port_id or "", ()))) for nic in nics)


def instance(rows: InstanceRows, groups: Mapping[str, list[str]]) -> Instance:
    """
    The L{Instance} of C{rows}.

    @param groups: the security group names of each of the instance's ports in Neutron, by
        port id.
    """
    row = rows.instance
    uuid = str(row["uuid"])
    extra = rows.extra
    system_metadata = dict(rows.system_metadata)
    name = _text(row.get("display_name")) or ""
    key_name = _text(row.get("key_name"))
    image = _text(row.get("image_ref")) or ""
    kernel = _text(row.get("kernel_id")) or None
    ramdisk = _text(row.get("ramdisk_id")) or None
    return Instance(
        uuid=uuid,
        name=name,
        hostname=_text(row.get("hostname")) or sanitize_hostname(name, f"Server-{uuid}"),
        project_id=_text(row.get("project_id")),
        user_id=_text(row.get("user_id")),
        availability_zone=_text(row.get("availability_zone")),
        launch_index=row.get("launch_index") or 0,
        reservation_id=_text(row.get("reservation_id")),
        created_at=row["created_at"].strftime("%Y-%m-%dT%H:%M:%SZ") if row.get("created_at") is not None else None,
        flavor=ovo.flavor(extra.get("flavor"), uuid),
        image_id=image,
        kernel_id=kernel,
        ramdisk_id=ramdisk,
        ec2_instance_id=rows.ec2_instance_id,
        ec2_image_ids=dict(rows.ec2_image_ids),
        root_device_name=_text(row.get("root_device_name")),
        default_ephemeral_device=_text(row.get("default_ephemeral_device")),
        default_swap_device=_text(row.get("default_swap_device")),
        block_device_mappings=tuple(block_device(b) for b in rows.block_devices),
        # the instance's key is shown only while it has a key name (Nova's key_name test)
        key_pairs=ovo.keypairs(extra.get("keypairs"), uuid) if key_name else (),
        user_data=user_data(_text(row.get("user_data"))),
        metadata={str(k): v if v is not None else "" for k, v in rows.metadata},
        system_metadata={str(k): v if v is not None else "" for k, v in system_metadata.items()},
        password=password(system_metadata),
        security_groups=(),
        nics=with_security_groups(netinfo.nics(rows.network_info, uuid), groups),
        device_metadata=ovo.devices(extra.get("device_metadata"), uuid),
        dedicated_cpus=ovo.dedicated_cpus(extra.get("numa_topology"), uuid),
    )
