"""Config drives (nova spec §7): the file list, its contents, and the ISO and VFAT images."""

from __future__ import annotations

import io
import json
import os
import stat
from typing import Any

import pycdlib
from twisted.internet.defer import ensureDeferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from mdsvc.api.app import MetadataApp
from mdsvc.api.identify import Identifier
from mdsvc.api.vendordata import StaticJSONFile
from mdsvc.configdrive import ConfigDriveError, drive_files, write_image
from mdsvc.model import InjectedFile, instance_from_document
from mdsvc.testing import MemoryInstanceStore
from tests.test_api_resource import Harness, fixture

SKIP = ("1.0", "2007-01-19", "2007-03-01", "2007-08-29", "2007-10-10", "2007-12-15", "2008-02-01", "2008-09-01")


def build(case: SynchronousTestCase, instance: Any, **app: Any) -> list[tuple[str, bytes]]:
    a = MetadataApp(store=MemoryInstanceStore(), identifier=Identifier(False, ""), clock=Clock(), **app)
    return case.successResultOf(ensureDeferred(drive_files(a, instance, SKIP)))


class FileListTests(SynchronousTestCase):
    """Which files, in which order."""

    def test_upstream_order(self) -> None:
        """Nova's unit-test order for an instance with user data and default options."""
        names = [name for name, _ in build(self, fixture())]
        expected = ["ec2/2009-04-04/user-data", "ec2/2009-04-04/meta-data.json", "ec2/latest/user-data", "ec2/latest/meta-data.json",
                    "openstack/2012-08-10/meta_data.json", "openstack/2012-08-10/user_data",
                    "openstack/2013-04-04/meta_data.json", "openstack/2013-04-04/user_data"]
        expected += [f"openstack/2013-10-17/{f}" for f in ("meta_data.json", "user_data", "vendor_data.json")]
        for version in ("2015-10-15", "2016-06-30"):
            expected += [f"openstack/{version}/{f}" for f in ("meta_data.json", "user_data", "vendor_data.json", "network_data.json")]
        for version in ("2016-10-06", "2017-02-22", "2018-08-27", "2020-10-14", "2025-04-04", "latest"):
            expected += [f"openstack/{version}/{f}" for f in ("meta_data.json", "user_data", "vendor_data.json", "network_data.json", "vendor_data2.json")]
        self.assertEqual(names, expected)
        self.assertFalse([n for n in names if n.endswith("password")])

    def test_skip_list_only_ec2(self) -> None:
        """An empty skip list puts every EC2 version on the drive; OpenStack versions are never skipped."""
        a = MetadataApp(store=MemoryInstanceStore(), identifier=Identifier(False, ""), clock=Clock())
        names = [n for n, _ in self.successResultOf(ensureDeferred(drive_files(a, fixture(user_data=None), ())))]
        self.assertEqual([n for n in names if n.startswith("ec2/")][:2], ["ec2/1.0/meta-data.json", "ec2/2007-01-19/meta-data.json"])
        self.assertEqual(len([n for n in names if n.endswith("meta_data.json")]), 11)

    def test_no_static_provider(self) -> None:
        """Without StaticJSON no vendor_data.json (the API answers 404 for it too)."""
        names = [n for n, _ in build(self, fixture(), providers=())]
        self.assertFalse([n for n in names if n.endswith("/vendor_data.json")])
        self.assertIn("openstack/latest/vendor_data2.json", names)


