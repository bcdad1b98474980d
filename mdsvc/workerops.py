# -*- test-case-name: tests.test_workerops -*-
"""
The node's whole API seen through the supervisor of C{[DEFAULT] metadata_workers}: its workers open
no metrics listener, so the supervisor serves C{[mdsvc] metrics_endpoint} for them all.

  - L{WorkerAsker}: asks each live worker over its admin socket (C{ADMIN_DIR/api@N.sock}), each
    answer within L{ASK_TIMEOUT} seconds; a worker that does not answer in time is left out.
  - L{merge_expositions}: the workers' exposition texts as one set of families, each sample
    labelled C{worker="N"} (HELP and TYPE once per family).
  - L{WorkersExposition}: C{/metrics}: the merged families and the supervisor's own (workers
    configured and alive, restarts, workers left out of scrapes).
  - L{WorkersReadiness}: C{/readyz}: ready only when every worker is running and every dependency
    of every worker answers, naming the worker and the dependency that does not.
  - L{remove_stale_sockets}: the admin sockets of workers gone (killed, or of a slot no longer
    configured) are removed, so that C{mdsvc-manage doctor} and C{trace} meet none.
"""

from __future__ import annotations

import glob
import json
import os
import re
from collections.abc import Iterable, Iterator
from typing import Any

from prometheus_client import generate_latest
from prometheus_client.core import CollectorRegistry, CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector
from twisted.internet.defer import Deferred, gatherResults
from twisted.logger import Logger
from twisted.web.iweb import IAgentEndpointFactory
from zope.interface import implementer

ASK_TIMEOUT = 2.0
"""Seconds a worker has to answer the supervisor over its admin socket (a scrape must not hang)."""

WORKER_SOCKET = re.compile(r"^(?P<role>[^@/]+)@(?P<index>\d+)\.sock$")
"""The name of a worker's admin socket: C{api@N.sock}."""


def worker_socket(admin_dir: str, index: int, role: str = "api") -> str:
    """The admin socket of worker C{index} (L{mdsvc.operations} names it so)."""
    return os.path.join(admin_dir, f"{role}@{index}.sock")


class WorkerUnavailable(Exception):
    """A worker did not answer over its admin socket; C{str()} says why."""


@implementer(IAgentEndpointFactory)
class _SocketEndpoints:
    """Every URI to one UNIX socket (Agent.usingEndpointFactory)."""

    def __init__(self, reactor: Any, path: str, timeout: float) -> None:
        self.reactor = reactor
        self.path = path
        self.timeout = timeout

    def endpointForURI(self, uri: Any) -> Any:
        """The worker's admin socket, whatever the URI."""
        from twisted.internet.endpoints import UNIXClientEndpoint

        return UNIXClientEndpoint(self.reactor, self.path, timeout=max(1, int(self.timeout)))


class WorkerAsker:
    """
    Asks the workers of a L{mdsvc.workers.WorkerSupervisor} over their admin sockets.

    @ivar missed: per worker, how many times it was left out (no answer in time, or an error).
    """

    _log = Logger()

    def __init__(self, reactor: Any, admin_dir: str, supervisor: Any, timeout: float = ASK_TIMEOUT) -> None:
        self.reactor = reactor
        self.admin_dir = admin_dir
        self.supervisor = supervisor
        self.timeout = timeout
        self.missed: dict[int, int] = {}

    def live(self) -> list[Any]:
        """The workers running now (a worker between death and its replacement is not)."""
        return [w for w in self.supervisor.workers if w.process is not None]

    def get(self, index: int, route: bytes) -> Deferred[bytes]:
        """The body of C{GET route} from worker C{index}; fails with L{WorkerUnavailable}."""
        from twisted.web.client import Agent, readBody

        agent = Agent.usingEndpointFactory(self.reactor, _SocketEndpoints(self.reactor, worker_socket(self.admin_dir, index),
                                                                          self.timeout))
        d = agent.request(b"GET", b"http://mdsvc-admin" + route)

        def answered(response: Any) -> Deferred[bytes]:
            body = readBody(response)
            if response.code != 200:
                return body.addCallback(lambda data: _raise(f"answered {response.code}: {data[:200]!r}"))
            return body

        def timed_out(result: Any, timeout: float) -> bytes:
            # (whatever the cancelled request failed with: not connected yet, or no answer)
            raise WorkerUnavailable(f"no answer within {timeout:g}s")

        def failed(failure: Any) -> None:
            if failure.check(WorkerUnavailable):
                failure.raiseException()
            raise WorkerUnavailable(failure.getErrorMessage() or failure.type.__name__)

        d.addCallback(answered)
        d.addTimeout(self.timeout, self.reactor, onTimeoutCancel=timed_out)
        return d.addErrback(failed)

    def each(self, route: bytes) -> Deferred[list[tuple[int, bytes | WorkerUnavailable]]]:
        """C{GET route} from every live worker at once: C{(index, body)}, or C{(index, why not)}."""

        def one(index: int) -> Deferred[tuple[int, bytes | WorkerUnavailable]]:
            def failed(failure: Any) -> tuple[int, WorkerUnavailable]:
                self.missed[index] = self.missed.get(index, 0) + 1
                self._log.warn("API worker {index} did not answer {route} on its admin socket: {why}", index=index,
                               route=route.decode("latin-1"), why=str(failure.value))
                return index, failure.value if failure.check(WorkerUnavailable) else WorkerUnavailable(str(failure.value))

            return self.get(index, route).addCallbacks(lambda body: (index, body), failed)

        return gatherResults([one(w.index) for w in self.live()])


