"""The package's data files (mdsvc/data) go into wheels and sdists, so an installed mdsvc has them."""

from __future__ import annotations

import ast
import fnmatch
import os

from twisted.trial.unittest import SynchronousTestCase

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(ROOT, "mdsvc", "data")


def package_data() -> dict[str, list[str]]:
    """C{setup(package_data=...)} as written in setup.py."""
    with open(os.path.join(ROOT, "setup.py")) as f:
        tree = ast.parse(f.read())
    for node in ast.walk(tree):
        if isinstance(node, ast.keyword) and node.arg == "package_data":
            return ast.literal_eval(node.value)  # type: ignore[no-any-return]
    raise AssertionError("setup.py has no package_data")


def manifest_patterns(directory: str) -> list[str]:
    """The file patterns MANIFEST.in's C{recursive-include} lines give for C{directory}."""
    patterns = []
    with open(os.path.join(ROOT, "MANIFEST.in")) as f:
        for line in f:
            words = line.split()
            if words[:2] == ["recursive-include", directory]:
                patterns += words[2:]
    return patterns


class DataFileTests(SynchronousTestCase):
    """Every file of mdsvc/data is declared."""

    def test_wheel(self) -> None:
        """setup.py's package_data matches every data file (Nova's interfaces template among them)."""
        patterns = package_data()["mdsvc"]
        names = sorted(os.listdir(DATA))
        self.assertIn("interfaces.template", names)
        for name in names:
            self.assertTrue(any(fnmatch.fnmatch(f"data/{name}", p) for p in patterns), f"mdsvc/data/{name} is not package data")

    def test_sdist(self) -> None:
        """MANIFEST.in includes every data file."""
        patterns = manifest_patterns("mdsvc/data")
        for name in os.listdir(DATA):
            self.assertTrue(any(fnmatch.fnmatch(name, p) for p in patterns), f"mdsvc/data/{name} is not in MANIFEST.in")
