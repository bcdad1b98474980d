"""bench/unmetered.py's edits against this checkout's mdsvc/tap.py: each matches once, and no hop meter is left wired."""

from __future__ import annotations

import importlib.util
import os

from twisted.trial.unittest import SynchronousTestCase

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _unmetered() -> object:
    spec = importlib.util.spec_from_file_location("bench_unmetered", os.path.join(ROOT, "bench", "unmetered.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class UnmeteredTests(SynchronousTestCase):
    """The benchmark's "metrics off" tree is this tree with every hop meter taken out, or it is refused."""

    def setUp(self) -> None:
        with open(os.path.join(ROOT, "mdsvc", "tap.py")) as f:
            self.tap = f.read()
        self.unmeter = _unmetered().unmeter  # type: ignore[attr-defined]

    def test_no_meter_left(self) -> None:
        """Every place tap.py hands a hop its meter is changed; nothing else is."""
        unmetered = self.unmeter(self.tap)
        self.assertEqual(self.tap.count(".hop(") - unmetered.count(".hop("), 6)
        self.assertNotIn("meter=metrics.hop", unmetered)
        self.assertEqual(len(self.tap.splitlines()), len(unmetered.splitlines()))

    def test_changed_wiring_refused(self) -> None:
        """A tap.py whose wiring no longer matches an edit is refused in one line naming it."""
        changed = self.tap.replace('upstream.front = metrics.hop("proxy")', 'upstream.front = metrics.meter("proxy")')
        with self.assertRaises(SystemExit) as caught:
            self.unmeter(changed)
        self.assertIn("upstream.front = metrics.hop(\"proxy\")", str(caught.exception))
        self.assertIn("(one expected)", str(caught.exception))
