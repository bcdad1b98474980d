"""
Neutron, as Nova's Neutron client sees it, made from mdsvc instance documents: the few list and
show calls Nova makes to build an instance's network info cache
(C{nova.network.neutron.API._build_vif_model}) and to list its security groups
(C{nova.network.security_group_api.get_instance_security_groups}), answered from the documents.
Nova's own code then does the rest, so its answers are Nova's.  Runs in the Nova virtualenv that
bench/install.sh makes (C{bench/nova_wsgi.py}, C{tests/nova_parity/generate.py}).

How a document reads as Neutron's resources:

  - a NIC is a port (C{device_id} the instance, C{binding:vif_type}, C{binding:vnic_type}), its
    C{fixed_ips} the port's fixed IPs as written, each with its floating IPs;
  - a fixed IP's C{subnet} is a subnet (C{gateway_ip}, C{dns_nameservers}, C{host_routes},
    C{enable_dhcp}, C{ipv6_address_mode}); a subnet without a CIDR is the fixed IP alone (/32 or
    /128); its C{dhcp_server} is the address of a C{network:dhcp} port on the subnet;
  - a port's C{security_groups} (absent: the document's) are groups named so, one group per name.
"""

from __future__ import annotations

from typing import Any

from nova import context as nova_context
from nova.network import model as network_model
from nova.network import neutron as neutron_api

NO_NETWORK = "00000000-0000-4000-8000-00000000beef"
"""The network of a NIC whose document gives none."""


def _subnet_id(fixed: dict, port_id: str, index: int) -> str:
    """A subnet's id: the document's, else one made from the port and the fixed IP's place."""
    return (fixed.get("subnet") or {}).get("id") or "%s-subnet-%d" % (port_id, index)


def _cidr(fixed: dict) -> str:
    subnet = fixed.get("subnet") or {}
    if subnet.get("cidr"):
        return subnet["cidr"]
    return "%s/%d" % (fixed["ip"], 128 if ":" in fixed["ip"] else 32)


class FakeNeutron:
    """The Neutron client calls Nova makes, answered from instance documents."""

    def __init__(self, docs: list) -> None:
        self.ports: list[dict] = []
        self.subnets: dict[str, dict] = {}
        self.networks: dict[str, dict] = {}
        self.floating: dict[tuple[str, str], list[str]] = {}
        self.groups: dict[str, dict] = {}
        for doc in docs:
            for number, nic in enumerate(doc.get("nics", [])):
                self._add_port(doc, number, nic)

    def _add_port(self, doc: dict, number: int, nic: dict) -> None:
        port_id = nic.get("port_id") or "%s-port-%d" % (doc["uuid"], number)
        net = nic.get("network") or {}
        network_id = net.get("id") or NO_NETWORK
        self.networks.setdefault(network_id, {
            "id": network_id, "name": net.get("name"), "tenant_id": doc.get("project_id"), "mtu": net.get("mtu"),
            "provider:physical_network": net.get("physical_network"), "provider:network_type": net.get("network_type"),
        })
        names = nic.get("security_groups")
        if names is None:
            names = doc.get("security_groups", ["default"])
        fixed_ips = []
        for index, fixed in enumerate(nic.get("fixed_ips", [])):
            subnet_id = _subnet_id(fixed, port_id, index)
            fixed_ips.append({"subnet_id": subnet_id, "ip_address": fixed["ip"]})
            self.floating[(fixed["ip"], port_id)] = list(fixed.get("floating_ips", []))
            self._add_subnet(subnet_id, network_id, fixed)
        self.ports.append({
            "id": port_id, "device_id": doc["uuid"], "device_owner": "compute:nova", "network_id": network_id,
            "tenant_id": doc.get("project_id"), "mac_address": nic.get("mac"), "admin_state_up": True, "status": "ACTIVE",
            "fixed_ips": fixed_ips, "binding:vif_type": nic.get("vif_type"), "binding:vif_details": {},
            "binding:vnic_type": nic.get("vnic_type") or network_model.VNIC_TYPE_NORMAL,
            "security_groups": [self._group(name) for name in names],
        })

    def _add_subnet(self, subnet_id: str, network_id: str, fixed: dict) -> None:
        sub = fixed.get("subnet") or {}
        self.subnets.setdefault(subnet_id, {
            "id": subnet_id, "network_id": network_id, "cidr": _cidr(fixed), "gateway_ip": sub.get("gateway"),
            "enable_dhcp": sub.get("enable_dhcp", True), "ipv6_address_mode": sub.get("ipv6_address_mode"),
            "dns_nameservers": list(sub.get("dns", [])),
            "host_routes": [{"destination": r["destination"], "nexthop": r["nexthop"]} for r in sub.get("routes", [])],
            "dhcp_server": sub.get("dhcp_server"),
        })

    def _group(self, name: str) -> str:
        group_id = "sg-" + name
        self.groups.setdefault(group_id, {"id": group_id, "name": name})
        return group_id

    # -- what Nova calls -------------------------------------------------------------------------

    def list_extensions(self) -> dict:
        """No extension (no multi-provider networks: physnets come from C{show_network})."""
        return {"extensions": []}

    def show_network(self, network_id: str, fields: Any = None) -> dict:
        """A network's provider attributes."""
        return {"network": self.networks[network_id]}

    def list_floatingips(self, fixed_ip_address: str, port_id: str) -> dict:
        """The floating IPs of one fixed IP of a port."""
        return {"floatingips": [{"floating_ip_address": f} for f in self.floating.get((fixed_ip_address, port_id), [])]}

    def list_subnets(self, id: list) -> dict:  # noqa: A002 (Neutron's parameter name)
        """The subnets of C{id}, in the order the documents give them."""
        return {"subnets": [s for s in self.subnets.values() if s["id"] in id]}

    def list_ports(self, fields: Any = None, device_id: list | None = None, network_id: str | None = None,
                   device_owner: str | None = None) -> dict:
        """An instance's ports in document order, or a network's DHCP ports (one per subnet with a DHCP server)."""
        if device_owner == "network:dhcp":
            return {"ports": [{"device_owner": device_owner, "network_id": network_id,
                               "fixed_ips": [{"subnet_id": s["id"], "ip_address": s["dhcp_server"]}]}
                              for s in self.subnets.values() if s["network_id"] == network_id and s["dhcp_server"]]}
        return {"ports": [p for p in self.ports if p["device_id"] in (device_id or [])]}

    def list_security_groups(self, id: list, fields: Any = None) -> dict:  # noqa: A002
        """The groups of C{id}."""
        return {"security_groups": [g for g in self.groups.values() if g["id"] in id]}

    # -- Nova's network info ------------------------------------------------------------------------

    def network_info(self, uuid: str) -> network_model.NetworkInfo:
        """The instance's network info cache, built by Nova's C{_build_vif_model} port by port."""
        context = nova_context.get_admin_context()
        api = neutron_api.API()
        networks = list(self.networks.values())
        ports = self.list_ports(device_id=[uuid])["ports"]
        return network_model.NetworkInfo([api._build_vif_model(context, self, port, networks, []) for port in ports])


NEUTRON = FakeNeutron([])
"""The Neutron every client of Nova's gets (L{use})."""


def use(docs: list) -> FakeNeutron:
    """Make C{docs} what Nova's Neutron client sees."""
    global NEUTRON
    NEUTRON = FakeNeutron(docs)
    return NEUTRON


neutron_api.get_client = lambda context, admin=False: NEUTRON
