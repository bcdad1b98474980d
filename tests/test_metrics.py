"""Counting in plain integers: histograms, hop meters, the agent's and the API's answers, backends' errors."""

from __future__ import annotations

from array import array
from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import capturedLogs, formatEvent
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from mdsvc.agent.handler import MetadataAgent
from mdsvc.agent.ratelimit import SlidingWindowLimiter
from mdsvc.api.handler import APIHandler
from mdsvc.api.inprocess import InProcessAPI
from mdsvc.hop import GuestRequest, sign
from mdsvc.http import HTTPResponse, error_response
from mdsvc.interfaces import AmbiguousAddress, IInstanceLookup, IInstanceStore, LookupUnavailable
from mdsvc.lookup.cache import CachingLookup
from mdsvc.metered import MeteredLookup, MeteredStore
from mdsvc.metrics import RECORD, Histogram, NodeMetrics
from mdsvc.testing import MemoryInstanceStore, MemoryLookup
from mdsvc.trace import KEPT, WIDTH, WITH_API, TraceRing, records
from tests.http import request, response
from tests.test_api_resource import UUID, Harness, fixture

NETWORK = "net-1"


class HistogramTests(SynchronousTestCase):
    """Fixed buckets, counted with one bisect."""

    def test_buckets(self) -> None:
        """A value on a bound is in that bound's bucket; cumulative counts end with +Inf; the sum adds up."""
        h = Histogram((0.1, 1.0))
        for value in (0.05, 0.1, 0.5, 7.0):
            h.observe(value)
        self.assertEqual(h.cumulative(), [("0.1", 2), ("1.0", 3), ("+Inf", 4)])
        self.assertEqual((h.count, h.sum), (4, 7.65))


