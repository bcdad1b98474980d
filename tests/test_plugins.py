"""
Vendor plugins living outside the mdsvc package (C{tests/plugin_root}): an instance store named
by C{[mdsvc] store} and a vendordata provider named in C{[api] vendordata_providers}, found with
C{twisted.plugin.getPlugins}, opened by name, and serving a guest's requests through the API's
listener. (A real C{twistd} with the plugins on its C{PYTHONPATH}:
C{tests/integration/test_plugins_process.py}.)
"""

from __future__ import annotations

import json
import os
from typing import Any

from twisted.application.internet import StreamServerEndpointService
from twisted.internet.address import IPv4Address
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.logger import capturedLogs
from twisted.plugin import IPlugin
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from mdsvc.api.factory import DynamicJSONFactory, build_vendordata_providers
from mdsvc.api.vendordata import vendordata_plugins
from mdsvc.config import load_config
from mdsvc.interfaces import IInstanceStore, IInstanceStoreFactory, IVendordataProvider, IVendordataProviderFactory
from mdsvc.lookup import lookup_plugins
from mdsvc.model import instance_from_document
from mdsvc.plugins import named
from mdsvc.store import open_store, store_plugins
from mdsvc.tap import Options, makeService
from tests.http import RawResponse, parse_response
from tests.test_tap import services
from tests.vendor_plugins import MODULES, caches_in_plugin_root, install_test_plugins

UUID = "3d1c7e9a-5b2f-4c60-9a11-0c5e2f7b8d01"
OTHER = "3d1c7e9a-5b2f-4c60-9a11-0c5e2f7b8d02"


def document(uuid: str = UUID, ip: str = "10.0.0.5", **changes: Any) -> dict[str, Any]:
    """An instance document with one port holding C{ip}."""
    doc: dict[str, Any] = {
        "uuid": uuid, "name": "vendor-1", "project_id": "proj-1",
        "nics": [{"port_id": "0f0e0d0c-0000-4000-8000-0000000000a1", "mac": "fa:16:3e:00:00:a1",
                  "network": {"id": "net-1", "name": "private"},
                  "fixed_ips": [{"ip": ip, "subnet": {"id": "sub-1", "cidr": "10.0.0.0/24", "gateway": "10.0.0.1"}}]}],
    }
    doc.update(changes)
    return doc


class PluginCase(SynchronousTestCase):
    """The test plugins installed from a copy, and files in the test's own directory."""

    def setUp(self) -> None:
        self.root = install_test_plugins(self)
        self.dir = os.path.abspath(self.mktemp())
        os.makedirs(self.dir)

    def write(self, name: str, text: str) -> str:
        """A file of the test's directory."""
        path = os.path.join(self.dir, name)
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        return path

    def documents(self, *docs: dict[str, Any]) -> str:
        """A JSON file of instance documents, as the C{teststore} plugin reads them."""
        return self.write("instances.json", json.dumps(list(docs) or [document()]))

    def config(self, body: str) -> str:
        """A configuration file with its state in the test's directory."""
        return self.write("mdsvc.conf", f"[DEFAULT]\nstate_path = {self.dir}/state\n{body}")


