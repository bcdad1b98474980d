#!/usr/bin/env bash
# What bench/run.py needs on a fresh Debian 12 machine, installed only where missing (idempotent;
# about a second when everything is there):
#   - Debian's wrk (the load generator) and haproxy (shape 2, Neutron's namespace proxy);
#   - iproute2 (ip netns, for --namespaces), iptables (the guests' SNAT rules of shapes 4 and 5,
#     ab.py and counted.py) and util-linux (taskset);
#   - valgrind (bench/counted.py: the servers' instructions per request, under callgrind);
#   - the Nova peer (shape 6): PyPI `nova`, `gunicorn` and `PyMySQL` (Nova on MariaDB: the store = nova
#     tests and benchmark) in their OWN virtualenv, so Nova's pinned
#     dependencies never touch the project's Python. Default /var/cache/mdsvc-bench/nova-venv,
#     or $MDSVC_BENCH_NOVA_VENV.
#   - the project itself (pip install -e .) into $PYTHON, as `make install` does, when it is not
#     importable yet.
# Needs root for apt-get (the rest does not).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV=${MDSVC_BENCH_NOVA_VENV:-/var/cache/mdsvc-bench/nova-venv}
export DEBIAN_FRONTEND=noninteractive

missing=""
for tool in wrk:wrk haproxy:haproxy ip:iproute2 iptables-restore:iptables taskset:util-linux callgrind_control:valgrind; do
  command -v "${tool%%:*}" >/dev/null 2>&1 || [ -x "/usr/sbin/${tool%%:*}" ] || missing="$missing ${tool##*:}"
done
if [ -n "$missing" ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "bench/install.sh: needs root to apt-get install:$missing" >&2
    exit 1
  fi
  echo "bench/install.sh: apt-get install$missing"
  # apt-get update only when the package lists do not know a package yet (a fresh image).
  for pkg in $missing; do
    if ! apt-cache show "$pkg" >/dev/null 2>&1; then
      apt-get update -qq
      break
    fi
  done
  apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi

# The project (for mdsvc-manage and twistd's mdsvc plugin).
if ! "$PYTHON" -c "import mdsvc.tap" >/dev/null 2>&1; then
  "$PYTHON" -m pip install -q -e . --config-settings editable_mode=compat 2>&1 | grep -v '^WARNING: '  || true
fi

# The Nova peer in its own virtualenv. A stamp file marks a complete install, so an interrupted
# one is finished the next time.
if [ ! -f "$VENV/.mdsvc-bench-complete" ] || ! "$VENV/bin/python" -W ignore -c "import nova.api.metadata.handler, gunicorn, pymysql" >/dev/null 2>&1; then
  echo "bench/install.sh: nova + gunicorn + PyMySQL into $VENV (about half a minute the first time)"
  mkdir -p "$(dirname "$VENV")"
  [ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip 2>&1 | grep -v '^WARNING: '  || true
  "$VENV/bin/python" -m pip install -q nova gunicorn PyMySQL 2>&1 | grep -v '^WARNING: '  || true
  "$VENV/bin/python" -W ignore -c "import nova.api.metadata.handler, gunicorn, pymysql"
  "$VENV/bin/python" -m pip freeze > "$VENV/.mdsvc-bench-complete"
fi
echo "bench/install.sh: ready (wrk $(wrk -v 2>&1 | head -1 | awk '{print $2}'), $(haproxy -v | head -1 | awk '{print $1, $3}'), nova $("$VENV/bin/python" -W ignore -c 'import importlib.metadata as m; print(m.version("nova"))'))"
