"""
The metadata API over HTTP: the test vectors of spec/nova-metadata.md §11, identification,
status codes, content types, HEAD, the password endpoint and error logging.
"""

from __future__ import annotations

import base64
import calendar
import json

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.logger import LogLevel, capturedLogs
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from mdsvc.api.app import MetadataApp
from mdsvc.api.handler import APIHandler
from mdsvc.api.identify import Identifier, sign
from mdsvc.interfaces import IInstanceStore
from mdsvc.model import FixedIp, Flavor, Instance, KeyPair, Network, Nic, Subnet
from mdsvc.testing import MemoryInstanceStore
from tests.http import RawResponse, request, response

UUID = "b65cee2f-8c69-4aeb-be2f-f79742548fc2"
KEY = "ssh-rsa AAAAB3Nzai....N3NtHw== someuser@somehost"
TEXT = b"text/plain; charset=UTF-8"
JSON = b"application/json"
HTML = b"text/html; charset=UTF-8"
NOW = calendar.timegm((2026, 11, 24, 12, 0, 0))


def fixture(**changes: object) -> Instance:
    """The instance of spec §11 (mirrors Nova's unit-test instance)."""
    values = dict(
        uuid=UUID, name="my_displayname", hostname="test", project_id="test", launch_index=1,
        reservation_id="r-xxxxxxxx", user_data=b"This is an encoded string", availability_zone="fake-az",
        security_groups=("default",), flavor=Flavor(name="m1.small"), root_device_name="/dev/sda1",
        key_pairs=(KeyPair(name="key", public_key=KEY, type="fake_type"),), ec2_instance_id=1,
    )
    values.update(changes)
    return Instance(**values)  # type: ignore[arg-type]


class Harness:
    """An app and resource over a memory store; requests return parsed raw responses."""

    def __init__(self, case: SynchronousTestCase, *, proxy: bool = True, secret: str = "", forwarded: bool = False, ttl: float = 15, **app: object) -> None:
        self.case = case
        self.clock = Clock()
        self.clock.advance(NOW)
        self.store = MemoryInstanceStore()
        self.app = MetadataApp(store=self.store, identifier=Identifier(proxy, secret, forwarded), clock=self.clock, cache_ttl=ttl, **app)  # type: ignore[arg-type]
        self.resource = APIHandler(self.app)
        self.secret = secret

    def signed(self, uuid: str = UUID, tenant: str = "test", xff: str = "192.192.192.2") -> dict[bytes, bytes]:
        return {
            b"X-Instance-ID": uuid.encode(), b"X-Tenant-ID": tenant.encode(),
            b"X-Instance-ID-Signature": sign(self.secret, uuid).encode(), b"X-Forwarded-For": xff.encode(),
        }

    def get(self, path: str | bytes, method: bytes = b"GET", headers: dict[bytes, bytes | list[bytes]] | None = None, body: bytes = b"", signed: bool = True, peer: str = "127.0.0.1") -> RawResponse:
        all_headers: dict[bytes, bytes | list[bytes]] = dict(self.signed()) if signed else {}
        all_headers.update(headers or {})
        raw = path.encode() if isinstance(path, str) else path
        _, channel = request(self.resource, method, raw, all_headers, body, peer=peer)
        result = response(channel)
        self.case.assertIsNotNone(result, f"no response to {method!r} {path!r}")
        return result  # type: ignore[return-value]


