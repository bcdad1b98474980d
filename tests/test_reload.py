"""
SIGHUP reloads (L{mdsvc.reload}): the secret rotation window on both sides of the agent-to-API
hop, what the API and the agent apply, what needs a restart, refused configurations, the log
level.
"""

from __future__ import annotations

import json
import os
from typing import Any

from twisted.internet.task import Clock
from twisted.logger import LogLevel, LogPublisher, capturedLogs, formatEvent
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from mdsvc.agent.forwarder import APIForwarder
from mdsvc.agent.handler import MetadataAgent
from mdsvc.agent.reload import AgentReload
from mdsvc.api.reload import APIReload
from mdsvc.api.tokens import SessionTokens
from mdsvc.config import load_config
from mdsvc.hop import sign
from mdsvc.http import HTTPRequest, HTTPResponse
from mdsvc.loglevel import LogLevelFilter
from mdsvc.reload import IReloadable, LogLevelReload, Reloader, Rotation
from mdsvc.testing import MemoryLookup, services_in, stub_pool
from tests.test_api_resource import UUID, Harness, fixture

NET = "7f1e1b0c-1111-2222-3333-444455556666"


class RotationTests(SynchronousTestCase):
    """A secret and the one before it, for the window."""

    def test_window(self) -> None:
        """A new secret keeps the previous one for the window, then drops it; each change is reported."""
        clock, seen = Clock(), []
        rotation = Rotation(clock, "old", lambda s, p: seen.append((s, p)))
        self.assertFalse(rotation.set("old", 10))
        self.assertTrue(rotation.set("new", 10))
        self.assertEqual(seen, [("new", ("old",))])
        clock.advance(9.9)
        self.assertEqual(rotation.previous, ("old",))
        clock.advance(0.1)
        self.assertEqual((rotation.previous, seen[-1]), ((), ("new", ())))

    def test_no_window(self) -> None:
        """With a window of 0 the previous secret is dropped at once."""
        seen: list[Any] = []
        rotation = Rotation(Clock(), "old", lambda s, p: seen.append((s, p)))
        rotation.set("new", 0)
        self.assertEqual(seen, [("new", ())])

    def test_again_within_window(self) -> None:
        """A second rotation within the window keeps only the secret just replaced, for a full window."""
        clock = Clock()
        rotation = Rotation(clock, "a", lambda s, p: None)
        rotation.set("b", 10)
        clock.advance(5)
        rotation.set("c", 10)
        self.assertEqual(rotation.previous, ("b",))
        clock.advance(9)
        self.assertEqual(rotation.previous, ("b",))
        clock.advance(1)
        self.assertEqual(rotation.previous, ())


def config_file(case: SynchronousTestCase, body: str, path: str | None = None) -> str:
    """A configuration file (in the test's directory) with C{body}."""
    path = path or os.path.abspath(case.mktemp())
    with open(path, "w") as f:
        f.write(body)
    return path


