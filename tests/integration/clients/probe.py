#!/usr/bin/env python3
"""Run one REAL, unmodified metadata client against a metadata base URL.

usage: probe.py CLIENT BASE_URL [--post-password PW] [--timeout S]
                [--retries N] [--deadline S] [--verbose]

CLIENT is one of: cloud-init, cloud-init-ec2, cloudbase-init, botocore,
aws-sdk-js, aws-sdk-js-v2, ec2-metadata, ec2metadata (the last two talk
to http://169.254.169.254/ only), cloud-init-drive, cloudbase-init-drive.
Prints one JSON object on stdout and exits 0 when the client read the
metadata; exits non-zero with a one-line error on stderr otherwise.
Install the clients first with install.sh (same directory).

Byte values the clients return are made JSON-safe: UTF-8 text becomes a
string, anything else becomes {"__base64__": "..."}.
"""

import argparse
import base64
import json
import logging
import os
import shutil
import signal
import sys
import tempfile
import traceback

CLIENTS_DIR = os.environ.get("MDSVC_CLIENTS_DIR", "/var/cache/mdsvc-test-clients")
CLOUD_INIT_PKGS = os.path.join(CLIENTS_DIR, "cloud-init", "usr", "lib", "python3", "dist-packages")
EC2_METADATA = os.path.join(CLIENTS_DIR, "amazon-ec2-utils", "usr", "bin", "ec2-metadata")
EC2METADATA = os.path.join(CLIENTS_DIR, "cloud-guest-utils", "usr", "bin", "ec2metadata")
NODE_MODULES = os.path.join(CLIENTS_DIR, "node", "node_modules")
AWS_SDK_PROBE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "probe_aws_sdk.js")
FIXED_ADDRESS = "169.254.169.254"


class ProbeError(Exception):
    """The client did not manage to read the metadata."""


