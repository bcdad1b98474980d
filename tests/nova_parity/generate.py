"""
The expected answers of C{tests/test_nova_parity.py}, made by Nova 34.0.0's own metadata code.

Run it with the Nova virtualenv that C{bench/install.sh} makes, never with the project's Python:

    bash bench/install.sh            # once: /var/cache/mdsvc-bench/nova-venv
    /var/cache/mdsvc-bench/nova-venv/bin/python tests/nova_parity/generate.py

For each configuration variant of L{VARIANTS} and each document of C{instances.json} beside it,
it drives Nova's metadata WSGI app (C{bench/nova_wsgi.py}: Nova's C{MetadataRequestHandler} with
its database and Neutron calls answered from the documents) over every path of both trees, and
builds the instance's config drive files with Nova's C{InstanceMetadata.metadata_for_config_drive}
(as nova-compute's libvirt driver calls it: injected files as C{content}, C{admin_pass} as
C{extra_md}).  It writes C{expected.json} beside it: per variant and instance the answers (status,
content type, body) by path and the drive's files in order, bodies kept once each under their
hash; C{random_seed} is replaced by L{SEED} wherever it appears.  Beside them: what netaddr
prints for the ranges of L{CIDRS}, the SHA-256 of Nova's C{interfaces.template}, and what Nova's
C{get_injected_network_template} renders from C{values.template} (every value it hands a
template) per instance.  Running it again on the same files writes the same bytes.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import sys
import warnings
from importlib import metadata

warnings.filterwarnings("ignore")

HERE = os.path.dirname(os.path.abspath(__file__))
SECRET = "parity-secret"
os.environ["MDSVC_BENCH_SECRET"] = SECRET
os.environ.pop("MDSVC_BENCH_INSTANCES", None)
sys.path.insert(0, os.path.join(HERE, "..", "..", "bench"))

import netaddr  # noqa: E402
import nova_wsgi  # noqa: E402
import webob  # noqa: E402
from nova.api.metadata import base, handler  # noqa: E402
from nova.virt import netutils  # noqa: E402

CONF = nova_wsgi.CONF
SEED = "<random_seed>"
SEED_PATTERN = re.compile(rb'"random_seed": "[A-Za-z0-9+/=]*"')

VARIANTS = {
    "default": {"flat_injected": False, "dhcp_domain": "novalocal"},
    "flat_injected": {"flat_injected": True, "dhcp_domain": "novalocal"},
    "flat_injected_no_domain": {"flat_injected": True, "dhcp_domain": ""},
    "no_domain": {"flat_injected": False, "dhcp_domain": ""},
}
"""Configuration variants: C{[DEFAULT] flat_injected} and C{[api] dhcp_domain}."""

FORWARDED_FOR = {
    "a0000000-0000-4000-8000-000000000003": "2001:DB8:50:0:0:0:0:5",
}
"""C{X-Forwarded-For} per instance when not its first fixed IP: an IPv6-only instance's
C{local-ipv4} is the request's address, as the proxy wrote it."""


CIDRS = [
    "10.1.0.0/24", "172.16.5.9/20", "10.3.0.0/31", "10.3.0.1/32", "0.0.0.0/0", "192.0.2.0/25",
    "2001:db8:10::/64", "2001:db8:20:0::/64", "2001:db8:50::/120", "::ffff:0:0/96", "::/96", "::/0", "::/128",
    "::1.2.3.4/128", "::ffff:10.0.0.0/104", "2001:db8:0:1::/64", "2001:0:0:1::/64", "1:0:0:1:0:0:0:0/128",
    "fe80::/10", "64:ff9b::/96", "2001:db8::5/127", "::2:0:0/96", "::1:0:0:0/80", "0:0:0:1::/64",
]
"""Ranges whose network, netmask and broadcast netaddr prints (C{tests/test_nova_parity.py} checks
mdsvc prints them alike): IPv4-mapped and -compatible ranges, single zero groups, all-zero."""


def netaddr_vectors() -> dict[str, list[str]]:
    """C{{cidr: [network, netmask, broadcast, address part, prefix length]}} as netaddr prints them."""
    out = {}
    for cidr in CIDRS:
        net = netaddr.IPNetwork(cidr)
        out[cidr] = [str(net.network), str(net.netmask), str(net.broadcast), str(net.ip), str(net.prefixlen)]
    return out


def forwarded_for(doc: dict) -> str:
    """The address the instance's requests come from."""
    if doc["uuid"] in FORWARDED_FOR:
        return FORWARDED_FOR[doc["uuid"]]
    return next(f["ip"] for nic in doc["nics"] for f in nic["fixed_ips"])


def headers(doc: dict) -> dict[str, str]:
    """The signed headers of Neutron's metadata agent."""
    signature = hmac.new(SECRET.encode(), doc["uuid"].encode(), hashlib.sha256).hexdigest()
    return {"X-Instance-ID": doc["uuid"], "X-Tenant-ID": doc["project_id"], "X-Instance-ID-Signature": signature,
            "X-Forwarded-For": forwarded_for(doc)}


def _walk(tree: dict, prefix: str) -> list[str]:
    """The paths under C{prefix} of an EC2 tree, a directory also with its trailing slash."""
    paths = []
    for key in sorted(tree):
        if key == "_name":
            continue
        path = f"{prefix}/{key}"
        paths.append(path)
        if isinstance(tree[key], dict):
            paths += [path + "/"] + _walk(tree[key], path)
    return paths


