"""The twistd plugin: options, the role table, and the .tac files building the same tree."""

from __future__ import annotations

import os
import runpy
from typing import Any

from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import IService, IServiceMaker, MultiService
from twisted.internet.testing import MemoryReactorClock
from twisted.plugin import getPlugins
from twisted.python.usage import UsageError
from twisted.trial.unittest import SynchronousTestCase

from mdsvc.store.demo import DemoSeed, demo_document
from mdsvc.store.sql import SQLDocuments
from mdsvc.tap import ROLES, SERVICES_BY_ROLE, Options, makeService
from tests.vendor_plugins import install_test_plugins

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def services(top: IService) -> list[IService]:
    out: list[IService] = []
    for child in top:  # type: ignore[attr-defined]
        out.append(child)
        if isinstance(child, MultiService):
            out.extend(services(child))
    return out


class OptionsTests(SynchronousTestCase):
    """Options and startup errors."""

    def config(self, text: str) -> str:
        path = self.mktemp()
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        with open(path, "w") as f:
            f.write(text.replace("STATE", os.path.abspath(self.mktemp())))
        return path

    def test_unknown_role(self) -> None:
        """An unknown role is a usage error naming the allowed ones."""
        e = self.assertRaises(UsageError, Options().parseOptions, ["--role", "nope"])
        self.assertIn("api, agent, proxy, network-node, all-in-one", str(e))

    def test_bad_config_one_line(self) -> None:
        """A bad value ends startup with a usage error of one line naming file, line, section and option."""
        path = self.config("[DEFAULT]\nstate_path = STATE\n[api]\nmetadata_cache_expiration = -1\n")
        e = self.assertRaises(UsageError, Options().parseOptions, ["--role", "api", "--config", path])
        self.assertEqual(str(e), f"mdsvc: {path}:4: [api] metadata_cache_expiration = '-1': allowed: an integer >= 0")

    def test_unwritable_store(self) -> None:
        """A store that cannot be opened stops startup with one line."""
        path = self.config("[mdsvc]\nstore = sqlite:/proc/nope/mdsvc.sqlite\n")
        e = self.assertRaises(UsageError, Options().parseOptions, ["--role", "api", "--config", path])
        self.assertIn("[mdsvc] store sqlite:/proc/nope/mdsvc.sqlite: cannot open", str(e))
        self.assertNotIn("\n", str(e))

    def test_usage_after_startup_problem(self) -> None:
        """
        After a startup problem the text twistd prints before the problem's line is one line,
        not the usage text; before one, and for a usage error, it is the usage text.
        """
        options = Options()
        self.assertIn("--config-file", str(options))
        self.assertRaises(UsageError, options.parseOptions, ["--role", "nope"])
        self.assertIn("--config-file", options.getUsage())
        options = Options()
        path = self.config("[api]\nmetadata_cache_expiration = -1\n")
        self.assertRaises(UsageError, options.parseOptions, ["--config-file", path])
        self.assertEqual(options.getUsage(), "mdsvc did not start.")

    def test_config_files_later_wins(self) -> None:
        """--config-file repeated: later files win, option by option; --config is one more file."""
        first = self.config("[DEFAULT]\nstate_path = STATE\n[api]\ndhcp_domain = first.example\nmetadata_cache_expiration = 7\n")
        second = self.config("[api]\ndhcp_domain = second.example\n")
        options = Options()
        options.parseOptions(["--role", "api", "--config-file", first, "--config", second])
        config = options["parsed"]
        self.assertEqual((config.api.dhcp_domain, config.api.cache_expiration), ("second.example", 7))
        self.assertEqual(config.sources, (first, second))

    def test_config_dir_after_files(self) -> None:
        """--config-dir reads the directory's *.conf files in sorted order, after the --config-file files."""
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        for name, text in (("20-late.conf", "[api]\ndhcp_domain = dir.example\n"), ("10-early.conf", "[api]\ndhcp_domain = early\n"),
                           ("ignored.txt", "[api]\ndhcp_domain = no\n")):
            with open(os.path.join(directory, name), "w") as f:
                f.write(text)
        path = self.config("[DEFAULT]\nstate_path = STATE\n[api]\ndhcp_domain = file.example\n")
        options = Options()
        options.parseOptions(["--role", "api", "--config-dir", directory, "--config-file", path])
        self.assertEqual(options["parsed"].api.dhcp_domain, "dir.example")
        self.assertEqual(options["parsed"].sources,
                         (path, os.path.join(directory, "10-early.conf"), os.path.join(directory, "20-late.conf")))

    def test_missing_config_dir(self) -> None:
        """A --config-dir that cannot be read is a one-line usage error naming it."""
        directory = os.path.abspath(self.mktemp())
        e = self.assertRaises(UsageError, Options().parseOptions, ["--role", "api", "--config-dir", directory])
        self.assertEqual(str(e), f"mdsvc: {directory}: cannot read: No such file or directory")

    def test_error_names_the_file_that_set_it(self) -> None:
        """With several files, a bad value is named by the file and line it came from."""
        first = self.config("[DEFAULT]\nstate_path = STATE\n")
        second = self.config("\n\n[api]\nmetadata_cache_expiration = soon\n")
        e = self.assertRaises(UsageError, Options().parseOptions, ["--role", "api", "--config-file", first, "--config-file", second])
        self.assertEqual(str(e), f"mdsvc: {second}:4: [api] metadata_cache_expiration = 'soon': allowed: an integer >= 0")

    def test_unknown_lookup_is_usage_error(self) -> None:
        """An unknown lookup backend stops startup in the options, with one line listing those available."""
        path = self.config("[DEFAULT]\nstate_path = STATE\n[mdsvc]\nlookup = nosuch:thing\n")
        e = self.assertRaises(UsageError, Options().parseOptions, ["--role", "network-node", "--config", path])
        self.assertTrue(str(e).startswith(f"mdsvc: {path}:4: [mdsvc] lookup: unknown lookup backend 'nosuch:thing' (available: store, neutron"),
                        str(e))
        self.assertNotIn("\n", str(e))

    def test_plugin_names_accepted(self) -> None:
        """
        A store and a vendordata provider that installed plugins have (tests/plugin_root, outside
        the package) are accepted by name.
        """
        install_test_plugins(self)
        path = self.config("[DEFAULT]\nstate_path = STATE\n[mdsvc]\nstore = teststore:/srv/instances.json\n"
                           "[api]\nvendordata_providers = StaticJSON, TestVendor\n")
        options = Options()
        options.parseOptions(["--role", "api", "--config", path])
        self.assertEqual((options["parsed"].store, options["parsed"].api.vendordata_providers),
                         ("teststore:/srv/instances.json", ("StaticJSON", "TestVendor")))

    def test_unknown_plugin_names_one_line(self) -> None:
        """
        A store or vendordata provider no installed plugin has stops startup with one line naming
        the file, line and option, and listing the names available (the plugins' too).
        """
        install_test_plugins(self)
        path = self.config("[DEFAULT]\nstate_path = STATE\n[api]\nvendordata_providers = StaticJSON, Nope\n")
        e = self.assertRaises(UsageError, Options().parseOptions, ["--role", "api", "--config", path])
        self.assertEqual(str(e), f"mdsvc: {path}:4: [api] vendordata_providers: unknown vendordata provider 'Nope' "
                                 "(available: StaticJSON, DynamicJSON, TestVendor)")
        path = self.config("[DEFAULT]\nstate_path = STATE\n[mdsvc]\n\nstore = redis://db/0\n")
        e = self.assertRaises(UsageError, Options().parseOptions, ["--role", "all-in-one", "--config", path])
        self.assertEqual(str(e), f"mdsvc: {path}:5: [mdsvc] store: unknown instance store 'redis' (available: sqlite:PATH, postgresql://..., mysql+pymysql://..., nova, "
                                 "teststore:ARG)")

    def test_plugin_names_checked_for_their_roles(self) -> None:
        """
        The proxy role opens neither store nor vendordata providers, and the agent role opens the
        store only for lookup = store: names they do not use do not stop them.
        """
        path = self.config("[DEFAULT]\nstate_path = STATE\n[mdsvc]\nstore = nosuch:x\nlookup = static:/srv/ports.json\n"
                           "[api]\nvendordata_providers = Nope\n")
        for role in ("proxy", "agent"):
            Options().parseOptions(["--role", role, "--config", path])
        e = self.assertRaises(UsageError, Options().parseOptions, ["--role", "api", "--config", path])
        self.assertIn(f"{path}:4: [mdsvc] store: unknown instance store 'nosuch'", str(e))

    def test_embedded_store_features_refused_on_plugin_store(self) -> None:
        """
        What only mdsvc's own document stores do, asked of a plugin's store or of Nova's
        databases, is one line naming the option that asks it: lookup = store (the agent reads
        the documents) and the demo (imported into them).
        """
        install_test_plugins(self)
        own = "mdsvc's own document store (sqlite:PATH or a database server's URL)"
        for store in ("teststore:/srv/i.json", "nova"):
            path = self.config(f"[DEFAULT]\nstate_path = STATE\n[mdsvc]\nstore = {store}\nlookup = store\n")
            e = self.assertRaises(UsageError, Options().parseOptions, ["--role", "agent", "--config", path])
            self.assertEqual(str(e), f"mdsvc: {path}:5: [mdsvc] lookup: lookup = store reads {own}, not store = {store}")
            path = self.config(f"[DEFAULT]\nstate_path = STATE\n[mdsvc]\nstore = {store}\ndemo = true\n")
            e = self.assertRaises(UsageError, Options().parseOptions, ["--role", "api", "--config", path])
            self.assertEqual(str(e), f"mdsvc: {path}:5: [mdsvc] demo: the demo instance is imported into {own}, "
                                     f"not into store = {store}")

    def test_document_store_features_on_database_server(self) -> None:
        """
        lookup = store and the demo work on mdsvc's document store on a database server as on
        sqlite: the startup checks take them (without connecting), and the api role seeds the
        demo into the server's documents.
        """
        url = "postgresql://mdsvc:secret@127.0.0.1:1/mdsvc"
        path = self.config(f"[DEFAULT]\nstate_path = STATE\n[mdsvc]\nstore = {url}\nlookup = store\ndemo = true\n")
        for role in ("agent", "network-node", "api", "all-in-one"):
            options = Options()
            options.parseOptions(["--role", role, "--config", path])
            self.assertEqual(options["parsed"].store, url)
        options = Options()
        options.parseOptions(["--role", "api", "--config", path])
        top = makeService(options, reactor=MemoryReactorClock())
        seeds = [s for s in services(top) if isinstance(s, DemoSeed)]
        self.assertEqual(len(seeds), 1)
        from mdsvc.store.sql import SQLDocuments

        self.assertIsInstance(seeds[0].documents, SQLDocuments)
        seeds[0].documents.close()

    def test_database_server_driver_checked(self) -> None:
        """A database server's URL without its driver stops the roles that open the store, one line, the password masked."""
        path = self.config("[DEFAULT]\nstate_path = STATE\n[mdsvc]\nstore = mysql+nosuchdriver://mdsvc:secret@db/mdsvc\n")
        e = str(self.assertRaises(UsageError, Options().parseOptions, ["--role", "api", "--config", path]))
        self.assertTrue(e.startswith(f"mdsvc: {path}:4: [mdsvc] store: no driver for mysql+nosuchdriver://mdsvc:***@db/mdsvc"), e)
        self.assertNotIn("secret", e)
        Options().parseOptions(["--role", "proxy", "--config", path])

    def test_nova_store_needs_its_databases(self) -> None:
        """store = nova without [api_database] connection stops the api role with one line naming the option's line."""
        path = self.config("[DEFAULT]\nstate_path = STATE\n[mdsvc]\nstore = nova\n")
        e = self.assertRaises(UsageError, Options().parseOptions, ["--role", "api", "--config", path])
        self.assertEqual(str(e), f"mdsvc: {path}:4: [mdsvc] store: store = nova needs [api_database] connection (or [api] "
                                 "local_metadata_per_cell = true with [database] connection)")
        Options().parseOptions(["--role", "proxy", "--config", path])  # (the proxy does not open it)
        path = self.config("[DEFAULT]\nstate_path = STATE\n[mdsvc]\nstore = nova\nlookup = neutron\n")
        Options().parseOptions(["--role", "agent", "--config", path])  # (nor an agent that does not look up in it)

    def test_unknown_socket_user_is_usage_error(self) -> None:
        """A metadata_proxy_user that does not exist stops the agent's startup in the options."""
        path = self.config("[DEFAULT]\nstate_path = STATE\nmetadata_proxy_user = no-such-user-here\n")
        e = self.assertRaises(UsageError, Options().parseOptions, ["--role", "agent", "--config", path])
        self.assertEqual(str(e), f"mdsvc: {path}: Invalid user/uid: 'no-such-user-here'")

    def test_agent_checks_only_for_agent_roles(self) -> None:
        """The api and proxy roles do not run the agent: its lookup backend does not stop them."""
        path = self.config("[DEFAULT]\nstate_path = STATE\n[mdsvc]\nlookup = nosuch:thing\n")
        for role in ("api", "proxy"):
            options = Options()
            options.parseOptions(["--role", role, "--config", path])
            self.assertEqual(options["parsed"].agent.lookup, "nosuch:thing")

    def test_config_from_environment(self) -> None:
        """Without --config, $MDSVC_CONFIG is read."""
        path = self.config("[DEFAULT]\nstate_path = STATE\n[api]\ndhcp_domain = example.org\n")
        self.patch(os, "environ", dict(os.environ, MDSVC_CONFIG=path))
        options = Options()
        options.parseOptions(["--role", "api"])
        self.assertEqual(options["parsed"].api.dhcp_domain, "example.org")