class SpecVectorTests(SynchronousTestCase):
    """Spec §11: exact status, content type and body for the fixture instance."""

    def setUp(self) -> None:
        self.h = Harness(self)
        self.h.store.add(fixture())

    def check(self, path: str, code: int, body: bytes | None = None, ctype: bytes | None = None, method: bytes = b"GET") -> RawResponse:
        r = self.h.get(path, method)
        self.assertEqual((r.code, path), (code, path))
        if body is not None:
            self.assertEqual(r.body, body)
        if ctype is not None:
            self.assertEqual(r.header(b"content-type"), ctype)
        return r

    def test_root(self) -> None:
        """GET / lists the EC2 versions without a trailing newline and without identification."""
        expected = b"1.0\n2007-01-19\n2007-03-01\n2007-08-29\n2007-10-10\n2007-12-15\n2008-02-01\n2008-09-01\n2009-04-04\nlatest"
        r = self.h.get("/", signed=False)
        self.assertEqual((r.code, r.body, r.header(b"content-type")), (200, expected, TEXT))
        self.assertEqual(self.h.get("/foo/../", signed=False).body, expected)
        self.assertEqual(self.h.get("/?x=1", signed=False).body, expected)
        self.assertEqual(self.h.store.reads, 0)

    def test_ec2_version(self) -> None:
        """A version lists meta-data/ and user-data; unknown versions are 404."""
        self.check("/2009-04-04", 200, b"meta-data/\nuser-data", TEXT)
        self.check("/2009-04-04/", 200, b"meta-data/\nuser-data", TEXT)
        self.check("/9999-99-99", 404)

    def test_user_data(self) -> None:
        """user-data is served raw; a near miss is 404."""
        self.check("/2009-04-04/user-data", 200, b"This is an encoded string", TEXT)
        self.check("/2009-04-04/user-data-invalid", 404)

    def test_meta_data_listings(self) -> None:
        """The meta-data listing of latest and of 1.0, sorted, with / on dicts."""
        self.check(
            "/latest/meta-data/", 200,
            b"ami-id\nami-launch-index\nami-manifest-path\nblock-device-mapping/\nhostname\ninstance-action\ninstance-id\n"
            b"instance-type\nlocal-hostname\nlocal-ipv4\nplacement/\npublic-hostname\npublic-ipv4\npublic-keys/\nreservation-id\nsecurity-groups",
            TEXT,
        )
        self.check("/1.0/meta-data/", 200, b"ami-id\nami-launch-index\nami-manifest-path\nhostname\ninstance-id\nlocal-ipv4\npublic-keys/\nreservation-id\nsecurity-groups")

    def test_meta_data_values(self) -> None:
        """Every scalar key of the vector table."""
        for path, body in [
            ("/latest/meta-data/hostname", b"test.novalocal"),
            ("/latest/meta-data/ami-launch-index", b"1"),
            ("/latest/meta-data/ami-manifest-path", b"FIXME"),
            ("/latest/meta-data/instance-action", b"none"),
            ("/latest/meta-data/instance-type", b"m1.small"),
            ("/latest/meta-data/instance-id", b"i-00000001"),
            ("/latest/meta-data/reservation-id", b"r-xxxxxxxx"),
            ("/latest/meta-data/security-groups", b""),  # the groups of its ports: it has none
            ("/latest/meta-data/public-ipv4", b""),
            ("/latest/meta-data/local-ipv4", b"192.192.192.2"),
            ("/latest/meta-data/local-hostname", b"test.novalocal"),
            ("/latest/meta-data/public-hostname", b"test.novalocal"),
            ("/latest/meta-data/ami-id", b"None"),
            ("/latest/meta-data/placement/", b"availability-zone"),
            ("/latest/meta-data/placement/availability-zone", b"fake-az"),
            ("/latest/meta-data/placement/availability-zone/", b"fake-az"),
            ("/latest/meta-data/block-device-mapping/", b"ami\nroot"),
            ("/latest/meta-data/block-device-mapping/ami", b"sda1"),
            ("/latest/meta-data/block-device-mapping/root", b"/dev/sda1"),
            ("/latest/meta-data/public-keys", b"0=key"),
            ("/latest/meta-data/public-keys/0/", b"openssh-key"),
            ("/latest/meta-data/public-keys/0/openssh-key", KEY.encode()),
            ("/latest/meta-data/public-keys/0/_name", b"0=key"),
            ("/ec2/2009-04-04/meta-data/hostname", b"test.novalocal"),
            ("/ec2/latest/meta-data/hostname", b"test.novalocal"),
        ]:
            self.check(path, 200, body, TEXT)

    def test_absent_keys(self) -> None:
        """Keys absent for the instance or its version are 404."""
        for path in ["/latest/meta-data/kernel-id", "/latest/meta-data/ramdisk-id", "/1.0/meta-data/placement",
                     "/1.0/meta-data/local-hostname", "/2007-10-10/meta-data/block-device-mapping",
                     "/latest/meta-data/public-keys/0=key", "/latest/meta-data/public-keys/1"]:
            self.check(path, 404)

    def test_descending_into_values_is_404(self) -> None:
        """Q2, Q3: descending into a list or a scalar answers 404, not Nova's 500."""
        for path in ["/latest/meta-data/security-groups/default", "/latest/meta-data/hostname/x",
                     "/latest/user-data/x", "/latest/meta-data/hostname/x/y"]:
            self.check(path, 404)

    def test_two_leading_slashes(self) -> None:
        """//latest/... is read as /latest/... (the AWS JS SDK sends it)."""
        self.check("//latest/meta-data/hostname", 200, b"test.novalocal")
        self.check("///latest/meta-data/instance-id", 200, b"i-00000001")

    def test_percent_encoded_and_dot_segments(self) -> None:
        """Paths are percent-decoded and . / .. resolved before routing."""
        self.check("/latest/meta-data/%68ostname", 200, b"test.novalocal")
        self.check("/latest/meta-data/placement/../hostname", 200, b"test.novalocal")
        self.check("/latest/./meta-data//hostname", 200, b"test.novalocal")

    def test_ec2_listing(self) -> None:
        """/ec2 lists the EC2 versions, after identification."""
        self.check("/ec2", 200, b"1.0\n2007-01-19\n2007-03-01\n2007-08-29\n2007-10-10\n2007-12-15\n2008-02-01\n2008-09-01\n2009-04-04\nlatest")
        self.assertEqual(self.h.get("/ec2", signed=False).code, 400)

    def test_openstack_listing(self) -> None:
        """/openstack lists versions up to today, then latest."""
        body = b"2012-08-10\n2013-04-04\n2013-10-17\n2015-10-15\n2016-06-30\n2016-10-06\n2017-02-22\n2018-08-27\n2020-10-14\n2025-04-04\nlatest"
        self.check("/openstack", 200, body, TEXT)
        self.check("/openstack/", 200, body, TEXT)

    def test_openstack_listing_hides_future_versions(self) -> None:
        """A version dated after today is not listed, but can still be requested."""
        h = Harness(self)
        h.clock = Clock()
        h.clock.advance(calendar.timegm((2025, 1, 1, 0, 0, 0)))
        h.app.clock = h.clock
        h.store.add(fixture())
        self.assertEqual(h.get("/openstack").body.split(b"\n")[-2:], [b"2020-10-14", b"latest"])
        self.assertEqual(h.get("/openstack/2025-04-04/meta_data.json").code, 200)

    def test_openstack_version_listings(self) -> None:
        """Each version lists its files in Nova's fixed order."""
        self.check("/openstack/2012-08-10", 200, b"meta_data.json\nuser_data")
        self.check("/openstack/2013-04-04", 200, b"meta_data.json\nuser_data\npassword")
        self.check("/openstack/2013-10-17", 200, b"meta_data.json\nuser_data\npassword\nvendor_data.json")
        self.check("/openstack/2015-10-15", 200, b"meta_data.json\nuser_data\npassword\nvendor_data.json\nnetwork_data.json")
        latest = b"meta_data.json\nuser_data\npassword\nvendor_data.json\nnetwork_data.json\nvendor_data2.json"
        self.check("/openstack/latest/", 200, latest)
        self.check("/openstack/2016-10-06", 200, latest)
        self.check("/openstack/latest/version", 200, latest)

    def test_meta_data_json(self) -> None:
        """meta_data.json per version: Nova's key order, separators and fields."""
        base = (
            '{"uuid": "b65cee2f-8c69-4aeb-be2f-f79742548fc2", "public_keys": {"key": "%s"}, "keys": [{"name": "key", '
            '"type": "fake_type", "data": "%s"}], "hostname": "test.novalocal", "name": "my_displayname", '
            '"launch_index": 1, "availability_zone": "fake-az"' % (KEY, KEY)
        )
        self.check("/openstack/2012-08-10/meta_data.json", 200, (base + "}").encode(), JSON)
        for version, tail in [
            ("2013-04-04", ""),
            ("2015-10-15", ', "project_id": "test"'),
            ("latest", ', "project_id": "test", "devices": [], "dedicated_cpus": []'),
        ]:
            r = self.check(f"/openstack/{version}/meta_data.json", 200, None, JSON)
            prefix = (base + ', "random_seed": "').encode()
            self.assertTrue(r.body.startswith(prefix), r.body)
            seed = r.body[len(prefix):len(prefix) + 684]
            self.assertEqual(len(base64.b64decode(seed)), 512)
            self.assertEqual(r.body[len(prefix) + 684:], ('"' + tail + "}").encode())

    def test_random_seed_is_fresh(self) -> None:
        """random_seed differs on every request, although the document is cached."""
        one = json.loads(self.h.get("/openstack/latest/meta_data.json").body)["random_seed"]
        two = json.loads(self.h.get("/openstack/latest/meta_data.json").body)["random_seed"]
        self.assertNotEqual(one, two)
        self.assertEqual(self.h.store.reads, 1)

    def test_openstack_files(self) -> None:
        """user_data, network_data.json, vendor data: bodies and content types."""
        self.check("/openstack/latest/user_data", 200, b"This is an encoded string", TEXT)
        self.check("/openstack/latest/network_data.json", 200, b"{}", TEXT)
        self.check("/openstack/2012-08-10/network_data.json", 200, b"{}", TEXT)
        self.check("/openstack/latest/vendor_data.json", 200, b"{}", JSON)
        self.check("/openstack/latest/vendor_data2.json", 200, b'{"static": {}}', JSON)
        self.check("/openstack/latest/meta_data.json/", 200, None, JSON)

    def test_openstack_not_found(self) -> None:
        """Version gates, unknown versions and files, content and the Q5 path are 404."""
        for path in ["/openstack/2016-06-30/vendor_data2.json", "/openstack/2013-04-04/vendor_data.json",
                     "/openstack/2012-08-10/password", "/openstack/9999-01-01/meta_data.json",
                     "/openstack/latest/nonexistent", "/openstack/latest/content", "/openstack/content",
                     "/openstack/content/0000", "/openstack/latest/meta_data.json/x"]:
            self.check(path, 404)

    def test_head(self) -> None:
        """HEAD has GET's status and headers, with the full Content-Length, and no body."""
        r = self.h.get("/latest/meta-data/hostname", method=b"HEAD")
        self.assertEqual((r.code, r.header(b"content-type"), r.header(b"content-length"), r.body), (200, TEXT, b"14", b""))
        r = self.h.get("/", method=b"HEAD", signed=False)
        self.assertEqual((r.code, r.header(b"content-length"), r.body), (200, b"98", b""))

    def test_other_methods_read(self) -> None:
        """Methods other than GET read data paths as GET does (Nova never answers 405)."""
        for method in (b"POST", b"PUT", b"DELETE", b"OPTIONS", b"PATCH"):
            self.check("/latest/meta-data/hostname", 200, b"test.novalocal", method=method)

    def test_token_put_is_404(self) -> None:
        """PUT /latest/api/token answers 404, so token-first clients fall back to plain GETs."""
        self.check("/latest/api/token", 404, method=b"PUT")


