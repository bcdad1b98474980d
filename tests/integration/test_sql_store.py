"""
mdsvc's own document store on a database server (C{[mdsvc] store = postgresql://...} or
C{mysql+pymysql://...}), on a real PostgreSQL and a real MariaDB started by the tests, and the same
tests on the embedded file (C{sqlite:PATH}) that several processes open: imports
with mdsvc-manage are all or nothing, two api nodes share the store (what one stores, the other
serves; a password is set once across both), concurrent imports never give one EC2 number twice.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from mdsvc.store.sql import SQLDocuments
from tests import test_store
from tests.integration.mariadb import shared_mariadb
from tests.integration.nova_cloud import SECRET, request, sign
from tests.integration.postgresql import shared_postgresql
from tests.integration.processes import ROOT, Twistd, fetch, free_port, manage

UUID = "7a1b2c3d-0000-4000-8000-00000000a001"
DEMO_UUID = "d3b0c0de-0000-4000-8000-000000000001"  # mdsvc/data/demo-instance.json, with 127.0.0.1 on DEMO_NETWORK
DEMO_NETWORK = "11111111-0000-4000-8000-000000000001"


def document(uuid: str, name: str = "web-1", **changes: Any) -> dict[str, Any]:
    """An instance document."""
    doc: dict[str, Any] = {"uuid": uuid, "name": name, "project_id": "p1", "image_id": "img-1", "user_data": "aGVsbG8=",
                           "nics": [{"port_id": f"port-{uuid}", "mac": "fa:16:3e:00:00:01", "network": {"id": "net-1"},
                                     "fixed_ips": [{"ip": "10.0.0.5", "subnet": {"cidr": "10.0.0.0/24"}}]}]}
    doc.update(changes)
    return doc


def headers(uuid: str) -> dict[str, str]:
    """A Neutron metadata agent's headers for C{uuid}."""
    return {"X-Instance-ID": uuid, "X-Instance-ID-Signature": sign(uuid), "X-Tenant-ID": "p1"}


def listening(port: int) -> bool:
    """Whether something accepts connections on the loopback port C{port}."""
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


