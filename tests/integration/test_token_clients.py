"""
Real token-first clients against mdsvc with session tokens on: cloud-init's EC2 datasource in
IMDSv2 mode, botocore, the AWS SDK for JavaScript (v3 and v2), amazon-ec2-utils' C{ec2-metadata}
and cloud-utils' C{ec2metadata}, all unmodified (tests/integration/clients/).

With C{imds_tokens = required} every token-first client reads its instance, and a request
without a token gets 401; with C{optional} every client passes, the Nova-style ones too
(cloud-init's OpenStack reader, cloudbase-init).  Each against:

  - the api role on loopback, reached by the guest itself (remote-address mode; the clients
    whose address can be set: not as root too);
  - the api role in a namespace of its own on 169.254.169.254:80, a guest in another namespace
    routed to it (every client on its default address);
  - the namespace chain: api + network-node, a guest behind a qdhcp- namespace.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from tests.integration.netns import curl, new_id, run
from tests.integration.processes import Twistd, fetch, manage, probe, require_clients, write_config
from tests.integration.test_network_node import META, NodeCase, instance

TOKEN_FIRST = ("cloud-init-ec2", "botocore", "aws-sdk-js", "aws-sdk-js-v2", "ec2-metadata", "ec2metadata")
"""Clients that ask for a session token first (the last two talk to 169.254.169.254 only)."""
NOVA_STYLE = ("cloud-init", "cloudbase-init")
"""Clients that never send a token."""
ADDRESS_SET = ("cloud-init-ec2", "botocore", "aws-sdk-js", "aws-sdk-js-v2")
"""The token-first clients whose metadata address can be set (loopback tests)."""


def check_client(case: SynchronousTestCase, client: str, seen: dict[str, Any], uuid: str, ec2_id: str, hostname: str) -> None:
    """What C{client} read is the instance's own: its id, its name; a token-first client used a token."""
    full = f"{hostname}.novalocal"
    if client == "cloud-init-ec2":
        case.assertEqual((seen["instance_id"], seen["local_hostname"], seen["token_length"]), (ec2_id, full, 56))
        case.assertEqual(seen["identity"]["instanceId"], ec2_id)
    elif client == "botocore":
        case.assertEqual((seen["instance_id"], seen["hostname"], len(seen["token"] or "")), (ec2_id, full, 56))
    elif client in ("aws-sdk-js", "aws-sdk-js-v2"):
        case.assertEqual((seen["instance_id"], seen["hostname"], seen["token_length"]), (ec2_id, full, 56))
    elif client == "ec2-metadata":
        case.assertEqual((seen.get("instance_id"), seen.get("local_hostname")), (ec2_id, full), seen.get("raw"))
        case.assertEqual(seen["public_key"], f"ssh-ed25519 AAAA{hostname}")
    elif client == "ec2metadata":
        case.assertEqual((seen["instance_id"], seen["local_hostname"]), (ec2_id, full))
    elif client == "cloud-init":
        case.assertEqual(seen["metadata"]["uuid"], uuid)
    elif client == "cloudbase-init":
        case.assertEqual(seen["instance_id"], uuid)
    else:
        raise AssertionError(f"no check for {client}")


def document(uuid: str, name: str, ip: str, network: str, ec2: int) -> dict[str, Any]:
    """An instance document with one port at C{ip} and EC2 id C{ec2}."""
    doc = instance(uuid, name, f"proj-{name}", network, ip, "fa:16:3e:10:00:05", cidr=f"{ip.rsplit('.', 1)[0]}.0/24")
    doc["ec2_ids"] = {"instance": ec2}
    doc["key_pairs"] = [{"name": "k", "type": "ssh", "public_key": f"ssh-ed25519 AAAA{name}"}]
    return doc


class LoopbackAPITests(SynchronousTestCase):
    """The api role on loopback, the guest (127.0.0.1) reaching it itself: no root needed."""

    def setUp(self) -> None:
        require_clients(*ADDRESS_SET, *NOVA_STYLE)
        self.dir = tempfile.mkdtemp(prefix="mdsvc-tok-")
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.uuid = new_id()
        self.docs = os.path.join(self.dir, "docs.json")
        with open(self.docs, "w") as f:
            json.dump([document(self.uuid, "tokens-lo", "127.0.0.1", new_id(), 0x5A17)], f)

    def api(self, mode: str) -> Twistd:
        config = write_config(os.path.join(self.dir, mode), f"[api]\nimds_tokens = {mode}\n"
                              "[neutron]\nmetadata_proxy_shared_secret = s3cret\n")
        manage(config, "instance", "import", self.docs)
        api = Twistd(["mdsvc", "--role", "api", "--config", config], os.path.join(self.dir, f"{mode}.log"))
        self.addCleanup(api.stop)
        return api

    def test_required(self) -> None:
        """required: every token-first client reads its instance; without a token 401; a PUT with X-Forwarded-For 403."""
        api = self.api("required")
        for client in ADDRESS_SET:
            check_client(self, client, probe(client, api.base), self.uuid, "i-00005a17", "tokens-lo")
        self.assertEqual(fetch(api.base + "latest/meta-data/instance-id")[0], 401)
        self.assertEqual(fetch(api.base)[0], 401)
        ttl = {"X-aws-ec2-metadata-token-ttl-seconds": "60"}
        self.assertEqual(fetch(api.base + "latest/api/token", "PUT", dict(ttl, **{"X-Forwarded-For": "127.0.0.1"}))[0], 403)
        code, _, token = fetch(api.base + "latest/api/token", "PUT", ttl)
        self.assertEqual(code, 200)
        code, _, body = fetch(api.base + "latest/meta-data/instance-id", headers={"X-aws-ec2-metadata-token": token.decode()})
        self.assertEqual((code, body), (200, b"i-00005a17"))
        self.assertNotIn(token.decode(), api.log())

    def test_optional(self) -> None:
        """optional: token-first and Nova-style clients all read their instance."""
        api = self.api("optional")
        for client in ADDRESS_SET + NOVA_STYLE:
            check_client(self, client, probe(client, api.base), self.uuid, "i-00005a17", "tokens-lo")


