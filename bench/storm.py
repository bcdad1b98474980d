#!/usr/bin/env python3
"""
Boot-storm client: N guests each replay cloud-init's whole boot sequence through a proxy listener,
at most C guests at a time. A separate process from the servers (bench/run.py pins it to the load
generator's core); raw asyncio streams, no HTTP library.

    python3 bench/storm.py HOST PORT GUESTS_FILE [--concurrency 50] [--deadline 300] [--agent-secret S]

With C{--agent-secret}, requests go straight to an API as a Neutron metadata agent sends them
(signed C{X-Instance-ID}, C{X-Tenant-ID}, C{X-Forwarded-For}), not through a proxy listener.

GUESTS_FILE: one guest per line, C{SOURCE_IP UUID EC2_INSTANCE_ID [PROJECT]}. Each guest connects from its
own source address (its fixed IP, bound before connecting: the proxy tells guests apart by it)
and, like cloud-init's url_helper (a new requests.Session per read), opens a new connection for
every request. The guest's requests run one after another; the next guest starts as soon as one
of the C running ones has finished its boot.

Checked for every guest: every answer is 200, C{meta_data.json} names the guest's uuid and
C{meta-data/instance-id} its EC2 id (so identities are right under load, not only fast).
Prints one line C{MDSVC-STORM {json}}: guests, requests, errors (by kind), completion seconds,
latency p50/p99/p99.9/max in milliseconds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time

BOOT_PATHS = [
    "/openstack",
    "/openstack",
    "/openstack/2018-08-27/meta_data.json",
    "/openstack/2018-08-27/user_data",
    "/openstack/2018-08-27/vendor_data.json",
    "/openstack/2018-08-27/vendor_data2.json",
    "/openstack/2018-08-27/network_data.json",
    "/latest/meta-data/",
    "/latest/meta-data/block-device-mapping/",
    "/latest/meta-data/block-device-mapping/ami",
    "/latest/meta-data/block-device-mapping/root",
    "/latest/meta-data/placement/",
    "/latest/meta-data/placement/availability-zone",
    "/latest/meta-data/public-keys/",
    "/latest/meta-data/public-keys/0/openssh-key",
    "/latest/meta-data/ami-id",
    "/latest/meta-data/ami-launch-index",
    "/latest/meta-data/ami-manifest-path",
    "/latest/meta-data/hostname",
    "/latest/meta-data/instance-action",
    "/latest/meta-data/instance-id",
    "/latest/meta-data/instance-type",
    "/latest/meta-data/local-hostname",
    "/latest/meta-data/local-ipv4",
    "/latest/meta-data/public-hostname",
    "/latest/meta-data/public-ipv4",
    "/latest/meta-data/reservation-id",
    "/latest/meta-data/security-groups",
]
"""What cloud-init 22.4 (Debian 12) requests at boot from an OpenStack cloud, in order: the
OpenStack reader (the version list twice, then the 2018-08-27 documents) and then the EC2 crawl
of latest/meta-data/ (tests/integration/clients/probe.py records the same sequence)."""


async def get(host: str, port: int, source: str, path: str, timeout: float, headers: str = "") -> tuple[int, bytes]:
    """
    One GET on a new connection from C{source}; (status, body); status 0 on a socket error.

    @param headers: extra header lines (each ending in CRLF), e.g. a metadata agent's identity headers.
    """
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port, local_addr=(source, 0)), timeout)
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: 169.254.169.254\r\nUser-Agent: Cloud-Init/22.4.2\r\n"
                     f"Accept: */*\r\n{headers}Connection: close\r\n\r\n".encode("ascii"))
        data = await asyncio.wait_for(reader.read(-1), timeout)
    finally:
        writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1]) if head.startswith(b"HTTP/1.") else 0
    return status, body


def agent_headers(secret: str, uuid: str, project: str, source: str) -> str:
    """What a Neutron metadata agent adds to a guest's request: its instance, signed, and tenant."""
    import hashlib
    import hmac

    signature = hmac.new(secret.encode(), uuid.encode(), hashlib.sha256).hexdigest()
    return (f"X-Instance-ID: {uuid}\r\nX-Instance-ID-Signature: {signature}\r\nX-Tenant-ID: {project}\r\n"
            f"X-Forwarded-For: {source}\r\n")


async def storm(host: str, port: int, guests: list[tuple[str, ...]], concurrency: int, timeout: float,
                secret: str | None = None) -> dict:
    latencies: list[float] = []
    errors: dict[str, int] = {}
    queue = list(reversed(guests))

    def error(kind: str) -> None:
        errors[kind] = errors.get(kind, 0) + 1

    async def boot(source: str, uuid: str, ec2_id: str, project: str = "") -> None:
        headers = agent_headers(secret, uuid, project, source) if secret is not None else ""
        for path in BOOT_PATHS:
            t0 = time.perf_counter()
            try:
                status, body = await get(host, port, source, path, timeout, headers)
            except TimeoutError:
                error("timeout")
                continue
            except OSError as e:
                error(f"socket:{e.__class__.__name__}")
                continue
            latencies.append(time.perf_counter() - t0)
            if status != 200:
                error(f"status {status}")
            elif path.endswith("meta_data.json") and f'"uuid": "{uuid}"'.encode() not in body:
                error("wrong meta_data.json")
            elif path.endswith("/instance-id") and body != ec2_id.encode():
                error("wrong instance-id")

    async def worker() -> None:
        while queue:
            await boot(*queue.pop())

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(min(concurrency, len(guests)))))
    elapsed = time.perf_counter() - started
    ordered = sorted(latencies) or [0.0]

    def pct(p: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] * 1000, 2)

    return {
        "guests": len(guests), "requests": len(latencies), "errors": sum(errors.values()), "by_kind": errors,
        "seconds": round(elapsed, 3), "p50_ms": pct(50), "p99_ms": pct(99), "p999_ms": pct(99.9),
        "max_ms": round(ordered[-1] * 1000, 2), "concurrency": concurrency,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("host")
    parser.add_argument("port", type=int)
    parser.add_argument("guests", help="file: SOURCE_IP UUID EC2_INSTANCE_ID per line")
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds per request")
    parser.add_argument("--agent-secret", default=None,
                        help="talk to an API as a Neutron metadata agent does: signed X-Instance-ID headers with this "
                             "secret (GUESTS_FILE lines then end with the instance's PROJECT)")
    args = parser.parse_args()
    with open(args.guests) as f:
        guests = [tuple(line.split()) for line in f if line.strip()]
    result = asyncio.run(storm(args.host, args.port, guests, args.concurrency, args.timeout, args.agent_secret))
    print("MDSVC-STORM " + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
