# -*- test-case-name: tests.test_nova_store -*-
"""
The columns of Nova's databases that the metadata API reads, declared as in Nova 34.0.0's
models (C{nova/db/main/models.py}, C{nova/db/api/models.py}); only those columns, so a later
Nova that adds columns is read as it is.

The main (cell) database: C{instances} and what hangs off them.  The API database: the instance
to cell mapping.  Every soft-deleting table has Nova's C{deleted} column: 0 for a live row, the
row's own C{id} once deleted.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Boolean, Column, DateTime, Integer, MetaData, String, Table, Text

MAIN = MetaData()
"""A cell database (C{[database] connection}, or a cell mapping's C{database_connection})."""

API = MetaData()
"""The API database (C{[api_database] connection})."""


def _soft_delete() -> list[Column[Any]]:
    """The columns of Nova's C{NovaBase} and C{SoftDeleteMixin}."""
    return [Column("created_at", DateTime), Column("updated_at", DateTime), Column("deleted_at", DateTime),
            Column("deleted", Integer)]


instances = Table(
    "instances", MAIN,
    Column("id", Integer, primary_key=True),
    Column("uuid", String(36), nullable=False),
    Column("user_id", String(255)),
    Column("project_id", String(255)),
    Column("image_ref", String(255)),
    Column("kernel_id", String(255)),
    Column("ramdisk_id", String(255)),
    Column("hostname", String(255)),
    Column("launch_index", Integer),
    Column("key_name", String(255)),
    Column("key_data", Text),
    Column("user_data", Text),
    Column("reservation_id", String(255)),
    Column("availability_zone", String(255)),
    Column("display_name", String(255)),
    Column("root_device_name", String(255)),
    Column("default_ephemeral_device", String(255)),
    Column("default_swap_device", String(255)),
    *_soft_delete(),
)

instance_extra = Table(
    "instance_extra", MAIN,
    Column("id", Integer, primary_key=True),
    Column("instance_uuid", String(36), nullable=False),
    Column("device_metadata", Text),
    Column("numa_topology", Text),
    Column("flavor", Text),
    Column("keypairs", Text),
    *_soft_delete(),
)

instance_info_caches = Table(
    "instance_info_caches", MAIN,
    Column("id", Integer, primary_key=True),
    Column("instance_uuid", String(36), nullable=False),
    Column("network_info", Text),
    *_soft_delete(),
)

instance_metadata = Table(
    "instance_metadata", MAIN,
    Column("id", Integer, primary_key=True),
    Column("instance_uuid", String(36)),
    Column("key", String(255)),
    Column("value", String(255)),
    *_soft_delete(),
)

instance_system_metadata = Table(
    "instance_system_metadata", MAIN,
    Column("id", Integer, primary_key=True),
    Column("instance_uuid", String(36), nullable=False),
    Column("key", String(255), nullable=False),
    Column("value", String(255)),
    *_soft_delete(),
)

block_device_mapping = Table(
    "block_device_mapping", MAIN,
    Column("id", Integer, primary_key=True),
    Column("instance_uuid", String(36)),
    Column("source_type", String(255)),
    Column("destination_type", String(255)),
    Column("guest_format", String(255)),
    Column("device_type", String(255)),
    Column("disk_bus", String(255)),
    Column("boot_index", Integer),
    Column("device_name", String(255)),
    Column("delete_on_termination", Boolean),
    Column("snapshot_id", String(36)),
    Column("volume_id", String(36)),
    Column("volume_size", Integer),
    Column("image_id", String(36)),
    Column("tag", String(255)),
    *_soft_delete(),
)

instance_id_mappings = Table(
    "instance_id_mappings", MAIN,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("uuid", String(36), nullable=False),
    *_soft_delete(),
)

s3_images = Table(
    "s3_images", MAIN,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("uuid", String(36), nullable=False),
    *_soft_delete(),
)

cell_mappings = Table(
    "cell_mappings", API,
    Column("id", Integer, primary_key=True),
    Column("uuid", String(36), nullable=False),
    Column("name", String(255)),
    Column("database_connection", Text),
)

instance_mappings = Table(
    "instance_mappings", API,
    Column("id", Integer, primary_key=True),
    Column("instance_uuid", String(36), nullable=False),
    Column("cell_id", Integer),
    Column("project_id", String(255)),
)
