"""Tests for L{mdsvc.lookup.address}: the guest's X-Forwarded-For turned into (ip, mac)."""

from __future__ import annotations

import ipaddress

from twisted.trial.unittest import SynchronousTestCase

from mdsvc.lookup.address import mac_from_link_local, normalise_address


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
