"""
The api role with C{[DEFAULT] metadata_workers = 2}, as real processes: a supervisor and two
workers on one port; both answer; a killed worker is replaced and no request fails for longer
than one retry; a hung worker is killed and replaced; SIGHUP reaches the workers; SIGTERM stops
them all; under systemd the supervisor says READY once both serve, on the socket systemd passed.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import shutil
import signal
import socket
import tempfile
import threading
import time
import urllib.error
import urllib.request
from typing import Any

from prometheus_client.parser import text_string_to_metric_families
from twisted.trial.unittest import SynchronousTestCase

from tests.integration.fakesystemd import FakeSystemd, stop
from tests.integration.processes import Twistd, free_port, manage, write_config
from tests.integration.test_token_clients import document

UUID = "5a1e0000-0000-4000-8000-00000000c0de"
SECRET = "w0rkers-s3cret"


class Load:
    """
    Threads each GETting the instance's id in a loop, on a new connection every time, retrying a
    failed request once (as cloud-init's url_helper and the AWS SDKs do).

    @ivar retried: requests that needed their retry.
    @ivar failed: requests that failed after their retry too.
    """

    def __init__(self, base: str, threads: int = 6) -> None:
        self.base = base
        self.stop = threading.Event()
        self.done = 0
        self.retried = 0
        self.failed: list[str] = []
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def _once(self) -> str | None:
        try:
            with urllib.request.urlopen(self.base + "latest/meta-data/instance-id", timeout=20) as r:
                body = r.read()
            return None if body == b"i-00005a1e" else f"wrong answer {body[:40]!r}"
        except (urllib.error.URLError, OSError, ConnectionError) as e:
            return f"{type(e).__name__}: {e}"

    def _run(self) -> None:
        while not self.stop.is_set():
            problem = self._once()
            retried = problem is not None
            if retried:
                problem = self._once()
            with self._lock:
                self.done += 1
                self.retried += retried
                if problem is not None:
                    self.failed.append(problem)

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop.set()
        for thread in self._threads:
            thread.join(60)


class WorkersTests(SynchronousTestCase):
    """A supervisor and two workers on loopback, the guest (127.0.0.1) reaching the API itself."""

    def setUp(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="mdsvc-wk-")
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.config = write_config(self.dir, "[DEFAULT]\nmetadata_workers = 2\n[mdsvc]\naccess_log = true\n")
        docs = os.path.join(self.dir, "docs.json")
        with open(docs, "w") as f:
            json.dump([document(UUID, "workers", "127.0.0.1", "5a1e0000-0000-4000-8000-0000000000ee", 0x5A1E)], f)
        manage(self.config, "instance", "import", docs)

    def start(self) -> Twistd:
        api = Twistd(["mdsvc", "--role", "api", "--config", self.config], os.path.join(self.dir, "api.log"))
        self.addCleanup(api.stop)
        api.wait_until(lambda: "all 2 API workers are serving" in api.log(), "both workers")
        return api

    def pids(self, api: Twistd) -> dict[int, int]:
        """The current worker of each slot, by the supervisor's log."""
        return {int(i): int(p) for i, p in re.findall(r"started API worker (\d) \(pid (\d+)\)", api.log())}

    def test_both_answer(self) -> None:
        """Under load, both workers answer requests (each line of their logs names them)."""
        api = self.start()
        with Load(api.base, threads=8) as load:
            api.wait_until(lambda: "[worker 0 " in api.log() and "[worker 1 " in api.log() and load.done > 200, "answers of both")
        self.assertEqual(load.failed, [])
        self.assertEqual(load.retried, 0)
        for index in (0, 1):
            self.assertRegex(api.log(), rf"\[worker {index} mdsvc\.http\.AccessLog#info\] 127\.0\.0\.1 GET /latest/meta-data/instance-id 200")

    def test_killed_worker(self) -> None:
        """SIGKILL to a worker under load: replaced, and no request fails after its one retry."""
        api = self.start()
        first = self.pids(api)
        with Load(api.base) as load:
            time.sleep(1)
            os.kill(first[0], signal.SIGKILL)
            api.wait_until(lambda: self.pids(api)[0] != first[0], "a new worker 0", timeout=10)
            api.wait_until(lambda: api.log().count("metadata-api starting on") >= 4, "the new worker serving", timeout=30)
            before = load.done
            api.wait_until(lambda: load.done > before + 100, "more answers")
        self.assertEqual(load.failed, [])
        self.assertIn(f"API worker 0 (pid {first[0]}) was killed by signal 9", api.log())
        self.assertGreater(load.done, 200)

    def test_hung_worker(self) -> None:
        """A worker that stops (SIGSTOP) is killed after 10 s without a ping and replaced; requests still succeed."""
        api = self.start()
        first = self.pids(api)
        with Load(api.base) as load:
            os.kill(first[1], signal.SIGSTOP)
            api.wait_until(lambda: self.pids(api)[1] != first[1], "a new worker 1", timeout=30)
        self.assertEqual(load.failed, [])
        self.assertIn(f"API worker 1 (pid {first[1]}) has not pinged for", api.log())

    def test_tokens_across_workers(self) -> None:
        """With tokens required, a token one worker made is good at the other: no state shared but the secret."""
        with open(self.config, "a") as f:
            f.write("[api]\nimds_tokens = required\n[neutron]\nmetadata_proxy_shared_secret = s3cret\n")
        api = self.start()
        request = urllib.request.Request(api.base + "latest/api/token", method="PUT",
                                         headers={"X-aws-ec2-metadata-token-ttl-seconds": "60"})
        with urllib.request.urlopen(request, timeout=10) as r:
            token = r.read().decode()
        # Which worker accepts a connection is the kernel's choice: one may win every accept of
        # a client that connects one at a time, so eight clients at once, until both have
        # answered (each answer checked), or 30 s.
        answers: list[bytes] = []
        errors: list[Exception] = []

        def fetch() -> None:
            get = urllib.request.Request(api.base + "latest/meta-data/instance-id", headers={"X-aws-ec2-metadata-token": token})
            try:
                with urllib.request.urlopen(get, timeout=10) as r:
                    answers.append(r.read())
            except Exception as e:  # (a thread's exception would not fail the test)
                errors.append(e)

        served = [rf"\[worker {index} mdsvc\.http\.AccessLog#info\] 127\.0\.0\.1 GET /latest/meta-data/instance-id 200"
                  for index in (0, 1)]
        deadline = time.monotonic() + 30
        while not all(re.search(line, api.log()) for line in served) and time.monotonic() < deadline:
            clients = [threading.Thread(target=fetch) for _ in range(8)]
            for client in clients:
                client.start()
            for client in clients:
                client.join()
        self.assertEqual(errors, [])
        self.assertTrue(answers)
        self.assertEqual(set(answers), {b"i-00005a1e"})
        log = api.log()
        for line in served:
            self.assertRegex(log, line)

    def test_reload_and_stop(self) -> None:
        """SIGHUP: each worker reads its configuration again; SIGTERM: the workers stop, then the supervisor."""
        api = self.start()
        with open(self.config, "a") as f:
            f.write("[api]\ndhcp_domain = example.org\n")
        api.process.send_signal(signal.SIGHUP)
        api.wait_until(lambda: api.log().count("SIGHUP: read") == 3, "the supervisor's and both workers' reload")
        self.assertEqual(api.log().count("applied: [api] dhcp_domain"), 3)
        self.assertNotIn("next restart", api.log())
        api.stop()
        log = api.log()
        self.assertEqual(api.process.returncode, -signal.SIGTERM)
        # The supervisor's "Received SIGTERM" is the first; each worker logs its own after it,
        # possibly after the supervisor has logged another worker's stop.
        self.assertRegex(log.split("Received SIGTERM", 1)[1], r"API worker 0 \(pid \d+\) stopped")
        self.assertEqual(len(re.findall(r"API worker \d \(pid \d+\) stopped", log)), 2)
        self.assertNotIn("Traceback", log)


class SystemdWorkersTests(SynchronousTestCase):
    """The supervisor under systemd: the socket passed in, READY once both workers serve."""

    def test_socket_and_ready(self) -> None:
        """READY (with the workers' status) comes after both workers are up, on systemd's socket."""
        directory = tempfile.mkdtemp(prefix="mdsvc-wks-")
        self.addCleanup(shutil.rmtree, directory, True)
        systemd = FakeSystemd(directory)
        self.addCleanup(systemd.close)
        port = systemd.listen("api")
        config = write_config(directory, "[DEFAULT]\nmetadata_workers = 2\n")
        with open(config) as f:
            text = f.read().replace("api_endpoint = tcp:0:interface=127.0.0.1", "api_endpoint = systemd:domain=INET:name=api")
        with open(config, "w") as f:
            f.write(text)
        docs = os.path.join(directory, "docs.json")
        with open(docs, "w") as f:
            json.dump([document(UUID, "workers", "127.0.0.1", "5a1e0000-0000-4000-8000-0000000000ee", 0x5A1E)], f)
        manage(config, "instance", "import", docs)
        process = systemd.spawn(["mdsvc", "--role", "api", "--config", config], os.path.join(directory, "api.log"))
        self.addCleanup(lambda: process.poll() is None and (process.kill(), process.wait()))
        ready = systemd.wait_for("READY", timeout=60)
        self.assertEqual(ready["STATUS"], "serving (api, 2 workers)")
        with open(os.path.join(directory, "api.log")) as f:
            self.assertIn("all 2 API workers are serving", f.read())
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/latest/meta-data/instance-id", timeout=10) as r:
            self.assertEqual(r.read(), b"i-00005a1e")
        stop(process)
        systemd.wait_for("STOPPING", timeout=5)




class WorkersOperationsTests(SynchronousTestCase):
    """
    Operating a supervisor and two workers: one metrics listener (the supervisor's) for the whole
    API, /readyz of both workers, the admin sockets of each, and mdsvc-manage trace and doctor.
    """

    def setUp(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="mdsvc-wo-")
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.metrics = free_port()
        self.config = write_config(self.dir, "[DEFAULT]\nmetadata_workers = 2\n[mdsvc]\naccess_log = true\n"
                                             f"metrics_endpoint = tcp:{self.metrics}:interface=127.0.0.1\n"
                                             f"[neutron]\nservice_metadata_proxy = true\nmetadata_proxy_shared_secret = {SECRET}\n")
        docs = os.path.join(self.dir, "docs.json")
        with open(docs, "w") as f:
            json.dump([document(UUID, "workers", "127.0.0.1", "5a1e0000-0000-4000-8000-0000000000ee", 0x5A1E)], f)
        manage(self.config, "instance", "import", docs)
        # a worker socket left by an earlier run with three workers: removed at the supervisor's start
        run = os.path.join(self.dir, "state", "run")
        os.makedirs(run, mode=0o700)
        with socket.socket(socket.AF_UNIX) as stale:
            stale.bind(os.path.join(run, "api@2.sock"))
        self.api = Twistd(["mdsvc", "--role", "api", "--config", self.config], os.path.join(self.dir, "api.log"))
        self.addCleanup(self.api.stop)
        self.api.wait_until(lambda: "all 2 API workers are serving" in self.api.log(), "both workers")

    def signed(self) -> bytes:
        """A request signed as the agent signs it, on a new connection (so either worker may take it)."""
        request = urllib.request.Request(self.api.base + "openstack/latest/meta_data.json", headers={
            "X-Instance-ID": UUID, "X-Tenant-ID": "proj-workers", "X-Forwarded-For": "127.0.0.1",
            "X-Instance-ID-Signature": hmac.new(SECRET.encode(), UUID.encode(), hashlib.sha256).hexdigest()})
        with urllib.request.urlopen(request, timeout=10) as r:
            return r.read()

    def worker_answers(self) -> dict[str, float]:
        """The API's 200 answers, by worker, as the supervisor's /metrics says."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics}/metrics", timeout=10) as r:
            text = r.read().decode()
        answers: dict[str, float] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == "mdsvc_requests_total" and sample.labels.get("hop") == "api" and sample.labels.get("code") == "200":
                    answers[sample.labels["worker"]] = answers.get(sample.labels["worker"], 0) + sample.value
        return answers

    def test_metrics_readiness_trace_doctor(self) -> None:
        """Signed requests move both workers' counters on the supervisor's /metrics; ready; traced; the doctor is content."""
        self.assertEqual(self.worker_answers(), {})  # (no answer yet)
        # eight at once: the kernel may give every accept of one client at a time to one worker
        sent, bodies = 0, []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            clients = [threading.Thread(target=lambda: bodies.append(self.signed())) for _ in range(8)]
            for client in clients:
                client.start()
            for client in clients:
                client.join()
            sent += len(clients)
            if len([n for n in self.worker_answers().values() if n > 0]) == 2:
                break
        self.assertEqual(len(bodies), sent)  # (a client that failed appended nothing)
        self.assertTrue(all(UUID.encode() in body for body in bodies))
        answers = self.worker_answers()
        self.assertEqual(sorted(answers), ["0", "1"])
        self.assertTrue(all(n > 0 for n in answers.values()), answers)
        self.assertEqual(sum(answers.values()), sent)
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics}/metrics", timeout=10) as r:
            text = r.read().decode()
        self.assertEqual(text.count("# TYPE mdsvc_requests_total counter"), 1)
        self.assertEqual(text.count("# HELP mdsvc_requests_total "), 1)
        self.assertIn("mdsvc_workers_alive 2.0", text)
        self.assertIn('mdsvc_worker_restarts_total{worker="0"} 0.0', text)
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics}/readyz", timeout=10) as r:
            ready = r.read().decode()
        self.assertTrue(ready.startswith("ready\n"), ready)
        self.assertIn("ok: API worker 0: instance store", ready)
        self.assertIn("ok: API worker 1: instance store", ready)
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics}/healthz", timeout=10) as r:
            self.assertEqual(r.read(), b"ok\n")
        run = os.path.join(self.dir, "state", "run")
        self.assertEqual(sorted(os.listdir(run)), ["api.sock", "api@0.sock", "api@1.sock"])
        trace = manage(self.config, "trace", UUID).stdout
        self.assertEqual(trace.count("GET /openstack/latest/meta_data.json"), sent, trace)
        doctor = manage(self.config, "doctor", check=False).stdout
        self.assertRegex(doctor, r"OK    process api: pid \d+, supervisor of 2 API workers \(running: 0 \(pid \d+\), 1 \(pid \d+\)\)")
        self.assertIn("OK    process api@0: pid", doctor)
        self.assertIn("OK    process api@1: pid", doctor)
        self.assertIn("as API worker 1 sees it", doctor)
        self.assertNotIn("FAIL", doctor)

    def test_killed_worker(self) -> None:
        """A worker killed leaves no stale socket behind: its replacement's is there, and /readyz is ready again."""
        pids = {int(i): int(p) for i, p in re.findall(r"started API worker (\d) \(pid (\d+)\)", self.api.log())}
        os.kill(pids[1], signal.SIGKILL)
        self.api.wait_until(lambda: "removed the admin socket" in self.api.log(), "the dead worker's socket removed")
        self.api.wait_until(lambda: self.api.log().count("metadata-api starting on") >= 4, "the new worker serving")

        def ready() -> bool:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics}/readyz", timeout=10) as r:
                    return r.status == 200
            except urllib.error.HTTPError:
                return False

        self.api.wait_until(ready, "ready again")
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics}/metrics", timeout=10) as r:
            self.assertIn('mdsvc_worker_restarts_total{worker="1"} 1.0', r.read().decode())
        doctor = manage(self.config, "doctor", check=False).stdout
        self.assertNotIn("FAIL", doctor)

    def test_stopped_worker_left_out(self) -> None:
        """A worker that does not answer (SIGSTOP) is left out of a scrape within the timeout, counted, and /readyz names it."""
        pids = {int(i): int(p) for i, p in re.findall(r"started API worker (\d) \(pid (\d+)\)", self.api.log())}
        os.kill(pids[1], signal.SIGSTOP)
        self.addCleanup(os.kill, pids[1], signal.SIGCONT)
        started = time.monotonic()
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics}/metrics", timeout=10) as r:
            text = r.read().decode()
        self.assertLess(time.monotonic() - started, 5)
        self.assertIn("mdsvc_workers_unscraped 1.0", text)
        self.assertIn('mdsvc_worker_scrapes_missed_total{worker="1"} 1.0', text)
        self.assertIn('mdsvc_info{role="api",version=', text)
        self.assertIn('worker="0"}', text.split("# HELP mdsvc_info")[1].split("# HELP")[0])
        self.assertNotIn('worker="1"}', text.split("# HELP mdsvc_info")[1].split("# HELP")[0])
        with self.assertRaises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(f"http://127.0.0.1:{self.metrics}/readyz", timeout=10)
        body = caught.exception.read().decode()
        self.assertEqual(caught.exception.code, 503)
        self.assertIn("not ready: API worker 1: its admin socket does not answer: no answer within 2s", body)
        self.assertIn("ok: API worker 0: instance store", body)
