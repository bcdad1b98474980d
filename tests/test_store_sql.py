"""
mdsvc's document store on the SQLAlchemy layer (L{mdsvc.store.sql}): the rules of the embedded
store, checked here on an SQLite URL; the same code on a real PostgreSQL and MariaDB,
shared by two api nodes: tests/integration/test_sql_store.py.
"""

from __future__ import annotations

import os
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from mdsvc.config import load_config
from mdsvc.model import DocumentError
from mdsvc.store.sql import SQLDocuments, check_sql_store, is_sql_url


def doc(uuid: str, **changes: Any) -> dict[str, Any]:
    """An instance document with one port."""
    values: dict[str, Any] = {
        "uuid": uuid, "name": f"vm-{uuid}", "project_id": "p1", "image_id": "img-1",
        "nics": [{"port_id": f"port-{uuid}", "mac": "FA:16:3E:00:00:01", "network": {"id": "net-1"},
                  "fixed_ips": [{"ip": f"10.0.0.{len(uuid)}", "subnet": {"cidr": "10.0.0.0/24"}}]}],
    }
    values.update(changes)
    return values


class SQLDocumentsTests(SynchronousTestCase):
    """Imports, numbering, lookups and passwords through SQLAlchemy."""

    def setUp(self) -> None:
        """A store on a fresh SQLite file, through SQLAlchemy."""
        self.docs = SQLDocuments(f"sqlite:///{os.path.abspath(self.mktemp())}")
        self.addCleanup(self.docs.close)

    def test_urls(self) -> None:
        """Database servers' URLs name this store; sqlite:PATH and nova do not."""
        self.assertEqual([is_sql_url(u) for u in ("postgresql://u:p@h/d", "mysql+pymysql://u:p@h/d", "sqlite:/var/x", "nova")],
                         [True, True, False, False])

    def test_import_atomic(self) -> None:
        """A bad document anywhere in an import: nothing imported."""
        self.assertRaises(DocumentError, self.docs.import_instances, [doc("a"), doc("b", hostname="bad host")])
        self.assertIsNone(self.docs.get("a"))

    def test_import_and_read(self) -> None:
        """Documents read back with the values the store assigned; EC2 numbers shared by image, one per instance."""
        self.assertEqual(self.docs.import_instances([doc("a"), doc("bb")]), ["a", "bb"])
        a, bb = self.docs.get("a"), self.docs.get("bb")
        assert a is not None and bb is not None
        self.assertEqual((a.instance().ec2_instance_id, bb.instance().ec2_instance_id), (1, 2))
        self.assertEqual(a.instance().ec2_image_ids, bb.instance().ec2_image_ids)
        self.assertTrue(a.instance().reservation_id.startswith("r-"))
        self.docs.import_instances([doc("a", name="renamed")])
        again = self.docs.get("a")
        assert again is not None
        self.assertEqual((again.instance().name, again.instance().ec2_instance_id, again.instance().reservation_id),
                         ("renamed", 1, a.instance().reservation_id))

    def test_given_numbers(self) -> None:
        """A number the document gives is reserved; one another instance holds is refused."""
        self.docs.import_instances([doc("a", ec2_ids={"instance": 40})])
        self.docs.import_instances([doc("bb")])
        bb = self.docs.get("bb")
        assert bb is not None
        self.assertEqual(bb.instance().ec2_instance_id, 41)
        self.assertRaises(DocumentError, self.docs.import_instances, [doc("ccc", ec2_ids={"instance": 40})])

    def test_lookups(self) -> None:
        """By address, by network and IP or MAC, routers' networks."""
        self.docs.import_instances([doc("a")])
        self.docs.import_routers([{"id": "r1", "project_id": "p1", "networks": ["net-1", "net-2"]}])
        self.assertEqual(self.docs.uuids_by_address("10.0.0.1"), ["a"])
        self.assertEqual(self.docs.ports_by_network_ip(["net-1"], "10.0.0.1"), [("a", "p1")])
        self.assertEqual(self.docs.ports_by_network_mac(["net-1"], "fa:16:3e:00:00:01"), [("a", "p1")])
        self.assertEqual(self.docs.router_networks("r1"), ["net-1", "net-2"])
        self.assertIsNone(self.docs.router_networks("r2"))
        self.assertEqual([r.id for r in self.docs.list_routers()], ["r1"])
        self.assertEqual(self.docs.list_instances(), [("a", "vm-a", "p1", ["10.0.0.1"])])
        self.assertTrue(self.docs.delete_instance("a"))
        self.assertEqual(self.docs.uuids_by_address("10.0.0.1"), [])
        self.assertTrue(self.docs.delete_router("r1"))

    def test_password_once(self) -> None:
        """Set once; kept across re-imports; KeyError for no instance."""
        self.docs.import_instances([doc("a")])
        self.assertTrue(self.docs.set_password("a", "pw"))
        self.assertFalse(self.docs.set_password("a", "other"))
        self.docs.import_instances([doc("a")])
        row = self.docs.get("a")
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
