"""
The password endpoint on store = nova, side by side with Nova's own metadata app on one
MariaDB: what one writes the other reads, in Nova's four chunks of 255 characters, and the
password is written once, however many api nodes and caches are in between.
"""

from __future__ import annotations

import threading
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from tests.integration.nova_cloud import request, shared_nova_cloud

PATH = "/openstack/latest/password"
_servers: dict[str, Any] = {}


def started() -> dict[str, Any]:
    """Two mdsvc api nodes (their render caches 15 s) and a Nova app without a cache, once."""
    if not _servers:
        cloud = shared_nova_cloud()
        _servers["cloud"] = cloud
        _servers["a"] = cloud.start_mdsvc(cloud.workdir("mdsvc-password-a-"), cache=15).port
        _servers["b"] = cloud.start_mdsvc(cloud.workdir("mdsvc-password-b-"), cache=15).port
        _servers["nova"] = cloud.start_nova_app(cache=0).port
    return _servers


def chunks(uuid: str) -> list[tuple[str, str]]:
    """The instance's password rows as Nova's database holds them."""
    cloud = started()["cloud"]
    out = cloud.server.execute(
        "SELECT `key`, value FROM nova_cell1.instance_system_metadata "
        f"WHERE instance_uuid = '{uuid}' AND `key` LIKE 'password%' ORDER BY `key`"
    )
    return [tuple(line.split("\t", 1)) if "\t" in line else (line, "") for line in out.splitlines()]  # type: ignore[misc]


class PasswordTests(SynchronousTestCase):
    """Nova's password rows, written once."""

    def test_nova_written_read_by_mdsvc(self) -> None:
        """The password Nova's own password code stored for C{web} is what mdsvc serves."""
        servers = started()
        cloud = servers["cloud"]
        status, content_type, body = request(servers["a"], "GET", PATH, cloud.proxy_headers("web"))
        self.assertEqual((status, content_type, body.decode()), (200, "text/html; charset=UTF-8", cloud.cloud["nova_password"]))

    def test_mdsvc_written_read_by_nova_once(self) -> None:
        """
        A POST to node A stores Nova's four chunks; Nova reads the password and refuses its own
        POST; node B, whose cache still says "no password", refuses a second POST (the rule is
        the database's, not a cache's).
        """
        servers = started()
        cloud = servers["cloud"]
        headers = cloud.proxy_headers("bare")
        self.assertEqual(request(servers["b"], "GET", PATH, headers)[:3], (200, "text/html; charset=UTF-8", b""))  # B caches "none"
        password = "".join(chr(ord("a") + i % 26) for i in range(600))
        self.assertEqual(request(servers["a"], "POST", PATH, headers, password.encode())[0], 200)
        self.assertEqual(chunks(cloud.uuid("bare")), [
            ("password_0", password[:255]), ("password_1", password[255:510]), ("password_2", password[510:]), ("password_3", ""),
        ])
        self.assertEqual(request(servers["nova"], "GET", PATH, headers)[2].decode(), password)
        self.assertEqual(request(servers["nova"], "POST", PATH, headers, b"nova-tries-again")[0], 409)
        self.assertEqual(request(servers["b"], "POST", PATH, headers, b"second")[0], 409)
        self.assertEqual(request(servers["a"], "GET", PATH, headers)[2].decode(), password)

    def test_concurrent_posts(self) -> None:
        """Sixteen concurrent POSTs through two nodes: one 200, fifteen 409, the winner's password stored."""
        servers = started()
        cloud = servers["cloud"]
        headers = cloud.proxy_headers("race")
        results: dict[str, int] = {}

        def post(n: int) -> None:
            body = f"password-{n:02d}"
            results[body] = request(servers["a" if n % 2 else "b"], "POST", PATH, headers, body.encode())[0]

        threads = [threading.Thread(target=post, args=(n,)) for n in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        winners = [body for body, status in results.items() if status == 200]
        self.assertEqual(len(winners), 1, results)
        self.assertEqual(sorted(results.values()), [200] + [409] * 15)
        self.assertEqual(request(servers["nova"], "GET", PATH, headers)[2].decode(), winners[0])
        self.assertEqual(chunks(cloud.uuid("race"))[0], ("password_0", winners[0]))

    def test_too_large(self) -> None:
        """1021 bytes: 400 from mdsvc, as from Nova; nothing stored."""
        servers = started()
        headers = servers["cloud"].proxy_headers("vol")
        self.assertEqual(request(servers["a"], "POST", PATH, headers, b"x" * 1021)[0], 400)
        self.assertEqual(request(servers["nova"], "POST", PATH, headers, b"x" * 1021)[0], 400)
        self.assertEqual(chunks(servers["cloud"].uuid("vol")), [])
