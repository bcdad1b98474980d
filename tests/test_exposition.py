"""The metrics listener: /metrics read from plain counters at scrape time, /healthz, /readyz naming what is not ready."""

from __future__ import annotations

import os
import tempfile
from typing import Any

from prometheus_client.parser import text_string_to_metric_families
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase

from mdsvc.cache import ExpiringCache
from mdsvc.exposition import MetricsHandler, registry_for
from mdsvc.http import HTTPRequest, HTTPResponse, error_response
from mdsvc.metrics import NodeMetrics
from mdsvc.readiness import NotReady, Readiness, lookup_check, store_check
from mdsvc.tap import Options, makeService
from mdsvc.testing import MemoryInstanceStore, MemoryLookup, stub_pool


def get(handler: MetricsHandler, path: bytes) -> Any:
    """What the handler answers to C{GET path} (a response, or a Deferred of one)."""
    return handler(HTTPRequest(b"GET", path, b"HTTP/1.1", {b"host": [b"x"]}, b"", "127.0.0.1"))


def samples(text: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of an exposition, by name and sorted labels."""
    out = {}
    for family in text_string_to_metric_families(text.decode()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


class CollectorTests(SynchronousTestCase):
    """What /metrics shows is what the process counted, read when scraped."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.metrics = NodeMetrics("network-node", self.clock)
        self.handler = MetricsHandler(registry_for(self.metrics), Readiness(self.clock))

    def scrape(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        response = get(self.handler, b"/metrics")
        self.assertEqual((response.code, response.headers[0][1][:10]), (200, b"text/plain"))
        return samples(response.body)

    def test_requests_and_latency(self) -> None:
        """Answers by role, hop and code; latency buckets per stage; the role in mdsvc_info."""
        meter = self.metrics.hop("proxy")
        meter.answered(HTTPResponse(200, (), b""), 0.0, "10.0.0.5", "n", None, b"GET", b"/", None)
        meter.answered(error_response(503, None, reason="agent down"), 0.0, "10.0.0.5", "n", None, b"GET", b"/", None)
        found = self.scrape()
        self.assertEqual(found[("mdsvc_requests_total", (("code", "200"), ("hop", "proxy"), ("role", "network-node")))], 1)
        self.assertEqual(found[("mdsvc_requests_total", (("code", "503"), ("hop", "proxy"), ("role", "network-node")))], 1)
        self.assertEqual(found[("mdsvc_latency_seconds_count", (("stage", "proxy_to_agent"),))], 2)
        self.assertEqual(found[("mdsvc_latency_seconds_bucket", (("le", "0.0005"), ("stage", "proxy_to_agent")))], 2)
        self.assertEqual(found[("mdsvc_info", (("role", "network-node"), ("version", "0.1.0")))], 1)

    def test_sources_read_when_scraped(self) -> None:
        """Caches, pools, backend errors and refusals are read at scrape time, never pushed."""
        cache = ExpiringCache(self.clock, 10)
        self.metrics.caches["render"] = cache
        self.metrics.pools["api"] = stub_pool(lambda r: HTTPResponse(200, (), b""), clock=self.clock)
        self.metrics.backend_error("neutron")
        self.assertEqual(self.scrape()[("mdsvc_cache_misses_total", (("cache", "render"),))], 0)
        cache.get("k", lambda key: succeed("v"))
        cache.get("k", lambda key: succeed("v"))
        self.successResultOf(self.metrics.pools["api"].request(b"GET", b"/", []))
        found = self.scrape()
        self.assertEqual([found[(f"mdsvc_cache_{n}", (("cache", "render"),))] for n in ("hits_total", "misses_total", "entries")],
                         [1, 1, 1])
        self.assertEqual(found[("mdsvc_pool_connections", (("pool", "api"), ("state", "idle")))], 1)
        self.assertEqual(found[("mdsvc_pool_connections_made_total", (("pool", "api"),))], 1)
        self.assertEqual(found[("mdsvc_backend_errors_total", (("backend", "neutron"),))], 1)
        self.assertEqual(found[("mdsvc_rate_limited_total", (("reason", "rate"),))], 0)
        self.assertEqual(found[("mdsvc_namespaces_watched", ())], 0)

    def test_healthz_and_unknown(self) -> None:
        """/healthz is 200 while the process runs; other paths 404; other methods 405."""
        self.assertEqual((get(self.handler, b"/healthz").code, get(self.handler, b"/healthz").body), (200, b"ok\n"))
        self.assertEqual(get(self.handler, b"/").code, 404)
        post = self.handler(HTTPRequest(b"POST", b"/metrics", b"HTTP/1.1", {}, b"", None))
        self.assertEqual(post.code, 405)  # type: ignore[union-attr]


class ReadinessTests(SynchronousTestCase):
    """/readyz: every dependency answers, or 503 naming each one that does not."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.readiness = Readiness(self.clock, timeout=2)
        self.handler = MetricsHandler(registry_for(NodeMetrics("agent", self.clock)), self.readiness)
        self.api_up = True
        self.readiness.add("metadata API at http://127.0.0.1:8775", lambda: succeed(None) if self.api_up else fail(NotReady("Connection refused")))

    def test_ready_not_ready_ready(self) -> None:
        """Ready; the API stops: 503 naming it and why; it comes back: ready again."""
        ready = self.successResultOf(get(self.handler, b"/readyz"))
        self.assertEqual((ready.code, ready.body), (200, b"ready\nok: metadata API at http://127.0.0.1:8775\n"))
        self.api_up = False
        down = self.successResultOf(get(self.handler, b"/readyz"))
        self.assertEqual((down.code, down.body),
                         (503, b"not ready\nnot ready: metadata API at http://127.0.0.1:8775: Connection refused\n"))
        self.api_up = True
        self.assertEqual(self.successResultOf(get(self.handler, b"/readyz")).code, 200)

    def test_timeout(self) -> None:
        """A dependency that does not answer in time is named, with the time it had."""
        self.readiness.add("lookup backend neutron", lambda: Deferred())
        d = get(self.handler, b"/readyz")
        self.assertNoResult(d)
        self.clock.advance(2)
        self.assertIn(b"not ready: lookup backend neutron: no answer within 2s\n", self.successResultOf(d).body)

    def test_probes(self) -> None:
        """A store is asked for an instance no one has, a lookup about an address no guest has; their failures say why."""
        store, lookup = MemoryInstanceStore(), MemoryLookup()
        self.successResultOf(store_check(store)())
        self.successResultOf(lookup_check(lookup)())
        self.assertEqual(lookup.calls, [("192.0.2.1", "mdsvc-readiness-probe", None, None)])
        store.broken = OSError("unable to open database file")
        self.assertEqual(str(self.failureResultOf(store_check(store)(), OSError).value), "unable to open database file")


class HealthCheckTests(SynchronousTestCase):
    """The built-in lookup backends check themselves for /readyz, without a lookup's log lines."""

    def test_static(self) -> None:
        """static:PATH is ready when its file reads, and names the file when it does not."""
        from mdsvc.interfaces import LookupUnavailable
        from mdsvc.lookup.static import StaticLookup
        from mdsvc.readiness import IHealthCheck

        path = os.path.join(tempfile.mkdtemp(), "ports.json")
        self.addCleanup(__import__("shutil").rmtree, os.path.dirname(path), True)
        lookup = StaticLookup(path)
        self.assertTrue(IHealthCheck.providedBy(lookup))
        self.assertIn(path, str(self.failureResultOf(lookup_check(lookup)(), LookupUnavailable).value))
        with open(path, "w") as f:
            f.write("{\"ports\": [], \"routers\": {}}")
        self.assertIsNone(self.successResultOf(lookup_check(lookup)()))


class ListenerTests(SynchronousTestCase):
    """[mdsvc] metrics_endpoint adds a listener of its own; without it there is none."""

    def build(self, extra: str) -> MemoryReactorClock:
        directory = tempfile.mkdtemp()
        self.addCleanup(__import__("shutil").rmtree, directory, True)
        path = os.path.join(directory, "api.conf")
        with open(path, "w") as f:
            f.write(f"[DEFAULT]\nstate_path = {directory}\n[mdsvc]\napi_endpoint = tcp:8775\n{extra}")
        options = Options()
        options.parseOptions(["--role", "api", "--config", path])
        reactor = MemoryReactorClock()
        service = makeService(options, reactor)
        service.privilegedStartService()
        service.startService()
        self.addCleanup(service.stopService)
        return reactor

    def test_metrics_endpoint(self) -> None:
        """With metrics_endpoint the process also listens there (on the loopback address given)."""
        ports = [(port, interface) for port, _, _, interface in self.build("metrics_endpoint = tcp:9180:interface=127.0.0.1\n").tcpServers]
        self.assertEqual(sorted(ports), [(8775, ""), (9180, "127.0.0.1")])

    def test_off_by_default(self) -> None:
        """Without it, only the API listens."""
        self.assertEqual([port for port, *_ in self.build("").tcpServers], [8775])
