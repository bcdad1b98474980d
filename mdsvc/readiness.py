# -*- test-case-name: tests.test_readiness -*-
"""
Whether every dependency of a process's role answers: C{/readyz} of the metrics listener, and
the doctor's view of a running process (over its admin socket).

Each L{Dependency} has a name an operator recognises (C{metadata API at http://...}, C{instance
store sqlite:...}, C{lookup backend neutron}, C{agent socket /var/lib/mdsvc/metadata_proxy}) and a
check that fails with the reason when the dependency does not answer within the timeout. A backend
(a store or lookup of a plugin) may provide L{IHealthCheck} to be checked its own way; otherwise
it is asked something harmless (a store: an instance that does not exist; a lookup: an address of
TEST-NET-1 in a network no one has).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from attrs import define, field, frozen
from twisted.internet.defer import Deferred, gatherResults, maybeDeferred
from twisted.internet.protocol import Factory, Protocol
from zope.interface import Interface

PROBE_UUID = "00000000-0000-4000-8000-000000000000"
"""The instance a store is asked for to see that it answers (no instance has it)."""

PROBE_ADDRESS = "192.0.2.1"
"""The address a lookup backend is asked about (TEST-NET-1, RFC 5737: no guest has it)."""

PROBE_NETWORK = "mdsvc-readiness-probe"
"""The network a lookup backend is asked about (no network has this id)."""


class IHealthCheck(Interface):
    """A backend (store, lookup) that checks its own connection, more cheaply or better than a probe."""

    def check():
        """
        @return: a Deferred firing when the backend can answer; it fails, saying why, when not.
        """


class NotReady(Exception):
    """A dependency does not answer; C{str()} says why."""


@frozen
class Dependency:
    """
    Something a role needs in order to answer guests.

    @ivar name: how an operator knows it (its kind and address).
    @ivar check: returns a Deferred that fires when it answers and fails (saying why) when not.
    """

    name: str
    check: Callable[[], Deferred[Any]]


@define(eq=False)
class Readiness:
    """
    The dependencies of one process, checked together, each within C{timeout} seconds.

    @ivar dependencies: added by the role's wiring (L{mdsvc.tap}).
    """

    clock: Any
    timeout: float = 5.0
    dependencies: list[Dependency] = field(factory=list)

    def add(self, name: str, check: Callable[[], Deferred[Any]]) -> None:
        """Depend on C{name}, checked by C{check}."""
        self.dependencies.append(Dependency(name, check))

    def check(self) -> Deferred[list[tuple[str, str | None]]]:
        """Check every dependency at once: C{(name, None)} when it answers, C{(name, why not)} when it does not."""
        return gatherResults([self._one(d) for d in self.dependencies])

    def _one(self, dependency: Dependency) -> Deferred[tuple[str, str | None]]:
        d = maybeDeferred(dependency.check)
        d.addTimeout(self.timeout, self.clock)

        def failed(failure: Any) -> tuple[str, str | None]:
            from twisted.internet.defer import TimeoutError as DeferredTimeout

            if failure.check(DeferredTimeout):
                return dependency.name, f"no answer within {self.timeout:g}s"
            return dependency.name, failure.getErrorMessage() or failure.type.__name__

        return d.addCallbacks(lambda _: (dependency.name, None), failed)


def store_check(store: Any) -> Callable[[], Deferred[Any]]:
    """An instance store answers: its own L{IHealthCheck}, else a read of an instance no one has."""
    if IHealthCheck.providedBy(store):
        return store.check
    return lambda: store.get(PROBE_UUID)


def lookup_check(lookup: Any) -> Callable[[], Deferred[Any]]:
    """A lookup backend answers: its own L{IHealthCheck}, else a lookup of an address no guest has."""
    if IHealthCheck.providedBy(lookup):
        return lookup.check
    return lambda: lookup.lookup(PROBE_ADDRESS, network_id=PROBE_NETWORK)


def api_check(pool: Any, timeout: float) -> Callable[[], Deferred[Any]]:
    """
    The metadata API answers the agent: C{GET /} through the agent's own pool (its TLS
    settings too), which the API answers without identifying anyone; any status below 500 will do.
    """

    def check() -> Deferred[Any]:
        def answered(response: Any) -> None:
            if response.code >= 500:
                raise NotReady(f"answered {response.code}")

        return pool.request(b"GET", b"/", [], timeout=timeout).addCallback(answered)

    return check


def socket_check(reactor: Any, path: str, timeout: float) -> Callable[[], Deferred[Any]]:
    """The agent's UNIX socket accepts a connection (closed again at once)."""

    def check() -> Deferred[Any]:
        from twisted.internet.endpoints import UNIXClientEndpoint

        def connected(protocol: Protocol) -> None:
            protocol.transport.loseConnection()  # type: ignore[union-attr]

        return UNIXClientEndpoint(reactor, path, timeout=timeout).connect(Factory.forProtocol(Protocol)).addCallback(connected)

    return check


__all__ = ["Dependency", "IHealthCheck", "NotReady", "Readiness", "api_check", "lookup_check", "socket_check", "store_check"]
