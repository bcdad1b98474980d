# -*- test-case-name: tests.test_exposition -*-
"""
The metrics listener (C{[mdsvc] metrics_endpoint}): C{/metrics} for Prometheus, C{/healthz}
(the process is alive) and C{/readyz} (every dependency of its role answers, naming the one that
does not), on an endpoint of its own served by the reactor like every other listener, never on a
guest-facing one.

Nothing on the hot path calls prometheus_client: L{NodeCollector} reads the process's plain
counters (L{mdsvc.metrics.NodeMetrics}) when Prometheus scrapes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import CollectorRegistry, CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from twisted.internet.defer import Deferred

from mdsvc import __version__
from mdsvc.http import HTTPRequest, HTTPResponse
from mdsvc.metrics import NodeMetrics
from mdsvc.readiness import Readiness

TEXT = b"text/plain; charset=utf-8"


class NodeCollector(Collector):
    """Every metric of one process, read from its L{NodeMetrics} at scrape time."""

    def __init__(self, metrics: NodeMetrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        """The metric families (see the module's list in README, "Operating it")."""
        m = self.metrics
        m.fold()
        info = GaugeMetricFamily("mdsvc_info", "The role and version of this mdsvc process.", labels=["role", "version"])
        info.add_metric([m.role, __version__], 1)
        yield info
        requests = CounterMetricFamily("mdsvc_requests", "Requests answered, by role, hop and status.", labels=["role", "hop", "code"])
        for (hop, code), n in sorted(m.requests().items()):
            requests.add_metric([m.role, hop, str(code)], n)
        yield requests
        latency = HistogramMetricFamily("mdsvc_latency_seconds", "Seconds taken, by stage: proxy_to_agent (a proxy waiting for "
                                        "the agent), agent (the agent's answer), agent_to_api, api_render, lookup (the lookup "
                                        "backend, cache misses), store (instance store reads).", labels=["stage"])
        for stage, histogram in sorted(m.stages.items()):
            latency.add_metric([stage], histogram.cumulative(), histogram.sum)
        yield latency
        yield from self._caches()
        limited = CounterMetricFamily("mdsvc_rate_limited", "Requests the agent refused with 429, by reason.", labels=["reason"])
        limited.add_metric(["rate"], sum(a.rate_limited for a in m.agents))
        limited.add_metric(["in_flight"], sum(a.in_flight_refused for a in m.agents))
        yield limited
        yield from self._namespaces()
        yield from self._pools()
        errors = CounterMetricFamily("mdsvc_backend_errors", "Failures of lookup backends and instance stores, by backend.",
                                     labels=["backend"])
        for backend, n in sorted(m.backend_errors.items()):
            errors.add_metric([backend], n)
        yield errors
        if m.limits is not None:
            yield GaugeMetricFamily("mdsvc_guest_connections", "Guest connections open.", value=m.limits.open)
            yield CounterMetricFamily("mdsvc_guest_connections_refused", "Guest connections refused past a connection limit.",
                                      value=m.limits.refused)
        yield GaugeMetricFamily("mdsvc_trace_records", "Requests held in the trace ring.", value=len(m.trace))

    def _caches(self) -> Iterator[Metric]:
        families = {
            "hits": CounterMetricFamily("mdsvc_cache_hits", "Cache lookups that found a fresh entry.", labels=["cache"]),
            "loads": CounterMetricFamily("mdsvc_cache_misses", "Cache lookups that loaded the entry.", labels=["cache"]),
            "coalesced": CounterMetricFamily("mdsvc_cache_coalesced", "Cache lookups that waited for a load already under way.",
                                             labels=["cache"]),
        }
        entries = GaugeMetricFamily("mdsvc_cache_entries", "Entries held (expired ones until swept).", labels=["cache"])
        for name, cache in sorted(self.metrics.caches.items()):
            for attribute, family in families.items():
                family.add_metric([name], getattr(cache, attribute, 0))
            entries.add_metric([name], len(cache))
        yield from families.values()
        yield entries

    def _namespaces(self) -> Iterator[Metric]:
        proxies = self.metrics.proxies
        watched = sum(len(p.watcher.discovered()) for p in proxies)
        listeners = sum(p.listeners_open() for p in proxies) + self.metrics.fixed_listeners
        waiting = sum(len(p.waiting_for_ipv6()) for p in proxies)
        failing = sum(len(p.problems) for p in proxies)
        yield GaugeMetricFamily("mdsvc_namespaces_watched", "Tenant namespaces discovered (qdhcp-, qrouter-, ovnmeta-).", value=watched)
        yield GaugeMetricFamily("mdsvc_listeners_open", "Proxy listening sockets open (in namespaces, and fixed ones).", value=listeners)
        yield GaugeMetricFamily("mdsvc_namespaces_waiting_ipv6", "Namespaces served on IPv4 whose fe80::a9fe:a9fe is not there yet.",
                                value=waiting)
        yield GaugeMetricFamily("mdsvc_namespaces_failing", "Namespaces whose listeners could not be created (tried again).",
                                value=failing)

    def _pools(self) -> Iterator[Metric]:
        connections = GaugeMetricFamily("mdsvc_pool_connections", "Connections of a pooled client (api: agent to API; agent: "
                                        "proxy to the agent socket), by state.", labels=["pool", "state"])
        waiters = GaugeMetricFamily("mdsvc_pool_waiters", "Requests waiting for a connection of a pool.", labels=["pool"])
        made = CounterMetricFamily("mdsvc_pool_connections_made", "Connections a pool opened.", labels=["pool"])
        for name, pool in sorted(self.metrics.pools.items()):
            connections.add_metric([name, "open"], pool.open_connections)
            connections.add_metric([name, "idle"], pool.idle_connections)
            waiters.add_metric([name], pool.waiters)
            made.add_metric([name], pool.connections_made)
        yield connections
        yield waiters
        yield made


def registry_for(metrics: NodeMetrics) -> CollectorRegistry:
    """A registry of this process's own: L{NodeCollector} alone (no global default registry)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(NodeCollector(metrics))
    return registry


class MetricsHandler:
    """
    C{LeanHTTPFactory(MetricsHandler(...))}: C{GET /metrics}, C{/healthz}, C{/readyz}; anything
    else 404.

    @param registry: what C{/metrics} renders; or None, and C{exposition} renders it.
    @param readiness: what C{/readyz} checks (anything with L{Readiness.check}'s signature).
    @param exposition: returns a Deferred of C{/metrics}' text (the supervisor of
        C{metadata_workers} asks its workers for theirs: L{mdsvc.workerops}).
    """

    def __init__(self, registry: CollectorRegistry | None, readiness: Readiness | Any,
                 exposition: Callable[[], Deferred[bytes]] | None = None) -> None:
        self.registry = registry
        self.readiness = readiness
        self.exposition = exposition

    def __call__(self, request: HTTPRequest) -> HTTPResponse | Deferred[HTTPResponse]:
        """Answer one request of the metrics listener."""
        path = request.path
        if request.method not in (b"GET", b"HEAD"):
            return HTTPResponse(405, ((b"Content-Type", TEXT), (b"Allow", b"GET, HEAD")), b"GET or HEAD only\n")
        if path == b"/metrics":
            if self.exposition is not None:
                return self.exposition().addCallback(metrics_response)
            assert self.registry is not None
            return metrics_response(generate_latest(self.registry))
        if path == b"/healthz":
            return HTTPResponse(200, ((b"Content-Type", TEXT),), b"ok\n")
        if path == b"/readyz":
            return self.readiness.check().addCallback(readyz_response)
        return HTTPResponse(404, ((b"Content-Type", TEXT),), b"not found: /metrics, /healthz and /readyz are served here\n")


def metrics_response(text: bytes) -> HTTPResponse:
    """200 and the exposition C{text}."""
    return HTTPResponse(200, ((b"Content-Type", CONTENT_TYPE_LATEST.encode("ascii")),), text)


def readyz_response(results: list[tuple[str, str | None]]) -> HTTPResponse:
    """200 and C{ready} when every dependency answers, else 503 naming each one that does not; one line each."""
    lines = [f"ok: {name}" if problem is None else f"not ready: {name}: {problem}" for name, problem in results]
    ready = all(problem is None for _, problem in results)
    body = ("ready\n" if ready else "not ready\n") + "".join(line + "\n" for line in lines)
    return HTTPResponse(200 if ready else 503, ((b"Content-Type", TEXT),), body.encode("utf-8"))


__all__ = ["MetricsHandler", "NodeCollector", "metrics_response", "readyz_response", "registry_for"]
