"""
IMDSv2-style session tokens: the tokens themselves (L{mdsvc.api.tokens}), the API with
C{[api] imds_tokens} off, optional and required, and what a token never is (logged).
"""

from __future__ import annotations

import base64

from twisted.internet.task import Clock
from twisted.logger import capturedLogs, formatEvent
from twisted.trial.unittest import SynchronousTestCase

from mdsvc.api.errors import MetadataError
from mdsvc.api.handler import masked_headers
from mdsvc.api.tokens import MAX_TTL, TOKEN_LENGTH, SessionTokens, config_problems, parse_ttl
from mdsvc.config import load_config
from tests.test_api_resource import UUID, Harness, fixture

OTHER = "0a8f7b44-52b1-4c5e-9d27-35f0c8a1e6d3"
TOKEN_PATH = "/latest/api/token"


class TokenTests(SynchronousTestCase):
    """Making and checking a token: bound to the instance, its expiry and the secret's key."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_800_000_000)
        self.tokens = SessionTokens(self.clock, True, "s3cret")

    def test_shape(self) -> None:
        """A token is 56 characters of base64url (42 bytes), whatever the instance id."""
        for uuid in (UUID, "x" * 255):
            token = self.tokens.issue(uuid, 60)
            self.assertEqual(len(token), TOKEN_LENGTH)
            self.assertEqual(len(base64.urlsafe_b64decode(token)), 42)

    def test_valid_for_its_instance(self) -> None:
        """A token is good for the instance it was made for, and for no other."""
        token = self.tokens.issue(UUID, 60)
        self.assertTrue(self.tokens.valid(token, UUID))
        self.assertFalse(self.tokens.valid(token, OTHER))

    def test_expires(self) -> None:
        """A token is good until its TTL has passed, then never again."""
        token = self.tokens.issue(UUID, 60)
        self.clock.advance(59)
        self.assertTrue(self.tokens.valid(token, UUID))
        self.clock.advance(1)
        self.assertFalse(self.tokens.valid(token, UUID))

    def test_another_worker_checks_it(self) -> None:
        """Another API (worker or node) with the same secret checks it: no shared state."""
        token = self.tokens.issue(UUID, 60)
        self.assertTrue(SessionTokens(self.clock, False, "s3cret").valid(token, UUID))

    def test_another_secret_refuses_it(self) -> None:
        """An API with another secret refuses it."""
        token = self.tokens.issue(UUID, 60)
        self.assertFalse(SessionTokens(self.clock, True, "other").valid(token, UUID))

    def test_previous_secret(self) -> None:
        """During a rotation, tokens made with the previous secret are still good; new ones use the new secret."""
        old = self.tokens.issue(UUID, 60)
        rotated = SessionTokens(self.clock, True, "new", previous=("s3cret",))
        self.assertTrue(rotated.valid(old, UUID))
        self.assertFalse(rotated.valid(old, OTHER))
        new = rotated.issue(UUID, 60)
        self.assertTrue(SessionTokens(self.clock, True, "new").valid(new, UUID))
        self.assertFalse(self.tokens.valid(new, UUID))

    def test_tampered(self) -> None:
        """Any changed byte (expiry pushed back, MAC, version) makes a token invalid."""
        raw = bytearray(base64.urlsafe_b64decode(self.tokens.issue(UUID, 60)))
        for index in (0, 1, 5, 9, 10, 41):
            changed = bytearray(raw)
            changed[index] ^= 0x01
            self.assertFalse(self.tokens.valid(base64.urlsafe_b64encode(bytes(changed)), UUID), index)

    def test_malformed(self) -> None:
        """Anything that is not 56 characters of base64url is refused without being decoded."""
        good = self.tokens.issue(UUID, 60)
        for token in (b"", b"-", good[:-1], good + b"A", good[:-1] + b"=", good[:-1] + b"+", b"A" * 56, b"\xff" * 56):
            self.assertFalse(self.tokens.valid(token, UUID), token)

    def test_check(self) -> None:
        """check: no token is 401 only when required; a bad token is 401 either way."""
        self.assertEqual(self.assertRaises(MetadataError, self.tokens.check, None, UUID).code, 401)
        SessionTokens(self.clock, False, "s3cret").check(None, UUID)
        self.assertEqual(self.assertRaises(MetadataError, SessionTokens(self.clock, False, "s3cret").check, b"x", UUID).code, 401)
        self.tokens.check(self.tokens.issue(UUID, 1), UUID)

    def test_ttl(self) -> None:
        """The TTL header must be an integer from 1 to 21600; anything else, or none, is 400."""
        self.assertEqual(parse_ttl(b"1"), 1)
        self.assertEqual(parse_ttl(b"21600"), MAX_TTL)
        for bad in (None, b"", b"0", b"21601", b"-1", b"1.5", b"abc", b"999999", b" 5", b"-"):
            self.assertEqual(self.assertRaises(MetadataError, parse_ttl, bad).code, 400, bad)


def token_harness(case: SynchronousTestCase, mode: str) -> Harness:
    """The API behind agents (signed requests) with two instances and tokens C{mode}."""
    h = Harness(case, secret="s3cret")
    h.store.add(fixture())
    h.store.add(fixture(uuid=OTHER, ec2_instance_id=2))
    if mode != "off":
        h.app.tokens = SessionTokens(h.clock, mode == "required", "s3cret")
    return h


class TokenAPITests(SynchronousTestCase):
    """The API's token PUT and its checks, behind the metadata agents (signed requests)."""

    def harness(self, mode: str) -> Harness:
        return token_harness(self, mode)

    def token(self, h: Harness, ttl: bytes = b"21600", **kw: object) -> bytes:
        r = h.get(TOKEN_PATH, b"PUT", {b"X-aws-ec2-metadata-token-ttl-seconds": ttl}, **kw)  # type: ignore[arg-type]
        self.assertEqual(r.code, 200, r.body)
        return r.body

    def test_off_is_nova(self) -> None:
        """imds_tokens = off: the PUT is an unknown path (404, as Nova), and token headers are ignored."""
        h = self.harness("off")
        self.assertEqual(h.get(TOKEN_PATH, b"PUT", {b"X-aws-ec2-metadata-token-ttl-seconds": b"60"}).code, 404)
        r = h.get("/latest/meta-data/instance-id", headers={b"X-aws-ec2-metadata-token": b"nonsense"})
        self.assertEqual((r.code, r.body), (200, b"i-00000001"))

    def test_put(self) -> None:
        """The PUT answers 200 with the token as text and its TTL in X-aws-ec2-metadata-token-ttl-seconds."""
        h = self.harness("optional")
        r = h.get(TOKEN_PATH, b"PUT", {b"X-aws-ec2-metadata-token-ttl-seconds": b"300"})
        self.assertEqual(r.code, 200)
        self.assertEqual(len(r.body), TOKEN_LENGTH)
        self.assertEqual(r.header(b"x-aws-ec2-metadata-token-ttl-seconds"), b"300")
        self.assertEqual(r.header(b"content-type"), b"text/plain; charset=UTF-8")
        self.assertTrue(h.app.tokens.valid(r.body, UUID))  # type: ignore[union-attr]

    def test_put_double_slash(self) -> None:
        """//latest/api/token (as the AWS JS SDK sends it) is the same path."""
        h = self.harness("required")
        r = h.get("//latest/api/token", b"PUT", {b"X-aws-ec2-metadata-token-ttl-seconds": b"300"})
        self.assertEqual(r.code, 200)

    def test_put_bad_ttl(self) -> None:
        """A PUT without a TTL, or with one out of 1..21600, is 400."""
        h = self.harness("required")
        self.assertEqual(h.get(TOKEN_PATH, b"PUT").code, 400)
        for ttl in (b"0", b"21601", b"x", b"-"):
            self.assertEqual(h.get(TOKEN_PATH, b"PUT", {b"X-aws-ec2-metadata-token-ttl-seconds": ttl}).code, 400, ttl)

    def test_put_unknown_instance(self) -> None:
        """A PUT for an instance that is not there is 404, like any of its requests."""
        h = self.harness("required")
        headers = dict(h.signed(uuid="5d7b7f3a-9e8c-4a9b-8c1d-2e3f4a5b6c7d"))
        headers[b"X-aws-ec2-metadata-token-ttl-seconds"] = b"60"
        self.assertEqual(h.get(TOKEN_PATH, b"PUT", headers, signed=False).code, 404)  # type: ignore[arg-type]

    def test_other_methods_on_token_path(self) -> None:
        """GET (or POST...) on the token path is 405, allowing PUT."""
        h = self.harness("optional")
        r = h.get(TOKEN_PATH)
        self.assertEqual((r.code, r.header(b"allow")), (405, b"PUT"))
        self.assertEqual(h.get(TOKEN_PATH, b"POST").code, 405)

    def test_optional(self) -> None:
        """optional: requests without a token are served; with a good one too; with a bad one 401."""
        h = self.harness("optional")
        self.assertEqual(h.get("/latest/meta-data/instance-id").body, b"i-00000001")
        token = self.token(h)
        r = h.get("/latest/meta-data/instance-id", headers={b"X-aws-ec2-metadata-token": token})
        self.assertEqual((r.code, r.body), (200, b"i-00000001"))
        self.assertEqual(h.get("/latest/meta-data/instance-id", headers={b"X-aws-ec2-metadata-token": b"nonsense"}).code, 401)
        self.assertEqual(h.get("/", headers={b"X-aws-ec2-metadata-token": b"nonsense"}).code, 401)
        self.assertEqual(h.get("/", signed=False).code, 200)

    def test_required(self) -> None:
        """required: every path without a token is 401 (the root too), before any lookup."""
        h = self.harness("required")
        for path in ("/", "/latest/meta-data/", "/latest/meta-data/instance-id", "/openstack/latest/meta_data.json", "/nonexistent"):
            self.assertEqual(h.get(path).code, 401, path)
        self.assertEqual(h.store.reads, 0)
        token = self.token(h)
        for path, code in (("/", 200), ("/latest/meta-data/instance-id", 200), ("/openstack/latest/meta_data.json", 200),
                           ("/nonexistent", 404)):
            self.assertEqual(h.get(path, headers={b"X-aws-ec2-metadata-token": token}).code, code, path)

    def test_required_cached(self) -> None:
        """A cached instance's answers check the token too (the path that needs no store read)."""
        h = self.harness("required")
        token = self.token(h)
        self.assertEqual(h.get("/latest/meta-data/hostname", headers={b"X-aws-ec2-metadata-token": token}).code, 200)
        reads = h.store.reads
        self.assertEqual(h.get("/latest/meta-data/hostname", headers={b"X-aws-ec2-metadata-token": token}).code, 200)
        self.assertEqual(h.get("/latest/meta-data/hostname", headers={b"X-aws-ec2-metadata-token": b"x" * 56}).code, 401)
        self.assertEqual(h.get("/latest/meta-data/hostname").code, 401)
        self.assertEqual(h.store.reads, reads)

    def test_another_instances_token(self) -> None:
        """A token of one instance is refused on another's requests (401)."""
        h = self.harness("required")
        token = self.token(h)
        headers = dict(h.signed(uuid=OTHER))
        headers[b"X-aws-ec2-metadata-token"] = token
        self.assertEqual(h.get("/latest/meta-data/instance-id", headers=headers, signed=False).code, 401)  # type: ignore[arg-type]

    def test_expired(self) -> None:
        """A token past its TTL is 401; a new PUT gives a good one again."""
        h = self.harness("required")
        token = self.token(h, b"10")
        h.clock.advance(10)
        self.assertEqual(h.get("/latest/meta-data/instance-id", headers={b"X-aws-ec2-metadata-token": token}).code, 401)
        fresh = self.token(h, b"10")
        self.assertEqual(h.get("/latest/meta-data/instance-id", headers={b"X-aws-ec2-metadata-token": fresh}).code, 200)

    def test_two_token_headers(self) -> None:
        """Two token headers are refused (401), whatever they hold."""
        h = self.harness("optional")
        token = self.token(h)
        r = h.get("/latest/meta-data/instance-id", headers={b"X-aws-ec2-metadata-token": [token, token]})
        self.assertEqual(r.code, 401)

    def test_behind_agents_forwarded_for_is_theirs(self) -> None:
        """Behind the agents X-Forwarded-For is the agent's own header: the PUT is answered."""
        h = self.harness("required")
        self.assertEqual(len(self.token(h)), TOKEN_LENGTH)  # the signed headers carry X-Forwarded-For

    def test_never_logged(self) -> None:
        """Neither a good nor a bad token appears in any log line; debug masks the header."""
        h = self.harness("required")
        with capturedLogs() as events:
            token = self.token(h)
            h.get("/latest/meta-data/instance-id", headers={b"X-aws-ec2-metadata-token": token})
            h.get("/nonexistent", headers={b"X-aws-ec2-metadata-token": token})
            h.get("/latest/meta-data/instance-id", headers={b"X-aws-ec2-metadata-token": b"bad" + token[3:]})
        text = "\n".join(formatEvent(e) + repr(e) for e in events)
        self.assertNotIn(token.decode(), text)
        self.assertNotIn(token[3:].decode(), text)
        masked = masked_headers({b"x-aws-ec2-metadata-token": [token]})
        self.assertEqual(masked, {"x-aws-ec2-metadata-token": "***"})


