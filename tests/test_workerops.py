"""The supervisor of metadata_workers seen from outside (L{mdsvc.workerops}): merged metrics, readiness of all, stale sockets."""

from __future__ import annotations

import json
import os
import shutil
import socket
import tempfile
from typing import Any

from prometheus_client.parser import text_string_to_metric_families
from twisted.internet.defer import Deferred, succeed
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase

from mdsvc.admin.server import AdminHandler, AdminState
from mdsvc.exposition import MetricsHandler
from mdsvc.http import HTTPRequest, HTTPResponse
from mdsvc.workerops import (
    ASK_TIMEOUT,
    WorkerAsker,
    WorkersExposition,
    WorkersReadiness,
    WorkerUnavailable,
    merge_expositions,
    remove_stale_sockets,
)
from mdsvc.workers import Worker

WORKER_TEXT = """\
# HELP mdsvc_requests_total Requests answered, by role, hop and status.
# TYPE mdsvc_requests_total counter
mdsvc_requests_total{code="200",hop="api",role="api"} %d.0
# HELP mdsvc_latency_seconds Seconds taken.
# TYPE mdsvc_latency_seconds histogram
mdsvc_latency_seconds_bucket{le="0.001",stage="api_render"} %d.0
mdsvc_latency_seconds_bucket{le="+Inf",stage="api_render"} %d.0
mdsvc_latency_seconds_count{stage="api_render"} %d.0
mdsvc_latency_seconds_sum{stage="api_render"} 0.25
# HELP mdsvc_trace_records Requests held in the trace ring.
# TYPE mdsvc_trace_records gauge
mdsvc_trace_records 7.0
"""


def worker_text(n: int) -> str:
    """A worker's exposition text whose counters are all C{n}."""
    return WORKER_TEXT % (n, n, n, n)


class _Supervisor:
    """A supervisor's workers: C{running} of them have a process."""

    def __init__(self, count: int, dead: tuple[int, ...] = ()) -> None:
        self.workers = [Worker(i, process=None if i in dead else object(), pid=100 + i, ready=i not in dead) for i in range(count)]


class _Asker(WorkerAsker):
    """An asker whose workers answer from C{answers} (route -> index -> body, or an exception)."""

    def __init__(self, supervisor: Any, answers: dict[bytes, dict[int, Any]]) -> None:
        super().__init__(MemoryReactorClock(), "/nonexistent", supervisor)
        self.answers = answers

    def get(self, index: int, route: bytes) -> Deferred[bytes]:
        from twisted.internet.defer import fail

        answer = self.answers[route][index]
        return fail(answer) if isinstance(answer, Exception) else succeed(answer)


class MergeTests(SynchronousTestCase):
    """L{merge_expositions}."""

    def test_labelled_once_per_family(self) -> None:
        """Every sample of every worker, labelled worker="N"; one family (HELP and TYPE) per name."""
        families = merge_expositions([(0, worker_text(3)), (1, worker_text(5))])
        self.assertEqual([f.name for f in families], ["mdsvc_requests", "mdsvc_latency_seconds", "mdsvc_trace_records"])
        self.assertEqual([f.type for f in families], ["counter", "histogram", "gauge"])
        requests = families[0].samples
        self.assertEqual([(s.labels, s.value) for s in requests],
                         [({"code": "200", "hop": "api", "role": "api", "worker": "0"}, 3.0),
                          ({"code": "200", "hop": "api", "role": "api", "worker": "1"}, 5.0)])
        self.assertEqual({(s.name, s.labels["worker"]) for s in families[1].samples},
                         {(name, w) for w in "01" for name in ("mdsvc_latency_seconds_bucket", "mdsvc_latency_seconds_count",
                                                               "mdsvc_latency_seconds_sum")})

    def test_exposition(self) -> None:
        """/metrics of the supervisor: the workers that answered, labelled, and its own gauges counting the one that did not."""
        asker = _Asker(_Supervisor(3, dead=(2,)), {b"/metrics": {0: worker_text(3).encode(), 1: WorkerUnavailable("no answer within 2s")}})
        asker.supervisor.workers[0].restarts = 4
        text = self.successResultOf(WorkersExposition(asker)()).decode()
        self.assertEqual(text.count("# HELP mdsvc_requests_total "), 1)
        self.assertEqual(text.count("# TYPE mdsvc_requests_total counter"), 1)
        samples = {(s.name, tuple(sorted(s.labels.items()))): s.value for f in text_string_to_metric_families(text) for s in f.samples}
        self.assertEqual(samples[("mdsvc_requests_total", (("code", "200"), ("hop", "api"), ("role", "api"), ("worker", "0")))], 3.0)
        self.assertNotIn("worker=\"1\"} 3", text)
        self.assertEqual(samples[("mdsvc_workers", ())], 3.0)
        self.assertEqual(samples[("mdsvc_workers_alive", ())], 2.0)
        self.assertEqual(samples[("mdsvc_workers_ready", ())], 2.0)
        self.assertEqual(samples[("mdsvc_workers_unscraped", ())], 1.0)
        self.assertEqual(samples[("mdsvc_worker_restarts_total", (("worker", "0"),))], 4.0)
        self.assertEqual(samples[("mdsvc_worker_scrapes_missed_total", (("worker", "1"),))], 1.0)
        self.assertEqual(samples[("mdsvc_worker_scrapes_missed_total", (("worker", "0"),))], 0.0)

    def test_metrics_handler(self) -> None:
        """The metrics listener's /metrics renders what the exposition gives (a Deferred)."""
        handler = MetricsHandler(None, None, exposition=lambda: succeed(b"x 1.0\n"))
        response = self.successResultOf(handler(HTTPRequest(b"GET", b"/metrics", b"HTTP/1.1", {b"host": [b"x"]}, b"", None)))
        self.assertEqual((response.code, response.body), (200, b"x 1.0\n"))


