"""pytest glue: run each test in its own temporary directory, as trial runs them in _trial_temp."""

import pytest


@pytest.fixture(autouse=True)
def _in_temporary_directory(tmp_path, monkeypatch):
    """trial-style self.mktemp() paths are relative to the working directory: keep them out of the tree."""
    monkeypatch.chdir(tmp_path)
