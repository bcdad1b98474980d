# -*- test-case-name: tests.test_imds -*-
"""
How far an answer may travel: the IP TTL (IPv4) or hop limit (IPv6) of a connection's packets.

A namespace proxy answers a guest's session token PUT with hop limit 1 (as AWS's instance
metadata service does by default): the guest, one hop away on its network, gets the answer;
a container or a VM nested behind it, whose packets the guest forwards, never does, because
the guest's forwarding decrements the TTL to 0 and drops the answer.

The limit is set on the socket, so it holds for every packet sent on the connection from then
on, retransmissions included; it is not lowered again for the connection's later answers, which
a guest one hop away receives all the same.
"""

from __future__ import annotations

import socket
from typing import Any

from twisted.logger import Logger

_log = Logger()


def limit_hops(transport: Any, hops: int) -> bool:
    """
    Send the rest of the connection of C{transport} with IP TTL / IPv6 hop limit C{hops}.

    An IPv6 socket gets both (its IPv4-mapped peers are reached with the IPv4 TTL).

    @return: whether the limit is set (False for a transport that is not an IP socket, such as a
        UNIX socket or a test's string transport).
    """
    handle = getattr(transport, "getHandle", None)
    sock = handle() if handle is not None else None
    if not isinstance(sock, socket.socket):
        return False
    try:
        if sock.family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, hops)
            try:
                sock.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, hops)
            except OSError:
                pass  # an IPv6-only socket has no IPv4 peers
        elif sock.family == socket.AF_INET:
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, hops)
        else:
            return False
    except OSError as e:
        _log.warn("cannot limit the hops of a connection to {hops}: {error}", hops=hops, error=str(e))
        return False
    return True


__all__ = ["limit_hops"]
