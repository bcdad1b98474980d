"""
Two trees of mdsvc side by side under the boot mix, the load switched between them every few
seconds: the way to measure a difference of a few per cent on a machine shared with others.

bench/rounds.py runs one variant after the other, tens of seconds apart; a neighbour's burst that
lasts a minute lands on one of them and moves a ratio by more than the difference sought. Here
both variants' servers of a shape run at once, pinned to the same CPU (the one not loaded is
idle), and wrk loads them in turn, SLICE seconds each, in the order A B B A A B ...: a burst
shorter than a slice costs both about alike, a longer one lands on both halves of a pair.

    python3 bench/unmetered.py /tmp/unmetered
    python3 bench/ab.py --shapes 3,4,5 --slices 20 --slice 3 \\
        --variant "off=/tmp/unmetered" --variant "on=.:metrics"

A variant is NAME=TREE[:metrics] (TREE: a source tree, C{.} for this checkout; C{:metrics}: its
processes also serve [mdsvc] metrics_endpoint). Prints per shape each variant's req/s over all
its slices after one not counted (and server CPU µs per request), the ratio of the second to the first, and the median
and quartiles of the ratios of the slice pairs (each pair ran back to back).

With --together both variants are loaded at once in every slice, a wrk each: their servers share
the server CPU as the scheduler sees fit, and whatever else the machine does in that slice slows
both; the figure compared is then server CPU per request (the ratio printed is the first
variant's over the second's: the second's throughput relative to the first's at equal CPU).

With --runs N the servers of both variants are started afresh N times per shape, SLICES slices
each: one run's ratio depends on its processes as well as on the trees (a tree against a copy
of itself came out 0.998 to 1.007 in three runs; two trees 0.5% apart by bench/counted.py's
count, 0.967 to 1.002 in five), so a difference of 1% is told by several runs, not by more
slices of one. It prints each run's ratio, then the mean of the runs' ratios with its 95%
interval (Student's t over the runs), and the ratio of all runs' totals.

    python3 bench/ab.py --together --shapes 3 --runs 6 --slices 20 \\
        --variant "off=/tmp/unmetered" --variant "on=.:metrics"
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import run  # noqa: E402  (bench/run.py: its shapes, servers, wrk and store)


def variant(text: str) -> tuple[str, str, bool]:
    """NAME=TREE[:metrics] as (name, absolute tree, metrics)."""
    name, _, rest = text.partition("=")
    tree, _, flag = rest.partition(":")
    if not name or not tree or flag not in ("", "metrics"):
        raise argparse.ArgumentTypeError(f"{text!r}: expected NAME=TREE or NAME=TREE:metrics")
    tree = os.path.abspath(os.path.dirname(HERE) if tree == "." else tree)
    if not os.path.isdir(os.path.join(tree, "mdsvc")):
        raise argparse.ArgumentTypeError(f"{tree}: no mdsvc package there")
    return name, tree, flag == "metrics"


def prepare_variants(variants: list[tuple[str, str, bool]], load: argparse.Namespace, extra_config: str = "") -> list[dict[str, Any]]:
    """
    Each variant's config (run.py's, C{extra_config} added), store of C{load.instances}
    instances, request files and SNAT rules, in run.RUN.tmp and the bench namespace already
    entered: the C{env} of run.start_shape for each.
    """
    assert run.RUN.tmp is not None
    ports = run.Ports(True)
    envs = []
    for name, tree, metrics in variants:
        tmp = os.path.join(run.RUN.tmp, name)
        os.makedirs(tmp)
        api_port, listener_port = ports.get(), ports.get()
        config = run.mdsvc_config(tmp, api_port, listener_port, metrics, extra_config)
        run.MDSVC_TREE["path"] = tree  # (mdsvc-manage of this variant's tree fills its store)
        run.prepare_store(load, tmp, load.instances)
        plain, signed = os.path.join(tmp, "plain.txt"), os.path.join(tmp, "signed.txt")
        run.write_requests(plain, load.instances, signed=False)
        run.write_requests(signed, load.instances, signed=True)
        run.snat_guests(listener_port, load.instances)
        envs.append({"ports": ports, "api_port": api_port, "listener_port": listener_port, "config": config, "plain": plain,
                     "signed": signed, "isolated": True, "check": [0, load.instances - 1], "tree": tree, "label": f"{name}-"})
    return envs


def load_together(load: argparse.Namespace, started: list[tuple[int, str, Any]], servers: list[list[run.Server]]) -> dict[int, dict[str, Any]]:
    """
    Both variants loaded at once, a wrk each (both on the client CPU), for one slice: their
    servers share the server CPU, so whatever else the machine does at that moment slows both.
    """
    results: dict[int, dict[str, Any]] = {}
    failures: list[BaseException] = []

    def drive(n: int) -> None:
        try:
            results[n] = run.wrk(load, started[n][0], started[n][1], servers[n])
        except BaseException as e:  # (re-raised below, in the caller's thread)
            failures.append(e)

    threads = [threading.Thread(target=drive, args=(n,)) for n in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if failures:
        raise failures[0]
    return results


def checked_shapes(p: argparse.ArgumentParser, opts: argparse.Namespace) -> list[int]:
    """The shapes asked for (C{--shapes}), once two variants are given and this runs as root; else C{p.error}."""
    if len(opts.variant) != 2:
        p.error("two variants: the first is the reference")
    shapes = [int(s) for s in opts.shapes.split(",")]
    if not set(shapes) <= {3, 4, 5}:
        p.error("shapes: 3, 4 and 5")
    if os.geteuid() != 0:
        p.error("needs root: shapes 4 and 5 see their guests through the bench namespace (run.py's)")
    return shapes


def load_options(duration: float, connections: int, instances: int) -> argparse.Namespace:
    """What run.py's start_shape and wrk read of their options: servers on the first CPU, wrk on the second."""
    cpus = sorted(os.sched_getaffinity(0))
    return argparse.Namespace(duration=duration, connections=connections, profile=None, profile_shape=0,
                              server_cpu=str(cpus[0]) if len(cpus) > 1 else None, client_cpu=str(cpus[1]) if len(cpus) > 1 else None,
                              instances=instances, storm=0)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--variant", type=variant, action="append", required=True, metavar="NAME=TREE[:metrics]")
    p.add_argument("--shapes", default="3,4,5", help="of run.py's 3 (api), 4 (network-node + api), 5 (all-in-one)")
    p.add_argument("--slices", type=int, default=20, help="loads of each variant per shape")
    p.add_argument("--slice", type=int, default=3, help="seconds of each load")
    p.add_argument("--runs", type=int, default=1, help="times both variants' servers are started afresh per shape, SLICES slices each")
    p.add_argument("--instances", type=int, default=200)
    p.add_argument("--connections", type=int, default=50, help="wrk connections (run.py's default)")
    p.add_argument("--together", action="store_true",
                   help="load both variants at once in each slice (sharing the server CPU) and compare server CPU per request")
    opts = p.parse_args()
    shapes = checked_shapes(p, opts)
    if opts.runs < 1 or opts.slices < 1:
        p.error("--runs and --slices: at least 1")
    load = load_options(opts.slice, opts.connections, opts.instances)
    run.preflight(argparse.Namespace(shape_list=shapes, namespaces=0))
    run.RUN.tmp = tempfile.mkdtemp(prefix="mdsvc-ab-")
    try:
        run.enter_bench_namespace(f"mdsvc-ab-{os.getpid()}")
        envs = prepare_variants(opts.variant, load)
        how = "both at once" if opts.together else "alternating (A B B A ...)"
        runs = f", in each of {opts.runs} runs with fresh servers" if opts.runs > 1 else ""
        print(f"{opts.slices} loads of {opts.slice} s per variant and shape{runs}, {how}; wrk -t1 "
              f"-c{opts.connections}, servers on CPU {load.server_cpu}, wrk on CPU {load.client_cpu}", flush=True)
        rows = [measure(shape, opts, load, envs) for shape in shapes]
    finally:
        run.RUN.cleanup()
    (first, _, _), (second, _, _) = opts.variant
    print()
    if opts.together:
        print(f"| shape | {first}: req/s (CPU µs/req) | {second}: req/s (CPU µs/req) | {first} / {second}, CPU per request "
              f"(its inverse: {second}'s throughput relative to {first}'s) | slices: median (quartiles) |")
    else:
        print(f"| shape | {first}: req/s (CPU µs/req) | {second}: req/s (CPU µs/req) | {second} / {first} | "
              f"pairs: median (quartiles) |")
    print("|---|---|---|---|---|")
    for row, _ in rows:
        print(row)
    if opts.runs > 1:
        print()
        print(f"| shape | {first} / {second} of each run | mean of the runs (95% interval) | all runs' totals |" if opts.together else
              f"| shape | {second} / {first} of each run | mean of the runs (95% interval) | all runs' totals |")
        print("|---|---|---|---|")
        for _, runs_row in rows:
            print(runs_row)
    return 0


