"""
Session tokens through the namespace chain, in real network namespaces, with C{[api]
imds_tokens = required}: a guest on a DHCP network and a guest behind a router (the L3 agent's
REDIRECT) get a token with C{PUT /latest/api/token} and read their metadata with it, and get 401
without one; a container behind each guest (the guest routes and masquerades its packets: one
more hop) reaches the service but never gets a token, because the proxy answers the PUT with IP
TTL 1 and the guest's forwarding drops it.
"""

from __future__ import annotations

import os

from tests.integration.netns import curl, new_id, run
from tests.integration.test_network_node import META, NodeCase, instance

TTL = "X-aws-ec2-metadata-token-ttl-seconds: 300"


class TokenNamespaceTests(NodeCase):
    """api + network-node with tokens required, guests and containers in namespaces."""

    def setUp(self) -> None:
        super().setUp()
        self.net_a, self.net_c, self.router = new_id(), new_id(), new_id()
        self.ids = {k: new_id() for k in "ac"}
        config = self.config("tokens.conf", "namespaces = auto\n[api]\nimds_tokens = required\n")
        self.import_docs(config, [
            instance(self.ids["a"], "guest-a", "proj-a", self.net_a, "10.0.0.5", "fa:16:3e:aa:00:01"),
            instance(self.ids["c"], "guest-c", "proj-c", self.net_c, "10.2.0.5", "fa:16:3e:cc:00:01", "10.2.0.0/24"),
        ], [{"id": self.router, "project_id": "proj-c", "networks": [self.net_c]}])
        self.guest_a, self.guest_c = f"ta-{self.net_a[:6]}", f"tc-{self.net_c[:6]}"
        self.cloud.dhcp_network(self.net_a, self.guest_a, "10.0.0.5", "fa:16:3e:aa:00:01", "10.0.0.2", ipv6=True)
        self.cloud.router_network(self.router, self.guest_c, "10.2.0.5", "fa:16:3e:cc:00:01", "10.2.0.1")
        self.containers = {self.guest_a: self.cloud.behind(self.guest_a, f"ka-{self.net_a[:6]}"),
                           self.guest_c: self.cloud.behind(self.guest_c, f"kc-{self.net_c[:6]}", "10.8.0")}
        self.start("api", config)
        self.node = self.start("network-node", config, ready=lambda p: os.path.exists(self.socket))
        for guest in (self.guest_a, self.guest_c):
            self.node.wait_until(lambda guest=guest: self.reachable(guest), f"the proxy serving {guest}")

    def reachable(self, namespace: str) -> bool:
        """Whether the metadata service answers in C{namespace} (401: no token, but there)."""
        return curl(namespace, META + "latest/meta-data/hostname", timeout=3)[0] == 401

    def token(self, namespace: str, url: str = META) -> tuple[int, bytes]:
        code, body, _ = curl(namespace, url + "latest/api/token", "-X", "PUT", "-H", TTL, timeout=5)
        return code, body

    def test_guests_get_tokens(self) -> None:
        """A guest on a network and one behind a router: PUT gives a token; GET needs it (401 without)."""
        for guest, name in ((self.guest_a, b"guest-a"), (self.guest_c, b"guest-c")):
            code, token = self.token(guest)
            self.assertEqual((code, len(token)), (200, 56), guest)
            code, body, _ = curl(guest, META + "latest/meta-data/hostname", "-H", f"X-aws-ec2-metadata-token: {token.decode()}")
            self.assertEqual((code, body), (200, name + b".novalocal"))
            self.assertEqual(curl(guest, META + "latest/meta-data/hostname")[0], 401)
            other = self.token(self.guest_c if guest == self.guest_a else self.guest_a)[1]
            code, _, _ = curl(guest, META + "latest/meta-data/hostname", "-H", f"X-aws-ec2-metadata-token: {other.decode()}")
            self.assertEqual(code, 401, "another guest's token")

    def test_ipv6_link_local(self) -> None:
        """The token PUT works on [fe80::a9fe:a9fe] too (the IPv6 hop limit)."""
        url = "http://[fe80::a9fe:a9fe%25eth0]/"
        code, token = self.token(self.guest_a, url)
        self.assertEqual((code, len(token)), (200, 56))
        code, body, _ = curl(self.guest_a, url + "openstack/latest/meta_data.json", "-H", f"X-aws-ec2-metadata-token: {token.decode()}")
        self.assertEqual(code, 200)
        self.assertIn(self.ids["a"].encode(), body)

    def test_container_behind_guest_gets_no_token(self) -> None:
        """
        A container one hop behind each guest reaches the service (its GET is answered 401) but
        its PUT's answer never arrives: IP TTL 1 dies at the guest's forwarding.
        """
        for guest, container in self.containers.items():
            self.assertEqual(curl(container, META + "latest/meta-data/hostname", timeout=5)[0], 401, container)
            code, body, took = curl(container, META + "latest/api/token", "-X", "PUT", "-H", TTL, timeout=4)
            self.assertEqual((code, body), (0, b""), f"{container} got an answer to its PUT")
            self.assertGreater(took, 3.5)
            # and the guest itself, on the same path, still gets one
            self.assertEqual(self.token(guest)[0], 200)

    def test_forwarding_counts_the_drop(self) -> None:
        """The answer did reach the guest and was dropped there (the kernel counts the TTL exceeded)."""
        guest, container = self.guest_a, self.containers[self.guest_a]

        def exceeded() -> int:
            snmp = run("ip", "netns", "exec", guest, "cat", "/proc/net/snmp").stdout.splitlines()
            names, values = [line.split() for line in snmp if line.startswith("Icmp:")][:2]
            return int(values[names.index("OutTimeExcds")])

        before = exceeded()
        curl(container, META + "latest/api/token", "-X", "PUT", "-H", TTL, timeout=3)
        self.assertGreater(exceeded(), before)