def paths(md: base.InstanceMetadata) -> list[str]:
    """Every path of both trees for this instance, directories also with a trailing slash, the
    EC2 tree also under C{/ec2}, and a few paths that are not there."""
    out = ["/", "/ec2", "/ec2/", "/openstack", "/openstack/"]
    for version in base.VERSIONS + ["latest"]:
        out += [f"/{version}", f"/{version}/"]
        out += _walk(md.get_ec2_metadata(version), f"/{version}")
    out += _walk(md.get_ec2_metadata("latest"), "/ec2/latest")
    out += ["/latest/meta-data/no-such-key", "/9999-01-01/meta-data", "/latest/meta-data/public-keys/1"]
    for version in base.OPENSTACK_VERSIONS + ["latest"]:
        out += [f"/openstack/{version}", f"/openstack/{version}/"]
        names = md.lookup(f"/openstack/{version}")
        out += [f"/openstack/{version}/{name}" for name in dict.fromkeys(names + ["network_data.json"])]
    out += [f"/openstack/content/{key}" for key in md.content]
    out += ["/openstack/content/%04d" % len(md.content), "/openstack/latest/no_such_file", "/openstack/9999-01-01/meta_data.json"]
    return out


def template_values(docs: list) -> dict[str, str | None]:
    """What Nova's C{get_injected_network_template} renders from C{values.template} (every value
    it hands a template, as JSON) for each instance, its network info built with C{flat_injected}."""
    template = os.path.join(HERE, "values.template")
    return {doc["uuid"]: netutils.get_injected_network_template(nova_wsgi.INSTANCES[doc["uuid"]].info_cache.network_info, template)
            for doc in docs}


def template_sha256() -> str:
    """The SHA-256 of Nova's C{interfaces.template} (mdsvc ships it unchanged)."""
    with open(CONF.injected_network_template, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


class Bodies:
    """Bodies kept once each, by the start of their SHA-256 (random_seed masked)."""

    def __init__(self) -> None:
        self.table: dict[str, str] = {}

    def key(self, body: bytes | str) -> str:
        """Store C{body}; its key."""
        data = body.encode("utf-8") if isinstance(body, str) else body
        data = SEED_PATTERN.sub(b'"random_seed": "' + SEED.encode() + b'"', data)
        digest = hashlib.sha256(data).hexdigest()[:16]
        try:
            self.table[digest] = data.decode("utf-8")
        except UnicodeDecodeError:
            self.table[digest] = "base64:" + base64.b64encode(data).decode("ascii")
        return digest


def answers(app: handler.MetadataRequestHandler, doc: dict, bodies: Bodies) -> dict[str, list]:
    """C{{path: [status, content type, body key]}} of every path, as Nova's app answers them."""
    md = base.get_metadata_by_instance_id(doc["uuid"], forwarded_for(doc))
    out = {}
    for path in paths(md):
        response = webob.Request.blank(path, headers=headers(doc)).get_response(app)
        out[path] = [response.status_int, response.headers.get("Content-Type"), bodies.key(response.body)]
    return out


def drive(doc: dict, bodies: Bodies) -> list[list[str]]:
    """The config drive's C{[path, body key]} in Nova's order."""
    instance = nova_wsgi.INSTANCES[doc["uuid"]].obj_clone()
    files = [(f["path"], base64.b64decode(f["contents_b64"])) for f in doc.get("injected_files", [])]
    extra = {"admin_pass": doc["admin_pass"]} if doc.get("admin_pass") else {}
    md = base.InstanceMetadata(instance, content=files, extra_md=extra, network_info=instance.info_cache.network_info)
    return [[path, bodies.key(value)] for path, value in md.metadata_for_config_drive()]


def main() -> None:
    """Write C{expected.json}."""
    with open(os.path.join(HERE, "instances.json")) as f:
        docs = json.load(f)
    bodies = Bodies()
    variants = {}
    CONF.set_override("metadata_cache_expiration", 0, group="api")
    values = {}
    for name, options in VARIANTS.items():
        CONF.set_override("flat_injected", options["flat_injected"])
        CONF.set_override("dhcp_domain", options["dhcp_domain"], group="api")
        nova_wsgi.use_documents(docs)
        if options["flat_injected"]:
            values = template_values(docs)
        app = handler.MetadataRequestHandler()
        variants[name] = {
            "options": options,
            "instances": {doc["uuid"]: {"headers": headers(doc), "answers": answers(app, doc, bodies), "drive": drive(doc, bodies)}
                          for doc in docs},
        }
    expected = {"made_by": f"tests/nova_parity/generate.py with Nova {metadata.version('nova')}", "seed": SEED, "secret": SECRET,
                "netaddr": netaddr_vectors(),
                "interfaces_template_sha256": template_sha256(), "template_values": values, "variants": variants, "bodies": dict(sorted(bodies.table.items()))}
    with open(os.path.join(HERE, "expected.json"), "w") as f:
        f.write(compact(json.dumps(expected, indent=1)) + "\n")


def compact(text: str) -> str:
    """JSON with each list of plain values on one line (an answer, a drive file: one line each)."""
    return re.sub(r"\[\n\s+([^\[\]{}]*?)\n\s*\]", lambda m: "[" + re.sub(r"\n\s*", " ", m.group(1)) + "]", text)


if __name__ == "__main__":
    main()