class RemoteAddressTokenTests(SynchronousTestCase):
    """Tokens with guests reaching the API themselves (remote-address mode): X-Forwarded-For on a PUT is refused."""

    def assertPut(self, h: Harness, headers: dict[bytes, bytes]) -> bytes:
        r = h.get(TOKEN_PATH, b"PUT", headers, signed=False)  # type: ignore[arg-type]
        self.assertEqual(r.code, 200, r.body)
        return r.body

    def harness(self, forwarded: bool = False) -> Harness:
        h = Harness(self, proxy=False, secret="s3cret", forwarded=forwarded)
        h.store.add(fixture())
        h.store.addresses.update({"127.0.0.1": UUID, "10.0.0.5": UUID})
        h.app.tokens = SessionTokens(h.clock, True, "s3cret")
        return h

    def test_forwarded_for_refused(self) -> None:
        """A PUT carrying X-Forwarded-For is 403, as AWS refuses it (a proxy the guest runs); without, 200."""
        h = self.harness()
        token = self.assertPut(h, {b"X-aws-ec2-metadata-token-ttl-seconds": b"60"})
        r = h.get("/latest/meta-data/instance-id", headers={b"X-aws-ec2-metadata-token": token}, signed=False)
        self.assertEqual((r.code, r.body), (200, b"i-00000001"))
        r = h.get(TOKEN_PATH, b"PUT", {b"X-aws-ec2-metadata-token-ttl-seconds": b"60", b"X-Forwarded-For": b"10.0.0.5"},
                  signed=False)
        self.assertEqual(r.code, 403)

    def test_front_end_forwarded_for(self) -> None:
        """With use_forwarded_for, one address (the trusted front end's) is fine; a second one is the guest's: 403."""
        h = self.harness(forwarded=True)
        self.assertPut(h, {b"X-aws-ec2-metadata-token-ttl-seconds": b"60", b"X-Forwarded-For": b"10.0.0.5"})
        two = {b"X-aws-ec2-metadata-token-ttl-seconds": b"60", b"X-Forwarded-For": [b"1.2.3.4", b"10.0.0.5"]}
        self.assertEqual(h.get(TOKEN_PATH, b"PUT", two, signed=False).code, 403)  # type: ignore[arg-type]
        joined = {b"X-aws-ec2-metadata-token-ttl-seconds": b"60", b"X-Forwarded-For": b"1.2.3.4, 10.0.0.5"}
        self.assertEqual(h.get(TOKEN_PATH, b"PUT", joined, signed=False).code, 403)


