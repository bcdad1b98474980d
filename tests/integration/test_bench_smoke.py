"""
The benchmark harness (bench/run.py) in its smoke mode: every deployment shape starts, answers a
cloud-init boot right, and takes a couple of seconds of wrk without a single error; the boot storm
and the namespace scale run small. Speed is not checked here: only that the figures are of correct
answers.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile

from twisted.trial.unittest import SkipTest, SynchronousTestCase

from tests.integration.processes import ROOT, NotInstalled

NOVA_VENV = os.environ.get("MDSVC_BENCH_NOVA_VENV", "/var/cache/mdsvc-bench/nova-venv")
SHAPES = ("1 bare twisted.web", "2 haproxy", "3 mdsvc api", "4 mdsvc network-node", "5 mdsvc all-in-one", "6 nova metadata",
          "7 mdsvc api, metadata_workers")


class BenchSmokeTests(SynchronousTestCase):
    """C{python3 bench/run.py --smoke} as CI runs it."""

    def setUp(self) -> None:
        if os.geteuid() != 0:
            raise SkipTest("bench smoke needs root (its own network namespace, SNAT rules, qdhcp- namespaces)")
        missing = [tool for tool in ("wrk", "haproxy") if shutil.which(tool) is None]
        if not os.path.exists(os.path.join(NOVA_VENV, "bin", "gunicorn")):
            missing.append(f"the Nova venv {NOVA_VENV}")
        if missing:
            raise NotInstalled(f"bench smoke needs {', '.join(missing)}: run bash bench/install.sh (make test does)")

    def test_smoke(self) -> None:
        """
        The smoke run exits 0, its table has a line for each of the seven shapes with 0 errors, the
        workers' shape reports its processes' CPU, and the boot storm and the namespace scale
        report their results.
        """
        result = subprocess.run([sys.executable, os.path.join(ROOT, "bench", "run.py"), "--smoke"],
                                capture_output=True, text=True, timeout=900, cwd=ROOT)
        output = result.stdout + result.stderr
        self.assertEqual(result.returncode, 0, output[-6000:])
        rows = {}
        for line in result.stdout.splitlines():
            for shape in SHAPES:
                if line.startswith(shape):
                    rows[shape] = line
        self.assertEqual(sorted(rows), sorted(SHAPES), output[-6000:])
        for shape, line in rows.items():
            self.assertNotIn("FAILED", line, output[-6000:])
            # columns from the right: ... errors, RSS MiB, CPU us/req, core %
            self.assertEqual(line.split()[-4], "0", f"{shape}: {line}")
        self.assertRegex(result.stdout, r"shape 7 server processes \(supervisor first\), CPU time during the load")
        self.assertRegex(result.stdout, r"boot storm \(shape 5\): 20 guests .* errors 0,")
        self.assertRegex(result.stdout, r"namespace scale: 20 qdhcp- namespaces .* all served")


class ABSmokeTests(SynchronousTestCase):
    """C{bench/ab.py} with a tree of C{bench/unmetered.py} against this checkout, one short slice each."""

    def setUp(self) -> None:
        if os.geteuid() != 0:
            raise SkipTest("ab.py needs root (run.py's network namespace and SNAT rules)")
        if shutil.which("wrk") is None:
            raise NotInstalled("ab.py needs wrk: run bash bench/install.sh (make test does)")
        if subprocess.run(["git", "-C", ROOT, "rev-parse", "HEAD"], capture_output=True).returncode != 0:
            raise NotInstalled("ab.py's smoke test makes its unmetered tree with git archive: run it in a git checkout")

    def test_side_by_side(self) -> None:
        """Both variants of shapes 3 and 5 answer the boot mix without an error; the table has a ratio for each shape."""
        tree = tempfile.mkdtemp(prefix="mdsvc-unmetered-")
        self.addCleanup(shutil.rmtree, tree, True)
        made = subprocess.run([sys.executable, os.path.join(ROOT, "bench", "unmetered.py"), tree], capture_output=True, text=True,
                              timeout=120)
        self.assertEqual(made.returncode, 0, made.stderr)
        result = subprocess.run([sys.executable, os.path.join(ROOT, "bench", "ab.py"), "--shapes", "3,5", "--slices", "2", "--slice", "1",
                                 "--instances", "4", "--variant", f"off={tree}", "--variant", "on=.:metrics"],
                                capture_output=True, text=True, timeout=600, cwd=ROOT)
        self.assertEqual(result.returncode, 0, (result.stdout + result.stderr)[-6000:])
        rows = [line for line in result.stdout.splitlines() if line.startswith(("| 3 mdsvc api |", "| 5 mdsvc all-in-one |"))]
        self.assertEqual(len(rows), 2, result.stdout)
        for row in rows:
            self.assertRegex(row, r"^\| [^|]+ \| [\d,]+ \(\d+\) \| [\d,]+ \(\d+\) \| \d\.\d{3} \| \d\.\d{3} \(\d\.\d{3}-\d\.\d{3}\) \|$")

    def test_together(self) -> None:
        """With --together both variants of shape 3 are loaded at once; the row compares their server CPU per request."""
        result = subprocess.run([sys.executable, os.path.join(ROOT, "bench", "ab.py"), "--together", "--shapes", "3", "--slices", "2",
                                 "--slice", "1", "--instances", "4", "--variant", "a=.", "--variant", "b=.:metrics"],
                                capture_output=True, text=True, timeout=600, cwd=ROOT)
        self.assertEqual(result.returncode, 0, (result.stdout + result.stderr)[-6000:])
        self.assertIn("both at once", result.stdout)
        self.assertRegex(result.stdout, r"shape 3 slice 2: a [\d,]+ req/s \([\d.]+ µs\), b [\d,]+ req/s \([\d.]+ µs\)")
        self.assertRegex(result.stdout, r"\n\| 3 mdsvc api \| [\d,]+ \(\d+\.\d\) \| [\d,]+ \(\d+\.\d\) \| \d\.\d{3} \| "
                                        r"\d\.\d{3} \(\d\.\d{3}-\d\.\d{3}\) \|\n")


class CountedSmokeTests(SynchronousTestCase):
    """C{bench/counted.py}: shape 3 of two trees under callgrind, one short window each."""

    def setUp(self) -> None:
        if os.geteuid() != 0:
            raise SkipTest("counted.py needs root (run.py's network namespace)")
        for tool, package in (("wrk", "wrk"), ("callgrind_control", "valgrind")):
            if shutil.which(tool) is None:
                raise NotInstalled(f"counted.py needs {tool} ({package}): run bash bench/install.sh (make test does)")

    def test_counted(self) -> None:
        """Both variants answer under callgrind without an error; each counted window gives instructions per request."""
        keep = tempfile.mkdtemp(prefix="mdsvc-counted-")
        self.addCleanup(shutil.rmtree, keep, True)
        result = subprocess.run([sys.executable, os.path.join(ROOT, "bench", "counted.py"), "--shapes", "3", "--windows", "1",
                                 "--window", "2", "--warmup", "2", "--fold-interval", "1", "--idle", "1", "--instances", "2",
                                 "--keep", keep,
                                 "--variant", "a=.", "--variant", "b=.:metrics"],
                                capture_output=True, text=True, timeout=900, cwd=ROOT)
        self.assertEqual(result.returncode, 0, (result.stdout + result.stderr)[-6000:])
        counts = re.findall(r"shape 3 (a|b): ([\d,]+) instructions per request over ([\d,]+) requests", result.stdout)
        self.assertEqual([name for name, _, _ in counts], ["a", "b"], result.stdout)
        for _, per_request, requests in counts:
            # a request of the boot mix is tens of thousands of instructions at least, and wrk got answers in 2 s
            self.assertGreater(int(per_request.replace(",", "")), 20_000, result.stdout)
            self.assertGreater(int(requests.replace(",", "")), 0, result.stdout)
        self.assertRegex(result.stdout, r"\n\| 3 mdsvc api \| [\d,]+ \([\d,]+-[\d,]+\) \| [\d,]+ \([\d,]+-[\d,]+\) \| \d\.\d{4} \|\n")
        self.assertEqual(sorted(os.listdir(keep)), ["a-api-3-1.callgrind", "b-api-3-1.callgrind"])