class ContentTests(SynchronousTestCase):
    """What the files hold."""

    def test_admin_pass_and_injected_files(self) -> None:
        """meta_data.json carries files and admin_pass after meta; content/NNNN holds the bytes."""
        inst = fixture(admin_pass="s3cr3t", metadata={"a": "b"},
                       injected_files=(InjectedFile("/etc/one", b"1"), InjectedFile("/etc/two", b"\x00\xff")))
        files = dict(build(self, inst))
        md = json.loads(files["openstack/latest/meta_data.json"])
        self.assertEqual(list(md)[:4], ["uuid", "meta", "files", "admin_pass"])
        self.assertEqual(md["files"], [{"path": "/etc/one", "content_path": "/content/0000"},
                                       {"path": "/etc/two", "content_path": "/content/0001"}])
        self.assertEqual((files["openstack/content/0000"], files["openstack/content/0001"]), (b"1", b"\x00\xff"))
        self.assertEqual(len(md["random_seed"]), 684)

    def test_ec2_meta_data_json(self) -> None:
        """ec2/<v>/meta-data.json keeps Nova's insertion order, null local-ipv4, and the public-keys quirk."""
        md = json.loads(dict(build(self, fixture()))["ec2/latest/meta-data.json"])
        self.assertEqual(list(md)[:8], ["ami-id", "ami-launch-index", "ami-manifest-path", "instance-id", "hostname",
                                        "local-ipv4", "reservation-id", "security-groups"])
        self.assertIsNone(md["local-ipv4"])
        self.assertEqual(md["public-keys"], {"0": {"_name": "0=key", "openssh-key": "ssh-rsa AAAAB3Nzai....N3NtHw== someuser@somehost"}})
        self.assertEqual(md["ami-launch-index"], 1)
        self.assertEqual(md["security-groups"], [])  # the groups of its ports: it has none

    def test_same_bytes_as_the_api(self) -> None:
        """Every file that is not drive-only equals what the API serves for that path."""
        inst = fixture()
        h = Harness(self)
        h.store.add(inst)
        for name, data in build(self, inst):
            if name.startswith("ec2/"):
                continue  # JSON on the drive, a browsable tree over HTTP: compared in the integration test
            served = h.get("/" + name)
            self.assertEqual(served.code, 200, name)
            if name.endswith("meta_data.json"):
                one, two = json.loads(data), json.loads(served.body)
                one.pop("random_seed", None), two.pop("random_seed", None)
                self.assertEqual(one, two, name)
            else:
                self.assertEqual(data, served.body, name)

    def test_broken_static_file(self) -> None:
        """A broken vendordata file stops the build with its reason (Nova's boot fails likewise)."""
        path = self.mktemp()
        with open(path, "w") as f:
            f.write("{nope")
        a = MetadataApp(store=MemoryInstanceStore(), identifier=Identifier(False, ""), clock=Clock(), static_file=StaticJSONFile(path))
        failure = self.failureResultOf(ensureDeferred(drive_files(a, fixture(), SKIP)), ConfigDriveError)
        self.assertIn("failed to load json", str(failure.value))

    def test_injected_path_outside(self) -> None:
        """An injected file whose path climbs out ('..') is refused at build time and at import."""
        inst = fixture(injected_files=(InjectedFile("/etc/../../x", b"1"),))
        a = MetadataApp(store=MemoryInstanceStore(), identifier=Identifier(False, ""), clock=Clock())
        failure = self.failureResultOf(ensureDeferred(drive_files(a, inst, SKIP)), ConfigDriveError)
        self.assertEqual(str(failure.value), "injected_files[0].path: injected file path '/etc/../../x' is outside the drive (absolute, no '..')")
        from mdsvc.model import DocumentError
        e = self.assertRaises(DocumentError, instance_from_document, {"uuid": "0f0f0f0f-0000-4000-8000-000000000001", "injected_files": [{"path": "/a/../../b"}]})
        self.assertEqual(e.where, "injected_files[0].path")


class ImageTests(SynchronousTestCase):
    """The images, read back with pycdlib and pyfatfs."""

    files = [("openstack/latest/meta_data.json", b'{"uuid": "u"}'), ("openstack/content/0000", b"\x00bin"),
             ("ec2/latest/meta-data.json", b"{}"), ("openstack/latest/user_data", b"#!/bin/sh\n")]

    def test_iso(self) -> None:
        """ISO 9660 with Rock Ridge and Joliet names and label config-2."""
        out = os.path.abspath(self.mktemp())
        write_image(self.files, out, "iso", publisher="mdsvc test")
        iso = pycdlib.PyCdlib()
        iso.open(out)
        self.addCleanup(iso.close)
        self.assertEqual(iso.pvd.volume_identifier.rstrip(b" "), b"config-2")
        self.assertIsNotNone(iso.joliet_vd)
        self.assertTrue(iso.has_rock_ridge())
        for name, data in self.files:
            for key in ("rr_path", "joliet_path"):
                buf = io.BytesIO()
                iso.get_file_from_iso_fp(buf, **{key: "/" + name})
                self.assertEqual(buf.getvalue(), data, (key, name))
        self.assertEqual(stat.S_IMODE(os.stat(out).st_mode), 0o644)

    def test_vfat(self) -> None:
        """A 64 MiB FAT image labelled config-2 with long names."""
        from pyfatfs.PyFatFS import PyFatFS

        out = os.path.abspath(self.mktemp())
        write_image(self.files, out, "vfat")
        self.assertEqual(os.path.getsize(out), 64 * 1024 * 1024)
        fs = PyFatFS(out, read_only=True)
        self.addCleanup(fs.close)
        for name, data in self.files:
            self.assertEqual(fs.readbytes("/" + name), data)
        with open(out, "rb") as f:
            boot = f.read(512)
        self.assertEqual(boot[43:54], b"config-2   ")

    def test_unwritable_leaves_nothing(self) -> None:
        """An output directory that does not exist: one-line error, no file."""
        out = os.path.join(os.path.abspath(self.mktemp()), "missing", "d.iso")
        e = self.assertRaises(ConfigDriveError, write_image, self.files, out, "iso")
        self.assertEqual(str(e), f"{out}: cannot write: No such file or directory")
        self.assertFalse(os.path.exists(os.path.dirname(out)))

    def test_failure_midway_leaves_nothing(self) -> None:
        """A failure while writing removes the temporary file and keeps an existing image as it was."""
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        out = os.path.join(directory, "d.iso")
        with open(out, "wb") as f:
            f.write(b"old image")
        self.assertRaises(TypeError, write_image, [("a/b", "not bytes")], out, "iso")  # type: ignore[list-item]
        self.assertEqual(os.listdir(directory), ["d.iso"])
        with open(out, "rb") as f:
            self.assertEqual(f.read(), b"old image")
