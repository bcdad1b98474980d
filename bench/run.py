#!/usr/bin/env python3
"""
mdsvc benchmarks: every deployment shape built on this machine, driven by wrk from a separate
process, one table; a boot storm through the whole chain; a thousand namespaces in one proxy.

    bash bench/install.sh && python3 bench/run.py          # the whole run (about 5 minutes)
    python3 bench/run.py --smoke                            # CI: every shape starts and answers right
    python3 bench/run.py --shapes 4,5 --duration 10         # some shapes only (no storm, no namespaces)
    python3 bench/run.py --storm 1000                       # only the boot storm
    python3 bench/run.py --namespaces 1000                  # only the namespace scale
    python3 bench/run.py --shapes 5 --profile /tmp/p        # py-spy of shape 5 under load: top frames

Shapes (bench/README.md says more):
  1  bare twisted.web resource answering 200 bytes
  2  haproxy with Neutron's namespace template (spec §8) -> Twisted on a UNIX socket, 200 bytes
  3  mdsvc --role api alone, signed X-Instance-ID headers
  4  mdsvc --role network-node + --role api (two processes), requests entering at a proxy listener
  5  mdsvc --role all-in-one, requests entering at a proxy listener
  6  Nova's MetadataRequestHandler (PyPI nova) under gunicorn -w 2, in-memory instances, signed headers
  7  mdsvc --role api with [DEFAULT] metadata_workers = 2 (a supervisor, two workers on one port),
     signed headers: not pinned (the workers and wrk share both cores); compared with shape 3 per
     core used

As root the whole run happens in a network namespace of its own (mdsvc-bench-PID, deleted at the
end): there, iptables SNAT rules give every new connection to a proxy listener the next guest's
source address, so one wrk process reaches many instances through one listener. The servers are
pinned to CPU 0 and the load generators to CPU 1 (--no-pin to let the scheduler decide).
"""

from __future__ import annotations

import argparse
import atexit
import ctypes
import ctypes.util
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid as uuidlib
from collections.abc import Callable
from typing import Any

BENCH = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(BENCH)
sys.path.insert(0, ROOT)
MDSVC_TREE = {"path": ROOT}
"""The source tree whose mdsvc the run measures (--mdsvc-tree; default this repository)."""


def mdsvc_env(tree: str | None = None) -> dict[str, str]:
    """Environment of mdsvc processes: the measured tree (or C{tree}) first on the path."""
    path = tree or MDSVC_TREE["path"]
    if path == ROOT:
        return {}
    return {"PYTHONPATH": path + os.pathsep + os.environ.get("PYTHONPATH", "")}
sys.path.insert(0, BENCH)

from storm import BOOT_PATHS  # noqa: E402

NOVA_VENV = os.environ.get("MDSVC_BENCH_NOVA_VENV", "/var/cache/mdsvc-bench/nova-venv")
NETWORK_ID = "be000000-0000-4000-8000-0000000000e1"
SUBNET_ID = "be000000-0000-4000-8000-0000000000e2"
SECRET = "bench-shared-secret"
TWISTD = [sys.executable, "-c", "import sys; from twisted.scripts.twistd import run; sys.argv[0] = 'twistd'; run()"]
SHAPE_NAMES = {
    1: "1 bare twisted.web",
    2: "2 haproxy (Neutron tmpl) -> twisted",
    3: "3 mdsvc api",
    4: "4 mdsvc network-node + api",
    5: "5 mdsvc all-in-one",
    6: "6 nova metadata, gunicorn -w2",
    7: "7 mdsvc api, metadata_workers = 2",
}
UNPINNED_SHAPES = (7,)
"""Shapes whose servers and load generator the scheduler places on both cores."""
TINY_BODY_LEN = 200


# ------------------------------------------------------------------------------------------ data

def guest_ip(i: int) -> str:
    """Fixed IP of bench instance C{i}: 127.1.0.1, 127.1.0.2, ... (250 a /24)."""
    return f"127.1.{i // 250}.{i % 250 + 1}"


def instance_uuid(i: int) -> str:
    return f"be000000-0000-4000-8000-{i:012x}"


def ec2_instance_id(i: int) -> str:
    return "i-%08x" % (i + 1)


def project(i: int) -> str:
    return f"bench-project-{i % 10}"


def instance_document(i: int, network_id: str = NETWORK_ID, ip: str | None = None, cidr: str = "127.0.0.0/8") -> dict[str, Any]:
    """A full instance document (one NIC, a key pair, user data, metadata), as mdsvc imports it."""
    import base64

    ip = ip or guest_ip(i)
    name = f"bench-{i}"
    return {
        "uuid": instance_uuid(i), "name": name, "hostname": name, "project_id": project(i), "user_id": "bench-user",
        "availability_zone": "nova", "flavor": "m1.small", "image_id": "be000000-0000-4000-8000-0000000000aa",
        "root_device_name": "/dev/vda", "ec2_ids": {"instance": i + 1},
        "key_pairs": [{"name": "bench", "type": "ssh", "public_key": f"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI{i:032d} bench@{name}"}],
        "user_data": base64.b64encode(f"#cloud-config\nhostname: {name}\nruncmd:\n  - echo booted {i}\n".encode()).decode(),
        "metadata": {"role": "bench", "index": str(i)}, "security_groups": ["default"],
        "nics": [{
            "port_id": f"be000000-0000-4000-8000-{(i + 0x100000):012x}", "mac": "fa:16:3e:%02x:%02x:%02x" % (i >> 16 & 255, i >> 8 & 255, i & 255),
            "vif_type": "ovs", "network": {"id": network_id, "name": "bench-net", "mtu": 1450},
            "fixed_ips": [{"ip": ip, "floating_ips": [], "subnet": {
                "id": SUBNET_ID, "cidr": cidr, "ip_version": 4, "gateway": None, "dns": ["127.0.0.53"], "routes": [],
                "enable_dhcp": True}}],
        }],
    }


def sign(value: str) -> str:
    from mdsvc.api.identify import sign as mdsvc_sign

    return mdsvc_sign(SECRET, value)