class TokenConfigTests(SynchronousTestCase):
    """[api] imds_tokens in the configuration."""

    def write(self, body: str) -> str:
        path = self.mktemp()
        with open(path, "w") as f:
            f.write(body)
        return path

    def test_default_off(self) -> None:
        """Tokens are off unless asked for."""
        self.assertEqual(load_config(None).api.imds_tokens, "off")

    def test_bad_value(self) -> None:
        """A value other than off, optional, required is an error naming file, line and option."""
        from mdsvc.config import ConfigError

        path = self.write("[api]\nimds_tokens = maybe\n")
        e = self.assertRaises(ConfigError, load_config, path)
        self.assertEqual(str(e), f"{path}:2: [api] imds_tokens = 'maybe': allowed: off | optional | required")

    def test_needs_secret(self) -> None:
        """Tokens without a shared secret (a public key) are refused in one line naming the option."""
        path = self.write("[api]\nimds_tokens = required\n")
        self.assertEqual(config_problems(load_config(path)), [
            f"{path}:2: [api] imds_tokens = required: session tokens are signed with a key derived from "
            "[neutron] metadata_proxy_shared_secret, which is not set"])
        path = self.write("[api]\nimds_tokens = required\n[neutron]\nmetadata_proxy_shared_secret = x\n")
        self.assertEqual(config_problems(load_config(path)), [])


