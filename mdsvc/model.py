# -*- test-case-name: tests.test_model -*-
"""
Value types for what Nova and Neutron know of an instance, and their document form.

An instance document (DESIGN.md, "Instance documents") is parsed by L{instanceFromDocument},
which validates every field and raises L{DocumentError} naming the first bad field.  Only
C{uuid} is required; every other field gets the default Nova would use.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
from contextvars import ContextVar
from typing import Any, Callable, Mapping, Sequence

import yaml
from attrs import field, frozen


class DocumentError(ValueError):
    """
    An instance or router document is invalid.

    @ivar where: the dotted path of the bad field, e.g. C{nics[0].mac}.
    @ivar problem: what is wrong with it.
    """

    def __init__(self, where: str, problem: str) -> None:
        super().__init__(f"{where}: {problem}" if where else problem)
        self.where = where
        self.problem = problem


@frozen
class Subnet:
    """A Neutron subnet as seen through one fixed IP of a port."""

    id: str | None = None
    cidr: str | None = None
    ip_version: int = 4
    gateway: str | None = None
    dns: tuple[str, ...] = ()
    routes: tuple[tuple[str, str], ...] = ()  # (destination CIDR, nexthop)
    enable_dhcp: bool = True
    ipv6_address_mode: str | None = None
    dhcp_server: str | None = None


@frozen
class FixedIp:
    """One fixed IP of a port, its subnet and the floating IPs associated with it."""

    ip: str
    subnet: Subnet
    floating_ips: tuple[str, ...] = ()


@frozen
class Network:
    """The Neutron network a port is on."""

    id: str | None = None
    name: str | None = None
    mtu: int | None = None
    network_type: str | None = None
    physical_network: str | None = None


@frozen
class Nic:
    """A port (VIF) of the instance, in Nova's network info order."""

    port_id: str | None = None
    mac: str | None = None
    vif_type: str | None = None
    vnic_type: str | None = None
    security_groups: tuple[str, ...] | None = None
    network: Network = field(factory=Network)
    fixed_ips: tuple[FixedIp, ...] = ()

    @property
    def devname(self) -> str | None:
        """The tap device name Neutron gives the port (C{tap} + the port id, 14 characters)."""
        if not self.port_id:
            return None
        return ("tap" + self.port_id)[:14]


@frozen
class KeyPair:
    """A key pair; only the first one of an instance is ever exposed."""

    name: str
    public_key: str
    type: str = "ssh"


@frozen
class BlockDevice:
    """One block device mapping record, as Nova keeps it."""

    source_type: str | None = None
    destination_type: str | None = None
    device_name: str | None = None
    guest_format: str | None = None
    boot_index: int | None = None
    volume_id: str | None = None
    volume_size: int | None = None
    image_id: str | None = None
    snapshot_id: str | None = None
    tag: str | None = None
    delete_on_termination: bool | None = None
    disk_bus: str | None = None
    device_type: str | None = None


@frozen
class Device:
    """A tagged device (device role tagging): a NIC, a disk or a share."""

    type: str
    bus: str | None = None
    address: str | None = None
    mac: str | None = None
    serial: str | None = None
    path: str | None = None
    tags: tuple[str, ...] = ()
    vlan: int | None = None
    vf_trusted: bool | None = None
    share_id: str | None = None
    tag: str | None = None


@frozen
class Flavor:
    """The instance's flavor."""

    name: str
    flavorid: str | None = None
    memory_mb: int | None = None
    vcpus: int | None = None
    root_gb: int | None = None
    ephemeral_gb: int | None = None
    swap: int | None = None
    extra_specs: Mapping[str, str] = field(factory=dict)


@frozen
class InjectedFile:
    """A personality file: config drive only."""

    path: str
    contents: bytes


