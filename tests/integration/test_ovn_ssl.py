"""
The ovn lookup's monitor over C{ssl:} (C{ovn_sb_private_key}, C{ovn_sb_certificate},
C{ovn_sb_ca_cert}) to a real ovsdb-server serving the Southbound database on C{pssl:}.
"""

from __future__ import annotations

import queue
import shutil
import subprocess
import tempfile
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from mdsvc.lookup.ovn.monitor import Lost, Note, SouthboundMonitor, Stopped, Synced
from tests.integration.ovn import SCHEMAS, Daemon, _tool, make_pki, require_ovn
from tests.integration.processes import free_port


class SslTests(SynchronousTestCase):
    """A standalone SB database on pssl:, certificates from one CA; then from another."""

    def setUp(self) -> None:
        require_ovn()
        self.dir = tempfile.mkdtemp(prefix="mdsvc-ovn-ssl-")
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.pki = make_pki(self.dir)
        self.port = free_port()
        subprocess.run([_tool("ovsdb-tool"), "create", f"{self.dir}/sb.db", f"{SCHEMAS}/ovn-sb.ovsschema"], check=True)
        server = Daemon("sb", self.dir, [
            _tool("ovsdb-server"), f"--remote=pssl:{self.port}:127.0.0.1", f"--private-key={self.pki['server-key']}",
            f"--certificate={self.pki['server-cert']}", f"--ca-cert={self.pki['ca']}", f"{self.dir}/sb.db",
        ])
        self.addCleanup(server.stop)

    def monitor(self, pki: dict[str, str]) -> tuple[SouthboundMonitor, queue.Queue[Any]]:
        events: queue.Queue[Any] = queue.Queue()
        monitor = SouthboundMonitor((f"ssl:127.0.0.1:{self.port}",), events.put,
                                    ssl=(pki["client-key"], pki["client-cert"], pki["ca"]))
        monitor.start()

        def stop() -> None:
            monitor.stop()
            while not isinstance(events.get(timeout=10), Stopped):
                pass

        self.addCleanup(stop)
        return monitor, events

    def test_syncs_over_ssl(self) -> None:
        """With the CA's client certificate the replica syncs over TLS."""
        _, events = self.monitor(self.pki)
        event = events.get(timeout=15)
        while isinstance(event, Note):
            event = events.get(timeout=15)
        self.assertIsInstance(event, Synced)
        self.assertEqual(event.remote, f"ssl:127.0.0.1:{self.port}")

    def test_other_ca_never_syncs(self) -> None:
        """Certificates of another CA: no sync (the server's certificate is not trusted, nor ours)."""
        other = make_pki(self.dir, "other")
        _, events = self.monitor(other)
        try:
            event = events.get(timeout=4)
        except queue.Empty:
            return
        self.assertNotIsInstance(event, Synced)
        self.assertIsInstance(event, (Note, Lost))