class APIReloadTests(SynchronousTestCase):
    """What the API applies."""

    def setUp(self) -> None:
        self.h = Harness(self, secret="old")
        self.h.store.add(fixture())
        self.path = config_file(self, "[neutron]\nservice_metadata_proxy = true\nmetadata_proxy_shared_secret = old\n"
                                "[mdsvc]\nsecret_rotation_window = 30\n")
        self.reload = APIReload(self.h.app, self.h.resource, load_config(self.path), self.h.clock)

    def apply(self, body: str) -> None:
        config_file(self, body, self.path)
        with capturedLogs():
            self.reload.reload(load_config(self.path))

    def signed(self, secret: str) -> int:
        headers = {b"X-Instance-ID": UUID.encode(), b"X-Tenant-ID": b"test", b"X-Instance-ID-Signature": sign(secret, UUID).encode()}
        return self.h.get("/latest/meta-data/instance-id", headers=headers, signed=False).code  # type: ignore[arg-type]

    def test_interface(self) -> None:
        """It is an IReloadable."""
        self.assertTrue(verifyObject(IReloadable, self.reload))

    def test_secret_rotation(self) -> None:
        """A new secret: both are accepted for the window; then only the new one."""
        self.assertEqual((self.signed("old"), self.signed("new")), (200, 403))
        self.apply("[neutron]\nservice_metadata_proxy = true\nmetadata_proxy_shared_secret = new\n[mdsvc]\nsecret_rotation_window = 30\n")
        self.assertEqual((self.signed("old"), self.signed("new")), (200, 200))
        self.h.clock.advance(30)
        with capturedLogs():
            self.assertEqual((self.signed("old"), self.signed("new")), (403, 200))

    def test_tokens_across_rotation(self) -> None:
        """Tokens made with the previous secret stay good for the window; tokens turned on by a reload work."""
        self.apply("[neutron]\nservice_metadata_proxy = true\nmetadata_proxy_shared_secret = old\n[api]\nimds_tokens = required\n")
        self.assertIsInstance(self.h.app.tokens, SessionTokens)
        token = self.h.app.tokens.issue(UUID, 600)  # type: ignore[union-attr]
        self.apply("[neutron]\nservice_metadata_proxy = true\nmetadata_proxy_shared_secret = new\n[api]\nimds_tokens = required\n"
                   "[mdsvc]\nsecret_rotation_window = 30\n")
        self.assertTrue(self.h.app.tokens.valid(token, UUID))  # type: ignore[union-attr]
        self.h.clock.advance(30)
        self.assertFalse(self.h.app.tokens.valid(token, UUID))  # type: ignore[union-attr]

    def test_vendordata_and_cache(self) -> None:
        """A new vendordata file is served at once: the render cache is emptied."""
        first = config_file(self, json.dumps({"v": 1}))
        second = config_file(self, json.dumps({"v": 2}))
        base = "[neutron]\nservice_metadata_proxy = true\nmetadata_proxy_shared_secret = old\n"
        self.apply(base + f"[api]\nvendordata_jsonfile_path = {first}\n")
        self.assertEqual(json.loads(self.h.get("/openstack/latest/vendor_data.json").body), {"v": 1})
        self.apply(base + f"[api]\nvendordata_jsonfile_path = {second}\n")
        self.assertEqual(json.loads(self.h.get("/openstack/latest/vendor_data.json").body), {"v": 2})

    def test_debug(self) -> None:
        """[DEFAULT] debug turns the header log on and off."""
        self.apply("[DEFAULT]\ndebug = true\n[neutron]\nservice_metadata_proxy = true\nmetadata_proxy_shared_secret = old\n")
        self.assertTrue(self.h.resource.debug)


class FakeAPI:
    """An API that takes only signatures made with C{accepted} (403 otherwise) and records each."""

    def __init__(self, accepted: str) -> None:
        self.accepted = accepted
        self.signatures: list[bytes] = []

    def __call__(self, request: HTTPRequest) -> HTTPResponse:
        signature = request.headers[b"x-instance-id-signature"][0]
        self.signatures.append(signature)
        code = 200 if signature == sign(self.accepted, "inst-1").encode() else 403
        return HTTPResponse(code, ((b"Content-Type", b"text/plain"),), b"ok" if code == 200 else b"no")


