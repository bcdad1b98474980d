"""
The api role as a real process: documents imported with mdsvc-manage, read back over HTTP by
real, unmodified clients (cloud-init's OpenStack reader, cloudbase-init's HTTP service,
botocore's IMDS fetcher), in remote-address mode and behind a signing forwarder.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time

from twisted.trial.unittest import SynchronousTestCase

from tests.integration.processes import ROOT, Twistd, client_python, fetch, manage, probe, write_config

UUID = "6e7f5b2a-1c1d-4a55-9f3e-2b9d1c0a7e11"
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBmdsvcIntegrationKeyIntegrationKey0000 alice@example"
USER_DATA = b"#cloud-config\nruncmd:\n  - [touch, /run/mdsvc-was-here]\n"


def document(**changes: object) -> dict[str, object]:
    """An instance whose fixed IP is 127.0.0.1, so a client on this machine is that instance."""
    doc: dict[str, object] = {
        "uuid": UUID, "name": "web-1", "project_id": "proj-1", "user_id": "user-1", "availability_zone": "az1",
        "flavor": "m1.small", "image_id": "img-1", "ec2_ids": {"instance": 42, "images": {"img-1": 7}},
        "key_pairs": [{"name": "alice", "type": "ssh", "public_key": KEY}],
        "user_data": base64.b64encode(USER_DATA).decode(), "metadata": {"role": "web"},
        "nics": [{"port_id": "0f0e0d0c-0000-4000-8000-000000000001", "mac": "fa:16:3e:00:00:01", "vif_type": "ovs",
                  "network": {"id": "net-1", "name": "private", "mtu": 1450},
                  "fixed_ips": [{"ip": "127.0.0.1", "floating_ips": ["203.0.113.10"],
                                 "subnet": {"id": "sub-1", "cidr": "127.0.0.0/8", "gateway": "127.0.0.254", "dns": ["127.0.0.53"],
                                            "enable_dhcp": False}}]}],
    }
    doc.update(changes)
    return doc


class ApiProcessCase(SynchronousTestCase):
    """Starts one api process per test on a fresh store."""

    extra_config = "[api]\nmetadata_cache_expiration = 1\n"

    def setUp(self) -> None:
        self.dir = os.path.abspath(self.mktemp())
        self.config = write_config(self.dir, self.extra_config)
        self.import_doc(document())
        self.api = Twistd(["mdsvc", "--role", "api", "--config", self.config], os.path.join(self.dir, "twistd.log"))
        self.addCleanup(self.api.stop)

    def import_doc(self, doc: dict[str, object]) -> None:
        path = os.path.join(self.dir, f"doc-{time.monotonic_ns()}.json")
        with open(path, "w") as f:
            json.dump(doc, f)
        manage(self.config, "instance", "import", path)


class RealClientsTests(ApiProcessCase):
    """Real clients read what the API serves, and it is what the document says."""

    def setUp(self) -> None:
        client_python()  # not installed: fail at once, in one line naming the install command
        super().setUp()

    def test_cloud_init(self) -> None:
        """cloud-init's OpenStack reader gets meta_data.json, user data, network data and the EC2 tree."""
        seen = probe("cloud-init", self.api.base)
        self.assertEqual(seen["version"], "2018-08-27")
        md = seen["metadata"]
        self.assertEqual((md["uuid"], md["hostname"], md["name"], md["project_id"]), (UUID, "web-1.novalocal", "web-1", "proj-1"))
        self.assertEqual((md["instance-id"], md["local-hostname"]), (UUID, "web-1.novalocal"))
        _, _, served = fetch(self.api.base + "openstack/2018-08-27/meta_data.json")
        expected = json.loads(served)
        for key in ("random_seed",):
            expected.pop(key), md.pop(key)
        md.pop("instance-id"), md.pop("local-hostname")
        self.assertEqual(md, expected)
        self.assertEqual(seen["userdata"], USER_DATA.decode())
        self.assertEqual(seen["public_keys"], [KEY])
        self.assertEqual(seen["vendordata"], {})
        self.assertEqual(seen["vendordata2"], {"static": {}})
        self.assertEqual(seen["networkdata"], json.loads(fetch(self.api.base + "openstack/latest/network_data.json")[2]))
        self.assertEqual(seen["networkdata"]["networks"][0]["ip_address"], "127.0.0.1")
        ec2 = seen["ec2-metadata"]
        self.assertEqual((ec2["instance-id"], ec2["ami-id"], ec2["local-ipv4"], ec2["public-ipv4"]),
                         ("i-0000002a", "ami-00000007", "127.0.0.1", "203.0.113.10"))
        self.assertEqual(ec2["placement"], {"availability-zone": "az1"})
        self.assertEqual(ec2["public-keys"], {"alice": KEY})

    def test_cloudbase_init_with_password(self) -> None:
        """cloudbase-init reads identity and keys, posts its password once, and is refused the second time."""
        seen = probe("cloudbase-init", self.api.base, "--post-password", "c2VjcmV0")
        self.assertEqual((seen["instance_id"], seen["host_name"]), (UUID, "web-1.novalocal"))
        self.assertEqual(seen["public_keys"], [KEY])
        self.assertEqual(seen["user_data"], USER_DATA.decode())
        self.assertTrue(seen["can_post_password"])
        self.assertEqual(seen["post_password"], {"returned": True})
        self.assertEqual(fetch(self.api.base + "openstack/latest/password")[2], b"c2VjcmV0")
        again = probe("cloudbase-init", self.api.base, "--post-password", "b3RoZXI=")
        self.assertEqual(again["post_password"].get("status"), 409)
        self.assertEqual(fetch(self.api.base + "openstack/latest/password")[2], b"c2VjcmV0")
        stored = json.loads(manage(self.config, "instance", "show", UUID).stdout)
        self.assertEqual(stored["password"], "c2VjcmV0")

    def test_botocore(self) -> None:
        """botocore's IMDS fetcher falls back from the token PUT (404) and reads ids and region."""
        seen = probe("botocore", self.api.base)
        self.assertIsNone(seen["token"])
        self.assertEqual((seen["instance_id"], seen["hostname"], seen["region"]), ("i-0000002a", "web-1.novalocal", "az"))


