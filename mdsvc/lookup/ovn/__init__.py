# -*- test-case-name: tests.test_ovn_backend -*-
"""
The C{ovn} lookup backend: ML2/OVN clouds, on a local replica of the OVN Southbound database.

C{[mdsvc] lookup = ovn} with the OVN metadata agent's C{[ovn] ovn_sb_connection} (and
C{ovn_sb_private_key}, C{ovn_sb_certificate}, C{ovn_sb_ca_cert} for C{ssl:} members).  The parts,
one job each:

  - L{mdsvc.lookup.ovn.monitor}: the OVSDB monitor (the C{ovs} library's IDL) in its own thread;
  - L{mdsvc.lookup.ovn.records}: what is kept of a row, and Neutron's rules for reading it;
  - L{mdsvc.lookup.ovn.replica}: the in-memory index, fed in the reactor's thread;
  - L{mdsvc.lookup.ovn.health}: in sync, lost (answering for C{ovn_replica_max_age} seconds),
    stale (503);
  - L{mdsvc.lookup.ovn.lookup}: the match, as Neutron's OVN metadata agent makes it;
  - L{mdsvc.lookup.ovn.front}: the agent's lookup cache forgets what each change may change;
  - L{mdsvc.lookup.ovn.service}: the service running the monitor beside the agent;
  - L{mdsvc.lookup.ovn.status}: the status file C{mdsvc-manage ovn-status} reads.
"""

from __future__ import annotations

from typing import Any


def build_ovn_lookup(config: Any, reactor: Any) -> Any:
    """
    The C{ovn} backend of an L{mdsvc.config.OvnConfig}: an L{mdsvc.lookup.ovn.lookup.OvnLookup}
    whose C{service} runs the monitor.

    @raise ValueError: one line: the C{ovs} library is missing, or an C{ssl:} member lacks its
        files.
    """
    check_ovn(config)
    from mdsvc.lookup.ovn.health import ReplicaHealth
    from mdsvc.lookup.ovn.lookup import OvnLookup
    from mdsvc.lookup.ovn.monitor import SouthboundMonitor
    from mdsvc.lookup.ovn.remotes import ssl_files
    from mdsvc.lookup.ovn.replica import SouthboundReplica
    from mdsvc.lookup.ovn.service import ReplicaService

    ssl = ssl_files(config.connection, config.private_key, config.certificate, config.ca_cert)
    replica = SouthboundReplica()
    health = ReplicaHealth(reactor, config.max_age, config.connection)

    def monitor(deliver: Any) -> SouthboundMonitor:
        return SouthboundMonitor(config.connection, deliver, config.probe_interval, ssl)

    service = ReplicaService(reactor, monitor, replica, health, config.status_path)
    return OvnLookup(replica, health, service)


def check_ovn(config: Any) -> None:
    """
    What would stop the C{ovn} backend from starting, found without starting it.

    @raise ValueError: one line.
    """
    from mdsvc.lookup.ovn.remotes import ssl_files

    try:
        import ovs.db.idl  # noqa: F401
    except ImportError:
        raise ValueError("lookup = ovn needs the ovs Python library (pip install ovs)") from None
    ssl_files(config.connection, config.private_key, config.certificate, config.ca_cert)
