"""
Tests for mdsvc's document store (L{mdsvc.store.sql}, L{mdsvc.store.threaded}): its rules on the
embedded SQLite file here; the rule tests (L{DocumentsTestsMixin}) run again on a real PostgreSQL
and MariaDB in tests/integration/test_sql_store.py.
"""

from __future__ import annotations

import base64
import errno
import json
import os
import re
import sqlite3
import stat
from typing import Any
from unittest import SkipTest

from sqlalchemy import text
from twisted.internet import reactor
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface.verify import verifyObject

from mdsvc.interfaces import AmbiguousAddress, IInstanceStore, IInstanceStoreFactory
from mdsvc.model import DocumentError, Instance, Router, instance_from_document
from mdsvc.schema import declared_fields
from mdsvc.store import open_store
from mdsvc.store.sql import SQLDocuments, SQLStoreFactory
from mdsvc.store.threaded import DocumentStore

IMAGE = "6a1b2c3d-0000-4000-8000-00000000cafe"
OTHER_IMAGE = "6a1b2c3d-0000-4000-8000-00000000beef"
# Instance uuids, sorted as their names
A = "aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa"
B = "bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb"
C = "cccccccc-cccc-4ccc-8ccc-cccccccccccc"
D = "dddddddd-dddd-4ddd-8ddd-dddddddddddd"
U = "eeeeeeee-eeee-4eee-8eee-eeeeeeeeeeee"


def instanceDoc(uuid: str, ip: str | None = None, network: str = "net-a", **extra: Any) -> dict[str, Any]:
    """An instance document, with one NIC holding C{ip} on C{network} when C{ip} is given."""
    doc: dict[str, Any] = {"uuid": uuid, "name": f"vm-{uuid[0]}", "project_id": "proj"}
    if ip is not None:
        doc["nics"] = [{"port_id": f"port-{uuid}", "mac": "fa:16:3e:00:00:01", "network": {"id": network},
                        "fixed_ips": [{"ip": ip}]}]
    doc.update(extra)
    return doc


def fileDocuments(path: str) -> SQLDocuments:
    """The documents of the store file C{path} (C{[mdsvc] store = sqlite:PATH})."""
    return SQLDocuments(f"sqlite:{path}")


class DocumentsTestsMixin:
    """
    A fresh store: by default a file in a directory that does not exist yet; a subclass gives
    another store's URL (L{store_url}: a database server's, in the integration tests).
    """

    def store_url(self) -> str:
        """The URL of a new, empty store."""
        self.path = os.path.join(self.mktemp(), "sub", "mdsvc.sqlite")  # type: ignore[attr-defined]
        return f"sqlite:{self.path}"

    def setUp(self) -> None:
        self.docs = SQLDocuments(self.store_url())
        self.addCleanup(self.docs.close)  # type: ignore[attr-defined]

    def scalar(self, sql: str, **params: Any) -> Any:
        """The one value C{sql} selects from the store's tables, read past the store's own methods."""
        with self.docs.engine.connect() as conn:
            return conn.execute(text(sql), params).scalar()


class FileTests(DocumentsTestsMixin, SynchronousTestCase):
    """The embedded store's file."""

    def test_createsFile(self) -> None:
        """The first write creates the file (0600) and its directory (0700), in WAL mode."""
        self.assertFalse(os.path.exists(self.path))
        self.assertFalse(self.docs.exists())
        self.assertFalse(os.path.exists(self.path))
        self.assertEqual(self.docs.import_instances([instanceDoc(A)]), [A])
        self.assertTrue(os.path.exists(self.path))
        self.assertTrue(self.docs.exists())
        self.assertEqual(stat.S_IMODE(os.stat(self.path).st_mode), 0o600)
        self.assertEqual(stat.S_IMODE(os.stat(os.path.dirname(self.path)).st_mode), 0o700)
        conn = sqlite3.connect(self.path)
        self.addCleanup(conn.close)
        self.assertEqual(conn.execute("PRAGMA journal_mode").fetchone()[0], "wal")

    def test_createdPrivateWhateverTheUmask(self) -> None:
        """With a umask that gives everyone everything, the file is still 0600 (made so before SQLite writes)."""
        old = os.umask(0)
        try:
            self.docs.import_instances([instanceDoc(A)])
        finally:
            os.umask(old)
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(self.path + suffix):
                self.assertEqual(stat.S_IMODE(os.stat(self.path + suffix).st_mode), 0o600, suffix)

    def test_connectionSettings(self) -> None:
        """Every connection enforces foreign keys, waits for another writer's lock, and is in WAL mode."""
        self.docs.create()
        with self.docs.engine.connect() as conn:
            self.assertEqual(conn.exec_driver_sql("PRAGMA foreign_keys").scalar(), 1)
            self.assertEqual(conn.exec_driver_sql("PRAGMA busy_timeout").scalar(), 30000)
            self.assertEqual(conn.exec_driver_sql("PRAGMA journal_mode").scalar(), "wal")

    def test_writerWaitsForWriter(self) -> None:
        """A write while another process holds the write lock waits for it, then goes through."""
        import threading

        self.docs.create()
        holder = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self.addCleanup(holder.close)
        holder.execute("BEGIN IMMEDIATE")
        threading.Timer(0.5, holder.execute, ("COMMIT",)).start()
        self.assertEqual(self.docs.import_instances([instanceDoc(A)]), [A])

    def test_concurrentImports(self) -> None:
        """Four writers on one file at once (each its own store object, as processes are): forty different EC2 numbers."""
        import threading

        self.docs.create()
        errors: list[BaseException] = []

        def writer(n: int) -> None:
            docs = fileDocuments(self.path)
            try:
                for i in range(10):
                    docs.import_instances([instanceDoc(f"00000000-0000-4000-8000-{n:06d}{i:06d}", image_id=f"img-{i}")])
            except BaseException as e:  # noqa: BLE001 - failed below
                errors.append(e)
            finally:
                docs.close()

        threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        self.assertEqual(errors, [])
        numbers = [self.docs.get(f"00000000-0000-4000-8000-{n:06d}{i:06d}").instance().ec2_instance_id  # type: ignore[union-attr]
                   for n in range(4) for i in range(10)]
        self.assertEqual(sorted(numbers), list(range(1, 41)))
        images = {self.docs.get(f"00000000-0000-4000-8000-{n:06d}{i:06d}").instance().ec2_image_ids[f"img-{i}"]  # type: ignore[union-attr]
                  for n in range(4) for i in range(10)}
        self.assertEqual(sorted(images), list(range(1, 11)))

    def test_sameLayout(self) -> None:
        """Every new store file has its tables and indexes made in one order (the same pages hold the same things)."""
        layouts = []
        for _ in range(3):
            docs = fileDocuments(os.path.join(self.mktemp(), "mdsvc.sqlite"))
            docs.create()
            docs.close()
            conn = sqlite3.connect(docs.path)
            layouts.append(conn.execute("SELECT type, name, rootpage FROM sqlite_master ORDER BY rootpage").fetchall())
            conn.close()
        self.assertEqual(layouts[0], layouts[1])
        self.assertEqual(layouts[0], layouts[2])
        self.assertEqual([name for kind, name, _ in layouts[0] if kind == "index" and not name.startswith("sqlite_")][:5],
                         ["ix_instances_project_id", "ix_ports_uuid", "ports_ip", "ports_network_ip", "ports_network_mac"])

    def test_emptyPath(self) -> None:
        """sqlite: without a path is refused."""
        e = self.assertRaises(ValueError, SQLDocuments, "sqlite:")
        self.assertEqual(str(e), "store = sqlite:PATH needs a file path")