class LiveChangesTests(ApiProcessCase):
    """Imports, changes and deletes are served without a restart, once the cache TTL has passed."""

    def test_change_and_delete(self) -> None:
        """A renamed instance shows its new name after the TTL; a deleted one is 404; a new one appears."""
        url = self.api.base + "latest/meta-data/hostname"
        self.assertEqual(fetch(url)[2], b"web-1.novalocal")
        self.import_doc(document(hostname="web-2"))
        deadline = time.monotonic() + 5
        while fetch(url)[2] != b"web-2.novalocal" and time.monotonic() < deadline:
            time.sleep(0.1)
        self.assertEqual(fetch(url)[2], b"web-2.novalocal")
        manage(self.config, "instance", "delete", UUID)
        time.sleep(1.1)
        self.assertEqual(fetch(url)[0], 404)
        self.assertIn("no instance has fixed IP 127.0.0.1", self.api.log())
        self.import_doc(document(uuid="11111111-2222-4333-8444-555555555555", hostname="fresh"))
        self.assertEqual(fetch(url)[2], b"fresh.novalocal")

    def test_bad_import_changes_nothing(self) -> None:
        """An import with one bad document writes none of them and names the field."""
        path = os.path.join(self.dir, "bad.json")
        with open(path, "w") as f:
            json.dump([document(hostname="never"), {"uuid": "22222222-2222-4222-8222-222222222222", "nics": [{"mac": "nope"}]}], f)
        result = manage(self.config, "instance", "import", path, check=False)
        self.assertEqual(result.returncode, 1)
        self.assertEqual(result.stderr.strip(), f"mdsvc-manage: {path}: [1].nics[0].mac: 'nope' is not valid")
        time.sleep(1.1)
        self.assertEqual(fetch(self.api.base + "latest/meta-data/hostname")[2], b"web-1.novalocal")

    def test_statuses_and_no_tracebacks(self) -> None:
        """Odd requests get statuses from the spec's set, never a traceback."""
        cases = [
            ("GET", "latest/meta-data/security-groups/default", None, 404),
            ("GET", "latest/meta-data/hostname/x", None, 404),
            ("GET", "openstack/latest/content", None, 404),
            ("GET", "nothing/here", None, 404),
            ("PUT", "latest/api/token", None, 404),
            ("POST", "openstack/latest/password", b"x" * 2000, 400),
            ("DELETE", "openstack/latest/password", None, 400),
            ("GET", "latest/%ff", None, 400),
        ]
        for method, path, body, code in cases:
            status, headers, content = fetch(self.api.base + path, method, data=body)
            self.assertEqual(status, code, (method, path))
            self.assertNotIn(b"Traceback", content)
        self.assertNotIn("Traceback", self.api.log())