class HopMeterTests(SynchronousTestCase):
    """A hop appends one record; folding makes the status count, the latency, the trace record and, once, the failure's line."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1000)
        self.failures: list[tuple[Any, ...]] = []
        self.metrics = NodeMetrics("agent", self.clock, TraceRing(10), failure=lambda *a: self.failures.append(a))
        self.meter = self.metrics.hop("agent")

    def test_answer(self) -> None:
        """A 200: nothing counted until folded; then counted by code, its latency observed, one trace record with every field."""
        started = self.clock.seconds()
        self.clock.advance(0.002)
        self.meter.answered(HTTPResponse(200, (), b""), started, "10.0.0.5", NETWORK, UUID, b"GET", b"/latest", "hit")
        self.assertEqual((self.meter.codes, len(records(self.metrics.pending))), ({}, 1))
        self.metrics.fold()
        self.assertEqual((self.meter.codes, len(records(self.metrics.pending))), ({200: 1}, 0))
        self.assertEqual(self.meter.latency.cumulative()[2], ("0.0025", 1))
        (record,) = self.metrics.select()
        self.assertEqual((record["hop"], record["address"], record["scope"], record["instance"], record["path"], record["status"],
                          record["cache"], record["reason"]), ("agent", "10.0.0.5", NETWORK, UUID, "/latest", 200, "hit", None))
        self.assertEqual(self.failures, [])

    def test_waited(self) -> None:
        """The agent's record of the time the API took feeds the agent_to_api histogram."""
        self.meter.answered(HTTPResponse(200, (), b""), 1000.0, "10.0.0.5", NETWORK, UUID, b"GET", b"/", None, waited=0.3)
        self.metrics.fold()
        self.assertEqual(self.metrics.stages["agent_to_api"].cumulative()[8:10], [("0.25", 0), ("0.5", 1)])

    def test_no_trace(self) -> None:
        """trace_size = 0 keeps no record; the counts go on."""
        metrics = NodeMetrics("agent", self.clock, TraceRing(0))
        metrics.hop("agent").answered(HTTPResponse(200, (), b""), 1000.0, "10.0.0.5", NETWORK, None, b"GET", b"/", None)
        self.assertEqual((metrics.requests(), metrics.select()), ({("agent", 200): 1}, []))

    def test_flat_records(self) -> None:
        """A noted answer leaves its values at the end of the pending list, not a record object of its own."""
        self.meter.answered(HTTPResponse(200, (), b""), 1000.0, "10.0.0.5", NETWORK, UUID, b"GET", b"/a", "hit")
        self.meter.answered(HTTPResponse(200, (), b""), 1000.0, "10.0.0.6", NETWORK, UUID, b"GET", b"/b", "miss")
        self.assertEqual(len(self.metrics.pending), 2 * WIDTH)
        self.assertEqual([(r[5], r[9], r[10]) for r in records(self.metrics.pending)],
                         [("10.0.0.5", b"/a", "hit"), ("10.0.0.6", b"/b", "miss")])

    def test_failure_among_answers(self) -> None:
        """One failed answer between two good ones: the fold finds it by its place, logs it with its own fields, counts all three."""
        good, bad = HTTPResponse(200, (), b""), error_response(404, None, reason="no such path")
        for n, answer in enumerate((good, bad, good)):
            self.meter.answered(answer, 1000.0, f"10.0.0.{n}", NETWORK, UUID, b"GET", f"/{n}".encode(), None)
        self.metrics.fold()
        self.assertEqual(self.failures, [("agent", 404, "10.0.0.1", NETWORK, UUID, b"GET", b"/1", "no such path")])
        self.assertEqual(self.meter.codes, {200: 2, 404: 1})
        self.assertEqual([(r["address"], r["status"], r["reason"]) for r in self.metrics.select()],
                         [("10.0.0.0", 200, None), ("10.0.0.1", 404, "no such path"), ("10.0.0.2", 200, None)])

    def test_latency_by_hop(self) -> None:
        """A batch of two kinds: each hop observes the times of the records that stand for it, and only those."""
        self.metrics.hop("api").note(("api", 1000.0, 1002.0, 200, None, "10.0.0.5", None, UUID, b"GET", b"/a", None, None))
        self.meter.note(("agent+api", 1000.0, 1000.0002, 200, None, "10.0.0.5", NETWORK, UUID, b"GET", b"/b", "hit", None))
        self.metrics.fold()
        self.assertEqual(self.meter.latency.cumulative()[:1], [("0.0005", 1)])
        self.assertEqual((self.meter.latency.count, self.metrics.hop("api").latency.count), (1, 2))
        self.assertEqual(self.metrics.hop("api").latency.cumulative()[:1], [("0.0005", 1)])
        self.assertEqual(self.metrics.requests(), {("api", 200): 2, ("agent", 200): 1})

    def test_latency_of_three_kinds(self) -> None:
        """
        A batch where no kind stands for every hop: each hop's buckets and sum are those of its
        records' times exactly, the most frequent kind's as those of the batch less the others'.
        """
        proxy, api = self.metrics.hop("proxy"), self.metrics.hop("api")
        for took in (0.0001, 0.0002, 0.003):  # the listener's, agent's and API's record, all three at once
            proxy.note(("proxy+agent+api", 1000.0, 1000.0 + took, 200, None, "10.0.0.5", NETWORK, UUID, b"GET", b"/a", "hit", None))
        proxy.note(("proxy+agent", 1000.0, 1000.02, 200, None, "10.0.0.5", NETWORK, UUID, b"GET", b"/b", "hit", None))
        api.note(("api", 1000.0, 1000.7, 200, None, "10.0.0.5", None, UUID, b"GET", b"/b", None, None))
        self.metrics.fold()
        bounds = [bound for bound, _ in proxy.latency.cumulative()]
        self.assertEqual(bounds[:8], ["0.0005", "0.001", "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1"])
        for meter, expect in ((proxy, (0.0001, 0.0002, 0.003, 0.02)), (self.meter, (0.0001, 0.0002, 0.003, 0.02)),
                              (api, (0.0001, 0.0002, 0.003, 0.7))):
            seen = Histogram()
            for value in expect:
                seen.observe(value)
            self.assertEqual(meter.latency.counts, seen.counts, meter.hop)
            self.assertAlmostEqual(meter.latency.sum, sum(expect), places=6, msg=meter.hop)

    def test_latency_buckets_in_any_order(self) -> None:
        """
        Times noted in no order, some exactly on a bound, some below the first, one above the
        last: the buckets are those of each value observed alone (a value on a bound in that
        bound's bucket), in a batch of one kind and in the waits of an agent timing a remote API.
        """
        took = (0.5, 0.0001, 0.0005, 40.0, 0.0025, 0.0005, 0.002, 0.00001, 1.0, 0.3)
        metrics = NodeMetrics("network-node", self.clock)
        agent = metrics.hop("agent")
        for value in took:
            agent.note(("agent", 0.0, value, 200, None, "10.0.0.5", NETWORK, UUID, b"GET", b"/a", "hit", value))
        metrics.fold()
        seen = Histogram()
        for value in took:
            seen.observe(value)
        self.assertEqual(agent.latency.counts, seen.counts)
        self.assertEqual(metrics.stage("agent_to_api").counts, seen.counts)
        self.assertEqual(seen.counts[:4], [4, 0, 2, 0])  # (0.0005 twice in the first bucket, 0.0025 and 0.002 in the third)
        self.assertAlmostEqual(agent.latency.sum, sum(took), places=9)

    def test_torn_batch_dropped(self) -> None:
        """Values that are not whole records are dropped with one error line, never read shifted; the next batch counts."""
        self.meter.note(("agent", 1000.0, 1000.5, 200))
        with capturedLogs() as events:
            self.metrics.fold()
        self.assertEqual([formatEvent(e) for e in events], [f"Dropped 4 metered values: not whole records of {WIDTH}"])
        self.assertEqual((self.meter.codes, self.metrics.select(), self.metrics.pending), ({}, [], []))
        self.meter.answered(HTTPResponse(200, (), b""), 1000.0, "10.0.0.5", NETWORK, UUID, b"GET", b"/a", None)
        self.metrics.fold()
        self.assertEqual(self.meter.codes, {200: 1})

    def test_address_in_normal_form(self) -> None:
        """A listener's record of an IPv4-mapped peer is found by the guest's IPv4 address, as the agent records it."""
        self.meter.answered(HTTPResponse(200, (), b""), 1000.0, "::ffff:10.0.0.5", NETWORK, None, b"GET", b"/", None)
        self.assertEqual(len(self.metrics.select(address="10.0.0.5")), 1)
        self.assertEqual(self.metrics.select(address="10.0.0.6"), [])

    def test_failure_logged_once(self) -> None:
        """A failure is logged once, by the innermost hop that noted it (the one that made it), whichever noted it first."""
        failed = error_response(404, None, reason="instance gone")
        self.metrics.hop("proxy").answered(failed, 1000.0, "10.0.0.5", NETWORK, None, b"GET", b"/x", None)
        self.meter.answered(failed, 1000.0, "10.0.0.5", NETWORK, UUID, b"GET", b"/x", None)
        self.metrics.fold()
        self.assertEqual(self.failures, [("agent", 404, "10.0.0.5", NETWORK, UUID, b"GET", b"/x", "instance gone")])
        self.assertEqual([r["reason"] for r in self.metrics.select()], ["instance gone", "instance gone"])


