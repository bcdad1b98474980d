# -*- test-case-name: tests.test_nova_parity -*-
"""
Addresses Nova computes rather than passes on, written as Nova writes them.

Nova passes Neutron's text on for fixed IPs, gateways, DNS servers, next hops and floating IPs
(mdsvc keeps a document's text as written).  What it computes from a subnet's or route's CIDR
(netmasks, route networks, broadcast addresses) it prints with netaddr, whose IPv6 text is the C
library's C{inet_ntop}: RFC 5952 compression (the longest run of two or more zero groups, the
first of equal runs), lower case, and a dotted IPv4 tail for IPv4-mapped (C{::ffff:0.0.0.0}) and
IPv4-compatible (C{::1.2.3.4}) addresses, where Python's C{ipaddress} prints hex groups.
"""

from __future__ import annotations

import ipaddress
import socket

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def netaddr_text(address: Address) -> str:
    """C{str(netaddr.IPAddress(address))}."""
    if isinstance(address, ipaddress.IPv4Address):
        return str(address)
    return socket.inet_ntop(socket.AF_INET6, address.packed)


def network_of(cidr: str) -> Network:
    """The range of C{cidr}, host bits allowed (netaddr's C{IPNetwork})."""
    return ipaddress.ip_network(cidr, strict=False)


def subnet_of(cidr: str | None, ip: str, version: int) -> Network:
    """
    A subnet's range; a subnet a document gives without a CIDR (Nova always has one) is taken as
    its fixed IP C{ip} alone.
    """
    if cidr is None:
        return network_of(f"{ip}/{32 if version == 4 else 128}")
    return network_of(cidr)


def netmask_text(network: Network) -> str:
    """C{str(IPNetwork(cidr).netmask)}."""
    return netaddr_text(network.netmask)


def network_text(network: Network) -> str:
    """C{str(IPNetwork(cidr).network)}: the first address of the range."""
    return netaddr_text(network.network_address)


def broadcast_text(network: Network) -> str:
    """C{str(IPNetwork(cidr).broadcast)}: C{"None"} for a /31 or /32, where netaddr has none."""
    if network.max_prefixlen - network.prefixlen <= 1:
        return "None"
    return netaddr_text(network.broadcast_address)
