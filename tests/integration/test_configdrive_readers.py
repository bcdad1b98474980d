"""
Config drives built by `mdsvc-manage configdrive build`, read back with pycdlib, pyfatfs and
unmodified readers (cloud-init's config-drive reader, cloudbase-init's ConfigDriveService with
the bsdtar and mtools steps it uses), and compared file by file with what the metadata API serves
for the same instance.
"""

from __future__ import annotations

import base64
import io
import json
import os
import subprocess
import sys
import urllib.parse

import pycdlib
from twisted.trial.unittest import SynchronousTestCase

from tests.integration.processes import DRIVE_TOOLS, ROOT, Twistd, fetch, manage, run_probe, write_config

UUID = "0c0ffee0-1111-4222-8333-444455556666"
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDriveDriveDriveDriveDriveDriveDriveDrive0 ops@example"
USER_DATA = b"#cloud-config\nwrite_files:\n  - path: /run/from-drive\n"
INJECTED = [("/etc/motd", b"hello from the drive\n"), ("/etc/app/secret.bin", bytes(range(256)))]


def document() -> dict[str, object]:
    """An instance with everything a drive carries: keys, user data, network, admin pass, files."""
    return {
        "uuid": UUID, "name": "drive-1", "project_id": "proj-d", "availability_zone": "az9", "flavor": "m1.large",
        "image_id": "img-d", "ec2_ids": {"instance": 77, "images": {"img-d": 9}},
        "key_pairs": [{"name": "ops", "type": "ssh", "public_key": KEY}],
        "user_data": base64.b64encode(USER_DATA).decode(), "metadata": {"tier": "db"}, "admin_pass": "Adm1n!",
        "injected_files": [{"path": p, "contents_b64": base64.b64encode(c).decode()} for p, c in INJECTED],
        "device_metadata": [{"type": "nic", "bus": "pci", "address": "0000:00:03.0", "mac": "fa:16:3e:00:00:77", "tags": ["data"]}],
        "nics": [{"port_id": "a1b2c3d4-0000-4000-8000-000000000077", "mac": "fa:16:3e:00:00:77", "vif_type": "ovs",
                  "network": {"id": "net-d", "mtu": 1400},
                  "fixed_ips": [{"ip": "127.0.0.1", "subnet": {"id": "sub-d", "cidr": "127.0.0.0/8", "gateway": "127.0.0.254",
                                                                "dns": ["127.0.0.53"], "enable_dhcp": False}}]}],
    }


def iso_files(path: str) -> dict[str, bytes]:
    """Every file of an ISO by its Rock Ridge name."""
    iso = pycdlib.PyCdlib()
    iso.open(path)
    try:
        out = {}
        for directory, _, files in iso.walk(rr_path="/"):
            for name in files:
                full = f"{directory.rstrip('/')}/{name}"
                buf = io.BytesIO()
                iso.get_file_from_iso_fp(buf, rr_path=full)
                out[full.lstrip("/")] = buf.getvalue()
        return out
    finally:
        iso.close()


def vfat_files(path: str) -> dict[str, bytes]:
    """Every file of a VFAT image by its long name."""
    from pyfatfs.PyFatFS import PyFatFS

    fs = PyFatFS(path, read_only=True)
    try:
        return {p.lstrip("/"): fs.readbytes(p) for p in fs.walk.files("/")}
    finally:
        fs.close()


class StoreCase(SynchronousTestCase):
    """A config and a store holding the instance of L{document}."""

    def setUp(self) -> None:
        self.dir = os.path.abspath(self.mktemp())
        self.config = write_config(self.dir, "")
        path = os.path.join(self.dir, "doc.json")
        with open(path, "w") as f:
            json.dump(document(), f)
        manage(self.config, "instance", "import", path)


