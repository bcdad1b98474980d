# -*- test-case-name: tests.test_ovn_replica -*-
"""
What the C{ovn} lookup keeps of a Southbound row, and Neutron's rules for reading it.

The OVN metadata agent (C{neutron.agent.ovn.metadata.server_socket} and the SB API's
C{get_network_port_bindings_by_ip}) reads four things of a C{Port_Binding}: whether it is bound
to a chassis (C{chassis}), the first entry of its C{mac} column (C{"MAC IP [IP...]"}), its
datapath, whose C{external_ids:name} is C{neutron-<network id>}, and the C{neutron:device_id}
and C{neutron:project_id} of its C{external_ids}.  These records hold exactly that (and the
device owner and logical port, for the owner rule and for logs), made in the monitor's thread
and read in the reactor's: they are immutable.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping

from attrs import frozen

#: the prefix Neutron gives OVN names of its objects (C{ovn_const.OVN_NAME_PREFIX})
NAME_PREFIX = "neutron-"
DEVICE_ID = "neutron:device_id"
DEVICE_OWNER = "neutron:device_owner"
PROJECT_ID = "neutron:project_id"
#: the device owners of Nova's servers (C{compute:<availability zone>}): the ports whose
#: device id is an instance
INSTANCE_OWNER_PREFIX = "compute:"


@frozen
class DatapathRecord:
    """
    A C{Datapath_Binding}: a logical switch (a Neutron network) or router.

    @ivar network_id: the network it stands for: C{external_ids:name} with the first
        C{neutron-} removed (Neutron's C{get_network_name_from_datapath}); None without a name.
    """

    uuid: str
    network_id: str | None


@frozen
class PortRecord:
    """
    A C{Port_Binding} as the lookup reads it.

    @ivar datapath: the uuid of its C{Datapath_Binding}.
    @ivar addresses: the words of the first C{mac} entry, IP addresses in their normal form
        (as L{mdsvc.hop.canonical_ip} gives the guest's) and the rest lower-case; empty when
        C{mac} is.
    @ivar bound: whether C{chassis} is set (a port no chassis has bound is not a guest's).
    """

    uuid: str
    datapath: str | None
    addresses: tuple[str, ...]
    bound: bool
    device_id: str
    device_owner: str
    project_id: str | None
    logical_port: str

    @property
    def is_instance(self) -> bool:
        """Whether the port is a Nova server's: device owner C{compute:*} and a device id."""
        return self.device_owner.startswith(INSTANCE_OWNER_PREFIX) and bool(self.device_id)


def network_of(external_ids: Mapping[str, str]) -> str | None:
    """The network id of a datapath: its C{name} without the first C{neutron-} (as Neutron reads it)."""
    name = external_ids.get("name")
    return None if name is None else name.replace(NAME_PREFIX, "", 1)


def address_words(mac_column: Iterable[str]) -> tuple[str, ...]:
    """
    The words of the first entry of a C{mac} column (the IDL keeps a set's strings sorted, so
    the first is the one Neutron's C{port.mac[0]} reads): C{"MAC IP [IP...]"} split on blanks,
    IP addresses in normal form, everything else lower-case (a MAC, C{unknown}, C{router}).
    """
    entries = sorted(mac_column)
    if not entries:
        return ()
    words = []
    for word in entries[0].split():
        words.append(normal_ip(word) or word.lower())
    return tuple(dict.fromkeys(words))


def normal_ip(word: str) -> str | None:
    """
    An IP address in the normal form of L{mdsvc.hop.canonical_ip} (an IPv4-mapped IPv6 address
    as IPv4), or None; not remembered (that memo is the request path's, this runs in the
    monitor's thread over every row).
    """
    if not ("." in word or ":" in word) or "/" in word or "%" in word:
        return None
    try:
        address = ipaddress.ip_address(word)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return str(address.ipv4_mapped)
    return str(address)


def port_record(uuid: str, datapath: str | None, mac_column: Iterable[str], bound: bool,
                external_ids: Mapping[str, str], logical_port: str) -> PortRecord:
    """A L{PortRecord} from the columns of a C{Port_Binding}."""
    return PortRecord(
        uuid=uuid, datapath=datapath, addresses=address_words(mac_column), bound=bound,
        device_id=external_ids.get(DEVICE_ID, ""), device_owner=external_ids.get(DEVICE_OWNER, ""),
        project_id=external_ids.get(PROJECT_ID) or None, logical_port=logical_port,
    )
