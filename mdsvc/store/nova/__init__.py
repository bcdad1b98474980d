# -*- test-case-name: tests.test_nova_store -*-
"""
C{[mdsvc] store = nova}: the api role reads Nova's own databases, as C{nova-api-metadata} does.

Configured by nova.conf's own options (an operator adds C{[mdsvc] store = nova} to the nova.conf
they have): C{[api_database] connection}, C{[database] connection},
C{[api] local_metadata_per_cell} and C{[neutron]}'s keystoneauth options; mdsvc's
C{[mdsvc] database_threads} and C{database_timeout}.

  - L{tables}: the columns read, as declared by Nova 34's models;
  - L{database}: engines, pooled and pre-pinged, timeouts, short read-only transactions;
  - L{cells}: which database holds an instance (API database, cell mappings);
  - L{rows}: one instance's rows, with Nova's filters and order;
  - L{ovo}, L{netinfo}, L{convert}: those rows as mdsvc's L{mdsvc.model.Instance};
  - L{password}: the password endpoint's write, once;
  - L{neutron}: what Nova asks Neutron (security groups, remote-address and provider lookups);
  - L{store}: the L{mdsvc.interfaces.IInstanceStore}, its thread pool a service.
"""

from __future__ import annotations

from typing import Any

from twisted.logger import Logger
from zope.interface import implementer

from mdsvc.config import Config, located
from mdsvc.interfaces import IInstanceStoreFactory
from mdsvc.store.nova.database import Engines, make_engine, shown
from mdsvc.store.nova.neutron import NovaNeutron
from mdsvc.store.nova.store import NovaDatabases, NovaInstanceStore, NovaReader

__all__ = ["NovaStoreFactory", "check_nova_store", "where"]

log = Logger()


where = located
"""C{FILE:LINE: [section] name} of the last configuration file that sets the option (L{mdsvc.config.located})."""


def _neutron_configured(config: Config) -> bool:
    neutron = config.agent.neutron
    return bool(neutron.auth_url or neutron.endpoint_override)


def check_nova_store(config: Config) -> None:
    """
    What would stop C{store = nova} from starting, found before anything is opened: the
    databases it needs are given and have drivers; Neutron is configured when the API finds
    guests by their address.

    @raise ValueError: one line naming the file, line and option.
    """
    nova = config.nova
    if nova.local_metadata_per_cell:
        if nova.database is None:
            raise ValueError(f"{where(config, 'api', 'local_metadata_per_cell')}: store = nova with local_metadata_per_cell "
                             "needs [database] connection")
    elif nova.api_database is None:
        raise ValueError(f"{where(config, 'mdsvc', 'store')}: store = nova needs [api_database] connection (or [api] "
                         "local_metadata_per_cell = true with [database] connection)")
    for section, url in (("api_database", nova.api_database), ("database", nova.database)):
        if url is not None:
            try:
                make_engine(url, 1, nova.timeout).dispose()
            except ValueError as e:
                raise ValueError(f"{where(config, section, 'connection')}: {e}") from None
    if not config.api.service_metadata_proxy and not _neutron_configured(config):
        raise ValueError(f"{where(config, 'neutron', 'service_metadata_proxy')}: store = nova finds guests by address "
                         "through Neutron: set [neutron] auth_url (or endpoint_override)")


@implementer(IInstanceStoreFactory)
class NovaStoreFactory:
    """The built-in store of C{[mdsvc] store = nova} (see L{mdsvc.store.open_store})."""

    name = "nova"

    def open(self, argument: str, config: Config, reactor: Any) -> NovaInstanceStore:
        """
        The store over the databases and Neutron that C{config} names; a service (its thread
        pool) to start and stop with the API.

        @raise ValueError: see L{check_nova_store}.
        """
        check_nova_store(config)
        nova = config.nova
        databases = NovaDatabases(nova.api_database, nova.database, nova.local_metadata_per_cell)
        neutron = None
        if _neutron_configured(config):
            from mdsvc.lookup.neutron import NeutronLookup, build_http_client

            client = NeutronLookup(config.agent.neutron, build_http_client(reactor, config.agent.neutron), reactor)
            neutron = NovaNeutron(client)
        else:
            log.warn("store = nova without [neutron] auth_url: instances are served without security groups")
        shown_dbs = ", ".join(shown(u) for u in (nova.api_database, nova.database) if u)
        log.info("instance store: Nova's databases ({databases}), {threads} threads, {timeout} s timeout",
                 databases=shown_dbs, threads=nova.threads, timeout=nova.timeout)
        reader = NovaReader(databases, Engines(nova.threads, nova.timeout))
        return NovaInstanceStore.in_threads(reader, neutron, reactor, nova.threads, config.api.cache_expiration)
