# -*- test-case-name: tests.test_nova_store -*-
"""
The password endpoint's write, as Nova's C{nova.api.metadata.password} makes it, so that Nova
and mdsvc serve one cloud side by side: the password in four chunks of 255 characters,
C{password_0} to C{password_3} of C{instance_system_metadata} (missing chunks empty), each
chunk's row updated where it exists and inserted where not, as C{Instance.save()} does.

Unlike Nova, which checks "already set" against its cached copy and so takes a second POST
within its cache time, the write-once rule is kept in the database, in one short transaction:

  1. C{SELECT ... FOR UPDATE} of the live instance row: writers of one instance queue there
     (none found: the instance is gone);
  2. the instance's C{password_*} rows are read; any non-empty one: a password is set, nothing
     is written;
  3. each chunk is written with a conditional update (C{WHERE id = ... AND value = <what was
     read>}) or an insert; an update that finds its row changed (another writer, Nova
     included, got there first) rolls everything back: the password was set meanwhile.

On Galera the row lock is local to a node, but the conditional updates and the certification
of the transaction are not: two nodes writing at once cannot both commit.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import and_, insert, select, update
from sqlalchemy.engine import Connection

from mdsvc.store.nova.tables import instance_system_metadata, instances

CHUNKS = 4
CHUNK_LENGTH = 255
MAX_SIZE = CHUNKS * CHUNK_LENGTH


def chunks(password: str) -> dict[str, str]:
    """Nova's C{convert_password}: C{password_0} .. C{password_3}, 255 characters each at most."""
    out = {}
    for i in range(CHUNKS):
        out[f"password_{i}"] = password[:CHUNK_LENGTH]
        password = password[CHUNK_LENGTH:]
    return out


class PasswordRace(Exception):
    """Another writer set the password between the read and the write: the transaction is rolled back."""


def set_password(conn: Connection, uuid: str, password: str) -> bool:
    """
    Store C{password} for the live instance C{uuid} if it has none (run in a transaction).

    @return: True if stored, False if a password was set already.
    @raise KeyError: there is no such live instance.
    @raise PasswordRace: another writer changed a chunk meanwhile (a password was set).
    """
    found = conn.execute(
        select(instances.c.id).where(instances.c.uuid == uuid, instances.c.deleted == 0).with_for_update()
    ).first()
    if found is None:
        raise KeyError(uuid)
    table = instance_system_metadata
    rows = conn.execute(
        select(table.c.id, table.c.key, table.c.value)
        .where(table.c.instance_uuid == uuid, table.c.key.like("password\\_%", escape="\\"))
        .order_by(table.c.id)
    ).all()
    if any(row.value for row in rows):
        return False
    now = datetime.now(UTC).replace(tzinfo=None, microsecond=0)
    by_key: dict[str, Any] = {}
    for row in rows:
        by_key.setdefault(row.key, row)  # the first row of a key, as Nova updates it
    for key, chunk in chunks(password).items():
        found = by_key.get(key)
        if found is None:
            conn.execute(insert(table).values(instance_uuid=uuid, key=key, value=chunk, created_at=now, deleted=0))
            continue
        old = found.value
        same = table.c.value.is_(None) if old is None else table.c.value == old
        changed = conn.execute(update(table).where(and_(table.c.id == found.id, same)).values(value=chunk, updated_at=now))
        if changed.rowcount != 1:
            raise PasswordRace(uuid)
    return True

