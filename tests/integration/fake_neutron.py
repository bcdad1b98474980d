"""
A small Keystone v3 and Neutron for the integration tests, standard library only, so that Nova's
own metadata app (keystoneauth + neutronclient, in the Nova virtualenv) and mdsvc ask the same
Neutron the same questions:

    python3 tests/integration/fake_neutron.py PORT CLOUD_JSON

Keystone (under C{/identity}): version discovery (C{GET /identity}, C{GET /identity/v3}) and
C{POST /identity/v3/auth/tokens} (password method; user C{nova}, password C{neutron-secret}),
whose token carries a catalog with Neutron's C{network} endpoint (region C{RegionOne},
interfaces internal and public).  Neutron (under C{/networking}): C{GET /v2.0/ports},
C{/v2.0/security-groups} and C{/v2.0/subnets} with Neutron's filters (a repeated key matches any
of its values; C{fixed_ips=ip_address=X}) and C{fields}; every call needs a token this Keystone
issued.  The ports and groups are those C{CLOUD_JSON} lists (written by nova_cloud_build.py).
C{GET /_stats} counts the Neutron calls by path.
"""

from __future__ import annotations

import json
import secrets
import sys
import threading
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

USER, PASSWORD, PROJECT = "nova", "neutron-secret", "service"


class State:
    """The ports, groups and subnets served, the tokens issued, the calls counted."""

    def __init__(self, cloud: dict[str, Any], base: str) -> None:
        self.ports: list[dict[str, Any]] = cloud["ports"]
        self.security_groups: list[dict[str, Any]] = cloud["security_groups"]
        self.subnets: list[dict[str, Any]] = cloud.get("subnets", [])
        self.base = base
        self.by_device: dict[str, list[dict[str, Any]]] = {}
        self.by_ip: dict[str, list[dict[str, Any]]] = {}
        for port in self.ports:  # indexes, so that ten thousand ports answer as fast as ten
            self.by_device.setdefault(str(port.get("device_id")), []).append(port)
            for ip in port.get("fixed_ips", []):
                self.by_ip.setdefault(ip["ip_address"], []).append(port)
        self.tokens: set[str] = set()
        self.calls: dict[str, int] = {}
        self.lock = threading.Lock()


def _matches(item: dict[str, Any], filters: dict[str, list[str]]) -> bool:
    for key, values in filters.items():
        if key == "fixed_ips":
            wanted = [v.split("=", 1)[1] for v in values if v.startswith("ip_address=")]
            if not any(ip["ip_address"] in wanted for ip in item.get("fixed_ips", [])):
                return False
        elif key == "advanced_service_providers":
            if not set(values) & set(item.get(key, [])):
                return False
        elif str(item.get(key)) not in values:
            return False
    return True


class Handler(BaseHTTPRequestHandler):
    """One request to Keystone or Neutron."""

    state: State
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are two writes: no delayed-ACK stall between them

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - BaseHTTPRequestHandler's name
        """Quiet: the tests read /_stats instead."""

    def _send(self, code: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802 - BaseHTTPRequestHandler's name
        """Keystone discovery, Neutron's lists, and the call counts."""
        parts = urlsplit(self.path)
        path = parts.path.rstrip("/")
        base = self.state.base
        if path == "/_stats":
            with self.state.lock:
                return self._send(200, dict(self.state.calls))
        v3 = {"id": "v3.14", "status": "stable", "updated": "2020-04-07T00:00:00Z",
              "links": [{"rel": "self", "href": f"{base}/identity/v3/"}],
              "media-types": [{"base": "application/json", "type": "application/vnd.openstack.identity-v3+json"}]}
        if path == "/identity":
            return self._send(300, {"versions": {"values": [v3]}})
        if path == "/identity/v3":
            return self._send(200, {"version": v3})
        if path == "/networking":
            return self._send(200, {"versions": [{"id": "v2.0", "status": "CURRENT",
                                                  "links": [{"rel": "self", "href": f"{base}/networking/v2.0/"}]}]})
        collection = path.removeprefix("/networking/v2.0/")
        if not path.startswith("/networking/v2.0/") or collection not in ("ports", "security-groups", "subnets"):
            return self._send(404, {"NeutronError": {"type": "HTTPNotFound", "message": path}})
        if self.headers.get("X-Auth-Token") not in self.state.tokens:
            return self._send(401, {"error": {"code": 401, "message": "The request you have made requires authentication."}})
        with self.state.lock:
            self.state.calls[collection] = self.state.calls.get(collection, 0) + 1
        filters: dict[str, list[str]] = {}
        fields: list[str] = []
        for key, value in parse_qsl(parts.query, keep_blank_values=True):
            if key == "fields":
                fields.append(value)
            else:
                filters.setdefault(key, []).append(value)
        items = {"ports": self.state.ports, "security-groups": self.state.security_groups, "subnets": self.state.subnets}[collection]
        if collection == "ports" and "device_id" in filters:
            items = [p for device in filters["device_id"] for p in self.state.by_device.get(device, [])]
        elif collection == "ports" and "fixed_ips" in filters:
            items = [p for v in filters["fixed_ips"] for p in self.state.by_ip.get(v.partition("=")[2], [])]
        found = [item for item in items if _matches(item, filters)]
        if fields:
            found = [{k: v for k, v in item.items() if k in fields} for item in found]
        return self._send(200, {collection.replace("-", "_"): found})

    def do_POST(self) -> None:  # noqa: N802 - BaseHTTPRequestHandler's name
        """Keystone's password authentication."""
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
        if urlsplit(self.path).path.rstrip("/") != "/identity/v3/auth/tokens":
            return self._send(404, {"error": {"code": 404}})
        user = body.get("auth", {}).get("identity", {}).get("password", {}).get("user", {})
        if user.get("name") != USER or user.get("password") != PASSWORD:
            return self._send(401, {"error": {"code": 401, "message": "The request you have made requires authentication."}})
        token = secrets.token_hex(16)
        with self.state.lock:
            self.state.tokens.add(token)
        now = datetime.now(UTC)
        base = self.state.base
        endpoints = [{"id": f"ep-{i}", "interface": i, "region": "RegionOne", "region_id": "RegionOne", "url": f"{base}/networking"}
                     for i in ("internal", "public")]
        return self._send(201, {"token": {
            "methods": ["password"], "issued_at": now.strftime("%Y-%m-%dT%H:%M:%S.000000Z"),
            "expires_at": (now + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S.000000Z"),
            "user": {"id": "u-nova", "name": USER, "domain": {"id": "default", "name": "Default"}},
            "project": {"id": "p-service", "name": PROJECT, "domain": {"id": "default", "name": "Default"}},
            "roles": [{"id": "r-admin", "name": "admin"}],
            "catalog": [{"type": "network", "name": "neutron", "id": "svc-neutron", "endpoints": endpoints}],
        }}, {"X-Subject-Token": token})


def main(port: int, cloud_path: str) -> None:
    """Serve on 127.0.0.1:PORT until killed."""
    with open(cloud_path) as f:
        cloud = json.load(f)
    Handler.state = State(cloud, f"http://127.0.0.1:{port}")
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    print(f"fake neutron listening on {port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2])
