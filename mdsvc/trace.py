# -*- test-case-name: tests.test_trace -*-
"""
The last requests a process answered, hop by hop, in a bounded ring: what C{mdsvc-manage trace
UUID|IP} reads over the admin socket when a boot fails.

Each hop (L{mdsvc.metrics.HopMeter}) appends one tuple per answer, in the order of L{FIELDS}; the
oldest records fall off once C{size} are held.  A record never holds a secret: the shared
secret and signatures are not among its fields, and what is read out is passed through the
node's L{mdsvc.redact.Redactor} as well.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from itertools import count
from typing import Any

from mdsvc.hop import canonical_ip

FIELDS = ("seq", "time", "hop", "address", "scope", "instance", "method", "path", "status", "latency", "cache", "reason")
"""What a record holds, in order: a sequence number (per process, from 1), the time it was
answered (seconds since the epoch), the hop, the guest's address, the network or router it came
through, the instance, method, path, status, seconds taken, the cache outcome, the reason of a
failure made at this hop."""

DEFAULT_SIZE = 4096
"""Records kept per process (about a hundred cloud-init boots of one hop each)."""


class TraceRing:
    """
    The most recent C{size} records of a process.

    @ivar records: the records, oldest first (tuples in the order of L{FIELDS}).
    @ivar next_seq: returns the next sequence number.
    """

    def __init__(self, size: int = DEFAULT_SIZE) -> None:
        self.records: deque[tuple[Any, ...]] = deque(maxlen=max(size, 0))  # 0: nothing kept
        self.next_seq = count(1).__next__

    def select(
        self, instance: str | None = None, address: str | None = None, after: int = 0, limit: int | None = None,
    ) -> list[dict[str, Any]]:
        """
        The records of one instance or guest address (either matches; neither given: all),
        newer than sequence number C{after}, oldest first, at most the C{limit} newest.
        """
        picked = [r for r in self.records if r[0] > after and _matches(r, instance, address)]
        if limit is not None:
            picked = picked[-limit:] if limit > 0 else []
        return [as_dict(r) for r in picked]


def _matches(record: tuple[Any, ...], instance: str | None, address: str | None) -> bool:
    if instance is None and address is None:
        return True
    if instance is not None and record[5] == instance:
        return True
    # a listener records the peer as the connection shows it (::ffff:10.0.0.5 on a dual-stack one)
    return address is not None and record[3] is not None and (record[3] == address or canonical_ip(record[3]) == canonical_ip(address))


def as_dict(record: Iterable[Any]) -> dict[str, Any]:
    """A record as a JSON-able dict named by L{FIELDS} (method and path as text)."""
    out = dict(zip(FIELDS, record, strict=True))
    for name in ("method", "path"):
        value = out[name]
        if isinstance(value, bytes):
            out[name] = value.decode("latin-1")
    return out


__all__ = ["DEFAULT_SIZE", "FIELDS", "TraceRing", "as_dict"]
