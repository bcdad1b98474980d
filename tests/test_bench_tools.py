"""
bench/unmetered.py's edits against this checkout's mdsvc/tap.py (each matches once, and no hop meter is left
wired), bench/counted.py's parts that need no valgrind, and bench/ab.py's figures.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import statistics
import sys
import tempfile
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _bench_module(name: str) -> object:
    """bench/NAME.py, imported as the scripts import each other (bench/ on the path)."""
    bench = os.path.join(ROOT, "bench")
    if bench not in sys.path:
        sys.path.insert(0, bench)
    spec = importlib.util.spec_from_file_location(f"bench_{name}", os.path.join(bench, f"{name}.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class UnmeteredTests(SynchronousTestCase):
    """The benchmark's "metrics off" tree is this tree with every hop meter taken out, or it is refused."""

    def setUp(self) -> None:
        with open(os.path.join(ROOT, "mdsvc", "tap.py")) as f:
            self.tap = f.read()
        self.unmeter = _bench_module("unmetered").unmeter  # type: ignore[attr-defined]

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


class CountedTests(SynchronousTestCase):
    """bench/counted.py's reading of callgrind's dumps, and its copies of a tree that fold less often."""

    def setUp(self) -> None:
        self.counted: Any = _bench_module("counted")

    def dump(self, text: str) -> str:
        fd, path = tempfile.mkstemp(suffix=".callgrind")
        self.addCleanup(os.unlink, path)
        with os.fdopen(fd, "w") as f:
            f.write(text)
        return path

    def test_totals(self) -> None:
        """The instructions of a dump are its totals line (the summary line where there is no totals line)."""
        self.assertEqual(self.counted.callgrind_totals(self.dump("version: 1\nevents: Ir\nsummary: 1234\nfn=x\n5 6\ntotals: 98765\n")),
                         98765)
        self.assertEqual(self.counted.callgrind_totals(self.dump("events: Ir\nsummary: 4321\n")), 4321)

    def test_partial_dump_refused(self) -> None:
        """A dump without either line (cut short) is an error naming the file, never a count of zero."""
        path = self.dump("events: Ir\nfn=x\n5 6\n")
        with self.assertRaises(Exception) as caught:
            self.counted.callgrind_totals(path)
        self.assertIn(path, str(caught.exception))

    def test_slow_fold_copy(self) -> None:
        """The copy of this checkout's code folds every given seconds; the rest of operations.py is unchanged."""
        into = os.path.join(tempfile.mkdtemp(), "tree")
        self.addCleanup(shutil.rmtree, os.path.dirname(into), True)
        self.counted.slow_fold_copy(ROOT, into, 20.0)
        with open(os.path.join(ROOT, "mdsvc", "operations.py")) as f:
            original = f.read()
        with open(os.path.join(into, "mdsvc", "operations.py")) as f:
            copied = f.read()
        self.assertIn("\nFOLD_INTERVAL = 0.1\n", original)
        self.assertEqual(copied, original.replace("\nFOLD_INTERVAL = 0.1\n", "\nFOLD_INTERVAL = 20.0\n"))
        self.assertTrue(os.path.exists(os.path.join(into, "mdsvc", "tap.py")))
        self.assertTrue(os.path.exists(os.path.join(into, "twisted", "plugins", "mdsvc_plugin.py")))

    def test_changed_fold_refused(self) -> None:
        """A tree whose fold interval is no longer that line is refused in one line, never counted folding as often as a node."""
        tree = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, tree, True)
        os.makedirs(os.path.join(tree, "mdsvc"))
        os.makedirs(os.path.join(tree, "twisted", "plugins"))
        with open(os.path.join(tree, "mdsvc", "operations.py"), "w") as f:
            f.write("FOLD_INTERVAL = 2.0\n")
        with self.assertRaises(SystemExit) as caught:
            self.counted.slow_fold_copy(tree, os.path.join(tree, "copy"), 20.0)
        self.assertIn("FOLD_INTERVAL = 0.1", str(caught.exception))
        self.assertIn("(one expected)", str(caught.exception))

    def test_per_request_net_of_idle(self) -> None:
        """A window's instructions less the idle rate times its seconds, over its requests; the total the same over all windows."""
        result = {"idle_rate": 1000.0, "windows": [
            {"requests": 100, "seconds": 2.0, "by_server": {"api": 52_000, "agent": 50_000}},
            {"requests": 300, "seconds": 4.0, "by_server": {"api": 304_000}},
        ]}
        total, each, raw = self.counted.per_request(result)
        self.assertEqual(each, [1000.0, 1000.0])
        self.assertEqual(total, (406_000 - 6_000) / 400)
        self.assertEqual(raw, 406_000 / 400)


class ABTests(SynchronousTestCase):
    """bench/ab.py's figures: the ratio compared, and the mean of several runs' ratios with its interval."""

    def setUp(self) -> None:
        self.ab: Any = _bench_module("ab")

    def test_ratio_together(self) -> None:
        """Loaded together: the first variant's server CPU per request over the second's."""
        totals = [[1000, 10.0, 0.070], [900, 10.0, 0.072]]  # 70 µs a request, 80 µs a request
        self.assertAlmostEqual(self.ab.ratio(totals, True), 70 / 80)

    def test_ratio_alternating(self) -> None:
        """Loaded in turn: the second variant's requests a second over the first's."""
        totals = [[1000, 10.0, 0.070], [900, 9.0, 0.072]]  # 100 and 100 a second
        self.assertAlmostEqual(self.ab.ratio(totals, False), 1.0)
        self.assertAlmostEqual(self.ab.ratio([[1000, 10.0, 0.0], [1100, 10.0, 0.0]], False), 1.1)

    def test_pooled_interval(self) -> None:
        """The mean of the runs and Student's 95% interval around it (t of n - 1 degrees of freedom)."""
        mean, low, high = self.ab.pooled([0.96, 0.97, 0.98])
        self.assertAlmostEqual(mean, 0.97)
        half = 4.303 * 0.01 / 3 ** 0.5  # t(2) = 4.303; the runs' standard deviation is 0.01
        self.assertAlmostEqual(low, 0.97 - half)
        self.assertAlmostEqual(high, 0.97 + half)

    def test_pooled_many_runs(self) -> None:
        """Past thirty degrees of freedom the normal quantile, 1.96."""
        ratios = [0.99, 1.01] * 20
        mean, low, high = self.ab.pooled(ratios)
        spread = 1.96 * statistics.stdev(ratios) / 40 ** 0.5
        self.assertAlmostEqual(mean, 1.0)
        self.assertAlmostEqual(high - mean, spread)
        self.assertAlmostEqual(mean - low, spread)

    def test_pooled_one_run(self) -> None:
        """One run has no interval: its ratio three times."""
        self.assertEqual(self.ab.pooled([0.97]), (0.97, 0.97, 0.97))


class FoldTests(SynchronousTestCase):
    """bench/fold.py times this checkout's fold over records as a network node notes them."""

    def test_fold_cost(self) -> None:
        """A figure a record, from folds that counted every record and kept them in the trace."""
        fold: Any = _bench_module("fold")
        from mdsvc import metrics
        from mdsvc.trace import WIDTH

        folded: list[int] = []
        real = metrics.NodeMetrics.fold

        def counting(self: Any) -> None:
            folded.append(len(self.pending))
            real(self)

        self.patch(metrics.NodeMetrics, "fold", counting)
        cost = fold.fold_cost(10, 7)
        self.assertEqual(folded, [10 * WIDTH] * 7)
        self.assertGreater(cost, 0.0)
        self.assertLess(cost, 0.01)  # (seconds a record: a fold that hung or slept would show)