def write_requests(path: str, instances: int, signed: bool) -> None:
    """The wrk request file of boot.lua: one boot per instance, C{Connection: close} after each."""
    with open(path, "w") as f:
        for i in range(instances):
            headers = ""
            if signed:
                u = instance_uuid(i)
                headers = f"\tX-Instance-ID: {u}\tX-Tenant-ID: {project(i)}\tX-Instance-ID-Signature: {sign(u)}"
            for n, p in enumerate(BOOT_PATHS):
                f.write(f"{p}\t{1 if n == len(BOOT_PATHS) - 1 else 0}{headers}\n")


# ------------------------------------------------------------------------------------- processes

def rss_kib(pid: int) -> int:
    """VmRSS of a process, in KiB (0 if it is gone)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def descendants(pids: list[int]) -> list[int]:
    """The processes and all their children (gunicorn workers, haproxy threads are one process)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    out, todo = [], list(pids)
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


class Server:
    """A server process we started: pinned, logging to a file, always stopped."""

    def __init__(self, name: str, argv: list[str], log_path: str, cpu: str | None, env: dict[str, str] | None = None,
                 cwd: str = ROOT) -> None:
        self.name = name
        self.log_path = log_path
        self._log = open(log_path, "ab")
        prefix = ["taskset", "-c", cpu] if cpu is not None else []
        self.process = subprocess.Popen(prefix + argv, stdout=self._log, stderr=subprocess.STDOUT, cwd=cwd,
                                        env=dict(os.environ, **(env or {})), start_new_session=True)
        RUN.servers.append(self)

    @property
    def pid(self) -> int:
        return self.process.pid

    def log(self) -> str:
        with open(self.log_path, encoding="utf-8", errors="replace") as f:
            return f.read()

    def wait_until(self, condition: Callable[[], bool], what: str, timeout: float | None = None) -> None:
        deadline = time.monotonic() + (timeout if timeout is not None else RUN.start_timeout)
        while time.monotonic() < deadline:
            if condition():
                return
            if self.process.poll() is not None:
                raise BenchError(f"{self.name} exited with {self.process.returncode} waiting for {what}:\n{self.log()[-3000:]}")
            time.sleep(0.05)
        raise BenchError(f"{self.name}: timed out waiting for {what}:\n{self.log()[-3000:]}")

    def stop(self) -> None:
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self._log.close()
        if self in RUN.servers:
            RUN.servers.remove(self)


class BenchError(Exception):
    """The benchmark could not run a part; the message says which and why."""


class Run:
    """What has to be undone whatever happens: servers, namespaces, the temporary directory."""

    def __init__(self) -> None:
        self.servers: list[Server] = []
        self.namespaces: list[str] = []
        self.tmp: str | None = None
        self.keep_tmp = False
        self.start_timeout = 60.0
        """Seconds a server may take to listen (bench/counted.py's, under callgrind, take longer)."""

    def cleanup(self) -> None:
        for server in list(self.servers):
            try:
                server.stop()
            except Exception as e:  # noqa: BLE001 - keep cleaning
                print(f"warning: stopping {server.name}: {e}", file=sys.stderr)
        if self.namespaces:
            ip_batch([f"netns del {n}" for n in self.namespaces])
            left = [n for n in self.namespaces if os.path.exists(f"/run/netns/{n}")]
            if left:
                print(f"warning: {len(left)} namespaces left behind, e.g. {left[0]}", file=sys.stderr)
            self.namespaces = []
        if self.tmp and not self.keep_tmp:
            shutil.rmtree(self.tmp, ignore_errors=True)
            self.tmp = None


RUN = Run()


def ip_batch(commands: list[str]) -> None:
    """C{ip -force -batch -}: many namespace operations in one process."""
    subprocess.run(["ip", "-force", "-batch", "-"], input="\n".join(commands) + "\n", text=True, capture_output=True, check=False)


def wait_tcp(server: Server, port: int, host: str = "127.0.0.1") -> None:
    def up() -> bool:
        try:
            socket.create_connection((host, port), timeout=0.5).close()
            return True
        except OSError:
            return False

    server.wait_until(up, f"port {port}")


def wait_unix(server: Server, path: str) -> None:
    def up() -> bool:
        s = socket.socket(socket.AF_UNIX)
        try:
            s.connect(path)
            return True
        except OSError:
            return False
        finally:
            s.close()

    server.wait_until(up, f"socket {path}")


# ----------------------------------------------------------------------------------- namespaces

_libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
CLONE_NEWNET = 0x40000000


def enter_bench_namespace(name: str) -> None:
    """Create a namespace with loopback up and move this whole process (and so its children) in."""
    subprocess.run(["ip", "netns", "add", name], check=True, capture_output=True)
    RUN.namespaces.append(name)
    fd = os.open(f"/run/netns/{name}", os.O_RDONLY)
    try:
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            raise BenchError(f"setns({name}): {os.strerror(ctypes.get_errno())}")
    finally:
        os.close(fd)
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)


def snat_guests(port: int, guests: int) -> None:
    """
    Every new connection from 127.0.0.1 to C{port} gets the next guest's source address, round
    robin (iptables statistic nth, one SNAT rule per guest), in the bench namespace only.
    """
    rules = ["*nat"]
    for i in range(guests):
        rules.append(f"-A POSTROUTING -o lo -s 127.0.0.1/32 -d 127.0.0.1/32 -p tcp --dport {port} "
                     f"-m statistic --mode nth --every {guests - i} --packet 0 -j SNAT --to-source {guest_ip(i)}")
    rules.append("COMMIT")
    result = subprocess.run(["iptables-restore", "--noflush"], input="\n".join(rules) + "\n", text=True, capture_output=True)
    if result.returncode != 0:
        raise BenchError(f"iptables-restore: {result.stderr.strip()}")


def clear_snat() -> None:
    subprocess.run(["iptables", "-t", "nat", "-F", "POSTROUTING"], capture_output=True)


# ------------------------------------------------------------------------------- configurations

class Ports:
    """Fixed ports inside the bench namespace (nothing else listens there); free ones outside."""

    def __init__(self, isolated: bool) -> None:
        self.isolated = isolated
        self.next = 20000

    def get(self) -> int:
        if self.isolated:
            self.next += 1
            return self.next
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]


