"""
The ovn lookup's replica at scale: 10,000 Port_Bindings over 500 networks in a real Southbound
ovsdb-server (Debian's), replicated by mdsvc's monitor (the ovs library's IDL in its thread).

    python3 bench/ovn_replica.py                          # 500 networks x 20 ports
    python3 bench/ovn_replica.py --networks 50 --ports 20 --lookups 20000   # a quick run

Prints: the time to the first sync (monitor started -> whole snapshot in the reactor's replica),
the memory it costs (process RSS growth, and with tracemalloc what the IDL's own copy and what
mdsvc's records and index hold), the latency of a lookup (in memory: microseconds), and the time
from a change committed in the database to the replica holding it.

The rows are written straight into the SB database (no ovn-northd), with the columns and values
northd writes for Neutron's networks and ports: a Datapath_Binding per network
(external_ids:name=neutron-<id>), Port_Bindings with mac "MAC IP" and Neutron's external_ids,
bound to a chassis.  Addresses overlap across networks (every network has 10.0.x.y).  Needs
ovn-central (apt-get install ovn-central ovn-common openvswitch-common).
"""

from __future__ import annotations

import argparse
import gc
import os
import queue
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
import uuid
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from twisted.internet.task import Clock  # noqa: E402

from mdsvc.lookup.cache import CachingLookup  # noqa: E402
from mdsvc.lookup.ovn.health import ReplicaHealth  # noqa: E402
from mdsvc.lookup.ovn.lookup import OvnLookup  # noqa: E402
from mdsvc.lookup.ovn.monitor import Changed, SouthboundMonitor, Stopped, Synced  # noqa: E402
from mdsvc.lookup.ovn.replica import SouthboundReplica  # noqa: E402

SCHEMA = "/usr/share/ovn/ovn-sb.ovsschema"


def rss_kib() -> int:
    """This process's resident memory, KiB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class Southbound:
    """A standalone SB ovsdb-server on a private UNIX socket."""

    def __init__(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="mdsvc-ovn-bench-")
        self.remote = f"unix:{self.dir}/sb.sock"
        subprocess.run(["ovsdb-tool", "create", f"{self.dir}/sb.db", SCHEMA], check=True)
        server = shutil.which("ovsdb-server") or "/usr/sbin/ovsdb-server"
        self.process = subprocess.Popen([server, f"--remote=p{self.remote}", f"--unixctl={self.dir}/sb.ctl", "--no-chdir",
                                         f"--log-file={self.dir}/sb.log", "-vconsole:off", f"{self.dir}/sb.db"])
        deadline = time.monotonic() + 10
        while not os.path.exists(f"{self.dir}/sb.sock"):
            if time.monotonic() > deadline:
                raise SystemExit("ovsdb-server did not start")
            time.sleep(0.02)
        subprocess.run(["ovn-sbctl", f"--db={self.remote}", "chassis-add", "bench-chassis", "geneve", "127.0.0.1"], check=True)
        self.chassis = subprocess.run(["ovn-sbctl", f"--db={self.remote}", "--bare", "--columns=_uuid", "find", "Chassis",
                                       "name=bench-chassis"], check=True, capture_output=True, text=True).stdout.strip()
        import ovs.jsonrpc
        import ovs.stream

        error, stream = ovs.stream.Stream.open_block(ovs.stream.Stream.open(self.remote))
        if error:
            raise SystemExit(f"cannot connect to {self.remote}: {os.strerror(error)}")
        self.connection = ovs.jsonrpc.Connection(stream)

    def transact(self, operations: list[dict[str, Any]]) -> None:
        """One OVSDB transaction (raises if the server refuses it)."""
        import ovs.jsonrpc

        error, reply = self.connection.transact_block(ovs.jsonrpc.Message.create_request("transact", ["OVN_Southbound", *operations]))
        if error or reply.error or any(isinstance(r, dict) and "error" in r for r in reply.result):
            raise SystemExit(f"transaction refused: {error or reply.error or reply.result}")

    def stop(self) -> None:
        self.connection.close()
        self.process.terminate()
        self.process.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def port_row(datapath: Any, key: int, network: int, index: int, chassis: str, device: str) -> dict[str, Any]:
    """A Port_Binding as northd writes one for a Neutron port of a Nova server."""
    ip = f"10.0.{index // 250}.{index % 250 + 3}"
    mac = f"fa:16:3e:{network >> 8:02x}:{network & 0xff:02x}:{index:02x}"
    ids = {"neutron:device_id": device, "neutron:device_owner": "compute:nova", "neutron:project_id": f"project-{network}",
           "neutron:cidrs": f"{ip}/16", "neutron:port_name": "", "neutron:revision_number": "2",
           "neutron:security_group_ids": str(uuid.uuid4()), "neutron:network_name": "", "neutron:vnic_type": "normal"}
    return {"datapath": datapath, "tunnel_key": key, "logical_port": str(uuid.uuid4()), "mac": f"{mac} {ip}",
            "chassis": ["uuid", chassis], "external_ids": ["map", sorted(ids.items())]}


def populate(sb: Southbound, networks: int, ports: int) -> dict[str, list[tuple[str, str]]]:
    """Write the networks and ports; return each network's (ip, device) pairs."""
    truth: dict[str, list[tuple[str, str]]] = {}
    for first in range(0, networks, 25):
        operations: list[dict[str, Any]] = []
        for n in range(first, min(first + 25, networks)):
            network = str(uuid.uuid4())
            operations.append({"op": "insert", "table": "Datapath_Binding", "uuid-name": f"dp{n}",
                               "row": {"tunnel_key": n + 1, "external_ids": ["map", [["name", f"neutron-{network}"], ["name2", f"net-{n}"]]]}})
            for i in range(ports):
                device = str(uuid.uuid4())
                row = port_row(["named-uuid", f"dp{n}"], i + 1, n, i, sb.chassis, device)
                operations.append({"op": "insert", "table": "Port_Binding", "row": row})
                truth.setdefault(network, []).append((row["mac"].split()[1], device))
        sb.transact(operations)
    return truth


