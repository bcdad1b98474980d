"""Tests for L{mdsvc.manage}: the mdsvc-manage command line."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import textwrap

from twisted.trial.unittest import SynchronousTestCase

from mdsvc.api.identify import sign
from mdsvc.config import load_config
from mdsvc.manage import CommandError, main, read_documents, run
from mdsvc.store.sql import SQLDocuments
from mdsvc.store.startup import prepare_configured_store
from tests.vendor_plugins import install_test_plugins

UUID = "b65cee2f-8c69-4aeb-be2f-f79742548fc2"
UUID2 = "0f1e2d3c-0000-4000-8000-000000000002"
IMAGE = "6a1b2c3d-0000-4000-8000-00000000cafe"
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

YAML_LIST = f"""\
# two instances
- uuid: {UUID}
  name: web-1
  project_id: proj
  image_id: {IMAGE}
  nics:
    - mac: "fa:16:3e:00:00:01"
      network: {{id: net-1}}
      fixed_ips:
        - ip: 10.0.0.5
- uuid: {UUID2}
  name: web-2
  user_data: |
    SGVsbG8sIHdvcmxkIQ==
"""


class ManageTestsMixin:
    """A configuration file whose store lives in the test's temporary directory."""

    def setUp(self) -> None:
        self.dir = os.path.abspath(self.mktemp())  # type: ignore[attr-defined]
        os.makedirs(self.dir)
        self.config = self.write("mdsvc.conf", f"[DEFAULT]\nstate_path = {self.dir}/state\n[neutron]\nmetadata_proxy_shared_secret = s3cr3t\n")
        self.store = SQLDocuments("sqlite:" + os.path.join(self.dir, "state", "mdsvc.sqlite"))
        prepare_configured_store(load_config(self.config))  # an empty store, as the service leaves it

    def write(self, name: str, text: str) -> str:
        path = os.path.join(self.dir, name)
        with open(path, "w", encoding="utf-8") as f:
            f.write(textwrap.dedent(text))
        return path

    def manage(self, *argv: str) -> tuple[int, str]:
        """Run mdsvc-manage with the test's config; (exit status, standard output)."""
        out = io.StringIO()
        status = run(["--config", self.config, *argv], out=out)
        return status, out.getvalue()

    def fails(self, *argv: str) -> str:
        """Run a command that must fail; its one-line message."""
        e = self.assertRaises(CommandError, self.manage, *argv)  # type: ignore[attr-defined]
        message = str(e)
        self.assertEqual(message.splitlines(), [message])  # type: ignore[attr-defined]
        return message


