# -*- test-case-name: tests.test_plugins -*-
"""
Instance stores: where instance and router documents live, chosen by C{[mdsvc] store = NAME:ARG}.

  - C{sqlite:PATH}: the embedded store (L{mdsvc.store.sqlite}), the default;
  - C{NAME:ARG}: a vendor store, an object in a module of an C{mdsvc/plugins/} directory that
    provides both L{twisted.plugin.IPlugin} and L{IInstanceStoreFactory} (a URL's scheme is its
    NAME: C{redis://db/0} is C{redis} with the argument C{//db/0}).

The API serves whatever L{IInstanceStore} the store's factory opens; C{mdsvc-manage}, the demo
and C{[mdsvc] lookup = store} work on the embedded store only.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from mdsvc.interfaces import IInstanceStore, IInstanceStoreFactory

if TYPE_CHECKING:
    from mdsvc.config import Config

BUILTIN = ("sqlite:PATH",)
"""The stores mdsvc has itself, as an unknown store's message lists them; any other NAME is a plugin's."""


def store_plugins() -> list[Any]:
    """The vendor store factories installed in C{mdsvc/plugins/} directories."""
    from mdsvc.plugins import installed

    return installed(IInstanceStoreFactory)


def store_factory(url: str, plugins: Iterable[Any] | None = None) -> Any:
    """
    The factory of the store C{url} names: the built-in sqlite one or a vendor plugin.

    @param plugins: the vendor factories to choose from (default: L{store_plugins}).
    @raise ValueError: one line: no store is named so (listing those available), or several are.
    """
    from mdsvc.plugins import named

    name = url.partition(":")[0]
    if name == "sqlite":
        from mdsvc.store.sqlite import SQLiteStoreFactory

        return SQLiteStoreFactory()
    factories = list(store_plugins() if plugins is None else plugins)
    factory = named(name, factories)
    if factory is None:
        available = list(BUILTIN) + sorted(f"{f.name}:ARG" for f in factories)
        raise ValueError(f"unknown instance store {name!r} (available: {', '.join(available)})")
    return factory


def check_store(url: str, plugins: Iterable[Any] | None = None) -> None:
    """
    Check, without opening anything, that C{[mdsvc] store} names a store: sqlite or an installed
    vendor plugin.

    @raise ValueError: the line L{open_store} would raise for an unknown store.
    """
    store_factory(url, plugins)


def open_store(url: str, reactor: Any, config: Config | None = None, plugins: Iterable[Any] | None = None) -> IInstanceStore:
    """
    Open the instance store C{[mdsvc] store} names.

    @param url: C{sqlite:PATH} or a vendor C{NAME:ARG}.
    @param config: the node's configuration, for a vendor store (None: the defaults).
    @param plugins: the vendor factories to choose from (default: L{store_plugins}).
    @raise ValueError: one line: an unknown store (listing those available), a bad argument, or
        a factory that did not open an L{IInstanceStore}.
    """
    factory = store_factory(url, plugins)
    if config is None:
        from mdsvc.config import load_config

        config = load_config(None)
    store = factory.open(url.partition(":")[2], config, reactor)
    if not IInstanceStore.providedBy(store):
        raise ValueError(f"instance store {factory.name!r} opened {store!r}, which does not provide IInstanceStore")
    return store