class TraceRingTests(SynchronousTestCase):
    """The ring keeps batches of records, at least C{size} rows per hop it has seen, the oldest batches falling off first."""

    def record(self, hops: str, n: int) -> tuple[Any, ...]:
        return (hops, float(n), n + 0.5, 200, None, "10.0.0.5", NETWORK, UUID, b"GET", f"/{n}".encode(), "hit", None)

    def flat(self, batch: Any) -> list[Any]:
        """A batch as the fold keeps it: the records' values end to end."""
        return [value for record in batch for value in record]

    def test_oldest_fall_off(self) -> None:
        """Size 2: a batch goes once the newer ones hold two rows per hop; rows are numbered on; a chain record makes a row per hop."""
        ring = TraceRing(2)
        ring.keep(self.flat(self.record("api", n) for n in range(3)), 3, {"api"})
        ring.keep(self.flat([self.record("api", 3)]), 1, {"api"})
        self.assertEqual([(r["seq"], r["path"]) for r in ring.select()], [(1, "/0"), (2, "/1"), (3, "/2"), (4, "/3")])
        ring.keep(self.flat(self.record("proxy+agent+api", n) for n in (4, 5)), 6, {"api", "agent", "proxy"})
        self.assertEqual(len(ring), 6)  # the newest batch alone holds 2 rows of each of the 3 hops: the others fell off
        rows = ring.select()
        self.assertEqual([(r["seq"], r["hop"], r["path"]) for r in rows],
                         [(5, "api", "/4"), (6, "agent", "/4"), (7, "proxy", "/4"), (8, "api", "/5"), (9, "agent", "/5"),
                          (10, "proxy", "/5")])
        self.assertEqual([(r["instance"], r["scope"], r["cache"]) for r in rows[:3]],
                         [(UUID, None, "hit"), (UUID, NETWORK, "hit"), (None, NETWORK, None)])
        self.assertEqual([r["seq"] for r in ring.select(after=8)], [9, 10])
        self.assertEqual(ring.select(limit=1)[0]["latency"], 0.5)

    def test_batch_lists_reused(self) -> None:
        """
        The list of a batch the ring keeps comes back emptied in C{spare} at once, and the next
        fold makes it the meters' pending list: two lists take turns, what the meters note lands
        in them, and every fold's counts and rows stay right.
        """
        metrics = NodeMetrics("api", Clock(), TraceRing(2))
        meter = metrics.hop("api")
        lists = []
        for n in range(6):
            lists.append(metrics.pending)
            meter.note(self.record("api", 2 * n))
            meter.note(self.record("api", 2 * n + 1))
            metrics.fold()
        # the first fold had no list given back (a new one); from the second on, the one given back takes its turn
        self.assertEqual([[id(y) for y in lists].index(id(x)) for x in lists], [0, 1, 0, 1, 0, 1])
        self.assertEqual(metrics.requests(), {("api", 200): 12})
        self.assertEqual([r["path"] for r in metrics.select()], ["/10", "/11"])
        self.assertEqual((metrics.trace.spare, metrics.trace.spare[0] is lists[1]), ([[]], True))

    def test_nothing_kept_lists_reused(self) -> None:
        """Size 0: the batch is emptied into C{spare} at once, and nothing is kept."""
        ring = TraceRing(0)
        batch = self.flat([self.record("api", 0)])
        ring.keep(batch, 1, {"api"})
        self.assertEqual((ring.spare, ring.spare[0] is batch, ring.select(), len(ring)), ([[]], True, [], 0))

    def test_other_batches_not_emptied(self) -> None:
        """A batch that is not a list (a caller's tuple) is kept and left as it is, not put in C{spare}."""
        ring = TraceRing(2)
        batch = tuple(self.flat([self.record("api", 0)]))
        ring.keep(batch, 1, {"api"})
        self.assertEqual((ring.spare, len(batch), [r["path"] for r in ring.select()]), ([], WIDTH, ["/0"]))

    def test_kept_in_columns(self) -> None:
        """
        The ring keeps a batch's values, not the requests' own objects: times as machine
        numbers, and one object per distinct parsed value (path, address, network, method,
        instance) of a batch, the first seen; rows read back as the values noted.
        """
        ring = TraceRing(8)
        first = ("api", 1.25, 1.5, 200, None, "10.0.0.5", NETWORK, UUID, b"GET", b"/latest/meta-data/", "hit", 0.01)
        again = ("api", 2.0, 2.75, 404, None, *map(_fresh, first[5:10]), None, None)
        self.assertEqual([a is b for a, b in zip(first[5:10], again[5:10], strict=True)], [False] * 5)
        ring.keep(self.flat([first, again]), 2, {"api"})
        ((_, _, columns),) = ring._batches
        self.assertEqual((len(columns), type(columns[KEPT.index("started")])), (len(KEPT), array))
        self.assertEqual([columns[KEPT.index(name)][1] is first[KEPT.index(name)] for name in ("address", "scope", "instance", "method", "path")],
                         [True] * 5)
        rows = ring.select()
        self.assertEqual([(r["time"], r["latency"], r["status"], r["path"], r["method"], r["cache"]) for r in rows],
                         [(1.5, 0.25, 200, "/latest/meta-data/", "GET", "hit"), (2.75, 0.75, 404, "/latest/meta-data/", "GET", None)])


