# -*- test-case-name: tests.test_operations -*-
"""
What a process runs besides its role, to be seen and asked: the metrics listener
(C{[mdsvc] metrics_endpoint}) and the admin socket (C{[mdsvc] admin_dir}), wired here so that
L{mdsvc.tap} only calls a few functions.

With C{[DEFAULT] metadata_workers} > 1 (api role) the supervisor serves the metrics listener for
the whole API (L{mdsvc.workerops}: its workers' metrics merged, labelled C{worker="N"}, and their
readiness) and has the admin socket C{api.sock}; each worker N has C{api@N.sock} and no metrics
listener of its own.
"""

from __future__ import annotations

import os
from typing import Any

from twisted.application.service import IService, MultiService
from twisted.logger import Logger

from mdsvc.config import Config
from mdsvc.failures import FailureLog
from mdsvc.metrics import NodeMetrics
from mdsvc.trace import TraceRing


class NodeService(MultiService):
    """
    The top of a process's service tree. When twistd (or a C{.tac}) attaches it to its
    application, it hands twistd the observer C{[DEFAULT] log_format} asks for (an
    C{ILogObserver} component of the application, which twistd's logger prefers to its own);
    while running, it also sends events to syslog and the journal if asked.
    """

    def __init__(self, config: Config) -> None:
        super().__init__()
        from mdsvc.logs import extra_observers, primary_observer

        self.log_observer = primary_observer(config)
        self.extra_observers = extra_observers(config)

    def setServiceParent(self, parent: Any) -> Any:
        """Attach to C{parent}; an application gets the log observer as its component first."""
        from twisted.logger import ILogObserver
        from twisted.python.components import Componentized

        if self.log_observer is not None and isinstance(parent, Componentized):
            parent.setComponent(ILogObserver, self.log_observer)
        return super().setServiceParent(parent)

    def startService(self) -> None:
        """Start the role's services, and send events to syslog or the journal from now on."""
        from twisted.logger import globalLogPublisher

        for observer in self.extra_observers:
            globalLogPublisher.addObserver(observer)
        super().startService()

    def stopService(self) -> Any:
        """Stop the role's services; the extra destinations get their last events, then are removed."""
        from twisted.logger import globalLogPublisher

        def removed(result: Any) -> Any:
            for observer in self.extra_observers:
                globalLogPublisher.removeObserver(observer)
            return result

        d = super().stopService()
        return d.addBoth(removed) if d is not None else removed(None)


FOLD_INTERVAL = 0.1
"""
Seconds between foldings of the pending records (L{NodeMetrics.fold}): a failed request's log
line comes at most this late. A tenth of a second, not a second: the objects each request
parsed (its path, its address...) die at the fold (L{mdsvc.trace.TraceRing}), a tenth as many
of them alive at once. Measured (bench/README.md, "December 4, later"): the network node and API
kept 0.978 of their unmetered throughput against 0.972 folding every second, while the fold
costs about a fifth more a record over batches a tenth as large (bench/fold.py).
"""

MAX_SOCKET_PATH = 107
"""Bytes of a UNIX socket's path, at most (Linux: 108 with the final NUL)."""

log = Logger()


def node_metrics(config: Config, role: str, reactor: Any) -> NodeMetrics:
    """The counters, trace ring and failure log of a process of C{role}."""
    return NodeMetrics(role, reactor, TraceRing(config.operations.trace_size), failure=FailureLog(reactor))


def operations_service(config: Config, role: str, reactor: Any, parts: dict[str, Any]) -> IService:
    """
    The metrics listener, if C{[mdsvc] metrics_endpoint} is set, on the role's L{NodeMetrics}
    and L{mdsvc.readiness.Readiness} (C{parts["metrics"]}, C{parts["readiness"]}); the admin
    socket, C{[mdsvc] admin_dir}/ROLE.sock (L{mdsvc.admin.server}); the folding of what the hops
    noted, every L{FOLD_INTERVAL} seconds.
    """
    from prometheus_client import generate_latest
    from twisted.application.internet import TimerService

    from mdsvc.admin.server import AdminState
    from mdsvc.exposition import MetricsHandler, registry_for
    from mdsvc.logs import Redactor
    from mdsvc.readiness import Readiness

    top = MultiService()
    registry = registry_for(parts["metrics"])
    parts.setdefault("exposition", lambda: generate_latest(registry))
    folding = TimerService(FOLD_INTERVAL, parts["metrics"].fold)
    folding.clock = reactor
    folding.setServiceParent(top)
    readiness = parts.setdefault("readiness", Readiness(reactor))
    worker = parts.get("worker_fd") is not None  # one of the api role's metadata_workers
    endpoint = config.operations.metrics_endpoint
    if endpoint and not worker:
        _metrics_listener(config, reactor, MetricsHandler(registry, readiness)).setServiceParent(top)
    name = f"{role}@{parts['worker_index']}" if worker else role
    admin = _admin_socket(config, reactor, AdminState(role, config.sources, parts, Redactor.of(config), reactor.seconds()), name)
    if admin is not None:
        admin.setServiceParent(top)
    return top


