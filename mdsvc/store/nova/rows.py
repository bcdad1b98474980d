# -*- test-case-name: tests.test_nova_store -*-
"""
The rows of one instance in its cell database: what C{objects.Instance.get_by_uuid} loads for
the metadata API (C{ec2_ids, flavor, info_cache, metadata, system_metadata, keypairs,
device_metadata, numa_topology}) and what C{InstanceMetadata} reads besides (its block device
mappings), with Nova's filters and order:

  - C{instances}: the live row (C{deleted = 0}) of the uuid, lowest C{id} first, joined with
  - C{instance_extra}, C{instance_info_caches}: the instance's row (Nova joins them without a
    C{deleted} filter);
  - C{instance_metadata}: live rows, in C{id} order (a dict built in row order);
  - C{instance_system_metadata}: every row, deleted ones too (C{utils.instance_sys_meta} reads
    them with C{include_deleted=True}), in C{id} order;
  - C{block_device_mapping}: live rows, in C{id} order;
  - C{instance_id_mappings}, C{s3_images}: the first row (lowest C{id}, deleted or not) of the
    instance's and of each image's uuid; Nova makes a missing one on first read
    (C{get_int_id_from_instance_uuid}, C{glance_id_to_id}), and so does L{ensure_ec2_ids}.

Three queries per instance: the instance row with its 1:1 rows and EC2 numbers, its metadata and
system metadata together, its block devices.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from attrs import frozen
from sqlalchemy import Table, bindparam, func, insert, literal, select, union_all
from sqlalchemy.engine import Connection

from mdsvc.store.nova.tables import (
    block_device_mapping,
    instance_extra,
    instance_id_mappings,
    instance_info_caches,
    instance_metadata,
    instance_system_metadata,
    instances,
    s3_images,
)


@frozen
class InstanceRows:
    """Everything read of one instance; JSON columns as their text."""

    instance: dict[str, Any]
    extra: dict[str, Any]
    network_info: str | None
    metadata: list[tuple[str, str | None]]
    system_metadata: list[tuple[str, str | None]]
    block_devices: list[dict[str, Any]]
    ec2_instance_id: int | None
    ec2_image_ids: dict[str, int]

    def image_uuids(self) -> list[str]:
        """The Glance images the instance names (image, kernel, ramdisk), which have EC2 ids."""
        return [u for u in (self.instance.get("image_ref"), self.instance.get("kernel_id"), self.instance.get("ramdisk_id")) if u]


def _first_ids(conn: Connection, table: Table, uuids: list[str]) -> dict[str, int]:
    """The lowest id of each uuid in C{instance_id_mappings} or C{s3_images}, deleted rows too."""
    if not uuids:
        return {}
    query = select(table.c.uuid, func.min(table.c.id)).where(table.c.uuid.in_(uuids)).group_by(table.c.uuid)
    return {row[0]: int(row[1]) for row in conn.execute(query)}


def _first_id(table: Table, uuid: Any) -> Any:
    """The lowest id of C{uuid} in C{table}, as a scalar subquery."""
    return select(func.min(table.c.id)).where(table.c.uuid == uuid).scalar_subquery()


_EXTRA = (instance_extra.c.flavor, instance_extra.c.keypairs, instance_extra.c.device_metadata, instance_extra.c.numa_topology)

# One row per instance: the instance, its extra and info cache rows (Nova joins them too), and its
# EC2 numbers, so that a cache miss costs three queries, not nine.
_INSTANCE = (
    select(
        instances, *_EXTRA, instance_info_caches.c.network_info,
        _first_id(instance_id_mappings, instances.c.uuid).label("ec2_instance"),
        _first_id(s3_images, instances.c.image_ref).label("ec2_image"),
        _first_id(s3_images, instances.c.kernel_id).label("ec2_kernel"),
        _first_id(s3_images, instances.c.ramdisk_id).label("ec2_ramdisk"),
    )
    .select_from(
        instances
        .outerjoin(instance_extra, instance_extra.c.instance_uuid == instances.c.uuid)
        .outerjoin(instance_info_caches, instance_info_caches.c.instance_uuid == instances.c.uuid)
    )
    .where(instances.c.uuid == bindparam("uuid"), instances.c.deleted == 0)
    .order_by(instances.c.id, instance_extra.c.id, instance_info_caches.c.id)
    .limit(1)
)

# The instance's live metadata, then all its system metadata, each in row order.
_METADATA = union_all(
    select(literal(0).label("kind"), instance_metadata.c.id, instance_metadata.c.key, instance_metadata.c.value)
    .where(instance_metadata.c.instance_uuid == bindparam("uuid"), instance_metadata.c.deleted == 0),
    select(literal(1).label("kind"), instance_system_metadata.c.id, instance_system_metadata.c.key, instance_system_metadata.c.value)
    .where(instance_system_metadata.c.instance_uuid == bindparam("uuid")),
).order_by("kind", "id")

_BLOCK_DEVICES = (
    select(block_device_mapping)
    .where(block_device_mapping.c.instance_uuid == bindparam("uuid"), block_device_mapping.c.deleted == 0)
    .order_by(block_device_mapping.c.id)
)

_INSTANCE_COLUMNS = frozenset(c.name for c in instances.columns)


def read_instance(conn: Connection, uuid: str) -> InstanceRows | None:
    """The rows of the live instance C{uuid}, or None (no such instance, or deleted)."""
    row = conn.execute(_INSTANCE, {"uuid": uuid}).mappings().first()
    if row is None:
        return None
    meta = conn.execute(_METADATA, {"uuid": uuid}).all()
    bdms = conn.execute(_BLOCK_DEVICES, {"uuid": uuid}).mappings().all()
    instance = {k: v for k, v in row.items() if k in _INSTANCE_COLUMNS}
    images = {}
    for column, label in (("image_ref", "ec2_image"), ("kernel_id", "ec2_kernel"), ("ramdisk_id", "ec2_ramdisk")):
        if instance.get(column) and row[label] is not None:
            images[instance[column]] = int(row[label])
    return InstanceRows(
        instance=instance,
        extra={c.name: row[c.name] for c in _EXTRA},
        network_info=row["network_info"],
        metadata=[(r.key, r.value) for r in meta if r.kind == 0],
        system_metadata=[(r.key, r.value) for r in meta if r.kind == 1],
        block_devices=[dict(b) for b in bdms],
        ec2_instance_id=int(row["ec2_instance"]) if row["ec2_instance"] is not None else None,
        ec2_image_ids=images,
    )


def missing_ec2_ids(rows: InstanceRows) -> tuple[bool, list[str]]:
    """Whether the instance lacks its EC2 number, and the images that lack theirs."""
    return rows.ec2_instance_id is None, [u for u in dict.fromkeys(rows.image_uuids()) if u not in rows.ec2_image_ids]


def ensure_ec2_ids(conn: Connection, uuid: str, instance: bool, images: list[str]) -> tuple[int | None, dict[str, int]]:
    """
    Give the instance (when C{instance}) and each of C{images} an EC2 number, as Nova does on
    first read: a new row in C{instance_id_mappings} / C{s3_images}.  Of rows two API nodes
    made at once, both then use the first (the lowest id), as Nova reads them.

    @return: the instance's number (None when not asked for) and the images' numbers.
    """
    now = datetime.now(UTC).replace(tzinfo=None, microsecond=0)
    if instance and not _first_ids(conn, instance_id_mappings, [uuid]):
        conn.execute(insert(instance_id_mappings).values(uuid=uuid, created_at=now, deleted=0))
    have = _first_ids(conn, s3_images, images)
    for image in images:
        if image not in have:
            conn.execute(insert(s3_images).values(uuid=image, created_at=now, deleted=0))
    number = _first_ids(conn, instance_id_mappings, [uuid]).get(uuid) if instance else None
    return number, _first_ids(conn, s3_images, images)