class ConfigDriveTests(StoreCase):
    """One instance, its ISO and VFAT drives, and the API serving it for comparison."""

    def setUp(self) -> None:
        super().setUp()
        self.iso = os.path.join(self.dir, "config.iso")
        self.vfat = os.path.join(self.dir, "config.vfat")
        manage(self.config, "configdrive", "build", UUID, "-o", self.iso)
        manage(self.config, "configdrive", "build", UUID, "-o", self.vfat, "--format", "vfat")
        self.api = Twistd(["mdsvc", "--role", "api", "--config", self.config], os.path.join(self.dir, "api.log"))
        self.addCleanup(self.api.stop)

    def served(self, path: str) -> bytes:
        status, _, body = fetch(self.api.base + urllib.parse.quote(path))
        self.assertEqual(status, 200, path)
        return body

    def compare_ec2(self, value: object, path: str) -> None:
        """A meta-data.json value against the API's rendering of the same path."""
        if isinstance(value, dict):
            for key, child in value.items():
                self.compare_ec2(child, f"{path}/{key}")
            return
        expected = "\n".join(value) if isinstance(value, list) else ("None" if value is None else str(value))
        if path.endswith("/local-ipv4"):
            expected = "127.0.0.1"
        self.assertEqual(self.served(path).decode(), expected, path)

    def check_against_api(self, files: dict[str, bytes]) -> None:
        injected = dict(INJECTED)
        contents = json.loads(files["openstack/latest/meta_data.json"])["files"]
        self.assertEqual([f["path"] for f in contents], [p for p, _ in INJECTED])
        for name, data in files.items():
            parts = name.split("/")
            if parts[0] == "ec2":
                if parts[2] == "meta-data.json":
                    self.compare_ec2(json.loads(data), f"{parts[1]}/meta-data")
                else:
                    self.assertEqual(data, self.served(f"{parts[1]}/user-data"), name)
            elif parts[1] == "content":
                path = next(f["path"] for f in contents if f["content_path"] == "/content/" + parts[2])
                self.assertEqual(data, injected[path], name)
            elif parts[2] == "meta_data.json":
                drive, api = json.loads(data), json.loads(self.served(name))
                self.assertEqual((drive.pop("admin_pass"), drive.pop("files")), ("Adm1n!", contents), name)
                drive.pop("random_seed", None), api.pop("random_seed", None)
                self.assertEqual(drive, api, name)
            else:
                self.assertEqual(data, self.served(name), name)
        self.assertNotIn("openstack/latest/password", files)

    def test_iso_matches_api(self) -> None:
        """Every file of the ISO (pycdlib, Rock Ridge names) is what the API serves."""
        files = iso_files(self.iso)
        # ec2: 2 versions x 2; openstack: 2 + 2 + 3 + 2 x 4 + 6 x 5; content: 2
        self.assertEqual(len(files), 4 + 2 + 2 + 3 + 8 + 30 + 2)
        self.check_against_api(files)

    def test_vfat_matches_api(self) -> None:
        """Every file of the VFAT image (pyfatfs, long names) is what the API serves."""
        files = vfat_files(self.vfat)
        self.assertEqual(set(files), set(iso_files(self.iso)))
        self.check_against_api(files)

    def test_labels(self) -> None:
        """blkid (how cloud-init finds drives) reads label config-2 from both images."""
        for image, kind in ((self.iso, "iso9660"), (self.vfat, "vfat")):
            out = subprocess.run(["blkid", "-o", "export", image], capture_output=True, text=True).stdout
            self.assertIn("LABEL=config-2", out.splitlines(), image)
            self.assertIn(f"TYPE={kind}", out.splitlines(), image)

    def probe(self, client: str, image: str) -> dict[str, object]:
        """What a real client reads from a drive image (it must leave no temporary file behind)."""
        return run_probe(client, image, "--deadline", "60", tools=tuple(DRIVE_TOOLS))

    def test_cloud_init_reads_both(self) -> None:
        """cloud-init's read_config_drive reads identity, files, user data and network data from both images."""
        network = json.loads(self.served("openstack/latest/network_data.json"))
        for image in (self.iso, self.vfat):
            seen = self.probe("cloud-init-drive", image)
            md = seen["metadata"]
            self.assertEqual((md["uuid"], md["hostname"], md["admin_pass"], md["public_keys"]),  # type: ignore[index]
                             (UUID, "drive-1.novalocal", "Adm1n!", {"ops": KEY}), image)
            self.assertEqual(seen["files"], {p: c.decode("utf-8") if p == "/etc/motd" else {"__base64__": base64.b64encode(c).decode()}
                                             for p, c in INJECTED})
            self.assertEqual(seen["userdata"], USER_DATA.decode())
            self.assertEqual(seen["networkdata"], network)
            self.assertEqual(seen["ec2-metadata"]["instance-id"], "i-0000004d")  # type: ignore[index]
            self.assertEqual(seen["vendordata"], {})

    def test_cloudbase_init_reads_both(self) -> None:
        """cloudbase-init's ConfigDriveService (bsdtar for ISO, mtools for VFAT) reads both images."""
        for image in (self.iso, self.vfat):
            seen = self.probe("cloudbase-init-drive", image)
            self.assertEqual((seen["instance_id"], seen["host_name"], seen["admin_password"]), (UUID, "drive-1.novalocal", "Adm1n!"), image)
            self.assertEqual(seen["public_keys"], [KEY])
            self.assertEqual(seen["user_data"], USER_DATA.decode())
            self.assertIn("openstack/content/0001", seen["files"])  # type: ignore[operator]