def jsonable(value):
    """Recursively turn what a client returned into JSON-serialisable data."""
    if isinstance(value, (bytes, bytearray)):
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            return {"__base64__": base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if hasattr(value, "_asdict"):  # namedtuples (cloudbase-init network model)
        return {k: jsonable(v) for k, v in value._asdict().items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [jsonable(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return repr(value)


def remove_tree(path):
    """Remove a directory tree, read-only directories in it too (an ISO's files are extracted read-only)."""
    for directory, _, _ in os.walk(path):
        try:
            os.chmod(directory, 0o700)
        except OSError:
            pass
    shutil.rmtree(path, ignore_errors=True)


def one_line(exc):
    text = "%s: %s" % (type(exc).__name__, exc)
    return " ".join(text.split())


# ---------------------------------------------------------------- cloud-init

def probe_cloud_init(base_url, args):
    if not os.path.isdir(os.path.join(CLOUD_INIT_PKGS, "cloudinit")):
        raise ProbeError("cloud-init not unpacked in %s: run install.sh" % CLOUD_INIT_PKGS)
    sys.path.insert(0, CLOUD_INIT_PKGS)
    from cloudinit import url_helper, version
    from cloudinit.sources.helpers import ec2, openstack

    # 1. DataSourceOpenStack.wait_for_metadata_service(): probe
    #    combine_url(metadata_url, "openstack") and keep the base URL.
    md_url = url_helper.combine_url(base_url, "openstack")
    avail_url, _resp = url_helper.wait_for_url(
        urls=[md_url], max_wait=args.timeout, timeout=args.timeout,
        status_cb=lambda msg: None)
    if not avail_url:
        raise ProbeError("metadata service not available at %s" % md_url)

    # 2. DataSourceOpenStack._crawl_metadata() -> read_metadata_service(base)
    #    == MetadataReader(base, ...).read_v2().  The only change: the stock
    #    MetadataReader._read_ec2_metadata() calls ec2.get_instance_metadata()
    #    with its default address http://169.254.169.254 whatever base_url
    #    is, so we point that same call at base_url instead.  We also record
    #    the OpenStack version _find_working_version() selected.
    chosen = {}

    class Reader(openstack.MetadataReader):
        def _find_working_version(self):
            chosen["version"] = super()._find_working_version()
            return chosen["version"]

        def _read_ec2_metadata(self):
            return ec2.get_instance_metadata(
                metadata_address=self.base_path,
                ssl_details=self.ssl_details,
                timeout=self.timeout,
                retries=self.retries,
            )

    reader = Reader(base_url, ssl_details=None, timeout=args.timeout, retries=args.retries)
    try:
        results = reader.read_v2()
    except (OSError, openstack.NonReadable, openstack.BrokenMetadata) as e:
        raise ProbeError("read_v2 failed: %s" % one_line(e)) from e

    out = {
        "client": "cloud-init",
        "client_version": version.version_string(),
        "metadata_address": base_url,
        "version": chosen.get("version"),
        "available_versions": reader._versions,
        "format_version": results.get("version"),
    }
    for key in ("metadata", "userdata", "vendordata", "vendordata2",
                "networkdata", "ec2-metadata", "files", "network_config", "dsmode"):
        if key in results:
            out[key] = jsonable(results[key])
    # What DataSourceOpenStack derives from it (the ssh keys cloud-init installs).
    # SourceMixin.get_public_ssh_keys() only reads .metadata and .version.
    keys_view = type("KeysView", (openstack.SourceMixin,), {})()
    keys_view.metadata, keys_view.version = results["metadata"], results["version"]
    out["public_keys"] = keys_view.get_public_ssh_keys()
    return out


# ------------------------------------------------------ cloud-init, EC2 (IMDSv2)

def probe_cloud_init_ec2(base_url, args):
    if not os.path.isdir(os.path.join(CLOUD_INIT_PKGS, "cloudinit")):
        raise ProbeError("cloud-init not unpacked in %s: run install.sh" % CLOUD_INIT_PKGS)
    sys.path.insert(0, CLOUD_INIT_PKGS)
    from cloudinit import helpers, version
    from cloudinit.sources import DataSourceEc2

    # DataSourceEc2 as cloud-init builds it, with metadata_urls = [BASE_URL].  The one change:
    # the platform is AWS, which cloud-init otherwise learns from DMI data this machine does
    # not have; on AWS (only) it uses IMDSv2: PUT latest/api/token first, then the token on
    # every request, a fresh token on a 401, and no metadata service at all without a token.
    state = tempfile.mkdtemp(prefix="probe-ec2-")
    paths = helpers.Paths({"cloud_dir": state, "run_dir": state})
    sys_cfg = {"datasource": {"Ec2": {"metadata_urls": [base_url.rstrip("/")], "timeout": max(1, int(args.timeout)),
                                      "max_wait": max(1, int(args.timeout) * 2)}}}
    ds = DataSourceEc2.DataSourceEc2(sys_cfg, None, paths)
    ds._cloud_name = DataSourceEc2.CloudNames.AWS
    crawled = ds.crawl_metadata()  # wait_for_metadata_service, the API version, user-data, meta-data, identity
    if not crawled:
        raise ProbeError("DataSourceEc2.crawl_metadata() found no metadata service at %s" % base_url)
    if not ds._api_token:
        raise ProbeError("DataSourceEc2 read the metadata without a session token")
    meta = crawled["meta-data"]
    identity = crawled.get("dynamic", {}).get("instance-identity", {}).get("document", {})
    return {
        "client": "cloud-init-ec2",
        "client_version": version.version_string(),
        "metadata_address": ds.metadata_address,
        "api_version": crawled["_metadata_api_version"],
        "token_length": len(ds._api_token),
        "instance_id": meta.get("instance-id"),
        "local_hostname": meta.get("local-hostname"),
        "local_ipv4": meta.get("local-ipv4"),
        "public_keys": jsonable(meta.get("public-keys")),
        "user_data": jsonable(crawled["user-data"]),
        "identity": jsonable(identity),
    }


# ---------------------------------------------------- ec2-metadata, ec2metadata

def _fixed_address_only(name, base_url):
    """These scripts talk to 169.254.169.254 and nothing else (the token PUT is not configurable)."""
    import urllib.parse
    if urllib.parse.urlsplit(base_url).hostname != FIXED_ADDRESS:
        raise ProbeError("%s only talks to http://%s/: run it where that is the metadata service" % (name, FIXED_ADDRESS))


def _run(argv, name, **env):
    import subprocess
    result = subprocess.run(argv, capture_output=True, timeout=args_deadline(), env=dict(os.environ, LC_ALL="C", **env))
    if result.returncode != 0:
        raise ProbeError("%s exited %d: %s" % (name, result.returncode,
                                              " ".join((result.stdout + result.stderr).decode(errors="replace").split())[:300]))
    return result.stdout.decode("utf-8", "replace")


def probe_ec2_metadata(base_url, args):
    # amazon-ec2-utils' ec2-metadata (Debian's package, unpacked), unmodified: a bash script that
    # PUTs latest/api/token with curl (and stops if it gets no token), then GETs with the token.
    if not os.path.exists(EC2_METADATA):
        raise ProbeError("amazon-ec2-utils not unpacked in %s: run install.sh" % CLIENTS_DIR)
    _fixed_address_only("ec2-metadata", base_url)
    text = _run(["bash", EC2_METADATA, "--instance-id", "--local-hostname", "--local-ipv4", "--availability-zone",
                 "--public-keys", "--user-data"], "ec2-metadata")
    out = {"client": "ec2-metadata", "client_version": _file_version(EC2_METADATA), "raw": text}
    for line in text.splitlines():
        key, sep, value = line.partition(": ")
        if sep and key in ("instance-id", "local-hostname", "local-ipv4", "placement", "user-data"):
            out[key.replace("-", "_")] = value
    out["public_key"] = next((line for line in text.splitlines() if line.startswith("ssh-")), None)
    return out


def probe_ec2metadata(base_url, args):
    # cloud-utils' ec2metadata (Debian's cloud-guest-utils, unpacked), unmodified: urllib, a
    # token PUT to 169.254.169.254 (always: it has no IMDSv1 fallback), then GETs of BASE_URL's
    # 2009-04-04 tree with the token.
    if not os.path.exists(EC2METADATA):
        raise ProbeError("cloud-guest-utils not unpacked in %s: run install.sh" % CLIENTS_DIR)
    _fixed_address_only("ec2metadata", base_url)
    options = ["instance-id", "local-hostname", "local-ipv4", "availability-zone", "public-keys", "user-data"]
    text = _run([sys.executable, EC2METADATA, "--url", base_url.rstrip("/") + "/2009-04-04"] + ["--" + o for o in options],
                "ec2metadata")
    lines = text.splitlines()
    out = {"client": "ec2metadata", "client_version": _file_version(EC2METADATA)}
    for option, value in zip(options, lines, strict=False):  # (user-data, last, may span lines)
        out[option.replace("-", "_")] = value
    return out


def _file_version(path):
    # the unpacked package's version, written by install.sh next to its tree
    root = path.split("/usr/bin/")[0]
    try:
        with open(os.path.join(root, "VERSION")) as f:
            return f.read().strip()
    except OSError:
        return None


def args_deadline():
    return _DEADLINE[0]


_DEADLINE = [60.0]


# ------------------------------------------------------------- aws-sdk-js

def probe_aws_sdk_js(base_url, args, flavour="v3"):
    import shutil
    node = shutil.which("node")
    if node is None or not os.path.isdir(NODE_MODULES):
        raise ProbeError("node or the AWS SDK for JavaScript is missing in %s: run install.sh" % NODE_MODULES)
    text = _run([node, AWS_SDK_PROBE, flavour, base_url, str(int(args.timeout * 1000))], "aws-sdk-js " + flavour,
                NODE_PATH=NODE_MODULES)
    import json as _json
    return _json.loads(text)


def probe_aws_sdk_js_v2(base_url, args):
    return probe_aws_sdk_js(base_url, args, "v2")


# ------------------------------------------------------------ cloudbase-init

def probe_cloudbase_init(base_url, args):
    from cloudbaseinit import conf as cbinit_conf
    CONF = cbinit_conf.CONF
    # No config files, no CLI args: only what we set below.
    CONF(args=[], project="cloudbase-init", default_config_files=[])
    CONF.set_override("metadata_base_url", base_url, group="openstack")
    # check_metadata_ip_route() needs the Windows osutils; not for a test.
    CONF.set_override("add_metadata_private_ip_route", False, group="openstack")
    CONF.set_override("retry_count", args.retries)
    CONF.set_override("retry_count_interval", 0.2)

    from cloudbaseinit.metadata.services import base as svc_base
    from cloudbaseinit.metadata.services import httpservice

    svc = httpservice.HttpService()
    if not svc.load():
        # load() swallows the reason; ask again to report it.
        try:
            svc.get_instance_id()
        except Exception as e:
            raise ProbeError("HttpService.load() failed: %s" % one_line(e)) from e
        raise ProbeError("HttpService.load() returned False")

    def opt(fn):
        try:
            return jsonable(fn())
        except svc_base.NotExistingMetadataException:
            return None

    try:
        out = {
            "client": "cloudbase-init",
            "client_version": _dist_version("cloudbase-init"),
            "metadata_base_url": CONF.openstack.metadata_base_url,
            "instance_id": svc.get_instance_id(),
            "host_name": svc.get_host_name(),
            # get_public_keys() returns list(set(...)): sort for stable output.
            "public_keys": sorted(svc.get_public_keys() or []),
            "user_data": opt(svc.get_decoded_user_data),
            "network_details": opt(svc.get_network_details),
            "network_details_v2": opt(svc.get_network_details_v2),
            "admin_username": opt(svc.get_admin_username),
            "admin_password": opt(svc.get_admin_password),
            "can_post_password": svc.can_post_password,
            "is_password_set": svc.is_password_set,
        }
    except Exception as e:
        raise ProbeError("reading metadata failed: %s" % one_line(e)) from e

    if args.post_password is not None:
        # The real call SetUserPasswordPlugin makes (it passes the password
        # already RSA-encrypted and base64-encoded; we pass PW verbatim).
        try:
            out["post_password"] = {"returned": svc.post_password(args.post_password)}
        except Exception as e:
            # e.g. 409: post_password() only catches urllib's HTTPError, but
            # _http_request() raises requests.HTTPError, so a 409 escapes.
            status = getattr(getattr(e, "response", None), "status_code", None)
            out["post_password"] = {"raised": type(e).__module__ + "." + type(e).__name__,
                                    "status": status, "error": one_line(e)}
        out["is_password_set_after"] = _fresh_is_password_set(svc)
    return out


def _fresh_is_password_set(svc):
    svc._cache = {}  # is_password_set goes through the cache; re-read.
    try:
        return svc.is_password_set
    except Exception as e:
        return "error: " + one_line(e)


def _dist_version(name):
    from importlib.metadata import version
    return version(name)


# ------------------------------------------------------------- config drives
#
# The "base_url" argument of these probes is the path of an image file (ISO 9660 or VFAT).
# Guests see a config drive as a block device; this machine cannot mount ISO 9660, so each
# probe reads the image the way its client does where that needs no mount: cloudbase-init
# extracts ISO drives with bsdtar and VFAT drives with mtools (its own vfat module is used
# unmodified); cloud-init mounts the device, which is replaced by extracting it with bsdtar or
# mcopy, after which its own read_config_drive() reads the tree.

def _image_kind(path):
    with open(path, "rb") as f:
        f.seek(0x8001)
        if f.read(5) == b"CD001":
            return "iso"
    return "vfat"


def _extract(path, target):
    import subprocess
    if _image_kind(path) == "iso":
        # cloudbase-init's _extract_files_from_iso: [bsdtar, '-xf', iso, '-C', target]
        subprocess.run(["bsdtar", "-xf", path, "-C", target], check=True, capture_output=True)
    else:
        subprocess.run(["mcopy", "-s", "-n", "-i", path, "::/", target + "/"], check=True, capture_output=True)


def _blkid_label(path):
    import subprocess
    result = subprocess.run(["blkid", "-o", "value", "-s", "LABEL", path], capture_output=True, text=True)
    return result.stdout.strip() or None


def probe_cloud_init_drive(image, args):
    import tempfile
    if not os.path.isdir(os.path.join(CLOUD_INIT_PKGS, "cloudinit")):
        raise ProbeError("cloud-init not unpacked in %s: run install.sh" % CLOUD_INIT_PKGS)
    sys.path.insert(0, CLOUD_INIT_PKGS)
    from cloudinit.sources import DataSourceConfigDrive
    from cloudinit.sources.helpers import openstack

    label = _blkid_label(image)
    labels = getattr(DataSourceConfigDrive, "FS_LABELS", ("config-2", "CONFIG-2"))
    if label not in labels:
        raise ProbeError("blkid finds label %r, cloud-init looks for config-2" % label)
    target = tempfile.mkdtemp(prefix="probe-drive-")
    _extract(image, target)
    try:
        results = DataSourceConfigDrive.read_config_drive(target)
    except (openstack.NonReadable, openstack.BrokenMetadata) as e:
        raise ProbeError("read_config_drive failed: %s" % one_line(e)) from e
    out = {"client": "cloud-init-drive", "label": label, "kind": _image_kind(image)}
    for key in ("metadata", "userdata", "vendordata", "vendordata2", "networkdata", "ec2-metadata", "files", "version", "dsmode"):
        if key in results:
            out[key] = jsonable(results[key])
    return out


def probe_cloudbase_init_drive(image, args):
    from cloudbaseinit import conf as cbinit_conf
    CONF = cbinit_conf.CONF
    CONF(args=[], project="cloudbase-init", default_config_files=[])
    kind = _image_kind(image)

    import subprocess
    import tempfile

    from cloudbaseinit.metadata.services import base as svc_base
    from cloudbaseinit.metadata.services import configdrive
    from cloudbaseinit.metadata.services.osconfigdrive import base as drive_base
    from cloudbaseinit.metadata.services.osconfigdrive import factory
    from cloudbaseinit.utils.windows import vfat

    # mtools under the names cloudbase-init calls them by
    tools = tempfile.mkdtemp(prefix="probe-mtools-")
    for name in ("mlabel", "mcopy"):  # mtools dispatches on argv[0]: wrap, don't link
        wrapper = os.path.join(tools, name + ".exe")
        with open(wrapper, "w") as f:
            f.write('#!/bin/sh\nexec /usr/bin/%s "$@"\n' % name)
        os.chmod(wrapper, 0o755)
    CONF.set_override("mtools_path", tools)

    class LinuxOSUtils:
        """execute_process as cloudbase-init's osutils has it: (out, err, exit code)."""

        def execute_process(self, args, shell=True, decode_output=False):
            result = subprocess.run(args, capture_output=True)
            return result.stdout, result.stderr, result.returncode

    class LinuxDriveManager(drive_base.BaseConfigDriveManager):
        """The Windows manager's extraction steps, on an image file instead of a physical drive."""

        def get_config_drive_files(self, drive_label, metadata_file, searched_types=None, searched_locations=None):
            if kind == "iso":
                out, err, code = LinuxOSUtils().execute_process(["bsdtar", "-xf", image, "-C", self.target_path], False)
                if code:
                    raise ProbeError("bsdtar failed: %s" % err.decode(errors="replace"))
                return os.path.exists(os.path.join(self.target_path, metadata_file.replace("\\", "/")))
            osutils = LinuxOSUtils()
            if not vfat.is_vfat_drive(osutils, image, drive_label):
                raise ProbeError("cloudbase-init's is_vfat_drive does not see label %s" % drive_label)
            vfat.copy_from_vfat_drive(osutils, image, self.target_path)
            return True

    factory.get_config_drive_manager = lambda: LinuxDriveManager()
    svc = configdrive.ConfigDriveService()
    if not svc.load():
        raise ProbeError("ConfigDriveService.load() found no drive")
    svc._metadata_file = "openstack/latest/meta_data.json"

    def opt(fn):
        try:
            return jsonable(fn())
        except svc_base.NotExistingMetadataException:
            return None

    return {
        "client": "cloudbase-init-drive",
        "kind": kind,
        "instance_id": svc.get_instance_id(),
        "host_name": svc.get_host_name(),
        "public_keys": sorted(svc.get_public_keys() or []),
        "user_data": opt(svc.get_decoded_user_data),
        "admin_password": opt(svc.get_admin_password),
        "network_details_v2": opt(svc.get_network_details_v2),
        "files": sorted(os.path.relpath(os.path.join(d, f), svc._metadata_path)
                        for d, _, fs in os.walk(svc._metadata_path) for f in fs),
    }


# ------------------------------------------------------------------ botocore

def probe_botocore(base_url, args):
    # Configure botocore the way a user on an instance would: through the
    # environment, read by the session's config chain.  Isolate from any
    # ~/.aws files and from AWS_EC2_METADATA_DISABLED.
    os.environ["AWS_EC2_METADATA_SERVICE_ENDPOINT"] = base_url
    # botocore parses this setting as an int.
    os.environ["AWS_METADATA_SERVICE_TIMEOUT"] = str(max(1, int(round(args.timeout))))
    os.environ["AWS_METADATA_SERVICE_NUM_ATTEMPTS"] = "1"
    os.environ["AWS_CONFIG_FILE"] = os.devnull
    os.environ["AWS_SHARED_CREDENTIALS_FILE"] = os.devnull
    for var in ("AWS_EC2_METADATA_DISABLED", "AWS_EC2_METADATA_V1_DISABLED",
                "AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE", "AWS_PROFILE"):
        os.environ.pop(var, None)

    import botocore
    import botocore.session
    from botocore import utils

    session = botocore.session.Session()
    # What botocore does when it resolves the region from IMDS:
    # IMDSRegionProvider -> InstanceMetadataRegionFetcher.retrieve_region()
    # (PUT latest/api/token, then GET latest/meta-data/placement/availability-zone/).
    provider = utils.IMDSRegionProvider(session)
    region = provider.provide()
    region_fetcher = provider._get_fetcher()

    # The same IMDSFetcher machinery, given base_url directly.
    fetcher = utils.IMDSFetcher(timeout=args.timeout, num_attempts=1, base_url=base_url,
                                env=dict(os.environ))
    token = fetcher._fetch_metadata_token()

    def get(path):
        try:
            resp = fetcher._get_request(url_path=path, retry_func=None, token=token)
        except fetcher._RETRIES_EXCEEDED_ERROR_CLS as e:
            raise ProbeError("GET %s failed (no 200 with a body after 1 attempt)"
                             % fetcher._construct_url(path)) from e
        return resp.text

    out = {
        "client": "botocore",
        "client_version": botocore.__version__,
        "base_url": region_fetcher.get_base_url(),
        "region": region,
        "token": token,
        "instance_id": get("latest/meta-data/instance-id"),
        "hostname": get("latest/meta-data/hostname"),
    }
    return out


PROBES = {
    "cloud-init": probe_cloud_init,
    "cloud-init-ec2": probe_cloud_init_ec2,
    "ec2-metadata": probe_ec2_metadata,
    "ec2metadata": probe_ec2metadata,
    "aws-sdk-js": probe_aws_sdk_js,
    "aws-sdk-js-v2": probe_aws_sdk_js_v2,
    "cloudbase-init": probe_cloudbase_init,
    "botocore": probe_botocore,
    "cloud-init-drive": probe_cloud_init_drive,
    "cloudbase-init-drive": probe_cloudbase_init_drive,
}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("client", choices=sorted(PROBES))
    ap.add_argument("base_url", help="metadata base URL, e.g. http://127.0.0.1:8775/")
    ap.add_argument("--post-password", metavar="PW", default=None,
                    help="cloudbase-init: also call HttpService.post_password(PW)")
    ap.add_argument("--timeout", type=float, default=2.0,
                    help="per-request timeout in seconds (default 2)")
    ap.add_argument("--retries", type=int, default=0,
                    help="client-level retries (default 0)")
    ap.add_argument("--deadline", type=float, default=60.0,
                    help="kill the probe after this many seconds (default 60)")
    ap.add_argument("--verbose", action="store_true", help="client debug logs on stderr")
    args = ap.parse_args(argv)
    _DEADLINE[0] = args.deadline

    # Every temporary file of the probe and of the clients (cloudbase-init extracts a drive into
    # tempfile.mkdtemp() and leaves it there) goes into one directory, removed at the end.
    scratch = tempfile.mkdtemp(prefix="probe-")
    tempfile.tempdir = scratch

    # cloudbase-init's requests calls have no timeout at all: a hard deadline
    # keeps a hung server from hanging the test.
    def on_alarm(_signum, _frame):
        sys.stderr.write("probe %s: deadline of %ss exceeded\n" % (args.client, args.deadline))
        sys.stderr.flush()
        remove_tree(scratch)
        os._exit(3)
    signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, args.deadline)

    # Never let a proxy from the environment sit between client and server.
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY",
                "all_proxy", "ALL_PROXY"):
        os.environ.pop(var, None)

    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.CRITICAL + 1,
                        stream=sys.stderr)
    if not args.verbose:
        logging.disable(logging.CRITICAL)

    try:
        result = PROBES[args.client](args.base_url, args)
    except ProbeError as e:
        sys.stderr.write("probe %s: %s\n" % (args.client, " ".join(str(e).split())))
        return 1
    except Exception as e:  # a crash in the client or in the probe
        if args.verbose:
            traceback.print_exc()
        sys.stderr.write("probe %s: %s\n" % (args.client, one_line(e)))
        return 2
    finally:
        remove_tree(scratch)
    sys.stdout.write(json.dumps(result, sort_keys=True) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
