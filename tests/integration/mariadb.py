"""
A real MariaDB server for the integration tests: Debian's C{mariadb-server}, started by the
tests themselves on a private data directory, socket and loopback port (no system service), once
per test process and shared by every test that asks for it (L{shared_mariadb}); stopped when
the process exits.

    server = shared_mariadb()
    server.create_database("nova_api")
    server.url("nova_api")              # mysql+pymysql://root-equivalent user over TCP
    server.stop(); server.start()       # a database outage and its end, same data
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time

from tests.integration.dbserver import DatabaseServer, shared_server
from tests.integration.processes import free_port

MARIADBD = "/usr/sbin/mariadbd"
INSTALL_DB = "mariadb-install-db"
ADMIN_USER, ADMIN_PASSWORD = "admin", "admin-secret"


class MariaDBMissing(AssertionError):
    """Debian's mariadb-server is not installed (make install-test installs it)."""


class MariaDB(DatabaseServer):
    """One mariadbd on a fresh data directory, reached as root on its socket and as C{admin} over TCP."""

    name = "mariadbd"

    def __init__(self, directory: str | None = None) -> None:
        if not os.path.exists(MARIADBD) or shutil.which(INSTALL_DB) is None:
            raise MariaDBMissing(f"{MARIADBD} not found: apt-get install mariadb-server (make install-test does)")
        self.directory = directory or tempfile.mkdtemp(prefix="mdsvc-mariadb-")
        os.makedirs(self.directory, exist_ok=True)
        self.datadir = os.path.join(self.directory, "data")
        self.socket = os.path.join(self.directory, "mysqld.sock")
        self.log_path = os.path.join(self.directory, "mariadbd.log")
        self.port = free_port()
        started = time.monotonic()
        subprocess.run(
            [INSTALL_DB, "--no-defaults", f"--datadir={self.datadir}", "--user=root", "--auth-root-authentication-method=socket",
             "--skip-test-db"],
            check=True, capture_output=True, timeout=120,
        )
        self.start()
        self.execute(f"CREATE USER '{ADMIN_USER}'@'127.0.0.1' IDENTIFIED BY '{ADMIN_PASSWORD}';"
                     f" GRANT ALL PRIVILEGES ON *.* TO '{ADMIN_USER}'@'127.0.0.1' WITH GRANT OPTION;")
        self.startup_seconds = time.monotonic() - started

    def command(self) -> tuple[list[str], None]:
        """See L{DatabaseServer.command}: mariadbd on the data directory, its socket and port."""
        return ([MARIADBD, "--no-defaults", f"--datadir={self.datadir}", f"--socket={self.socket}", f"--port={self.port}",
                 "--bind-address=127.0.0.1", "--user=root", f"--pid-file={self.directory}/mariadbd.pid", "--skip-log-bin",
                 "--skip-name-resolve", "--innodb-buffer-pool-size=128M", "--innodb-log-file-size=32M",
                 "--innodb-flush-log-at-trx-commit=2", "--character-set-server=utf8mb4", "--max-connections=500",
                 f"--log-error={self.log_path}"], None)

    def answers(self) -> bool:
        """See L{DatabaseServer.answers}: C{SELECT 1} as root on the socket."""
        return subprocess.run(["mariadb", "--no-defaults", "-S", self.socket, "-u", "root", "-e", "SELECT 1"],
                              capture_output=True).returncode == 0

    def execute(self, sql: str) -> str:
        """Run SQL as root on the socket (the C{mariadb} client); its tab-separated output."""
        result = subprocess.run(["mariadb", "--no-defaults", "-S", self.socket, "-u", "root", "-N", "-B", "-e", sql],
                                capture_output=True, text=True, timeout=120)
        if result.returncode != 0:
            raise AssertionError(f"mariadb -e {sql!r}: {result.stderr.strip()}")
        return result.stdout

    def create_database(self, name: str) -> None:
        """A new, empty database (dropped first if it exists)."""
        self.execute(f"DROP DATABASE IF EXISTS `{name}`; CREATE DATABASE `{name}` CHARACTER SET utf8mb4;")

    def url(self, database: str, user: str = ADMIN_USER, password: str = ADMIN_PASSWORD) -> str:
        """An SQLAlchemy URL of C{database} over TCP, as Nova's configuration writes one."""
        return f"mysql+pymysql://{user}:{password}@127.0.0.1:{self.port}/{database}?charset=utf8"

    def grant(self, user: str, password: str, grants: list[tuple[str, str]]) -> None:
        """Create C{user} with exactly C{grants}: C{(privileges, object)} pairs such as C{("SELECT", "nova.instances")}."""
        statements = [f"DROP USER IF EXISTS '{user}'@'127.0.0.1'", f"CREATE USER '{user}'@'127.0.0.1' IDENTIFIED BY '{password}'"]
        for privileges, target in grants:
            db, _, table = target.partition(".")
            statements.append(f"GRANT {privileges} ON `{db}`.`{table}` TO '{user}'@'127.0.0.1'")
        self.execute("; ".join(statements) + ";")



def shared_mariadb() -> MariaDB:
    """The test process's one MariaDB, started on first use and removed when the process exits."""
    return shared_server(MariaDB)
