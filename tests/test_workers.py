"""The API's workers on one port (L{mdsvc.workers}): starting, watching, replacing, stopping them."""

from __future__ import annotations

import os
import signal
import socket
import sys
from typing import Any

from twisted.internet.error import ProcessDone, ProcessTerminated
from twisted.internet.task import Clock
from twisted.logger import capturedLogs, formatEvent
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from mdsvc.testing import services_in
from mdsvc.workers import HANG_TIMEOUT, WORKER_ENV, WORKER_FD, WorkerCommand, WorkerSupervisor, _NotifyReader, worker_log_observer
from tests.test_nova_store import nova_api_config


class FakeProcess:
    """A spawned worker: its pid and the signals sent to it."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.signals: list[int] = []

    def signalProcess(self, signum: int) -> None:
        self.signals.append(signum)


class FakeReactor(Clock):
    """A clock that records spawned processes and readers."""

    def __init__(self) -> None:
        super().__init__()
        self.spawned: list[dict[str, Any]] = []
        self.readers: list[Any] = []

    def spawnProcess(self, protocol: Any, executable: str, args: list[str], env: dict[str, str], childFDs: dict[int, Any]) -> FakeProcess:
        process = FakeProcess(1000 + len(self.spawned))
        self.spawned.append({"protocol": protocol, "executable": executable, "args": args, "env": env, "fds": childFDs,
                             "process": process})
        return process

    def addReader(self, reader: Any) -> None:
        self.readers.append(reader)

    def removeReader(self, reader: Any) -> None:
        self.readers.remove(reader)


class FakePort:
    """The shared listening socket."""

    def __init__(self) -> None:
        self.stopped = False

    def fileno(self) -> int:
        return 42

    def stopListening(self) -> None:
        self.stopped = True


class SupervisorTests(SynchronousTestCase):
    """What the supervisor does with its workers."""

    def setUp(self) -> None:
        self.reactor = FakeReactor()
        self.supervisor = WorkerSupervisor(self.reactor, "tcp:8775", 2, ["python", "twistd", "mdsvc", "--role", "api"], 10,
                                           env={"PATH": "/bin", "LISTEN_FDS": "1", "WATCHDOG_PID": "1"})
        self.supervisor.port = FakePort()
        self.events: list[Any] = []
        logs = capturedLogs()
        self.events = logs.__enter__()
        self.addCleanup(logs.__exit__, None, None, None)
        self.supervisor.startService()
        self.addCleanup(lambda: [r.connectionLost(Failure(ProcessDone(0))) for r in self.reactor.readers])

    def ready(self, index: int) -> None:
        self.supervisor.notified(self.reactor.spawned[index]["process"].pid, {"READY": "1"})

    def end(self, index: int, reason: Exception) -> None:
        self.reactor.spawned[index]["protocol"].processEnded(Failure(reason))
        self.reactor.advance(0)  # (a replacement starts in the next turn of the event loop)

    def text(self) -> str:
        return "\n".join(formatEvent(e) for e in self.events)

    def test_spawned(self) -> None:
        """N workers, each given the shared socket as descriptor 3, its number, a private notify socket and a watchdog."""
        self.assertEqual(len(self.reactor.spawned), 2)
        for index, spawned in enumerate(self.reactor.spawned):
            self.assertEqual(spawned["executable"], sys.executable)
            self.assertEqual(spawned["args"][-4:], ["--worker-fd", str(WORKER_FD), "--worker-index", str(index)])
            self.assertEqual(spawned["fds"], {0: "w", 1: 1, 2: 2, WORKER_FD: 42})
            env = spawned["env"]
            self.assertTrue(env["NOTIFY_SOCKET"].startswith("@mdsvc-workers-"))
            self.assertEqual((env["WATCHDOG_USEC"], env[WORKER_ENV], env["PATH"]), ("2000000", str(index), "/bin"))
            self.assertNotIn("LISTEN_FDS", env)
            self.assertNotIn("WATCHDOG_PID", env)

    def test_all_ready(self) -> None:
        """all_ready fires once every worker said READY."""
        self.ready(0)
        self.assertNoResult(self.supervisor.all_ready)
        self.supervisor.notified(999, {"READY": "1"})  # not a worker of ours
        self.assertNoResult(self.supervisor.all_ready)
        self.ready(1)
        self.successResultOf(self.supervisor.all_ready)

    def test_replaced(self) -> None:
        """A worker that dies is replaced at once, in the same slot; one that keeps dying young waits longer each time."""
        self.reactor.advance(60)
        self.end(0, ProcessTerminated(signal=9))
        self.assertEqual(len(self.reactor.spawned), 3)
        self.assertEqual(self.reactor.spawned[2]["args"][-1], "0")
        self.assertIn("API worker 0 (pid 1000) was killed by signal 9 after 60.0 s; starting another", self.text())
        self.end(2, ProcessTerminated(exitCode=1))  # young: once more at once...
        self.assertEqual(len(self.reactor.spawned), 4)
        self.end(3, ProcessTerminated(exitCode=1))  # ...then after 0.5 s, 1 s, ...
        self.assertEqual(len(self.reactor.spawned), 4)
        self.reactor.advance(0.5)
        self.assertEqual(len(self.reactor.spawned), 5)
        self.end(4, ProcessTerminated(exitCode=1))
        self.reactor.advance(0.9)
        self.assertEqual(len(self.reactor.spawned), 5)
        self.reactor.advance(0.1)
        self.assertEqual(len(self.reactor.spawned), 6)

    def test_hung(self) -> None:
        """A worker whose pings stop for HANG_TIMEOUT seconds is killed (and then replaced)."""
        for _ in range(int(HANG_TIMEOUT) + 1):
            self.reactor.advance(1)
            self.supervisor.notified(self.reactor.spawned[1]["process"].pid, {"WATCHDOG": "1"})
        self.assertEqual(self.reactor.spawned[0]["process"].signals, [signal.SIGKILL])
        self.assertEqual(self.reactor.spawned[1]["process"].signals, [])
        self.assertIn("API worker 0 (pid 1000) has not pinged for 11 s: killing it", self.text())

    def test_reload(self) -> None:
        """SIGHUP is passed on to every worker."""
        self.supervisor.reload(None)  # type: ignore[arg-type]
        self.assertEqual([s["process"].signals for s in self.reactor.spawned], [[signal.SIGHUP], [signal.SIGHUP]])

    def test_stop(self) -> None:
        """Stopping: SIGTERM to each worker, no replacement, done once all exited; the socket closed then."""
        stopped = self.supervisor.stopService()
        self.assertEqual([s["process"].signals for s in self.reactor.spawned], [[signal.SIGTERM], [signal.SIGTERM]])
        self.end(0, ProcessDone(0))
        self.assertNoResult(stopped)
        self.end(1, ProcessDone(0))
        self.successResultOf(stopped)
        self.assertEqual(len(self.reactor.spawned), 2)
        self.assertTrue(self.supervisor.port is None)
        self.assertEqual(self.reactor.readers, [])

    def test_stop_timeout(self) -> None:
        """A worker that does not exit within the stop timeout is killed."""
        stopped = self.supervisor.stopService()
        self.end(0, ProcessDone(0))
        self.reactor.advance(10)
        self.assertEqual(self.reactor.spawned[1]["process"].signals, [signal.SIGTERM, signal.SIGKILL])
        self.end(1, ProcessTerminated(signal=9))
        self.successResultOf(stopped)


class NotifyReaderTests(SynchronousTestCase):
    """Notifications read with the sender's pid, as the kernel vouches for it."""

    def test_credentials(self) -> None:
        """The pid comes from SCM_CREDENTIALS, the fields from the datagram's lines."""
        reader_end, writer_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.addCleanup(writer_end.close)
        reader_end.setsockopt(socket.SOL_SOCKET, 16, 1)  # SO_PASSCRED
        reader_end.setblocking(False)
        seen: list[Any] = []

        class Supervisor:
            def notified(self, pid: int, fields: dict[str, str]) -> None:
                seen.append((pid, fields))

        reader = _NotifyReader(Supervisor(), reader_end)  # type: ignore[arg-type]
        writer_end.send(b"READY=1\nSTATUS=serving")
        writer_end.send(b"WATCHDOG=1")
        reader.doRead()
        reader.connectionLost(Failure(ProcessDone(0)))
        self.assertEqual(seen, [(os.getpid(), {"READY": "1", "STATUS": "serving"}), (os.getpid(), {"WATCHDOG": "1"})])


