"""
A small Nova cloud on a real MariaDB for the integration tests, built by Nova 34.0.0's own code
in the Nova virtualenv (bench/install.sh): the schemas by C{nova-manage} (C{api_db sync},
C{cell_v2 map_cell0}, C{cell_v2 create_cell}, C{db sync}), the instances by C{nova.objects}
(tests/integration/nova_cloud_build.py); a fake Keystone and Neutron (fake_neutron.py) that
Nova's metadata app and mdsvc both ask.  Built once per test process (L{shared_nova_cloud}).

The databases: C{nova_api}, C{nova_cell0}, C{nova_cell1} (mapped with a template URL, so each
reader fills in its own credentials, as Nova's documentation suggests) and C{nova_cell2} (mapped
with a full URL).  mdsvc reads them as the user C{mdsvc}, which has exactly the grants
L{MDSVC_GRANTS} (the README's minimum); Nova runs as C{admin}.

    cloud = shared_nova_cloud()
    nova = cloud.start_nova_app(proxy=True)          # gunicorn running nova.wsgi.metadata
    api = cloud.start_mdsvc(proxy=True)              # twistd -n mdsvc --role api, store = nova
"""

from __future__ import annotations

import atexit
import hashlib
import hmac
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Any

from tests.integration.mariadb import ADMIN_PASSWORD, ADMIN_USER, MariaDB, shared_mariadb
from tests.integration.processes import ROOT, Twistd, free_port, stop_process

NOVA_VENV = os.environ.get("MDSVC_BENCH_NOVA_VENV", "/var/cache/mdsvc-bench/nova-venv")
HERE = os.path.dirname(os.path.abspath(__file__))
SECRET = "parity-shared-secret"
MDSVC_USER, MDSVC_PASSWORD = "mdsvc", "mdsvc-db-secret"
NEUTRON_USER, NEUTRON_PASSWORD = "nova", "neutron-secret"

CELL_TABLES_READ = ("instances", "instance_extra", "instance_info_caches", "instance_metadata", "instance_system_metadata",
                    "block_device_mapping", "instance_id_mappings", "s3_images")


def mdsvc_grants(api_db: str, cell_dbs: list[str]) -> list[tuple[str, str]]:
    """The README's minimum grants for mdsvc: reads, EC2 numbers made on first read, password writes."""
    grants = [("SELECT", f"{api_db}.instance_mappings"), ("SELECT", f"{api_db}.cell_mappings")]
    for db in cell_dbs:
        grants += [("SELECT", f"{db}.{table}") for table in CELL_TABLES_READ]
        grants += [("INSERT", f"{db}.instance_id_mappings"), ("INSERT", f"{db}.s3_images"),
                   ("INSERT, UPDATE", f"{db}.instance_system_metadata")]
    return grants


def sign(instance_id: str) -> str:
    """The X-Instance-ID-Signature a Neutron metadata agent sends."""
    return hmac.new(SECRET.encode(), instance_id.encode(), hashlib.sha256).hexdigest()


def request(port: int, method: str, path: str, headers: dict[str, str] | None = None, body: bytes | None = None,
            source: str | None = None) -> tuple[int, str, bytes]:
    """One HTTP request to 127.0.0.1:C{port} from C{source} (a loopback address): status, content type, body."""
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30, source_address=(source, 0) if source else None)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.getheader("Content-Type") or "", response.read()
    finally:
        conn.close()


class Child:
    """A child process with its log file."""

    def __init__(self, argv: list[str], log_path: str, env: dict[str, str] | None = None, cwd: str = ROOT) -> None:
        self.log_path = log_path
        with open(log_path, "ab") as log:
            self.process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=cwd, env=dict(os.environ, **(env or {})))

    def log(self) -> str:
        """What it wrote."""
        with open(self.log_path, encoding="utf-8", errors="replace") as f:
            return f.read()

    def wait_for_port(self, port: int, timeout: float = 60) -> None:
        """Until something accepts on 127.0.0.1:C{port}; fail with the log if the process exits."""
        import socket

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"{self.process.args} exited with {self.process.returncode}:\n{self.log()[-4000:]}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.1)
        raise AssertionError(f"nothing listened on {port} within {timeout} s:\n{self.log()[-4000:]}")

    def stop(self) -> None:
        """SIGTERM, then SIGKILL."""
        stop_process(self.process)


