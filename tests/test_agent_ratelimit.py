"""Rate limiting with two sliding windows (neutron spec §7)."""

from __future__ import annotations

import os
from typing import Any

from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase

from mdsvc.agent.ratelimit import SlidingWindowLimiter
from mdsvc.tap import Options, build_agent


class LimiterTests(SynchronousTestCase):
    """SlidingWindowLimiter."""

    def test_limit_plus_one_refused(self) -> None:
        """With limit 10 per 10 s, requests 1-10 pass and the 11th within the window is refused."""
        clock = Clock()
        limiter = SlidingWindowLimiter(clock, ((10, 10),))
        results = []
        for _ in range(11):
            results.append(limiter.allow("a"))
            clock.advance(0.5)
        self.assertEqual(results, [True] * 10 + [False])

    def test_window_slides(self) -> None:
        """Once the oldest requests leave the window, requests pass again."""
        clock = Clock()
        limiter = SlidingWindowLimiter(clock, ((10, 2),))
        self.assertEqual([limiter.allow("a"), limiter.allow("a"), limiter.allow("a")], [True, True, False])
        clock.advance(10.01)
        self.assertTrue(limiter.allow("a"))

    def test_refused_requests_count(self) -> None:
        """A client that keeps polling stays refused (tracking precedes the deny)."""
        clock = Clock()
        limiter = SlidingWindowLimiter(clock, ((10, 2),))
        limiter.allow("a"), limiter.allow("a")
        for _ in range(30):
            clock.advance(1)
            self.assertFalse(limiter.allow("a"))

    def test_two_windows(self) -> None:
        """The burst window refuses a quick burst that the base window would admit."""
        clock = Clock()
        limiter = SlidingWindowLimiter(clock, ((60, 6), (10, 2)))
        self.assertEqual([limiter.allow("a") for _ in range(3)], [True, True, False])
        clock.advance(11)
        self.assertEqual([limiter.allow("a") for _ in range(3)], [True, True, False])
        clock.advance(11)
        self.assertFalse(limiter.allow("a"))  # the 7th request within 60 s, though the burst window is clear

    def test_keys_independent_and_swept(self) -> None:
        """Keys are counted apart; idle keys are forgotten."""
        clock = Clock()
        limiter = SlidingWindowLimiter(clock, ((10, 1),))
        self.assertTrue(limiter.allow("a"))
        self.assertTrue(limiter.allow("b"))
        self.assertFalse(limiter.allow("a"))
        clock.advance(25)
        limiter.allow("c")
        self.assertEqual(len(limiter), 1)

    def test_cloud_init_boot_passes_defaults_of_mdsvc_docs(self) -> None:
        """A 32-request cloud-init boot within 3 s passes a 60-request / 10 s limit."""
        clock = Clock()
        limiter = SlidingWindowLimiter(clock, ((10, 60), (10, 60)))
        allowed = []
        for _ in range(32):
            allowed.append(limiter.allow("guest"))
            clock.advance(0.1)
        self.assertTrue(all(allowed))


class DefaultLimitsTests(SynchronousTestCase):
    """
    The limiter the agent builds from the default C{[metadata_rate_limiting]} options (only
    C{rate_limit_enabled} set) lets whole cloud-init boots through and still stops a flood.
    """

    def limiter(self) -> tuple[SlidingWindowLimiter, MemoryReactorClock]:
        """The agent role's limiter, built by mdsvc.tap from a file that only turns limiting on."""
        path = os.path.abspath(self.mktemp())
        os.makedirs(path)
        config = os.path.join(path, "agent.conf")
        with open(config, "w") as f:
            f.write(f"[DEFAULT]\nstate_path = {path}/state\n[metadata_rate_limiting]\nrate_limit_enabled = true\n")
        options = Options()
        options.parseOptions(["--role", "agent", "--config", config])
        reactor = MemoryReactorClock()
        parts: dict[str, Any] = {}
        build_agent(options["parsed"], reactor, parts)
        limiter = parts["agent"].limiter
        self.assertIsInstance(limiter, SlidingWindowLimiter)
        return limiter, reactor

    def boot(self, limiter: SlidingWindowLimiter, clock: MemoryReactorClock, requests: int = 30, seconds: float = 3.0) -> list[bool]:
        """A cloud-init crawl: C{requests} GETs spread over C{seconds}."""
        allowed = []
        for _ in range(requests):
            allowed.append(limiter.allow("guest"))
            clock.advance(seconds / requests)
        return allowed

    def test_boot_allowed(self) -> None:
        """A 30-GET boot over 3 s is allowed whole, and so is a second boot 20 s later."""
        limiter, clock = self.limiter()
        self.assertEqual(self.boot(limiter, clock), [True] * 30)
        clock.advance(17)
        self.assertEqual(self.boot(limiter, clock), [True] * 30)

    def test_reboots_within_a_minute(self) -> None:
        """Four 32-GET boots within a minute (cloudbase-init reboots while it configures) pass."""
        limiter, clock = self.limiter()
        for _ in range(4):
            self.assertEqual(self.boot(limiter, clock, 32), [True] * 32)
            clock.advance(12)

    def test_flood_refused(self) -> None:
        """A flood of 1,000 requests in 10 s is mostly refused, and stays refused while it goes on."""
        limiter, clock = self.limiter()
        allowed = self.boot(limiter, clock, 1000, 10.0)
        self.assertGreaterEqual(allowed.count(False), 900)
        self.assertEqual(self.boot(limiter, clock, 1000, 10.0).count(True), 0)
        self.assertTrue(limiter.allow("another-guest"))
