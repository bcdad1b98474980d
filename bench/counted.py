"""
The boot mix counted: instructions per request of the running servers of two trees, under callgrind.

bench/ab.py times the servers, and on a machine shared with other work two identical trees side
by side differ by up to 7%: too much to tell a 2% cost from a 6% one. This counts instead: each
variant's servers of a shape (run.py's, the same config, store, SNAT rules and wrk boot mix) run
under valgrind's callgrind with PYTHONHASHSEED=0, wrk loads them (a warm-up not counted), and the
instructions each server process executed in user space while wrk ran a window of WINDOW seconds
(callgrind's counters dumped before and after) are divided by the requests wrk had answered in
that window. A neighbour's load slows the count down but hardly changes it: one tree counted in
separate runs gave figures within 0.1% (unmetered) and 0.3% (metered: where its folds fall) of
each other.

    python3 bench/unmetered.py /tmp/unmetered
    python3 bench/counted.py --shapes 3,4,5 --variant "off=/tmp/unmetered" --variant "on=.:metrics"

A variant is NAME=TREE[:metrics], as for ab.py. What it does not count: the kernel's work for a
request (socket reads and writes, the same in both variants), so the ratio it prints is that of the
servers' user-space work, larger than the ratio of their CPU time.

Under callgrind a server runs about forty times slower, and timers fire forty times more often
per request than at full speed. The caches' expiry would make a count depend on how fast the
server ran (a request that misses costs tens of times one that hits), so here renders and lookups
are kept an hour ([api] metadata_cache_expiration, [cache] expiration_time): the warm-up fills
them and the counted windows see every request hit, as all but about 1% do in run.py's runs at
full speed. The metrics' fold, ten times a second, would run forty times as often per request,
over forty times fewer records each time; so each variant is counted from a copy of its tree
whose fold comes every FOLD_INTERVAL seconds (default 4: about as many records a fold as at full
speed). The warm-up's records are folded before the count
starts, and the last window's count ends after the fold that follows it, so that every record
noted while counting is folded, once, within the count. What the servers' timers cost a second
(connection sweeps, the fold with nothing to fold) is counted over IDLE seconds with no load
after the warm-up and taken off each window for its seconds: at full speed a second holds forty
times as many requests, and that cost per request is forty times smaller. And glibc's memcpy and
memset are told not to use C{rep movsb}/C{rep stosb} (GLIBC_TUNABLES), which callgrind counts as
one instruction per byte where the hardware moves tens of bytes a cycle: they use their vector
loops instead.
"""

from __future__ import annotations

import argparse
import glob
import os
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import ab  # noqa: E402  (bench/ab.py: variants and their stores)
import run  # noqa: E402  (bench/run.py: its shapes, servers, wrk and store)

WARM_CACHES = """
[api]
metadata_cache_expiration = 3600

[cache]
expiration_time = 3600
"""
"""Renders and lookups kept an hour: the counted windows' requests all hit, however slowly the servers run."""

UNCOUNTED_COPIES = "glibc.cpu.x86_rep_movsb_threshold=4294967295:glibc.cpu.x86_rep_stosb_threshold=4294967295"
"""GLIBC_TUNABLES for the servers: memcpy and memset in vector loops, counted as the work they are."""

FOLD_LINE = "FOLD_INTERVAL = 0.1\n"
"""The line of C{mdsvc/operations.py} that says how often a process folds its records."""


def slow_fold_copy(tree: str, into: str, interval: float) -> str:
    """
    A copy of C{tree}'s code (its C{mdsvc} package and twistd plugin) whose processes fold every
    C{interval} seconds; SystemExit if the line is not there once.
    """
    for part in ("mdsvc", os.path.join("twisted", "plugins")):
        shutil.copytree(os.path.join(tree, part), os.path.join(into, part),
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "dropin.cache"))
    path = os.path.join(into, "mdsvc", "operations.py")
    with open(path) as f:
        text = f.read()
    if text.count(FOLD_LINE) != 1:
        raise SystemExit(f"counted.py: {path} has {text.count(FOLD_LINE)} of {FOLD_LINE.strip()!r} (one expected)")
    with open(path, "w") as f:
        f.write(text.replace(FOLD_LINE, f"FOLD_INTERVAL = {interval!r}\n"))
    return into


