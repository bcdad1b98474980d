"""Each ``tac/ROLE.tac``, started by a real ``twistd -ny``, listens exactly where its role does.

The sockets a process listens on are read from the kernel (``ss``), so a .tac that builds another
role than its name says, or one listener too many or too few, fails here.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from typing import Any

from twisted.trial import unittest

from tests.integration.processes import ROOT, Twistd, free_port


def listening(pid: int) -> set[str]:
    """The TCP ports (C{tcp:PORT}) and UNIX socket paths (C{unix:PATH}) process C{pid} listens on."""
    found = set()
    out = subprocess.run(["ss", "-H", "-l", "-n", "-p", "-t", "-x"], capture_output=True, text=True, check=True).stdout
    for line in out.splitlines():
        if f"pid={pid}," not in line:
            continue
        fields = line.split()
        if fields[0] == "tcp":
            found.add("tcp:" + fields[4].rsplit(":", 1)[1])
        elif fields[0] == "u_str":
            found.add("unix:" + fields[4])
    return found


class TacCase(unittest.TestCase):
    """Starting ``twistd -ny tac/ROLE.tac`` on a configuration naming every listener of every role."""

    def write_config(self, directory: str, defaults: str = "", api_endpoint: str | None = None) -> tuple[str, dict[str, str]]:
        """A config naming every listener of every role (C{defaults}: more [DEFAULT] lines); its path and those listeners."""
        api_port, proxy_port = free_port(), free_port()
        socket_path = os.path.join(directory, "agent.sock")
        config = os.path.join(directory, "mdsvc.conf")
        with open(config, "w") as f:
            f.write(
                f"[DEFAULT]\nstate_path = {directory}/state\nmetadata_proxy_shared_secret = s\n"
                f"metadata_proxy_socket = {socket_path}\nnova_metadata_port = {api_port}\n{defaults}\n"
                f"[proxy]\nnamespaces = none\n"
                f"listeners = network 11111111-0000-4000-8000-000000000001 tcp:{proxy_port}:interface=127.0.0.1\n\n"
                f"[mdsvc]\napi_endpoint = {api_endpoint or f'tcp:{api_port}:interface=127.0.0.1'}\n"
            )
        return config, {"api": f"tcp:{api_port}", "agent": f"unix:{socket_path}", "proxy": f"tcp:{proxy_port}"}

    def directory(self) -> str:
        """A directory for one test's files, removed after it."""
        directory = tempfile.mkdtemp(prefix="mdsvc-tac-")  # short: a UNIX socket path is at most 107 bytes
        self.addCleanup(shutil.rmtree, directory, ignore_errors=True)
        return directory

    def start(self, role: str, defaults: str = "") -> tuple[Twistd, dict[str, str]]:
        """Start tac/ROLE.tac on a config naming every listener of every role; return it and those listeners."""
        directory = self.directory()
        config, expected = self.write_config(directory, defaults)
        expected["admin"] = f"unix:{directory}/state/run/{role}.sock"  # the admin socket (mdsvc-manage doctor, trace)
        process = Twistd(
            ["-y", os.path.join(ROOT, "tac", f"{role}.tac")], os.path.join(directory, "twistd.log"),
            env={"MDSVC_CONFIG": config}, ready=lambda p: "reactor class" in p.log(),
        )
        self.addCleanup(process.stop)
        return process, expected


class TacRoleTests(TacCase):
    """``twistd -ny tac/ROLE.tac`` for the five roles."""

    def assert_listens(self, role: str, hops: list[str]) -> None:
        """tac/ROLE.tac ends up listening on exactly the listeners of C{hops}, and its admin socket."""
        process, listeners = self.start(role)
        wanted = {listeners[hop] for hop in [*hops, "admin"]}
        deadline = time.monotonic() + 15
        while listening(process.process.pid) != wanted and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.5)  # nothing more comes later
        self.assertEqual(listening(process.process.pid), wanted, process.log()[-3000:])

    def test_api(self) -> None:
        """tac/api.tac: the metadata API's TCP port (and the admin socket), nothing else."""
        self.assert_listens("api", ["api"])

    def test_agent(self) -> None:
        """tac/agent.tac: the agent's UNIX socket (and the admin socket), nothing else."""
        self.assert_listens("agent", ["agent"])

    def test_proxy(self) -> None:
        """tac/proxy.tac: the proxy listeners (and the admin socket), nothing else."""
        self.assert_listens("proxy", ["proxy"])

    def test_network_node(self) -> None:
        """tac/network-node.tac: the agent's socket and the proxy listeners, no API."""
        self.assert_listens("network-node", ["agent", "proxy"])

    def test_all_in_one(self) -> None:
        """tac/all-in-one.tac: all three."""
        self.assert_listens("all-in-one", ["api", "agent", "proxy"])