class AgentReloadTests(SynchronousTestCase):
    """What the agent applies."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.api = FakeAPI("old")
        lookup = MemoryLookup({("network", NET, "10.0.0.5"): ("inst-1", "proj-1")})
        pool = stub_pool(self.api, clock=self.clock)
        self.agent = MetadataAgent(lookup, APIForwarder(pool, "api", 20), "old", clock=self.clock)
        self.path = config_file(self, "[neutron]\nmetadata_proxy_shared_secret = old\n")
        self.reload = AgentReload(self.agent, load_config(self.path), self.clock)

    def apply(self, body: str) -> None:
        config_file(self, body, self.path)
        with capturedLogs():
            self.reload.reload(load_config(self.path))

    def get(self) -> int:
        from mdsvc.hop import GuestRequest

        with capturedLogs():
            return self.successResultOf(self.agent.handle(GuestRequest(b"GET", b"/", b"", "10.0.0.5", None, NET, None))).code

    def test_interface(self) -> None:
        """It is an IReloadable."""
        self.assertTrue(verifyObject(IReloadable, self.reload))

    def test_new_secret_before_the_api(self) -> None:
        """The agent has the new secret, the API not yet: refused requests are signed again with the previous one."""
        self.apply("[neutron]\nmetadata_proxy_shared_secret = new\n[mdsvc]\nsecret_rotation_window = 30\n")
        self.assertEqual(self.get(), 200)
        self.assertEqual(self.api.signatures, [sign("new", "inst-1").encode(), sign("old", "inst-1").encode()])
        self.api.accepted = "new"  # the API has it now: one request, no retry
        self.assertEqual(self.get(), 200)
        self.assertEqual(len(self.api.signatures), 3)

    def test_after_the_window(self) -> None:
        """After the window the previous secret is never used again: the API's 403 reaches the guest."""
        self.apply("[neutron]\nmetadata_proxy_shared_secret = new\n[mdsvc]\nsecret_rotation_window = 30\n")
        self.clock.advance(30)
        self.assertEqual(self.get(), 403)

    def test_rate_limits(self) -> None:
        """Rate limiting turned on, its limits changed, turned off."""
        self.assertIsNone(self.agent.limiter)
        self.apply("[neutron]\nmetadata_proxy_shared_secret = old\n[metadata_rate_limiting]\nrate_limit_enabled = true\n"
                   "burst_query_rate_limit = 2\n")
        limiter = self.agent.limiter
        self.assertEqual(limiter.windows, ((60, 240), (10, 2)))  # type: ignore[union-attr]
        self.assertEqual([self.get() for _ in range(3)], [200, 200, 429])
        self.apply("[neutron]\nmetadata_proxy_shared_secret = old\n[metadata_rate_limiting]\nrate_limit_enabled = true\n"
                   "burst_query_rate_limit = 5\n")
        self.assertIs(self.agent.limiter, limiter)
        self.assertEqual(limiter.windows, ((60, 240), (10, 5)))  # type: ignore[union-attr]
        self.apply("[neutron]\nmetadata_proxy_shared_secret = old\n")
        self.assertIsNone(self.agent.limiter)


class Recorder:
    """An IReloadable that records the configurations it is given."""

    options = frozenset({("api", "dhcp_domain")})

    def __init__(self) -> None:
        self.configs: list[Any] = []

    def reload(self, config: Any) -> None:
        self.configs.append(config)


class ReloaderTests(SynchronousTestCase):
    """Reading the files again, what is applied and what is refused."""

    def setUp(self) -> None:
        self.path = config_file(self, "[api]\ndhcp_domain = one\n[neutron]\nmetadata_proxy_shared_secret = topsecret\n")
        self.part = Recorder()
        self.reloader = Reloader(Clock(), load_config(self.path), [self.part], install_signal=False)

    def text(self, events: list[Any]) -> str:
        return "\n".join(formatEvent(e) for e in events)

    def test_applied(self) -> None:
        """A changed option a part takes is applied and named; hooks run around it."""
        seen: list[str] = []
        self.reloader.hooks.append(seen.append)
        config_file(self, "[api]\ndhcp_domain = two\n[neutron]\nmetadata_proxy_shared_secret = topsecret\n", self.path)
        with capturedLogs() as events:
            self.assertTrue(self.reloader.reload())
        self.assertEqual(self.part.configs[-1].api.dhcp_domain, "two")
        self.assertIn("applied: [api] dhcp_domain", self.text(events))
        self.assertEqual(seen, ["reloading", "reloaded"])

    def test_needs_restart(self) -> None:
        """A changed option no part takes is named in a warning (and the secret's value never appears)."""
        config_file(self, "[api]\ndhcp_domain = one\n[neutron]\nmetadata_proxy_shared_secret = othersecret\n"
                    "[DEFAULT]\nmetadata_listen_port = 9999\n", self.path)
        with capturedLogs() as events:
            self.reloader.reload()
        text = self.text(events)
        self.assertIn("taking effect at the next restart: [DEFAULT] metadata_listen_port, [neutron] metadata_proxy_shared_secret", text)
        self.assertNotIn("othersecret", text)
        self.assertNotIn("topsecret", text)

    def test_bad_file_kept(self) -> None:
        """A bad value: one error line naming file, line and option; nothing is applied."""
        config_file(self, "[api]\ndhcp_domain = two\nmetadata_cache_expiration = soon\n", self.path)
        with capturedLogs() as events:
            self.assertFalse(self.reloader.reload())
        self.assertEqual(self.part.configs, [])
        self.assertIn(f"{self.path}:3: [api] metadata_cache_expiration = 'soon'", self.text(events))
        self.assertEqual([e["log_level"] for e in events], [LogLevel.error])

    def test_startup_check_refuses(self) -> None:
        """A configuration the startup checks refuse is not applied either."""
        self.reloader.check = lambda config: ["tokens without a secret"]
        with capturedLogs() as events:
            self.assertFalse(self.reloader.reload())
        self.assertIn("tokens without a secret; the running configuration is kept", self.text(events))

    def test_no_files(self) -> None:
        """Without configuration files (the embedded defaults) there is nothing to read again."""
        reloader = Reloader(Clock(), load_config(None), [self.part], install_signal=False)
        with capturedLogs():
            self.assertFalse(reloader.reload())