class DiscoveryTests(PluginCase):
    """The plugins are found in an C{mdsvc/plugins} directory outside the package, by interface."""

    def test_found_by_interface(self) -> None:
        """
        The store factory is among the store plugins, the provider factory among the vendordata
        plugins, each an IPlugin providing its factory interface; neither is a lookup backend.
        """
        stores = {f.name: f for f in store_plugins()}
        providers = {f.name: f for f in vendordata_plugins()}
        self.assertIn("teststore", stores)
        self.assertIn("TestVendor", providers)
        self.assertNotIn("TestVendor", stores)
        self.assertNotIn("teststore", providers)
        self.assertTrue(verifyObject(IInstanceStoreFactory, stores["teststore"]))
        self.assertTrue(verifyObject(IVendordataProviderFactory, providers["TestVendor"]))
        self.assertTrue(IPlugin.providedBy(stores["teststore"]) and IPlugin.providedBy(providers["TestVendor"]))
        self.assertEqual({type(f).__module__ for f in (stores["teststore"], providers["TestVendor"])},
                         {f"mdsvc.plugins.{m}" for m in MODULES})
        self.assertFalse({"teststore", "TestVendor"} & {f.name for f in lookup_plugins()})

    def test_caches_in_the_copy(self) -> None:
        """Discovery writes Twisted's dropin.cache into the copy it scanned, never into tests/plugin_root."""
        store_plugins()
        self.assertTrue(os.path.exists(os.path.join(self.root, "mdsvc", "plugins", "dropin.cache")))
        self.assertEqual(caches_in_plugin_root(), [])

    def test_several_named_alike(self) -> None:
        """Two plugins with one name are refused in one line naming their modules, whatever the order."""

        class Named:
            """A plugin-like object with a name."""

            def __init__(self, name: str) -> None:
                self.name = name

        first, second, other = Named("dup"), Named("dup"), Named("other")
        e = self.assertRaises(ValueError, named, "dup", [first, other, second])
        self.assertEqual(str(e), f"several plugins are named 'dup' ({__name__}, {__name__}); remove all but one")
        self.assertIs(named("other", [first, other, second]), other)
        self.assertIsNone(named("nobody", [first, other]))


class NotInstalledTests(SynchronousTestCase):
    """Without the vendor's directory, its names are not there: they come from discovery."""

    def test_absent(self) -> None:
        """Neither the store nor the provider is found, and naming them lists what is."""
        self.assertNotIn("teststore", [f.name for f in store_plugins()])
        self.assertNotIn("TestVendor", [f.name for f in vendordata_plugins()])
        e = self.assertRaises(ValueError, open_store, "teststore:/x.json", MemoryReactorClock())
        self.assertEqual(str(e), "unknown instance store 'teststore' (available: sqlite:PATH, postgresql://..., mysql+pymysql://..., nova)")


class StoreSeamTests(PluginCase):
    """C{[mdsvc] store = teststore:FILE} opens the plugin's store."""

    def test_open_by_name(self) -> None:
        """The store a plugin opens provides IInstanceStore and serves the file's instances."""
        path = self.documents(document(), document(OTHER, "10.0.0.6", name="vendor-2"))
        config = load_config(self.config(f"[mdsvc]\nstore = teststore:{path}\n"))
        store = open_store(config.store, MemoryReactorClock(), config)
        self.assertTrue(verifyObject(IInstanceStore, store))
        self.assertEqual(self.successResultOf(store.get(UUID)).name, "vendor-1")  # type: ignore[union-attr]
        self.assertEqual(self.successResultOf(store.by_address("10.0.0.6")).uuid, OTHER)  # type: ignore[union-attr]
        self.assertIsNone(self.successResultOf(store.get("nobody")))

    def test_unknown_lists_plugins(self) -> None:
        """An unknown store names the built-in and the installed plugins' stores."""
        e = self.assertRaises(ValueError, open_store, "redis://db/0", MemoryReactorClock())
        self.assertEqual(str(e), "unknown instance store 'redis' (available: sqlite:PATH, postgresql://..., mysql+pymysql://..., nova, "
                                 "teststore:ARG)")

    def test_plugin_refuses_argument(self) -> None:
        """A store the plugin cannot open is its one line."""
        missing = os.path.join(self.dir, "missing.json")
        e = self.assertRaises(ValueError, open_store, f"teststore:{missing}", MemoryReactorClock())
        self.assertEqual(str(e), f"store = teststore:{missing}: [Errno 2] No such file or directory: '{missing}'")

    def test_factory_must_open_a_store(self) -> None:
        """A factory that opens something that is no IInstanceStore is refused, naming it."""

        @implementer(IPlugin, IInstanceStoreFactory)
        class Broken:
            """Opens an object that is not a store."""

            name = "broken"

            def open(self, argument: str, config: Any, reactor: Any) -> Any:
                return "not a store"

        e = self.assertRaises(ValueError, open_store, "broken:x", MemoryReactorClock(), plugins=[Broken()])
        self.assertEqual(str(e), "instance store 'broken' opened 'not a store', which does not provide IInstanceStore")


