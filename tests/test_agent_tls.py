"""The agent's TLS to the API: verified with service_identity, a CA file, insecure mode, client certificates."""

from __future__ import annotations

import datetime
import ipaddress
import os
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from twisted.internet import reactor, ssl
from twisted.internet.endpoints import HostnameEndpoint, wrapClientTLS
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from mdsvc.agent.tls import AgentTLSPolicy
from mdsvc.http import HTTPRequest, HTTPResponse, LeanHTTPFactory
from mdsvc.httpclient import ConnectionFailed, HTTPPool


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def make_cert(common: str, issuer: tuple[Any, x509.Certificate] | None, ca: bool = False, san: list[Any] | None = None) -> tuple[Any, x509.Certificate]:
    """A key and a certificate, self-signed or signed by C{issuer}."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common))
        .issuer_name(issuer[1].subject if issuer else _name(common))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if san:
        builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
    cert = builder.sign(issuer[0] if issuer else key, hashes.SHA256())
    return key, cert


def pem(key: Any, cert: x509.Certificate) -> tuple[bytes, bytes]:
    return (
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
        cert.public_bytes(serialization.Encoding.PEM),
    )


class AgentTLSTests(TestCase):
    """A LeanHTTP API behind TLS on loopback, reached through HTTPPool with AgentTLSPolicy."""

    def setUp(self) -> None:
        self.dir = os.path.abspath(self.mktemp())
        os.makedirs(self.dir)
        self.ca = make_cert("test CA", None, ca=True)
        self.other_ca = make_cert("other CA", None, ca=True)
        self.server = make_cert("api", self.ca, san=[x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
        self.client = make_cert("agent", self.ca)
        self.seen: list[HTTPRequest] = []
        # a refused handshake closes its TCP connection a moment after the request failed
        self.addCleanup(deferLater, reactor, 0.2, lambda: None)

    def write(self, name: str, data: bytes) -> str:
        path = os.path.join(self.dir, name)
        with open(path, "wb") as f:
            f.write(data)
        return path

    def handler(self, request: HTTPRequest) -> HTTPResponse:
        self.seen.append(request)
        return HTTPResponse(200, (), b"over tls")

    def listen(self, require_client_cert: bool = False) -> int:
        key, cert = pem(*self.server)
        server = ssl.PrivateCertificate.loadPEM(cert + b"\n" + key)
        options = ssl.CertificateOptions(
            privateKey=server.privateKey.original,
            certificate=server.original,
            verify=require_client_cert,
            caCerts=[ssl.Certificate.loadPEM(pem(*self.ca)[1]).original] if require_client_cert else None,
            requireCertificate=require_client_cert,
        )
        port = reactor.listenSSL(0, LeanHTTPFactory(self.handler, reactor), options, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        return port.getHost().port

    def pool(self, port: int, policy: AgentTLSPolicy, host: str = "localhost") -> HTTPPool:
        endpoint = wrapClientTLS(policy.creatorForNetloc(host.encode(), port), HostnameEndpoint(reactor, "127.0.0.1", port))
        pool = HTTPPool(endpoint.connect, b"%s:%d" % (host.encode(), port), clock=reactor)
        self.addCleanup(pool.close)
        return pool

    async def test_verified_with_ca_file(self) -> None:
        """With auth_ca_cert the server's certificate is verified against it, and the name checked."""
        port = self.listen()
        ca = self.write("ca.pem", pem(*self.ca)[1])
        response = await self.pool(port, AgentTLSPolicy(ca_cert=ca)).request(b"GET", b"/x", [], timeout=5)
        self.assertEqual(response.body, b"over tls")

    async def test_wrong_ca_refused(self) -> None:
        """A certificate from another CA is refused: the request fails, nothing reaches the API."""
        port = self.listen()
        ca = self.write("other.pem", pem(*self.other_ca)[1])
        with self.assertRaises(ConnectionFailed):
            await self.pool(port, AgentTLSPolicy(ca_cert=ca)).request(b"GET", b"/x", [], timeout=5)
        self.assertEqual(self.seen, [])

    async def test_wrong_name_refused(self) -> None:
        """A certificate for another name is refused (service_identity)."""
        port = self.listen()
        ca = self.write("ca.pem", pem(*self.ca)[1])
        with self.assertRaises(ConnectionFailed):
            await self.pool(port, AgentTLSPolicy(ca_cert=ca), host="api.example.org").request(b"GET", b"/x", [], timeout=5)

    async def test_insecure(self) -> None:
        """nova_metadata_insecure: any certificate is accepted."""
        port = self.listen()
        response = await self.pool(port, AgentTLSPolicy(insecure=True)).request(b"GET", b"/x", [], timeout=5)
        self.assertEqual(response.body, b"over tls")

    async def test_client_certificate(self) -> None:
        """nova_client_cert + nova_client_priv_key: the agent proves who it is to an API that asks."""
        port = self.listen(require_client_cert=True)
        ca = self.write("ca.pem", pem(*self.ca)[1])
        key, cert = pem(*self.client)
        policy = AgentTLSPolicy(ca_cert=ca, client_cert=self.write("client.pem", cert), client_key=self.write("client.key", key))
        response = await self.pool(port, policy).request(b"GET", b"/x", [], timeout=5)
        self.assertEqual(response.body, b"over tls")
        with self.assertRaises(ConnectionFailed):
            await self.pool(port, AgentTLSPolicy(ca_cert=ca)).request(b"GET", b"/x", [], timeout=5)