class PasswordTests(SynchronousTestCase):
    """The password endpoint (spec §2.4.7): write once, 1020 bytes at most."""

    def setUp(self) -> None:
        self.h = Harness(self)
        self.h.store.add(fixture())

    def test_get_empty(self) -> None:
        """GET with nothing stored: 200, empty, text/html."""
        r = self.h.get("/openstack/latest/password")
        self.assertEqual((r.code, r.body, r.header(b"content-type")), (200, b"", HTML))

    def test_post_then_conflict(self) -> None:
        """The first POST stores; the next one is 409, even within the cache TTL; GET returns it."""
        r = self.h.get("/openstack/latest/password", b"POST", body=b"foo")
        self.assertEqual((r.code, r.body, r.header(b"content-type")), (200, b"", HTML))
        self.assertEqual(self.h.store.instances[UUID].password, "foo")
        self.assertEqual(self.h.get("/openstack/latest/password", b"POST", body=b"bar").code, 409)
        self.assertEqual(self.h.get("/openstack/latest/password").body, b"foo")
        self.assertEqual(self.h.store.instances[UUID].password, "foo")

    def test_conflict_from_store(self) -> None:
        """When the cached copy says unset but the store has one, the store's answer (409) wins."""
        self.h.get("/openstack/latest/meta_data.json")
        from attrs import evolve
        self.h.store.instances[UUID] = evolve(self.h.store.instances[UUID], password="other")
        self.assertEqual(self.h.get("/openstack/latest/password", b"POST", body=b"mine").code, 409)
        self.assertEqual(self.h.store.instances[UUID].password, "other")

    def test_size_limit(self) -> None:
        """1020 bytes are accepted; 1021 bytes are 400 Request is too large."""
        r = self.h.get("/openstack/latest/password", b"POST", body=b"x" * 1021, headers={b"accept": b"text/plain"})
        self.assertEqual((r.code, r.body), (400, b"400 Bad Request\n\nRequest is too large.\n\n   "))
        self.assertEqual(self.h.get("/openstack/latest/password", b"POST", body=b"x" * 1020).code, 200)
        self.assertEqual(len(self.h.store.instances[UUID].password), 1020)

    def test_big_content_length_is_413(self) -> None:
        """A Content-Length over the protocol's limit is refused (413) before the body is read."""
        r = self.h.get("/openstack/latest/password", b"POST", headers={b"content-length": b"100000"}, body=b"short")
        self.assertEqual(r.code, 413)
        self.assertIn(b"Request is too large.", r.body)
        self.assertEqual(self.h.get("/openstack/latest/password", b"POST", body=b"x" * 5000).code, 400)

    def test_not_utf8_is_400(self) -> None:
        """Q12: a body that is not UTF-8 is 400, not Nova's 500."""
        self.assertEqual(self.h.get("/openstack/latest/password", b"POST", body=b"\xff\xfe").code, 400)
        self.assertIsNone(self.h.store.instances[UUID].password)

    def test_other_methods(self) -> None:
        """PUT, DELETE and HEAD on password are 400 GET and POST only are supported."""
        for method in (b"PUT", b"DELETE", b"HEAD"):
            r = self.h.get("/openstack/latest/password", method, headers={b"accept": b"text/plain"})
            self.assertEqual(r.code, 400, method)
        r = self.h.get("/openstack/latest/password", b"PUT", headers={b"accept": b"text/plain"})
        self.assertIn(b"GET and POST only are supported.", r.body)

    def test_version_gate(self) -> None:
        """password exists from 2013-04-04."""
        self.assertEqual(self.h.get("/openstack/2013-04-04/password", b"POST", body=b"a").code, 200)
        self.assertEqual(self.h.get("/openstack/2012-08-10/password", b"POST", body=b"a").code, 404)