FORWARDER = r'''
import hashlib, hmac, sys, http.server, urllib.request
upstream, secret, instance, tenant = sys.argv[1:5]
class Forward(http.server.BaseHTTPRequestHandler):
    def _go(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0)) if self.command == "POST" else None
        req = urllib.request.Request(upstream + self.path, data=body, method=self.command)
        req.add_header("X-Instance-ID", instance)
        req.add_header("X-Tenant-ID", tenant)
        req.add_header("X-Instance-ID-Signature", hmac.new(secret.encode(), instance.encode(), hashlib.sha256).hexdigest())
        req.add_header("X-Forwarded-For", self.client_address[0])
        try:
            r = urllib.request.urlopen(req, timeout=10)
            code, data, ctype = r.status, r.read(), r.headers.get("Content-Type")
        except urllib.error.HTTPError as e:
            code, data, ctype = e.code, e.read(), e.headers.get("Content-Type")
        self.send_response(code)
        self.send_header("Content-Type", ctype or "text/plain")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
    do_GET = do_POST = do_PUT = _go
    def log_message(self, *a): pass
server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Forward)
print(server.server_address[1], flush=True)
server.serve_forever()
'''


class SignedProxyTests(ApiProcessCase):
    """Proxy mode: only signed requests are served; a real client reads through a signing forwarder."""

    extra_config = "[neutron]\nservice_metadata_proxy = true\nmetadata_proxy_shared_secret = s3cr3t\n"

    def forwarder(self, secret: str) -> str:
        proc = subprocess.Popen([sys.executable, "-c", FORWARDER, self.api.base.rstrip("/"), secret, UUID, "proj-1"],
                                stdout=subprocess.PIPE, text=True)
        self.addCleanup(proc.wait)
        self.addCleanup(proc.terminate)
        return f"http://127.0.0.1:{proc.stdout.readline().strip()}/"  # type: ignore[union-attr]

    def test_cloud_init_through_forwarder(self) -> None:
        """cloud-init reads its metadata through a forwarder that signs as the agent does."""
        seen = probe("cloud-init", self.forwarder("s3cr3t"))
        self.assertEqual(seen["metadata"]["uuid"], UUID)
        self.assertEqual(seen["ec2-metadata"]["instance-id"], "i-0000002a")

    def test_unsigned_and_badly_signed(self) -> None:
        """Without headers 400; with the wrong secret 403; the signature of mdsvc-manage sign works."""
        self.assertEqual(fetch(self.api.base + "latest/meta-data/hostname")[0], 400)
        self.assertEqual(fetch(self.forwarder("wrong") + "latest/meta-data/hostname")[0], 403)
        signature = manage(self.config, "sign", UUID).stdout.strip()
        status, _, body = fetch(self.api.base + "latest/meta-data/hostname",
                                headers={"X-Instance-ID": UUID, "X-Tenant-ID": "proj-1", "X-Instance-ID-Signature": signature})
        self.assertEqual((status, body), (200, b"web-1.novalocal"))
        self.assertNotIn("s3cr3t", self.api.log())


