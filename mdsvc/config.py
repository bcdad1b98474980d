# -*- test-case-name: tests.test_config -*-
"""
Configuration from INI files that use the option names of nova.conf and metadata_agent.ini.

An operator's existing files work as they are: unknown sections and options are ignored,
C{$name} / C{${name}} substitution works as in oslo.config, and a bad value stops startup with
one line naming the file, line, section, option and what is allowed (L{ConfigError}).
"""

from __future__ import annotations

import configparser
import re
from typing import Any, Callable, Iterable, Mapping

from attrs import define, field, frozen


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


def choice(*choices: str) -> Callable[[str], str]:
    """One of fixed choices."""

    def parse(text: str) -> str:
        value = text.strip()
        if value not in choices:
            raise ValueError(f"allowed: {' | '.join(choices)}")
        return value

    return parse


def listOf(item: Callable[[str], Any] = string, sep: str | None = ",") -> Callable[[str], tuple[Any, ...]]:
    """A comma-separated list (oslo ListOpt), or whitespace-separated when C{sep} is None."""

    def parse(text: str) -> tuple[Any, ...]:
        parts = text.split(sep) if sep else text.split()
        return tuple(item(p.strip()) for p in parts if p.strip())

    return parse


def endpoint(text: str) -> str:
    """A Twisted server or client endpoint string; checked for shape here, fully when used."""
    value = text.strip()
    if not re.match(r"^[a-z0-9]+:", value):
        raise ValueError("allowed: a Twisted endpoint string such as tcp:8775:interface=127.0.0.1 or unix:/run/mdsvc/api.sock")
    return value


def listeners(text: str) -> tuple["Listener", ...]:
    """C{[proxy] listeners}: one C{network|router ID ENDPOINT} per line (or separated by C{;})."""
    out = []
    for line in re.split(r"[\n;]", text):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 3 or parts[0] not in ("network", "router") or not re.match(r"^[a-z0-9]+:", parts[2]):
            raise ValueError("allowed: lines of 'network ID ENDPOINT' or 'router ID ENDPOINT', e.g. network 5f3e... tcp:8080:interface=127.0.0.1")
        out.append(Listener(parts[0], parts[1], parts[2]))
    return tuple(out)


def lookup_backend(text: str) -> str:
    """C{[mdsvc] lookup}: store, neutron or static:PATH."""
    value = text.strip()
    if value in ("store", "neutron") or (value.startswith("static:") and len(value) > 7):
        return value
    if re.match(r"^[a-z][a-z0-9_-]*(:.+)?$", value) and not value.startswith("static"):
        return value  # a vendor plugin's NAME[:ARG]; checked when the agent is built
    raise ValueError("allowed: store | neutron | static:PATH | a plugin's NAME[:ARG]")


def store_url(text: str) -> str:
    """An instance store: C{sqlite:PATH} (or a vendor plugin's C{name:ARG})."""
    value = text.strip()
    if ":" not in value or not value.split(":", 1)[1]:
        raise ValueError("allowed: sqlite:PATH")
    return value


# --- the option table ------------------------------------------------------------------------

@frozen
class Option:
    """One option: where it lives, how it parses, its default and older names it may go by."""

    section: str
    name: str
    parse: Callable[[str], Any]
    default: Any
    aliases: tuple[tuple[str, str], ...] = ()