class ProxyModeTests(SynchronousTestCase):
    """Instance-id mode (spec §4.3) with the proxy-mode vectors of §11."""

    def setUp(self) -> None:
        self.h = Harness(self, secret="")
        self.h.store.add(fixture(uuid="a-b-c-d"))

    def get(self, headers: dict[bytes, bytes | list[bytes]]) -> RawResponse:
        return self.h.get("/latest/meta-data/hostname", headers=dict(headers, accept=b"text/plain"), signed=False)

    def test_vectors(self) -> None:
        """Missing headers are 400 in Nova's order; the right signature is 200."""
        sig = b"d98d0dd53b026a24df2c06b464ffa5dadb922ae41af7bd3ecc3cae75aef65771"
        r = self.get({})
        self.assertEqual((r.code, r.body), (400, b"400 Bad Request\n\nX-Instance-ID header is missing from request.\n\n   "))
        r = self.get({b"X-Instance-ID": b"a-b-c-d"})
        self.assertEqual((r.code, r.body.split(b"\n")[2]), (400, b"X-Instance-ID-Signature header is missing from request."))
        r = self.get({b"X-Instance-ID": b"a-b-c-d", b"X-Instance-ID-Signature": sig})
        self.assertEqual((r.code, r.body.split(b"\n")[2]), (400, b"X-Tenant-ID header is missing from request."))
        r = self.get({b"X-Instance-ID": b"a-b-c-d", b"X-Instance-ID-Signature": sig, b"X-Tenant-ID": b"test"})
        self.assertEqual((r.code, r.body), (200, b"test.novalocal"))
        r = self.get({b"X-Instance-ID": b"a-b-c-d", b"X-Instance-ID-Signature": sig, b"X-Tenant-ID": b"FAKE"})
        self.assertEqual(r.code, 404)
        r = self.get({b"X-Instance-ID": b"a-b-c-d", b"X-Instance-ID-Signature": b"mismatched_signature", b"X-Tenant-ID": b"test"})
        self.assertEqual((r.code, r.body.split(b"\n")[2]), (403, b"Invalid proxy request signature."))

    def test_uppercase_and_non_ascii_signature(self) -> None:
        """Uppercase hex is rejected; a non-ASCII signature is 403 (Q11), not 500."""
        sig = sign("", "a-b-c-d")
        for bad in (sig.upper().encode(), "\u00e9".encode("utf-8") * 32, b""):
            r = self.get({b"X-Instance-ID": b"a-b-c-d", b"X-Instance-ID-Signature": bad, b"X-Tenant-ID": b"test"})
            self.assertEqual(r.code, 403, bad)

    def test_repeated_headers_are_400(self) -> None:
        """Two X-Instance-ID or X-Tenant-ID headers are malformed: 400."""
        sig = sign("", "a-b-c-d").encode()
        r = self.get({b"X-Instance-ID": [b"a-b-c-d", b"other"], b"X-Instance-ID-Signature": sig, b"X-Tenant-ID": b"test"})
        self.assertEqual(r.code, 400)
        r = self.get({b"X-Instance-ID": b"a-b-c-d", b"X-Instance-ID-Signature": sig, b"X-Tenant-ID": [b"test", b"x"]})
        self.assertEqual(r.code, 400)

    def test_secret(self) -> None:
        """With a secret, only its HMAC opens the door; the secret and expected value are never logged."""
        h = Harness(self, secret="s3cr3t")
        h.store.add(fixture())
        good = {b"X-Instance-ID": UUID.encode(), b"X-Tenant-ID": b"test",
                b"X-Instance-ID-Signature": b"823491c9c66985fac0685c45d8eda8869d581ff62c4661479451ee51e2946737"}
        self.assertEqual(h.get("/latest/meta-data/hostname", headers=good, signed=False).code, 200)
        with capturedLogs() as events:
            bad = dict(good)
            bad[b"X-Instance-ID-Signature"] = sign("", UUID).encode()
            self.assertEqual(h.get("/latest/meta-data/hostname", headers=bad, signed=False).code, 403)
        text = repr([dict(e) for e in events])
        self.assertIn(sign("", UUID), text)  # the received signature is logged
        self.assertNotIn("823491c9c66985fac0685c45d8eda8869d581ff62c4661479451ee51e2946737", text)
        self.assertNotIn("s3cr3t", text)

    def test_unknown_instance_is_404(self) -> None:
        """A correctly signed id of an instance that does not exist is 404, and the reason is logged."""
        with capturedLogs() as events:
            r = self.h.get("/latest/meta-data/hostname", headers=self.h.signed("nope", "test"), signed=False)
        self.assertEqual(r.code, 404)
        self.assertTrue(any("instance nope not found" in str(e.get("reason")) for e in events))

    def test_root_needs_no_headers(self) -> None:
        """GET / succeeds in proxy mode without any header."""
        self.assertEqual(self.h.get("/", signed=False).code, 200)

    def test_local_ipv4_from_forwarded_for(self) -> None:
        """Without a fixed IPv4, local-ipv4 is the X-Forwarded-For address."""
        headers = self.h.signed("a-b-c-d", "test", xff="10.1.2.3")
        self.assertEqual(self.h.get("/latest/meta-data/local-ipv4", headers=headers, signed=False).body, b"10.1.2.3")


