# -*- test-case-name: tests.test_ovn_backend -*-
"""
L{IReplicatedLookup}: a lookup backend that answers from a local replica it keeps up to date
(C{ovn}: the Southbound database), so that it runs a service of its own beside the agent and
tells the agent's lookup cache of every change.
"""

from __future__ import annotations

from zope.interface import Attribute

from mdsvc.interfaces import IInstanceLookup


class IReplicatedLookup(IInstanceLookup):
    """
    A lookup on a live replica.  The agent adds its C{service} to its own and puts L{front}
    before its lookup cache.
    """

    service = Attribute("The IService that keeps the replica (started and stopped with the agent).")

    def front(cache, clock, keep):
        """
        What the agent calls instead of C{cache} (a caching lookup in front of this one, with
        C{forget}): an L{IInstanceLookup} that makes C{cache} forget the answers each change of
        the replica may change, and refuses while this backend would.

        @param keep: the longest the cache keeps an answer, in seconds.
        """
