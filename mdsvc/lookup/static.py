# -*- test-case-name: tests.test_lookup_static -*-
"""
The C{static:PATH} lookup backend: ports and routers listed in a JSON or YAML file.

For labs, appliances and clouds whose port data comes from elsewhere::

    {"ports": [{"network_id": "net1", "ip_address": ["10.0.0.5", "fd00::5"],
                "mac_address": "fa:16:3e:00:00:01", "device_id": "<instance uuid>",
                "project_id": "<project id>"}],
     "routers": {"<router id>": ["net1", "net2"]}}

The file is read again when its modification time or size changes (one C{stat} per lookup).  It
is validated whole on load; a bad file is reported in one line naming the file and the entry,
and the last good content, if any, goes on being served.
"""

from __future__ import annotations

import json
from typing import Any

import yaml
from attrs import define, field, frozen
from twisted.internet.defer import Deferred, fail, succeed
from twisted.logger import Logger
from zope.interface import implementer

from mdsvc.files import WatchedFile
from mdsvc.hop import canonical_ip
from mdsvc.interfaces import IInstanceLookup, LookupUnavailable
from mdsvc.lookup._match import choose, no_networks
from mdsvc.model import MAC_PATTERN, YAMLDocumentLoader, kind_of
from mdsvc.readiness import IHealthCheck

_PORT_KEYS = ("network_id", "ip_address", "mac_address", "device_id", "project_id")


class StaticFileError(ValueError):
    """The static lookup file is unusable; C{str()} is one line naming the file and the entry."""


@frozen
class StaticPorts:
    """
    The content of a static lookup file, indexed for lookups.

    @ivar by_ip: C{(network_id, canonical ip)} to the C{(device_id, project_id)} of its ports.
    @ivar by_mac: C{(network_id, lower-case mac)} to the same.
    @ivar routers: router id to its networks.
    """

    by_ip: dict[tuple[str, str], list[tuple[str, str]]] = field(factory=dict)
    by_mac: dict[tuple[str, str], list[tuple[str, str]]] = field(factory=dict)
    routers: dict[str, tuple[str, ...]] = field(factory=dict)


def _kind(value: Any) -> str:
    return kind_of(value, mapping="a mapping")


def parse_static(path: str, text: str) -> StaticPorts:
    """
    Parse and validate the text of a static lookup file (JSON if C{path} ends in C{.json},
    else YAML, which also reads JSON).

    @raise StaticFileError: one line, C{PATH[:LINE]: WHERE: PROBLEM}.
    """
    if path.endswith(".json"):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise StaticFileError(f"{path}:{e.lineno}: invalid JSON: {e.msg}") from None
    else:
        try:
            data = yaml.load(text, Loader=YAMLDocumentLoader)
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = f"{path}:{mark.line + 1}" if mark is not None else path
            problem = getattr(e, "problem", None) or str(e).splitlines()[0]
            raise StaticFileError(f"{where}: invalid YAML: {problem}") from None

    def bad(where: str, problem: str) -> StaticFileError:
        return StaticFileError(f"{path}: {where}: {problem}" if where else f"{path}: {problem}")

    def string(value: Any, where: str, empty: bool = False) -> str:
        if not isinstance(value, str):
            raise bad(where, f"expected a string, got {_kind(value)}")
        if not value.strip() and not empty:
            raise bad(where, "must not be empty")
        return value.strip()

    if not isinstance(data, dict):
        raise bad("", f"expected a mapping with 'ports' and 'routers', got {_kind(data)}")
    for key in data:
        if key not in ("ports", "routers"):
            raise bad("", f"unknown key {key!r} (allowed: ports, routers)")
    ports = data.get("ports")
    routers = data.get("routers")
    ports = [] if ports is None else ports
    routers = {} if routers is None else routers
    if not isinstance(ports, list):
        raise bad("ports", f"expected a list, got {_kind(ports)}")
    if not isinstance(routers, dict):
        raise bad("routers", f"expected a mapping of router id to networks, got {_kind(routers)}")
    result = StaticPorts()
    for i, port in enumerate(ports):
        where = f"ports[{i}]"
        if not isinstance(port, dict):
            raise bad(where, f"expected a mapping, got {_kind(port)}")
        for key in port:
            if key not in _PORT_KEYS:
                raise bad(where, f"unknown key {key!r} (allowed: {', '.join(_PORT_KEYS)})")
        for key in ("network_id", "device_id", "project_id"):
            if key not in port:
                raise bad(where, f"{key} is missing")
        network = string(port["network_id"], f"{where}.network_id")
        owner = (string(port["device_id"], f"{where}.device_id", empty=True),
                 string(port["project_id"], f"{where}.project_id", empty=True))
        raw_ips = port.get("ip_address")
        if raw_ips is None:
            addresses: list[tuple[Any, str]] = []
        elif isinstance(raw_ips, list):
            addresses = [(raw, f"{where}.ip_address[{j}]") for j, raw in enumerate(raw_ips)]
        else:
            addresses = [(raw_ips, f"{where}.ip_address")]
        for raw, ip_at in addresses:
            text = string(raw, ip_at)
            ip = canonical_ip(text)
            if ip is None:
                raise bad(ip_at, f"{text!r} is not an IP address")
            result.by_ip.setdefault((network, ip), []).append(owner)
        mac = port.get("mac_address")
        if mac is not None:
            text = string(mac, f"{where}.mac_address")
            if not MAC_PATTERN.match(text):
                raise bad(f"{where}.mac_address", f"{text!r} is not a MAC address (expected six colon-separated hex bytes)")
            result.by_mac.setdefault((network, text.lower()), []).append(owner)
        elif not addresses:
            raise bad(where, "needs an ip_address or a mac_address")
    for router, networks in routers.items():
        if not isinstance(router, str) or not router.strip():
            raise bad("routers", f"router ids must be non-empty strings, got {router!r}")
        where = f"routers[{router!r}]"
        if not isinstance(networks, list):
            raise bad(where, f"expected a list of network ids, got {_kind(networks)}")
        ids = [string(n, f"{where}[{j}]") for j, n in enumerate(networks)]
        result.routers[router.strip()] = tuple(dict.fromkeys(ids))
    return result