class ConfigDriveErrorTests(StoreCase):
    """Bad input is a one-line error and leaves no file behind."""

    def fails(self, *args: str) -> str:
        result = manage(self.config, *args, check=False)
        self.assertEqual(result.returncode, 1)
        self.assertEqual(len(result.stderr.splitlines()), 1, result.stderr)
        return result.stderr.strip()

    def test_unknown_instance(self) -> None:
        """An unknown uuid: one line, no file."""
        out = os.path.join(self.dir, "x.iso")
        self.assertEqual(self.fails("configdrive", "build", "nope", "-o", out), "mdsvc-manage: no instance nope")
        self.assertFalse(os.path.exists(out))

    def test_unwritable_output(self) -> None:
        """An output in a missing directory: one line naming it."""
        out = os.path.join(self.dir, "missing", "x.iso")
        self.assertEqual(self.fails("configdrive", "build", UUID, "-o", out), f"mdsvc-manage: {out}: cannot write: No such file or directory")

    def test_injected_path_outside(self) -> None:
        """An injected file climbing out of the guest's root is refused at import, naming the field."""
        doc = document()
        doc["injected_files"] = [{"path": "/etc/../../../x", "contents_b64": ""}]
        path = os.path.join(self.dir, "bad.json")
        with open(path, "w") as f:
            json.dump(doc, f)
        message = self.fails("instance", "import", path)
        self.assertEqual(message, f"mdsvc-manage: {path}: injected_files[0].path: '/etc/../../../x' leads outside the guest's root ('..')")

    def test_broken_vendordata(self) -> None:
        """A broken StaticJSON file stops the build with its reason, and no file is left."""
        bad = os.path.join(self.dir, "vendor.json")
        with open(bad, "w") as f:
            f.write("{broken")
        with open(self.config, "a") as f:
            f.write(f"\n[api]\nvendordata_jsonfile_path = {bad}\n")
        out = os.path.join(self.dir, "x.iso")
        self.assertIn("failed to load json", self.fails("configdrive", "build", UUID, "-o", out))
        self.assertEqual(sorted(os.listdir(self.dir)), sorted(["doc.json", "mdsvc.conf", "state", "vendor.json"]))

    def test_no_root_mount_or_binary_needed(self) -> None:
        """
        Building works without any capability (so no mount), and with an empty PATH (so no
        external binary), for both formats.
        """
        if os.geteuid() != 0 or not shutil_which("setpriv"):
            self.skipTest("needs root and setpriv to drop every capability")
        for fmt in ("iso", "vfat"):
            out = os.path.join(self.dir, f"n.{fmt}")
            result = subprocess.run(
                [shutil_which("setpriv") or "setpriv", "--bounding-set=-all", "--inh-caps=-all", "--no-new-privs", sys.executable, "-m", "mdsvc.manage",
                 "--config", self.config, "configdrive", "build", UUID, "-o", out, "--format", fmt],
                capture_output=True, text=True, cwd=ROOT, timeout=60, env=dict(os.environ, PATH=""),
            )
            self.assertEqual(result.returncode, 0, result.stderr)
            self.assertGreater(os.path.getsize(out), 0)


def shutil_which(name: str) -> str | None:
    import shutil

    return shutil.which(name)
