"""
store = nova with this branch's process life: several workers, SIGHUP, SIGTERM, on Nova's
databases in a real MariaDB.  Each worker opens its own engines and thread pool; a SIGHUP reaches
them all and breaks nothing (what the store takes is applied, its databases and timeout are named
as needing a restart, the database password never logged); SIGTERM stops every process cleanly,
the database threads after the drain.
"""

from __future__ import annotations

import os
import re
import signal

from twisted.trial.unittest import SynchronousTestCase

from tests.integration.nova_cloud import MDSVC_PASSWORD, request, shared_nova_cloud
from tests.integration.processes import Twistd

PATH = "/openstack/latest/meta_data.json"


class NovaWorkersTests(SynchronousTestCase):
    """The api role on store = nova with metadata_workers = 2."""

    def test_workers_reload_stop(self) -> None:
        """Both workers serve Nova's instances, take a SIGHUP and still serve, and stop on SIGTERM."""
        cloud = shared_nova_cloud()
        directory = cloud.workdir("mdsvc-nova-workers-")
        config = cloud.mdsvc_config(directory, cache=1)
        with open(config) as f:
            text = f.read()
        with open(config, "w") as f:
            f.write(text.replace("[DEFAULT]\n", "[DEFAULT]\nmetadata_workers = 2\n", 1))
        api = Twistd(["mdsvc", "--role", "api", "--config", config], os.path.join(directory, "twistd.log"))
        cloud.children.append(api)
        api.wait_until(lambda: "all 2 API workers are serving" in api.log(), "both workers")
        opened = re.findall(r"\[worker (\d) [^\]]*\] instance store: Nova's databases", api.log())
        self.assertEqual(sorted(opened), ["0", "1"])  # each worker its own engines and threads
        self.assertNotIn("instance store: Nova's databases", "\n".join(
            line for line in api.log().splitlines() if "[worker " not in line))  # and the supervisor none
        headers = cloud.proxy_headers("vol")
        for _ in range(20):  # (new connections: the kernel spreads them over both workers)
            self.assertEqual(request(api.port, "GET", PATH, headers)[0], 200)

        with open(config) as f:
            text = f.read()
        with open(config, "w") as f:
            f.write(text.replace("metadata_cache_expiration = 1", "metadata_cache_expiration = 5")
                    .replace("database_timeout = 2", "database_timeout = 3"))
        os.kill(api.process.pid, signal.SIGHUP)
        for index in (0, 1):
            reloaded = re.compile(rf"\[worker {index} [^\]]*\] SIGHUP: read .* again; applied: \[api\] metadata_cache_expiration")
            api.wait_until(lambda pattern=reloaded: pattern.search(api.log()) is not None, f"worker {index}'s reload")
        self.assertRegex(api.log(), r"\[worker 0 [^\]]*\] SIGHUP: changed, taking effect at the next restart: "
                                    r"\[mdsvc\] database_timeout")
        for _ in range(20):
            self.assertEqual(request(api.port, "GET", PATH, headers)[0], 200)
        self.assertEqual(request(api.port, "GET", "/latest/meta-data/hostname", cloud.proxy_headers("web"))[2], b"web.novalocal")

        api.process.send_signal(signal.SIGTERM)
        self.assertEqual(api.process.wait(30), -signal.SIGTERM)  # (twistd ends as the signal asked, once stopped)
        log = api.log()
        self.assertIn("Server Shut Down", log)
        self.assertEqual(len(re.findall(r"API worker \d \(pid \d+\) stopped", log)), 2, log[-3000:])
        self.assertNotIn("Traceback", log)
        self.assertNotIn(MDSVC_PASSWORD, log)