class VendordataSeamTests(PluginCase):
    """C{[api] vendordata_providers = ..., TestVendor} builds the plugin's provider."""

    def test_build_by_name(self) -> None:
        """
        The plugin's provider is built once, from its own section, next to DynamicJSON (built
        through the same factory interface); StaticJSON is the app's file, not built here.
        """
        config = load_config(self.config("[api]\nvendordata_providers = StaticJSON, TestVendor, DynamicJSON, TestVendor\n"
                                         "[test_vendor]\ngreeting = hello\n"))
        built = build_vendordata_providers(config, MemoryReactorClock())
        self.assertEqual(sorted(built), ["DynamicJSON", "TestVendor"])
        for provider in built.values():
            self.assertTrue(verifyObject(IVendordataProvider, provider))
        self.assertTrue(verifyObject(IVendordataProviderFactory, DynamicJSONFactory()))
        instance = instance_from_document(document(), "test")
        self.assertEqual(self.successResultOf(built["TestVendor"].vendordata(instance)),
                         {"test_vendor": {"greeting": "hello", "instance": UUID, "hostname": "vendor-1"}})

    def test_unknown_lists_plugins(self) -> None:
        """An unknown provider names the built-in ones and the installed plugins'."""
        config = load_config(self.config("[api]\nvendordata_providers = StaticJSON, Nope\n"))
        e = self.assertRaises(ValueError, build_vendordata_providers, config, MemoryReactorClock())
        self.assertEqual(str(e), "unknown vendordata provider 'Nope' (available: StaticJSON, DynamicJSON, TestVendor)")

    def test_plugin_refuses_config(self) -> None:
        """A provider whose configuration is unusable is the plugin's one line."""
        config = load_config(self.config("[api]\nvendordata_providers = TestVendor\n"))
        e = self.assertRaises(ValueError, build_vendordata_providers, config, MemoryReactorClock())
        self.assertEqual(str(e), "vendordata provider TestVendor needs [test_vendor] greeting")

    def test_factory_must_build_a_provider(self) -> None:
        """A factory that builds something that is no IVendordataProvider is refused, naming it."""

        @implementer(IPlugin, IVendordataProviderFactory)
        class Broken:
            """Builds an object that is not a provider."""

            name = "Broken"

            def build(self, config: Any, reactor: Any) -> Any:
                return {"not": "a provider"}

        config = load_config(self.config("[api]\nvendordata_providers = Broken\n"))
        e = self.assertRaises(ValueError, build_vendordata_providers, config, MemoryReactorClock(), [Broken()])
        self.assertEqual(str(e), "vendordata provider 'Broken' built {'not': 'a provider'}, which does not provide IVendordataProvider")


