"""Tests for L{mdsvc.lookup.build_lookup}: choosing the backend that [mdsvc] lookup names."""

from __future__ import annotations

import os
import sys
import textwrap
from typing import Any

from attrs import evolve
from treq.client import HTTPClient
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import capturedLogs
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

import mdsvc.plugins
from mdsvc.interfaces import IInstanceLookup
from mdsvc.lookup import ILookupBackendFactory, build_lookup, lookup_plugins
from mdsvc.lookup.neutron import NeutronLookup
from mdsvc.lookup.static import StaticLookup
from mdsvc.lookup.store import StoreLookup
from mdsvc.store.sql import SQLDocuments
from tests.test_lookup_cache import HeldLookup
from tests.test_lookup_neutron import CONFIG


@implementer(ILookupBackendFactory)
class VendorFactory:
    """A vendor backend factory recording what it was built with."""

    name = "vendor"

    def __init__(self, result: Any = None) -> None:
        self.result = HeldLookup() if result is None else result
        self.built: list[tuple[str, Any]] = []

    def build(self, argument: str, reactor: Any) -> Any:
        """Return the prepared backend."""
        self.built.append((argument, reactor))
        return self.result


class BuildTests(SynchronousTestCase):
    """The built-in backends and vendor plugins."""

    def setUp(self) -> None:
        self.reactor = MemoryReactorClock()

    def test_storeFromDocuments(self) -> None:
        """store with an SQLDocuments: a StoreLookup over it."""
        docs = SQLDocuments("sqlite:x.sqlite")
        lookup = build_lookup("store", docs, self.reactor, None)
        self.assertIsInstance(lookup, StoreLookup)
        self.assertIs(lookup.documents, docs)  # type: ignore[attr-defined]
        self.assertTrue(verifyObject(IInstanceLookup, lookup))

    def test_storeFromPaths(self) -> None:
        """store with a path or a sqlite: store URL."""
        for given, path in (("/var/lib/mdsvc/mdsvc.sqlite", "/var/lib/mdsvc/mdsvc.sqlite"),
                            ("sqlite:/var/lib/mdsvc/mdsvc.sqlite", "/var/lib/mdsvc/mdsvc.sqlite"),
                            ("relative.sqlite", "relative.sqlite")):
            lookup = build_lookup("store", given, self.reactor, None)
            self.assertEqual(lookup.documents.path, path)  # type: ignore[attr-defined]

    def test_storeNotSqlite(self) -> None:
        """store over a store that is not mdsvc's own documents (a vendor's, Nova's databases): ValueError."""
        for store in ("redis:host", "nova"):
            e = self.assertRaises(ValueError, build_lookup, "store", store, self.reactor, None)
            self.assertEqual(str(e), "lookup = store reads mdsvc's own document store (sqlite:PATH or a database server's "
                                     f"URL), not store = {store}")

    def test_storeOnDatabaseServer(self) -> None:
        """store over a database server's URL: the same lookup, on mdsvc's documents there (nothing connected yet)."""
        from mdsvc.store.sql import SQLDocuments

        lookup = build_lookup("store", "postgresql://mdsvc:secret@127.0.0.1:1/mdsvc", self.reactor, None)
        self.assertIsInstance(lookup, StoreLookup)
        documents = lookup.documents  # type: ignore[attr-defined]
        self.assertIsInstance(documents, SQLDocuments)
        self.assertEqual(documents.path, "postgresql://mdsvc:***@127.0.0.1:1/mdsvc")
        documents.close()

    def test_neutron(self) -> None:
        """neutron: a NeutronLookup with a pooled treq client on the reactor."""
        lookup = build_lookup("neutron", None, self.reactor, CONFIG)
        self.assertIsInstance(lookup, NeutronLookup)
        self.assertIsInstance(lookup.http, HTTPClient)  # type: ignore[attr-defined]
        self.assertIs(lookup.clock, self.reactor)  # type: ignore[attr-defined]
        self.assertTrue(verifyObject(IInstanceLookup, lookup))

    def test_neutronBadConfig(self) -> None:
        """neutron without auth_url nor endpoint_override: ValueError."""
        self.assertRaises(ValueError, build_lookup, "neutron", None, self.reactor, evolve(CONFIG, auth_url=""))
        self.assertRaises(ValueError, build_lookup, "neutron", None, self.reactor, None)

    def test_static(self) -> None:
        """static:PATH: a StaticLookup of that file; a missing file is logged at once, not fatal."""
        path = os.path.abspath(self.mktemp())
        with capturedLogs() as events:
            lookup = build_lookup(f"static:{path}", None, self.reactor, None)
        self.assertIsInstance(lookup, StaticLookup)
        self.assertEqual(lookup.path, path)  # type: ignore[attr-defined]
        self.assertEqual([e["reason"] for e in events], [f"{path}: file does not exist"])

    def test_staticWithoutPath(self) -> None:
        """static: without a path: ValueError."""
        e = self.assertRaises(ValueError, build_lookup, "static:", None, self.reactor, None)
        self.assertEqual(str(e), "lookup = static:PATH needs a file path")

    def test_plugin(self) -> None:
        """NAME:ARG picks the vendor factory of that name and passes ARG (after the first colon) and the reactor."""
        factory = VendorFactory()
        lookup = build_lookup("vendor:a:b", None, self.reactor, None, plugins=[factory])
        self.assertIs(lookup, factory.result)
        self.assertEqual(factory.built, [("a:b", self.reactor)])

    def test_pluginWithoutArgument(self) -> None:
        """NAME alone gives the factory an empty argument."""
        factory = VendorFactory()
        build_lookup("vendor", None, self.reactor, None, plugins=[factory])
        self.assertEqual(factory.built, [("", self.reactor)])

    def test_pluginBuildsNonLookup(self) -> None:
        """A factory that builds something else: ValueError."""
        e = self.assertRaises(ValueError, build_lookup, "vendor:x", None, self.reactor, None, plugins=[VendorFactory(result=42)])
        self.assertEqual(str(e), "lookup backend 'vendor' built 42, which does not provide IInstanceLookup")

    def test_unknown(self) -> None:
        """An unknown name: ValueError listing what is available."""
        e = self.assertRaises(ValueError, build_lookup, "ovn:sb", None, self.reactor, None, plugins=[VendorFactory()])
        self.assertEqual(str(e), "unknown lookup backend 'ovn:sb' (available: store, neutron, ovn, static:PATH, vendor:ARG)")

    def test_unknownNoPlugins(self) -> None:
        """Without plugins the built-ins are listed."""
        e = self.assertRaises(ValueError, build_lookup, "static", None, self.reactor, None, plugins=[])
        self.assertEqual(str(e), "unknown lookup backend 'static' (available: store, neutron, ovn, static:PATH)")


