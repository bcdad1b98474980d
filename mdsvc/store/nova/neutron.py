# -*- test-case-name: tests.test_nova_neutron -*-
"""
What Nova's metadata API asks Neutron, asked the same way (with nova.conf's C{[neutron]}
keystoneauth options, through L{NeutronLookup}'s client):

  - an instance's security groups (C{security_group_api.get_instance_security_groups}): its
    ports by C{device_id}, then their groups by id; a group without a name shows as its id;
  - the instance holding a fixed IP, in remote-address mode (C{get_fixed_ip_by_address}): the
    ports with that IP and a device;
  - the ports of a metadata provider (C{_get_instance_id_from_lb}): the networks of the subnets
    it serves, then the ports holding the IP in them, 160 networks per query.

Neutron unreachable or answering nonsense is L{StoreUnavailable}, as a database would be.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from attrs import define

from mdsvc.interfaces import LookupUnavailable, StoreUnavailable
from mdsvc.lookup.neutron import NeutronLookup, query_string

MAX_SEARCH_IDS = 150
"""Security group ids per query (Nova's C{MAX_SEARCH_IDS})."""

MAX_QUERY_NETWORKS = 160
"""Network ids per port query in provider mode (Nova's C{MAX_QUERY_NETWORKS})."""


def _chunks(items: list[str], size: int) -> Iterable[list[str]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


@define
class NovaNeutron:
    """Nova's questions to Neutron, over an authenticated L{NeutronLookup} client."""

    client: NeutronLookup

    async def _list(self, collection: str, pairs: list[tuple[str, str]]) -> list[dict[str, Any]]:
        try:
            return await self.client.list_resources(collection, query_string(pairs))
        except LookupUnavailable as e:
            raise StoreUnavailable(str(e)) from None

    async def security_groups(self, uuid: str) -> dict[str, list[str]]:
        """
        The security group names of each port of instance C{uuid}, by port id, each port's in its
        own order (groups Neutron does not show are left out, as Nova leaves them out).
        """
        ports = await self._list("ports", [("device_id", uuid), ("fields", "security_groups"), ("fields", "device_id"),
                                           ("fields", "id")])
        wanted = list(dict.fromkeys(g for p in ports for g in (p.get("security_groups") or []) if isinstance(g, str)))
        names: dict[str, str] = {}
        for ids in _chunks(wanted, MAX_SEARCH_IDS):
            found = await self._list("security-groups", [("id", i) for i in ids] + [("fields", "id"), ("fields", "name")])
            for group in found:
                if isinstance(group.get("id"), str):
                    names[group["id"]] = group.get("name") or group["id"]
        return {
            str(port.get("id")): [names[g] for g in (port.get("security_groups") or []) if g in names]
            for port in ports if port.get("device_id") == uuid
        }

    async def devices_with_address(self, ip: str) -> list[str]:
        """The devices (instances) of the ports that hold C{ip}, in any network."""
        ports = await self._list("ports", [("fixed_ips", f"ip_address={ip}"), ("fields", "device_id")])
        return [p["device_id"] for p in ports if isinstance(p.get("device_id"), str) and p["device_id"]]

    async def provider_ports(self, provider: str, ip: str) -> list[tuple[str, str | None]] | None:
        """
        C{(device, project)} of the ports holding C{ip} in the networks of the subnets the
        metadata provider C{provider} serves; None when it serves none.
        """
        subnets = await self._list("subnets", [("advanced_service_providers", provider), ("fields", "network_id")])
        networks = list(dict.fromkeys(s["network_id"] for s in subnets if isinstance(s.get("network_id"), str)))
        if not networks:
            return None
        found: list[tuple[str, str | None]] = []
        for batch in _chunks(networks, MAX_QUERY_NETWORKS):
            pairs = [("fixed_ips", f"ip_address={ip}")] + [("network_id", n) for n in batch]
            for port in await self._list("ports", pairs + [("fields", "device_id"), ("fields", "tenant_id")]):
                tenant = port.get("tenant_id")
                found.append((str(port.get("device_id") or ""), tenant if isinstance(tenant, str) else None))
        return found