def _fresh(value: Any) -> Any:
    """An object equal to C{value} (text or bytes) but not the same one, as a request parses its own."""
    half = len(value) // 2
    return value[:half] + value[half:]


class AgentMeteringTests(SynchronousTestCase):
    """The agent notes its answers (instance, lookup cache outcome, reason) and its refusals."""

    def setUp(self) -> None:
        self.h = Harness(self, secret="k")
        self.h.store.add(fixture())
        self.metrics = NodeMetrics("all-in-one", self.h.clock)
        self.lookup = MemoryLookup({("network", NETWORK, "10.0.0.5"): (UUID, "test")})
        self.cached = CachingLookup(MeteredLookup(self.lookup, self.metrics), self.h.clock, 10)
        self.agent = MetadataAgent(self.cached, InProcessAPI(self.h.app, meter=self.metrics.hop("api")), "k",
                                   SlidingWindowLimiter(self.h.clock, ((10, 3),)), clock=self.h.clock,
                                   meter=self.metrics.hop("agent"), time_api=True)

    def get(self, path: bytes, address: str = "10.0.0.5") -> HTTPResponse:
        return self.successResultOf(self.agent.handle(GuestRequest(b"GET", path, b"", address, None, NETWORK, None)))

    def test_counts_and_trace(self) -> None:
        """
        Two requests of one guest: the agent and the API count two 200s; the first missed the
        lookup cache and the render cache, the second hit both; the stages were observed.
        """
        self.assertEqual(self.get(b"/openstack/latest/meta_data.json").code, 200)
        self.h.clock.advance(1)
        self.assertEqual(self.get(b"/latest/meta-data/hostname").code, 200)
        self.assertEqual(self.metrics.requests(), {("agent", 200): 2, ("api", 200): 2})
        records = [(r["hop"], r["instance"], r["cache"]) for r in self.metrics.select(instance=UUID)]
        self.assertEqual(records, [("api", UUID, "miss"), ("agent", UUID, "miss"), ("api", UUID, "hit"), ("agent", UUID, "hit")])
        self.metrics.fold()
        self.assertEqual({name: h.count for name, h in self.metrics.stages.items()},
                         {"agent": 2, "api_render": 2, "agent_to_api": 2, "lookup": 1})

    def test_not_found_reason(self) -> None:
        """A guest no port has: 404 at the agent, with the reason in the trace; the API never sees it."""
        self.assertEqual(self.get(b"/latest", address="10.0.0.9").code, 404)
        self.assertEqual(self.metrics.requests(), {("agent", 404): 1})
        (record,) = self.metrics.select(address="10.0.0.9")
        self.assertEqual(record["reason"], f"Instance was not found on network {NETWORK}.")

    def test_rate_limited(self) -> None:
        """Past the rate limit, 429s are counted as rate-limit refusals."""
        for _ in range(5):
            self.get(b"/latest")
        self.assertEqual((self.agent.rate_limited, self.metrics.requests()[("agent", 429)]), (2, 2))

    def test_lookup_unavailable(self) -> None:
        """A lookup backend that cannot answer: 503 with its reason, and one error of that backend."""
        self.lookup.broken = LookupUnavailable("neutron is down")
        self.assertEqual(self.get(b"/latest").code, 503)
        self.assertEqual(self.metrics.backend_errors, {"memory": 1})
        (record,) = self.metrics.select(address="10.0.0.5")
        self.assertIn("neutron is down", record["reason"])


