# -*- test-case-name: tests.test_ovn_config -*-
"""
C{[ovn] ovn_sb_connection}: the members of the Southbound database, as the OVN metadata agent
takes them (a comma-separated list of OVSDB active remotes: C{tcp:IP:PORT}, C{ssl:IP:PORT},
C{unix:PATH}; an IPv6 address in brackets), and the TLS files an C{ssl:} member needs.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Sequence

_INET = re.compile(r"(tcp|ssl):(\[[^\]]+\]|[^:\[\]]+):(\d+)\Z")
ALLOWED = "a comma-separated list of tcp:IP:PORT, ssl:IP:PORT or unix:PATH"


def ovsdb_remotes(text: str) -> tuple[str, ...]:
    """
    Parse C{ovn_sb_connection}.

    @raise ValueError: naming the position of the remote that is not one of C{tcp:IP:PORT},
        C{ssl:IP:PORT}, C{unix:PATH} (what is allowed in the message).
    """
    remotes = tuple(part.strip() for part in text.split(",") if part.strip())
    if not remotes:
        raise ValueError(f"allowed: {ALLOWED}")
    for number, remote in enumerate(remotes, 1):
        if remote.startswith("unix:"):
            if len(remote) > len("unix:"):
                continue
        else:
            m = _INET.match(remote)
            if m and 0 < int(m.group(3)) < 65536 and _host(m.group(2)):
                continue
        # (not shown: an option named *connection is treated as a secret, mdsvc.config.holds_secret)
        raise ValueError(f"member {number} of {len(remotes)} is not an OVSDB remote (allowed: {ALLOWED})")
    return remotes


def _host(text: str) -> bool:
    if text.startswith("["):
        try:
            ipaddress.IPv6Address(text[1:-1])
        except ValueError:
            return False
        return True
    return bool(re.fullmatch(r"[A-Za-z0-9.-]+", text))


def ssl_files(remotes: Sequence[str], private_key: str, certificate: str, ca_cert: str) -> tuple[str, str, str] | None:
    """
    The TLS files of C{ssl:} members: C{(private key, certificate, CA certificates)}, or None
    when no member is C{ssl:}.

    @raise ValueError: one line naming the option that is unset or whose file is unreadable.
    """
    if not any(r.startswith("ssl:") for r in remotes):
        return None
    files = (("ovn_sb_private_key", private_key), ("ovn_sb_certificate", certificate), ("ovn_sb_ca_cert", ca_cert))
    for name, path in files:
        if not path:
            raise ValueError(f"[ovn] ovn_sb_connection has an ssl: member, so [ovn] {name} must be set")
        if not os.access(path, os.R_OK):
            raise ValueError(f"[ovn] {name} = {path}: cannot read the file")
    return private_key, certificate, ca_cert
