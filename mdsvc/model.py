# -*- test-case-name: tests.test_model -*-
"""
Value types for what Nova and Neutron know of an instance, and their document form.

Every field of an instance or router document is declared once, here, on the attribute that
holds it (L{mdsvc.schema.declared}): its key, shape, default, checks and meaning.  From those
declarations L{instance_from_document} and L{router_from_document} check a document and build its
value (raising L{DocumentError} naming the first bad field), the store reaches the fields it
assigns, and C{docs/instance-documents.md} lists them (C{python -m mdsvc.docpage}).  Only
C{uuid} (a router's C{id}) is required; every other field gets the default Nova would use.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
import uuid as uuidlib
from collections.abc import Mapping
from functools import partial
from typing import Any

import attrs
import yaml
from attrs import frozen

from mdsvc.hop import canonical_ip
from mdsvc.schema import (
    Boolean,
    Choice,
    DocumentError,
    Found,
    Integer,
    ListOf,
    MapOf,
    Record,
    Text,
    declared,
    declared_fields,
    finishes,
    kind_of,
    read_document,
    shown,
)

__all__ = [
    "BlockDevice", "Device", "DocumentError", "FixedIp", "Flavor", "InjectedFile", "Instance", "KeyPair", "Network", "Nic",
    "Route", "Router", "Subnet", "YAMLDocumentLoader", "image_ids", "instance_from_document", "kind_of", "router_from_document",
    "sanitize_hostname", "shown",
]

# --- rules of values ---------------------------------------------------------------------------

# An instance's uuid: the canonical form Nova gives every instance (str(uuid.UUID(...))), which is
# what Neutron ports name as their device_id and what guests read back as their uuid.
UUID_PATTERN = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
UUID_RULE = "a canonical UUID: 8-4-4-4-12 lowercase hexadecimal digits, such as 6e7f5b2a-1c1d-4a55-9f3e-2b9d1c0a7e11"
# A router id: canonical UUIDs, and the short ids labs and tests use ("r-1"); never a control
# character, a blank, a slash or anything outside ASCII, nor "." or "..".
ROUTER_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,254}")
ROUTER_ID_RULE = "1 to 255 ASCII letters, digits, '.', '_' and '-', starting with a letter or digit"
# Every other id (project, user, network, port, subnet, image, volume...): printable ASCII
# without blanks (Keystone ids from LDAP may hold '@' or '=').
ID_PATTERN = re.compile(r"[!-~]{1,255}")
ID_RULE = "1 to 255 printable ASCII characters, no blanks"
MAC_PATTERN = re.compile(r"^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$")
# A hostname or FQDN as Nova's API takes it (2.90 hostname / 2.94 fqdn): dot-separated labels
# of letters, digits, '-' and '_', each 1 to 63 long and starting and ending with a letter or
# digit (RFC 1123: no "-rf"), 255 characters in all.
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9])?"
HOSTNAME_PATTERN = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")
HOSTNAME_MAX = 255
HOSTNAME_RULE = (
    "dot-separated labels of 1 to 63 letters, digits, '-' and '_', each starting and ending with a letter or digit;"
    f" {HOSTNAME_MAX} characters in all"
)
# Nova's limit on user_data: 65,535 characters of base64 text (the servers API schema).
MAX_USERDATA_SIZE = 65535
EC2_ID_MAX = 0xFFFFFFFF


def _check_id(pattern: re.Pattern[str], rule: str, what: str, value: str, where: str) -> None:
    """An id matches C{pattern} (import only: stored documents keep the ids they were imported with)."""
    if not pattern.fullmatch(value):
        raise DocumentError(where, f"{shown(value)} is not a valid {what} ({rule})")


def _check_uuid(value: str, where: str) -> None:
    """An instance's uuid is canonical (another spelling of a UUID is named in its canonical form)."""
    if UUID_PATTERN.fullmatch(value):
        return
    try:
        hint = f"; write it {uuidlib.UUID(value)}"
    except ValueError:
        hint = ""
    raise DocumentError(where, f"{shown(value)} is not a valid uuid ({UUID_RULE}{hint})")


