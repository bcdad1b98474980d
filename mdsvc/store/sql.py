# -*- test-case-name: tests.test_store_sql -*-
"""
mdsvc's own document store, on SQLAlchemy Core: C{[mdsvc] store = sqlite:PATH}, the embedded
default (one file, L{mdsvc.store.embedded}), or a database server's URL
(C{postgresql://mdsvc:PASSWORD@db/mdsvc}, C{mysql+pymysql://mdsvc:PASSWORD@db/mdsvc}) that
several api nodes share (L{mdsvc.store.nova.database}: pooled, pre-pinged connections, timeouts,
L{StoreUnavailable} when the server is away).  One set of tables, one implementation of the
rules (L{mdsvc.store.rules}).

Every import is one transaction: a reader on any node sees a document before or after it, never
half of it; EC2 numbers are handed out under a lock (on a server, a row of C{store_locks}; in
the file, SQLite's write lock, taken at C{BEGIN IMMEDIATE}), so two imports at once never give
one number twice.  The password is set with one conditional update.

Store files written by mdsvc before this module (on Python's C{sqlite3} directly) have the same
tables and columns but for C{ports.id} and C{router_networks.id}; SQLite's C{rowid} is that id
where the column exists, so in the file rows are ordered by C{rowid} and an old file is read
and written as it is, never migrated.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import (
    Column,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    and_,
    bindparam,
    delete,
    func,
    insert,
    inspect,
    literal_column,
    or_,
    select,
    update,
)
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.schema import CreateIndex, CreateTable
from zope.interface import implementer

from mdsvc.hop import canonical_ip
from mdsvc.interfaces import IInstanceStoreFactory, StoreUnavailable
from mdsvc.model import DocumentError, Router, image_ids, instance_from_document, router_from_document
from mdsvc.schema import join
from mdsvc.store import embedded
from mdsvc.store.nova.database import make_engine, read, shown, write
from mdsvc.store.rules import (
    EC2_IMAGES,
    EC2_INSTANCE,
    NAME,
    PASSWORD,
    ROUTER_ID,
    UUID,
    StoredInstance,
    assign_new,
    keep_assigned,
    keep_ec2_images,
    kept_password,
)

if TYPE_CHECKING:
    from mdsvc.store.threaded import DocumentStore

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
"""One row per lock: writers that hand out EC2 numbers queue on the row C{numbering} (servers only)."""

# the indexes of the lookups, named as in the SQLite schema
Index("ports_network_ip", ports.c.network_id, ports.c.ip)
Index("ports_network_mac", ports.c.network_id, ports.c.mac)
Index("ports_ip", ports.c.ip)

# The statements of an API cache miss (a boot storm's), made once: on a server SQLAlchemy's
# compiled cache finds them without building a statement per call; in the file they run
# compiled, straight through the driver (embedded.Select).
_GET = select(instances.c.document, instances.c.password).where(instances.c.uuid == bindparam("uuid"))
_BY_ADDRESS = select(ports.c.uuid).where(ports.c.ip == bindparam("ip")).distinct().order_by(ports.c.uuid)
_ROWS_BY_ADDRESS = (select(instances.c.uuid, instances.c.document, instances.c.password)
                    .where(instances.c.uuid.in_(select(ports.c.uuid).where(ports.c.ip == bindparam("ip"))))
                    .order_by(instances.c.uuid))

# An import's statements, made once too (building a statement costs more than running it in the file).
_INSTANCE_NUMBER = select(ec2_instance_ids.c.id).where(ec2_instance_ids.c.uuid == bindparam("uuid"))
_IMAGE_NUMBER = select(ec2_image_ids.c.id).where(ec2_image_ids.c.image_uuid == bindparam("image"))
_LAST_NUMBER = {table.name: select(func.coalesce(func.max(table.c.id), 0)) for table in (ec2_instance_ids, ec2_image_ids)}
_UPDATE_INSTANCE = update(instances).where(instances.c.uuid == bindparam("b_uuid"))
_DELETE_PORTS = delete(ports).where(ports.c.uuid == bindparam("uuid"))

SERVER_KINDS = ("postgresql", "mysql", "mariadb")
"""The URL schemes (before any C{+driver}) of the database servers this store runs on (besides C{sqlite:PATH})."""


def is_sql_url(url: str) -> bool:
    """Whether C{[mdsvc] store} names a database server (not C{sqlite:PATH}, not C{nova})."""
    scheme = url.partition(":")[0]
    return scheme.split("+", 1)[0] in SERVER_KINDS and url[len(scheme):].startswith("://")


class SQLDocuments:
    """
    mdsvc's document store: blocking calls (C{mdsvc-manage} makes them; the API, in threads),
    each one transaction, on the store C{url} names.

    @param url: C{sqlite:PATH} (the embedded file) or a database server's URL.
    @param pool_size: connections kept (on a server, at most so many; in the file, more are
        opened when more calls come at once: L{embedded.sqlite_engine}).
    @param timeout: a server's connect, pool and statement timeout (the file's lock timeout is
        L{embedded.BUSY_TIMEOUT}).
    @ivar path: the file's path, or the server's URL with its password masked (for messages).
    @ivar embedded: whether the store is the SQLite file.
    """

    def __init__(self, url: str, pool_size: int | None = None, timeout: float = 5) -> None:
        self.url = url
        self.embedded = url.startswith("sqlite:")
        self.engine: Engine
        if self.embedded:
            self.path = url[len("sqlite:"):]
            if not self.path:
                raise ValueError("store = sqlite:PATH needs a file path")
            self.engine = embedded.sqlite_engine(self.path, pool_size or embedded.POOL_SIZE)
            self._reader, self._writer = embedded.read, embedded.write
        else:
            self.path = shown(url)
            self.engine = make_engine(url, pool_size or 8, timeout)
            self._reader, self._writer = read, write
        # a miss's reads, straight through the file's driver (on a server: SQLAlchemy's execution)
        self._selects = {s: embedded.Select(self.engine, s) for s in (_GET, _BY_ADDRESS, _ROWS_BY_ADDRESS)} if self.embedded else {}
        # the rowid is the id column in the file, and the only one in files of older mdsvc
        self._port_order = literal_column("rowid") if self.embedded else ports.c.id
        self._network_order = literal_column("rowid") if self.embedded else router_networks.c.id
        # the file needs no lock table (SQLite's write lock serves): an old file stays as it was
        self._tables = [t for t in DOCUMENTS.sorted_tables if not (self.embedded and t is store_locks)]
        self._ready = False

    def _schema(self) -> None:
        """Create the tables on first use (a new database; every node or process may try, one wins)."""
        if not self._ready:
            def create(conn: Connection) -> None:
                # (not create_all: it makes a table's indexes in the order of a set, and so a new
                # file's pages in another order each time)
                existing = set(inspect(conn).get_table_names())
                for table in self._tables:
                    if table.name not in existing:
                        conn.execute(CreateTable(table))
                        for index in sorted(table.indexes, key=lambda index: str(index.name)):
                            conn.execute(CreateIndex(index))

            def lock_row(conn: Connection) -> None:
                if conn.execute(select(store_locks.c.name).where(store_locks.c.name == "numbering")).first() is None:
                    conn.execute(insert(store_locks).values(name="numbering"))

            if self.embedded:
                embedded.create_file(self.path)
                # a store that has its tables is only read (no write lock taken, a read-only file
                # read); a new one is made in one write transaction (SQLite's DDL is transactional)
                existing = embedded.read(self.engine, lambda c: set(inspect(c).get_table_names()))
                if any(table.name not in existing for table in self._tables):
                    embedded.write(self.engine, create)
            else:
                for attempt in range(10):
                    try:
                        write(self.engine, create)
                        write(self.engine, lock_row)
                        break
                    except StoreUnavailable:
                        # another node is making them at the same moment (MySQL's DDL is not
                        # transactional): once it is done, the next attempt finds every table there
                        if attempt == 9:
                            raise
                        time.sleep(0.2 * (attempt + 1))
            self._ready = True

    def _select(self, statement: Any, **params: Any) -> list[Any]:
        """The rows of one of the statements made once (L{_GET}, L{_BY_ADDRESS}, ...), with C{params}."""
        self._schema()
        fast = self._selects.get(statement)
        if fast is not None:
            return fast.rows(**params)
        return list(read(self.engine, lambda c: c.execute(statement, params).all(), single=True))

    def _read(self, query: Callable[[Connection], T]) -> T:
        self._schema()
        return self._reader(self.engine, query)

    def _write(self, change: Callable[[Connection], T]) -> T:
        self._schema()
        return self._writer(self.engine, change)

    def close(self) -> None:
        """Close the pooled connections (a later call opens new ones)."""
        self.engine.dispose()

    def create(self) -> None:
        """Make the store (the file, its tables) if it is not there: what an import does first."""
        self._schema()

    def exists(self) -> bool:
        """
        Whether the store is there (an import has made it: the file; a server's tables), found
        without making it: C{mdsvc-manage}'s commands other than C{import} create nothing.

        @raise StoreUnavailable: the server cannot be reached.
        """
        if self._ready:
            return True
        if self.embedded:
            return os.path.exists(self.path)
        return bool(read(self.engine, lambda c: inspect(c).has_table(instances.name), single=True))

    # -- numbering ---------------------------------------------------------------------------

    def _lock_numbering(self, conn: Connection) -> None:
        """
        Hold the numbering lock to the end of the transaction: on a server a row lock on one
        existing row, which queues writers on every server (a gap lock of InnoDB would let two
        writers in and deadlock them on their inserts); in the file the transaction holds
        SQLite's write lock already.
        """
        if self.embedded:
            return
        conn.execute(select(store_locks.c.name).where(store_locks.c.name == "numbering").with_for_update())

    def _next_id(self, conn: Connection, table: Table) -> int:
        return int(conn.execute(_LAST_NUMBER[table.name]).scalar_one()) + 1

    def _number_instance(self, conn: Connection, uuid: str, doc: dict[str, Any]) -> None:
        """The instance's EC2 number: the one it had, the one it gives, or a new one above every other."""
        table = ec2_instance_ids
        number = EC2_INSTANCE.get(doc)
        if number is None:
            found = conn.execute(_INSTANCE_NUMBER, {"uuid": uuid}).scalar()
            if found is None:
                found = self._next_id(conn, table)
                conn.execute(insert(table), {"id": found, "uuid": uuid})
            EC2_INSTANCE.put(doc, int(found))
            return
        owner = conn.execute(select(table.c.uuid).where(table.c.id == number)).scalar()
        if owner is not None and owner != uuid:
            if conn.execute(select(instances.c.uuid).where(instances.c.uuid == owner)).first() is not None:
                raise DocumentError(EC2_INSTANCE.path, f"{number} is already the EC2 id of instance {owner}")
            conn.execute(delete(table).where(table.c.id == number))
            owner = None
        if owner is None:
            conn.execute(delete(table).where(table.c.uuid == uuid))
            conn.execute(insert(table).values(id=number, uuid=uuid))

    def _number_images(self, conn: Connection, doc: dict[str, Any]) -> None:
        """Reserve the image numbers the document gives; number the images it names without one."""
        table = ec2_image_ids
        images = dict(EC2_IMAGES.get(doc) or {})
        for image, number in images.items():
            taken = conn.execute(select(table.c.id).where(or_(table.c.id == number, table.c.image_uuid == image))).first()
            if taken is None:
                conn.execute(insert(table).values(id=number, image_uuid=image))
        for image in image_ids(doc):
            if image not in images:
                found = conn.execute(_IMAGE_NUMBER, {"image": image}).scalar()
                if found is None:
                    found = self._next_id(conn, table)
                    conn.execute(insert(table), {"id": found, "image_uuid": image})
                images[image] = int(found)
        EC2_IMAGES.put(doc, images)

    # -- writes ------------------------------------------------------------------------------

    def import_instances(self, documents: Iterable[Any], reset_password: bool = False) -> list[str]:
        """
        Validate every document first, then write them all in one transaction.

        Fields the store assigns (those declared C{assigned}: EC2 ids, reservation id, creation
        time) are kept across re-imports.  So is a stored password (the guest made it up and
        posted it, encrypted with the instance's public key: nobody can make it again): a
        document's C{password} is stored only for an instance that has none, and C{null} or no
        C{password} never clear one.

        @param reset_password: replace the stored passwords of these instances with their
            documents' (none when a document gives none), so that their guests may post again.
        @raise DocumentError: naming the first bad field; nothing is written then.
        @return: the uuids imported.
        """
        docs = list(documents)
        seen: dict[str, dict[str, Any]] = {}
        for i, doc in enumerate(docs):
            where = f"[{i}]" if len(docs) > 1 else ""
            instance = instance_from_document(doc, where)
            if instance.uuid in seen:
                raise DocumentError(join(where, UUID.path), f"{instance.uuid} appears twice in this import")
            seen[instance.uuid] = doc

        def change(conn: Connection) -> None:
            self._lock_numbering(conn)
            for uuid, doc in seen.items():
                self._write_instance(conn, uuid, dict(doc), reset_password)

        self._write(change)
        return list(seen)

    def _write_instance(self, conn: Connection, uuid: str, doc: dict[str, Any], reset_password: bool) -> None:
        old = conn.execute(_GET, {"uuid": uuid}).first()
        old_doc = json.loads(old[0]) if old else {}
        password = kept_password(PASSWORD.pop(doc), old[1] if old else None, reset_password)
        keep_assigned(doc, old_doc)
        assign_new(doc)
        self._number_instance(conn, uuid, doc)
        keep_ec2_images(doc, old_doc)
        self._number_images(conn, doc)
        full = dict(doc)
        PASSWORD.put(full, password)
        instance = instance_from_document(full)
        values = {"document": json.dumps(doc, sort_keys=False), "project_id": instance.project_id, "password": password,
                  "updated_at": datetime.now(UTC).isoformat()}
        if old:
            conn.execute(_UPDATE_INSTANCE, {"b_uuid": uuid, **values})
        else:
            conn.execute(insert(instances), {"uuid": uuid, **values})
        conn.execute(_DELETE_PORTS, {"uuid": uuid})
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
                raise DocumentError(join(f"[{i}]", ROUTER_ID.path), f"{router.id} appears twice in this import")
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
        found = self._select(_GET, uuid=uuid)
        row = found[0] if found else None
        return StoredInstance(json.loads(row[0]), row[1]) if row else None

    def uuids_by_address(self, ip: str) -> list[str]:
        """The instances that hold C{ip} as a fixed IP, in any network."""
        canonical = canonical_ip(ip)
        if canonical is None:
            return []
        return [row[0] for row in self._select(_BY_ADDRESS, ip=canonical)]

    def rows_by_address(self, ip: str) -> list[tuple[str, StoredInstance]]:
        """
        C{(uuid, row)} of every instance that holds C{ip} as a fixed IP, in any network, sorted
        by uuid: L{uuids_by_address} and L{get} in one query (a miss by address).
        """
        canonical = canonical_ip(ip)
        if canonical is None:
            return []
        return [(uuid, StoredInstance(json.loads(document), password))
                for uuid, document, password in self._select(_ROWS_BY_ADDRESS, ip=canonical)]

    def list_instances(self) -> list[tuple[str, str | None, str | None, list[str]]]:
        """(uuid, name, project_id, fixed IPs) for every instance, sorted by uuid."""
        def query(c: Connection) -> list[tuple[str, str | None, str | None, list[str]]]:
            ips: dict[str, list[str]] = {}
            for uuid, ip in c.execute(select(ports.c.uuid, ports.c.ip).where(ports.c.ip.is_not(None)).order_by(self._port_order)):
                ips.setdefault(uuid, []).append(ip)
            rows = c.execute(select(instances.c.uuid, instances.c.document, instances.c.project_id).order_by(instances.c.uuid))
            return [(uuid, NAME.get(json.loads(doc)), project, ips.get(uuid, [])) for uuid, doc, project in rows]

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
                              .order_by(self._network_order)).scalars().all()
            return list(dict.fromkeys(found))

        return self._read(query)

    def ports_by_network_ip(self, network_ids: Iterable[str], ip: str) -> list[tuple[str, str | None]]:
        """
        C{(uuid, project_id)} of the instances holding C{ip} as a fixed IP in one of
        C{network_ids}, sorted by uuid; an empty C{network_ids} matches nothing.
        """
        canonical = canonical_ip(ip)
        return self._ports_by(ports.c.ip, network_ids, canonical if canonical is not None else ip)

    def ports_by_network_mac(self, network_ids: Iterable[str], mac: str) -> list[tuple[str, str | None]]:
        """
        C{(uuid, project_id)} of the instances with a NIC of MAC C{mac} (any case) in one of
        C{network_ids}, sorted by uuid; an empty C{network_ids} matches nothing.
        """
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
    The built-in stores of C{[mdsvc] store = sqlite:PATH}, C{postgresql://...} or
    C{mysql+pymysql://...} (see L{mdsvc.store.open_store}): one factory per URL scheme, whose
    C{name} is that scheme, so that the option's NAME:ARG split gives the URL back whole.
    """

    def __init__(self, scheme: str) -> None:
        self.name = scheme

    def open(self, argument: str, config: Any, reactor: Any) -> DocumentStore:
        """See L{IInstanceStoreFactory.open}: the document store at C{NAME:argument}, read in threads."""
        from mdsvc.store.threaded import DocumentStore

        return DocumentStore.in_threads(SQLDocuments(f"{self.name}:{argument}"), reactor)
