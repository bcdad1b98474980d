# -*- test-case-name: tests.test_admin -*-
"""
The operator's side of the admin sockets: blocking JSON requests over a UNIX socket (the
commands are short-lived and need no reactor), and the processes of this node found in
C{[mdsvc] admin_dir}.
"""

from __future__ import annotations

import glob
import http.client
import json
import os
import socket
from typing import Any
from urllib.parse import urlencode

from attrs import frozen


class AdminUnavailable(Exception):
    """No process answers on an admin socket; C{str()} says why (refused: the process is gone)."""


class _UnixConnection(http.client.HTTPConnection):
    """An HTTP connection over a UNIX socket."""

    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("mdsvc-admin", timeout=timeout)
        self.path = path

    def connect(self) -> None:
        """Connect to the socket file instead of a host."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


@frozen
class AdminClient:
    """The admin socket of one process."""

    path: str
    timeout: float = 30.0

    @property
    def name(self) -> str:
        """The socket's name: C{ROLE}, or C{ROLE@N} for worker N of C{metadata_workers}."""
        return os.path.basename(self.path)[:-len(".sock")]

    @property
    def role(self) -> str:
        """The role, from the socket's name (C{ROLE.sock}, or C{ROLE@N.sock} for worker N of C{metadata_workers})."""
        return self.name.partition("@")[0]

    def get(self, route: str, **query: Any) -> dict[str, Any]:
        """
        C{GET route?query} (None values left out): the JSON answer.

        @raise AdminUnavailable: the socket does not answer, or answers an error.
        """
        params = {k: v for k, v in query.items() if v is not None}
        target = route + ("?" + urlencode(params) if params else "")
        connection = _UnixConnection(self.path, self.timeout)
        try:
            connection.request("GET", target)
            response = connection.getresponse()
            body = response.read()
        except FileNotFoundError:
            raise AdminUnavailable(f"{self.path}: no such socket") from None
        except ConnectionRefusedError:
            raise AdminUnavailable(f"{self.path}: connection refused (the process that made it is gone)") from None
        except (OSError, http.client.HTTPException) as e:
            raise AdminUnavailable(f"{self.path}: {e}") from None
        finally:
            connection.close()
        try:
            data = json.loads(body)
        except ValueError:
            raise AdminUnavailable(f"{self.path}: not a JSON answer ({response.status})") from None
        if response.status != 200:
            raise AdminUnavailable(f"{self.path}: {data.get('error', response.status)}")
        return dict(data)


def node_sockets(admin_dir: str) -> list[AdminClient]:
    """The admin sockets in C{admin_dir}, one per process of this node (stale ones included), by role."""
    return [AdminClient(path) for path in sorted(glob.glob(os.path.join(glob.escape(admin_dir), "*.sock")))]


__all__ = ["AdminClient", "AdminUnavailable", "node_sockets"]
