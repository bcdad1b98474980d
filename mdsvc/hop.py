# -*- test-case-name: tests.test_hop -*-
"""
What crosses a hop, owned in one place.

A guest's request crosses up to two hops before it is answered (neutron spec §1):

    guest --> namespace proxy --[GuestRequest]--> metadata agent --[SignedRequest]--> metadata API

On each hop the request is either an object handed over in the same process (network-node,
all-in-one), or HTTP on a socket (the agent's UNIX socket, the API's port), and it is the same
object either way: a proxy hands a L{GuestRequest} to an L{IAgentHop}, the agent hands a
L{SignedRequest} to an L{IAPIHop}.  This module says how each is written as HTTP headers and
read back, signs instance ids (HMAC-SHA256, as Neutron's agent does and Nova checks), renders
the error pages every hop answers with (L{mdsvc.pages}), and puts a guest's address in its one
normal form.
Proxy, agent and API depend on this module, not on each other.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress

from attrs import define
from zope.interface import Interface

from mdsvc.http import HTTPRequest, HTTPResponse, error_response
from mdsvc.imds import TOKEN_HEADER, TTL_HEADER, carried, token_headers
from mdsvc.pages import DEFAULT_EXPLANATIONS, TITLES, UNKNOWN_ERROR, ErrorPage, error_page
from mdsvc.wire import forwardable_value, is_identifier, is_origin_target

MEMO_SIZE = 65536
"""Parsed addresses remembered (a pure function of the text; a node sees a few thousand guests)."""


# -- the guest's address --------------------------------------------------------------------------

_CANONICAL: dict[str, str | None] = {}


def canonical_ip(text: object) -> str | None:
    """
    An IP address in its one normal form: compressed, lower-case, an IPv4-mapped IPv6 address as
    the IPv4 address, a zone (C{%eth0}) dropped; None if C{text} is not an IP address (or not
    text at all).  Remembered per text: the same few thousand addresses come again and again.
    """
    if not isinstance(text, str):
        return None
    try:
        return _CANONICAL[text]
    except KeyError:
        pass
    try:
        address = ipaddress.ip_address(text.strip().split("%", 1)[0])
    except ValueError:
        return None  # (not remembered: anything a guest sends would fill the memo)
    canonical = str(address.ipv4_mapped) if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped else str(address)
    if len(_CANONICAL) >= MEMO_SIZE:
        _CANONICAL.clear()
    _CANONICAL[text] = canonical
    return canonical


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
    Turn one C{X-Forwarded-For} value into C{(ip, mac)} for L{mdsvc.interfaces.IInstanceLookup}
    (neutron spec §1, hop 2, step 3).

      - IPv4: C{(ip, None)}.
      - IPv4-mapped IPv6 (C{::ffff:a.b.c.d}): the IPv4 address, C{(a.b.c.d, None)}.
      - IPv6 link-local (C{fe80::/10}): C{(ip, mac)} with the MAC derived from the interface id;
        backends then look up by MAC.
      - other IPv6: C{(ip, None)}, the address in its compressed form.

    @raise ValueError: if C{xff} is not exactly one IP address: a comma list (a client-supplied
        header joined with the proxy's), a scoped address, or anything else.
    """
    text = xff.strip()
    ip = canonical_ip(text) if text and "," not in text and "%" not in text else None
    if ip is None:
        raise ValueError(f"not one IP address: {xff!r}")
    if ":" in ip:
        address = ipaddress.IPv6Address(ip)
        if address.is_link_local:
            return ip, mac_from_link_local(address)
    return ip, None


_PEERS: dict[str, tuple[str, str | None]] = {}


def peer_address(host: str) -> tuple[str, str | None]:
    """
    The guest's C{(ip, mac)} as a proxy's connection shows it (zone dropped; see
    L{normalise_address}); remembered per peer, since a guest sends its whole boot from one
    address.

    @raise ValueError: C{host} is not an IP address (a listener that is not IP).
    """
    known = _PEERS.get(host)
    if known is None:
        known = normalise_address(host.split("%", 1)[0])
        if len(_PEERS) >= MEMO_SIZE:
            _PEERS.clear()
        _PEERS[host] = known
    return known