class ImportTests(DocumentsTestsMixin, SynchronousTestCase):
    """Importing instance documents."""

    def test_roundTrip(self) -> None:
        """An imported document comes back with the same Instance values plus what the store assigned."""
        doc = instanceDoc(A, "10.0.0.5", metadata={"role": "web"}, image_id=IMAGE)
        self.docs.import_instances([doc])
        row = self.docs.get(A)
        assert row is not None
        instance = row.instance()
        self.assertEqual(instance.uuid, A)
        self.assertEqual(instance.metadata, {"role": "web"})
        self.assertEqual([f.ip for f in instance.fixed_ips()], ["10.0.0.5"])
        self.assertEqual(
            {k: v for k, v in row.document.items() if k not in ("reservation_id", "created_at", "ec2_ids")}, doc,
        )
        self.assertRegex(row.document["created_at"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
        self.assertIsNone(row.password)

    def test_getUnknown(self) -> None:
        """get of an unknown uuid is None."""
        self.assertIsNone(self.docs.get("nope"))

    def test_secondBadWritesNothing(self) -> None:
        """A batch whose second document is bad fails naming it, and the first is not written."""
        e = self.assertRaises(
            DocumentError, self.docs.import_instances, [instanceDoc(A, "10.0.0.5"), {"uuid": B, "launch_index": -1}]
        )
        self.assertEqual(str(e), "[1].launch_index: must be >= 0, got -1")
        self.assertIsNone(self.docs.get(A))
        self.assertEqual(self.docs.uuids_by_address("10.0.0.5"), [])
        self.assertEqual(self.docs.list_instances(), [])

    def test_badKeepsExisting(self) -> None:
        """A failed re-import leaves the stored document as it was."""
        self.docs.import_instances([instanceDoc(A, "10.0.0.5")])
        self.assertRaises(DocumentError, self.docs.import_instances, [instanceDoc(A, "10.0.0.6"), {"uuid": B, "bogus": 1}])
        self.assertEqual(self.docs.uuids_by_address("10.0.0.5"), [A])
        self.assertEqual(self.docs.uuids_by_address("10.0.0.6"), [])

    def test_singleDocumentErrorHasNoIndex(self) -> None:
        """An error in a batch of one names the field without an index."""
        e = self.assertRaises(DocumentError, self.docs.import_instances, [{"uuid": A, "nics": [{"mac": "x"}]}])
        self.assertEqual(str(e), "nics[0].mac: 'x' is not valid")

    def test_duplicateUuid(self) -> None:
        """The same uuid twice in one batch is an error, and nothing is written."""
        e = self.assertRaises(DocumentError, self.docs.import_instances, [instanceDoc(A), instanceDoc(B), instanceDoc(A)])
        self.assertEqual(str(e), f"[2].uuid: {A} appears twice in this import")
        self.assertEqual(self.docs.list_instances(), [])

    def test_listInstances(self) -> None:
        """list_instances gives (uuid, name, project, fixed IPs), sorted by uuid."""
        self.docs.import_instances([instanceDoc(B, "10.0.0.6"), {"uuid": A}])
        self.assertEqual(self.docs.list_instances(), [(A, None, None, []), (B, "vm-b", "proj", ["10.0.0.6"])])

    def test_ec2InstanceIds(self) -> None:
        """EC2 instance ids are assigned in increasing order, one per instance."""
        self.docs.import_instances([instanceDoc(A), instanceDoc(B)])
        self.docs.import_instances([instanceDoc(C)])
        ids = [self.docs.get(u).document["ec2_ids"]["instance"] for u in (A, B, C)]  # type: ignore[union-attr]
        self.assertEqual(ids, sorted(ids))
        self.assertEqual(len(set(ids)), 3)
        self.assertEqual(self.docs.get(A).instance().ec2_instance_id, ids[0])  # type: ignore[union-attr]

    def test_ec2ImageIdsShared(self) -> None:
        """The same image uuid gets the same ami id in every instance; another image another id."""
        self.docs.import_instances([instanceDoc(A, image_id=IMAGE)])
        self.docs.import_instances([instanceDoc(B, image_id=IMAGE, kernel_id=OTHER_IMAGE)])
        a = self.docs.get(A).instance()  # type: ignore[union-attr]
        b = self.docs.get(B).instance()  # type: ignore[union-attr]
        self.assertEqual(a.ec2_image_ids[IMAGE], b.ec2_image_ids[IMAGE])
        self.assertEqual(set(b.ec2_image_ids), {IMAGE, OTHER_IMAGE})
        self.assertNotEqual(b.ec2_image_ids[IMAGE], b.ec2_image_ids[OTHER_IMAGE])
        self.assertEqual(a.ec2_image_ids, {IMAGE: a.ec2_image_ids[IMAGE]})

    def test_noImageNoImageIds(self) -> None:
        """A boot-from-volume instance (empty image id) gets no image EC2 id."""
        self.docs.import_instances([instanceDoc(A, image_id="")])
        self.assertEqual(self.docs.get(A).document["ec2_ids"]["images"], {})  # type: ignore[union-attr]

    def test_ec2IdsStable(self) -> None:
        """Re-importing an instance keeps its EC2 ids, also after other instances came."""
        self.docs.import_instances([instanceDoc(A, image_id=IMAGE)])
        first = self.docs.get(A).document["ec2_ids"]  # type: ignore[union-attr]
        self.docs.import_instances([instanceDoc(B, image_id=OTHER_IMAGE)])
        self.docs.import_instances([instanceDoc(A, image_id=IMAGE, name="renamed")])
        row = self.docs.get(A)
        assert row is not None
        self.assertEqual(row.document["name"], "renamed")
        self.assertEqual(row.document["ec2_ids"], first)

    def test_givenEc2IdsKept(self) -> None:
        """EC2 ids given by the document are kept, and survive a re-import that omits them."""
        self.docs.import_instances([instanceDoc(A, image_id=IMAGE, ec2_ids={"instance": 4242, "images": {IMAGE: 77}})])
        self.docs.import_instances([instanceDoc(A, image_id=IMAGE)])
        instance = self.docs.get(A).instance()  # type: ignore[union-attr]
        self.assertEqual((instance.ec2_instance_id, instance.ec2_image_ids), (4242, {IMAGE: 77}))

    def test_reservationId(self) -> None:
        """A reservation id r- and 8 of [0-9a-z] is assigned, and kept on re-import."""
        self.docs.import_instances([instanceDoc(A)])
        first = self.docs.get(A).document["reservation_id"]  # type: ignore[union-attr]
        self.assertRegex(first, r"^r-[0-9a-z]{8}$")
        self.docs.import_instances([instanceDoc(A, name="again")])
        self.assertEqual(self.docs.get(A).instance().reservation_id, first)  # type: ignore[union-attr]
        self.docs.import_instances([instanceDoc(A, reservation_id=None)])
        self.assertEqual(self.docs.get(A).instance().reservation_id, first)  # type: ignore[union-attr]

    def test_reservationIdsDiffer(self) -> None:
        """Two instances get two reservation ids."""
        self.docs.import_instances([instanceDoc(A), instanceDoc(B)])
        self.assertNotEqual(self.docs.get(A).document["reservation_id"], self.docs.get(B).document["reservation_id"])  # type: ignore[union-attr]

    def test_reservationIdNull(self) -> None:
        """A null reservation id on first import is assigned like a missing one."""
        self.docs.import_instances([instanceDoc(A, reservation_id=None, created_at=None)])
        row = self.docs.get(A)
        assert row is not None
        self.assertRegex(row.instance().reservation_id or "", r"^r-[0-9a-z]{8}$")
        self.assertIsNotNone(row.instance().created_at)

    def test_givenReservationId(self) -> None:
        """A given reservation id is used as it is."""
        self.docs.import_instances([instanceDoc(A, reservation_id="r-xxxxxxxx")])
        self.assertEqual(self.docs.get(A).instance().reservation_id, "r-xxxxxxxx")  # type: ignore[union-attr]

    def test_createdAtKept(self) -> None:
        """The creation time is kept across re-imports."""
        self.docs.import_instances([instanceDoc(A, created_at="2020-01-01T00:00:00Z")])
        self.docs.import_instances([instanceDoc(A)])
        self.assertEqual(self.docs.get(A).instance().created_at, "2020-01-01T00:00:00Z")  # type: ignore[union-attr]


class DeclaredAssignedTests(DocumentsTestsMixin, SynchronousTestCase):
    """The fields the declarations (and so the documentation) say the store assigns are the ones it assigns."""

    def test_assignedWhenMissing(self) -> None:
        """An import without them stores a value for every field declared C{assigned}, kept by a re-import."""
        assigned = [f for f in declared_fields(Instance) if f.declaration.assigned]
        self.assertEqual([f.path for f in assigned], ["reservation_id", "created_at", "ec2_ids.instance", "ec2_ids.images"])
        self.docs.import_instances([instanceDoc(A, image_id=IMAGE)])
        first = self.docs.get(A).document  # type: ignore[union-attr]
        for f in assigned:
            self.assertTrue(f.get(first), f.path)
        self.docs.import_instances([instanceDoc(A, image_id=IMAGE, name="again")])
        again = self.docs.get(A).document  # type: ignore[union-attr]
        self.assertEqual([f.get(again) for f in assigned], [f.get(first) for f in assigned])


class PasswordTests(DocumentsTestsMixin, SynchronousTestCase):
    """The guest's password: compare-and-set, and what re-imports do to it."""

    def setUp(self) -> None:
        super().setUp()
        self.docs.import_instances([instanceDoc(A)])

    def test_compareAndSet(self) -> None:
        """The first set_password stores; the second is refused and keeps the first."""
        self.assertIs(self.docs.set_password(A, "first"), True)
        self.assertIs(self.docs.set_password(A, "second"), False)
        row = self.docs.get(A)
        assert row is not None
        self.assertEqual(row.password, "first")
        self.assertEqual(row.instance().password, "first")

    def test_emptyIsUnset(self) -> None:
        """An empty stored password counts as none (as Nova's C{if password} does)."""
        self.docs.import_instances([instanceDoc(A, password="")])
        self.assertIs(self.docs.set_password(A, "now"), True)
        self.assertEqual(self.docs.get(A).password, "now")  # type: ignore[union-attr]

    def test_unknown(self) -> None:
        """set_password of an unknown instance raises KeyError."""
        e = self.assertRaises(KeyError, self.docs.set_password, "nope", "x")
        self.assertEqual(e.args, ("nope",))

    def test_reimportKeeps(self) -> None:
        """A re-import without a password key keeps the stored password."""
        self.docs.set_password(A, "guest-set")
        self.docs.import_instances([instanceDoc(A, name="changed")])
        row = self.docs.get(A)
        assert row is not None
        self.assertEqual((row.password, row.document["name"]), ("guest-set", "changed"))
        self.assertNotIn("password", row.document)

    def test_reimportNullKeeps(self) -> None:
        """A re-import with "password": null keeps the password the guest stored (null is absent)."""
        self.docs.set_password(A, "guest-set")
        self.docs.import_instances([instanceDoc(A, password=None)])
        self.assertEqual(self.docs.get(A).password, "guest-set")  # type: ignore[union-attr]
        self.assertIs(self.docs.set_password(A, "again"), False)

    def test_reimportStringKeepsGuests(self) -> None:
        """A document's password does not overwrite one the guest stored."""
        self.docs.set_password(A, "guest-set")
        self.docs.import_instances([instanceDoc(A, password="operator")])
        self.assertEqual(self.docs.get(A).password, "guest-set")  # type: ignore[union-attr]

    def test_reimportSets(self) -> None:
        """A re-import with a password string stores that password when none is stored."""
        self.docs.import_instances([instanceDoc(A, password="operator")])
        self.assertEqual(self.docs.get(A).password, "operator")  # type: ignore[union-attr]
        self.assertIs(self.docs.set_password(A, "x"), False)

    def test_resetClears(self) -> None:
        """With reset_password, a document without a password (or with null) clears the stored one."""
        for doc in (instanceDoc(A), instanceDoc(A, password=None)):
            self.docs.set_password(A, "guest-set")
            self.docs.import_instances([doc], reset_password=True)
            self.assertIsNone(self.docs.get(A).password)  # type: ignore[union-attr]
        self.assertIs(self.docs.set_password(A, "again"), True)

    def test_resetReplaces(self) -> None:
        """With reset_password, the document's password replaces the stored one."""
        self.docs.set_password(A, "guest-set")
        self.docs.import_instances([instanceDoc(A, password="operator")], reset_password=True)
        self.assertEqual(self.docs.get(A).password, "operator")  # type: ignore[union-attr]

    def test_resetOnlyImported(self) -> None:
        """reset_password touches the imported instances only."""
        self.docs.import_instances([instanceDoc(B)])
        self.docs.set_password(A, "pa")
        self.docs.set_password(B, "pb")
        self.docs.import_instances([instanceDoc(B)], reset_password=True)
        self.assertEqual((self.docs.get(A).password, self.docs.get(B).password), ("pa", None))  # type: ignore[union-attr]


class AddressTests(DocumentsTestsMixin, SynchronousTestCase):
    """Finding instances by fixed IP; deleting them."""

    def test_byAddress(self) -> None:
        """An instance is found by each of its fixed IPs, and only by those."""
        doc = instanceDoc(A, "10.0.0.5")
        doc["nics"].append({"mac": "fa:16:3e:00:00:02", "fixed_ips": [{"ip": "fd00::0005"}]})
        self.docs.import_instances([doc, instanceDoc(B, "10.0.0.6")])
        self.assertEqual(self.docs.uuids_by_address("10.0.0.5"), [A])
        self.assertEqual(self.docs.uuids_by_address("fd00::5"), [A])
        self.assertEqual(self.docs.uuids_by_address("FD00:0:0::5"), [A])
        self.assertEqual(self.docs.uuids_by_address(" 10.0.0.6 "), [B])
        self.assertEqual(self.docs.uuids_by_address("10.0.0.7"), [])

    def test_ipv4Mapped(self) -> None:
        """An IPv4-mapped IPv6 address (a dual-stack socket's view) finds the IPv4 fixed IP."""
        self.docs.import_instances([instanceDoc(A, "10.0.0.5")])
        self.assertEqual(self.docs.uuids_by_address("::ffff:10.0.0.5"), [A])

    def test_text_kept_lookups_by_any_spelling(self) -> None:
        """A fixed IP is kept as written (Nova passes Neutron's text on) and found by any spelling of it."""
        self.docs.import_instances([instanceDoc(A, "FD00:0:0::0005")])
        self.assertEqual(self.docs.get(A).instance().fixed_ips()[0].ip, "FD00:0:0::0005")  # type: ignore[union-attr]
        for spelling in ("fd00::5", "FD00::0:5", "fd00:0000:0000:0000:0000:0000:0000:0005"):
            self.assertEqual(self.docs.uuids_by_address(spelling), [A], spelling)
        self.assertEqual(self.docs.ports_by_network_ip(["net-a"], "fd00::5"), [(A, "proj")])

    def test_garbage(self) -> None:
        """Input that is not an address finds nothing instead of failing."""
        self.docs.import_instances([instanceDoc(A, "10.0.0.5")])
        for garbage in ("", "10.0.0.256", "not-an-ip", "10.0.0.5; DROP TABLE ports", "10.0.0.5/32", None, 167772165):
            self.assertEqual(self.docs.uuids_by_address(garbage), [], garbage)  # type: ignore[arg-type]
        self.assertEqual(self.docs.uuids_by_address("10.0.0.5"), [A])

    def test_sameIpTwoNetworks(self) -> None:
        """Two instances with the same IP on different networks are both found."""
        self.docs.import_instances([instanceDoc(B, "10.0.0.5", "net-b"), instanceDoc(A, "10.0.0.5", "net-a")])
        self.assertEqual(self.docs.uuids_by_address("10.0.0.5"), [A, B])

    def test_rowsByAddress(self) -> None:
        """rows_by_address: (uuid, row) of each instance holding the address, once each, sorted; none for garbage."""
        doc = instanceDoc(B, "10.0.0.5", "net-b")
        doc["nics"].append({"mac": "fa:16:3e:00:00:09", "network": {"id": "net-c"}, "fixed_ips": [{"ip": "10.0.0.5"}]})
        self.docs.import_instances([doc, instanceDoc(A, "10.0.0.5", "net-a"), instanceDoc(C, "10.0.0.6")])
        self.docs.set_password(A, "pa")
        found = self.docs.rows_by_address("::ffff:10.0.0.5")
        self.assertEqual([(uuid, row.document["uuid"], row.password) for uuid, row in found], [(A, A, "pa"), (B, B, None)])
        self.assertEqual([uuid for uuid, _ in self.docs.rows_by_address("10.0.0.6")], [C])
        self.assertEqual(self.docs.rows_by_address("10.0.0.7"), [])
        self.assertEqual(self.docs.rows_by_address("not-an-ip"), [])

    def test_reimportMovesPorts(self) -> None:
        """A re-import with another IP drops the old address."""
        self.docs.import_instances([instanceDoc(A, "10.0.0.5")])
        self.docs.import_instances([instanceDoc(A, "10.0.0.9")])
        self.assertEqual(self.docs.uuids_by_address("10.0.0.5"), [])
        self.assertEqual(self.docs.uuids_by_address("10.0.0.9"), [A])

    def test_delete(self) -> None:
        """delete removes the instance and its ports; deleting again reports False."""
        self.docs.import_instances([instanceDoc(A, "10.0.0.5"), instanceDoc(B, "10.0.0.6")])
        self.assertIs(self.docs.delete_instance(A), True)
        self.assertIsNone(self.docs.get(A))
        self.assertEqual(self.docs.uuids_by_address("10.0.0.5"), [])
        self.assertEqual(self.docs.uuids_by_address("10.0.0.6"), [B])
        self.assertIs(self.docs.delete_instance(A), False)
        self.assertEqual(self.scalar("SELECT COUNT(*) FROM ports WHERE uuid = :uuid", uuid=A), 0)

    def test_deleteAndReimportKeepsEc2Id(self) -> None:
        """An instance deleted and imported again gets its old EC2 id back."""
        self.docs.import_instances([instanceDoc(A)])
        first = self.docs.get(A).document["ec2_ids"]["instance"]  # type: ignore[union-attr]
        self.docs.delete_instance(A)
        self.docs.import_instances([instanceDoc(B), instanceDoc(A)])
        self.assertEqual(self.docs.get(A).document["ec2_ids"]["instance"], first)  # type: ignore[union-attr]


class RouterTests(DocumentsTestsMixin, SynchronousTestCase):
    """Router documents."""

    def test_importListDelete(self) -> None:
        """Routers are imported, listed by id, re-imported in place and deleted."""
        self.assertEqual(
            self.docs.import_routers([{"id": "r2", "networks": ["n3"]}, {"id": "r1", "project_id": "p", "networks": ["n1", "n2"]}]),
            ["r2", "r1"],
        )
        self.assertEqual(
            self.docs.list_routers(), [Router(id="r1", project_id="p", networks=("n1", "n2")), Router(id="r2", networks=("n3",))]
        )
        self.docs.import_routers([{"id": "r1", "networks": ["n9"]}])
        self.assertEqual(self.docs.list_routers()[0], Router(id="r1", networks=("n9",)))
        self.assertIs(self.docs.delete_router("r1"), True)
        self.assertIs(self.docs.delete_router("r1"), False)
        self.assertEqual(self.docs.list_routers(), [Router(id="r2", networks=("n3",))])
        self.assertEqual(self.scalar("SELECT COUNT(*) FROM router_networks WHERE network_id <> 'n3'"), 0)
        self.assertEqual(self.scalar("SELECT network_id FROM router_networks"), "n3")

    def test_badRouterWritesNothing(self) -> None:
        """A bad router in a batch is named and nothing is written."""
        e = self.assertRaises(DocumentError, self.docs.import_routers, [{"id": "r1"}, {"id": "r2", "networks": "n"}])
        self.assertEqual(str(e), "[1].networks: expected a list, got a string")
        self.assertEqual(self.docs.list_routers(), [])

    def test_duplicateRouter(self) -> None:
        """The same router twice in a batch is an error, as for instances."""
        e = self.assertRaises(DocumentError, self.docs.import_routers, [{"id": "r1"}, {"id": "r1"}])
        self.assertEqual(str(e), "[1].id: r1 appears twice in this import")
        self.assertEqual(self.docs.list_routers(), [])


RULE_TESTS = ("ImportTests", "DeclaredAssignedTests", "PasswordTests", "AddressTests", "RouterTests", "InstanceStoreTests",
              "StoredDocumentTests", "OlderDocumentTests", "ExplicitEc2IdTests")
"""The test classes of the store's rules, on any database: tests/integration/test_sql_store.py runs them on the servers."""


class SharedFileTests(SynchronousTestCase):
    """mdsvc-manage and the service are two processes on one file: writes are seen at once."""

    def test_otherInstanceSeesWrites(self) -> None:
        """A write through one SQLDocuments is seen at once by another on the same file."""
        path = os.path.join(self.mktemp(), "shared.sqlite")
        reader = fileDocuments(path)
        writer = fileDocuments(path)
        self.assertEqual(reader.uuids_by_address("10.0.0.5"), [])
        writer.import_instances([instanceDoc(A, "10.0.0.5")])
        self.assertEqual(reader.uuids_by_address("10.0.0.5"), [A])
        self.assertIs(reader.set_password(A, "p"), True)
        self.assertEqual(writer.get(A).password, "p")  # type: ignore[union-attr]
        writer.delete_instance(A)
        self.assertIsNone(reader.get(A))

    def test_openConnectionSeesWrites(self) -> None:
        """A reader whose kept connection was open during another process's write reads the new data."""
        path = os.path.join(self.mktemp(), "shared.sqlite")
        reader = fileDocuments(path)
        self.addCleanup(reader.close)
        reader.import_instances([instanceDoc(A)])
        self.assertEqual(len(reader.list_instances()), 1)
        other = sqlite3.connect(path)  # (another process: mdsvc-manage)
        self.addCleanup(other.close)
        with other:
            other.execute("DELETE FROM instances")
        self.assertEqual(reader.list_instances(), [])


class KeptConnectionTests(SynchronousTestCase):
    """
    Store calls reuse their connections (a new one must recreate the -shm file, which fails on
    a full disk) without keeping a read transaction open (writers would not be seen).
    """

    def setUp(self) -> None:
        self.path = os.path.join(self.mktemp(), "kept.sqlite")
        self.docs = fileDocuments(self.path)
        self.addCleanup(self.docs.close)
        self.docs.import_instances([instanceDoc(A, "10.0.0.5"), instanceDoc(B, "10.0.0.6")])

    def test_connectionsKept(self) -> None:
        """Many reads and writes in one thread open one connection."""
        from sqlalchemy import event

        self.docs.close()
        opened = []
        event.listen(self.docs.engine, "connect", lambda *args: opened.append(args))
        for _ in range(10):
            self.assertEqual(self.docs.get(A).document["uuid"], A)  # type: ignore[union-attr]
            self.assertEqual(self.docs.uuids_by_address("10.0.0.6"), [B])
            self.assertEqual(len(self.docs.list_instances()), 2)
        self.docs.set_password(A, "pw")
        self.docs.import_instances([instanceDoc(C)])
        self.assertEqual(len(opened), 1)

    def test_noReadTransactionLeftOpen(self) -> None:
        """After a read, another writer's commit is seen, and a full checkpoint is not blocked by us."""
        self.assertIsNone(self.docs.get(C))
        self.assertEqual(len(self.docs.list_instances()), 2)
        other = fileDocuments(self.path)
        self.addCleanup(other.close)
        other.import_instances([instanceDoc(C, "10.0.0.7")])
        self.assertEqual(self.docs.uuids_by_address("10.0.0.7"), [C])
        conn = sqlite3.connect(self.path)
        self.addCleanup(conn.close)
        self.assertEqual(conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0], 0)  # 0: not blocked by a reader

    def test_failedQueryEndsTransaction(self) -> None:
        """A read that fails leaves no transaction behind; the next read works."""
        def failing(conn: Any) -> None:
            conn.exec_driver_sql("SELECT * FROM instances").fetchone()
            raise RuntimeError("query failed")

        self.assertRaises(RuntimeError, self.docs._read, failing)
        fileDocuments(self.path).import_instances([instanceDoc(D)])
        self.assertIsNotNone(self.docs.get(D))

    def test_close(self) -> None:
        """close() closes the kept connections; a later call opens a new one."""
        self.docs.close()
        self.assertEqual(self.docs.get(A).document["uuid"], A)  # type: ignore[union-attr]


class FullDiskTests(SynchronousTestCase):
    """
    A store on a filesystem with no byte left (a real tmpfs, filled with another file): every
    read still answers; a write fails with an error, and the password POST is Nova's 500.
    """

    COUNT = 40

    def setUp(self) -> None:
        import subprocess
        import tempfile

        if not hasattr(os, "geteuid") or os.geteuid() != 0:
            raise SkipTest("mounting a tmpfs to fill needs root")
        self.mountpoint = tempfile.mkdtemp(prefix="mdsvc-full-")
        self.addCleanup(os.rmdir, self.mountpoint)
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m,mode=0700", "tmpfs", self.mountpoint],
                              capture_output=True, text=True)
        if done.returncode != 0:
            raise SkipTest(f"cannot mount a tmpfs here: {done.stderr.strip() or done.returncode}")
        self.addCleanup(subprocess.run, ["umount", "-l", self.mountpoint], check=True)
        self.path = os.path.join(self.mountpoint, "state", "mdsvc.sqlite")
        self.docs = fileDocuments(self.path)
        self.addCleanup(self.docs.close)
        self.uuids = [f"00000000-0000-4000-8000-{i:012x}" for i in range(self.COUNT)]
        self.docs.import_instances(
            [instanceDoc(u, f"10.0.1.{i + 1}", user_data=base64.b64encode(b"#cloud-config\n" * 20).decode())
             for i, u in enumerate(self.uuids)]
        )
        self.docs.import_routers([{"id": "r1", "networks": ["net-a"]}])
        self.fill()

    def fill(self) -> None:
        """Write a file until the filesystem has not one byte left."""
        fd = os.open(os.path.join(self.mountpoint, "filler"), os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            for size in (65536, 4096, 1):
                try:
                    while True:
                        os.write(fd, b"\0" * size)
                except OSError as e:
                    self.assertEqual(e.errno, errno.ENOSPC)
        finally:
            os.close(fd)
        self.assertEqual(os.statvfs(self.mountpoint).f_bavail, 0)

    def test_documentsRead(self) -> None:
        """Every instance, address, list and router reads through SQLDocuments."""
        for i, uuid in enumerate(self.uuids):
            row = self.docs.get(uuid)
            assert row is not None
            self.assertEqual(row.instance().uuid, uuid)
            self.assertEqual(self.docs.uuids_by_address(f"10.0.1.{i + 1}"), [uuid])
            self.assertEqual(self.docs.ports_by_network_ip(["net-a"], f"10.0.1.{i + 1}"), [(uuid, "proj")])
        self.assertEqual(len(self.docs.list_instances()), self.COUNT)
        self.assertEqual(self.docs.router_networks("r1"), ["net-a"])

    def test_storeReads(self) -> None:
        """Every instance reads through DocumentStore, by uuid and by address."""
        store = DocumentStore(self.docs, synchronous)
        for i, uuid in enumerate(self.uuids):
            self.assertEqual(self.successResultOf(store.get(uuid)).uuid, uuid)
            self.assertEqual(self.successResultOf(store.by_address(f"10.0.1.{i + 1}")).uuid, uuid)
        self.assertEqual(self.successResultOf(store.by_provider("r1", "10.0.1.1")), [(self.uuids[0], "proj")])

    def test_otherStoreObjectReads(self) -> None:
        """A second store object on the same file (the lookup's) reads too while the first is open."""
        other = fileDocuments(self.path)
        self.addCleanup(other.close)
        for uuid in self.uuids:
            self.assertEqual(other.get(uuid).document["uuid"], uuid)  # type: ignore[union-attr]

    def test_writeFailsReadsGoOn(self) -> None:
        """A write fails with an error and changes nothing; reads go on working."""
        big = [instanceDoc(f"11111111-0000-4000-8000-{i:012x}", metadata={"k": "v" * 200}) for i in range(200)]
        e = self.assertRaises(sqlite3.OperationalError, self.docs.import_instances, big)
        self.assertIn("full", str(e))
        self.assertIsNone(self.docs.get("11111111-0000-4000-8000-000000000000"))
        for uuid in self.uuids:
            self.assertEqual(self.docs.get(uuid).document["uuid"], uuid)  # type: ignore[union-attr]

    def test_passwordPost(self) -> None:
        """
        Through the API every instance's metadata answers 200; a password POST that cannot be
        written is Nova's 500, logged, with no traceback to the guest.
        """
        from twisted.internet.task import Clock
        from twisted.logger import capturedLogs

        from mdsvc.api.app import MetadataApp
        from mdsvc.api.handler import APIHandler
        from mdsvc.api.identify import Identifier, sign
        from tests.http import request, response

        store = DocumentStore(self.docs, synchronous)
        handler = APIHandler(MetadataApp(store=store, identifier=Identifier(True, "s", False), clock=Clock(), cache_ttl=0))

        def call(uuid: str, path: bytes, method: bytes = b"GET", body: bytes = b"") -> Any:
            headers = {b"X-Instance-ID": uuid.encode(), b"X-Tenant-ID": b"proj", b"X-Instance-ID-Signature": sign("s", uuid).encode(),
                       b"X-Forwarded-For": b"10.0.1.1"}
            _, channel = request(handler, method, path, headers, body)
            return response(channel)

        for uuid in self.uuids:
            r = call(uuid, b"/openstack/latest/meta_data.json")
            self.assertEqual(r.code, 200, r.body)
            self.assertEqual(json.loads(r.body)["uuid"], uuid)
            self.assertEqual(call(uuid, b"/latest/user-data").code, 200)
        password = "x" * 1000
        for uuid in self.uuids:  # enough to need new pages, whatever free space the WAL had
            with capturedLogs() as events:
                r = call(uuid, b"/openstack/latest/password", b"POST", password.encode())
            if r.code == 500:
                break
            self.assertEqual(r.code, 200)
        self.assertEqual(r.code, 500)
        self.assertIn(b"An unknown error has occurred. Please try your request again.", r.body)
        self.assertNotIn(b"Traceback", r.body)
        self.assertNotIn(b"full", r.body)
        self.assertTrue(any("storing the password" in str(e.get("log_format")) for e in events))
        self.flushLoggedErrors(sqlite3.OperationalError)
        self.assertEqual(call(self.uuids[-1], b"/openstack/latest/meta_data.json").code, 200)


def synchronous(f: Any, *args: Any) -> Deferred[Any]:
    """Run a blocking call at once; the result as a Deferred."""
    return maybeDeferred(f, *args)


class InstanceStoreTests(DocumentsTestsMixin, SynchronousTestCase):
    """L{DocumentStore} with a synchronous runner."""

    def setUp(self) -> None:
        super().setUp()
        self.documents = self.docs
        self.store = DocumentStore(self.documents, synchronous)
        self.documents.import_instances(
            [instanceDoc(A, "10.0.0.5"), instanceDoc(B, "10.0.0.7", "net-1"), instanceDoc(C, "10.0.0.7", "net-2")]
        )

    def test_interface(self) -> None:
        """The store provides IInstanceStore."""
        self.assertTrue(verifyObject(IInstanceStore, self.store))

    def test_by_provider(self) -> None:
        """A provider is a router document: ports with the address in its networks, or None for none."""
        self.documents.import_routers([{"id": "edge-x", "networks": ["net-1", "net-2"]}, {"id": "empty", "networks": []}])
        self.assertEqual(self.successResultOf(self.store.by_provider("edge-x", "10.0.0.7")), [(B, "proj"), (C, "proj")])
        self.assertEqual(self.successResultOf(self.store.by_provider("edge-x", "10.0.0.9")), [])
        self.assertIsNone(self.successResultOf(self.store.by_provider("empty", "10.0.0.7")))
        self.assertIsNone(self.successResultOf(self.store.by_provider("nope", "10.0.0.7")))

    def test_get(self) -> None:
        """get fires with the Instance."""
        instance = self.successResultOf(self.store.get(A))
        self.assertIsInstance(instance, Instance)
        self.assertEqual((instance.uuid, instance.name, instance.fixed_ips()[0].ip), (A, "vm-a", "10.0.0.5"))

    def test_getUnknown(self) -> None:
        """get of an unknown uuid fires with None."""
        self.assertIsNone(self.successResultOf(self.store.get("zzz")))

    def test_byAddress(self) -> None:
        """by_address fires with the one instance holding the address."""
        self.assertEqual(self.successResultOf(self.store.by_address("10.0.0.5")).uuid, A)
        self.assertEqual(self.successResultOf(self.store.by_address("::ffff:10.0.0.5")).uuid, A)

    def test_byAddressNone(self) -> None:
        """by_address of an unknown or invalid address fires with None."""
        self.assertIsNone(self.successResultOf(self.store.by_address("10.0.0.6")))
        self.assertIsNone(self.successResultOf(self.store.by_address("garbage")))

    def test_byAddressAmbiguous(self) -> None:
        """by_address fails with AmbiguousAddress naming the address and every uuid."""
        failure = self.failureResultOf(self.store.by_address("10.0.0.7"), AmbiguousAddress)
        self.assertEqual(failure.value.args, ("10.0.0.7", [B, C]))

    def test_setPassword(self) -> None:
        """set_password fires True, then False; an unknown instance fails with KeyError."""
        self.assertIs(self.successResultOf(self.store.set_password(A, "pw")), True)
        self.assertIs(self.successResultOf(self.store.set_password(A, "other")), False)
        self.assertEqual(self.successResultOf(self.store.get(A)).password, "pw")
        self.failureResultOf(self.store.set_password("zzz", "pw"), KeyError)

    def test_instanceEqualsDocument(self) -> None:
        """The Instance of the store is the document's, with what the store assigned."""
        row = self.documents.get(A)
        assert row is not None
        expected = instance_from_document(row.document)
        self.assertEqual(self.successResultOf(self.store.get(A)), expected)
        self.assertTrue(re.match(r"^r-[0-9a-z]{8}$", expected.reservation_id or ""))


class ThreadedStoreTests(TestCase):
    """L{DocumentStore.in_threads} on the reactor's real thread pool."""

    def test_inThreads(self) -> None:
        """Queries run in the reactor's threads and their results arrive in the reactor thread."""
        path = os.path.join(self.mktemp(), "threads.sqlite")
        fileDocuments(path).import_instances([instanceDoc(A, "10.0.0.5")])
        store = DocumentStore.in_threads(f"sqlite:{path}", reactor)
        verifyObject(IInstanceStore, store)

        d = store.by_address("10.0.0.5")

        def check(instance: Instance | None) -> Deferred[bool]:
            assert instance is not None
            self.assertEqual(instance.uuid, A)
            return store.set_password(A, "threaded")

        def checkPassword(stored: bool) -> Deferred[Instance | None]:
            self.assertIs(stored, True)
            return store.get(A)

        def checkGet(instance: Instance | None) -> None:
            assert instance is not None
            self.assertEqual(instance.password, "threaded")

        d.addCallback(check)
        d.addCallback(checkPassword)
        d.addCallback(checkGet)
        return d

    def test_openStore(self) -> None:
        """
        open_store builds a threaded store from an sqlite: URL, a database server's from its URL
        (here one whose driver is missing: one line saying so), and refuses other kinds, listing
        those available.
        """
        path = os.path.join(self.mktemp(), "url.sqlite")
        fileDocuments(path).import_instances([instanceDoc(U)])
        store = open_store(f"sqlite:{path}", reactor)
        self.assertIsInstance(store, DocumentStore)
        e = self.assertRaises(ValueError, open_store, "redis://x", reactor, plugins=[])
        self.assertEqual(str(e), "unknown instance store 'redis' (available: sqlite:PATH, postgresql://..., mysql+pymysql://..., "
                                 "nova)")
        e = self.assertRaises(ValueError, open_store, "mysql+nosuchdriver://u:secret@x/db", reactor)
        self.assertTrue(str(e).startswith("no driver for mysql+nosuchdriver://u:***@x/db"), str(e))
        e = self.assertRaises(ValueError, open_store, "mysql:x", reactor)
        self.assertEqual(str(e), "store = mysql: allowed: mysql://USER:PASSWORD@HOST/DB")
        e = self.assertRaises(ValueError, open_store, "nova:x", reactor)
        self.assertIn("store = nova takes no argument", str(e))
        e = self.assertRaises(ValueError, open_store, "sqlite:", reactor)
        self.assertEqual(str(e), "store = sqlite:PATH needs a file path")
        return store.get(U).addCallback(lambda instance: self.assertEqual(instance.uuid, U))

    def test_openDatabaseServerStore(self) -> None:
        """
        A database server's URL opens mdsvc's documents there through the same threaded store
        (connecting at the first query, not here).
        """
        from mdsvc.store.sql import SQLDocuments

        for url in ("postgresql://mdsvc:secret@127.0.0.1:1/mdsvc", "mysql+pymysql://mdsvc:secret@127.0.0.1:1/mdsvc"):
            store = open_store(url, reactor)
            self.assertIsInstance(store, DocumentStore)
            documents = store.documents  # type: ignore[attr-defined]
            self.assertIsInstance(documents, SQLDocuments)
            self.assertEqual(documents.url, url)
            self.assertNotIn("secret", documents.path)
            documents.close()

    def test_factory_interface(self) -> None:
        """The built-in stores are opened through the same interface as a vendor's."""
        from mdsvc.store import store_factory
        from mdsvc.store.nova import NovaStoreFactory

        self.assertTrue(verifyObject(IInstanceStoreFactory, SQLStoreFactory("sqlite")))
        self.assertTrue(verifyObject(IInstanceStoreFactory, SQLStoreFactory("postgresql")))
        self.assertTrue(verifyObject(IInstanceStoreFactory, NovaStoreFactory()))
        for url, kind, name in (("sqlite:/x", SQLStoreFactory, "sqlite"), ("nova", NovaStoreFactory, "nova"),
                                ("postgresql://u@h/d", SQLStoreFactory, "postgresql"),
                                ("mysql+pymysql://u@h/d", SQLStoreFactory, "mysql+pymysql")):
            factory = store_factory(url, plugins=[])
            self.assertIsInstance(factory, kind)
            self.assertEqual(factory.name, name)


class StoredDocumentTests(DocumentsTestsMixin, SynchronousTestCase):
    """What the file holds."""

    def test_documentIsJson(self) -> None:
        """The stored document is JSON without the password, which lives in its own column."""
        self.docs.import_instances([instanceDoc(A, password="pw")])
        with self.docs.engine.connect() as conn:
            document, password, project = conn.execute(text("SELECT document, password, project_id FROM instances")).one()
        self.assertNotIn("password", json.loads(document))
        self.assertEqual((password, project), ("pw", "proj"))


class OlderDocumentTests(DocumentsTestsMixin, SynchronousTestCase):
    """Documents imported under older, laxer rules are still served."""

    def test_storedBeforeStricterRules(self) -> None:
        """A stored document that today's import would refuse (empty hostname) still reads back."""
        self.docs.import_instances([instanceDoc(A, "10.0.0.5")])
        with self.docs.engine.begin() as conn:
            conn.execute(text("UPDATE instances SET document = :document WHERE uuid = :uuid"),
                         {"document": json.dumps(dict(instanceDoc(A, "10.0.0.5"), hostname="")), "uuid": A})
        store = DocumentStore(self.docs, synchronous)
        self.assertEqual(self.successResultOf(store.by_address("10.0.0.5")).hostname, "")
        self.assertRaises(DocumentError, self.docs.import_instances, [self.docs.get(A).document])  # type: ignore[union-attr]


class ExplicitEc2IdTests(DocumentsTestsMixin, SynchronousTestCase):
    """EC2 ids given in documents are reserved against automatic ones."""

    def test_automatic_ids_skip_explicit_ones(self) -> None:
        """After an instance with explicit id 5, automatic ids start above it."""
        self.docs.import_instances([dict(instanceDoc(A), ec2_ids={"instance": 5})])
        self.docs.import_instances([instanceDoc(B)])
        ids = {u: self.docs.get(u).instance().ec2_instance_id for u in (A, B)}  # type: ignore[union-attr]
        self.assertEqual(ids[A], 5)
        self.assertGreater(ids[B], 5)

    def test_conflicting_explicit_id(self) -> None:
        """Two instances cannot share an explicit EC2 id; the second import writes nothing."""
        self.docs.import_instances([dict(instanceDoc(A), ec2_ids={"instance": 5})])
        e = self.assertRaises(DocumentError, self.docs.import_instances, [dict(instanceDoc(B), ec2_ids={"instance": 5})])
        self.assertEqual(str(e), f"ec2_ids.instance: 5 is already the EC2 id of instance {A}")
        self.assertIsNone(self.docs.get(B))

    def test_explicit_image_id_reserved(self) -> None:
        """An explicit image id is not handed to another image automatically."""
        self.docs.import_instances([dict(instanceDoc(A), image_id="img-a", ec2_ids={"images": {"img-a": 1}})])
        self.docs.import_instances([dict(instanceDoc(B), image_id="img-b")])
        self.assertNotEqual(self.docs.get(B).instance().ec2_image_ids["img-b"], 1)  # type: ignore[union-attr]

    def test_deleted_instance_id_reusable(self) -> None:
        """The explicit id of a deleted instance may be given to a new one."""
        self.docs.import_instances([dict(instanceDoc(A), ec2_ids={"instance": 5})])
        self.docs.delete_instance(A)
        self.docs.import_instances([dict(instanceDoc(B), ec2_ids={"instance": 5})])
        self.assertEqual(self.docs.get(B).instance().ec2_instance_id, 5)  # type: ignore[union-attr]


# The schema of the store files mdsvc wrote before the SQLAlchemy store (mdsvc/store/sqlite.py
# on Python's sqlite3, up to c62948e), as it created them: a fixture, never to be changed.
OLD_SCHEMA = """
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


class OldStoreFileTests(SynchronousTestCase):
    """
    A store file written by mdsvc before the SQLAlchemy store (its schema and rows as that code
    wrote them) opens and serves with nothing lost, and takes new writes as it is.
    """

    def setUp(self) -> None:
        directory = self.mktemp()
        os.makedirs(directory, mode=0o700)
        self.path = os.path.join(directory, "mdsvc.sqlite")
        conn = sqlite3.connect(self.path, isolation_level=None)
        conn.execute("PRAGMA journal_mode = WAL")
        conn.executescript(OLD_SCHEMA)
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute("BEGIN")
        for number, uuid, ip, network in ((1, A, "10.0.0.5", "net-a"), (7, B, "10.0.0.6", "net-b")):
            doc = dict(instanceDoc(uuid, ip, network), image_id=IMAGE, reservation_id=f"r-0000000{number}",
                       created_at="2025-01-01T00:00:00Z", ec2_ids={"instance": number, "images": {IMAGE: 3}})
            conn.execute("INSERT INTO instances(uuid, document, project_id, password, updated_at) VALUES (?, ?, ?, ?, ?)",
                         (uuid, json.dumps(doc), "proj", "guest-pw" if uuid == A else None, "2025-01-01T00:00:00+00:00"))
            conn.execute("INSERT INTO ports(uuid, network_id, ip, mac) VALUES (?, ?, ?, ?)", (uuid, network, ip, "fa:16:3e:00:00:01"))
            conn.execute("INSERT INTO ec2_instance_ids(id, uuid) VALUES (?, ?)", (number, uuid))
        conn.execute("INSERT INTO ec2_image_ids(id, image_uuid) VALUES (3, ?)", (IMAGE,))
        conn.execute("INSERT INTO routers(id, document, project_id) VALUES ('r1', ?, 'proj')",
                     (json.dumps({"id": "r1", "project_id": "proj", "networks": ["net-b", "net-a"]}),))
        conn.executemany("INSERT INTO router_networks(router_id, network_id) VALUES ('r1', ?)", [("net-b",), ("net-a",)])
        conn.execute("COMMIT")
        conn.close()
        os.chmod(self.path, 0o600)
        self.docs = fileDocuments(self.path)
        self.addCleanup(self.docs.close)

    def schema(self) -> list[Any]:
        """The file's tables and indexes, as SQLite keeps them."""
        conn = sqlite3.connect(self.path)
        try:
            return conn.execute("SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY name").fetchall()
        finally:
            conn.close()

    def test_reads(self) -> None:
        """
        Every row reads back as it was written: documents, passwords, addresses, routers in
        their order; the file's schema is left as it was.
        """
        before = self.schema()
        a = self.docs.get(A)
        assert a is not None
        self.assertEqual((a.password, a.instance().ec2_instance_id, a.instance().reservation_id), ("guest-pw", 1, "r-00000001"))
        self.assertEqual(self.docs.uuids_by_address("10.0.0.6"), [B])
        self.assertEqual(self.docs.list_instances(), [(A, "vm-a", "proj", ["10.0.0.5"]), (B, "vm-b", "proj", ["10.0.0.6"])])
        self.assertEqual(self.docs.router_networks("r1"), ["net-b", "net-a"])
        self.assertEqual(self.docs.ports_by_network_ip(["net-a", "net-b"], "10.0.0.5"), [(A, "proj")])
        self.assertEqual(self.docs.ports_by_network_mac(["net-b"], "FA:16:3E:00:00:01"), [(B, "proj")])
        self.assertEqual(self.docs.router_document("r1"), {"id": "r1", "project_id": "proj", "networks": ["net-b", "net-a"]})
        store = DocumentStore(self.docs, synchronous)
        self.assertEqual(self.successResultOf(store.by_address("10.0.0.5")).password, "guest-pw")
        self.assertEqual(self.successResultOf(store.by_provider("r1", "10.0.0.6")), [(B, "proj")])
        self.assertEqual(self.schema(), before)

    def test_writes(self) -> None:
        """
        Imports, passwords and deletes work on the old tables: numbers go on above the old ones,
        what was assigned stays, a deleted instance's ports go, routers are replaced in order.
        """
        self.assertIs(self.docs.set_password(A, "again"), False)
        self.assertIs(self.docs.set_password(B, "b-pw"), True)
        self.docs.import_instances([instanceDoc(A, "10.0.0.9", image_id=IMAGE, name="renamed"), instanceDoc(C, "10.0.0.7", image_id=OTHER_IMAGE)])
        a, c = self.docs.get(A), self.docs.get(C)
        assert a is not None and c is not None
        self.assertEqual((a.password, a.instance().ec2_instance_id, a.instance().reservation_id, a.instance().name),
                         ("guest-pw", 1, "r-00000001", "renamed"))
        self.assertEqual(a.instance().ec2_image_ids, {IMAGE: 3})
        self.assertEqual(c.instance().ec2_instance_id, 8)
        self.assertEqual(c.instance().ec2_image_ids, {OTHER_IMAGE: 4})
        self.assertEqual((self.docs.uuids_by_address("10.0.0.5"), self.docs.uuids_by_address("10.0.0.9")), ([], [A]))
        self.assertIs(self.docs.delete_instance(B), True)
        self.assertEqual(self.docs.uuids_by_address("10.0.0.6"), [])
        self.docs.import_routers([{"id": "r1", "networks": ["net-c", "net-a", "net-b"]}])
        self.assertEqual(self.docs.router_networks("r1"), ["net-c", "net-a", "net-b"])
        self.assertIs(self.docs.delete_router("r1"), True)
        conn = sqlite3.connect(self.path)
        self.addCleanup(conn.close)
        self.assertEqual(conn.execute("SELECT COUNT(*) FROM ports WHERE uuid = ?", (B,)).fetchone()[0], 0)
        self.assertEqual(conn.execute("SELECT COUNT(*) FROM router_networks").fetchone()[0], 0)
        # the old tables are still the old ones: nothing was migrated
        self.assertNotIn("id", [row[1] for row in conn.execute("PRAGMA table_info(ports)")])

    def test_startupChecks(self) -> None:
        """The service's startup checks take the old file as it is (modes, soundness), changing none of its rows."""
        from mdsvc.store.startup import prepare_store

        self.assertEqual(prepare_store(f"sqlite:{self.path}"), self.path)
        self.assertEqual(len(self.docs.list_instances()), 2)