class NamespaceClients(NodeCase):
    """Every client, on its default address, inside a guest namespace."""

    clients_required = TOKEN_FIRST
    clients_optional = TOKEN_FIRST + NOVA_STYLE

    def run_clients(self, guest: str, clients: tuple[str, ...], uuid: str, ec2_id: str, name: str) -> None:
        for client in clients:
            check_client(self, client, probe(client, META, namespace=guest), uuid, ec2_id, name)


class DirectAPITests(NamespaceClients):
    """
    The api role in a namespace of its own, listening on 169.254.169.254:80 in remote-address
    mode; a guest at 10.0.0.5 in another namespace routes 169.254.169.254 to it, as a flat
    network without Neutron's proxies would.
    """

    def start_direct(self, mode: str) -> str:
        require_clients(*TOKEN_FIRST, *NOVA_STYLE)
        tag = new_id()[:6]
        self.uuid = new_id()
        server, guest = self.cloud.namespace(f"mdapi-{tag}"), self.cloud.namespace(f"tg-{tag}")
        self.cloud.veth(server, "eth0", guest, "eth0")
        run("ip", "-n", server, "addr", "add", "10.0.0.1/24", "dev", "eth0")
        run("ip", "-n", server, "addr", "add", "169.254.169.254/32", "dev", "eth0")
        run("ip", "-n", guest, "addr", "add", "10.0.0.5/24", "dev", "eth0")
        run("ip", "-n", guest, "route", "add", "169.254.169.254/32", "via", "10.0.0.1")
        config = os.path.join(self.dir, f"direct-{mode}.conf")
        with open(config, "w") as f:
            f.write(f"[DEFAULT]\nstate_path = {self.dir}/direct-{mode}\n[neutron]\nmetadata_proxy_shared_secret = s3cret\n"
                    f"[api]\nimds_tokens = {mode}\n[mdsvc]\napi_endpoint = tcp:80:interface=169.254.169.254\n")
        self.import_docs(config, [document(self.uuid, f"direct-{tag}", "10.0.0.5", new_id(), 0x5A18)])
        self.name = f"direct-{tag}"
        api = Twistd(["mdsvc", "--role", "api", "--config", config], os.path.join(self.dir, f"direct-{mode}.log"),
                     prefix=["ip", "netns", "exec", server])
        self.addCleanup(api.stop)
        return guest

    def test_required(self) -> None:
        """required: every token-first client in the guest reads its instance; curl without a token gets 401."""
        guest = self.start_direct("required")
        self.run_clients(guest, self.clients_required, self.uuid, "i-00005a18", self.name)
        self.assertEqual(curl(guest, META + "latest/meta-data/instance-id")[0], 401)

    def test_optional(self) -> None:
        """optional: every client, token-first and Nova-style, reads its instance."""
        guest = self.start_direct("optional")
        self.run_clients(guest, self.clients_optional, self.uuid, "i-00005a18", self.name)


class ChainTests(NamespaceClients):
    """api + network-node: the guest behind a qdhcp- namespace, through proxy, agent and API."""

    def start_chain(self, mode: str) -> str:
        require_clients(*TOKEN_FIRST, *NOVA_STYLE)
        net, self.uuid = new_id(), new_id()
        self.name = f"chain-{net[:6]}"
        config = self.config(f"chain-{mode}.conf", f"namespaces = {'qdhcp-' + net}\n[api]\nimds_tokens = {mode}\n")
        self.import_docs(config, [document(self.uuid, self.name, "10.0.0.5", net, 0x5A19)])
        guest = f"tc-{net[:6]}"
        self.cloud.dhcp_network(net, guest, "10.0.0.5", "fa:16:3e:10:00:05", "10.0.0.2")
        self.start("api", config)
        node = self.start("network-node", config, ready=lambda p: os.path.exists(self.socket))
        node.wait_until(lambda: curl(guest, META, timeout=3)[0] in (200, 401), "the proxy in the guest's network")
        return guest

    def test_required(self) -> None:
        """required: every token-first client through the chain; curl without a token gets 401."""
        guest = self.start_chain("required")
        self.run_clients(guest, self.clients_required, self.uuid, "i-00005a19", self.name)
        self.assertEqual(curl(guest, META + "latest/meta-data/instance-id")[0], 401)

    def test_optional(self) -> None:
        """optional: every client, token-first and Nova-style, through the chain."""
        guest = self.start_chain("optional")
        self.run_clients(guest, self.clients_optional, self.uuid, "i-00005a19", self.name)