def mdsvc_config(tmp: str, api_port: int, listener_port: int, metrics: bool = False, extra: str = "") -> str:
    """
    One config file every mdsvc role of the run reads (each reads its own sections); with
    C{metrics}, every process also serves /metrics on a port of its own (C{tcp:0}); C{extra}
    (sections of options) is added at the end.
    """
    path = os.path.join(tmp, "mdsvc.conf")
    with open(path, "w") as f:
        f.write(f"""# written by bench/run.py
[DEFAULT]
state_path = {tmp}/state
metadata_proxy_shared_secret = {SECRET}
metadata_proxy_socket = {tmp}/state/metadata_proxy
nova_metadata_host = 127.0.0.1
nova_metadata_port = {api_port}

[neutron]
service_metadata_proxy = true
metadata_proxy_shared_secret = {SECRET}

[proxy]
namespaces = none
listeners = network {NETWORK_ID} tcp:{listener_port}:interface=127.0.0.1

[mdsvc]
api_endpoint = tcp:{api_port}:interface=127.0.0.1
""")
        if metrics:
            f.write("metrics_endpoint = tcp:0:interface=127.0.0.1\n")
        f.write(extra)
    return path


def workers_config(config: str, workers: int) -> str:
    """C{config} with C{[DEFAULT] metadata_workers = workers}, next to it."""
    path = config.replace(".conf", f"-workers{workers}.conf")
    with open(config) as f:
        text = f.read()
    with open(path, "w") as f:
        f.write(text.replace("[DEFAULT]\n", f"[DEFAULT]\nmetadata_workers = {workers}\n", 1))
    return path


def haproxy_config(tmp: str, port: int, socket_path: str) -> str:
    """
    Neutron's DHCP-namespace template (spec §8, no rate limiting) with these changes only: bind on
    a loopback port instead of 169.254.169.254:80, no user/group/daemon (run in the foreground as
    the caller), pidfile in the temporary directory.
    """
    from tests.integration.neutron_haproxy import neutron_haproxy_config

    return neutron_haproxy_config(
        os.path.join(tmp, "haproxy.conf"), NETWORK_ID, [f"127.0.0.1:{port}"], socket_path,
        ["del-header X-Neutron-Router-ID", f"set-header X-Neutron-Network-ID {NETWORK_ID}"],
    )


# ----------------------------------------------------------------------------------- the checks

def http_get(port: int, path: str, headers: dict[str, str] | None = None, source: str | None = None) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=15, source_address=(source, 0) if source else None)
    try:
        conn.request("GET", path, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def check_boot(shape: int, port: int, instances: list[int], signed: bool, by_source: bool) -> None:
    """
    Every request of the boot of a few instances answers 200, and the answers are the instance's:
    C{meta_data.json} names its uuid, C{instance-id} its EC2 id, C{local-ipv4} its fixed IP.
    """
    for i in instances:
        headers = {}
        if signed:
            u = instance_uuid(i)
            headers = {"X-Instance-ID": u, "X-Tenant-ID": project(i), "X-Instance-ID-Signature": sign(u)}
        source = guest_ip(i) if by_source else None
        for path in BOOT_PATHS:
            status, body = http_get(port, path, headers, source)
            if status != 200:
                raise BenchError(f"shape {shape}: GET {path} for instance {i} answered {status}: {body[:200]!r}")
            expect = {
                "/openstack/2018-08-27/meta_data.json": f'"uuid": "{instance_uuid(i)}"'.encode(),
                "/latest/meta-data/instance-id": ec2_instance_id(i).encode(),
                "/latest/meta-data/local-ipv4": guest_ip(i).encode(),
                "/openstack": b"2018-08-27",
            }.get(path)
            if expect is not None and expect not in body:
                raise BenchError(f"shape {shape}: GET {path} for instance {i}: {expect!r} not in {body[:300]!r}")


def check_tiny(shape: int, port: int) -> None:
    status, body = http_get(port, "/openstack/2018-08-27/meta_data.json")
    if status != 200 or len(body) != TINY_BODY_LEN or not body.startswith(b"instance-id: "):
        raise BenchError(f"shape {shape}: answered {status} with {len(body)} bytes: {body[:80]!r}")


# -------------------------------------------------------------------------------------- the load

def cpu_ticks(pids: list[int]) -> int:
    """utime + stime (clock ticks) of the processes, their threads and their live children."""
    total = 0
    for pid in descendants(pids):
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            pass
    return total


def last_cpu(pid: int) -> int | None:
    """The CPU a process last ran on (/proc/PID/stat field 39), or None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[36])
    except (OSError, IndexError, ValueError):
        return None


def cpu_ticks_own(pid: int) -> int:
    """utime + stime (clock ticks) of one process (its threads included), 0 once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])
    except (OSError, IndexError, ValueError):
        return 0


