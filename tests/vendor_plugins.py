"""
Test helper: the vendor plugins of C{tests/plugin_root} (a store and a vendordata provider that
live outside the mdsvc package), installed from a copy.

Discovery reads the copy, never C{tests/plugin_root} itself: C{twisted.plugin.getPlugins} writes
a C{dropin.cache} (and Python its C{__pycache__}) into each plugin directory it scans, and the
source tree must stay as git has it.
"""

from __future__ import annotations

import os
import shutil
import sys
from typing import Any

import mdsvc.plugins

PLUGIN_ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "plugin_root")
"""The vendor's directory: C{mdsvc/plugins/*.py} under it, as on a vendor's C{PYTHONPATH} entry."""

MODULES = ("mdsvc_test_store", "mdsvc_test_vendor")
"""The plugin modules of L{PLUGIN_ROOT}."""


def copy_plugin_root(directory: str) -> str:
    """
    Copy L{PLUGIN_ROOT} to C{directory} (created) without any cache file, and return the copy's
    absolute path: the entry to put on C{sys.path} or C{PYTHONPATH}.
    """
    target = os.path.abspath(directory)
    shutil.copytree(PLUGIN_ROOT, target, ignore=shutil.ignore_patterns("dropin.cache", "__pycache__", "*.pyc"))
    return target


def install_test_plugins(case: Any) -> str:
    """
    Make the test plugins of a copy of L{PLUGIN_ROOT} installed for one test of C{case} (a trial
    test case): its C{mdsvc/plugins} directory joins C{mdsvc.plugins.__path__}, as it would at
    import time were the copy on C{sys.path}; both that and the imported plugin modules are undone
    when the test ends.

    @return: the copy's path.
    """
    root = copy_plugin_root(case.mktemp())
    case.addCleanup(setattr, mdsvc.plugins, "__path__", list(mdsvc.plugins.__path__))
    for module in MODULES:
        case.addCleanup(sys.modules.pop, f"mdsvc.plugins.{module}", None)
    mdsvc.plugins.__path__.append(os.path.join(root, "mdsvc", "plugins"))
    return root


def caches_in_plugin_root() -> list[str]:
    """The cache files under L{PLUGIN_ROOT} (there must be none: discovery reads copies)."""
    return sorted(
        os.path.relpath(os.path.join(directory, name), PLUGIN_ROOT)
        for directory, dirs, files in os.walk(PLUGIN_ROOT)
        for name in files + dirs
        if name in ("dropin.cache", "__pycache__") or name.endswith(".pyc")
    )