@implementer(IInstanceLookup, IHealthCheck)
@define(eq=False)
class StaticLookup:
    """
    L{IInstanceLookup} over a static JSON or YAML file (see the module docstring).

    @ivar path: the file.
    """

    path: str
    name = "static"
    _log = Logger()
    _file: WatchedFile[StaticPorts] = field(init=False)

    def __attrs_post_init__(self) -> None:
        self._file = WatchedFile(self.path, self._parse, keep_last_good=True)

    def _parse(self, data: bytes) -> StaticPorts:
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise ValueError(f"{self.path}: not UTF-8 text") from None
        try:
            return parse_static(self.path, text)
        except StaticFileError as e:
            raise ValueError(str(e)) from None

    def load(self) -> StaticPorts:
        """
        The file's content now: read again only if its modification time or size changed.

        A bad or missing file is logged once per change; the last good content is returned if
        there is one.

        @raise LookupUnavailable: the file is bad and there was no good content before.
        """
        loaded = self._file.load()
        if loaded.error is not None:
            reason = loaded.error if loaded.error.startswith(self.path) else f"{self.path}: {loaded.error}"
            if loaded.changed:
                if loaded.value is not None:
                    self._log.warn("{reason}; still using the last good content", reason=reason, path=self.path)
                else:
                    self._log.warn("{reason}", reason=reason, path=self.path)
            if loaded.value is None:
                raise LookupUnavailable(reason)
            return loaded.value
        content = loaded.value
        assert content is not None
        if loaded.changed:
            self._log.info(
                "loaded {ports} port addresses and {routers} routers from {path}",
                ports=len(content.by_ip) + len(content.by_mac), routers=len(content.routers), path=self.path,
            )
        return content

    def check(self) -> Deferred[None]:
        """See L{mdsvc.readiness.IHealthCheck}: the file can be read and parsed."""
        try:
            self.load()
        except LookupUnavailable as e:
            return fail(e)
        return succeed(None)

    def lookup(
        self, ip: str, network_id: str | None = None, router_id: str | None = None, mac: str | None = None
    ) -> Deferred[tuple[str, str | None] | None]:
        """
        See L{IInstanceLookup.lookup}.  Given both a network and a router, the network is used;
        given neither, the Deferred fails with L{TypeError}.
        """
        if network_id is None and router_id is None:
            return fail(TypeError("Either one of parameter network_id or router_id must be passed to lookup."))
        try:
            content = self.load()
        except LookupUnavailable as e:
            return fail(e)
        if network_id is not None:
            networks: tuple[str, ...] = (network_id,)
        else:
            assert router_id is not None
            if router_id not in content.routers:
                no_networks(self._log, router_id, known=False)
                return succeed(None)
            networks = content.routers[router_id]
            if not networks:
                no_networks(self._log, router_id)
                return succeed(None)
        if mac is not None:
            key = mac.strip().lower()
            matches = [m for n in networks for m in content.by_mac.get((n, key), [])]
        else:
            key = canonical_ip(ip) or ip
            matches = [m for n in networks for m in content.by_ip.get((n, key), [])]
        return succeed(choose(matches, self._log, ip, network_id, router_id, mac))
