"""What may be written into a request head (mdsvc.wire)."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from mdsvc.wire import UnsafeRequest, check_request, forwardable_value, is_field_value, is_origin_target, is_token


class WireTests(SynchronousTestCase):
    """Tokens, targets and values, byte by byte."""

    def test_every_byte(self) -> None:
        """Every byte outside visible ASCII is refused in targets and values; SP only inside values."""
        for byte in range(256):
            b = bytes([byte])
            visible = 0x21 <= byte <= 0x7E
            self.assertEqual(is_origin_target(b"/a" + b + b"z"), visible, byte)
            self.assertEqual(is_field_value(b"a" + b + b"z"), visible or byte == 0x20, byte)
        self.assertFalse(is_field_value(b" a"))
        self.assertFalse(is_field_value(b"a "))
        self.assertTrue(is_field_value(b""))

    def test_tokens_and_targets(self) -> None:
        """Methods and names are tokens; targets start with a slash."""
        self.assertTrue(is_token(b"GET"))
        for bad in [b"", b"G T", b"G:T", b"G\r", b"(x)"]:
            self.assertFalse(is_token(bad), bad)
        for bad in [b"", b"*", b"x/y", b"http://h/"]:
            self.assertFalse(is_origin_target(bad), bad)

    def test_check_request_names_the_field_not_its_bytes(self) -> None:
        """The refusal says which field, never echoes it."""
        e = self.assertRaises(UnsafeRequest, check_request, b"GET", b"/", [(b"Accept", b"secret\r\nX: y")])
        self.assertIn("Accept", str(e))
        self.assertNotIn("secret", str(e))
        check_request(b"GET", b"/latest/meta-data/?x=1", [(b"X-Forwarded-For", b"10.0.0.5")])

    def test_forwardable_value(self) -> None:
        """A guest's value passes on only as trimmed visible ASCII of bounded length."""
        self.assertEqual(forwardable_value(b"  text/html, */*;q=0.8 "), b"text/html, */*;q=0.8")
        for bad in [None, b"", b"a\tb", b"a\xffb", b"a" * 1025]:
            self.assertIsNone(forwardable_value(bad), bad)
