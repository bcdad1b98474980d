#!/usr/bin/env python3
"""
Fuzz campaign: hostile guests against real mdsvc chains (tests/fuzz/README.md says more).

    pip install atheris                                     # not in CI: the campaign only
    python3 tests/fuzz/campaign.py                          # 10^6 requests through each of haproxy and all-in-one
    python3 tests/fuzz/campaign.py --requests 20000 --chain haproxy --workers 3 --seed 7
    python3 tests/fuzz/campaign.py --replay OUT/haproxy/reproducers/desync --chain haproxy

For each chain (tests/integration/chains.py: haproxy = network-node -> haproxy -> api,
all-in-one, three-process = proxy -> agent -> api) it starts the processes, then runs --workers
atheris (libFuzzer) processes, each one guest with its own source address and instance, sending
the connections tests/fuzz/model.py builds from libFuzzer's inputs, and a victim booting in a
loop.  Every answer is checked (model.judge): statuses, another guest's data, answers to other
requests, hangs, unanswered requests.  It samples the servers' RSS, greps their logs for
tracebacks, prints one table and exits 1 on any violation (0 when there is none).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter, deque
from typing import Any

import attrs

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from tests.integration.chains import HAPROXY, SHAPES, Deployment, Guest, make_guests  # noqa: E402
from tests.integration.processes import rss_kib  # noqa: E402
from tests.integration.rawhttp import BadAnswer, ResponseReader, connect, receive, send  # noqa: E402

CHAIN_CHOICES = {"haproxy": ("haproxy",), "all-in-one": ("all-in-one",), "three-process": ("three-process",),
                 "both": ("haproxy", "all-in-one"), "all": SHAPES}
FEEDBACK_BUCKETS = 512
"""Outcome signatures are hashed into this many instrumented functions: libFuzzer sees a new one as new coverage."""


# ------------------------------------------------------------------------------ one connection

def run_script(port: int, address: str, script: Any, timeout: float) -> tuple[list[Any], Any]:
    """
    Send one connection's bytes from C{address} and read: the answers to the requests a strict
    server must answer (L{model.strict_prefix}; missing ones are a hang), then those a lenient
    server may give (L{model.lax_answers}; waiting for them is no violation), then end our side
    and read until the server closes (no close is a hang).  Ending our side only after that keeps
    a server that drops its work on a client's end of stream from hiding what it would answer.
    Returns the strict requests and the L{model.Outcome}.
    """
    from tests.fuzz import model

    stream = script.stream
    framed, _ = model.strict_prefix(stream)
    reader = ResponseReader(frozenset(i for i, r in enumerate(framed) if r.head_only),
                            maybe_head_from=len(framed) if b"HEAD" in stream else None)
    closed = closed_early = hung = False
    error = None
    sock = None
    try:
        sock = connect(port, address, timeout)
        send(sock, script.chunks, half_close=script.half_close)
        closed, hung = receive(sock, reader, len(framed), time.monotonic() + timeout)
        closed_early = closed and len(reader.answers) < len(framed)
        if not closed and not hung:
            closed, _ = receive(sock, reader, model.lax_answers(stream), time.monotonic() + timeout)
        if not closed and not hung:
            if not script.half_close:
                try:
                    sock.shutdown(socket.SHUT_WR)
                except OSError:
                    pass  # the server has closed already: read what it sent before
            _, hung = receive(sock, reader, 1 << 30, time.monotonic() + timeout)
    except BadAnswer as e:
        error = str(e)
    except OSError as e:
        error = f"{type(e).__name__}: {e}"
    finally:
        if sock is not None:
            sock.close()
    return framed, model.Outcome(tuple(reader.answers), len(framed), closed_early, hung, error)


# ------------------------------------------------------------------------------------ a worker

class Worker:
    """One fuzzing guest in its own process: libFuzzer calls L{one} with each input."""

    def __init__(self, spec: dict[str, Any]) -> None:
        from tests.fuzz import model

        self.model = model
        self.spec = spec
        self.guests = [Guest(**g) for g in spec["guests"]]
        self.me = self.guests[spec["guest"]]
        self.others = [g for g in self.guests if g is not self.me]
        self.stats: dict[str, Any] = {"requests": 0, "connections": 0, "statuses": Counter(), "violations": Counter(),
                                      "lenient_200": 0}
        self.recent: deque[tuple[float, bytes]] = deque(maxlen=200)
        self.flushed = 0.0
        self.feedback = _feedback_functions()
        self.violations = open(spec["violations"], "a")

    def one(self, data: bytes) -> None:
        """Build the connection from C{data}, send it, judge the answers, count."""
        import atheris

        script = self.model.script(data, atheris.FuzzedDataProvider(data), self.others)
        framed, outcome = run_script(self.spec["port"], self.me.address, script, self.spec["timeout"])
        self.recent.append((time.time(), data))
        self._count(script, framed, outcome)
        for kind, detail in self.model.judge(script, framed, outcome, self.me, self.guests):
            self._violation(kind, detail, data, script, outcome)
        self.feedback[hash(self.model.signature(outcome)) % FEEDBACK_BUCKETS]()
        now = time.monotonic()
        if now - self.flushed > 1.0:
            self._flush(now)
        if self.stats["requests"] >= self.spec["quota"]:
            self._flush(now)
            self.violations.close()
            os._exit(0)  # libFuzzer's loop never returns; the quota ends the worker

    def _count(self, script: Any, framed: list[Any], outcome: Any) -> None:
        stats = self.stats
        stats["connections"] += 1
        stats["requests"] += max(script.requests, len(framed), self.model.lax_answers(script.stream), len(outcome.answers))
        for i, answer in enumerate(outcome.answers):
            stats["statuses"][str(answer.status)] += 1
            if i >= len(framed) and answer.status == 200:
                stats["lenient_200"] += 1

    def _violation(self, kind: str, detail: str, data: bytes, script: Any, outcome: Any) -> None:
        self.stats["violations"][kind] += 1
        if self.stats["violations"][kind] <= 20:  # the first of each kind, with everything to reproduce it
            record = {"kind": kind, "detail": detail, "guest": self.me.index, "time": time.time(),
                      "input": base64.b64encode(data).decode(), "stream": repr(script.stream[:600]),
                      "half_close": script.half_close, "answers": [(a.status, repr(a.body[:120])) for a in outcome.answers[:6]]}
            self.violations.write(json.dumps(record) + "\n")
            self.violations.flush()

    def _flush(self, now: float) -> None:
        self.flushed = now
        _write_json(self.spec["stats"], self.stats)
        if os.path.exists(self.spec["dump_request"]):
            with open(self.spec["suspects"], "a") as f:
                for at, data in self.recent:
                    f.write(json.dumps({"time": at, "input": base64.b64encode(data).decode()}) + "\n")
            os.unlink(self.spec["dump_request"])


def _feedback_functions() -> list[Any]:
    """C{FEEDBACK_BUCKETS} distinct instrumented functions: calling one is a coverage edge of its own."""
    import atheris

    functions = []
    for i in range(FEEDBACK_BUCKETS):
        namespace: dict[str, Any] = {}
        exec(f"def bucket_{i}():\n    return {i}\n", namespace)
        functions.append(atheris.instrument_func(namespace[f"bucket_{i}"]))
    return functions


def _write_json(path: str, value: Any) -> None:
    with open(path + ".tmp", "w") as f:
        json.dump(value, f)
    os.replace(path + ".tmp", path)


def worker_main(spec_path: str) -> None:
    """The --worker entry: libFuzzer over L{Worker.one}, until the quota of requests."""
    import atheris

    with open(spec_path) as f:
        spec = json.load(f)
    with atheris.instrument_imports(include=["tests.fuzz.model"]):
        from tests.fuzz import model  # noqa: F401 - instrumented: new structural choices are new coverage
    worker = Worker(spec)
    argv = [sys.argv[0], spec["corpus"], f"-dict={spec['dict']}", f"-seed={spec['seed']}", "-runs=1000000000000",
            "-max_len=4096", "-timeout=120", "-reload=10", f"-artifact_prefix={spec['artifacts']}/", "-print_final_stats=0"]
    atheris.Setup(argv, worker.one)
    atheris.Fuzz()


# ---------------------------------------------------------------------------- seeds, dictionary

def write_seeds(corpus: str, guests: list[Guest]) -> int:
    """Each variant of tests/integration/hostile.py as a verbatim input (first byte 0); how many."""
    from tests.integration.hostile import attacks

    os.makedirs(corpus, exist_ok=True)
    if os.listdir(corpus):
        return 0
    written = 0
    for i, attack in enumerate(attacks(guests[0])):
        data = b"\x00" + attack.sent
        if len(data) <= 4096:
            with open(os.path.join(corpus, f"seed-{i:03d}"), "wb") as f:
                f.write(data)
            written += 1
    return written


def write_dictionary(path: str, guests: list[Guest]) -> str:
    """libFuzzer's dictionary: HTTP tokens, the smuggling payloads, some guests' ids."""
    from tests.fuzz import model

    tokens = set(model.METHODS + model.VERSIONS + model.SEPARATORS + model.LINE_ENDS + model.INJECTIONS + model.FIELD_NAMES
                 + model.ODD_FIELD_NAMES + model.VALUES + model.TRANSFER_CODINGS)
    tokens |= {p.encode() for p in model.PATHS}
    tokens |= {b"Content-Length: ", b"Transfer-Encoding: chunked\r\n", b"\r\n0\r\n\r\n", b"Connection: close\r\n", b"Host: x\r\n",
               b"Expect: 100-continue\r\n", b"GET /openstack/latest/user_data HTTP/1.1\r\n"}
    for g in guests[:4]:
        tokens |= {g.uuid.encode(), g.address.encode()}
    with open(path, "w") as f:
        for token in sorted(t for t in tokens if 0 < len(t) <= 64):
            f.write('"' + "".join(chr(c) if 0x20 <= c < 0x7F and c not in (0x22, 0x5C) else f"\\x{c:02x}" for c in token) + '"\n')
    return path


# ------------------------------------------------------------------------------ one chain's run

class ChainRun:
    """One chain under fuzzing: its processes, workers, victim, samples; L{result} at the end."""

    def __init__(self, shape: str, opts: argparse.Namespace, out: str, corpus: str) -> None:
        self.shape = shape
        self.opts = opts
        self.dir = os.path.join(out, shape)
        self.work = os.path.join(self.dir, "workers")
        os.makedirs(self.work, exist_ok=True)
        self.corpus = corpus
        self.guests = make_guests(1 + opts.workers)
        self.deployment = Deployment(shape, self.guests, directory=self.dir)
        self.workers: list[subprocess.Popen[bytes]] = []
        self.rss: dict[str, list[int]] = {}
        self.dumped: set[tuple[int, float]] = set()

    def run(self) -> dict[str, Any]:
        """Start, fuzz until every worker has sent its quota, stop; the figures."""
        from tests.integration.hostile import VictimLoop

        started = time.monotonic()
        try:
            self.deployment.start()
            write_seeds(self.corpus, self.guests)
            dictionary = write_dictionary(os.path.join(self.dir, "dict.txt"), self.guests)
            self._sample_rss()
            victims = [VictimLoop(self.deployment.listener_port, self.guests[0], self.guests, keep_alive, self.opts.timeout, pause=0.02)
                       .start() for keep_alive in (True, False)]
            fuzz_started = time.monotonic()
            try:
                self._start_workers(dictionary)
                self._monitor()
            finally:
                for loop in victims:
                    loop.stop()
                self._stop_workers()
            seconds = time.monotonic() - fuzz_started
            time.sleep(0.5)
            self._sample_rss()
            return self._result(victims, seconds, time.monotonic() - started)
        finally:
            self.deployment.stop()

    def _start_workers(self, dictionary: str) -> None:
        quota = -(-self.opts.requests // self.opts.workers)
        for w in range(self.opts.workers):
            guest = w + 1
            spec = {"port": self.deployment.listener_port, "guest": guest, "guests": [attrs.asdict(g) for g in self.guests],
                    "quota": quota, "timeout": self.opts.timeout, "corpus": self.corpus, "dict": dictionary,
                    "seed": self.opts.seed * 1000 + w, "artifacts": self.work,
                    "stats": self._path("stats", w, "json"), "violations": self._path("violations", w, "jsonl"),
                    "suspects": self._path("suspects", w, "jsonl"), "dump_request": self._path("dump", w, "request")}
            spec_path = self._path("spec", w, "json")
            _write_json(spec_path, spec)
            log = open(self._path("worker", w, "log"), "ab")
            self.workers.append(subprocess.Popen([sys.executable, os.path.abspath(__file__), "--worker", spec_path],
                                                 stdout=log, stderr=subprocess.STDOUT, cwd=ROOT))
            log.close()

    def _path(self, kind: str, w: int, ext: str) -> str:
        return os.path.join(self.work, f"{kind}-{w + 1}.{ext}")

    def _monitor(self) -> None:
        last_print = 0.0
        while any(p.poll() is None for p in self.workers):
            time.sleep(1.0)
            self._sample_rss()
            self._ask_for_suspects()
            if self.deployment.exited():
                print(f"  {self.shape}: a server process exited: {self.deployment.exited()}", flush=True)
                break
            if time.monotonic() - last_print > 10:
                last_print = time.monotonic()
                stats = self._stats()
                print(f"  {self.shape}: {stats['requests']:,} requests, {stats['connections']:,} connections, "
                      f"violations {dict(stats['violations']) or 0}", flush=True)

    def _stop_workers(self) -> None:
        for p in self.workers:
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()

    def _sample_rss(self) -> None:
        for name, pid in self.deployment.pids().items():
            self.rss.setdefault(name, []).append(rss_kib(pid))

    def _ask_for_suspects(self) -> None:
        """A worker got another guest's data: ask the worker of that guest for its last inputs."""
        for record in self._violations():
            if record["kind"] != "wrong-guest":
                continue
            owner = int(record["detail"].split("guest ")[1].split("'")[0])
            key = (owner, record["time"])
            if key not in self.dumped and 1 <= owner <= len(self.workers):
                self.dumped.add(key)
                open(self._path("dump", owner - 1, "request"), "w").close()

    def _violations(self) -> list[dict[str, Any]]:
        records = []
        for w in range(len(self.workers)):
            path = self._path("violations", w, "jsonl")
            if os.path.exists(path):
                with open(path) as f:
                    records.extend(json.loads(line) for line in f if line.strip())
        return records

    def _stats(self) -> dict[str, Any]:
        total: dict[str, Any] = {"requests": 0, "connections": 0, "statuses": Counter(), "violations": Counter(), "lenient_200": 0}
        for w in range(len(self.workers)):
            try:
                with open(self._path("stats", w, "json")) as f:
                    stats = json.load(f)
            except (OSError, ValueError):
                continue
            for key in ("requests", "connections", "lenient_200"):
                total[key] += stats[key]
            total["statuses"].update(stats["statuses"])
            total["violations"].update(stats["violations"])
        return total

    def _result(self, victims: list[Any], fuzz_seconds: float, seconds: float) -> dict[str, Any]:
        stats = self._stats()
        victim = Counter()
        for loop in victims:
            for failure in loop.failures:
                victim["wrong-guest" if failure.owner is not None else "other"] += 1
        problems = self.deployment.problems()
        rss = {name: (samples[0], max(samples), samples[-1]) for name, samples in self.rss.items() if samples}
        grown = {name: r for name, r in rss.items() if r[1] - r[0] > self.opts.rss_growth_mb * 1024}
        exits = [p.returncode for p in self.workers if p.returncode not in (0, None, -15)]
        short = stats["requests"] < self.opts.requests
        return {"shape": self.shape, "stats": stats, "victim": victim, "victim_requests": sum(v.requests for v in victims),
                "victim_examples": [f.what for v in victims for f in v.failures[:3]], "tracebacks": problems, "rss": rss,
                "rss_grown": grown, "worker_exits": exits, "short": short, "fuzz_seconds": fuzz_seconds, "seconds": seconds,
                "examples": self._examples(), "dir": self.dir, "server_exits": self.deployment.exited()}

    def _examples(self) -> dict[str, dict[str, Any]]:
        """The first violation of each kind; its input is saved as reproducers/KIND too."""
        examples: dict[str, dict[str, Any]] = {}
        reproducers = os.path.join(self.dir, "reproducers")
        for record in sorted(self._violations(), key=lambda r: r["time"]):
            if record["kind"] not in examples:
                examples[record["kind"]] = record
                os.makedirs(reproducers, exist_ok=True)
                with open(os.path.join(reproducers, record["kind"]), "wb") as f:
                    f.write(base64.b64decode(record["input"]))
        return examples


