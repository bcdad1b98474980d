# -*- test-case-name: tests.test_trace -*-
"""
The last requests a process answered, hop by hop, in a bounded ring: what C{mdsvc-manage trace
UUID|IP} reads over the admin socket when a boot fails.

Each hop (L{mdsvc.metrics.HopMeter}) notes one record per answer; they are kept here as they are
(the oldest falling off once C{size} for each hop are held) and made into rows of L{FIELDS} only
when read.  A record never holds a secret: the shared
secret and signatures are not among its fields, and what is read out is passed through the
node's L{mdsvc.redact.Redactor} as well.
"""

from __future__ import annotations

from array import array
from collections import deque
from collections.abc import Iterable, Sequence
from typing import Any

from mdsvc.hop import canonical_ip

FIELDS = ("seq", "time", "hop", "address", "scope", "instance", "method", "path", "status", "latency", "cache", "reason")
"""What a record holds, in order: a sequence number (per process, from 1), the time it was
answered (seconds since the epoch), the hop, the guest's address, the network or router it came
through, the instance, method, path, status, seconds taken, the cache outcome, the reason of a
failure made at this hop."""

RECORD = ("hops", "started", "answered", "code", "failure", "address", "scope", "instance", "method", "path", "cache", "waited")
"""What a record the hops note holds, in order (L{mdsvc.metrics.HopMeter}); C{hops} is a key of L{CHAINS}."""

WIDTH = len(RECORD)
"""Values per record: records are laid end to end in one flat list (a batch), record M's
values at C{batch[M * WIDTH:(M + 1) * WIDTH]}, so that a request path adds values to a list
rather than keeping an object of its own (L{mdsvc.metrics.HopMeter})."""


def records(batch: Sequence[Any]) -> list[tuple[Any, ...]]:
    """The records of a flat batch, each a tuple of L{RECORD}."""
    return [tuple(batch[start:start + WIDTH]) for start in range(0, len(batch), WIDTH)]

AGENT_API = "agent+api"
PROXY_AGENT = "proxy+agent"
PROXY_AGENT_API = "proxy+agent+api"

CHAINS: dict[str, tuple[str, ...]] = {
    "api": ("api",), "agent": ("agent",), "proxy": ("proxy",),
    AGENT_API: ("api", "agent"), PROXY_AGENT: ("agent", "proxy"), PROXY_AGENT_API: ("api", "agent", "proxy"),
}
"""The hops one record stands for, innermost first: a hop of its own, or hops of one process
that answered within the outer one's call, noted once by the outermost (L{mdsvc.metrics.HopMeter})."""

WITHOUT_API = {AGENT_API: "agent", PROXY_AGENT_API: PROXY_AGENT}
"""An agent's record's hops once the API's answer is noted in a record of its own."""

WITH_API = {alone: hops for hops, alone in WITHOUT_API.items()} | {hops: hops for hops in WITHOUT_API}
"""An agent's record's hops once the API of its process answered within the agent's call (the
same again for a request signed twice: L{mdsvc.agent.handler.MetadataAgent.previous_secrets})."""

_INNER_FIRST = {"api": 0, "agent": 1, "proxy": 2}

DEFAULT_SIZE = 4096
"""Records kept per hop of a process (about a hundred and fifty cloud-init boots)."""


_SPARE_LISTS = 4
"""Emptied lists kept for reuse: the meters take one a fold, the ring gives back each batch it is given."""

KEPT = RECORD[:-1]
"""What the ring keeps of a record: all but the seconds an agent waited (only counted)."""

_FLOATS = frozenset(("started", "answered"))
"""Fields kept as machine numbers (L{array}) rather than objects."""

_SHARED = frozenset(("address", "scope", "instance", "method", "path"))
"""
Fields whose values a request path made afresh, parsed from the request (the path and method
at every hop, the address, network id and instance from headers at the agent and the API):
kept as one object per distinct value. (Keeping the method's few bytes and the network id as
they were parsed, and a column of None unshared, which spares the fold a dict lookup of about
65 ns a record for each, measured worse, not better: bench/README.md, "December 4, later".)
"""


