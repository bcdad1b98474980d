"""
Vendor plugins in a real process: C{twistd -n mdsvc --role api} with a vendor's directory (a copy
of C{tests/plugin_root}, outside the package) on its C{PYTHONPATH}, configured by name with the
plugin's instance store (C{[mdsvc] store = teststore:FILE}) and the plugin's vendordata provider
(C{[api] vendordata_providers = StaticJSON, TestVendor}), answers a guest over HTTP from both.
Without that directory, the same configuration stops startup, and C{mdsvc-manage check-config},
with one line listing what is installed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from twisted.trial.unittest import SynchronousTestCase

from tests.integration.processes import ROOT, TWISTD, Twistd, fetch, write_config
from tests.vendor_plugins import caches_in_plugin_root, copy_plugin_root

UUID = "9b2d4f6a-8c0e-4a1b-b3d5-e7f9a1c3e5a7"


def document() -> dict[str, object]:
    """An instance whose fixed IP is 127.0.0.1, so a client on this machine is that instance."""
    return {
        "uuid": UUID, "name": "plugged-1", "project_id": "proj-v", "metadata": {"served": "by teststore"},
        "nics": [{"port_id": "0f0e0d0c-0000-4000-8000-0000000000b1", "mac": "fa:16:3e:00:00:b1",
                  "network": {"id": "net-v", "name": "private"},
                  "fixed_ips": [{"ip": "127.0.0.1", "subnet": {"id": "sub-v", "cidr": "127.0.0.0/8", "enable_dhcp": False}}]}],
    }


class PluginProcessTests(SynchronousTestCase):
    """A vendor's store and vendordata provider, named in the configuration, in a real twistd."""

    def setUp(self) -> None:
        self.dir = os.path.abspath(self.mktemp())
        os.makedirs(self.dir)
        # a copy: twistd's plugin discovery writes dropin.cache into the directories it scans
        self.vendor = copy_plugin_root(os.path.join(self.dir, "vendor"))
        instances = os.path.join(self.dir, "instances.json")
        with open(instances, "w") as f:
            json.dump([document()], f)
        static = os.path.join(self.dir, "vendor_data.json")
        with open(static, "w") as f:
            json.dump({"region": "lab"}, f)
        self.config = write_config(
            self.dir,
            f"store = teststore:{instances}\n\n"
            f"[api]\nvendordata_providers = StaticJSON, TestVendor\nvendordata_jsonfile_path = {static}\n\n"
            "[test_vendor]\ngreeting = hello from a vendor plugin\n",
        )

    def vendor_env(self) -> dict[str, str]:
        """The environment with the vendor's directory first on C{PYTHONPATH}."""
        paths = [self.vendor] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
        return {"PYTHONPATH": os.pathsep.join(paths)}

    def line(self, prefix: str) -> int:
        """The number of the configuration's line that starts with C{prefix}."""
        with open(self.config) as f:
            return next(n for n, text in enumerate(f, 1) if text.startswith(prefix))

    def test_served_by_plugins(self) -> None:
        """
        meta_data.json and the EC2 tree come from the plugin's store (which says so in the log
        when it starts), vendor_data2.json merges StaticJSON's file with the plugin provider's
        data; the plugin cache is written into the vendor's directory, none into
        tests/plugin_root.
        """
        api = Twistd(["mdsvc", "--role", "api", "--config", self.config], os.path.join(self.dir, "twistd.log"), env=self.vendor_env())
        self.addCleanup(api.stop)
        code, headers, body = fetch(api.base + "openstack/latest/meta_data.json")
        self.assertEqual((code, headers["content-type"]), (200, "application/json"))
        md = json.loads(body)
        self.assertEqual((md["uuid"], md["name"], md["project_id"], md["meta"]), (UUID, "plugged-1", "proj-v", {"served": "by teststore"}))
        code, _, body = fetch(api.base + "openstack/latest/vendor_data2.json")
        self.assertEqual(code, 200)
        self.assertEqual(list(json.loads(body).items()), [
            ("static", {"region": "lab"}),
            ("test_vendor", {"greeting": "hello from a vendor plugin", "instance": UUID, "hostname": "plugged-1"}),
        ])
        code, _, body = fetch(api.base + "latest/meta-data/local-hostname")
        self.assertEqual((code, body), (200, b"plugged-1.novalocal"))
        self.assertIn(f"teststore: serving 1 instances from {self.dir}/instances.json", api.log())
        self.assertTrue(os.path.exists(os.path.join(self.vendor, "mdsvc", "plugins", "dropin.cache")))
        self.assertEqual(caches_in_plugin_root(), [])

    def test_without_plugins_one_line(self) -> None:
        """
        Without the vendor's directory the names are unknown: twistd stops before listening, and
        check-config exits 1, each with one line naming file, line and option and listing what is
        installed; with it, check-config is content.
        """
        result = subprocess.run(TWISTD + ["-n", "--pidfile=", "--logfile=-", "mdsvc", "--role", "api", "--config", self.config],
                                capture_output=True, text=True, timeout=60, cwd=ROOT)
        self.assertNotEqual(result.returncode, 0)
        store, providers = self.line("store = "), self.line("vendordata_providers = ")
        self.assertIn(f"mdsvc: {self.config}:{store}: [mdsvc] store: unknown instance store 'teststore' (available: sqlite:PATH, "
                      "postgresql://..., mysql+pymysql://..., nova)", result.stdout + result.stderr)
        self.assertNotIn("Traceback", result.stdout + result.stderr)

        def check_config(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
            return subprocess.run([sys.executable, "-m", "mdsvc.manage", "check-config", self.config], capture_output=True, text=True,
                                  timeout=60, cwd=ROOT, env=dict(os.environ, **env))

        without = check_config({})
        self.assertEqual((without.returncode, without.stdout.splitlines()), (1, [
            f"{self.config}:{store}: [mdsvc] store: unknown instance store 'teststore' (available: sqlite:PATH, "
            "postgresql://..., mysql+pymysql://..., nova)",
            f"{self.config}:{providers}: [api] vendordata_providers: unknown vendordata provider 'TestVendor' (available: StaticJSON, DynamicJSON)",
        ]))
        with_plugins = check_config(self.vendor_env())
        self.assertEqual((with_plugins.returncode, with_plugins.stdout, with_plugins.stderr), (0, "", ""))
