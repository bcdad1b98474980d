"""The agent's in-process hop to the API (all-in-one): the API's own code, signature and all."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from mdsvc.agent.inprocess import InProcessAPI
from mdsvc.api.identify import sign
from tests.test_api_resource import UUID, Harness, fixture


class InProcessAPITests(SynchronousTestCase):
    """InProcessAPI answers as the API does over HTTP."""

    def setUp(self) -> None:
        self.h = Harness(self, secret="k")
        self.h.store.add(fixture())
        self.api = InProcessAPI(self.h.app)

    def forward(self, path: bytes, method: bytes = b"GET", body: bytes = b"", signature: str | None = None, tenant: str = "test"):
        sig = signature if signature is not None else sign("k", UUID)
        return self.successResultOf(self.api.forward(method, path, body, b"10.0.0.5", UUID, tenant, sig))

    def test_answer(self) -> None:
        """A signed request: 200, the API's content type and body; the query string is ignored."""
        r = self.forward(b"/openstack/latest/meta_data.json?x=1")
        self.assertEqual((r.code, r.headers), (200, ((b"Content-Type", b"application/json"),)))
        self.assertIn(UUID.encode(), r.body)

    def test_signature_checked(self) -> None:
        """A wrong signature is the API's 403, in plain text (the agent sends no Accept)."""
        r = self.forward(b"/latest/meta-data/hostname", signature=sign("other", UUID))
        self.assertEqual((r.code, r.body), (403, b"403 Forbidden\n\nInvalid proxy request signature.\n\n   "))

    def test_tenant_and_path(self) -> None:
        """A wrong tenant and an unknown path are 404; the root needs nothing."""
        self.assertEqual(self.forward(b"/latest/meta-data/hostname", tenant="other").code, 404)
        self.assertEqual(self.forward(b"/latest/nothing").code, 404)
        self.assertEqual(self.forward(b"/").code, 200)

    def test_password(self) -> None:
        """The password POST body reaches the store; too big is 400."""
        self.assertEqual(self.forward(b"/openstack/latest/password", b"POST", b"x" * 1021).code, 400)
        self.assertEqual(self.forward(b"/openstack/latest/password", b"POST", b"pw").code, 200)
        self.assertEqual(self.h.store.instances[UUID].password, "pw")
