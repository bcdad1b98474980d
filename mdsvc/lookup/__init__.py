# -*- test-case-name: tests.test_lookup_build -*-
"""
Instance-lookup backends: (network or router, guest address) to (instance, project).

C{[mdsvc] lookup} names one:

  - C{store}: the embedded instance store (L{mdsvc.lookup.store.StoreLookup}), the default;
  - C{neutron}: Neutron's REST API (L{mdsvc.lookup.neutron.NeutronLookup});
  - C{ovn}: a replica of the OVN Southbound database (L{mdsvc.lookup.ovn});
  - C{static:PATH}: a JSON or YAML file (L{mdsvc.lookup.static.StaticLookup});
  - C{NAME:ARG} (or C{NAME}): a vendor backend, an object in a module of C{mdsvc/plugins/} that
    provides both L{twisted.plugin.IPlugin} and L{ILookupBackendFactory}.

L{build_lookup} builds the backend alone; the agent wraps it in
L{mdsvc.lookup.cache.CachingLookup} when C{[cache] enabled}.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from zope.interface import Attribute, Interface

from mdsvc.interfaces import IInstanceLookup, LookupUnavailable

BUILTIN = ("store", "neutron", "ovn", "static:PATH")


class ILookupBackendFactory(Interface):
    """
    A vendor lookup backend, found with C{getPlugins(ILookupBackendFactory, mdsvc.plugins)}.

    The object must also provide L{twisted.plugin.IPlugin}, e.g.::

        @implementer(IPlugin, ILookupBackendFactory)
        class ContrailLookupFactory:
            name = "contrail"
            def build(self, argument, reactor):
                return ContrailLookup(argument, reactor)

        contrail = ContrailLookupFactory()
    """

    name = Attribute("The NAME of C{[mdsvc] lookup = NAME:ARG}.")

    def build(argument, reactor):
        """
        Build the backend.

        @param argument: the text after the first colon of the option (C{""} if none).
        @param reactor: the reactor (time, threads, network).
        @return: a provider of L{IInstanceLookup}.
        @raise ValueError: C{argument} is unusable (one line for the operator).
        """


def lookup_plugins() -> list[Any]:
    """The vendor lookup backend factories installed in C{mdsvc/plugins/} directories."""
    from mdsvc.plugins import installed

    return installed(ILookupBackendFactory)


def build_lookup(
    spec: str,
    documents_or_store_path: Any,
    reactor: Any,
    neutron_config: Any,
    plugins: Iterable[Any] | None = None,
    ovn_config: Any = None,
) -> IInstanceLookup:
    """
    Build the lookup backend C{[mdsvc] lookup} names, without a cache.

    @param spec: C{store}, C{neutron}, C{static:PATH}, or a vendor C{NAME[:ARG]}.
    @param documents_or_store_path: for C{store}: a L{mdsvc.store.sql.SQLDocuments}, a path, a
        C{sqlite:PATH} store URL or a database server's URL.
    @param neutron_config: the L{mdsvc.config.NeutronClientConfig}, for C{neutron}.
    @param plugins: the vendor factories to choose from (default: L{lookup_plugins}).
    @param ovn_config: the L{mdsvc.config.OvnConfig}, for C{ovn}.
    @raise ValueError: one line: an unknown backend (listing those available) or a bad argument.
    """
    spec = spec.strip()
    kind, colon, argument = spec.partition(":")
    if spec == "store":
        from mdsvc.lookup.store import StoreLookup
        from mdsvc.store.sql import SQLDocuments, is_sql_url

        documents = documents_or_store_path
        if isinstance(documents, str):
            if not (is_sql_url(documents) or documents.startswith("sqlite:")):
                if documents == "nova" or (":" in documents and not documents.startswith(("/", "."))):
                    raise ValueError("lookup = store reads mdsvc's own document store (sqlite:PATH or a database server's URL), "
                                     f"not store = {documents}")
                documents = f"sqlite:{documents}"  # a path
            documents = SQLDocuments(documents)
        return StoreLookup.in_threads(documents, reactor)
    if spec == "neutron":
        from mdsvc.lookup.neutron import NeutronLookup, build_http_client

        if neutron_config is None:
            raise ValueError("lookup = neutron needs the [neutron] options")
        return NeutronLookup(neutron_config, build_http_client(reactor, neutron_config), reactor)
    if spec == "ovn":
        from mdsvc.lookup.ovn import build_ovn_lookup

        if ovn_config is None:
            raise ValueError("lookup = ovn needs the [ovn] options")
        return build_ovn_lookup(ovn_config, reactor)
    if kind == "static" and colon:
        from mdsvc.lookup.static import StaticLookup

        if not argument.strip():
            raise ValueError("lookup = static:PATH needs a file path")
        static = StaticLookup(argument.strip())
        try:
            static.load()  # a bad or missing file is logged at startup, not first at a guest's request
        except LookupUnavailable:
            pass
        return static
    backend = _plugin(spec, plugins).build(argument, reactor)
    if not IInstanceLookup.providedBy(backend):
        raise ValueError(f"lookup backend {kind!r} built {backend!r}, which does not provide IInstanceLookup")
    return backend


def check_lookup(spec: str, plugins: Iterable[Any] | None = None) -> None:
    """
    Check, without building anything, that C{[mdsvc] lookup} names a backend: a built-in one or
    an installed vendor plugin.

    @raise ValueError: the line L{build_lookup} would raise for an unknown backend.
    """
    spec = spec.strip()
    if spec in ("store", "neutron", "ovn") or spec.startswith("static:"):
        return
    _plugin(spec, plugins)


def _plugin(spec: str, plugins: Iterable[Any] | None) -> Any:
    """
    The vendor factory of C{NAME[:ARG]} among C{plugins} (default: L{lookup_plugins}).

    @raise ValueError: none is named so (listing the backends available), or several are.
    """
    from mdsvc.plugins import named

    factories = list(lookup_plugins() if plugins is None else plugins)
    kind = spec.partition(":")[0]
    factory = named(kind, factories)
    if factory is not None:
        return factory
    available = list(BUILTIN) + sorted(f"{f.name}:ARG" for f in factories)
    raise ValueError(f"unknown lookup backend {spec!r} (available: {', '.join(available)})")