class InstanceCommandTests(ManageTestsMixin, SynchronousTestCase):
    """mdsvc-manage instance import|list|show|delete."""

    def test_importJsonObject(self) -> None:
        """A JSON file with one object imports one instance."""
        path = self.write("one.json", json.dumps({"uuid": UUID, "name": "web-1", "project_id": "proj"}))
        self.assertEqual(self.manage("instance", "import", path), (0, f"imported instance {UUID}\n"))
        row = self.store.get(UUID)
        assert row is not None
        self.assertEqual(row.document["name"], "web-1")

    def test_importJsonList(self) -> None:
        """A JSON file with a list imports each instance."""
        path = self.write("two.json", json.dumps([{"uuid": UUID}, {"uuid": UUID2}]))
        self.assertEqual(self.manage("instance", "import", path), (0, f"imported instance {UUID}\nimported instance {UUID2}\n"))

    def test_importYamlObject(self) -> None:
        """A YAML file with one mapping imports one instance."""
        path = self.write("one.yaml", f"uuid: {UUID}\nname: from yaml\nmetadata:\n  role: web\n")
        self.assertEqual(self.manage("instance", "import", path), (0, f"imported instance {UUID}\n"))
        instance = self.store.get(UUID).instance()  # type: ignore[union-attr]
        self.assertEqual((instance.name, instance.hostname, instance.metadata), ("from yaml", "from-yaml", {"role": "web"}))

    def test_importYamlList(self) -> None:
        """A YAML list imports every instance; a YAML block of base64 user data decodes."""
        path = self.write("two.yaml", YAML_LIST)
        self.assertEqual(self.manage("instance", "import", path), (0, f"imported instance {UUID}\nimported instance {UUID2}\n"))
        self.assertEqual(self.store.uuids_by_address("10.0.0.5"), [UUID])
        self.assertEqual(self.store.get(UUID2).instance().user_data, b"Hello, world!")  # type: ignore[union-attr]

    def test_importSeveralFiles(self) -> None:
        """Several files are imported together."""
        a = self.write("a.json", json.dumps({"uuid": UUID}))
        b = self.write("b.yaml", f"uuid: {UUID2}\n")
        self.assertEqual(self.manage("instance", "import", a, b), (0, f"imported instance {UUID}\nimported instance {UUID2}\n"))

    def test_list(self) -> None:
        """list prints uuid, name, project and fixed IPs, tab-separated, sorted by uuid."""
        self.manage("instance", "import", self.write("two.yaml", YAML_LIST))
        self.assertEqual(self.manage("instance", "list"), (0, f"{UUID2}\tweb-2\t\t\n{UUID}\tweb-1\tproj\t10.0.0.5\n"))

    def test_listEmpty(self) -> None:
        """list of an empty store prints nothing."""
        self.assertEqual(self.manage("instance", "list"), (0, ""))

    def test_show(self) -> None:
        """show prints the stored document as JSON, with the EC2 ids and reservation id assigned."""
        self.manage("instance", "import", self.write("two.yaml", YAML_LIST))
        status, out = self.manage("instance", "show", UUID)
        self.assertEqual(status, 0)
        shown = json.loads(out)
        self.assertEqual((shown["uuid"], shown["name"], shown["password"]), (UUID, "web-1", None))
        self.assertIsInstance(shown["ec2_ids"]["instance"], int)
        self.assertEqual(list(shown["ec2_ids"]["images"]), [IMAGE])
        self.assertIsInstance(shown["ec2_ids"]["images"][IMAGE], int)
        self.assertRegex(shown["reservation_id"], r"^r-[0-9a-z]{8}$")
        self.assertEqual(shown, dict(self.store.get(UUID).document, password=None))  # type: ignore[union-attr]

    def test_showPassword(self) -> None:
        """show includes the password the guest stored."""
        self.manage("instance", "import", self.write("one.json", json.dumps({"uuid": UUID})))
        self.store.set_password(UUID, "guest")
        self.assertEqual(json.loads(self.manage("instance", "show", UUID)[1])["password"], "guest")

    def test_showUnknown(self) -> None:
        """show of an unknown uuid fails with one line."""
        self.assertEqual(self.fails("instance", "show", UUID), f"no instance {UUID}")

    def test_delete(self) -> None:
        """delete removes the instance."""
        self.manage("instance", "import", self.write("two.yaml", YAML_LIST))
        self.assertEqual(self.manage("instance", "delete", UUID), (0, f"deleted instance {UUID}\n"))
        self.assertIsNone(self.store.get(UUID))
        self.assertEqual(self.store.uuids_by_address("10.0.0.5"), [])
        self.assertEqual(self.manage("instance", "list"), (0, f"{UUID2}\tweb-2\t\t\n"))

    def test_deleteUnknown(self) -> None:
        """delete of an unknown uuid is a CommandError."""
        self.assertEqual(self.fails("instance", "delete", "nope"), "no instance nope")


class PasswordImportTests(ManageTestsMixin, SynchronousTestCase):
    """Re-importing never destroys the password a guest stored, unless asked to."""

    def setUp(self) -> None:
        super().setUp()
        self.manage("instance", "import", self.write("one.json", json.dumps({"uuid": UUID, "name": "web-1"})))
        self.assertIs(self.store.set_password(UUID, "guest-secret"), True)  # as the guest's POST does

    def password(self) -> str | None:
        row = self.store.get(UUID)
        assert row is not None
        return row.password

    def test_reimportNull(self) -> None:
        """Re-importing the document with "password": null keeps the guest's password."""
        self.manage("instance", "import", self.write("null.json", json.dumps({"uuid": UUID, "name": "web-1", "password": None})))
        self.assertEqual(self.password(), "guest-secret")

    def test_reimportWithout(self) -> None:
        """Re-importing the document without password keeps the guest's password."""
        self.manage("instance", "import", self.write("one.json", json.dumps({"uuid": UUID, "name": "renamed"})))
        self.assertEqual(self.password(), "guest-secret")

    def test_reimportYamlNull(self) -> None:
        """An empty YAML value (C{password:}) is null too, and keeps the guest's password."""
        self.manage("instance", "import", self.write("null.yaml", f"uuid: {UUID}\npassword:\n"))
        self.assertEqual(self.password(), "guest-secret")

    def test_reimportString(self) -> None:
        """A document's password does not replace the guest's."""
        self.manage("instance", "import", self.write("pw.json", json.dumps({"uuid": UUID, "password": "from-nova"})))
        self.assertEqual(self.password(), "guest-secret")

    def test_resetPassword(self) -> None:
        """--reset-password clears the stored password (the guest may post a new one)."""
        status, out = self.manage("instance", "import", "--reset-password", self.write("one.json", json.dumps({"uuid": UUID})))
        self.assertEqual((status, out), (0, f"imported instance {UUID}\n"))
        self.assertIsNone(self.password())
        self.assertIs(self.store.set_password(UUID, "new"), True)

    def test_resetPasswordToDocument(self) -> None:
        """--reset-password with a password in the document stores the document's."""
        self.manage("instance", "import", "--reset-password", self.write("pw.json", json.dumps({"uuid": UUID, "password": "from-nova"})))
        self.assertEqual(self.password(), "from-nova")

    def test_help(self) -> None:
        """instance import --help says what happens to stored passwords."""
        stdout = io.StringIO()
        self.patch(sys, "stdout", stdout)
        e = self.assertRaises(SystemExit, self.manage, "instance", "import", "--help")
        self.assertEqual(e.code, 0)
        text = " ".join(stdout.getvalue().split())
        self.assertIn("--reset-password", text)
        self.assertIn("A password the guest stored (through the password endpoint) is kept", text)

    def test_helpNamesTheFormat(self) -> None:
        """instance import --help and router import --help say where the document format is described."""
        for command in ("instance", "router"):
            stdout = io.StringIO()
            self.patch(sys, "stdout", stdout)
            self.assertRaises(SystemExit, self.manage, command, "import", "--help")
            text = stdout.getvalue()
            self.assertIn("docs/instance-documents.md", text)
            self.assertIn("mdsvc/data/demo-instance.json", text)  # not cut at its hyphen
            self.assertIn("python -m mdsvc.docpage", " ".join(text.split()))
        self.assertTrue(os.path.exists(os.path.join(REPO, "docs", "instance-documents.md")))


