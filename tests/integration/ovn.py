"""
Real OVN for the integration tests: C{ovsdb-server} for the Northbound and Southbound databases
and C{ovn-northd}, from Debian's C{ovn-central}, started on UNIX sockets in a private directory
(never the system's services); and helpers that write into the Northbound database what
Neutron's OVN mechanism driver writes there (C{ovn_client.py}: C{create_network},
C{create_metadata_port}, C{create_port}), then bind ports to a chassis as C{ovn-controller}
would.

What Neutron writes, and what C{ovn-northd} makes of it in the Southbound database:

  - a network is a C{Logical_Switch} named C{neutron-<network id>} with C{external_ids}
    C{neutron:network_name}, C{neutron:mtu}, C{neutron:revision_number},
    C{neutron:availability_zone_hints}; northd gives it a C{Datapath_Binding} whose
    C{external_ids} hold C{name=neutron-<network id>} (and C{name2}, the network's name);
  - each network has a metadata port: C{type=localport}, device owner C{network:distributed},
    device id C{ovnmeta-<network id>}, never bound to a chassis;
  - a port is a C{Logical_Switch_Port} named by the port id with C{addresses} C{["MAC IP..."]}
    and C{external_ids} C{neutron:device_id}, C{neutron:device_owner} (C{compute:<az>} for
    Nova's servers), C{neutron:project_id}, C{neutron:cidrs}, C{neutron:network_name}
    (C{neutron-<network id>}), ...; northd copies both into its C{Port_Binding} (C{mac},
    C{external_ids}); C{ovn-controller} sets C{chassis} when it binds the port.

The servers of L{shared_central} are started once per test session and shared (tests use fresh
network ids); a Southbound cluster (L{OvnCentral} with C{sb_members=3}) is made per test that
kills its members.
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Sequence
from typing import Any

from twisted.trial.unittest import SkipTest

from tests.integration.neutron_haproxy import neutron_haproxy_config

SCHEMAS = "/usr/share/ovn"
TOOLS = ("ovsdb-server", "ovsdb-tool", "ovn-northd", "ovn-nbctl", "ovn-sbctl", "ovs-appctl")
CHASSIS = "mdsvc-test-chassis"


def require_ovn() -> None:
    """Skip, saying so, where Debian's ovn-central is not installed (.ci/install-test-deps installs it)."""
    for tool in TOOLS:
        if shutil.which(tool) is None and not os.access(f"/usr/sbin/{tool}", os.X_OK):
            raise SkipTest(f"needs OVN's {tool} (apt-get install ovn-central ovn-common openvswitch-common)")
    for schema in ("ovn-nb.ovsschema", "ovn-sb.ovsschema"):
        if not os.path.exists(os.path.join(SCHEMAS, schema)):
            raise SkipTest(f"needs {SCHEMAS}/{schema} (ovn-common)")


def _tool(name: str) -> str:
    return shutil.which(name) or f"/usr/sbin/{name}"


def _run(*args: str, timeout: float = 30) -> str:
    result = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed ({result.returncode}): {result.stderr.strip()}")
    return result.stdout