class MakeServiceTests(SynchronousTestCase):
    """makeService wires the API role."""

    def test_api_role(self) -> None:
        """The api role listens on the configured endpoint once started."""
        path = self.mktemp()
        with open(path, "w") as f:
            f.write(f"[DEFAULT]\nstate_path = {os.path.abspath(self.mktemp())}\n[mdsvc]\napi_endpoint = tcp:18775:interface=127.0.0.1\n")
        options = Options()
        options.parseOptions(["--role", "api", "--config", path])
        reactor = MemoryReactorClock()
        top = makeService(options, reactor)
        listeners = [s for s in services(top) if isinstance(s, StreamServerEndpointService)]
        self.assertEqual(len(listeners), 1)
        self.assertFalse([s for s in services(top) if isinstance(s, DemoSeed)])
        top.privilegedStartService()
        top.startService()
        self.assertEqual([(p[0], p[3]) for p in reactor.tcpServers], [(18775, "127.0.0.1")])
        top.stopService()

    def test_readiness_hides_the_store_password(self) -> None:
        """/readyz and the doctor name a database server's store by its URL, the password masked."""
        from mdsvc.config import load_config
        from mdsvc.tap import build_api

        path = self.mktemp()
        with open(path, "w") as f:
            f.write(f"[DEFAULT]\nstate_path = {os.path.abspath(self.mktemp())}\n"
                    "[mdsvc]\nstore = postgresql://mdsvc:s3cret@127.0.0.1:1/db\n")
        parts: dict[str, Any] = {}
        build_api(load_config([path]), MemoryReactorClock(), parts)
        self.assertEqual([d.name for d in parts["readiness"].dependencies], ["instance store postgresql://mdsvc:***@127.0.0.1:1/db"])

    def test_all_in_one_demo_seeds(self) -> None:
        """all-in-one with demo on imports the demo instance at startup, once."""
        state = os.path.abspath(self.mktemp())
        path = self.mktemp()
        with open(path, "w") as f:
            f.write(f"[DEFAULT]\nstate_path = {state}\n[mdsvc]\ndemo = true\napi_endpoint = tcp:0\n")
        options = Options()
        options.parseOptions(["--config", path])
        self.assertEqual(options["role"], "all-in-one")
        top = makeService(options, MemoryReactorClock())
        top.privilegedStartService()
        documents = SQLDocuments("sqlite:" + os.path.join(state, "mdsvc.sqlite"))
        uuid = demo_document()["uuid"]
        self.assertEqual(documents.get(uuid).document["name"], "demo-1")  # type: ignore[union-attr]
        documents.import_instances([dict(demo_document(), name="renamed")])
        DemoSeed(documents).privilegedStartService()
        self.assertEqual(documents.get(uuid).document["name"], "renamed")  # type: ignore[union-attr]

    def role(self, role: str, extra: str = "") -> tuple[IService, MemoryReactorClock, str]:
        import shutil
        import tempfile

        state = tempfile.mkdtemp(prefix="mdsvc-tap-")  # short: it holds UNIX sockets (the admin socket too)
        self.addCleanup(shutil.rmtree, state, True)
        path = self.mktemp()
        with open(path, "w") as f:
            f.write(f"[DEFAULT]\nstate_path = {state}\n[mdsvc]\napi_endpoint = tcp:0\n[proxy]\nnamespaces = none\n{extra}")
        options = Options()
        options.parseOptions(["--role", role, "--config", path])
        reactor = MemoryReactorClock()
        top = makeService(options, reactor)
        top.privilegedStartService()
        top.startService()
        self.addCleanup(top.stopService)
        return top, reactor, state

    def test_agent_role(self) -> None:
        """
        The agent listens on its UNIX socket with the backlog and mode of the config, and no TCP;
        its admin socket is $state_path/run/agent.sock, 0600.
        """
        _, reactor, state = self.role("agent", "[DEFAULT]\nmetadata_backlog = 77\nmetadata_proxy_socket_mode = all\n")
        self.assertEqual([(u[0], u[2], u[3]) for u in reactor.unixServers],
                         [(f"{state}/metadata_proxy", 77, 0o666), (f"{state}/run/agent.sock", 50, 0o600)])
        self.assertEqual(reactor.tcpServers, [])

    def test_proxy_role_listeners(self) -> None:
        """The proxy role opens the fixed listeners and forwards to the agent's socket."""
        top, reactor, state = self.role("proxy", "listeners = network n1 tcp:18080:interface=127.0.0.1\n")
        self.assertEqual([(p[0], p[3]) for p in reactor.tcpServers], [(18080, "127.0.0.1")])
        self.assertEqual([u[0] for u in reactor.unixServers], [f"{state}/run/proxy.sock"])  # its admin socket only
        from mdsvc.proxy.http import AgentSocketUpstream, NamespaceProxyHandler
        resource = reactor.tcpServers[0][1].handler
        self.assertIsInstance(resource, NamespaceProxyHandler)
        self.assertIsInstance(resource.upstream, AgentSocketUpstream)

    def test_network_node_in_process(self) -> None:
        """network-node: the proxies call the agent in-process, and the agent socket stays open."""
        _, reactor, state = self.role("network-node", "listeners = router r1 tcp:18081\n")
        from mdsvc.agent.handler import MetadataAgent
        self.assertIsInstance(reactor.tcpServers[0][1].handler.upstream, MetadataAgent)
        self.assertEqual(reactor.unixServers[0][0], f"{state}/metadata_proxy")

    def test_all_in_one_has_everything(self) -> None:
        """all-in-one: API on TCP, agent on its socket, proxies in-process; one admin socket."""
        _, reactor, state = self.role("all-in-one", "listeners = network n1 tcp:18082\n")
        self.assertEqual(sorted(p[0] for p in reactor.tcpServers), [0, 18082])
        self.assertEqual([u[0] for u in reactor.unixServers], [f"{state}/metadata_proxy", f"{state}/run/all-in-one.sock"])
        from mdsvc.api.inprocess import InProcessAPI
        agent = [p[1] for p in reactor.tcpServers if p[0] == 18082][0].handler.upstream
        self.assertIsInstance(agent.api, InProcessAPI)

    def test_bad_lookup_one_line(self) -> None:
        """
        A lookup backend that only building finds unusable (a CA file that cannot be read) stops
        startup with one line: an exit, since twistd prints a traceback for a UsageError raised
        by makeService.
        """
        state = os.path.abspath(self.mktemp())
        path = self.mktemp()
        with open(path, "w") as f:
            f.write(f"[DEFAULT]\nstate_path = {state}\n[mdsvc]\nlookup = neutron\n[neutron]\ncafile = {state}/missing.pem\n")
        options = Options()
        options.parseOptions(["--role", "agent", "--config", path])
        e = self.assertRaises(SystemExit, makeService, options, MemoryReactorClock())
        self.assertEqual(e.code, f"mdsvc: {path}: [neutron] cafile {state}/missing.pem: cannot read: No such file or directory")


