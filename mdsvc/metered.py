# -*- test-case-name: tests.test_metrics -*-
"""
Lookup backends and instance stores as they report to the process's metrics: wrappers that
provide the same interface (as C{twisted.names} wraps resolvers), timing each call and counting
each failure as a backend error under the backend's name (L{NodeMetrics.backend_error}).

Whatever backend is configured (the built-in ones, Nova's databases, OVN, a vendor's plugin) is
wrapped where the role is wired (L{mdsvc.tap}), under the caches: only what reaches the backend
is timed. A backend that fails in the background (a dropped connection it will redo) reports
through C{backend_error} itself.
"""

from __future__ import annotations

from typing import Any

from attrs import define
from twisted.internet.defer import CancelledError, Deferred
from twisted.python.components import proxyForInterface
from twisted.python.failure import Failure
from zope.interface import implementer

from mdsvc.interfaces import AmbiguousAddress, IInstanceLookup, IInstanceStore
from mdsvc.metrics import Histogram, NodeMetrics


@define(eq=False)
class _Timing:
    """Times one call of a backend; a failure is one of the backend's errors."""

    metrics: NodeMetrics
    histogram: Histogram
    backend: str

    def call(self, result: Deferred[Any], answers: tuple[type[Exception], ...] = ()) -> Deferred[Any]:
        """
        Observe C{result}'s time from now until it fires; a failure counts as an error, unless it
        is one of C{answers} (what the interface fails with as an answer) or a cancellation.
        """
        started = self.metrics.clock.seconds()

        def done(outcome: Any) -> Any:
            self.histogram.observe(self.metrics.clock.seconds() - started)
            if isinstance(outcome, Failure) and not outcome.check(CancelledError, *answers):
                self.metrics.backend_error(self.backend)
            return outcome

        return result.addBoth(done)


@implementer(IInstanceLookup)
class MeteredLookup:
    """An L{IInstanceLookup} timing C{inner}'s lookups (C{lookup}) and counting its failures."""

    def __init__(self, inner: IInstanceLookup, metrics: NodeMetrics) -> None:
        self.inner = inner
        self.name = getattr(inner, "name", type(inner).__name__)
        self._timing = _Timing(metrics, metrics.stage("lookup"), self.name)

    def lookup(
        self, ip: str, network_id: str | None = None, router_id: str | None = None, mac: str | None = None,
    ) -> Deferred[Any]:
        """See L{IInstanceLookup.lookup}."""
        try:
            result = self.inner.lookup(ip, network_id=network_id, router_id=router_id, mac=mac)
        except Exception:
            self._timing.metrics.backend_error(self.name)
            raise
        return self._timing.call(result)


class MeteredStore(proxyForInterface(IInstanceStore, "inner")):  # type: ignore[misc]
    """
    An L{IInstanceStore} timing C{inner}'s reads (C{store}) and counting its failures under
    C{backend} (the store's name: C{sqlite}, a plugin's NAME).
    """

    def __init__(self, inner: IInstanceStore, metrics: NodeMetrics, backend: str) -> None:
        super().__init__(inner)
        self._timing = _Timing(metrics, metrics.stage("store"), backend)
        self.backend = backend

    def get(self, uuid: str) -> Deferred[Any]:
        """See L{IInstanceStore.get}."""
        return self._timing.call(self.inner.get(uuid))

    def by_address(self, ip: str) -> Deferred[Any]:
        """See L{IInstanceStore.by_address} (several instances at one address is an answer, not an error)."""
        return self._timing.call(self.inner.by_address(ip), (AmbiguousAddress,))

    def by_provider(self, provider_id: str, ip: str) -> Deferred[Any]:
        """See L{IInstanceStore.by_provider}."""
        return self._timing.call(self.inner.by_provider(provider_id, ip))

    def set_password(self, uuid: str, password: str) -> Deferred[Any]:
        """See L{IInstanceStore.set_password} (an unknown instance is an answer, not an error); timed as a store call."""
        return self._timing.call(self.inner.set_password(uuid, password), (KeyError,))


__all__ = ["MeteredLookup", "MeteredStore"]
