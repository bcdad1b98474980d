"""Tests for L{mdsvc.hop}: what crosses a hop (addresses, signing, error pages, the requests and their headers)."""

from __future__ import annotations

import ipaddress

from twisted.trial.unittest import SynchronousTestCase

from mdsvc.hop import mac_from_link_local, normalise_address


class NormaliseAddressTests(SynchronousTestCase):
    """Neutron spec §1 hop 2 step 3, with the vectors of §10 items 5 and 14."""

    def test_ipv4(self) -> None:
        """An IPv4 address is looked up as it is, without a MAC."""
        self.assertEqual(normalise_address("192.168.1.1"), ("192.168.1.1", None))

    def test_ipv4Mapped(self) -> None:
        """An IPv4-mapped IPv6 address is looked up as the IPv4 address (§10 item 5)."""
        self.assertEqual(normalise_address("::ffff:192.168.1.1"), ("192.168.1.1", None))

    def test_ipv4MappedHexForm(self) -> None:
        """The mapped form written in hex is the same address."""
        self.assertEqual(normalise_address("::ffff:c0a8:101"), ("192.168.1.1", None))

    def test_globalIPv6(self) -> None:
        """A global IPv6 address is looked up by IP, without a MAC (§10 item 14)."""
        self.assertEqual(normalise_address("2001:db8::1"), ("2001:db8::1", None))

    def test_ipv6Compressed(self) -> None:
        """IPv6 addresses come back in their compressed lower-case form."""
        self.assertEqual(normalise_address("2001:DB8:0:0:0:0:0:1"), ("2001:db8::1", None))

    def test_linkLocalQemu(self) -> None:
        """C{fe80::5054:ff:fede:5bbf} is the guest with MAC 52:54:00:de:5b:bf (§10 item 5)."""
        self.assertEqual(normalise_address("fe80::5054:ff:fede:5bbf"), ("fe80::5054:ff:fede:5bbf", "52:54:00:de:5b:bf"))

    def test_linkLocalOpenStack(self) -> None:
        """C{fe80::f816:3eff:fe12:3456} is the guest with MAC fa:16:3e:12:34:56."""
        self.assertEqual(normalise_address("fe80::f816:3eff:fe12:3456"), ("fe80::f816:3eff:fe12:3456", "fa:16:3e:12:34:56"))

    def test_linkLocalWithoutFFFE(self) -> None:
        """C{fe80::99} gives 02:00:00:00:00:99: the ff:fe bytes are not checked (§10 item 14)."""
        self.assertEqual(normalise_address("fe80::99"), ("fe80::99", "02:00:00:00:00:99"))

    def test_linkLocalUpperCase(self) -> None:
        """An upper-case link-local address gives the same lower-case MAC."""
        self.assertEqual(normalise_address("FE80::F816:3EFF:FE12:3456"), ("fe80::f816:3eff:fe12:3456", "fa:16:3e:12:34:56"))

    def test_linkLocalWholeSlash10(self) -> None:
        """The whole fe80::/10 is link-local: fe90::... also gives a MAC from its last 64 bits."""
        self.assertEqual(normalise_address("fe90::f816:3eff:fe12:3456"), ("fe90::f816:3eff:fe12:3456", "fa:16:3e:12:34:56"))

    def test_surroundingSpaces(self) -> None:
        """Spaces around the value (as a header may carry) are ignored."""
        self.assertEqual(normalise_address(" 10.0.0.5 "), ("10.0.0.5", None))

    def test_commaList(self) -> None:
        """A comma list (client-supplied XFF joined with the proxy's) is refused."""
        e = self.assertRaises(ValueError, normalise_address, "10.0.0.99, 10.0.0.5")
        self.assertEqual(str(e), "not one IP address: '10.0.0.99, 10.0.0.5'")

    def test_garbage(self) -> None:
        """Text that is not an IP address is refused."""
        for value in ("", "   ", "not-an-ip", "10.0.0", "10.0.0.256", "010.0.0.1", "::g", "[::1]", "10.0.0.5:80"):
            e = self.assertRaises(ValueError, normalise_address, value)
            self.assertEqual(str(e), f"not one IP address: {value!r}")

    def test_scoped(self) -> None:
        """A scoped IPv6 address (C{fe80::1%eth0}) is refused."""
        self.assertRaises(ValueError, normalise_address, "fe80::1%eth0")

    def test_macFromLinkLocal(self) -> None:
        """The helper flips the U/L bit and drops the middle two bytes of the interface id."""
        self.assertEqual(mac_from_link_local(ipaddress.IPv6Address("fe80::0200:00ff:fe00:0001")), "00:00:00:00:00:01")


