"""
mdsvc's document store (L{mdsvc.store.sql}): what it does on every database, checked here on
the embedded file (C{sqlite:PATH}); the same code on a real PostgreSQL and MariaDB, shared by
two api nodes: tests/integration/test_sql_store.py (which also runs tests/test_store.py's rule
tests there).
"""

from __future__ import annotations

import os
from typing import Any

from twisted.internet.defer import maybeDeferred, succeed
from twisted.trial.unittest import SynchronousTestCase

from mdsvc.config import load_config
from mdsvc.model import DocumentError
from mdsvc.store.sql import SQLDocuments, check_sql_store, is_sql_url

# Instance uuids (canonical, as every instance document's), sorted as their names
A = "aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa"
BB = "bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb"
CCC = "cccccccc-cccc-4ccc-8ccc-cccccccccccc"
NAMES = {A: "a", BB: "bb", CCC: "ccc"}


def doc(uuid: str, **changes: Any) -> dict[str, Any]:
    """An instance document with one port (10.0.0.1 for A, .2 for BB, .3 for CCC)."""
    name = NAMES[uuid]
    values: dict[str, Any] = {
        "uuid": uuid, "name": f"vm-{name}", "project_id": "p1", "image_id": "img-1",
        "nics": [{"port_id": f"port-{name}", "mac": "FA:16:3E:00:00:01", "network": {"id": "net-1"},
                  "fixed_ips": [{"ip": f"10.0.0.{len(name)}", "subnet": {"cidr": "10.0.0.0/24"}}]}],
    }
    values.update(changes)
    return values


class SQLDocumentsTests(SynchronousTestCase):
    """Imports, numbering, lookups and passwords."""

    def setUp(self) -> None:
        """A store on a fresh SQLite file."""
        self.docs = SQLDocuments(f"sqlite:{self.mktemp()}")
        self.addCleanup(self.docs.close)

    def test_urls(self) -> None:
        """Database servers' URLs name this store; sqlite:PATH and nova do not."""
        self.assertEqual([is_sql_url(u) for u in ("postgresql://u:p@h/d", "mysql+pymysql://u:p@h/d", "sqlite:/var/x", "nova")],
                         [True, True, False, False])

    def test_import_atomic(self) -> None:
        """A bad document anywhere in an import: nothing imported."""
        self.assertRaises(DocumentError, self.docs.import_instances, [doc(A), doc(BB, hostname="bad host")])
        self.assertIsNone(self.docs.get(A))

    def test_import_and_read(self) -> None:
        """Documents read back with the values the store assigned; EC2 numbers shared by image, one per instance."""
        self.assertEqual(self.docs.import_instances([doc(A), doc(BB)]), [A, BB])
        a, bb = self.docs.get(A), self.docs.get(BB)
        assert a is not None and bb is not None
        self.assertEqual((a.instance().ec2_instance_id, bb.instance().ec2_instance_id), (1, 2))
        self.assertEqual(a.instance().ec2_image_ids, bb.instance().ec2_image_ids)
        self.assertTrue(a.instance().reservation_id.startswith("r-"))
        self.docs.import_instances([doc(A, name="renamed")])
        again = self.docs.get(A)
        assert again is not None
        self.assertEqual((again.instance().name, again.instance().ec2_instance_id, again.instance().reservation_id),
                         ("renamed", 1, a.instance().reservation_id))

    def test_given_numbers(self) -> None:
        """A number the document gives is reserved; one another instance holds is refused."""
        self.docs.import_instances([doc(A, ec2_ids={"instance": 40})])
        self.docs.import_instances([doc(BB)])
        bb = self.docs.get(BB)
        assert bb is not None
        self.assertEqual(bb.instance().ec2_instance_id, 41)
        self.assertRaises(DocumentError, self.docs.import_instances, [doc(CCC, ec2_ids={"instance": 40})])

    def test_lookups(self) -> None:
        """By address, by network and IP or MAC, routers' networks."""
        self.docs.import_instances([doc(A)])
        self.docs.import_routers([{"id": "r1", "project_id": "p1", "networks": ["net-1", "net-2"]}])
        self.assertEqual(self.docs.uuids_by_address("10.0.0.1"), [A])
        self.assertEqual(self.docs.ports_by_network_ip(["net-1"], "10.0.0.1"), [(A, "p1")])
        self.assertEqual(self.docs.ports_by_network_mac(["net-1"], "fa:16:3e:00:00:01"), [(A, "p1")])
        self.assertEqual(self.docs.router_networks("r1"), ["net-1", "net-2"])
        self.assertIsNone(self.docs.router_networks("r2"))
        self.assertEqual([r.id for r in self.docs.list_routers()], ["r1"])
        self.assertEqual(self.docs.list_instances(), [(A, "vm-a", "p1", ["10.0.0.1"])])
        self.assertTrue(self.docs.delete_instance(A))
        self.assertEqual(self.docs.uuids_by_address("10.0.0.1"), [])
        self.assertTrue(self.docs.delete_router("r1"))

    def test_addresses_as_written(self) -> None:
        """A MAC is kept as the document writes it, and looked up whatever its case (as in the embedded store)."""
        self.docs.import_instances([doc(A)])
        row = self.docs.get(A)
        assert row is not None
        self.assertEqual(row.instance().nics[0].mac, "FA:16:3E:00:00:01")
        for mac in ("fa:16:3e:00:00:01", "FA:16:3E:00:00:01"):
            self.assertEqual(self.docs.ports_by_network_mac(["net-1"], mac), [(A, "p1")])

    def test_router_document(self) -> None:
        """A router's stored document (mdsvc-manage router show), or None."""
        self.docs.import_routers([{"id": "r1", "project_id": "p1", "networks": ["net-1"]}])
        self.assertEqual(self.docs.router_document("r1"), {"id": "r1", "project_id": "p1", "networks": ["net-1"]})
        self.assertIsNone(self.docs.router_document("r2"))

    def test_exists(self) -> None:
        """A store is there once an import made its tables; asking makes nothing."""
        fresh = SQLDocuments(f"sqlite:{self.mktemp()}")
        self.addCleanup(fresh.close)
        self.assertFalse(fresh.exists())
        self.assertFalse(fresh.exists())
        fresh.import_routers([{"id": "r1"}])
        self.assertTrue(fresh.exists())
        again = SQLDocuments(fresh.url)
        self.addCleanup(again.close)
        self.assertTrue(again.exists())

    def test_password_once(self) -> None:
        """Set once; kept across re-imports; KeyError for no instance."""
        self.docs.import_instances([doc(A)])
        self.assertTrue(self.docs.set_password(A, "pw"))
        self.assertFalse(self.docs.set_password(A, "other"))
        self.docs.import_instances([doc(A)])
        row = self.docs.get(A)
        assert row is not None
        self.assertEqual(row.password, "pw")
        self.assertRaises(KeyError, self.docs.set_password, "nobody", "pw")

    def test_missing_driver(self) -> None:
        """A server URL whose driver is not installed stops startup with one line naming the option."""
        path = os.path.abspath(self.mktemp())
        with open(path, "w") as f:
            f.write("[mdsvc]\nstore = mysql+nosuchdriver://mdsvc:secret@db/mdsvc\n")
        config = load_config(path)
        from mdsvc.store.nova import where

        e = str(self.assertRaises(ValueError, check_sql_store, config.store, where(config, "mdsvc", "store")))
        self.assertIn(f"{path}:2: [mdsvc] store: no driver for mysql+nosuchdriver://mdsvc:***@db/mdsvc", e)