class SharedStoreMixin:
    """The tests, for one kind of database server (L{url})."""

    def url(self) -> str:
        """A new, empty database's URL on the server under test."""
        raise NotImplementedError

    def setUp(self) -> None:
        """A directory, a new database and the configuration naming it."""
        self.dir = os.path.abspath(self.mktemp())  # type: ignore[attr-defined]
        os.makedirs(self.dir)
        self.store = self.url()
        self.config = self.write_config("node")

    def write_config(self, name: str) -> str:
        """A node's configuration on the shared store (its own state directory)."""
        directory = os.path.join(self.dir, name)
        os.makedirs(directory, exist_ok=True)
        path = os.path.join(directory, "mdsvc.conf")
        with open(path, "w") as f:
            f.write(f"[DEFAULT]\nstate_path = {directory}/state\n\n[mdsvc]\nstore = {self.store}\n"
                    "api_endpoint = tcp:0:interface=127.0.0.1\n\n[api]\nmetadata_cache_expiration = 1\n\n"
                    f"[neutron]\nservice_metadata_proxy = true\nmetadata_proxy_shared_secret = {SECRET}\n")
        return path

    def import_docs(self, docs: list[dict[str, Any]], check: bool = True) -> subprocess.CompletedProcess[str]:
        """mdsvc-manage instance import of C{docs}, as a real process."""
        path = os.path.join(self.dir, f"docs-{time.monotonic_ns()}.json")
        with open(path, "w") as f:
            json.dump(docs, f)
        return manage(self.config, "instance", "import", path, check=check)

    def node(self, name: str) -> Twistd:
        """An api node on the shared store, stopped after the test."""
        config = self.write_config(name)
        api = Twistd(["mdsvc", "--role", "api", "--config", config], os.path.join(self.dir, name, "twistd.log"))
        self.addCleanup(api.stop)  # type: ignore[attr-defined]
        return api

    def test_two_nodes(self) -> None:
        """
        Two api nodes on one store: both serve what mdsvc-manage imported, and a later import
        within a cache time; a password posted to one is refused by the other and read back from
        both; a deleted instance is gone from both.
        """
        self.import_docs([document(UUID)])
        a, b = self.node("a"), self.node("b")
        path = "/openstack/latest/meta_data.json"
        for node in (a, b):
            status, _, body = request(node.port, "GET", path, headers(UUID))
            self.assertEqual((status, json.loads(body)["name"]), (200, "web-1"))  # type: ignore[attr-defined]
        self.assertEqual(request(a.port, "POST", "/openstack/latest/password", headers(UUID), b"secret-1")[0], 200)  # type: ignore[attr-defined]
        self.assertEqual(request(b.port, "POST", "/openstack/latest/password", headers(UUID), b"secret-2")[0], 409)  # type: ignore[attr-defined]
        self.import_docs([document(UUID, name="web-renamed")])
        time.sleep(1.2)
        for node in (a, b):
            self.assertEqual(json.loads(request(node.port, "GET", path, headers(UUID))[2])["name"], "web-renamed")  # type: ignore[attr-defined]
            self.assertEqual(request(node.port, "GET", "/openstack/latest/password", headers(UUID))[2], b"secret-1")  # type: ignore[attr-defined]
        manage(self.config, "instance", "delete", UUID)
        time.sleep(1.2)
        for node in (a, b):
            self.assertEqual(request(node.port, "GET", path, headers(UUID))[0], 404)  # type: ignore[attr-defined]

    def test_only_import_creates(self) -> None:
        """
        On a new database every command but import says there is no store (the URL's password
        masked) and makes no table; an import makes them.
        """
        for args in (("instance", "list"), ("instance", "show", UUID), ("router", "list")):
            result = manage(self.config, *args, check=False)
            self.assertEqual(result.returncode, 1, result.stderr)  # type: ignore[attr-defined]
            self.assertIn("mdsvc-manage: no store at ", result.stderr)  # type: ignore[attr-defined]
            self.assertIn("instance import or router import creates it", result.stderr)  # type: ignore[attr-defined]
            if "@" in self.store:  # (a server's password)
                self.assertNotIn(self.store.split("@")[0].rsplit(":", 1)[1], result.stderr)  # type: ignore[attr-defined]
        documents = SQLDocuments(self.store)
        try:
            self.assertFalse(documents.exists())  # type: ignore[attr-defined]
        finally:
            documents.close()
        self.import_docs([document(UUID)])
        self.assertIn(UUID, manage(self.config, "instance", "list").stdout)  # type: ignore[attr-defined]

    def test_demo_and_lookup_store(self) -> None:
        """
        all-in-one on the shared store, as the demo runs on sqlite: the demo instance imported
        into the server's documents at startup, and the agent's lookup = store finding the
        guest there, through the whole chain (proxy listener, agent, API).
        """
        directory = os.path.join(self.dir, "aio")
        os.makedirs(directory)
        config, proxy_port, api_port = os.path.join(directory, "mdsvc.conf"), free_port(), free_port()
        socket_dir = tempfile.mkdtemp(prefix="mdsvc-")  # (the test's own directory is too deep for a UNIX socket)
        self.addCleanup(shutil.rmtree, socket_dir, True)  # type: ignore[attr-defined]
        with open(config, "w") as f:
            f.write(f"[DEFAULT]\nstate_path = state\nmetadata_proxy_socket = {socket_dir}/agent.sock\n"
                    f"metadata_proxy_shared_secret = {SECRET}\n"
                    f"nova_metadata_host = 127.0.0.1\nnova_metadata_port = {api_port}\n"
                    "[neutron]\nservice_metadata_proxy = true\n"
                    f"[proxy]\nnamespaces = none\nlisteners = network {DEMO_NETWORK} tcp:{proxy_port}:interface=127.0.0.1\n"
                    f"[mdsvc]\nstore = {self.store}\ndemo = true\nlookup = store\n"
                    f"api_endpoint = tcp:{api_port}:interface=127.0.0.1\n")
        node = Twistd(["mdsvc", "--role", "all-in-one", "--config", config], os.path.join(directory, "twistd.log"))
        self.addCleanup(node.stop)  # type: ignore[attr-defined]
        node.wait_until(lambda: listening(proxy_port), f"the proxy listener on port {proxy_port}")
        status, _, body = fetch(f"http://127.0.0.1:{proxy_port}/openstack/latest/meta_data.json")
        self.assertEqual((status, json.loads(body)["uuid"]), (200, DEMO_UUID), body)  # type: ignore[attr-defined]
        self.assertIn(DEMO_UUID, manage(config, "instance", "list").stdout)  # type: ignore[attr-defined]

    def test_import_all_or_nothing(self) -> None:
        """An import whose second document is bad stores nothing, not even the first."""
        result = self.import_docs([document("7a1b2c3d-0000-4000-8000-00000000a002"), document("x y")], check=False)
        self.assertNotEqual(result.returncode, 0)  # type: ignore[attr-defined]
        self.assertNotIn("7a1b2c3d-0000-4000-8000-00000000a002", manage(self.config, "instance", "list").stdout)  # type: ignore[attr-defined]

    def test_concurrent_imports(self) -> None:
        """Three mdsvc-manage imports at once, twenty instances each: sixty different EC2 numbers."""
        procs = []
        for n in range(3):
            path = os.path.join(self.dir, f"batch-{n}.json")
            with open(path, "w") as f:
                json.dump([document(f"7a1b2c3d-0000-4000-8000-0000000{n:02d}{i:03d}", name=f"vm-{n}-{i}") for i in range(20)], f)
            procs.append(subprocess.Popen([sys.executable, "-m", "mdsvc.manage", "--config", self.config, "instance", "import", path],
                                          cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
        for proc in procs:
            _, err = proc.communicate(timeout=300)
            self.assertEqual(proc.returncode, 0, err)  # type: ignore[attr-defined]
        documents = SQLDocuments(self.store)
        try:
            numbers = [documents.get(f"7a1b2c3d-0000-4000-8000-0000000{n:02d}{i:03d}").instance().ec2_instance_id  # type: ignore[union-attr]
                       for n in range(3) for i in range(20)]
        finally:
            documents.close()
        self.assertEqual(len(set(numbers)), 60)  # type: ignore[attr-defined]


class SQLiteFileStoreTests(SharedStoreMixin, SynchronousTestCase):
    """The same on the embedded store: one file that every process (api nodes, mdsvc-manage) opens."""

    def url(self) -> str:
        """A file in a directory of its own, not there yet."""
        return f"sqlite:{os.path.abspath(self.mktemp())}/store/mdsvc.sqlite"  # type: ignore[attr-defined]


class PostgreSQLStoreTests(SharedStoreMixin, SynchronousTestCase):
    """The store on a real PostgreSQL."""

    def url(self) -> str:
        """A new database on the shared PostgreSQL."""
        return shared_postgresql().new_database_url()


class MariaDBStoreTests(SharedStoreMixin, SynchronousTestCase):
    """The store on a real MariaDB."""

    def url(self) -> str:
        """A new database on the shared MariaDB."""
        return shared_mariadb().new_database_url()


class OnPostgreSQL:
    """A rule test's store on a new database of the shared PostgreSQL."""

    def store_url(self) -> str:
        """A new database on the shared PostgreSQL."""
        return shared_postgresql().new_database_url()


class OnMariaDB:
    """A rule test's store on a new database of the shared MariaDB."""

    def store_url(self) -> str:
        """A new database on the shared MariaDB."""
        return shared_mariadb().new_database_url()


# tests/test_store.py's rule tests, written once, run on each server too: PostgreSQLImportTests,
# MariaDBPasswordTests, ... (the module is imported, not its classes: they are not run here on SQLite)
for _server, _kind in ((OnPostgreSQL, "PostgreSQL"), (OnMariaDB, "MariaDB")):
    for _name in test_store.RULE_TESTS:
        _base = getattr(test_store, _name)
        globals()[_kind + _name] = type(_kind + _name, (_server, _base), {"__doc__": f"{_base.__doc__} On {_kind}."})