def measure(shape: int, opts: argparse.Namespace, load: argparse.Namespace, envs: list[dict[str, Any]]) -> tuple[str, str]:
    """
    C{opts.runs} runs of C{shape} (L{measure_run}): the table row of all their slices together,
    and the row of the runs' ratios (L{pooled}).
    """
    totals = [[0, 0.0, 0.0], [0, 0.0, 0.0]]  # requests, seconds, server CPU seconds
    rates: list[list[float]] = [[], []]
    costs: list[list[float]] = [[], []]  # server CPU µs per request, each slice
    ratios = []
    for number in range(opts.runs):
        run_totals = measure_run(shape, opts, load, envs, rates, costs, number + 1 if opts.runs > 1 else None)
        for total, run_total in zip(totals, run_totals, strict=True):
            total[:] = map(sum, zip(total, run_total, strict=True))
        ratios.append(ratio(run_totals, opts.together))
        if opts.runs > 1:
            print(f"shape {shape} run {number + 1}: {ratios[-1]:.3f}", flush=True)
    rps = [t[0] / t[1] for t in totals]
    cpu = [t[2] * 1e6 / t[0] for t in totals]
    overall = ratio(totals, opts.together)
    mean, low, high = pooled(ratios)
    each = ", ".join(f"{r:.3f}" for r in ratios)
    runs_row = f"| {run.SHAPE_NAMES[shape]} | {each} | {mean:.3f} ({low:.3f}-{high:.3f}) | {overall:.3f} |"
    if opts.together:  # (the CPU both had is shared as the scheduler saw fit: compare what a request cost)
        pairs = [a / b for a, b in zip(costs[0], costs[1], strict=True)]
        q1, median, q3 = statistics.quantiles(pairs, n=4) if len(pairs) > 1 else (pairs[0],) * 3
        return (f"| {run.SHAPE_NAMES[shape]} | {rps[0]:,.0f} ({cpu[0]:.1f}) | {rps[1]:,.0f} ({cpu[1]:.1f}) | {overall:.3f} | "
                f"{median:.3f} ({q1:.3f}-{q3:.3f}) |"), runs_row
    pairs = [b / a for a, b in zip(rates[0], rates[1], strict=True)]
    q1, median, q3 = statistics.quantiles(pairs, n=4) if len(pairs) > 1 else (pairs[0],) * 3
    return (f"| {run.SHAPE_NAMES[shape]} | {rps[0]:,.0f} ({cpu[0]:.0f}) | {rps[1]:,.0f} ({cpu[1]:.0f}) | {overall:.3f} | "
            f"{median:.3f} ({q1:.3f}-{q3:.3f}) |"), runs_row


