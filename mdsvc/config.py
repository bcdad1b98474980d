# -*- test-case-name: tests.test_config -*-
"""
Configuration from INI files that use the option names of nova.conf and metadata_agent.ini.

An operator's existing files work as they are: unknown sections and options are ignored,
C{$name} / C{${name}} substitution works as in oslo.config, and a bad value stops startup with
one line naming the file, line, section, option and what is allowed (L{ConfigError}).

One table, L{OPTIONS}, says everything about every option: where it lives, how it parses, its
default, its help text, which parts of mdsvc read it (so which sample configs show it) and
which field of the parsed L{Config} it fills. Fields computed from several options are the
small functions of L{DERIVED}. Several files make one configuration as in oslo.config: later
files win, option by option (L{load_config}, L{config_files}).
"""

from __future__ import annotations

import configparser
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import attrs
from attrs import define, field, frozen

from mdsvc.lookup.ovn.remotes import ovsdb_remotes


class ConfigError(Exception):
    """
    A configuration file is unreadable or holds a bad value; C{str()} is one line for the operator.

    @ivar lines: every problem found, one line each (the first is C{str()}); a file with several
        syntax errors reports them all to C{check-config}.
    """

    def __init__(self, message: str, lines: list[str] | None = None) -> None:
        super().__init__(message)
        self.lines = lines if lines else [message]


# --- value types --------------------------------------------------------------------------------

_TRUE = {"1", "true", "yes", "on", "y", "t"}
_FALSE = {"0", "false", "no", "off", "n", "f"}


def boolean(text: str) -> bool:
    """oslo.config booleans: true/false, yes/no, on/off, 1/0 (any case)."""
    value = text.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError("allowed: true or false")


def integer(minimum: int | None = None, maximum: int | None = None) -> Callable[[str], int]:
    """An integer within bounds."""

    def parse(text: str) -> int:
        try:
            value = int(text.strip())
        except ValueError:
            raise ValueError(f"allowed: an integer{_bounds(minimum, maximum)}") from None
        if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
            raise ValueError(f"allowed: an integer{_bounds(minimum, maximum)}")
        return value

    return parse


def number(minimum: float | None = None) -> Callable[[str], float]:
    """A float with a lower bound."""

    def parse(text: str) -> float:
        try:
            value = float(text.strip())
        except ValueError:
            raise ValueError(f"allowed: a number{_bounds(minimum, None)}") from None
        if minimum is not None and value < minimum:
            raise ValueError(f"allowed: a number{_bounds(minimum, None)}")
        return value

    return parse


def _bounds(minimum: float | None, maximum: float | None) -> str:
    if minimum is not None and maximum is not None:
        return f" from {minimum} to {maximum}"
    if minimum is not None:
        return f" >= {minimum}"
    if maximum is not None:
        return f" <= {maximum}"
    return ""


def string(text: str) -> str:
    """A string, stripped of surrounding whitespace."""
    return text.strip()


def raw(text: str) -> str:
    """Text exactly as written, surrounding blanks included (a secret is whatever its owner typed)."""
    return text