class ImportErrorTests(ManageTestsMixin, SynchronousTestCase):
    """Bad input: one line naming file and field (or line), and nothing imported."""

    def assertNothingImported(self) -> None:
        self.assertEqual(self.store.list_instances(), [])

    def test_badDocument(self) -> None:
        """A bad second document names the file and its field; the first is not imported."""
        path = self.write("bad.json", json.dumps([{"uuid": UUID}, {"uuid": UUID2, "nics": [{"mac": "zz"}]}]))
        self.assertEqual(self.fails("instance", "import", path), f"{path}: [1].nics[0].mac: 'zz' is not valid")
        self.assertNothingImported()

    def test_badSecondFile(self) -> None:
        """A bad document in the second file names that file; the first file is not imported."""
        good = self.write("good.json", json.dumps({"uuid": UUID}))
        bad = self.write("bad.yaml", f"uuid: {UUID2}\nbogus: 1\n")
        self.assertEqual(self.fails("instance", "import", good, bad), f"{bad}: bogus: unknown field")
        self.assertNothingImported()

    def test_duplicateAcrossFiles(self) -> None:
        """The same uuid in two files is named by the second file and position."""
        a = self.write("a.json", json.dumps({"uuid": UUID}))
        b = self.write("b.json", json.dumps([{"uuid": UUID2}, {"uuid": UUID}]))
        self.assertEqual(self.fails("instance", "import", a, b), f"{b}: [1].uuid: {UUID} appears twice in this import (also {a})")
        self.assertNothingImported()

    def test_jsonSyntax(self) -> None:
        """A JSON syntax error names file and line."""
        path = self.write("bad.json", '{\n  "uuid": "a",\n  "name": oops\n}\n')
        self.assertEqual(self.fails("instance", "import", path), f"{path}:3: invalid JSON: Expecting value")
        self.assertNothingImported()

    def test_yamlSyntax(self) -> None:
        """A YAML syntax error names file and line, in one line."""
        path = self.write("bad.yaml", "uuid: a\nname: b\n  nested: c\n")
        self.assertEqual(self.fails("instance", "import", path), f"{path}:3: invalid YAML: mapping values are not allowed here")
        self.assertNothingImported()

    def test_yamlBadCharacter(self) -> None:
        """A YAML reader error (a control character) is one line too."""
        path = self.write("ctl.yaml", "uuid: a\x01\n")
        self.assertEqual(
            self.fails("instance", "import", path),
            f"{path}: invalid YAML: unacceptable character #x0001: special characters are not allowed",
        )

    def test_emptyFile(self) -> None:
        """A file with no document (only comments) is an error, not a silent success."""
        path = self.write("empty.yaml", "# nothing\n")
        self.assertEqual(self.fails("instance", "import", path), f"{path}: no instance documents")

    def test_emptyList(self) -> None:
        """An empty list imports nothing: an error naming the file, for instances and routers."""
        for name, text in (("empty.json", "[]"), ("empty.yaml", "[]\n"), ("null.json", "null"), ("blank.yaml", "")):
            path = self.write(name, text)
            self.assertEqual(self.fails("instance", "import", path), f"{path}: no instance documents")
            self.assertEqual(self.fails("router", "import", path), f"{path}: no router documents")
        self.assertNothingImported()

    def test_emptyListAmongOthers(self) -> None:
        """An empty file among good ones fails the whole import, naming the empty one."""
        good = self.write("good.json", json.dumps({"uuid": UUID}))
        empty = self.write("empty.json", "[]")
        self.assertEqual(self.fails("instance", "import", good, empty), f"{empty}: no instance documents")
        self.assertNothingImported()

    def test_emptyListExitStatus(self) -> None:
        """mdsvc-manage exits non-zero with one line for an empty list."""
        path = self.write("empty.json", "[]")
        stderr = io.StringIO()
        self.patch(sys, "stderr", stderr)
        e = self.assertRaises(SystemExit, main, ["--config", self.config, "instance", "import", path])
        self.assertEqual((e.code, stderr.getvalue()), (1, f"mdsvc-manage: {path}: no instance documents\n"))

    def test_userDataTooLong(self) -> None:
        """user_data above Nova's 65,535 base64 characters is an import error naming file, field and limit."""
        import base64

        path = self.write("big.json", json.dumps({"uuid": UUID, "user_data": base64.b64encode(b"x" * 60000).decode()}))
        message = self.fails("instance", "import", path)
        self.assertTrue(message.startswith(f"{path}: user_data: "), message)
        self.assertIn("65535", message)
        self.assertNothingImported()

    def test_hostnameWithLineFeed(self) -> None:
        """A hostname with an embedded line feed (YAML makes one easily) is an import error."""
        path = self.write("lf.yaml", f'uuid: {UUID}\nhostname: "web-1\\nevil"\n')
        message = self.fails("instance", "import", path)
        self.assertTrue(message.startswith(f"{path}: hostname: 'web-1\\nevil' is not a valid hostname"), message)
        self.assertNothingImported()

    def test_missingFile(self) -> None:
        """A missing file is named."""
        path = os.path.join(self.dir, "missing.json")
        self.assertEqual(self.fails("instance", "import", path), f"{path}: cannot read: No such file or directory")

    def test_notAnObject(self) -> None:
        """A list of strings is not a list of documents."""
        path = self.write("strings.json", '["a", "b"]')
        self.assertEqual(self.fails("instance", "import", path), f"{path}: [0]: expected an object, got a string")

    def test_readDocumentsStdin(self) -> None:
        """C{-} reads standard input."""
        self.assertEqual(read_documents("-", io.StringIO('{"uuid": "x"}')), [{"uuid": "x"}])

    def test_badConfig(self) -> None:
        """A bad configuration file is a CommandError with the config's one-line message."""
        self.write("mdsvc.conf", "[api]\nmetadata_cache_expiration = never\n")
        self.assertEqual(
            self.fails("instance", "list"),
            f"{self.config}:2: [api] metadata_cache_expiration = 'never': allowed: an integer >= 0",
        )

    def test_otherStoreKind(self) -> None:
        """mdsvc-manage refuses a store that is not mdsvc's own documents (a vendor's, Nova's databases), naming the line."""
        for store in ("redis:localhost", "nova"):
            path = self.write("mdsvc.conf", f"[mdsvc]\nstore = {store}\n")
            self.assertEqual(self.fails("instance", "list"),
                             f"{path}:2: [mdsvc] store: mdsvc-manage handles mdsvc's own document stores (sqlite:PATH, "
                             f"postgresql://..., mysql+pymysql://...), not store = {store}")

    def test_databaseServerStoreDriverMissing(self) -> None:
        """A database server's URL whose driver is not installed: one line naming the line, the password masked."""
        path = self.write("mdsvc.conf", "[mdsvc]\nstore = mysql+nosuchdriver://mdsvc:secret@db/mdsvc\n")
        message = self.fails("instance", "list")
        self.assertTrue(message.startswith(f"{path}:2: [mdsvc] store: no driver for mysql+nosuchdriver://mdsvc:***@db/mdsvc"), message)
        self.assertNotIn("secret", message)