class RSSSampler:
    """
    Peak of the summed RSS of the server processes (and their children) while the load runs, and
    the CPUs each process was seen running on (sampled twice a second).
    """

    def __init__(self, pids: list[int]) -> None:
        self.pids = pids
        self.peak = 0
        self.cpus: dict[int, set[int]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def sample(self) -> int:
        processes = descendants(self.pids)
        total = sum(rss_kib(p) for p in processes)
        self.peak = max(self.peak, total)
        for pid in processes:
            cpu = last_cpu(pid)
            if cpu is not None:
                self.cpus.setdefault(pid, set()).add(cpu)
        return total

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            self.sample()

    def __enter__(self) -> RSSSampler:
        self.sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()


def wrk(opts: argparse.Namespace, port: int, request_file: str, servers: list[Server], profile: Callable[[], Any] | None = None,
        pinned: bool = True) -> dict[str, Any]:
    """Drive one shape with wrk (one thread, pinned unless not C{pinned}); the MDSVC-BENCH line of boot.lua, plus RSS."""
    argv = ["wrk", "-t1", f"-c{opts.connections}", f"-d{opts.duration}s", "--timeout", "10s",
            "-s", os.path.join(BENCH, "boot.lua"), f"http://127.0.0.1:{port}", "--", request_file, "1"]
    if opts.client_cpu is not None and pinned:
        argv = ["taskset", "-c", opts.client_cpu] + argv
    pids = [s.pid for s in servers]
    with RSSSampler(pids) as rss:
        ticks0 = cpu_ticks(pids)
        each0 = {pid: cpu_ticks_own(pid) for pid in descendants(pids)}
        load = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        stop_profile = None
        if profile:
            time.sleep(1)  # py-spy attached to a process under load, not before it
            stop_profile = profile()
        try:
            stdout, stderr = load.communicate(timeout=opts.duration + 120)
        except subprocess.TimeoutExpired:
            load.kill()
            stdout, stderr = load.communicate()
        result = subprocess.CompletedProcess(argv, load.returncode, stdout, stderr)
        ticks = cpu_ticks(pids) - ticks0
        each = {pid: (cpu_ticks_own(pid) - each0.get(pid, 0)) / os.sysconf("SC_CLK_TCK") for pid in descendants(pids)}
        if stop_profile:
            stop_profile()
    found = re.search(r"^MDSVC-BENCH (\{.*\})$", result.stdout, re.M)
    if result.returncode != 0 or not found:
        raise BenchError(f"wrk failed ({result.returncode}): {result.stdout[-2000:]} {result.stderr[-2000:]}")
    stats = json.loads(found.group(1))
    stats["rps"] = stats["requests"] / (stats["duration_us"] / 1e6)
    stats["errors"] = stats["non2xx"] + stats["connect"] + stats["read"] + stats["write"] + stats["timeout"]
    stats["rss_kib"] = rss.peak
    stats["cpu_s_by_pid"] = each
    stats["cpus_by_pid"] = {pid: sorted(c) for pid, c in rss.cpus.items()}
    # server CPU per answered request (includes what the servers did for requests wrk left in flight)
    stats["cpu_us"] = ticks / os.sysconf("SC_CLK_TCK") * 1e6 / max(1, stats["requests"])
    for s in servers:
        if s.process.poll() is not None:
            raise BenchError(f"{s.name} died under load ({s.process.returncode}):\n{s.log()[-3000:]}")
    return stats


# ------------------------------------------------------------------------------------- the shapes

def twistd(name: str, role: str, config: str, cpu: str | None, tree: str | None = None, wrap: list[str] | None = None,
           env: dict[str, str] | None = None) -> Server:
    """
    twistd mdsvc of C{role}, of the measured tree or of C{tree}; C{wrap} is put before the
    interpreter's argv (bench/counted.py: valgrind), C{env} added to the process's environment.
    """
    assert RUN.tmp is not None
    return Server(name, (wrap or []) + TWISTD + ["-n", "--pidfile=", "--logfile=-", "mdsvc", "--role", role, "--config", config],
                  os.path.join(RUN.tmp, f"{name}.log"), cpu, env=dict(mdsvc_env(tree), **(env or {})),
                  cwd=tree or MDSVC_TREE["path"])


def manage(config: str, *args: str) -> None:
    """mdsvc-manage of the measured tree."""
    result = subprocess.run([sys.executable, "-m", "mdsvc.manage", "--config", config, *args], capture_output=True, text=True,
                            cwd=MDSVC_TREE["path"], env=dict(os.environ, **mdsvc_env()), timeout=600)
    if result.returncode != 0:
        raise BenchError(f"mdsvc-manage {' '.join(args)}: {result.stderr.strip()}")


def run_shape(shape: int, opts: argparse.Namespace, env: dict[str, Any]) -> dict[str, Any]:
    """Build one shape, check its answers, drive it, stop it. The figures."""
    servers: list[Server] = []
    try:
        port, requests, profile = start_shape(shape, opts, env, servers)
        stats = wrk(opts, port, requests, servers, profile, pinned=shape not in UNPINNED_SHAPES)
        stats["processes"] = len(descendants([s.pid for s in servers]))
        return stats
    finally:
        for s in reversed(servers):
            s.stop()


def start_shape(shape: int, opts: argparse.Namespace, env: dict[str, Any], servers: list[Server]) -> tuple[int, str, Any]:
    """
    Start one shape's servers (added to C{servers} as they start, for the caller to stop) and
    check its answers: the port to load, the request file, and the profiler to start under load (or None).
    """
    tmp, ports, cpu = RUN.tmp, env["ports"], opts.server_cpu
    assert tmp is not None
    tree, label = env.get("tree"), env.get("label", "")  # (bench/ab.py: two trees side by side)
    wrapped = {"wrap": env.get("wrap"), "env": env.get("server_env")}  # (bench/counted.py: servers under valgrind)
    profile = None
    if shape == 1:
        port = ports.get()
        servers.append(Server("tiny", [sys.executable, os.path.join(BENCH, "tiny_server.py"), f"tcp:{port}:interface=127.0.0.1"],
                              os.path.join(tmp, "tiny.log"), cpu))
        wait_tcp(servers[0], port)
        check_tiny(shape, port)
        requests = env["plain"]
    elif shape == 2:
        port = ports.get()
        sock = os.path.join(tmp, "metadata_proxy.tiny")
        servers.append(Server("tiny-unix", [sys.executable, os.path.join(BENCH, "tiny_server.py"), f"unix:{sock}"],
                              os.path.join(tmp, "tiny-unix.log"), cpu))
        wait_unix(servers[0], sock)
        servers.append(Server("haproxy", ["haproxy", "-db", "-f", haproxy_config(tmp, port, sock)], os.path.join(tmp, "haproxy.log"), cpu))
        wait_tcp(servers[1], port)
        check_tiny(shape, port)
        requests = env["plain"]
    elif shape in (3, 4, 5):
        api_port, listener_port = env["api_port"], env["listener_port"]
        config = env["config"]
        if shape == 3:
            servers.append(twistd(label + "api", "api", config, cpu, tree, **wrapped))
            wait_tcp(servers[0], api_port)
            port, requests = api_port, env["signed"]
            check_boot(shape, port, env["check"], signed=True, by_source=False)
        else:
            if shape == 4:
                servers.append(twistd(label + "api", "api", config, cpu, tree, **wrapped))
                wait_tcp(servers[0], api_port)
                servers.append(twistd(label + "network-node", "network-node", config, cpu, tree, **wrapped))
            else:
                servers.append(twistd(label + "all-in-one", "all-in-one", config, cpu, tree, **wrapped))
            wait_tcp(servers[-1], listener_port)
            port, requests = listener_port, env["plain"]
            check_boot(shape, port, env["check"], signed=False, by_source=env["isolated"])
        if shape == opts.profile_shape and opts.profile:
            profile = py_spy(opts, servers[-1].pid)
    elif shape == 7:
        api_port = env["api_port"]
        servers.append(twistd("api-workers", "api", workers_config(env["config"], 2), None))
        wait_tcp(servers[0], api_port)
        servers[0].wait_until(lambda: "all 2 API workers are serving" in servers[0].log(), "both workers")
        port, requests = api_port, env["signed"]
        check_boot(shape, port, env["check"], signed=True, by_source=False)
    elif shape == 6:
        port = ports.get()
        gunicorn = os.path.join(NOVA_VENV, "bin", "gunicorn")
        servers.append(Server("nova-gunicorn", [gunicorn, "-w", "2", "-b", f"127.0.0.1:{port}", "--no-control-socket",
                                                "--chdir", BENCH, "nova_wsgi:application"],
                              os.path.join(tmp, "gunicorn.log"), cpu,
                              env={"MDSVC_BENCH_INSTANCES": env["documents"], "MDSVC_BENCH_SECRET": SECRET, "PYTHONWARNINGS": "ignore"}))
        wait_tcp(servers[0], port)
        check_boot(shape, port, env["check"], signed=True, by_source=False)
        requests = env["signed"]
    else:
        raise BenchError(f"no shape {shape}")
    return port, requests, profile


def py_spy(opts: argparse.Namespace, pid: int) -> Callable[[], Any]:
    """Start py-spy on C{pid} for the load; returns the function that stops it and reports."""
    exe = shutil.which("py-spy")
    real = os.path.join(os.path.dirname(sys.executable), "py-spy")  # not pyenv's shim (a shell script)
    if os.path.exists(real):
        exe = real
    if exe is None:
        raise BenchError("--profile needs py-spy: pip install py-spy")
    base = opts.profile
    raw = base + ".txt"
    # not pinned: on the load generator's core it would starve behind wrk. It pauses the target
    # for each sample (100 a second), which costs the profiled run a few per cent.
    argv = [exe, "record", "--pid", str(pid), "--rate", "100", "--format", "raw", "-o", raw,
            "--duration", str(max(1, opts.duration - 3))]
    log = open(base + ".log", "wb")
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)

    def stop() -> None:
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.terminate()
            proc.wait()

    return stop


