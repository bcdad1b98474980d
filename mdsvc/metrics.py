# -*- test-case-name: tests.test_metrics -*-
"""
What a process counts about itself, in plain integers and lists: nothing on the hot path calls
into prometheus_client (L{mdsvc.exposition} reads these at scrape time).

  - L{HopMeter}: where a hop (C{proxy}, C{agent}, C{api}) notes each answer: one tuple appended
    to a list, all the request path pays. L{NodeMetrics.fold} (ten times a second, and before
    anything is read) turns them into counts by status, latency buckets, records of the process's trace
    ring (L{mdsvc.trace.TraceRing}) and, for a failure a hop made, one log line with the
    instance, the hop and the reason (L{mdsvc.failures}).
  - L{Histogram}: fixed buckets, fed with one C{bisect} and two additions.
  - L{NodeMetrics}: the meters of one process and every object whose own counters it reads at
    scrape time (caches, connection pools, namespace proxies, connection limits, the agent's
    refusals), plus C{backend_errors}, the interface backends report their failures through
    (L{mdsvc.metered} wraps lookups and stores in it).
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections import Counter
from collections.abc import Callable
from functools import partial
from itertools import compress
from operator import add, is_not, lt, sub
from typing import Any

from attrs import define, field
from twisted.logger import Logger

from mdsvc.trace import CHAINS, KEPT, RECORD, WIDTH, TraceRing, row

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
"""Upper bounds (seconds) of the latency buckets: a cached answer takes well under a millisecond,
a timed-out one the configured timeout (at most 30 s)."""

HOPS = ("proxy", "agent", "api")
"""The hops a process may answer at: a namespace proxy's listener, the agent, the API."""

STAGES = ("proxy_to_agent", "agent", "agent_to_api", "api_render", "lookup", "store")
"""The latency histograms: what a proxy waits for the agent, the agent's whole answer, what the
agent waits for the API, the API's answer, a lookup backend's answer (cache misses), a store read
(render cache misses)."""

HOP_STAGE = {"proxy": "proxy_to_agent", "agent": "agent", "api": "api_render"}
"""The latency histogram of each hop's answers."""


class Histogram:
    """
    Counts of observations per bucket (not cumulative; L{cumulative} makes Prometheus' buckets)
    and their sum.

    @ivar bounds: the buckets' upper bounds, ascending; one more bucket holds the rest (+Inf).
    """

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...] = LATENCY_BUCKETS) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        """Count one observation (a value equal to a bound falls into that bound's bucket)."""
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value

    @property
    def count(self) -> int:
        """How many observations there were."""
        return sum(self.counts)

    def cumulative(self) -> list[tuple[str, int]]:
        """C{(le, observations <= le)} for every bound, then C{("+Inf", count)}."""
        out, running = [], 0
        for bound, n in zip(self.bounds, self.counts, strict=False):
            running += n
            out.append((repr(float(bound)), running))
        out.append(("+Inf", running + self.counts[-1]))
        return out