class ProviderModeTests(SynchronousTestCase):
    """Provider mode (spec §4.4) with the vectors of §11: the provider is a router document."""

    def harness(self, secret: str = "", ports: int = 1) -> Harness:
        h = Harness(self, secret=secret)
        h.store.providers["edge-x"] = ["net-1"]
        for n in range(ports):
            nic = Nic(port_id=f"p{n}", mac="fa:16:3e:00:00:01", network=Network(id="net-1"),
                      fixed_ips=(FixedIp(ip="192.192.192.2", subnet=Subnet(cidr="192.192.192.0/24")),))
            h.store.add(fixture(uuid=f"inst-{n}", nics=(nic,)))
        return h

    def get(self, h: Harness, headers: dict[bytes, bytes]) -> RawResponse:
        base = {b"X-Metadata-Provider": b"edge-x", b"X-Forwarded-For": b"192.192.192.2, 10.10.10.10", b"accept": b"text/plain"}
        base.update(headers)
        return h.get("/latest/meta-data/hostname", headers={k: v for k, v in base.items() if v}, signed=False)

    def test_no_secret(self) -> None:
        """Without a secret no signature is needed; the first X-Forwarded-For address is used."""
        r = self.get(self.harness(), {})
        self.assertEqual((r.code, r.body), (200, b"test.novalocal"))

    def test_signature(self) -> None:
        """With a secret the provider's HMAC is required."""
        h = self.harness("testing1234")
        self.assertEqual(self.get(h, {}).code, 403)
        sig = b"5d37735f52821318eb7c6413329c6b25932b030930bda5e83593563ab833c23d"
        self.assertEqual(self.get(h, {b"X-Metadata-Provider-Signature": sig}).code, 200)

    def test_unknown_provider(self) -> None:
        """A provider with no networks: 400 Could not find any subnets."""
        r = self.get(self.harness(), {b"X-Metadata-Provider": b"edge-y"})
        self.assertEqual((r.code, r.body.split(b"\n")[2]), (400, b"Could not find any subnets for provider edge-y"))

    def test_port_count(self) -> None:
        """Zero or two matching ports: 400 naming the count."""
        for count in (0, 2):
            r = self.get(self.harness(ports=count), {})
            self.assertEqual(r.code, 400)
            self.assertIn(f"Expected a single port matching provider edge-x and IP 192.192.192.2. Found {count}.".encode(), r.body)

    def test_no_forwarded_for(self) -> None:
        """No X-Forwarded-For: 400."""
        r = self.get(self.harness(), {b"X-Forwarded-For": b""})
        self.assertEqual((r.code, r.body.split(b"\n")[2]), (400, b"X-Forwarded-For is missing from request."))


