# -*- test-case-name: tests.test_operations -*-
"""
What a process runs besides its role, to be seen and asked: the metrics listener
(C{[mdsvc] metrics_endpoint}) and the admin socket (C{[mdsvc] admin_dir}), wired here so that
L{mdsvc.tap} only calls two functions.
"""

from __future__ import annotations

from typing import Any

from twisted.application.service import IService, MultiService

from mdsvc.config import Config
from mdsvc.failures import FailureLog
from mdsvc.metrics import NodeMetrics
from mdsvc.trace import TraceRing


def node_metrics(config: Config, role: str, reactor: Any) -> NodeMetrics:
    """The counters, trace ring and failure log of a process of C{role}."""
    return NodeMetrics(role, reactor, TraceRing(config.operations.trace_size), failure=FailureLog(reactor))


def operations_service(config: Config, role: str, reactor: Any, parts: dict[str, Any]) -> IService:
    """
    The metrics listener, if C{[mdsvc] metrics_endpoint} is set, on the role's L{NodeMetrics}
    and L{mdsvc.readiness.Readiness} (C{parts["metrics"]}, C{parts["readiness"]}).
    """
    from mdsvc.exposition import MetricsHandler, registry_for
    from mdsvc.http import LeanHTTPFactory
    from mdsvc.listen import listen_service
    from mdsvc.readiness import Readiness

    top = MultiService()
    readiness = parts.setdefault("readiness", Readiness(reactor))
    endpoint = config.operations.metrics_endpoint
    if endpoint:
        handler = MetricsHandler(registry_for(parts["metrics"]), readiness)
        factory = LeanHTTPFactory(handler, reactor, request_timeout=config.limits.request_timeout,
                                  idle_timeout=config.limits.idle_timeout, name="mdsvc-metrics", guest_facing=False)
        where = f"{config.source or 'defaults'}: [mdsvc] metrics_endpoint {endpoint}"
        listen_service(endpoint, factory, reactor, where).setServiceParent(top)
    return top


__all__ = ["node_metrics", "operations_service"]
