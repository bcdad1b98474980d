"""
What a process's fold costs a record (NodeMetrics.fold: counts, latency buckets, the trace
ring's columns), off the request path but on the same core: a network node's records (the
listener's, standing for the agent), each with a path, address and instance of its own as a
parsed request has, folded in batches as a node at full speed folds them.

    python3 bench/fold.py [--tree DIR] [--records 470] [--folds 30]

Prints microseconds a record over the folds after the first five (the ring filled by then).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))

PATHS = (b"/openstack/latest/meta_data.json", b"/latest/meta-data/hostname", b"/2009-04-04/meta-data/instance-id",
         b"/openstack/latest/network_data.json")
"""Paths of the boot mix, copied afresh for each record as a request parses its own."""


def fold_cost(records: int, folds: int) -> float:
    """Seconds a record that NodeMetrics.fold takes, over C{folds} batches of C{records} (the first five not counted)."""
    from twisted.internet.task import Clock

    from mdsvc.metrics import NodeMetrics
    from mdsvc.trace import PROXY_AGENT, TraceRing

    metrics = NodeMetrics("network-node", Clock(), TraceRing())
    meter = metrics.hop("proxy")
    metrics.hop("agent")
    spent = 0.0
    for n in range(folds):
        for i in range(records):
            path = PATHS[i % len(PATHS)]
            meter.note((PROXY_AGENT, time.time(), time.time(), 200, None, "10.0.%d.%d" % (i % 50, i % 200), "net-1",
                        "uuid-%d" % (i % 200), b"GE" + b"T", path[:5] + path[5:], "hit", None))
        started = time.perf_counter()
        metrics.fold()
        if n >= 5:
            spent += time.perf_counter() - started
    return spent / ((folds - 5) * records)


def main() -> None:
    """Fold and print."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].strip(), formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tree", default=os.path.dirname(HERE), help="the source tree whose mdsvc is timed (default: this checkout)")
    p.add_argument("--records", type=int, default=470, help="records a fold (a node at full speed, folding every 0.1 s: about 470)")
    p.add_argument("--folds", type=int, default=30, help="folds timed, the first five not counted")
    opts = p.parse_args()
    if opts.folds <= 5 or opts.records <= 0:
        raise SystemExit("fold.py: --folds must be over 5 and --records over 0")
    sys.path.insert(0, os.path.abspath(opts.tree))
    print(f"{opts.tree}: {fold_cost(opts.records, opts.folds) * 1e6:.3f} µs a record ({opts.records} records a fold)")


if __name__ == "__main__":
    main()