@frozen
class Instance:
    """Everything the metadata API and the config drive render, for one instance."""

    uuid: str
    name: str
    hostname: str
    project_id: str | None = None
    user_id: str | None = None
    availability_zone: str | None = "nova"
    launch_index: int = 0
    reservation_id: str | None = None
    created_at: str | None = None
    flavor: Flavor | None = None
    image_id: str = ""
    kernel_id: str | None = None
    ramdisk_id: str | None = None
    ec2_instance_id: int | None = None
    ec2_image_ids: Mapping[str, int] = field(factory=dict)
    root_device_name: str | None = None
    default_ephemeral_device: str | None = None
    default_swap_device: str | None = None
    block_device_mappings: tuple[BlockDevice, ...] = ()
    key_pairs: tuple[KeyPair, ...] = ()
    user_data: bytes | None = None
    metadata: Mapping[str, str] = field(factory=dict)
    system_metadata: Mapping[str, str] = field(factory=dict)
    password: str | None = None
    security_groups: tuple[str, ...] = ("default",)
    nics: tuple[Nic, ...] = ()
    device_metadata: tuple[Device, ...] = ()
    dedicated_cpus: tuple[int, ...] = ()
    admin_pass: str | None = None
    injected_files: tuple[InjectedFile, ...] = ()

    @property
    def key_pair(self) -> KeyPair | None:
        """The instance's key pair (the first one), or None."""
        return self.key_pairs[0] if self.key_pairs else None

    def fixed_ips(self) -> list[FixedIp]:
        """All fixed IPs, in VIF order then subnet order."""
        return [fip for nic in self.nics for fip in nic.fixed_ips]

    def all_security_groups(self) -> list[str]:
        """Security group names of every port, first-seen order, without duplicates."""
        seen: dict[str, None] = {}
        if not self.nics:
            seen.update(dict.fromkeys(self.security_groups))
        for nic in self.nics:
            groups = nic.security_groups if nic.security_groups is not None else self.security_groups
            seen.update(dict.fromkeys(groups))
        return list(seen)


@frozen
class Router:
    """A Neutron router: guests on its networks reach metadata through its namespace."""

    id: str
    project_id: str | None = None
    networks: tuple[str, ...] = ()


# --- document parsing -------------------------------------------------------------------------

# An instance uuid or router id: canonical UUIDs, and the short ids labs and tests use ("i-1");
# never a control character, a blank, a slash or anything outside ASCII, nor "." or "..".
INSTANCE_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,254}")
# Every other id (project, user, network, port, subnet, image, volume...): printable ASCII
# without blanks (Keystone ids from LDAP may hold '@' or '=').
ID_PATTERN = re.compile(r"[!-~]{1,255}")
MAC_PATTERN = re.compile(r"^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$")
# A hostname or FQDN as Nova's API takes it (2.90 hostname / 2.94 fqdn): dot-separated labels
# of letters, digits, '-' and '_', each 1 to 63 long and starting and ending with a letter or
# digit (RFC 1123: no "-rf"), 255 characters in all.
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9])?"
HOSTNAME_PATTERN = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")
HOSTNAME_MAX = 255
# Nova's limit on user_data: 65,535 characters of base64 text (the servers API schema).
MAX_USERDATA_SIZE = 65535

# False while a stored document is read back: the checks that guard imports (ids, hostname,
# user_data size) are not applied again to documents imported under older rules.
_STRICT: ContextVar[bool] = ContextVar("mdsvc_model_strict", default=True)


def sanitize_hostname(hostname: str, default_name: str | None = None) -> str:
    """Nova's hostname sanitiser: what a display name becomes as a hostname."""
    hostname = hostname.encode("latin-1", "ignore").decode("latin-1")[:63]
    hostname = re.sub(r"[ _\.]", "-", hostname)
    hostname = re.sub(r"[^\w.-]+", "", hostname)
    hostname = hostname.lower().strip(".-")
    if hostname == "" and default_name is not None:
        return default_name[:63]
    return hostname


