"""Integration helpers: a real ``twistd -n mdsvc`` process, ``mdsvc-manage`` runs and HTTP reads."""

from __future__ import annotations

import os
import re
import resource
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PROBE = os.path.join(ROOT, "tests", "integration", "clients", "probe.py")
INSTALL_CLIENTS = "bash tests/integration/clients/install.sh"
# Debian's tools the config drive readers call, and their packages.
DRIVE_TOOLS = {"bsdtar": "libarchive-tools", "mcopy": "mtools", "mlabel": "mtools", "blkid": "util-linux"}


class NotInstalled(AssertionError):
    """
    What a test drives is not installed (the real metadata clients, the tools they call,
    haproxy, wrk, the Nova peer): the test fails, never skips. C{str()} is the one line to show,
    naming the command that installs it (tests/integration/conftest.py shows only that line
    under pytest).
    """


def clients_dir() -> str:
    """Where tests/integration/clients/install.sh puts the clients (C{$MDSVC_CLIENTS_DIR})."""
    return os.environ.get("MDSVC_CLIENTS_DIR", "/var/cache/mdsvc-test-clients")


def client_python(*tools: str) -> str:
    """
    The python of the clients' own virtualenv, which runs probe.py (the clients are installed
    nowhere else).

    @param tools: the Debian tools the probe will call as well (L{DRIVE_TOOLS}).
    @raise NotInstalled: something is not installed; one line naming the command to run.
    """
    directory = clients_dir()
    python = os.path.join(directory, "venv", "bin", "python")
    cloud_init = os.path.join(directory, "cloud-init", "VERSION")
    if not (os.path.exists(python) and os.path.exists(cloud_init)):
        raise NotInstalled(f"the real metadata clients are not installed in {directory}: run {INSTALL_CLIENTS} (make test does)")
    import shutil

    missing = sorted({DRIVE_TOOLS[tool] for tool in tools if shutil.which(tool) is None})
    if missing:
        raise NotInstalled(f"the config drive readers need {', '.join(tools)}: apt-get install {' '.join(missing)} "
                             "(as root, bash .ci/install-test-deps does)")
    return python


TOKEN_CLIENTS = {
    "ec2-metadata": "amazon-ec2-utils/VERSION", "ec2metadata": "cloud-guest-utils/VERSION",
    "aws-sdk-js": "node/.installed", "aws-sdk-js-v2": "node/.installed",
}
"""The token-first clients install.sh adds, and the stamp each leaves in the clients' directory."""


def require_clients(*clients: str) -> None:
    """
    Fail in one line naming the install command when one of C{clients} (probe.py's names) is not
    installed; the clients not in L{TOKEN_CLIENTS} are checked by L{client_python}.

    @raise NotInstalled: naming the command.
    """
    import shutil

    client_python()
    directory = clients_dir()
    missing = sorted(c for c in clients if c in TOKEN_CLIENTS and not os.path.exists(os.path.join(directory, TOKEN_CLIENTS[c])))
    if missing:
        raise NotInstalled(f"the metadata clients {', '.join(missing)} are not installed in {directory}: run {INSTALL_CLIENTS}")
    if any(c.startswith("aws-sdk-js") for c in clients) and shutil.which("node") is None:
        raise NotInstalled("aws-sdk-js needs node: apt-get install nodejs npm (as root, bash .ci/install-test-deps does)")


def run_probe(
    client: str, target: str, *extra: str, tools: tuple[str, ...] = (), namespace: str | None = None,
) -> dict[str, Any]:
    """
    Run a real metadata client (tests/integration/clients/probe.py) on a base URL or a drive
    image, in the clients' virtualenv, and return what it read. Its temporary files go into a
    directory of their own, which must be empty once the probe is done.

    @param namespace: the network namespace to run it in (a guest's), or None.
    @raise NotInstalled: the clients are not installed.
    @raise AssertionError: the client failed (its one line), or left temporary files behind.
    """
    import json
    import tempfile

    python = client_python(*tools)
    scratch = tempfile.mkdtemp(prefix="mdsvc-probe-")
    try:
        prefix = ["ip", "netns", "exec", namespace] if namespace else []
        result = subprocess.run([*prefix, python, PROBE, client, target, *extra], capture_output=True, text=True, timeout=120,
                                env=dict(os.environ, TMPDIR=scratch))
        if result.returncode != 0:
            raise AssertionError(f"{client} probe failed ({result.returncode}): {result.stderr.strip()}")
        left = os.listdir(scratch)
        if left:
            raise AssertionError(f"{client} probe left temporary files behind: {sorted(left)}")
        return dict(json.loads(result.stdout))
    finally:
        remove_tree(scratch)


