# -*- test-case-name: tests.test_workers -*-
"""
Several API worker processes on one port (nova.conf's C{[DEFAULT] metadata_workers}, api role).

One Python process uses one core.  With C{metadata_workers = N} (N > 1) the api role's process
becomes a supervisor: it opens the API's listening socket itself (C{metadata_listen} and
C{metadata_listen_port}, or C{[mdsvc] api_endpoint}: a port, a UNIX socket or a socket systemd
passed in), never accepts on it, and starts N workers, each a C{twistd mdsvc --role api} that
adopts that one socket (L{WORKER_FD}) and serves it: the kernel hands each new connection to
whichever worker accepts first, so a busy worker takes fewer.  A connection waiting to be
accepted belongs to the socket, not to a worker: when a worker dies, only the requests it was
answering fail (a client's retry reaches another worker), and the supervisor starts another.

The supervisor watches its workers through systemd's own protocol (L{mdsvc.systemd}) on a
private socket: each worker says READY once it serves and pings its watchdog; the supervisor
says READY to systemd once every worker is ready, kills a worker whose pings stop for
L{HANG_TIMEOUT} seconds (a hung event loop), and starts a new worker for every one that exits
(at once, or after a growing pause if workers keep dying young).  SIGHUP is passed on to the
workers (each reads the configuration again); SIGTERM too, and the supervisor exits once they
have drained and exited.

Each worker has its own render cache (as each of Nova's workers has): a change is served by all
within C{metadata_cache_expiration}.  Workers write their log lines to the supervisor's standard
output and error (the journal under systemd), each line naming its process.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import secrets
import signal
import socket
import struct
import sys
from collections.abc import Callable, Sequence
from typing import Any

from attrs import define, field
from twisted.application.service import Service
from twisted.internet.defer import Deferred, DeferredList, succeed
from twisted.internet.endpoints import AdoptedStreamServerEndpoint, serverFromString
from twisted.internet.error import ProcessDone
from twisted.internet.protocol import ProcessProtocol, ServerFactory
from twisted.internet.task import LoopingCall
from twisted.logger import ILogObserver, Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from mdsvc.config import Config
from mdsvc.reload import IReloadable

WORKER_FD = 3
"""The descriptor a worker finds the shared listening socket at."""

WORKER_ENV = "MDSVC_API_WORKER"
"""The environment variable telling a worker its number (for its log lines)."""

WORKER_WATCHDOG = 1.0
"""Seconds between a worker's pings to its supervisor."""

HANG_TIMEOUT = 10.0
"""Seconds without a ping after which a worker counts as hung and is killed."""

YOUNG = 10.0
"""A worker that dies younger than this makes the next start wait (0.5 s, doubling, at most 30 s)."""

_SO_PASSCRED = getattr(socket, "SO_PASSCRED", 16)
_SCM_CREDENTIALS = getattr(socket, "SCM_CREDENTIALS", 2)
_UCRED = struct.Struct("iII")  # pid, uid, gid
_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """Have the kernel send this process SIGTERM when its parent (the supervisor) dies (Linux)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def adopted_endpoint(reactor: Any, fd: int = WORKER_FD) -> AdoptedStreamServerEndpoint:
    """The shared listening socket at C{fd}, as an endpoint a worker's API listens on."""
    probe = socket.socket(fileno=os.dup(fd))
    try:
        family = probe.family
    finally:
        probe.close()
    return AdoptedStreamServerEndpoint(reactor, fd, family)


class _Unused(ServerFactory):
    """The supervisor's factory for the shared socket: it never accepts, so nothing is built."""

    noisy = False

    def buildProtocol(self, addr: Any) -> None:
        """Never called (the supervisor does not read the socket)."""
        return None

    def logPrefix(self) -> str:
        """Its log lines are the API's (C{metadata-api starting on 8775})."""
        return "metadata-api"