OPTIONS: tuple[Option, ...] = (
    Option("DEFAULT", "state_path", string, "/var/lib/mdsvc"),
    Option("DEFAULT", "debug", boolean, False),
    Option("DEFAULT", "metadata_listen", string, "0.0.0.0"),
    Option("DEFAULT", "metadata_listen_port", integer(0, 65535), 8775),
    Option("DEFAULT", "flat_injected", boolean, False),
    Option("api", "metadata_cache_expiration", integer(0), 15),
    Option("api", "dhcp_domain", string, "novalocal", aliases=(("DEFAULT", "dhcp_domain"),)),
    Option("api", "vendordata_providers", listOf(choice("StaticJSON", "DynamicJSON")), ("StaticJSON",)),
    Option("api", "vendordata_jsonfile_path", string, None),
    Option("api", "vendordata_dynamic_targets", listOf(), ()),
    Option("api", "vendordata_dynamic_ssl_certfile", string, ""),
    Option("api", "vendordata_dynamic_connect_timeout", integer(3), 5),
    Option("api", "vendordata_dynamic_read_timeout", integer(0), 5),
    Option("api", "vendordata_dynamic_failure_fatal", boolean, False),
    Option("api", "use_forwarded_for", boolean, False, aliases=(("DEFAULT", "use_forwarded_for"),)),
    Option("api", "config_drive_skip_versions", listOf(sep=None),
           ("1.0", "2007-01-19", "2007-03-01", "2007-08-29", "2007-10-10", "2007-12-15", "2008-02-01", "2008-09-01")),
    Option("neutron", "service_metadata_proxy", boolean, False),
    Option("neutron", "metadata_proxy_shared_secret", lambda s: s, "", aliases=(("DEFAULT", "metadata_proxy_shared_secret"),)),
    Option("mdsvc", "store", store_url, None),
    Option("mdsvc", "api_endpoint", endpoint, None),
    Option("mdsvc", "demo", boolean, None),
    Option("mdsvc", "access_log", boolean, False),
    # the agent (metadata_agent.ini names)
    Option("DEFAULT", "metadata_proxy_socket", string, None),
    Option("DEFAULT", "metadata_proxy_socket_mode", choice("deduce", "user", "group", "all"), "deduce"),
    Option("DEFAULT", "metadata_proxy_user", string, ""),
    Option("DEFAULT", "metadata_proxy_group", string, ""),
    Option("DEFAULT", "metadata_backlog", integer(1), 4096),
    Option("DEFAULT", "nova_metadata_host", string, "127.0.0.1", aliases=(("DEFAULT", "nova_metadata_ip"),)),
    Option("DEFAULT", "nova_metadata_port", integer(1, 65535), 8775),
    Option("DEFAULT", "nova_metadata_protocol", choice("http", "https"), "http"),
    Option("DEFAULT", "nova_metadata_insecure", boolean, False),
    Option("DEFAULT", "auth_ca_cert", string, ""),
    Option("DEFAULT", "nova_client_cert", string, ""),
    Option("DEFAULT", "nova_client_priv_key", string, ""),
    Option("cache", "enabled", boolean, True),
    Option("cache", "expiration_time", integer(0), 10),
    Option("cache", "negative_expiration_time", integer(0), 2),
    Option("metadata_rate_limiting", "rate_limit_enabled", boolean, False),
    Option("metadata_rate_limiting", "ip_versions", listOf(choice("4", "6")), ("4",)),
    # Not Neutron's 10 requests per 10 s, which cut a cloud-init boot (28-32 GETs within a few
    # seconds) short: the burst window admits two whole boots back to back, the base window
    # about eight boots a minute (4 requests/s sustained); a flood is refused after its first 60
    # requests and stays refused while it goes on (refused requests count).
    Option("metadata_rate_limiting", "base_window_duration", integer(1), 60),
    Option("metadata_rate_limiting", "base_query_rate_limit", integer(1), 240),
    Option("metadata_rate_limiting", "burst_window_duration", integer(1), 10),
    Option("metadata_rate_limiting", "burst_query_rate_limit", integer(1), 60),
    Option("mdsvc", "agent_endpoint", endpoint, None),
    Option("mdsvc", "lookup", lookup_backend, "store"),
    Option("mdsvc", "api_connect_timeout", number(0.1), 5.0),
    Option("mdsvc", "api_timeout", number(0.1), 20.0),
    Option("mdsvc", "api_pool_size", integer(1), 4),
    Option("mdsvc", "api_pipeline_depth", integer(1, 128), 16),
    Option("mdsvc", "agent_timeout", number(0.1), 25.0),
    # the namespace proxies
    Option("proxy", "namespaces", string, "auto"),
    Option("proxy", "netns_dir", string, "/run/netns"),
    Option("proxy", "rescan_interval", number(0.1), 5.0),
    Option("proxy", "listeners", listeners, ()),
    Option("proxy", "metadata_port", integer(1, 65535), 9697),
    # Neutron's REST API for the neutron lookup backend (nova.conf [neutron] keystoneauth names)
    Option("neutron", "auth_url", string, ""),
    Option("neutron", "username", string, ""),
    Option("neutron", "password", lambda s: s, ""),
    Option("neutron", "project_name", string, ""),
    Option("neutron", "user_domain_name", string, "Default"),
    Option("neutron", "project_domain_name", string, "Default"),
    Option("neutron", "region_name", string, ""),
    Option("neutron", "valid_interfaces", listOf(choice("internal", "public", "admin")), ("internal", "public")),
    Option("neutron", "endpoint_override", string, ""),
    Option("neutron", "cafile", string, ""),
    Option("neutron", "insecure", boolean, False),
    Option("neutron", "timeout", number(0.1), 10.0),
    # what one guest, and all guests together, may hold (every role's HTTP listeners)
    Option("mdsvc", "request_timeout", number(0.1), 30.0),
    Option("mdsvc", "idle_timeout", number(0.1), 60.0),
    Option("mdsvc", "max_connections", integer(0), 4096),
    Option("mdsvc", "max_connections_per_guest", integer(0), 64),
)