class CanonicalTests(SynchronousTestCase):
    """One normal form for an address, wherever it is compared (API peers, the store's index, proxies)."""

    def test_canonical_ip(self) -> None:
        """IPv4-mapped as IPv4, compressed lower-case IPv6, zones dropped, non-addresses None."""
        from mdsvc.hop import canonical_ip

        self.assertEqual(canonical_ip("::ffff:10.0.0.5"), "10.0.0.5")
        self.assertEqual(canonical_ip(" 2001:DB8:0:0:0:0:0:1 "), "2001:db8::1")
        self.assertEqual(canonical_ip("fe80::1%eth0"), "fe80::1")
        self.assertIsNone(canonical_ip("web-1"))

    def test_peer_address(self) -> None:
        """A proxy's peer: zone dropped, IPv4-mapped as IPv4, link-local with its MAC; not an IP raises."""
        from mdsvc.hop import peer_address

        self.assertEqual(peer_address("::ffff:10.0.0.5"), ("10.0.0.5", None))
        self.assertEqual(peer_address("fe80::f816:3eff:feaa:1%ifb1"), ("fe80::f816:3eff:feaa:1", "fa:16:3e:aa:00:01"))
        self.assertRaises(ValueError, peer_address, "")


class GuestRequestTests(SynchronousTestCase):
    """A guest request written on the agent's socket and read back is the same request."""

    def test_round_trip(self) -> None:
        """Headers as Neutron's haproxy sends them, read back into the same GuestRequest."""
        from mdsvc.hop import GuestRequest, guest_request_headers, read_guest_request
        from mdsvc.http import HTTPRequest

        for request in [
            GuestRequest(b"GET", b"/latest/meta-data/?x=1", b"", "10.0.0.5", None, "net-1", None, b"*/*"),
            GuestRequest(b"POST", b"/openstack/latest/password", b"pw", "fe80::f816:3eff:feaa:1", "fa:16:3e:aa:00:01", None, "r-1"),
        ]:
            headers: dict[bytes, list[bytes]] = {}
            for name, value in guest_request_headers(request):
                headers.setdefault(name.lower(), []).append(value)
            self.assertEqual(read_guest_request(HTTPRequest(request.method, request.target, b"HTTP/1.1", headers, request.body, None)),
                             request)

    def test_refusals(self) -> None:
        """What a proxy must never send is refused with 400, without echoing it."""
        from mdsvc.hop import HopError, read_guest_request
        from mdsvc.http import HTTPRequest

        def read(target: bytes = b"/x", **headers: list[bytes]) -> HopError:
            h = {k.replace("_", "-").encode(): v for k, v in headers.items()}
            return self.assertRaises(HopError, read_guest_request, HTTPRequest(b"GET", target, b"HTTP/1.1", h, b"", None))

        ok = {"x_forwarded_for": [b"10.0.0.5"]}
        for error, text in [
            (read(**ok), "Neither a network nor a router ID was given."),
            (read(x_neutron_network_id=[b"n"], x_neutron_router_id=[b"r"], **ok), "Both network n and router r defined."),
            (read(x_neutron_network_id=[b"a", b"b"], **ok), "Only one network or router ID may be given."),
            (read(x_neutron_network_id=[b"n\r\nX: y"], **ok), "The network or router ID is malformed."),
            (read(x_neutron_network_id=[b"n"], x_forwarded_for=[b"10.0.0.9, 10.0.0.5"]), "X-Forwarded-For must hold exactly one address."),
            (read(x_neutron_network_id=[b"n"], x_forwarded_for=[b"<script>"]), "X-Forwarded-For is not an IP address."),
            (read(b"*", x_neutron_network_id=[b"n"], **ok), "The request target must be a path."),
        ]:
            self.assertEqual((error.code, error.explanation), (400, text))

    def test_signed_headers(self) -> None:
        """A signed request is exactly Neutron's four identity headers."""
        from mdsvc.hop import SignedRequest, signed_request_headers

        request = SignedRequest(b"GET", b"/", b"", "10.0.0.5", "inst-1", "proj-1", "abc")
        self.assertEqual(signed_request_headers(request), [
            (b"X-Forwarded-For", b"10.0.0.5"), (b"X-Instance-ID", b"inst-1"), (b"X-Tenant-ID", b"proj-1"),
            (b"X-Instance-ID-Signature", b"abc"),
        ])


class ImportGraphTests(SynchronousTestCase):
    """Proxy, agent and API depend on mdsvc.hop, not on each other."""

    def test_hops_do_not_import_each_other(self) -> None:
        """No module under proxy/ imports agent/ or api/; no module under agent/ imports api/."""
        import ast
        import os

        import mdsvc

        root = os.path.dirname(mdsvc.__file__)
        forbidden = {"proxy": ("mdsvc.agent", "mdsvc.api"), "agent": ("mdsvc.api",)}
        found = []
        for package, names in forbidden.items():
            for filename in sorted(os.listdir(os.path.join(root, package))):
                if not filename.endswith(".py"):
                    continue
                with open(os.path.join(root, package, filename)) as f:
                    tree = ast.parse(f.read())
                for node in ast.walk(tree):
                    imported = [node.module or ""] if isinstance(node, ast.ImportFrom) else \
                        [a.name for a in node.names] if isinstance(node, ast.Import) else []
                    for name in imported:
                        if any(name == n or name.startswith(n + ".") for n in names):
                            found.append(f"mdsvc/{package}/{filename} imports {name}")
        self.assertEqual(found, [])
