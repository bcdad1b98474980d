"""Vendor data: the StaticJSON file and DynamicJSON targets (spec §6)."""

from __future__ import annotations

import json
import os
from typing import Any

from treq.testing import StubTreq
from twisted.internet.task import Clock
from twisted.logger import capturedLogs
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET
from zope.interface.verify import verifyObject

from mdsvc.api.errors import MetadataError
from mdsvc.api.vendordata import DynamicJSON, StaticJSONFile, merge_vendordata, parse_targets
from mdsvc.interfaces import IVendordataProvider
from mdsvc.model import instance_from_document
from tests.test_api_resource import Harness, fixture

UUID = "0d0e0f10-0000-4000-8000-000000000001"
INSTANCE = instance_from_document({
    "uuid": UUID, "hostname": "web", "project_id": "p", "image_id": "img", "user_data": "aGVsbG8=",
    "metadata": {"a": "b"}, "system_metadata": {"boot_roles": "admin,member"},
})


class Target(Resource):
    """A DynamicJSON target that records requests and answers as told."""

    isLeaf = True

    def __init__(self, code: int = 200, body: bytes = b'{"a": 1}', hang: bool = False) -> None:
        super().__init__()
        self.code, self.body, self.hang = code, body, hang
        self.requests: list[tuple[bytes, dict[bytes, list[bytes]], bytes]] = []

    def render_POST(self, request: Any) -> Any:
        self.requests.append((request.uri, dict(request.requestHeaders.getAllRawHeaders()), request.content.read()))
        if self.hang:
            return NOT_DONE_YET
        request.setResponseCode(self.code)
        return self.body


class StaticJSONTests(SynchronousTestCase):
    """The StaticJSON file: read on change, errors reported not raised."""

    def test_no_path(self) -> None:
        """No file configured: {}."""
        self.assertEqual(StaticJSONFile(None).load().data, {})

    def test_reload_on_change(self) -> None:
        """The file is read again only when it changes."""
        path = self.mktemp()
        with open(path, "w") as f:
            f.write('{"x": 1}')
        static = StaticJSONFile(path)
        first = static.load()
        self.assertEqual(first.data, {"x": 1})
        self.assertIs(static.load(), first)
        with open(path, "w") as f:
            f.write('{"x": 22}')
        os.utime(path, ns=(1, 1))
        self.assertEqual(static.load().data, {"x": 22})

    def test_errors(self) -> None:
        """Missing file and bad JSON give Nova's log texts as the error, and no exception."""
        path = self.mktemp()
        with capturedLogs() as events:
            self.assertIn("file does not exist", StaticJSONFile(path).load().error)
        self.assertEqual(len(events), 1)
        with open(path, "w") as f:
            f.write("{nope")
        self.assertIn("failed to load json", StaticJSONFile(path).load().error)

    def test_broken_file_over_http(self) -> None:
        """A broken file: vendor_data.json is 404, vendor_data2.json still 200, meta_data.json unaffected."""
        path = self.mktemp()
        with open(path, "w") as f:
            f.write("{nope")
        h = Harness(self, static_file=StaticJSONFile(path))
        h.store.add(fixture())
        self.assertEqual(h.get("/openstack/latest/vendor_data.json").code, 404)
        self.assertEqual(h.get("/openstack/latest/vendor_data2.json").body, b'{"static": {}}')
        self.assertEqual(h.get("/openstack/latest/meta_data.json").code, 200)

    def test_file_over_http(self) -> None:
        """The file's JSON is served as vendor_data.json and under static in vendor_data2.json."""
        path = self.mktemp()
        with open(path, "w") as f:
            f.write('{"cloud-init": "#cloud-config\\n", "n": [1, 2]}')
        h = Harness(self, static_file=StaticJSONFile(path))
        h.store.add(fixture())
        self.assertEqual(h.get("/openstack/latest/vendor_data.json").body, b'{"cloud-init": "#cloud-config\\n", "n": [1, 2]}')
        self.assertEqual(h.get("/openstack/latest/vendor_data2.json").body, b'{"static": {"cloud-init": "#cloud-config\\n", "n": [1, 2]}}')

    def test_static_not_a_provider(self) -> None:
        """Without StaticJSON among the providers vendor_data.json is 404 (while still listed)."""
        h = Harness(self, providers=())
        h.store.add(fixture())
        self.assertEqual(h.get("/openstack/latest/vendor_data.json").code, 404)
        self.assertIn(b"vendor_data.json", h.get("/openstack/latest").body)
        self.assertEqual(h.get("/openstack/latest/vendor_data2.json").body, b"{}")


