# -*- test-case-name: tests.test_api_render -*-
"""C{network_data.json} of one instance, by Nova's algorithm (spec §2.4.5)."""

from __future__ import annotations

from typing import Any

from mdsvc.api.addresses import netmask_text, network_of, network_text, subnet_of
from mdsvc.model import FixedIp, Instance, Nic, Subnet

_KNOWN_VIF_TYPES = {"bridge", "dvs", "hw_veb", "hyperv", "ovs", "tap", "vhostuser", "vif"}

SubnetIp = tuple[Subnet, FixedIp]
"""A subnet of a port and the port's first fixed IP in it."""


def port_subnets(nic: Nic) -> list[SubnetIp]:
    """A port's subnets in order, each with its first fixed IP: Nova's network info of the port."""
    subnets: dict[Any, SubnetIp] = {}
    for fip in nic.fixed_ips:
        subnets.setdefault(fip.subnet.id or fip.subnet, (fip.subnet, fip))
    return list(subnets.values())


def first_of_version(subnets: list[SubnetIp], version: int) -> SubnetIp | None:
    """The first subnet of IP C{version} (Nova uses only the first of each version)."""
    return next((pair for pair in subnets if pair[0].ip_version == version), None)


def _netmask(subnet: Subnet, fip: FixedIp) -> str:
    return netmask_text(subnet_of(subnet.cidr, fip.ip, subnet.ip_version))


def _routes(subnet: Subnet) -> list[dict[str, str]]:
    """The default route through the gateway, then the host routes; next hops as written, the
    destinations' network and netmask as netaddr prints them."""
    routes = []
    if subnet.gateway:
        default = "0.0.0.0" if subnet.ip_version == 4 else "::"
        routes.append({"network": default, "netmask": default, "gateway": subnet.gateway})
    for destination, nexthop in subnet.routes:
        net = network_of(destination)
        routes.append({"network": network_text(net), "netmask": netmask_text(net), "gateway": nexthop})
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
        subnets = port_subnets(nic)
        if not subnets:
            continue
        v4, v6 = first_of_version(subnets, 4), first_of_version(subnets, 6)
        link_id = nic.devname or f"interface{index}"
        index += 1
        has_dhcp_server = any(s.dhcp_server for s, _ in subnets)
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
                "netmask": _netmask(subnet, fip),
                "routes": _routes(subnet),
                "network_id": nic.network.id,
                "services": dns,
            })
    return {"links": links, "networks": networks, "services": services}