# -------------------------------------------------------------------------------------- report

def violations_of(result: dict[str, Any]) -> Counter[str]:
    """Every violation of one chain's run, by kind."""
    found = Counter(result["stats"]["violations"])
    found.update({f"victim: {k}": n for k, n in result["victim"].items()})
    if result["tracebacks"]:
        found["traceback in a log"] = len(result["tracebacks"])
    if result["rss_grown"]:
        found["RSS unbounded"] = len(result["rss_grown"])
    if result["worker_exits"]:
        found["worker crashed (harness)"] = len(result["worker_exits"])
    if result["server_exits"]:
        found["server exited"] = len(result["server_exits"])
    if result["short"]:
        found["fewer requests than asked"] = 1
    return found


def print_report(results: list[dict[str, Any]], opts: argparse.Namespace, out: Any = sys.stdout) -> None:
    """One table for every chain: volume, statuses, violations, RSS, then an example of each violation."""
    def line(label: str, *cells: Any) -> None:
        print(f"{label:34}" + "".join(f"{c!s:>22}" for c in cells), file=out)

    print(file=out)
    line("", *(r["shape"] for r in results))
    line("requests sent", *(f"{r['stats']['requests']:,}" for r in results))
    line("connections", *(f"{r['stats']['connections']:,}" for r in results))
    line("fuzzing time (s)", *(f"{r['fuzz_seconds']:.0f}" for r in results))
    line("requests/s", *(f"{r['stats']['requests'] / max(r['fuzz_seconds'], 1e-9):,.0f}" for r in results))
    line("victim requests", *(f"{r['victim_requests']:,}" for r in results))
    statuses = sorted({s for r in results for s in r["stats"]["statuses"]}, key=int)
    for status in statuses:
        line(f"answers {status}", *(f"{r['stats']['statuses'].get(status, 0):,}" for r in results))
    line("200 beyond the strict reading", *(f"{r['stats']['lenient_200']:,}" for r in results))
    from tests.fuzz.model import VIOLATIONS

    kinds = list(VIOLATIONS) + sorted({k for r in results for k in violations_of(r)} - set(VIOLATIONS))
    for kind in kinds:
        line(f"VIOLATIONS {kind}", *(violations_of(r).get(kind, 0) for r in results))
    names = sorted({n for r in results for n in r["rss"]})
    for name in names:
        line(f"RSS MiB {name} start/peak/end", *("/".join(f"{v / 1024:.0f}" for v in r["rss"][name]) if name in r["rss"] else "-"
                                                 for r in results))
    for r in results:
        for kind, record in r["examples"].items():
            print(f"\n{r['shape']}: first {kind}: {record['detail']}\n  sent: {record['stream'][:400]}"
                  f"{' (then half-close)' if record['half_close'] else ''}\n  answers: {record['answers'][:3]}", file=out)
        for example in r["victim_examples"][:3]:
            print(f"\n{r['shape']}: victim: {example}", file=out)
        for problem in r["tracebacks"][:2]:
            print(f"\n{r['shape']}: log: {problem[:1500]}", file=out)
        print(f"\n{r['shape']}: logs, corpus, violations and reproducers in {r['dir']}", file=out)


