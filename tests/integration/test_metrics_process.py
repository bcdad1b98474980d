"""
Operating a real node (api + network-node, each with a metrics listener of its own, layered
config files): a real cloud-init boot through the chain moves every counter as it should;
/readyz goes not ready when the API stops and ready again when it is back; mdsvc-manage trace
shows a failing boot's 503 and 404 with their reasons; JSON logs carry each failed request's
instance, hop and reason; and the shared secret appears in no log, metric or trace.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid as uuidlib

from prometheus_client.parser import text_string_to_metric_families
from twisted.trial.unittest import SynchronousTestCase

from tests.integration.netns import new_id
from tests.integration.processes import ROOT, Twistd, client_python, free_port, manage, probe
from tests.integration.test_doctor_process import NETWORK, base_config

SECRET = "s3cr3t-that-must-not-leak-42"
INSTANCE = str(uuidlib.uuid4())


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a process's /metrics, by name and sorted labels."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        text = r.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def total(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    """The sum of the samples of C{name} whose labels include C{labels}."""
    return sum(v for (n, ls), v in samples.items() if n == name and all((k, w) in ls for k, w in labels.items()))


def get(port: int, path: str, source: str = "127.0.0.1") -> tuple[int, bytes]:
    """C{GET path} on a loopback port from C{source}."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=15, source_address=(source, 0))
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


