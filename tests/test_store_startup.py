"""
The embedded store at startup: private file modes (it holds guests' passwords and user data)
and a database that is sound, checked wherever the service or mdsvc-manage opens it.
"""

from __future__ import annotations

import io
import json
import os
import sqlite3
import stat
import subprocess
import sys
from typing import Any

from twisted.logger import capturedLogs
from twisted.python.usage import UsageError
from twisted.trial.unittest import SynchronousTestCase

from mdsvc.manage import CommandError, run
from mdsvc.store.sql import SQLDocuments
from mdsvc.tap import Options

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORRUPT_END = "; restore it from a backup or re-import the documents"


def mode(path: str) -> int:
    """The permission bits of C{path}."""
    return stat.S_IMODE(os.stat(path).st_mode)


def instanceDocs(count: int) -> list[dict[str, Any]]:
    """Documents big enough to fill several pages of the store."""
    return [{"uuid": f"00000000-0000-4000-8000-{i:012x}", "metadata": {"k": "x" * 200}, "nics": [{"fixed_ips": [{"ip": f"10.0.{i // 250}.{i % 250 + 1}"}]}]}
            for i in range(count)]


class StartupTestsMixin:
    """A config file whose state_path (and store) live in the test's directory."""

    def setUp(self) -> None:
        self.dir = os.path.abspath(self.mktemp())  # type: ignore[attr-defined]
        os.makedirs(self.dir)
        self.state = os.path.join(self.dir, "state")

    def config(self, extra: str = "") -> str:
        path = os.path.join(self.dir, "mdsvc.conf")
        with open(path, "w") as f:
            f.write(f"[DEFAULT]\nstate_path = {self.state}\n{extra}")
        return path

    def start(self, role: str = "api", extra: str = "") -> Options:
        """Parse the twistd options of C{role}: what runs the startup checks."""
        options = Options()
        options.parseOptions(["--role", role, "--config", self.config(extra)])
        return options

    def startFails(self, role: str = "api", extra: str = "") -> str:
        """Startup must stop with a usage error of one line; that line."""
        e = self.assertRaises(UsageError, self.start, role, extra)  # type: ignore[attr-defined]
        message = str(e)
        self.assertEqual(message.splitlines(), [message])  # type: ignore[attr-defined]
        return message

    def umask(self, value: int) -> None:
        """Run the test under C{value} as umask (restored afterwards)."""
        old = os.umask(value)
        self.addCleanup(os.umask, old)  # type: ignore[attr-defined]


class CreationModeTests(StartupTestsMixin, SynchronousTestCase):
    """What mdsvc creates is private, whatever the umask."""

    def test_newStoreFiles(self) -> None:
        """
        A new store file is 0600, and so are the -wal and -shm files SQLite makes next to it
        later (it gives them the database's mode), even under umask 0.
        """
        self.umask(0)
        path = os.path.join(self.dir, "own", "mdsvc.sqlite")
        docs = SQLDocuments("sqlite:" + path)
        self.addCleanup(docs.close)
        docs.import_instances(instanceDocs(3))
        self.assertTrue(os.path.exists(path + "-wal") and os.path.exists(path + "-shm"))
        for name in (path, path + "-wal", path + "-shm"):
            self.assertEqual(mode(name), 0o600, name)
        self.assertEqual(mode(os.path.dirname(path)), 0o700)

    def test_startupCreatesPrivateDirectory(self) -> None:
        """A store directory of its own that startup creates is 0700, its file 0600 (umask 0)."""
        self.umask(0)
        path = os.path.join(self.dir, "private", "db", "mdsvc.sqlite")
        self.start(extra=f"[mdsvc]\nstore = sqlite:{path}\n")
        self.assertEqual(mode(os.path.dirname(path)), 0o700)
        self.assertEqual(mode(path), 0o600)

    def test_startupCreatesSharedStatePath(self) -> None:
        """
        The default store lives in state_path with the agent's socket: created by startup it is
        0711, so proxies still reach the socket but nobody else lists or reads the store.
        """
        self.umask(0)
        self.start("all-in-one", "[proxy]\nnamespaces = none\n")
        self.assertEqual(mode(self.state), 0o711)
        self.assertEqual(mode(os.path.join(self.state, "mdsvc.sqlite")), 0o600)


