"""
SIGHUP in real processes, under a running boot storm (bench/storm.py: guests at 127.1.0.N each
replaying cloud-init's boot through a proxy listener): the shared secret rotated across an api
and a network-node process, in either order, fails no request; the vendordata file and the log
level change without a restart; a bad file is refused and the node goes on.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time

from twisted.trial.unittest import SynchronousTestCase

from tests.integration.chains import NETWORK_ID, make_guests, start_storm, storm_result, write_guest_file
from tests.integration.processes import Twistd, fetch, free_port, manage


def write(path: str, text: str) -> str:
    """Write C{text} to C{path} (a configuration changed in place, as an operator does)."""
    with open(path, "w") as f:
        f.write(text)
    return path


class StormCase(SynchronousTestCase):
    """An api and a network-node process reading two files (nova.conf and metadata_agent.ini, say)."""

    guests = 600

    def setUp(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="mdsvc-hup-")
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.api_port, self.listener = free_port(), free_port()
        self.socket = os.path.join(self.dir, "mp.sock")
        self.api_conf = os.path.join(self.dir, "api.conf")
        self.node_conf = os.path.join(self.dir, "node.conf")
        self.write_api("first-secret")
        self.write_node("first-secret")
        self.population = make_guests(self.guests)
        documents = os.path.join(self.dir, "instances.json")
        with open(documents, "w") as f:
            json.dump([g.document() for g in self.population], f)
        manage(self.api_conf, "instance", "import", documents)
        self.guest_file = write_guest_file(os.path.join(self.dir, "guests.txt"), self.population)
        self.api = self.start("api", self.api_conf)
        self.node = self.start("network-node", self.node_conf, ready=lambda p: os.path.exists(self.socket))

    def write_api(self, secret: str, extra: str = "") -> None:
        write(self.api_conf, f"[DEFAULT]\nstate_path = {self.dir}/state\n[neutron]\nservice_metadata_proxy = true\n"
                             f"metadata_proxy_shared_secret = {secret}\n[mdsvc]\napi_endpoint = tcp:{self.api_port}:interface=127.0.0.1\n"
                             f"secret_rotation_window = 4\n{extra}")

    def write_node(self, secret: str, extra: str = "") -> None:
        write(self.node_conf, f"[DEFAULT]\nstate_path = {self.dir}/state\nmetadata_proxy_shared_secret = {secret}\n"
                              f"metadata_proxy_socket = {self.socket}\nnova_metadata_port = {self.api_port}\n"
                              f"[proxy]\nnamespaces = none\nlisteners = network {NETWORK_ID} tcp:{self.listener}:interface=127.0.0.1\n"
                              f"[mdsvc]\nsecret_rotation_window = 4\n{extra}")

    def start(self, role: str, config: str, ready: object = None) -> Twistd:
        process = Twistd(["mdsvc", "--role", role, "--config", config], os.path.join(self.dir, f"{role}.log"), ready=ready)
        self.addCleanup(process.stop)
        return process

    def storm(self) -> subprocess.Popen[str]:
        """The boot storm, started: every guest boots once, 30 at a time."""
        storm = start_storm(self.listener, self.guest_file)
        self.addCleanup(lambda: storm.poll() is None and storm.kill())
        time.sleep(0.5)
        self.assertIsNone(storm.poll(), "the storm ended before anything was changed")
        return storm

    def hup(self, process: Twistd, count: int) -> None:
        """SIGHUP, and wait until the process says it read its files again (the C{count}th time)."""
        process.process.send_signal(signal.SIGHUP)
        process.wait_until(lambda: process.log().count("SIGHUP: read") >= count, "the reload", timeout=10)

    def assertClean(self) -> None:
        for process in (self.api, self.node):
            self.assertNotIn("Traceback", process.log())
            self.assertNotIn("Unhandled", process.log())


class SecretRotationTests(StormCase):
    """A new shared secret under a boot storm: 0 failed requests, whichever node gets it first."""

    def test_agent_first(self) -> None:
        """The network node first (its agent re-signs what the API refuses), then the API."""
        storm = self.storm()
        self.write_node("second-secret")
        self.hup(self.node, 1)
        time.sleep(0.5)
        self.write_api("second-secret")
        self.hup(self.api, 1)
        self.assertIsNone(storm.poll(), "the storm ended before both nodes had the new secret")
        result = storm_result(storm)
        self.assertEqual((result["errors"], result["requests"]), (0, self.guests * 28), result)
        self.assertIn("applied: [neutron] metadata_proxy_shared_secret", self.node.log())
        self.assertIn("applied: [neutron] metadata_proxy_shared_secret", self.api.log())
        self.assertIn("refuses the new metadata_proxy_shared_secret and takes the previous", self.node.log())
        self.assertNotIn("second-secret", self.node.log() + self.api.log())
        self.assertClean()

    def test_api_first(self) -> None:
        """The API first (it takes both secrets for the window), then the network node; after the window only the new one."""
        storm = self.storm()
        self.write_api("second-secret")
        self.hup(self.api, 1)
        time.sleep(0.5)
        self.write_node("second-secret")
        self.hup(self.node, 1)
        self.assertIsNone(storm.poll(), "the storm ended before both nodes had the new secret")
        result = storm_result(storm)
        self.assertEqual((result["errors"], result["requests"]), (0, self.guests * 28), result)
        from mdsvc.hop import sign

        guest = self.population[0]
        url = f"http://127.0.0.1:{self.api_port}/latest/meta-data/instance-id"
        old = {"X-Instance-ID": guest.uuid, "X-Tenant-ID": guest.project, "X-Instance-ID-Signature": sign("first-secret", guest.uuid)}
        self.api.wait_until(lambda: fetch(url, headers=old)[0] == 403, "the old secret's end", timeout=10)
        new = dict(old, **{"X-Instance-ID-Signature": sign("second-secret", guest.uuid)})
        code, _, body = fetch(url, headers=new)
        self.assertEqual((code, body), (200, guest.ec2_id.encode()))
        self.assertClean()


class ReloadTests(StormCase):
    """Other things a SIGHUP applies, and what it refuses."""

    guests = 3

    def test_vendordata_and_debug(self) -> None:
        """A new vendordata file and debug = true take effect without a restart; the listener change is named for later."""
        data = write(os.path.join(self.dir, "vendor.json"), json.dumps({"cloud": "new"}))
        url = f"http://127.0.0.1:{self.listener}/openstack/latest/vendor_data.json"
        guest = self.population[0]
        first = subprocess.run(["curl", "-s", "--interface", guest.address, url], capture_output=True, timeout=10).stdout
        self.assertEqual(json.loads(first), {})
        self.write_api("first-secret", f"[api]\nvendordata_jsonfile_path = {data}\n[DEFAULT]\ndebug = true\nmetadata_listen_port = 1\n")
        self.hup(self.api, 1)
        second = subprocess.run(["curl", "-s", "--interface", guest.address, url], capture_output=True, timeout=10).stdout
        self.assertEqual(json.loads(second), {"cloud": "new"})
        self.api.wait_until(lambda: "Metadata request headers" in self.api.log(), "the debug header line")
        self.assertIn("taking effect at the next restart: [DEFAULT] metadata_listen_port", self.api.log())

    def test_bad_file(self) -> None:
        """A bad value: one line naming file, line and option; the node keeps serving."""
        self.write_node("first-secret", "[metadata_rate_limiting]\nburst_query_rate_limit = lots\n")
        self.node.process.send_signal(signal.SIGHUP)
        self.node.wait_until(lambda: "the running configuration is kept" in self.node.log(), "the refusal")
        self.assertIn(f"{self.node_conf}:12: [metadata_rate_limiting] burst_query_rate_limit = 'lots'", self.node.log())
        guest = self.population[1]
        url = f"http://127.0.0.1:{self.listener}/latest/meta-data/instance-id"
        done = subprocess.run(["curl", "-s", "--interface", guest.address, url], capture_output=True, timeout=10)
        self.assertEqual(done.stdout, guest.ec2_id.encode())