class RemoteAddressModeTests(SynchronousTestCase):
    """Remote-IP mode (spec §4.2): the instance holding the connection's address."""

    def setUp(self) -> None:
        self.h = Harness(self, proxy=False)
        net = Nic(port_id="p1", mac="fa:16:3e:00:00:01", network=Network(id="n1"),
                  fixed_ips=(FixedIp(ip="10.0.0.5", subnet=Subnet(cidr="10.0.0.0/24"), floating_ips=("203.0.113.10",)),))
        self.h.store.add(fixture(nics=(net,)))

    def test_by_peer(self) -> None:
        """The connection's address selects the instance; local-ipv4 and public-ipv4 come from its NIC."""
        self.assertEqual(self.h.get("/latest/meta-data/local-ipv4", signed=False, peer="10.0.0.5").body, b"10.0.0.5")
        self.assertEqual(self.h.get("/latest/meta-data/public-ipv4", signed=False, peer="10.0.0.5").body, b"203.0.113.10")

    def test_unknown_address_is_404(self) -> None:
        """An address no instance holds is 404, with the reason logged."""
        with capturedLogs() as events:
            r = self.h.get("/latest/meta-data/hostname", signed=False, peer="10.0.0.99")
        self.assertEqual(r.code, 404)
        self.assertTrue(any("no instance has fixed IP 10.0.0.99" in str(e.get("reason")) for e in events))

    def test_forwarded_for_ignored_by_default(self) -> None:
        """X-Forwarded-For is not trusted unless use_forwarded_for is on (OSSN-0074)."""
        r = self.h.get("/latest/meta-data/hostname", signed=False, peer="10.0.0.99", headers={b"X-Forwarded-For": b"10.0.0.5"})
        self.assertEqual(r.code, 404)

    def test_forwarded_for_when_enabled(self) -> None:
        """With use_forwarded_for the first X-Forwarded-For address, stripped, is used."""
        h = Harness(self, proxy=False, forwarded=True)
        h.store.instances.update(self.h.store.instances)
        r = h.get("/latest/meta-data/hostname", signed=False, peer="10.0.0.99", headers={b"X-Forwarded-For": b" 10.0.0.5 , 1.2.3.4"})
        self.assertEqual((r.code, r.body), (200, b"test.novalocal"))

    def test_instance_id_header_ignored(self) -> None:
        """An X-Instance-ID header is ignored (with a warning) outside proxy mode."""
        with capturedLogs() as events:
            r = self.h.get("/latest/meta-data/hostname", signed=False, peer="10.0.0.5", headers={b"X-Instance-ID": b"other"})
        self.assertEqual((r.code, r.body), (200, b"test.novalocal"))
        self.assertTrue(any("service_metadata_proxy" in e.get("log_format", "") for e in events))

    def test_shared_address_is_500(self) -> None:
        """Two instances with the address (overlapping tenant networks) is the spec's own 500."""
        self.h.store.addresses["10.0.0.5"] = "other-uuid"
        self.h.store.add(fixture(uuid="other-uuid"))
        self.assertEqual(self.h.get("/latest/meta-data/hostname", signed=False, peer="10.0.0.5").code, 500)