class CommandTests(SynchronousTestCase):
    """A worker's command line and log lines."""

    def test_argv(self) -> None:
        """This interpreter, twistd in the foreground with the workers' log observer, the api role, the same files."""
        argv = WorkerCommand(("/etc/nova/nova.conf", "/etc/mdsvc/conf.d/a.conf")).argv()
        self.assertEqual(argv[0], sys.executable)
        self.assertEqual(argv[3:], ["-n", "--pidfile=", "--logger=mdsvc.workers.worker_log_observer", "mdsvc", "--role", "api",
                                    "--config-file", "/etc/nova/nova.conf", "--config-file", "/etc/mdsvc/conf.d/a.conf"])

    def test_log_lines_name_the_worker(self) -> None:
        """Each line of a worker's log says which worker wrote it."""
        from io import StringIO

        from twisted.logger import Logger

        out = StringIO()
        self.patch(sys, "stdout", out)
        self.patch(os, "environ", {WORKER_ENV: "1"})
        Logger(namespace="mdsvc.api", observer=worker_log_observer()).info("hello {who}", who="there")
        self.assertIn("[worker 1 mdsvc.api#info] hello there", out.getvalue())


class NovaStoreTests(SynchronousTestCase):
    """
    C{metadata_workers} with C{store = nova}: each worker opens its own engines and thread pool;
    the supervisor opens none (nothing made before a worker starts is shared with it).
    """

    def config(self, workers: str) -> str:
        return nova_api_config(self, f"metadata_workers = {workers}\n")

    def build(self, *args: str) -> tuple[Any, list[Any]]:
        """makeService for the api role with C{args}; the service tree and the stores opened."""
        import threading

        from twisted.internet.testing import MemoryReactorClock

        from mdsvc import tap
        from mdsvc.store.nova.store import NovaInstanceStore

        opened: list[Any] = []
        real_open = tap.open_store

        def open_store(*a: Any) -> Any:
            store = real_open(*a)
            opened.append(store)
            return store

        self.patch(tap, "open_store", open_store)
        threads = threading.active_count()
        options = tap.Options()
        options.parseOptions(["--role", "api", *args])
        top = tap.makeService(options, reactor=MemoryReactorClock())
        self.assertEqual(threading.active_count(), threads)  # (a pool's threads start with the service)
        self.assertEqual([s for s in services_in(top) if isinstance(s, NovaInstanceStore)], opened)
        return top, opened

    def test_supervisor_opens_no_store(self) -> None:
        """The supervisor: no store, no engine, no thread pool; its workers are new processes (exec), not forks."""
        top, opened = self.build("--config-file", self.config("2"))
        self.assertEqual(opened, [])
        supervisor = next(s for s in top.services[1].services if isinstance(s, WorkerSupervisor))
        self.assertEqual(supervisor.argv[:2], [sys.executable, "-c"])

    def test_worker_opens_its_own(self) -> None:
        """A worker (C{--worker-fd}) opens the store itself, with its own thread pool."""
        import mdsvc.workers
        from mdsvc.store.nova.store import NovaInstanceStore

        self.patch(mdsvc.workers, "die_with_parent", lambda: None)  # (not this test process)
        r, w = socket.socketpair()
        self.addCleanup(r.close)
        self.addCleanup(w.close)
        top, opened = self.build("--config-file", self.config("2"), "--worker-fd", str(r.fileno()))
        self.assertEqual(len(opened), 1)
        self.assertIsInstance(opened[0], NovaInstanceStore)
        self.assertFalse(opened[0].threadpool.started)  # started with the worker's services, in the worker