VALGRIND = ["valgrind", "--tool=callgrind", "--dump-instr=no", "--trace-children=no"]


def callgrind_totals(path: str) -> int:
    """The instructions (Ir) a callgrind dump counted: its C{totals:} (or C{summary:}) line."""
    found = None
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            if line.startswith(("totals:", "summary:")):
                found = int(line.split()[1])
    if found is None:
        raise run.BenchError(f"{path}: no totals or summary line (a partial dump?)")
    return found


class Counted:
    """One server process under callgrind: its counters dumped on demand, each dump's instructions read."""

    def __init__(self, server: run.Server, out_prefix: str) -> None:
        self.server = server
        self.out_prefix = out_prefix
        self.dumps = 0
        self.last = ""

    def dump(self) -> int:
        """Ask callgrind for a dump (its counters restart at zero) and read it: the instructions since the last one."""
        result = subprocess.run(["callgrind_control", "--dump", str(self.server.pid)], capture_output=True, text=True, timeout=120)
        if result.returncode != 0:
            raise run.BenchError(f"callgrind_control --dump {self.server.pid} ({self.server.name}): {result.stdout} {result.stderr}")
        self.dumps += 1
        path = f"{self.out_prefix}.{self.server.pid}.{self.dumps}"
        if not os.path.exists(path):
            raise run.BenchError(f"{self.server.name}: no dump {path} (found {sorted(glob.glob(self.out_prefix + '*'))})")
        self.last = path
        return callgrind_totals(path)


def measure(shape: int, n: int, opts: argparse.Namespace, load: argparse.Namespace, env: dict[str, Any]) -> dict[str, Any]:
    """Variant C{n}'s servers of C{shape} under callgrind: instructions and requests of each window."""
    name = opts.variant[n][0]
    out_prefix = os.path.join(run.RUN.tmp, f"callgrind-{name}-{shape}")  # type: ignore[arg-type]
    env = dict(env, wrap=VALGRIND + [f"--callgrind-out-file={out_prefix}.%p"],
               server_env={"PYTHONHASHSEED": "0", "GLIBC_TUNABLES": UNCOUNTED_COPIES})
    servers: list[run.Server] = []
    try:
        port, requests, _ = run.start_shape(shape, load, env, servers)
        pids = [s.pid for s in servers]
        extra = sorted(set(run.descendants(pids)) - set(pids))
        if extra:
            raise run.BenchError(f"shape {shape}, {name}: child processes {extra} would not be counted (callgrind traces no children here)")
        warm = argparse.Namespace(**dict(vars(load), duration=opts.warmup))
        run.wrk(warm, port, requests, servers)
        time.sleep(opts.fold_interval + 1)  # the warm-up's records folded before counting (the fold comes while idle)
        counted = [Counted(s, out_prefix) for s in servers]
        for c in counted:
            c.dump()  # what start-up and the warm-up cost: not counted
        began = time.monotonic()
        time.sleep(opts.idle)  # what the servers' timers cost a second with no request
        idle = sum(c.dump() for c in counted)
        idle_rate = idle / (time.monotonic() - began)
        windows = []
        for i in range(opts.windows):
            began = time.monotonic()
            stats = run.wrk(load, port, requests, servers)
            if stats["errors"]:
                raise run.BenchError(f"shape {shape}, {name}: {stats['errors']} errors under callgrind")
            if i == opts.windows - 1:  # the last records folded within the count: every record noted is folded once in it
                time.sleep(opts.fold_interval + 1)
            by_server = {c.server.name: c.dump() for c in counted}
            windows.append({"requests": stats["requests"], "by_server": by_server, "seconds": time.monotonic() - began})
            if opts.keep:  # (for callgrind_annotate: where the instructions went, by C function)
                for c in counted:
                    shutil.copy(c.last, os.path.join(opts.keep, f"{c.server.name}-{shape}-{len(windows)}.callgrind"))
        return {"windows": windows, "idle_rate": idle_rate}
    finally:
        for s in reversed(servers):
            s.stop()