class TraceRing:
    """
    The most recent records of a process, at least C{size} for each hop it answers at, kept in
    columns (one per field of L{KEPT}) and made into rows of L{FIELDS}, one per hop a record
    stands for, only when read.

    What a ring holds is what the request paths no longer use. A batch kept as the hops noted
    it held two fresh floats and the path, address, method and network id each request parsed
    for itself: thousands of objects a second, alive for seconds (most likely each taking a block
    the next request would have reused while still warm in the processor's cache, and freed
    long after, cold: no instruction count shows it). The boot-mix benchmark's network node and
    API lost about one and a half per cent of their throughput to that, half of what metering
    cost them (a ring that keeps nothing, against one that kept the batches). So each batch is made into
    columns when kept: times as arrays of machine numbers, and the parsed values as one object
    per distinct value of the batch (a guest asks the same few paths from the same address),
    which leaves the requests' own objects to die at the fold; the columns are tuples, which
    the garbage collector stops tracking once it finds them holding no containers.

    The flat batch itself (a list) is emptied at once and put in L{spare}, where the process's
    meters take their next pending list (L{mdsvc.metrics.NodeMetrics.fold}). A list that has
    lived a few seconds is in the garbage collector's oldest generation, which its young
    collections (several a second under load) do not traverse; a fresh pending list was young,
    and was traversed, its tens of thousands of values read back from memory, by the
    collection that moved it on.

    @ivar size: rows kept per hop (whole batches fall off, the oldest first).
    @ivar spare: emptied lists of batches kept, to be filled again.
    """

    def __init__(self, size: int = DEFAULT_SIZE) -> None:
        self.size = max(size, 0)  # 0: nothing kept
        self._batches: deque[tuple[int, int, tuple[Sequence[Any], ...]]] = deque()  # (the first row's number, rows, columns)
        self._held = 0
        self._hops: set[str] = set()
        self._next = 1
        self.spare: list[list[Any]] = []

    def keep(self, batch: Sequence[Any], rows: int, hops: Iterable[str]) -> None:
        """
        Keep a flat batch of records (L{WIDTH} values each, oldest first) making C{rows} rows of the C{hops} named,
        numbered on from the last batch; the oldest batches fall off while C{size} rows per hop
        are held without them. A batch that is a list is emptied into L{spare}.
        """
        first = self._next
        self._next += rows
        if self.size:
            self._hops.update(hops)
            self._batches.append((first, rows, self._columns(batch)))
            self._held += rows
            limit = self.size * len(self._hops)
            while self._held - self._batches[0][1] >= limit:
                _, dropped, _ = self._batches.popleft()
                self._held -= dropped
        if type(batch) is list and len(self.spare) < _SPARE_LISTS:
            batch.clear()
            self.spare.append(batch)

    def _columns(self, batch: Sequence[Any]) -> tuple[Sequence[Any], ...]:
        """The fields of L{KEPT} of a flat batch, a column each (in C loops: no step of Python per record)."""
        memo: dict[Any, Any] = {}  # (one batch's: it holds nothing the batch's columns do not)
        shared = memo.setdefault
        columns: list[Sequence[Any]] = []
        for at, name in enumerate(KEPT):
            values = batch[at::WIDTH]
            if name in _FLOATS:
                columns.append(array("d", values))
            elif name in _SHARED:
                columns.append(tuple(map(shared, values, values)))
            else:
                columns.append(tuple(values))
        return tuple(columns)

    def __len__(self) -> int:
        """How many rows are held."""
        return self._held

    def select(
        self, instance: str | None = None, address: str | None = None, after: int = 0, limit: int | None = None,
    ) -> list[dict[str, Any]]:
        """
        The rows of one instance or guest address (either matches; neither given: all),
        numbered after C{after}, in the order they were answered, at most the C{limit} newest.
        """
        picked = []
        for first, rows, columns in self._batches:
            if first + rows <= after + 1:
                continue
            seq = first
            for record in zip(*columns, strict=True):
                for hop in CHAINS[record[0]]:
                    if seq > after:
                        found = row(seq, hop, record)
                        if _matches(found, instance, address):
                            picked.append(found)
                    seq += 1
        picked.sort(key=lambda r: (r[1], _INNER_FIRST.get(r[2], 9), r[0]))  # one request's hops answer innermost first
        if limit is not None:
            picked = picked[-limit:] if limit > 0 else []
        return [as_dict(r) for r in picked]


def row(seq: int, hop: str, record: Sequence[Any]) -> tuple[Any, ...]:
    """
    The row of C{hop} of a kept record (the fields of L{KEPT}, in order) as the tuple of
    L{FIELDS} (header values the API noted made text). Of a record standing for several hops,
    the listener's row has no instance or cache; the API's no scope, and the cache outcome of an
    answer given at once.
    """
    kind, started, answered, code, failure, address, scope, instance, method, path, cache = record
    if kind is not hop and kind != hop:
        if hop == "proxy":
            instance = cache = None
        elif hop == "api":
            scope, cache = None, ("hit" if code == 200 else None)
    if type(address) is bytes:
        address = address.decode("latin-1")
    if type(instance) is bytes:
        instance = instance.decode("latin-1")
    if address is not None and "%" in address:
        address = address.split("%", 1)[0]
    return (seq, answered, hop, address, scope, instance, method, path, code, answered - started, cache,
            failure.reason if failure is not None else None)


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


__all__ = ["AGENT_API", "CHAINS", "DEFAULT_SIZE", "FIELDS", "KEPT", "PROXY_AGENT", "PROXY_AGENT_API", "RECORD", "WIDTH", "WITHOUT_API", "WITH_API",
           "TraceRing", "as_dict", "records"]
