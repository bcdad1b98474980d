"""The haproxy configuration Neutron's metadata agents write for a network (spec §8), written once.

Used by the OVN end-to-end test (the OVN agent's variant) and by ``bench/run.py``'s shape 2 (the
DHCP-namespace variant). What differs from Neutron's own file is only what running it in a test
needs: no user/group/daemon (haproxy runs in the foreground as the caller), the pidfile in the
test's directory, and the addresses it binds.
"""

from __future__ import annotations

import os


def neutron_haproxy_config(path: str, resource_id: str, binds: list[str], socket_path: str, header_lines: list[str]) -> str:
    """
    Write Neutron's metadata haproxy configuration for C{resource_id} (a network or router id) to
    C{path} and return C{path}.

    @param binds: the C{bind} lines' arguments (e.g. C{"127.0.0.1:8080"}).
    @param socket_path: the metadata agent's UNIX socket the requests go to.
    @param header_lines: the C{http-request} lines of the variant (which identity header is
        deleted, set or added).
    """
    directory = os.path.dirname(path)
    bind_lines = "".join(f"    bind {bind}\n" for bind in binds)
    request_lines = "".join(f"    http-request {line}\n" for line in header_lines)
    with open(path, "w") as f:
        f.write(f"""global
    log         /dev/log local0 info
    log-tag     haproxy-metadata-proxy-{resource_id}
    maxconn     1024
    nbthread    2
    pidfile     {directory}/{resource_id}.pid.haproxy

defaults
    log global
    mode http
    option httplog
    option dontlognull
    option http-server-close
    option forwardfor
    retries                 3
    timeout http-request    30s
    timeout connect         30s
    timeout client          32s
    timeout server          32s
    timeout http-keep-alive 30s

listen listener
{bind_lines}
    server metadata {socket_path}

{request_lines}""")
    return path