class ErrorTests(SynchronousTestCase):
    """Failures never reach a guest as a traceback; statuses stay in the spec's set."""

    def test_store_failure_is_500(self) -> None:
        """A failing store is a logged 500 with Nova's unknown-error text."""
        h = Harness(self)
        h.store.broken = RuntimeError("disk on fire")
        with capturedLogs() as events:
            r = h.get("/latest/meta-data/hostname", headers={b"accept": b"text/plain"})
        self.assertEqual(r.code, 500)
        self.assertIn(b"An unknown error has occurred. Please try your request again.", r.body)
        self.assertNotIn(b"disk on fire", r.body)
        self.assertTrue(any(e.get("log_level") == LogLevel.critical for e in events))
        self.assertTrue(any("disk on fire" in str(e.get("reason")) for e in events))
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_error_formats(self) -> None:
        """Error pages follow Accept: HTML for */*, JSON for application/json, else text."""
        h = Harness(self)
        r = h.get("/nope", headers={b"accept": b"*/*"}, signed=False)
        self.assertEqual((r.code, r.header(b"content-type")), (400, HTML))
        self.assertIn(b"<h1>400 Bad Request</h1>", r.body)
        r = h.get("/nope", headers={b"accept": b"application/json"}, signed=False)
        self.assertEqual(json.loads(r.body)["code"], "400 Bad Request")
        r = h.get("/nope", signed=False)
        self.assertEqual(r.header(b"content-type"), TEXT)

    def test_bad_path_encoding_is_400(self) -> None:
        """A path that is not UTF-8 after percent-decoding is 400."""
        h = Harness(self)
        self.assertEqual(h.get("/latest/%ff", signed=False).code, 400)

    def test_disconnect_cancels(self) -> None:
        """A guest that goes away mid-request gets nothing written and nothing fails."""
        h = Harness(self)
        h.store.hold = []
        h.store.add(fixture())
        req, channel = request(h.resource, b"GET", b"/latest/meta-data/hostname", h.signed())
        self.assertEqual(len(h.store.hold), 1)
        from twisted.internet.error import ConnectionLost
        from twisted.python.failure import Failure
        req.connectionLost(Failure(ConnectionLost()))
        h.store.hold[0].callback(None)
        self.assertEqual(channel.written(), b"")