class RouterCommandTests(ManageTestsMixin, SynchronousTestCase):
    """mdsvc-manage router import|list|delete."""

    def test_importListDelete(self) -> None:
        """Routers are imported from YAML, listed and deleted."""
        path = self.write("routers.yaml", "- id: r1\n  project_id: p\n  networks: [n1, n2]\n- id: r0\n")
        self.assertEqual(self.manage("router", "import", path), (0, "imported router r1\nimported router r0\n"))
        self.assertEqual(self.manage("router", "list"), (0, "r0\t\t\nr1\tp\tn1,n2\n"))
        self.assertEqual(self.manage("router", "delete", "r1"), (0, "deleted router r1\n"))
        self.assertEqual(self.manage("router", "list"), (0, "r0\t\t\n"))

    def test_deleteUnknown(self) -> None:
        """delete of an unknown router fails."""
        self.assertEqual(self.fails("router", "delete", "r9"), "no router r9")

    def test_show(self) -> None:
        """show prints the stored router document as JSON; an unknown router fails with one line."""
        self.manage("router", "import", self.write("r.yaml", "id: r1\nproject_id: p\nnetworks: [n1]\n"))
        status, out = self.manage("router", "show", "r1")
        self.assertEqual((status, json.loads(out)), (0, {"id": "r1", "project_id": "p", "networks": ["n1"]}))
        self.assertEqual(self.fails("router", "show", "r9"), "no router r9")

    def test_badRouter(self) -> None:
        """A bad router document names file and field; nothing is imported."""
        path = self.write("routers.json", json.dumps([{"id": "r1"}, {"id": "r2", "networks": [1]}]))
        self.assertEqual(self.fails("router", "import", path), f"{path}: [1].networks[0]: expected a string, got an integer")
        self.assertEqual(self.store.list_routers(), [])


