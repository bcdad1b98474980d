# -*- test-case-name: tests.test_lookup_neutron -*-
"""
The C{neutron} lookup backend: Neutron's REST API, authenticated with Keystone v3.

The two port queries of neutron spec §2.1 are sent as REST filters (§13)::

    GET /v2.0/ports?device_id=R&device_owner=network:router_interface
        &device_owner=network:ha_router_replicated_interface
        &device_owner=network:router_interface_distributed&fields=network_id
    GET /v2.0/ports?network_id=N1&network_id=N2&fixed_ips=ip_address%3D10.0.0.5
        &fields=device_id&fields=project_id&fields=tenant_id

(the first only when the guest came through a router; C{mac_address=M} replaces C{fixed_ips}
for IPv6 link-local guests).  The token comes from a Keystone v3 password authentication, is
renewed shortly before it expires and once when Neutron answers 401; concurrent requests share
one authentication.  Every HTTP call is bounded by C{[neutron] timeout}.  Neither the password
nor the token is ever logged or put in an error message.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime
from typing import Any
from urllib.parse import quote

from attrs import define, field
from twisted.internet.defer import CancelledError, Deferred, maybeDeferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.iweb import IPolicyForHTTPS
from zope.interface import implementer

from mdsvc.config import NeutronClientConfig
from mdsvc.interfaces import IInstanceLookup, LookupUnavailable
from mdsvc.lookup._match import choose, no_networks
from mdsvc.readiness import IHealthCheck

ROUTER_INTERFACE_OWNERS = (
    "network:router_interface",
    "network:ha_router_replicated_interface",
    "network:router_interface_distributed",
)

#: network ids per port query, so that a router with very many networks does not make a URI too
#: long for Neutron's server (LP #1348097); the results of the batches are combined.
NETWORKS_PER_QUERY = 100

#: renew a token this many seconds before it expires (at most half its lifetime)
RENEW_BEFORE = 60.0

#: errors of mdsvc's own code, not of the network: never disguised as unavailability
_PROGRAMMING_ERRORS = (TypeError, AttributeError, NameError, AssertionError)


def query_string(pairs: Iterable[tuple[str, str]]) -> str:
    """C{name=value&...}, values percent-encoded except for C{:} (so C{=} in a value is C{%3D})."""
    return "&".join(f"{quote(name, safe='')}={quote(value, safe=':')}" for name, value in pairs)


def router_ports_query(router_id: str) -> str:
    """The query string of the router-interface port query (neutron spec §2.1 step 1)."""
    pairs = [("device_id", router_id)] + [("device_owner", owner) for owner in ROUTER_INTERFACE_OWNERS]
    return query_string(pairs + [("fields", "network_id")])


def address_ports_query(network_ids: Iterable[str], ip: str, mac: str | None) -> str:
    """The query string of the address port query (neutron spec §2.1 step 2)."""
    pairs = [("network_id", n) for n in network_ids]
    pairs.append(("mac_address", mac) if mac is not None else ("fixed_ips", f"ip_address={ip}"))
    return query_string(pairs + [("fields", "device_id"), ("fields", "project_id"), ("fields", "tenant_id")])


def _one_line(text: str) -> str:
    return " ".join(str(text).split()) or "unknown error"


def _describe(failure: Failure) -> str:
    """One line for a failed HTTP exchange (treq/Agent errors wrap their reasons in lists)."""
    reasons = getattr(failure.value, "reasons", None)
    if reasons:
        inner = reasons[0]
        if isinstance(inner, Failure):
            return _describe(inner)
    message = _one_line(failure.getErrorMessage()) if str(failure.value) else ""
    name = failure.type.__name__ if failure.type is not None else "error"
    return f"{name}: {message}" if message and message != "unknown error" else name


def _cancelled(failure: Failure) -> bool:
    """Whether a failure is a cancellation, possibly wrapped by the HTTP client."""
    if failure.check(CancelledError):
        return True
    reasons = getattr(failure.value, "reasons", None) or []
    return bool(reasons) and all(isinstance(r, Failure) and r.check(CancelledError) for r in reasons)


def _timestamp(text: Any) -> float | None:
    if not isinstance(text, str):
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


@implementer(IInstanceLookup, IHealthCheck)
@define(eq=False)
class NeutronLookup:
    """
    L{IInstanceLookup} through Neutron's REST API.

    @ivar config: where Keystone and Neutron are and how to authenticate (C{[neutron]}).  With no
        C{auth_url}, C{endpoint_override} is called without a token (Neutron with
        C{auth_strategy = noauth}).
    @ivar http: a treq C{HTTPClient} (see L{build_http_client}).
    @ivar clock: for timeouts and token expiry.
    """

    config: NeutronClientConfig
    http: Any
    clock: IReactorTime
    name = "neutron"
    _log = Logger()
    _token: str | None = field(default=None, init=False, repr=False)
    _renew_at: float | None = field(default=None, init=False)
    _endpoint: str | None = field(default=None, init=False)
    _auth_waiters: list[Deferred[tuple[str | None, str]]] | None = field(default=None, init=False)
    authentications: int = field(default=0, init=False)

    def __attrs_post_init__(self) -> None:
        if not self.config.auth_url and not self.config.endpoint_override:
            raise ValueError("lookup = neutron needs [neutron] auth_url (or endpoint_override for a Neutron without authentication)")
        if self.config.auth_url and not (self.config.username and self.config.project_name):
            raise ValueError("lookup = neutron needs [neutron] username and project_name with auth_url")

    # -- IInstanceLookup ---------------------------------------------------------------------

    def lookup(
        self, ip: str, network_id: str | None = None, router_id: str | None = None, mac: str | None = None
    ) -> Deferred[tuple[str, str | None] | None]:
        """
        See L{IInstanceLookup.lookup}.  Given both a network and a router, the network is used
        (no router query); given neither, the Deferred fails with L{TypeError}.
        """
        return Deferred.fromCoroutine(self._lookup(ip, network_id, router_id, mac))

    def check(self) -> Deferred[None]:
        """See L{mdsvc.readiness.IHealthCheck}: a port query (authenticating first if need be), logging nothing."""
        from mdsvc.readiness import PROBE_ADDRESS, PROBE_NETWORK

        async def query() -> None:
            await self._ports(address_ports_query([PROBE_NETWORK], PROBE_ADDRESS, None))

        return Deferred.fromCoroutine(query())

    async def _lookup(
        self, ip: str, network_id: str | None, router_id: str | None, mac: str | None
    ) -> tuple[str, str | None] | None:
        if network_id is not None:
            networks = [network_id]
        elif router_id is not None:
            ports = await self._ports(router_ports_query(router_id))
            networks = list(dict.fromkeys(p["network_id"] for p in ports if isinstance(p.get("network_id"), str)))
            if not networks:
                no_networks(self._log, router_id)
                return None
        else:
            raise TypeError("Either one of parameter network_id or router_id must be passed to lookup.")
        matches: list[tuple[str, str | None]] = []
        for start in range(0, len(networks), NETWORKS_PER_QUERY):
            batch = networks[start:start + NETWORKS_PER_QUERY]
            for port in await self._ports(address_ports_query(batch, ip, mac)):
                device = port.get("device_id")
                project = port.get("project_id") or port.get("tenant_id") or None
                matches.append((device if isinstance(device, str) else "", project if isinstance(project, str) else None))
        return choose(matches, self._log, ip, network_id, router_id, mac)

    # -- Neutron -----------------------------------------------------------------------------

    async def _ports(self, query: str) -> list[dict[str, Any]]:
        """C{GET /v2.0/ports?query} with a valid token: the C{ports} list of the answer."""
        return await self.list_resources("ports", query)

    async def list_resources(self, collection: str, query: str) -> list[dict[str, Any]]:
        """
        C{GET /v2.0/COLLECTION?query} (C{ports}, C{security-groups}, C{subnets}) with a valid
        token: the list of the answer (under the collection's name, C{-} as C{_}).

        @raise LookupUnavailable: Keystone or Neutron cannot answer, or answered something else.
        """
        key = collection.replace("-", "_")
        for attempt in (1, 2):
            token, endpoint = await self._authenticated()
            base = endpoint.rstrip("/")
            if base.endswith("/v2.0"):
                base = base[: -len("/v2.0")]
            headers = {b"Accept": [b"application/json"], b"User-Agent": [b"mdsvc-metadata-agent"]}
            if token is not None:
                headers[b"X-Auth-Token"] = [token.encode("latin-1")]
            where = f"Neutron at {base}"
            code, _, body = await self._call("GET", f"{base}/v2.0/{collection}?{query}", headers, None, where)
            if code == 401 and token is not None:
                self._forget_token(token)
                if attempt == 1:
                    self._log.info("Neutron at {endpoint} refused the token (HTTP 401); authenticating again", endpoint=base)
                    continue
                raise LookupUnavailable(f"{where} refused a new token too (HTTP 401) for GET /v2.0/{collection}")
            if code != 200:
                raise LookupUnavailable(f"{where} answered HTTP {code} to GET /v2.0/{collection}")
            try:
                data = json.loads(body)
            except ValueError as e:
                raise LookupUnavailable(f"{where}: the answer to GET /v2.0/{collection} is not JSON: {_one_line(str(e))}") from None
            items = data.get(key) if isinstance(data, dict) else None
            if not isinstance(items, list) or not all(isinstance(p, dict) for p in items):
                raise LookupUnavailable(f"{where}: the answer to GET /v2.0/{collection} has no list of {key}")
            return items
        raise AssertionError("unreachable")

    def _call(
        self, method: str, url: str, headers: dict[bytes, list[bytes]], body: bytes | None, where: str
    ) -> Deferred[tuple[int, Any, bytes]]:
        """
        One HTTP exchange, bounded by C{timeout}: C{(code, headers, body)}.  Connection errors
        and timeouts fail with L{LookupUnavailable}; a caller's cancellation stays a cancellation.
        """
        d = maybeDeferred(self.http.request, method, url, headers=headers, data=body)

        def read(response: Any) -> Deferred[tuple[int, Any, bytes]]:
            content: Deferred[bytes] = response.content()
            return content.addCallback(lambda data: (response.code, response.headers, data))

        def timed_out(result: Any, timeout: float) -> Any:
            # Agent turns the cancellation into ResponseNeverReceived([CancelledError]), which
            # addTimeout's default translation does not recognise.
            if isinstance(result, Failure):
                raise LookupUnavailable(f"{where}: no answer within {timeout:g} s")
            return result

        def failed(failure: Failure) -> Failure:
            if _cancelled(failure):
                raise CancelledError()
            if failure.check(LookupUnavailable, *_PROGRAMMING_ERRORS) or not failure.check(Exception):
                return failure
            raise LookupUnavailable(f"{where}: {_describe(failure)}")

        d.addCallback(read)
        d.addTimeout(self.config.timeout, self.clock, onTimeoutCancel=timed_out)
        d.addErrback(failed)
        return d

    # -- Keystone ----------------------------------------------------------------------------

    def _fresh(self) -> bool:
        if self._endpoint is None:
            return False
        if not self.config.auth_url:
            return True
        return self._token is not None and (self._renew_at is None or self.clock.seconds() < self._renew_at)

    def _forget_token(self, token: str) -> None:
        if self._token == token:
            self._token, self._renew_at = None, None

    def _authenticated(self) -> Deferred[tuple[str | None, str]]:
        """A valid C{(token, endpoint)}: the current one, or one shared new authentication."""
        if not self.config.auth_url:
            self._endpoint = self.config.endpoint_override
        if self._fresh():
            assert self._endpoint is not None
            return succeed((self._token, self._endpoint))
        waiter: Deferred[tuple[str | None, str]] = Deferred()
        if self._auth_waiters is not None:
            self._auth_waiters.append(waiter)
            return waiter
        self._auth_waiters = [waiter]
        Deferred.fromCoroutine(self._authenticate()).addBoth(self._authentication_done)
        return waiter

    def _authentication_done(self, result: Any) -> None:
        waiters, self._auth_waiters = self._auth_waiters or [], None
        for waiter in waiters:
            if isinstance(result, Failure):
                waiter.errback(Failure(result.value, result.type, result.tb))
            else:
                waiter.callback(result)

    def auth_request(self) -> tuple[str, bytes]:
        """The Keystone URL and JSON body of a v3 password authentication scoped to the project."""
        base = self.config.auth_url.rstrip("/")
        url = f"{base}/auth/tokens" if base.endswith("/v3") else f"{base}/v3/auth/tokens"
        body = {
            "auth": {
                "identity": {
                    "methods": ["password"],
                    "password": {
                        "user": {
                            "name": self.config.username,
                            "domain": {"name": self.config.user_domain_name},
                            "password": self.config.password,
                        }
                    },
                },
                "scope": {"project": {"name": self.config.project_name, "domain": {"name": self.config.project_domain_name}}},
            }
        }
        return url, json.dumps(body).encode("utf-8")

    async def _authenticate(self) -> tuple[str | None, str]:
        url, body = self.auth_request()
        where = f"Keystone at {self.config.auth_url}"
        headers = {
            b"Content-Type": [b"application/json"],
            b"Accept": [b"application/json"],
            b"User-Agent": [b"mdsvc-metadata-agent"],
        }
        self.authentications += 1
        code, answer_headers, content = await self._call("POST", url, headers, body, where)
        if code == 401:
            raise LookupUnavailable(f"{where} refused the credentials of user {self.config.username!r} (HTTP 401)")
        if code not in (200, 201):
            raise LookupUnavailable(f"{where} answered HTTP {code} to the authentication")
        tokens = answer_headers.getRawHeaders(b"x-subject-token") or []
        if not tokens or not tokens[0].strip():
            raise LookupUnavailable(f"{where}: the authentication answer has no X-Subject-Token header")
        token = tokens[0].strip().decode("latin-1")
        try:
            data = json.loads(content)
            details = data["token"]
            if not isinstance(details, dict):
                raise TypeError("token is not an object")
        except (ValueError, KeyError, TypeError) as e:
            raise LookupUnavailable(f"{where}: the authentication answer is not a Keystone token: {_one_line(str(e))}") from None
        endpoint = self.config.endpoint_override or self._catalog_endpoint(details.get("catalog"), where)
        now = self.clock.seconds()
        expires, issued = _timestamp(details.get("expires_at")), _timestamp(details.get("issued_at"))
        renew_at = None
        lifetime = None
        if expires is not None:
            # lifetime from Keystone's own two stamps when it gives both: immune to clock skew
            lifetime = expires - issued if issued is not None else expires - now
            if lifetime > 0:
                renew_at = now + lifetime - min(RENEW_BEFORE, lifetime / 2)
            else:
                self._log.warn(
                    "{auth_url} gave a token that expires at {expires_at}, which is not in the future here: "
                    "renewing it only when Neutron refuses it",
                    auth_url=self.config.auth_url, expires_at=details.get("expires_at"),
                )
                lifetime = None
        self._token, self._renew_at, self._endpoint = token, renew_at, endpoint
        self._log.info(
            "authenticated to {auth_url} as {username} (project {project}); Neutron endpoint {endpoint}; token lifetime {lifetime}",
            auth_url=self.config.auth_url, username=self.config.username, project=self.config.project_name,
            endpoint=endpoint, lifetime="unknown" if lifetime is None else f"{lifetime:.0f} s",
        )
        return token, endpoint

    def _catalog_endpoint(self, catalog: Any, where: str) -> str:
        """The URL of the C{network} service: the first of C{valid_interfaces} found, in the region."""
        region = self.config.region_name
        services = [s for s in catalog if isinstance(s, dict) and s.get("type") == "network"] if isinstance(catalog, list) else []
        endpoints = [e for s in services for e in (s.get("endpoints") or []) if isinstance(e, dict)]
        for interface in self.config.valid_interfaces:
            for endpoint in endpoints:
                if endpoint.get("interface") != interface or not isinstance(endpoint.get("url"), str):
                    continue
                if region and region not in (endpoint.get("region_id"), endpoint.get("region")):
                    continue
                return str(endpoint["url"])
        in_region = f" in region {region}" if region else ""
        raise LookupUnavailable(
            f"{where}: the service catalog has no network endpoint with interface "
            f"{' or '.join(self.config.valid_interfaces)}{in_region}"
        )


@implementer(IPolicyForHTTPS)
class NoVerificationPolicy:
    """TLS without certificate verification, for C{[neutron] insecure = true}."""

    def __init__(self) -> None:
        from twisted.internet.ssl import CertificateOptions

        self._options = CertificateOptions(verify=False)

    def creatorForNetloc(self, hostname: bytes, port: int) -> Any:
        """The same unverified client options for every server."""
        return self._options


def build_http_client(reactor: Any, config: NeutronClientConfig, pool_size: int = 10) -> Any:
    """
    A pooled treq C{HTTPClient} for Keystone and Neutron: TLS verified against C{cafile} when
    set (else the system's CAs), not verified when C{insecure}; connecting bounded by C{timeout}.

    @raise ValueError: C{cafile} cannot be read or holds no certificate.
    """
    from treq.client import HTTPClient
    from twisted.web.client import Agent, BrowserLikePolicyForHTTPS, HTTPConnectionPool

    policy: Any
    if config.insecure:
        policy = NoVerificationPolicy()
    elif config.cafile:
        from twisted.internet.ssl import trustRootFromCertificates

        from mdsvc.files import read_certificates

        try:
            certs = read_certificates(config.cafile)
        except ValueError as e:
            raise ValueError(f"[neutron] cafile {e}") from None
        policy = BrowserLikePolicyForHTTPS(trustRoot=trustRootFromCertificates(certs))
    else:
        policy = BrowserLikePolicyForHTTPS()
    pool = HTTPConnectionPool(reactor, persistent=True)
    pool.maxPersistentPerHost = pool_size
    return HTTPClient(Agent(reactor, contextFactory=policy, connectTimeout=config.timeout, pool=pool))