class StartupTests(SynchronousTestCase):
    """The ways the service is started."""

    def test_tac_serves_the_same(self) -> None:
        """twistd -ny tac/api.tac with MDSVC_CONFIG serves what --role api serves."""
        directory = os.path.abspath(self.mktemp())
        config = write_config(directory, "")
        path = os.path.join(directory, "doc.json")
        with open(path, "w") as f:
            json.dump(document(), f)
        manage(config, "instance", "import", path)
        api = Twistd(["-y", os.path.join(ROOT, "tac", "api.tac")], os.path.join(directory, "tac.log"), env={"MDSVC_CONFIG": config})
        self.addCleanup(api.stop)
        self.assertEqual(fetch(api.base + "latest/meta-data/instance-id")[2], b"i-0000002a")

    def test_demo_default(self) -> None:
        """The demo config serves the demo instance through the whole chain (the README's first command)."""
        import socket as socketlib
        import tempfile

        directory = tempfile.mkdtemp(prefix="mdsvc-")  # short: it holds the agent's socket
        self.addCleanup(__import__("shutil").rmtree, directory, True)
        with socketlib.socket() as s:
            s.bind(("127.0.0.1", 0))
            proxy_port = s.getsockname()[1]
        with socketlib.socket() as s:
            s.bind(("127.0.0.1", 0))
            api_port = s.getsockname()[1]
        with open(os.path.join(ROOT, "etc", "demo.conf")) as f:
            text = f.read().replace("tcp:8775:", f"tcp:{api_port}:").replace("tcp:8080:", f"tcp:{proxy_port}:")
        os.mkdir(os.path.join(directory, "etc"))
        config = os.path.join(directory, "etc", "demo.conf")  # where it is in the tree: its state goes into ../.demo-state
        with open(config, "w") as f:
            f.write(text + f"\n[DEFAULT]\nnova_metadata_port = {api_port}\n")
        elsewhere = os.path.join(directory, "elsewhere")  # the current directory does not matter
        os.mkdir(elsewhere)
        api = Twistd(["mdsvc", "--config", config], os.path.join(directory, "demo.log"), cwd=elsewhere,
                     ready=lambda p: os.path.exists(os.path.join(directory, ".demo-state", "metadata_proxy")))
        self.addCleanup(api.stop)
        base = f"http://127.0.0.1:{proxy_port}/"
        status, headers, body = fetch(base + "openstack/latest/meta_data.json")
        self.assertEqual((status, headers["content-type"]), (200, "application/json"), body)
        self.assertEqual(json.loads(body)["name"], "demo-1")
        self.assertIn(b"instance-id", fetch(base + "latest/meta-data/")[2])
        self.assertEqual(fetch(f"http://127.0.0.1:{api_port}/latest/meta-data/")[0], 400)  # the API wants signed requests
        self.assertTrue(os.path.exists(os.path.join(directory, ".demo-state", "mdsvc.sqlite")))

    def test_bad_config_one_line(self) -> None:
        """
        A bad value in the second of two --config-file files stops twistd with a line naming
        that file, line and option, after one saying mdsvc did not start (not the usage text).
        """
        directory = os.path.abspath(self.mktemp())
        config = write_config(directory, "")
        bad = os.path.join(directory, "bad.conf")
        with open(bad, "w") as f:
            f.write("[api]\n\nvendordata_providers = StaticJSON,Bogus\n")
        from tests.integration.processes import TWISTD
        result = subprocess.run(TWISTD + ["-n", "--pidfile=", "mdsvc", "--role", "api", "--config-file", config, "--config-file", bad],
                                capture_output=True, text=True, timeout=60, cwd=ROOT)  # this tree's mdsvc, not an installed one
        self.assertNotEqual(result.returncode, 0)
        self.assertEqual(result.stderr, "")
        self.assertNotIn("--config-file", result.stdout)
        self.assertEqual(result.stdout.splitlines()[-2:], [
            "mdsvc did not start.",
            f"twistd -n: mdsvc: {bad}:3: [api] vendordata_providers: unknown vendordata provider 'Bogus' (available: StaticJSON, DynamicJSON)",
        ])


