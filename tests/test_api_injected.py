"""
C{[DEFAULT] injected_network_template}: an operator's template file, re-read when it changes; one
that cannot be read, compiled or rendered gives no C{network_config}, logged once per reason.
(That the values and Nova's own template render as Nova's is checked in C{tests/test_nova_parity.py}.)
"""

from __future__ import annotations

import json
import os

from twisted.logger import LogLevel, capturedLogs
from twisted.trial.unittest import SynchronousTestCase

from mdsvc.api.injected import InterfacesTemplate
from mdsvc.model import Instance, instance_from_document
from tests.test_api_resource import Harness

STATIC = {"uuid": "11111111-0000-4000-8000-000000000001", "project_id": "test", "nics": [{"port_id": "p1", "mac": "fa:16:3e:00:00:01", "fixed_ips": [
    {"ip": "10.0.0.5", "subnet": {"cidr": "10.0.0.0/24", "gateway": "10.0.0.1", "enable_dhcp": False}}]}]}
"""An instance with one static IPv4 port."""


def static_instance() -> Instance:
    """L{STATIC} as an instance."""
    return instance_from_document(STATIC)


class OperatorTemplateTests(SynchronousTestCase):
    """A template file of the operator's."""

    def write(self, text: str, mtime: float | None = None) -> str:
        """C{text} in a template file (with the modification time C{mtime}); its path."""
        path = os.path.join(self.directory, "interfaces.template")
        with open(path, "w") as f:
            f.write(text)
        if mtime is not None:
            os.utime(path, (mtime, mtime))
        return path

    def setUp(self) -> None:
        self.directory = self.mktemp()
        os.makedirs(self.directory)

    def test_rendered(self) -> None:
        """The file is rendered with Nova's values and Nova's C{trim_blocks}."""
        path = self.write("{% for i in interfaces %}\n{{ i.name }} {{ i.address }}/{{ i.netmask }} via {{ i.gateway }}\n{% endfor %}")
        self.assertEqual(InterfacesTemplate(path).render(static_instance()), "eth0 10.0.0.5/255.255.255.0 via 10.0.0.1\n")

    def test_reread(self) -> None:
        """A file that changed is read again."""
        path = self.write("one {{ interfaces[0].name }}", mtime=1_000_000)
        template = InterfacesTemplate(path)
        self.assertEqual(template.render(static_instance()), "one eth0")
        self.write("two {{ interfaces[0].name }}", mtime=2_000_000)
        self.assertEqual(template.render(static_instance()), "two eth0")

    def test_nothing_to_describe(self) -> None:
        """Without a port to describe the file is not even read (as in Nova)."""
        template = InterfacesTemplate(os.path.join(self.directory, "missing"))
        with capturedLogs() as events:
            self.assertIsNone(template.render(instance_from_document({"uuid": "11111111-0000-4000-8000-000000000002"})))
        self.assertEqual(events, [])

    def test_missing(self) -> None:
        """A missing file renders nothing, logged once however often it is asked for."""
        path = os.path.join(self.directory, "missing.template")
        template = InterfacesTemplate(path)
        with capturedLogs() as events:
            self.assertIsNone(template.load())
            self.assertIsNone(template.render(static_instance()))
        errors = [e for e in events if e["log_level"] == LogLevel.error]
        self.assertEqual(len(errors), 1)
        self.assertEqual(errors[0]["path"], path)
        self.assertIn("TemplateNotFound", errors[0]["reason"])

    def test_broken(self) -> None:
        """A template that does not compile, or fails while rendering, renders nothing, logged."""
        for text, error in [("{% for %}", "TemplateSyntaxError"), ("{{ interfaces[0].name.nothing.deeper }}", "UndefinedError")]:
            template = InterfacesTemplate(self.write(text, mtime=len(text) * 1000))
            with capturedLogs() as events:
                self.assertIsNone(template.render(static_instance()))
            self.assertIn(error, [e for e in events if e["log_level"] == LogLevel.error][0]["reason"])

    def test_served_without_network_config(self) -> None:
        """Through the API: a template that cannot be read gives no C{network_config} and no C{content/0000}."""
        h = Harness(self, interfaces=InterfacesTemplate(os.path.join(self.directory, "missing.template")))
        h.store.add(static_instance())
        signed = h.signed(uuid="11111111-0000-4000-8000-000000000001")
        meta = json.loads(h.get("/openstack/latest/meta_data.json", headers=signed).body)
        self.assertNotIn("network_config", meta)
        self.assertEqual(h.get("/openstack/content/0000", headers=signed).code, 404)

    def test_served(self) -> None:
        """Through the API: the rendered file is C{content/0000}, and C{network_config} points at it."""
        h = Harness(self, interfaces=InterfacesTemplate(self.write("{{ interfaces[0].hwaddress }}")))
        h.store.add(static_instance())
        signed = h.signed(uuid="11111111-0000-4000-8000-000000000001")
        meta = json.loads(h.get("/openstack/latest/meta_data.json", headers=signed).body)
        self.assertEqual(meta["network_config"], {"name": "network_config", "content_path": "/content/0000"})
        self.assertEqual(h.get("/openstack/content/0000", headers=signed).body, b"fa:16:3e:00:00:01")