IDLE_LEAVES = ("Condition.wait (threading.py", "EPollReactor.doPoll (twisted/internet/epollreactor.py")
"""Leaf frames that are waiting, not working: idle thread-pool workers, the reactor in epoll_wait."""


KEY_FRAMES = (
    "HTTPChannel.dataReceived (twisted/web/http.py",  # an HTTP server parsing a request and rendering it
    "Agent.request (twisted/web/client.py",  # the HTTP client sending a request
    "HTTP11ClientProtocol.dataReceived (twisted/web/_newclient.py",  # ... and parsing the answer
    "LogPublisher.__call__ (twisted/logger/_observer.py",  # every log event
    "FileDescriptor.doWrite (twisted/internet/abstract.py",  # socket writes
    "Connection.doRead (twisted/internet/tcp.py",  # socket reads (and all that follows from them)
)
"""Twisted frames whose inclusive share says what the chain spends its time on."""


def _function(frame: str) -> str:
    """C{Class.method (path/file.py:123)} -> C{Class.method (path/file.py)}: samples of all lines of a function together."""
    return re.sub(r":\d+\)$", ")", frame)


def own_time_top(raw_path: str, n: int = 15) -> tuple[list[tuple[float, int, str]], list[tuple[float, int, str]], int, int]:
    """
    From py-spy's raw (collapsed stack) output: the top C{n} functions by own (self) time, and
    mdsvc's and a few key Twisted functions (L{KEY_FRAMES}) by inclusive time, as shares of the busy samples (idle leaves left
    out); and the busy and idle sample counts.
    """
    own: dict[str, int] = {}
    inclusive: dict[str, int] = {}
    busy = idle = 0
    with open(raw_path) as f:
        for line in f:
            stack, _, count = line.rstrip("\n").rpartition(" ")
            if not stack:
                continue
            frames = stack.split(";")
            if frames[-1].startswith(IDLE_LEAVES):
                idle += int(count)
                continue
            leaf = _function(frames[-1])
            own[leaf] = own.get(leaf, 0) + int(count)
            for name in {_function(f) for f in frames if "mdsvc/" in f or f.startswith(KEY_FRAMES)}:
                inclusive[name] = inclusive.get(name, 0) + int(count)
            busy += int(count)

    def top(table: dict[str, int], k: int) -> list[tuple[float, int, str]]:
        return [(100.0 * c / max(1, busy), c, name) for name, c in sorted(table.items(), key=lambda kv: -kv[1])[:k]]

    return top(own, n), top(inclusive, n), busy, idle


# ---------------------------------------------------------------------------------------- modes

def prepare_store(opts: argparse.Namespace, tmp: str, count: int) -> str:
    """Import C{count} instance documents into the store of the run's config; the documents file."""
    documents = os.path.join(tmp, "instances.json")
    with open(documents, "w") as f:
        json.dump([instance_document(i) for i in range(count)], f)
    manage(os.path.join(tmp, "mdsvc.conf"), "instance", "import", documents)
    return documents


def run_storm(opts: argparse.Namespace, env: dict[str, Any]) -> dict[str, Any]:
    """N guests boot through shape 5 (or 4 with --storm-shape 4); the storm client's summary."""
    tmp = RUN.tmp
    assert tmp is not None
    servers: list[Server] = []
    guests = os.path.join(tmp, "guests.txt")
    with open(guests, "w") as f:
        for i in range(opts.storm):
            f.write(f"{guest_ip(i)} {instance_uuid(i)} {ec2_instance_id(i)}\n")
    try:
        if opts.storm_shape == 4:
            servers.append(twistd("storm-api", "api", env["config"], opts.server_cpu))
            wait_tcp(servers[0], env["api_port"])
            servers.append(twistd("storm-network-node", "network-node", env["config"], opts.server_cpu))
        else:
            servers.append(twistd("storm-all-in-one", "all-in-one", env["config"], opts.server_cpu))
        wait_tcp(servers[-1], env["listener_port"])
        argv = [sys.executable, os.path.join(BENCH, "storm.py"), "127.0.0.1", str(env["listener_port"]), guests,
                "--concurrency", str(opts.storm_concurrency)]
        if opts.client_cpu is not None:
            argv = ["taskset", "-c", opts.client_cpu] + argv
        with RSSSampler([s.pid for s in servers]) as rss:
            result = subprocess.run(argv, capture_output=True, text=True, timeout=1800)
        found = re.search(r"^MDSVC-STORM (\{.*\})$", result.stdout, re.M)
        if result.returncode != 0 or not found:
            raise BenchError(f"storm client failed ({result.returncode}): {result.stderr[-2000:]}")
        stats = json.loads(found.group(1))
        stats["rss_kib"] = rss.peak
        return stats
    finally:
        for s in reversed(servers):
            s.stop()


