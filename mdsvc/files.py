# -*- test-case-name: tests.test_files -*-
"""
Files mdsvc reads while it runs, each read the one way: PEM certificate bundles
(L{read_certificates}), and data files re-read when they change (L{WatchedFile}).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Generic, TypeVar

from attrs import define, field
from twisted.internet import ssl

T = TypeVar("T")

_CERTIFICATE = b"-----BEGIN CERTIFICATE-----"


def read_certificates(path: str) -> list[ssl.Certificate]:
    """
    Every certificate of a PEM bundle (a CA file).

    @raise ValueError: one line naming C{path}: it cannot be read, is not PEM, or holds no
        certificate.
    """
    try:
        with open(path, "rb") as f:
            pem = f.read()
    except OSError as e:
        raise ValueError(f"{path}: cannot read: {e.strerror or e}") from None
    try:
        certificates = [ssl.Certificate.loadPEM(_CERTIFICATE + part) for part in pem.split(_CERTIFICATE)[1:]]
    except Exception as e:
        raise ValueError(f"{path}: not PEM certificates: {' '.join(str(e).split()) or type(e).__name__}") from None
    if not certificates:
        raise ValueError(f"{path}: holds no PEM certificate")
    return certificates


def read_private_certificate(certificate_path: str, key_path: str) -> ssl.PrivateCertificate:
    """
    A client certificate and its private key, from two PEM files.

    @raise ValueError: one line naming the file that cannot be read, or the pair that is not PEM.
    """
    parts = []
    for path in (certificate_path, key_path):
        try:
            with open(path, "rb") as f:
                parts.append(f.read())
        except OSError as e:
            raise ValueError(f"{path}: cannot read: {e.strerror or e}") from None
    try:
        return ssl.PrivateCertificate.loadPEM(parts[0] + b"\n" + parts[1])
    except Exception as e:
        raise ValueError(f"{certificate_path}, {key_path}: not a PEM certificate and its key: "
                         f"{' '.join(str(e).split()) or type(e).__name__}") from None


@define
class Loaded(Generic[T]):
    """What a L{WatchedFile} holds now: the parsed C{value}, or the C{error} that stopped it."""

    value: T | None = None
    error: str | None = None
    changed: bool = False
    """Whether this load read the file anew (for a log line on change)."""


@define
class WatchedFile(Generic[T]):
    """
    A file parsed once per change: read again only when its modification time or size
    changed, so a request costs one C{stat}, not a read and a parse.

    @ivar parse: bytes to value; raises L{ValueError} with a message for a bad file.
    (Errors say what is wrong, not which file: the caller names it.)
    @ivar keep_last_good: on a bad or missing file, whether to go on with the last good value
        (and report the error alongside it) rather than with none.
    """

    path: str
    parse: Callable[[bytes], T]
    keep_last_good: bool = False
    _stamp: tuple[int, int] | None = field(default=None, init=False)
    _current: Loaded[T] = field(factory=Loaded, init=False)
    _good: T | None = field(default=None, init=False)

    def load(self) -> Loaded[T]:
        """The file's content now (C{changed} is True when it was read or failed anew)."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return self._fail(None, "file does not exist")
        except OSError as e:
            return self._fail(None, f"cannot read: {e.strerror or e}")
        stamp = (st.st_mtime_ns, st.st_size)
        if stamp == self._stamp:
            return Loaded(self._current.value, self._current.error, False)
        try:
            with open(self.path, "rb") as f:
                data = f.read()
        except OSError as e:
            return self._fail(stamp, f"cannot read: {e.strerror or e}")
        try:
            value = self.parse(data)
        except ValueError as e:
            return self._fail(stamp, str(e))
        self._stamp, self._good = stamp, value
        self._current = Loaded(value, None, True)
        return self._current

    def _fail(self, stamp: tuple[int, int] | None, reason: str) -> Loaded[T]:
        changed = stamp != self._stamp or reason != self._current.error
        self._stamp = stamp
        self._current = Loaded(self._good if self.keep_last_good else None, reason, changed)
        return self._current
