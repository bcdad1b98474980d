"""The twistd plugin: options, the role table, and the .tac files building the same tree."""

from __future__ import annotations

import os
import runpy

from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import IService, MultiService
from twisted.internet.testing import MemoryReactorClock
from twisted.plugin import IPlugin, getPlugins
from twisted.python.usage import UsageError
from twisted.trial.unittest import SynchronousTestCase

from mdsvc.store.demo import DemoSeed, demo_document
from mdsvc.tap import Options, makeService
from mdsvc.store.sqlite import SQLiteDocuments

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
        """A bad value ends startup with one line naming file, line, section and option."""
        path = self.config("[DEFAULT]\nstate_path = STATE\n[api]\nmetadata_cache_expiration = -1\n")
        e = self.assertRaises(SystemExit, Options().parseOptions, ["--role", "api", "--config", path])
        self.assertEqual(e.code, f"mdsvc: {path}:4: [api] metadata_cache_expiration = '-1': allowed: an integer >= 0")

    def test_unwritable_store(self) -> None:
        """A store that cannot be opened stops startup with one line."""
        path = self.config("[mdsvc]\nstore = sqlite:/proc/nope/mdsvc.sqlite\n")
        e = self.assertRaises(SystemExit, Options().parseOptions, ["--role", "api", "--config", path])
        self.assertIn("[mdsvc] store sqlite:/proc/nope/mdsvc.sqlite: cannot open", e.code)
        self.assertNotIn("\n", e.code)

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
        documents = SQLiteDocuments(os.path.join(state, "mdsvc.sqlite"))
        uuid = demo_document()["uuid"]
        self.assertEqual(documents.get(uuid).document["name"], "demo-1")  # type: ignore[union-attr]
        documents.import_instances([dict(demo_document(), name="renamed")])
        DemoSeed(documents).privilegedStartService()
        self.assertEqual(documents.get(uuid).document["name"], "renamed")  # type: ignore[union-attr]

    def role(self, role: str, extra: str = "") -> tuple[IService, MemoryReactorClock, str]:
        state = os.path.abspath(self.mktemp())
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
        """The agent listens on its UNIX socket with the backlog and mode of the config, and no TCP."""
        _, reactor, state = self.role("agent", "[DEFAULT]\nmetadata_backlog = 77\nmetadata_proxy_socket_mode = all\n")
        self.assertEqual([(u[0], u[2], u[3]) for u in reactor.unixServers], [(f"{state}/metadata_proxy", 77, 0o666)])
        self.assertEqual(reactor.tcpServers, [])

    def test_proxy_role_listeners(self) -> None:
        """The proxy role opens the fixed listeners and forwards to the agent's socket."""
        top, reactor, _ = self.role("proxy", "listeners = network n1 tcp:18080:interface=127.0.0.1\n")
        self.assertEqual([(p[0], p[3]) for p in reactor.tcpServers], [(18080, "127.0.0.1")])
        self.assertEqual(reactor.unixServers, [])
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
        """all-in-one: API on TCP, agent on its socket, proxies in-process."""
        _, reactor, _ = self.role("all-in-one", "listeners = network n1 tcp:18082\n")
        self.assertEqual(sorted(p[0] for p in reactor.tcpServers), [0, 18082])
        self.assertEqual(len(reactor.unixServers), 1)
        from mdsvc.api.inprocess import InProcessAPI
        agent = [p[1] for p in reactor.tcpServers if p[0] == 18082][0].handler.upstream
        self.assertIsInstance(agent.api, InProcessAPI)

    def test_bad_lookup_one_line(self) -> None:
        """A lookup backend that cannot be built stops startup with one line."""
        state = os.path.abspath(self.mktemp())
        path = self.mktemp()
        with open(path, "w") as f:
            f.write(f"[DEFAULT]\nstate_path = {state}\n[mdsvc]\nlookup = nosuch:thing\n")
        options = Options()
        options.parseOptions(["--role", "agent", "--config", path])
        e = self.assertRaises(SystemExit, makeService, options, MemoryReactorClock())
        self.assertIn("nosuch", e.code)
        self.assertNotIn("\n", e.code)


class PluginTests(SynchronousTestCase):
    """The drop-in and the .tac files."""

    def test_plugin_found(self) -> None:
        """twistd finds the mdsvc ServiceMaker."""
        from twisted import plugins

        names = [p.tapname for p in getPlugins(IPlugin, plugins) if hasattr(p, "tapname")]
        self.assertIn("mdsvc", names)

    def test_tac_builds_same_tree(self) -> None:
        """tac/api.tac builds the same services as the plugin for the same file."""
        path = self.mktemp()
        with open(path, "w") as f:
            f.write(f"[DEFAULT]\nstate_path = {os.path.abspath(self.mktemp())}\n[mdsvc]\napi_endpoint = tcp:0\n")
        self.patch(os, "environ", dict(os.environ, MDSVC_CONFIG=path))
        namespace = runpy.run_path(os.path.join(ROOT, "tac", "api.tac"))
        tac_services = services(IService(namespace["application"]))
        options = Options()
        options.parseOptions(["--role", "api", "--config", path])
        plugin_services = services(makeService(options, MemoryReactorClock()))
        self.assertEqual([type(s) for s in tac_services[1:]], [type(s) for s in plugin_services])
        self.assertEqual([getattr(s, "endpoint", None).__class__ for s in tac_services[1:]],
                         [getattr(s, "endpoint", None).__class__ for s in plugin_services])
