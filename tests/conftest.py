"""pytest glue: run each test in its own temporary directory, as trial runs them in _trial_temp."""

import os
import tempfile

import pytest

from tests.integration.processes import remove_tree


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
        remove_tree(directory)