_BY_KEY = {(o.section, o.name): o for o in OPTIONS}


# --- the parsed configuration ------------------------------------------------------------------

@frozen
class ApiConfig:
    """What the metadata API role needs (nova.conf names)."""

    listen_endpoint: str
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
    service_metadata_proxy: bool
    shared_secret: str = field(repr=False)
    flat_injected: bool
    config_drive_skip_versions: tuple[str, ...]
    debug: bool


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
class Config:
    """The whole parsed configuration of a node."""

    source: str | None
    state_path: str
    store: str
    demo: bool
    api: ApiConfig
    agent: AgentConfig
    access_log: bool
    proxy: ProxyConfig
    limits: GuestLimits


@define
class _Located:
    """Line numbers of C{[section] option} in a file, for error messages."""

    lines: dict[tuple[str, str], int] = field(factory=dict)

    @classmethod
    def scan(cls, text: str) -> "_Located":
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


def holds_secret(name: str) -> bool:
    """
    Whether an option's value must never be shown: its name says it holds a secret (a
    password, a shared secret, a private key, a token, a URL with credentials).
    """
    lowered = name.lower()
    return any(word in lowered for word in _SECRET_WORDS)


def _option_hint(line: str) -> str:
    """
    C{ (option "NAME"?)} for a malformed line that starts with an option-like word followed by
    more text, else nothing: only that first word is ever shown, never what follows it (a line
    of one word may be a secret on its own, so it is not named).
    """
    m = re.match(r"([A-Za-z_][A-Za-z0-9_.-]{0,63})\s+\S", line.strip())
    return f' (option "{m.group(1)}"?)' if m else ""


def load_values(path: str | None, overrides: Mapping[tuple[str, str], str] | None = None) -> dict[tuple[str, str], Any]:
    """
    Parse every known option of C{path} (None: all defaults), applying C{overrides} as raw text.

    @raise ConfigError: for the first bad value, in one line.
    """
    return _load(path, overrides, None)


