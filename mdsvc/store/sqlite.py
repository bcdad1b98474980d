# -*- test-case-name: tests.test_store -*-
"""
The embedded instance store: instance and router documents in one SQLite file.

L{SQLiteDocuments} is the synchronous core that C{mdsvc-manage} uses; every write is one
transaction, so a reader sees a document either before or after an import, never half of it.
L{SQLiteInstanceStore} offers the same file to the event loop as an L{IInstanceStore}, running
each query in a thread so the reactor never waits on the disk.

Connections are kept and reused (one per concurrent call): a new connection to a WAL database
must create the C{-shm} file when no other is open, which fails on a full disk, while a kept one
reads on.  Every call is its own short transaction and none is left open between calls, so
changes made by another process (C{mdsvc-manage}) are seen by the next call.
"""

from __future__ import annotations

import json
import os
import random
import sqlite3
import string
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, TypeVar

from attrs import frozen
from twisted.internet.defer import Deferred
from twisted.internet.threads import deferToThreadPool
from twisted.python.threadpool import ThreadPool
from zope.interface import implementer

from mdsvc.hop import canonical_ip
from mdsvc.interfaces import AmbiguousAddress, IInstanceStore, IInstanceStoreFactory
from mdsvc.model import DocumentError, Instance, Router, image_ids, instance_from_document, router_from_document
from mdsvc.schema import DeclaredField, declared_field, join

