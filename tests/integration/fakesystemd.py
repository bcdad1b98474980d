"""
What systemd does for a C{Type=notify} service with socket activation, done by a test: it owns
the listening sockets (so connections queue in them while no process runs), passes them to each
process it starts (descriptors 3, 4, ... with C{LISTEN_FDS}, C{LISTEN_FDNAMES} and
C{LISTEN_PID}), and reads the process's notifications on its C{NOTIFY_SOCKET}.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from typing import Any

from tests.integration.processes import ROOT, TWISTD

# LISTEN_PID must be the service's own pid: a shell sets it to its $$ and execs the service.
_WRAPPER = 'export LISTEN_PID=$$; exec "$0" "$@"'


class FakeSystemd:
    """
    Listening sockets and a notification socket in C{directory}; L{spawn} starts a service with
    them.  L{close} (register it as a cleanup) closes them.
    """

    def __init__(self, directory: str) -> None:
        self.directory = directory
        self.sockets: list[tuple[str, socket.socket]] = []
        self.notify_path = os.path.join(directory, "notify")
        self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.notify.bind(self.notify_path)
        self.messages: list[tuple[float, dict[str, str]]] = []
        self._cursor = 0  # where wait_for goes on looking

    def listen(self, name: str, host: str = "127.0.0.1", port: int = 0, backlog: int = 1024) -> int:
        """A listening TCP socket named C{name} (C{FileDescriptorName=}); returns its port."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(backlog)
        self.sockets.append((name, sock))
        return int(sock.getsockname()[1])

    def spawn(self, args: list[str], log_path: str, watchdog_usec: int | None = None, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        """
        Start C{twistd -n ARGS} as systemd starts a socket-activated C{Type=notify} service: the
        sockets as descriptors 3..., C{$NOTIFY_SOCKET}, and C{$WATCHDOG_USEC} if given.
        """
        fds = [sock.fileno() for _, sock in self.sockets]
        environ = dict(os.environ, **(env or {}))
        environ.update(LISTEN_FDS=str(len(fds)), LISTEN_FDNAMES=":".join(name for name, _ in self.sockets),
                       NOTIFY_SOCKET=self.notify_path)
        if watchdog_usec is not None:
            environ["WATCHDOG_USEC"] = str(watchdog_usec)
        environ.pop("LISTEN_PID", None)

        def pass_sockets() -> None:
            moved = [os.dup(fd) for fd in fds]  # (a target descriptor may be one of the sources)
            for index, fd in enumerate(moved):
                os.dup2(fd, 3 + index)
                os.close(fd)

        log = open(log_path, "ab")
        try:
            return subprocess.Popen(
                ["sh", "-c", _WRAPPER, *TWISTD, "-n", "--pidfile=", "--logfile=-", *args],
                # (every descriptor Python opens is non-inheritable: only the sockets made 3... pass)
                stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, env=environ, preexec_fn=pass_sockets, close_fds=False,
            )
        finally:
            log.close()

    def read(self, timeout: float = 0.1) -> list[dict[str, str]]:
        """The notifications that came within C{timeout} seconds (all of them, kept in L{messages})."""
        got = []
        self.notify.settimeout(timeout)
        while True:
            try:
                data = self.notify.recv(4096)
            except TimeoutError:
                break
            message = dict(line.split("=", 1) for line in data.decode().splitlines() if "=" in line)
            self.messages.append((time.monotonic(), message))
            got.append(message)
            self.notify.settimeout(0.01)
        return got

    def wait_for(self, key: str, timeout: float = 30, value: str = "1") -> dict[str, str]:
        """
        The first notification with C{key=value} after the one the previous call found; fail
        after C{timeout} seconds.
        """
        deadline = time.monotonic() + timeout
        while True:
            for index in range(self._cursor, len(self.messages)):
                if self.messages[index][1].get(key) == value:
                    self._cursor = index + 1
                    return self.messages[index][1]
            if time.monotonic() >= deadline:
                break
            self.read(0.2)
        raise AssertionError(f"no {key}={value} notification within {timeout}s; got {[m for _, m in self.messages]}")

    def close(self) -> None:
        """Close the sockets (systemd stopping the .socket units)."""
        for _, sock in self.sockets:
            sock.close()
        self.notify.close()


def stop(process: subprocess.Popen[Any], timeout: float = 30) -> int:
    """SIGTERM, and the exit status once it has exited (as systemctl stop waits)."""
    process.terminate()
    return process.wait(timeout)
