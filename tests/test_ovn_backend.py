"""Tests for the ovn backend's wiring: C{build_lookup("ovn")} and the agent's service tree."""

from __future__ import annotations

import os
from typing import Any

from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from mdsvc.config import load_config
from mdsvc.lookup import build_lookup, check_lookup
from mdsvc.lookup.cache import CachingLookup
from mdsvc.lookup.ovn.front import ReplicaCacheFront
from mdsvc.lookup.ovn.lookup import OvnLookup
from mdsvc.lookup.ovn.service import ReplicaService
from mdsvc.lookup.replicated import IReplicatedLookup
from mdsvc.metered import MeteredLookup
from mdsvc.tap import build_agent
from tests.test_tap import services


class BackendTests(SynchronousTestCase):
    """lookup = ovn, built."""

    def config(self, extra: str = "") -> Any:
        state = os.path.abspath(self.mktemp())
        path = self.mktemp()
        with open(path, "w") as f:
            f.write(f"[DEFAULT]\nstate_path = {state}\n[mdsvc]\nlookup = ovn\n[ovn]\novn_sb_connection = unix:/run/a.sock,unix:/run/b.sock\n{extra}")
        return load_config(path)

    def test_build_lookup(self) -> None:
        """build_lookup("ovn") gives an OvnLookup with its service, on the configured members; check_lookup knows it."""
        config = self.config("[mdsvc]\novn_replica_max_age = 45\n")
        backend = build_lookup("ovn", None, MemoryReactorClock(), None, ovn_config=config.agent.ovn)
        self.assertIsInstance(backend, OvnLookup)
        self.assertTrue(verifyObject(IReplicatedLookup, backend))
        assert isinstance(backend, OvnLookup)
        self.assertIsInstance(backend.service, ReplicaService)
        self.assertEqual((backend.health.remotes, backend.health.max_age), (("unix:/run/a.sock", "unix:/run/b.sock"), 45.0))
        self.assertEqual(backend.service.status_path, config.agent.ovn.status_path)
        check_lookup("ovn")
        e = self.assertRaises(ValueError, build_lookup, "ovn", None, MemoryReactorClock(), None)
        self.assertEqual(str(e), "lookup = ovn needs the [ovn] options")

    def test_agent_tree(self) -> None:
        """
        The agent runs the replica's service, and looks up through the front, the cache, then the
        replica (timed by the metrics' wrapper, under the cache).
        """
        config = self.config("[cache]\nexpiration_time = 10\nnegative_expiration_time = 3\n")
        parts: dict[str, Any] = {}
        top = build_agent(config, MemoryReactorClock(), parts)
        self.assertEqual(len([s for s in services(top) if isinstance(s, ReplicaService)]), 1)
        front = parts["agent"].lookup
        self.assertIsInstance(front, ReplicaCacheFront)
        self.assertEqual(front.keep, 10)
        self.assertIsInstance(front.cache, CachingLookup)
        self.assertIsInstance(front.cache.inner, MeteredLookup)
        self.assertIsInstance(front.cache.inner.inner, OvnLookup)
        self.assertEqual(front.cache.inner.inner.replica.listeners, [front.changed])

    def test_agent_without_cache(self) -> None:
        """[cache] enabled = false: the agent asks the replica itself (nothing to forget), timed."""
        parts: dict[str, Any] = {}
        top = build_agent(self.config("[cache]\nenabled = false\n"), MemoryReactorClock(), parts)
        self.assertIsInstance(parts["agent"].lookup, MeteredLookup)
        self.assertIsInstance(parts["agent"].lookup.inner, OvnLookup)
        self.assertEqual(len([s for s in services(top) if isinstance(s, ReplicaService)]), 1)

    def test_replica_outlives_drain(self) -> None:
        """
        In a node (L{mdsvc.tap.makeService}) the replica's service is one of the backends the
        drain stops after the requests in flight are answered, not with the agent's socket.
        """
        from mdsvc.drain import Drain
        from mdsvc.tap import Options, makeService

        config = self.config()
        options = Options()
        options["role"], options["parsed"] = "agent", config
        top = makeService(options, reactor=MemoryReactorClock())
        drain = next(s for s in top if isinstance(s, Drain))
        self.assertEqual([type(s) for s in drain], [ReplicaService])
