# -*- test-case-name: tests.test_store -*-
"""
The document store's rules, whatever database holds the rows: the document fields the store
reads, what it keeps across re-imports (assigned values, a guest's password), what it assigns
to a new instance, and the row it reads back (L{StoredInstance}).

L{mdsvc.store.sql.SQLDocuments} applies them inside its transactions; they only look at and
change documents, never the database.
"""

from __future__ import annotations

import random
import string
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from attrs import frozen

from mdsvc.model import Instance, Router, image_ids, instance_from_document
from mdsvc.schema import DeclaredField, declared_field


def _reservation_id() -> str:
    """Nova's reservation id: C{r-} and 8 random characters from 0-9a-z."""
    alphabet = string.digits + string.ascii_lowercase
    return "r-" + "".join(random.SystemRandom().choice(alphabet) for _ in range(8))


# The document fields the store reads, keeps or fills in, reached through their declarations
# (mdsvc.model): the store never spells a document key itself.
UUID = declared_field(Instance, "uuid")
NAME = declared_field(Instance, "name")
PASSWORD = declared_field(Instance, "password")
RESERVATION = declared_field(Instance, "reservation_id")
CREATED = declared_field(Instance, "created_at")
EC2_INSTANCE = declared_field(Instance, "ec2_instance_id")
EC2_IMAGES = declared_field(Instance, "ec2_image_ids")
ROUTER_ID = declared_field(Router, "id")
# How the store makes each assigned field it does not number itself.
_NEW_VALUES: tuple[tuple[DeclaredField, Callable[[], Any]], ...] = (
    (RESERVATION, _reservation_id),
    (CREATED, lambda: datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")),
)


def kept_password(given: str | None, stored: str | None, reset: bool) -> str | None:
    """The password to store: a stored one stays unless reset (an empty one counts as none, as in set_password)."""
    return stored if stored and not reset else given


def keep_assigned(doc: dict[str, Any], old_doc: dict[str, Any]) -> None:
    """
    Values the store assigned before stay where the new document gives none (an absent field
    and a null one are the same).
    """
    for field in (RESERVATION, CREATED, EC2_INSTANCE):
        if field.get(doc) is None and field.get(old_doc) is not None:
            field.put(doc, field.get(old_doc))


def keep_ec2_images(doc: dict[str, Any], old_doc: dict[str, Any]) -> None:
    """EC2 image numbers stay for the images the document still names, unless it gives others."""
    images = dict(EC2_IMAGES.get(doc) or {})
    named = image_ids(doc)
    for image, number in (EC2_IMAGES.get(old_doc) or {}).items():
        if image in named:
            images.setdefault(image, number)
    EC2_IMAGES.put(doc, images)


def assign_new(doc: dict[str, Any]) -> None:
    """Fill in the assigned fields still missing that need no numbering (reservation id, creation time)."""
    for field, new in _NEW_VALUES:
        if field.get(doc) is None:
            field.put(doc, new())


@frozen
class StoredInstance:
    """One row of the store: the document as imported plus what the store assigned."""

    document: dict[str, Any]
    password: str | None

    def full_document(self) -> dict[str, Any]:
        """The document with the stored password in it (C{mdsvc-manage instance show})."""
        doc = dict(self.document)
        PASSWORD.put(doc, self.password)
        return doc

    def instance(self) -> Instance:
        """
        The L{Instance} this row describes.  The document was validated when it was imported,
        perhaps under older rules: it is read back without the import-only checks, so that an
        upgrade never turns a stored instance into errors for its guest.
        """
        return instance_from_document(self.full_document(), strict=False)