class DynamicJSONTests(SynchronousTestCase):
    """DynamicJSON targets through StubTreq."""

    def provider(self, root: Resource, fatal: bool = False, targets: list[tuple[str, str]] | None = None) -> tuple[DynamicJSON, StubTreq, Clock]:
        stub = StubTreq(root)
        clock = Clock()
        return DynamicJSON(targets or [("testing", "http://vd.example/a")], stub, clock, 5, 5, fatal), stub, clock

    def test_interface(self) -> None:
        """DynamicJSON provides IVendordataProvider."""
        self.assertTrue(verifyObject(IVendordataProvider, self.provider(Target())[0]))

    def test_request_and_answer(self) -> None:
        """Nova's body fields and headers go out; the JSON answer comes back under the target name."""
        target = Target()
        provider, stub, _ = self.provider(target)
        d = provider.vendordata(INSTANCE)
        stub.flush()
        self.assertEqual(self.successResultOf(d), {"testing": {"a": 1}})
        _, headers, body = target.requests[0]
        self.assertEqual(json.loads(body), {"project-id": "p", "instance-id": UUID, "image-id": "img", "user-data": "aGVsbG8=",
                                            "hostname": "web", "metadata": {"a": "b"}, "boot-roles": "admin,member"})
        self.assertEqual(headers[b"User-Agent"], [b"openstack-nova-vendordata"])
        self.assertEqual(headers[b"Content-Type"], [b"application/json"])
        self.assertEqual(headers[b"Accept"], [b"application/json"])

    def test_empty_and_errors(self) -> None:
        """Empty body is {}; HTTP errors and bad JSON are {} with a warning."""
        for target, expected in [(Target(204, b""), {}), (Target(500, b"x"), {}), (Target(200, b"not json"), {})]:
            provider, stub, _ = self.provider(target)
            with capturedLogs() as events:
                d = provider.vendordata(INSTANCE)
                stub.flush()
            self.assertEqual(self.successResultOf(d), {"testing": expected})
            if target.code != 204:
                self.assertTrue(any("Error from dynamic vendordata service" in e["log_format"] for e in events))

    def test_timeout(self) -> None:
        """A target that never answers gives {} after connect + read timeout."""
        provider, stub, clock = self.provider(Target(hang=True))
        d = provider.vendordata(INSTANCE)
        stub.flush()
        self.assertNoResult(d)
        clock.advance(9.9)
        self.assertNoResult(d)
        clock.advance(0.1)
        self.assertEqual(self.successResultOf(d), {"testing": {}})

    def test_fatal(self) -> None:
        """With failure_fatal a failing target makes the request a 500."""
        provider, stub, _ = self.provider(Target(500), fatal=True)
        d = provider.vendordata(INSTANCE)
        stub.flush()
        self.assertEqual(self.failureResultOf(d, MetadataError).value.code, 500)

    def test_over_http_with_duplicate(self) -> None:
        """vendor_data2.json merges static then targets; a target named static is dropped."""
        root = Resource()
        root.putChild(b"a", Target(body=b'{"v": 1}'))
        root.putChild(b"b", Target(body=b'{"w": 2}'))
        stub = StubTreq(root)
        h = Harness(self, providers=("StaticJSON", "DynamicJSON"))
        h.app.built_providers["DynamicJSON"] = DynamicJSON(
            [("static", "http://vd/a"), ("hamster", "http://vd/b")], stub, h.clock)
        h.store.add(fixture())
        from tests.http import request, response
        _, channel = request(h.resource, b"GET", b"/openstack/latest/vendor_data2.json", h.signed())
        stub.flush()
        self.assertEqual(response(channel).body, b'{"static": {}, "hamster": {"w": 2}}')  # type: ignore[union-attr]


class HelpersTests(SynchronousTestCase):
    """Target parsing and merging."""

    def test_parse_targets(self) -> None:
        """Split at the first @; nameless and duplicate targets are skipped."""
        self.assertEqual(parse_targets(("a@http://u@h/", "nourl", "@http://x/", "a@http://other/", "b@http://b/")),
                         [("a", "http://u@h/"), ("b", "http://b/")])

    def test_merge(self) -> None:
        """First provider wins a key."""
        self.assertEqual(merge_vendordata([("S", {"static": 1}), ("D", {"static": 2, "x": 3})]), {"static": 1, "x": 3})
