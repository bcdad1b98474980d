"""
What the integration tests' database servers (L{tests.integration.mariadb},
L{tests.integration.postgresql}) share: one server process on a private directory, started and
waited for, stopped (the data stays) and started again for an outage, its log, and one server per
test process (L{shared_server}).
"""

from __future__ import annotations

import atexit
import shutil
import subprocess
import time
from collections.abc import Callable
from typing import Any, TypeVar

STARTUP_TIMEOUT = 60
"""Seconds a server has to answer after it is started."""

SHUTDOWN_TIMEOUT = 60
"""Seconds a server has to stop (it flushes its data) before it is killed."""


class DatabaseServer:
    """
    One database server process. A subclass sets C{name}, C{directory} and C{log_path} and says
    how the server is started (L{command}) and whether it answers (L{answers}).

    @ivar process: the running server, or None.
    """

    name = "server"
    directory: str
    log_path: str
    process: subprocess.Popen[bytes] | None = None

    def command(self) -> tuple[list[str], Callable[[], None] | None]:
        """The server's command line, and what its child process runs before it (or None)."""
        raise NotImplementedError

    def answers(self) -> bool:
        """Whether the server accepts connections now."""
        raise NotImplementedError

    def create_database(self, name: str) -> None:
        """A new, empty database C{name}."""
        raise NotImplementedError

    def url(self, database: str) -> str:
        """The SQLAlchemy URL of C{database}."""
        raise NotImplementedError

    def new_database_url(self) -> str:
        """The URL of a new, empty database of a name no test has used."""
        name = f"mdsvc_{time.monotonic_ns()}"
        self.create_database(name)
        return self.url(name)

    def start(self) -> None:
        """Start the server on its data (again, after L{stop}) and wait until it answers."""
        argv, before = self.command()
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, preexec_fn=before)
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"{self.name} exited with {self.process.returncode}:\n{self.log()[-3000:]}")
            if self.answers():
                return
            time.sleep(0.1)
        raise AssertionError(f"{self.name} did not answer within {STARTUP_TIMEOUT} s:\n{self.log()[-3000:]}")

    def stop(self) -> None:
        """Stop the server (its data stays)."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(SHUTDOWN_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def destroy(self) -> None:
        """Stop it and remove its directory."""
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)

    def log(self) -> str:
        """The server's log."""
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as f:
                return f.read()
        except OSError:
            return ""


Server = TypeVar("Server", bound=DatabaseServer)

_shared: dict[type[Any], Any] = {}


def shared_server(kind: type[Server]) -> Server:
    """The test process's one server of C{kind}, started on first use and removed when the process exits."""
    if kind not in _shared:
        server = _shared[kind] = kind()
        atexit.register(server.destroy)
    server = _shared[kind]
    if server.process is None or server.process.poll() is not None:
        server.start()  # a test stopped it and failed before starting it again
    return server  # type: ignore[no-any-return]
