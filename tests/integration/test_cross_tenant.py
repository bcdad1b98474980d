"""
Hostile guests: every request smuggling and header injection variant of
L{tests.integration.hostile}, each sent over raw sockets by a guest of its own, while a victim
guest boots in a loop (keep-alive and new connections), through three deployments of real
processes:

  - haproxy: --role network-node calling --role api through a stock haproxy (the usual
    kolla-ansible / OpenStack-Ansible deployment), where a request the agent forwards with the
    guest's bare LF or TAB in its target is read as two by haproxy;
  - all-in-one: proxy, agent and API in one process;
  - three-process: --role proxy, --role agent and --role api, HTTP on every hop.

Each variant comes from its own guest (its own source address and instance), so an answer that
reaches the wrong guest names the variant that caused it by the data it carries, however late
it arrives.  Each deployment is attacked once (every variant, as often as it says; a variant
that hangs, once) and the tests of its class read that one report: the victim always gets exactly
its own data; no attacker gets another guest's data or the answer to another request; every
status is in L{hostile.ALLOWED_STATUSES}; malformed requests are refused and valid ones
answered; every request is answered in time; no process logs an unhandled error.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

from attrs import frozen
from twisted.trial.unittest import SynchronousTestCase

from tests.integration import hostile
from tests.integration.chains import HAPROXY, Deployment, Guest, make_guests
from tests.integration.processes import NotInstalled
from tests.integration.rawhttp import exchange

TIMEOUT = 4.0
"""Seconds an answer may take (the deployments' API timeout is 2 s, the proxy's 3 s)."""

LINGER = 0.005
"""Seconds to wait, after the answers expected, for answers to requests never sent."""


@frozen
class Report:
    """What one deployment did under attack."""

    shape: str
    attack_problems: dict[str, Counter[hostile.Problem]]
    """Variant name to each problem its guest saw, with how many of its sendings showed it."""
    owners: dict[int, str]
    """Guest index to the variant that guest sent."""
    victim_requests: int
    victim_failures: list[hostile.VictimFailure]
    log_problems: list[str]
    exited: dict[str, int]
    seconds: float


def attack_all(port: int, pairs: list[tuple[hostile.Attack, Guest]], guests: list[Guest]) -> dict[str, Counter[hostile.Problem]]:
    """Each attack from its own guest, C{attack.repeat} times in a row (once if it hangs); problems by attack."""
    problems: dict[str, Counter[hostile.Problem]] = {}
    for attack, attacker in pairs:
        seen = problems[attack.name] = Counter()
        for _ in range(attack.repeat):
            result = exchange(port, attacker.address, attack.chunks, len(attack.expect), attack.head_only, timeout=TIMEOUT,
                              half_close=attack.half_close, linger=LINGER)
            seen.update(hostile.judge(attack, result, attacker, guests))
            if result.hung:
                break
    return problems


def run(shape: str) -> Report:
    """Start C{shape}, attack it while the victim boots, stop it; the report."""
    started = time.monotonic()
    count = len(hostile.attacks(make_guests(1)[0]))
    guests = make_guests(1 + count)
    victim = guests[0]
    pairs = list(zip(hostile.attacks(victim), guests[1:], strict=False))  # one guest per attack
    deployment = Deployment(shape, guests)
    try:
        deployment.start()
        victims = [hostile.VictimLoop(deployment.listener_port, victim, guests, keep_alive, TIMEOUT).start() for keep_alive in (True, False)]
        try:
            problems = attack_all(deployment.listener_port, pairs, guests)
        finally:
            for loop in victims:
                loop.stop()
        time.sleep(0.3)  # the last log lines
        return Report(shape, problems, {g.index: a.name for a, g in pairs}, sum(v.requests for v in victims),
                      sorted((f for v in victims for f in v.failures), key=lambda f: f.at), deployment.problems(),
                      deployment.exited(), time.monotonic() - started)
    finally:
        deployment.stop()


_REPORTS: dict[str, Any] = {}


def report(shape: str) -> Report:
    """The report of C{shape}'s one attack run (made by the first test that asks for it)."""
    if shape not in _REPORTS:
        try:
            _REPORTS[shape] = run(shape)
        except Exception as e:  # noqa: BLE001 - every test of the shape fails with it, run once
            _REPORTS[shape] = e
    found = _REPORTS[shape]
    if isinstance(found, Exception):
        raise AssertionError(f"{shape}: the attack run failed: {found}") from found
    return found