def _raise(message: str) -> bytes:
    raise WorkerUnavailable(message)


def merge_expositions(texts: Iterable[tuple[int, str]]) -> list[Metric]:
    """
    The families of every worker's exposition text as one list: a family's HELP and TYPE once (as
    the first worker gave them), each sample with the label C{worker="N"} added.
    """
    merged: dict[str, Metric] = {}
    for index, text in texts:
        for family in text_string_to_metric_families(text):
            into = merged.get(family.name)
            if into is None:
                into = merged[family.name] = Metric(family.name, family.documentation, family.type, family.unit)
            for sample in family.samples:
                into.samples.append(sample._replace(labels={**sample.labels, "worker": str(index)}))
    return list(merged.values())


class _Families(Collector):
    """Families already made (one scrape's)."""

    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterator[Metric]:
        """The families, as they are."""
        return iter(self.families)


class WorkersExposition:
    """
    C{/metrics} of the supervisor: each live worker's families (L{merge_expositions}) and the
    supervisor's own; called once per scrape, it returns a Deferred of the text.
    """

    def __init__(self, asker: WorkerAsker) -> None:
        self.asker = asker

    def __call__(self) -> Deferred[bytes]:
        """Ask every live worker, then render the merged families."""
        return self.asker.each(b"/metrics").addCallback(self.render)

    def render(self, answers: list[tuple[int, bytes | WorkerUnavailable]]) -> bytes:
        """The exposition text of these answers (L{WorkerAsker.each}) and the supervisor's gauges."""
        texts = [(index, body.decode("utf-8")) for index, body in answers if isinstance(body, bytes)]
        families = merge_expositions(texts)
        families.extend(self.own(len(answers) - len(texts)))
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_Families(families))
        return generate_latest(registry)

    def own(self, left_out: int) -> list[Metric]:
        """The supervisor's families: workers configured, alive, ready; restarts; workers left out of scrapes."""
        supervisor = self.asker.supervisor
        workers = supervisor.workers
        restarts = CounterMetricFamily("mdsvc_worker_restarts", "API workers started again after one exited, by worker.",
                                       labels=["worker"])
        missed = CounterMetricFamily("mdsvc_worker_scrapes_missed", "Times an API worker was left out of a scrape or "
                                     "readiness check (no answer on its admin socket in time), by worker.", labels=["worker"])
        for worker in workers:
            restarts.add_metric([str(worker.index)], worker.restarts)
            missed.add_metric([str(worker.index)], self.asker.missed.get(worker.index, 0))
        return [
            GaugeMetricFamily("mdsvc_workers", "API worker processes configured ([DEFAULT] metadata_workers).", value=len(workers)),
            GaugeMetricFamily("mdsvc_workers_alive", "API worker processes running.", value=len(self.asker.live())),
            GaugeMetricFamily("mdsvc_workers_ready", "API worker processes that said they serve.", value=sum(w.ready for w in workers)),
            GaugeMetricFamily("mdsvc_workers_unscraped", "API workers left out of this scrape (no answer in time).", value=left_out),
            restarts,
            missed,
        ]


class WorkersReadiness:
    """
    The supervisor's readiness (C{/readyz}, and C{/ready} of its admin socket): every worker
    running and answering, and every dependency of each ready; each result named
    C{API worker N: DEPENDENCY}.
    """

    def __init__(self, asker: WorkerAsker) -> None:
        self.asker = asker

    def check(self) -> Deferred[list[tuple[str, str | None]]]:
        """As L{mdsvc.readiness.Readiness.check}: C{(name, None)} when ready, C{(name, why not)} when not."""
        down: list[tuple[str, str | None]] = [(f"API worker {w.index}", "not running (the supervisor starts another)")
                for w in self.asker.supervisor.workers if w.process is None]

        def gathered(answers: list[tuple[int, bytes | WorkerUnavailable]]) -> list[tuple[str, str | None]]:
            results: list[tuple[str, str | None]] = []
            for index, body in answers:
                if not isinstance(body, bytes):
                    results.append((f"API worker {index}", f"its admin socket does not answer: {body}"))
                    continue
                for dependency in json.loads(body)["dependencies"]:
                    results.append((f"API worker {index}: {dependency['name']}", dependency["problem"]))
            return sorted(results + down, key=_by_worker)

        return self.asker.each(b"/ready").addCallback(gathered)


def _by_worker(result: tuple[str, str | None]) -> tuple[int, str]:
    found = re.match(r"API worker (\d+)", result[0])
    return (int(found.group(1)) if found else -1, result[0])


def remove_stale_sockets(admin_dir: str, role: str = "api", keep: Iterable[int] = ()) -> list[str]:
    """
    Remove the admin sockets of C{role}'s workers in C{admin_dir} that no process answers on
    (a worker killed, or a slot beyond C{metadata_workers} now), except those of C{keep}; the
    paths removed.
    """
    from mdsvc.admin.server import _answers

    removed = []
    kept = {int(i) for i in keep}
    for path in glob.glob(os.path.join(glob.escape(admin_dir), f"{glob.escape(role)}@*.sock")):
        found = WORKER_SOCKET.match(os.path.basename(path))
        if found is None or int(found.group("index")) in kept or _answers(path):
            continue
        try:
            os.unlink(path)
        except FileNotFoundError:
            continue
        removed.append(path)
    return sorted(removed)


__all__ = ["ASK_TIMEOUT", "WorkerAsker", "WorkerUnavailable", "WorkersExposition", "WorkersReadiness", "merge_expositions",
           "remove_stale_sockets", "worker_socket"]