def run_namespaces(opts: argparse.Namespace) -> dict[str, Any]:
    """
    K C{qdhcp-<uuid>} namespaces (veth-less) appear while one C{--role proxy} process runs with
    C{namespaces = auto}: seconds until it serves all of them, its RSS per namespace. One of them
    gets a guest address on its loopback and reads its metadata through the proxy, the agent and
    the API of an all-in-one process (which serves the agent socket only, namespaces = none).
    """
    tmp = RUN.tmp
    assert tmp is not None
    k = opts.namespaces
    nsdir = os.path.join(tmp, "ns")
    os.makedirs(nsdir, exist_ok=True)
    ids = [str(uuidlib.uuid4()) for _ in range(k + 1)]
    names = [f"qdhcp-{i}" for i in ids]
    probe_ns, probe_ip = names[0], "10.254.0.5"
    # the all-in-one behind the proxy: one instance in the probe namespace's network
    port = Ports(False).get() if not opts.isolated else 29000
    config = os.path.join(nsdir, "mdsvc.conf")
    with open(config, "w") as f:
        f.write(f"""[DEFAULT]
state_path = {nsdir}/state
metadata_proxy_shared_secret = {SECRET}
metadata_proxy_socket = {nsdir}/state/metadata_proxy
nova_metadata_port = {port}

[neutron]
service_metadata_proxy = true
metadata_proxy_shared_secret = {SECRET}

[proxy]
namespaces = auto
netns_dir = /run/netns

[mdsvc]
api_endpoint = tcp:{port}:interface=127.0.0.1
""")
    with open(os.path.join(nsdir, "probe.json"), "w") as f:
        json.dump([instance_document(0, network_id=ids[0], ip=probe_ip, cidr="10.254.0.0/24")], f)
    manage(config, "instance", "import", os.path.join(nsdir, "probe.json"))
    backend_config = os.path.join(nsdir, "backend.conf")
    with open(backend_config, "w") as f:
        f.write(open(config).read().replace("namespaces = auto", "namespaces = none"))
    servers: list[Server] = []
    try:
        servers.append(twistd("ns-backend", "all-in-one", backend_config, opts.server_cpu))
        wait_unix(servers[0], f"{nsdir}/state/metadata_proxy")
        proxy = twistd("ns-proxy", "proxy", config, opts.server_cpu)
        servers.append(proxy)
        served = re.compile(r"serving metadata in namespace (qdhcp-[0-9a-f-]+) on")
        mine = set(names)

        def count() -> int:
            return len(set(served.findall(proxy.log())) & mine)

        # the probe namespace first: proves the proxy watches, and is read through the chain
        RUN.namespaces.append(probe_ns)
        for command in (["netns", "add", probe_ns], ["-n", probe_ns, "link", "set", "lo", "up"],
                        ["-n", probe_ns, "addr", "add", "169.254.169.254/32", "dev", "lo"], ["-n", probe_ns, "addr", "add", f"{probe_ip}/32", "dev", "lo"]):
            subprocess.run(["ip", *command], check=True, capture_output=True)
        proxy.wait_until(lambda: count() >= 1, f"the proxy to serve {probe_ns}")
        check = subprocess.run(
            ["ip", "netns", "exec", probe_ns, sys.executable, "-c",
             "import http.client, sys; c = http.client.HTTPConnection('169.254.169.254', 80, timeout=15, source_address=(sys.argv[1], 0)); "
             "c.request('GET', '/openstack/2018-08-27/meta_data.json'); r = c.getresponse(); print(r.status); print(r.read().decode())",
             probe_ip], capture_output=True, text=True, timeout=60)
        if not check.stdout.startswith("200") or instance_uuid(0) not in check.stdout:
            raise BenchError(f"namespace {probe_ns} did not answer through the proxy: {check.stdout[:300]} {check.stderr[-500:]}")
        time.sleep(0.5)
        rss0 = rss_kib(proxy.pid)
        RUN.namespaces.extend(names[1:])
        started = time.monotonic()
        ip_batch([f"netns add {n}" for n in names[1:]])
        created = time.monotonic() - started
        proxy.wait_until(lambda: count() >= k + 1, f"the proxy to serve {k} namespaces", timeout=max(120, k / 5))
        discovered = time.monotonic() - started
        time.sleep(0.5)
        rss1 = rss_kib(proxy.pid)
        fds = len(os.listdir(f"/proc/{proxy.pid}/fd"))
        return {"namespaces": k, "create_s": created, "served_s": discovered, "rss_before_kib": rss0, "rss_kib": rss1,
                "per_ns_kib": (rss1 - rss0) / k, "fds": fds}
    finally:
        for s in reversed(servers):
            s.stop()
        ip_batch([f"netns del {n}" for n in names])
        RUN.namespaces = [n for n in RUN.namespaces if n not in set(names)]


# ---------------------------------------------------------------------------------------- table

def ms(us: float) -> str:
    return f"{us / 1000:.2f}"


def describe_tree() -> str:
    """The measured mdsvc: its git commit (with + when the tree has changes), else its directory."""
    path = MDSVC_TREE["path"]
    head = subprocess.run(["git", "-C", path, "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    if head.returncode != 0 or os.path.abspath(subprocess.run(["git", "-C", path, "rev-parse", "--show-toplevel"], capture_output=True,
                                                              text=True).stdout.strip() or "/") != os.path.abspath(path):
        return path
    dirty = subprocess.run(["git", "-C", path, "status", "--porcelain", "--", "mdsvc"], capture_output=True, text=True).stdout.strip()
    return f"commit {head.stdout.strip()}{'+' if dirty else ''}"