class EndToEndTests(PluginCase):
    """
    The api role configured with the plugins' names: the store opened (and started) by the
    service tree, guests answered through the API's listener from the plugin's store, with the
    plugin's vendor data.
    """

    def start(self, extra: str = "") -> tuple[Any, MemoryReactorClock, list[dict[str, Any]]]:
        """The api role of a configuration naming both plugins, started on a memory reactor."""
        static = self.write("vendor_data.json", json.dumps({"region": "r1"}))
        path = self.config(
            f"[mdsvc]\nstore = teststore:{self.documents()}\napi_endpoint = tcp:18775:interface=127.0.0.1\n"
            f"[api]\nvendordata_providers = StaticJSON, TestVendor\nvendordata_jsonfile_path = {static}\n"
            f"[test_vendor]\ngreeting = hello from a plugin\n{extra}"
        )
        options = Options()
        options.parseOptions(["--role", "api", "--config", path])
        reactor = MemoryReactorClock()
        top = makeService(options, reactor)
        with capturedLogs() as events:
            top.privilegedStartService()
            top.startService()
        self.addCleanup(top.stopService)
        return top, reactor, list(events)

    def get(self, reactor: MemoryReactorClock, method: bytes, path: bytes, body: bytes = b"", peer: str = "10.0.0.5") -> RawResponse:
        """One request from C{peer} to the API's listener."""
        [(_, factory, _, _)] = reactor.tcpServers
        protocol = factory.buildProtocol(IPv4Address("TCP", peer, 40000))
        transport = StringTransport(peerAddress=IPv4Address("TCP", peer, 40000))
        protocol.makeConnection(transport)
        head = b"%s %s HTTP/1.1\r\nHost: 169.254.169.254\r\nContent-Length: %d\r\n\r\n" % (method, path, len(body))
        protocol.dataReceived(head + body)
        return parse_response(transport.value())

    def test_store_is_a_service_of_the_api(self) -> None:
        """The plugin's store, a service too, is started with the API, before its listener, and stopped with it."""
        top, _, events = self.start()
        tree = services(top)
        [store] = [s for s in tree if IInstanceStore.providedBy(s)]
        [listener] = [s for s in tree if isinstance(s, StreamServerEndpointService)]
        self.assertTrue(store.running)
        self.assertLess(tree.index(store), tree.index(listener))
        self.assertIn("teststore: serving 1 instances from " + os.path.join(self.dir, "instances.json"),
                      [e["log_format"].format(**e) for e in events])
        top.stopService()
        self.assertFalse(store.running)

    def test_meta_data_from_plugin_store(self) -> None:
        """meta_data.json of the guest at 10.0.0.5 is the instance of the plugin's file."""
        _, reactor, _ = self.start()
        r = self.get(reactor, b"GET", b"/openstack/latest/meta_data.json")
        self.assertEqual(r.code, 200)
        md = json.loads(r.body)
        self.assertEqual((md["uuid"], md["name"], md["hostname"], md["project_id"]),
                         (UUID, "vendor-1", "vendor-1.novalocal", "proj-1"))
        self.assertEqual(self.get(reactor, b"GET", b"/openstack/latest/meta_data.json", peer="10.0.0.9").code, 404)

    def test_vendor_data2_from_plugin_provider(self) -> None:
        """vendor_data2.json merges StaticJSON's file and the plugin's data, in the configured order."""
        _, reactor, _ = self.start()
        r = self.get(reactor, b"GET", b"/openstack/latest/vendor_data2.json")
        self.assertEqual(r.code, 200)
        self.assertEqual(list(json.loads(r.body).items()), [
            ("static", {"region": "r1"}),
            ("test_vendor", {"greeting": "hello from a plugin", "instance": UUID, "hostname": "vendor-1"}),
        ])

    def test_password_into_plugin_store(self) -> None:
        """A password the guest posts is kept by the plugin's store and read back, once."""
        _, reactor, _ = self.start()
        self.assertEqual(self.get(reactor, b"POST", b"/openstack/latest/password", b"s3cret").code, 200)
        self.assertEqual(self.get(reactor, b"GET", b"/openstack/latest/password").body, b"s3cret")
        self.assertEqual(self.get(reactor, b"POST", b"/openstack/latest/password", b"again").code, 409)

    def test_plugin_refusing_config_one_line(self) -> None:
        """A provider refusing its configuration when the API is built stops startup with its one line."""
        path = self.config(f"[mdsvc]\nstore = teststore:{self.documents()}\n[api]\nvendordata_providers = TestVendor\n")
        options = Options()
        options.parseOptions(["--role", "api", "--config", path])
        e = self.assertRaises(SystemExit, makeService, options, MemoryReactorClock())
        self.assertEqual(e.code, f"mdsvc: {path}: vendordata provider TestVendor needs [test_vendor] greeting")

    def test_plugin_section_bad_substitution_one_line(self) -> None:
        """A $name of the vendor's own section naming no option stops startup with the line naming file and line."""
        path = self.config(f"[mdsvc]\nstore = teststore:{self.documents()}\n[api]\nvendordata_providers = TestVendor\n"
                           "[test_vendor]\ngreeting = $nowhere\n")
        options = Options()
        options.parseOptions(["--role", "api", "--config", path])
        e = self.assertRaises(SystemExit, makeService, options, MemoryReactorClock())
        self.assertEqual(e.code, f"mdsvc: {path}:8: [test_vendor] greeting: $nowhere names no option")