class OtherCommandTests(ManageTestsMixin, SynchronousTestCase):
    """sign, check-config and the configuration options."""

    def test_sign(self) -> None:
        """sign prints the HMAC-SHA256 of the instance id keyed with the shared secret."""
        self.assertEqual(
            self.manage("sign", UUID), (0, "823491c9c66985fac0685c45d8eda8869d581ff62c4661479451ee51e2946737\n")
        )

    def test_checkConfigBad(self) -> None:
        """check-config prints one line per problem and exits 1."""
        path = self.write("bad.conf", "[api]\nmetadata_cache_expiration = x\n[neutron]\nservice_metadata_proxy = 2\n")
        out = io.StringIO()
        self.assertEqual(run(["check-config", path], out=out), 1)
        self.assertEqual(
            out.getvalue(),
            f"{path}:2: [api] metadata_cache_expiration = 'x': allowed: an integer >= 0\n"
            f"{path}:4: [neutron] service_metadata_proxy = '2': allowed: true or false\n",
        )

    def test_checkConfigTokensWithoutSecret(self) -> None:
        """check-config names session tokens turned on without the shared secret they are signed with."""
        path = self.write("tokens.conf", "[api]\nimds_tokens = optional\n")
        out = io.StringIO()
        self.assertEqual(run(["check-config", path], out=out), 1)
        self.assertEqual(out.getvalue(), f"{path}:2: [api] imds_tokens = optional: session tokens are signed with a key derived "
                                         "from [neutron] metadata_proxy_shared_secret, which is not set\n")

    def test_checkConfigGood(self) -> None:
        """check-config of a good file prints nothing and exits 0."""
        out = io.StringIO()
        self.assertEqual(run(["check-config", self.config], out=out), 0)
        self.assertEqual(out.getvalue(), "")

    def test_checkConfigPluginNames(self) -> None:
        """
        check-config accepts the store and vendordata provider of installed plugins (outside the
        package, tests/plugin_root), and names an unknown one in one line with file, line and
        option, listing the names available.
        """
        install_test_plugins(self)
        good = self.write("good.conf", "[mdsvc]\nstore = teststore:/srv/instances.json\nlookup = neutron\n"
                                       "[api]\nvendordata_providers = StaticJSON, TestVendor\n")
        out = io.StringIO()
        self.assertEqual((run(["check-config", good], out=out), out.getvalue()), (0, ""))
        bad = self.write("bad.conf", "[mdsvc]\nstore = mongo://db\n[api]\nvendordata_providers = TestVendor, Other\n")
        out = io.StringIO()
        self.assertEqual(run(["check-config", good, bad], out=out), 1)
        self.assertEqual(out.getvalue(),
                         f"{bad}:2: [mdsvc] store: unknown instance store 'mongo' (available: sqlite:PATH, postgresql://..., "
                         "mysql+pymysql://..., nova, teststore:ARG)\n"
                         f"{bad}:4: [api] vendordata_providers: unknown vendordata provider 'Other' "
                         "(available: StaticJSON, DynamicJSON, TestVendor)\n")

    def test_checkConfigBuiltinStores(self) -> None:
        """
        check-config takes every built-in store (sqlite:PATH, a database server's URL whose driver
        is installed, nova) without connecting to anything; a URL without its driver is one line
        naming the file and line, the password masked.
        """
        for store in ("sqlite:db/mdsvc.sqlite", "postgresql://mdsvc:pw@127.0.0.1:1/mdsvc",
                      "mysql+pymysql://mdsvc:pw@127.0.0.1:1/mdsvc", "nova"):
            path = self.write("store.conf", f"[mdsvc]\nstore = {store}\n")
            out = io.StringIO()
            self.assertEqual((run(["check-config", path], out=out), out.getvalue()), (0, ""))
        path = self.write("store.conf", "[mdsvc]\nstore = mysql+nosuchdriver://mdsvc:secret@db/mdsvc\n")
        out = io.StringIO()
        self.assertEqual(run(["check-config", path], out=out), 1)
        self.assertTrue(out.getvalue().startswith(f"{path}:2: [mdsvc] store: no driver for mysql+nosuchdriver://mdsvc:***@db/mdsvc"),
                        out.getvalue())
        self.assertNotIn("secret", out.getvalue())

    def test_checkConfigSeveralFiles(self) -> None:
        """check-config reads several files together: a later file's value replaces a bad one, its own problems are named."""
        bad = self.write("bad.conf", "[api]\nmetadata_cache_expiration = x\n")
        fix = self.write("fix.conf", "[api]\nmetadata_cache_expiration = 3\n[neutron]\nservice_metadata_proxy = 2\n")
        out = io.StringIO()
        self.assertEqual(run(["check-config", bad, fix], out=out), 1)
        self.assertEqual(out.getvalue(), f"{fix}:4: [neutron] service_metadata_proxy = '2': allowed: true or false\n")

    def test_checkConfigOfOptions(self) -> None:
        """check-config without files checks what --config-file and --config-dir name."""
        os.makedirs(os.path.join(self.dir, "conf.d"))
        bad = self.write("conf.d/50-bad.conf", "[api]\nmetadata_cache_expiration = x\n")
        out = io.StringIO()
        self.assertEqual(run(["--config-file", self.config, "--config-dir", os.path.join(self.dir, "conf.d"), "check-config"], out=out), 1)
        self.assertEqual(out.getvalue(), f"{bad}:2: [api] metadata_cache_expiration = 'x': allowed: an integer >= 0\n")

    def test_laterConfigFileWins(self) -> None:
        """--config-file repeated (and --config): later files win, option by option."""
        other = self.write("other.conf", "[neutron]\nmetadata_proxy_shared_secret = other\n")
        out = io.StringIO()
        run(["--config-file", self.config, "--config", other, "sign", UUID], out=out)
        self.assertEqual(out.getvalue(), sign("other", UUID) + "\n")

    def test_configDir(self) -> None:
        """--config-dir reads the directory's *.conf files after the --config-file files."""
        os.makedirs(os.path.join(self.dir, "conf.d"))
        self.write("conf.d/10-secret.conf", "[neutron]\nmetadata_proxy_shared_secret = from-dir\n")
        out = io.StringIO()
        run(["--config-file", self.config, "--config-dir", os.path.join(self.dir, "conf.d"), "sign", UUID], out=out)
        self.assertEqual(out.getvalue(), sign("from-dir", UUID) + "\n")

    def test_environmentOnlyWithoutOptions(self) -> None:
        """$MDSVC_CONFIG is read when the command line names no configuration, and not otherwise."""
        other = self.write("other.conf", f"[DEFAULT]\nstate_path = {self.dir}/state\n[neutron]\nmetadata_proxy_shared_secret = env\n")
        self.patch(os, "environ", dict(os.environ, MDSVC_CONFIG=other))
        out = io.StringIO()
        run(["sign", UUID], out=out)
        self.assertEqual(out.getvalue(), sign("env", UUID) + "\n")
        self.assertEqual(self.manage("sign", UUID)[1], sign("s3cr3t", UUID) + "\n")

    def test_missingConfigDir(self) -> None:
        """A --config-dir that cannot be listed is one line naming it."""
        missing = os.path.join(self.dir, "nope")
        e = self.assertRaises(CommandError, run, ["--config-dir", missing, "instance", "list"], out=io.StringIO())
        self.assertEqual(str(e), f"{missing}: cannot read: No such file or directory")

    def test_mainExitStatus(self) -> None:
        """main prints a CommandError as one line on stderr and exits 1."""
        stderr = io.StringIO()
        self.patch(sys, "stderr", stderr)
        e = self.assertRaises(SystemExit, main, ["--config", self.config, "instance", "delete", "nope"])
        self.assertEqual((e.code, stderr.getvalue()), (1, "mdsvc-manage: no instance nope\n"))


