# -*- test-case-name: tests.test_nova_convert -*-
"""
C{instance_info_caches.network_info}: Nova's network model (C{nova.network.model.NetworkInfo}
as JSON, what C{nova.network.neutron} built from Neutron's ports and subnets) as mdsvc's
L{Nic}s.

The JSON is a list of VIFs: C{{"id": port, "address": MAC, "type", "vnic_type", "devname",
"network": {"id", "label", "meta": {"mtu", "physical_network", ...}, "subnets": [{"cidr",
"version", "gateway": {"address"}, "dns": [{"address"}], "routes": [{"cidr", "gateway":
{"address"}}], "ips": [{"address", "floating_ips": [{"address"}]}], "meta": {"enable_dhcp",
"dhcp_server", "ipv6_address_mode"}}]}}}.  Addresses are kept as Neutron wrote them.  Each fixed
IP becomes a L{FixedIp} holding its subnet, in subnet then IP order: the order in which Nova
reads them (C{NetworkInfo.fixed_ips()}).
"""

from __future__ import annotations

from typing import Any

from mdsvc.model import FixedIp, Network, Nic, Subnet
from mdsvc.store.nova.ovo import loads


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _address(value: Any) -> str | None:
    """The C{address} of one of the model's IP objects (None for none, or for no object)."""
    return _text(_dict(value).get("address"))


def _version(subnet: dict[str, Any]) -> int:
    version = subnet.get("version")
    if version in (4, 6):
        return int(version)
    cidr = _text(subnet.get("cidr")) or ""
    return 6 if ":" in cidr else 4


def _subnet(subnet: dict[str, Any], network_id: str | None) -> Subnet:
    meta = _dict(subnet.get("meta"))
    routes = []
    for route in _list(subnet.get("routes")):
        cidr, nexthop = _text(_dict(route).get("cidr")), _address(_dict(route).get("gateway"))
        if cidr and nexthop:
            routes.append((cidr, nexthop))
    mode = meta.get("ipv6_address_mode")
    return Subnet(
        id=None,
        cidr=_text(subnet.get("cidr")),
        ip_version=_version(subnet),
        gateway=_address(subnet.get("gateway")),
        dns=tuple(a for a in (_address(d) for d in _list(subnet.get("dns"))) if a),
        routes=tuple(routes),
        enable_dhcp=bool(meta.get("enable_dhcp")),
        ipv6_address_mode=mode if isinstance(mode, str) and mode else None,
        dhcp_server=_text(meta.get("dhcp_server")),
    )


def _nic(vif: dict[str, Any]) -> Nic:
    network = _dict(vif.get("network"))
    meta = _dict(network.get("meta"))
    mtu = meta.get("mtu")
    fixed: list[FixedIp] = []
    for subnet in _list(network.get("subnets")):
        subnet = _dict(subnet)
        value = _subnet(subnet, _text(network.get("id")))
        for ip in _list(subnet.get("ips")):
            address = _address(ip)
            if address:
                floating = tuple(a for a in (_address(f) for f in _list(_dict(ip).get("floating_ips"))) if a)
                fixed.append(FixedIp(ip=address, subnet=value, floating_ips=floating))
    return Nic(
        port_id=_text(vif.get("id")),
        mac=_text(vif.get("address")),
        vif_type=_text(vif.get("type")),
        vnic_type=_text(vif.get("vnic_type")),
        network=Network(
            id=_text(network.get("id")), name=_text(network.get("label")),
            mtu=mtu if isinstance(mtu, int) and not isinstance(mtu, bool) else None,
            network_type=_text(meta.get("network_type")), physical_network=_text(meta.get("physical_network")),
        ),
        fixed_ips=tuple(fixed),
    )


def nics(text: str | None, uuid: str) -> tuple[Nic, ...]:
    """The ports of an instance's network info cache, in VIF order (none for an empty cache)."""
    return tuple(_nic(_dict(vif)) for vif in _list(loads(text, "instance_info_caches.network_info", uuid)))
