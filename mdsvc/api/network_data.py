# -*- test-case-name: tests.test_api_render -*-
"""C{network_data.json} of one instance, by Nova's algorithm (spec §2.4.5)."""

from __future__ import annotations

import ipaddress
from typing import Any

from mdsvc.model import FixedIp, Instance, Subnet

_KNOWN_VIF_TYPES = {"bridge", "dvs", "hw_veb", "hyperv", "ovs", "tap", "vhostuser", "vif"}


def _netmask(cidr: str | None, version: int) -> str:
    if cidr is None:
        return "255.255.255.255" if version == 4 else "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"
    return str(ipaddress.ip_network(cidr, strict=False).netmask)


def _routes(subnet: Subnet) -> list[dict[str, str]]:
    routes = []
    if subnet.gateway:
        default = "0.0.0.0" if subnet.ip_version == 4 else "::"
        routes.append({"network": default, "netmask": default, "gateway": subnet.gateway})
    for destination, nexthop in subnet.routes:
        net = ipaddress.ip_network(destination, strict=False)
        routes.append({"network": str(net.network_address), "netmask": str(net.netmask), "gateway": nexthop})
    return routes


def network_data(instance: Instance) -> dict[str, Any]:
    """The C{network_data.json} document: C{{}} without networks, else links, networks, services."""
    if not instance.nics:
        return {}
    links: list[dict[str, Any]] = []
    networks: list[dict[str, Any]] = []
    services: list[dict[str, str]] = []
    index = 0
    for nic in instance.nics:
        subnets: dict[Any, tuple[Subnet, FixedIp]] = {}
        for fip in nic.fixed_ips:
            subnets.setdefault(fip.subnet.id or fip.subnet, (fip.subnet, fip))
        if not subnets:
            continue
        v4 = next((pair for pair in subnets.values() if pair[0].ip_version == 4), None)
        v6 = next((pair for pair in subnets.values() if pair[0].ip_version == 6), None)
        link_id = nic.devname or f"interface{index}"
        index += 1
        has_dhcp_server = any(s.dhcp_server for s, _ in subnets.values())
        links.append({
            "id": link_id,
            "vif_id": nic.port_id,
            "type": nic.vif_type if nic.vif_type in _KNOWN_VIF_TYPES else "phy",
            "mtu": None if has_dhcp_server else nic.network.mtu,
            "ethernet_mac_address": nic.mac,
        })
        for pair in (v4, v6):
            if pair is None:
                continue
            subnet, fip = pair
            dns = [{"type": "dns", "address": a} for a in subnet.dns]
            for entry in dns:
                if entry not in services:
                    services.append(entry)
            net_id = f"network{len(networks)}"
            family = "ipv4" if subnet.ip_version == 4 else "ipv6"
            if subnet.ipv6_address_mode:
                kind = f"ipv6_{subnet.ipv6_address_mode}"
            elif subnet.dhcp_server or subnet.enable_dhcp:
                networks.append({"id": net_id, "type": f"{family}_dhcp", "link": link_id, "network_id": nic.network.id})
                continue
            else:
                kind = family
            networks.append({
                "id": net_id,
                "type": kind,
                "link": link_id,
                "ip_address": fip.ip,
                "netmask": _netmask(subnet.cidr, subnet.ip_version),
                "routes": _routes(subnet),
                "network_id": nic.network.id,
                "services": dns,
            })
    return {"links": links, "networks": networks, "services": services}