class LookupOnDatabaseServerTests(SynchronousTestCase):
    """The agent's lookup = store on the documents (here the file's; a server's in the integration tests)."""

    def test_found(self) -> None:
        """The guest's port is found by network and address, and by MAC whatever its case."""
        from mdsvc.lookup.store import StoreLookup

        docs = SQLDocuments(f"sqlite:{self.mktemp()}")
        self.addCleanup(docs.close)
        docs.import_instances([doc(A)])
        lookup = StoreLookup(docs, lambda f, *args: succeed(f(*args)))  # type: ignore[arg-type]
        self.assertEqual(self.successResultOf(lookup.lookup("10.0.0.1", "net-1")), (A, "p1"))
        self.assertEqual(self.successResultOf(lookup.lookup("10.0.0.1", "net-1", mac="fa:16:3e:00:00:01")), (A, "p1"))
        self.assertIsNone(self.successResultOf(lookup.lookup("10.0.0.9", "net-1")))

    def test_unavailable(self) -> None:
        """A server that cannot be reached is LookupUnavailable (the agent answers 503), the password masked."""
        from mdsvc.interfaces import LookupUnavailable
        from mdsvc.lookup.store import StoreLookup

        docs = SQLDocuments("postgresql://mdsvc:secret@127.0.0.1:1/mdsvc", timeout=1)
        self.addCleanup(docs.close)
        lookup = StoreLookup(docs, lambda f, *args: maybeDeferred(f, *args))  # type: ignore[arg-type]
        failure = self.failureResultOf(lookup.lookup("10.0.0.1", "net-1"), LookupUnavailable)
        self.assertNotIn("secret", str(failure.value))