def _check_glance_id(value: str, where: str) -> None:
    """A Glance image id, or C{""}: none."""
    if value != "":
        _check_id(ID_PATTERN, ID_RULE, "id", value, where)


def _none_if_empty(value: str, where: str) -> str | None:
    """C{""} means none."""
    return value or None


def _check_hostname(value: str, where: str) -> None:
    """A hostname given by the document: what Nova's API would take."""
    if value == "":
        raise DocumentError(where, "must not be empty")
    if len(value) > HOSTNAME_MAX or not HOSTNAME_PATTERN.fullmatch(value):
        raise DocumentError(where, f"{shown(value)} is not a valid hostname ({HOSTNAME_RULE})")


def _check_user_data_size(value: str, where: str) -> None:
    """user_data: at most Nova's 65,535 base64 characters (line breaks not counted)."""
    length = len("".join(value.split()))  # what _base64 decodes
    if length > MAX_USERDATA_SIZE:
        raise DocumentError(where, f"{length} base64 characters, more than Nova's limit of {MAX_USERDATA_SIZE}")


def _base64(value: str, where: str) -> bytes:
    """The bytes of base64 text."""
    try:
        # Line breaks and spaces are allowed, as in Nova (base64 tools wrap at 76 columns and
        # YAML block scalars keep newlines); any other character outside the alphabet is not.
        return base64.b64decode("".join(value.split()).encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise DocumentError(where, "is not valid base64") from None


def _ip(value: str, where: str) -> str:
    """An IP address, kept as written (Nova passes Neutron's text on); lookups compare its normal
    form (L{mdsvc.hop.canonical_ip})."""
    if canonical_ip(value) is None:
        raise DocumentError(where, f"{value!r} is not an IP address")
    return value.strip()


def _cidr(value: str, where: str) -> str:
    """A CIDR (host bits may be set), kept as written."""
    try:
        ipaddress.ip_network(value, strict=False)
    except ValueError:
        raise DocumentError(where, f"{value!r} is not a CIDR") from None
    return value


def _mac(value: str, where: str) -> str:
    """A MAC address, kept as written (Nova passes Neutron's text on); lookups ignore its case."""
    if not MAC_PATTERN.fullmatch(value):
        raise DocumentError(where, f"{shown(value)} is not valid")
    return value


def _guest_path(value: str, where: str) -> str:
    """An absolute path that stays inside the guest's root."""
    if not value.startswith("/"):
        raise DocumentError(where, f"{value!r} is not an absolute path")
    if "\x00" in value or ".." in value.split("/"):
        raise DocumentError(where, f"{value!r} leads outside the guest's root ('..')")
    return value


# The shapes many fields share.
TEXT = Text()
ID = Text(kind="string (id)", on_import=partial(_check_id, ID_PATTERN, ID_RULE, "id"), imported=ID_RULE)
INSTANCE_UUID = Text(kind="string (UUID)", on_import=_check_uuid, imported=UUID_RULE)
ROUTER_ID = Text(
    kind="string (id)", on_import=partial(_check_id, ROUTER_ID_PATTERN, ROUTER_ID_RULE, "id"), imported=ROUTER_ID_RULE,
)
IMAGE_ID = Text(kind="string (Glance image id)", on_import=_check_glance_id, imported=f"`\"\"` or {ID_RULE}")
IMAGE_ID_OR_NONE = Text(
    kind="string (Glance image id)", rule='`""` is none', check=_none_if_empty, on_import=_check_glance_id,
    imported=f"`\"\"` or {ID_RULE}",
)
HOSTNAME = Text(on_import=_check_hostname, imported="not empty; " + HOSTNAME_RULE)
IP = Text(rule="an IP address (kept as written: Nova passes Neutron's text on)", check=_ip)
CIDR = Text(rule="a CIDR", check=_cidr)
MAC = Text(rule="six hex pairs separated by ':' (kept as written; lookups ignore case)", check=_mac)
BASE64 = Text(kind="string (base64)", rule="line breaks and blanks allowed", check=_base64)
USER_DATA = Text(
    kind="string (base64)", rule="line breaks and blanks allowed", check=_base64, on_import=_check_user_data_size,
    imported=f"at most {MAX_USERDATA_SIZE} base64 characters (Nova's limit; line breaks not counted)",
)
GUEST_PATH = Text(rule="an absolute path without '..'", check=_guest_path)
SIZE = Integer(minimum=0)
EC2_ID = Integer(minimum=0, maximum=EC2_ID_MAX)

# --- the value types, their fields declared ----------------------------------------------------


@frozen
class Route:
    """A static route of a subnet; a L{Subnet} keeps it as a C{(destination, nexthop)} pair."""

    destination: str = declared(CIDR, "the destination range")
    nexthop: str = declared(IP, "the next hop")


@frozen
class Subnet:
    """A Neutron subnet as seen through one fixed IP of a port."""

    id: str | None = declared(ID, "the Neutron subnet's id", default=None)
    cidr: str | None = declared(CIDR, "the subnet's range", default=None)
    # None only while a document is read: the fixed IP holding the subnet then sets it.
    ip_version: int = declared(
        Integer(choices=(4, 6)), "its IP version; must agree with `cidr`", default=4,
        derived="the version of `cidr`, else of the fixed IP",
    )
    gateway: str | None = declared(IP, "the default gateway; none: no default route", default=None)
    dns: tuple[str, ...] = declared(ListOf(IP, unique=True), "DNS servers", default=())
    routes: tuple[tuple[str, str], ...] = declared(
        ListOf(Record(Route, then=attrs.astuple), unique=True), "static routes besides the default one", default=(),
    )
    enable_dhcp: bool = declared(Boolean(), "whether Neutron serves DHCP on the subnet", default=True)
    ipv6_address_mode: str | None = declared(
        Choice(("slaac", "dhcpv6-stateful", "dhcpv6-stateless")), "how IPv6 guests get their address", default=None,
    )
    dhcp_server: str | None = declared(IP, "the DHCP server's address", default=None)


@frozen
class FixedIp:
    """One fixed IP of a port, its subnet and the floating IPs associated with it."""

    ip: str = declared(IP, "the address; of its subnet's IP version")
    subnet: Subnet = declared(Record(Subnet), "the subnet holding the address", derived="an empty subnet of the address's version")
    floating_ips: tuple[str, ...] = declared(ListOf(IP, unique=True), "floating IPs associated with the address", default=())


@frozen
class Network:
    """The Neutron network a port is on."""

    id: str | None = declared(ID, "the Neutron network's id", default=None)
    name: str | None = declared(TEXT, "its name", default=None)
    mtu: int | None = declared(Integer(minimum=68), "its MTU", default=None)
    network_type: str | None = declared(TEXT, "its provider type (`vxlan`, `vlan`, `flat`, ...)", default=None)
    physical_network: str | None = declared(TEXT, "its provider physical network", default=None)


@frozen
class Nic:
    """A port (VIF) of the instance, in Nova's network info order."""

    port_id: str | None = declared(ID, "the Neutron port's id (its tap device is `tap` + its first 11 characters)", default=None)
    mac: str | None = declared(MAC, "the port's MAC address", default=None)
    vif_type: str | None = declared(TEXT, "Neutron's VIF type (`ovs`, `bridge`, ...)", default=None)
    vnic_type: str | None = declared(TEXT, "Neutron's VNIC type (`normal`, `direct`, ...)", default=None)
    security_groups: tuple[str, ...] | None = declared(
        ListOf(TEXT), "the port's security group names (`[]`: none); absent: the instance's", default=None,
    )
    network: Network = declared(Record(Network), "the network the port is on", factory=Network)
    fixed_ips: tuple[FixedIp, ...] = declared(ListOf(Record(FixedIp)), "the port's fixed IPs, in subnet order", default=())

    @property
    def devname(self) -> str | None:
        """The tap device name Neutron gives the port (C{tap} + the port id, 14 characters)."""
        if not self.port_id:
            return None
        return ("tap" + self.port_id)[:14]


@frozen
class KeyPair:
    """A key pair; only the first one of an instance is ever exposed."""

    name: str = declared(TEXT, "the key pair's name")
    public_key: str = declared(TEXT, "the public key, as the guest receives it")
    type: str = declared(Choice(("ssh", "x509")), "the key's type", default="ssh")


@frozen
class BlockDevice:
    """One block device mapping record, as Nova keeps it."""

    source_type: str | None = declared(Choice(("blank", "image", "snapshot", "volume")), "where the disk comes from", default=None)
    destination_type: str | None = declared(Choice(("local", "volume")), "where the disk lives", default=None)
    device_name: str | None = declared(TEXT, "its device in the guest (`/dev/vdb`)", default=None)
    guest_format: str | None = declared(TEXT, "its file system (`swap` makes it the swap disk)", default=None)
    boot_index: int | None = declared(Integer(), "its place in the boot order", default=None)
    volume_id: str | None = declared(ID, "the Cinder volume's id", default=None)
    volume_size: int | None = declared(SIZE, "its size in GiB", default=None)
    image_id: str | None = declared(ID, "the Glance image it is made from", default=None)
    snapshot_id: str | None = declared(ID, "the snapshot it is made from", default=None)
    tag: str | None = declared(TEXT, "its device role tag", default=None)
    delete_on_termination: bool | None = declared(Boolean(), "whether it goes with the instance", default=None)
    disk_bus: str | None = declared(TEXT, "its bus (`virtio`, `scsi`, ...)", default=None)
    device_type: str | None = declared(TEXT, "its type (`disk`, `cdrom`, ...)", default=None)


@frozen
class Device:
    """A tagged device (device role tagging): a NIC, a disk or a share."""

    type: str = declared(Choice(("nic", "disk", "share")), "what the device is")
    bus: str | None = declared(Choice(("pci", "usb", "scsi", "ide", "xen", "none")), "the bus it is on", default=None)
    address: str | None = declared(TEXT, "its address on the bus (`0000:00:03.0`)", default=None)
    mac: str | None = declared(MAC, "a NIC's MAC address", default=None)
    serial: str | None = declared(TEXT, "a disk's serial number", default=None)
    path: str | None = declared(TEXT, "a disk's path", default=None)
    tags: tuple[str, ...] = declared(ListOf(TEXT), "the tags the user gave it", default=())
    vlan: int | None = declared(SIZE, "a NIC's VLAN", default=None)
    vf_trusted: bool | None = declared(Boolean(), "whether a NIC's SR-IOV virtual function is trusted", default=None)
    share_id: str | None = declared(ID, "a share's Manila id", default=None)
    tag: str | None = declared(TEXT, "a share's tag", default=None)


@frozen
class Flavor:
    """The instance's flavor."""

    name: str = declared(TEXT, "the flavor's name")
    flavorid: str | None = declared(TEXT, "its id", default=None)
    memory_mb: int | None = declared(SIZE, "memory, MiB", default=None)
    vcpus: int | None = declared(SIZE, "virtual CPUs", default=None)
    root_gb: int | None = declared(SIZE, "root disk, GiB", default=None)
    ephemeral_gb: int | None = declared(SIZE, "ephemeral disk, GiB", default=None)
    swap: int | None = declared(SIZE, "swap disk, MiB", default=None)
    extra_specs: Mapping[str, str] = declared(MapOf(TEXT), "its extra specs", factory=dict)


@frozen
class InjectedFile:
    """A personality file: config drive only."""

    path: str = declared(GUEST_PATH, "where the file goes in the guest")
    contents: bytes = declared(BASE64, "its contents", key="contents_b64", default=b"")


@frozen
class Instance:
    """Everything the metadata API and the config drive render, for one instance."""

    uuid: str = declared(INSTANCE_UUID, "the instance's id")
    name: str = declared(TEXT, "its display name", derived="`Server <uuid>`")
    hostname: str = declared(HOSTNAME, "its hostname or FQDN", derived="Nova's sanitised `name`")
    project_id: str | None = declared(ID, "the project (tenant) owning it", default=None)
    user_id: str | None = declared(ID, "the user who booted it", default=None)
    availability_zone: str | None = declared(TEXT, "its availability zone", default="nova")
    launch_index: int = declared(SIZE, "its index among instances booted together", default=0)
    reservation_id: str | None = declared(
        ID, "the id of the boot request", default=None,
        assigned="assigned on import: `r-` and 8 random characters from 0-9 and a-z",
    )
    created_at: str | None = declared(TEXT, "when it was created (ISO 8601)", default=None, assigned="assigned on import: the time of the import")
    flavor: Flavor | None = declared(Record(Flavor, shorthand="name"), "its flavor", default=None)
    image_id: str = declared(IMAGE_ID, 'the Glance image it boots from; `""`: boot from volume', default="", ec2_image=True)
    kernel_id: str | None = declared(IMAGE_ID_OR_NONE, "its kernel image", default=None, ec2_image=True)
    ramdisk_id: str | None = declared(IMAGE_ID_OR_NONE, "its ramdisk image", default=None, ec2_image=True)
    ec2_instance_id: int | None = declared(
        EC2_ID, "the number behind its EC2 id `i-%08x`", key="ec2_ids.instance", default=None,
        assigned="assigned on import: the next free number",
    )
    ec2_image_ids: Mapping[str, int] = declared(
        MapOf(EC2_ID, keys=Text(kind="image id", on_import=partial(_check_id, ID_PATTERN, ID_RULE, "image id"), imported=ID_RULE)),
        "the numbers behind `ami-`/`aki-`/`ari-%08x`, by Glance image id", key="ec2_ids.images", factory=dict,
        assigned="assigned on import for the document's images: one number per image, shared by every instance",
    )
    root_device_name: str | None = declared(TEXT, "the root disk's device (`/dev/vda`)", default=None)
    default_ephemeral_device: str | None = declared(TEXT, "the ephemeral disk's device", default=None)
    default_swap_device: str | None = declared(TEXT, "the swap disk's device", default=None)
    block_device_mappings: tuple[BlockDevice, ...] = declared(
        ListOf(Record(BlockDevice)), "its disks, as Nova's block device mappings", default=(),
    )
    key_pairs: tuple[KeyPair, ...] = declared(ListOf(Record(KeyPair)), "its key pairs; the first is the instance's key", default=())
    user_data: bytes | None = declared(USER_DATA, "the user data", default=None)
    metadata: Mapping[str, str] = declared(MapOf(TEXT), "the user's metadata", factory=dict)
    system_metadata: Mapping[str, str] = declared(MapOf(TEXT), "Nova's system metadata", factory=dict)
    password: str | None = declared(
        TEXT, "the password the guest posted (kept across re-imports; stored only for an instance that has none)", default=None,
    )
    security_groups: tuple[str, ...] = declared(
        ListOf(TEXT), "security group names of every port that gives none (listed once per such port, as Nova lists Neutron's)",
        default=("default",),
    )
    nics: tuple[Nic, ...] = declared(ListOf(Record(Nic)), "its ports, in Nova's network info order", default=())
    device_metadata: tuple[Device, ...] = declared(ListOf(Record(Device)), "its tagged devices", default=())
    dedicated_cpus: tuple[int, ...] = declared(ListOf(SIZE), "the host CPUs pinned to it", default=())
    admin_pass: str | None = declared(TEXT, "the admin password (config drive only)", default=None)
    injected_files: tuple[InjectedFile, ...] = declared(
        ListOf(Record(InjectedFile)), "personality files (config drive only)", default=(),
    )

    @property
    def key_pair(self) -> KeyPair | None:
        """The instance's key pair (the first one), or None."""
        return self.key_pairs[0] if self.key_pairs else None

    def fixed_ips(self) -> list[FixedIp]:
        """All fixed IPs, in VIF order then subnet order."""
        return [fip for nic in self.nics for fip in nic.fixed_ips]

    def all_security_groups(self) -> list[str]:
        """
        The security group names Nova lists (C{security_group_api.get_instance_security_groups}:
        Neutron's groups of each of the instance's ports, in port order): each port's own groups,
        else the instance's, duplicates kept; an instance without ports has none.
        """
        return [group for nic in self.nics for group in self.port_security_groups(nic)]

    def port_security_groups(self, nic: Nic) -> tuple[str, ...]:
        """The groups of one port: its own (C{[]}: none, port security off), else the instance's."""
        return nic.security_groups if nic.security_groups is not None else self.security_groups


@frozen
class Router:
    """A Neutron router: guests on its networks reach metadata through its namespace."""

    id: str = declared(ROUTER_ID, "the router's id")
    project_id: str | None = declared(ID, "the project owning it", default=None)
    networks: tuple[str, ...] = declared(ListOf(ID), "the ids of the networks attached to it", default=())


# --- what spans fields -------------------------------------------------------------------------


@finishes(Subnet)
def _subnet_version(found: Found) -> None:
    """A subnet's IP version is its cidr's; without either, its fixed IP sets it (L{_fixed_ip_version})."""
    values = found.values
    cidr = values["cidr"]
    if cidr is None:
        return
    version = ipaddress.ip_network(cidr, strict=False).version
    if values["ip_version"] is None:
        values["ip_version"] = version
    elif values["ip_version"] != version:
        raise found.error("ip_version", f"is {values['ip_version']} but cidr {cidr} is IPv{version}")


@finishes(FixedIp)
def _fixed_ip_version(found: Found) -> None:
    """A fixed IP is of its subnet's version; a subnet that says none is of the fixed IP's."""
    values = found.values
    ip = values["ip"]
    version = 6 if ":" in ip else 4
    subnet = values["subnet"]
    if subnet is None:
        values["subnet"] = Subnet(ip_version=version)
    elif subnet.ip_version is None:
        values["subnet"] = attrs.evolve(subnet, ip_version=version)
    elif subnet.ip_version != version:
        raise found.error("ip", f"{ip} is not an IPv{subnet.ip_version} address like its subnet")


@finishes(Instance)
def _instance_names(found: Found) -> None:
    """Nova's defaults: the name C{Server <uuid>}, the hostname the sanitised name."""
    values = found.values
    uuid = values["uuid"]
    if values["name"] is None:
        values["name"] = f"Server {uuid}"
    if values["hostname"] is None:
        values["hostname"] = sanitize_hostname(values["name"], f"Server-{uuid}")


def sanitize_hostname(hostname: str, default_name: str | None = None) -> str:
    """Nova's hostname sanitiser: what a display name becomes as a hostname."""
    hostname = hostname.encode("latin-1", "ignore").decode("latin-1")[:63]
    hostname = re.sub(r"[ _\.]", "-", hostname)
    hostname = re.sub(r"[^\w.-]+", "", hostname)
    hostname = hostname.lower().strip(".-")
    if hostname == "" and default_name is not None:
        return default_name[:63]
    return hostname


# --- reading documents -------------------------------------------------------------------------


class YAMLDocumentLoader(yaml.SafeLoader):
    """YAML without implicit timestamps: C{created_at: 2020-01-01} stays the string it reads as."""


YAMLDocumentLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def instance_from_document(doc: Any, where: str = "", *, strict: bool = True) -> Instance:
    """
    Validate an instance document and build the L{Instance} it describes.

    @param where: the path of the document itself (C{"[3]"}), prefixed to every error's path.
    @param strict: check everything an import checks; False for a document read back from the
        store, which was checked when it was imported (perhaps under older rules: it is served
        rather than failed).
    @raise DocumentError: naming the first invalid or unknown field.
    """
    return read_document(Instance, doc, where, strict)


def router_from_document(doc: Any, where: str = "", *, strict: bool = True) -> Router:
    """
    Validate a router document (C{{"id", "project_id", "networks": [...]}}).

    @param strict: as for L{instance_from_document}.
    @raise DocumentError: naming the first invalid or unknown field.
    """
    return read_document(Router, doc, where, strict)


def image_ids(instance_doc: Mapping[str, Any]) -> list[str]:
    """The Glance image ids an instance document refers to, which need EC2 ids."""
    ids = [f.get(instance_doc) for f in declared_fields(Instance) if f.declaration.ec2_image]
    return [i for i in ids if isinstance(i, str) and i]