class ConfigDriveProviderTests(ManageTestsMixin, SynchronousTestCase):
    """configdrive build with vendordata providers of plugins (outside the package), as the API has them."""

    def setUp(self) -> None:
        super().setUp()
        install_test_plugins(self)
        self.manage("instance", "import", self.write("i.yaml", YAML_LIST))

    def vendor_data2(self, image: str) -> object:
        """openstack/latest/vendor_data2.json of an ISO drive."""
        import pycdlib

        iso = pycdlib.PyCdlib()
        iso.open(image)
        self.addCleanup(iso.close)
        buf = io.BytesIO()
        iso.get_file_from_iso_fp(buf, rr_path="/openstack/latest/vendor_data2.json")
        return json.loads(buf.getvalue())

    def test_plugin_provider_on_the_drive(self) -> None:
        """The plugin provider's data is in the drive's vendor_data2.json, merged in the configured order."""
        with open(self.config, "a") as f:
            f.write("[api]\nvendordata_providers = StaticJSON, TestVendor\n[test_vendor]\ngreeting = on a drive\n")
        image = os.path.join(self.dir, "drive.iso")
        self.assertEqual(self.manage("configdrive", "build", UUID, "-o", image)[0], 0)
        self.assertEqual(self.vendor_data2(image), {"static": {}, "test_vendor": {"greeting": "on a drive", "instance": UUID, "hostname": "web-1"}})

    def test_provider_services_run_while_building(self) -> None:
        """A provider that is a service is started for the build and stopped after it, as under the API."""
        from twisted.application.service import Service
        from twisted.internet.defer import succeed
        from twisted.plugin import IPlugin
        from zope.interface import implementer

        import mdsvc.api.factory
        from mdsvc.interfaces import IVendordataProvider, IVendordataProviderFactory

        seen: list[str] = []

        @implementer(IVendordataProvider)
        class Connected(Service):
            """Answers only while running."""

            name = "Connected"

            def startService(self) -> None:
                seen.append("start")
                super().startService()

            def stopService(self) -> None:
                seen.append("stop")
                super().stopService()

            def vendordata(self, instance: object) -> object:
                seen.append("vendordata")
                return succeed({"connected": self.running})

        @implementer(IPlugin, IVendordataProviderFactory)
        class Factory:
            """Builds the provider above."""

            name = "Connected"

            def build(self, config: object, reactor: object) -> Connected:
                return Connected()

        self.patch(mdsvc.api.factory, "vendordata_plugins", lambda: [Factory()])
        with open(self.config, "a") as f:
            f.write("[api]\nvendordata_providers = Connected\n")
        image = os.path.join(self.dir, "drive.iso")
        self.manage("configdrive", "build", UUID, "-o", image)
        self.assertEqual(self.vendor_data2(image), {"connected": True})
        self.assertEqual((seen[0], seen[-1], set(seen[1:-1])), ("start", "stop", {"vendordata"}))

    def test_unknown_provider_one_line(self) -> None:
        """A provider no plugin has is one line naming the configuration and the names available."""
        with open(self.config, "a") as f:
            f.write("[api]\nvendordata_providers = Elsewhere\n")
        self.assertEqual(self.fails("configdrive", "build", UUID, "-o", os.path.join(self.dir, "d.iso")),
                         f"{self.config}: unknown vendordata provider 'Elsewhere' (available: StaticJSON, DynamicJSON, TestVendor)")
        self.assertFalse(os.path.exists(os.path.join(self.dir, "d.iso")))


