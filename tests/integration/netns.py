"""
Integration helpers: a small cloud of real network namespaces (DHCP and router namespaces, guests
behind them), removed again when the test ends, also when it fails.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid as uuidlib
from collections.abc import Callable
from typing import Any

from twisted.trial.unittest import SkipTest


def require_netns() -> None:
    """
    Skip, saying so, where namespaces cannot be made (not root); fail in one line naming the
    packages to install when root lacks ip, iptables or curl.
    """
    if os.geteuid() != 0:
        raise SkipTest("needs root and ip netns (integration tests with real network namespaces)")
    packages = {"ip": "iproute2", "iptables": "iptables", "curl": "curl"}
    missing = [package for tool, package in packages.items() if shutil.which(tool) is None]
    if missing:
        from tests.integration.processes import NotInstalled

        raise NotInstalled(f"the namespace tests need {', '.join(packages)}: apt-get install {' '.join(missing)} "
                           "(bash .ci/install-test-deps does; make test runs it)")


def run(*args: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """Run a command; a failure raises with its output."""
    result = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed ({result.returncode}): {result.stderr.strip()}")
    return result


class Cloud:
    """
    Namespaces and veth pairs for one test; every namespace is deleted by C{cleanup} (registered
    with the test case as soon as the namespace exists).
    """

    def __init__(self, add_cleanup: Callable[..., Any]) -> None:
        self._add_cleanup = add_cleanup
        self.namespaces: list[str] = []

    def namespace(self, name: str) -> str:
        """Create a namespace with loopback up and IPv6 DAD off (addresses usable at once)."""
        run("ip", "netns", "add", name)
        self._add_cleanup(self.delete, name)
        self.namespaces.append(name)
        run("ip", "-n", name, "link", "set", "lo", "up")
        run("ip", "netns", "exec", name, "sysctl", "-qw", "net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0")
        return name

    def delete(self, name: str) -> None:
        """Remove a namespace (and the veth ends inside it); no error if it is gone."""
        run("ip", "netns", "del", name, check=False)
        if name in self.namespaces:
            self.namespaces.remove(name)

    def veth(self, ns1: str, if1: str, ns2: str, if2: str, mac2: str | None = None) -> None:
        """A veth pair from C{ns1}/C{if1} to C{ns2}/C{if2}, both ends up."""
        run("ip", "link", "add", if1, "netns", ns1, "type", "veth", "peer", "name", if2, "netns", ns2)
        if mac2:
            run("ip", "-n", ns2, "link", "set", if2, "address", mac2)
        run("ip", "-n", ns1, "link", "set", if1, "up")
        run("ip", "-n", ns2, "link", "set", if2, "up")

    def dhcp_network(self, network_id: str, guest: str, guest_ip: str, guest_mac: str, dhcp_ip: str, ipv6: bool = False) -> str:
        """
        A C{qdhcp-<network>} namespace holding 169.254.169.254 (and fe80::a9fe:a9fe) on its tap,
        and a guest namespace routing 169.254.169.254 to it, as Neutron's DHCP agent sets up.
        """
        dhcp = self.namespace(f"qdhcp-{network_id}")
        self.namespace(guest)
        self.veth(dhcp, "tap0", guest, "eth0", guest_mac)
        run("ip", "-n", dhcp, "addr", "add", f"{dhcp_ip}/24", "dev", "tap0")
        run("ip", "-n", dhcp, "addr", "add", "169.254.169.254/32", "dev", "tap0")
        if ipv6:
            run("ip", "-n", dhcp, "-6", "addr", "add", "fe80::a9fe:a9fe/128", "dev", "tap0", "nodad")
        run("ip", "-n", guest, "addr", "add", f"{guest_ip}/24", "dev", "eth0")
        run("ip", "-n", guest, "route", "add", "169.254.169.254/32", "via", dhcp_ip)
        return dhcp

    def router_network(self, router_id: str, guest: str, guest_ip: str, guest_mac: str, gateway_ip: str) -> str:
        """
        A C{qrouter-<router>} namespace with a C{qr-} port and the L3 agent's iptables REDIRECT of
        169.254.169.254:80 to 9697 (neutron spec §1), and a guest routing through it.
        """
        router = self.namespace(f"qrouter-{router_id}")
        self.namespace(guest)
        self.veth(router, "qr-0", guest, "eth0", guest_mac)
        run("ip", "-n", router, "addr", "add", f"{gateway_ip}/24", "dev", "qr-0")
        run("ip", "netns", "exec", router, "iptables", "-t", "nat", "-A", "PREROUTING", "-d", "169.254.169.254/32",
            "-i", "qr-+", "-p", "tcp", "-m", "tcp", "--dport", "80", "-j", "REDIRECT", "--to-ports", "9697")
        run("ip", "-n", guest, "addr", "add", f"{guest_ip}/24", "dev", "eth0")
        run("ip", "-n", guest, "route", "add", "default", "via", gateway_ip)
        return router


    def behind(self, guest: str, container: str, subnet: str = "10.9.0") -> str:
        """
        A namespace C{container} behind C{guest}, as a container behind a VM: the guest routes
        and masquerades its packets (one more hop, the metadata service sees the guest's
        address), as Docker's default bridge does.
        """
        self.namespace(container)
        self.veth(guest, "cbr0", container, "eth0")
        run("ip", "-n", guest, "addr", "add", f"{subnet}.1/24", "dev", "cbr0")
        run("ip", "-n", container, "addr", "add", f"{subnet}.2/24", "dev", "eth0")
        run("ip", "-n", container, "route", "add", "default", "via", f"{subnet}.1")
        run("ip", "netns", "exec", guest, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        run("ip", "netns", "exec", guest, "iptables", "-t", "nat", "-A", "POSTROUTING", "-s", f"{subnet}.0/24", "-o", "eth0",
            "-j", "MASQUERADE")
        return container


def curl(namespace: str, url: str, *extra: str, timeout: float = 10) -> tuple[int, bytes, float]:
    """C{curl} inside a namespace: (status, body, seconds taken); status 0 if nothing answered."""
    start = time.monotonic()
    result = subprocess.run(
        ["ip", "netns", "exec", namespace, "curl", "-s", "-g", "-m", str(timeout), "-o", "-", "-w", "\n%{http_code}", *extra, url],
        capture_output=True, timeout=timeout + 10,
    )
    elapsed = time.monotonic() - start
    body, _, code = result.stdout.rpartition(b"\n")
    return int(code or 0), body, elapsed


def new_id() -> str:
    """A fresh UUID string, as Neutron ids are."""
    return str(uuidlib.uuid4())