def optional(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """C{parse}, except that an empty value is None (unset)."""

    def parse_optional(text: str) -> Any:
        return parse(text) if text.strip() else None

    return parse_optional


def choice(*choices: str) -> Callable[[str], str]:
    """One of fixed choices."""

    def parse(text: str) -> str:
        value = text.strip()
        if value not in choices:
            raise ValueError(f"allowed: {' | '.join(choices)}")
        return value

    return parse


def list_of(item: Callable[[str], Any] = string, sep: str | None = ",") -> Callable[[str], tuple[Any, ...]]:
    """A comma-separated list (oslo ListOpt), or whitespace-separated when C{sep} is None."""

    def parse(text: str) -> tuple[Any, ...]:
        parts = text.split(sep) if sep else text.split()
        return tuple(item(p.strip()) for p in parts if p.strip())

    return parse


_ENDPOINT_RULE = "allowed: a Twisted endpoint string such as tcp:8775:interface=127.0.0.1 or unix:/run/mdsvc/api.sock"


def endpoint(text: str) -> str:
    """
    A Twisted server endpoint string. Its type and arguments are checked here; what depends on
    the host (a certificate file, a systemd socket, the address itself) when it listens.
    """
    value = text.strip()
    if not re.match(r"^[a-z0-9]+:", value):
        raise ValueError(_ENDPOINT_RULE)
    _check_endpoint(value, _ENDPOINT_RULE)
    return value


def _check_endpoint(value: str, rule: str) -> None:
    """Parse C{value} as Twisted does (without listening): an unknown type or argument is an error."""
    from twisted.internet.endpoints import serverFromString

    try:
        serverFromString(None, value)
    except (ValueError, TypeError) as e:
        raise ValueError(f"{rule} ({' '.join(str(e).split())})") from None
    except Exception:
        pass  # a file, a descriptor... of this host: the listener says, naming the option


def listeners(text: str) -> tuple[Listener, ...]:
    """C{[proxy] listeners}: one C{network|router ID ENDPOINT} per line (or separated by C{;})."""
    rule = "allowed: lines of 'network ID ENDPOINT' or 'router ID ENDPOINT', e.g. network 5f3e... tcp:8080:interface=127.0.0.1"
    out = []
    for line in re.split(r"[\n;]", text):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 3 or parts[0] not in ("network", "router") or not re.match(r"^[a-z0-9]+:", parts[2]):
            raise ValueError(rule)
        _check_endpoint(parts[2], rule)
        out.append(Listener(parts[0], parts[1], parts[2]))
    return tuple(out)


def lookup_backend(text: str) -> str:
    """C{[mdsvc] lookup}: store, neutron, ovn or static:PATH."""
    value = text.strip()
    if value in ("store", "neutron", "ovn") or (value.startswith("static:") and len(value) > 7):
        return value
    if re.match(r"^[a-z][a-z0-9_-]*(:.+)?$", value) and not value.startswith("static"):
        return value  # a vendor plugin's NAME[:ARG]; checked when the agent is built
    raise ValueError("allowed: store | neutron | ovn | static:PATH | a plugin's NAME[:ARG]")


def store_url(text: str) -> str:
    """
    C{[mdsvc] store}: C{sqlite:PATH}, a database server's URL (C{postgresql://...},
    C{mysql+pymysql://...}), C{nova} (Nova's own databases) or a vendor plugin's C{NAME:ARG} (a
    URL: its scheme is the NAME); whether a plugin has that NAME is checked when a role that opens
    the store starts (L{mdsvc.store.check_store}).
    """
    value = text.strip()
    if value == "nova":
        return value
    name, colon, argument = value.partition(":")
    if not colon or not argument or not re.match(r"^[a-z][a-z0-9_+.-]*$", name):
        raise ValueError("allowed: sqlite:PATH | postgresql://USER:PASSWORD@HOST/DB | mysql+pymysql://USER:PASSWORD@HOST/DB "
                         "| nova | a plugin's NAME:ARG")
    return value


def database_url(text: str) -> str:
    """An SQLAlchemy database URL, as oslo.db takes it (C{mysql+pymysql://nova:PASSWORD@db/nova})."""
    from mdsvc.store.nova.database import check_url

    value = text.strip()
    check_url(value)
    return value


def vendordata_provider(text: str) -> str:
    """
    One name of C{[api] vendordata_providers}: StaticJSON, DynamicJSON or a vendor plugin's name;
    whether a plugin has that name is checked when a role that runs the API starts.
    """
    value = text.strip()
    if not re.match(r"^[A-Za-z_][A-Za-z0-9_.-]*$", value):
        raise ValueError("allowed: StaticJSON | DynamicJSON | a plugin's name, separated by commas")
    return value


# --- relative paths ----------------------------------------------------------------------------
#
# A relative path in a file is taken from the directory of that file (so that a configuration
# means the same whatever directory mdsvc or mdsvc-manage is started from). Each resolver takes
# an option's text, after $name substitution, and the directory; it returns the text with every
# relative path in it made absolute.


def _from(directory: str, path: str) -> str:
    return os.path.normpath(os.path.join(directory, path))


def a_path(text: str, directory: str) -> str:
    """A file or directory: a relative one is taken from C{directory} (empty: none, left empty)."""
    value = text.strip()
    if not value or os.path.isabs(value):
        return text
    return _from(directory, value)


def prefixed_path(prefix: str) -> Callable[[str, str], str]:
    """C{PREFIX:PATH} (C{sqlite:PATH}, C{static:PATH}): its PATH as L{a_path}; other values as written."""

    def resolve(text: str, directory: str) -> str:
        value = text.strip()
        if not value.startswith(prefix):
            return text
        return prefix + a_path(value[len(prefix):], directory)

    return resolve


def _endpoint_fields(text: str) -> list[str]:
    """The C{:}-separated fields of a Twisted endpoint string, escapes kept (C{\\:} is not a separator)."""
    fields, current, escaped = [], "", False
    for char in text:
        if escaped:
            current, escaped = current + char, False
        elif char == "\\":
            current, escaped = current + char, True
        elif char == ":":
            fields.append(current)
            current = ""
        else:
            current += char
    fields.append(current)
    return fields


def endpoint_path(text: str, directory: str) -> str:
    """
    A Twisted server endpoint string: the socket file of a C{unix:} one (its first field, or
    C{address=}) as L{a_path}; other endpoints as written.
    """
    value = text.strip()
    fields = _endpoint_fields(value)
    if fields[0] != "unix" or len(fields) < 2:
        return text
    index, key = 1, ""
    for i, part in enumerate(fields[1:], 1):
        if part.startswith("address="):
            index, key = i, "address="
            break
    else:
        if re.search(r"(?<!\\)=", fields[1]):
            return text  # no address at all: serverFromString will say so
    path = re.sub(r"\\(.)", r"\1", fields[index][len(key):])  # unescaped
    if not path or os.path.isabs(path):
        return text
    fields[index] = key + re.sub(r"([\\:=])", r"\\\1", _from(directory, path))
    return ":".join(fields)


def listeners_path(text: str, directory: str) -> str:
    """C{[proxy] listeners}: the endpoint of each line as L{endpoint_path}."""
    out = []
    for part in re.split(r"([\n;])", text):
        words = part.split()
        if len(words) == 3:
            part = " ".join(words[:2] + [endpoint_path(words[2], directory)])
        out.append(part)
    return "".join(out)


# --- the option table ------------------------------------------------------------------------

#: The parts of mdsvc an option may matter to, each a node role of its own.
API = frozenset({"api"})
AGENT = frozenset({"agent"})
PROXY = frozenset({"proxy"})
EVERY_PART = API | AGENT | PROXY

#: Every node role (C{twistd -n mdsvc --role ROLE}) and the parts it runs.
NODE_ROLES: dict[str, frozenset[str]] = {
    "api": API,
    "agent": AGENT,
    "proxy": PROXY,
    "network-node": AGENT | PROXY,
    "all-in-one": EVERY_PART,
}


def _dests(value: str | Iterable[str]) -> tuple[str, ...]:
    """One destination, or several, as a tuple."""
    return (value,) if isinstance(value, str) else tuple(value)


def _roles(value: Iterable[str]) -> frozenset[str]:
    return frozenset(value)


@frozen
class Option:
    """
    One option: where it lives, how it parses, its default, what it is for and where it goes.

    @ivar default: the default as it would be written in a file (parsed like a written value;
        C{$name} in an option's value refers to it), or None: unset.
    @ivar help: what the option does, for sample configs.
    @ivar roles: the parts (L{API}, L{AGENT}, L{PROXY}) that read it; the sample config of a
        node role shows the options of its parts (L{NODE_ROLES}).
    @ivar dest: the dotted path of the field (or fields) of L{Config} the value fills, such as
        C{"agent.api_timeout"}; none when only L{DERIVED} functions read it.
    @ivar aliases: older C{(section, name)}s it may go by; in one file, its own name wins.
    @ivar example: shown commented out in sample configs instead of the default.
    @ivar role_values: what the sample of a node role sets instead of the default.
    @ivar verbatim: taken as written, without C{$} substitution.
    @ivar paths: for an option naming files or directories, how its text's relative paths are
        made absolute (L{a_path}, L{prefixed_path}, L{endpoint_path}): a relative path in a file
        is taken from that file's directory.
    """

    section: str
    name: str
    parse: Callable[[str], Any]
    default: str | None
    help: str = ""
    roles: frozenset[str] = field(default=frozenset(), converter=_roles)
    dest: tuple[str, ...] = field(default=(), converter=_dests)
    aliases: tuple[tuple[str, str], ...] = ()
    example: str | None = None
    role_values: Mapping[str, str] = field(factory=dict, hash=False)
    verbatim: bool = False
    paths: Callable[[str, str], str] | None = None

    @property
    def key(self) -> tuple[str, str]:
        """C{(section, name)}."""
        return (self.section, self.name)

    @property
    def secret(self) -> bool:
        """Whether its value is never shown (L{holds_secret}: the one rule, by name)."""
        return holds_secret(self.name)

    def default_value(self) -> Any:
        """The parsed default (None when unset)."""
        return None if self.default is None else self.parse(self.default)


#: What each section is, for sample configs.
SECTIONS: dict[str, str] = {
    "DEFAULT": "nova.conf's and metadata_agent.ini's [DEFAULT] options that mdsvc reads.",
    "api": "The metadata API (nova.conf's [api] names).",
    "neutron": "Requests signed by the metadata agents, and Neutron's API for lookup = neutron and store = nova (nova.conf's "
               "[neutron] names).",
    "ovn": ("The OVN Southbound database, for lookup = ovn (the OVN metadata agent's [ovn] names: its "
            "networking_ovn_metadata_agent.ini works as it is)."),
    "mdsvc": "mdsvc's own options.",
    "cache": "The agent's lookup cache: an API 404 drops an instance's entry and looks it up once more.",
    "metadata_rate_limiting": (
        "Two sliding windows per guest address; past either limit the guest gets 429, and refused requests "
        "count too, so a client that keeps polling stays refused until it slows down. The defaults are not "
        "Neutron's (10 per 10 s, which cuts a cloud-init boot of about 30 GETs short): the burst window lets "
        "two whole boots through back to back, the base window about eight boots a minute (reboots while "
        "cloudbase-init configures, other agents); a flood is refused after its first 60 requests."
    ),
    "proxy": "The namespace proxies.",
    "api_database": "store = nova: Nova's API database (nova.conf's [api_database]).",
    "database": "store = nova: a cell database of Nova (nova.conf's [database]).",
}

SYSLOG_FACILITIES = ("LOG_USER", "LOG_DAEMON", "LOG_LOCAL0", "LOG_LOCAL1", "LOG_LOCAL2", "LOG_LOCAL3", "LOG_LOCAL4",
                     "LOG_LOCAL5", "LOG_LOCAL6", "LOG_LOCAL7")
"""What C{[DEFAULT] syslog_log_facility} may name."""

_SKIPPED_EC2_VERSIONS = "1.0 2007-01-19 2007-03-01 2007-08-29 2007-10-10 2007-12-15 2008-02-01 2008-09-01"

OPTIONS: tuple[Option, ...] = (
    Option("DEFAULT", "state_path", string, "/var/lib/mdsvc", roles=EVERY_PART, dest="state_path",
           help="Where mdsvc keeps its state: the embedded store ($state_path/mdsvc.sqlite) and the agent's "
                "socket ($state_path/metadata_proxy). A relative path, here and in every option naming a file, "
                "is taken from the directory of the file that sets it.", paths=a_path),
    Option("DEFAULT", "debug", boolean, "false", roles=EVERY_PART, dest=("api.debug", "debug"),
           help="Log at debug level (else info and above), and log every API request's headers (signatures and "
                "tokens masked). Reloaded on SIGHUP."),
    Option("DEFAULT", "metadata_listen", string, "0.0.0.0", roles=API,
           help="Listen address of the metadata API (an IPv6 address listens on tcp6; [mdsvc] api_endpoint "
                "overrides it)."),
    Option("DEFAULT", "metadata_listen_port", integer(0, 65535), "8775", roles=API,
           help="Listen port of the metadata API (overridden by [mdsvc] api_endpoint)."),
    Option("DEFAULT", "metadata_workers", optional(integer(1)), None, roles=API, dest="api.workers", example="2",
           help="API worker processes sharing the API's port, for the api role (all-in-one runs in one process): a "
                "supervisor opens the port and restarts a worker that dies. Unset: 1, one process (Nova's default is "
                "the number of CPUs)."),
    Option("DEFAULT", "flat_injected", boolean, "false", roles=API, dest="api.flat_injected",
           help="Render Nova's /etc/network/interfaces template for the instance's ports (meta_data.json "
                "network_config, /openstack/content/0000 and on config drives), as nova-compute does when the "
                "instance's network info was built with it set."),
    Option("DEFAULT", "injected_network_template", optional(string), None, roles=API,
           dest="api.injected_network_template", example="/etc/mdsvc/interfaces.template",
           help="The Jinja2 template flat_injected renders, given Nova's values (empty: Nova's own, shipped "
                "with mdsvc); one that cannot be read or rendered gives no network_config, logged.", paths=a_path),
    Option("api", "metadata_cache_expiration", integer(0), "15", roles=API, dest="api.cache_expiration",
           help="Seconds an instance's rendered metadata is reused; 0 reads the store on every request."),
    Option("api", "dhcp_domain", string, "novalocal", roles=API, dest="api.dhcp_domain",
           aliases=(("DEFAULT", "dhcp_domain"),),
           help="Appended to hostnames (empty: nothing; an FQDN hostname never gets it)."),
    Option("api", "vendordata_providers", list_of(vendordata_provider), "StaticJSON", roles=API,
           dest="api.vendordata_providers",
           help="StaticJSON, DynamicJSON and vendor plugins' providers (by name), in merge order for "
                "vendor_data2.json."),
    Option("api", "vendordata_jsonfile_path", optional(string), None, roles=API,
           dest="api.vendordata_jsonfile_path", example="/etc/mdsvc/vendor_data.json",
           help="JSON file served as vendor_data.json (re-read when it changes).", paths=a_path),
    Option("api", "vendordata_dynamic_targets", list_of(), "", roles=API, dest="api.vendordata_dynamic_targets",
           help="Comma-separated name@url targets POSTed for vendor_data2.json, e.g. "
                "testing@http://127.0.0.1:9000/"),
    Option("api", "vendordata_dynamic_ssl_certfile", string, "", roles=API,
           dest="api.vendordata_dynamic_ssl_certfile",
           help="CA certificates to verify HTTPS targets with (empty: the system's).", paths=a_path),
    Option("api", "vendordata_dynamic_connect_timeout", integer(3), "5", roles=API,
           dest="api.vendordata_dynamic_connect_timeout",
           help="Seconds to connect to a target (at least 3, as in Nova)."),
    Option("api", "vendordata_dynamic_read_timeout", integer(0), "5", roles=API,
           dest="api.vendordata_dynamic_read_timeout",
           help="Seconds to wait for a target's answer, after connecting."),
    Option("api", "vendordata_dynamic_failure_fatal", boolean, "false", roles=API,
           dest="api.vendordata_dynamic_failure_fatal",
           help="true: a failing target fails the request (500); false: its part is left out, with a warning."),
    Option("api", "use_forwarded_for", boolean, "false", roles=API, dest="api.use_forwarded_for",
           aliases=(("DEFAULT", "use_forwarded_for"),),
           help="Remote-address mode only: trust X-Forwarded-For from the front end (OSSN-0074: only behind "
                "a proxy that sets it)."),
    Option("api", "imds_tokens", choice("off", "optional", "required"), "off", roles=API, dest="api.imds_tokens",
           help="IMDSv2-style session tokens (not in Nova): off (PUT /latest/api/token is 404, as in Nova) | "
                "optional (a request may carry a token from PUT /latest/api/token, and then it must be good) | "
                "required (every request needs one, else 401). Tokens are signed with a key derived from "
                "metadata_proxy_shared_secret, which must be set."),
    Option("api", "config_drive_skip_versions", list_of(sep=None), _SKIPPED_EC2_VERSIONS, roles=API,
           dest="api.config_drive_skip_versions",
           help="EC2 versions left off config drives (separated by blanks)."),
    Option("neutron", "service_metadata_proxy", boolean, "false", roles=API, dest="api.service_metadata_proxy",
           role_values={"all-in-one": "true"},
           help="true: requests come through metadata agents, with signed X-Instance-ID headers (all-in-one "
                "needs it: its agent signs every request); false: the guest is the request's source address."),
    Option("neutron", "metadata_proxy_shared_secret", raw, "", roles=API | AGENT,
           dest=("api.shared_secret", "agent.shared_secret"), aliases=(("DEFAULT", "metadata_proxy_shared_secret"),),
           verbatim=True,
           help="The HMAC key the agents sign requests with and the API checks them with: the same on every "
                "node (taken as written, $ included)."),
    Option("mdsvc", "store", store_url, None, roles=API | AGENT, example="sqlite:/var/lib/mdsvc/mdsvc.sqlite",
           help="The instance store: sqlite:PATH, mdsvc's documents in one SQLite file (default "
                "sqlite:$state_path/mdsvc.sqlite) | the same documents on a database server several api nodes share: "
                "an SQLAlchemy URL, postgresql://USER:PASSWORD@HOST/DB (psycopg) or mysql+pymysql://USER:PASSWORD@HOST/DB "
                "(MariaDB, MySQL) | nova (Nova's own databases: [api_database] and [database] connection) | a vendor "
                "plugin's NAME:ARG.",
           paths=prefixed_path("sqlite:")),
    Option("mdsvc", "api_endpoint", endpoint, None, roles=API, example=r"tcp6:8775:interface=\:\:",
           help="A Twisted endpoint for the API, instead of metadata_listen and metadata_listen_port, e.g. "
                "unix:/run/mdsvc/api.sock:mode=660", paths=endpoint_path),
    Option("mdsvc", "demo", boolean, None, roles=API, example="false",
           help="Import the bundled demo instance at startup (default: only when no configuration file is "
                "given)."),
    Option("mdsvc", "drain_timeout", number(0), "30", roles=EVERY_PART, dest="drain_timeout",
           help="Seconds a stopping node (SIGTERM, systemctl stop or restart) waits for the requests in flight to be "
                "answered, after its listeners stopped accepting; what is still open then is cut. Keep it below "
                "systemd's TimeoutStopSec."),
    Option("mdsvc", "secret_rotation_window", number(0), "600", roles=API | AGENT, dest="secret_rotation_window",
           help="Seconds the previous metadata_proxy_shared_secret is still accepted (API: signatures and session "
                "tokens made with it; agent: re-signing a request the API refused) after SIGHUP loaded a new one, "
                "so the nodes of a cloud can be given the new secret one after the other, in any order."),
    Option("mdsvc", "access_log", boolean, "false", roles=EVERY_PART, dest="access_log",
           help="One log line per request (the 404s and 500s are always logged, with their reason)."),
    # the agent (metadata_agent.ini names)
    Option("DEFAULT", "metadata_proxy_socket", string, None, roles=AGENT | PROXY,
           example="$state_path/metadata_proxy",
           help="The agent's UNIX socket, which namespace proxies (mdsvc's, or Neutron's haproxy) forward to.", paths=a_path),
    Option("DEFAULT", "metadata_proxy_socket_mode", choice("deduce", "user", "group", "all"), "deduce",
           roles=AGENT, dest="agent.socket_mode",
           help="deduce | user (0644) | group (0664) | all (0666); deduce looks at metadata_proxy_user and "
                "metadata_proxy_group."),
    Option("DEFAULT", "metadata_proxy_user", string, "", roles=AGENT, dest="agent.proxy_user",
           help="User (name or uid) the namespace proxies run as, for deduce: empty, root or this process's "
                "user gives user."),
    Option("DEFAULT", "metadata_proxy_group", string, "", roles=AGENT, dest="agent.proxy_group",
           help="Group (name or gid) the namespace proxies run as, for deduce: empty or this process's group "
                "gives group, another one all."),
    Option("DEFAULT", "metadata_backlog", integer(1), "4096", roles=AGENT, dest="agent.backlog",
           help="Listen backlog of the agent's socket."),
    Option("DEFAULT", "nova_metadata_host", string, "127.0.0.1", roles=AGENT, dest="agent.api_host",
           aliases=(("DEFAULT", "nova_metadata_ip"),),
           help="Host name or address of the metadata API the agent forwards to."),
    Option("DEFAULT", "nova_metadata_port", integer(1, 65535), "8775", roles=AGENT, dest="agent.api_port",
           help="Port of the metadata API."),
    Option("DEFAULT", "nova_metadata_protocol", choice("http", "https"), "http", roles=AGENT,
           help="http or https to the metadata API."),
    Option("DEFAULT", "nova_metadata_insecure", boolean, "false", roles=AGENT, dest="agent.api_insecure",
           help="https: do not verify the API's certificate."),
    Option("DEFAULT", "auth_ca_cert", string, "", roles=AGENT, dest="agent.api_ca_cert",
           help="https: CA certificates to verify the API's certificate with (empty: the system's).", paths=a_path),
    Option("DEFAULT", "nova_client_cert", string, "", roles=AGENT, dest="agent.api_client_cert",
           help="https: client certificate the agent presents to the API.", paths=a_path),
    Option("DEFAULT", "nova_client_priv_key", string, "", roles=AGENT, dest="agent.api_client_key",
           help="https: private key of nova_client_cert.", paths=a_path),
    Option("cache", "enabled", boolean, "true", roles=AGENT, dest="agent.cache_enabled",
           help="Cache lookups (instance and project of a guest address)."),
    Option("cache", "expiration_time", integer(0), "10", roles=AGENT, dest="agent.cache_ttl",
           help="Seconds a found instance is kept."),
    Option("cache", "negative_expiration_time", integer(0), "2", roles=AGENT, dest="agent.cache_negative_ttl",
           help="Seconds a \"no instance\" answer is kept (also how often, at most, an API 404 makes the agent "
                "look a guest up afresh)."),
    Option("metadata_rate_limiting", "rate_limit_enabled", boolean, "false", roles=AGENT,
           dest="agent.rate_limit.enabled",
           help="Limit the requests of each guest address."),
    Option("metadata_rate_limiting", "ip_versions", list_of(choice("4", "6")), "4", roles=AGENT,
           help="The address version limited: 4 or 6 (as in Neutron, one only: both turn limiting off, with a "
                "warning)."),
    # not Neutron's defaults: SECTIONS["metadata_rate_limiting"] says why
    Option("metadata_rate_limiting", "base_window_duration", integer(1), "60", roles=AGENT,
           dest="agent.rate_limit.base_window", help="Seconds of the base window."),
    Option("metadata_rate_limiting", "base_query_rate_limit", integer(1), "240", roles=AGENT,
           dest="agent.rate_limit.base_limit", help="Requests a guest address may make within the base window."),
    Option("metadata_rate_limiting", "burst_window_duration", integer(1), "10", roles=AGENT,
           dest="agent.rate_limit.burst_window", help="Seconds of the burst window."),
    Option("metadata_rate_limiting", "burst_query_rate_limit", integer(1), "60", roles=AGENT,
           dest="agent.rate_limit.burst_limit", help="Requests a guest address may make within the burst window."),
    Option("mdsvc", "agent_endpoint", endpoint, None, roles=AGENT, example="tcp:9697:interface=127.0.0.1",
           help="An extra endpoint for the agent besides its socket.", paths=endpoint_path),
    Option("mdsvc", "lookup", lookup_backend, "store", roles=AGENT, dest="agent.lookup",
           help="How the agent finds a guest's instance: store (the embedded store) | neutron (the [neutron] "
                "options) | ovn (a replica of the OVN Southbound database: the [ovn] options) | static:PATH (a "
                "JSON/YAML file of ports) | a vendor plugin's NAME[:ARG].", paths=prefixed_path("static:")),
    Option("mdsvc", "ovn_replica_max_age", number(0), "60", roles=AGENT, dest="agent.ovn.max_age",
           help="lookup = ovn: seconds the agent goes on answering from its replica of the Southbound database "
                "after losing every member; then guests get 503 until one is in reach again."),
    Option("mdsvc", "api_connect_timeout", number(0.1), "5", roles=AGENT, dest="agent.api_connect_timeout",
           help="Seconds to connect to the API (keep it below the guest's patience)."),
    Option("mdsvc", "api_timeout", number(0.1), "20", roles=AGENT, dest="agent.api_timeout",
           help="Seconds to get a whole answer from the API; then the guest gets 504."),
    Option("mdsvc", "api_pool_size", integer(1), "4", roles=AGENT, dest="agent.api_pool_size",
           help="Persistent connections kept to the API; when all are busy, GETs are pipelined behind them "
                "(never behind a request waiting more than 50 ms, never POSTs)."),
    Option("mdsvc", "api_pipeline_depth", integer(1, 128), "16", roles=AGENT, dest="agent.api_pipeline_depth",
           help="Requests pipelined on one connection to the API, at most."),
    Option("mdsvc", "agent_timeout", number(0.1), "25", roles=PROXY, dest="proxy.agent_timeout",
           help="Seconds a namespace proxy waits for the agent; then the guest gets 504."),
    # the namespace proxies
    Option("proxy", "namespaces", string, "auto", roles=PROXY, dest="proxy.namespaces",
           help="auto: every qdhcp-*, qrouter-* and ovnmeta-* namespace under netns_dir, followed as they come "
                "and go; none; or a comma-separated list of namespace names."),
    Option("proxy", "netns_dir", string, "/run/netns", roles=PROXY, dest="proxy.netns_dir",
           help="Where the network namespaces are.", paths=a_path),
    Option("proxy", "rescan_interval", number(0.1), "5", roles=PROXY, dest="proxy.rescan_interval",
           help="Seconds between full rescans (inotify reports changes at once; rescans catch the rest)."),
    Option("proxy", "listeners", listeners, "", roles=PROXY, dest="proxy.listeners",
           example="network 5f3e0d8c-0000-4000-8000-000000000001 tcp:8080:interface=127.0.0.1",
           help="Listeners with a fixed identity, for labs: \"network ID ENDPOINT\" or \"router ID ENDPOINT\" "
                "lines (or separated by ;).", paths=listeners_path),
    Option("proxy", "metadata_port", integer(1, 65535), "9697", roles=PROXY, dest="proxy.router_port",
           help="Port the qrouter- listeners use (the L3 agent redirects 169.254.169.254:80 to it)."),
    # Neutron's REST API for the neutron lookup backend and store = nova (nova.conf [neutron] keystoneauth names)
    Option("neutron", "auth_type", choice("password", "v3password"), "password", roles=API | AGENT,
           help="lookup = neutron, store = nova: Keystone v3 password authentication (the only kind mdsvc speaks)."),
    Option("neutron", "auth_url", string, "", roles=API | AGENT, dest="agent.neutron.auth_url",
           help="lookup = neutron, store = nova: Keystone's URL (v3 password auth; Neutron's endpoint comes from its "
                "catalog)."),
    Option("neutron", "username", string, "", roles=API | AGENT, dest="agent.neutron.username",
           help="lookup = neutron, store = nova: the Keystone user."),
    Option("neutron", "password", raw, "", roles=API | AGENT, dest="agent.neutron.password",
           help="lookup = neutron, store = nova: the Keystone user's password."),
    Option("neutron", "project_name", string, "", roles=API | AGENT, dest="agent.neutron.project_name",
           help="lookup = neutron, store = nova: the project the token is scoped to."),
    Option("neutron", "user_domain_name", string, "Default", roles=API | AGENT, dest="agent.neutron.user_domain_name",
           help="lookup = neutron, store = nova: the user's domain."),
    Option("neutron", "project_domain_name", string, "Default", roles=API | AGENT,
           dest="agent.neutron.project_domain_name", help="lookup = neutron, store = nova: the project's domain."),
    Option("neutron", "region_name", string, "", roles=API | AGENT, dest="agent.neutron.region_name",
           help="lookup = neutron, store = nova: the catalog region (empty: any)."),
    Option("neutron", "valid_interfaces", list_of(choice("internal", "public", "admin")), "internal,public",
           roles=API | AGENT, dest="agent.neutron.valid_interfaces",
           help="lookup = neutron, store = nova: the catalog interfaces to use, first found first."),
    Option("neutron", "endpoint_override", string, "", roles=API | AGENT, dest="agent.neutron.endpoint_override",
           help="lookup = neutron, store = nova: Neutron's URL without Keystone (noauth) or to skip the catalog."),
    Option("neutron", "cafile", string, "", roles=API | AGENT, dest="agent.neutron.cafile",
           help="lookup = neutron, store = nova: CA certificates to verify Keystone and Neutron with (empty: the system's).",
           paths=a_path),
    Option("neutron", "insecure", boolean, "false", roles=API | AGENT, dest="agent.neutron.insecure",
           help="lookup = neutron, store = nova: do not verify Keystone's and Neutron's certificates."),
    Option("neutron", "timeout", number(0.1), "10", roles=API | AGENT, dest="agent.neutron.timeout",
           help="lookup = neutron, store = nova: seconds for each request to Keystone or Neutron."),
    # store = nova: Nova's own databases (nova.conf names) and how mdsvc reads them
    Option("api_database", "connection", optional(database_url), None, roles=API, dest="nova.api_database",
           example="mysql+pymysql://nova:PASSWORD@db/nova_api",
           help="store = nova: Nova's API database, where each instance's cell is found."),
    Option("database", "connection", optional(database_url), None, roles=API, dest="nova.database",
           example="mysql+pymysql://nova:PASSWORD@db/nova",
           help="store = nova: the cell database read with local_metadata_per_cell, or for an instance without a "
                "cell mapping; also fills the {placeholders} of cell mappings' database_connection."),
    Option("api", "local_metadata_per_cell", boolean, "false", roles=API, dest="nova.local_metadata_per_cell",
           help="store = nova: read [database] connection only (one metadata API per cell), never the API database."),
    Option("mdsvc", "database_threads", integer(1, 256), "8", roles=API, dest="nova.threads",
           help="store = nova: threads (and pooled connections per database) that query Nova's databases."),
    Option("mdsvc", "database_timeout", number(0.1), "5", roles=API, dest="nova.timeout",
           help="store = nova: seconds to connect to a database and for each query; past them the guest gets 503."),
    # the OVN Southbound database for the ovn lookup backend (the OVN metadata agent's [ovn] names)
    Option("ovn", "ovn_sb_connection", ovsdb_remotes, "tcp:127.0.0.1:6642", roles=AGENT, dest="agent.ovn.connection",
           help="lookup = ovn: the members of the Southbound database, comma-separated tcp:IP:PORT, ssl:IP:PORT or "
                "unix:PATH (every member of a Raft cluster; any of them serves the replica)."),
    Option("ovn", "ovn_sb_private_key", string, "", roles=AGENT, dest="agent.ovn.private_key",
           help="lookup = ovn, ssl: members: the private key mdsvc presents."),
    Option("ovn", "ovn_sb_certificate", string, "", roles=AGENT, dest="agent.ovn.certificate",
           help="lookup = ovn, ssl: members: the certificate of ovn_sb_private_key."),
    Option("ovn", "ovn_sb_ca_cert", string, "", roles=AGENT, dest="agent.ovn.ca_cert",
           help="lookup = ovn, ssl: members: the CA certificates the members' certificates are checked with."),
    Option("ovn", "ovsdb_probe_interval", integer(0), "60000", roles=AGENT, dest="agent.ovn.probe_interval",
           help="lookup = ovn: milliseconds of silence on a tcp: or ssl: connection before mdsvc probes it (0: "
                "never); a member that does not answer the probe is left for another."),
    # what one guest, and all guests together, may hold (every role's HTTP listeners)
    Option("mdsvc", "request_timeout", number(0.1), "30", roles=EVERY_PART, dest="limits.request_timeout",
           help="Seconds a client has to send a whole request, head and body, from its first byte (also how "
                "long a new connection may stay silent), on every listener of the process."),
    Option("mdsvc", "idle_timeout", number(0.1), "60", roles=EVERY_PART, dest="limits.idle_timeout",
           help="Seconds a kept-alive connection may stay idle or leave an answer unread."),
    Option("mdsvc", "max_connections", integer(0), "4096", roles=EVERY_PART, dest="limits.max_connections",
           help="Guest connections of the whole process, lowered to fit the open-files limit (which mdsvc raises "
                "to its hard limit at startup: set LimitNOFILE). Beyond, new connections are closed at once "
                "(logged once a minute). 0: no limit."),
    Option("mdsvc", "max_connections_per_guest", integer(0), "64", roles=EVERY_PART,
           dest="limits.max_connections_per_guest",
           help="Connections one source address may hold on one namespace listener, and requests one guest "
                "may have in flight at the agent. Beyond, new connections are closed at once (logged once a "
                "minute). 0: no limit."),
    # operating it: metrics, logs, the admin socket (doctor, trace)
    Option("mdsvc", "metrics_endpoint", optional(endpoint), None, roles=EVERY_PART, dest="operations.metrics_endpoint",
           example="tcp:9180:interface=127.0.0.1",
           help="A Twisted endpoint serving /metrics (Prometheus), /healthz and /readyz; unset: none. Every "
                "process needs its own (give each role's file its own port); with metadata_workers, the api role's "
                "supervisor serves it for all its workers (each sample labelled worker=\"N\").", paths=endpoint_path),
    Option("mdsvc", "admin_dir", optional(string), None, roles=EVERY_PART, example="$state_path/run",
           help="Where each process serves its admin socket, ROLE.sock (worker N of metadata_workers: api@N.sock; "
                "mode 0600, in a 0700 directory), "
                "which mdsvc-manage doctor and trace talk to (default $state_path/run).", paths=a_path),
    Option("mdsvc", "trace_size", integer(0), "4096", roles=EVERY_PART, dest="operations.trace_size",
           help="Requests each process keeps for mdsvc-manage trace (one per hop answered; 0: none)."),
    Option("DEFAULT", "log_format", choice("text", "json"), "text", roles=EVERY_PART, dest="operations.log_format",
           help="text: twistd's lines; json: one JSON object per event and line on standard output, with every "
                "named field (twisted.logger's JSON form)."),
    Option("DEFAULT", "use_syslog", boolean, "false", roles=EVERY_PART, dest="operations.use_syslog",
           help="Also send every event to syslog (/dev/log), as oslo.log's option of this name does."),
    Option("DEFAULT", "syslog_log_facility", choice(*SYSLOG_FACILITIES), "LOG_USER", roles=EVERY_PART,
           dest="operations.syslog_facility", help="The syslog facility of use_syslog."),
    Option("DEFAULT", "use_journal", boolean, "false", roles=EVERY_PART, dest="operations.use_journal",
           help="Also send every event to journald with its named fields (MDSVC_HOP=..., MDSVC_INSTANCE=...), as "
                "oslo.log's option of this name does."),
)

_BY_KEY = {o.key: o for o in OPTIONS}


def known_options() -> Iterable[Option]:
    """The options mdsvc reads (for sample configs and docs)."""
    return OPTIONS


def options_for(role: str) -> list[Option]:
    """The options a node role reads (its parts'), in table order."""
    parts = NODE_ROLES[role]
    return [o for o in OPTIONS if o.roles & parts]


# --- the parsed configuration ------------------------------------------------------------------

@frozen
class ApiConfig:
    """
    What the metadata API role needs (nova.conf names).

    @ivar listen_option: the options C{listen_endpoint} comes from, for messages: C{[mdsvc]
        api_endpoint}, or C{[DEFAULT] metadata_listen} and C{metadata_listen_port}.
    """

    listen_endpoint: str
    listen_option: str
    cache_expiration: int
    dhcp_domain: str
    vendordata_providers: tuple[str, ...]
    vendordata_jsonfile_path: str | None
    vendordata_dynamic_targets: tuple[str, ...]
    vendordata_dynamic_ssl_certfile: str
    vendordata_dynamic_connect_timeout: int
    vendordata_dynamic_read_timeout: int
    vendordata_dynamic_failure_fatal: bool
    use_forwarded_for: bool
    imds_tokens: str
    service_metadata_proxy: bool
    shared_secret: str = field(repr=False)
    flat_injected: bool
    injected_network_template: str | None
    config_drive_skip_versions: tuple[str, ...]
    debug: bool
    workers: int | None


@frozen
class RateLimitConfig:
    """
    C{[metadata_rate_limiting]}: two sliding windows per source address (neutron spec §7), with
    Neutron's option names but defaults that let a whole cloud-init boot through.
    """

    enabled: bool
    ip_version: int | None
    base_window: int
    base_limit: int
    burst_window: int
    burst_limit: int


@frozen
class NeutronClientConfig:
    """How the neutron lookup backend reaches Neutron: Keystone v3 password auth."""

    auth_url: str
    username: str
    password: str = field(repr=False)
    project_name: str
    user_domain_name: str
    project_domain_name: str
    region_name: str
    valid_interfaces: tuple[str, ...]
    endpoint_override: str
    cafile: str
    insecure: bool
    timeout: float


@frozen
class NovaDatabaseConfig:
    """C{[mdsvc] store = nova}: where Nova's databases are and how mdsvc reads them."""

    api_database: str | None = field(repr=False)
    database: str | None = field(repr=False)
    local_metadata_per_cell: bool
    threads: int
    timeout: float


@frozen
class OvnConfig:
    """How the ovn lookup backend reaches the Southbound database, and how long its replica answers alone."""

    connection: tuple[str, ...]
    private_key: str
    certificate: str
    ca_cert: str
    probe_interval: int
    max_age: float
    status_path: str


@frozen
class AgentConfig:
    """What the metadata agent needs (metadata_agent.ini names)."""

    socket_path: str
    socket_mode: str
    proxy_user: str
    proxy_group: str
    backlog: int
    listen_endpoint: str
    api_url: str
    api_host: str
    api_port: int
    api_insecure: bool
    api_ca_cert: str
    api_client_cert: str
    api_client_key: str
    shared_secret: str = field(repr=False)
    api_connect_timeout: float
    api_timeout: float
    api_pool_size: int
    api_pipeline_depth: int
    cache_enabled: bool
    cache_ttl: int
    cache_negative_ttl: int
    lookup: str
    rate_limit: RateLimitConfig
    neutron: NeutronClientConfig
    ovn: OvnConfig


@frozen
class Listener:
    """A proxy listener with a fixed identity, for labs and the demo."""

    kind: str  # "network" or "router"
    id: str
    endpoint: str


@frozen
class ProxyConfig:
    """What the namespace proxies need."""

    namespaces: str  # "auto", "none" or a comma-separated list of names
    netns_dir: str
    rescan_interval: float
    listeners: tuple[Listener, ...]
    router_port: int
    agent_timeout: float


@frozen
class GuestLimits:
    """
    What the HTTP listeners allow a client: the time to send a request, the idle time of a
    kept-alive connection, connections per process and per guest (a source address on one
    listener; for the agent, requests in flight per guest address and network).
    """

    request_timeout: float
    idle_timeout: float
    max_connections: int
    max_connections_per_guest: int


@frozen
class OperationsConfig:
    """
    How a process lets itself be seen: the metrics listener, its admin socket, its trace ring,
    where its logs go.

    @ivar admin_dir: the directory of the admin sockets (C{ROLE.sock}).
    """

    metrics_endpoint: str | None
    admin_dir: str
    trace_size: int
    log_format: str
    use_syslog: bool
    syslog_facility: str
    use_journal: bool


@frozen
class Config:
    """The whole parsed configuration of a node."""

    sources: tuple[str, ...]
    state_path: str
    store: str
    demo: bool
    api: ApiConfig
    agent: AgentConfig
    access_log: bool
    proxy: ProxyConfig
    limits: GuestLimits
    operations: OperationsConfig
    debug: bool
    secret_rotation_window: float
    drain_timeout: float
    nova: NovaDatabaseConfig

    @property
    def source(self) -> str | None:
        """The files read, for messages (C{a.conf, b.conf}); None for the embedded defaults."""
        return ", ".join(self.sources) or None


# --- fields derived from several options -------------------------------------------------------

@frozen
class Loaded:
    """
    The parsed value of every option, and the files they came from: what L{DERIVED} fields are
    computed from (C{loaded["DEFAULT", "state_path"]}).

    @ivar sources: the files read, in order; None when no configuration was given at all (the
        embedded defaults, where the demo is on).
    """

    values: Mapping[tuple[str, str], Any]
    sources: tuple[str, ...] | None

    def __getitem__(self, key: tuple[str, str]) -> Any:
        """The value of C{(section, name)}."""
        return self.values[key]


def sources(loaded: Loaded) -> tuple[str, ...]:
    """C{Config.sources}: the files read, in order."""
    return loaded.sources or ()


def store(loaded: Loaded) -> str:
    """C{Config.store}: C{[mdsvc] store}, else C{sqlite:$state_path/mdsvc.sqlite}."""
    return loaded["mdsvc", "store"] or f"sqlite:{loaded['DEFAULT', 'state_path']}/mdsvc.sqlite"


def demo(loaded: Loaded) -> bool:
    """C{Config.demo}: C{[mdsvc] demo}, else on only when no configuration was given."""
    value = loaded["mdsvc", "demo"]
    return loaded.sources is None if value is None else bool(value)


def api_listen_endpoint(loaded: Loaded) -> str:
    """
    C{ApiConfig.listen_endpoint}: C{[mdsvc] api_endpoint}, else C{metadata_listen} and
    C{metadata_listen_port} as a C{tcp:} endpoint (C{tcp6:} with the colons escaped for IPv6).
    """
    if loaded["mdsvc", "api_endpoint"] is not None:
        return str(loaded["mdsvc", "api_endpoint"])
    address = loaded["DEFAULT", "metadata_listen"]
    port = loaded["DEFAULT", "metadata_listen_port"]
    if ":" in address:
        escaped = address.replace(":", r"\:")
        return f"tcp6:{port}:interface={escaped}"
    return f"tcp:{port}:interface={address}"


def api_listen_option(loaded: Loaded) -> str:
    """C{ApiConfig.listen_option}: what L{api_listen_endpoint} comes from, with the values, for messages."""
    if loaded["mdsvc", "api_endpoint"] is not None:
        return f"[mdsvc] api_endpoint {loaded['mdsvc', 'api_endpoint']}"
    return (f"[DEFAULT] metadata_listen {loaded['DEFAULT', 'metadata_listen']}, "
            f"metadata_listen_port {loaded['DEFAULT', 'metadata_listen_port']}")


def agent_socket_path(loaded: Loaded) -> str:
    """C{AgentConfig.socket_path}: C{metadata_proxy_socket}, else C{$state_path/metadata_proxy}."""
    return loaded["DEFAULT", "metadata_proxy_socket"] or f"{loaded['DEFAULT', 'state_path']}/metadata_proxy"


def agent_listen_endpoint(loaded: Loaded) -> str:
    """C{AgentConfig.listen_endpoint}: C{[mdsvc] agent_endpoint}, else none (the empty string)."""
    return loaded["mdsvc", "agent_endpoint"] or ""


def api_url(loaded: Loaded) -> str:
    """C{AgentConfig.api_url}: C{nova_metadata_protocol://nova_metadata_host:nova_metadata_port}."""
    host = loaded["DEFAULT", "nova_metadata_host"]
    netloc = f"[{host}]" if ":" in host else host
    return f"{loaded['DEFAULT', 'nova_metadata_protocol']}://{netloc}:{loaded['DEFAULT', 'nova_metadata_port']}"


def admin_dir(loaded: Loaded) -> str:
    """C{OperationsConfig.admin_dir}: C{[mdsvc] admin_dir}, else C{$state_path/run}."""
    return loaded["mdsvc", "admin_dir"] or f"{loaded['DEFAULT', 'state_path']}/run"


def rate_limit_ip_version(loaded: Loaded) -> int | None:
    """C{RateLimitConfig.ip_version}: the one version of C{ip_versions}, else None (no limiting)."""
    versions = loaded["metadata_rate_limiting", "ip_versions"]
    return int(versions[0]) if len(versions) == 1 else None


def ovn_status_path(loaded: Loaded) -> str:
    """C{OvnConfig.status_path}: C{$state_path/ovn-sb-replica.json}."""
    return f"{loaded['DEFAULT', 'state_path']}/ovn-sb-replica.json"


#: The fields of L{Config} no single option fills, by dotted path, and what computes them.
DERIVED: dict[str, Callable[[Loaded], Any]] = {
    "agent.ovn.status_path": ovn_status_path,
    "sources": sources,
    "store": store,
    "demo": demo,
    "api.listen_endpoint": api_listen_endpoint,
    "api.listen_option": api_listen_option,
    "agent.socket_path": agent_socket_path,
    "agent.listen_endpoint": agent_listen_endpoint,
    "agent.api_url": api_url,
    "agent.rate_limit.ip_version": rate_limit_ip_version,
    "operations.admin_dir": admin_dir,
}


# --- reading files ----------------------------------------------------------------------------

@define
class _Located:
    """Line numbers of C{[section] option} in a file, for error messages."""

    lines: dict[tuple[str, str], int] = field(factory=dict)

    @classmethod
    def scan(cls, text: str) -> _Located:
        """Index every C{option = value} line by section and option name."""
        located = cls()
        section = "DEFAULT"
        # Lines as configparser counts them: split on newlines only (str.splitlines would also
        # split on form feeds and other separators, and the numbers would drift).
        for number, line in enumerate(text.split("\n"), 1):
            stripped = line.strip()
            if not stripped or stripped[0] in "#;":
                continue
            if stripped.startswith("[") and "]" in stripped:
                section = stripped[1:stripped.index("]")].strip()
                continue
            if line[0].isspace():
                continue
            m = re.match(r"([^=:]+?)\s*[=:]", stripped)
            if m:
                located.lines[(section, m.group(1).strip().lower())] = number
        return located


def read_ini(path: str) -> tuple[configparser.RawConfigParser, _Located]:
    """Read an INI file the way oslo.config does (duplicate options: last one wins)."""
    try:
        with open(path, encoding="utf-8-sig") as f:
            text = f.read()
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror or e}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
    parser = configparser.RawConfigParser(strict=False, interpolation=None, default_section="\x00no-default")
    parser.optionxform = str.lower  # type: ignore[assignment,method-assign]
    try:
        parser.read_string(text, source=path)
    except configparser.MissingSectionHeaderError as e:
        raise ConfigError(f"{path}:{e.lineno}: expected a [section] header before the first option") from None
    except configparser.ParsingError as e:
        # ParsingError has no lineno of its own: each error is (line number, repr of the line).
        # The line itself is never shown: it may hold a secret (a password, a URL with one).
        source = text.split("\n")
        lines = [
            f"{path}:{lineno}: cannot parse this line{_option_hint(source[lineno - 1])}: expected [section] or option = value"
            for lineno, _ in e.errors
        ]
        raise ConfigError(lines[0], lines) from None
    except configparser.Error as e:
        line = getattr(e, "lineno", None)
        message = str(e).splitlines()[0]
        raise ConfigError(f"{path}:{line}: {message}" if line else f"{path}: {message}") from None
    return parser, _Located.scan(text)