def worker_log_observer() -> Any:
    """
    A worker's log observer (twistd's C{--logger}): twistd's text lines on standard output, each
    naming the worker (C{[worker 1 mdsvc.api.app.MetadataApp#info]}).
    """
    from twisted.logger import textFileLogObserver

    observer = textFileLogObserver(sys.stdout)
    name = f"worker {os.environ.get(WORKER_ENV, '?')}"

    @implementer(ILogObserver)
    def named(event: dict[str, Any]) -> None:
        system = event.get("log_system")
        if system is None:
            level = event.get("log_level")
            system = f"{event.get('log_namespace', '-')}#{level.name if level is not None else '-'}"
        observer({**event, "log_system": f"{name} {system}"})

    return named


@define(eq=False)
class Worker:
    """One worker: its slot, process and what the supervisor knows of it."""

    index: int
    process: Any = None
    pid: int = 0
    started: float = 0.0
    ready: bool = False
    pinged: float = 0.0
    failures: int = 0
    ended: Deferred[None] | None = None
    restarts: int = 0


class _WorkerProtocol(ProcessProtocol):
    def __init__(self, supervisor: WorkerSupervisor, worker: Worker) -> None:
        self.supervisor = supervisor
        self.worker = worker

    def processEnded(self, reason: Failure) -> None:
        self.supervisor.ended(self.worker, reason)


class _NotifyReader:
    """The supervisor's end of its workers' notifications: a datagram socket in the event loop."""

    def __init__(self, supervisor: WorkerSupervisor, sock: socket.socket) -> None:
        self.supervisor = supervisor
        self.sock = sock

    def fileno(self) -> int:
        return self.sock.fileno()

    def doRead(self) -> None:
        while True:
            try:
                data, ancillary, _, _ = self.sock.recvmsg(4096, socket.CMSG_SPACE(_UCRED.size))
            except (BlockingIOError, InterruptedError):
                return
            pid = 0
            for level, kind, value in ancillary:
                if level == socket.SOL_SOCKET and kind == _SCM_CREDENTIALS and len(value) >= _UCRED.size:
                    pid = _UCRED.unpack(value[:_UCRED.size])[0]
            fields = dict(line.split("=", 1) for line in data.decode("utf-8", "replace").splitlines() if "=" in line)
            self.supervisor.notified(pid, fields)

    def connectionLost(self, reason: Failure) -> None:
        self.sock.close()

    def logPrefix(self) -> str:
        return "mdsvc-workers"