class _Ticking:
    """A clock whose every read is a millisecond after the one before (to tell the reads apart)."""

    def __init__(self) -> None:
        self.now = 5000.0

    def seconds(self) -> float:
        self.now += 0.001
        return self.now


class InProcessChainTests(SynchronousTestCase):
    """
    All-in-one: a namespace proxy's listener, the agent and the API in one process. The agent
    takes the listener's times; the API, answering at once, its own start and the listener's
    answer (the next record noted with a time): each hop keeps its own record, status and cache.
    """

    def setUp(self) -> None:
        from mdsvc.http import LeanHTTPFactory
        from mdsvc.proxy.http import NamespaceProxyHandler

        self.h = Harness(self, secret="k")
        self.h.store.add(fixture())
        self.ticking = _Ticking()
        self.metrics = NodeMetrics("all-in-one", self.ticking)
        lookup = CachingLookup(MemoryLookup({("network", NETWORK, "10.0.0.5"): (UUID, "test")}), self.h.clock, 10)
        agent = MetadataAgent(lookup, InProcessAPI(self.h.app, meter=self.metrics.hop("api")), "k", clock=self.h.clock,
                              meter=self.metrics.hop("agent"))
        agent.front = self.metrics.hop("proxy")  # as mdsvc.tap wires an in-process proxy
        factory = LeanHTTPFactory(NamespaceProxyHandler("network", NETWORK, agent), self.h.clock, meter=self.metrics.hop("proxy"),
                                  meter_answers=True, scope=NETWORK)
        self.transport = StringTransport(peerAddress=IPv4Address("TCP", "10.0.0.5", 40000))
        self.protocol = factory.buildProtocol(IPv4Address("TCP", "10.0.0.5", 40000))
        self.protocol.makeConnection(self.transport)

    def get(self, path: bytes) -> None:
        self.protocol.dataReceived(b"GET " + path + b" HTTP/1.1\r\nHost: 169.254.169.254\r\n\r\n")

    def test_one_record(self) -> None:
        """
        Answered at once (both caches warm): one record with the listener's times stands for the
        three hops, each of which counts its answer and has its row.
        """
        self.get(b"/latest/meta-data/hostname")  # warms both caches
        self.metrics.fold()
        self.get(b"/latest/meta-data/hostname")
        (record,) = records(self.metrics.pending)
        self.assertEqual((len(record), record[0], record[7], record[10]), (len(RECORD), "proxy+agent+api", UUID, "hit"))
        self.assertIsNone(self.metrics.hop("proxy").inner)
        rows = self.metrics.select(address="10.0.0.5")[-3:]
        self.assertEqual([(r["hop"], r["status"], r["instance"], r["cache"]) for r in rows],
                         [("api", 200, UUID, "hit"), ("agent", 200, UUID, "hit"), ("proxy", 200, None, None)])
        self.assertEqual({(r["time"], r["latency"]) for r in rows}, {(record[2], record[2] - record[1])})
        self.assertEqual(self.metrics.requests(), {("api", 200): 2, ("agent", 200): 2, ("proxy", 200): 2})
        self.assertEqual({name: h.count for name, h in self.metrics.stages.items()}, {"proxy_to_agent": 2, "agent": 2, "api_render": 2, "agent_to_api": 0})

    def test_remote_api_wait(self) -> None:
        """
        A network node's agent (its API elsewhere): the listener's record of both hops keeps the
        time the agent waited for the API (agent_to_api).
        """
        from mdsvc.http import LeanHTTPFactory
        from mdsvc.proxy.http import NamespaceProxyHandler

        lookup = MemoryLookup({("network", NETWORK, "10.0.0.5"): (UUID, "test")})
        agent = MetadataAgent(lookup, InProcessAPI(self.h.app), "k", clock=self.h.clock, meter=self.metrics.hop("agent"),
                              time_api=True)  # an API that notes nothing here: a stand-in for a remote one
        agent.front = self.metrics.hop("proxy")
        factory = LeanHTTPFactory(NamespaceProxyHandler("network", NETWORK, agent), self.h.clock, meter=self.metrics.hop("proxy"),
                                  meter_answers=True, scope=NETWORK)
        self.protocol = factory.buildProtocol(IPv4Address("TCP", "10.0.0.5", 40000))
        self.protocol.makeConnection(StringTransport(peerAddress=IPv4Address("TCP", "10.0.0.5", 40000)))
        self.get(b"/latest/meta-data/hostname")
        (record,) = records(self.metrics.pending)
        self.assertEqual(record[0], "proxy+agent")
        self.assertGreater(record[11], 0)
        self.metrics.fold()
        self.assertEqual(self.metrics.stages["agent_to_api"].count, 1)

    def test_missing_path(self) -> None:
        """The API's 404 for a path it does not have: its reason on each hop's row, logged once, by the API."""
        failures: list[tuple[Any, ...]] = []
        self.metrics.failure = lambda *a: failures.append(a)
        self.get(b"/latest/meta-data/nope")
        self.assertEqual([(r["hop"], r["status"]) for r in self.metrics.select(address="10.0.0.5")],
                         [("api", 404), ("agent", 404), ("proxy", 404)])
        self.assertEqual([(f[0], f[1]) for f in failures], [("api", 404)])