_SECRET_WORDS = ("secret", "password", "passwd", "key", "token", "connection", "transport_url")
_NOT_SECRETS = frozenset({"imds_tokens", "secret_rotation_window"})
"""Names with such a word that hold no secret (a mode)."""


def holds_secret(name: str) -> bool:
    """
    Whether an option's value must never be shown: its name says it holds a secret (a
    password, a shared secret, a private key, a token, a URL with credentials).
    """
    lowered = name.lower()
    if lowered in _NOT_SECRETS:
        return False
    return any(word in lowered for word in _SECRET_WORDS)


def _option_hint(line: str) -> str:
    """
    C{ (option "NAME"?)} for a malformed line that starts with an option-like word followed by
    more text, else nothing: only that first word is ever shown, never what follows it (a line
    of one word may be a secret on its own, so it is not named).
    """
    m = re.match(r"([A-Za-z_][A-Za-z0-9_.-]{0,63})\s+\S", line.strip())
    return f' (option "{m.group(1)}"?)' if m else ""



# --- loading ------------------------------------------------------------------------------------

def config_files(files: Sequence[str] = (), directories: Sequence[str] = ()) -> list[str]:
    """
    The files of C{--config-file} (in order) then, for each C{--config-dir}, every C{*.conf} in
    it in sorted order, as oslo.config reads them.

    @raise ConfigError: a directory cannot be listed.
    """
    found = list(files)
    for directory in directories:
        found.extend(_conf_files(directory))
    return found


