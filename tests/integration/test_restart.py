"""
Stopping and restarting without losing a request, in real processes started as systemd starts
a socket-activated C{Type=notify} service (tests/integration/fakesystemd.py): the listening
sockets belong to the test, which passes them in, so connections queue while no process runs.

  - notifications: READY once serving, WATCHDOG pings, RELOADING/READY around SIGHUP, STOPPING
    on SIGTERM;
  - SIGTERM drains: a request in flight is answered before the process exits, within
    C{[mdsvc] drain_timeout}, and a request still running after it is cut;
  - C{systemctl restart} under a boot storm (SIGTERM, wait for the exit, start again with the
    same socket): 0 failed requests, for all-in-one (the proxy listener passed in) and for the
    api role behind a network node (the API's port passed in).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from tests.integration.chains import NETWORK_ID, make_guests, port_open, start_storm, storm_result, write_guest_file
from tests.integration.fakesystemd import FakeSystemd, stop
from tests.integration.processes import ROOT, TWISTD, Twistd, free_port, manage

SLOW_TARGET = r'''
import http.server, sys, time
class Slow(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        time.sleep(float(sys.argv[2]))
        body = b'{"slow": true}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Slow).serve_forever()
'''


class RestartCase(SynchronousTestCase):
    """A directory, a fake systemd, guests and their instances in the store."""

    guests = 600

    def setUp(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="mdsvc-rs-")
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.systemd = FakeSystemd(self.dir)
        self.addCleanup(self.systemd.close)
        self.socket = os.path.join(self.dir, "mp.sock")
        self.api_port = free_port()
        self.population = make_guests(self.guests)
        self.guest_file = write_guest_file(os.path.join(self.dir, "guests.txt"), self.population)

    def config(self, name: str, body: str) -> str:
        path = os.path.join(self.dir, name)
        with open(path, "w") as f:
            f.write(f"[DEFAULT]\nstate_path = {self.dir}/state\nmetadata_proxy_shared_secret = s3cret\n"
                    f"metadata_proxy_socket = {self.socket}\nnova_metadata_port = {self.api_port}\n"
                    f"[neutron]\nservice_metadata_proxy = true\n{body}")
        return path

    def import_guests(self, config: str) -> None:
        documents = os.path.join(self.dir, "instances.json")
        with open(documents, "w") as f:
            json.dump([g.document() for g in self.population], f)
        manage(config, "instance", "import", documents)

    def spawn(self, role: str, config: str, **kw: Any) -> subprocess.Popen[bytes]:
        process = self.systemd.spawn(["mdsvc", "--role", role, "--config", config], os.path.join(self.dir, f"{role}.log"), **kw)
        self.addCleanup(lambda: process.poll() is None and (process.kill(), process.wait()))
        return process

    def log(self, role: str) -> str:
        with open(os.path.join(self.dir, f"{role}.log"), encoding="utf-8", errors="replace") as f:
            return f.read()

    def storm(self, port: int) -> subprocess.Popen[str]:
        storm = start_storm(port, self.guest_file)
        self.addCleanup(lambda: storm.poll() is None and storm.kill())
        return storm

    def curl(self, port: int, path: str, source: str = "127.1.0.1", timeout: float = 30) -> tuple[int, bytes]:
        done = subprocess.run(["curl", "-s", "-m", str(timeout), "--interface", source, "-o", "-", "-w", "\n%{http_code}",
                               f"http://127.0.0.1:{port}{path}"], capture_output=True, timeout=timeout + 10)
        body, _, code = done.stdout.rpartition(b"\n")
        return int(code or 0), body


class NotifyTests(RestartCase):
    """What a Type=notify service tells systemd."""

    guests = 1

    def test_lifecycle(self) -> None:
        """READY once serving; WATCHDOG every half WATCHDOG_USEC; RELOADING then READY on SIGHUP; STOPPING on SIGTERM."""
        port = self.systemd.listen("proxy")
        config = self.config("aio.conf", f"[proxy]\nnamespaces = none\nlisteners = network {NETWORK_ID} systemd:domain=INET:name=proxy\n"
                                         "[mdsvc]\napi_endpoint = tcp:0:interface=127.0.0.1\n")
        self.import_guests(config)
        process = self.spawn("all-in-one", config, watchdog_usec=400_000)
        ready = self.systemd.wait_for("READY")
        self.assertEqual((ready["MAINPID"], ready["STATUS"]), (str(process.pid), "serving (all-in-one)"))
        guest = self.population[0]
        self.assertEqual(self.curl(port, "/latest/meta-data/instance-id", guest.address), (200, guest.ec2_id.encode()))
        start = time.monotonic()
        for _ in range(4):
            self.systemd.wait_for("WATCHDOG", timeout=2)
        self.assertLess(time.monotonic() - start, 1.5)  # every 0.2 s
        process.send_signal(1)
        self.systemd.wait_for("RELOADING", timeout=10)
        self.systemd.wait_for("READY", timeout=10)
        stop(process)
        self.systemd.wait_for("STOPPING", timeout=5)

    def test_no_socket_passed(self) -> None:
        """A systemd: endpoint started without its socket: one line saying so, no traceback."""
        config = self.config("bad.conf", "[mdsvc]\napi_endpoint = systemd:domain=INET:name=api\n")
        process = subprocess.run([*TWISTD, "-n", "--pidfile=", "--logfile=-", "mdsvc", "--role", "api", "--config", config],
                                 capture_output=True, text=True, timeout=60, cwd=ROOT)
        self.assertNotEqual(process.returncode, 0)
        self.assertIn(f"mdsvc: {config}: [mdsvc] api_endpoint systemd:domain=INET:name=api: systemd passed no socket named 'api': "
                      "start the service through its .socket unit", process.stdout + process.stderr)
        self.assertNotIn("Traceback", process.stdout + process.stderr)


class DrainTests(RestartCase):
    """SIGTERM answers the requests in flight, within drain_timeout."""

    guests = 2

    def start_slow(self, delay: float, drain_timeout: float) -> tuple[subprocess.Popen[bytes], int]:
        target_port = free_port()
        target = subprocess.Popen([sys.executable, "-c", SLOW_TARGET, str(target_port), str(delay)])
        self.addCleanup(lambda: (target.terminate(), target.wait()))
        port = self.systemd.listen("proxy")
        config = self.config("aio.conf", f"[proxy]\nnamespaces = none\nlisteners = network {NETWORK_ID} systemd:domain=INET:name=proxy\n"
                                         f"[api]\nvendordata_providers = StaticJSON, DynamicJSON\n"
                                         f"vendordata_dynamic_targets = slow@http://127.0.0.1:{target_port}/\n"
                                         f"vendordata_dynamic_read_timeout = 30\n"
                                         f"[mdsvc]\napi_endpoint = tcp:0:interface=127.0.0.1\ndrain_timeout = {drain_timeout}\n")
        self.import_guests(config)
        process = self.spawn("all-in-one", config)
        self.systemd.wait_for("READY")
        return process, port

    def in_background(self, port: int, path: str, source: str) -> tuple[threading.Thread, list[Any]]:
        out: list[Any] = []
        thread = threading.Thread(target=lambda: out.append(self.curl(port, path, source)))
        thread.start()
        return thread, out

    def test_request_in_flight_answered(self) -> None:
        """A request taking 2 s when SIGTERM comes is answered (200), then the process exits."""
        process, port = self.start_slow(2.0, 30)
        guest = self.population[0]
        thread, out = self.in_background(port, "/openstack/latest/vendor_data2.json", guest.address)
        time.sleep(0.7)
        started = time.monotonic()
        stop(process)
        took = time.monotonic() - started
        thread.join(30)
        code, body = out[0]
        self.assertEqual(code, 200)
        self.assertEqual(json.loads(body)["slow"], {"slow": True})
        self.assertGreater(took, 0.8)
        self.assertLess(took, 10)
        self.assertIn("every connection answered and closed", self.log("all-in-one"))

    def test_bounded(self) -> None:
        """A request still running after drain_timeout (1 s) is cut: the process exits within about 1 s."""
        process, port = self.start_slow(20.0, 1)
        thread, out = self.in_background(port, "/openstack/latest/vendor_data2.json", self.population[0].address)
        time.sleep(0.5)
        started = time.monotonic()
        stop(process)
        took = time.monotonic() - started
        thread.join(30)
        self.assertLess(took, 5)
        self.assertNotEqual(out[0][0], 200)
        self.assertIn("still open after drain_timeout (1.0 s): closing them", self.log("all-in-one"))


class RestartUnderStormTests(RestartCase):
    """systemctl restart while every guest of a boot storm reads its metadata: no request fails."""

    def restart(self, role: str, config: str, process: subprocess.Popen[bytes], storm: subprocess.Popen[str]) -> subprocess.Popen[bytes]:
        time.sleep(0.5)
        self.assertIsNone(storm.poll(), "the storm ended before the restart")
        stop(process)  # systemctl restart: stop (and wait), then start
        again = self.spawn(role, config)
        self.systemd.wait_for("READY")
        self.assertIsNone(storm.poll(), "the storm ended before the new process served")
        return again

    def test_all_in_one(self) -> None:
        """all-in-one, its proxy listener passed in by systemd: restarted mid-storm, 0 failed requests."""
        port = self.systemd.listen("proxy")
        config = self.config("aio.conf", f"[proxy]\nnamespaces = none\nlisteners = network {NETWORK_ID} systemd:domain=INET:name=proxy\n"
                                         "[mdsvc]\napi_endpoint = tcp:0:interface=127.0.0.1\n")
        self.import_guests(config)
        process = self.spawn("all-in-one", config)
        self.systemd.wait_for("READY")
        storm = self.storm(port)
        self.restart("all-in-one", config, process, storm)
        result = storm_result(storm)
        self.assertEqual((result["errors"], result["requests"]), (0, self.guests * 28), result)
        self.assertNotIn("Traceback", self.log("all-in-one"))

    def test_api_behind_network_node(self) -> None:
        """The api role, its port passed in by systemd, restarted mid-storm behind a network node: 0 failed requests."""
        self.api_port = self.systemd.listen("api")
        api_conf = self.config("api.conf", "[mdsvc]\napi_endpoint = systemd:domain=INET:name=api\n")
        listener = free_port()
        node_conf = self.config("node.conf", f"[proxy]\nnamespaces = none\nlisteners = network {NETWORK_ID} tcp:{listener}:interface=127.0.0.1\n")
        self.import_guests(api_conf)
        api = self.spawn("api", api_conf)
        self.systemd.wait_for("READY")
        node = Twistd(["mdsvc", "--role", "network-node", "--config", node_conf], os.path.join(self.dir, "node.log"),
                      ready=lambda p: os.path.exists(self.socket) and port_open(listener))
        self.addCleanup(node.stop)
        storm = self.storm(listener)
        self.restart("api", api_conf, api, storm)
        result = storm_result(storm)
        self.assertEqual((result["errors"], result["requests"]), (0, self.guests * 28), result)
        self.assertNotIn("Traceback", self.log("api") + node.log())