class _AtOnceAPI:
    """An API of this process that answers every request at once: 404 for instance C{gone}, else 200."""

    meter = "metered"

    def __init__(self, gone: str) -> None:
        self.gone = gone

    def forward(self, request: Any) -> Deferred[HTTPResponse]:
        raise AssertionError("the metered agent calls forward_within")

    def forward_within(self, request: Any, seen: list[Any]) -> Deferred[HTTPResponse]:
        seen[0] = WITH_API[seen[0]]  # answered at once: the agent's record stands for the API too
        if request.instance_id == self.gone:
            return succeed(error_response(404, None, reason="no such instance"))
        return succeed(HTTPResponse(200, (), b"ok"))


class AskedTwiceTests(SynchronousTestCase):
    """The API's 404 for a moved address, answered at once, then its answer for the new instance."""

    def test_two_api_answers(self) -> None:
        """The first API answer has a record of its own; the agent's record stands for itself and the second."""
        clock = Clock()
        clock.advance(1000)
        metrics = NodeMetrics("all-in-one", clock)
        backend = MemoryLookup({("network", NETWORK, "10.0.0.5"): ("old-vm", "p")})
        lookup = CachingLookup(backend, clock, 10)
        agent = MetadataAgent(lookup, _AtOnceAPI("old-vm"), "k", clock=clock, meter=metrics.hop("agent"))  # type: ignore[arg-type]
        self.successResultOf(lookup.lookup("10.0.0.5", network_id=NETWORK))  # cached: old-vm
        backend.entries[("network", NETWORK, "10.0.0.5")] = ("new-vm", "p")  # the port moved
        answer = self.successResultOf(agent.handle(GuestRequest(b"GET", b"/latest", b"", "10.0.0.5", None, NETWORK, None)))
        self.assertEqual(answer.code, 200)
        self.assertEqual([(r[0], r[3], r[7]) for r in records(metrics.pending)], [("api", 404, "old-vm"), ("agent+api", 200, "new-vm")])
        self.assertEqual(metrics.requests(), {("api", 404): 1, ("api", 200): 1, ("agent", 200): 1})
        self.assertEqual([(r["hop"], r["status"], r["instance"]) for r in metrics.select(address="10.0.0.5")],
                         [("api", 404, "old-vm"), ("api", 200, "new-vm"), ("agent", 200, "new-vm")])

    def test_signed_twice(self) -> None:
        """
        The API of this process refuses the new secret at once and takes the previous one (a
        rotation): one record for both hops, its status the second answer's.
        """
        clock = Clock()
        metrics = NodeMetrics("all-in-one", clock)
        lookup = MemoryLookup({("network", NETWORK, "10.0.0.5"): ("vm", "p")})
        api = _PreviousSecretAPI("old")
        agent = MetadataAgent(lookup, api, "new", clock=clock, meter=metrics.hop("agent"),  # type: ignore[arg-type]
                              previous_secrets=("old",))
        answer = self.successResultOf(agent.handle(GuestRequest(b"GET", b"/latest", b"", "10.0.0.5", None, NETWORK, None)))
        self.assertEqual((answer.code, api.asked), (200, 2))
        self.assertEqual([(r[0], r[3], r[7]) for r in records(metrics.pending)], [("agent+api", 200, "vm")])