def _conf_files(directory: str) -> list[str]:
    """The C{*.conf} files of C{directory} (not hidden ones), in sorted order."""
    try:
        names = os.listdir(directory)
    except OSError as e:
        raise ConfigError(f"{directory}: cannot read: {e.strerror or e}") from None
    return [os.path.join(directory, name) for name in sorted(names) if name.endswith(".conf") and not name.startswith(".")]


def given_sources(files: Sequence[str], directories: Sequence[str], environ: Mapping[str, str]) -> list[str] | None:
    """
    The configuration of a command line: its files and directories (L{config_files}); without
    any, C{$MDSVC_CONFIG} as one file; without that either, None (the embedded defaults).
    """
    if files or directories:
        return config_files(files, directories)
    return [environ["MDSVC_CONFIG"]] if environ.get("MDSVC_CONFIG") else None


def _sources(paths: str | Sequence[str] | None) -> tuple[str, ...] | None:
    """One file, several, or None (no configuration given), as a tuple or None."""
    if paths is None:
        return None
    return (paths,) if isinstance(paths, str) else tuple(paths)


@frozen
class _File:
    """One read configuration file."""

    path: str
    parser: configparser.RawConfigParser
    located: _Located

    def text(self, section: str, name: str) -> str | None:
        """The raw text of C{[section] name} in this file, or None."""
        if self.parser.has_section(section) and self.parser.has_option(section, name):
            return self.parser.get(section, name)
        return None

    def find(self, option: Option) -> tuple[str, str] | None:
        """C{(text, where)} of the option in this file, under its own name first, else an alias."""
        for section, name in (option.key,) + option.aliases:
            text = self.text(section, name)
            if text is not None:
                line = self.located.lines.get((section, name))
                where = f"{self.path}:{line}: [{section}] {name}" if line else f"{self.path}: [{section}] {name}"
                return text, where
        return None


