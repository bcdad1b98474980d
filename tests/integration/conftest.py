"""pytest glue for the integration tests: a missing install fails in one line, never skips."""

import pytest

from tests.integration.processes import NotInstalled


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """
    A test that fails because what it drives is not installed (L{NotInstalled}) is reported
    by that one line, naming the command that installs them, instead of a traceback.
    """
    outcome = yield
    report = outcome.get_result()
    if call.excinfo is not None and call.excinfo.errisinstance(NotInstalled):
        report.longrepr = str(call.excinfo.value)
