"""
L{mdsvc.store.nova}: Nova's tables (on SQLite files, with the columns mdsvc declares) read and
written as Nova's metadata API does; the store as an L{IInstanceStore}.  The same code against
Nova's own schemas on MariaDB: tests/integration/test_nova_*.py.
"""

from __future__ import annotations

import json
import os
from datetime import datetime
from typing import Any

from sqlalchemy import create_engine, insert, select, update
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.task import Clock
from twisted.logger import capturedLogs
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from mdsvc.interfaces import IInstanceStore, StoreUnavailable
from mdsvc.store.nova import password as nova_password
from mdsvc.store.nova.cells import format_db_url
from mdsvc.store.nova.database import Engines, write
from mdsvc.store.nova.store import NovaDatabases, NovaInstanceStore, NovaReader
from mdsvc.store.nova.tables import (
    API,
    MAIN,
    block_device_mapping,
    cell_mappings,
    instance_extra,
    instance_id_mappings,
    instance_info_caches,
    instance_mappings,
    instance_metadata,
    instance_system_metadata,
    instances,
    s3_images,
)

UUID = "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"
OTHER = "1b2c3d4e-5f6a-4b7c-9d8e-0f1a2b3c4d5e"
IMAGE = "2f4e6a8c-1b3d-4f5e-8a7b-9c0d1e2f3a4b"
NOW = datetime(2026, 1, 1)


def sync(f: Any, *args: Any) -> Deferred[Any]:
    """A runner that calls at once (the store's thread pool, in tests)."""
    return maybeDeferred(f, *args)



def nova_api_config(case: Any, defaults: str = "") -> str:
    """
    A config for the api role on C{store = nova} (an SQLite API database, Neutron named), in a
    directory of C{case}'s own; C{defaults}: more C{[DEFAULT]} lines. Its path.
    """
    directory = os.path.abspath(case.mktemp())
    os.makedirs(directory)
    path = os.path.join(directory, "nova.conf")
    with open(path, "w") as f:
        f.write(f"[DEFAULT]\nstate_path = {directory}\n{defaults}[mdsvc]\nstore = nova\napi_endpoint = tcp:0\n"
                f"[api_database]\nconnection = sqlite:///{directory}/api.db\n[neutron]\nauth_url = http://keystone/v3\n"
                "username = nova\nproject_name = service\n")
    return path

class Cloud:
    """An API database and two cell databases on SQLite files."""

    def __init__(self, directory: str) -> None:
        os.makedirs(directory)
        self.api = f"sqlite:///{directory}/api.db"
        self.cell1 = f"sqlite:///{directory}/cell1.db"
        self.cell2 = f"sqlite:///{directory}/cell2.db"
        API.create_all(create_engine(self.api))
        for url in (self.cell1, self.cell2):
            MAIN.create_all(create_engine(url))
        self.run(self.api, insert(cell_mappings), [
            {"id": 1, "uuid": "c1", "name": "cell1", "database_connection": "sqlite:////{path}"},
            {"id": 2, "uuid": "c2", "name": "cell2", "database_connection": self.cell2},
        ])

    def run(self, url: str, statement: Any, rows: Any = None) -> None:
        """Execute one statement (with rows) in a transaction."""
        with create_engine(url).begin() as conn:
            conn.execute(statement, rows) if rows is not None else conn.execute(statement)

    def add(self, url: str, uuid: str, cell: int | None, deleted: bool = False, **columns: Any) -> None:
        """One instance with its extra row, info cache and mapping (cell None: mapped to no cell)."""
        values = dict(uuid=uuid, display_name="Web", hostname="web", project_id="p", launch_index=0, image_ref=IMAGE,
                      kernel_id="", ramdisk_id="", root_device_name="/dev/vda", created_at=NOW, deleted=0)
        values.update(columns)
        with create_engine(url).begin() as conn:
            number = conn.execute(insert(instances).values(**values)).inserted_primary_key[0]
            if deleted:
                conn.execute(update(instances).where(instances.c.id == number).values(deleted=number))
            conn.execute(insert(instance_extra).values(instance_uuid=uuid, flavor=json.dumps(
                {"cur": {"nova_object.name": "Flavor", "nova_object.data": {"name": "m1.small"}}, "old": None, "new": None})))
            conn.execute(insert(instance_info_caches).values(instance_uuid=uuid, network_info="[]"))
        if cell is not False:
            self.run(self.api, insert(instance_mappings).values(instance_uuid=uuid, cell_id=cell))