T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS instances (
    uuid TEXT PRIMARY KEY,
    document TEXT NOT NULL,
    project_id TEXT,
    password TEXT,
    updated_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS ports (
    uuid TEXT NOT NULL REFERENCES instances(uuid) ON DELETE CASCADE,
    network_id TEXT,
    ip TEXT,
    mac TEXT
);
CREATE INDEX IF NOT EXISTS ports_network_ip ON ports(network_id, ip);
CREATE INDEX IF NOT EXISTS ports_network_mac ON ports(network_id, mac);
CREATE INDEX IF NOT EXISTS ports_ip ON ports(ip);
CREATE INDEX IF NOT EXISTS ports_uuid ON ports(uuid);
CREATE TABLE IF NOT EXISTS routers (
    id TEXT PRIMARY KEY,
    document TEXT NOT NULL,
    project_id TEXT
);
CREATE TABLE IF NOT EXISTS router_networks (
    router_id TEXT NOT NULL REFERENCES routers(id) ON DELETE CASCADE,
    network_id TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS router_networks_router ON router_networks(router_id);
CREATE TABLE IF NOT EXISTS ec2_instance_ids (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    uuid TEXT UNIQUE NOT NULL
);
CREATE TABLE IF NOT EXISTS ec2_image_ids (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    image_uuid TEXT UNIQUE NOT NULL
);
"""


def _reservation_id() -> str:
    """Nova's reservation id: C{r-} and 8 random characters from 0-9a-z."""
    alphabet = string.digits + string.ascii_lowercase
    return "r-" + "".join(random.SystemRandom().choice(alphabet) for _ in range(8))


# The document fields the store reads, keeps or fills in, reached through their declarations
# (mdsvc.model): the store never spells a document key itself.
_UUID = declared_field(Instance, "uuid")
_NAME = declared_field(Instance, "name")
_PASSWORD = declared_field(Instance, "password")
_RESERVATION = declared_field(Instance, "reservation_id")
_CREATED = declared_field(Instance, "created_at")
_EC2_INSTANCE = declared_field(Instance, "ec2_instance_id")
_EC2_IMAGES = declared_field(Instance, "ec2_image_ids")
_ROUTER_ID = declared_field(Router, "id")
# How the store makes each assigned field it does not number itself.
_NEW_VALUES: tuple[tuple[DeclaredField, Callable[[], Any]], ...] = (
    (_RESERVATION, _reservation_id),
    (_CREATED, lambda: datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")),
)


def _kept_password(given: str | None, stored: str | None, reset: bool) -> str | None:
    """The password to store: a stored one stays unless reset (an empty one counts as none, as in set_password)."""
    return stored if stored and not reset else given


def _keep_assigned(doc: dict[str, Any], old_doc: dict[str, Any]) -> None:
    """
    Values the store assigned before stay where the new document gives none (an absent field
    and a null one are the same).
    """
    for field in (_RESERVATION, _CREATED, _EC2_INSTANCE):
        if field.get(doc) is None and field.get(old_doc) is not None:
            field.put(doc, field.get(old_doc))


def _keep_ec2_images(doc: dict[str, Any], old_doc: dict[str, Any]) -> None:
    """EC2 image numbers stay for the images the document still names, unless it gives others."""
    images = dict(_EC2_IMAGES.get(doc) or {})
    named = image_ids(doc)
    for image, number in (_EC2_IMAGES.get(old_doc) or {}).items():
        if image in named:
            images.setdefault(image, number)
    _EC2_IMAGES.put(doc, images)


def _assign_new(doc: dict[str, Any]) -> None:
    """Fill in the assigned fields still missing that need no numbering (reservation id, creation time)."""
    for field, new in _NEW_VALUES:
        if field.get(doc) is None:
            field.put(doc, new())


def _number_ec2_instance(conn: sqlite3.Connection, uuid: str, doc: dict[str, Any]) -> None:
    """
    Give the instance a new EC2 number above every one in use, or reserve the one it gives, so
    that automatic ones (AUTOINCREMENT) never collide with it (the number of a deleted instance
    may be given to a new one).
    """
    number = _EC2_INSTANCE.get(doc)
    if number is None:
        conn.execute("INSERT OR IGNORE INTO ec2_instance_ids(uuid) VALUES (?)", (uuid,))
        _EC2_INSTANCE.put(doc, conn.execute("SELECT id FROM ec2_instance_ids WHERE uuid = ?", (uuid,)).fetchone()[0])
        return
    owner = conn.execute("SELECT uuid FROM ec2_instance_ids WHERE id = ?", (number,)).fetchone()
    if owner is not None and owner[0] != uuid:
        if conn.execute("SELECT 1 FROM instances WHERE uuid = ?", (owner[0],)).fetchone():
            raise DocumentError(_EC2_INSTANCE.path, f"{number} is already the EC2 id of instance {owner[0]}")
        conn.execute("DELETE FROM ec2_instance_ids WHERE id = ?", (number,))
        owner = None
    if owner is None:
        conn.execute("DELETE FROM ec2_instance_ids WHERE uuid = ?", (uuid,))
        conn.execute("INSERT INTO ec2_instance_ids(id, uuid) VALUES (?, ?)", (number, uuid))


def _number_ec2_images(conn: sqlite3.Connection, doc: dict[str, Any]) -> None:
    """Reserve the EC2 image numbers the document gives, and number the images it names without one."""
    images = dict(_EC2_IMAGES.get(doc) or {})
    for image, number in images.items():
        conn.execute("INSERT OR IGNORE INTO ec2_image_ids(id, image_uuid) VALUES (?, ?)", (number, image))
    for image in image_ids(doc):
        if image not in images:
            conn.execute("INSERT OR IGNORE INTO ec2_image_ids(image_uuid) VALUES (?)", (image,))
            images[image] = conn.execute("SELECT id FROM ec2_image_ids WHERE image_uuid = ?", (image,)).fetchone()[0]
    _EC2_IMAGES.put(doc, images)


@frozen
class StoredInstance:
    """One row of the store: the document as imported plus what the store assigned."""

    document: dict[str, Any]
    password: str | None

    def full_document(self) -> dict[str, Any]:
        """The document with the stored password in it (C{mdsvc-manage instance show})."""
        doc = dict(self.document)
        _PASSWORD.put(doc, self.password)
        return doc

    def instance(self) -> Instance:
        """
        The L{Instance} this row describes.  The document was validated when it was imported,
        perhaps under older rules: it is read back without the import-only checks, so that an
        upgrade never turns a stored instance into errors for its guest.
        """
        return instance_from_document(self.full_document(), strict=False)


class SQLiteDocuments:
    """
    Synchronous access to the store file; used by mdsvc-manage and, in threads, by the API.

    Calls may come from several threads at once; each borrows a kept connection for its
    duration (L{close} closes those kept).
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._ready = False
        self._lock = threading.Lock()
        self._idle: list[sqlite3.Connection] = []

    def connect(self, create: bool = True) -> sqlite3.Connection:
        """
        Open a new connection, which the caller closes (creating the file and its directory when
        C{create}), with the schema in place.
        """
        return self._open(create, check_same_thread=True)

    def _open(self, create: bool, check_same_thread: bool) -> sqlite3.Connection:
        if create:
            self._create()
        elif not os.path.exists(self.path):
            raise FileNotFoundError(self.path)
        conn = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=check_same_thread)
        try:
            conn.execute("PRAGMA foreign_keys = ON")
            conn.execute("PRAGMA busy_timeout = 30000")
            if create and not self._ready:
                # once per object: WAL lets readers go on while mdsvc-manage writes
                mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
                if mode != "wal":
                    conn.execute("PRAGMA journal_mode = WAL")
                conn.executescript(_SCHEMA)
                self._ready = True
        except BaseException:
            conn.close()
            raise
        return conn

    def _create(self) -> None:
        """
        Create the file (0600) and its directory (0700) when missing, before SQLite does: it holds
        passwords and user data, and SQLite gives its -wal and -shm files the database's mode.
        """
        directory = os.path.dirname(os.path.abspath(self.path))
        if not os.path.isdir(directory):
            os.makedirs(directory, exist_ok=True)
            os.chmod(directory, 0o700)
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        except FileExistsError:
            return
        try:
            os.fchmod(fd, 0o600)  # whatever the umask
        finally:
            os.close(fd)

    @contextmanager
    def _connection(self) -> Iterator[sqlite3.Connection]:
        """A kept connection for one call (a new one only when every kept one is busy)."""
        with self._lock:
            conn = self._idle.pop() if self._idle else None
        if conn is None:
            # used by one thread at a time, but not always the thread that opened it
            conn = self._open(create=True, check_same_thread=False)
        try:
            yield conn
        finally:
            sound = True
            if conn.in_transaction:
                # what ended the call also ended the transaction, or the connection is unsound
                try:
                    conn.execute("ROLLBACK")
                except sqlite3.Error:
                    conn.close()
                    sound = False  # not kept
            if sound:
                with self._lock:
                    self._idle.append(conn)

    def close(self) -> None:
        """Close the kept connections (a later call opens a new one)."""
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    # -- writes ------------------------------------------------------------------------------

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (taken at once, so writers queue): committed, or rolled back on any error."""
        with self._connection() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    try:
                        conn.execute("ROLLBACK")
                    except sqlite3.Error:
                        pass  # the first error is the one to report; _connection drops the connection
                raise

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
                raise DocumentError(join(where, _UUID.path), f"{instance.uuid} appears twice in this import")
            seen[instance.uuid] = doc
        with self._transaction() as conn:
            for uuid, doc in seen.items():
                self._write_instance(conn, uuid, dict(doc), reset_password)
        return list(seen)

    def _write_instance(self, conn: sqlite3.Connection, uuid: str, doc: dict[str, Any], reset_password: bool) -> None:
        """Write one validated document, with what the store keeps and assigns, and index its ports."""
        old = conn.execute("SELECT document, password FROM instances WHERE uuid = ?", (uuid,)).fetchone()
        old_doc = json.loads(old[0]) if old else {}
        password = _kept_password(_PASSWORD.pop(doc), old[1] if old else None, reset_password)
        _keep_assigned(doc, old_doc)
        _assign_new(doc)
        _number_ec2_instance(conn, uuid, doc)
        _keep_ec2_images(doc, old_doc)
        _number_ec2_images(conn, doc)
        full = dict(doc)
        _PASSWORD.put(full, password)
        instance = instance_from_document(full)
        now = datetime.now(UTC).isoformat()
        conn.execute(
            "INSERT INTO instances(uuid, document, project_id, password, updated_at) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT(uuid) DO UPDATE SET document = excluded.document, project_id = excluded.project_id, "
            "password = excluded.password, updated_at = excluded.updated_at",
            (uuid, json.dumps(doc, sort_keys=False), instance.project_id, password, now),
        )
        conn.execute("DELETE FROM ports WHERE uuid = ?", (uuid,))
        for nic in instance.nics:
            mac = nic.mac.lower() if nic.mac is not None else None  # (looked up in any case)
            if not nic.fixed_ips:
                conn.execute("INSERT INTO ports(uuid, network_id, ip, mac) VALUES (?, ?, NULL, ?)", (uuid, nic.network.id, mac))
            for fip in nic.fixed_ips:
                conn.execute("INSERT INTO ports(uuid, network_id, ip, mac) VALUES (?, ?, ?, ?)",
                             (uuid, nic.network.id, canonical_ip(fip.ip) or fip.ip, mac))

    def delete_instance(self, uuid: str) -> bool:
        """Remove an instance; True if it existed."""
        with self._transaction() as conn:
            return conn.execute("DELETE FROM instances WHERE uuid = ?", (uuid,)).rowcount > 0

    def import_routers(self, documents: Iterable[Any]) -> list[str]:
        """Validate every router document, then write them in one transaction."""
        docs = list(documents)
        routers = [router_from_document(doc, f"[{i}]" if len(docs) > 1 else "") for i, doc in enumerate(docs)]
        seen: set[str] = set()
        for i, router in enumerate(routers):
            if router.id in seen:
                raise DocumentError(join(f"[{i}]", _ROUTER_ID.path), f"{router.id} appears twice in this import")
            seen.add(router.id)
        with self._transaction() as conn:
            for doc, router in zip(docs, routers, strict=True):
                conn.execute(
                    "INSERT INTO routers(id, document, project_id) VALUES (?, ?, ?) "
                    "ON CONFLICT(id) DO UPDATE SET document = excluded.document, project_id = excluded.project_id",
                    (router.id, json.dumps(doc), router.project_id),
                )
                conn.execute("DELETE FROM router_networks WHERE router_id = ?", (router.id,))
                conn.executemany("INSERT INTO router_networks(router_id, network_id) VALUES (?, ?)", [(router.id, n) for n in router.networks])
        return [r.id for r in routers]

    def delete_router(self, router_id: str) -> bool:
        """Remove a router; True if it existed."""
        with self._transaction() as conn:
            return conn.execute("DELETE FROM routers WHERE id = ?", (router_id,)).rowcount > 0

    def set_password(self, uuid: str, password: str) -> bool:
        """Compare-and-set the guest's password: stored only if none is; KeyError if no instance."""
        with self._transaction() as conn:
            cur = conn.execute("UPDATE instances SET password = ? WHERE uuid = ? AND COALESCE(password, '') = ''", (password, uuid))
            if cur.rowcount:
                return True
            if conn.execute("SELECT 1 FROM instances WHERE uuid = ?", (uuid,)).fetchone() is None:
                raise KeyError(uuid)
            return False

    # -- reads -------------------------------------------------------------------------------

    def _read(self, query: Callable[[sqlite3.Connection], T]) -> T:
        """Run C{query} in one read transaction, ended before returning (the next call sees new commits)."""
        with self._connection() as conn:
            conn.execute("BEGIN")
            result = query(conn)
            conn.execute("COMMIT")
            return result

    def get(self, uuid: str) -> StoredInstance | None:
        """The stored row of one instance, or None."""
        row = self._read(lambda c: c.execute("SELECT document, password FROM instances WHERE uuid = ?", (uuid,)).fetchone())
        return StoredInstance(json.loads(row[0]), row[1]) if row else None

    def uuids_by_address(self, ip: str) -> list[str]:
        """The instances that hold C{ip} as a fixed IP, in any network."""
        canonical = canonical_ip(ip)
        if canonical is None:
            return []
        rows = self._read(lambda c: c.execute("SELECT DISTINCT uuid FROM ports WHERE ip = ? ORDER BY uuid", (canonical,)).fetchall())
        return [r[0] for r in rows]

    def list_instances(self) -> list[tuple[str, str | None, str | None, list[str]]]:
        """(uuid, name, project_id, fixed IPs) for every instance, sorted by uuid."""

        def query(c: sqlite3.Connection) -> list[tuple[str, str | None, str | None, list[str]]]:
            out = []
            for uuid, document, project in c.execute("SELECT uuid, document, project_id FROM instances ORDER BY uuid").fetchall():
                ips = [r[0] for r in c.execute("SELECT ip FROM ports WHERE uuid = ? AND ip IS NOT NULL", (uuid,)).fetchall()]
                out.append((uuid, _NAME.get(json.loads(document)), project, ips))
            return out

        return self._read(query)

    def list_routers(self) -> list[Router]:
        """Every router, sorted by id."""
        rows = self._read(lambda c: c.execute("SELECT document FROM routers ORDER BY id").fetchall())
        return [router_from_document(json.loads(r[0]), strict=False) for r in rows]

    def router_document(self, router_id: str) -> dict[str, Any] | None:
        """The stored document of one router, or None."""
        row = self._read(lambda c: c.execute("SELECT document FROM routers WHERE id = ?", (router_id,)).fetchone())
        return dict(json.loads(row[0])) if row else None

    def router_networks(self, router_id: str) -> list[str] | None:
        """The networks attached to a router, in document order; None if there is no such router."""

        def query(c: sqlite3.Connection) -> list[str] | None:
            if c.execute("SELECT 1 FROM routers WHERE id = ?", (router_id,)).fetchone() is None:
                return None
            rows = c.execute("SELECT network_id FROM router_networks WHERE router_id = ? ORDER BY rowid", (router_id,)).fetchall()
            return list(dict.fromkeys(r[0] for r in rows))

        return self._read(query)

    def ports_by_network_ip(self, network_ids: Iterable[str], ip: str) -> list[tuple[str, str | None]]:
        """
        C{(uuid, project_id)} of the instances holding C{ip} as a fixed IP in one of
        C{network_ids}, sorted by uuid; an empty C{network_ids} matches nothing.
        """
        canonical = canonical_ip(ip)
        return self._ports_by("ip", network_ids, canonical if canonical is not None else ip)

    def ports_by_network_mac(self, network_ids: Iterable[str], mac: str) -> list[tuple[str, str | None]]:
        """
        C{(uuid, project_id)} of the instances with a NIC of MAC C{mac} (any case) in one of
        C{network_ids}, sorted by uuid; an empty C{network_ids} matches nothing.
        """
        return self._ports_by("mac", network_ids, mac.strip().lower())

    def _ports_by(self, column: str, network_ids: Iterable[str], value: str) -> list[tuple[str, str | None]]:
        networks = list(dict.fromkeys(network_ids))
        if not networks:
            return []
        marks = ", ".join("?" * len(networks))
        sql = (
            "SELECT DISTINCT p.uuid, i.project_id FROM ports p JOIN instances i ON i.uuid = p.uuid "
            f"WHERE p.{column} = ? AND p.network_id IN ({marks}) ORDER BY p.uuid"
        )
        rows = self._read(lambda c: c.execute(sql, (value, *networks)).fetchall())
        return [(r[0], r[1]) for r in rows]


@implementer(IInstanceStore)
class SQLiteInstanceStore:
    """
    L{IInstanceStore} over L{SQLiteDocuments}, each query in a thread of C{threadpool}.

    @param run: how to run a blocking call; by default in the reactor's thread pool.  Tests pass
        a synchronous runner.
    """

    def __init__(self, documents: SQLiteDocuments, run: Callable[..., Deferred[Any]]) -> None:
        self.documents = documents
        self._run = run

    @classmethod
    def in_threads(cls, path: Any, reactor: Any, threadpool: ThreadPool | None = None) -> SQLiteInstanceStore:
        """
        A store whose queries run in C{threadpool} (default: the reactor's).

        @param path: the SQLite file, or the documents object itself (L{mdsvc.store.sql.SQLDocuments}
            for a store on a database server).
        """
        def run(f: Callable[..., Any], *args: Any) -> Deferred[Any]:
            pool = threadpool if threadpool is not None else reactor.getThreadPool()
            return deferToThreadPool(reactor, pool, f, *args)

        return cls(SQLiteDocuments(path) if isinstance(path, str) else path, run)

    def get(self, uuid: str) -> Deferred[Instance | None]:
        """See L{IInstanceStore.get}."""

        def load() -> Instance | None:
            row = self.documents.get(uuid)
            return row.instance() if row else None

        return self._run(load)

    def by_address(self, ip: str) -> Deferred[Instance | None]:
        """See L{IInstanceStore.by_address}."""

        def load() -> Instance | None:
            uuids = self.documents.uuids_by_address(ip)
            if len(uuids) > 1:
                raise AmbiguousAddress(ip, uuids)
            if not uuids:
                return None
            row = self.documents.get(uuids[0])
            return row.instance() if row else None

        return self._run(load)

    def by_provider(self, provider_id: str, ip: str) -> Deferred[list[tuple[str, str | None]] | None]:
        """See L{IInstanceStore.by_provider}."""

        def load() -> list[tuple[str, str | None]] | None:
            networks = self.documents.router_networks(provider_id)
            if not networks:
                return None
            return self.documents.ports_by_network_ip(networks, ip)

        return self._run(load)

    def set_password(self, uuid: str, password: str) -> Deferred[bool]:
        """See L{IInstanceStore.set_password}."""
        return self._run(self.documents.set_password, uuid, password)


@implementer(IInstanceStoreFactory)
class SQLiteStoreFactory:
    """The built-in store of C{[mdsvc] store = sqlite:PATH} (see L{mdsvc.store.open_store})."""

    name = "sqlite"

    def open(self, argument: str, config: Any, reactor: Any) -> SQLiteInstanceStore:
        """See L{IInstanceStoreFactory.open}: the store in the file C{argument}, read in threads."""
        if not argument:
            raise ValueError("store = sqlite:PATH needs a file path")
        return SQLiteInstanceStore.in_threads(argument, reactor)