def victim_summary(found: Report) -> str:
    """The victim's failures by kind, and the variants whose data it got."""
    kinds = Counter(f"{f.path}: {f.what.split(':')[0]}" for f in found.victim_failures if f.owner is None)
    leaks = Counter(found.owners.get(f.owner, f"guest {f.owner}") for f in found.victim_failures if f.owner is not None)
    return "\n".join(
        [f"  {n} x got the data of the guest sending: {k}" for k, n in leaks.most_common()]
        + [f"  {n} x {k}" for k, n in kinds.most_common()]
        + ["first failures:"] + [f"  {f.path}: {f.what}" for f in found.victim_failures[:5]])


def attack_lines(found: Report, kind: str) -> list[str]:
    """C{variant: problem (xN sendings)} for each problem of C{kind}, naming the variant whose data leaked."""
    lines = []
    for name, seen in found.attack_problems.items():
        for problem, count in seen.items():
            if problem.kind == kind:
                source = f" [sent by: {found.owners[problem.owner]}]" if problem.owner in found.owners else ""
                lines.append(f"{name}: {problem}{source}" + (f" (x{count})" if count > 1 else ""))
    return lines


class CrossTenantTests:
    """The tests every deployment passes; a subclass names the shape."""

    shape = ""

    def setUp(self) -> None:
        if self.shape == "haproxy" and HAPROXY is None:
            raise NotInstalled("haproxy is not installed: run bash bench/install.sh as root (make test does)")
        self.report = report(self.shape)

    def assertNothing(self, found: list[Any], what: str) -> None:
        """Fail listing C{found} (one line each) under the heading C{what}, unless it is empty."""
        if found:
            self.fail(f"{self.shape}: {what}:\n" + "\n".join(str(line) for line in found))

    def test_victim_always_gets_its_own_data(self) -> None:
        """Every answer the booting victim gets is 200 with exactly its own data, whatever the others send."""
        found = self.report
        self.assertGreater(found.victim_requests, 100)
        if found.victim_failures:
            self.fail(f"{self.shape}: {len(found.victim_failures)} of {found.victim_requests} victim requests went wrong:\n"
                      + victim_summary(found))

    def test_attackers_only_ever_get_their_own_data(self) -> None:
        """No answer to an attacker carries another guest's data, or the answer to another of its requests."""
        self.assertNothing(attack_lines(self.report, "wrong-data"), "answers with data that is not the asker's")

    def test_every_status_is_allowed(self) -> None:
        """Every answer has a status of hostile.ALLOWED_STATUSES (no 500, no 502)."""
        self.assertNothing(attack_lines(self.report, "status"), "statuses outside the allowed set")

    def test_malformed_requests_refused_valid_ones_answered(self) -> None:
        """A request RFC 9112 calls malformed is never answered 200; a valid one always is."""
        self.assertNothing(attack_lines(self.report, "acceptance"), "malformed requests answered 200, or valid ones refused")

    def test_every_request_answered_in_time(self) -> None:
        """Every complete request gets one answer within the timeout: no hang, no silent close, no extra answer."""
        self.assertNothing(attack_lines(self.report, "unanswered"), "requests not answered, or answered too often")

    def test_no_unhandled_errors(self) -> None:
        """No process logs a traceback or an unhandled error, and none exits."""
        self.assertNothing(self.report.log_problems, "unhandled errors in the logs")
        self.assertEqual(self.report.exited, {})


class HaproxyChainTests(CrossTenantTests, SynchronousTestCase):
    """--role network-node -> haproxy (HTTP mode, keep-alive) -> --role api."""

    shape = "haproxy"


class AllInOneTests(CrossTenantTests, SynchronousTestCase):
    """--role all-in-one: the agent calls the API in process."""

    shape = "all-in-one"


class ThreeProcessTests(CrossTenantTests, SynchronousTestCase):
    """--role proxy -> UNIX socket -> --role agent -> --role api."""

    shape = "three-process"
