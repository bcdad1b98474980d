# -*- test-case-name: tests.test_ovn_lookup -*-
"""
L{OvnLookup}: the C{ovn} backend's answer, read from the replica in memory (no round trip).

The match is Neutron's OVN metadata agent's (neutron spec §2.2): the port bindings of the network
(its datapath's C{external_ids:name} is C{neutron-<network id>}) that a chassis has bound, whose
first C{mac} entry holds the guest's address, or its MAC for an IPv6 link-local guest; of those,
the ports of Nova's servers (device owner C{compute:*}) count, and exactly one must be left
(L{mdsvc.lookup._match.choose}).  The owner rule only drops ports whose device is no instance
(metadata, router and DHCP ports), for which Nova would answer 404 anyway.  OVN serves networks
only (its haproxy sends C{X-OVN-Network-ID}, never a router): a router lookup finds nothing.
"""

from __future__ import annotations

from typing import Any

from attrs import define
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from zope.interface import implementer

from mdsvc.interfaces import LookupUnavailable
from mdsvc.lookup._match import choose
from mdsvc.lookup.ovn.front import ReplicaCacheFront
from mdsvc.lookup.ovn.health import ReplicaHealth
from mdsvc.lookup.ovn.replica import SouthboundReplica
from mdsvc.lookup.replicated import IReplicatedLookup
from mdsvc.readiness import IHealthCheck, NotReady


@implementer(IReplicatedLookup, IHealthCheck)
@define(eq=False)
class OvnLookup:
    """
    L{IReplicatedLookup} over a L{SouthboundReplica}, answering while its L{ReplicaHealth} allows
    (which is also what C{/readyz} and the doctor are told: L{IHealthCheck}).

    @ivar service: what keeps the replica (L{mdsvc.lookup.ovn.service.ReplicaService}).
    """

    replica: SouthboundReplica
    health: ReplicaHealth
    service: Any = None
    name = "ovn"
    _log = Logger()

    def front(self, cache: Any, clock: IReactorTime, keep: float) -> ReplicaCacheFront:
        """See L{IReplicatedLookup.front}."""
        front = ReplicaCacheFront(cache, self.health, clock, keep)
        self.replica.listeners.append(front.changed)
        return front

    def check(self) -> Deferred[None]:
        """See L{IHealthCheck.check}: ready while the replica may answer (no probe, nothing logged)."""
        refusal = self.health.refusal()
        return fail(NotReady(refusal)) if refusal is not None else succeed(None)

    def lookup(
        self, ip: str, network_id: str | None = None, router_id: str | None = None, mac: str | None = None
    ) -> Deferred[tuple[str, str | None] | None]:
        """
        See L{IInstanceLookup.lookup}; fails with L{LookupUnavailable} before the first sync and
        when the replica is older than its bound.
        """
        refusal = self.health.refusal()
        if refusal is not None:
            return fail(LookupUnavailable(refusal))
        if network_id is None:
            if router_id is None:
                return fail(TypeError("Either one of parameter network_id or router_id must be passed to lookup."))
            self._log.warn(
                "Router {router_id} asked of the ovn lookup: OVN serves networks (ovnmeta- namespaces), no instance "
                "can be found behind a router", router_id=router_id,
            )
            return succeed(None)
        ports = [p for p in self.replica.ports(network_id, ip, mac.lower() if mac is not None else None) if p.is_instance]
        if len(ports) == 1:  # the usual answer, as choose would give it
            return succeed((ports[0].device_id, ports[0].project_id))
        return succeed(choose([(p.device_id, p.project_id) for p in ports], self._log, ip, network_id, router_id, mac))
