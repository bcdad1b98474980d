"""Signing and identification: the HMAC vectors of both specs and the mode selection of §4."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from mdsvc.api.errors import MetadataError
from mdsvc.api.identify import ByAddress, ByInstanceId, Identifier, first_forwarded, sign


class SignTests(SynchronousTestCase):
    """HMAC-SHA256, lowercase hex."""

    def test_nova_vectors(self) -> None:
        """nova-metadata spec §4.3 and §4.4 vectors."""
        self.assertEqual(sign("", "a-b-c-d"), "d98d0dd53b026a24df2c06b464ffa5dadb922ae41af7bd3ecc3cae75aef65771")
        self.assertEqual(sign("s3cr3t", "b65cee2f-8c69-4aeb-be2f-f79742548fc2"), "823491c9c66985fac0685c45d8eda8869d581ff62c4661479451ee51e2946737")
        self.assertEqual(sign("testing1234", "edge-x"), "5d37735f52821318eb7c6413329c6b25932b030930bda5e83593563ab833c23d")

    def test_neutron_vectors(self) -> None:
        """neutron-metadata spec §3 vectors."""
        self.assertEqual(sign("secret", "the_id"), "d00a31718e518b9e664c0eff45c55f875d46166b7a1ab7b5988a9905b44f3727")
        self.assertEqual(sign("", "6e7f5b2a-1c1d-4a55-9f3e-2b9d1c0a7e11"), "40211ccb9f0dd36a166263e7881c0c68921fe0e9fb5b114a68a831989049f98a")
        self.assertEqual(sign("s3cr3t", "6e7f5b2a-1c1d-4a55-9f3e-2b9d1c0a7e11"), "5de3309878d2a52102f4dd078717e9a06fe4f7eb42b5179f9f26866fb620900a")

    def test_bytes_and_text_agree(self) -> None:
        """Bytes and text inputs sign alike (UTF-8)."""
        self.assertEqual(sign(b"k\xc3\xa9", b"id"), sign("k\u00e9", "id"))


class IdentifierTests(SynchronousTestCase):
    """Mode selection and header validation."""

    def test_remote_address(self) -> None:
        """Without proxy mode the peer address identifies the instance."""
        self.assertEqual(Identifier(False, "").identify({}, "10.0.0.5"), ByAddress("10.0.0.5"))

    def test_no_address_is_500(self) -> None:
        """No address at all is the spec's own 500."""
        self.assertEqual(self.assertRaises(MetadataError, Identifier(False, "").identify, {}, None).code, 500)

    def test_instance_id(self) -> None:
        """A signed request yields uuid, tenant and the first X-Forwarded-For address."""
        headers = {b"x-instance-id": [b"u1"], b"x-tenant-id": [b"p1"], b"x-instance-id-signature": [sign("k", "u1").encode()],
                   b"x-forwarded-for": [b"10.0.0.5, 10.9.9.9"]}
        self.assertEqual(Identifier(True, "k").identify(headers, "127.0.0.1"), ByInstanceId("u1", "p1", "10.0.0.5"))

    def test_wrong_secret_is_403(self) -> None:
        """A signature made with another secret is 403."""
        headers = {b"x-instance-id": [b"u1"], b"x-tenant-id": [b"p1"], b"x-instance-id-signature": [sign("other", "u1").encode()]}
        self.assertEqual(self.assertRaises(MetadataError, Identifier(True, "k").identify, headers, None).code, 403)

    def test_first_forwarded(self) -> None:
        """The first element, stripped; empty gives None."""
        self.assertEqual(first_forwarded(b" 1.2.3.4 ,5.6.7.8"), "1.2.3.4")
        self.assertIsNone(first_forwarded(b""))
        self.assertIsNone(first_forwarded(None))

    def test_failed_signatures_cache_nothing(self) -> None:
        """
        20,000 requests with 12 KB instance ids and wrong signatures (all 403) leave nothing
        behind: only a verified id's expected signature is remembered.
        """
        from twisted.logger import capturedLogs

        identifier = Identifier(True, "k")
        with capturedLogs() as events:
            for n in range(20000):
                headers = {b"x-instance-id": [b"%d" % n + b"x" * 12000], b"x-tenant-id": [b"p"], b"x-instance-id-signature": [b"0" * 64]}
                self.assertRaises(MetadataError, identifier.identify, headers, None)
        self.assertEqual(len(identifier._expected), 0)
        self.assertLess(max(len(e["requestor_id"]) for e in events), 300, "log lines do not carry 12 KB ids")
        good = {b"x-instance-id": [b"u1"], b"x-tenant-id": [b"p1"], b"x-instance-id-signature": [sign("k", "u1").encode()]}
        identifier.identify(good, None)
        self.assertEqual(list(identifier._expected), [b"u1"])
