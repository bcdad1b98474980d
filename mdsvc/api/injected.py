# -*- test-case-name: tests.test_nova_parity -*-
"""
Nova's injected network template (C{[DEFAULT] flat_injected}): the C{/etc/network/interfaces}
file that C{meta_data.json}'s C{network_config} points at, served as C{/openstack/content/0000}
and written on config drives.

The interfaces are chosen and described as C{nova.virt.netutils.get_injected_network_template}
does, and rendered with Jinja2 from Nova's own template (C{mdsvc/data/interfaces.template}):
each port with subnets is C{eth<n>} in port order; a port whose first IPv4 or first IPv6 subnet
has a DHCP server is left out (its number is still taken); addresses, gateways and DNS servers as
written, the IPv4 netmask and broadcast as netaddr prints them, the IPv6 netmask as the prefix
length.  Nothing is rendered when no port is left.
"""

from __future__ import annotations

import ipaddress
from functools import cache
from importlib import resources
from typing import Any

from mdsvc.api.addresses import broadcast_text, netaddr_text, netmask_text, network_of, subnet_of
from mdsvc.api.network_data import SubnetIp, first_of_version, port_subnets
from mdsvc.model import Instance, Nic

TEMPLATE = "data/interfaces.template"
"""Nova's C{interfaces.template}, in the C{mdsvc} package."""


@cache
def _template() -> Any:
    """The template, compiled once, in Nova's Jinja2 environment (C{trim_blocks} only)."""
    import jinja2

    text = resources.files("mdsvc").joinpath(TEMPLATE).read_text("utf-8")
    return jinja2.Environment(trim_blocks=True, autoescape=False).from_string(text)


def injected_interfaces(instance: Instance) -> str | None:
    """The rendered C{/etc/network/interfaces} of C{instance}, or None when no port is described."""
    interfaces = []
    use_ipv6 = False
    number = -1
    for nic in instance.nics:
        subnets = port_subnets(nic)
        if not subnets:
            continue
        number += 1
        v4, v6 = first_of_version(subnets, 4), first_of_version(subnets, 6)
        if any(pair is not None and pair[0].dhcp_server is not None for pair in (v4, v6)):
            continue
        use_ipv6 = use_ipv6 or v6 is not None
        interfaces.append(_interface(f"eth{number}", nic, v4, v6))
    if not interfaces:
        return None
    return str(_template().render(interfaces=interfaces, use_ipv6=use_ipv6, libvirt_virt_type=None))


def _interface(name: str, nic: Nic, v4: SubnetIp | None, v6: SubnetIp | None) -> dict[str, Any]:
    """One interface's values, with Nova's names and empty values."""
    values: dict[str, Any] = {
        "name": name, "hwaddress": nic.mac, "address": None, "netmask": None, "gateway": "", "broadcast": None,
        "dns": None, "routes": [], "address_v6": None, "gateway_v6": "", "netmask_v6": None, "dns_v6": None,
    }
    if v4 is not None:
        subnet, fip = v4
        network = subnet_of(subnet.cidr, fip.ip, 4)
        values.update(
            address=fip.ip, netmask=netmask_text(network), gateway=subnet.gateway, broadcast=broadcast_text(network),
            dns=" ".join(subnet.dns), routes=[_route(destination, nexthop) for destination, nexthop in subnet.routes],
        )
    if v6 is not None:
        subnet, fip = v6
        values.update(
            address_v6=fip.ip, netmask_v6=subnet_of(subnet.cidr, fip.ip, 6).prefixlen, gateway_v6=subnet.gateway,
            dns_v6=" ".join(subnet.dns),
        )
    return values


def _route(destination: str, nexthop: str) -> dict[str, str]:
    """A host route as Nova hands it to the template (C{network}: the CIDR's address part; Nova's
    own template does not use routes)."""
    return {"gateway": nexthop, "cidr": destination, "network": netaddr_text(ipaddress.ip_interface(destination).ip),
            "netmask": netmask_text(network_of(destination))}