class LogLevelTests(SynchronousTestCase):
    """[DEFAULT] debug: the observers' level, changed at once."""

    def test_filter(self) -> None:
        """Debug events are dropped at info and written at debug; events of other levels pass either way."""
        from twisted.logger import Logger

        publisher, written = LogPublisher(), []
        publisher.addObserver(written.append)
        level = LogLevelFilter(False, publisher)
        level.install()
        level.install()  # once only
        log = Logger(observer=publisher)
        log.debug("hidden")
        log.info("shown")
        LogLevelReload(level).reload(load_config(config_file(self, "[DEFAULT]\ndebug = true\n")))
        log.debug("now shown")
        self.assertEqual([e["log_format"] for e in written], ["shown", "now shown"])

    def test_stopping_unwraps(self) -> None:
        """When the service stops, the publisher gets its own observers back: nothing filtered, nothing wrapped twice."""
        from twisted.logger import Logger

        from mdsvc.loglevel import LogLevelService

        publisher, written = LogPublisher(), []
        publisher.addObserver(written.append)
        service = LogLevelService(LogLevelFilter(False, publisher))
        service.startService()
        log = Logger(observer=publisher)
        log.debug("hidden")
        service.stopService()
        log.debug("after stop")
        self.assertEqual([e["log_format"] for e in written], ["after stop"])
        self.assertEqual(publisher._observers, [written.append])