class _PreviousSecretAPI:
    """An API of this process that answers at once, and only requests signed with C{secret}."""

    meter = "metered"

    def __init__(self, secret: str) -> None:
        self.secret = secret
        self.asked = 0

    def forward_within(self, request: Any, seen: list[Any]) -> Deferred[HTTPResponse]:
        self.asked += 1
        seen[0] = WITH_API[seen[0]]
        if request.signature != sign(self.secret, request.instance_id):
            return succeed(error_response(403, None))
        return succeed(HTTPResponse(200, (), b"ok"))


class APIHandlerMeteringTests(SynchronousTestCase):
    """The API over HTTP notes every answer with the instance the agent named and the guest's address."""

    def test_forbidden(self) -> None:
        """A wrong signature: 403 counted at the API, its reason in the trace, no cache touched."""
        h = Harness(self, secret="k")
        h.store.add(fixture())
        metrics = NodeMetrics("api", h.clock)
        handler = APIHandler(h.app, meter=metrics.hop("api"))
        headers = {b"X-Instance-ID": UUID.encode(), b"X-Tenant-ID": b"test", b"X-Instance-ID-Signature": sign("wrong", UUID).encode(),
                   b"X-Forwarded-For": b"10.0.0.5"}
        _, channel = request(handler, b"GET", b"/latest/meta-data/", headers)
        self.assertEqual(response(channel).code, 403)  # type: ignore[union-attr]
        (record,) = metrics.select(instance=UUID)
        self.assertEqual((record["address"], record["status"], record["cache"], record["reason"]),
                         ("10.0.0.5", 403, None, "invalid X-Instance-ID-Signature"))

    def test_answered_at_once(self) -> None:
        """
        An answer given at once from the render cache is noted with the instance the app found
        (the cache entry's own string, shared by every record of the instance) and the first
        forwarded address, as the app identified them (a miss, noted when its answer came, the
        same address); the version list of C{/}, answered before any identification, with the
        instance header as sent and no cache outcome.
        """
        h = Harness(self, secret="k")
        h.store.add(fixture())
        metrics = NodeMetrics("api", h.clock)
        handler = APIHandler(h.app, meter=metrics.hop("api"))
        headers = dict(h.signed(xff="10.0.0.5, 192.0.2.1"))
        for _ in range(3):  # a miss (a store read), then two answers at once
            _, channel = request(handler, b"GET", b"/latest/meta-data/hostname", headers)
            self.assertEqual(response(channel).code, 200)  # type: ignore[union-attr]
        noted = records(metrics.pending)
        self.assertEqual([(r[5], r[7], r[10]) for r in noted],
                         [("10.0.0.5", UUID.encode(), "miss"), ("10.0.0.5", UUID, "hit"), ("10.0.0.5", UUID, "hit")])
        self.assertIs(noted[1][7], noted[2][7])
        _, channel = request(handler, b"GET", b"/", {b"X-Forwarded-For": b"10.0.0.9"})
        self.assertEqual(response(channel).code, 200)  # type: ignore[union-attr]
        self.assertEqual(records(metrics.pending)[-1][5:11], ("10.0.0.9", None, None, b"GET", b"/", None))
        rows = metrics.select(address="10.0.0.5")
        self.assertEqual([(r["instance"], r["cache"], r["path"]) for r in rows],
                         [(UUID, "miss", "/latest/meta-data/hostname")] + [(UUID, "hit", "/latest/meta-data/hostname")] * 2)