def ratio(totals: list[list[float]], together: bool) -> float:
    """
    The figure compared, from each variant's C{[requests, seconds, server CPU seconds]}: with
    C{together}, the first's server CPU per request over the second's; else the second's
    requests a second over the first's.
    """
    (requests_a, seconds_a, cpu_a), (requests_b, seconds_b, cpu_b) = totals
    if together:
        return (cpu_a / requests_a) / (cpu_b / requests_b)
    return (requests_b / seconds_b) / (requests_a / seconds_a)


T_975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
         2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)
"""Student's t, two-sided 95%, for 1 to 30 degrees of freedom (1.96 beyond)."""


def pooled(ratios: list[float]) -> tuple[float, float, float]:
    """The mean of the runs' ratios and its 95% interval (Student's t; no interval, the mean twice, for one run)."""
    mean = statistics.fmean(ratios)
    if len(ratios) < 2:
        return mean, mean, mean
    t = T_975[len(ratios) - 2] if len(ratios) - 1 <= len(T_975) else 1.96
    half = t * statistics.stdev(ratios) / len(ratios) ** 0.5
    return mean, mean - half, mean + half


def measure_run(
    shape: int, opts: argparse.Namespace, load: argparse.Namespace, envs: list[dict[str, Any]], rates: list[list[float]],
    costs: list[list[float]], number: int | None,
) -> list[list[float]]:
    """
    Start both variants' servers of C{shape}, load them C{opts.slices} times (each slice's
    requests a second and CPU per request added to C{rates} and C{costs}), stop them: each
    variant's C{[requests, seconds, server CPU seconds]}.
    """
    servers: list[list[run.Server]] = [[], []]
    label = f"shape {shape} run {number}" if number is not None else f"shape {shape}"
    try:
        # (the second run starts the second variant's servers first, and so on: neither is always the older process)
        first = (1, 0) if number is not None and number % 2 == 0 else (0, 1)
        starts = {n: run.start_shape(shape, load, envs[n], servers[n]) for n in first}
        started = [starts[0], starts[1]]
        for n in (0, 1):  # a slice each not counted: caches filled, connections made, the interpreter warm
            run.wrk(load, started[n][0], started[n][1], servers[n])
        totals = [[0, 0.0, 0.0], [0, 0.0, 0.0]]  # requests, seconds, server CPU seconds
        for i in range(opts.slices):
            order = (0, 1) if i % 2 == 0 else (1, 0)
            if opts.together:
                results = load_together(load, started, servers)
            else:
                results = {n: run.wrk(load, started[n][0], started[n][1], servers[n]) for n in order}
            for n in order:
                stats = results[n]
                if stats["errors"]:
                    raise run.BenchError(f"shape {shape}, {opts.variant[n][0]}: {stats['errors']} errors")
                totals[n][0] += stats["requests"]
                totals[n][1] += stats["duration_us"] / 1e6
                totals[n][2] += stats["cpu_us"] * stats["requests"] / 1e6
                rates[n].append(stats["rps"])
                costs[n].append(stats["cpu_us"])
            print(f"{label} slice {i + 1}: " + ", ".join(f"{opts.variant[n][0]} {rates[n][-1]:,.0f} req/s "
                                                        f"({costs[n][-1]:.1f} µs)" for n in (0, 1)), flush=True)
    finally:
        for group in servers:
            for s in reversed(group):
                s.stop()
    return totals


if __name__ == "__main__":
    sys.exit(main())