class ListenFailureTests(SynchronousTestCase):
    """A real twistd that cannot listen stops with one line naming the option and the address, not a traceback."""

    def twistd(self, role: str, config: str, cwd: str, pidfile: bool = False) -> tuple[int, list[str]]:
        """Run twistd -n until it exits; (its status, its output lines: log and stderr together)."""
        from tests.integration.processes import TWISTD

        result = subprocess.run(TWISTD + ["-n", *([] if pidfile else ["--pidfile="]), "mdsvc", "--role", role, "--config", config],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=60, cwd=cwd)
        self.assertNotIn("Traceback", result.stdout)
        return result.returncode, result.stdout.splitlines()

    def held_port(self) -> int:
        """A loopback port another process (this one) listens on."""
        import socket

        holder = socket.socket()
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        self.addCleanup(holder.close)
        return int(holder.getsockname()[1])

    def one_error(self, lines: list[str]) -> str:
        """The one line saying why mdsvc stopped (after twistd's own start-up lines)."""
        errors = [line for line in lines if " mdsvc: " in line or line.startswith("mdsvc: ")]
        self.assertEqual(len(errors), 1, "\n".join(lines))
        self.assertEqual(lines[-1], errors[0], "\n".join(lines))
        return errors[0][errors[0].index("mdsvc: "):]

    def test_api_port_taken(self) -> None:
        """The api role finds its port taken: the line names [mdsvc] api_endpoint and the address; no pid file is left."""
        directory = os.path.abspath(self.mktemp())
        port = self.held_port()
        config = write_config(directory, "")
        with open(config, "a") as f:
            f.write(f"\n[mdsvc]\napi_endpoint = tcp:{port}:interface=127.0.0.1\n")
        status, lines = self.twistd("api", config, directory, pidfile=True)
        self.assertEqual(status, 1)
        self.assertEqual(self.one_error(lines), f"mdsvc: {config}: [mdsvc] api_endpoint tcp:{port}:interface=127.0.0.1: "
                                                f"cannot listen on 127.0.0.1:{port}: Address already in use")
        self.assertFalse(os.path.exists(os.path.join(directory, "twistd.pid")))

    def test_demo_proxy_port_taken(self) -> None:
        """The demo (all-in-one) finds its proxy listener's port taken: the line names [proxy] listeners."""
        import shutil
        import tempfile

        directory = tempfile.mkdtemp(prefix="mdsvc-")  # short: it holds the agent's socket
        self.addCleanup(shutil.rmtree, directory, True)
        os.makedirs(os.path.join(directory, "etc"))
        port = self.held_port()
        with open(os.path.join(ROOT, "etc", "demo.conf")) as f:
            text = f.read().replace("tcp:8775:", "tcp:0:").replace("tcp:8080:", f"tcp:{port}:")
        config = os.path.join(directory, "etc", "demo.conf")
        with open(config, "w") as f:
            f.write(text)
        status, lines = self.twistd("all-in-one", config, directory)
        self.assertEqual(status, 1)
        self.assertEqual(self.one_error(lines), f"mdsvc: {config}: [proxy] listeners network 11111111-0000-4000-8000-000000000001 "
                                                f"tcp:{port}:interface=127.0.0.1: cannot listen on 127.0.0.1:{port}: Address already in use")

    def test_agent_socket_unusable(self) -> None:
        """The agent role cannot make its socket's directory: the line names metadata_proxy_socket and the path."""
        directory = os.path.abspath(self.mktemp())
        config = write_config(directory, "")
        blocker = os.path.join(directory, "a-file")
        open(blocker, "w").close()
        with open(config, "a") as f:
            f.write(f"\n[DEFAULT]\nmetadata_proxy_socket = {blocker}/agent.sock\n")
        status, lines = self.twistd("agent", config, directory)
        self.assertEqual(status, 1)
        line = self.one_error(lines)
        self.assertTrue(line.startswith(f"mdsvc: {config}: [DEFAULT] metadata_proxy_socket {blocker}/agent.sock: cannot listen"), line)
