"""
Deployment shapes for hostile-guest tests and the fuzz campaign (tests/fuzz/campaign.py): real
mdsvc processes, and a stock haproxy in front of the API where a deployment has one, serving
guests through one loopback proxy listener.  Each guest has its own source address (127.1.0.N;
loopback accepts any 127/8 source, no root needed) and its own instance, with markers (uuid,
hostname, user-data marker, EC2 id) that appear in no other instance's answers.

Shapes:
  haproxy        --role api behind haproxy (HTTP mode, keep-alive, a kolla-ansible-like
                 listener), --role network-node calling the API through it
  all-in-one     --role all-in-one: proxy, agent and API in one process, no HTTP between them
  three-process  --role proxy -> agent's UNIX socket -> --role agent -> --role api (HTTP on
                 every hop, mdsvc's own parser on both sides of each)
"""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid as uuidlib
from collections.abc import Callable
from typing import Any

from attrs import frozen

from tests.integration.processes import ROOT, TWISTD, free_port, manage, stop_process

SECRET = "hostile-guests-shared-secret"
NETWORK_ID = "c7055000-0000-4000-8000-00000000000e"
SHAPES = ("haproxy", "all-in-one", "three-process")
HAPROXY = shutil.which("haproxy") or ("/usr/sbin/haproxy" if os.path.exists("/usr/sbin/haproxy") else None)
PROBLEM = re.compile(r"Traceback|Unhandled [Ee]rror")
"""What no process log may contain: an exception nobody handled."""


@frozen
class Guest:
    """One guest: its source address and the instance whose data it alone may read."""

    index: int
    address: str
    uuid: str
    hostname: str
    ec2_id: str
    marker: str
    project: str

    @property
    def user_data(self) -> bytes:
        """The instance's user data: cloud-config whose runcmd names the marker."""
        return f"#cloud-config\nruncmd:\n  - echo {self.marker}\n".encode()

    @property
    def markers(self) -> tuple[bytes, ...]:
        """Strings only this instance's answers contain."""
        return (self.uuid.encode(), self.hostname.encode(), self.marker.encode(), self.ec2_id.encode())

    def document(self) -> dict[str, Any]:
        """The instance document C{mdsvc-manage instance import} takes."""
        return {
            "uuid": self.uuid, "name": self.hostname, "hostname": self.hostname, "project_id": self.project,
            "ec2_ids": {"instance": int(self.ec2_id[2:], 16)},
            "key_pairs": [{"name": "k", "type": "ssh", "public_key": f"ssh-ed25519 AAAA{self.marker} {self.hostname}"}],
            "user_data": base64.b64encode(self.user_data).decode(), "metadata": {"owner": self.marker},
            "nics": [{
                "port_id": str(uuidlib.uuid4()), "mac": "fa:16:3e:c7:%02x:%02x" % (self.index >> 8 & 255, self.index & 255),
                "vif_type": "ovs", "network": {"id": NETWORK_ID, "name": "hostile", "mtu": 1450},
                "fixed_ips": [{"ip": self.address, "subnet": {"id": "c7055000-0000-4000-8000-0000000000f0", "cidr": "127.0.0.0/8",
                                                                "ip_version": 4, "dns": []}}],
            }],
        }

    def expected(self, path: str) -> Callable[[bytes], bool] | None:
        """How to tell this guest's own 200 answer to C{path}, for the victim's paths; else None."""
        if path.endswith("/meta_data.json"):
            return lambda body: _json_field(body, "uuid") == self.uuid and _json_field(body, "name") == self.hostname
        if path.endswith("/user_data") or path.endswith("/user-data"):
            return lambda body: body == self.user_data
        if path.endswith("/meta-data/hostname"):
            return lambda body: body == f"{self.hostname}.novalocal".encode()
        if path.endswith("/meta-data/instance-id"):
            return lambda body: body == self.ec2_id.encode()
        return None


def _json_field(body: bytes, name: str) -> Any:
    try:
        return json.loads(body).get(name)
    except (ValueError, AttributeError):
        return None


def make_guests(count: int) -> list[Guest]:
    """C{count} guests at 127.1.0.1, 127.1.0.2, ... with markers unique to this run."""
    tag = secrets.token_hex(4)
    base = 0x5A000000 + (int(tag, 16) & 0xFFF) * 0x1000
    return [Guest(index=i, address=f"127.1.{i // 250}.{i % 250 + 1}", uuid=str(uuidlib.uuid4()), hostname=f"guest{i}-{tag}",
                  ec2_id="i-%08x" % (base + i + 1), marker=f"userdata-marker-{i}-{tag}", project=f"project-{i}-{tag}")
            for i in range(count)]