def print_table(results: dict[int, dict[str, Any]], opts: argparse.Namespace, out: Any = sys.stdout) -> None:
    print(f"\nmdsvc ({describe_tree()}) bench: wrk -t1 -c{opts.connections} -d{opts.duration}s, cloud-init boot mix ({len(BOOT_PATHS)} GETs a boot) "
          f"over {opts.instances} instances; servers on CPU {opts.server_cpu or 'any'}, wrk on CPU {opts.client_cpu or 'any'}", file=out)
    head = (f"{'shape':<38} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'p99.9 ms':>9} {'errors':>7} {'RSS MiB':>8} "
            f"{'CPU us/req':>10} {'core %':>6}")
    print(head, file=out)
    print("-" * len(head), file=out)
    for shape in sorted(results):
        r = results[shape]
        if "failed" in r:
            print(f"{SHAPE_NAMES[shape]:<38} FAILED: {r['failed']}", file=out)
            continue
        print(f"{SHAPE_NAMES[shape]:<38} {r['rps']:>9.0f} {ms(r['p50']):>8} {ms(r['p99']):>8} {ms(r['p999']):>9} "
              f"{r['errors']:>7} {r['rss_kib'] / 1024:>8.1f} {r['cpu_us']:>10.0f} {r['cpu_us'] * r['rps'] / 1e4:>6.0f}", file=out)
    print("-" * len(head), file=out)
    if opts.server_cpu is not None and any(r.get("cpu_us", 0) * r.get("rps", 0) < 0.9e6 for k, r in results.items() if k not in UNPINNED_SHAPES):
        print("note: a shape whose servers used under 90% of their core was held back by something else "
              "(another load on the machine, or latency): run it again before trusting its req/s", file=out)
    for shape in (3, 7):
        r = results.get(shape, {})
        if "rps" in r:
            cores = r["cpu_us"] * r["rps"] / 1e6
            print(f"shape {shape}: {r['rps']:.0f} req/s on {cores:.2f} cores of server CPU = {r['rps'] / cores:.0f} req/s per core"
                  f"{' (workers and wrk unpinned, sharing both cores)' if shape in UNPINNED_SHAPES else ''}", file=out)
    r7 = results.get(7, {})
    if "cpu_s_by_pid" in r7:
        processes = ", ".join(f"pid {pid}: {seconds:.1f} s on CPU {','.join(map(str, r7['cpus_by_pid'].get(pid, [])))}"
                              for pid, seconds in sorted(r7["cpu_s_by_pid"].items()))
        print(f"shape 7 server processes (supervisor first), CPU time during the load and the CPUs seen running them: {processes}", file=out)
    r3 = results.get(3, {})
    if "rps" in r3 and "rps" in r7:
        print(f"shape7/shape3 = {r7['rps'] / r3['rps']:.2f} in req/s, "
              f"{(r7['rps'] / (r7['cpu_us'] * r7['rps'] / 1e6)) / (r3['rps'] / (r3['cpu_us'] * r3['rps'] / 1e6)):.2f} per core", file=out)
    for a, b, target in ((4, 2, 1.0), (5, 1, 0.5), (3, 6, 5.0)):
        ra, rb = results.get(a), results.get(b)
        if ra and rb and "rps" in ra and "rps" in rb and rb["rps"]:
            ratio = ra["rps"] / rb["rps"]
            print(f"shape{a}/shape{b} = {ratio:.2f}  (target >= {target:g}: {'met' if ratio >= target else 'NOT met'})", file=out)
        else:
            print(f"shape{a}/shape{b} = n/a", file=out)


# ----------------------------------------------------------------------------------------- main

def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--duration", type=int, default=None, help="seconds of load per shape (default 20; smoke 2)")
    p.add_argument("--connections", type=int, default=50, help="wrk connections (default 50)")
    p.add_argument("--shapes", default=None, help="comma-separated shapes (default 1,2,3,4,5,6,7)")
    p.add_argument("--instances", type=int, default=None, help="instances in the request mix (default 200; smoke 4)")
    p.add_argument("--smoke", action="store_true", help="short run checking that every shape starts and answers right (CI)")
    p.add_argument("--storm", type=int, default=None, metavar="N", help="boot storm of N instances (default 1000; 0: none)")
    p.add_argument("--storm-concurrency", type=int, default=50, help="guests booting at once in the storm (default 50)")
    p.add_argument("--storm-shape", type=int, choices=(4, 5), default=5, help="the chain the storm goes through (default 5)")
    p.add_argument("--namespaces", type=int, default=None, metavar="K", help="namespace scale with K namespaces (default 1000; 0: none)")
    p.add_argument("--no-pin", action="store_true", help="do not pin servers and load generators to separate CPUs")
    p.add_argument("--no-netns", action="store_true", help="(root) stay in this network namespace: shapes 4/5 see one guest")
    p.add_argument("--profile", metavar="PATH", help="py-spy record a shape's front process (default shape 5) during its load into "
                   "PATH.txt (raw collapsed stacks) and print the top frames by own time")
    p.add_argument("--profile-shape", type=int, choices=(3, 4, 5), default=5, help="the shape --profile records (4: the network-node process)")
    p.add_argument("--mdsvc-tree", metavar="DIR", help="measure the mdsvc of another source tree (e.g. an older commit: "
                   "git archive COMMIT | tar -x -C DIR); default this repository")
    p.add_argument("--keep", action="store_true", help="keep the temporary directory (logs, configs)")
    p.add_argument("--metrics", action="store_true", help="every mdsvc process also serves [mdsvc] metrics_endpoint (tcp:0)")
    opts = p.parse_args(argv)
    # nothing selected: everything; --smoke: everything, small; else only what was asked for
    selected = opts.shapes is not None or opts.storm is not None or opts.namespaces is not None
    everything = opts.smoke or not selected
    if opts.shapes is None:
        opts.shapes = "1,2,3,4,5,6,7" if everything else ""
    opts.shape_list = [int(s) for s in opts.shapes.split(",") if s.strip()]
    if opts.smoke:
        opts.duration = opts.duration or 2
        opts.instances = opts.instances or 4
        opts.storm = 20 if opts.storm is None else opts.storm
        opts.namespaces = 20 if opts.namespaces is None else opts.namespaces
    else:
        opts.duration = opts.duration or 20
        opts.instances = opts.instances or 200
        if opts.storm is None:
            opts.storm = 1000 if everything else 0
        if opts.namespaces is None:
            opts.namespaces = 1000 if everything else 0
    cpus = sorted(os.sched_getaffinity(0))
    if opts.no_pin or len(cpus) < 2:
        opts.server_cpu = opts.client_cpu = None
    else:
        opts.server_cpu, opts.client_cpu = str(cpus[0]), str(cpus[1])
    return opts