def children(pid: int) -> list[int]:
    """The child processes of C{pid}."""
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return [int(word) for word in f.read().split()]


def worker_index(pid: int) -> str:
    """The number of API worker C{pid} (its C{--worker-index}), or C{?}."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            args = f.read().decode().split("\0")
    except OSError:
        return "?"
    return args[args.index("--worker-index") + 1] if "--worker-index" in args else "?"


def admin_dir(log: str) -> str:
    """The admin directory of the process whose log is C{log} (C{state_path}/run beside it)."""
    return os.path.join(os.path.dirname(log), "state", "run")


class TacWorkersAndSocketsTests(TacCase):
    """
    tac/api.tac with this branch's listeners: C{metadata_workers} (a supervisor and its workers
    on one socket) and a socket systemd passes in (socket activation), and both together.
    """

    def assert_shared(self, pid: int, wanted: set[str], workers: int, log: Any, admin_dir: str) -> None:
        """
        Process C{pid} and each of its C{workers} children listen on exactly C{wanted} and an admin
        socket of their own in C{admin_dir}: C{api.sock} (the supervisor, or the only process),
        C{api@N.sock} (worker N).
        """

        def expected(p: int) -> set[str]:
            return wanted | {f"unix:{admin_dir}/{'api' if p == pid else f'api@{worker_index(p)}'}.sock"}

        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            pids = [pid, *children(pid)]
            if len(pids) == workers + 1 and all(listening(p) == expected(p) for p in pids):
                break
            time.sleep(0.2)
        time.sleep(0.5)  # nothing more comes later
        pids = [pid, *children(pid)]
        self.assertEqual(len(pids), workers + 1, log()[-3000:])
        self.assertEqual({p: listening(p) for p in pids}, {p: expected(p) for p in pids}, log()[-3000:])
        self.assertEqual(sorted(expected(p) for p in pids[1:]) if workers else [],
                         sorted({f"unix:{admin_dir}/api@{i}.sock"} | wanted for i in range(workers)))

    def test_api_workers(self) -> None:
        """metadata_workers = 2: the supervisor (the .tac's process) and each worker hold the API's port and an admin socket each."""
        process, listeners = self.start("api", "metadata_workers = 2\n")
        self.assert_shared(process.process.pid, {listeners["api"]}, 2, process.log, os.path.dirname(listeners["admin"][5:]))

    def systemd(self, defaults: str = "") -> tuple[Any, int, str]:
        """tac/api.tac started as systemd starts a socket-activated service: the process, the socket's port, the log (its admin sockets beside it)."""
        from tests.integration.fakesystemd import FakeSystemd, stop

        directory = self.directory()
        systemd = FakeSystemd(directory)
        self.addCleanup(systemd.close)
        port = systemd.listen("api")
        config, _ = self.write_config(directory, defaults, "systemd:domain=INET:name=api")
        log = os.path.join(directory, "twistd.log")
        process = systemd.spawn(["-y", os.path.join(ROOT, "tac", "api.tac")], log, env={"MDSVC_CONFIG": config})
        self.addCleanup(lambda: process.poll() is not None or stop(process))
        systemd.wait_for("READY")
        return process, port, log

    def test_api_systemd_socket(self) -> None:
        """api_endpoint = systemd:...:name=api: the .tac serves the socket systemd passed, and listens nowhere else."""
        process, port, log = self.systemd()
        self.assert_shared(process.pid, {f"tcp:{port}"}, 0, lambda: open(log).read(), admin_dir(log))

    def test_api_systemd_socket_workers(self) -> None:
        """Both: the supervisor and its two workers share the socket systemd passed, and listen nowhere else."""
        process, port, log = self.systemd("metadata_workers = 2\n")
        self.assert_shared(process.pid, {f"tcp:{port}"}, 2, lambda: open(log).read(), admin_dir(log))
