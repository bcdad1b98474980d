"""Rate limiting with two sliding windows (neutron spec §7)."""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from mdsvc.agent.ratelimit import SlidingWindowLimiter


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