def _wait_for(path: str, process: subprocess.Popen[bytes], what: str, log: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if os.path.exists(path):
            return
        if process.poll() is not None:
            break
        time.sleep(0.02)
    with open(log, errors="replace") as f:
        raise AssertionError(f"{what} did not create {path}:\n{f.read()[-3000:]}")


class Daemon:
    """One OVS or OVN daemon in the foreground (no C{--detach}): a child of the test process."""

    def __init__(self, name: str, directory: str, args: Sequence[str]) -> None:
        self.name = name
        self.log = os.path.join(directory, f"{name}.log")
        self.control = os.path.join(directory, f"{name}.ctl")
        self.args = [*args, f"--unixctl={self.control}", f"--log-file={self.log}", "--no-chdir", "-vconsole:off"]
        self.start()

    def start(self) -> None:
        """Start the process (again, after L{kill}: a crashed member coming back)."""
        if os.path.exists(self.control):
            os.unlink(self.control)
        self.process = subprocess.Popen(self.args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait_for(self.control, self.process, self.name, self.log)

    @property
    def running(self) -> bool:
        """Whether the process is alive."""
        return self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL: the crash of a cluster member, no goodbye to its peers."""
        if self.running:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 5 s."""
        if self.running:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.kill()

    def appctl(self, *command: str) -> str:
        """C{ovs-appctl -t CONTROL COMMAND...}."""
        return _run(_tool("ovs-appctl"), "-t", self.control, *command)


class OvnCentral:
    """
    C{ovsdb-server} for NB, C{ovsdb-server} for SB (standalone, or a Raft cluster of
    C{sb_members}), and C{ovn-northd} between them, all on UNIX sockets under one directory.

    @ivar sb_remotes: the SB sockets, one per member (C{unix:PATH}).
    """

    def __init__(self, sb_members: int = 1) -> None:
        require_ovn()
        # short: UNIX socket paths are at most 107 bytes
        self.directory = tempfile.mkdtemp(prefix="mdsvc-ovn-")
        self.daemons: list[Daemon] = []
        self.sb: list[Daemon] = []
        try:
            self._start(sb_members)
        except BaseException:
            self.stop()
            raise

    def _path(self, name: str) -> str:
        return os.path.join(self.directory, name)

    def _start(self, sb_members: int) -> None:
        tool, server = _tool("ovsdb-tool"), _tool("ovsdb-server")
        _run(tool, "create", self._path("nb.db"), f"{SCHEMAS}/ovn-nb.ovsschema")
        self.nb_remote = f"unix:{self._path('nb.sock')}"
        self.nb = self._daemon("nb", [server, f"--remote=p{self.nb_remote}", self._path("nb.db")], self._path("nb.sock"))
        schema = f"{SCHEMAS}/ovn-sb.ovsschema"
        self.sb_remotes: list[str] = []
        if sb_members == 1:
            _run(tool, "create", self._path("sb1.db"), schema)
        else:
            _run(tool, "create-cluster", self._path("sb1.db"), schema, f"unix:{self._path('sb1.raft')}")
            for i in range(2, sb_members + 1):
                _run(tool, "join-cluster", self._path(f"sb{i}.db"), "OVN_Southbound",
                     f"unix:{self._path(f'sb{i}.raft')}", f"unix:{self._path('sb1.raft')}")
        for i in range(1, sb_members + 1):
            remote = f"unix:{self._path(f'sb{i}.sock')}"
            self.sb_remotes.append(remote)
            self.sb.append(self._daemon(f"sb{i}", [server, f"--remote=p{remote}", self._path(f"sb{i}.db")], self._path(f"sb{i}.sock")))
        if sb_members > 1:
            self.wait_cluster(sb_members)
        self.northd = self._daemon("northd", [_tool("ovn-northd"), f"--ovnnb-db={self.nb_remote}", f"--ovnsb-db={self.sb_remote}"])
        self.sbctl("chassis-add", CHASSIS, "geneve", "127.0.0.1")
        self.nbctl("--wait=sb", "sync")

    def _daemon(self, name: str, args: Sequence[str], socket: str | None = None) -> Daemon:
        daemon = Daemon(name, self.directory, args)
        self.daemons.append(daemon)
        if socket is not None:
            _wait_for(socket, daemon.process, name, daemon.log)
        return daemon

    @property
    def sb_remote(self) -> str:
        """The SB database as C{[ovn] ovn_sb_connection} names it: every member, comma-separated."""
        return ",".join(self.sb_remotes)

    def nbctl(self, *args: str) -> str:
        """C{ovn-nbctl} on this NB database."""
        return _run(_tool("ovn-nbctl"), f"--db={self.nb_remote}", *args)

    def sbctl(self, *args: str) -> str:
        """C{ovn-sbctl} on this SB database (any live member)."""
        live = ",".join(r for r, d in zip(self.sb_remotes, self.sb, strict=True) if d.running)
        return _run(_tool("ovn-sbctl"), f"--db={live}", "--no-leader-only", *args)

    # -- the cluster --------------------------------------------------------------------------

    def role(self, member: int) -> str:
        """C{leader}, C{follower} or C{candidate}: member C{member}'s (0-based) Raft role."""
        status = self.sb[member].appctl("cluster/status", "OVN_Southbound")
        for line in status.splitlines():
            if line.startswith("Role:"):
                return line.split(":", 1)[1].strip()
        raise AssertionError(f"no Role in cluster/status:\n{status}")

    def leader(self) -> int:
        """The index of the member that is leader now (waits for an election, at most 20 s)."""
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            for i, daemon in enumerate(self.sb):
                if daemon.running and self.role(i) == "leader":
                    return i
            time.sleep(0.1)
        raise AssertionError("the SB cluster elected no leader within 20 s")

    def wait_cluster(self, members: int) -> None:
        """Wait until every member has joined the cluster and one leads."""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            statuses = [d.appctl("cluster/status", "OVN_Southbound") for d in self.sb]
            if all("Status: cluster member" in s for s in statuses) and any("Role: leader" in s for s in statuses):
                return
            time.sleep(0.1)
        raise AssertionError(f"the SB cluster of {members} did not form within 30 s")

    def stop(self) -> None:
        """Stop every daemon and remove the directory."""
        for daemon in reversed(self.daemons):
            daemon.stop()
        shutil.rmtree(self.directory, ignore_errors=True)


_SHARED: list[OvnCentral] = []


def shared_central() -> OvnCentral:
    """The session's NB + SB + northd, started at first use and stopped when the process exits."""
    require_ovn()
    if not _SHARED or not all(d.running for d in _SHARED[0].daemons):
        if _SHARED:
            _SHARED.pop().stop()
        _SHARED.append(OvnCentral())
        atexit.register(lambda: [c.stop() for c in _SHARED])
    return _SHARED[0]


# -- what Neutron's OVN driver writes --------------------------------------------------------

def _ids(values: dict[str, str]) -> list[str]:
    """C{external_ids:"KEY"="VALUE"} arguments for ovn-nbctl (keys with colons quoted)."""
    return [f'external_ids:"{k}"="{v}"' for k, v in values.items()]


def ovn_name(network_id: str) -> str:
    """Neutron's C{utils.ovn_name}: the logical switch of a network."""
    return f"neutron-{network_id}"


def create_network(central: OvnCentral, network_id: str, name: str = "private", mtu: int = 1442,
                   metadata_mac: str = "fa:16:3e:00:00:02", metadata_ip: str = "10.0.0.2",
                   cidr: str = "10.0.0.0/24") -> None:
    """
    A network as Neutron's C{create_network} writes it, with its metadata port
    (C{create_metadata_port}); returns once northd has written the SB database.
    """
    switch = ovn_name(network_id)
    metadata_port = f"ovnmeta-port-{network_id}"
    prefix = cidr.split("/")[1]
    network_ids = {"neutron:network_name": name, "neutron:mtu": str(mtu), "neutron:revision_number": "1",
                   "neutron:availability_zone_hints": "", "neutron:provnet-network-type": "geneve"}
    port_ids = {"neutron:port_name": "", "neutron:device_id": f"ovnmeta-{network_id}",
                "neutron:device_owner": "network:distributed", "neutron:project_id": "admin-project",
                "neutron:cidrs": f"{metadata_ip}/{prefix}", "neutron:network_name": switch,
                "neutron:revision_number": "1", "neutron:security_group_ids": "", "neutron:vnic_type": "normal",
                "neutron:port_capabilities": "", "neutron:mtu": str(mtu)}
    central.nbctl(
        "--wait=sb", "ls-add", switch,
        "--", "set", "Logical_Switch", switch, *_ids(network_ids), "other_config:mcast_snoop=false",
        "--", "lsp-add", switch, metadata_port,
        "--", "lsp-set-type", metadata_port, "localport",
        "--", "lsp-set-addresses", metadata_port, f"{metadata_mac} {metadata_ip}",
        "--", "set", "Logical_Switch_Port", metadata_port, *_ids(port_ids),
    )


def create_port(central: OvnCentral, network_id: str, port_id: str, mac: str, ips: Sequence[str], device_id: str,
                project_id: str, device_owner: str = "compute:nova", prefixes: Sequence[int] | None = None,
                bind: bool = True, wait: bool = True) -> None:
    """
    A port as Neutron's C{create_port} writes it (its addresses C{"MAC IP..."}); with C{bind},
    bound to the test chassis as C{ovn-controller} does when the VIF appears (C{Port_Binding}
    C{chassis}).
    """
    switch = ovn_name(network_id)
    cidrs = " ".join(f"{ip}/{p}" for ip, p in zip(ips, prefixes or [24 if ":" not in ip else 64 for ip in ips], strict=True))
    port_ids = {"neutron:port_name": "", "neutron:device_id": device_id, "neutron:device_owner": device_owner,
                "neutron:project_id": project_id, "neutron:cidrs": cidrs, "neutron:network_name": switch,
                "neutron:revision_number": "2", "neutron:security_group_ids": "", "neutron:vnic_type": "normal",
                "neutron:port_capabilities": "", "neutron:mtu": "1442", "neutron:host_id": CHASSIS}
    address = " ".join([mac, *ips])
    central.nbctl(
        *(["--wait=sb"] if wait or bind else []), "lsp-add", switch, port_id,
        "--", "lsp-set-addresses", port_id, address,
        "--", "lsp-set-port-security", port_id, address,
        "--", "set", "Logical_Switch_Port", port_id, *_ids(port_ids), f"options:requested-chassis={CHASSIS}",
    )
    if bind:
        central.sbctl("lsp-bind", port_id, CHASSIS)


def delete_port(central: OvnCentral, port_id: str, wait: bool = True) -> None:
    """A port deleted as Neutron's C{delete_port} does (C{lsp-del}); northd drops its binding."""
    central.nbctl(*(["--wait=sb"] if wait else []), "lsp-del", port_id)


def delete_network(central: OvnCentral, network_id: str) -> None:
    """A network deleted as Neutron's C{delete_network} does (its switch, with its ports)."""
    central.nbctl("--wait=sb", "--if-exists", "ls-del", ovn_name(network_id))


# -- the namespaces of a chassis ---------------------------------------------------------------

def ovnmeta_network(cloud: Any, network_id: str, guest: str, guest_ip: str, guest_mac: str, metadata_ip: str = "10.0.0.2",
                    prefix: str = "ovnmeta") -> str:
    """
    The OVN metadata agent's plumbing of one network (neutron spec §2.2): a C{ovnmeta-<network>}
    namespace whose C{tap<network[:10]>1} holds 169.254.169.254/32, the metadata port's address
    and fe80::a9fe:a9fe/128, and a guest namespace on the other end of the veth (standing for
    br-int and the localport) routing 169.254.169.254 to the metadata port's address.

    @param prefix: another prefix makes a namespace mdsvc's proxies do not follow (for a stock
        haproxy in it).
    @return: the metadata namespace's name.
    """
    namespace = cloud.namespace(f"{prefix}-{network_id}")
    cloud.namespace(guest)
    tap = f"tap{network_id[:10]}1"
    cloud.veth(namespace, tap, guest, "eth0", guest_mac)
    _run("ip", "-n", namespace, "addr", "add", f"{metadata_ip}/24", "dev", tap)
    _run("ip", "-n", namespace, "addr", "add", "169.254.169.254/32", "dev", tap)
    _run("ip", "-n", namespace, "-6", "addr", "add", "fe80::a9fe:a9fe/128", "dev", tap, "nodad")
    _run("ip", "-n", guest, "addr", "add", f"{guest_ip}/24", "dev", "eth0")
    _run("ip", "-n", guest, "route", "add", "169.254.169.254/32", "via", metadata_ip)
    return namespace


def haproxy_ovn_config(path: str, network_id: str, socket_path: str) -> str:
    """
    The haproxy configuration Neutron's OVN metadata agent writes for a network (neutron spec
    §8, no rate limiting), run in the foreground as the caller: C{X-OVN-Network-ID} added
    (C{add-header}), forwarded to the agent's UNIX socket.
    """
    return neutron_haproxy_config(
        path, network_id, ["169.254.169.254:80", f"[fe80::a9fe:a9fe]:80 interface tap{network_id[:10]}1"],
        socket_path, [f"add-header X-OVN-Network-ID {network_id}"],
    )


# -- TLS ---------------------------------------------------------------------------------------

def make_pki(directory: str, name: str = "pki") -> dict[str, str]:
    """
    A CA, and a server and a client certificate it signed (as C{ovs-pki} makes them for OVN's
    ssl: remotes): the PEM files' paths by C{ca}, C{server-cert}, C{server-key}, C{client-cert},
    C{client-key}.
    """
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)
    paths: dict[str, str] = {}

    def write(kind: str, data: bytes) -> None:
        paths[kind] = os.path.join(directory, f"{name}-{kind}.pem")
        with open(paths[kind], "wb") as f:
            f.write(data)

    def certificate(subject: str, key: Any, issuer: Any, issuer_key: Any, ca: bool) -> Any:
        builder = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
                   .issuer_name(issuer).public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=2))
                   .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        return builder.sign(issuer_key, hashes.SHA256())

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{name} test CA")])
    ca = certificate(f"{name} test CA", ca_key, ca_name, ca_key, True)
    write("ca", ca.public_bytes(serialization.Encoding.PEM))
    for who in ("server", "client"):
        key = ec.generate_private_key(ec.SECP256R1())
        write(f"{who}-key", key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                              serialization.NoEncryption()))
        write(f"{who}-cert", certificate(f"{name} {who}", key, ca_name, ca_key, False).public_bytes(serialization.Encoding.PEM))
    return paths
