# -*- test-case-name: tests.test_lookup_store -*-
"""
The C{store} lookup backend: ports and routers from the embedded instance store.

The store indexes each instance's NICs by (network, fixed IP) and (network, MAC), and each
router's networks (C{mdsvc-manage router import}), so both the network and the router cases of
neutron spec §2.1 are answered from the same store the metadata API reads (the SQLite file or a
database server).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any

from attrs import define
from twisted.internet.defer import Deferred, fail
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool
from zope.interface import implementer

from mdsvc.interfaces import IInstanceLookup, LookupUnavailable, StoreUnavailable
from mdsvc.lookup._match import choose, no_networks
from mdsvc.readiness import IHealthCheck
from mdsvc.store.sql import SQLDocuments

_UNKNOWN_ROUTER = object()
_NO_NETWORKS = object()


@implementer(IInstanceLookup, IHealthCheck)
@define(eq=False)
class StoreLookup:
    """
    L{IInstanceLookup} over L{SQLDocuments}.

    @ivar documents: the store.
    @ivar run: how to run a blocking call, C{run(f, *args) -> Deferred}: in production a thread
        pool (L{in_threads}), in tests a synchronous runner.
    """

    documents: SQLDocuments
    run: Callable[..., Deferred[Any]]
    name = "store"
    _log = Logger()

    @classmethod
    def in_threads(cls, documents: SQLDocuments | str, reactor: Any, threadpool: ThreadPool | None = None) -> StoreLookup:
        """
        A lookup whose queries run in C{threadpool} (default: the reactor's).

        @param documents: the store, or its URL (C{sqlite:PATH}, a database server's).
        """
        if isinstance(documents, str):
            documents = SQLDocuments(documents)

        def run(f: Callable[..., Any], *args: Any) -> Deferred[Any]:
            pool = threadpool if threadpool is not None else reactor.getThreadPool()
            return deferToThreadPool(reactor, pool, f, *args)

        return cls(documents, run)

    def lookup(
        self, ip: str, network_id: str | None = None, router_id: str | None = None, mac: str | None = None
    ) -> Deferred[tuple[str, str | None] | None]:
        """
        See L{IInstanceLookup.lookup}.  Given both a network and a router, the network is used
        (as Neutron does); given neither, the Deferred fails with L{TypeError}.
        """
        if network_id is None and router_id is None:
            return fail(TypeError("Either one of parameter network_id or router_id must be passed to lookup."))
        d = self.run(self._query, ip, network_id, router_id, mac)
        d.addCallbacks(self._decide, self._unavailable, callbackArgs=(ip, network_id, router_id, mac))
        return d

    def check(self) -> Deferred[None]:
        """See L{mdsvc.readiness.IHealthCheck}: one query of the store, logging nothing."""
        from mdsvc.readiness import PROBE_ADDRESS, PROBE_NETWORK

        d = self.run(self._query, PROBE_ADDRESS, PROBE_NETWORK, None, None)
        return d.addCallbacks(lambda _: None, self._unavailable)

    def _query(self, ip: str, network_id: str | None, router_id: str | None, mac: str | None) -> Any:
        """
        In a thread: the router's networks (if asked by router), then the matching ports.

        @return: the C{(uuid, project_id)} matches, or L{_UNKNOWN_ROUTER} / L{_NO_NETWORKS}.
        """
        if network_id is not None:
            networks = [network_id]
        else:
            assert router_id is not None
            found = self.documents.router_networks(router_id)
            if found is None:
                return _UNKNOWN_ROUTER
            if not found:
                return _NO_NETWORKS
            networks = found
        if mac is not None:
            return self.documents.ports_by_network_mac(networks, mac)
        return self.documents.ports_by_network_ip(networks, ip)

    def _decide(
        self, matches: Any, ip: str, network_id: str | None, router_id: str | None, mac: str | None
    ) -> tuple[str, str | None] | None:
        if matches is _UNKNOWN_ROUTER or matches is _NO_NETWORKS:
            assert router_id is not None
            no_networks(self._log, router_id, known=matches is _NO_NETWORKS)
            return None
        return choose(matches, self._log, ip, network_id, router_id, mac)

    def _unavailable(self, failure: Failure) -> Failure:
        if failure.check(sqlite3.Error, OSError, StoreUnavailable):  # (sqlite3.Error: the file's; StoreUnavailable: a server's)
            raise LookupUnavailable(f"instance store {self.documents.path}: {_oneLine(failure.getErrorMessage())}")
        return failure


def _oneLine(text: str) -> str:
    return " ".join(text.split()) or "unknown error"