class ExistingModeTests(StartupTestsMixin, SynchronousTestCase):
    """A store left readable by others (by an older mdsvc) is tightened at startup, with a warning."""

    def oldStore(self, directory: str, dir_mode: int = 0o755) -> str:
        """A store as an older mdsvc left it: 0644 files (with -wal and -shm) in a 0755 directory."""
        path = os.path.join(directory, "mdsvc.sqlite")
        docs = SQLDocuments("sqlite:" + path)
        docs.import_instances(instanceDocs(2))
        held = sqlite3.connect(path)  # keeps -wal and -shm in place
        self.addCleanup(held.close)
        held.execute("SELECT COUNT(*) FROM instances").fetchone()
        docs.close()
        for name in (path, path + "-wal", path + "-shm"):
            os.chmod(name, 0o644)
        os.chmod(directory, dir_mode)
        return path

    def warnings(self, events: list[dict[str, Any]]) -> dict[str, str]:
        """{path: old mode} of the warnings about tightened modes."""
        return {e["path"]: e["mode"] for e in events if "mode" in e and "path" in e}

    def test_filesTightened(self) -> None:
        """The file, -wal and -shm become 0600; each change is logged with the path and old mode."""
        path = self.oldStore(self.state)
        with capturedLogs() as events:
            self.start()
        for name in (path, path + "-wal", path + "-shm"):
            self.assertEqual(mode(name), 0o600, name)
        found = self.warnings(events)
        self.assertEqual({k: v for k, v in found.items() if k.startswith(path)},
                         {path: "0644", path + "-wal": "0644", path + "-shm": "0644"})

    def test_ownDirectoryTightened(self) -> None:
        """A directory holding nothing but the store (not state_path) is tightened to 0700, logged."""
        own = os.path.join(self.dir, "store")
        os.makedirs(own)
        path = self.oldStore(own)
        with capturedLogs() as events:
            self.start(extra=f"[mdsvc]\nstore = sqlite:{path}\n")
        self.assertEqual(mode(own), 0o700)
        self.assertEqual(self.warnings(events).get(own), "0755")

    def test_sharedStatePathLeftAlone(self) -> None:
        """state_path (where the agent's socket lives) keeps its mode; the files are still tightened."""
        path = self.oldStore(self.state)
        self.start("all-in-one", "[proxy]\nnamespaces = none\n")
        self.assertEqual(mode(self.state), 0o755)
        self.assertEqual(mode(path), 0o600)

    def test_socketDirectoryLeftAlone(self) -> None:
        """A store directory that also holds the agent's socket keeps its mode."""
        own = os.path.join(self.dir, "run")
        os.makedirs(own)
        path = self.oldStore(own)
        self.start("agent", f"metadata_proxy_socket = {own}/metadata_proxy\n[mdsvc]\nstore = sqlite:{path}\n")
        self.assertEqual(mode(own), 0o755)
        self.assertEqual(mode(path), 0o600)

    def test_directoryWithOtherFilesLeftAlone(self) -> None:
        """A directory holding other files too (/etc, /tmp, a shared volume) is never changed."""
        other = os.path.join(self.dir, "etc")
        os.makedirs(other)
        with open(os.path.join(other, "unrelated.conf"), "w") as f:
            f.write("x")
        path = self.oldStore(other)
        self.start(extra=f"[mdsvc]\nstore = sqlite:{path}\n")
        self.assertEqual(mode(other), 0o755)
        self.assertEqual(mode(path), 0o600)

    def test_notOwner(self) -> None:
        """When a mode cannot be changed (another user owns the file), startup stops with one line."""
        path = self.oldStore(self.state)
        config = self.config()

        def refuse(name: str, *args: Any, **kwargs: Any) -> None:
            raise PermissionError(1, "Operation not permitted", name)

        self.patch(os, "chmod", refuse)
        self.assertEqual(
            self.startFails(),
            f"mdsvc: {config}: [mdsvc] store sqlite:{path}: mode 0644 lets other users read guest passwords and user data;"
            f" chmod 600 {path}",
        )

    def test_manageChecksToo(self) -> None:
        """mdsvc-manage tightens the modes too, and warns on standard error."""
        path = self.oldStore(self.state)
        stderr = io.StringIO()
        self.patch(sys, "stderr", stderr)
        self.assertEqual(run(["--config", self.config(), "instance", "list"], out=io.StringIO()), 0)
        self.assertEqual(mode(path), 0o600)
        self.assertIn(path, stderr.getvalue())
        self.assertIn("0644", stderr.getvalue())

    def test_manageNotOwner(self) -> None:
        """mdsvc-manage stops with the same one line when it cannot fix a mode."""
        path = self.oldStore(self.state)
        config = self.config()

        def refuse(name: str, *args: Any, **kwargs: Any) -> None:
            raise PermissionError(1, "Operation not permitted", name)

        self.patch(os, "chmod", refuse)
        e = self.assertRaises(CommandError, run, ["--config", config, "instance", "list"], out=io.StringIO())
        self.assertEqual(
            str(e),
            f"{config}: [mdsvc] store sqlite:{path}: mode 0644 lets other users read guest passwords and user data; chmod 600 {path}",
        )