# ---------------------------------------------------------------------------------------- main

def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=1_000_000, help="requests to send through each chain (default 10^6)")
    parser.add_argument("--chain", choices=sorted(CHAIN_CHOICES), default="both", help="both = haproxy and all-in-one (default)")
    parser.add_argument("--workers", type=int, default=3, help="fuzzing processes, each a guest of its own (default 3)")
    parser.add_argument("--seed", type=int, default=1, help="libFuzzer's seed (worker N gets seed*1000+N)")
    parser.add_argument("--corpus", help="libFuzzer's corpus directory, kept between runs (default: a new one, seeded)")
    parser.add_argument("--out", help="where logs, violations and reproducers go (default: a new /tmp/mdsvc-fuzz-*)")
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds an answer or a close may take before it is a hang")
    parser.add_argument("--rss-growth-mb", type=int, default=64, help="RSS growth of a server process that counts as unbounded")
    parser.add_argument("--replay", metavar="FILE", help="send one input (a reproducer) through a fresh chain and show what came back")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def preflight(opts: argparse.Namespace) -> str | None:
    """Why the campaign cannot run here, or None."""
    try:
        import atheris  # noqa: F401
    except ImportError:
        return "needs atheris: pip install atheris"
    if "haproxy" in CHAIN_CHOICES[opts.chain] and HAPROXY is None:
        return "the haproxy chain needs haproxy: bash bench/install.sh"
    return None


