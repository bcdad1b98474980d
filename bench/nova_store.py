#!/usr/bin/env python3
"""
The api role on Nova's own databases (C{[mdsvc] store = nova}) against the embedded store, under
the same boot storm:

    python3 bench/nova_store.py [--instances 10000] [--guests 1000] [--concurrency 50]

  1. a real MariaDB (Debian's mariadb-server, on a private datadir and port) with Nova 34.0.0's
     schemas made by nova-manage and a cloud made by nova.objects (tests/integration/nova_cloud.py),
     then C{--instances} copies of its richest instance (two NICs v4+v6, key, user data, metadata,
     tagged devices, pinned CPUs, four block devices, a password) added row by row in its cell,
     each with its instance mapping, EC2 number and Neutron ports (a fake Neutron serves their
     security groups, as Neutron would);
  2. the same instances as documents in the embedded store (C{mdsvc-manage instance import});
  3. for each store, a fresh C{twistd -n mdsvc --role api} (proxy mode, default 15 s render cache)
     and C{--guests} guests replaying cloud-init's 28-request boot (bench/storm.py, signed
     X-Instance-ID headers as a Neutron metadata agent sends them), C{--concurrency} at a time: a
     guest's first request misses the cache, its 27 others hit it.

Prints one line per store (requests/s, p50, p99, p99.9, errors) and C{MDSVC-NOVA-STORE {json}}.
Needs root for apt-get (bench/install.sh, .ci/install-test-deps) only; runs on loopback.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid as uuidlib
from typing import Any

import attrs

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from sqlalchemy import MetaData, Table, create_engine, insert, select  # noqa: E402

from mdsvc.model import Instance  # noqa: E402
from tests.integration.mariadb import MariaDB  # noqa: E402
from tests.integration.nova_cloud import SECRET, Child, NovaCloud  # noqa: E402
from tests.integration.processes import Twistd, free_port, write_config  # noqa: E402

TEMPLATE = "web"
CELL_TABLES = ("instance_extra", "instance_info_caches", "instance_metadata", "instance_system_metadata", "block_device_mapping")


def clone_instances(cloud: NovaCloud, count: int) -> list[tuple[str, int]]:
    """C{count} copies of the template instance in cell1, mapped; their (uuid, EC2 number)."""
    cell = create_engine(cloud.server.url("nova_cell1"))
    api = create_engine(cloud.server.url("nova_api"))
    meta, api_meta = MetaData(), MetaData()
    tables = {name: Table(name, meta, autoload_with=cell) for name in ("instances", "instance_id_mappings", *CELL_TABLES)}
    mappings = Table("instance_mappings", api_meta, autoload_with=api)
    cells = Table("cell_mappings", api_meta, autoload_with=api)
    template = cloud.uuid(TEMPLATE)
    with cell.connect() as conn:
        instance = dict(conn.execute(select(tables["instances"]).where(tables["instances"].c.uuid == template)).mappings().one())
        children = {name: [dict(r) for r in conn.execute(select(tables[name]).where(tables[name].c.instance_uuid == template)).mappings()]
                    for name in CELL_TABLES}
    with api.connect() as conn:
        cell_id = conn.execute(select(cells.c.id).where(cells.c.name == "cell1")).scalar_one()
    made: list[tuple[str, int]] = []
    batch = 500
    for start in range(0, count, batch):
        rows: dict[str, list[dict[str, Any]]] = {name: [] for name in ("instances", "instance_id_mappings", *CELL_TABLES)}
        uuids = []
        for i in range(start, min(count, start + batch)):
            uuid = str(uuidlib.UUID(int=0x6d647376_0000_4000_8000_000000000000 + i))
            uuids.append(uuid)
            rows["instances"].append(dict({k: v for k, v in instance.items() if k != "id"}, uuid=uuid, hostname=f"guest-{i}",
                                          display_name=f"Guest {i}", reservation_id=f"r-{i:08x}"))
            rows["instance_id_mappings"].append({"uuid": uuid, "deleted": 0, "created_at": instance["created_at"]})
            for name in CELL_TABLES:
                for row in children[name]:
                    copy = dict({k: v for k, v in row.items() if k != "id"}, instance_uuid=uuid)
                    if name == "block_device_mapping":
                        copy["uuid"] = str(uuidlib.uuid4())
                    rows[name].append(copy)
        with cell.begin() as conn:
            for name, values in rows.items():
                conn.execute(insert(tables[name]), values)
            numbers = dict(conn.execute(select(tables["instance_id_mappings"].c.uuid, tables["instance_id_mappings"].c.id)
                                        .where(tables["instance_id_mappings"].c.uuid.in_(uuids))).all())
        with api.begin() as conn:
            conn.execute(insert(mappings), [{"instance_uuid": u, "cell_id": cell_id, "project_id": cloud.project_id,
                                             "user_id": instance["user_id"], "queued_for_delete": False} for u in uuids])
        made += [(u, int(numbers[u])) for u in uuids]
    cell.dispose()
    api.dispose()
    return made


def neutron_json(cloud: NovaCloud, made: list[tuple[str, int]], path: str) -> None:
    """The fake Neutron's ports and groups: the template's ports again for every copy."""
    template = cloud.uuid(TEMPLATE)
    ports = [p for p in cloud.cloud["ports"] if p["device_id"] == template]
    data = dict(cloud.cloud, ports=cloud.cloud["ports"] + [dict(p, device_id=u) for u, _ in made for p in ports])
    with open(path, "w") as f:
        json.dump(data, f)


def document(instance: Instance) -> dict[str, Any]:
    """An instance document of the embedded store holding what the Nova store read."""

    def plain(value: Any) -> Any:
        return attrs.asdict(value, recurse=True, filter=lambda a, v: v is not None)

    nics = []
    for nic in instance.nics:
        fixed = []
        for fip in nic.fixed_ips:
            subnet = plain(fip.subnet)
            subnet["routes"] = [{"destination": d, "nexthop": n} for d, n in fip.subnet.routes]
            fixed.append({"ip": fip.ip, "floating_ips": list(fip.floating_ips), "subnet": subnet})
        nics.append({"port_id": nic.port_id, "mac": nic.mac, "vif_type": nic.vif_type, "vnic_type": nic.vnic_type,
                     "security_groups": list(nic.security_groups or ()), "network": plain(nic.network), "fixed_ips": fixed})
    return {
        "uuid": instance.uuid, "name": instance.name, "hostname": instance.hostname, "project_id": instance.project_id,
        "user_id": instance.user_id, "availability_zone": instance.availability_zone, "launch_index": instance.launch_index,
        "reservation_id": instance.reservation_id, "flavor": plain(instance.flavor) if instance.flavor else None,
        "image_id": instance.image_id, "kernel_id": instance.kernel_id or "", "ramdisk_id": instance.ramdisk_id or "",
        "ec2_ids": {"instance": instance.ec2_instance_id, "images": dict(instance.ec2_image_ids)},
        "root_device_name": instance.root_device_name, "default_ephemeral_device": instance.default_ephemeral_device,
        "default_swap_device": instance.default_swap_device,
        "block_device_mappings": [plain(b) for b in instance.block_device_mappings],
        "key_pairs": [plain(k) for k in instance.key_pairs],
        "user_data": base64.b64encode(instance.user_data).decode() if instance.user_data is not None else None,
        "metadata": dict(instance.metadata), "system_metadata": dict(instance.system_metadata), "password": instance.password,
        "security_groups": [], "nics": nics, "device_metadata": [plain(d) for d in instance.device_metadata],
        "dedicated_cpus": list(instance.dedicated_cpus),
    }


def template_instance(cloud: NovaCloud) -> Instance:
    """The template as the Nova store reads it (its security groups from the fake Neutron's data)."""
    from mdsvc.store.nova import convert
    from mdsvc.store.nova.database import Engines
    from mdsvc.store.nova.store import NovaDatabases, NovaReader

    reader = NovaReader(NovaDatabases(cloud.server.url("nova_api"), cloud.server.url("nova_cell1")), Engines(1, 10))
    uuid = cloud.uuid(TEMPLATE)
    rows = reader.rows(uuid)
    assert rows is not None
    names = {g["id"]: g["name"] for g in cloud.cloud["security_groups"]}
    groups = {p["id"]: [names[g] for g in p["security_groups"]] for p in cloud.cloud["ports"] if p["device_id"] == uuid}
    reader.engines.dispose()
    return convert.instance(rows, groups)


def embedded_store(directory: str, template: Instance, made: list[tuple[str, int]]) -> str:
    """An api config on the embedded store holding the same instances."""
    config = write_config(directory, f"[neutron]\nservice_metadata_proxy = true\nmetadata_proxy_shared_secret = {SECRET}\n")
    docs = []
    for i, (uuid, number) in enumerate(made):
        doc = document(template)
        doc.update(uuid=uuid, name=f"Guest {i}", hostname=f"guest-{i}", reservation_id=f"r-{i:08x}",
                   ec2_ids={"instance": number, "images": doc["ec2_ids"]["images"]})
        docs.append(doc)
    path = os.path.join(directory, "instances.json")
    with open(path, "w") as f:
        json.dump(docs, f)
    subprocess.run([sys.executable, "-m", "mdsvc.manage", "--config", config, "instance", "import", path], check=True, cwd=ROOT,
                   capture_output=True, timeout=900)
    return config


def storm(port: int, made: list[tuple[str, int]], project: str, guests: int, concurrency: int, directory: str) -> dict[str, Any]:
    """The boot storm of the first C{guests} instances against the API on C{port}."""
    path = os.path.join(directory, f"guests-{port}.txt")
    with open(path, "w") as f:
        for i, (uuid, number) in enumerate(made[:guests]):
            f.write(f"127.2.{i // 250}.{i % 250 + 1} {uuid} i-{number:08x} {project}\n")
    result = subprocess.run([sys.executable, os.path.join(ROOT, "bench", "storm.py"), "127.0.0.1", str(port), path,
                             "--concurrency", str(concurrency), "--agent-secret", SECRET],
                            capture_output=True, text=True, timeout=1800)
    line = [x for x in result.stdout.splitlines() if x.startswith("MDSVC-STORM ")]
    if not line:
        raise SystemExit(f"storm failed: {result.stdout[-2000:]}{result.stderr[-2000:]}")
    summary: dict[str, Any] = json.loads(line[0].split(" ", 1)[1])
    summary["req_per_s"] = round(summary["requests"] / summary["seconds"], 1) if summary["seconds"] else 0
    return summary


def main() -> int:
    """Build, run both storms, print the table; 0 only without errors."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--instances", type=int, default=10000)
    parser.add_argument("--guests", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--threads", type=int, default=8, help="[mdsvc] database_threads of the Nova store")
    opts = parser.parse_args()
    directory = tempfile.mkdtemp(prefix="mdsvc-bench-nova-")
    server = MariaDB(os.path.join(directory, "mariadb"))
    children: list[Any] = []
    started = time.monotonic()
    cloud: NovaCloud | None = None
    try:
        cloud = NovaCloud(server)
        made = clone_instances(cloud, opts.instances)
        print(f"MariaDB: Nova's schemas and cloud in {cloud.build_seconds:.0f} s, {len(made)} more instances in "
              f"{time.monotonic() - started - cloud.build_seconds:.0f} s", flush=True)
        neutron_path = os.path.join(directory, "neutron.json")
        neutron_json(cloud, made, neutron_path)
        cloud.neutron_port = free_port()
        neutron = Child([sys.executable, os.path.join(ROOT, "tests", "integration", "fake_neutron.py"), str(cloud.neutron_port),
                         neutron_path], os.path.join(directory, "neutron-big.log"))
        children.append(neutron)
        neutron.wait_for_port(cloud.neutron_port)
        results: dict[str, dict[str, Any]] = {}

        nova_api = cloud.start_mdsvc(os.path.join(directory, "nova-store"), cache=15,
                                     extra=f"[mdsvc]\ndatabase_threads = {opts.threads}\ndatabase_timeout = 5\n")
        results["nova store (MariaDB)"] = storm(nova_api.port, made, cloud.project_id, opts.guests, opts.concurrency, directory)
        nova_api.stop()

        config = embedded_store(os.path.join(directory, "embedded"), template_instance(cloud), made)
        embedded = Twistd(["mdsvc", "--role", "api", "--config", config], os.path.join(directory, "embedded", "twistd.log"))
        children.append(embedded)
        results["embedded store (SQLite)"] = storm(embedded.port, made, cloud.project_id, opts.guests, opts.concurrency, directory)
        embedded.stop()
    finally:
        for child in reversed(children):
            child.stop()
        if cloud is not None:
            cloud.destroy()
        server.destroy()
        shutil.rmtree(directory, ignore_errors=True)
    print(f"boot storm: {opts.guests} guests x 28 requests, {opts.concurrency} at a time, {opts.instances} instances in the store, "
          "first request of each guest a cache miss")
    print(f"{'store':<26} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'p99.9 ms':>9} {'max ms':>8} {'errors':>7} {'seconds':>8}")
    for name, r in results.items():
        print(f"{name:<26} {r['req_per_s']:>8} {r['p50_ms']:>8} {r['p99_ms']:>8} {r['p999_ms']:>9} {r['max_ms']:>8} "
              f"{r['errors']:>7} {r['seconds']:>8}")
    print("MDSVC-NOVA-STORE " + json.dumps(results), flush=True)
    return 0 if all(r["errors"] == 0 for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
