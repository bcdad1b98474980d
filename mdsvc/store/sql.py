# -*- test-case-name: tests.test_store_sql -*-
"""
mdsvc's own document store on a database server: C{[mdsvc] store} as an SQLAlchemy URL
(C{postgresql://mdsvc:PASSWORD@db/mdsvc}, C{mysql+pymysql://mdsvc:PASSWORD@db/mdsvc}), so that
several api nodes share one store.  The same documents, checks and assigned values as the
embedded SQLite store (L{mdsvc.store.sqlite}, whose rules this module reuses), through the same
SQLAlchemy layer as C{store = nova} (L{mdsvc.store.nova.database}: pooled, pre-pinged
connections, timeouts, L{StoreUnavailable} when the server is away).

Every import is one transaction: a reader on any node sees a document before or after it, never
half of it; EC2 numbers are handed out under a lock (a row of C{store_locks}), so two imports at
once never give one number twice.  The password is set with one conditional update.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import (
    Column,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    and_,
    delete,
    func,
    insert,
    inspect,
    or_,
    select,
    update,
)
from sqlalchemy.engine import Connection, Engine
from zope.interface import implementer

from mdsvc.hop import canonical_ip
from mdsvc.interfaces import IInstanceStoreFactory, StoreUnavailable
from mdsvc.model import DocumentError, Router, image_ids, instance_from_document, router_from_document
from mdsvc.schema import join
from mdsvc.store.nova.database import make_engine, read, shown, write
from mdsvc.store.sqlite import (
    _EC2_IMAGES,
    _EC2_INSTANCE,
    _PASSWORD,
    _ROUTER_ID,
    _UUID,
    SQLiteInstanceStore,
    StoredInstance,
    _assign_new,
    _keep_assigned,
    _keep_ec2_images,
    _kept_password,
)

T = TypeVar("T")

DOCUMENTS = MetaData()

instances = Table(
    "instances", DOCUMENTS,
    Column("uuid", String(255), primary_key=True),
    Column("document", Text, nullable=False),
    Column("project_id", String(255), index=True),
    Column("password", Text),
    Column("updated_at", String(64), nullable=False),
)
ports = Table(
    "ports", DOCUMENTS,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("uuid", String(255), nullable=False, index=True),
    Column("network_id", String(255)),
    Column("ip", String(64)),
    Column("mac", String(32)),
)
routers = Table(
    "routers", DOCUMENTS,
    Column("id", String(255), primary_key=True),
    Column("document", Text, nullable=False),
    Column("project_id", String(255)),
)
router_networks = Table(
    "router_networks", DOCUMENTS,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("router_id", String(255), nullable=False, index=True),
    Column("network_id", String(255), nullable=False),
)
ec2_instance_ids = Table(
    "ec2_instance_ids", DOCUMENTS,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("uuid", String(255), unique=True, nullable=False),
)
ec2_image_ids = Table(
    "ec2_image_ids", DOCUMENTS,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("image_uuid", String(255), unique=True, nullable=False),
)
store_locks = Table(
    "store_locks", DOCUMENTS,
    Column("name", String(64), primary_key=True),
)
"""One row per lock: writers that hand out EC2 numbers queue on the row C{numbering}."""

# the indexes of the lookups, named as in the SQLite schema
Index("ports_network_ip", ports.c.network_id, ports.c.ip)
Index("ports_network_mac", ports.c.network_id, ports.c.mac)
Index("ports_ip", ports.c.ip)

SERVER_KINDS = ("postgresql", "mysql", "mariadb")
"""The URL schemes (before any C{+driver}) of the stores this module serves."""


def is_sql_url(url: str) -> bool:
    """Whether C{[mdsvc] store} names a database server (not C{sqlite:PATH}, not C{nova})."""
    scheme = url.partition(":")[0]
    return scheme.split("+", 1)[0] in SERVER_KINDS and url[len(scheme):].startswith("://")


class SQLDocuments:
    """
    The document store on a database server: the methods of L{mdsvc.store.sqlite.SQLiteDocuments},
    blocking (mdsvc-manage calls them; the API, in threads).

    @ivar path: the URL, password masked (for messages).
    """

    def __init__(self, url: str, pool_size: int = 8, timeout: float = 5) -> None:
        self.url = url
        self.path = shown(url)
        self.engine: Engine = make_engine(url, pool_size, timeout)
        self._ready = False

    def _schema(self) -> None:
        """Create the tables on first use (a new database; every node may try, one wins)."""
        if not self._ready:
            def create(conn: Connection) -> None:
                DOCUMENTS.create_all(conn, checkfirst=True)

            def lock_row(conn: Connection) -> None:
                if conn.execute(select(store_locks.c.name).where(store_locks.c.name == "numbering")).first() is None:
                    conn.execute(insert(store_locks).values(name="numbering"))

            for attempt in range(10):
                try:
                    write(self.engine, create)
                    write(self.engine, lock_row)
                    break
                except StoreUnavailable:
                    # another node is making them at the same moment (MySQL's DDL is not
                    # transactional): once it is done, checkfirst finds everything there
                    if attempt == 9:
                        raise
                    time.sleep(0.2 * (attempt + 1))
            self._ready = True

    def _read(self, query: Callable[[Connection], T]) -> T:
        self._schema()
        return read(self.engine, query)

    def _write(self, change: Callable[[Connection], T]) -> T:
        self._schema()
        return write(self.engine, change)

    def close(self) -> None:
        """Close the pooled connections."""
        self.engine.dispose()

    def create(self) -> None:
        """Make the store's tables if they are not there (what an import does first, as on SQLite)."""
        self._schema()

    def exists(self) -> bool:
        """
        Whether the store's tables are there (an import has made them), found without making
        them: C{mdsvc-manage}'s commands other than C{import} create nothing.

        @raise StoreUnavailable: the server cannot be reached.
        """
        if self._ready:
            return True
        return bool(read(self.engine, lambda c: inspect(c).has_table(instances.name), single=True))

    # -- numbering ---------------------------------------------------------------------------

    def _lock_numbering(self, conn: Connection) -> None:
        """
        Hold the numbering lock to the end of the transaction: a row lock on one existing row,
        which queues writers on every server (a gap lock of InnoDB would let two writers in and
        deadlock them on their inserts).
        """
        conn.execute(select(store_locks.c.name).where(store_locks.c.name == "numbering").with_for_update())

    def _next_id(self, conn: Connection, table: Table) -> int:
        return int(conn.execute(select(func.coalesce(func.max(table.c.id), 0))).scalar_one()) + 1

    def _number_instance(self, conn: Connection, uuid: str, doc: dict[str, Any]) -> None:
        """The instance's EC2 number: the one it had, the one it gives, or a new one above every other."""
        table = ec2_instance_ids
        number = _EC2_INSTANCE.get(doc)
        if number is None:
            found = conn.execute(select(table.c.id).where(table.c.uuid == uuid)).scalar()
            if found is None:
                found = self._next_id(conn, table)
                conn.execute(insert(table).values(id=found, uuid=uuid))
            _EC2_INSTANCE.put(doc, int(found))
            return
        owner = conn.execute(select(table.c.uuid).where(table.c.id == number)).scalar()
        if owner is not None and owner != uuid:
            if conn.execute(select(instances.c.uuid).where(instances.c.uuid == owner)).first() is not None:
                raise DocumentError(_EC2_INSTANCE.path, f"{number} is already the EC2 id of instance {owner}")
            conn.execute(delete(table).where(table.c.id == number))
            owner = None
        if owner is None:
            conn.execute(delete(table).where(table.c.uuid == uuid))
            conn.execute(insert(table).values(id=number, uuid=uuid))

    def _number_images(self, conn: Connection, doc: dict[str, Any]) -> None:
        """Reserve the image numbers the document gives; number the images it names without one."""
        table = ec2_image_ids
        images = dict(_EC2_IMAGES.get(doc) or {})
        for image, number in images.items():
            taken = conn.execute(select(table.c.id).where(or_(table.c.id == number, table.c.image_uuid == image))).first()
            if taken is None:
                conn.execute(insert(table).values(id=number, image_uuid=image))
        for image in image_ids(doc):
            if image not in images:
                found = conn.execute(select(table.c.id).where(table.c.image_uuid == image)).scalar()
                if found is None:
                    found = self._next_id(conn, table)
                    conn.execute(insert(table).values(id=found, image_uuid=image))
                images[image] = int(found)
        _EC2_IMAGES.put(doc, images)

    # -- writes ------------------------------------------------------------------------------

    def import_instances(self, documents: Iterable[Any], reset_password: bool = False) -> list[str]:
        """See L{mdsvc.store.sqlite.SQLiteDocuments.import_instances}: validated, then one transaction."""
        docs = list(documents)
        seen: dict[str, dict[str, Any]] = {}
        for i, doc in enumerate(docs):
            where = f"[{i}]" if len(docs) > 1 else ""
            instance = instance_from_document(doc, where)
            if instance.uuid in seen:
                raise DocumentError(join(where, _UUID.path), f"{instance.uuid} appears twice in this import")
            seen[instance.uuid] = doc

        def change(conn: Connection) -> None:
            self._lock_numbering(conn)
            for uuid, doc in seen.items():
                self._write_instance(conn, uuid, dict(doc), reset_password)

        self._write(change)
        return list(seen)

    def _write_instance(self, conn: Connection, uuid: str, doc: dict[str, Any], reset_password: bool) -> None:
        old = conn.execute(select(instances.c.document, instances.c.password).where(instances.c.uuid == uuid)).first()
        old_doc = json.loads(old[0]) if old else {}
        password = _kept_password(_PASSWORD.pop(doc), old[1] if old else None, reset_password)
        _keep_assigned(doc, old_doc)
        _assign_new(doc)
        self._number_instance(conn, uuid, doc)
        _keep_ec2_images(doc, old_doc)
        self._number_images(conn, doc)
        full = dict(doc)
        _PASSWORD.put(full, password)
        instance = instance_from_document(full)
        values = {"document": json.dumps(doc, sort_keys=False), "project_id": instance.project_id, "password": password,
                  "updated_at": datetime.now(UTC).isoformat()}
        if old:
            conn.execute(update(instances).where(instances.c.uuid == uuid).values(**values))
        else:
            conn.execute(insert(instances).values(uuid=uuid, **values))
        conn.execute(delete(ports).where(ports.c.uuid == uuid))
        rows = []
        for nic in instance.nics:
            mac = nic.mac.lower() if nic.mac is not None else None  # (looked up in any case)
            if not nic.fixed_ips:
                rows.append({"uuid": uuid, "network_id": nic.network.id, "ip": None, "mac": mac})
            for fip in nic.fixed_ips:
                rows.append({"uuid": uuid, "network_id": nic.network.id, "ip": canonical_ip(fip.ip) or fip.ip, "mac": mac})
        if rows:
            conn.execute(insert(ports), rows)

    def delete_instance(self, uuid: str) -> bool:
        """Remove an instance (and its ports); True if it existed."""
        def change(conn: Connection) -> bool:
            conn.execute(delete(ports).where(ports.c.uuid == uuid))
            return bool(conn.execute(delete(instances).where(instances.c.uuid == uuid)).rowcount)

        return self._write(change)

    def import_routers(self, documents: Iterable[Any]) -> list[str]:
        """Validate every router document, then write them in one transaction."""
        docs = list(documents)
        found = [router_from_document(doc, f"[{i}]" if len(docs) > 1 else "") for i, doc in enumerate(docs)]
        seen: set[str] = set()
        for i, router in enumerate(found):
            if router.id in seen:
                raise DocumentError(join(f"[{i}]", _ROUTER_ID.path), f"{router.id} appears twice in this import")
            seen.add(router.id)

        def change(conn: Connection) -> None:
            for doc, router in zip(docs, found, strict=True):
                conn.execute(delete(router_networks).where(router_networks.c.router_id == router.id))
                conn.execute(delete(routers).where(routers.c.id == router.id))
                conn.execute(insert(routers).values(id=router.id, document=json.dumps(doc), project_id=router.project_id))
                if router.networks:
                    conn.execute(insert(router_networks), [{"router_id": router.id, "network_id": n} for n in router.networks])

        self._write(change)
        return [r.id for r in found]

    def delete_router(self, router_id: str) -> bool:
        """Remove a router; True if it existed."""
        def change(conn: Connection) -> bool:
            conn.execute(delete(router_networks).where(router_networks.c.router_id == router_id))
            return bool(conn.execute(delete(routers).where(routers.c.id == router_id)).rowcount)

        return self._write(change)

    def set_password(self, uuid: str, password: str) -> bool:
        """Compare-and-set the guest's password in one conditional update; KeyError if no instance."""
        def change(conn: Connection) -> bool:
            stored = conn.execute(
                update(instances).where(and_(instances.c.uuid == uuid, func.coalesce(instances.c.password, "") == ""))
                .values(password=password)
            )
            if stored.rowcount:
                return True
            if conn.execute(select(instances.c.uuid).where(instances.c.uuid == uuid)).first() is None:
                raise KeyError(uuid)
            return False

        return self._write(change)

    # -- reads -------------------------------------------------------------------------------

    def get(self, uuid: str) -> StoredInstance | None:
        """The stored row of one instance, or None."""
        row = self._read(lambda c: c.execute(select(instances.c.document, instances.c.password).where(instances.c.uuid == uuid)).first())
        return StoredInstance(json.loads(row[0]), row[1]) if row else None

    def uuids_by_address(self, ip: str) -> list[str]:
        """The instances that hold C{ip} as a fixed IP, in any network."""
        canonical = canonical_ip(ip)
        if canonical is None:
            return []
        query = select(ports.c.uuid).where(ports.c.ip == canonical).distinct().order_by(ports.c.uuid)
        return list(self._read(lambda c: c.execute(query).scalars().all()))

    def list_instances(self) -> list[tuple[str, str | None, str | None, list[str]]]:
        """(uuid, name, project_id, fixed IPs) for every instance, sorted by uuid."""
        from mdsvc.store.sqlite import _NAME

        def query(c: Connection) -> list[tuple[str, str | None, str | None, list[str]]]:
            ips: dict[str, list[str]] = {}
            for uuid, ip in c.execute(select(ports.c.uuid, ports.c.ip).where(ports.c.ip.is_not(None)).order_by(ports.c.id)):
                ips.setdefault(uuid, []).append(ip)
            rows = c.execute(select(instances.c.uuid, instances.c.document, instances.c.project_id).order_by(instances.c.uuid))
            return [(uuid, _NAME.get(json.loads(doc)), project, ips.get(uuid, [])) for uuid, doc, project in rows]

        return self._read(query)

    def list_routers(self) -> list[Router]:
        """Every router, sorted by id."""
        rows = self._read(lambda c: c.execute(select(routers.c.document).order_by(routers.c.id)).scalars().all())
        return [router_from_document(json.loads(r), strict=False) for r in rows]

    def router_document(self, router_id: str) -> dict[str, Any] | None:
        """The stored document of one router, or None."""
        row = self._read(lambda c: c.execute(select(routers.c.document).where(routers.c.id == router_id)).scalar())
        return dict(json.loads(row)) if row is not None else None

    def router_networks(self, router_id: str) -> list[str] | None:
        """The networks attached to a router, in document order; None if there is no such router."""
        def query(c: Connection) -> list[str] | None:
            if c.execute(select(routers.c.id).where(routers.c.id == router_id)).first() is None:
                return None
            found = c.execute(select(router_networks.c.network_id).where(router_networks.c.router_id == router_id)
                              .order_by(router_networks.c.id)).scalars().all()
            return list(dict.fromkeys(found))

        return self._read(query)

    def ports_by_network_ip(self, network_ids: Iterable[str], ip: str) -> list[tuple[str, str | None]]:
        """See L{mdsvc.store.sqlite.SQLiteDocuments.ports_by_network_ip}."""
        canonical = canonical_ip(ip)
        return self._ports_by(ports.c.ip, network_ids, canonical if canonical is not None else ip)

    def ports_by_network_mac(self, network_ids: Iterable[str], mac: str) -> list[tuple[str, str | None]]:
        """See L{mdsvc.store.sqlite.SQLiteDocuments.ports_by_network_mac}."""
        return self._ports_by(ports.c.mac, network_ids, mac.strip().lower())

    def _ports_by(self, column: Any, network_ids: Iterable[str], value: str) -> list[tuple[str, str | None]]:
        networks = list(dict.fromkeys(network_ids))
        if not networks:
            return []
        query = (select(ports.c.uuid, instances.c.project_id).join(instances, instances.c.uuid == ports.c.uuid)
                 .where(column == value, ports.c.network_id.in_(networks)).distinct().order_by(ports.c.uuid))
        return [(r[0], r[1]) for r in self._read(lambda c: c.execute(query).all())]


def check_sql_store(url: str, where: str) -> None:
    """
    Check that C{[mdsvc] store}'s database URL can be used (a driver is installed), without connecting.

    @param where: the option's file and line, for the message.
    @raise ValueError: one line naming them, the password masked.
    """
    try:
        make_engine(url, 1, 1).dispose()
    except ValueError as e:
        raise ValueError(f"{where}: {e}") from None


@implementer(IInstanceStoreFactory)
class SQLStoreFactory:
    """
    The built-in store of C{[mdsvc] store = postgresql://...} or C{mysql+pymysql://...} (see
    L{mdsvc.store.open_store}): one factory per URL scheme, whose C{name} is that scheme, so that
    the option's NAME:ARG split gives the URL back whole.
    """

    def __init__(self, scheme: str) -> None:
        self.name = scheme

    def open(self, argument: str, config: Any, reactor: Any) -> SQLiteInstanceStore:
        """See L{IInstanceStoreFactory.open}: the document store at the URL C{NAME:argument}, read in threads."""
        return SQLiteInstanceStore.in_threads(SQLDocuments(f"{self.name}:{argument}"), reactor)
