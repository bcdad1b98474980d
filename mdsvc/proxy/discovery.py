# -*- test-case-name: tests.test_proxy_discovery -*-
"""
Namespace discovery: follow the network namespaces Neutron's agents create and remove.

The DHCP agent creates C{qdhcp-<network id>}, the L3 agent C{qrouter-<router id>} and the OVN
metadata agent C{ovnmeta-<network id>} (neutron spec §0); C{ip netns} names them by files under
C{/run/netns}.  L{NamespaceWatcher} tells its owner when a wanted namespace appears or goes,
promptly through inotify when it can, and by a periodic full rescan in any case (missed events,
the initial listing, a directory that does not exist yet or was mounted over).

C{ip netns add} creates the file first and bind-mounts the namespace onto it a moment later, so
an entry counts only once it really is a namespace (L{is_namespace_file}); until then the watcher
looks again every C{settle_interval} seconds for up to C{settle_timeout} seconds.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Collection, Iterable
from typing import Any, NamedTuple

from attrs import define, field
from twisted.application.service import Service
from twisted.internet.defer import Deferred, gatherResults, maybeDeferred, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorFDSet, IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

__all__ = [
    "NamespaceKind",
    "NamespaceWatcher",
    "PREFIXES",
    "classify",
    "is_namespace_file",
    "namespace_filter",
]


class NamespaceKind(NamedTuple):
    """
    What a namespace name says about the proxy it needs.

    @ivar kind: C{"network"} (the proxy states C{X-Neutron-Network-ID} or C{X-OVN-Network-ID})
        or C{"router"} (C{X-Neutron-Router-ID}).
    @ivar id: the network or router id taken from the name.
    @ivar prefix: C{"qdhcp"}, C{"qrouter"} or C{"ovnmeta"}: which agent owns the namespace, and
        so which listen lines apply (neutron spec §1 hop 1, §8).
    """

    kind: str
    id: str
    prefix: str


PREFIXES: dict[str, str] = {"qdhcp": "network", "qrouter": "router", "ovnmeta": "network"}
"""Namespace prefixes Neutron uses for metadata proxies, and the kind of id each carries."""

_NAME = re.compile(r"(qdhcp|qrouter|ovnmeta)-([0-9A-Za-z][0-9A-Za-z._-]*)\Z")


def classify(name: str) -> NamespaceKind | None:
    """
    Parse a namespace name: C{qdhcp-<id>} and C{ovnmeta-<id>} are networks, C{qrouter-<id>} a router.

    Anything else (including an empty id, or one with characters no Neutron id has) is None.
    The result compares equal to a plain tuple such as C{("network", id, "qdhcp")}.
    """
    match = _NAME.match(name)
    if match is None:
        return None
    prefix, ident = match.group(1), match.group(2)
    return NamespaceKind(PREFIXES[prefix], ident, prefix)


def namespace_filter(wanted: str | Iterable[str]) -> Callable[[str], bool]:
    """
    Turn a C{[proxy] namespaces} value into a predicate on namespace names.

    @param wanted: C{"auto"} (every name L{classify} accepts), C{"none"} or C{""} (nothing), a
        string listing names separated by commas or white space, or an iterable of names.
        Listed names are taken as they are, whatever their prefix.
    """
    if isinstance(wanted, str):
        text = wanted.strip()
        if text == "auto":
            return lambda name: classify(name) is not None
        if text in ("", "none"):
            return lambda name: False
        names = frozenset(part for part in re.split(r"[\s,]+", text) if part)
    else:
        names = frozenset(wanted)
    return names.__contains__


_NSFS_DEV: int | None = None


def is_namespace_file(path: str) -> bool:
    """
    Whether C{path} is a namespace (a file of the kernel's nsfs), not yet or no longer a plain file.

    Every namespace file lives on the one nsfs superblock, so it shares its device number with
    C{/proc/thread-self/ns/net}.
    """
    global _NSFS_DEV
    if _NSFS_DEV is None:
        _NSFS_DEV = os.stat("/proc/thread-self/ns/net").st_dev
    try:
        return os.stat(path).st_dev == _NSFS_DEV
    except OSError:
        return False


def _ok(_: object) -> bool:
    return True


# inotify event bits (<sys/inotify.h>), so this module imports on platforms without inotify.
_IN_MOVED_FROM = 0x40
_IN_MOVED_TO = 0x80
_IN_CREATE = 0x100
_IN_DELETE = 0x200
_IN_DELETE_SELF = 0x400
_IN_MOVE_SELF = 0x800
_IN_UNMOUNT = 0x2000
_IN_Q_OVERFLOW = 0x4000
_IN_IGNORED = 0x8000
_WATCH_MASK = _IN_CREATE | _IN_DELETE | _IN_MOVED_TO | _IN_MOVED_FROM | _IN_DELETE_SELF | _IN_MOVE_SELF
_WATCH_GONE = _IN_DELETE_SELF | _IN_MOVE_SELF | _IN_UNMOUNT | _IN_IGNORED


@define(eq=False)
class NamespaceWatcher(Service):
    """
    Calls C{on_added(name)} once when a wanted namespace appears and C{on_removed(name)} once when it goes.

    Callbacks may return Deferreds; at most one callback per name runs at a time, and the watcher
    catches up with whatever happened meanwhile when it finishes.  An C{on_added} that fails is
    logged and the name is not recorded as added: the next periodic rescan tries again (events
    about other namespaces do not).  An C{on_removed} that fails is logged and the name counts
    as removed anyway, since its namespace is gone.  A name whose file now holds a different
    namespace (deleted and re-created between two looks) is removed, then added again.

    @ivar on_added: called with a namespace name once it is present and wanted.
    @ivar on_removed: called with a name previously added once it is gone.
    @ivar clock: schedules the rescans.
    @ivar directory: where namespaces are named (C{[proxy] netns_dir}, C{/run/netns}); it may not
        exist yet.
    @ivar wanted: what L{namespace_filter} accepts (C{"auto"}, C{"none"}, names).
    @ivar interval: seconds between full rescans (C{[proxy] rescan_interval}).
    @ivar use_inotify: watch the directory with inotify for prompt reaction (Linux only; falls
        back to rescans alone when unavailable).
    @ivar reactor: the reactor that reads inotify events; by default C{clock}, which must then be
        a real reactor.
    @ivar is_namespace: whether an entry is a namespace yet (L{is_namespace_file}); tests that
        simulate namespaces with plain files pass C{lambda path: True}.
    @ivar settle_interval: seconds between looks at a wanted entry that is not a namespace yet.
    @ivar settle_timeout: how long to keep looking that often before leaving it to the rescans.
    """

    _log = Logger()

    on_added: Callable[[str], Any]
    on_removed: Callable[[str], Any]
    clock: IReactorTime
    directory: str = "/run/netns"
    wanted: str | Collection[str] = "auto"
    interval: float = 5.0
    use_inotify: bool = True
    reactor: Any = None
    is_namespace: Callable[[str], bool] = is_namespace_file
    settle_interval: float = 0.1
    settle_timeout: float = 5.0

    _match: Callable[[str], bool] = field(init=False)
    _added: dict[str, int] = field(factory=dict, init=False)
    _present: dict[str, int] = field(factory=dict, init=False)
    _unsettled: dict[str, float] = field(factory=dict, init=False)
    _failed: dict[str, int] = field(factory=dict, init=False)
    _busy: dict[str, Deferred[None]] = field(factory=dict, init=False)
    _loop: LoopingCall | None = field(default=None, init=False)
    _soon: IDelayedCall | None = field(default=None, init=False)
    _notifier: Any = field(default=None, init=False)
    _watched: tuple[int, int] | None = field(default=None, init=False)
    _inotify_failed: bool = field(default=False, init=False)
    _watch_error: str | None = field(default=None, init=False)

    def __attrs_post_init__(self) -> None:
        self._match = namespace_filter(self.wanted)

    # --- Service ---------------------------------------------------------------------------

    def startService(self) -> None:
        """List the directory now, start watching it, and rescan every C{interval} seconds."""
        super().startService()
        self._loop = LoopingCall(self._scan, True)
        self._loop.clock = self.clock
        self._loop.start(self.interval, now=True).addErrback(
            lambda f: self._log.failure("namespace rescan loop for {directory} died", f, directory=self.directory)
        )

    def stopService(self) -> Deferred[None]:
        """
        Stop watching and rescanning.

        Namespaces stay recorded as added (their owner tears its listeners down itself).
        @return: a Deferred that fires once the callbacks still running have finished.
        """
        super().stopService()
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None
        self._cancel_soon()
        self._close_notifier()
        pending = list(self._busy.values())
        if not pending:
            return succeed(None)
        return gatherResults(pending, consumeErrors=True).addCallback(lambda _: None)

    # --- public ----------------------------------------------------------------------------

    def current(self) -> frozenset[str]:
        """The names added and not removed since (callbacks in flight not included)."""
        return frozenset(self._added)

    def discovered(self) -> frozenset[str]:
        """The wanted namespaces the last scan found in the directory (served or not)."""
        return frozenset(name for name in self._present if self._match(name))

    def rescan(self) -> None:
        """Reconcile with the directory now, retrying failed additions, as the periodic rescan does."""
        self._scan(True)

    # --- scanning --------------------------------------------------------------------------

    def _scan(self, periodic: bool = False) -> None:
        if not self.running:
            return
        self._cancel_soon()
        try:
            self._reconcile_all(periodic)
        except Exception:
            # Keep the loop alive: the next rescan starts from scratch.
            self._log.failure("rescanning namespaces in {directory} failed", directory=self.directory)

    def _reconcile_all(self, periodic: bool) -> None:
        if periodic:
            self._failed.clear()
        try:
            present = self._list()
        except OSError as e:
            # Unreadable (not absent): keep what is recorded rather than drop every listener.
            self._log.warn("cannot list namespaces in {directory}: {error}", directory=self.directory, error=str(e))
            return
        self._present = present
        # Removals first, so that what a gone namespace held is released before anything new starts.
        for name in sorted(self._added):
            self._reconcile(name)
        for name in sorted(set(present) - set(self._added)):
            self._reconcile(name)
        if self._settling():
            # Probably `ip netns add` between creating the file and mounting the namespace on it.
            self._schedule(self.settle_interval)

    def _list(self) -> dict[str, int]:
        """Wanted namespaces present in the directory, by name, with their identity (inode)."""
        try:
            st = os.stat(self.directory)
        except FileNotFoundError:
            self._close_notifier()
            self._unsettled.clear()
            return {}
        self._watch((st.st_dev, st.st_ino))  # before listing: nothing created after the listing is missed
        present: dict[str, int] = {}
        now = self.clock.seconds()
        seen: set[str] = set()
        with os.scandir(self.directory) as entries:
            for entry in entries:
                name = entry.name
                if not self._match(name):
                    continue
                seen.add(name)
                identity = self._identity(entry.path)
                if identity is None:
                    self._unsettled.setdefault(name, now)
                else:
                    self._unsettled.pop(name, None)
                    present[name] = identity
        for name in set(self._unsettled) - seen:
            del self._unsettled[name]
        return present

    def _settling(self) -> bool:
        """Whether a wanted entry became visible less than C{settle_timeout} ago and is no namespace yet."""
        now = self.clock.seconds()
        return any(now - first < self.settle_timeout for first in self._unsettled.values())

    def _identity(self, path: str) -> int | None:
        try:
            if not self.is_namespace(path):
                return None
            return os.stat(path).st_ino
        except OSError:
            return None

    def _schedule(self, delay: float) -> None:
        if self._soon is None and self.running:
            self._soon = self.clock.callLater(delay, self._soon_fired)

    def _soon_fired(self) -> None:
        self._soon = None
        self._scan()

    def _cancel_soon(self) -> None:
        if self._soon is not None:
            if self._soon.active():
                self._soon.cancel()
            self._soon = None

    # --- reconciling -----------------------------------------------------------------------

    def _reconcile(self, name: str) -> None:
        if name in self._busy or not self.running:
            return
        want = self._present.get(name)
        have = self._added.get(name)
        if have is not None and want != have:
            self._run(name, "remove", self.on_removed, have)
        elif have is None and want is not None:
            if self._failed.get(name) == want:
                return  # failed with this very namespace: wait for the periodic rescan
            self._run(name, "add", self.on_added, want)

    def _run(self, name: str, op: str, callback: Callable[[str], Any], identity: int) -> None:
        d: Deferred[None] = maybeDeferred(callback, name).addBoth(self._finished, name, op, identity)
        if not d.called:
            self._busy[name] = d

    def _finished(self, result: object, name: str, op: str, identity: int) -> None:
        self._busy.pop(name, None)
        if op == "add":
            if isinstance(result, Failure):
                self._failed[name] = identity
                self._log.failure(
                    "adding namespace {namespace} failed; retrying at the next rescan",
                    result,
                    namespace=name,
                    directory=self.directory,
                )
            else:
                self._failed.pop(name, None)
                self._added[name] = identity
                self._log.info("namespace {namespace} added", namespace=name, directory=self.directory)
        else:
            if isinstance(result, Failure):
                self._log.failure(
                    "removing namespace {namespace} failed; it counts as removed",
                    result,
                    namespace=name,
                    directory=self.directory,
                )
            if self._added.get(name) == identity:
                del self._added[name]
            self._log.info("namespace {namespace} removed", namespace=name, directory=self.directory)
        # Catch up with whatever happened while the callback ran.
        self._reconcile(name)

    # --- inotify ---------------------------------------------------------------------------

    def _watch(self, key: tuple[int, int]) -> None:
        if not self.use_inotify or self._inotify_failed:
            return
        if self._notifier is not None and self._watched == key:
            return
        self._close_notifier()
        reactor = self.reactor if self.reactor is not None else self.clock
        try:
            from twisted.internet.inotify import INotify
            from twisted.python.filepath import FilePath

            if not IReactorFDSet.providedBy(reactor):
                raise TypeError(f"{type(reactor).__name__} cannot read file descriptors")
            notifier = INotify(reactor=reactor)
        except Exception as e:
            self._inotify_failed = True
            self._log.warn(
                "inotify unavailable ({error}); rescanning {directory} every {interval} s",
                error=str(e),
                directory=self.directory,
                interval=self.interval,
            )
            return
        try:
            notifier.watch(FilePath(self.directory), mask=_WATCH_MASK, callbacks=[self._event])
            notifier.startReading()
        except Exception as e:
            _close(notifier)
            # Retried at each rescan (the directory may have gone in between); said once.
            if str(e) != self._watch_error:
                self._watch_error = str(e)
                self._log.warn("cannot watch {directory} with inotify: {error}", directory=self.directory, error=str(e))
            return
        self._notifier = notifier
        self._watched = key
        self._watch_error = None

    def _event(self, _ignored: object, path: object, mask: int) -> None:
        if mask & _WATCH_GONE:
            # The directory was deleted, moved or unmounted: rewatch whatever is there at the next look.
            self._close_notifier()
        self._schedule(0)

    def _close_notifier(self) -> None:
        notifier, self._notifier, self._watched = self._notifier, None, None
        if notifier is not None:
            _close(notifier)


def _close(notifier: Any) -> None:
    """Close an INotify, even one its reactor cannot stop reading."""
    try:
        notifier.loseConnection()
    except Exception:
        try:
            os.close(notifier.fileno())
        except OSError:
            pass
