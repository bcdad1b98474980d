"""pytest glue: run each test in its own temporary directory, as trial runs them in _trial_temp."""

import os
import shutil
import tempfile

import pytest


def _remove(path: str) -> None:
    """Remove a directory tree, read-only directories in it too (a test may leave one so)."""
    for directory, _, _ in os.walk(path):
        try:
            os.chmod(directory, 0o700)
        except OSError:
            pass
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(autouse=True)
def _in_temporary_directory():
    """
    trial-style self.mktemp() paths are relative to the working directory: keep them out of the
    tree, in a directory made for the test and removed after it (pytest's own tmp_path would
    keep the last runs' directories in /tmp).
    """
    here = os.getcwd()
    directory = tempfile.mkdtemp(prefix="mdsvc-test-")
    os.chdir(directory)
    try:
        yield
    finally:
        os.chdir(here)
        _remove(directory)
