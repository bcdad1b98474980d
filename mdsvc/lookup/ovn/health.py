# -*- test-case-name: tests.test_ovn_lookup -*-
"""
L{ReplicaHealth}: whether the replica of the Southbound database may answer, and how old it is.

In sync with a member of the cluster, the replica is current (age 0).  When the monitor loses
it, the replica goes on answering for C{max_age} seconds (the age is the time since it was last
in sync), then lookups fail with L{LookupUnavailable} (the guest gets 503) until a member is in
sync again.  Before the first sync nothing is known and lookups fail too.  Each change of state
is logged once, and told to the listeners (the status file).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from attrs import define, field
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

CONNECTING = "connecting"
IN_SYNC = "in-sync"
LOST = "lost"
STALE = "stale"


@define(eq=False)
class ReplicaHealth:
    """
    @ivar clock: the reactor's time and timers.
    @ivar max_age: seconds the replica answers after losing the database.
    @ivar remotes: the members named in C{ovn_sb_connection}, for messages.
    @ivar state: L{CONNECTING}, L{IN_SYNC}, L{LOST} (answering from the replica) or L{STALE}
        (refusing).
    @ivar remote: the member the replica is (or was last) in sync with.
    @ivar synced_at: when the replica was last known to be in sync (None: never).
    @ivar listeners: called with no argument after every change of state.
    """

    clock: IReactorTime
    max_age: float
    remotes: tuple[str, ...] = ()
    state: str = CONNECTING
    remote: str | None = None
    synced_at: float | None = None
    started_at: float = field(init=False)
    changed_at: float = field(init=False)
    listeners: list[Callable[[], None]] = field(factory=list)
    _stale_timer: IDelayedCall | None = field(default=None, init=False)
    _log = Logger()

    def __attrs_post_init__(self) -> None:
        self.started_at = self.changed_at = self.clock.seconds()

    # -- reading -------------------------------------------------------------------------------

    def age(self) -> float | None:
        """Seconds since the replica was last in sync (0 while it is; None if it never was)."""
        if self.state == IN_SYNC:
            return 0.0
        if self.synced_at is None:
            return None
        return max(0.0, self.clock.seconds() - self.synced_at)

    def refusal(self) -> str | None:
        """Why the replica may not answer now (one line), or None: it may."""
        if self.state == IN_SYNC:
            return None
        age = self.age()
        if age is None:
            return f"the OVN Southbound replica has not been in sync yet (trying {self._members()})"
        if age > self.max_age:
            return (f"the OVN Southbound replica is {age:.0f} s old, over [mdsvc] ovn_replica_max_age = {self.max_age:g} "
                    f"(trying {self._members()})")
        return None

    def _members(self) -> str:
        return ", ".join(self.remotes) or "the Southbound database"

    # -- the monitor's news --------------------------------------------------------------------

    def synced(self, remote: str, ports: int, networks: int) -> None:
        """The replica is in sync with C{remote} (after a connection, with a whole snapshot)."""
        now = self.clock.seconds()
        previous, lost_for = self.state, self.age()
        self._cancel_timer()
        self.state, self.remote, self.synced_at = IN_SYNC, remote, now
        if previous == CONNECTING:
            self._log.info(
                "OVN Southbound replica in sync with {remote}: {ports} port bindings in {networks} networks, "
                "{seconds:.2f} s after starting", remote=remote, ports=ports, networks=networks, seconds=now - self.started_at,
            )
        else:
            self._log.info(
                "OVN Southbound replica in sync again with {remote} after {seconds:.1f} s: {ports} port bindings in "
                "{networks} networks", remote=remote, seconds=lost_for or 0.0, ports=ports, networks=networks,
            )
        self._changed(now)

    def lost(self, remote: str | None, reason: str) -> None:
        """The monitor lost its member (C{reason}: one line); the replica answers C{max_age} more seconds."""
        if self.state != IN_SYNC:
            return
        now = self.clock.seconds()
        self.state, self.synced_at = LOST, now
        self._log.warn(
            "OVN Southbound replica lost {remote} ({reason}): answering from the replica for up to {max_age:g} s "
            "while trying {members}", remote=remote or self.remote, reason=reason, max_age=self.max_age, members=self._members(),
        )
        self._stale_timer = self.clock.callLater(self.max_age, self._stale)
        self._changed(now)

    def _stale(self) -> None:
        self._stale_timer = None
        if self.state != LOST:
            return
        self.state = STALE
        self._log.error(
            "OVN Southbound replica is {max_age:g} s old and no member of {members} is in reach: lookups fail (503) "
            "until one is", max_age=self.max_age, members=self._members(),
        )
        self._changed(self.clock.seconds())

    def stop(self) -> None:
        """Cancel the timer (the service stops)."""
        self._cancel_timer()

    def _cancel_timer(self) -> None:
        if self._stale_timer is not None and self._stale_timer.active():
            self._stale_timer.cancel()
        self._stale_timer = None

    def _changed(self, now: float) -> None:
        self.changed_at = now
        for listener in self.listeners:
            listener()

    def status(self) -> dict[str, Any]:
        """The state as plain data (for the status file)."""
        return {
            "state": self.state, "remote": self.remote, "remotes": list(self.remotes), "synced_at": self.synced_at,
            "changed_at": self.changed_at, "max_age": self.max_age,
        }