def _load(
    path: str | None, overrides: Mapping[tuple[str, str], str] | None, problems: list[str] | None
) -> dict[tuple[str, str], Any]:
    """
    L{load_values}; with a C{problems} list, bad values are appended to it (one line each) and
    loading goes on, so that L{check_config} reports every problem the service would meet.
    """
    raw: dict[tuple[str, str], tuple[str, str]] = {}  # key -> (text, where)
    parser = None
    if path is not None:
        parser, located = read_ini(path)
        for option in OPTIONS:
            for section, name in ((option.section, option.name),) + option.aliases:
                if parser.has_section(section) and parser.has_option(section, name):
                    line = located.lines.get((section, name))
                    where = f"{path}:{line}: [{section}] {name}" if line else f"{path}: [{section}] {name}"
                    raw[(option.section, option.name)] = (parser.get(section, name), where)
                    break
    for key, text in (overrides or {}).items():
        raw[key] = (text, f"command line: [{key[0]}] {key[1]}")

    def text_of(section: str, name: str) -> str | None:
        """The unsubstituted text of C{[section] name}: set, in the file, or its default."""
        if (section, name) in raw:
            return raw[(section, name)][0]
        if parser is not None and parser.has_section(section) and parser.has_option(section, name):
            return parser.get(section, name)
        if (section, name) in _BY_KEY and _BY_KEY[(section, name)].default is not None:
            return str(_BY_KEY[(section, name)].default)
        return None

    def substitute(value: str, section: str, where: str, active: frozenset[tuple[str, str]]) -> str:
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
                found = text_of(s, name)
                if found is not None:
                    if (s, name) in active:
                        if secret:
                            raise ConfigError(f"{where} = <secret>: a $ in it refers to the option itself (write $$ for a dollar sign)")
                        raise ConfigError(f"{where}: ${name} refers to itself")
                    return substitute(found, s, where, active | {(s, name)})
            if secret:
                # the name after $ is part of the secret as written: do not show it
                raise ConfigError(f"{where} = <secret>: a $ in it names no option (write $$ for a dollar sign)")
            raise ConfigError(f"{where}: ${name} names no option")

        return re.sub(r"\$\$|\$\{(\w+)\}|\$(\w+)", repl, value)

    values: dict[tuple[str, str], Any] = {}
    for option in OPTIONS:
        key = (option.section, option.name)
        if key not in raw:
            values[key] = option.default
            continue
        written, where = raw[key]
        try:
            text = written
            if option.name != "metadata_proxy_shared_secret":
                text = substitute(text, option.section, where, frozenset({key}))
            try:
                values[key] = option.parse(text)
            except ValueError as e:
                # the value as written: what $name brought in may be another option's secret
                shown = "<secret>" if holds_secret(option.name) else repr(written.strip())
                raise ConfigError(f"{where} = {shown}: {e}") from None
        except ConfigError as e:
            if problems is None:
                raise
            problems.append(str(e))
            values[key] = option.default
    return values