def _read_files(paths: Sequence[str], problems: list[str] | None) -> list[_File]:
    """
    Read every file; with a C{problems} list, the problems of each unreadable file are appended
    to it and reading goes on.
    """
    files = []
    for path in paths:
        try:
            files.append(_File(path, *read_ini(path)))
        except ConfigError as e:
            if problems is None:
                raise
            problems.extend(e.lines)
    return files


@frozen
class _Texts:
    """
    The unsubstituted text of every option as the files and overrides set it, and oslo.config's
    C{$name} substitution on them (a later file may name an option set in an earlier one).

    @ivar raw: C{(text, where, directory)} of each option of the table that is set, by key:
        the last file setting it wins, then the overrides. C{directory} is the file's, which
        relative paths in it are taken from (None for an override: the current directory).
    """

    raw: Mapping[tuple[str, str], tuple[str, str, str | None]]
    files: Sequence[_File]

    @classmethod
    def of(cls, files: Sequence[_File], overrides: Mapping[tuple[str, str], str] | None) -> _Texts:
        """The texts of C{files} (later ones win, option by option), then of C{overrides}."""
        raw: dict[tuple[str, str], tuple[str, str, str | None]] = {}
        for f in files:
            directory = os.path.dirname(os.path.abspath(f.path))
            for option in OPTIONS:
                found = f.find(option)
                if found is not None:
                    raw[option.key] = (*found, directory)
        for key, text in (overrides or {}).items():
            raw[key] = (text, f"command line: [{key[0]}] {key[1]}", None)
        return cls(raw, tuple(files))

    def resolved(self, key: tuple[str, str], text: str) -> str:
        """
        C{text} (the substituted value of the option C{key}) with its relative paths taken from
        the directory of the file that set it, for an option naming files (L{Option.paths}).
        """
        option = _BY_KEY.get(key)
        directory = self.raw[key][2] if key in self.raw else None
        if option is None or option.paths is None or directory is None:
            return text
        return option.paths(text, directory)

    def text_of(self, section: str, name: str) -> str | None:
        """The unsubstituted text of C{[section] name}: set, in the last file that has it, or its default."""
        if (section, name) in self.raw:
            return self.raw[(section, name)][0]
        for f in reversed(self.files):
            text = f.text(section, name)
            if text is not None:
                return text
        option = _BY_KEY.get((section, name))
        return None if option is None else option.default

    def substitute(self, value: str, section: str, where: str, active: frozenset[tuple[str, str]]) -> str:
        """
        oslo.config substitution: C{$name} and C{${name}} name an option of the same section,
        else of [DEFAULT]; the value found is itself substituted; C{$$} is a literal dollar.
        """
        secret = any(holds_secret(n) for _, n in active)

        def repl(m: re.Match[str]) -> str:
            if m.group(0) == "$$":
                return "$"
            name = m.group(1) or m.group(2)
            for s in dict.fromkeys((section, "DEFAULT")):
                found = self.text_of(s, name)
                if found is not None:
                    if (s, name) in active:
                        if secret:
                            raise ConfigError(f"{where} = <secret>: a $ in it refers to the option itself (write $$ for a dollar sign)")
                        raise ConfigError(f"{where}: ${name} refers to itself")
                    # a path another file set is taken from that file's directory
                    return self.resolved((s, name), self.substitute(found, s, where, active | {(s, name)}))
            if secret:
                # the name after $ is part of the secret as written: do not show it
                raise ConfigError(f"{where} = <secret>: a $ in it names no option (write $$ for a dollar sign)")
            raise ConfigError(f"{where}: ${name} names no option")

        return re.sub(r"\$\$|\$\{(\w+)\}|\$(\w+)", repl, value)

    def value(self, option: Option) -> Any:
        """
        The parsed value of a set option.

        @raise ConfigError: naming where it is set; a secret's value is shown as C{<secret>}.
        """
        written, where, _ = self.raw[option.key]
        text = written if option.verbatim else self.substitute(written, option.section, where, frozenset({option.key}))
        text = self.resolved(option.key, text)
        try:
            return option.parse(text)
        except ValueError as e:
            # the value as written: what $name brought in may be another option's secret
            shown = "<secret>" if option.secret else repr(written.strip())
            raise ConfigError(f"{where} = {shown}: {e}") from None


