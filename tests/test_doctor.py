"""The doctor's verdicts, without processes: its lines, the endpoints it checks, what the secret round trip means."""

from __future__ import annotations

import io
import os
import shutil
import tempfile
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from mdsvc.admin.client import AdminUnavailable
from mdsvc.config import load_config
from mdsvc.doctor import Doctor, Finding, _tcp, run_doctor
from mdsvc.manage import run


class _Client:
    """An admin client answering C{/check/secret} with C{answer} (or failing with C{error})."""

    def __init__(self, answer: dict[str, Any] | None = None, error: str | None = None) -> None:
        self.answer, self.error = answer, error
        self.asked: list[dict[str, Any]] = []

    def get(self, route: str, **query: Any) -> dict[str, Any]:
        self.asked.append(dict(query, route=route))
        if self.error is not None:
            raise AdminUnavailable(self.error)
        return self.answer or {}


class DoctorTests(SynchronousTestCase):
    """What each finding says."""

    def setUp(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="mdsvc-doc-")
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.path = os.path.join(self.dir, "node.conf")
        with open(self.path, "w") as f:
            f.write(f"[DEFAULT]\nstate_path = {self.dir}\n")
        self.config = load_config(self.path)

    def test_lines(self) -> None:
        """OK lines are one line; a FAIL line is followed by its fix."""
        self.assertEqual(Finding("agent socket", True, "/s: accepting").lines(), ["OK    agent socket: /s: accepting"])
        self.assertEqual(Finding("metadata API", False, "refused", "start it").lines(),
                         ["FAIL  metadata API: refused", "      fix: start it"])

    def test_tcp_endpoints(self) -> None:
        """A tcp endpoint's address to connect to (a wildcard as loopback); others, and port 0, none."""
        self.assertEqual(_tcp("tcp:8775:interface=127.0.0.2"), ("127.0.0.2", 8775))
        self.assertEqual(_tcp("tcp:8775:interface=0.0.0.0"), ("127.0.0.1", 8775))
        self.assertEqual(_tcp(r"tcp6:8775:interface=\:\:1"), ("::1", 8775))
        self.assertIsNone(_tcp("unix:/run/api.sock"))
        self.assertIsNone(_tcp("tcp:0"))

    def test_nothing_running(self) -> None:
        """No process: the processes hop and the agent socket fail, with their fixes; exit status 1."""
        out = io.StringIO()
        self.assertEqual(run_doctor(self.config, [self.path], out), 1)
        text = out.getvalue()
        self.assertIn(f"FAIL  processes: no mdsvc process has an admin socket in {self.dir}/run\n", text)
        self.assertIn(f"FAIL  agent socket: {self.dir}/metadata_proxy: no such socket\n", text)
        self.assertTrue(text.endswith("broken: processes, agent socket\n"))

    def test_secret_verdicts(self) -> None:
        """403 to the agent's own signature: the secrets differ; anything but 403 to a wrong one: the API does not check."""
        cases = [
            ({"signed": 404, "wrong": 403}, True, "a signed request is accepted (404; expected 404 for an instance it does not have)"),
            ({"signed": 403, "wrong": 403}, False, "the API refuses the agent's signature (403)"),
            ({"signed": 404, "wrong": 404}, False, "the API accepts a wrong signature (answered 404)"),
            ({"signed": None, "wrong": None, "error": "Connection refused"}, False, "not checked: Connection refused"),
        ]
        for answer, ok, text in cases:
            doctor = Doctor(self.config, [self.path])
            doctor.check_secret(_Client(answer), None)  # type: ignore[arg-type]
            (finding,) = doctor.findings
            self.assertEqual((finding.hop, finding.ok), ("shared secret", ok))
            self.assertTrue(finding.text.startswith(text), finding.text)
        client = _Client({"signed": 200, "wrong": 403})
        Doctor(self.config, [self.path]).check_secret(client, ["i-1", "p-1"])  # type: ignore[arg-type]
        self.assertEqual(client.asked, [{"route": "/check/secret", "instance": "i-1", "project": "p-1"}])

    def test_bad_config(self) -> None:
        """A configuration that does not load is the first broken hop, said the doctor's way."""
        with open(self.path, "a") as f:
            f.write("log_format = xml\n")
        out = io.StringIO()
        self.assertEqual(run(["--config", self.path, "doctor"], out), 1)
        self.assertEqual(out.getvalue(), f"FAIL  config: {self.path}:3: [DEFAULT] log_format = 'xml': allowed: text | json\n"
                                         "      fix: correct the option named\nbroken: config\n")


class _Ready:
    """An admin client answering C{/ready} with C{dependencies}."""

    def __init__(self, path: str, dependencies: dict[str, str | None]) -> None:
        self.path = path
        self.dependencies = dependencies

    def get(self, route: str, **query: Any) -> dict[str, Any]:
        assert route == "/ready"
        return {"dependencies": [{"name": n, "problem": p} for n, p in self.dependencies.items()]}


class WorkersDoctorTests(SynchronousTestCase):
    """The api role with metadata_workers: the supervisor's socket and each worker's."""

    setUp = DoctorTests.setUp

    def test_each_worker(self) -> None:
        """The instance store as each worker sees it, naming the worker; the supervisor itself is not asked."""
        doctor = Doctor(self.config, [self.path])
        doctor.processes = {
            "api": (_Ready("/run/api.sock", {"API worker 0: instance store x": None}), {"role": "api", "workers": []}),
            "api@1": (_Ready("/run/api@1.sock", {"instance store sqlite:/s": "disk I/O error"}), {"role": "api", "worker": 1}),
            "api@0": (_Ready("/run/api@0.sock", {"instance store sqlite:/s": None}), {"role": "api", "worker": 0}),
        }  # type: ignore[dict-item]
        doctor.check_api()
        self.assertEqual([(f.hop, f.ok, f.text) for f in doctor.findings if f.hop == "instance store"], [
            ("instance store", True, "sqlite:/s: answering (as API worker 0 sees it, /run/api@0.sock)"),
            ("instance store", False, "sqlite:/s: disk I/O error (as API worker 1 sees it, /run/api@1.sock)"),
        ])