def load_config(path: str | None, overrides: Mapping[tuple[str, str], str] | None = None) -> Config:
    """
    Load a node's configuration from C{path} (None: the embedded defaults, demo on).

    @raise ConfigError: one line naming file, line, section, option and what is allowed.
    """
    v = load_values(path, overrides)
    state_path = v[("DEFAULT", "state_path")]
    listen = v[("mdsvc", "api_endpoint")]
    if listen is None:
        host = v[("DEFAULT", "metadata_listen")].replace(":", r"\:")
        port = v[("DEFAULT", "metadata_listen_port")]
        listen = f"tcp6:{port}:interface={host}" if ":" in v[("DEFAULT", "metadata_listen")] else f"tcp:{port}:interface={host}"
    demo = v[("mdsvc", "demo")]
    socket_path = v[("DEFAULT", "metadata_proxy_socket")] or f"{state_path}/metadata_proxy"
    host = v[("DEFAULT", "nova_metadata_host")]
    versions = v[("metadata_rate_limiting", "ip_versions")]
    return Config(
        source=path,
        state_path=state_path,
        store=v[("mdsvc", "store")] or f"sqlite:{state_path}/mdsvc.sqlite",
        demo=(path is None) if demo is None else demo,
        access_log=v[("mdsvc", "access_log")],
        agent=AgentConfig(
            socket_path=socket_path,
            socket_mode=v[("DEFAULT", "metadata_proxy_socket_mode")],
            proxy_user=v[("DEFAULT", "metadata_proxy_user")],
            proxy_group=v[("DEFAULT", "metadata_proxy_group")],
            backlog=v[("DEFAULT", "metadata_backlog")],
            listen_endpoint=v[("mdsvc", "agent_endpoint")] or "",
            api_url="%s://%s:%d" % (
                v[("DEFAULT", "nova_metadata_protocol")], f"[{host}]" if ":" in host else host, v[("DEFAULT", "nova_metadata_port")]),
            api_host=host,
            api_port=v[("DEFAULT", "nova_metadata_port")],
            api_insecure=v[("DEFAULT", "nova_metadata_insecure")],
            api_ca_cert=v[("DEFAULT", "auth_ca_cert")],
            api_client_cert=v[("DEFAULT", "nova_client_cert")],
            api_client_key=v[("DEFAULT", "nova_client_priv_key")],
            shared_secret=v[("neutron", "metadata_proxy_shared_secret")],
            api_connect_timeout=v[("mdsvc", "api_connect_timeout")],
            api_timeout=v[("mdsvc", "api_timeout")],
            api_pool_size=v[("mdsvc", "api_pool_size")],
            api_pipeline_depth=v[("mdsvc", "api_pipeline_depth")],
            cache_enabled=v[("cache", "enabled")],
            cache_ttl=v[("cache", "expiration_time")],
            cache_negative_ttl=v[("cache", "negative_expiration_time")],
            lookup=v[("mdsvc", "lookup")],
            rate_limit=RateLimitConfig(
                enabled=v[("metadata_rate_limiting", "rate_limit_enabled")],
                ip_version=int(versions[0]) if len(versions) == 1 else None,
                base_window=v[("metadata_rate_limiting", "base_window_duration")],
                base_limit=v[("metadata_rate_limiting", "base_query_rate_limit")],
                burst_window=v[("metadata_rate_limiting", "burst_window_duration")],
                burst_limit=v[("metadata_rate_limiting", "burst_query_rate_limit")],
            ),
            neutron=NeutronClientConfig(
                auth_url=v[("neutron", "auth_url")], username=v[("neutron", "username")], password=v[("neutron", "password")],
                project_name=v[("neutron", "project_name")], user_domain_name=v[("neutron", "user_domain_name")],
                project_domain_name=v[("neutron", "project_domain_name")], region_name=v[("neutron", "region_name")],
                valid_interfaces=v[("neutron", "valid_interfaces")], endpoint_override=v[("neutron", "endpoint_override")],
                cafile=v[("neutron", "cafile")], insecure=v[("neutron", "insecure")], timeout=v[("neutron", "timeout")],
            ),
        ),
        proxy=ProxyConfig(
            namespaces=v[("proxy", "namespaces")],
            netns_dir=v[("proxy", "netns_dir")],
            rescan_interval=v[("proxy", "rescan_interval")],
            listeners=v[("proxy", "listeners")],
            router_port=v[("proxy", "metadata_port")],
            agent_timeout=v[("mdsvc", "agent_timeout")],
        ),
        api=ApiConfig(
            listen_endpoint=listen,
            cache_expiration=v[("api", "metadata_cache_expiration")],
            dhcp_domain=v[("api", "dhcp_domain")],
            vendordata_providers=v[("api", "vendordata_providers")],
            vendordata_jsonfile_path=v[("api", "vendordata_jsonfile_path")] or None,
            vendordata_dynamic_targets=v[("api", "vendordata_dynamic_targets")],
            vendordata_dynamic_ssl_certfile=v[("api", "vendordata_dynamic_ssl_certfile")],
            vendordata_dynamic_connect_timeout=v[("api", "vendordata_dynamic_connect_timeout")],
            vendordata_dynamic_read_timeout=v[("api", "vendordata_dynamic_read_timeout")],
            vendordata_dynamic_failure_fatal=v[("api", "vendordata_dynamic_failure_fatal")],
            use_forwarded_for=v[("api", "use_forwarded_for")],
            service_metadata_proxy=v[("neutron", "service_metadata_proxy")],
            shared_secret=v[("neutron", "metadata_proxy_shared_secret")],
            flat_injected=v[("DEFAULT", "flat_injected")],
            config_drive_skip_versions=v[("api", "config_drive_skip_versions")],
            debug=v[("DEFAULT", "debug")],
        ),
        limits=GuestLimits(
            request_timeout=v[("mdsvc", "request_timeout")],
            idle_timeout=v[("mdsvc", "idle_timeout")],
            max_connections=v[("mdsvc", "max_connections")],
            max_connections_per_guest=v[("mdsvc", "max_connections_per_guest")],
        ),
    )


def check_config(path: str) -> list[str]:
    """Every problem of a configuration file, one line each (empty: the file is good)."""
    problems: list[str] = []
    try:
        _load(path, None, problems)
    except ConfigError as e:
        return list(e.lines)
    return problems


def known_options() -> Iterable[Option]:
    """The options mdsvc reads (for sample configs and docs)."""
    return OPTIONS
