# -*- test-case-name: tests.test_proxy_service -*-
"""
L{NamespaceProxies}: one listener per tenant namespace, all in this process (neutron spec §1 hop 1).

For each namespace the watcher reports, the listening sockets are created inside it (setns) and
handed to the reactor:

  - C{qdhcp-<network>} and C{ovnmeta-<network>}: C{169.254.169.254:80}, and
    C{[fe80::a9fe:a9fe]:80} on the interface holding that address once there is one; requests
    carry the network id.
  - C{qrouter-<router>}: C{[::]:9697} dual-stack (C{0.0.0.0:9697} where the namespace has no
    IPv6), reached through the iptables REDIRECT of Neutron's L3 agent; requests carry the
    router id.

A namespace that goes away takes its listeners with it; a listener that cannot be created now
(the namespace is still being plumbed) is tried again on the next rescan.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from typing import Any

from twisted.application.service import MultiService
from twisted.internet.interfaces import IListeningPort
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from mdsvc.hop import IAgentHop
from mdsvc.http import LeanHTTPFactory
from mdsvc.proxy.discovery import NamespaceWatcher, classify
from mdsvc.proxy.http import NamespaceProxyHandler
from mdsvc.proxy.netns import NamespaceError, adopt, interfaces_with_address, listening_socket_in_namespace

METADATA_V4 = "169.254.169.254"
METADATA_V6 = "fe80::a9fe:a9fe"
MAX_RECHECK = 300.0
"""Seconds between looks, at most, for the IPv6 address of a namespace that has none yet."""


class NamespaceProxies(MultiService):
    """
    The proxy role's namespace listeners.

    @ivar ports: namespace name -> {bind description: listening port}.
    @param site: makes a namespace's HTTP factory from its handler and log name (the node's
        timeouts and connection limits); default: a plain L{LeanHTTPFactory}.
    """

    _log = Logger()

    def __init__(
        self, reactor: Any, upstream: IAgentHop, *, directory: str = "/run/netns", wanted: str = "auto",
        interval: float = 5.0, router_port: int = 9697, use_inotify: bool = True,
        site: Callable[[NamespaceProxyHandler, str], LeanHTTPFactory] | None = None,
    ) -> None:
        super().__init__()
        self.reactor = reactor
        self.upstream = upstream
        self.directory = directory
        self.router_port = router_port
        self._site = site or (lambda handler, name: LeanHTTPFactory(handler, reactor, name=name))
        self.ports: dict[str, dict[str, IListeningPort]] = {}
        self.problems: dict[str, str] = {}
        """Namespace name -> why its listeners could not be created the last time it was tried."""
        self._sites: dict[str, LeanHTTPFactory] = {}
        self.watcher = NamespaceWatcher(
            on_added=self.added, on_removed=self.removed, clock=reactor, directory=directory,
            wanted=_wanted(wanted), interval=interval, use_inotify=use_inotify, reactor=reactor,
        )
        self.watcher.setServiceParent(self)
        self._recheck: dict[str, tuple[float, float]] = {}
        self._v6_loop = LoopingCall(self._complete_all)
        self._v6_loop.clock = reactor
        self._interval = interval

    def startService(self) -> None:
        """Start watching, and keep completing namespaces whose IPv6 address arrives late."""
        super().startService()
        self._v6_loop.start(self._interval, now=False)

    def stopService(self) -> Any:
        """Stop watching and close every listener."""
        if self._v6_loop.running:
            self._v6_loop.stop()
        d = super().stopService()
        for name in list(self.ports):
            self._close(name)
        return d

    def added(self, name: str) -> None:
        """Create the listeners of a new namespace; raising makes the watcher try again later."""
        kind = classify(name)
        if kind is None:
            return
        self._sites[name] = self._site(NamespaceProxyHandler(kind.kind, kind.id, self.upstream), f"metadata-proxy {name}")
        self.ports.setdefault(name, {})
        try:
            self._complete(name)
        except NamespaceError as e:
            self._close(name)
            self.problems[name] = str(e)
            raise
        self.problems.pop(name, None)
        self._log.info("serving metadata in namespace {namespace} on {binds}", namespace=name, binds=sorted(self.ports[name]))

    def removed(self, name: str) -> None:
        """Close the listeners of a namespace that is gone."""
        self.problems.pop(name, None)
        if name in self.ports:
            self._close(name)
            self._log.info("namespace {namespace} is gone; its listeners are closed", namespace=name)

    def _close(self, name: str) -> None:
        self._recheck.pop(name, None)
        for port in self.ports.pop(name, {}).values():
            port.stopListening()
        self._sites.pop(name, None)

    def _complete_all(self) -> None:
        """
        Look again at namespaces still missing a listener (their IPv6 address comes later),
        each less often the longer it stays incomplete (up to every C{MAX_RECHECK} seconds): a
        thousand IPv4-only networks must not cost a thousand namespace switches per rescan.
        """
        now = self.reactor.seconds()
        for name in list(self.ports):
            due, wait = self._recheck.get(name, (0.0, self._interval))
            if now < due or self._complete_already(name):
                continue
            try:
                self._complete(name)
            except NamespaceError as e:
                self._log.warn("{error}", error=str(e))
            if not self._complete_already(name):
                self._recheck[name] = (now + wait, min(wait * 2, MAX_RECHECK))

    def listeners_open(self) -> int:
        """Listening sockets held in namespaces."""
        return sum(len(ports) for ports in self.ports.values())

    def waiting_for_ipv6(self) -> list[str]:
        """The served qdhcp-/ovnmeta- namespaces still without their IPv6 listener (no fe80::a9fe:a9fe yet)."""
        return sorted(name for name, ports in self.ports.items() if "v4" in ports and "v6" not in ports)

    def status(self) -> dict[str, dict[str, Any]]:
        """Every namespace discovered: its listeners (bind names) and the last problem creating them."""
        names = set(self.watcher.discovered()) | set(self.ports) | set(self.problems)
        return {name: {"listeners": sorted(self.ports.get(name, {})), "problem": self.problems.get(name)} for name in sorted(names)}

    def _complete_already(self, name: str) -> bool:
        kind = classify(name)
        ports = self.ports.get(name, {})
        return kind is None or ("router" in ports if kind.prefix == "qrouter" else {"v4", "v6"} <= set(ports))

    def _complete(self, name: str) -> None:
        """Create whichever listeners of C{name} are missing and possible now."""
        kind = classify(name)
        if kind is None or name not in self._sites:
            return
        path = os.path.join(self.directory, name)
        ports = self.ports[name]
        site = self._sites[name]
        if kind.prefix == "qrouter":
            if "router" not in ports:
                try:
                    sock = listening_socket_in_namespace(path, socket.AF_INET6, "::", self.router_port, freebind=False)
                except NamespaceError:
                    sock = listening_socket_in_namespace(path, socket.AF_INET, "0.0.0.0", self.router_port, freebind=False)
                ports["router"] = adopt(self.reactor, sock, site)
            return
        if "v4" not in ports:
            ports["v4"] = adopt(self.reactor, listening_socket_in_namespace(path, socket.AF_INET, METADATA_V4, 80), site)
        if "v6" not in ports:
            interfaces = interfaces_with_address(path, METADATA_V6)
            if interfaces:
                sock = listening_socket_in_namespace(path, socket.AF_INET6, METADATA_V6, 80, interface=interfaces[0])
                ports["v6"] = adopt(self.reactor, sock, site)
                self._log.info("serving metadata in namespace {namespace} on [{address}%{interface}]:80",
                               namespace=name, address=METADATA_V6, interface=interfaces[0])


def _wanted(value: str) -> Any:
    value = value.strip()
    if value in ("auto", "none"):
        return value
    return [v.strip() for v in value.split(",") if v.strip()]