class StoreCase(SynchronousTestCase):
    """A cloud and a store over it (synchronous runner, a Clock)."""

    def setUp(self) -> None:
        """A fresh cloud and engines."""
        self.cloud = Cloud(os.path.abspath(self.mktemp()))
        self.cell1_path = self.cloud.cell1[len("sqlite:///"):]
        self.engines = Engines(2, 5)
        self.addCleanup(self.engines.dispose)

    def store(self, local: bool = False, default: str | None = None) -> NovaInstanceStore:
        """A store over the cloud (no Neutron)."""
        databases = NovaDatabases(self.cloud.api, default or self.cloud.cell1, local)
        return NovaInstanceStore(NovaReader(databases, self.engines), sync, None, Clock())

    def get(self, store: NovaInstanceStore, uuid: str) -> Any:
        """The store's instance C{uuid}, at once."""
        return self.successResultOf(store.get(uuid))


class ReadTests(StoreCase):
    """What is read, from which database, with Nova's filters."""

    def test_provides(self) -> None:
        """The store provides IInstanceStore."""
        self.assertTrue(verifyObject(IInstanceStore, self.store()))

    def test_template_cell(self) -> None:
        """A cell mapping whose URL is a template is filled from [database] connection, as Nova does."""
        self.cloud.add(self.cloud.cell1, UUID, 1)
        self.assertEqual(self.get(self.store(), UUID).name, "Web")
        self.assertEqual(format_db_url("sqlite:////{path}", self.cloud.cell1), self.cloud.cell1)

    def test_second_cell(self) -> None:
        """An instance mapped to the second cell is read there, not in [database] connection."""
        self.cloud.add(self.cloud.cell2, OTHER, 2, display_name="Far")
        self.assertEqual(self.get(self.store(), OTHER).name, "Far")

    def test_unmapped(self) -> None:
        """No instance mapping: Nova's warning, and [database] connection is read."""
        self.cloud.add(self.cloud.cell1, UUID, False)
        with capturedLogs() as events:
            self.assertEqual(self.get(self.store(), UUID).uuid, UUID)
        self.assertIn(f"Instance mapping for {UUID} not found; cell setup is incomplete",
                      [e["log_format"].format(**e) for e in events])

    def test_local_metadata_per_cell(self) -> None:
        """local_metadata_per_cell: only [database] connection, the API database never read."""
        self.cloud.add(self.cloud.cell1, UUID, 2)  # a mapping that would be wrong
        store = self.store(local=True)
        store.reader.databases = NovaDatabases("sqlite:////nonexistent/api.db", self.cloud.cell1, True)
        self.assertEqual(self.get(store, UUID).uuid, UUID)

    def test_deleted(self) -> None:
        """A deleted instance (deleted = its id) is not found."""
        self.cloud.add(self.cloud.cell1, UUID, 1, deleted=True)
        self.assertIsNone(self.get(self.store(), UUID))

    def test_metadata_filters(self) -> None:
        """
        Live metadata only, in row order; system metadata deleted or not (Nova reads it
        include_deleted); live block devices only, in row order.
        """
        self.cloud.add(self.cloud.cell1, UUID, 1)
        self.cloud.run(self.cloud.cell1, insert(instance_metadata), [
            {"instance_uuid": UUID, "key": "z", "value": "1", "deleted": 0},
            {"instance_uuid": UUID, "key": "gone", "value": "1", "deleted": 2},
            {"instance_uuid": UUID, "key": "a", "value": "2", "deleted": 0},
        ])
        self.cloud.run(self.cloud.cell1, insert(instance_system_metadata), [
            {"instance_uuid": UUID, "key": "password_0", "value": "pw", "deleted": 1},
        ])
        self.cloud.run(self.cloud.cell1, insert(block_device_mapping), [
            {"instance_uuid": UUID, "destination_type": "volume", "device_name": "/dev/vdc", "deleted": 0},
            {"instance_uuid": UUID, "destination_type": "volume", "device_name": "/dev/vdx", "deleted": 2},
            {"instance_uuid": UUID, "destination_type": "volume", "device_name": "/dev/vdb", "deleted": 0},
        ])
        instance = self.get(self.store(), UUID)
        self.assertEqual(list(instance.metadata.items()), [("z", "1"), ("a", "2")])
        self.assertEqual(instance.password, "pw")
        self.assertEqual([b.device_name for b in instance.block_device_mappings], ["/dev/vdc", "/dev/vdb"])

    def test_ec2_ids_made_once(self) -> None:
        """
        Missing EC2 numbers are made on first read (as Nova makes them); a second read finds
        them; of two rows for one uuid the first (lowest id) counts.
        """
        self.cloud.add(self.cloud.cell1, UUID, 1)
        store = self.store()
        first = self.get(store, UUID)
        self.assertEqual((first.ec2_instance_id, dict(first.ec2_image_ids)), (1, {IMAGE: 1}))
        self.cloud.run(self.cloud.cell1, insert(s3_images).values(uuid=IMAGE, deleted=0))
        second = self.get(store, UUID)
        self.assertEqual((second.ec2_instance_id, dict(second.ec2_image_ids)), (1, {IMAGE: 1}))
        with create_engine(self.cloud.cell1).connect() as conn:
            self.assertEqual(conn.execute(select(instance_id_mappings.c.uuid)).scalars().all(), [UUID])

    def test_database_unavailable(self) -> None:
        """A database that cannot be opened: StoreUnavailable, naming it, and the API answers 503 (tests/test_nova_app.py)."""
        store = self.store()
        store.reader.databases = NovaDatabases("sqlite:////nonexistent/dir/api.db", self.cloud.cell1)
        failure = self.failureResultOf(store.get(UUID), StoreUnavailable)
        self.assertIn("sqlite:////nonexistent/dir/api.db", str(failure.value))


