# -*- test-case-name: tests.test_configdrive -*-
"""
Config drives (nova spec §7): the files the metadata API serves, on an ISO 9660 image (Rock Ridge
and Joliet, volume label C{config-2}) or a 64 MiB VFAT image, for guests without a network path
to the metadata service.

The files come from the same L{InstanceMetadata} that answers HTTP requests, so the drive and
the service never drift; only what Nova puts on drives alone is added (C{admin_pass}, injected
files under C{openstack/content/}, after the rendered interfaces template of C{flat_injected}).
Images are written by libraries (pycdlib, pyfatfs): no root, no mount, no external binary.  The
image appears at its path complete or not at all.
"""

from __future__ import annotations

import io
import os
import posixpath
import struct
import tempfile
from collections.abc import Iterable
from typing import Any

from mdsvc.api.app import MetadataApp
from mdsvc.api.metadata import InstanceMetadata
from mdsvc.api.versions import EC2_VERSIONS, HAVANA, LIBERTY, NEWTON_TWO, OPENSTACK_VERSIONS, ec2_version, openstack_version
from mdsvc.model import Instance

VFAT_SIZE = 64 * 1024 * 1024
"""Nova's fixed VFAT config drive size."""

LABEL = "config-2"


class ConfigDriveError(Exception):
    """The drive cannot be built; C{str()} is one line for the operator."""


def check_injected_path(path: str, where: str) -> None:
    """An injected file's guest path must be absolute and stay inside the guest's root."""
    if not path.startswith("/") or "\x00" in path or ".." in path.split("/"):
        raise ConfigDriveError(f"{where}: injected file path {path!r} is outside the drive (absolute, no '..')")


async def drive_files(app: MetadataApp, instance: Instance, skip_versions: Iterable[str]) -> list[tuple[str, bytes]]:
    """
    Every file of the instance's config drive, in Nova's order (nova spec §7.3).

    @param skip_versions: C{[api] config_drive_skip_versions} (EC2 versions left off).
    @raise ConfigDriveError: for a broken StaticJSON file or an injected file outside the drive.
    """
    md = app.render(instance)
    static = md.static_vendordata
    if static is not None and static.error is not None:
        raise ConfigDriveError(static.error)
    for i, injected in enumerate(instance.injected_files):
        check_injected_path(injected.path, f"injected_files[{i}].path")
    skip = set(skip_versions)
    user_data = instance.user_data
    files: list[tuple[str, bytes]] = []
    for name in [v for v in EC2_VERSIONS if v not in skip] + ["latest"]:
        version = ec2_version(name)
        assert version is not None
        if user_data is not None:
            files.append((f"ec2/{name}/user-data", user_data))
        files.append((f"ec2/{name}/meta-data.json", md.ec2_meta_data_json(version)))
    content, references = _content(md, instance)
    extra = {"admin_pass": instance.admin_pass} if instance.admin_pass else None
    for name in list(OPENSTACK_VERSIONS) + ["latest"]:
        version = openstack_version(name)
        assert version is not None
        base = f"openstack/{name}"
        files.append((f"{base}/meta_data.json", md.meta_data_json(version, files=references, extra=extra)))
        if user_data is not None:
            files.append((f"{base}/user_data", user_data))
        if version >= HAVANA and static is not None:
            files.append((f"{base}/vendor_data.json", md.vendor_data_json()))
        if version >= LIBERTY:
            files.append((f"{base}/network_data.json", md.network_data_json()))
        if version >= NEWTON_TWO:
            files.append((f"{base}/vendor_data2.json", await app.vendor_data2_json(md)))
    files += [(f"openstack/content/{key}", data) for key, data in content]
    return files


def _content(md: InstanceMetadata, instance: Instance) -> tuple[list[tuple[str, bytes]], list[dict[str, str]] | None]:
    """
    The drive's C{openstack/content/NNNN} in Nova's order (the rendered interfaces template of
    C{flat_injected}, then the injected files), and the injected files' C{meta_data.json}
    references (None without any).
    """
    content = list(md.content().items())
    references = []
    for number, injected in enumerate(instance.injected_files, start=len(content)):
        key = f"{number:04d}"
        content.append((key, injected.contents))
        references.append({"path": injected.path, "content_path": f"/content/{key}"})
    return content, references or None


def _directories(files: list[tuple[str, bytes]]) -> list[str]:
    seen: dict[str, None] = {}
    for path, _ in files:
        parent = posixpath.dirname(path)
        parts = parent.split("/")
        for depth in range(1, len(parts) + 1):
            seen["/".join(parts[:depth])] = None
    return list(seen)