class MeteredBackendTests(SynchronousTestCase):
    """Lookups and stores report their time and their errors under their name."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.metrics = NodeMetrics("agent", self.clock)

    def test_lookup(self) -> None:
        """A lookup is timed; a failure is an error of the backend, whose name the wrapper keeps."""
        inner = _Held()
        metered = MeteredLookup(inner, self.metrics)
        self.assertTrue(verifyObject(IInstanceLookup, metered))
        self.assertEqual(metered.name, "held")
        d = metered.lookup("10.0.0.5", network_id=NETWORK)
        self.clock.advance(0.3)
        inner.pending.callback(None)
        self.assertIsNone(self.successResultOf(d))
        self.assertEqual(self.metrics.stages["lookup"].cumulative()[8:10], [("0.25", 0), ("0.5", 1)])
        inner.broken = LookupUnavailable("down")
        self.failureResultOf(metered.lookup("10.0.0.5", network_id=NETWORK), LookupUnavailable)
        self.assertEqual(self.metrics.backend_errors, {"held": 1})

    def test_store(self) -> None:
        """Store reads are timed; a failure is an error, an address two instances share and an unknown instance are answers."""
        store = MemoryInstanceStore()
        metered = MeteredStore(store, self.metrics, "sqlite")
        self.assertTrue(verifyObject(IInstanceStore, metered))
        self.assertIsNone(self.successResultOf(metered.get(UUID)))
        store.broken = AmbiguousAddress("10.0.0.5", ["a", "b"])
        self.failureResultOf(metered.by_address("10.0.0.5"), AmbiguousAddress)
        store.broken = KeyError(UUID)
        self.failureResultOf(metered.set_password(UUID, "p"), KeyError)
        self.assertEqual(self.metrics.backend_errors, {})
        store.broken = OSError("disk I/O error")
        self.failureResultOf(metered.get(UUID), OSError)
        self.assertEqual(self.metrics.backend_errors, {"sqlite": 1})
        self.assertEqual(self.metrics.stages["store"].count, 4)


@implementer(IInstanceLookup)
class _Held:
    """A lookup whose answer the test gives (C{pending}), or that fails with C{broken}."""

    name = "held"

    def __init__(self) -> None:
        self.pending: Deferred[Any] = Deferred()
        self.broken: Exception | None = None

    def lookup(self, ip: str, network_id: str | None = None, router_id: str | None = None, mac: str | None = None) -> Deferred[Any]:
        """See L{IInstanceLookup.lookup}."""
        return fail(self.broken) if self.broken is not None else self.pending


class _RemoteAPI:
    """An API in another process, answering after C{delay} seconds of C{clock}."""

    def __init__(self, clock: Any, delay: float) -> None:
        self.clock, self.delay = clock, delay

    def forward(self, signed: Any) -> Deferred[HTTPResponse]:
        from twisted.internet.task import deferLater

        return deferLater(self.clock, self.delay, lambda: HTTPResponse(200, (), b"{}"))


class NetworkNodeChainTests(SynchronousTestCase):
    """A network node: a namespace proxy's listener and the agent in one process, the API elsewhere."""

    def test_agent_to_api(self) -> None:
        """The listener's one record for both hops keeps the agent's wait for the remote API (agent_to_api)."""
        from twisted.internet.address import IPv4Address
        from twisted.internet.testing import StringTransport

        from mdsvc.http import LeanHTTPFactory
        from mdsvc.proxy.http import NamespaceProxyHandler

        clock = Clock()
        metrics = NodeMetrics("network-node", clock)
        lookup = MemoryLookup({("network", NETWORK, "10.0.0.5"): (UUID, "test")})
        agent = MetadataAgent(lookup, _RemoteAPI(clock, 0.25), "k", clock=clock, meter=metrics.hop("agent"), time_api=True)  # type: ignore[arg-type]
        agent.front = metrics.hop("proxy")
        factory = LeanHTTPFactory(NamespaceProxyHandler("network", NETWORK, agent), clock, meter=metrics.hop("proxy"),
                                  meter_answers=True, scope=NETWORK)
        protocol = factory.buildProtocol(IPv4Address("TCP", "10.0.0.5", 40000))
        protocol.makeConnection(StringTransport(peerAddress=IPv4Address("TCP", "10.0.0.5", 40000)))
        protocol.dataReceived(b"GET /openstack HTTP/1.1\r\nHost: 169.254.169.254\r\n\r\n")
        clock.advance(0.25)
        self.assertEqual(metrics.requests(), {("proxy", 200): 1, ("agent", 200): 1})
        waited = metrics.stages["agent_to_api"]
        self.assertEqual((waited.count, waited.sum), (1, 0.25))