# -- signing --------------------------------------------------------------------------------------

def sign(secret: str | bytes, value: str | bytes) -> str:
    """Lowercase hex HMAC-SHA256 of C{value} keyed with C{secret} (what the agent sends)."""
    key = secret.encode("utf-8") if isinstance(secret, str) else secret
    msg = value.encode("utf-8") if isinstance(value, str) else value
    return hmac.new(key, msg, hashlib.sha256).hexdigest()


# -- error pages ----------------------------------------------------------------------------------

class HopError(Exception):
    """Ends a request at a hop with that hop's own error page (and a log line at C{log_level})."""

    def __init__(self, code: int, explanation: str, log_level: str = "warn") -> None:
        super().__init__(code, explanation)
        self.code = code
        self.explanation = explanation
        self.log_level = log_level


# -- proxy to agent -------------------------------------------------------------------------------

@define
class GuestRequest:
    """
    A guest's request as a namespace proxy hands it to the metadata agent (read-only; not frozen
    because one is made per request).

    @ivar target: origin-form path and query, checked (L{mdsvc.wire.is_origin_target}) by
        whoever made the request.
    @ivar address: the guest's IP address in normal form (L{normalise_address}).
    @ivar mac: the MAC derived from an IPv6 link-local C{address}, else None.
    @ivar network_id: the network of the proxy's namespace, or None behind a router.
    @ivar router_id: the router of the proxy's namespace, or None on a network.
    @ivar accept: the guest's C{Accept} if it may be passed on, for error pages.
    @ivar token: the session token the guest sent (L{mdsvc.imds.carried}), or None.
    @ivar token_ttl: the token lifetime the guest asked for (L{mdsvc.imds.carried}), or None.
    """

    method: bytes
    target: bytes
    body: bytes
    address: str
    mac: str | None
    network_id: str | None
    router_id: str | None
    accept: bytes | None = None
    token: bytes | None = None
    token_ttl: bytes | None = None


class IAgentHop(Interface):
    """Where a namespace proxy sends a guest's request: the agent, in this process or on its socket."""

    def handle(request):
        """
        @param request: a L{GuestRequest}.
        @return: a Deferred of the L{HTTPResponse} for the guest; it fails only when cancelled.
        """


def guest_request_headers(request: GuestRequest) -> list[tuple[bytes, bytes]]:
    """A L{GuestRequest}'s identity as headers on the agent's socket, as Neutron's haproxy sends it."""
    headers = [(b"X-Forwarded-For", request.address.encode("ascii"))]
    if request.network_id is not None:
        headers.append((b"X-Neutron-Network-ID", request.network_id.encode("ascii")))
    if request.router_id is not None:
        headers.append((b"X-Neutron-Router-ID", request.router_id.encode("ascii")))
    if request.accept:
        headers.append((b"Accept", request.accept))
    if request.token is not None or request.token_ttl is not None:
        headers.extend(token_headers(request.token, request.token_ttl))
    return headers


_FORWARDED: dict[bytes, tuple[str, str | None]] = {}


def read_guest_request(request: HTTPRequest) -> GuestRequest:
    """
    A request on the agent's socket, from our proxies or Neutron's haproxy, as a L{GuestRequest}
    (neutron spec §1, hop 2): exactly one address in C{X-Forwarded-For}; one network
    (C{X-Neutron-Network-ID}, or OVN's C{X-OVN-Network-ID}) or one router (C{X-Neutron-Router-ID}),
    not both; every id a plain identifier.

    @raise HopError: 400, naming what is wrong (never echoing a guest's bytes).
    """
    target = request.origin_target
    if not is_origin_target(target):
        raise HopError(400, "The request target must be a path.")
    headers = request.headers
    networks = headers.get(b"x-neutron-network-id", []) + headers.get(b"x-ovn-network-id", [])
    routers = headers.get(b"x-neutron-router-id", [])
    network_id, router_id = _identity(networks, routers)
    forwarded = headers.get(b"x-forwarded-for", ())
    if len(forwarded) != 1 or forwarded[0].find(b",") >= 0:
        raise HopError(400, "X-Forwarded-For must hold exactly one address.")
    raw = forwarded[0].strip()
    address = _FORWARDED.get(raw)
    if address is None:
        try:
            address = normalise_address(raw.decode("ascii"))
        except (ValueError, UnicodeDecodeError):
            raise HopError(400, "X-Forwarded-For is not an IP address.") from None
        if len(_FORWARDED) >= MEMO_SIZE:
            _FORWARDED.clear()
        _FORWARDED[raw] = address
    accept = forwardable_value(request.header(b"accept"))
    return GuestRequest(request.method, target, request.body, address[0], address[1], network_id, router_id, accept,
                        carried(headers.get(TOKEN_HEADER)), carried(headers.get(TTL_HEADER)))


