# -*- test-case-name: tests.test_store -*-
"""
mdsvc's own document store offered to the event loop: L{DocumentStore}, an L{IInstanceStore}
whose every query runs in a thread, so the reactor never waits on a disk or a database server.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.threads import deferToThreadPool
from twisted.python.threadpool import ThreadPool
from zope.interface import implementer

from mdsvc.interfaces import AmbiguousAddress, IInstanceStore
from mdsvc.model import Instance
from mdsvc.store.sql import SQLDocuments


@implementer(IInstanceStore)
class DocumentStore:
    """
    L{IInstanceStore} over L{SQLDocuments} (the embedded file or a database server).

    @param run: how to run a blocking call, C{run(f, *args) -> Deferred}: by default in the
        reactor's thread pool (L{in_threads}); tests pass a synchronous runner.
    """

    def __init__(self, documents: SQLDocuments, run: Callable[..., Deferred[Any]]) -> None:
        self.documents = documents
        self._run = run

    @classmethod
    def in_threads(cls, documents: SQLDocuments | str, reactor: Any, threadpool: ThreadPool | None = None) -> DocumentStore:
        """
        A store whose queries run in C{threadpool} (default: the reactor's).

        @param documents: the documents, or the store's URL (C{sqlite:PATH}, a server's URL).
        """
        def run(f: Callable[..., Any], *args: Any) -> Deferred[Any]:
            pool = threadpool if threadpool is not None else reactor.getThreadPool()
            return deferToThreadPool(reactor, pool, f, *args)

        return cls(SQLDocuments(documents) if isinstance(documents, str) else documents, run)

    def get(self, uuid: str) -> Deferred[Instance | None]:
        """See L{IInstanceStore.get}."""

        def load() -> Instance | None:
            row = self.documents.get(uuid)
            return row.instance() if row else None

        return self._run(load)

    def by_address(self, ip: str) -> Deferred[Instance | None]:
        """See L{IInstanceStore.by_address}."""

        def load() -> Instance | None:
            rows = self.documents.rows_by_address(ip)
            if len(rows) > 1:
                raise AmbiguousAddress(ip, [uuid for uuid, _ in rows])
            return rows[0][1].instance() if rows else None

        return self._run(load)

    def by_provider(self, provider_id: str, ip: str) -> Deferred[list[tuple[str, str | None]] | None]:
        """See L{IInstanceStore.by_provider}."""

        def load() -> list[tuple[str, str | None]] | None:
            networks = self.documents.router_networks(provider_id)
            if not networks:
                return None
            return self.documents.ports_by_network_ip(networks, ip)

        return self._run(load)

    def set_password(self, uuid: str, password: str) -> Deferred[bool]:
        """See L{IInstanceStore.set_password}."""
        return self._run(self.documents.set_password, uuid, password)
