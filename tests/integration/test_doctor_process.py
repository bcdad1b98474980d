"""
mdsvc-manage doctor against real deployments: a healthy node (exit 0), then five broken on
purpose (a wrong shared secret, the agent down, the API down, a namespace whose listener cannot
be bound, a lookup backend that cannot be reached): each time the doctor names the broken hop,
with its fix, and exits 1, while the hops that work are OK.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid as uuidlib

from twisted.trial.unittest import SynchronousTestCase

from tests.integration.netns import Cloud, new_id, require_netns, run
from tests.integration.processes import ROOT, Twistd, free_port, manage

NETWORK = "d0c70000-0000-4000-8000-000000000001"
GUEST = "127.1.0.7"
INSTANCE = str(uuidlib.uuid4())


def base_config(directory: str, api_port: int, listener_port: int, secret: str = "doctor-secret", extra: str = "") -> str:
    """A node's configuration: API on a loopback port, the agent socket, a fixed proxy listener."""
    return (f"[DEFAULT]\nstate_path = {directory}/state\nmetadata_proxy_socket = {directory}/mp.sock\n"
            f"metadata_proxy_shared_secret = {secret}\nnova_metadata_host = 127.0.0.1\nnova_metadata_port = {api_port}\n"
            f"[neutron]\nservice_metadata_proxy = true\n"
            f"[mdsvc]\napi_endpoint = tcp:{api_port}:interface=127.0.0.1\napi_connect_timeout = 1\napi_timeout = 2\n"
            f"agent_timeout = 3\n[proxy]\nnamespaces = none\nlisteners = network {NETWORK} tcp:{listener_port}:interface=127.0.0.1\n"
            f"{extra}")


class DoctorCase(SynchronousTestCase):
    """A node in a short temporary directory (it holds UNIX sockets), its processes stopped at the end."""

    def setUp(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="mdsvc-dr-")
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.api_port, self.listener_port = free_port(), free_port()

    def config(self, name: str, **kw: object) -> str:
        path = os.path.join(self.dir, name)
        with open(path, "w") as f:
            f.write(base_config(self.dir, self.api_port, self.listener_port, **kw))  # type: ignore[arg-type]
        return path

    def start(self, role: str, config: str) -> Twistd:
        """A twistd of C{role}, ready once its admin socket answers (and, for the API, its port)."""
        sock = os.path.join(self.dir, "state", "run", f"{role}.sock")
        process = Twistd(["mdsvc", "--role", role, "--config", config], os.path.join(self.dir, f"{role}.log"),
                         ready=lambda p: os.path.exists(sock) and (role not in ("api", "all-in-one") or "metadata-api starting on" in p.log()))
        self.addCleanup(process.stop)
        return process

    def import_guest(self, config: str) -> None:
        """The guest's instance, at GUEST in NETWORK."""
        path = os.path.join(self.dir, "guest.json")
        with open(path, "w") as f:
            json.dump({"uuid": INSTANCE, "name": "doc-guest", "project_id": "doc-project", "nics": [{
                "port_id": new_id(), "mac": "fa:16:3e:d0:c7:07", "network": {"id": NETWORK},
                "fixed_ips": [{"ip": GUEST, "subnet": {"id": new_id(), "cidr": "127.0.0.0/8"}}]}]}, f)
        manage(config, "instance", "import", path)

    def doctor(self, config: str, *args: str) -> tuple[int, dict[str, str], str]:
        """Run the doctor: its exit status, each hop's first line (by hop), and the whole output."""
        result = subprocess.run([sys.executable, "-m", "mdsvc.manage", "--config", config, "doctor", *args],
                                capture_output=True, text=True, timeout=120, cwd=ROOT)
        hops = {}
        for line in result.stdout.splitlines():
            if line.startswith(("OK ", "FAIL ")):
                verdict, _, rest = line.partition(" ")
                hop, _, text = rest.strip().partition(": ")
                hops.setdefault(hop, f"{verdict} {text}")
        return result.returncode, hops, result.stdout + result.stderr

    def assert_only_broken(self, hops: dict[str, str], broken: set[str], output: str) -> None:
        """Exactly the hops C{broken} failed."""
        self.assertEqual({hop for hop, verdict in hops.items() if verdict.startswith("FAIL")}, broken, output)