@implementer(IReloadable)
class WorkerSupervisor(Service):
    """
    Opens the shared socket, starts and watches C{count} workers (see the module's docstring).

    @param description: the API's endpoint string (L{mdsvc.config.ApiConfig.listen_endpoint}).
    @param argv: the command line of a worker, without the worker options (they are added).
    @param stop_timeout: seconds the workers have to drain and exit once told to stop, before
        they are killed.
    @param applies: the options the workers apply on SIGHUP (the API's).
    @ivar all_ready: fires once every first worker said READY (systemd's READY waits for it).
    @ivar ended_hooks: called with each L{Worker} that exited, before another is started in its
        place (the admin socket it may have left is removed: L{mdsvc.operations}).
    """

    _log = Logger()

    def __init__(self, reactor: Any, description: str, count: int, argv: Sequence[str], stop_timeout: float,
                 env: dict[str, str] | None = None, applies: frozenset[tuple[str, str]] = frozenset()) -> None:
        self.options = applies
        """What a SIGHUP applies: what the workers apply themselves (L{IReloadable.options})."""
        self.reactor = reactor
        self.description = description
        self.count = count
        self.argv = list(argv)
        self.stop_timeout = stop_timeout
        self.env = dict(os.environ if env is None else env)
        self.workers = [Worker(i) for i in range(count)]
        self.all_ready: Deferred[None] = Deferred()
        self.port: Any = None
        self._notify: _NotifyReader | None = None
        self._notify_name = f"\0mdsvc-workers-{os.getpid()}-{secrets.token_hex(4)}"
        self._watch = LoopingCall(self._check_hung)
        self._watch.clock = reactor
        self._stopping = False
        self.ended_hooks: list[Callable[[Worker], None]] = []

    # -- the shared socket ------------------------------------------------------------------

    def privilegedStartService(self) -> None:
        """Open the shared socket (before twistd drops privileges); the supervisor never accepts on it."""
        super().privilegedStartService()
        if self.port is None:
            from mdsvc.listen import no_systemd_socket

            try:
                endpoint = serverFromString(self.reactor, self.description)
            except (IndexError, KeyError) as e:
                # a systemd: socket not passed: the line a single process gives (L{mdsvc.listen})
                missing = no_systemd_socket(self.description, e)
                if missing is None:
                    raise
                raise missing from None
            result: list[Any] = []
            endpoint.listen(_Unused()).addBoth(result.append)
            if isinstance(result[0], Failure):
                result[0].raiseException()
            self.port = result[0]
            self.port.stopReading()

    # -- workers ------------------------------------------------------------------------------

    def startService(self) -> None:
        """Start the notification socket, every worker, and the hang watch."""
        if self.port is None:
            self.privilegedStartService()
        super().startService()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC)
        sock.setsockopt(socket.SOL_SOCKET, _SO_PASSCRED, 1)
        sock.bind(self._notify_name)
        self._notify = _NotifyReader(self, sock)
        self.reactor.addReader(self._notify)
        for worker in self.workers:
            self._spawn(worker)
        self._watch.start(1.0, now=False)

    def _spawn(self, worker: Worker) -> None:
        if not self.running or self._stopping:
            return
        env = {k: v for k, v in self.env.items() if not k.startswith(("LISTEN_", "WATCHDOG_"))}
        env.update(NOTIFY_SOCKET="@" + self._notify_name[1:], WATCHDOG_USEC=str(int(WORKER_WATCHDOG * 2_000_000)))
        env[WORKER_ENV] = str(worker.index)
        args = [*self.argv, "--worker-fd", str(WORKER_FD), "--worker-index", str(worker.index)]
        worker.ready = False
        worker.ended = Deferred()
        worker.started = worker.pinged = self.reactor.seconds()
        worker.process = self.reactor.spawnProcess(
            _WorkerProtocol(self, worker), sys.executable, args, env=env,
            childFDs={0: "w", 1: 1, 2: 2, WORKER_FD: self.port.fileno()},
        )
        worker.pid = worker.process.pid
        self._log.info("started API worker {index} (pid {pid})", index=worker.index, pid=worker.pid)

    def notified(self, pid: int, fields: dict[str, str]) -> None:
        """A worker's notification (READY, WATCHDOG, ...), by the pid the kernel vouches for."""
        pid = pid or int(fields.get("MAINPID", "0") or 0)
        worker = next((w for w in self.workers if w.pid == pid and pid), None)
        if worker is None:
            return
        worker.pinged = self.reactor.seconds()
        if fields.get("READY") == "1" and not worker.ready:
            worker.ready = True
            if all(w.ready for w in self.workers) and not self.all_ready.called:
                self._log.info("all {count} API workers are serving on {description}", count=self.count,
                               description=self.description)
                self.all_ready.callback(None)

    def _check_hung(self) -> None:
        now = self.reactor.seconds()
        for worker in self.workers:
            if worker.process is not None and worker.ended is not None and not worker.ended.called \
                    and now - worker.pinged > HANG_TIMEOUT:
                self._log.error("API worker {index} (pid {pid}) has not pinged for {seconds:.0f} s: killing it",
                                index=worker.index, pid=worker.pid, seconds=now - worker.pinged)
                worker.pinged = now  # (once)
                self._signal(worker, signal.SIGKILL)

    def ended(self, worker: Worker, reason: Failure) -> None:
        """A worker exited: another one in its place, unless the supervisor is stopping."""
        lived = self.reactor.seconds() - worker.started
        signum, code = getattr(reason.value, "signal", None), getattr(reason.value, "exitCode", None)
        status = f"was killed by signal {signum}" if signum else f"exited with status {code}"
        ended, worker.ended, worker.process = worker.ended, None, None
        worker.ready = False
        for hook in self.ended_hooks:
            hook(worker)
        if self._stopping or not self.running:
            self._log.info("API worker {index} (pid {pid}) stopped", index=worker.index, pid=worker.pid)
        else:
            worker.failures = worker.failures + 1 if lived < YOUNG else 0
            delay = 0.0 if worker.failures <= 1 else min(0.5 * 2 ** (worker.failures - 2), 30.0)
            worker.restarts += 1
            self._log.warn("API worker {index} (pid {pid}) {status} after {lived:.1f} s; starting another{later}",
                           index=worker.index, pid=worker.pid, status=status, lived=lived,
                           later=f" in {delay:g} s" if delay else "")
            self.reactor.callLater(delay, self._spawn, worker)
        if ended is not None:
            ended.callback(None)

    def _signal(self, worker: Worker, signum: int) -> None:
        if worker.process is not None:
            try:
                worker.process.signalProcess(signum)
            except Exception:  # (already gone: its processEnded is on its way)
                pass

    def reload(self, config: Config) -> None:
        """SIGHUP: each worker reads the configuration again itself (see L{IReloadable.reload})."""
        for worker in self.workers:
            self._signal(worker, signal.SIGHUP)

    def stopService(self) -> Deferred[Any]:
        """SIGTERM to every worker; fires once all exited (those still running after C{stop_timeout} are killed)."""
        super().stopService()
        self._stopping = True
        if self._watch.running:
            self._watch.stop()
        waiting = [w.ended for w in self.workers if w.ended is not None]
        for worker in self.workers:
            self._signal(worker, signal.SIGTERM)
        killer = self.reactor.callLater(self.stop_timeout, self._kill_all)
        done = DeferredList(waiting) if waiting else succeed([])

        def finished(result: Any) -> None:
            if killer.active():
                killer.cancel()
            if self._notify is not None:
                self.reactor.removeReader(self._notify)
                self._notify.connectionLost(Failure(ProcessDone(0)))
                self._notify = None
            if self.port is not None:
                self.port.stopListening()
                self.port = None

        return done.addCallback(finished)

    def _kill_all(self) -> None:
        for worker in self.workers:
            if worker.process is not None:
                self._log.warn("API worker {index} (pid {pid}) did not exit in time: killing it", index=worker.index, pid=worker.pid)
                self._signal(worker, signal.SIGKILL)


@define
class WorkerCommand:
    """
    The command line of a worker: this interpreter running twistd with the supervisor's
    configuration files, and its C{--config-dir} directories as such (listed by the worker).
    """

    config_files: Sequence[str] = field(factory=tuple)
    config_dirs: Sequence[str] = field(factory=tuple)

    def argv(self) -> list[str]:
        """C{python -c <twistd> -n --pidfile= --logger=<worker_log_observer> mdsvc --role api --config-file F... --config-dir D...}."""
        twistd = "import sys; from twisted.scripts.twistd import run; sys.argv[0] = 'twistd'; run()"
        args = [sys.executable, "-c", twistd, "-n", "--pidfile=", "--logger=mdsvc.workers.worker_log_observer", "mdsvc",
                "--role", "api"]
        for path in self.config_files:
            args += ["--config-file", path]
        for directory in self.config_dirs:
            args += ["--config-dir", directory]
        return args


__all__ = ["HANG_TIMEOUT", "WORKER_ENV", "WORKER_FD", "worker_log_observer", "Worker", "WorkerCommand", "WorkerSupervisor", "adopted_endpoint", "die_with_parent"]