def supervisor_operations_service(config: Config, reactor: Any, supervisor: Any) -> IService:
    """
    What the supervisor of C{metadata_workers} serves for its workers (L{mdsvc.workerops}): the
    metrics listener, if C{[mdsvc] metrics_endpoint} is set (C{/metrics} of every worker merged,
    C{/readyz} of them all), and the admin socket C{api.sock}; the admin sockets its workers
    leave behind (a worker killed, a slot no longer configured) are removed.
    """
    from twisted.application.service import Service

    from mdsvc.admin.server import AdminState
    from mdsvc.exposition import MetricsHandler
    from mdsvc.logs import Redactor
    from mdsvc.workerops import WorkerAsker, WorkersExposition, WorkersReadiness, remove_stale_sockets

    admin_dir = config.operations.admin_dir
    asker = WorkerAsker(reactor, admin_dir, supervisor)
    exposition, readiness = WorkersExposition(asker), WorkersReadiness(asker)
    top = MultiService()

    class _Stale(Service):
        """
        Removes the stale worker sockets at startup, before any worker of this supervisor runs
        (the workers start in C{startService}, after every C{privilegedStartService}).
        """

        done = False

        def privilegedStartService(self) -> None:
            super().privilegedStartService()
            self._remove()

        def startService(self) -> None:
            super().startService()
            self._remove()

        def _remove(self) -> None:
            if not self.done:
                self.done = True
                for path in remove_stale_sockets(admin_dir):
                    log.info("removed the stale admin socket {path} (its worker is gone)", path=path)

    _Stale().setServiceParent(top)

    def ended(worker: Any) -> None:
        for path in remove_stale_sockets(admin_dir, keep=[w.index for w in supervisor.workers if w is not worker]):
            log.info("removed the admin socket {path} of API worker {index}, which is gone", path=path, index=worker.index)

    supervisor.ended_hooks.append(ended)
    if config.operations.metrics_endpoint:
        _metrics_listener(config, reactor, MetricsHandler(None, readiness, exposition=exposition)).setServiceParent(top)
    parts = {"readiness": readiness, "exposition": exposition, "supervisor": supervisor}
    admin = _admin_socket(config, reactor, AdminState("api", config.sources, parts, Redactor.of(config), reactor.seconds()), "api")
    if admin is not None:
        admin.setServiceParent(top)
    return top


def _metrics_listener(config: Config, reactor: Any, handler: Any) -> IService:
    """The listener of C{[mdsvc] metrics_endpoint}, answering with C{handler}."""
    from mdsvc.http import LeanHTTPFactory
    from mdsvc.listen import listen_service

    endpoint = config.operations.metrics_endpoint or ""
    factory = LeanHTTPFactory(handler, reactor, request_timeout=config.limits.request_timeout,
                              idle_timeout=config.limits.idle_timeout, name="mdsvc-metrics", guest_facing=False)
    where = f"{config.source or 'defaults'}: [mdsvc] metrics_endpoint {endpoint}"
    return listen_service(endpoint, factory, reactor, where)


def _admin_socket(config: Config, reactor: Any, state: Any, name: str) -> IService | None:
    """The admin socket C{[mdsvc] admin_dir}/NAME.sock answering from C{state}; None (and a warning) if its path is too long."""
    from mdsvc.admin.server import AdminHandler, AdminSocket, socket_path
    from mdsvc.http import LeanHTTPFactory
    from mdsvc.listen import Listening

    admin = LeanHTTPFactory(AdminHandler(state), reactor, request_timeout=config.limits.request_timeout,
                            idle_timeout=config.limits.idle_timeout, name="mdsvc-admin", guest_facing=False)
    path = socket_path(config.operations.admin_dir, name)
    if len(os.fsencode(path)) > MAX_SOCKET_PATH:
        log.warn("no admin socket: {path} is longer than a UNIX socket path may be ({most} bytes); set [mdsvc] admin_dir "
                 "to a shorter directory (mdsvc-manage doctor and trace cannot reach this process)", path=path, most=MAX_SOCKET_PATH)
        return None
    listening = Listening(f"{config.source or 'defaults'}: [mdsvc] admin_dir {config.operations.admin_dir}: {path}")
    AdminSocket(reactor, path, admin).setServiceParent(listening)
    return listening


__all__ = ["NodeService", "node_metrics", "operations_service", "supervisor_operations_service"]