def _values(texts: _Texts, problems: list[str] | None) -> dict[tuple[str, str], Any]:
    """
    The value of every option of the table; with a C{problems} list, bad values are appended to
    it (one line each) and take their defaults, so that L{check_config} reports every problem.
    """
    values: dict[tuple[str, str], Any] = {}
    for option in OPTIONS:
        if option.key not in texts.raw:
            values[option.key] = option.default_value()
            continue
        try:
            values[option.key] = texts.value(option)
        except ConfigError as e:
            if problems is None:
                raise
            problems.append(str(e))
            values[option.key] = option.default_value()
    return values


def load_values(
    paths: str | Sequence[str] | None, overrides: Mapping[tuple[str, str], str] | None = None
) -> dict[tuple[str, str], Any]:
    """
    Parse every known option of the files C{paths} (one path, several: later ones win, option by
    option; None: all defaults), applying C{overrides} as raw text.

    @raise ConfigError: for the first bad value, in one line.
    """
    files = _read_files(_sources(paths) or (), None)
    return _values(_Texts.of(files, overrides), None)


def load_config(paths: str | Sequence[str] | None, overrides: Mapping[tuple[str, str], str] | None = None) -> Config:
    """
    Load a node's configuration from the files C{paths}: one path or several, later files
    winning option by option (None: the embedded defaults, demo on).

    @raise ConfigError: one line naming file, line, section, option and what is allowed.
    """
    loaded = Loaded(load_values(paths, overrides), _sources(paths))
    fields = _fields(loaded)
    config = _build(Config, fields, "")
    if fields:
        raise TypeError(f"no field of Config is named {', '.join(sorted(fields))}")
    return config


