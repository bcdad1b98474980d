#!/usr/bin/env bash
# Install the real metadata clients that probe.py drives, all under one directory and nowhere
# else (neither the project's Python nor the system's):
#   * cloud-init     - Debian 12's package, unpacked (not installed) with dpkg -x
#   * cloudbase-init - from PyPI, into the virtualenv $MDSVC_CLIENTS_DIR/venv
#   * botocore       - from PyPI, into the same virtualenv
# The tests run probe.py with that virtualenv's python (tests/integration/processes.py).
# Idempotent: a second run only checks that everything imports (~1 s).
# Env: MDSVC_CLIENTS_DIR (default /var/cache/mdsvc-test-clients),
#      PYTHON (default python3: the interpreter the virtualenv is made from).
set -euo pipefail

CLIENTS_DIR="${MDSVC_CLIENTS_DIR:-/var/cache/mdsvc-test-clients}"
BASE_PYTHON="${PYTHON:-python3}"
VENV="$CLIENTS_DIR/venv"
PYTHON="$VENV/bin/python"
CI_ROOT="$CLIENTS_DIR/cloud-init"
CI_PKGS="$CI_ROOT/usr/lib/python3/dist-packages"
# Minimal set found by trial: cloud-init's OpenStack/EC2 readers import
# yaml, requests and configobj (jinja2, jsonpatch, jsonschema, oauthlib and
# netifaces are not needed for that code path).
PIP_PKGS=(pyyaml requests configobj cloudbase-init botocore)

installed=()

# ---------------------------------------------------------------- cloud-init
if [ -f "$CI_PKGS/cloudinit/sources/helpers/openstack.py" ] && [ -f "$CI_ROOT/VERSION" ]; then
    ci_version="$(cat "$CI_ROOT/VERSION")"
else
    tmp="$(mktemp -d)"
    trap 'rm -rf "$tmp"' EXIT
    # Download as root without apt's _apt sandbox (the temp dir is root-only).
    if ! (cd "$tmp" && apt-get download -q -o APT::Sandbox::User=root cloud-init >/dev/null 2>&1); then
        apt-get update -q >/dev/null
        (cd "$tmp" && apt-get download -q -o APT::Sandbox::User=root cloud-init >/dev/null)
    fi
    deb="$(ls "$tmp"/cloud-init_*.deb)"
    ci_version="$(dpkg-deb -f "$deb" Version)"
    mkdir -p "$CLIENTS_DIR"
    rm -rf "$CI_ROOT.new"
    dpkg -x "$deb" "$CI_ROOT.new"
    echo "$ci_version" > "$CI_ROOT.new/VERSION"
    rm -rf "$CI_ROOT"
    mv "$CI_ROOT.new" "$CI_ROOT"
    installed+=("cloud-init $ci_version (apt, unpacked in $CI_ROOT)")
fi

# ---------------------------------------------------------- Python packages
check_imports() {
    "$PYTHON" - "$CI_PKGS" <<'PY' >/dev/null 2>&1
import sys
sys.path.insert(0, sys.argv[1])
import cloudinit.sources.helpers.openstack, cloudinit.sources.helpers.ec2
import cloudinit.sources.DataSourceOpenStack
import cloudbaseinit.conf, cloudbaseinit.metadata.services.httpservice
import botocore.utils, botocore.session
PY
}
if ! check_imports; then
    if [ ! -x "$PYTHON" ]; then
        mkdir -p "$CLIENTS_DIR"
        rm -rf "$VENV"
        "$BASE_PYTHON" -m venv "$VENV"
    fi
    "$PYTHON" -m pip install -q --disable-pip-version-check "${PIP_PKGS[@]}"
    check_imports || { echo "install.sh: clients still fail to import after pip install" >&2; exit 1; }
    installed+=("pip: ${PIP_PKGS[*]} (in $VENV)")
fi

versions="$("$PYTHON" - <<'PY'
from importlib.metadata import version
print("cloudbase-init %s, botocore %s" % (version("cloudbase-init"), version("botocore")))
PY
)"
if [ ${#installed[@]} -eq 0 ]; then
    echo "install.sh: already installed: cloud-init $ci_version, $versions (in $CLIENTS_DIR)"
else
    joined="$(printf '%s; ' "${installed[@]}")"
    echo "install.sh: installed ${joined%; }; now: cloud-init $ci_version, $versions"
fi