def write_iso(files: list[tuple[str, bytes]], out: Any, publisher: str = "mdsvc") -> None:
    """
    An ISO 9660 image with Rock Ridge and Joliet names and volume label C{config-2}, like
    C{genisoimage -l -allow-lowercase -allow-multidot -J -r -V config-2}.
    """
    import pycdlib

    iso = pycdlib.PyCdlib()
    iso.new(interchange_level=4, vol_ident=LABEL, joliet=3, rock_ridge="1.09", pub_ident_str=publisher)
    for directory in _directories(files):
        iso.add_directory("/" + directory, rr_name=posixpath.basename(directory), joliet_path="/" + directory)
    for path, data in files:
        iso.add_fp(io.BytesIO(data), len(data), "/" + path, rr_name=posixpath.basename(path), joliet_path="/" + path)
    iso.write_fp(out)
    iso.close()


def write_vfat(files: list[tuple[str, bytes]], path: str) -> None:
    """A 64 MiB FAT16 image labelled C{config-2} with long file names, like Nova's VFAT drive."""
    from pyfatfs.PyFat import PyFat
    from pyfatfs.PyFatFS import PyFatFS

    with open(path, "r+b") as f:
        f.truncate(VFAT_SIZE)
    fat = PyFat()
    fat.mkfs(path, PyFat.FAT_TYPE_FAT16, size=VFAT_SIZE, label=LABEL)
    fat.close()
    fs = PyFatFS(path)
    try:
        for directory in _directories(files):
            fs.makedir("/" + directory, recreate=True)
        for name, data in files:
            fs.writebytes("/" + name, data)
    finally:
        fs.close()
    _finish_like_mkfs_vfat(path)


def _finish_like_mkfs_vfat(path: str) -> None:
    """
    Two details where pyfatfs's image differs from C{mkfs.vfat -n config-2}, which guests'
    tools notice: the disk geometry in the boot sector is zero (mtools, which cloudbase-init
    reads VFAT drives with, refuses that), and the root directory's volume label entry is in
    upper case (guests look for LABEL=config-2).  Set the geometry mkfs.vfat uses for an image
    (32 sectors per track, 64 heads) and write the label as given.
    """
    with open(path, "r+b") as f:
        boot = f.read(512)
        sectors_per_track, heads = struct.unpack_from("<HH", boot, 24)
        if not sectors_per_track or not heads:
            f.seek(24)
            f.write(struct.pack("<HH", 32, 64))
        bytes_per_sector, sectors_per_cluster, reserved = struct.unpack_from("<HBH", boot, 11)
        fats, root_entries = struct.unpack_from("<BH", boot, 16)
        sectors_per_fat = struct.unpack_from("<H", boot, 22)[0]
        root = (reserved + fats * sectors_per_fat) * bytes_per_sector
        f.seek(root)
        table = f.read(root_entries * 32)
        for offset in range(0, len(table), 32):
            entry = table[offset:offset + 32]
            if entry[0] == 0:
                break
            if entry[11] == 0x08:  # ATTR_VOLUME_ID
                f.seek(root + offset)
                f.write(LABEL.encode("ascii").ljust(11, b" "))
                break


def write_image(files: list[tuple[str, bytes]], out_path: str, fmt: str, publisher: str = "mdsvc") -> None:
    """
    Write the image to a temporary file beside C{out_path}, then rename it into place: the path
    holds a complete image or nothing new.

    @raise ConfigDriveError: the output cannot be written (one line naming it).
    """
    if fmt not in ("iso", "vfat"):
        raise ConfigDriveError(f"unknown format {fmt!r} (allowed: iso, vfat)")
    directory = os.path.dirname(os.path.abspath(out_path))
    try:
        fd, tmp = tempfile.mkstemp(prefix=".configdrive-", dir=directory)
    except OSError as e:
        raise ConfigDriveError(f"{out_path}: cannot write: {e.strerror}") from None
    try:
        with os.fdopen(fd, "r+b") as f:
            if fmt == "iso":
                write_iso(files, f, publisher)
        if fmt == "vfat":
            write_vfat(files, tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, out_path)
    except OSError as e:
        _remove(tmp)
        raise ConfigDriveError(f"{out_path}: cannot write: {e.strerror or e}") from None
    except BaseException:
        _remove(tmp)
        raise


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