def _fields(loaded: Loaded) -> dict[str, Any]:
    """Every field of the configuration by dotted path: the options' C{dest}s and L{DERIVED}."""
    fields: dict[str, Any] = {}
    filled = [(dest, loaded[o.key]) for o in OPTIONS for dest in o.dest]
    filled += [(dest, compute(loaded)) for dest, compute in DERIVED.items()]
    for dest, value in filled:
        if dest in fields:
            raise TypeError(f"two options or derived values fill {dest}")
        fields[dest] = value
    return fields


def _build(cls: type, fields: dict[str, Any], prefix: str) -> Any:
    """An instance of the attrs class C{cls} (nested ones too), taking its fields out of C{fields}."""
    kwargs = {}
    for f in attrs.fields(attrs.resolve_types(cls)):
        dest = prefix + f.name
        if attrs.has(f.type):
            kwargs[f.name] = _build(f.type, fields, dest + ".")
        elif dest in fields:
            kwargs[f.name] = fields.pop(dest)
        else:
            raise TypeError(f"no option or derived value fills {dest}")
    return cls(**kwargs)


def check_config(paths: str | Sequence[str] | None) -> list[str]:
    """
    Every problem of a configuration, one line each (empty: it is good): the files C{paths}
    read together as the service reads them (later files win, option by option).
    """
    problems: list[str] = []
    files = _read_files(_sources(paths) or (), problems)
    if not problems:
        _values(_Texts.of(files, None), problems)
    return problems


