"""NamespaceProxies: how often incomplete namespaces are looked at again."""

from __future__ import annotations

from typing import Any

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from mdsvc.proxy.service import MAX_RECHECK, NamespaceProxies


class Counting(NamespaceProxies):
    """Records every attempt to complete a namespace; the IPv6 address never arrives."""

    def __init__(self, clock: Clock, directory: str) -> None:
        super().__init__(clock, upstream=None, directory=directory, use_inotify=False, interval=5)  # type: ignore[arg-type]
        self.attempts: list[float] = []

    def _complete(self, name: str) -> None:
        self.attempts.append(self.reactor.seconds())


class RecheckTests(SynchronousTestCase):
    """Namespaces without their IPv6 address are looked at less and less often."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.proxies = Counting(self.clock, self.mktemp())
        self.proxies.ports["qdhcp-n1"] = {"v4": object()}  # type: ignore[dict-item]

    def run_until(self, seconds: float) -> None:
        while self.clock.seconds() < seconds:
            self.proxies._complete_all()
            self.clock.advance(1)

    def test_backoff(self) -> None:
        """Checks at 0, 5, 15, 35, 75, ... then every MAX_RECHECK seconds."""
        self.run_until(1000)
        self.assertEqual(self.proxies.attempts[:6], [0, 5, 15, 35, 75, 155])
        gaps = [b - a for a, b in zip(self.proxies.attempts, self.proxies.attempts[1:], strict=False)]
        self.assertEqual(max(gaps), MAX_RECHECK)

    def test_complete_namespaces_not_checked(self) -> None:
        """A namespace with both listeners, or a router with its one, costs nothing."""
        self.proxies.ports["qdhcp-n1"] = {"v4": object(), "v6": object()}  # type: ignore[dict-item]
        self.proxies.ports["qrouter-r1"] = {"router": object()}  # type: ignore[dict-item]
        self.run_until(100)
        self.assertEqual(self.proxies.attempts, [])

    def test_closed_namespace_forgotten(self) -> None:
        """A namespace that goes away leaves no recheck schedule behind."""
        self.run_until(10)

        class Port:
            def stopListening(self) -> Any:
                return None

        self.proxies.ports["qdhcp-n1"] = {"v4": Port()}  # type: ignore[dict-item]
        self.proxies.removed("qdhcp-n1")
        self.assertEqual(self.proxies._recheck, {})