class _Reader:
    """Validating accessors over one JSON object, naming fields by their dotted path."""

    def __init__(self, obj: Any, where: str, allowed: Sequence[str]) -> None:
        if not isinstance(obj, dict):
            raise DocumentError(where, f"expected an object, got {kind_of(obj)}")
        for key in obj:
            if key not in allowed:
                raise DocumentError(_join(where, str(key)), "unknown field")
        self.obj = obj
        self.where = where

    def path(self, key: str) -> str:
        return _join(self.where, key)

    def has(self, key: str) -> bool:
        return key in self.obj

    def raw(self, key: str) -> Any:
        return self.obj.get(key)

    def str(self, key: str, default: Any = None, *, required: bool = False, pattern: re.Pattern[str] | None = None) -> Any:
        value = self.obj.get(key)
        if value is None:
            if required:
                raise DocumentError(self.path(key), "is required")
            return default
        if not isinstance(value, str):
            raise DocumentError(self.path(key), f"expected a string, got {kind_of(value)}")
        if pattern is not None and not pattern.fullmatch(value):
            raise DocumentError(self.path(key), f"{shown(value)} is not valid")
        return value

    def id(self, key: str, *, required: bool = False, pattern: re.Pattern[str] = ID_PATTERN, empty: bool = False) -> Any:
        """
        An id: a string matching C{pattern} on import (C{empty}: C{""} is allowed too, as a
        meaning of its own); any string when a stored document is read back.
        """
        value = self.str(key, required=required)
        if value is not None and _STRICT.get() and not (empty and value == "") and not pattern.fullmatch(value):
            raise DocumentError(self.path(key), f"{shown(value)} is not a valid id{_ID_RULES[pattern]}")
        return value

    def int(self, key: str, default: Any = None, minimum: int | None = None) -> Any:
        value = self.obj.get(key)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            raise DocumentError(self.path(key), f"expected an integer, got {kind_of(value)}")
        if minimum is not None and value < minimum:
            raise DocumentError(self.path(key), f"must be >= {minimum}, got {value}")
        return value

    def bool(self, key: str, default: Any = None) -> Any:
        value = self.obj.get(key)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise DocumentError(self.path(key), f"expected true or false, got {kind_of(value)}")
        return value

    def list(self, key: str, item: Callable[[Any, str], Any], default: Any = ()) -> Any:
        value = self.obj.get(key)
        if value is None:
            return default
        if not isinstance(value, list):
            raise DocumentError(self.path(key), f"expected a list, got {kind_of(value)}")
        return tuple(item(v, f"{self.path(key)}[{i}]") for i, v in enumerate(value))

    def strmap(self, key: str) -> dict[str, str]:
        value = self.obj.get(key)
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise DocumentError(self.path(key), f"expected an object, got {kind_of(value)}")
        for k, v in value.items():
            if not isinstance(v, str):
                raise DocumentError(_join(self.path(key), k), f"expected a string, got {kind_of(v)}")
        return dict(value)

    def choice(self, key: str, choices: Sequence[str], default: Any = None) -> Any:
        value = self.str(key, default)
        if value is not None and value not in choices:
            raise DocumentError(self.path(key), f"{value!r} is not one of {', '.join(choices)}")
        return value


_ID_RULES = {
    INSTANCE_ID_PATTERN: " (1 to 255 ASCII letters, digits, '.', '_' and '-', starting with a letter or digit)",
    ID_PATTERN: " (1 to 255 printable ASCII characters, no blanks)",
}


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def shown(value: str, limit: int = 60) -> str:
    """How an error quotes a bad value: its repr, cut after C{limit} characters."""
    return repr(value) if len(value) <= limit else repr(value[:limit]) + f"... ({len(value)} characters)"


def _id(value: Any, where: str) -> str:
    """A list item that is an id (a router's networks)."""
    text = _string(value, where)
    if _STRICT.get() and not ID_PATTERN.fullmatch(text):
        raise DocumentError(where, f"{shown(text)} is not a valid id{_ID_RULES[ID_PATTERN]}")
    return text


def _hostname(value: str, where: str) -> str:
    """A hostname given by the document: what Nova's API would take."""
    if not _STRICT.get():
        return value
    if value == "":
        raise DocumentError(where, "must not be empty")
    if len(value) > HOSTNAME_MAX or not HOSTNAME_PATTERN.fullmatch(value):
        raise DocumentError(
            where,
            f"{shown(value)} is not a valid hostname (dot-separated labels of 1 to 63 letters, digits, '-' and '_',"
            f" each starting and ending with a letter or digit; {HOSTNAME_MAX} characters in all)",
        )
    return value


def _user_data(value: Any, where: str) -> bytes:
    """user_data: base64 text of at most Nova's 65,535 characters (line breaks not counted)."""
    text = _string(value, where)
    if _STRICT.get():
        length = len("".join(text.split()))  # what _base64 decodes
        if length > MAX_USERDATA_SIZE:
            raise DocumentError(where, f"{length} base64 characters, more than Nova's limit of {MAX_USERDATA_SIZE}")
    return _base64(text, where)


def kind_of(value: Any, mapping: str = "an object") -> str:
    """How an error message names the type of a parsed JSON/YAML value (C{mapping} for dicts)."""
    if value is None:
        return "null"
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "a list", dict: mapping}.get(
        type(value), type(value).__name__
    )


class YAMLDocumentLoader(yaml.SafeLoader):
    """YAML without implicit timestamps: C{created_at: 2020-01-01} stays the string it reads as."""


YAMLDocumentLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _string(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise DocumentError(where, f"expected a string, got {kind_of(value)}")
    return value


def _int(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise DocumentError(where, f"expected an integer, got {kind_of(value)}")
    return value


def _ip(value: Any, where: str) -> str:
    text = _string(value, where)
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise DocumentError(where, f"{text!r} is not an IP address") from None


def _base64(value: Any, where: str) -> bytes:
    text = _string(value, where)
    try:
        # Line breaks and spaces are allowed, as in Nova (base64 tools wrap at 76 columns and
        # YAML block scalars keep newlines); any other character outside the alphabet is not.
        return base64.b64decode("".join(text.split()).encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise DocumentError(where, "is not valid base64") from None


def _route(value: Any, where: str) -> tuple[str, str]:
    r = _Reader(value, where, ("destination", "nexthop"))
    destination = r.str("destination", required=True)
    try:
        ipaddress.ip_network(destination, strict=False)
    except ValueError:
        raise DocumentError(r.path("destination"), f"{destination!r} is not a CIDR") from None
    return destination, _ip(r.raw("nexthop"), r.path("nexthop"))


def _subnet(value: Any, where: str, default_version: int = 4) -> Subnet:
    r = _Reader(value, where, ("id", "cidr", "ip_version", "gateway", "dns", "routes", "enable_dhcp", "ipv6_address_mode", "dhcp_server"))
    cidr = r.str("cidr")
    version = r.int("ip_version")
    if cidr is not None:
        try:
            net = ipaddress.ip_network(cidr, strict=False)
        except ValueError:
            raise DocumentError(r.path("cidr"), f"{cidr!r} is not a CIDR") from None
        if version is None:
            version = net.version
        elif version != net.version:
            raise DocumentError(r.path("ip_version"), f"is {version} but cidr {cidr} is IPv{net.version}")
    if version not in (None, 4, 6):
        raise DocumentError(r.path("ip_version"), f"must be 4 or 6, got {version}")
    return Subnet(
        id=r.id("id"),
        cidr=cidr,
        ip_version=version or default_version,
        gateway=_ip(r.raw("gateway"), r.path("gateway")) if r.raw("gateway") is not None else None,
        dns=r.list("dns", _ip),
        routes=r.list("routes", _route),
        enable_dhcp=r.bool("enable_dhcp", True),
        ipv6_address_mode=r.choice("ipv6_address_mode", ("slaac", "dhcpv6-stateful", "dhcpv6-stateless")),
        dhcp_server=_ip(r.raw("dhcp_server"), r.path("dhcp_server")) if r.raw("dhcp_server") is not None else None,
    )


def _fixed_ip(value: Any, where: str) -> FixedIp:
    r = _Reader(value, where, ("ip", "floating_ips", "subnet"))
    ip = _ip(r.raw("ip") if r.has("ip") else None, r.path("ip")) if r.has("ip") else None
    if ip is None:
        raise DocumentError(r.path("ip"), "is required")
    version = ipaddress.ip_address(ip).version
    # A subnet that gives neither cidr nor ip_version is of the fixed IP's version.
    subnet = _subnet(r.raw("subnet"), r.path("subnet"), version) if r.raw("subnet") is not None else Subnet(ip_version=version)
    if version != subnet.ip_version:
        raise DocumentError(r.path("ip"), f"{ip} is not an IPv{subnet.ip_version} address like its subnet")
    return FixedIp(ip=ip, subnet=subnet, floating_ips=r.list("floating_ips", _ip))


def _network(value: Any, where: str) -> Network:
    r = _Reader(value, where, ("id", "name", "mtu", "network_type", "physical_network"))
    return Network(
        id=r.id("id"), name=r.str("name"), mtu=r.int("mtu", minimum=68),
        network_type=r.str("network_type"), physical_network=r.str("physical_network"),
    )


def _nic(value: Any, where: str) -> Nic:
    r = _Reader(value, where, ("port_id", "mac", "vif_type", "vnic_type", "security_groups", "network", "fixed_ips"))
    mac = r.str("mac", pattern=MAC_PATTERN)
    return Nic(
        port_id=r.id("port_id"),
        mac=mac.lower() if mac else None,
        vif_type=r.str("vif_type"),
        vnic_type=r.str("vnic_type"),
        security_groups=r.list("security_groups", _string, default=None),
        network=_network(r.raw("network"), r.path("network")) if r.raw("network") is not None else Network(),
        fixed_ips=r.list("fixed_ips", _fixed_ip),
    )


def _key_pair(value: Any, where: str) -> KeyPair:
    r = _Reader(value, where, ("name", "type", "public_key"))
    return KeyPair(name=r.str("name", required=True), type=r.choice("type", ("ssh", "x509"), "ssh"), public_key=r.str("public_key", required=True))


def _block_device(value: Any, where: str) -> BlockDevice:
    names = [a.name for a in BlockDevice.__attrs_attrs__]  # type: ignore[attr-defined]
    r = _Reader(value, where, names)
    return BlockDevice(
        source_type=r.choice("source_type", ("blank", "image", "snapshot", "volume")),
        destination_type=r.choice("destination_type", ("local", "volume")),
        device_name=r.str("device_name"),
        guest_format=r.str("guest_format"),
        boot_index=r.int("boot_index"),
        volume_id=r.id("volume_id"),
        volume_size=r.int("volume_size", minimum=0),
        image_id=r.id("image_id"),
        snapshot_id=r.id("snapshot_id"),
        tag=r.str("tag"),
        delete_on_termination=r.bool("delete_on_termination"),
        disk_bus=r.str("disk_bus"),
        device_type=r.str("device_type"),
    )


def _device(value: Any, where: str) -> Device:
    names = [a.name for a in Device.__attrs_attrs__]  # type: ignore[attr-defined]
    r = _Reader(value, where, names)
    mac = r.str("mac", pattern=MAC_PATTERN)
    return Device(
        type=r.choice("type", ("nic", "disk", "share"), None) or _missing(r.path("type")),
        bus=r.choice("bus", ("pci", "usb", "scsi", "ide", "xen", "none")),
        address=r.str("address"),
        mac=mac.lower() if mac else None,
        serial=r.str("serial"),
        path=r.str("path"),
        tags=r.list("tags", _string),
        vlan=r.int("vlan", minimum=0),
        vf_trusted=r.bool("vf_trusted"),
        share_id=r.id("share_id"),
        tag=r.str("tag"),
    )


def _missing(where: str) -> Any:
    raise DocumentError(where, "is required")


def _flavor(value: Any, where: str) -> Flavor:
    if isinstance(value, str):
        return Flavor(name=value)
    r = _Reader(value, where, ("name", "flavorid", "memory_mb", "vcpus", "root_gb", "ephemeral_gb", "swap", "extra_specs"))
    return Flavor(
        name=r.str("name", required=True), flavorid=r.str("flavorid"), memory_mb=r.int("memory_mb", minimum=0),
        vcpus=r.int("vcpus", minimum=0), root_gb=r.int("root_gb", minimum=0), ephemeral_gb=r.int("ephemeral_gb", minimum=0),
        swap=r.int("swap", minimum=0), extra_specs=r.strmap("extra_specs"),
    )


def _injected_file(value: Any, where: str) -> InjectedFile:
    r = _Reader(value, where, ("path", "contents_b64"))
    path = r.str("path", required=True)
    if not path.startswith("/"):
        raise DocumentError(r.path("path"), f"{path!r} is not an absolute path")
    if "\x00" in path or ".." in path.split("/"):
        raise DocumentError(r.path("path"), f"{path!r} leads outside the guest's root ('..')")
    contents = r.raw("contents_b64")
    return InjectedFile(path=path, contents=_base64(contents, r.path("contents_b64")) if contents is not None else b"")


def _ec2_ids(value: Any, where: str) -> tuple[int | None, dict[str, int]]:
    r = _Reader(value, where, ("instance", "images"))
    images = r.raw("images")
    if images is None:
        images = {}
    if not isinstance(images, dict):
        raise DocumentError(r.path("images"), f"expected an object, got {kind_of(images)}")
    parsed = {}
    for k, v in images.items():
        if _STRICT.get() and not ID_PATTERN.fullmatch(k):
            raise DocumentError(r.path("images"), f"{shown(k)} is not a valid image id{_ID_RULES[ID_PATTERN]}")
        parsed[k] = _int(v, _join(r.path("images"), k))
        if not 0 <= parsed[k] <= 0xFFFFFFFF:
            raise DocumentError(_join(r.path("images"), k), "must be between 0 and 4294967295")
    instance = r.int("instance", minimum=0)
    if instance is not None and instance > 0xFFFFFFFF:
        raise DocumentError(r.path("instance"), "must be between 0 and 4294967295")
    return instance, parsed


INSTANCE_FIELDS = (
    "uuid", "name", "hostname", "project_id", "user_id", "availability_zone", "launch_index",
    "reservation_id", "created_at", "flavor", "image_id", "kernel_id", "ramdisk_id", "ec2_ids",
    "root_device_name", "default_ephemeral_device", "default_swap_device", "block_device_mappings",
    "key_pairs", "user_data", "metadata", "system_metadata", "password", "security_groups", "nics",
    "device_metadata", "dedicated_cpus", "admin_pass", "injected_files",
)


def instanceFromDocument(doc: Any, where: str = "", *, strict: bool = True) -> Instance:
    """
    Validate an instance document and build the L{Instance} it describes.

    @param strict: check everything an import checks; False for a document read back from the
        store, which was checked when it was imported (perhaps under older rules: it is served
        rather than failed).
    @raise DocumentError: naming the first invalid or unknown field.
    """
    token = _STRICT.set(strict)
    try:
        return _instance(doc, where)
    finally:
        _STRICT.reset(token)


def _instance(doc: Any, where: str) -> Instance:
    r = _Reader(doc, where, INSTANCE_FIELDS)
    uuid = r.id("uuid", required=True, pattern=INSTANCE_ID_PATTERN)
    name = r.str("name")
    if name is None:
        name = f"Server {uuid}"
    hostname = r.str("hostname")
    if hostname is None:
        hostname = sanitize_hostname(name, f"Server-{uuid}")
    else:
        hostname = _hostname(hostname, r.path("hostname"))
    ec2_instance, ec2_images = _ec2_ids(r.raw("ec2_ids"), r.path("ec2_ids")) if r.raw("ec2_ids") is not None else (None, {})
    cpus = r.list("dedicated_cpus", _int)
    for i, cpu in enumerate(cpus):
        if cpu < 0:
            raise DocumentError(f"{r.path('dedicated_cpus')}[{i}]", "must be >= 0")
    user_data = r.raw("user_data")
    return Instance(
        uuid=uuid,
        name=name,
        hostname=hostname,
        project_id=r.id("project_id"),
        user_id=r.id("user_id"),
        availability_zone=r.str("availability_zone", "nova"),
        launch_index=r.int("launch_index", 0, minimum=0),
        reservation_id=r.id("reservation_id"),
        created_at=r.str("created_at"),
        flavor=_flavor(r.raw("flavor"), r.path("flavor")) if r.raw("flavor") is not None else None,
        image_id=r.id("image_id", empty=True) or "",
        kernel_id=r.id("kernel_id", empty=True) or None,
        ramdisk_id=r.id("ramdisk_id", empty=True) or None,
        ec2_instance_id=ec2_instance,
        ec2_image_ids=ec2_images,
        root_device_name=r.str("root_device_name"),
        default_ephemeral_device=r.str("default_ephemeral_device"),
        default_swap_device=r.str("default_swap_device"),
        block_device_mappings=r.list("block_device_mappings", _block_device),
        key_pairs=r.list("key_pairs", _key_pair),
        user_data=_user_data(user_data, r.path("user_data")) if user_data is not None else None,
        metadata=r.strmap("metadata"),
        system_metadata=r.strmap("system_metadata"),
        password=r.str("password"),
        security_groups=r.list("security_groups", _string, default=("default",)),
        nics=r.list("nics", _nic),
        device_metadata=r.list("device_metadata", _device),
        dedicated_cpus=cpus,
        admin_pass=r.str("admin_pass"),
        injected_files=r.list("injected_files", _injected_file),
    )


def routerFromDocument(doc: Any, where: str = "", *, strict: bool = True) -> Router:
    """
    Validate a router document (C{{"id", "project_id", "networks": [...]}}).

    @param strict: as for L{instanceFromDocument}.
    @raise DocumentError: naming the first invalid or unknown field.
    """
    token = _STRICT.set(strict)
    try:
        r = _Reader(doc, where, ("id", "project_id", "networks"))
        return Router(
            id=r.id("id", required=True, pattern=INSTANCE_ID_PATTERN), project_id=r.id("project_id"), networks=r.list("networks", _id),
        )
    finally:
        _STRICT.reset(token)


def image_ids(instance_doc: Mapping[str, Any]) -> list[str]:
    """The Glance image ids an instance document refers to, which need EC2 ids."""
    ids = [instance_doc.get("image_id"), instance_doc.get("kernel_id"), instance_doc.get("ramdisk_id")]
    return [i for i in ids if isinstance(i, str) and i]