class DoctorProcessTests(DoctorCase):
    """Two processes (api, network-node) and three (api, agent, proxy), healthy and broken."""

    def test_healthy(self) -> None:
        """api + network-node, right secret, the guest known: every hop OK, exit 0; with --guest, its instance named."""
        config = self.config("node.conf")
        self.import_guest(config)
        self.start("api", config)
        self.start("network-node", config)
        status, hops, output = self.doctor(config)
        self.assertEqual(status, 0, output)
        self.assert_only_broken(hops, set(), output)
        for hop in ("config", "process api", "process network-node", "agent socket", "lookup backend", "metadata API",
                    "shared secret", "instance store", "API listener", f"fixed listener network {NETWORK}"):
            self.assertTrue(hops[hop].startswith("OK "), (hop, output))
        self.assertIn("all is well", output)
        status, hops, output = self.doctor(config, "--guest", GUEST, "--network", NETWORK)
        self.assertEqual(status, 0, output)
        self.assertIn(f"is instance {INSTANCE} (project doc-project)", hops["lookup backend"])
        self.assertIn("a signed request is accepted (200", hops["shared secret"])

    def test_wrong_secret(self) -> None:
        """The agent signs with another secret than the API checks: the shared secret hop, and only it, fails."""
        api = self.config("api.conf", secret="the-api-secret")
        node = self.config("node.conf", secret="another-secret")
        self.start("api", api)
        self.start("network-node", node)
        status, hops, output = self.doctor(node)
        self.assertEqual(status, 1, output)
        self.assert_only_broken(hops, {"shared secret"}, output)
        self.assertIn("the API refuses the agent's signature (403): metadata_proxy_shared_secret differs", hops["shared secret"])
        self.assertIn("fix: set the same metadata_proxy_shared_secret", output)
        self.assertNotIn("the-api-secret", output)
        self.assertNotIn("another-secret", output)

    def test_agent_down(self) -> None:
        """api, agent and proxy as three processes, the agent stopped: the proxy's agent socket hop fails."""
        config = self.config("node.conf")
        self.start("api", config)
        agent = self.start("agent", config)
        self.start("proxy", config)
        self.assertEqual(self.doctor(config)[0], 0)
        agent.stop()
        status, hops, output = self.doctor(config)
        self.assertEqual(status, 1, output)
        self.assert_only_broken(hops, {"agent socket"}, output)
        self.assertEqual(hops["agent socket"], f"FAIL {self.dir}/mp.sock: no such socket: the agent is not running")
        self.assertIn("fix: start the agent", output)

    def test_api_down(self) -> None:
        """api + network-node, the API stopped: the agent cannot reach it (and so the secret cannot be checked)."""
        config = self.config("node.conf")
        api = self.start("api", config)
        self.start("network-node", config)
        api.stop()
        status, hops, output = self.doctor(config)
        self.assertEqual(status, 1, output)
        self.assert_only_broken(hops, {"metadata API", "shared secret"}, output)
        self.assertIn(f"http://127.0.0.1:{self.api_port} from the agent: ", hops["metadata API"])
        self.assertIn("refused", hops["metadata API"])
        self.assertEqual(hops["shared secret"], "FAIL not checked: the API does not answer")
        self.assertIn("fix: start the API", output)

    def test_lookup_unreachable(self) -> None:
        """lookup = neutron with Neutron unreachable: the lookup backend hop fails, naming the backend."""
        closed = free_port()
        node = self.config("node.conf", extra=f"[mdsvc]\nlookup = neutron\n[neutron]\nendpoint_override = http://127.0.0.1:{closed}\n")
        self.start("api", self.config("api.conf"))
        self.start("network-node", node)
        status, hops, output = self.doctor(node)
        self.assertEqual(status, 1, output)
        self.assert_only_broken(hops, {"lookup backend"}, output)
        self.assertTrue(hops["lookup backend"].startswith("FAIL neutron: "), output)
        self.assertIn(f"127.0.0.1:{closed}", hops["lookup backend"])
        self.assertIn("fix: make the backend reachable", output)


class DoctorNamespaceTests(DoctorCase):
    """A namespace in which the proxy cannot bind its listener (another one holds 169.254.169.254:80)."""

    def test_namespace_without_listener(self) -> None:
        """Two qdhcp- namespaces, one blocked: its listener hop fails, naming the cause; the other is OK."""
        require_netns()
        cloud = Cloud(self.addCleanup)
        good, blocked = f"qdhcp-{new_id()}", f"qdhcp-{new_id()}"
        for name in (good, blocked):
            cloud.namespace(name)
            run("ip", "-n", name, "addr", "add", "169.254.169.254/32", "dev", "lo")
        holder = subprocess.Popen(["ip", "netns", "exec", blocked, sys.executable, "-c",
                                   "import socket, time\ns = socket.socket()\ns.bind(('169.254.169.254', 80))\ns.listen()\n"
                                   "print('bound', flush=True)\ntime.sleep(300)"], stdout=subprocess.PIPE, text=True)
        self.addCleanup(lambda: (holder.kill(), holder.wait()))
        self.assertEqual(holder.stdout.readline().strip(), "bound")  # type: ignore[union-attr]
        config = self.config("aio.conf", extra=f"[proxy]\nnamespaces = {good}, {blocked}\nrescan_interval = 1\n")
        self.start("all-in-one", config)
        deadline = time.monotonic() + 20
        while True:
            status, hops, output = self.doctor(config)
            if f"listener {blocked}" in hops and f"listener {good}" in hops or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        self.assertEqual(status, 1, output)
        self.assert_only_broken(hops, {f"listener {blocked}"}, output)
        self.assertTrue(hops[f"listener {good}"].startswith("OK bound (v4"), output)
        self.assertIn("no listener bound in the namespace", hops[f"listener {blocked}"])
        self.assertIn("Address already in use", hops[f"listener {blocked}"])
        self.assertIn("2 discovered", hops["namespaces"])
