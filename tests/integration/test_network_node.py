"""
The network node in a small cloud of real network namespaces: two tenant networks with a guest
at the same IP (10.0.0.5) behind qdhcp- namespaces, a routed network behind a qrouter- namespace
with the L3 agent's iptables REDIRECT, and a guest reaching [fe80::a9fe:a9fe] over IPv6.  The
proxy discovers the namespaces as they come and go; inside each guest an unmodified cloud-init
OpenStack reader and curl read that guest's own metadata, never another's.  Then the faults:
API stopped or hung, agent stopped, lookup backend down, socket removed.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

from twisted.trial.unittest import SynchronousTestCase

from tests.integration.netns import Cloud, curl, new_id, require_netns, run
from tests.integration.processes import PROBE, Twistd, client_python, free_port, manage

META = "http://169.254.169.254/"



def instance(uuid: str, name: str, project: str, network: str, ip: str, mac: str, cidr: str = "10.0.0.0/24") -> dict[str, object]:
    """An instance document with one port."""
    return {
        "uuid": uuid, "name": name, "project_id": project, "key_pairs": [{"name": f"{name}-key", "public_key": f"ssh-ed25519 AAAA{name}"}],
        "user_data": "", "metadata": {"who": name},
        "nics": [{"port_id": new_id(), "mac": mac, "vif_type": "ovs", "network": {"id": network, "mtu": 1450},
                  "fixed_ips": [{"ip": ip, "subnet": {"id": new_id(), "cidr": cidr, "dns": ["10.0.0.2"]}}]}],
    }


class NodeCase(SynchronousTestCase):
    """A temporary state directory (short: it holds the agent's UNIX socket) and a config writer."""

    def setUp(self) -> None:
        require_netns()
        self.dir = tempfile.mkdtemp(prefix="mdsvc-")
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.cloud = Cloud(self.addCleanup)
        self.socket = os.path.join(self.dir, "metadata_proxy")
        self.api_port = free_port()

    def config(self, name: str, body: str) -> str:
        path = os.path.join(self.dir, name)
        with open(path, "w") as f:
            f.write(
                f"[DEFAULT]\nstate_path = {self.dir}\nmetadata_proxy_shared_secret = s3cr3t\nnova_metadata_port = {self.api_port}\n"
                f"metadata_proxy_socket = {self.socket}\n"
                f"[neutron]\nservice_metadata_proxy = true\n"
                f"[mdsvc]\napi_endpoint = tcp:{self.api_port}:interface=127.0.0.1\napi_connect_timeout = 1\napi_timeout = 3\n"
                f"agent_timeout = 5\n"
                f"[proxy]\nrescan_interval = 1\n{body}"
            )
        return path

    def import_docs(self, config: str, docs: list[dict[str, object]], routers: list[dict[str, object]] = ()) -> None:  # type: ignore[assignment]
        for kind, items in (("instance", docs), ("router", routers)):
            if items:
                path = os.path.join(self.dir, f"{kind}-{time.monotonic_ns()}.json")
                with open(path, "w") as f:
                    json.dump(list(items), f)
                manage(config, kind, "import", path)

    def start(self, role: str, config: str, ready: object = None) -> Twistd:
        proc = Twistd(["mdsvc", "--role", role, "--config", config], os.path.join(self.dir, f"{role}-{time.monotonic_ns()}.log"), ready=ready)
        self.addCleanup(proc.stop)
        return proc

    def eventually(self, namespace: str, url: str, expect: bytes, timeout: float = 20, *extra: str) -> bytes:
        """curl until the body holds C{expect} (discovery is asynchronous)."""
        deadline = time.monotonic() + timeout
        last: tuple[int, bytes, float] = (0, b"", 0.0)
        while time.monotonic() < deadline:
            last = curl(namespace, url, *extra, timeout=3)
            if last[0] == 200 and expect in last[1]:
                return last[1]
            time.sleep(0.2)
        self.fail(f"{namespace} never got {expect!r} from {url}: last {last[0]} {last[1][:300]!r}")


class NamespaceCloudTests(NodeCase):
    """api + network-node processes serving guests in real namespaces."""

    def setUp(self) -> None:
        super().setUp()
        self.net_a, self.net_b, self.net_c, self.router = new_id(), new_id(), new_id(), new_id()
        self.ids = {k: new_id() for k in "abcd"}
        config = self.config("node.conf", "namespaces = auto\n")
        self.import_docs(config, [
            instance(self.ids["a"], "guest-a", "proj-a", self.net_a, "10.0.0.5", "fa:16:3e:aa:00:01"),
            instance(self.ids["b"], "guest-b", "proj-b", self.net_b, "10.0.0.5", "fa:16:3e:bb:00:01"),
            instance(self.ids["c"], "guest-c", "proj-c", self.net_c, "10.2.0.5", "fa:16:3e:cc:00:01", "10.2.0.0/24"),
        ], [{"id": self.router, "project_id": "proj-c", "networks": [self.net_c]}])
        # A is there before the node starts; B and the router appear while it runs.
        self.cloud.dhcp_network(self.net_a, f"ga-{self.net_a[:6]}", "10.0.0.5", "fa:16:3e:aa:00:01", "10.0.0.2", ipv6=True)
        self.api = self.start("api", config)
        self.node = self.start("network-node", config, ready=lambda p: os.path.exists(self.socket))
        self.cloud.dhcp_network(self.net_b, f"gb-{self.net_b[:6]}", "10.0.0.5", "fa:16:3e:bb:00:01", "10.0.0.2")
        self.cloud.router_network(self.router, f"gc-{self.net_c[:6]}", "10.2.0.5", "fa:16:3e:cc:00:01", "10.2.0.1")
        self.config_path = config

    def test_each_guest_gets_its_own(self) -> None:
        """Two guests at 10.0.0.5 in two networks and one behind a router each read their own data."""
        for guest, name in ((f"ga-{self.net_a[:6]}", b"guest-a"), (f"gb-{self.net_b[:6]}", b"guest-b"), (f"gc-{self.net_c[:6]}", b"guest-c")):
            body = self.eventually(guest, META + "latest/meta-data/hostname", name)
            self.assertEqual(body, name + b".novalocal")
        code, body, _ = curl(f"gb-{self.net_b[:6]}", META + "openstack/latest/meta_data.json")
        self.assertEqual((code, json.loads(body)["uuid"]), (200, self.ids["b"]))

    def test_cloud_init_in_each_guest(self) -> None:
        """An unmodified cloud-init OpenStack reader inside each guest reads that guest's instance."""
        python = client_python()
        for guest, key in ((f"ga-{self.net_a[:6]}", "a"), (f"gb-{self.net_b[:6]}", "b"), (f"gc-{self.net_c[:6]}", "c")):
            self.eventually(guest, META + "openstack", b"latest")
            result = run("ip", "netns", "exec", guest, python, PROBE, "cloud-init", META, "--timeout", "5", "--deadline", "90", timeout=120)
            seen = json.loads(result.stdout)
            self.assertEqual(seen["metadata"]["uuid"], self.ids[key], guest)
            self.assertEqual(seen["public_keys"], [f"ssh-ed25519 AAAAguest-{key}"])
            self.assertEqual(seen["ec2-metadata"]["local-ipv4"], "10.2.0.5" if key == "c" else "10.0.0.5")

    def test_ipv6_link_local(self) -> None:
        """Guest A reaches [fe80::a9fe:a9fe] over IPv6 and is found by the MAC in its address."""
        url = "http://[fe80::a9fe:a9fe%25eth0]/openstack/latest/meta_data.json"
        body = self.eventually(f"ga-{self.net_a[:6]}", url, self.ids["a"].encode())
        self.assertEqual(json.loads(body)["name"], "guest-a")

    def test_spoofed_headers_ignored(self) -> None:
        """Identity headers a guest sends are stripped: guest A stays guest A."""
        guest = f"ga-{self.net_a[:6]}"
        self.eventually(guest, META + "latest/meta-data/hostname", b"guest-a")
        for header in (f"X-Neutron-Network-ID: {self.net_b}", f"X-Neutron-Router-ID: {self.router}", f"X-OVN-Network-ID: {self.net_b}",
                       "X-Forwarded-For: 10.0.0.6", f"X-Instance-ID: {self.ids['b']}"):
            code, body, _ = curl(guest, META + "latest/meta-data/hostname", "-H", header)
            self.assertEqual((code, body), (200, b"guest-a.novalocal"), header)

    def test_namespaces_come_and_go(self) -> None:
        """A network created while the node runs is served; when its namespace goes, so do its listeners."""
        net_d = new_id()
        self.import_docs(self.config_path, [instance(self.ids["d"], "guest-d", "proj-d", net_d, "10.0.0.5", "fa:16:3e:dd:00:01")])
        dhcp = self.cloud.dhcp_network(net_d, f"gd-{net_d[:6]}", "10.0.0.5", "fa:16:3e:dd:00:01", "10.0.0.2")
        self.eventually(f"gd-{net_d[:6]}", META + "latest/meta-data/hostname", b"guest-d")
        self.cloud.delete(dhcp)
        self.node.wait_until(lambda: f"namespace {dhcp} is gone" in self.node.log(), f"{dhcp} to be closed", timeout=10)

    def test_unknown_guest_is_404(self) -> None:
        """A guest whose address no instance has gets a prompt 404."""
        guest = f"ga-{self.net_a[:6]}"
        self.eventually(guest, META + "latest/meta-data/hostname", b"guest-a")
        run("ip", "-n", guest, "addr", "add", "10.0.0.77/24", "dev", "eth0")
        code, body, took = curl(guest, META + "latest/meta-data/hostname", "--interface", "10.0.0.77")
        self.assertEqual(code, 404)
        self.assertLess(took, 3)


FAKE_NEUTRON = r'''
import json, sys, http.server, urllib.parse
port, answers = int(sys.argv[1]), json.loads(sys.argv[2])
class Neutron(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
        ip = [v.split("=", 1)[1] for v in query.get("fixed_ips", [])]
        nets = query.get("network_id", [])
        ports = [p for p in answers if p["network_id"] in nets and (not ip or p["ip"] in ip)]
        body = json.dumps({"ports": [{"device_id": p["device_id"], "project_id": p["project_id"], "network_id": p["network_id"]} for p in ports]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer(("127.0.0.1", port), Neutron).serve_forever()
'''


class FaultTests(NodeCase):
    """api, agent and proxy as three processes; each part fails and comes back."""

    def setUp(self) -> None:
        super().setUp()
        self.net, self.uuid = new_id(), new_id()
        self.neutron_port = free_port()
        self.conf = self.config("faults.conf", "namespaces = auto\n"
                                f"[mdsvc]\nlookup = neutron\n[cache]\nenabled = false\n"
                                f"[neutron]\nendpoint_override = http://127.0.0.1:{self.neutron_port}\ntimeout = 2\n")
        self.import_docs(self.conf, [instance(self.uuid, "guest-e", "proj-e", self.net, "10.0.0.5", "fa:16:3e:ee:00:01")])
        self.guest = f"ge-{self.net[:6]}"
        self.cloud.dhcp_network(self.net, self.guest, "10.0.0.5", "fa:16:3e:ee:00:01", "10.0.0.2")
        self.neutron = self.start_neutron()
        self.api = self.start("api", self.conf)
        self.agent = self.start("agent", self.conf, ready=lambda p: os.path.exists(self.socket))
        self.proxy = self.start("proxy", self.conf, ready=lambda p: f"qdhcp-{self.net}" in p.log())
        self.eventually(self.guest, META + "latest/meta-data/hostname", b"guest-e")

    def start_neutron(self) -> subprocess.Popen[bytes]:
        answers = json.dumps([{"network_id": self.net, "ip": "10.0.0.5", "device_id": self.uuid, "project_id": "proj-e"}])
        proc = subprocess.Popen([sys.executable, "-c", FAKE_NEUTRON, str(self.neutron_port), answers])
        self.addCleanup(lambda: proc.poll() is None and (proc.terminate(), proc.wait()))
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.neutron_port)) == 0:
                    return proc
            time.sleep(0.05)
        self.fail("fake Neutron did not start")

    def status(self) -> tuple[int, float]:
        code, _, took = curl(self.guest, META + "latest/meta-data/hostname", timeout=15)
        return code, took

    def test_api_stopped_and_back(self) -> None:
        """API down: 503 at once; API back on its port: served again without touching the node."""
        self.api.stop()
        code, took = self.status()
        self.assertEqual(code, 503)
        self.assertLess(took, 2)
        self.api = self.start("api", self.conf)
        self.eventually(self.guest, META + "latest/meta-data/hostname", b"guest-e", timeout=10)

    def test_api_hung(self) -> None:
        """A hung API (SIGSTOP): the agent's 504 within its timeout (3 s), not a hang; then recovery."""
        self.api.process.send_signal(signal.SIGSTOP)
        code, took = self.status()
        self.assertEqual(code, 504)
        self.assertLess(took, 6)
        self.api.process.send_signal(signal.SIGCONT)
        self.eventually(self.guest, META + "latest/meta-data/hostname", b"guest-e", timeout=10)

    def test_agent_stopped_and_back(self) -> None:
        """Agent down: the proxy's 503 at once; agent restarted: served again."""
        self.agent.stop()
        code, took = self.status()
        self.assertEqual(code, 503)
        self.assertLess(took, 2)
        self.agent = self.start("agent", self.conf, ready=lambda p: os.path.exists(self.socket))
        self.eventually(self.guest, META + "latest/meta-data/hostname", b"guest-e", timeout=10)

    def test_lookup_backend_down_and_back(self) -> None:
        """Neutron down: 503 quickly; Neutron back: served again."""
        self.neutron.terminate()
        self.neutron.wait()
        code, took = self.status()
        self.assertEqual(code, 503)
        self.assertLess(took, 3)
        self.neutron = self.start_neutron()
        self.eventually(self.guest, META + "latest/meta-data/hostname", b"guest-e", timeout=10)

    def test_socket_removed(self) -> None:
        """The agent's socket file deleted: every answer stays quick, and the agent listens again by itself."""
        first = os.stat(self.socket).st_ino
        os.unlink(self.socket)
        codes = set()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            code, took = self.status()
            codes.add(code)
            self.assertLess(took, 2)
            if os.path.exists(self.socket) and os.stat(self.socket).st_ino != first:
                break
            time.sleep(0.2)
        self.assertNotEqual(os.stat(self.socket).st_ino, first)
        self.assertTrue(codes <= {200, 503}, codes)
        self.proxy.stop()  # new proxy, new connections: they must reach the new socket
        self.proxy = self.start("proxy", self.conf, ready=lambda p: p.log().count(f"qdhcp-{self.net}") >= 1)
        self.eventually(self.guest, META + "latest/meta-data/hostname", b"guest-e", timeout=10)
