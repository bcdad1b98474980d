"""
store = nova when Nova's database goes away and comes back, and when Nova changes an instance:
503 within C{[mdsvc] database_timeout} with one clear log line, served again without a restart
once the database is back; a change is served at the latest after C{metadata_cache_expiration}.
"""

from __future__ import annotations

import signal
import time

from twisted.trial.unittest import SynchronousTestCase

from tests.integration.nova_cloud import request, shared_nova_cloud

PATH = "/openstack/latest/meta_data.json"


class OutageTests(SynchronousTestCase):
    """The database stopped and started again under a running api node."""

    def test_database_down_and_back(self) -> None:
        """
        With MariaDB stopped, a request that needs the database is answered 503 within the
        timeout (2 s here), and the log says why; once MariaDB runs again the same process
        serves the instance.
        """
        cloud = shared_nova_cloud()
        api = cloud.start_mdsvc(cloud.workdir("mdsvc-outage-"), cache=0)
        headers = cloud.proxy_headers("vol")
        self.assertEqual(request(api.port, "GET", PATH, headers)[0], 200)
        cloud.server.stop()
        try:
            started = time.monotonic()
            status, _, _ = request(api.port, "GET", PATH, headers)
            elapsed = time.monotonic() - started
            self.assertEqual(status, 503)
            self.assertLess(elapsed, 2.5)
            self.assertEqual(request(api.port, "GET", "/latest/meta-data/hostname", cloud.proxy_headers("web"))[0], 503)
        finally:
            cloud.server.start()
        api.wait_until(lambda: "the instance store is unavailable: mysql+pymysql://mdsvc:***@127.0.0.1" in api.log(),
                       "the outage's log line")
        self.assertEqual(request(api.port, "GET", PATH, headers)[0], 200)
        self.assertEqual(request(api.port, "GET", "/latest/meta-data/hostname", cloud.proxy_headers("web"))[2], b"web.novalocal")
        self.assertNotIn("mdsvc-db-secret", api.log())


    def test_database_hung(self) -> None:
        """
        With MariaDB frozen (SIGSTOP: connections accepted, nothing answered), a request is
        answered 503 within the timeout, not when the kernel gives up; thawed, it is served.
        """
        cloud = shared_nova_cloud()
        api = cloud.start_mdsvc(cloud.workdir("mdsvc-hung-"), cache=0)
        headers = cloud.proxy_headers("vol")
        self.assertEqual(request(api.port, "GET", PATH, headers)[0], 200)
        process = cloud.server.process
        assert process is not None
        process.send_signal(signal.SIGSTOP)
        try:
            started = time.monotonic()
            status = request(api.port, "GET", PATH, headers)[0]
            elapsed = time.monotonic() - started
        finally:
            process.send_signal(signal.SIGCONT)
        self.assertEqual(status, 503)
        self.assertLess(elapsed, 3.0)
        api.wait_until(lambda: "no answer from Nova's database within 2 s" in api.log(), "the timeout's log line")
        deadline = time.monotonic() + 15
        while request(api.port, "GET", PATH, headers)[0] != 200:
            self.assertLess(time.monotonic(), deadline, "not served again after the database thawed")
            time.sleep(0.2)


class ChangeTests(SynchronousTestCase):
    """What Nova changes reaches guests within the cache time."""

    def test_change_served_after_cache_expiration(self) -> None:
        """
        A metadata change Nova writes is not served while the instance's render is cached (3 s),
        and is served once it expires.
        """
        cloud = shared_nova_cloud()
        api = cloud.start_mdsvc(cloud.workdir("mdsvc-change-"), cache=3)
        headers = cloud.proxy_headers("far")
        uuid = cloud.uuid("far")
        self.assertNotIn(b'"meta"', request(api.port, "GET", PATH, headers)[2])
        cached_at = time.monotonic()
        cloud.server.execute(
            "INSERT INTO nova_cell2.instance_metadata (created_at, instance_uuid, `key`, value, deleted) "
            f"VALUES (NOW(), '{uuid}', 'changed', 'yes', 0)"
        )
        self.assertNotIn(b'"meta"', request(api.port, "GET", PATH, headers)[2])
        while b'"meta": {"changed": "yes"}' not in request(api.port, "GET", PATH, headers)[2]:
            self.assertLess(time.monotonic() - cached_at, 3.5, "the change was not served within metadata_cache_expiration")
            time.sleep(0.1)
        self.assertGreaterEqual(time.monotonic() - cached_at, 2.5)