def preflight(opts: argparse.Namespace) -> None:
    missing = [t for t in ("wrk", "haproxy", "taskset") if shutil.which(t) is None]
    if 6 in opts.shape_list and not os.path.exists(os.path.join(NOVA_VENV, "bin", "gunicorn")):
        missing.append(f"the Nova venv ({NOVA_VENV})")
    if missing:
        raise BenchError(f"not installed: {', '.join(missing)}; run: bash bench/install.sh")
    if opts.namespaces and os.geteuid() != 0:
        raise BenchError("--namespaces needs root (ip netns add); use --namespaces 0")


def main(argv: list[str] | None = None) -> int:
    opts = parse_args(argv)
    if opts.mdsvc_tree:
        MDSVC_TREE["path"] = os.path.abspath(opts.mdsvc_tree)
    atexit.register(RUN.cleanup)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    signal.signal(signal.SIGHUP, lambda *_: sys.exit(129))
    results: dict[int, dict[str, Any]] = {}
    failed = False
    try:
        preflight(opts)
        RUN.tmp = tempfile.mkdtemp(prefix="mdsvc-bench-")
        RUN.keep_tmp = opts.keep
        opts.isolated = os.geteuid() == 0 and not opts.no_netns and shutil.which("iptables-restore") is not None
        if opts.isolated:
            enter_bench_namespace(f"mdsvc-bench-{os.getpid()}")
        ports = Ports(opts.isolated)
        api_port, listener_port = ports.get(), ports.get()
        config = mdsvc_config(RUN.tmp, api_port, listener_port, opts.metrics)
        count = max(opts.instances, opts.storm if opts.storm else 0)
        documents = prepare_store(opts, RUN.tmp, count)
        plain, signed = os.path.join(RUN.tmp, "plain.txt"), os.path.join(RUN.tmp, "signed.txt")
        write_requests(plain, opts.instances, signed=False)
        write_requests(signed, opts.instances, signed=True)
        if opts.isolated:
            snat_guests(listener_port, opts.instances)
        else:
            print("note: not isolated (not root, --no-netns or no iptables): shapes 4 and 5 see every request from one guest", file=sys.stderr)
        env = {"ports": ports, "api_port": api_port, "listener_port": listener_port, "config": config, "documents": documents,
               "plain": plain, "signed": signed, "isolated": opts.isolated,
               "check": sorted({0, opts.instances - 1}) if opts.isolated else [0]}
        if not opts.isolated and any(s in (4, 5) for s in opts.shape_list):
            # every connection comes from 127.0.0.1: make that instance 0's address
            raise BenchError("shapes 4 and 5 need the bench namespace (root and iptables); run as root or leave them out")
        for shape in opts.shape_list:
            print(f"shape {SHAPE_NAMES.get(shape, shape)}: {opts.duration}s ...", file=sys.stderr, flush=True)
            try:
                results[shape] = run_shape(shape, opts, env)
                r = results[shape]
                print(f"  {r['rps']:.0f} req/s, p99 {ms(r['p99'])} ms, {r['errors']} errors", file=sys.stderr, flush=True)
            except BenchError as e:
                failed = True
                results[shape] = {"failed": str(e).splitlines()[0]}
                print(f"  FAILED: {e}", file=sys.stderr, flush=True)
        if opts.shape_list:
            print_table(results, opts)
        if opts.profile and "rps" in results.get(opts.profile_shape, {}):
            top, ours, busy, idle = own_time_top(opts.profile + ".txt")
            print(f"\npy-spy (100 Hz), shape {SHAPE_NAMES[opts.profile_shape]} under load: top functions by own time "
                  f"({busy} busy samples; {idle} idle ones left out: pool threads waiting, epoll_wait)", flush=True)
            for pct, samples, frame in top:
                print(f"  {pct:5.1f}%  {samples:6d}  {frame}")
            print("mdsvc functions and key Twisted ones by inclusive time (callees included):")
            for pct, samples, frame in ours:
                print(f"  {pct:5.1f}%  {samples:6d}  {frame}")
        if opts.storm:
            clear_snat()
            print(f"boot storm: {opts.storm} guests through shape {opts.storm_shape}, {opts.storm_concurrency} at a time ...", file=sys.stderr, flush=True)
            try:
                s = run_storm(opts, env)
                print(f"\nboot storm (shape {opts.storm_shape}): {s['guests']} guests x {len(BOOT_PATHS)} GETs, {s['concurrency']} at a time, "
                      f"a new connection per GET: done in {s['seconds']:.2f} s, p50 {s['p50_ms']:.2f} ms, p99 {s['p99_ms']:.2f} ms, "
                      f"p99.9 {s['p999_ms']:.2f} ms, max {s['max_ms']:.2f} ms, errors {s['errors']}"
                      f"{' ' + json.dumps(s['by_kind']) if s['errors'] else ''}, server RSS {s['rss_kib'] / 1024:.1f} MiB")
                failed = failed or s["errors"] > 0
            except BenchError as e:
                failed = True
                print(f"\nboot storm: FAILED: {e}")
        if opts.namespaces:
            print(f"namespace scale: {opts.namespaces} namespaces ...", file=sys.stderr, flush=True)
            try:
                n = run_namespaces(opts)
                print(f"\nnamespace scale: {n['namespaces']} qdhcp- namespaces created in {n['create_s']:.2f} s (ip -batch), all served by "
                      f"one proxy process after {n['served_s']:.2f} s; proxy RSS {n['rss_before_kib'] / 1024:.1f} -> {n['rss_kib'] / 1024:.1f} MiB "
                      f"= {n['per_ns_kib']:.1f} KiB per namespace; {n['fds']} descriptors")
            except BenchError as e:
                failed = True
                print(f"\nnamespace scale: FAILED: {e}")
        if any(r.get("errors") for r in results.values()):
            failed = True
        return 1 if failed else 0
    except BenchError as e:
        print(f"bench: {e}", file=sys.stderr)
        return 2
    finally:
        RUN.cleanup()


if __name__ == "__main__":
    sys.exit(main())