def ready_answer(*dependencies: tuple[str, str | None]) -> bytes:
    """A worker's C{/ready} answer."""
    return json.dumps({"dependencies": [{"name": n, "problem": p} for n, p in dependencies]}).encode()


class ReadinessTests(SynchronousTestCase):
    """L{WorkersReadiness}."""

    def test_all_ready(self) -> None:
        """Every worker's dependencies, each named by its worker."""
        answer = ready_answer(("instance store sqlite:/x", None))
        results = self.successResultOf(WorkersReadiness(_Asker(_Supervisor(2), {b"/ready": {0: answer, 1: answer}})).check())
        self.assertEqual(results, [("API worker 0: instance store sqlite:/x", None), ("API worker 1: instance store sqlite:/x", None)])

    def test_not_ready(self) -> None:
        """A worker's dependency that does not answer, a worker that does not answer, a worker not running: each named."""
        asker = _Asker(_Supervisor(3, dead=(2,)), {b"/ready": {0: ready_answer(("instance store nova", "database is gone")),
                                                               1: WorkerUnavailable(f"no answer within {ASK_TIMEOUT:g}s")}})
        results = self.successResultOf(WorkersReadiness(asker).check())
        self.assertEqual(results, [("API worker 0: instance store nova", "database is gone"),
                                   ("API worker 1", "its admin socket does not answer: no answer within 2s"),
                                   ("API worker 2", "not running (the supervisor starts another)")])
        self.assertEqual(asker.missed, {1: 1})


class AskerTests(SynchronousTestCase):
    """L{WorkerAsker} over a real path, with a memory reactor: a worker that does not answer in time is left out."""

    def test_timeout(self) -> None:
        """No answer within the timeout: WorkerUnavailable saying so, counted as missed."""
        reactor = MemoryReactorClock()
        asker = WorkerAsker(reactor, "/run/mdsvc", _Supervisor(1))
        d = asker.each(b"/metrics")
        self.assertEqual(reactor.unixClients[0][0], "/run/mdsvc/api@0.sock")
        self.assertNoResult(d)
        reactor.advance(ASK_TIMEOUT)
        ((index, problem),) = self.successResultOf(d)
        self.assertEqual((index, str(problem)), (0, "no answer within 2s"))
        self.assertEqual(asker.missed, {0: 1})


class StaleSocketTests(SynchronousTestCase):
    """L{remove_stale_sockets}."""

    def test_removed(self) -> None:
        """Only the worker sockets no process answers on, except those kept; the supervisor's and other roles' untouched."""
        directory = tempfile.mkdtemp(prefix="mdsvc-st-")
        self.addCleanup(shutil.rmtree, directory, True)
        listening = []
        for name in ("api@0.sock", "api@1.sock", "api@2.sock", "api.sock", "agent.sock", "api@x.sock"):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.bind(os.path.join(directory, name))
            if name == "api@0.sock":
                s.listen(1)
                listening.append(s)
                self.addCleanup(s.close)
            else:
                s.close()  # the file stays: stale
        removed = remove_stale_sockets(directory, keep=[2])
        self.assertEqual(removed, [os.path.join(directory, "api@1.sock")])
        self.assertEqual(sorted(os.listdir(directory)), ["agent.sock", "api.sock", "api@0.sock", "api@2.sock", "api@x.sock"])


class AdminRoutesTests(SynchronousTestCase):
    """The admin socket's routes for workers and their supervisor."""

    def call(self, parts: dict[str, Any], target: bytes) -> HTTPResponse:
        result = AdminHandler(AdminState("api", (), parts))(HTTPRequest(b"GET", target, b"HTTP/1.1", {b"host": [b"x"]}, b"", None))
        return result if isinstance(result, HTTPResponse) else self.successResultOf(result)

    def test_metrics(self) -> None:
        """/metrics: the process's exposition text (what the supervisor gathers); 404 for a process without."""
        response = self.call({"exposition": lambda: b"x 1.0\n"}, b"/metrics")
        self.assertEqual((response.code, response.body), (200, b"x 1.0\n"))
        self.assertEqual(self.call({}, b"/metrics").code, 404)

    def test_status(self) -> None:
        """A worker says its number; the supervisor lists its workers; its trace has no records (its workers have them)."""
        worker = json.loads(self.call({"worker_fd": 3, "worker_index": 1}, b"/status").body)
        self.assertEqual((worker["worker"], "workers" in worker), (1, False))
        supervisor = _Supervisor(2, dead=(1,))
        supervisor.workers[1].restarts = 2
        status = json.loads(self.call({"supervisor": supervisor}, b"/status").body)
        self.assertEqual(status["worker"], None)
        self.assertEqual(status["workers"], [{"index": 0, "pid": 100, "ready": True, "restarts": 0},
                                             {"index": 1, "pid": None, "ready": False, "restarts": 2}])
        self.assertEqual(json.loads(self.call({"supervisor": supervisor}, b"/trace").body)["records"], [])
