# -*- test-case-name: tests.test_admin -*-
"""
C{mdsvc-manage trace UUID|IP [--follow]}: the last requests of one instance (or guest address)
across every hop of this node, from the trace ring of each process (their admin sockets), in
the order they were answered: time, hop, status, latency, cache outcome, address, request and
the reason of any failure.

Given an instance, the agent's and the API's records name it; the proxies know only the
guest's address, so the addresses those records show are asked for too.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TextIO

from mdsvc.admin.client import AdminClient, AdminUnavailable, node_sockets
from mdsvc.hop import canonical_ip
from mdsvc.wire import loggable

HEADER = f"{'TIME':<23}  {'HOP':<5}  {'STATUS':>6}  {'LATENCY':>9}  {'CACHE':<5}  {'ADDRESS':<15}  {'INSTANCE':<36}  REQUEST  REASON"


class TraceError(Exception):
    """The trace cannot be made; C{str()} is the one line to show."""


def target(text: str) -> tuple[str | None, str | None]:
    """C{(instance, None)} for an instance id, C{(None, address)} for an IP address."""
    address = canonical_ip(text)
    if address is not None:
        return None, address
    if text and all(c.isalnum() or c in "-_." for c in text):
        return text, None
    raise TraceError(f"{text!r} is neither an instance id nor an IP address")


def gather(clients: list[AdminClient], instance: str | None, address: str | None, after: dict[str, int],
           limit: int | None, problems: list[str]) -> list[dict[str, Any]]:
    """
    The records of every process newer than C{after[path]} (updated), each with C{role}: of the
    instance (and of the addresses its records show), or of the address.
    """
    found: dict[tuple[str, int], dict[str, Any]] = {}
    answering: list[AdminClient] = []
    for client in clients:
        try:
            reply = client.get("/trace", instance=instance, address=address, after=after.get(client.path, 0), limit=limit)
        except AdminUnavailable as e:
            problems.append(str(e))
            continue
        answering.append(client)
        for record in reply["records"]:
            found[(client.path, record["seq"])] = dict(record, role=reply["role"])
    if instance is not None:
        addresses = {r["address"] for r in found.values() if r["address"]}
        for client in answering:
            for extra in sorted(addresses):
                reply = client.get("/trace", address=extra, after=after.get(client.path, 0), limit=limit)
                for record in reply["records"]:
                    if record["instance"] in (None, instance):
                        found[(client.path, record["seq"])] = dict(record, role=reply["role"])
    for (path, seq) in found:
        after[path] = max(after.get(path, 0), seq)
    return sorted(found.values(), key=lambda r: (r["time"], r["seq"]))


def line(record: dict[str, Any]) -> str:
    """One record as a line of the table (L{HEADER})."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record["time"])) + f".{int(record['time'] % 1 * 1000):03d}Z"
    request = f"{record['method']} {loggable(record['path'].encode('latin-1'))}"
    where = record["address"] or "-"
    reason = record["reason"] or ""
    return (f"{stamp:<23}  {record['hop']:<5}  {record['status']:>6}  {record['latency'] * 1000:>6.1f} ms  {record['cache'] or '-':<5}  "
            f"{where:<15}  {record['instance'] or '-':<36}  {request}  {reason}").rstrip()


def run_trace(
    admin_dir: str, what: str, out: TextIO, follow: bool = False, limit: int = 50, duration: float | None = None,
    interval: float = 1.0, sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic,
    err: TextIO | None = None,
) -> int:
    """
    Print the trace of C{what}; with C{follow}, then every new record as it comes (until
    interrupted, or C{duration} seconds).

    @raise TraceError: no process answers, or C{what} is neither an id nor an address.
    """
    instance, address = target(what)
    clients = node_sockets(admin_dir)
    if not clients:
        raise TraceError(f"no admin socket in {admin_dir}: is mdsvc running with this configuration ([mdsvc] admin_dir)?")
    after: dict[str, int] = {}
    problems: list[str] = []
    records = gather(clients, instance, address, after, None, problems)
    if len(problems) == len(clients):
        raise TraceError("no mdsvc process answers: " + "; ".join(problems))
    for problem in problems:
        print(f"mdsvc-manage: warning: {problem}", file=err or out)
    print(HEADER, file=out)
    for record in records[-limit:]:
        print(line(record), file=out)
    if not records and not follow:
        print(f"(no request of {what} in the last requests of {len(clients) - len(problems)} process(es))", file=out)
    out.flush()
    started = clock()
    try:
        while follow and (duration is None or clock() - started < duration):
            sleep(interval)
            for record in gather(clients, instance, address, after, None, []):
                print(line(record), file=out)
            out.flush()
    except KeyboardInterrupt:
        pass
    return 0


__all__ = ["HEADER", "TraceError", "gather", "line", "run_trace", "target"]