def remove_tree(path: str) -> None:
    """Remove a directory tree, read-only directories in it too (as a drive's files are extracted)."""
    import shutil

    for directory, _, _ in os.walk(path):
        try:
            os.chmod(directory, 0o700)
        except OSError:
            pass
    shutil.rmtree(path, ignore_errors=True)
TWISTD = [sys.executable, "-c", "import sys; from twisted.scripts.twistd import run; sys.argv[0] = 'twistd'; run()"]


def write_config(directory: str, body: str) -> str:
    """A config file in C{directory} with C{state_path} there and the API on a free loopback port."""
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, "mdsvc.conf")
    with open(path, "w") as f:
        f.write(f"[DEFAULT]\nstate_path = {directory}/state\n\n[mdsvc]\napi_endpoint = tcp:0:interface=127.0.0.1\n\n{body}")
    return path


class Twistd:
    """A ``twistd -n`` child process whose listening port is read from its log."""

    def __init__(
        self, args: list[str], log_path: str, env: dict[str, str] | None = None, cwd: str = ROOT,
        ready: Any = None, nofile: int | None = None, prefix: list[str] | None = None,
    ) -> None:
        """
        @param ready: None to wait for a TCP listener (and learn its port), or a callable
            C{ready(self) -> bool} polled until true.
        @param nofile: the child's descriptor limit (soft and hard), as systemd's C{LimitNOFILE=}
            sets it; None: this process's.
        @param prefix: a command twistd runs under, such as C{ip netns exec NS}.
        """
        self.log_path = log_path
        self._log = open(log_path, "ab")
        self.process = subprocess.Popen(
            (prefix or []) + TWISTD + ["-n", "--pidfile=", "--logfile=-"] + args,
            stdout=self._log, stderr=subprocess.STDOUT, cwd=cwd, env=dict(os.environ, **(env or {})),
            preexec_fn=None if nofile is None else lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile)),
        )
        try:
            if ready is None:
                self.port = self._wait_for_port()
            else:
                self.port = 0
                self.wait_until(lambda: ready(self), f"{args} to be ready")
        except BaseException:
            self.stop()  # never left running by a test that gave up on it
            raise

    def wait_until(self, condition: Any, what: str, timeout: float = 30) -> None:
        """Poll C{condition()} until true; fail naming C{what} (with the log) if it never is."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if condition():
                return
            if self.process.poll() is not None:
                raise AssertionError(f"twistd exited with {self.process.returncode} waiting for {what}:\n{self.log()[-4000:]}")
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what}:\n{self.log()[-4000:]}")

    def log(self) -> str:
        with open(self.log_path, encoding="utf-8", errors="replace") as f:
            return f.read()

    def _wait_for_port(self, timeout: float = 30) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = re.search(r"metadata-api starting on (\d+)", self.log())
            if found:
                return int(found.group(1))
            if self.process.poll() is not None:
                raise AssertionError(f"twistd exited with {self.process.returncode}:\n{self.log()}")
            time.sleep(0.05)
        self.stop()
        raise AssertionError(f"twistd did not listen within {timeout}s:\n{self.log()}")

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def stop(self) -> None:
        """Stop the process (L{stop_process}) and close its log."""
        stop_process(self.process)
        self._log.close()


def stop_process(process: subprocess.Popen[Any]) -> None:
    """SIGTERM (after SIGCONT, should it be stopped), then SIGKILL after 10 s."""
    if process.poll() is None:
        process.send_signal(signal.SIGCONT)
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def free_port() -> int:
    """A loopback TCP port nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_kib(pid: int) -> int:
    """VmRSS of a process in KiB (0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def manage(config: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run mdsvc-manage as a real process."""
    result = subprocess.run(
        [sys.executable, "-m", "mdsvc.manage", "--config", config, *args], capture_output=True, text=True, timeout=60, cwd=ROOT,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"mdsvc-manage {' '.join(args)} failed: {result.stderr}")
    return result


def fetch(url: str, method: str = "GET", headers: dict[str, str] | None = None, data: bytes | None = None) -> tuple[int, dict[str, str], bytes]:
    """One HTTP request; errors are returned, not raised."""
    req = urllib.request.Request(url, method=method, headers=headers or {}, data=data)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, {k.lower(): v for k, v in r.headers.items()}, r.read()
    except urllib.error.HTTPError as e:
        return e.code, {k.lower(): v for k, v in e.headers.items()}, e.read()


def probe(client: str, base: str, *extra: str, namespace: str | None = None) -> dict[str, Any]:
    """Run a real metadata client on a metadata base URL (L{run_probe}) and return what it read."""
    return run_probe(client, base, "--timeout", "5", "--deadline", "90", *extra, namespace=namespace)