def first_sync(remote: str) -> tuple[float, float, float, SouthboundReplica, SouthboundMonitor, queue.Queue[Any]]:
    """
    Start a monitor; the seconds to its snapshot (wall clock, and CPU: this thread only waits
    meanwhile, so the process's CPU time is the monitor's, whatever else the machine runs) and
    to the replica holding it.
    """
    events: queue.Queue[Any] = queue.Queue()
    monitor = SouthboundMonitor((remote,), events.put)
    started, cpu = time.perf_counter(), time.process_time()
    monitor.start()
    while True:
        event = events.get(timeout=120)
        if isinstance(event, Synced):
            break
    received, cpu = time.perf_counter(), time.process_time() - cpu
    replica = SouthboundReplica()
    replica.replace(event.datapaths, event.ports)
    return received - started, cpu, time.perf_counter() - received, replica, monitor, events


def stop(monitor: SouthboundMonitor, events: queue.Queue[Any]) -> None:
    monitor.stop()
    while not isinstance(events.get(timeout=10), Stopped):
        pass


def lookups(replica: SouthboundReplica, truth: dict[str, list[tuple[str, str]]], count: int) -> dict[str, float]:
    """Microseconds per lookup: the backend alone (hits, misses), and behind the agent's cache (hits)."""
    clock = Clock()
    health = ReplicaHealth(clock, 60)
    health.synced("bench", replica.port_count, replica.network_count)
    backend = OvnLookup(replica, health)
    rng = random.Random(7)
    networks = list(truth)
    hits = [(ip, net, device) for net in rng.sample(networks, min(len(networks), 200)) for ip, device in truth[net]]
    rng.shuffle(hits)
    misses = [(f"10.9.{i % 250}.{i % 200 + 1}", rng.choice(networks)) for i in range(1000)]
    for ip, net, device in hits[:50]:  # the answers are right
        result: list[Any] = []
        backend.lookup(ip, network_id=net).addCallback(result.append)
        assert result[0][0] == device, (ip, net, result)
    out = {}

    def timed(name: str, calls: list[tuple[str, str]], target: Any) -> None:
        n = 0
        started = time.perf_counter()
        while n < count:
            for ip, net in calls:
                target(ip, network_id=net)
                n += 1
                if n >= count:
                    break
        out[name] = (time.perf_counter() - started) / n * 1e6

    # (misses log a warning per lookup, as Neutron's agent does: they are timed with it)
    timed("hit", [(ip, net) for ip, net, _ in hits], backend.lookup)
    timed("miss (logged)", misses, backend.lookup)
    cache = CachingLookup(backend, clock, 3600, 3600)
    front = backend.front(cache, clock, 3600)
    timed("cached hit", [(ip, net) for ip, net, _ in hits[:500]], front.lookup)
    timed("index read", [(ip, net) for ip, net, _ in hits], lambda ip, network_id: replica.ports(network_id, ip))
    samples = []
    for ip, net, _ in hits[:20000]:
        t = time.perf_counter_ns()
        backend.lookup(ip, network_id=net)
        samples.append(time.perf_counter_ns() - t)
    samples.sort()
    out["hit p50"] = samples[len(samples) // 2] / 1000
    out["hit p99"] = samples[int(len(samples) * 0.99)] / 1000
    return out


def change_latency(sb: Southbound, replica: SouthboundReplica, events: queue.Queue[Any], chassis: str, rounds: int) -> list[float]:
    """Milliseconds from a committed insert of a Port_Binding to the replica finding it."""
    datapath = next(iter(replica._datapaths))  # a network of the replica
    network = replica._datapaths[datapath]
    assert network is not None
    latencies = []
    for r in range(rounds):
        device = str(uuid.uuid4())
        row = port_row(["uuid", datapath], 30000 + r, 255, r, chassis, device)
        row["mac"] = f"fa:16:3e:ff:00:{r:02x} 10.200.0.{r + 1}"
        sb.transact([{"op": "insert", "table": "Port_Binding", "row": row}])
        committed = time.perf_counter()
        while not replica.ports(network, f"10.200.0.{r + 1}"):
            event = events.get(timeout=10)
            if isinstance(event, Changed):
                replica.apply(event.datapaths, event.ports)
        latencies.append((time.perf_counter() - committed) * 1000)
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--networks", type=int, default=500)
    parser.add_argument("--ports", type=int, default=20, help="ports per network")
    parser.add_argument("--lookups", type=int, default=200000)
    opts = parser.parse_args()
    if shutil.which("ovsdb-tool") is None:
        raise SystemExit("needs ovn-central: apt-get install ovn-central ovn-common openvswitch-common")
    sb = Southbound()
    try:
        started = time.perf_counter()
        truth = populate(sb, opts.networks, opts.ports)
        print(f"SB database: {opts.networks * opts.ports} Port_Bindings in {opts.networks} networks, written in "
              f"{time.perf_counter() - started:.1f} s")
        gc.collect()
        before = rss_kib()
        sync, cpu, apply, replica, monitor, events = first_sync(sb.remote)
        gc.collect()
        after = rss_kib()
        print(f"first sync: {sync:.2f} s ({cpu:.2f} s of CPU) from start to the whole snapshot in the reactor's hands, "
              f"{apply * 1000:.0f} ms more to index it ({replica.port_count} ports, {replica.network_count} networks)")
        print(f"memory: process RSS +{(after - before) / 1024:.1f} MiB (the IDL's copy, the records and the index)")
        latencies = change_latency(sb, replica, events, sb.chassis, 20)
        print(f"change: committed in SB -> found in the replica: median {statistics.median(latencies):.1f} ms, "
              f"max {max(latencies):.1f} ms (20 inserts)")
        results = lookups(replica, truth, opts.lookups)
        print("lookup latency (µs per call, one core):")
        for name, value in results.items():
            print(f"  {name:<16} {value:6.2f}")
        stop(monitor, events)
        del replica, monitor
        gc.collect()
        tracemalloc.start()
        first = tracemalloc.take_snapshot()
        _, _, _, replica, monitor, events = first_sync(sb.remote)
        gc.collect()
        grown = tracemalloc.take_snapshot().compare_to(first, "filename")
        stop(monitor, events)
        tracemalloc.stop()
        by_part: dict[str, int] = {}
        for stat in grown:
            path = stat.traceback[0].filename
            part = ("IDL rows (ovs)" if "/ovs/" in path else "mdsvc records + index" if "/mdsvc/" in path
                    else "IDL strings, uuids" if path.endswith(("json/decoder.py", "uuid.py", "json/__init__.py")) else "other")
            by_part[part] = by_part.get(part, 0) + stat.size_diff
        print("memory by owner (tracemalloc, second sync):")
        for part, size in sorted(by_part.items(), key=lambda kv: -kv[1]):
            print(f"  {part:<22} {size / 2**20:7.1f} MiB  ({size / max(1, replica.port_count):.0f} B per port binding)")
    finally:
        sb.stop()


if __name__ == "__main__":
    main()
