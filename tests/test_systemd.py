"""systemd's notifications (L{mdsvc.systemd}): the socket's address, the datagrams, the watchdog."""

from __future__ import annotations

import os
import socket
from typing import Any

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from mdsvc.systemd import SystemdNotifier, notify, notify_address, watchdog_interval


class Reactor(Clock):
    """A clock that runs C{callWhenRunning} calls at once (the reactor is running)."""

    def callWhenRunning(self, f: Any, *args: Any) -> None:
        f(*args)


class NotifySocket:
    """A datagram socket standing for systemd's, in the test's directory."""

    def __init__(self, case: SynchronousTestCase) -> None:
        directory = os.path.abspath(case.mktemp())
        os.makedirs(directory)
        self.path = os.path.join(directory, "notify")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.setblocking(False)
        case.addCleanup(self.sock.close)

    def messages(self) -> list[str]:
        out = []
        while True:
            try:
                out.append(self.sock.recv(4096).decode())
            except BlockingIOError:
                return out


class AddressTests(SynchronousTestCase):
    """$NOTIFY_SOCKET."""

    def test_forms(self) -> None:
        """A path, an abstract name (@ becomes NUL), nothing, and what is neither."""
        self.assertEqual(notify_address({"NOTIFY_SOCKET": "/run/systemd/notify"}), "/run/systemd/notify")
        self.assertEqual(notify_address({"NOTIFY_SOCKET": "@abstract/x"}), "\0abstract/x")
        self.assertIsNone(notify_address({}))
        self.assertIsNone(notify_address({"NOTIFY_SOCKET": "relative"}))

    def test_send(self) -> None:
        """notify sends one datagram; without a socket it sends nothing and says so."""
        sock = NotifySocket(self)
        self.assertTrue(notify("READY=1\nSTATUS=x", {"NOTIFY_SOCKET": sock.path}))
        self.assertEqual(sock.messages(), ["READY=1\nSTATUS=x"])
        self.assertFalse(notify("READY=1", {}))

    def test_gone(self) -> None:
        """A socket that is not there: False, logged, no exception."""
        from twisted.logger import capturedLogs

        with capturedLogs() as events:
            self.assertFalse(notify("READY=1", {"NOTIFY_SOCKET": os.path.abspath(self.mktemp())}))
        self.assertEqual(len(events), 1)

    def test_watchdog_interval(self) -> None:
        """Half WATCHDOG_USEC, for this process only."""
        self.assertEqual(watchdog_interval({"WATCHDOG_USEC": "30000000"}), 15.0)
        self.assertEqual(watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}), 15.0)
        self.assertIsNone(watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}))
        self.assertIsNone(watchdog_interval({"WATCHDOG_USEC": "x"}))
        self.assertIsNone(watchdog_interval({}))


class NotifierTests(SynchronousTestCase):
    """The service's notifications through a node's life."""

    def test_life(self) -> None:
        """READY with the status and pid, WATCHDOG pings, RELOADING/READY, STOPPING."""
        sock = NotifySocket(self)
        reactor = Reactor()
        notifier = SystemdNotifier(reactor, "serving (api)", {"NOTIFY_SOCKET": sock.path, "WATCHDOG_USEC": "2000000"})
        notifier.startService()
        self.assertEqual(sock.messages(), [f"READY=1\nSTATUS=serving (api)\nMAINPID={os.getpid()}", "WATCHDOG=1"])
        reactor.advance(1)
        reactor.advance(1)
        self.assertEqual(sock.messages(), ["WATCHDOG=1", "WATCHDOG=1"])
        notifier.reloading("reloading")
        notifier.reloading("reloaded")
        reloading, ready = sock.messages()
        self.assertTrue(reloading.startswith("RELOADING=1\nMONOTONIC_USEC="))
        self.assertEqual(ready, "READY=1\nSTATUS=serving (api)")
        notifier.stopService()
        self.assertEqual(sock.messages(), ["STOPPING=1\nSTATUS=stopping: answering the requests in flight"])
        reactor.advance(1)  # the watchdog goes on while the node drains
        self.assertEqual(sock.messages(), ["WATCHDOG=1"])

    def test_not_under_systemd(self) -> None:
        """Without NOTIFY_SOCKET: nothing at all, no timer."""
        reactor = Reactor()
        notifier = SystemdNotifier(reactor, "x", {})
        notifier.startService()
        notifier.stopService()
        self.assertEqual(reactor.getDelayedCalls(), [])


class SocketActivationTests(SynchronousTestCase):
    """systemd: endpoints without the socket systemd should have passed."""

    def test_one_line(self) -> None:
        """No such socket (not started by its .socket unit): one line naming the option and what to do."""
        from twisted.internet.testing import MemoryReactor

        from mdsvc.listen import ListenFailed, listen_service

        for description, which in (("systemd:domain=INET:name=api", "named 'api'"), ("systemd:domain=INET:index=0", "at that index")):
            e = self.assertRaises(ListenFailed, listen_service, description, object(), MemoryReactor(), f"x.conf: [mdsvc] api_endpoint {description}")
            self.assertEqual(str(e), f"mdsvc: x.conf: [mdsvc] api_endpoint {description}: systemd passed no socket {which}: start the service "
                                     "through its .socket unit, which sets LISTEN_FDS, LISTEN_PID and LISTEN_FDNAMES")

    def test_workers_one_line(self) -> None:
        """
        With C{metadata_workers}, the supervisor opens the socket: the same line, when the node is
        built (before twistd's logging), and from the supervisor itself if it is started alone.
        """
        from twisted.internet.testing import MemoryReactorClock

        from mdsvc.listen import ListenFailed, Listening
        from mdsvc.tap import Options, makeService
        from mdsvc.workers import WorkerSupervisor

        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        path = os.path.join(directory, "api.conf")
        with open(path, "w") as f:
            f.write(f"[DEFAULT]\nstate_path = {directory}\nmetadata_workers = 2\n[mdsvc]\napi_endpoint = systemd:domain=INET:name=api\n")
        self.patch(os, "environ", {k: v for k, v in os.environ.items() if not k.startswith("LISTEN_")})
        line = (f"mdsvc: {path}: [mdsvc] api_endpoint systemd:domain=INET:name=api: systemd passed no socket named 'api': "
                "start the service through its .socket unit, which sets LISTEN_FDS, LISTEN_PID and LISTEN_FDNAMES")
        options = Options()
        options.parseOptions(["--role", "api", "--config-file", path])
        e = self.assertRaises(ListenFailed, makeService, options, MemoryReactorClock())
        self.assertEqual(str(e), line)
        shared = Listening(f"{path}: [mdsvc] api_endpoint systemd:domain=INET:name=api")
        WorkerSupervisor(MemoryReactorClock(), "systemd:domain=INET:name=api", 2, ["true"], 5).setServiceParent(shared)
        e = self.assertRaises(ListenFailed, shared.privilegedStartService)
        self.assertEqual(str(e), line)
