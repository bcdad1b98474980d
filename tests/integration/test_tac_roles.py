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


class TacRoleTests(unittest.TestCase):
    """``twistd -ny tac/ROLE.tac`` for the five roles."""

    def start(self, role: str) -> tuple[Twistd, dict[str, str]]:
        """Start tac/ROLE.tac on a config naming every listener of every role; return it and those listeners."""
        directory = tempfile.mkdtemp(prefix="mdsvc-tac-")  # short: a UNIX socket path is at most 107 bytes
        self.addCleanup(shutil.rmtree, directory, ignore_errors=True)
        api_port, proxy_port = free_port(), free_port()
        socket_path = os.path.join(directory, "agent.sock")
        config = os.path.join(directory, "mdsvc.conf")
        with open(config, "w") as f:
            f.write(
                f"[DEFAULT]\nstate_path = {directory}/state\nmetadata_proxy_shared_secret = s\n"
                f"metadata_proxy_socket = {socket_path}\nnova_metadata_port = {api_port}\n\n"
                f"[proxy]\nnamespaces = none\n"
                f"listeners = network 11111111-0000-4000-8000-000000000001 tcp:{proxy_port}:interface=127.0.0.1\n\n"
                f"[mdsvc]\napi_endpoint = tcp:{api_port}:interface=127.0.0.1\n"
            )
        expected = {"api": f"tcp:{api_port}", "agent": f"unix:{socket_path}", "proxy": f"tcp:{proxy_port}"}
        process = Twistd(
            ["-y", os.path.join(ROOT, "tac", f"{role}.tac")], os.path.join(directory, "twistd.log"),
            env={"MDSVC_CONFIG": config}, ready=lambda p: "reactor class" in p.log(),
        )
        self.addCleanup(process.stop)
        return process, expected

    def assert_listens(self, role: str, hops: list[str]) -> None:
        """tac/ROLE.tac ends up listening on exactly the listeners of C{hops}."""
        process, listeners = self.start(role)
        wanted = {listeners[hop] for hop in hops}
        deadline = time.monotonic() + 15
        while listening(process.process.pid) != wanted and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.5)  # nothing more comes later
        self.assertEqual(listening(process.process.pid), wanted, process.log()[-3000:])

    def test_api(self) -> None:
        """tac/api.tac: the metadata API's TCP port, nothing else."""
        self.assert_listens("api", ["api"])

    def test_agent(self) -> None:
        """tac/agent.tac: the agent's UNIX socket, nothing else."""
        self.assert_listens("agent", ["agent"])

    def test_proxy(self) -> None:
        """tac/proxy.tac: the proxy listeners, nothing else."""
        self.assert_listens("proxy", ["proxy"])

    def test_network_node(self) -> None:
        """tac/network-node.tac: the agent's socket and the proxy listeners, no API."""
        self.assert_listens("network-node", ["agent", "proxy"])

    def test_all_in_one(self) -> None:
        """tac/all-in-one.tac: all three."""
        self.assert_listens("all-in-one", ["api", "agent", "proxy"])
