"""
The Python cost of one guest request, without sockets: the cloud-init boot mix driven through
mdsvc's own objects in one process, over in-memory transports, for a tree of mdsvc (this one, or
another commit's with --mdsvc-tree).

    python3 bench/hotpath.py                      # µs per request, per path
    python3 bench/hotpath.py --mdsvc-tree DIR     # the same for another commit (git archive C | tar -x -C DIR)
    valgrind --tool=callgrind python3 bench/hotpath.py --requests 5600 --path api   # instructions

Paths: C{api} is what the metadata API does for a signed request (shape 3 of run.py without the
kernel); C{all-in-one} is a proxy listener calling the agent and the API in-process (shape 5
without the kernel); C{network-node} is a proxy listener calling the agent, whose API is in
another process (shape 4's network-node process; the remote API here answers at once, so the HTTP
client's work, the same metered or not, is left out); C{server} is the HTTP protocol alone with
a trivial handler.  Every request
is parsed from the bytes cloud-init sends and its answer written to a StringTransport; caches are
warm (as in a boot after its first request).  The kernel's share of a real request (send, recv,
epoll) is the same for every tree, so differences here are differences in mdsvc's own code: the
wrk table of run.py is what guests see, this is where the difference comes from, with little
noise (use the minimum of several repeats, or callgrind for exact instruction counts).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from functools import partial
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

REQUEST = (
    b"GET %s HTTP/1.1\r\nHost: 169.254.169.254\r\nUser-Agent: Cloud-Init/22.4.2\r\nAccept-Encoding: gzip, deflate\r\n"
    b"Accept: */*\r\nConnection: keep-alive\r\n%s\r\n"
)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mdsvc-tree", help="measure the mdsvc package of this directory instead of this checkout's")
    p.add_argument("--path", choices=("server", "api", "all-in-one", "network-node", "all"), default="all")
    p.add_argument("--requests", type=int, default=28000, help="requests per path and repeat")
    p.add_argument("--repeats", type=int, default=5, help="the minimum of this many timed repeats is printed")
    p.add_argument("--metered", action="store_true",
                   help="wire the hop meters, trace ring and metered lookup as mdsvc.tap does (trees with mdsvc/metrics.py)")
    opts = p.parse_args()
    sys.path.insert(0, opts.mdsvc_tree or os.path.dirname(HERE))
    from storm import BOOT_PATHS  # the 28 GETs of a cloud-init boot
    from twisted.internet.address import IPv4Address
    from twisted.internet.task import Clock
    from twisted.internet.testing import StringTransport

    import mdsvc
    from mdsvc.agent.handler import MetadataAgent
    from mdsvc.api.app import MetadataApp
    from mdsvc.api.handler import APIHandler
    from mdsvc.api.identify import Identifier, sign
    from mdsvc.http import HTTPResponse, LeanHTTPFactory
    try:
        from mdsvc.model import instance_from_document
    except ImportError:  # older trees
        from mdsvc.model import instanceFromDocument as instance_from_document  # type: ignore[attr-defined,no-redef]
    from mdsvc.proxy.http import NamespaceProxyHandler
    from mdsvc.testing import MemoryInstanceStore, MemoryLookup

    try:  # the hops of this tree: objects handed over (mdsvc.hop)
        from mdsvc.api.inprocess import InProcessAPI

        def proxy_to_agent(agent: Any) -> Any:
            return agent
    except ImportError:  # older trees: an adapter in the agent, and one in the proxy
        from mdsvc.agent.inprocess import InProcessAPI  # type: ignore[no-redef]
        from mdsvc.proxy.http import InProcessUpstream  # type: ignore[attr-defined]

        def proxy_to_agent(agent: Any) -> Any:
            return InProcessUpstream(agent)

    clock = Clock()
    clock.advance(1_700_000_000)
    # A running node's clock is the reactor, whose seconds is time.time, a call into C; so is this
    # one's (a fixed time: the caches never expire while measuring), for every tree alike.
    clock.seconds = partial(float, clock.seconds())  # type: ignore[method-assign]
    with open(os.path.join(os.path.dirname(mdsvc.__file__), "data", "demo-instance.json")) as f:
        doc = json.load(f)
    instance = instance_from_document(doc)
    network = doc["nics"][0]["network"]["id"]
    ip = doc["nics"][0]["fixed_ips"][0]["ip"]
    from mdsvc.lookup.cache import CachingLookup

    store = MemoryInstanceStore()
    store.add(instance)
    lookup: Any = MemoryLookup({("network", network, ip): (instance.uuid, instance.project_id)})
    meters: dict[str, Any] = {}
    if opts.metered:  # as mdsvc.tap wires a process (counting and tracing are always on there)
        from mdsvc.metered import MeteredLookup, MeteredStore
        from mdsvc.operations import node_metrics

        defaults = __import__("mdsvc.config", fromlist=["load_config"]).load_config(None)
        metrics = node_metrics(defaults, "all-in-one", clock)
        lookup = MeteredLookup(lookup, metrics)
        store = MeteredStore(store, metrics, "memory")  # type: ignore[assignment]
        meters = {"proxy": metrics.hop("proxy"), "api": metrics.hop("api")}
        metrics.stages["agent_to_api"] = meters["api"].latency  # as tap wires an in-process API
        meters["agent"] = metrics.hop("agent")
    app = MetadataApp(store=store, identifier=Identifier(True, "secret"), clock=clock)
    lookup = CachingLookup(lookup, clock, 10, 2)  # as the agent's [cache] does by default
    if opts.metered:
        agent = MetadataAgent(lookup, InProcessAPI(app, meter=meters["api"]), "secret", clock=clock, meter=meters["agent"])
        if hasattr(agent, "front"):  # trees where the in-process proxy's listener times the agent (as tap wires it)
            agent.front = meters["proxy"]
    else:
        agent = MetadataAgent(lookup, InProcessAPI(app), "secret", clock=clock)
    answer = HTTPResponse(200, ((b"Content-Type", b"text/plain; charset=UTF-8"),), b"x" * 200)
    remote = _RemoteAPI(answer)
    entries = {("network", network, ip): (instance.uuid, instance.project_id)}
    if opts.metered:  # the network node's process: meters of its own, its agent timing the remote API as tap wires it
        remote_metrics = node_metrics(defaults, "network-node", clock)
        remote_agent = MetadataAgent(CachingLookup(MeteredLookup(MemoryLookup(entries), remote_metrics), clock, 10, 2), remote, "secret",
                                     clock=clock, meter=remote_metrics.hop("agent"), time_api=True)
        remote_agent.front = remote_metrics.hop("proxy")
    else:
        remote_agent = MetadataAgent(CachingLookup(MemoryLookup(entries), clock, 10, 2), remote, "secret", clock=clock)
    signed = (f"X-Instance-ID: {instance.uuid}\r\nX-Tenant-ID: {instance.project_id}\r\n"
              f"X-Instance-ID-Signature: {sign('secret', instance.uuid)}\r\nX-Forwarded-For: {ip}\r\n").encode()
    paths = {
        "server": (lambda r: answer, b""),
        "api": (APIHandler(app, meter=meters["api"]) if opts.metered else APIHandler(app), signed),
        "all-in-one": (NamespaceProxyHandler("network", network, proxy_to_agent(agent)), b""),
        "network-node": (NamespaceProxyHandler("network", network, proxy_to_agent(remote_agent)), b""),
    }
    factory_options: dict[str, dict[str, Any]] = {
        "server": {}, "api": {"meter": meters.get("api"), "meter_answers": False},
        "all-in-one": {"meter": meters.get("proxy"), "meter_answers": True, "scope": network},
        "network-node": {"meter": remote_metrics.hop("proxy"), "meter_answers": True, "scope": network},
    } if opts.metered else {"server": {}, "api": {}, "all-in-one": {}, "network-node": {}}
    folds = {"network-node": remote_metrics.fold} if opts.metered else {}
    chosen = list(paths) if opts.path == "all" else [opts.path]
    print(f"mdsvc at {os.path.dirname(mdsvc.__file__)}{' (metered)' if opts.metered else ''}: {opts.requests} requests of the boot "
          f"mix per repeat, minimum of {opts.repeats}")
    for name in chosen:
        handler, extra = paths[name]
        protocol = LeanHTTPFactory(handler, clock, **factory_options[name]).buildProtocol(IPv4Address("TCP", ip, 40000))
        transport = StringTransport(peerAddress=IPv4Address("TCP", ip, 40000))
        protocol.makeConnection(transport)
        requests = [REQUEST % (path.encode(), extra) for path in BOOT_PATHS]
        for request in requests:  # warm the caches; every answer must be a 200
            protocol.dataReceived(request)
        statuses = {line.split(b" ")[1] for line in transport.value().split(b"\r\n") if line.startswith(b"HTTP/1.1 ")}
        if statuses != {b"200"}:
            print(f"{name}: answers other than 200 while warming up: {sorted(statuses)}")
            return 1
        fold = folds.get(name, metrics.fold) if opts.metered else None
        if fold is not None:
            fold()  # the warm-up's records are not the measured requests'
        best = float("inf")
        for _ in range(opts.repeats):
            transport.clear()
            started = time.perf_counter()
            for n in range(opts.requests):
                protocol.dataReceived(requests[n % len(requests)])
                if n % 512 == 0:
                    transport.clear()
            if fold is not None:
                fold()  # what the process does once a second: part of the cost
            best = min(best, time.perf_counter() - started)
        print(f"{name:12} {best / opts.requests * 1e6:7.2f} µs per request")
    return 0


class _RemoteAPI:
    """The metadata API of another process, as the network node's agent sees it: every signed request answered at once."""

    def __init__(self, response: Any) -> None:
        self.response = response

    def forward(self, request: Any) -> Any:
        """The answer, already there."""
        from twisted.internet.defer import succeed

        return succeed(self.response)


if __name__ == "__main__":
    sys.exit(main())