def per_request(result: dict[str, Any]) -> tuple[float, list[float], float]:
    """
    Instructions per request over all windows, and in each window, net of what the servers'
    timers cost in as many seconds idle (at full speed a second holds forty times the requests);
    and over all windows as counted.
    """
    windows, rate = result["windows"], result["idle_rate"]
    each = [(sum(w["by_server"].values()) - rate * w["seconds"]) / w["requests"] for w in windows]
    counted = sum(sum(w["by_server"].values()) for w in windows)
    requests = sum(w["requests"] for w in windows)
    return (counted - rate * sum(w["seconds"] for w in windows)) / requests, each, counted / requests


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--variant", type=ab.variant, action="append", required=True, metavar="NAME=TREE[:metrics]")
    p.add_argument("--shapes", default="3,4,5", help="of run.py's 3 (api), 4 (network-node + api), 5 (all-in-one)")
    p.add_argument("--windows", type=int, default=3, help="counted windows per variant and shape")
    p.add_argument("--window", type=int, default=20, help="seconds of wrk load in each counted window")
    p.add_argument("--warmup", type=int, default=15, help="seconds of wrk load before counting")
    p.add_argument("--instances", type=int, default=20, help="instances booting (the warm-up must reach each one's every path)")
    p.add_argument("--connections", type=int, default=8, help="wrk connections")
    p.add_argument("--fold-interval", type=float, default=4.0, metavar="SECONDS",
                   help="how often the counted servers fold their records (see above; 0.1 is what a node does)")
    p.add_argument("--idle", type=float, default=10.0, metavar="SECONDS",
                   help="seconds counted with no load, to take what timers cost off the windows")
    p.add_argument("--keep", metavar="DIR", help="copy each counted window's callgrind dump of each server there")
    opts = p.parse_args()
    if opts.keep:
        os.makedirs(opts.keep, exist_ok=True)
    shapes = ab.checked_shapes(p, opts)
    for tool in ("valgrind", "callgrind_control", "wrk"):
        if not shutil.which(tool):
            p.error(f"needs {tool}: apt-get install valgrind (wrk: bash bench/install.sh)")
    load = ab.load_options(opts.window, opts.connections, opts.instances)
    run.preflight(argparse.Namespace(shape_list=shapes, namespaces=0))
    run.RUN.tmp = tempfile.mkdtemp(prefix="mdsvc-counted-")
    run.RUN.start_timeout = 600.0  # (a twistd under callgrind imports for tens of seconds, longer on a busy machine)
    rows = []
    try:
        run.enter_bench_namespace(f"mdsvc-counted-{os.getpid()}")
        variants = [(name, slow_fold_copy(tree, os.path.join(run.RUN.tmp, f"tree-{name}"), opts.fold_interval), metrics)
                    for name, tree, metrics in opts.variant]
        envs = ab.prepare_variants(variants, load, WARM_CACHES)
        print(f"{opts.windows} windows of {opts.window} s per variant and shape after {opts.warmup} s not counted; wrk -t1 "
              f"-c{opts.connections}, {opts.instances} instances; servers under callgrind", flush=True)
        for shape in shapes:
            counts = []
            for n, env in enumerate(envs):
                result = measure(shape, n, opts, load, env)
                total, each, raw = per_request(result)
                counts.append((total, each))
                requests = sum(w["requests"] for w in result["windows"])
                print(f"shape {shape} {opts.variant[n][0]}: {total:,.0f} instructions per request over {requests:,} requests "
                      f"({raw:,.0f} as counted, less {result['idle_rate']:,.0f} a second idle); "
                      f"windows: {', '.join(f'{e:,.0f}' for e in each)}", flush=True)
            (a, a_each), (b, b_each) = counts
            rows.append(f"| {run.SHAPE_NAMES[shape]} | {a:,.0f} ({min(a_each):,.0f}-{max(a_each):,.0f}) | "
                        f"{b:,.0f} ({min(b_each):,.0f}-{max(b_each):,.0f}) | {b / a:.4f} |")
    finally:
        run.RUN.cleanup()
    (first, _, _), (second, _, _) = opts.variant
    print()
    print(f"| shape | {first}: instructions per request (windows' range) | {second} | {second} / {first} |")
    print("|---|---|---|---|")
    for row in rows:
        print(row)
    return 0


if __name__ == "__main__":
    sys.exit(main())