class HopMeter:
    """
    Where a hop notes each answer: one record, the L{RECORD} values of a tuple, added to the end
    of the flat list of the process's pending records (L{NodeMetrics.pending}), the only work on
    the request path. L{NodeMetrics.fold} turns pending records into counts, latency buckets,
    trace records and failure lines, off the request path.

    A hop notes an answer as::

        meter.note(("agent", started, meter.now(), response.code, response if response.reason is not None else None,
                    address, scope, instance, method, path, cache, waited))

    where the first value names the hops the record stands for (L{mdsvc.trace.CHAINS}).

    C{note} is the pending list's C{extend}: the tuple is freed at once (and made again from
    the interpreter's free list by the next request), the list holds its L{mdsvc.trace.WIDTH}
    values, and the fold reads each field of every record with one slice. A record kept as a
    tuple of its own cost the request path a fresh allocation, and the garbage collector a
    traversal, per request. The fold hands the list to the trace, which keeps its values in
    columns and gives it back emptied (L{mdsvc.trace.TraceRing.spare}), and gives the meters
    the one given back before (their C{note} becomes its C{extend}): a list the collector's
    young collections no longer traverse, where a new one would be traversed whole at the
    next. Every value is
    text, bytes, a number or None (a failure's answer object excepted, for its reason and to be
    logged once). Header values the API notes (the X-Instance-ID of an answer not given from its
    render cache) are bytes, made text when read.

    C{now} and C{note} are attributes holding callables, not methods: the hot paths load them
    into locals (C{note = meter.note; note(...)}), since C{meter.note(...)} compiles to a method
    load that the interpreter cannot specialize for an attribute and takes its slow path for.

    Hops of one process that answer within the outer one's call are noted once, by the
    outermost: the API answering the agent at once is noted in the agent's record (C{agent+api});
    the agent called by a namespace proxy's listener leaves what it knows (its hops, the instance,
    its lookup cache's outcome, its wait for a remote API) in the listener's meter's C{inner}, which the listener's record
    takes (C{proxy+agent+api}), with the listener's times: all-in-one notes one record and reads
    the clock twice per request where it noted three and read six times. Each hop still counts
    its answers and has its row in the trace (L{mdsvc.trace.CHAINS}).

    @ivar codes: answers by status code (counted when folded).
    @ivar latency: seconds from the request to the answer (observed when folded).
    @ivar now: the clock's C{seconds} (the reactor's is C{time.time}).
    @ivar note: adds the values of one record to the process's pending records.
    @ivar inner: (a namespace proxy's listeners) what the agent of this process that answered
        within the listener's call knows: C{[hops, instance, lookup cache outcome, seconds it
        waited for a remote API]} (the agent's own list, taken as it is), or None.
    """

    __slots__ = ("hop", "clock", "codes", "latency", "now", "note", "waited", "inner")

    def __init__(self, hop: str, clock: Any, note: Callable[[tuple[Any, ...]], None], waited: Histogram | None = None) -> None:
        self.hop = hop
        self.clock = clock
        self.codes: Counter[int] = Counter()
        self.latency = Histogram()
        self.now = clock.seconds
        self.note = note
        self.waited = waited
        self.inner: list[Any] | None = None

    def answered(
        self, response: Any, started: float, address: Any, scope: str | None, instance: Any, method: bytes, path: bytes,
        cache: str | None, waited: float | None = None,
    ) -> None:
        """
        Note one answer (the same as noting its record; for callers off the hot path).

        @param response: the L{mdsvc.http.HTTPResponse} this hop answers with; its C{reason},
            when set, is the failure's, logged by the innermost hop that notes it.
        @param started: C{clock.seconds()} when the request reached this hop.
        @param address: the guest's address (None where the hop does not know it).
        @param scope: the network or router id the guest came through, if known.
        @param instance: the instance the request was answered for, if known.
        @param cache: C{hit}, C{miss} or C{wait} (a load another request started) in the cache
            this hop consults, or None.
        @param waited: seconds this hop waited for the next one (the agent for a remote API), or None.
        """
        self.note((self.hop, started, self.now(), response.code, response if response.reason is not None else None, address,
                   scope, instance, method, path, cache, waited))


_log = Logger()

_DEPTH = {"api": 0, "agent": 1, "proxy": 2}
"""The hops innermost first: a failure is logged by the innermost hop that noted it (the one that made it)."""

_IS_SET = partial(is_not, None)
_KIND, _STARTED, _ANSWERED, _CODE, _FAILURE, _WAITED = (RECORD.index(name) for name in ("hops", "started", "answered", "code", "failure", "waited"))
"""Where each field the fold reads is in a record."""


def _buckets(bounds: tuple[float, ...], values: list[float]) -> tuple[list[int], float]:
    """
    C{values}, in any order, as counts per bucket of C{bounds} (the last: above them all) and
    their sum. Most latencies are below the first bound: those above it are picked out in one
    pass in C (a builtin comparison, not a method of the bound, which costs twice as much),
    and only they are sorted and bisected, once per bucket; sorting the batch cost three
    times the pass.
    """
    above = list(filter(partial(lt, bounds[0]), values))
    counts = [len(values) - len(above)]
    above.sort()
    below = 0
    for bound in bounds[1:]:
        upto = bisect_right(above, bound, below)
        counts.append(upto - below)
        below = upto
    counts.append(len(above) - below)
    return counts, sum(values)