class NoStoreTests(ManageTestsMixin, SynchronousTestCase):
    """Only an import creates a store: every other command on a missing one says so, in one line."""

    def setUp(self) -> None:
        super().setUp()
        self.missing = os.path.join(self.dir, "elsewhere", "mdsvc.sqlite")
        self.config = self.write("nostore.conf", f"[DEFAULT]\nstate_path = {self.dir}/elsewhere\n")

    def test_readOnlyCommands(self) -> None:
        """list, show, delete and configdrive build create nothing and name the missing store."""
        commands = [
            ("instance", "list"), ("instance", "show", UUID), ("instance", "delete", UUID),
            ("router", "list"), ("router", "show", "r1"), ("router", "delete", "r1"),
            ("configdrive", "build", UUID, "-o", os.path.join(self.dir, "drive.iso")),
        ]
        for command in commands:
            message = self.fails(*command)
            self.assertTrue(message.startswith(f"no store at {self.missing} "), (command, message))
            self.assertIn(self.config, message)
            self.assertFalse(os.path.exists(os.path.dirname(self.missing)), command)

    def test_importCreates(self) -> None:
        """An import creates the store, and then list finds it."""
        self.manage("instance", "import", self.write("one.json", json.dumps({"uuid": UUID})))
        self.assertTrue(os.path.exists(self.missing))
        self.assertEqual(self.manage("instance", "list")[1].split("\t")[0], UUID)

    def test_mainExitStatus(self) -> None:
        """main prints the missing store as one line on stderr and exits 1."""
        stderr = io.StringIO()
        self.patch(sys, "stderr", stderr)
        e = self.assertRaises(SystemExit, main, ["--config", self.config, "instance", "list"])
        self.assertEqual(e.code, 1)
        self.assertEqual(len(stderr.getvalue().splitlines()), 1)
        self.assertTrue(stderr.getvalue().startswith(f"mdsvc-manage: no store at {self.missing} "))


