"""
Alternating rounds of bench/run.py for several variants, and the ratio of each to the first: on
a shared, noisy machine a ratio of rounds run one after the other is worth more than any single
figure.

    python3 bench/rounds.py --rounds 4 --shapes 3,4,5 --duration 10 \\
        --variant "b8b5b5c=--mdsvc-tree /tmp/old" --variant "metrics off=" --variant "metrics on=--metrics"

Each variant is NAME=EXTRA-ARGUMENTS for run.py; every round runs each variant once, in order in
odd rounds and in reverse in even ones (A B, B A, ...: a machine that grows slower or faster
during the run favours neither). Prints, per shape, each variant's req/s of every round, the
median (with the median CPU µs per request), and against the first variant both the ratio of the
medians and the median of the rounds' own ratios (each round's variants ran next to each other):
on a machine shared with others a neighbour's burst can take a third off one run, which moves a
mean by several per cent and a median of five or more rounds not at all.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROW = re.compile(r"^(\d) (.{40})\s+(\d+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+(\d+)\s+([\d.]+)\s+(\d+)\s+(\d+)\s*$")


def measure(shapes: str, duration: int, extra: list[str]) -> dict[int, tuple[str, int, int, int]]:
    """One run.py run: per shape, its name, req/s, CPU µs per request and errors."""
    argv = [sys.executable, os.path.join(HERE, "run.py"), "--shapes", shapes, "--duration", str(duration), "--storm", "0",
            "--namespaces", "0", *extra]
    result = subprocess.run(argv, capture_output=True, text=True)
    rows = {}
    for line in result.stdout.splitlines():
        m = ROW.match(line)
        if m:
            rows[int(m.group(1))] = (m.group(2).strip(), int(m.group(3)), int(m.group(9)), int(m.group(7)))
    if not rows:
        raise SystemExit(f"run.py {' '.join(extra)} printed no table:\n{result.stdout[-2000:]}{result.stderr[-2000:]}")
    return rows


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--shapes", default="3,4,5")
    p.add_argument("--duration", type=int, default=10)
    p.add_argument("--variant", action="append", required=True, metavar="NAME=ARGS")
    opts = p.parse_args()
    variants = [(v.partition("=")[0], shlex.split(v.partition("=")[2])) for v in opts.variant]
    results: dict[str, list[dict[int, tuple[str, int, int, int]]]] = {name: [] for name, _ in variants}
    for n in range(opts.rounds):
        for name, extra in variants if n % 2 == 0 else variants[::-1]:
            rows = measure(opts.shapes, opts.duration, extra)
            results[name].append(rows)
            print(f"round {n + 1} {name}: " + ", ".join(f"shape {s} {r[1]} req/s ({r[2]} µs/req, {r[3]} errors)"
                                                         for s, r in sorted(rows.items())), flush=True)
    print()
    first = variants[0][0]
    shapes = sorted(results[first][0])
    print("| shape | " + " | ".join(f"{name}: rounds (req/s) | median (CPU µs/req)" for name, _ in variants)
          + " | " + " | ".join(f"{name} / {first}: of medians | median of rounds" for name, _ in variants[1:]) + " |")
    print("|---" * (1 + 2 * len(variants) + 2 * (len(variants) - 1)) + "|")
    for shape in shapes:
        cells, medians = [], {}
        for name, _ in variants:
            rates = [r[shape][1] for r in results[name]]
            cpu = [r[shape][2] for r in results[name]]
            medians[name] = statistics.median(rates)
            cells += [" / ".join(f"{x:,}" for x in rates), f"{medians[name]:,.0f} ({statistics.median(cpu):.0f})"]
        ratios = []
        for name, _ in variants[1:]:
            paired = [mine[shape][1] / theirs[shape][1] for mine, theirs in zip(results[name], results[first], strict=True)]
            ratios += [f"{medians[name] / medians[first]:.3f}", f"{statistics.median(paired):.3f}"]
        print(f"| {shape} {results[first][0][shape][0]} | " + " | ".join(cells) + " | " + " | ".join(ratios) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
