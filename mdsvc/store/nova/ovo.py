# -*- test-case-name: tests.test_nova_convert -*-
"""
Nova's serialised versioned objects in C{instance_extra}, read as the metadata API reads them.

Each column holds JSON of an oslo.versionedobjects primitive: C{{"nova_object.name": ...,
"nova_object.version": ..., "nova_object.data": {...}}}; a field that was never set is absent
from C{nova_object.data}, and Nova's C{'field' in obj} tests are tests of that presence.

  - C{flavor}: C{{"cur": Flavor, "old": ..., "new": ...}} (C{Instance._flavor_from_db});
  - C{keypairs}: a C{KeyPairList}; only the first key is ever shown;
  - C{device_metadata}: an C{InstanceDeviceMetadata} of C{NetworkInterfaceMetadata},
    C{DiskMetadata} and C{ShareMetadata}, each on a C{PCIDeviceBus}, C{USBDeviceBus},
    C{SCSIDeviceBus}, C{IDEDeviceBus} or C{XenDeviceBus} (another bus: the device is left out,
    as Nova leaves it out);
  - C{numa_topology}: an C{InstanceNUMATopology} whose cells' C{pcpuset} are the dedicated CPUs;
    cells older than 1.5 with the C{dedicated} policy kept them in C{cpuset}
    (C{_migrate_legacy_dedicated_instance_cpuset}); a pre-Liberty topology has none.

Anything unreadable is logged and left out, never an error for the guest.
"""

from __future__ import annotations

import json
from typing import Any

from twisted.logger import Logger

from mdsvc.model import Device, Flavor, KeyPair

log = Logger()

BUSES = {
    "PCIDeviceBus": "pci", "USBDeviceBus": "usb", "SCSIDeviceBus": "scsi", "IDEDeviceBus": "ide", "XenDeviceBus": "xen",
}
"""Nova's device bus classes and the names the metadata API gives them."""


def data(primitive: Any) -> dict[str, Any]:
    """The C{nova_object.data} of a primitive (C{{}} for anything else)."""
    if isinstance(primitive, dict):
        inner = primitive.get("nova_object.data")
        if isinstance(inner, dict):
            return inner
    return {}


def version(primitive: Any) -> tuple[int, ...]:
    """The C{nova_object.version} of a primitive as numbers (C{(0,)} if unknown)."""
    text = primitive.get("nova_object.version") if isinstance(primitive, dict) else None
    try:
        return tuple(int(part) for part in str(text).split("."))
    except ValueError:
        return (0,)


def loads(text: str | None, what: str, uuid: str) -> Any:
    """A JSON column, or None when empty or unreadable (logged)."""
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError as e:
        log.warn("instance {uuid}: {what} is not JSON ({error}); left out", uuid=uuid, what=what, error=str(e))
        return None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def flavor(text: str | None, uuid: str) -> Flavor | None:
    """The current flavor of C{instance_extra.flavor}, or None."""
    primitive = loads(text, "instance_extra.flavor", uuid)
    cur = data(primitive.get("cur")) if isinstance(primitive, dict) else {}
    if not isinstance(cur.get("name"), str):
        return None
    specs = cur.get("extra_specs")
    return Flavor(
        name=cur["name"], flavorid=cur.get("flavorid") if isinstance(cur.get("flavorid"), str) else None,
        memory_mb=_int(cur.get("memory_mb")), vcpus=_int(cur.get("vcpus")), root_gb=_int(cur.get("root_gb")),
        ephemeral_gb=_int(cur.get("ephemeral_gb")), swap=_int(cur.get("swap")),
        extra_specs={str(k): str(v) for k, v in specs.items()} if isinstance(specs, dict) else {},
    )


def keypairs(text: str | None, uuid: str) -> tuple[KeyPair, ...]:
    """The key pairs of C{instance_extra.keypairs}, in order (those without a name or key left out)."""
    primitive = loads(text, "instance_extra.keypairs", uuid)
    out = []
    for item in data(primitive).get("objects") or []:
        fields = data(item)
        name, key = fields.get("name"), fields.get("public_key")
        if isinstance(name, str) and isinstance(key, str):
            kind = fields.get("type")
            out.append(KeyPair(name=name, public_key=key, type=kind if isinstance(kind, str) else "ssh"))
    return tuple(out)


def _tags(fields: dict[str, Any]) -> tuple[str, ...]:
    tags = fields.get("tags")
    return tuple(str(t) for t in tags) if isinstance(tags, list) else ()


def _device(item: Any) -> Device | None:
    """One device of the metadata API's C{devices}, or None when Nova would leave it out."""
    fields = data(item)
    name = item.get("nova_object.name") if isinstance(item, dict) else None
    bus: str | None = "none"
    address: str | None = None
    if isinstance(fields.get("bus"), dict):
        bus = BUSES.get(str(fields["bus"].get("nova_object.name")))
        if bus is None:
            return None
        address = data(fields["bus"]).get("address")
    common: dict[str, Any] = {"bus": bus, "address": address if isinstance(address, str) else None, "tags": _tags(fields)}
    if name == "NetworkInterfaceMetadata":
        return Device(type="nic", mac=fields.get("mac"), vlan=_int(fields.get("vlan")),
                      vf_trusted=fields.get("vf_trusted") if isinstance(fields.get("vf_trusted"), bool) else None, **common)
    if name == "DiskMetadata":
        serial, path = fields.get("serial"), fields.get("path")
        return Device(type="disk", serial=serial if isinstance(serial, str) else None, path=path if isinstance(path, str) else None,
                      **common)
    if name == "ShareMetadata":
        share, tag = fields.get("share_id"), fields.get("tag")
        return Device(type="share", share_id=share if isinstance(share, str) else None, tag=tag if isinstance(tag, str) else None,
                      **common)
    return None


def devices(text: str | None, uuid: str) -> tuple[Device, ...]:
    """The tagged devices of C{instance_extra.device_metadata}, in order."""
    primitive = loads(text, "instance_extra.device_metadata", uuid)
    out = []
    for item in data(primitive).get("devices") or []:
        device = _device(item)
        if device is not None:
            out.append(device)
    return tuple(out)


def dedicated_cpus(text: str | None, uuid: str) -> tuple[int, ...]:
    """The guest CPUs pinned to host CPUs, sorted: the union of the NUMA cells' C{pcpuset}."""
    primitive = loads(text, "instance_extra.numa_topology", uuid)
    if not isinstance(primitive, dict) or "nova_object.name" not in primitive:
        return ()  # no topology, or a pre-Liberty one (Nova migrates it with no pinned CPUs)
    cpus: set[int] = set()
    for cell in data(primitive).get("cells") or []:
        fields = data(cell)
        pinned = {c for c in fields.get("pcpuset") or [] if isinstance(c, int)}
        cell_version = version(cell)
        if (1, 4) <= cell_version < (1, 5) and fields.get("cpu_policy") == "dedicated" and not pinned:
            pinned = {c for c in fields.get("cpuset") or [] if isinstance(c, int)}
        cpus |= pinned
    return tuple(sorted(cpus))