class CacheTests(SynchronousTestCase):
    """The render cache seen through HTTP (spec §5)."""

    def test_changes_seen_after_expiry(self) -> None:
        """A changed instance is served once metadata_cache_expiration has passed, not before."""
        h = Harness(self, ttl=15)
        h.store.add(fixture())
        self.assertEqual(h.get("/latest/meta-data/hostname").body, b"test.novalocal")
        h.store.add(fixture(hostname="changed"))
        h.clock.advance(14)
        self.assertEqual(h.get("/latest/meta-data/hostname").body, b"test.novalocal")
        h.clock.advance(1)
        self.assertEqual(h.get("/latest/meta-data/hostname").body, b"changed.novalocal")
        del h.store.instances[UUID]
        h.clock.advance(15)
        self.assertEqual(h.get("/latest/meta-data/hostname").code, 404)

    def test_concurrent_misses_one_read(self) -> None:
        """Concurrent requests for one instance share one store read."""
        h = Harness(self)
        h.store.add(fixture())
        h.store.hold = []
        channels = [request(h.resource, b"GET", b"/latest/meta-data/hostname", h.signed())[1] for _ in range(5)]
        self.assertEqual((h.store.reads, len(h.store.hold)), (1, 1))
        h.store.hold[0].callback(None)
        self.assertEqual([response(c).body for c in channels], [b"test.novalocal"] * 5)  # type: ignore[union-attr]

    def test_ttl_zero_reads_every_time(self) -> None:
        """With metadata_cache_expiration = 0 every request reads the store."""
        h = Harness(self, ttl=0)
        h.store.add(fixture())
        h.get("/latest/meta-data/hostname")
        h.get("/latest/meta-data/hostname")
        self.assertEqual(h.store.reads, 2)


class FakeStoreTests(SynchronousTestCase):
    """The memory store used above keeps the interface's promises."""

    def test_interface(self) -> None:
        """MemoryInstanceStore provides IInstanceStore."""
        self.assertTrue(verifyObject(IInstanceStore, MemoryInstanceStore()))

    def test_hold(self) -> None:
        """A held read fires with the instance when released."""
        store = MemoryInstanceStore(hold=[])
        store.add(fixture())
        d: Deferred[Instance | None] = store.get(UUID)
        self.assertNoResult(d)
        store.hold[0].callback(None)  # type: ignore[index]
        self.assertEqual(self.successResultOf(d).uuid, UUID)  # type: ignore[union-attr]


class UnexpectedErrorTests(SynchronousTestCase):
    """A bug inside the resource still answers a plain 500 without a traceback."""

    def test_synchronous_bug(self) -> None:
        """An exception raised while identifying is logged and answered 500."""
        h = Harness(self)

        class Broken:
            def identify(self, headers: object, peer: object) -> None:
                raise ZeroDivisionError("bug")

        h.app.identifier = Broken()  # type: ignore[assignment]
        r = h.get("/latest/meta-data/hostname", headers={b"accept": b"text/plain"})
        self.assertEqual(r.code, 500)
        self.assertNotIn(b"ZeroDivisionError", r.body)
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)

    def test_asynchronous_bug(self) -> None:
        """An exception raised while answering is logged and answered 500."""
        h = Harness(self)

        class BrokenApp(MetadataApp):
            async def answer(self, *args: object) -> None:  # type: ignore[override]
                raise KeyError("bug")

        h.resource.app = BrokenApp(store=h.store, identifier=h.app.identifier, clock=h.clock)
        r = h.get("/latest/meta-data/hostname", headers={b"accept": b"text/plain"})
        self.assertEqual(r.code, 500)
        self.assertNotIn(b"KeyError", r.body)
        self.assertEqual(len(self.flushLoggedErrors(KeyError)), 1)


class DebugLogTests(SynchronousTestCase):
    """[DEFAULT] debug logs every request's headers, with secrets masked."""

    def test_masked(self) -> None:
        """The signature is masked; other headers are logged; nothing without debug."""
        h = Harness(self)
        h.store.add(fixture())
        h.resource.debug = True
        with capturedLogs() as events:
            h.get("/latest/meta-data/hostname", headers={b"User-Agent": b"cloud-init/22.4"})
        logged = [e["headers"] for e in events if "headers" in e]
        self.assertEqual(len(logged), 1)
        self.assertEqual(logged[0]["x-instance-id-signature"], "***")
        self.assertEqual((logged[0]["x-instance-id"], logged[0]["user-agent"]), (UUID, "cloud-init/22.4"))
        h.resource.debug = False
        with capturedLogs() as events:
            h.get("/latest/meta-data/hostname")
        self.assertEqual([e for e in events if "headers" in e], [])