class StoreReloadTests(SynchronousTestCase):
    """
    SIGHUP on a node built by L{mdsvc.tap.makeService} with main's stores and lookups: C{store =
    nova}, a document store on a database server, C{lookup = ovn}.  What they can take is
    applied; their databases, threads and members are named as needing a restart, and the running
    store or replica goes on unchanged.
    """

    def node(self, role: str, body: str) -> tuple[Any, str, Reloader]:
        """The role's service tree over a configuration file of C{body}, its file, and its reloader."""
        from twisted.internet.testing import MemoryReactorClock

        from mdsvc.tap import Options, makeService

        path = config_file(self, body)
        options = Options()
        options["role"], options["parsed"] = role, load_config(path)
        parts = services_in(makeService(options, reactor=MemoryReactorClock()))
        reloader = next(s for s in parts if isinstance(s, Reloader))
        return parts, path, reloader

    def reload(self, reloader: Reloader, path: str, body: str) -> str:
        """Write C{body} and reload; the log lines (the reload must have been applied)."""
        config_file(self, body, path)
        with capturedLogs() as events:
            self.assertTrue(reloader.reload())
        return "\n".join(formatEvent(e) for e in events)

    def test_nova(self) -> None:
        """
        store = nova: the cache lifetime applies to the API's render cache and to the store's
        kept Neutron answers; the databases and the timeout take a restart, the password of a
        database URL never in a log line.
        """
        from mdsvc.api.app import MetadataApp
        from mdsvc.store.nova.store import NovaInstanceStore

        directory = os.path.abspath(self.mktemp())
        nova = (f"[DEFAULT]\nstate_path = {directory}\n[mdsvc]\nstore = nova\napi_endpoint = tcp:0\n"
                "[neutron]\nauth_url = http://keystone/v3\nusername = nova\nproject_name = service\n")
        parts, path, reloader = self.node("api", nova + f"[api_database]\nconnection = sqlite:///{directory}/api.db\n")
        store = next(s for s in parts if isinstance(s, NovaInstanceStore))
        self.assertEqual(store.addresses.ttl, 15)
        text = self.reload(reloader, path, nova + "[api]\nmetadata_cache_expiration = 60\n[mdsvc]\ndatabase_timeout = 9\n"
                           "[api_database]\nconnection = mysql+pymysql://nova:hunter2@db/nova_api\n")
        self.assertIn("applied: [api] metadata_cache_expiration", text)
        self.assertIn("taking effect at the next restart: [api_database] connection, [mdsvc] database_timeout", text)
        self.assertNotIn("hunter2", text)
        self.assertEqual(store.addresses.ttl, 60)
        apps = [r.app for r in reloader.parts if isinstance(getattr(r, "app", None), MetadataApp)]
        self.assertEqual([(app.store.inner, app.cache.ttl) for app in apps], [(store, 60)])  # (app.store: metered)
        self.assertEqual(store.reader.databases.api_database, f"sqlite:///{directory}/api.db")
        self.assertEqual(store.reader.engines.timeout, 5)

    def refused(self, reloader: Reloader, path: str, body: str) -> str:
        """Write C{body} and reload; the log lines (the reload must have been refused)."""
        config_file(self, body, path)
        with capturedLogs() as events:
            self.assertFalse(reloader.reload())
        return "\n".join(formatEvent(e) for e in events)

    def test_nova_would_not_start(self) -> None:
        """
        A file with which store = nova would not start (no [api_database] connection) is refused
        as startup refuses it, not named as taking effect at a restart that would fail.
        """
        from mdsvc.store.nova.store import NovaInstanceStore

        directory = os.path.abspath(self.mktemp())
        nova = (f"[DEFAULT]\nstate_path = {directory}\n[mdsvc]\nstore = nova\napi_endpoint = tcp:0\n"
                "[neutron]\nauth_url = http://keystone/v3\nusername = nova\nproject_name = service\n")
        parts, path, reloader = self.node("api", nova + f"[api_database]\nconnection = sqlite:///{directory}/api.db\n")
        store = next(s for s in parts if isinstance(s, NovaInstanceStore))
        text = self.refused(reloader, path, nova + "[api]\nmetadata_cache_expiration = 60\n")
        self.assertIn(f"SIGHUP: {path}:4: [mdsvc] store: store = nova needs [api_database] connection", text)
        self.assertIn("the running configuration is kept", text)
        self.assertEqual(store.addresses.ttl, 15)

    def test_ovn_would_not_start(self) -> None:
        """lookup = ovn with an ssl: member and TLS files that are not there: refused as startup refuses it."""
        directory = os.path.abspath(self.mktemp())
        base = (f"[DEFAULT]\nstate_path = {directory}\nmetadata_proxy_shared_secret = s\n[mdsvc]\nlookup = ovn\n"
                f"metadata_proxy_socket = {directory}/agent.sock\n")
        parts, path, reloader = self.node("agent", base + "[ovn]\novn_sb_connection = unix:/run/a.sock\n")
        text = self.refused(reloader, path, base + "[ovn]\novn_sb_connection = ssl:127.0.0.1:6642\n"
                            f"ovn_sb_private_key = {directory}/none.key\novn_sb_certificate = {directory}/none.pem\n"
                            f"ovn_sb_ca_cert = {directory}/ca.pem\n")
        self.assertIn(f"SIGHUP: {path}: [ovn] ovn_sb_private_key = {directory}/none.key: cannot read the file", text)
        self.assertIn("the running configuration is kept", text)

    def test_database_server_store(self) -> None:
        """A document store on PostgreSQL: a new URL takes a restart; the store in use stays."""
        from mdsvc.api.app import MetadataApp

        directory = os.path.abspath(self.mktemp())
        base = f"[DEFAULT]\nstate_path = {directory}\n[mdsvc]\napi_endpoint = tcp:0\n"
        parts, path, reloader = self.node("api", base + "store = postgresql://mdsvc:pw1@db1/mdsvc\n")
        app = next(r.app for r in reloader.parts if isinstance(getattr(r, "app", None), MetadataApp))
        store = app.store
        text = self.reload(reloader, path, base + "store = postgresql://mdsvc:pw2@db2/mdsvc\n[api]\ndhcp_domain = example.org\n")
        self.assertIn("taking effect at the next restart: [mdsvc] store", text)
        self.assertIn("applied: [api] dhcp_domain", text)
        self.assertNotIn("pw2", text)
        self.assertIs(app.store, store)
        self.assertEqual(app.dhcp_domain, "example.org")

    def test_ovn(self) -> None:
        """lookup = ovn: the members take a restart; the agent still looks up through the replica's front."""
        from mdsvc.agent.handler import MetadataAgent
        from mdsvc.lookup.ovn.front import ReplicaCacheFront

        directory = os.path.abspath(self.mktemp())
        base = (f"[DEFAULT]\nstate_path = {directory}\nmetadata_proxy_shared_secret = s\n[mdsvc]\nlookup = ovn\n"
                f"metadata_proxy_socket = {directory}/agent.sock\n")
        parts, path, reloader = self.node("agent", base + "[ovn]\novn_sb_connection = unix:/run/a.sock\n")
        agent = next(r.agent for r in reloader.parts if isinstance(getattr(r, "agent", None), MetadataAgent))
        front = agent.lookup
        self.assertIsInstance(front, ReplicaCacheFront)
        text = self.reload(reloader, path, base + "[ovn]\novn_sb_connection = unix:/run/b.sock\n"
                           "[metadata_rate_limiting]\nrate_limit_enabled = true\nip_versions = 4\n")
        self.assertIn("taking effect at the next restart: [ovn] ovn_sb_connection", text)
        self.assertIn("applied: [metadata_rate_limiting]", text)
        self.assertIs(agent.lookup, front)
        self.assertIsNotNone(agent.limiter)


