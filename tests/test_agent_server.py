"""The agent's socket: directory, stale socket, mode, and listening again when the file goes."""

from __future__ import annotations

import os
import shutil
import socket
import stat
import tempfile

from twisted.internet import reactor
from twisted.internet.protocol import Factory, Protocol
from twisted.trial.unittest import TestCase

from mdsvc.agent.server import UnixSocketListener


def connectable(path: str) -> bool:
    s = socket.socket(socket.AF_UNIX)
    try:
        s.connect(path)
        return True
    except OSError:
        return False
    finally:
        s.close()


class UnixSocketListenerTests(TestCase):
    """
    UnixSocketListener on the real reactor (listening is synchronous for UNIX sockets; stopping is
    not, so cleanups return the Deferred and the reactor runs until the socket is gone).
    """

    def mktemp(self) -> str:
        """A short path: UNIX socket paths are limited to 108 bytes."""
        directory = tempfile.mkdtemp(prefix="mdsvc-")
        self.addCleanup(shutil.rmtree, directory, True)
        return os.path.join(directory, "s")

    def listener(self, path: str) -> UnixSocketListener:
        svc = UnixSocketListener(reactor, path, Factory.forProtocol(Protocol), 16, 0o660, interval=3600)
        svc.privilegedStartService()
        svc.running = True
        self.addCleanup(svc.stopService)
        return svc

    def test_creates_directory_and_mode(self) -> None:
        """A missing directory is created 0755; the socket gets the configured mode."""
        path = os.path.join(os.path.abspath(self.mktemp()), "sub", "metadata_proxy")
        self.listener(path)
        self.assertEqual(stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode), 0o755)
        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o660)
        self.assertTrue(connectable(path))

    def test_stale_socket_removed(self) -> None:
        """A socket left by a crashed agent is replaced."""
        path = os.path.abspath(self.mktemp())
        stale = socket.socket(socket.AF_UNIX)
        stale.bind(path)
        stale.close()
        self.assertFalse(connectable(path))
        self.listener(path)
        self.assertTrue(connectable(path))

    def test_refuses_regular_file(self) -> None:
        """A regular file at the path is not deleted: startup fails."""
        path = os.path.abspath(self.mktemp())
        with open(path, "w") as f:
            f.write("keep me")
        svc = UnixSocketListener(reactor, path, Factory.forProtocol(Protocol), 16, 0o660)
        self.assertRaises(RuntimeError, svc.privilegedStartService)
        with open(path) as f:
            self.assertEqual(f.read(), "keep me")

    def test_listens_again_when_removed(self) -> None:
        """If the socket file is deleted, the next check listens again at the same path."""
        path = os.path.abspath(self.mktemp())
        svc = self.listener(path)
        first = svc.port
        os.unlink(path)
        self.assertFalse(connectable(path))
        svc.check()
        self.assertIsNot(svc.port, first)
        self.assertTrue(connectable(path))
        # the old port's shutdown must not remove the new socket
        reactor.runUntilCurrent()
        self.assertTrue(os.path.exists(path))

    def test_check_keeps_a_healthy_socket(self) -> None:
        """An intact socket is left alone."""
        path = os.path.abspath(self.mktemp())
        svc = self.listener(path)
        first = svc.port
        svc.check()
        self.assertIs(svc.port, first)
