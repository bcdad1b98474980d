#!/usr/bin/env python3
"""
What an API cache miss costs in the embedded store (C{[mdsvc] store = sqlite:PATH}):

    python3 bench/store.py [--instances 10000] [--calls 10000] [--threads 8] [--old FILE]

Imports C{--instances} instances (the demo document, each with its own uuid and fixed IP) into a
new store file, then times C{--calls} random misses, one at a time in this thread: C{get} (the
row by uuid, then its L{mdsvc.model.Instance}: proxy mode's miss) and C{by_address} (the uuids
holding the address, the row, its Instance: a directly reached guest's miss), each through the
store's L{mdsvc.interfaces.IInstanceStore} methods with a synchronous runner (what one of the
reactor's threads does), and the bare row reads (C{get} and C{uuids_by_address} of the
documents) without the Instance.  Then the same C{get} miss from C{--threads} threads at once,
as the reactor's thread pool runs a boot storm's misses: calls per second in all.

C{--old FILE}: also measure, in the same run and on a file of its own, the store module mdsvc had
before the SQLAlchemy store (C{mdsvc/store/sqlite.py} of c62948e, on Python's sqlite3: get it
with C{git show c62948e:mdsvc/store/sqlite.py > /tmp/old_sqlite_store.py}; never kept in the
tree).  Prints one line per measurement and implementation, microseconds per call (the median
of five rounds), and C{MDSVC-STORE {json}}.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from twisted.internet.defer import maybeDeferred  # noqa: E402

from mdsvc.store.sql import SQLDocuments  # noqa: E402
from mdsvc.store.threaded import DocumentStore  # noqa: E402

ROUNDS = 5


def documents(count: int) -> list[dict[str, Any]]:
    """C{count} copies of the demo instance, each with its own uuid, port and fixed IP (10.x.y.z)."""
    with open(os.path.join(ROOT, "mdsvc", "data", "demo-instance.json")) as f:
        template = json.load(f)
    out = []
    for i in range(count):
        doc = json.loads(json.dumps(template))
        doc["uuid"] = f"00000000-0000-4000-8000-{i:012x}"
        doc["name"] = f"vm-{i}"
        nic = doc["nics"][0]
        nic["port_id"] = f"00000000-0000-4000-9000-{i:012x}"
        nic["mac"] = f"fa:16:3e:{(i >> 16) & 255:02x}:{(i >> 8) & 255:02x}:{i & 255:02x}"
        nic["fixed_ips"][0]["ip"] = address(i)
        nic["fixed_ips"][0]["subnet"]["cidr"] = "10.0.0.0/8"
        out.append(doc)
    return out


def address(i: int) -> str:
    """The fixed IP of instance C{i}."""
    n = i + 1
    return f"10.{n // 65536}.{n // 256 % 256}.{n % 256}"


def synchronous(f: Callable[..., Any], *args: Any) -> Any:
    """Run a blocking call at once (what a thread of the pool does)."""
    return maybeDeferred(f, *args)


def result(d: Any) -> Any:
    """The result of a Deferred that has fired."""
    box: list[Any] = []
    d.addBoth(box.append)
    value = box[0]
    if hasattr(value, "raiseException"):
        value.raiseException()
    return value


def per_call(calls: list[Callable[[], Any]]) -> float:
    """Microseconds per call over C{calls}, once."""
    start = time.perf_counter()
    for call in calls:
        call()
    return (time.perf_counter() - start) / len(calls) * 1e6


def threaded(call: Callable[[str], Any], uuids: list[str], threads: int) -> float:
    """Calls per second of C{call} over C{uuids} split among C{threads} threads."""
    chunks = [uuids[i::threads] for i in range(threads)]
    errors: list[BaseException] = []

    def work(chunk: list[str]) -> None:
        try:
            for uuid in chunk:
                call(uuid)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    workers = [threading.Thread(target=work, args=(chunk,)) for chunk in chunks]
    start = time.perf_counter()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    elapsed = time.perf_counter() - start
    if errors:
        raise errors[0]
    return len(uuids) / elapsed


def measure(implementations: list[tuple[str, Any, Any]], uuids: list[str], addresses: list[str], threads: int) -> dict[str, Any]:
    """
    Every measurement of every implementation, checked first to find what it should; the
    implementations take turns round by round (the machine's other load falls on all alike),
    and each figure is the median of its L{ROUNDS} rounds.
    """
    for _, _, store in implementations:
        assert result(store.get(uuids[0])).uuid == uuids[0]
        assert result(store.by_address(addresses[0])).uuid == uuids[0]

    def runs(docs: Any, store: Any) -> dict[str, Callable[[], float]]:
        return {
            "get": lambda: per_call([lambda u=u: result(store.get(u)) for u in uuids]),
            "by_address": lambda: per_call([lambda a=a: result(store.by_address(a)) for a in addresses]),
            "row get": lambda: per_call([lambda u=u: docs.get(u) for u in uuids]),
            "row uuids_by_address": lambda: per_call([lambda a=a: docs.uuids_by_address(a) for a in addresses]),
            f"get, {threads} threads (calls/s)": lambda: threaded(lambda u: docs.get(u).instance(), uuids, threads),
        }

    table = {name: runs(docs, store) for name, docs, store in implementations}
    out: dict[str, Any] = {name: {} for name, _, _ in implementations}
    for what in table[implementations[0][0]]:
        rounds: dict[str, list[float]] = {name: [] for name in table}
        for _ in range(ROUNDS):
            for name in table:
                rounds[name].append(table[name][what]())
        for name in table:
            out[name][what] = statistics.median(rounds[name])
            unit = "calls/s" if "calls/s" in what else "us/call"
            print(f"{name:10} {what:32} {out[name][what]:10.1f} {unit}", flush=True)
    return out


def main() -> None:
    """Build the stores, measure, print."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--instances", type=int, default=10000)
    parser.add_argument("--calls", type=int, default=10000)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--old", help="the store module before the SQLAlchemy store (mdsvc/store/sqlite.py of c62948e)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    rng = random.Random(args.seed)
    docs = documents(args.instances)
    picks = [rng.randrange(args.instances) for _ in range(args.calls)]
    uuids = [docs[i]["uuid"] for i in picks]
    addresses = [address(i) for i in picks]
    directory = tempfile.mkdtemp(prefix="mdsvc-bench-store-")
    out: dict[str, Any] = {"instances": args.instances, "calls": args.calls}
    try:
        implementations: list[tuple[str, Any, Any]] = []
        if args.old:
            spec = importlib.util.spec_from_file_location("old_sqlite_store", args.old)
            assert spec is not None and spec.loader is not None
            old = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(old)
            old_docs = old.SQLiteDocuments(os.path.join(directory, "old", "mdsvc.sqlite"))
            implementations.append(("sqlite3", old_docs, old.SQLiteInstanceStore(old_docs, synchronous)))
        new_docs = SQLDocuments(f"sqlite:{os.path.join(directory, 'new', 'mdsvc.sqlite')}")
        implementations.append(("sqlalchemy", new_docs, DocumentStore(new_docs, synchronous)))
        for name, store_docs, _ in implementations:
            start = time.perf_counter()
            for i in range(0, len(docs), 1000):
                store_docs.import_instances(docs[i:i + 1000])
            print(f"{name:10} {'import':32} {(time.perf_counter() - start) / len(docs) * 1e6:10.1f} us/instance", flush=True)
        out.update(measure(implementations, uuids, addresses, args.threads))
        for _, store_docs, _ in implementations:
            store_docs.close()
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    print("MDSVC-STORE " + json.dumps(out))


if __name__ == "__main__":
    main()
