# -*- test-case-name: tests.test_lookup_address -*-
"""
The guest's address as the agent receives it in C{X-Forwarded-For}, turned into what a lookup
backend searches for (neutron spec §1, hop 2, step 3).
"""

from __future__ import annotations

import ipaddress


def mac_from_link_local(address: ipaddress.IPv6Address) -> str:
    """
    The MAC address behind an IPv6 link-local address's modified EUI-64 interface id.

    The U/L bit of the first byte is flipped and the middle two bytes dropped, without checking
    that they are C{ff:fe} (as Neutron does: C{fe80::99} gives C{02:00:00:00:00:99}).

    @return: lower-case, colon-separated.
    """
    iid = address.packed[8:]
    mac = bytes([iid[0] ^ 0x02]) + iid[1:3] + iid[5:8]
    return ":".join(f"{b:02x}" for b in mac)


def normalise_address(xff: str) -> tuple[str, str | None]:
    """
    Turn one C{X-Forwarded-For} value into C{(ip, mac)} for L{mdsvc.interfaces.IInstanceLookup}.

      - IPv4: C{(ip, None)}.
      - IPv4-mapped IPv6 (C{::ffff:a.b.c.d}): the IPv4 address, C{(a.b.c.d, None)}.
      - IPv6 link-local (C{fe80::/10}): C{(ip, mac)} with the MAC derived from the interface id;
        backends then look up by MAC.
      - other IPv6: C{(ip, None)}, the address in its compressed form.

    @raise ValueError: if C{xff} is not exactly one IP address: a comma list (a client-supplied
        header joined with the proxy's), a scoped address, or anything else.
    """
    text = xff.strip()
    if not text or "," in text or "%" in text:
        raise ValueError(f"not one IP address: {xff!r}")
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        raise ValueError(f"not one IP address: {xff!r}") from None
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped), None
        if address.is_link_local:
            return str(address), mac_from_link_local(address)
    return str(address), None
