# -*- test-case-name: tests.test_lookup_store -*-
"""
The outcome rules every lookup backend shares (neutron spec §2.1): exactly one match is the
answer; none, several, or one without a device is "no instance".
"""

from __future__ import annotations

from collections.abc import Iterable

from twisted.logger import Logger


def choose(
    matches: Iterable[tuple[str, str | None]],
    log: Logger,
    ip: str,
    network_id: str | None,
    router_id: str | None,
    mac: str | None,
) -> tuple[str, str | None] | None:
    """
    Pick the instance among the C{(device_id, project_id)} of the ports that matched.

    Ports of one instance count once (several rows of one port, or one instance reached twice,
    cannot be mistaken for another instance).  Logs a warning for no match (Neutron's message:
    in the router case C{network_id} is None) and for several instances.

    @return: C{(device_id, project_id)}, or None.
    """
    found = list(dict.fromkeys(matches))
    if not found:
        log.warn(
            "No port found in network {network_id} with IP address {ip}",
            network_id=network_id, ip=ip, router_id=router_id, mac=mac,
        )
        return None
    if len(found) > 1:
        log.warn(
            "More than one port found in network {network_id} with IP address {ip}: instances {instances}",
            network_id=network_id, ip=ip, router_id=router_id, mac=mac,
            instances=", ".join(sorted(device or "(none)" for device, _ in found)),
        )
        return None
    device_id, project_id = found[0]
    if not device_id:
        log.info(
            "The port found in network {network_id} with IP address {ip} has no device",
            network_id=network_id, ip=ip, router_id=router_id, mac=mac,
        )
        return None
    return device_id, project_id


def no_networks(log: Logger, router_id: str, known: bool = True) -> None:
    """
    Log that a router has no internal networks (or is unknown): nothing can be behind it.

    Neutron would then search every network for the address (neutron spec §11 item 6); mdsvc
    answers "no instance".
    """
    if known:
        log.warn("Router {router_id} has no internal networks: no instance can be found behind it", router_id=router_id)
    else:
        log.warn("Router {router_id} is unknown: no instance can be found behind it", router_id=router_id)