class NovaCloud:
    """The databases, the instances made in them, and the fake Keystone/Neutron."""

    def __init__(self, server: MariaDB) -> None:
        self.server = server
        self.directory = tempfile.mkdtemp(prefix="mdsvc-nova-cloud-")
        self.children: list[Any] = []
        started = time.monotonic()
        if not os.path.exists(os.path.join(NOVA_VENV, "bin", "nova-manage")):
            raise AssertionError(f"the Nova virtualenv {NOVA_VENV} is missing: run bash bench/install.sh")
        for db in ("nova_api", "nova_cell0", "nova_cell1", "nova_cell2"):
            server.create_database(db)
        self.cell1_template = "{scheme}://{username}:{password}@{hostname}:{port}/nova_cell1?{query}"
        manage_conf = self.nova_conf("nova-manage.conf", database="nova_cell1")
        self.nova_manage(manage_conf, "api_db", "sync")
        self.nova_manage(manage_conf, "cell_v2", "map_cell0", "--database_connection", server.url("nova_cell0"))
        self.nova_manage(manage_conf, "cell_v2", "create_cell", "--name", "cell1", "--database_connection", self.cell1_template,
                         "--transport-url", "fake://")
        self.nova_manage(manage_conf, "db", "sync")
        self.nova_manage(self.nova_conf("nova-manage-cell2.conf", database="nova_cell2"), "db", "sync", "--local_cell")
        self.schema_seconds = time.monotonic() - started
        cloud_json = os.path.join(self.directory, "cloud.json")
        self._run([os.path.join(NOVA_VENV, "bin", "python"), os.path.join(HERE, "nova_cloud_build.py"), manage_conf,
                   server.url("nova_cell2"), cloud_json], "nova_cloud_build.py")
        with open(cloud_json) as f:
            self.cloud: dict[str, Any] = json.load(f)
        server.grant(MDSVC_USER, MDSVC_PASSWORD, mdsvc_grants("nova_api", ["nova_cell1", "nova_cell2"]))
        self.neutron_port = free_port()
        neutron = Child([sys.executable, os.path.join(HERE, "fake_neutron.py"), str(self.neutron_port), cloud_json],
                        os.path.join(self.directory, "fake-neutron.log"))
        self.children.append(neutron)
        neutron.wait_for_port(self.neutron_port)
        self.build_seconds = time.monotonic() - started

    # -- the instances ---------------------------------------------------------------------------

    def uuid(self, name: str) -> str:
        """The uuid of one of the instances (C{web}, C{vol}, C{bare}, C{gone}, C{far})."""
        return str(self.cloud["instances"][name]["uuid"])

    @property
    def project_id(self) -> str:
        """The project owning every instance."""
        return str(self.cloud["project_id"])

    def proxy_headers(self, name: str, forwarded_for: str | None = "10.10.0.5") -> dict[str, str]:
        """The headers a Neutron metadata agent sends for instance C{name}."""
        uuid = self.uuid(name)
        headers = {"X-Instance-ID": uuid, "X-Instance-ID-Signature": sign(uuid), "X-Tenant-ID": self.project_id}
        if forwarded_for:
            headers["X-Forwarded-For"] = forwarded_for
        return headers

    # -- Nova ------------------------------------------------------------------------------------

    def _run(self, argv: list[str], what: str) -> None:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=600, cwd=self.directory)
        if result.returncode != 0:
            raise AssertionError(f"{what} failed ({result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")

    def nova_manage(self, conf: str, *args: str) -> None:
        """Run Nova's own nova-manage from the Nova virtualenv."""
        self._run([os.path.join(NOVA_VENV, "bin", "nova-manage"), "--config-file", conf, *args], f"nova-manage {' '.join(args)}")

    def nova_conf(self, name: str, database: str = "nova_cell1", extra: str = "") -> str:
        """A nova.conf (as an operator's) with Nova's own database credentials."""
        path = os.path.join(self.directory, name)
        with open(path, "w") as f:
            f.write(f"[DEFAULT]\ntransport_url = fake://\n\n[api_database]\nconnection = {self.server.url('nova_api')}\n\n"
                    f"[database]\nconnection = {self.server.url(database)}\n\n{extra}")
        return path

    def neutron_options(self, auth_url: str) -> str:
        """C{[neutron]}'s keystoneauth options for the fake Neutron."""
        return (f"auth_type = password\nauth_url = {auth_url}\nusername = {NEUTRON_USER}\npassword = {NEUTRON_PASSWORD}\n"
                "project_name = service\nuser_domain_name = Default\nproject_domain_name = Default\nregion_name = RegionOne\n"
                "valid_interfaces = internal\n")

    def start_nova_app(self, proxy: bool = True, cache: int = 1) -> Child:
        """Nova's own metadata app (nova.wsgi.metadata under gunicorn) on these databases; stopped at exit."""
        port = free_port()
        conf_dir = os.path.join(self.directory, f"nova-app-{port}")
        os.makedirs(conf_dir)
        shutil.copy(os.path.join(NOVA_VENV, "etc", "nova", "api-paste.ini"), conf_dir)
        extra = (f"[api]\nmetadata_cache_expiration = {cache}\n\n[neutron]\nservice_metadata_proxy = {proxy}\n"
                 f"metadata_proxy_shared_secret = {SECRET}\n"
                 + self.neutron_options(f"http://127.0.0.1:{self.neutron_port}/identity"))
        shutil.move(self.nova_conf(f"nova-app-{port}.conf", extra=extra), os.path.join(conf_dir, "nova.conf"))
        child = Child([os.path.join(NOVA_VENV, "bin", "gunicorn"), "-w", "1", "--threads", "1", "-b", f"127.0.0.1:{port}",
                       "--chdir", HERE, "nova_metadata_wsgi:application"],
                      os.path.join(conf_dir, "gunicorn.log"), env={"OS_NOVA_CONFIG_DIR": conf_dir}, cwd=conf_dir)
        child.port = port  # type: ignore[attr-defined]
        self.children.append(child)
        child.wait_for_port(port)
        return child

    # -- mdsvc -----------------------------------------------------------------------------------

    def workdir(self, prefix: str) -> str:
        """A new directory for one process's files, removed with the cloud."""
        return tempfile.mkdtemp(prefix=prefix, dir=self.directory)

    def mdsvc_config(self, directory: str, proxy: bool = True, cache: int = 1, extra: str = "") -> str:
        """
        An api role's configuration: a nova.conf as an operator has it (mdsvc's own database user)
        plus C{[mdsvc] store = nova}.
        """
        os.makedirs(directory, exist_ok=True)
        path = os.path.join(directory, "nova.conf")
        server = self.server
        with open(path, "w") as f:
            f.write(
                f"[DEFAULT]\nstate_path = {directory}/state\n\n"
                f"[mdsvc]\nstore = nova\napi_endpoint = tcp:0:interface=127.0.0.1\ndatabase_timeout = 2\n\n"
                f"[api_database]\nconnection = {server.url('nova_api', MDSVC_USER, MDSVC_PASSWORD)}\n\n"
                f"[database]\nconnection = {server.url('nova_cell1', MDSVC_USER, MDSVC_PASSWORD)}\n\n"
                f"[api]\nmetadata_cache_expiration = {cache}\n\n"
                f"[neutron]\nservice_metadata_proxy = {proxy}\nmetadata_proxy_shared_secret = {SECRET}\n"
                + self.neutron_options(f"http://127.0.0.1:{self.neutron_port}/identity/v3") + "\n" + extra
            )
        return path

    def start_mdsvc(self, directory: str, proxy: bool = True, cache: int = 1, extra: str = "") -> Twistd:
        """mdsvc's api role on these databases (C{twistd -n mdsvc --role api}); stopped at exit."""
        config = self.mdsvc_config(directory, proxy, cache, extra)
        api = Twistd(["mdsvc", "--role", "api", "--config", config], os.path.join(directory, "twistd.log"))
        self.children.append(api)
        return api

    def neutron_stats(self) -> dict[str, int]:
        """How often the fake Neutron was asked, by collection."""
        import urllib.request

        with urllib.request.urlopen(f"http://127.0.0.1:{self.neutron_port}/_stats", timeout=5) as r:
            return dict(json.load(r))

    def destroy(self) -> None:
        """Stop every child and remove the directory (the databases go with the MariaDB server)."""
        for child in reversed(self.children):
            child.stop()
        shutil.rmtree(self.directory, ignore_errors=True)


_shared: dict[str, NovaCloud] = {}


def shared_nova_cloud() -> NovaCloud:
    """The test process's one Nova cloud, built on first use, removed when the process exits."""
    if "cloud" not in _shared:
        cloud = NovaCloud(shared_mariadb())
        _shared["cloud"] = cloud
        atexit.register(cloud.destroy)
    return _shared["cloud"]


__all__ = ["ADMIN_PASSWORD", "ADMIN_USER", "NovaCloud", "request", "shared_nova_cloud", "sign"]