class CorruptionTests(StartupTestsMixin, SynchronousTestCase):
    """A corrupt store is found at startup (PRAGMA quick_check) and named in one line."""

    def store(self) -> str:
        """A real store of a few hundred instances, checkpointed into its file."""
        path = os.path.join(self.state, "mdsvc.sqlite")
        docs = SQLDocuments("sqlite:" + path)
        docs.import_instances(instanceDocs(300))
        docs.close()  # the last connection checkpoints the WAL into the file
        self.assertFalse(os.path.exists(path + "-wal"))
        return path

    def garble(self, path: str, pages: list[int]) -> None:
        """Write garbage over C{pages} (4096 bytes each), after the file header."""
        with open(path, "r+b") as f:
            for page in pages:
                f.seek(4096 * page + 100)
                f.write(bytes((i * 37 + page) % 256 for i in range(3000)))

    def assertCorrupt(self, message: str, config: str, path: str, prefix: str = "mdsvc: ") -> None:
        start = f"{prefix}{config}: [mdsvc] store sqlite:{path}: the database is corrupt ("
        self.assertTrue(message.startswith(start), message)
        self.assertTrue(message.endswith(")" + CORRUPT_END), message)
        self.assertNotIn("***", message)

    def test_corruptPages(self) -> None:
        """Garbage in pages of a store that otherwise opens stops startup with one line."""
        path = self.store()
        self.garble(path, [5, 6, 7])
        message = self.startFails()
        self.assertCorrupt(message, self.config(), path)

    def test_corruptFirstPage(self) -> None:
        """Garbage in the first page after the header (the schema) is reported the same way."""
        path = self.store()
        self.garble(path, [0])
        self.assertCorrupt(self.startFails(), self.config(), path)

    def test_notADatabase(self) -> None:
        """A file that is not a database at all."""
        os.makedirs(self.state)
        path = os.path.join(self.state, "mdsvc.sqlite")
        with open(path, "w") as f:
            f.write("these are not the pages you are looking for\n" * 200)
        os.chmod(path, 0o600)
        message = self.startFails()
        self.assertEqual(message, f"mdsvc: {self.config()}: [mdsvc] store sqlite:{path}: the database is corrupt (file is not a database)"
                                  + CORRUPT_END)

    def test_soundStoreStarts(self) -> None:
        """A sound store starts, with its documents."""
        path = self.store()
        self.start()
        self.assertEqual(len(SQLDocuments("sqlite:" + path).list_instances()), 300)

    def test_proxyRoleDoesNotOpenStore(self) -> None:
        """The proxy role does not use the store: a corrupt one does not stop it, and none is created."""
        path = self.store()
        self.garble(path, [5])
        self.start("proxy", "[proxy]\nnamespaces = none\n")
        os.remove(path)
        self.start("proxy", "[proxy]\nnamespaces = none\n")
        self.assertFalse(os.path.exists(path))

    def test_manageProcess(self) -> None:
        """mdsvc-manage, as its own process, prints the one line and exits 1."""
        path = self.store()
        self.garble(path, [5, 6, 7])
        config = self.config()
        script = os.path.join(os.path.dirname(sys.executable), "mdsvc-manage")
        command = [script] if os.path.exists(script) else [sys.executable, "-m", "mdsvc.manage"]
        env = {k: v for k, v in os.environ.items() if k != "MDSVC_CONFIG"}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [REPO, env.get("PYTHONPATH")]))
        doc = os.path.join(self.dir, "doc.json")
        with open(doc, "w") as f:
            json.dump({"uuid": "0e0e0e0e-0000-4000-8000-000000000001"}, f)
        result = subprocess.run([*command, "--config", config, "instance", "import", doc],
                                capture_output=True, text=True, env=env, cwd=REPO, timeout=60)
        self.assertEqual((result.returncode, result.stdout), (1, ""))
        self.assertEqual(result.stderr.count("\n"), 1, result.stderr)
        self.assertCorrupt(result.stderr.rstrip("\n"), config, path, prefix="mdsvc-manage: ")

    def test_twistdProcess(self) -> None:
        """
        twistd -n mdsvc stops at once with a non-zero status, printing the problem's line after
        one saying mdsvc did not start (not the usage text).
        """
        path = self.store()
        self.garble(path, [5, 6, 7])
        config = self.config("[mdsvc]\napi_endpoint = tcp:0:interface=127.0.0.1\n")
        env = {k: v for k, v in os.environ.items() if k != "MDSVC_CONFIG"}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [REPO, env.get("PYTHONPATH")]))
        twistd = [sys.executable, "-c", "import sys; from twisted.scripts.twistd import run; sys.argv[0] = 'twistd'; run()"]
        result = subprocess.run([*twistd, "-n", "--pidfile=", "mdsvc", "--role", "api", "--config", config],
                                capture_output=True, text=True, env=env, cwd=REPO, timeout=60)
        self.assertNotEqual(result.returncode, 0)
        self.assertEqual(result.stderr, "")
        self.assertNotIn("--config-file", result.stdout)  # not the usage text
        lines = result.stdout.splitlines()
        self.assertEqual(lines[-2], "mdsvc did not start.", result.stdout)
        self.assertCorrupt(lines[-1], config, path, prefix="twistd -n: mdsvc: ")
