"""Files read while mdsvc runs (mdsvc.files): PEM bundles and files re-read when they change."""

from __future__ import annotations

import os

from twisted.trial.unittest import SynchronousTestCase

from mdsvc.files import WatchedFile, read_certificates, read_private_certificate


class CertificateTests(SynchronousTestCase):
    """One reader of PEM certificates, one line per problem."""

    def test_problems_in_one_line(self) -> None:
        """A missing file, a file without a certificate, and garbage in PEM armour each give one line naming the file."""
        missing = self.mktemp()
        self.assertEqual(str(self.assertRaises(ValueError, read_certificates, missing)), f"{missing}: cannot read: No such file or directory")
        empty = self.mktemp()
        with open(empty, "w") as f:
            f.write("not a certificate\n")
        self.assertEqual(str(self.assertRaises(ValueError, read_certificates, empty)), f"{empty}: holds no PEM certificate")
        with open(empty, "w") as f:
            f.write("-----BEGIN CERTIFICATE-----\nnonsense\n-----END CERTIFICATE-----\n")
        message = str(self.assertRaises(ValueError, read_certificates, empty))
        self.assertTrue(message.startswith(f"{empty}: not PEM certificates:"), message)
        self.assertNotIn("\n", message)
        self.assertIn(missing, str(self.assertRaises(ValueError, read_private_certificate, missing, empty)))


class WatchedFileTests(SynchronousTestCase):
    """A file parsed once per change."""

    def test_parsed_once_per_change(self) -> None:
        """Unchanged: not read again; changed: read and parsed anew; broken: the error, once, and (if asked) the last good value."""
        path = self.mktemp()
        parsed: list[bytes] = []

        def parse(data: bytes) -> bytes:
            parsed.append(data)
            if data == b"bad":
                raise ValueError("is bad")
            return data

        watched = WatchedFile(path, parse, keep_last_good=True)
        first = watched.load()
        self.assertEqual((first.value, first.error, first.changed), (None, "file does not exist", True))
        self.assertFalse(watched.load().changed)
        with open(path, "wb") as f:
            f.write(b"one")
        self.assertEqual((watched.load().value, watched.load().changed), (b"one", False))
        with open(path, "wb") as f:
            f.write(b"bad")
        os.utime(path, ns=(1, 1))
        broken = watched.load()
        self.assertEqual((broken.value, broken.error, broken.changed), (b"one", "is bad", True))
        self.assertFalse(watched.load().changed)
        self.assertEqual(parsed, [b"one", b"bad"])
