"""
Engines and transactions for Nova's databases (L{mdsvc.store.nova.database}), and what a
configuration of C{store = nova} must give (L{mdsvc.store.nova.check_nova_store}).
"""

from __future__ import annotations

import os

from sqlalchemy import text
from twisted.trial.unittest import SynchronousTestCase

from mdsvc.config import ConfigError, load_config
from mdsvc.interfaces import StoreUnavailable
from mdsvc.store.nova import check_nova_store
from mdsvc.store.nova.cells import format_db_url
from mdsvc.store.nova.database import _connect_args, check_url, make_engine, read, shown, write


class URLTests(SynchronousTestCase):
    """URLs as nova.conf writes them."""

    def test_kinds(self) -> None:
        """MariaDB/MySQL, PostgreSQL and SQLite URLs; anything else is refused without showing the URL."""
        for url in ("mysql+pymysql://nova:pw@db/nova?charset=utf8", "postgresql://nova:pw@db/nova", "sqlite:////var/lib/nova.db"):
            check_url(url)
        for url in ("oracle://nova:secret@db/nova", "not a url"):
            e = self.assertRaises(ValueError, check_url, url)
            self.assertNotIn("secret", str(e))

    def test_password_masked(self) -> None:
        """A URL shown in a log line or an error has its password masked."""
        self.assertEqual(shown("mysql+pymysql://nova:s3cr3t@db:3306/nova"), "mysql+pymysql://nova:***@db:3306/nova")

    def test_timeouts(self) -> None:
        """Each driver gets the timeout its own way: PyMySQL's socket timeouts, PostgreSQL's statement_timeout."""
        self.assertEqual(_connect_args(check_url("mysql+pymysql://u:p@h/d"), 2.5),
                         {"connect_timeout": 3, "read_timeout": 3, "write_timeout": 3})
        self.assertEqual(_connect_args(check_url("postgresql://u:p@h/d"), 2.5),
                         {"connect_timeout": 3, "options": "-c statement_timeout=2500"})

    def test_missing_driver(self) -> None:
        """A URL whose driver is not installed: one line saying which, without the password."""
        e = self.assertRaises(ValueError, make_engine, "mysql+nosuchdriver://nova:secret@db/nova", 1, 1)
        self.assertIn("no driver for mysql+nosuchdriver://nova:***@db/nova", str(e))

    def test_cell_templates(self) -> None:
        """Nova's format_db_url: placeholders from [database] connection; none without a default."""
        default = "mysql+pymysql://mdsvc:pw@db.example:3307/nova_cell1?charset=utf8"
        template = "{scheme}://{username}:{password}@{hostname}:{port}/nova_cell2?{query}"
        self.assertEqual(format_db_url(template, default), "mysql+pymysql://mdsvc:pw@db.example:3307/nova_cell2?charset=utf8")
        self.assertEqual(format_db_url(template, None), template)
        self.assertEqual(format_db_url("{nosuch}", default), "{nosuch}")


class TransactionTests(SynchronousTestCase):
    """Short transactions; failures as StoreUnavailable."""

    def test_read_and_write(self) -> None:
        """A write is committed; a read sees it."""
        engine = make_engine(f"sqlite:///{os.path.abspath(self.mktemp())}", 2, 1)
        self.addCleanup(engine.dispose)
        write(engine, lambda conn: conn.execute(text("CREATE TABLE t (v INTEGER)")))
        write(engine, lambda conn: conn.execute(text("INSERT INTO t VALUES (7)")))
        self.assertEqual(read(engine, lambda conn: conn.execute(text("SELECT v FROM t")).scalar()), 7)

    def test_failure(self) -> None:
        """A failing statement: StoreUnavailable with the database (password masked) and the driver's reason."""
        engine = make_engine(f"sqlite:///{os.path.abspath(self.mktemp())}", 1, 1)
        self.addCleanup(engine.dispose)
        e = self.assertRaises(StoreUnavailable, read, engine, lambda conn: conn.execute(text("SELECT * FROM nosuch")))
        self.assertIn("no such table: nosuch", str(e))


class ConfigurationTests(SynchronousTestCase):
    """What store = nova needs, one line each, naming the file, line and option."""

    def config(self, body: str) -> tuple[str, object]:
        """A configuration file holding C{body}, and its parsed configuration."""
        path = os.path.abspath(self.mktemp())
        with open(path, "w") as f:
            f.write(body)
        return path, load_config(path)

    def test_needs_api_database(self) -> None:
        """Without [api_database] connection (and without local_metadata_per_cell): the [mdsvc] store line."""
        path, config = self.config("[mdsvc]\nstore = nova\n\n[neutron]\nservice_metadata_proxy = true\n")
        e = self.assertRaises(ValueError, check_nova_store, config)
        self.assertEqual(str(e).split(": ", 2)[:2], [f"{path}:2", "[mdsvc] store"])
        self.assertIn("needs [api_database] connection", str(e))

    def test_local_needs_database(self) -> None:
        """local_metadata_per_cell without [database] connection: its line."""
        path, config = self.config("[mdsvc]\nstore = nova\n[api]\nlocal_metadata_per_cell = true\n[neutron]\nservice_metadata_proxy = true\n")
        self.assertIn(f"{path}:4: [api] local_metadata_per_cell", str(self.assertRaises(ValueError, check_nova_store, config)))

    def test_bad_driver(self) -> None:
        """A connection whose driver is missing: its file and line, the password masked."""
        path, config = self.config("[mdsvc]\nstore = nova\n[api_database]\nconnection = mysql+nosuch://nova:secret@db/nova_api\n"
                                   "[neutron]\nservice_metadata_proxy = true\n")
        e = str(self.assertRaises(ValueError, check_nova_store, config))
        self.assertIn(f"{path}:4: [api_database] connection: no driver for mysql+nosuch://nova:***@db/nova_api", e)
        self.assertNotIn("secret", e)

    def test_bad_url(self) -> None:
        """A connection that is no URL: a configuration error on its line, the value not shown."""
        path = os.path.abspath(self.mktemp())
        with open(path, "w") as f:
            f.write("[database]\nconnection = secret-thing\n")
        e = str(self.assertRaises(ConfigError, load_config, path))
        self.assertIn(f"{path}:2: [database] connection = <secret>: allowed: an SQLAlchemy URL", e)

    def test_address_mode_needs_neutron(self) -> None:
        """Remote-address mode finds guests through Neutron: without [neutron] auth_url it does not start."""
        _, config = self.config("[mdsvc]\nstore = nova\n[api_database]\nconnection = sqlite:////tmp/api.db\n")
        self.assertIn("set [neutron] auth_url", str(self.assertRaises(ValueError, check_nova_store, config)))

    def test_good(self) -> None:
        """A nova.conf with its databases and Neutron passes."""
        _, config = self.config("[mdsvc]\nstore = nova\n[api_database]\nconnection = sqlite:////tmp/api.db\n"
                                "[database]\nconnection = sqlite:////tmp/cell1.db\n[neutron]\nauth_url = http://keystone/v3\n")
        check_nova_store(config)  # type: ignore[arg-type]