def located(config: Config, section: str, name: str) -> str:
    """
    Where C{[section] name} is set, for a message about its value: C{FILE:LINE: [section] name}
    of the last file that sets it (under an older name too), else the files read (or
    C{defaults}) and the option.
    """
    option = _BY_KEY.get((section, name))
    for f in reversed(_read_files(config.sources, [])):
        if option is not None:
            found = f.find(option)
            if found is not None:
                return found[1]
        elif f.text(section, name) is not None:
            line = f.located.lines.get((section, name))
            return f"{f.path}:{line}: [{section}] {name}" if line else f"{f.path}: [{section}] {name}"
    return f"{config.source or 'defaults'}: [{section}] {name}"


def vendor_options(config: Config, section: str) -> dict[str, str]:
    """
    The options of a vendor plugin's own section, C{[section]} of the node's files, as text:
    later files win, option by option, and C{$name} is substituted as in mdsvc's own options.
    Empty for the embedded defaults or when no file has the section.

    @raise ConfigError: a C{$name} names no option (one line naming the file and line).
    """
    files = _read_files(config.sources, None)
    texts = _Texts.of(files, None)
    found: dict[str, tuple[str, str]] = {}
    for f in files:
        if f.parser.has_section(section):
            for name in f.parser.options(section):
                line = f.located.lines.get((section, name))
                found[name] = (f.parser.get(section, name), f"{f.path}:{line}: [{section}] {name}" if line else f"{f.path}: [{section}] {name}")
    return {name: texts.substitute(text, section, where, frozenset({(section, name)})) for name, (text, where) in found.items()}