PLUGIN_MODULE = '''
from twisted.plugin import IPlugin
from zope.interface import implementer

from mdsvc.lookup import ILookupBackendFactory
from mdsvc.lookup.static import StaticLookup


@implementer(IPlugin, ILookupBackendFactory)
class FileFactory:
    name = "discovered"

    def build(self, argument, reactor):
        return StaticLookup(argument)


discovered = FileFactory()
'''


class DiscoveryTests(SynchronousTestCase):
    """Vendor factories are found in mdsvc/plugins directories with twisted.plugin."""

    def test_discovered(self) -> None:
        """A module in a plugins directory provides a backend by its name."""
        root = self.mktemp()
        plugins = os.path.join(root, "mdsvc", "plugins")
        os.makedirs(plugins)
        module = "mdsvc_test_lookup_plugin"
        with open(os.path.join(plugins, f"{module}.py"), "w") as f:
            f.write(textwrap.dedent(PLUGIN_MODULE))
        original = list(mdsvc.plugins.__path__)
        mdsvc.plugins.__path__.append(os.path.abspath(plugins))
        self.addCleanup(setattr, mdsvc.plugins, "__path__", original)
        self.addCleanup(sys.modules.pop, f"mdsvc.plugins.{module}", None)
        self.assertIn("discovered", [f.name for f in lookup_plugins()])
        lookup = build_lookup("discovered:/srv/ports.json", None, MemoryReactorClock(), None)
        self.assertIsInstance(lookup, StaticLookup)
        self.assertEqual(lookup.path, "/srv/ports.json")  # type: ignore[attr-defined]
        self.assertTrue(verifyObject(IInstanceLookup, lookup))
