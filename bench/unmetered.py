"""
A tree of mdsvc with its hops unmetered: the same commit with no hop meter wired, so that no
request is noted, counted or traced. It is the "metrics off" of the boot-mix benchmark: the cost
of metering (and of the trace, which the same records feed) is the difference between this tree
and the commit itself with C{--metrics}, everything else equal.

    python3 bench/unmetered.py /tmp/unmetered                 # HEAD, unmetered
    python3 bench/rounds.py --rounds 4 --shapes 3,4,5 --duration 10 \\
        --variant "off=--mdsvc-tree /tmp/unmetered" --variant "on=--metrics"

Every edit is an exact replacement in C{mdsvc/tap.py} that must match once: a tree where one
does not (the wiring changed) is refused in one line, never measured half-metered.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))

UNWIRED = (
    # the HTTP listeners' meters (their refusals, and every answer of a proxy's listeners)
    ("    meter = _metrics(parts, reactor).hop(hop) if hop is not None else None\n", "    meter = None\n"),
    ('handler = APIHandler(app, config.api.debug, meter=metrics.hop("api"))', "handler = APIHandler(app, config.api.debug)"),
    ('api: Any = InProcessAPI(parts["app"], meter=metrics.hop("api"))', 'api: Any = InProcessAPI(parts["app"])'),
    ('meter=metrics.hop("agent"), time_api="app" not in parts,', 'meter=None, time_api="app" not in parts,'),
    ('AgentHandler(handler, metrics.hop("agent"))', "AgentHandler(handler, None)"),
    ('upstream.front = metrics.hop("proxy")', "upstream.front = None"),
)
"""What C{mdsvc/tap.py} wires a hop meter with, and what it becomes: no meter."""


def unmeter(tap: str) -> str:
    """C{mdsvc/tap.py}'s text with every hop meter taken out; SystemExit naming an edit that does not match once."""
    for old, new in UNWIRED:
        if tap.count(old) != 1:
            raise SystemExit(f"unmetered.py: mdsvc/tap.py has {tap.count(old)} of {old.strip()!r} (one expected): the wiring changed")
        tap = tap.replace(old, new)
    return tap


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("directory", help="where the tree is written (made if missing; must be empty)")
    p.add_argument("--rev", default="HEAD", help="the commit to take (default HEAD)")
    opts = p.parse_args()
    os.makedirs(opts.directory, exist_ok=True)
    if os.listdir(opts.directory):
        raise SystemExit(f"unmetered.py: {opts.directory} is not empty")
    archive = subprocess.run(["git", "-C", os.path.dirname(HERE), "archive", opts.rev], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", opts.directory], input=archive, check=True)
    path = os.path.join(opts.directory, "mdsvc", "tap.py")
    with open(path) as f:
        tap = unmeter(f.read())
    with open(path, "w") as f:
        f.write(tap)
    print(f"{opts.directory}: mdsvc at {opts.rev} with no hop meter ({len(UNWIRED)} places in mdsvc/tap.py)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
