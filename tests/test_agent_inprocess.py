"""The agent's in-process hop to the API (all-in-one): the API's own code, without headers."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from mdsvc.api.inprocess import InProcessAPI
from mdsvc.hop import IAPIHop, SignedRequest, sign
from tests.test_api_resource import UUID, Harness, fixture


class InProcessAPITests(SynchronousTestCase):
    """InProcessAPI answers as the API does over HTTP."""

    def setUp(self) -> None:
        self.h = Harness(self, secret="k")
        self.h.store.add(fixture())
        self.api = InProcessAPI(self.h.app)

    def forward(self, path: bytes, method: bytes = b"GET", body: bytes = b"", signature: str | None = None, tenant: str = "test"):
        sig = signature if signature is not None else sign("k", UUID)
        return self.successResultOf(self.api.forward(SignedRequest(method, path, body, "10.0.0.5", UUID, tenant, sig)))

    def test_interface(self) -> None:
        """It is an IAPIHop, as the HTTP forwarder is."""
        from zope.interface.verify import verifyObject

        self.assertTrue(verifyObject(IAPIHop, self.api))

    def test_answer(self) -> None:
        """A signed request: 200, the API's content type and body; the query string is ignored."""
        r = self.forward(b"/openstack/latest/meta_data.json?x=1")
        self.assertEqual((r.code, r.headers), (200, ((b"Content-Type", b"application/json"),)))
        self.assertIn(UUID.encode(), r.body)

    def test_identity_without_headers(self) -> None:
        """
        The agent in this process vouches for the instance itself: no headers are built and no
        signature is checked (there is no hop to protect); error pages are plain text, as the
        agent sends no Accept.
        """
        r = self.forward(b"/latest/meta-data/hostname", signature="not checked in-process")
        self.assertEqual(r.code, 200)
        r = self.forward(b"/latest/nothing")
        self.assertEqual(r.headers, ((b"Content-Type", b"text/plain; charset=UTF-8"),))

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
