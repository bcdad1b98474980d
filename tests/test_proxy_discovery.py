"""
Namespace discovery: name parsing, filters, and the watcher driven by rescans (plain files in a
temporary directory stand in for namespaces, time is a L{Clock}) and by real inotify events.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock, deferLater
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import capturedLogs
from twisted.trial.unittest import SynchronousTestCase, TestCase

from mdsvc.proxy.discovery import NamespaceKind, NamespaceWatcher, classify, is_namespace_file, namespace_filter

NET = "3f2b6a9e-1c1d-4a55-9f3e-2b9d1c0a7e11"
ROUTER = "9d1c0a7e-2b9d-4a55-9f3e-3f2b6a9e1c1d"


class ClassifyTests(SynchronousTestCase):
    """classify() and namespace_filter()."""

    def test_qdhcp(self) -> None:
        """qdhcp-<id> is a network namespace of the DHCP agent."""
        self.assertEqual(classify(f"qdhcp-{NET}"), ("network", NET, "qdhcp"))

    def test_qrouter(self) -> None:
        """qrouter-<id> is a router namespace of the L3 agent."""
        self.assertEqual(classify(f"qrouter-{ROUTER}"), ("router", ROUTER, "qrouter"))

    def test_ovnmeta(self) -> None:
        """ovnmeta-<id> is a network namespace of the OVN metadata agent."""
        self.assertEqual(classify(f"ovnmeta-{NET}"), ("network", NET, "ovnmeta"))

    def test_named_fields(self) -> None:
        """The result is a NamespaceKind with named fields."""
        kind = classify(f"qrouter-{ROUTER}")
        assert kind is not None
        self.assertIsInstance(kind, NamespaceKind)
        self.assertEqual((kind.kind, kind.id, kind.prefix), ("router", ROUTER, "qrouter"))

    def test_other_names(self) -> None:
        """Other namespaces, empty ids, near-miss prefixes and odd characters are not classified."""
        for name in ("", "qdhcp", "qdhcp-", "qdhcp_x", "snat-" + ROUTER, "fip-" + NET, "Qdhcp-x", "xqdhcp-1",
                     "qdhcp-a b", "qdhcp-a\nb", "qrouter-.x", "ovnmeta-", "cni-1234"):
            self.assertIsNone(classify(name), name)

    def test_filter_auto(self) -> None:
        """'auto' accepts exactly what classify() accepts."""
        match = namespace_filter("auto")
        self.assertTrue(match(f"qdhcp-{NET}"))
        self.assertTrue(match(f"ovnmeta-{NET}"))
        self.assertTrue(match(f"qrouter-{ROUTER}"))
        self.assertFalse(match("snat-x"))

    def test_filter_none(self) -> None:
        """'none' and an empty value accept nothing."""
        for spec in ("none", "", "  "):
            self.assertFalse(namespace_filter(spec)(f"qdhcp-{NET}"))

    def test_filter_names(self) -> None:
        """A list (string with commas or spaces, or an iterable) accepts those names only, whatever their prefix."""
        for spec in ("lab-1, qdhcp-a", "lab-1 qdhcp-a", ["lab-1", "qdhcp-a"]):
            match = namespace_filter(spec)
            self.assertTrue(match("lab-1"))
            self.assertTrue(match("qdhcp-a"))
            self.assertFalse(match("qdhcp-b"))


class WatcherTests(SynchronousTestCase):
    """NamespaceWatcher driven by a Clock over a temporary directory, without inotify."""

    def setUp(self) -> None:
        """An empty directory, a Clock, callbacks that record what they are called with."""
        self.dir = os.path.abspath(self.mktemp())
        os.makedirs(self.dir)
        self.clock = Clock()
        self.events: list[tuple[str, str]] = []
        self.add_result: Any = None
        self.remove_result: Any = None

    def on_added(self, name: str) -> Any:
        """Record the addition; answer with add_result (a value, or a function of the name)."""
        self.events.append(("added", name))
        return self.add_result(name) if callable(self.add_result) else self.add_result

    def on_removed(self, name: str) -> Any:
        """Record the removal; answer with remove_result (a value, or a function of the name)."""
        self.events.append(("removed", name))
        return self.remove_result(name) if callable(self.remove_result) else self.remove_result

    def watcher(self, **kw: Any) -> NamespaceWatcher:
        """A watcher on the directory without inotify, taking plain files for namespaces."""
        options: dict[str, Any] = dict(directory=self.dir, interval=5.0, use_inotify=False, is_namespace=lambda p: True)
        options.update(kw)
        w = NamespaceWatcher(self.on_added, self.on_removed, self.clock, **options)
        self.addCleanup(lambda: w.running and w.stopService())
        return w

    def touch(self, name: str) -> None:
        """Create a plain file standing for a namespace."""
        with open(os.path.join(self.dir, name), "w"):
            pass

    def rm(self, name: str) -> None:
        """Delete a file made by touch()."""
        os.unlink(os.path.join(self.dir, name))

    def test_initial_listing(self) -> None:
        """Namespaces present at start are added at once, in name order; others are ignored."""
        self.touch(f"qrouter-{ROUTER}")
        self.touch(f"qdhcp-{NET}")
        self.touch("snat-x")
        w = self.watcher()
        w.startService()
        self.assertEqual(self.events, [("added", f"qdhcp-{NET}"), ("added", f"qrouter-{ROUTER}")])
        self.assertEqual(w.current(), frozenset({f"qdhcp-{NET}", f"qrouter-{ROUTER}"}))

    def test_rescan_adds_and_removes(self) -> None:
        """Without inotify, the periodic rescan notices new and removed namespaces, each once."""
        w = self.watcher()
        w.startService()
        self.touch("qdhcp-a")
        self.clock.advance(4.9)
        self.assertEqual(self.events, [])
        self.clock.advance(0.1)
        self.assertEqual(self.events, [("added", "qdhcp-a")])
        self.clock.advance(5)
        self.clock.advance(5)
        self.assertEqual(self.events, [("added", "qdhcp-a")])
        self.rm("qdhcp-a")
        self.clock.advance(5)
        self.clock.advance(5)
        self.assertEqual(self.events, [("added", "qdhcp-a"), ("removed", "qdhcp-a")])
        self.assertEqual(w.current(), frozenset())

    def test_rescan_now(self) -> None:
        """rescan() reconciles at once, without waiting for the interval."""
        w = self.watcher()
        w.startService()
        self.touch("ovnmeta-a")
        w.rescan()
        self.assertEqual(self.events, [("added", "ovnmeta-a")])

    def test_explicit_names(self) -> None:
        """With a list of names, only those are followed, whatever their prefix."""
        for name in ("qdhcp-a", "qdhcp-b", "lab-1"):
            self.touch(name)
        w = self.watcher(wanted=["qdhcp-b", "lab-1", "qdhcp-later"])
        w.startService()
        self.assertEqual(self.events, [("added", "lab-1"), ("added", "qdhcp-b")])
        self.touch("qdhcp-later")
        self.clock.advance(5)
        self.assertEqual(self.events[-1], ("added", "qdhcp-later"))

    def test_filter_none(self) -> None:
        """'none' follows nothing."""
        self.touch("qdhcp-a")
        self.watcher(wanted="none").startService()
        self.assertEqual(self.events, [])

    def test_directory_appears_later(self) -> None:
        """A directory missing at start is not an error; its namespaces are found once it exists."""
        os.rmdir(self.dir)
        w = self.watcher()
        with capturedLogs() as logs:
            w.startService()
            self.clock.advance(5)
        self.assertEqual([e for e in logs if e["log_level"].name in ("warn", "error", "critical")], [])
        os.makedirs(self.dir)
        self.touch("qdhcp-a")
        self.clock.advance(5)
        self.assertEqual(self.events, [("added", "qdhcp-a")])

    def test_directory_removed(self) -> None:
        """When the directory goes, every namespace it named is removed."""
        self.touch("qdhcp-a")
        w = self.watcher()
        w.startService()
        shutil.rmtree(self.dir)
        self.clock.advance(5)
        self.assertEqual(self.events, [("added", "qdhcp-a"), ("removed", "qdhcp-a")])

    def test_failing_add_retried_on_rescan(self) -> None:
        """An on_added that fails is logged with the namespace name, not recorded, and retried at the next rescan."""
        self.touch("qdhcp-a")
        self.add_result = lambda name: fail(RuntimeError("bind failed"))
        w = self.watcher()
        with capturedLogs() as logs:
            w.startService()
        self.assertEqual(w.current(), frozenset())
        failures = [e for e in logs if "log_failure" in e]
        self.assertEqual(len(failures), 1)
        self.assertEqual(failures[0]["namespace"], "qdhcp-a")
        self.assertIsInstance(failures[0]["log_failure"].value, RuntimeError)
        self.flushLoggedErrors(RuntimeError)
        self.add_result = None
        self.clock.advance(5)
        self.assertEqual(self.events, [("added", "qdhcp-a"), ("added", "qdhcp-a")])
        self.assertEqual(w.current(), frozenset({"qdhcp-a"}))

    def test_synchronous_exception_retried(self) -> None:
        """A callback raising synchronously is handled like a failed Deferred."""
        self.touch("qdhcp-a")

        def boom(name: str) -> None:
            """Fail synchronously."""
            raise OSError("no")

        self.add_result = boom
        w = self.watcher()
        with capturedLogs():
            w.startService()
        self.assertEqual(w.current(), frozenset())
        self.flushLoggedErrors(OSError)
        self.add_result = None
        self.clock.advance(5)
        self.assertEqual(w.current(), frozenset({"qdhcp-a"}))

    def test_failed_add_not_retried_on_other_events(self) -> None:
        """A failed name waits for the periodic rescan; quick looks caused by other names do not retry it."""
        self.touch("qdhcp-a")
        self.add_result = lambda name: fail(RuntimeError("bind failed")) if name == "qdhcp-a" else None
        w = self.watcher()
        with capturedLogs():
            w.startService()
            w._scan()  # what an inotify event about another name triggers
        self.flushLoggedErrors(RuntimeError)
        self.assertEqual(self.events, [("added", "qdhcp-a")])

    def test_deferred_add(self) -> None:
        """A Deferred-returning on_added records the name only when it fires; no second call meanwhile."""
        pending: list[Deferred[None]] = []

        def slow(name: str) -> Deferred[None]:
            """A Deferred the test fires later."""
            d: Deferred[None] = Deferred()
            pending.append(d)
            return d

        self.add_result = slow
        self.touch("qdhcp-a")
        w = self.watcher()
        w.startService()
        self.clock.advance(5)
        self.clock.advance(5)
        self.assertEqual(self.events, [("added", "qdhcp-a")])
        self.assertEqual(w.current(), frozenset())
        pending[0].callback(None)
        self.assertEqual(w.current(), frozenset({"qdhcp-a"}))

    def test_removed_while_adding(self) -> None:
        """A namespace that goes while on_added runs is removed as soon as on_added finishes."""
        pending: list[Deferred[None]] = []
        self.add_result = lambda name: pending.append(Deferred()) or pending[-1]
        self.touch("qdhcp-a")
        w = self.watcher()
        w.startService()
        self.rm("qdhcp-a")
        self.clock.advance(5)
        self.assertEqual(self.events, [("added", "qdhcp-a")])
        pending[0].callback(None)
        self.assertEqual(self.events, [("added", "qdhcp-a"), ("removed", "qdhcp-a")])
        self.assertEqual(w.current(), frozenset())

    def test_deferred_remove(self) -> None:
        """A Deferred-returning on_removed: the name stays current until it fires, and is removed once."""
        self.touch("qdhcp-a")
        w = self.watcher()
        w.startService()
        d: Deferred[None] = Deferred()
        self.remove_result = d
        self.rm("qdhcp-a")
        self.clock.advance(5)
        self.clock.advance(5)
        self.assertEqual(self.events, [("added", "qdhcp-a"), ("removed", "qdhcp-a")])
        self.assertEqual(w.current(), frozenset({"qdhcp-a"}))
        d.callback(None)
        self.assertEqual(w.current(), frozenset())

    def test_failing_remove(self) -> None:
        """A failing on_removed is logged and the name counts as removed; it is not called again."""
        self.touch("qdhcp-a")
        w = self.watcher()
        w.startService()
        self.remove_result = lambda name: fail(RuntimeError("stop failed"))
        self.rm("qdhcp-a")
        with capturedLogs() as logs:
            self.clock.advance(5)
            self.clock.advance(5)
        self.flushLoggedErrors(RuntimeError)
        self.assertEqual([e["namespace"] for e in logs if "log_failure" in e], ["qdhcp-a"])
        self.assertEqual(self.events, [("added", "qdhcp-a"), ("removed", "qdhcp-a")])
        self.assertEqual(w.current(), frozenset())

    def test_recreated_namespace(self) -> None:
        """A name whose file now holds another namespace (another inode) is removed, then added again."""
        self.touch("qdhcp-a")
        w = self.watcher()
        w.startService()
        keep = os.path.join(self.dir, "..", "keep")
        os.rename(os.path.join(self.dir, "qdhcp-a"), keep)  # keeps the inode busy, so the next one differs
        self.touch("qdhcp-a")
        self.clock.advance(5)
        self.assertEqual(self.events, [("added", "qdhcp-a"), ("removed", "qdhcp-a"), ("added", "qdhcp-a")])
        self.assertEqual(w.current(), frozenset({"qdhcp-a"}))

    def test_not_yet_a_namespace(self) -> None:
        """An entry that is no namespace yet is looked at every settle_interval, then left to the rescans."""
        ready: set[str] = set()
        w = self.watcher(is_namespace=lambda path: os.path.basename(path) in ready, settle_interval=0.1,
                         settle_timeout=1.0)
        w.startService()
        self.touch("qdhcp-a")
        w._scan()  # an inotify IN_CREATE
        self.assertEqual(self.events, [])
        ready.add("qdhcp-a")
        self.clock.advance(0.1)
        self.assertEqual(self.events, [("added", "qdhcp-a")])
        self.touch("qdhcp-stale")
        w._scan()
        self.clock.pump([0.1] * 20)
        self.assertEqual([c for c in self.clock.getDelayedCalls() if c.getTime() - self.clock.seconds() < 1], [])
        ready.add("qdhcp-stale")
        self.clock.advance(5)
        self.assertEqual(self.events[-1], ("added", "qdhcp-stale"))

    def test_stop(self) -> None:
        """stopService stops the rescans, keeps the names, and waits for callbacks still running."""
        d: Deferred[None] = Deferred()
        self.add_result = lambda name: d if name == "qdhcp-b" else None
        self.touch("qdhcp-a")
        self.touch("qdhcp-b")
        w = self.watcher()
        w.startService()
        stopped = w.stopService()
        self.assertNoResult(stopped)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        d.callback(None)
        self.assertIsNone(self.successResultOf(stopped))
        self.rm("qdhcp-a")
        self.clock.advance(50)
        self.assertEqual(self.events, [("added", "qdhcp-a"), ("added", "qdhcp-b")])
        self.assertEqual(w.current(), frozenset({"qdhcp-a", "qdhcp-b"}))

    def test_restart(self) -> None:
        """A stopped watcher started again reconciles what happened meanwhile, removals first."""
        self.touch("qdhcp-a")
        w = self.watcher()
        w.startService()
        self.successResultOf(w.stopService())
        self.rm("qdhcp-a")
        self.touch("qdhcp-b")
        w.startService()
        self.assertEqual(self.events, [("added", "qdhcp-a"), ("removed", "qdhcp-a"), ("added", "qdhcp-b")])

    def test_unlistable_directory_keeps_names(self) -> None:
        """A directory that cannot be read (not absent) is a warning; recorded namespaces stay."""
        self.touch("qdhcp-a")
        w = self.watcher(directory=self.dir)
        w.startService()
        os.rename(self.dir, self.dir + ".x")
        with open(self.dir, "w"):  # a file where the directory was: listing fails with ENOTDIR
            pass
        with capturedLogs() as logs:
            self.clock.advance(5)
        self.assertEqual(w.current(), frozenset({"qdhcp-a"}))
        self.assertEqual([e["directory"] for e in logs if e["log_level"].name == "warn"], [self.dir])

    def test_is_namespace_file(self) -> None:
        """Plain files are not namespaces; /proc/self/ns/net is."""
        self.touch("qdhcp-a")
        self.assertFalse(is_namespace_file(os.path.join(self.dir, "qdhcp-a")))
        self.assertFalse(is_namespace_file(os.path.join(self.dir, "missing")))
        self.assertTrue(is_namespace_file("/proc/self/ns/net"))


def _wait_for(condition: Any, timeout: float = 3.0, step: float = 0.02) -> Deferred[float]:
    """Fire with the seconds waited once condition() is true; fail after timeout."""
    start = reactor.seconds()

    def poll() -> Any:
        """Check, or wait a step and check again."""
        if condition():
            return succeed(reactor.seconds() - start)
        if reactor.seconds() - start > timeout:
            raise AssertionError(f"condition not met within {timeout} s")
        return deferLater(reactor, step, lambda: None).addCallback(lambda _: poll())

    return poll()


class InotifyWatcherTests(TestCase):
    """NamespaceWatcher on the real reactor, reacting to inotify events well before the rescan."""

    def setUp(self) -> None:
        """Callbacks record into self.events."""
        self.events: list[tuple[str, str]] = []

    def start(self, directory: str, **kw: Any) -> NamespaceWatcher:
        """A running watcher with inotify on the real reactor, rescanning only hourly; stopped after the test."""
        w = NamespaceWatcher(lambda n: self.events.append(("added", n)), lambda n: self.events.append(("removed", n)),
                             reactor, directory=directory, interval=3600.0, **kw)
        w.startService()
        self.addCleanup(w.stopService)
        return w

    async def test_temp_directory(self) -> None:
        """Files created and deleted in a watched directory are reported within a second."""
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        w = self.start(directory, is_namespace=lambda p: True)
        self.assertIsNotNone(w._notifier)
        open(os.path.join(directory, "qdhcp-a"), "w").close()
        waited = await _wait_for(lambda: w.current() == {"qdhcp-a"})
        self.assertLess(waited, 1.0)
        os.rename(os.path.join(directory, "qdhcp-a"), os.path.join(directory, "qrouter-b"))
        await _wait_for(lambda: w.current() == {"qrouter-b"}, timeout=1.0)
        os.unlink(os.path.join(directory, "qrouter-b"))
        await _wait_for(lambda: w.current() == frozenset(), timeout=1.0)
        self.assertEqual(self.events, [("added", "qdhcp-a"), ("removed", "qdhcp-a"), ("added", "qrouter-b"),
                                       ("removed", "qrouter-b")])

    async def test_directory_recreated(self) -> None:
        """After the watched directory is deleted and made again, the next rescan watches the new one."""
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        w = self.start(directory, is_namespace=lambda p: True)
        os.rmdir(directory)
        await _wait_for(lambda: w._notifier is None, timeout=1.0)
        os.makedirs(directory)
        w.rescan()
        self.assertIsNotNone(w._notifier)
        open(os.path.join(directory, "qdhcp-a"), "w").close()
        await _wait_for(lambda: w.current() == {"qdhcp-a"}, timeout=1.0)

    async def test_real_namespace(self) -> None:
        """`ip netns add` in /run/netns is seen within a second, once the namespace is mounted; `del` too."""
        if os.geteuid() != 0 or shutil.which("ip") is None:
            self.skipTest("needs root and ip netns")
        name = f"mdsvc-t-{uuid.uuid4().hex[:8]}"
        subprocess.run(["ip", "netns", "add", "mdsvc-t-probe-" + name[-8:]], check=True)  # /run/netns exists
        subprocess.run(["ip", "netns", "del", "mdsvc-t-probe-" + name[-8:]], check=True)
        w = self.start("/run/netns", wanted=[name])
        self.addCleanup(subprocess.run, ["ip", "netns", "del", name], capture_output=True)
        subprocess.run(["ip", "netns", "add", name], check=True)
        waited = await _wait_for(lambda: w.current() == {name})
        self.assertLess(waited, 1.0)
        subprocess.run(["ip", "netns", "del", name], check=True)
        await _wait_for(lambda: w.current() == frozenset(), timeout=1.0)
        self.assertEqual(self.events, [("added", name), ("removed", name)])


class InotifyFallbackTests(SynchronousTestCase):
    """When inotify cannot be used, the watcher says so once and relies on rescans."""

    def setUp(self) -> None:
        """A directory, a Clock, and a record of additions."""
        self.directory = os.path.abspath(self.mktemp())
        os.makedirs(self.directory)
        self.clock: Clock = Clock()
        self.added: list[str] = []

    def run_watcher(self, **kw: Any) -> list[Any]:
        """Start a watcher, add a namespace, rescan five times; the warnings logged."""
        w = NamespaceWatcher(self.added.append, lambda n: None, self.clock, directory=self.directory, interval=1.0,
                             is_namespace=lambda p: True, **kw)
        with capturedLogs() as logs:
            w.startService()
            open(os.path.join(self.directory, "qdhcp-a"), "w").close()
            self.clock.pump([1.0] * 5)
        self.addCleanup(w.stopService)
        return [e for e in logs if e["log_level"].name == "warn"]

    def test_reactor_without_fd_support(self) -> None:
        """A clock that is not a reactor (use_inotify left on): one warning, additions found by rescans."""
        warnings = self.run_watcher()
        self.assertEqual(self.added, ["qdhcp-a"])
        self.assertEqual([e["directory"] for e in warnings], [self.directory])

    def test_watch_fails(self) -> None:
        """A watch the kernel refuses is one warning, retried quietly at each rescan; rescans still work."""
        import twisted.internet.inotify as inotify

        def refuse(*a: Any, **kw: Any) -> None:
            """Fail as INotify.watch does."""
            raise inotify.INotifyError("Failed to add watch")

        self.patch(inotify.INotify, "watch", refuse)
        self.clock = MemoryReactorClock()
        warnings = self.run_watcher()
        self.assertEqual(self.added, ["qdhcp-a"])
        self.assertEqual([e["error"] for e in warnings], ["Failed to add watch"])
        self.clock.advance(0)  # the closed notifiers' connectionLost
        self.assertEqual(self.clock.readers, set())