class PasswordTests(StoreCase):
    """The password write: Nova's chunks, once."""

    def rows(self) -> list[tuple[str, str]]:
        """The instance's system metadata rows, by key."""
        with create_engine(self.cloud.cell1).connect() as conn:
            found = conn.execute(select(instance_system_metadata.c.key, instance_system_metadata.c.value)
                                 .where(instance_system_metadata.c.instance_uuid == UUID).order_by(instance_system_metadata.c.key))
            return [(k, v) for k, v in found]

    def test_chunks(self) -> None:
        """Four chunks of 255 characters, missing ones empty (Nova's convert_password)."""
        self.assertEqual(nova_password.chunks("x" * 600), {"password_0": "x" * 255, "password_1": "x" * 255,
                                                          "password_2": "x" * 90, "password_3": ""})

    def test_written_once(self) -> None:
        """Stored once in four rows; a second write is refused; the store reads it back."""
        self.cloud.add(self.cloud.cell1, UUID, 1)
        store = self.store()
        self.assertTrue(self.successResultOf(store.set_password(UUID, "é" * 300)))
        self.assertEqual(self.rows(), [("password_0", "é" * 255), ("password_1", "é" * 45), ("password_2", ""), ("password_3", "")])
        self.assertFalse(self.successResultOf(store.set_password(UUID, "second")))
        self.assertEqual(self.get(store, UUID).password, "é" * 300)

    def test_empty_rows_updated(self) -> None:
        """Empty chunk rows (a password cleared through the compute API) are updated in place, not duplicated."""
        self.cloud.add(self.cloud.cell1, UUID, 1)
        self.cloud.run(self.cloud.cell1, insert(instance_system_metadata), [
            {"instance_uuid": UUID, "key": f"password_{i}", "value": "", "deleted": 0} for i in range(4)])
        self.assertTrue(self.successResultOf(self.store().set_password(UUID, "new")))
        self.assertEqual(self.rows(), [("password_0", "new"), ("password_1", ""), ("password_2", ""), ("password_3", "")])

    def test_race_lost(self) -> None:
        """A chunk changed between the read and the conditional update: nothing written, the write refused."""
        self.cloud.add(self.cloud.cell1, UUID, 1)
        self.cloud.run(self.cloud.cell1, insert(instance_system_metadata), [
            {"instance_uuid": UUID, "key": "password_0", "value": "", "deleted": 0}])
        engine = self.engines.get(self.cloud.cell1)
        original = nova_password.chunks

        def racing(password: str) -> dict[str, str]:
            with engine.connect() as other:  # another writer commits between the read and the update
                other.execute(update(instance_system_metadata).values(value="theirs"))
                other.commit()
            return original(password)

        self.patch(nova_password, "chunks", racing)
        self.assertRaises(nova_password.PasswordRace,
                          write, engine, lambda conn: nova_password.set_password(conn, UUID, "mine"))
        self.assertEqual(self.rows(), [("password_0", "theirs")])

    def test_no_instance(self) -> None:
        """No live instance: KeyError (the API's 400)."""
        self.cloud.add(self.cloud.cell1, UUID, 1, deleted=True)
        self.failureResultOf(self.store().set_password(UUID, "pw"), KeyError)


