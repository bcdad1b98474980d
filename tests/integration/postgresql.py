"""
A real PostgreSQL server for the integration tests, started like the MariaDB one
(tests/integration/mariadb.py): Debian's PostgreSQL binaries on a private data directory, socket
directory and loopback port, no system service, once per test process (L{shared_postgresql}).
PostgreSQL refuses to run as root: as root, the server runs as C{nobody}.
"""

from __future__ import annotations

import atexit
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from typing import Any

from tests.integration.processes import free_port

ADMIN_USER, ADMIN_PASSWORD = "mdsvc", "pg-secret"


def _bin_dir() -> str:
    """Where initdb, pg_ctl and postgres are (the newest Debian PostgreSQL installed)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"), key=lambda p: int(p.split("/")[4]))
    if not found:
        raise AssertionError("PostgreSQL is not installed: apt-get install postgresql (make install-test does)")
    return os.path.dirname(found[-1])


class PostgreSQL:
    """One postgres on a fresh cluster; a superuser C{mdsvc} (password auth over TCP)."""

    def __init__(self) -> None:
        self.bin = _bin_dir()
        self.directory = tempfile.mkdtemp(prefix="mdsvc-postgresql-")
        self.datadir = os.path.join(self.directory, "data")
        self.port = free_port()
        self.log_path = os.path.join(self.directory, "postgres.log")
        self.process: subprocess.Popen[bytes] | None = None
        self._user: Callable[[], None] | None = None
        if os.geteuid() == 0:
            nobody = pwd.getpwnam("nobody")
            os.chmod(self.directory, 0o755)
            os.chown(self.directory, nobody.pw_uid, nobody.pw_gid)

            def become_nobody() -> None:
                os.setgroups([])
                os.setgid(nobody.pw_gid)
                os.setuid(nobody.pw_uid)

            self._user = become_nobody
        password_file = os.path.join(self.directory, "pw")
        with open(password_file, "w") as f:
            f.write(ADMIN_PASSWORD)
        if self._user is not None:
            os.chown(password_file, pwd.getpwnam("nobody").pw_uid, -1)
        self._run([os.path.join(self.bin, "initdb"), "-D", self.datadir, "-U", ADMIN_USER, f"--pwfile={password_file}",
                   "--auth-host=scram-sha-256", "--auth-local=trust", "-E", "UTF8", "--no-sync"])
        self.start()

    def _run(self, argv: list[str]) -> None:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=120, preexec_fn=self._user, cwd=self.directory)
        if result.returncode != 0:
            raise AssertionError(f"{argv[0]} failed: {result.stdout[-2000:]}{result.stderr[-2000:]}")

    def start(self) -> None:
        """Start postgres on the cluster and wait until it accepts connections."""
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            [os.path.join(self.bin, "postgres"), "-D", self.datadir, "-p", str(self.port), "-h", "127.0.0.1",
             "-k", self.directory, "-c", "fsync=off", "-c", "max_connections=200"],
            stdout=log, stderr=subprocess.STDOUT, preexec_fn=self._user,
        )
        log.close()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"postgres exited with {self.process.returncode}:\n{self.log()[-3000:]}")
            if subprocess.run([os.path.join(self.bin, "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port)],
                              capture_output=True).returncode == 0:
                return
            time.sleep(0.1)
        raise AssertionError(f"postgres did not answer within 60 s:\n{self.log()[-3000:]}")

    def stop(self) -> None:
        """Stop postgres (fast shutdown); the cluster stays."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(60)
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

    def create_database(self, name: str) -> None:
        """A new, empty database (dropped first if it exists)."""
        psql = [os.path.join(self.bin, "psql"), "-h", self.directory, "-p", str(self.port), "-U", ADMIN_USER, "-d", "postgres",
                "-v", "ON_ERROR_STOP=1", "-q"]
        self._run(psql + ["-c", f'DROP DATABASE IF EXISTS "{name}"'])
        self._run(psql + ["-c", f'CREATE DATABASE "{name}"'])

    def url(self, database: str) -> str:
        """The SQLAlchemy URL of C{database} over TCP (SQLAlchemy's default PostgreSQL driver)."""
        return f"postgresql://{ADMIN_USER}:{ADMIN_PASSWORD}@127.0.0.1:{self.port}/{database}"


_shared: dict[str, Any] = {}


def shared_postgresql() -> PostgreSQL:
    """The test process's one PostgreSQL, started on first use and removed when the process exits."""
    if "server" not in _shared:
        server = PostgreSQL()
        _shared["server"] = server
        atexit.register(server.destroy)
    server = _shared["server"]
    if server.process is None or server.process.poll() is not None:
        server.start()
    return server
