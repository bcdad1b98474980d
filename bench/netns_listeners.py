#!/usr/bin/env python3
"""
What one namespace listener costs: time to create it from this process, and memory once adopted.

Creates K network namespaces with C{ip netns add} (default 200; needs root), then in each one
times L{mdsvc.proxy.netns.listening_socket_in_namespace} on 169.254.169.254:80 (the qdhcp / ovnmeta
case) and a bare setns round trip, then adopts every socket into the (not running) global reactor
with its own twisted.web Site, as the proxy role does, and reports the RSS growth per listener.
The namespaces are always deleted at the end, whatever happened.

    python3 bench/netns_listeners.py [-k 200]
"""

from __future__ import annotations

import argparse
import gc
import os
import socket
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from mdsvc.proxy import netns  # noqa: E402


def rss_kib() -> int:
    """Resident set size of this process, in KiB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def ip_batch(commands: list[str]) -> None:
    """Run C{ip -batch -} over the given lines (continuing past errors)."""
    subprocess.run(["ip", "-force", "-batch", "-"], input="\n".join(commands) + "\n", text=True,
                   capture_output=True, check=False)


def summary(samples: list[float]) -> str:
    """mean / median / p95 / max of samples in seconds, printed in microseconds."""
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]
    return (f"mean {statistics.mean(samples) * 1e6:7.1f} us  median {statistics.median(samples) * 1e6:7.1f} us  "
            f"p95 {p95 * 1e6:7.1f} us  max {ordered[-1] * 1e6:7.1f} us")


def main() -> int:
    """Run the benchmark; exit status 0 on success."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-k", "--count", type=int, default=200, help="namespaces to create (default 200)")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("needs root (ip netns add, setns)", file=sys.stderr)
        return 2
    k = args.count
    prefix = f"mdsvc-bench-{os.getpid()}-"
    names = [f"{prefix}{i}" for i in range(k)]
    socks: list[socket.socket] = []
    ports: list[object] = []
    try:
        started = time.perf_counter()
        ip_batch([f"netns add {n}" for n in names])
        created = time.perf_counter() - started
        missing = [n for n in names if not os.path.exists(f"/run/netns/{n}")]
        if missing:
            print(f"could not create {len(missing)} namespaces (first: {missing[0]})", file=sys.stderr)
            return 1
        print(f"namespaces: {k} created with `ip -batch` in {created:.2f} s ({created / k * 1e3:.2f} ms each)")

        home = os.stat("/proc/thread-self/ns/net").st_ino
        round_trips: list[float] = []
        for n in names:
            t0 = time.perf_counter()
            with netns._inside(f"/run/netns/{n}"):
                pass
            round_trips.append(time.perf_counter() - t0)
        print(f"setns round trip (open, enter, return, close):   {summary(round_trips)}")

        creation: list[float] = []
        rss_before_sockets = rss_kib()
        for n in names:
            t0 = time.perf_counter()
            sock = netns.listening_socket_in_namespace(f"/run/netns/{n}", socket.AF_INET, "169.254.169.254", 80)
            creation.append(time.perf_counter() - t0)
            socks.append(sock)
        assert os.stat("/proc/thread-self/ns/net").st_ino == home
        print(f"listener 169.254.169.254:80 (setns + socket + bind + listen): {summary(creation)}")
        print(f"  total for {k}: {sum(creation) * 1e3:.1f} ms; RSS +{(rss_kib() - rss_before_sockets) / k:.2f} KiB per socket object")

        from twisted.internet import reactor
        from twisted.web.resource import Resource
        from twisted.web.server import Site

        gc.collect()
        rss0 = rss_kib()
        blocks0 = sys.getallocatedblocks()
        for sock in socks:
            ports.append(netns.adopt(reactor, sock, Site(Resource())))
        gc.collect()
        rss1 = rss_kib()
        blocks1 = sys.getallocatedblocks()
        print(f"adopted {k} listeners (one Site each): RSS +{rss1 - rss0} KiB = {(rss1 - rss0) / k:.2f} KiB per listener "
              f"({(blocks1 - blocks0) / k:.0f} Python objects each; kernel socket memory is not in RSS)")
        print(f"  RSS now {rss1} KiB; open descriptors {len(os.listdir('/proc/self/fd'))}")
        return 0
    finally:
        for port in ports:
            port.stopListening()  # type: ignore[attr-defined]
        for sock in socks:
            sock.close()
        ip_batch([f"netns del {n}" for n in names])
        left = [n for n in os.listdir("/run/netns") if n.startswith(prefix)] if os.path.isdir("/run/netns") else []
        if left:
            print(f"warning: {len(left)} namespaces left behind: {left[:3]}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