class MetricsProcessTests(SynchronousTestCase):
    """api + network-node; the guest is 127.0.0.1 in NETWORK (the probe's own address)."""

    def setUp(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="mdsvc-mx-")
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.api_port, self.listener = free_port(), free_port()
        self.api_metrics, self.node_metrics = free_port(), free_port()
        self.common = os.path.join(self.dir, "common.conf")
        with open(self.common, "w") as f:
            f.write(base_config(self.dir, self.api_port, self.listener, secret=SECRET))
        self.api_conf = self.layer("api.conf", f"[mdsvc]\nmetrics_endpoint = tcp:{self.api_metrics}:interface=127.0.0.1\n")
        self.node_conf = self.layer("node.conf", f"[DEFAULT]\nlog_format = json\n[mdsvc]\n"
                                                 f"metrics_endpoint = tcp:{self.node_metrics}:interface=127.0.0.1\n")
        doc = os.path.join(self.dir, "guest.json")
        with open(doc, "w") as f:
            json.dump({"uuid": INSTANCE, "name": "mx-guest", "project_id": "mx-project", "user_data": "", "nics": [{
                "port_id": new_id(), "mac": "fa:16:3e:00:4d:58", "network": {"id": NETWORK},
                "fixed_ips": [{"ip": "127.0.0.1", "subnet": {"id": new_id(), "cidr": "127.0.0.0/8"}}]}]}, f)
        manage(self.common, "instance", "import", doc)
        self.api = self.start("api", self.api_conf)
        self.node = self.start("network-node", self.node_conf)

    def layer(self, name: str, text: str) -> str:
        path = os.path.join(self.dir, name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def start(self, role: str, extra: str) -> Twistd:
        """The role with the common file and its own, ready when its metrics listener answers /healthz."""
        port = self.api_metrics if role == "api" else self.node_metrics

        def ready(_: Twistd) -> bool:
            try:
                return urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2).status == 200
            except OSError:
                return False

        process = Twistd(["mdsvc", "--role", role, "--config-file", self.common, "--config-file", extra],
                         os.path.join(self.dir, f"{role}-{time.monotonic_ns()}.log"), ready=ready)
        self.addCleanup(process.stop)
        return process

    def readyz(self, port: int) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=15) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    def trace(self, what: str) -> str:
        result = subprocess.run([sys.executable, "-m", "mdsvc.manage", "--config-file", self.common, "--config-file", self.node_conf,
                                 "trace", what], capture_output=True, text=True, timeout=60, cwd=ROOT)
        self.assertEqual(result.returncode, 0, result.stderr)
        return result.stdout

    def test_boot_moves_the_counters(self) -> None:
        """
        A real cloud-init boot through the chain: every request is counted once at the proxy,
        the agent and the API, with its latency; one lookup and one render miss, the rest
        hits; a pooled connection to the API; no backend error.
        """
        client_python()
        node0, api0 = scrape(self.node_metrics), scrape(self.api_metrics)
        seen = probe("cloud-init", f"http://127.0.0.1:{self.listener}/")
        self.assertEqual(seen["metadata"]["uuid"], INSTANCE)
        node, api = scrape(self.node_metrics), scrape(self.api_metrics)

        def delta(after: dict, before: dict, name: str, **labels: str) -> float:  # type: ignore[type-arg]
            return total(after, name, **labels) - total(before, name, **labels)

        proxy = delta(node, node0, "mdsvc_requests_total", hop="proxy", role="network-node")
        agent = delta(node, node0, "mdsvc_requests_total", hop="agent", role="network-node")
        served = delta(api, api0, "mdsvc_requests_total", hop="api", role="api")
        self.assertGreaterEqual(proxy, 20)  # a cloud-init boot is about thirty GETs
        self.assertEqual((agent, served), (proxy, proxy))
        self.assertEqual(delta(node, node0, "mdsvc_requests_total", hop="proxy", code="200"),
                         delta(api, api0, "mdsvc_requests_total", hop="api", code="200"))
        not_found = delta(api, api0, "mdsvc_requests_total", hop="api", code="404")
        # each request looks its guest up once in the lookup cache, once more after an API 404
        lookups = sum(delta(node, node0, f"mdsvc_cache_{k}_total", cache="lookup") for k in ("hits", "misses", "coalesced"))
        self.assertEqual(lookups, agent + not_found)
        self.assertGreaterEqual(delta(node, node0, "mdsvc_cache_misses_total", cache="lookup"), 1)
        self.assertGreaterEqual(delta(node, node0, "mdsvc_cache_hits_total", cache="lookup"), agent - 1 - not_found)
        self.assertEqual(delta(api, api0, "mdsvc_cache_misses_total", cache="render"), 1)
        self.assertGreaterEqual(delta(api, api0, "mdsvc_cache_hits_total", cache="render"), served - 1)
        self.assertEqual(total(api, "mdsvc_cache_entries", cache="render"), 1)
        for samples, before, stage, expected in ((node, node0, "proxy_to_agent", proxy), (node, node0, "agent", agent),
                                                 (node, node0, "agent_to_api", agent), (api, api0, "api_render", served)):
            self.assertEqual(delta(samples, before, "mdsvc_latency_seconds_count", stage=stage), expected, stage)
        self.assertGreater(delta(node, node0, "mdsvc_latency_seconds_sum", stage="agent_to_api"), 0)
        self.assertGreaterEqual(total(node, "mdsvc_pool_connections_made_total", pool="api"), 1)
        self.assertGreaterEqual(total(node, "mdsvc_pool_connections", pool="api", state="open"), 1)
        self.assertEqual(total(node, "mdsvc_backend_errors_total") + total(api, "mdsvc_backend_errors_total"), 0)
        self.assertEqual(total(node, "mdsvc_listeners_open"), 1)
        self.assertEqual(total(node, "mdsvc_info", role="network-node"), 1)

    def test_readyz_follows_the_api(self) -> None:
        """/readyz of the network node: ready; the API stops: 503 naming it; the API is back: ready again."""
        status, body = self.readyz(self.node_metrics)
        self.assertEqual(status, 200, body)
        self.assertIn(f"ok: metadata API at http://127.0.0.1:{self.api_port}\n", body)
        self.assertIn("ok: lookup backend store\n", body)
        self.api.stop()
        status, body = self.readyz(self.node_metrics)
        self.assertEqual(status, 503, body)
        self.assertIn(f"not ready: metadata API at http://127.0.0.1:{self.api_port}: ", body)
        self.assertIn("ok: lookup backend store\n", body)
        self.api = self.start("api", self.api_conf)
        deadline = time.monotonic() + 15
        while self.readyz(self.node_metrics)[0] != 200 and time.monotonic() < deadline:
            time.sleep(0.2)
        status, body = self.readyz(self.node_metrics)
        self.assertEqual(status, 200, body)
        self.assertTrue(body.startswith("ready\n"), body)
        self.assertIn(f"ok: metadata API at http://127.0.0.1:{self.api_port}\n", body)
        self.assertEqual(self.readyz(self.api_metrics)[0], 200)

    def test_trace_and_logs_of_a_failing_boot(self) -> None:
        """
        A guest no port has gets 404, and every guest 503 while the API is down: the trace
        shows each with its reason at the hop that made it; the JSON log has one failure line
        per failed request with instance, hop and reason; the secret is nowhere.
        """
        self.assertEqual(get(self.listener, "/openstack/latest/meta_data.json")[0], 200)
        self.assertEqual(get(self.listener, "/openstack/latest/meta_data.json", source="127.0.0.2")[0], 404)
        self.api.stop()
        self.assertEqual(get(self.listener, "/openstack/latest/user_data")[0], 503)
        lost = self.trace("127.0.0.2")
        self.assertRegex(lost, rf"agent +404 .* 127\.0\.0\.2 .* GET /openstack/latest/meta_data\.json  Instance was not "
                               rf"found on network {NETWORK}\.")
        self.assertRegex(lost, r"proxy +404 .* 127\.0\.0\.2 ")
        boot = self.trace(INSTANCE)
        self.assertRegex(boot, rf"agent +200 .* 127\.0\.0\.1 +{INSTANCE}  GET /openstack/latest/meta_data\.json")
        self.assertRegex(boot, rf"agent +503 .* 127\.0\.0\.1 +{INSTANCE}  GET /openstack/latest/user_data  The remote metadata "
                               rf"server is temporarily unavailable\. Please try again later\. \(http://127\.0\.0\.1:{self.api_port}: ")
        self.assertRegex(boot, r"proxy +503 .* 127\.0\.0\.1 +- +GET /openstack/latest/user_data")
        events = [json.loads(line) for line in self.node.log().splitlines() if line.startswith("{")]
        failed = [(e["hop"], e["code"], e["address"], e["instance"], e["reason"][:40]) for e in events
                  if e.get("mdsvc_event") == "request_failed"]
        self.assertEqual(failed, [("agent", 404, "127.0.0.2", "-", "Instance was not found on network d0c700"),
                                  ("agent", 503, "127.0.0.1", INSTANCE, "The remote metadata server is temporaril")])
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{self.node_metrics}/metrics", timeout=10).read().decode()
        for text in (lost, boot, self.node.log(), self.api.log(), metrics):
            self.assertNotIn(SECRET, text)