class IdentityDocumentTests(SynchronousTestCase):
    """AWS's dynamic/instance-identity/document: with tokens on only, so that off keeps Nova's trees."""

    def test_served_with_tokens(self) -> None:
        """With tokens on, 2009-04-04 and latest have dynamic/instance-identity/document, AWS's JSON."""
        import json

        h = token_harness(self, "optional")
        for version in ("2009-04-04", "latest"):
            self.assertEqual(h.get(f"/{version}/dynamic/instance-identity/").body, b"document")
            r = h.get(f"/{version}/dynamic/instance-identity/document")
            document = json.loads(r.body)
            self.assertEqual((document["instanceId"], document["instanceType"], document["availabilityZone"], document["accountId"]),
                             ("i-00000001", "m1.small", "fake-az", "test"))
            self.assertEqual((document["region"], document["version"]), (None, "2017-09-30"))
            self.assertIn(b'"instanceId" : "i-00000001"', r.body)
        self.assertEqual(h.get("/latest/").body, b"dynamic/\nmeta-data/\nuser-data")
        self.assertEqual(h.get("/2008-09-01/dynamic/instance-identity/document").code, 404)

    def test_not_without_tokens(self) -> None:
        """With tokens off, there is no dynamic tree (Nova's 404) and the listing is Nova's."""
        h = token_harness(self, "off")
        self.assertEqual(h.get("/latest/dynamic/instance-identity/document").code, 404)
        self.assertEqual(h.get("/latest/").body, b"meta-data/\nuser-data")