def replay(opts: argparse.Namespace) -> int:
    """Send one input through a fresh chain of C{opts.chain} (its first shape); print what happened."""
    import atheris

    from tests.fuzz import model

    with open(opts.replay, "rb") as f:
        data = f.read()
    shape = CHAIN_CHOICES[opts.chain][0]
    guests = make_guests(2)
    deployment = Deployment(shape, guests)
    try:
        deployment.start()
        script = model.script(data, atheris.FuzzedDataProvider(data), guests[:1])
        framed, outcome = run_script(deployment.listener_port, guests[1].address, script, opts.timeout)
        stream = script.stream
        print(f"sent ({len(stream)} bytes in {len(script.chunks)} writes{', then half-close' if script.half_close else ''}): "
              f"{stream[:1500]!r}{' ...' if len(stream) > 1500 else ''}")
        print(f"strict reading: {len(framed)} request(s): {[(r.method, r.target) for r in framed]}")
        for answer in outcome.answers:
            print(f"answer: {answer.status} {answer.body[:200]!r}")
        print(f"closed early: {outcome.closed_early}, hung: {outcome.hung}, error: {outcome.error}")
        found = model.judge(script, framed, outcome, guests[1], guests)
        for kind, detail in found:
            print(f"VIOLATION {kind}: {detail}")
        return 1 if found else 0
    finally:
        deployment.stop()


def main(argv: list[str] | None = None) -> int:
    """Run the campaign (or one worker, or one replay)."""
    opts = parse_args(argv)
    if opts.worker:
        worker_main(opts.worker)
        return 0
    reason = preflight(opts)
    if reason:
        print(f"campaign: {reason}", file=sys.stderr)
        return 2
    if opts.replay:
        return replay(opts)
    out = opts.out or tempfile.mkdtemp(prefix="mdsvc-fuzz-")
    os.makedirs(out, exist_ok=True)
    corpus = opts.corpus or os.path.join(out, "corpus")
    results = []
    for shape in CHAIN_CHOICES[opts.chain]:
        print(f"{shape}: {opts.requests:,} requests from {opts.workers} fuzzing guests and a booting victim ...", flush=True)
        results.append(ChainRun(shape, opts, out, corpus).run())
    with open(os.path.join(out, "summary.txt"), "w") as f:
        print_report(results, opts, f)
    print_report(results, opts)
    failed = sum(sum(violations_of(r).values()) for r in results)
    print(f"\n{'FAILED' if failed else 'PASSED'}: {failed} violation(s); summary in {os.path.join(out, 'summary.txt')}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
