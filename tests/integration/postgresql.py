"""
A real PostgreSQL server for the integration tests, started like the MariaDB one
(tests/integration/mariadb.py): Debian's PostgreSQL binaries on a private data directory, socket
directory and loopback port, no system service, once per test process (L{shared_postgresql}).
PostgreSQL refuses to run as root: as root, the server runs as C{nobody}.
"""

from __future__ import annotations

import glob
import os
import pwd
import subprocess
import tempfile
from collections.abc import Callable

from tests.integration.dbserver import DatabaseServer, shared_server
from tests.integration.processes import free_port

ADMIN_USER, ADMIN_PASSWORD = "mdsvc", "pg-secret"


def _bin_dir() -> str:
    """Where initdb, pg_ctl and postgres are (the newest Debian PostgreSQL installed)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"), key=lambda p: int(p.split("/")[4]))
    if not found:
        raise AssertionError("PostgreSQL is not installed: apt-get install postgresql (make install-test does)")
    return os.path.dirname(found[-1])


class PostgreSQL(DatabaseServer):
    """One postgres on a fresh cluster; a superuser C{mdsvc} (password auth over TCP)."""

    name = "postgres"

    def __init__(self) -> None:
        self.bin = _bin_dir()
        self.directory = tempfile.mkdtemp(prefix="mdsvc-postgresql-")
        self.datadir = os.path.join(self.directory, "data")
        self.port = free_port()
        self.log_path = os.path.join(self.directory, "postgres.log")
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

    def command(self) -> tuple[list[str], Callable[[], None] | None]:
        """See L{DatabaseServer.command}: postgres on the cluster, its port and socket directory (as C{nobody} when root)."""
        return ([os.path.join(self.bin, "postgres"), "-D", self.datadir, "-p", str(self.port), "-h", "127.0.0.1",
                 "-k", self.directory, "-c", "fsync=off", "-c", "max_connections=200"], self._user)

    def answers(self) -> bool:
        """See L{DatabaseServer.answers}: C{pg_isready} over TCP."""
        return subprocess.run([os.path.join(self.bin, "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port)],
                              capture_output=True).returncode == 0

    def create_database(self, name: str) -> None:
        """A new, empty database (dropped first if it exists)."""
        psql = [os.path.join(self.bin, "psql"), "-h", self.directory, "-p", str(self.port), "-U", ADMIN_USER, "-d", "postgres",
                "-v", "ON_ERROR_STOP=1", "-q"]
        self._run(psql + ["-c", f'DROP DATABASE IF EXISTS "{name}"'])
        self._run(psql + ["-c", f'CREATE DATABASE "{name}"'])

    def url(self, database: str) -> str:
        """The SQLAlchemy URL of C{database} over TCP (SQLAlchemy's default PostgreSQL driver)."""
        return f"postgresql://{ADMIN_USER}:{ADMIN_PASSWORD}@127.0.0.1:{self.port}/{database}"



def shared_postgresql() -> PostgreSQL:
    """The test process's one PostgreSQL, started on first use and removed when the process exits."""
    return shared_server(PostgreSQL)