class PluginTests(SynchronousTestCase):
    """The drop-in and the .tac files."""

    def test_plugin_found(self) -> None:
        """twistd finds the mdsvc ServiceMaker."""
        from twisted import plugins

        names = [p.tapname for p in getPlugins(IServiceMaker, plugins)]
        self.assertIn("mdsvc", names)

    def test_tac_builds_same_tree(self) -> None:
        """Each tac/ROLE.tac builds the same services as the plugin's ROLE for the same file."""
        path = self.mktemp()
        with open(path, "w") as f:
            f.write(f"[DEFAULT]\nstate_path = {os.path.abspath(self.mktemp())}\n[mdsvc]\napi_endpoint = tcp:0\n"
                    "[proxy]\nnamespaces = none\nlisteners = network n1 tcp:0\n")
        self.patch(os, "environ", dict(os.environ, MDSVC_CONFIG=path))
        for role in ROLES:
            namespace = runpy.run_path(os.path.join(ROOT, "tac", f"{role}.tac"))
            tac_services = services(IService(namespace["application"]))
            options = Options()
            options.parseOptions(["--role", role, "--config", path])
            plugin_services = services(makeService(options, MemoryReactorClock()))
            self.assertEqual([type(s) for s in tac_services[1:]], [type(s) for s in plugin_services], role)
            self.assertEqual([getattr(s, "endpoint", None).__class__ for s in tac_services[1:]],
                             [getattr(s, "endpoint", None).__class__ for s in plugin_services], role)

    def test_tac_bad_config_one_line(self) -> None:
        """A .tac stops with the one line of a startup problem (an exit: twistd -y prints a traceback for the rest)."""
        path = self.mktemp()
        with open(path, "w") as f:
            f.write("[api]\nmetadata_cache_expiration = soon\n")
        self.patch(os, "environ", dict(os.environ, MDSVC_CONFIG=path))
        e = self.assertRaises(SystemExit, runpy.run_path, os.path.join(ROOT, "tac", "api.tac"))
        self.assertEqual(e.code, f"mdsvc: {path}:2: [api] metadata_cache_expiration = 'soon': allowed: an integer >= 0")

    def test_roles_have_services(self) -> None:
        """Every node role the configuration knows has its services in the role table."""
        self.assertEqual(set(SERVICES_BY_ROLE), set(ROLES))
