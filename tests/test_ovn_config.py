"""Tests for the ovn backend's configuration: the OVN metadata agent's [ovn] names, their checks and errors."""

from __future__ import annotations

import os

from twisted.python.usage import UsageError
from twisted.trial.unittest import SynchronousTestCase

from mdsvc.config import ConfigError, check_config, load_config
from mdsvc.lookup.ovn.remotes import ovsdb_remotes, ssl_files
from mdsvc.tap import Options

AGENT_INI = """\
[DEFAULT]
state_path = STATE
metadata_proxy_shared_secret = s3cr3t
nova_metadata_host = 192.0.2.10

[ovn]
ovn_sb_connection = ssl:192.0.2.1:6642,ssl:192.0.2.2:6642,ssl:[2001:db8::3]:6642
ovn_sb_private_key = KEY
ovn_sb_certificate = CERT
ovn_sb_ca_cert = CA
ovsdb_connection_timeout = 180
ovn_metadata_enabled = true

[agent]
root_helper = sudo neutron-rootwrap /etc/neutron/rootwrap.conf
"""


class RemotesTests(SynchronousTestCase):
    """C{ovn_sb_connection}: a comma-separated list of tcp:, ssl: and unix: remotes."""

    def test_good(self) -> None:
        """Every form the OVN agents accept."""
        self.assertEqual(ovsdb_remotes("tcp:192.0.2.1:6642, ssl:[2001:db8::1]:6642,unix:/run/ovn/ovnsb_db.sock,tcp:sb.example:6642"),
                         ("tcp:192.0.2.1:6642", "ssl:[2001:db8::1]:6642", "unix:/run/ovn/ovnsb_db.sock", "tcp:sb.example:6642"))

    def test_bad(self) -> None:
        """A passive remote, a missing port, an unknown scheme, nothing: refused, naming the remote."""
        for text in ("ptcp:6642", "tcp:192.0.2.1", "http://x:6642", "tcp:1.2.3.4:70000", "ssl:[zz]:6642", "unix:", " , "):
            e = self.assertRaises(ValueError, ovsdb_remotes, text)
            self.assertIn("tcp:IP:PORT, ssl:IP:PORT or unix:PATH", str(e))

    def test_ssl_files(self) -> None:
        """ssl: members need the three files, readable; other members none."""
        self.assertIsNone(ssl_files(("tcp:1.2.3.4:6642",), "", "", ""))
        e = self.assertRaises(ValueError, ssl_files, ("ssl:1.2.3.4:6642",), "", "c", "a")
        self.assertEqual(str(e), "[ovn] ovn_sb_connection has an ssl: member, so [ovn] ovn_sb_private_key must be set")
        e = self.assertRaises(ValueError, ssl_files, ("ssl:1.2.3.4:6642",), "/nonexistent/key", "c", "a")
        self.assertEqual(str(e), "[ovn] ovn_sb_private_key = /nonexistent/key: cannot read the file")


class OperatorFileTests(SynchronousTestCase):
    """An operator's networking_ovn_metadata_agent.ini works as it is."""

    def write(self, text: str) -> str:
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        for name in ("KEY", "CERT", "CA"):
            with open(os.path.join(directory, name), "w") as f:
                f.write("pem\n")
            text = text.replace(f"= {name}\n", f"= {directory}/{name}\n")
        path = os.path.join(directory, "networking_ovn_metadata_agent.ini")
        with open(path, "w") as f:
            f.write(text.replace("STATE", directory))
        return path

    def test_agent_ini(self) -> None:
        """The OVN metadata agent's file loads: the members, the TLS files, the defaults of the rest."""
        path = self.write(AGENT_INI + "[mdsvc]\nlookup = ovn\n")
        ovn = load_config(path).agent.ovn
        directory = os.path.dirname(path)
        self.assertEqual(ovn.connection, ("ssl:192.0.2.1:6642", "ssl:192.0.2.2:6642", "ssl:[2001:db8::3]:6642"))
        self.assertEqual((ovn.private_key, ovn.certificate, ovn.ca_cert), (f"{directory}/KEY", f"{directory}/CERT", f"{directory}/CA"))
        self.assertEqual((ovn.probe_interval, ovn.max_age, ovn.status_path), (60000, 60.0, f"{directory}/ovn-sb-replica.json"))
        self.assertEqual(check_config(path), [])
        Options().parseOptions(["--role", "agent", "--config", path])

    def test_bad_remote_names_file_and_line(self) -> None:
        """A bad member is one line naming the file, line, section and option."""
        path = self.write("[DEFAULT]\nstate_path = STATE\n[mdsvc]\nlookup = ovn\n\n[ovn]\novn_sb_connection = unix:/run/ovn/sb.sock,tcp:192.0.2.1\n")
        e = self.assertRaises(ConfigError, load_config, path)
        self.assertEqual(str(e), f"{path}:7: [ovn] ovn_sb_connection = <secret>: member 2 of 2 is not an OVSDB remote "
                                 "(allowed: a comma-separated list of tcp:IP:PORT, ssl:IP:PORT or unix:PATH)")
        e2 = self.assertRaises(UsageError, Options().parseOptions, ["--role", "network-node", "--config", path])
        self.assertEqual(str(e2), f"mdsvc: {e}")

    def test_bad_max_age(self) -> None:
        """A negative bound is refused with the line."""
        path = self.write("[DEFAULT]\nstate_path = STATE\n[mdsvc]\novn_replica_max_age = -1\n")
        e = self.assertRaises(ConfigError, load_config, path)
        self.assertEqual(str(e), f"{path}:4: [mdsvc] ovn_replica_max_age = '-1': allowed: a number >= 0")

    def test_ssl_without_files_stops_the_agent(self) -> None:
        """lookup = ovn with an ssl: member and no key: startup stops with one line naming the option."""
        path = self.write("[DEFAULT]\nstate_path = STATE\n[mdsvc]\nlookup = ovn\n[ovn]\novn_sb_connection = ssl:192.0.2.1:6642\n")
        e = self.assertRaises(UsageError, Options().parseOptions, ["--role", "agent", "--config", path])
        self.assertEqual(str(e), f"mdsvc: {path}: [ovn] ovn_sb_connection has an ssl: member, so [ovn] ovn_sb_private_key must be set")

    def test_ssl_files_only_checked_for_ovn(self) -> None:
        """Another lookup backend does not care about [ovn]."""
        path = self.write("[DEFAULT]\nstate_path = STATE\n[mdsvc]\nlookup = store\n[ovn]\novn_sb_connection = ssl:192.0.2.1:6642\n")
        Options().parseOptions(["--role", "agent", "--config", path])