class TimeoutTests(SynchronousTestCase):
    """Every database call is answered within the timeout."""

    def test_slow_call(self) -> None:
        """A call still running after the timeout: StoreUnavailable saying so."""
        clock = Clock()
        pending: Deferred[Any] = Deferred()
        reader = NovaReader(NovaDatabases("sqlite://", "sqlite://"), Engines(1, 2.5))
        store = NovaInstanceStore(reader, lambda f, *args: pending, None, clock)
        d = store.get(UUID)
        clock.advance(2.4)
        self.assertNoResult(d)
        clock.advance(0.2)
        failure = self.failureResultOf(d, StoreUnavailable)
        self.assertIn("within 2.5 s", str(failure.value))


class WiringTests(SynchronousTestCase):
    """The api role on store = nova."""

    def test_api_role(self) -> None:
        """twistd's api role builds the Nova store as a service of its tree (its threads start and stop with it)."""
        from twisted.internet.testing import MemoryReactorClock

        from mdsvc.tap import Options, makeService
        from mdsvc.testing import services_in

        path = nova_api_config(self)
        directory = os.path.dirname(path)
        options = Options()
        options.parseOptions(["--role", "api", "--config", path])
        top = makeService(options, reactor=MemoryReactorClock())
        stores = [s for s in services_in(top) if isinstance(s, NovaInstanceStore)]
        self.assertEqual(len(stores), 1)
        self.assertIsNotNone(stores[0].neutron)
        self.assertEqual(stores[0].reader.databases, NovaDatabases(f"sqlite:///{directory}/api.db", None, False))

    def test_threads_stopped_after_drain(self) -> None:
        """
        SIGTERM: the store's database threads and connections serve the requests in flight while
        the node drains, and are stopped after the drain (L{mdsvc.drain.Drain}), not with the
        listener.
        """
        from twisted.internet.address import IPv4Address
        from twisted.internet.testing import MemoryReactorClock, StringTransport

        from mdsvc.drain import Drain
        from mdsvc.tap import Options, makeService

        path = nova_api_config(self)
        options = Options()
        options.parseOptions(["--role", "api", "--config", path])
        reactor = MemoryReactorClock()
        top = makeService(options, reactor=reactor)
        drain = next(s for s in top if isinstance(s, Drain))
        store = next(s for s in drain if isinstance(s, NovaInstanceStore))
        top.startService()
        self.assertTrue(store.threadpool.started)
        address = IPv4Address("TCP", "10.0.0.5", 4000)
        protocol = drain.factories[0].buildProtocol(address)
        transport = StringTransport(peerAddress=address)
        protocol.makeConnection(transport)
        protocol.dataReceived(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")  # answered, the connection kept alive
        self.assertIn(b"200 OK", transport.value())
        stopped = top.stopService()
        self.assertTrue(store.running)
        self.assertTrue(store.threadpool.started)
        reactor.advance(1)  # the drain's grace for a kept-alive connection
        self.assertTrue(transport.disconnecting)
        self.assertTrue(store.running)
        protocol.connectionLost(None)
        self.successResultOf(stopped)
        self.assertFalse(store.running)
        self.assertFalse(store.threadpool.started)


class FakeNeutron:
    """Nova's questions to Neutron, answered from a table of address -> devices, counting the asks."""

    def __init__(self, devices: dict[str, list[str]]) -> None:
        self.devices = devices
        self.asked: list[str] = []

    async def devices_with_address(self, ip: str) -> list[str]:
        """The devices of the table, counting the question."""
        self.asked.append(ip)
        return list(self.devices.get(ip, []))

    async def security_groups(self, uuid: str) -> dict[str, list[str]]:
        """No groups."""
        return {}


class AddressTests(StoreCase):
    """Remote-address mode: Neutron's port holding the address, then the databases; Neutron's answers kept."""

    def store_with(self, neutron: FakeNeutron) -> tuple[NovaInstanceStore, Clock]:
        """A store asking C{neutron}, and its clock."""
        clock = Clock()
        databases = NovaDatabases(self.cloud.api, self.cloud.cell1)
        return NovaInstanceStore(NovaReader(databases, self.engines), sync, neutron, clock, address_ttl=15), clock  # type: ignore[arg-type]

    def test_found(self) -> None:
        """The port's device is the instance, read from its cell; Neutron asked once per TTL."""
        self.cloud.add(self.cloud.cell2, OTHER, 2, display_name="Far")
        neutron = FakeNeutron({"127.0.0.3": [OTHER]})
        store, clock = self.store_with(neutron)
        self.assertEqual(self.successResultOf(store.by_address("127.0.0.3")).name, "Far")
        self.successResultOf(store.by_address("127.0.0.3"))
        clock.advance(16)
        self.successResultOf(store.by_address("127.0.0.3"))
        self.assertEqual(neutron.asked, ["127.0.0.3", "127.0.0.3"])

    def test_unknown(self) -> None:
        """No port: None, and Neutron is asked again only after 2 s."""
        neutron = FakeNeutron({})
        store, clock = self.store_with(neutron)
        self.assertIsNone(self.successResultOf(store.by_address("10.9.9.9")))
        self.assertIsNone(self.successResultOf(store.by_address("10.9.9.9")))
        clock.advance(2.5)
        self.assertIsNone(self.successResultOf(store.by_address("10.9.9.9")))
        self.assertEqual(len(neutron.asked), 2)

    def test_ambiguous(self) -> None:
        """Two ports with the address: AmbiguousAddress (the API's 500, as Nova's)."""
        from mdsvc.interfaces import AmbiguousAddress

        store, _ = self.store_with(FakeNeutron({"10.0.0.5": [UUID, OTHER]}))
        self.failureResultOf(store.by_address("10.0.0.5"), AmbiguousAddress)


class PlacementTests(StoreCase):
    """An instance's cell is kept; a moved instance is found in its new cell."""

    def test_kept(self) -> None:
        """Within the time kept, a second read asks the API database nothing (here: it is gone)."""
        self.cloud.add(self.cloud.cell2, OTHER, 2, display_name="Far")
        store = self.store()
        self.assertEqual(self.get(store, OTHER).name, "Far")
        os.remove(self.cloud.api[len("sqlite:///"):])
        self.engines.dispose()
        self.assertEqual(self.get(store, OTHER).name, "Far")

    def test_moved(self) -> None:
        """Moved to another cell meanwhile: not in the kept cell, so the API database is asked again."""
        self.cloud.add(self.cloud.cell1, UUID, 1, display_name="Before")
        store = self.store()
        self.assertEqual(self.get(store, UUID).name, "Before")
        self.cloud.run(self.cloud.cell1, update(instances).values(deleted=instances.c.id))
        self.cloud.add(self.cloud.cell2, UUID, False, display_name="After")
        self.cloud.run(self.cloud.api, update(instance_mappings).values(cell_id=2))
        self.assertEqual(self.get(store, UUID).name, "After")


class TokenTests(StoreCase):
    """
    Session tokens (C{[api] imds_tokens}) on C{store = nova}: a token is issued for the instance
    Nova's database has, and a database that cannot answer is 503 for the PUT and for a request
    carrying a good token (not 401, not 500, no token issued); a request without a token is
    refused before any query.
    """

    def harness(self, mode: str = "required") -> tuple[Any, NovaInstanceStore]:
        """The API behind agents (signed requests) over a Nova store of one instance, tokens C{mode}."""
        from mdsvc.api.tokens import SessionTokens
        from tests.test_api_resource import UUID as SIGNED
        from tests.test_api_resource import Harness

        self.uuid = SIGNED  # (the instance the harness's requests are signed for)
        self.cloud.add(self.cloud.cell1, SIGNED, 1, project_id="test")
        h = Harness(self, secret="s3cret")
        store = NovaInstanceStore(NovaReader(NovaDatabases(self.cloud.api, self.cloud.cell1), self.engines), sync, None,
                                  h.clock)
        h.app.store = store
        h.app.tokens = SessionTokens(h.clock, mode == "required", "s3cret")
        return h, store

    def put(self, h: Any) -> Any:
        return h.get("/latest/api/token", b"PUT", {b"X-aws-ec2-metadata-token-ttl-seconds": b"60"})

    def test_issued_and_checked(self) -> None:
        """The PUT gives a token for the instance Nova has; with it the instance's documents are served."""
        h, _ = self.harness()
        r = self.put(h)
        self.assertEqual(r.code, 200, r.body)
        self.assertTrue(h.app.tokens.valid(r.body, self.uuid))
        r = h.get("/latest/meta-data/hostname", headers={b"X-aws-ec2-metadata-token": r.body})
        self.assertEqual((r.code, r.body), (200, b"web.novalocal"))

    def test_database_down(self) -> None:
        """The databases unreachable: the PUT and a request with a good token are 503; none without a token reaches them."""
        h, store = self.harness()
        r = self.put(h)
        self.assertEqual(r.code, 200, r.body)
        token = r.body
        h.clock.advance(16)  # past metadata_cache_expiration: the next request asks the database

        def down(uuid: str) -> None:
            raise StoreUnavailable("mysql+pymysql://nova:***@db/nova_cell1: (2003, Can't connect)")

        store.reader.rows = down  # type: ignore[method-assign]
        with capturedLogs():
            r = self.put(h)
            self.assertEqual(r.code, 503, r.body)
            self.assertNotEqual(len(r.body), 56)
            r = h.get("/latest/meta-data/hostname", headers={b"X-aws-ec2-metadata-token": token})
            self.assertEqual(r.code, 503, r.body)
        asked: list[str] = []
        store.reader.rows = lambda uuid: asked.append(uuid)  # type: ignore[method-assign]
        self.assertEqual(h.get("/latest/meta-data/hostname").code, 401)
        self.assertEqual(asked, [])