STORM = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "bench", "storm.py")
"""The boot storm client (bench/storm.py)."""


def write_guest_file(path: str, guests: list[Guest]) -> str:
    """The storm's guest list (address, uuid, EC2 id per line) at C{path}; returns C{path}."""
    with open(path, "w") as f:
        f.writelines(f"{g.address} {g.uuid} {g.ec2_id}\n" for g in guests)
    return path


def start_storm(port: int, guest_file: str, concurrency: int = 30) -> subprocess.Popen[str]:
    """A boot storm of the guests in C{guest_file} against 127.0.0.1:C{port}, running."""
    return subprocess.Popen([sys.executable, STORM, "127.0.0.1", str(port), guest_file, "--concurrency", str(concurrency)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def storm_result(storm: subprocess.Popen[str]) -> dict[str, Any]:
    """Wait for C{storm} to end; the result it printed (guests, requests, errors, latencies)."""
    out, err = storm.communicate(timeout=300)
    found = re.search(r"MDSVC-STORM (\{.*\})", out)
    if found is None:
        raise AssertionError(f"no storm result: {out} {err}")
    return dict(json.loads(found.group(1)))


def port_open(port: int) -> bool:
    """Whether something accepts connections on 127.0.0.1:C{port}."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return True
    except OSError:
        return False


class Child:
    """A server process we started, logging to a file; L{stop} ends it whatever state it is in."""

    def __init__(self, name: str, argv: list[str], log_path: str) -> None:
        self.name = name
        self.log_path = log_path
        self._log = open(log_path, "ab")
        self.process = subprocess.Popen(argv, stdout=self._log, stderr=subprocess.STDOUT, cwd=ROOT)

    def wait_ready(self, ready: Callable[[], bool], what: str, timeout: float = 30) -> None:
        """Poll C{ready()} until true; fail with the log if the process exits or C{timeout} passes."""
        deadline = time.monotonic() + timeout
        while not ready():
            if self.process.poll() is not None:
                raise AssertionError(f"{self.name} exited with {self.process.returncode} before {what}:\n{self.log()[-4000:]}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.name}: no {what} within {timeout}s:\n{self.log()[-4000:]}")
            time.sleep(0.05)

    def log(self) -> str:
        """Everything the process wrote."""
        with open(self.log_path, encoding="utf-8", errors="replace") as f:
            return f.read()

    def stop(self) -> None:
        """Stop the process (L{stop_process}) and close its log."""
        stop_process(self.process)
        self._log.close()


def haproxy_config(path: str, port: int, api_port: int) -> str:
    """
    A minimal kolla-ansible-like load balancer for the metadata API: HTTP mode, keep-alive on
    both sides, X-Forwarded-For added, health-checked server.
    """
    with open(path, "w") as f:
        f.write(f"""global
    maxconn 4096
    nbthread 1

defaults
    mode http
    option http-keep-alive
    option forwardfor
    option redispatch
    retries 3
    timeout http-request 10s
    timeout http-keep-alive 10s
    timeout queue 1m
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    timeout check 5s

listen nova_metadata
    bind 127.0.0.1:{port}
    http-request del-header X-Forwarded-Proto
    server api 127.0.0.1:{api_port} check inter 2000 rise 2 fall 5
""")
    return path


def mdsvc_config(path: str, state: str, socket_path: str, api_port: int, upstream_port: int, listener_port: int) -> str:
    """One config every role of a deployment reads: proxy mode with a shared secret, short timeouts."""
    with open(path, "w") as f:
        f.write(f"""[DEFAULT]
state_path = {state}
metadata_proxy_shared_secret = {SECRET}
metadata_proxy_socket = {socket_path}
nova_metadata_host = 127.0.0.1
nova_metadata_port = {upstream_port}

[neutron]
service_metadata_proxy = true
metadata_proxy_shared_secret = {SECRET}

[proxy]
namespaces = none
listeners = network {NETWORK_ID} tcp:{listener_port}:interface=127.0.0.1

[mdsvc]
api_endpoint = tcp:{api_port}:interface=127.0.0.1
api_connect_timeout = 2
api_timeout = 2
agent_timeout = 3
""")
    return path


class Deployment:
    """
    One shape's processes serving C{guests} on C{listener_port}; L{stop} ends them and removes the
    directory (call it in a C{finally} or register it as a cleanup before L{start}).
    """

    def __init__(self, shape: str, guests: list[Guest], directory: str | None = None) -> None:
        if shape not in SHAPES:
            raise ValueError(f"unknown shape {shape!r} (allowed: {', '.join(SHAPES)})")
        self.shape = shape
        self.guests = guests
        self.own_directory = directory is None
        self.dir = directory or tempfile.mkdtemp(prefix="mdsvc-ct-")  # short: it holds the agent's UNIX socket
        self.socket = os.path.join(self.dir, "mp.sock")
        self.api_port, self.upstream_port, self.listener_port = free_port(), free_port(), free_port()
        if shape != "haproxy":
            self.upstream_port = self.api_port
        self.config = mdsvc_config(os.path.join(self.dir, "mdsvc.conf"), os.path.join(self.dir, "state"), self.socket,
                                   self.api_port, self.upstream_port, self.listener_port)
        self.processes: dict[str, Child] = {}

    def start(self) -> Deployment:
        """Import the guests' instances, start the shape's processes together, wait until each is ready."""
        documents = os.path.join(self.dir, "instances.json")
        with open(documents, "w") as f:
            json.dump([g.document() for g in self.guests], f)
        manage(self.config, "instance", "import", documents)
        listener = (lambda: port_open(self.listener_port), f"listener on {self.listener_port}")
        waits: list[tuple[Child, tuple[Callable[[], bool], str]]] = []
        if self.shape == "all-in-one":
            waits.append((self._twistd("all-in-one"), listener))
        else:
            waits.append((self._twistd("api"), (lambda: port_open(self.api_port), f"API on {self.api_port}")))
            if self.shape == "haproxy":
                # haproxy's first health check must find the API up, or it starts with no server
                waits.pop()[0].wait_ready(lambda: port_open(self.api_port), f"API on {self.api_port}")
                cfg = haproxy_config(os.path.join(self.dir, "haproxy.cfg"), self.upstream_port, self.api_port)
                waits.append((self._child("haproxy", [HAPROXY or "haproxy", "-db", "-f", cfg]),
                              (lambda: port_open(self.upstream_port), f"haproxy on {self.upstream_port}")))
                waits.append((self._twistd("network-node"), listener))
            else:
                waits.append((self._twistd("agent"), (lambda: os.path.exists(self.socket), f"socket {self.socket}")))
                waits.append((self._twistd("proxy"), listener))
        for child, (ready, what) in waits:
            child.wait_ready(ready, what)
        return self

    def _twistd(self, role: str) -> Child:
        return self._child(role, TWISTD + ["-n", "--pidfile=", "--logfile=-", "mdsvc", "--role", role, "--config", self.config])

    def _child(self, name: str, argv: list[str]) -> Child:
        child = self.processes[name] = Child(name, argv, os.path.join(self.dir, f"{name}.log"))
        return child

    def pids(self) -> dict[str, int]:
        """The process id of each running process, by role (and C{haproxy})."""
        return {name: p.process.pid for name, p in self.processes.items() if p.process.poll() is None}

    def exited(self) -> dict[str, int]:
        """The processes that are no longer running, with their exit status."""
        return {name: p.process.returncode for name, p in self.processes.items() if p.process.poll() is not None}

    def logs(self) -> dict[str, str]:
        """Each process's whole log."""
        return {name: p.log() for name, p in self.processes.items()}

    def problems(self) -> list[str]:
        """Every log line (with what follows) showing an unhandled exception, prefixed by the process."""
        found = []
        for name, text in self.logs().items():
            lines = text.splitlines()
            for i, line in enumerate(lines):
                if PROBLEM.search(line):
                    found.append(f"{name}: " + "\n".join(lines[max(0, i - 1):i + 12]))
        return found

    def stop(self) -> None:
        """Stop every process (last started first) and remove the directory if it is ours."""
        for name in reversed(list(self.processes)):
            try:
                self.processes[name].stop()
            except Exception as e:  # noqa: BLE001 - stop the others anyway
                print(f"warning: stopping {name}: {e}")
        if self.own_directory:
            shutil.rmtree(self.dir, ignore_errors=True)


