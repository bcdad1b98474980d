# -*- test-case-name: tests.test_nova_parity -*-
"""
Nova's injected network template (C{[DEFAULT] flat_injected}): the C{/etc/network/interfaces}
file that C{meta_data.json}'s C{network_config} points at, served as C{/openstack/content/0000}
and written on config drives.

The interfaces are chosen and described as C{nova.virt.netutils.get_injected_network_template}
does, and rendered with Jinja2 (C{trim_blocks}, as Nova) from C{[DEFAULT]
injected_network_template} or Nova's own template (C{mdsvc/data/interfaces.template}): each port
with subnets is C{eth<n>} in port order; a port whose first IPv4 or first IPv6 subnet has a DHCP
server is left out (its number is still taken); addresses, gateways and DNS servers as written,
the IPv4 netmask and broadcast as netaddr prints them, the IPv6 netmask as the prefix length.
Nothing is rendered when no port is left.
"""

from __future__ import annotations

import ipaddress
import os
from functools import cache
from importlib import resources
from typing import Any

import jinja2
from attrs import define, field
from twisted.logger import Logger

from mdsvc.api.addresses import broadcast_text, netaddr_text, netmask_text, network_of, subnet_of
from mdsvc.api.network_data import SubnetIp, first_of_version, port_subnets
from mdsvc.model import Instance, Nic

TEMPLATE = "data/interfaces.template"
"""Nova's C{interfaces.template}, in the C{mdsvc} package."""


@cache
def _nova_template() -> jinja2.Template:
    """Nova's own template, compiled once in Nova's Jinja2 environment."""
    text = resources.files("mdsvc").joinpath(TEMPLATE).read_text("utf-8")
    return jinja2.Environment(trim_blocks=True).from_string(text)


@cache
def _environment(directory: str) -> jinja2.Environment:
    """Nova's environment for a template file's directory (Jinja2 reloads a file that changed)."""
    return jinja2.Environment(loader=jinja2.FileSystemLoader(directory), trim_blocks=True)


@define
class InterfacesTemplate:
    """
    What C{flat_injected} renders for an instance.

    @ivar path: C{[DEFAULT] injected_network_template}; None: Nova's own template.  A file that
        cannot be read, compiled or rendered renders nothing (no C{network_config}), logged once
        per distinct reason, as a broken vendordata file serves no C{vendor_data.json}.
    """

    path: str | None = None
    _last_error: str | None = field(default=None, init=False, repr=False)
    _log = Logger()

    def load(self) -> jinja2.Template | None:
        """The compiled template, or None (logged) when it cannot be read or compiled."""
        if self.path is None:
            return _nova_template()
        directory, name = os.path.split(self.path)
        try:
            return _environment(directory).get_template(name)
        except (OSError, jinja2.TemplateError) as e:
            self._failed(e)
            return None

    def render(self, instance: Instance) -> str | None:
        """The rendered C{/etc/network/interfaces} of C{instance}, or None when no port is described."""
        values = template_values(instance)
        if values is None:
            return None
        template = self.load()
        if template is None:
            return None
        try:
            return str(template.render(values))
        except jinja2.TemplateError as e:
            self._failed(e)
            return None

    def _failed(self, error: Exception) -> None:
        reason = f"{type(error).__name__}: {error}"
        if reason != self._last_error:
            self._last_error = reason
            self._log.error("injected_network_template {path}: {reason}; no network_config is rendered", path=self.path, reason=reason)


def template_values(instance: Instance) -> dict[str, Any] | None:
    """What Nova hands the template (C{interfaces}, C{use_ipv6}, C{libvirt_virt_type}: None, as
    for the metadata service and drives), or None when no port is described."""
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
    return {"interfaces": interfaces, "use_ipv6": use_ipv6, "libvirt_virt_type": None}


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
    """An IPv4 host route as Nova hands it to the template (C{network}: the CIDR's address part,
    as C{get_net_and_mask} takes it; Nova's own template does not use routes)."""
    return {"gateway": nexthop, "cidr": destination, "network": netaddr_text(ipaddress.ip_interface(destination).ip),
            "netmask": netmask_text(network_of(destination))}
