#!/usr/bin/env bash
# Install the real metadata clients that probe.py drives, all under one directory and nowhere
# else (neither the project's Python nor the system's):
#   * cloud-init     - Debian 12's package, unpacked (not installed) with dpkg -x
#   * cloudbase-init - from PyPI, into the virtualenv $MDSVC_CLIENTS_DIR/venv
#   * botocore       - from PyPI, into the same virtualenv
#   * ec2-metadata   - Debian 12's amazon-ec2-utils, unpacked (a bash script calling curl)
#   * ec2metadata    - Debian 12's cloud-guest-utils (cloud-utils' guest tools), unpacked
#   * aws-sdk-js     - from npm (v3's @aws-sdk/ec2-metadata-service and v2's aws-sdk), into
#                      $MDSVC_CLIENTS_DIR/node (needs node and npm: apt-get install nodejs npm)
# The tests run probe.py with that virtualenv's python (tests/integration/processes.py).
# Idempotent: a second run only checks that everything imports and the stamps are there (~1 s).
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

# ------------------------------------------------- Debian packages, unpacked
# unpack PACKAGE DIR: Debian's PACKAGE unpacked (not installed) into DIR, its version in
# DIR/VERSION (the stamp: an unpacked tree without it is unpacked again).
unpack() {
    local package="$1" root="$2" tmp deb version
    if [ -f "$root/VERSION" ]; then
        return 0
    fi
    tmp="$(mktemp -d)"
    # Download as root without apt's _apt sandbox (the temp dir is root-only).
    if ! (cd "$tmp" && apt-get download -q -o APT::Sandbox::User=root "$package" >/dev/null 2>&1); then
        apt-get update -q >/dev/null
        (cd "$tmp" && apt-get download -q -o APT::Sandbox::User=root "$package" >/dev/null)
    fi
    deb="$(ls "$tmp"/"${package}"_*.deb)"
    version="$(dpkg-deb -f "$deb" Version)"
    mkdir -p "$CLIENTS_DIR"
    rm -rf "$root.new"
    dpkg -x "$deb" "$root.new"
    echo "$version" > "$root.new/VERSION"
    rm -rf "$root" "$tmp"
    mv "$root.new" "$root"
    installed+=("$package $version (apt, unpacked in $root)")
}

unpack cloud-init "$CI_ROOT"
unpack amazon-ec2-utils "$CLIENTS_DIR/amazon-ec2-utils"
unpack cloud-guest-utils "$CLIENTS_DIR/cloud-guest-utils"
ci_version="$(cat "$CI_ROOT/VERSION")"

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

# ------------------------------------------------------ aws-sdk-js (npm)
NODE_DIR="$CLIENTS_DIR/node"
NPM_PKGS=(@aws-sdk/ec2-metadata-service@3 aws-sdk@2)
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    echo "install.sh: aws-sdk-js needs node and npm: apt-get install nodejs npm" >&2
    exit 1
fi
check_node() {
    NODE_PATH="$NODE_DIR/node_modules" node -e 'require("@aws-sdk/ec2-metadata-service"); require("aws-sdk")' >/dev/null 2>&1
}
if [ ! -f "$NODE_DIR/.installed" ] || ! check_node; then
    mkdir -p "$NODE_DIR"
    rm -f "$NODE_DIR/.installed"
    npm install --prefix "$NODE_DIR" --no-audit --no-fund --silent "${NPM_PKGS[@]}" >/dev/null
    check_node || { echo "install.sh: the AWS SDK for JavaScript still fails to load after npm install" >&2; exit 1; }
    touch "$NODE_DIR/.installed"
    installed+=("npm: ${NPM_PKGS[*]} (in $NODE_DIR)")
fi

versions="$("$PYTHON" - <<'PY'
from importlib.metadata import version
print("cloudbase-init %s, botocore %s" % (version("cloudbase-init"), version("botocore")))
PY
)"
js_versions="$(NODE_PATH="$NODE_DIR/node_modules" node -p 'require("@aws-sdk/ec2-metadata-service/package.json").version + ", aws-sdk " + require("aws-sdk/package.json").version')"
versions="$versions, @aws-sdk/ec2-metadata-service $js_versions, amazon-ec2-utils $(cat "$CLIENTS_DIR/amazon-ec2-utils/VERSION"), cloud-guest-utils $(cat "$CLIENTS_DIR/cloud-guest-utils/VERSION")"
if [ ${#installed[@]} -eq 0 ]; then
    echo "install.sh: already installed: cloud-init $ci_version, $versions (in $CLIENTS_DIR)"
else
    joined="$(printf '%s; ' "${installed[@]}")"
    echo "install.sh: installed ${joined%; }; now: cloud-init $ci_version, $versions"
fi