def _observe(latency: Histogram, counts: list[int], total: float) -> None:
    """Add counts per bucket (of the histogram's bounds) and their sum to C{latency}."""
    latency.counts[:] = map(add, latency.counts, counts)
    latency.sum += total


def _places(kinds: list[str], kind: str) -> list[int]:
    """Where C{kind} is in C{kinds}, found by the list's C{index} (a loop in C between two places)."""
    found: list[int] = []
    index = kinds.index
    at = -1
    try:
        while True:
            at = index(kind, at + 1)
            found.append(at)
    except ValueError:
        return found


@define(eq=False)
class NodeMetrics:
    """
    The counters of one process, and what it reads at scrape time.

    @ivar role: the node role the process runs (C{twistd mdsvc --role}).
    @ivar trace: the process's ring of recent requests.
    @ivar hops: a L{HopMeter} per hop this process answers at (made by L{hop}).
    @ivar pending: the records the hops noted since the last fold, flat (L{mdsvc.trace.WIDTH} values each).
    @ivar stages: the latency histograms (L{STAGES}) by name.
    @ivar backend_errors: failures of instance-lookup backends and instance stores, by backend
        name (C{store}, C{neutron}, C{sqlite}, a plugin's name...).
    @ivar caches: name (C{render}, C{lookup}) to an object with C{hits}, C{loads} (misses),
        C{coalesced} and C{len()} (L{mdsvc.cache.ExpiringCache}).
    @ivar pools: name (C{api}: agent to API; C{agent}: proxy to agent socket) to an
        L{mdsvc.httpclient.HTTPPool}.
    @ivar proxies: the namespace proxies (L{mdsvc.proxy.service.NamespaceProxies}) and the
        number of fixed listeners of this process.
    @ivar agents: the agents (L{mdsvc.agent.handler.MetadataAgent}), whose C{rate_limited} and
        C{in_flight_refused} count refusals.
    @ivar limits: the process's L{mdsvc.limits.ConnectionLimits}, if any.
    """

    role: str
    clock: Any
    trace: TraceRing = field(factory=TraceRing)
    failure: Callable[..., None] | None = None
    hops: dict[str, HopMeter] = field(factory=dict)
    pending: list[Any] = field(factory=list)
    stages: dict[str, Histogram] = field(factory=dict)
    backend_errors: dict[str, int] = field(factory=dict)
    caches: dict[str, Any] = field(factory=dict)
    pools: dict[str, Any] = field(factory=dict)
    proxies: list[Any] = field(factory=list)
    fixed_listeners: int = 0
    agents: list[Any] = field(factory=list)
    limits: Any = None

    def hop(self, name: str) -> HopMeter:
        """The meter of hop C{name} (one per process, made on first use)."""
        meter = self.hops.get(name)
        if meter is None:
            waited = self.stage("agent_to_api") if name == "agent" else None
            meter = self.hops[name] = HopMeter(name, self.clock, self.pending.extend, waited)
            self.stages[HOP_STAGE[name]] = meter.latency
        return meter

    def fold(self) -> None:
        """
        Turn the pending records into counts, latency buckets, trace records and failure lines
        (each failure logged once, by the innermost hop that noted it: the one that made it), in
        loops that run in C but for the failures and the finding of the records of kinds other
        than the batch's most frequent (one step of Python each). A record
        of several hops (L{mdsvc.trace.CHAINS}) counts for each. Done every L{mdsvc.operations.FOLD_INTERVAL}
        seconds by the process, and before anything reads the counts or the trace.
        """
        batch = self.pending
        if not batch:
            return
        # the batch is kept by the trace as it is (text and numbers, failures aside); the meters
        # fill a list the trace gave back, in the collector's oldest generation (TraceRing.spare)
        spare = self.trace.spare
        fresh: list[Any] = spare.pop() if spare else []
        self.pending = fresh
        for meter in self.hops.values():
            meter.note = fresh.extend
        if len(batch) % WIDTH:  # (a note of another width would shift every later field: counted wrong, shown wrong)
            _log.error("Dropped {values} metered values: not whole records of {width}", values=len(batch), width=WIDTH)
            return
        kinds = batch[_KIND::WIDTH]
        codes = batch[_CODE::WIDTH]
        elapsed = list(map(sub, batch[_ANSWERED::WIDTH], batch[_STARTED::WIDTH]))
        count = len(kinds)
        all_ok = codes.count(200) == count  # (a 200 is never a failure: no failure to look for)
        first = kinds.count(kinds[0])
        by_kind: dict[str, int] = {kinds[0]: first} if first == count else {kind: kinds.count(kind) for kind in set(kinds)}
        if all_ok:
            by_code: dict[tuple[str, int], int] = {(kind, 200): n for kind, n in by_kind.items()}
        elif len(by_kind) == 1:
            by_code = {(kinds[0], code): n for code, n in Counter(codes).items()}
        else:
            by_code = Counter(zip(kinds, codes, strict=True))
        for (kind, code), n in by_code.items():
            for hop in CHAINS[kind]:
                self.hop(hop).codes[code] += n
        rows = sum(n * len(CHAINS[kind]) for kind, n in by_kind.items())
        hops = {hop for kind in by_kind for hop in CHAINS[kind]}
        # a hop's latency buckets are the sum of those of the kinds of record that stand for it:
        # each kind's bucketed from its latencies, except the most frequent kind's, which
        # are those of the whole batch less the others' (so that only the fewer records are picked
        # out, by their places)
        if len(by_kind) == 1:
            per_kind = {kinds[0]: _buckets(LATENCY_BUCKETS, elapsed)}  # (every hop meter's histogram has these bounds)
        else:
            most = max(by_kind, key=by_kind.__getitem__)
            per_kind = {kind: _buckets(LATENCY_BUCKETS, [elapsed[at] for at in _places(kinds, kind)])
                        for kind in by_kind if kind != most}
            counts, total = _buckets(LATENCY_BUCKETS, elapsed)
            for other, other_total in per_kind.values():
                counts = list(map(sub, counts, other))
                total -= other_total
            per_kind[most] = (counts, total)
        for kind, (counts, total) in per_kind.items():
            for hop in CHAINS[kind]:
                _observe(self.hops[hop].latency, counts, total)
        waited = self.hops["agent"].waited if "agent" in self.hops else None
        if waited is not None and ("api" not in self.hops or waited is not self.hops["api"].latency):
            # (an agent with the API in its process times no wait: its agent_to_api is the API's own latency)
            waits = list(filter(_IS_SET, batch[_WAITED::WIDTH]))
            if waits:
                _observe(waited, *_buckets(waited.bounds, waits))
        failed = [] if all_ok else [tuple(batch[start:start + len(KEPT)]) for start in compress(range(0, len(batch), WIDTH), batch[_FAILURE::WIDTH])]
        if failed:  # innermost hop first: the one that made the failure logs it
            failed.sort(key=lambda r: _DEPTH.get(CHAINS[r[0]][0], 9))
            for record in failed:
                response = record[4]
                if not response.noted:
                    response.noted = True
                    if self.failure is not None:
                        _, _, hop, address, scope, instance, method, path, code, _, _, reason = row(0, CHAINS[record[0]][0], record)
                        self.failure(hop, code, address, scope, instance, method, path, reason)
        self.trace.keep(batch, rows, hops)

    def select(self, instance: str | None = None, address: str | None = None, after: int = 0,
               limit: int | None = None) -> list[dict[str, Any]]:
        """The trace's records (L{TraceRing.select}), the pending ones folded first."""
        self.fold()
        return self.trace.select(instance, address, after, limit)

    def stage(self, name: str) -> Histogram:
        """The latency histogram of C{name} (one of L{STAGES}), made on first use."""
        histogram = self.stages.get(name)
        if histogram is None:
            histogram = self.stages[name] = Histogram()
        return histogram

    def backend_error(self, backend: str) -> None:
        """A lookup backend or store named C{backend} failed once (it could not answer)."""
        self.backend_errors[backend] = self.backend_errors.get(backend, 0) + 1

    def requests(self) -> dict[tuple[str, int], int]:
        """Answers so far by C{(hop, code)} (the pending ones folded first)."""
        self.fold()
        return {(hop, code): n for hop, meter in self.hops.items() for code, n in meter.codes.items()}


__all__ = ["HOPS", "HOP_STAGE", "LATENCY_BUCKETS", "RECORD", "STAGES", "HopMeter", "Histogram", "NodeMetrics"]