class ConfigDirTests(SynchronousTestCase):
    """C{--config-dir} with workers: each worker is given the directory, not the files it held at startup."""

    def test_argv(self) -> None:
        """The files, then the directories, as the supervisor was given them."""
        argv = WorkerCommand(("/etc/nova/nova.conf",), ("/etc/mdsvc/conf.d",)).argv()
        self.assertEqual(argv[-4:], ["--config-file", "/etc/nova/nova.conf", "--config-dir", "/etc/mdsvc/conf.d"])

    def test_supervisor(self) -> None:
        """The supervisor built by makeService passes C{--config-dir} on; a SIGHUP lists the directory again."""
        from twisted.internet.testing import MemoryReactorClock

        from mdsvc.reload import Reloader
        from mdsvc.tap import Options, makeService

        top_dir = os.path.abspath(self.mktemp())
        directory = os.path.join(top_dir, "conf.d")
        os.makedirs(directory)
        base = os.path.join(top_dir, "base.conf")
        with open(base, "w") as f:
            f.write(f"[DEFAULT]\nstate_path = {top_dir}\nmetadata_workers = 2\n[mdsvc]\napi_endpoint = tcp:0\n")
        with open(os.path.join(directory, "a.conf"), "w") as f:
            f.write("[DEFAULT]\ndebug = false\n")
        options = Options()
        options.parseOptions(["--role", "api", "--config-file", base, "--config-dir", directory])
        top = makeService(options, reactor=MemoryReactorClock())
        supervisor = next(s for s in top.services[1].services if isinstance(s, WorkerSupervisor))
        self.assertEqual(supervisor.argv[-4:], ["--config-file", base, "--config-dir", directory])
        with open(os.path.join(directory, "b.conf"), "w") as f:
            f.write("[DEFAULT]\ndebug = true\n")
        reloader = next(s for s in top if isinstance(s, Reloader))
        self.assertEqual(reloader.sources(), [base, os.path.join(directory, "a.conf"), os.path.join(directory, "b.conf")])


class EndedTests(SupervisorTests):
    """What the supervisor tells its operations about a worker that exits."""

    def test_restarts_and_hooks(self) -> None:
        """Each worker's restarts are counted, and the ended hooks see the worker (no longer ready) before its replacement starts."""
        seen: list[tuple[int, bool, int]] = []
        self.supervisor.ended_hooks.append(lambda w: seen.append((w.index, w.ready, len(self.reactor.spawned))))
        self.ready(1)
        self.reactor.advance(60)
        self.end(1, ProcessTerminated(signal=9))
        self.assertEqual(seen, [(1, False, 2)])
        self.assertEqual([w.restarts for w in self.supervisor.workers], [0, 1])
        self.assertEqual(len(self.reactor.spawned), 3)
