"""
A vendor's instance store, as a plugin outside the mdsvc package (for the tests):
C{[mdsvc] store = teststore:FILE} serves the instance documents of a JSON file (a list), read
when the store is opened; passwords the guests post are kept in memory.
"""

from __future__ import annotations

import json
from typing import Any

from attrs import evolve
from twisted.application.service import Service
from twisted.internet.defer import Deferred, fail, succeed
from twisted.logger import Logger
from twisted.plugin import IPlugin
from zope.interface import implementer

from mdsvc.config import Config
from mdsvc.interfaces import AmbiguousAddress, IInstanceStore, IInstanceStoreFactory
from mdsvc.model import DocumentError, Instance, instance_from_document


@implementer(IInstanceStore)
class JSONFileStore(Service):
    """
    The instances of one JSON file; also a service (started and stopped with the API), which
    logs how many instances it serves.
    """

    _log = Logger()

    def __init__(self, path: str, instances: dict[str, Instance]) -> None:
        self.path = path
        self.instances = instances

    def startService(self) -> None:
        """Log what is served."""
        super().startService()
        self._log.info("teststore: serving {count} instances from {path}", count=len(self.instances), path=self.path)

    def get(self, uuid: str) -> Deferred[Instance | None]:
        """See L{IInstanceStore.get}."""
        return succeed(self.instances.get(uuid))

    def by_address(self, ip: str) -> Deferred[Instance | None]:
        """See L{IInstanceStore.by_address}."""
        found = sorted(u for u, i in self.instances.items() if any(f.ip == ip for f in i.fixed_ips()))
        if len(found) > 1:
            return fail(AmbiguousAddress(ip, found))
        return succeed(self.instances[found[0]] if found else None)

    def by_provider(self, provider_id: str, ip: str) -> Deferred[list[tuple[str, str | None]] | None]:
        """See L{IInstanceStore.by_provider}: this store knows no providers."""
        return succeed(None)

    def set_password(self, uuid: str, password: str) -> Deferred[bool]:
        """See L{IInstanceStore.set_password}: kept in memory, compare-and-set."""
        instance = self.instances.get(uuid)
        if instance is None:
            return fail(KeyError(uuid))
        if instance.password:
            return succeed(False)
        self.instances[uuid] = evolve(instance, password=password)
        return succeed(True)


@implementer(IPlugin, IInstanceStoreFactory)
class JSONFileStoreFactory:
    """The factory mdsvc finds with C{getPlugins(IInstanceStoreFactory, mdsvc.plugins)}."""

    name = "teststore"

    def open(self, argument: str, config: Config, reactor: Any) -> JSONFileStore:
        """See L{IInstanceStoreFactory.open}: C{argument} is the JSON file (a list of documents)."""
        try:
            with open(argument, encoding="utf-8") as f:
                documents = json.load(f)
            instances = [instance_from_document(doc, f"[{i}]") for i, doc in enumerate(documents)]
        except (OSError, ValueError, DocumentError) as e:
            raise ValueError(f"store = teststore:{argument}: {e}") from None
        return JSONFileStore(argument, {i.uuid: i for i in instances})


test_store = JSONFileStoreFactory()
