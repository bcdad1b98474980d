# -*- test-case-name: tests.test_tap -*-
"""The demo instance mdsvc ships, and the service that puts it into the store at startup."""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

from twisted.application.service import Service
from twisted.logger import Logger

from mdsvc.store.sql import SQLDocuments


class DemoSeed(Service):
    """Imports the bundled demo instance into the store at startup, unless it is there already."""

    _log = Logger()

    def __init__(self, documents: SQLDocuments) -> None:
        self.documents = documents

    def privilegedStartService(self) -> None:
        """Seed before the listeners accept requests."""
        super().privilegedStartService()
        doc = demo_document()
        if self.documents.get(doc["uuid"]) is None:
            self.documents.import_instances([doc])
            self._log.info("imported the demo instance {uuid} (fixed IP {ip})", uuid=doc["uuid"], ip="127.0.0.1")


def demo_document() -> dict[str, Any]:
    """The demo instance document shipped with mdsvc."""
    return json.loads(resources.files("mdsvc").joinpath("data/demo-instance.json").read_text("utf-8"))