class ConfigDirTests(SynchronousTestCase):
    """
    C{--config-dir} (main's oslo.config-style directories) with SIGHUP: the directory is listed
    again at each reload, as oslo.config does, so a file added since startup is read and one
    removed is not looked for.
    """

    def node(self, role: str = "api") -> tuple[str, Any, Reloader]:
        """A node of C{role} on C{--config-file base.conf --config-dir conf.d}: the directory, the app, the reloader."""
        from twisted.internet.testing import MemoryReactorClock

        from mdsvc.api.app import MetadataApp
        from mdsvc.tap import Options, makeService

        top_dir = os.path.abspath(self.mktemp())
        directory = os.path.join(top_dir, "conf.d")
        os.makedirs(directory)
        base = config_file(self, f"[DEFAULT]\nstate_path = {top_dir}/state\nmetadata_workers = 1\n[mdsvc]\napi_endpoint = tcp:0\n",
                           os.path.join(top_dir, "base.conf"))
        config_file(self, "[api]\ndhcp_domain = one\n", os.path.join(directory, "10-domain.conf"))
        options = Options()
        options.parseOptions(["--role", role, "--config-file", base, "--config-dir", directory])
        top = makeService(options, reactor=MemoryReactorClock())
        reloader = next(s for s in top if isinstance(s, Reloader))
        app = next(r.app for r in reloader.parts if isinstance(getattr(r, "app", None), MetadataApp))
        return directory, app, reloader

    def test_file_added(self) -> None:
        """A file added to the directory after startup is read by the next SIGHUP, after those before it."""
        directory, app, reloader = self.node()
        self.assertEqual(app.dhcp_domain, "one")
        config_file(self, "[api]\ndhcp_domain = two\n", os.path.join(directory, "20-later.conf"))
        with capturedLogs():
            self.assertTrue(reloader.reload())
        self.assertEqual(app.dhcp_domain, "two")

    def test_file_removed(self) -> None:
        """A file removed from the directory is not looked for: the reload applies what the rest says."""
        directory, app, reloader = self.node()
        os.remove(os.path.join(directory, "10-domain.conf"))
        with capturedLogs():
            self.assertTrue(reloader.reload())
        self.assertEqual(app.dhcp_domain, "novalocal")

    def test_directory_gone(self) -> None:
        """A directory that cannot be listed any more: one error line, the running configuration kept."""
        import shutil

        directory, app, reloader = self.node()
        shutil.rmtree(directory)
        with capturedLogs() as events:
            self.assertFalse(reloader.reload())
        self.assertIn(f"SIGHUP: {directory}: cannot read", "\n".join(formatEvent(e) for e in events))
        self.assertEqual(app.dhcp_domain, "one")
