"""Connection budgets, log throttling and the open-files limit (mdsvc.limits)."""

from __future__ import annotations

import resource

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from mdsvc.limits import DESCRIPTOR_RESERVE, LogThrottle, connection_budget, raise_descriptor_limit


class LimitsTests(SynchronousTestCase):
    """The helpers behind the connection caps."""

    def test_throttle(self) -> None:
        """One line per interval per kind, with the count of those held back."""
        clock = Clock()
        throttle = LogThrottle(clock, 60)
        self.assertEqual(throttle.allow("a"), 0)
        self.assertEqual([throttle.allow("a") for _ in range(5)], [None] * 5)
        self.assertEqual(throttle.allow("b"), 0)
        clock.advance(60)
        self.assertEqual(throttle.allow("a"), 5)

    def test_budget(self) -> None:
        """The total cap never takes the descriptors the process needs for itself."""
        self.assertEqual(connection_budget(4096, 1024), 1024 - DESCRIPTOR_RESERVE)
        self.assertEqual(connection_budget(4096, 65536), 4096)
        self.assertEqual(connection_budget(0, 65536), 65536 - DESCRIPTOR_RESERVE)
        self.assertEqual(connection_budget(4096, 100), 64)

    def test_raise_descriptor_limit(self) -> None:
        """The soft limit is raised to the hard one (and restored by the test)."""
        before = resource.getrlimit(resource.RLIMIT_NOFILE)
        self.addCleanup(resource.setrlimit, resource.RLIMIT_NOFILE, before)
        hard = before[1]
        if hard == resource.RLIM_INFINITY or hard < 128:
            self.skipTest(f"hard limit {hard} leaves nothing to raise here")
        resource.setrlimit(resource.RLIMIT_NOFILE, (64, hard))
        self.assertEqual(raise_descriptor_limit(), (hard, hard))
        self.assertEqual(resource.getrlimit(resource.RLIMIT_NOFILE), (hard, hard))

    def test_node_startup_raises_limit_and_fits_total(self) -> None:
        """Building a node's listeners raises the soft limit and keeps the connection total below it."""
        from mdsvc.config import load_config
        from mdsvc.tap import _connection_limits

        before = resource.getrlimit(resource.RLIMIT_NOFILE)
        self.addCleanup(resource.setrlimit, resource.RLIMIT_NOFILE, before)
        hard = before[1]
        if hard == resource.RLIM_INFINITY or hard < 1024:
            self.skipTest(f"hard limit {hard} leaves nothing to raise here")
        resource.setrlimit(resource.RLIMIT_NOFILE, (512, hard))
        parts: dict[str, object] = {}
        limits = _connection_limits(load_config(None), Clock(), parts)
        self.assertEqual(resource.getrlimit(resource.RLIMIT_NOFILE)[0], hard)
        self.assertEqual(limits.total, connection_budget(4096, hard))
        self.assertIs(_connection_limits(load_config(None), Clock(), parts), limits, "one per process")