class RelativeStatePathTests(ManageTestsMixin, SynchronousTestCase):
    """A relative state_path is taken from the config file's directory, not the current one."""

    def test_fromAnotherDirectory(self) -> None:
        """Imported from one directory, listed from another: the same store, next to the file."""
        os.makedirs(os.path.join(self.dir, "etc"))
        config = self.write("etc/demo.conf", "[DEFAULT]\nstate_path = ../relative-state\n")
        document = self.write("one.json", json.dumps({"uuid": UUID}))
        here = os.getcwd()
        self.addCleanup(os.chdir, here)
        for name in ("a", "b"):
            os.makedirs(os.path.join(self.dir, name))
        os.chdir(os.path.join(self.dir, "a"))
        run(["--config", config, "instance", "import", document], out=io.StringIO())
        os.chdir(os.path.join(self.dir, "b"))
        out = io.StringIO()
        run(["--config", config, "instance", "list"], out=out)
        self.assertEqual(out.getvalue().split("\t")[0], UUID)
        self.assertTrue(os.path.exists(os.path.join(self.dir, "relative-state", "mdsvc.sqlite")))
        self.assertEqual(os.listdir(os.path.join(self.dir, "a")) + os.listdir(os.path.join(self.dir, "b")), [])


class ConsoleScriptTests(ManageTestsMixin, SynchronousTestCase):
    """The installed command, in its own process."""

    def test_badImport(self) -> None:
        """A bad import prints exactly one line on stderr, prefixed mdsvc-manage:, and exits 1."""
        path = self.write("bad.yaml", f"uuid: {UUID}\nnics:\n  - mac: nope\n")
        script = os.path.join(os.path.dirname(sys.executable), "mdsvc-manage")
        command = [script] if os.path.exists(script) else [sys.executable, "-m", "mdsvc.manage"]
        env = {k: v for k, v in os.environ.items() if k != "MDSVC_CONFIG"}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [REPO, env.get("PYTHONPATH")]))
        result = subprocess.run(
            [*command, "--config", self.config, "instance", "import", path],
            capture_output=True, text=True, env=env, cwd=REPO, timeout=60,
        )
        self.assertEqual(
            (result.returncode, result.stdout, result.stderr),
            (1, "", f"mdsvc-manage: {path}: nics[0].mac: 'nope' is not valid\n"),
        )
        self.assertEqual(self.store.list_instances(), [])

    def test_closedPipe(self) -> None:
        """
        Output whose reader has gone (C{mdsvc-manage instance list | head}) ends the command
        quietly: nothing on stderr, status 0.
        """
        self.manage("instance", "import", self.write("two.yaml", YAML_LIST))
        env = {k: v for k, v in os.environ.items() if k != "MDSVC_CONFIG"}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [REPO, env.get("PYTHONPATH")]))
        read, write = os.pipe()
        os.close(read)  # the reader is gone before the first line: every write fails
        try:
            result = subprocess.run([sys.executable, "-m", "mdsvc.manage", "--config", self.config, "instance", "list"],
                                    stdout=write, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO, timeout=60)
        finally:
            os.close(write)
        self.assertEqual((result.returncode, result.stderr), (0, ""))


class DocumentFormatTests(ManageTestsMixin, SynchronousTestCase):
    """What read_documents accepts."""

    def test_yaml_flow_list(self) -> None:
        """A YAML flow list in a .yaml file is YAML, not broken JSON."""
        path = self.write("flow.yaml", f"[{{uuid: {UUID}}}, {{uuid: {UUID2}}}]\n")
        self.assertEqual(self.manage("instance", "import", path)[0], 0)
        self.assertIsNotNone(self.store.get(UUID2))

    def test_yaml_dates_stay_strings(self) -> None:
        """created_at: 2020-01-01 is kept as the text it is."""
        path = self.write("d.yaml", f"uuid: {UUID}\ncreated_at: 2020-01-01\n")
        self.manage("instance", "import", path)
        self.assertEqual(self.store.get(UUID).document["created_at"], "2020-01-01")  # type: ignore[union-attr]

    def test_byte_order_mark(self) -> None:
        """A UTF-8 byte-order mark is ignored."""
        path = os.path.join(self.dir, "bom.json")
        with open(path, "w", encoding="utf-8-sig") as f:
            f.write(json.dumps({"uuid": UUID}))
        self.assertEqual(self.manage("instance", "import", path)[0], 0)
