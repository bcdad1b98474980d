# -*- test-case-name: tests.test_api_identify -*-
"""
Which instance is asking (spec §4): signed proxy headers, or the remote address.

Proxy mode (C{[neutron] service_metadata_proxy}) trusts C{X-Instance-ID} only with a valid
C{X-Instance-ID-Signature} (HMAC-SHA256 of the id with C{metadata_proxy_shared_secret}, compared
in constant time).  Otherwise the instance is found by the connection's address, or by
C{X-Forwarded-For} only when C{[api] use_forwarded_for} says the front end can be trusted.
Neither the secret nor an expected signature is ever logged.
"""

from __future__ import annotations

import hmac

from attrs import define, field, frozen
from twisted.logger import Logger

from mdsvc.api.errors import MetadataError
from mdsvc.hop import sign
from mdsvc.wire import loggable

log = Logger()


@define
class ByInstanceId:
    """
    A proxy vouched for the instance: its id, the project the port belongs to, the guest IP.
    (Read-only; these identities are not frozen, as one is made per request.)
    """

    uuid: str
    tenant: str
    address: str | None


@define
class ByProvider:
    """A provider (NSX edge, load balancer) vouched for the guest's address in its networks."""

    provider: str
    address: str


@define
class ByAddress:
    """No proxy: the instance is the one holding this fixed IP."""

    address: str


def first_forwarded(value: bytes | None) -> str | None:
    """The first address of an C{X-Forwarded-For} value, stripped; None if empty."""
    if not value:
        return None
    first = value.split(b",", 1)[0].strip()
    return first.decode("latin-1") or None


def _header(headers: dict[bytes, list[bytes]], name: bytes) -> bytes | None:
    values = headers.get(name)
    if not values:
        return None
    return b", ".join(values)


@frozen
class Identifier:
    """Turns a request's headers and address into an identity, per the configured mode."""

    service_metadata_proxy: bool
    shared_secret: str = field(repr=False)
    use_forwarded_for: bool = False
    previous: tuple[str, ...] = field(default=(), repr=False)
    """Secrets whose signatures are still accepted, while a new secret is rolled out (L{mdsvc.reload})."""
    _expected: dict[bytes, bytes] = field(factory=dict, init=False, repr=False, eq=False)
    """The expected signature of each instance id seen (a pure function of id and secret)."""

    def identify(self, headers: dict[bytes, list[bytes]], peer: str | None) -> ByInstanceId | ByAddress | ByProvider:
        """
        @param headers: lower-cased header names to their raw values.
        @param peer: the connection's remote address.
        @raise MetadataError: 400 for missing or malformed headers, 403 for a bad signature,
            500 when there is no address at all (the spec's own 500).
        """
        if self.service_metadata_proxy:
            if headers.get(b"x-metadata-provider"):
                return self._by_provider(headers)
            return self._by_instance_id(headers)
        if headers.get(b"x-instance-id"):
            log.warn(
                "X-Instance-ID present in request headers. The 'service_metadata_proxy' option must be enabled to process this header."
            )
        address = first_forwarded(_header(headers, b"x-forwarded-for")) if self.use_forwarded_for else None
        address = address or peer
        if not address:
            raise MetadataError(500, "An unknown error has occurred. Please try your request again.", "request has no remote address")
        return ByAddress(address)

    def _by_provider(self, headers: dict[bytes, list[bytes]]) -> ByProvider:
        """Provider mode (spec §4.4): the first X-Forwarded-For address within the provider."""
        forwarded = _header(headers, b"x-forwarded-for")
        if not forwarded:
            raise MetadataError(400, "X-Forwarded-For is missing from request.")
        providers = headers[b"x-metadata-provider"]
        if len(providers) > 1:
            raise MetadataError(400, "Multiple X-Metadata-Provider headers found within request.")
        provider = providers[0]
        address = first_forwarded(forwarded) or ""
        if self.shared_secret:
            expected = sign(self.shared_secret, provider).encode("ascii")
            signature = _header(headers, b"x-metadata-provider-signature") or b""
            if not hmac.compare_digest(expected, signature) and not self._signed_before(provider, signature):
                log.warn(
                    "X-Instance-ID-Signature: {signature} does not match the expected signature for id: {requestor_id}. Request From: {requestor_address}",
                    signature=loggable(signature), requestor_id=loggable(provider), requestor_address=loggable(address),
                )
                raise MetadataError(403, "Invalid proxy request signature.", "invalid X-Metadata-Provider-Signature")
        try:
            return ByProvider(provider.decode("utf-8"), address)
        except UnicodeDecodeError:
            raise MetadataError(400, "X-Metadata-Provider must be UTF-8.") from None

    def _by_instance_id(self, headers: dict[bytes, list[bytes]]) -> ByInstanceId:
        instance_ids = headers.get(b"x-instance-id")
        if not instance_ids:
            raise MetadataError(400, "X-Instance-ID header is missing from request.")
        signature = _header(headers, b"x-instance-id-signature")
        if signature is None:
            raise MetadataError(400, "X-Instance-ID-Signature header is missing from request.")
        tenants = headers.get(b"x-tenant-id")
        if not tenants:
            raise MetadataError(400, "X-Tenant-ID header is missing from request.")
        if len(instance_ids) > 1:
            raise MetadataError(400, "Multiple X-Instance-ID headers found within request.")
        if len(tenants) > 1:
            raise MetadataError(400, "Multiple X-Tenant-ID headers found within request.")
        instance_id = instance_ids[0]
        address = first_forwarded(_header(headers, b"x-forwarded-for"))
        known = self._expected.get(instance_id)
        expected = known if known is not None else sign(self.shared_secret, instance_id).encode("ascii")
        if not hmac.compare_digest(expected, signature) and not self._signed_before(instance_id, signature):  # constant-time
            log.warn(
                "X-Instance-ID-Signature: {signature} does not match the expected signature for id: {requestor_id}. Request From: {requestor_address}",
                signature=loggable(signature), requestor_id=loggable(instance_id), requestor_address=loggable(address or ""),
            )
            raise MetadataError(403, "Invalid proxy request signature.", "invalid X-Instance-ID-Signature")
        if known is None:
            # remembered only once verified: nothing a caller without the secret sends is kept
            if len(self._expected) >= 65536:
                self._expected.clear()
            self._expected[instance_id] = expected
        try:
            uuid = instance_id.decode("utf-8")
            tenant = tenants[0].decode("utf-8")
        except UnicodeDecodeError:
            raise MetadataError(400, "X-Instance-ID and X-Tenant-ID must be UTF-8.") from None
        return ByInstanceId(uuid=uuid, tenant=tenant, address=address)

    def _signed_before(self, value: bytes, signature: bytes) -> bool:
        """Whether C{signature} is C{value}'s with one of the L{previous} secrets (constant-time each)."""
        good = False
        for secret in self.previous:
            good |= hmac.compare_digest(sign(secret, value).encode("ascii"), signature)
        return good


__all__ = ["ByAddress", "ByInstanceId", "ByProvider", "Identifier", "first_forwarded", "sign"]