def _identity(networks: list[bytes], routers: list[bytes]) -> tuple[str | None, str | None]:
    if len(networks) == 1 and not routers:  # what every proxy sends
        only = networks[0].strip().decode("latin-1")
        if is_identifier(only):
            return only, None
    network_set = {v.strip().decode("latin-1") for v in networks if v.strip()}
    router_set = {v.strip().decode("latin-1") for v in routers if v.strip()}
    if not all(is_identifier(v) for v in network_set | router_set):
        raise HopError(400, "The network or router ID is malformed.")
    if len(network_set) > 1 or len(router_set) > 1:
        raise HopError(400, "Only one network or router ID may be given.")
    network = network_set.pop() if network_set else None
    router = router_set.pop() if router_set else None
    if network and router:
        raise HopError(400, f"Both network {network} and router {router} defined.")
    if not network and not router:
        raise HopError(400, "Neither a network nor a router ID was given.")
    return network, router


# -- agent to API ---------------------------------------------------------------------------------

@define
class SignedRequest:
    """
    A guest's request as the metadata agent hands it to the metadata API, vouching for the
    instance with the HMAC of its id (read-only; not frozen because one is made per request).

    @ivar address: the guest's address (normal form), for the API's logs and C{local-ipv4}.
    @ivar project_id: the project of the guest's port (C{X-Tenant-ID}).
    @ivar token: the guest's session token, or None (L{GuestRequest.token}).
    @ivar token_ttl: the token lifetime the guest asked for, or None.
    """

    method: bytes
    target: bytes
    body: bytes
    address: str
    instance_id: str
    project_id: str
    signature: str
    token: bytes | None = None
    token_ttl: bytes | None = None


class UpstreamUnavailable(Exception):
    """The API could not be reached (refused, unresolvable, TLS failure, connect timeout)."""


class UpstreamTimeout(Exception):
    """The API did not answer within the configured time."""


class IAPIHop(Interface):
    """Where the agent sends a signed request: the API, in this process or over HTTP."""

    def forward(request):
        """
        @param request: a L{SignedRequest}.
        @return: a Deferred of the API's L{HTTPResponse} (any status); it fails with
            L{UpstreamUnavailable} or L{UpstreamTimeout} when the API cannot be reached or is
            too slow.
        """


def signed_request_headers(request: SignedRequest) -> list[tuple[bytes, bytes]]:
    """
    A L{SignedRequest} as the four headers Neutron's agent sends to Nova (neutron spec §1, hop 4),
    and the guest's session token headers if it sent any.
    """
    headers = [
        (b"X-Forwarded-For", request.address.encode("ascii")),
        (b"X-Instance-ID", request.instance_id.encode("utf-8")),
        (b"X-Tenant-ID", request.project_id.encode("utf-8")),
        (b"X-Instance-ID-Signature", request.signature.encode("ascii")),
    ]
    if request.token is not None or request.token_ttl is not None:
        headers.extend(token_headers(request.token, request.token_ttl))
    return headers


__all__ = [  # (the pages are rendered by mdsvc.pages; re-exported as what every hop answers with)
    "TITLES", "DEFAULT_EXPLANATIONS", "UNKNOWN_ERROR", "HTTPResponse",
    "GuestRequest", "SignedRequest", "IAgentHop", "IAPIHop", "HopError", "ErrorPage", "error_page", "error_response",
    "sign", "canonical_ip", "normalise_address", "peer_address", "mac_from_link_local", "guest_request_headers",
    "read_guest_request", "signed_request_headers", "UpstreamUnavailable", "UpstreamTimeout",
]
