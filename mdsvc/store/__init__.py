# -*- test-case-name: tests.test_plugins -*-
"""
Instance stores: where instance and router documents live, chosen by C{[mdsvc] store = NAME:ARG}.

Built in:

  - C{sqlite:PATH}: the embedded store, one file (L{mdsvc.store.sql} on L{mdsvc.store.embedded}),
    the default;
  - C{postgresql://...}, C{mysql+pymysql://...}: the same documents, through the same code, on a
    database server that several api nodes share (L{mdsvc.store.sql}; a URL's scheme is its NAME);
  - C{nova}: Nova's own databases, read as C{nova-api-metadata} reads them (L{mdsvc.store.nova});

and C{NAME:ARG}: a vendor store, an object in a module of an C{mdsvc/plugins/} directory that
provides both L{twisted.plugin.IPlugin} and L{IInstanceStoreFactory} (C{redis://db/0} is
C{redis} with the argument C{//db/0}).

The API serves whatever L{IInstanceStore} the store's factory opens; C{mdsvc-manage}, the demo
and C{[mdsvc] lookup = store} work on mdsvc's own document stores (sqlite and the database
servers' URLs) only (L{document_store}).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from mdsvc.interfaces import IInstanceStore, IInstanceStoreFactory

if TYPE_CHECKING:
    from mdsvc.config import Config

BUILTIN = ("sqlite:PATH", "postgresql://...", "mysql+pymysql://...", "nova")
"""The stores mdsvc has itself, as an unknown store's message lists them; any other NAME is a plugin's."""


def _sql_scheme(name: str) -> bool:
    """Whether a URL scheme is a database server's (L{mdsvc.store.sql.SERVER_KINDS}, any C{+driver})."""
    from mdsvc.store.sql import SERVER_KINDS

    return name.split("+", 1)[0] in SERVER_KINDS


def document_store(url: str) -> bool:
    """
    Whether C{[mdsvc] store} names one of mdsvc's own document stores, the ones C{mdsvc-manage}
    imports into and C{lookup = store} reads: C{sqlite:PATH} or a database server's URL (not
    C{nova}, not a vendor's store).
    """
    from mdsvc.store.sql import is_sql_url

    return url.startswith("sqlite:") or is_sql_url(url)


def store_plugins() -> list[Any]:
    """The vendor store factories installed in C{mdsvc/plugins/} directories."""
    from mdsvc.plugins import installed

    return installed(IInstanceStoreFactory)


def store_factory(url: str, plugins: Iterable[Any] | None = None) -> Any:
    """
    The factory of the store C{url} names: a built-in one (L{BUILTIN}) or a vendor plugin.

    @param plugins: the vendor factories to choose from (default: L{store_plugins}).
    @raise ValueError: one line: no store is named so (listing those available), or several are.
    """
    from mdsvc.plugins import named

    name, colon, _ = url.partition(":")
    if name == "sqlite":
        from mdsvc.store.sql import SQLStoreFactory

        return SQLStoreFactory("sqlite")
    if name == "nova":
        if colon:
            raise ValueError("store = nova takes no argument (Nova's databases are [api_database] and [database] connection)")
        from mdsvc.store.nova import NovaStoreFactory

        return NovaStoreFactory()
    if _sql_scheme(name):
        from mdsvc.store.sql import SQLStoreFactory, is_sql_url

        if not is_sql_url(url):
            raise ValueError(f"store = {name}: allowed: {name}://USER:PASSWORD@HOST/DB")
        return SQLStoreFactory(name)
    factories = list(store_plugins() if plugins is None else plugins)
    factory = named(name, factories)
    if factory is None:
        available = list(BUILTIN) + sorted(f"{f.name}:ARG" for f in factories)
        raise ValueError(f"unknown instance store {name!r} (available: {', '.join(available)})")
    return factory


def check_store(url: str, plugins: Iterable[Any] | None = None) -> None:
    """
    Check, without opening anything, that C{[mdsvc] store} names a store: a built-in one or an
    installed vendor plugin; a database server's URL must also be one SQLAlchemy takes, with its
    driver installed (nothing is connected to).

    @raise ValueError: the line L{open_store} would raise for an unknown store or an unusable URL
        (the password masked).
    """
    from mdsvc.store.sql import SQLStoreFactory

    factory = store_factory(url, plugins)
    if isinstance(factory, SQLStoreFactory) and factory.name != "sqlite":
        from mdsvc.store.nova.database import make_engine

        make_engine(url, 1, 1).dispose()


def open_store(url: str, reactor: Any, config: Config | None = None, plugins: Iterable[Any] | None = None) -> IInstanceStore:
    """
    Open the instance store C{[mdsvc] store} names.

    @param url: C{sqlite:PATH}, a database server's URL, C{nova} or a vendor C{NAME:ARG}.
    @param config: the node's configuration, for C{nova} and vendor stores (None: the defaults).
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
