# -*- test-case-name: tests.test_agent_tls -*-
"""
TLS towards the metadata API (metadata_agent.ini: C{nova_metadata_protocol = https},
C{nova_metadata_insecure}, C{auth_ca_cert}, C{nova_client_cert}, C{nova_client_priv_key}).

The server's certificate is verified with service_identity against the host name, using the
system's CAs or C{auth_ca_cert}; C{nova_metadata_insecure} turns verification off.  A client
certificate is sent only when both the certificate and its key are given, as in Neutron.
"""

from __future__ import annotations

from typing import Any

from OpenSSL import SSL
from twisted.internet import ssl
from twisted.internet.interfaces import IOpenSSLClientConnectionCreator
from twisted.web.iweb import IPolicyForHTTPS
from zope.interface import implementer

from mdsvc.files import read_certificates, read_private_certificate


@implementer(IPolicyForHTTPS)
class AgentTLSPolicy:
    """Client TLS options for the API connection, built once at startup."""

    def __init__(self, ca_cert: str = "", client_cert: str = "", client_key: str = "", insecure: bool = False) -> None:
        self._insecure = insecure
        self._trust = ssl.trustRootFromCertificates(read_certificates(ca_cert)) if ca_cert else None
        self._client = None
        if client_cert and client_key:
            self._client = read_private_certificate(client_cert, client_key)

    def creatorForNetloc(self, hostname: bytes, port: int) -> Any:
        """TLS options for one API host."""
        if self._insecure:
            options = ssl.CertificateOptions(
                verify=False, privateKey=self._client.privateKey.original if self._client else None,
                certificate=self._client.original if self._client else None,
            )
            return _Unverified(options)
        kwargs: dict[str, Any] = {}
        if self._trust is not None:
            kwargs["trustRoot"] = self._trust
        if self._client is not None:
            kwargs["clientCertificate"] = self._client
        return ssl.optionsForClientTLS(hostname.decode("ascii"), **kwargs)


@implementer(IOpenSSLClientConnectionCreator)
class _Unverified:
    """Client connections without certificate verification (nova_metadata_insecure)."""

    def __init__(self, options: ssl.CertificateOptions) -> None:
        self._options = options

    def clientConnectionForTLS(self, tlsProtocol: Any) -> SSL.Connection:
        """A client-side OpenSSL connection that checks nothing about the server."""
        connection = SSL.Connection(self._options.getContext(), None)
        connection.set_app_data(tlsProtocol)
        connection.set_connect_state()
        return connection
