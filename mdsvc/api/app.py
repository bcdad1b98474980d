# -*- test-case-name: tests.test_api_resource -*-
"""
L{MetadataApp}: one metadata request from its headers (or, in the same process as the agent, its
already established identity) to an L{Answer}, independent of HTTP: L{mdsvc.api.handler} serves
it on a socket, L{mdsvc.api.inprocess} to an agent in the same process.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable
from typing import Any

from attrs import define, field
from twisted.internet.defer import CancelledError, Deferred, ensureDeferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from mdsvc.api.errors import MetadataError, not_found
from mdsvc.api.identify import ByAddress, ByInstanceId, ByProvider, Identifier
from mdsvc.api.injected import InterfacesTemplate
from mdsvc.api.metadata import EC2_VERSION_LIST, HTML, JSON, TEXT, Answer, InstanceMetadata, Password, dumps, normalise_path
from mdsvc.api.tokens import SessionTokens, parse_ttl
from mdsvc.api.vendordata import StaticJSONFile, merge_vendordata
from mdsvc.cache import ExpiringCache
from mdsvc.hop import UNKNOWN_ERROR, error_response
from mdsvc.http import HTTPResponse
from mdsvc.imds import TOKEN_HEADER, TTL_HEADER, TTL_HEADER_NAME, carried
from mdsvc.interfaces import AmbiguousAddress, ICache, IInstanceStore, IVendordataProvider, StoreUnavailable
from mdsvc.limits import LogThrottle
from mdsvc.model import Instance
from mdsvc.wire import loggable

ROOT_ANSWER = Answer(EC2_VERSION_LIST, TEXT)
"""C{GET /}: the EC2 versions, answered without identifying anyone."""

MAX_PASSWORD_SIZE = 4 * 255
"""Nova stores the password in four system-metadata chunks of 255 characters (spec §2.4.7)."""

TOKEN_PATH = ("latest", "api", "token")
"""Where a session token is asked for (C{PUT}), with C{[api] imds_tokens} on."""


@define
class MetadataApp:
    """
    Answers metadata requests for the instances of C{store}.

    @ivar interfaces: with C{[DEFAULT] flat_injected}, the interfaces template rendered for each
        instance (C{network_config}); None without.
    @ivar providers: C{vendordata_providers} in order; C{"StaticJSON"} reads C{static_file},
        any other name is looked up in C{built_providers}.
    @ivar built_providers: the L{IVendordataProvider}s of C{providers} by name (C{DynamicJSON}
        and vendors' plugins: L{mdsvc.api.factory.build_vendordata_providers}).
    @ivar tokens: with C{[api] imds_tokens} on, the session tokens (L{mdsvc.api.tokens}); None
        when off (Nova's behaviour: C{PUT /latest/api/token} is an unknown path, 404).
    @ivar answered_instance: the uuid of the instance the last answer given at once from the
        render cache was for (the entry's own string), set with that answer; what the API's hop
        meter notes (L{mdsvc.api.handler}), read before the next request is handled.
    @ivar answered_address: the guest's address the identity of that answer carried, or None.
    """

    store: IInstanceStore
    identifier: Identifier
    clock: IReactorTime
    dhcp_domain: str = "novalocal"
    interfaces: InterfacesTemplate | None = None
    cache_ttl: float = 15
    static_file: StaticJSONFile = field(factory=lambda: StaticJSONFile(None))
    providers: tuple[str, ...] = ("StaticJSON",)
    built_providers: dict[str, IVendordataProvider] = field(factory=dict)
    cache: ICache = field(default=None)
    tokens: SessionTokens | None = None
    _not_found_lines: LogThrottle = field(default=None, init=False, repr=False)
    _unavailable_lines: LogThrottle = field(default=None, init=False, repr=False)
    _day: tuple[float, float, str] = field(default=(0.0, 0.0, ""), init=False, repr=False)
    answered_instance: str | None = field(default=None, init=False, repr=False)
    answered_address: str | None = field(default=None, init=False, repr=False)
    _log = Logger()

    def __attrs_post_init__(self) -> None:
        if self.cache is None:
            self.cache = ExpiringCache(self.clock, self.cache_ttl)
        self._not_found_lines = LogThrottle(self.clock)
        self._unavailable_lines = LogThrottle(self.clock)

    def today(self) -> str:
        """The UTC date by the injected clock, for the OpenStack version listing."""
        now = self.clock.seconds()
        if not self._day[0] <= now < self._day[1]:
            start = now - now % 86400
            self._day = (start, start + 86400, time.strftime("%Y-%m-%d", time.gmtime(now)))
        return self._day[2]

    # -- loading ------------------------------------------------------------------------------

    def render(self, instance: Instance) -> InstanceMetadata:
        """A fresh render cache entry for C{instance} (StaticJSON data as of now)."""
        static = self.static_file.load() if "StaticJSON" in self.providers else None
        return InstanceMetadata(instance, self.dhcp_domain, static, self.interfaces, self.tokens is not None)

    def _load_uuid(self, key: Any) -> Deferred[InstanceMetadata | None]:
        _, uuid = key  # ("uuid", uuid)
        return self.store.get(uuid).addCallback(lambda i: self.render(i) if i is not None else None)

    def _load_address(self, key: Any) -> Deferred[InstanceMetadata | None]:
        _, address = key  # ("address", address)
        return self.store.by_address(address).addCallback(lambda i: self.render(i) if i is not None else None)

    async def by_provider(self, identity: ByProvider) -> ByInstanceId:
        """
        Resolve provider mode to the instance (spec §4.4): exactly one port must hold the address
        in the provider's networks; the tenant is the port's.

        @raise MetadataError: 400 as Nova words it, or 500 for a store failure.
        """
        try:
            ports = await self.store.by_provider(identity.provider, identity.address)
        except CancelledError:
            raise
        except Exception as e:
            self._log.failure("provider lookup for {provider} failed", provider=identity.provider)
            raise MetadataError(400, UNKNOWN_ERROR, f"provider lookup failed: {e!r}") from None
        if ports is None:
            raise MetadataError(400, f"Could not find any subnets for provider {identity.provider}")
        if len(ports) != 1:
            raise MetadataError(
                400, f"Expected a single port matching provider {identity.provider} and IP {identity.address}. Found {len(ports)}.")
        uuid, project = ports[0]
        return ByInstanceId(uuid, project or "", identity.address)

    async def metadata_for(self, identity: ByInstanceId | ByAddress | ByProvider) -> tuple[InstanceMetadata, tuple[Hashable, ...]]:
        """
        The render cache entry of the identified instance, and the cache keys it lives under.

        @raise MetadataError: 404 with the concrete reason, 400 for provider-mode failures, or 500
            for a store failure.
        """
        if isinstance(identity, ByProvider):
            identity = await self.by_provider(identity)
        if isinstance(identity, ByInstanceId):
            key: tuple[str, str] = ("uuid", identity.uuid)
            try:
                md = await self.cache.get(key, self._load_uuid)
            except CancelledError:
                raise
            except StoreUnavailable as e:
                raise self._unavailable(e) from None
            except Exception as e:
                self._log.failure("Failed to get metadata for instance id: {uuid}", uuid=identity.uuid)
                raise MetadataError(500, UNKNOWN_ERROR, f"instance store failed: {e!r}") from None
            if md is None:
                raise not_found(f"instance {identity.uuid} not found")
            if (md.instance.project_id or "") != identity.tenant:
                self._log.warn(
                    "Tenant_id {tenant_id} does not match tenant_id of instance {instance_id}.",
                    tenant_id=identity.tenant, instance_id=identity.uuid,
                )
                raise not_found(f"X-Tenant-ID {identity.tenant} does not match the project of instance {identity.uuid}")
            return md, (key,)
        key = ("address", identity.address)
        try:
            md = await self.cache.get(key, self._load_address)
        except CancelledError:
            raise
        except AmbiguousAddress as e:
            raise MetadataError(500, UNKNOWN_ERROR, f"fixed IP {identity.address} is shared by instances {', '.join(e.args[1])}") from None
        except StoreUnavailable as e:
            raise self._unavailable(e) from None
        except Exception as e:
            self._log.failure("Failed to get metadata for IP {address}", address=identity.address)
            raise MetadataError(500, UNKNOWN_ERROR, f"instance store failed: {e!r}") from None
        if md is None:
            raise not_found(f"no instance has fixed IP {identity.address}")
        return md, (key, ("uuid", md.instance.uuid))

    def _unavailable(self, error: StoreUnavailable) -> MetadataError:
        """
        503 for a store that cannot answer now (its database down): logged with the reason, once a
        minute with the count of the others, so an outage during a boot storm stays readable.
        """
        held = self._unavailable_lines.allow("store")
        if held is not None:
            self._log.error("the instance store is unavailable: {reason}{more}", reason=str(error),
                            more=f" ({held} more requests answered 503 in the last minute)" if held else "")
        return MetadataError(503, "The instance store is temporarily unavailable. Please try again later.",
                             f"instance store unavailable: {error}")

    # -- answering ----------------------------------------------------------------------------

    def log_error(self, error: MetadataError, method: bytes, path: bytes, peer: str | None) -> None:
        """
        Every 500 is logged with its concrete reason (spec §9.6), and so is a guest's first 404
        of a minute; the guest's further 404s of that minute are counted in its next line, so
        a guest asking for missing paths in a loop costs a line a minute, not one per request.
        """
        if error.code == 500:
            self._log.error("{method} {path} from {peer}: {code} ({reason})", method=method.decode("latin-1"),
                            path=loggable(path), peer=peer, code=error.code, reason=error.reason)
        elif error.code == 404:
            held = self._not_found_lines.allow(peer)
            if held is not None:
                self._log.info("{method} {path} from {peer}: {code} ({reason}){more}", method=method.decode("latin-1"),
                               path=loggable(path), peer=peer, code=error.code, reason=error.reason,
                               more=f"; {held} more 404s from {peer} in the last minute" if held else "")

    def handle(
        self, method: bytes, raw_path: bytes, headers: dict[bytes, list[bytes]], peer: str | None, body: bytes,
    ) -> Answer | Deferred[Answer]:
        """
        One request from the raw path (without query) and lower-cased headers to an answer: at
        once when the instance is in the render cache and the path is a plain document (most
        requests of a boot), else a Deferred.

        @param body: the request's body (only the password POST reads it).
        @raise MetadataError: (raised, or as the Deferred's failure) for every error status.
        """
        segments = normalise_path(raw_path)
        if self.tokens is None:
            if segments is None:
                return ROOT_ANSWER
            return self._answer_for(method, segments, self.identifier.identify(headers, peer), body, None)
        if segments == TOKEN_PATH and method == b"PUT" and self._forwarded_by_guest(headers):
            raise MetadataError(403, "A token request must not carry X-Forwarded-For.", "token PUT with X-Forwarded-For refused")
        return self._session(method, segments, lambda: self.identifier.identify(headers, peer), body,
                             carried(headers.get(TOKEN_HEADER)), carried(headers.get(TTL_HEADER)))

    def handle_identified(
        self, method: bytes, raw_path: bytes, identity: ByInstanceId, body: bytes, token: bytes | None = None,
        ttl: bytes | None = None,
    ) -> Answer | Deferred[Answer]:
        """
        L{handle} for an agent in this process, which vouches for the instance itself: no
        headers to read, no signature to check (there is no hop to protect).

        @param token: the session token the guest sent (L{mdsvc.imds.carried}), or None.
        @param ttl: the token lifetime the guest asked for, or None.
        """
        segments = normalise_path(raw_path)
        if self.tokens is None:
            if segments is None:
                return ROOT_ANSWER
            return self._answer_for(method, segments, identity, body, None)
        return self._session(method, segments, lambda: identity, body, token, ttl)

    def _forwarded_by_guest(self, headers: dict[bytes, list[bytes]]) -> bool:
        """
        Whether a token PUT came through a proxy the guest runs (AWS refuses those): in
        remote-address mode, any C{X-Forwarded-For}; with C{use_forwarded_for}, more than the
        one address the trusted front end adds.  Behind the metadata agents the guest's headers
        never arrive, and the agent's are trusted.
        """
        if self.identifier.service_metadata_proxy:
            return False
        values = headers.get(b"x-forwarded-for")
        if not values:
            return False
        if self.identifier.use_forwarded_for:
            return len(values) > 1 or b"," in values[0]
        return True

    def _session(
        self, method: bytes, segments: tuple[str, ...] | None, identify: Callable[[], Any], body: bytes, token: bytes | None,
        ttl: bytes | None,
    ) -> Answer | Deferred[Answer]:
        """A request with session tokens on: the token PUT, or any other request with its token checked."""
        tokens = self.tokens
        assert tokens is not None
        if segments == TOKEN_PATH:
            if method != b"PUT":
                raise MetadataError(405, "A session token is asked for with PUT.", f"{method.decode('latin-1')} on the token path")
            seconds = parse_ttl(ttl)
            return ensureDeferred(self._issue(identify(), seconds))
        if segments is None:
            if token is None:
                tokens.check(None, "")  # 401 when required, before any lookup
                return ROOT_ANSWER
            return ensureDeferred(self._root(identify(), token))
        if token is None:
            tokens.check(None, "")  # 401 when required, before any lookup
        return self._answer_for(method, segments, identify(), body, token)

    async def _issue(self, identity: ByInstanceId | ByAddress | ByProvider, ttl: int) -> Answer:
        """A session token for the identified instance (404 when there is none)."""
        md, _ = await self.metadata_for(identity)
        assert self.tokens is not None
        token = self.tokens.issue(md.instance.uuid, ttl)
        return Answer(token, TEXT, ((TTL_HEADER_NAME, b"%d" % ttl),))

    async def _root(self, identity: ByInstanceId | ByAddress | ByProvider, token: bytes) -> Answer:
        """C{GET /} with a token, which must be the identified instance's."""
        md, _ = await self.metadata_for(identity)
        assert self.tokens is not None
        self.tokens.check(token, md.instance.uuid)
        return ROOT_ANSWER

    def _answer_for(
        self, method: bytes, segments: tuple[str, ...], identity: Any, body: bytes, token: bytes | None,
    ) -> Answer | Deferred[Answer]:
        answer = self._answer_cached(segments, identity, token)
        if answer is not None:
            return answer
        return ensureDeferred(self.answer(method, segments, identity, body, token))

    def failed(self, failure: Failure, method: bytes, path: bytes, peer: str | None, accept: bytes | None) -> HTTPResponse:
        """
        The error page for a request that failed: a L{MetadataError}'s status and text, or, for
        anything else, the generic 500 (logged with its traceback); 404s and 500s logged with
        their reason (L{log_error}).
        """
        error = failure.value
        if not isinstance(error, MetadataError):
            self._log.failure("unhandled error answering {method} {path}", failure, method=method, path=loggable(path))
            error = MetadataError(500, UNKNOWN_ERROR, f"internal error: {failure.getErrorMessage()}")
        self.log_error(error, method, path, peer)
        response = error_response(error.code, error.explanation, accept, reason=error.reason)
        if error.code == 405:
            response = HTTPResponse(405, response.headers + ((b"Allow", b"PUT"),), response.body, reason=response.reason)
        return response

    def _answer_cached(
        self, segments: tuple[str, ...], identity: ByInstanceId | ByAddress | ByProvider, token: bytes | None,
    ) -> Answer | None:
        """
        The answer without waiting, or None when it needs the store, a check that fails, or I/O.

        @raise MetadataError: 401, the session token is not the cached instance's.
        """
        if isinstance(identity, ByInstanceId):
            md = self.cache.peek(("uuid", identity.uuid))
            if md is None or (md.instance.project_id or "") != identity.tenant:
                return None
        elif isinstance(identity, ByAddress):
            md = self.cache.peek(("address", identity.address))
            if md is None:
                return None
        else:
            return None
        if self.tokens is not None:
            self.tokens.check(token, md.instance.uuid)
        try:
            resolved = md.resolve(segments, identity.address, self.today())
        except MetadataError:
            return None  # answered (and logged) by the full path
        if isinstance(resolved, Answer):
            self.answered_instance = md.instance.uuid
            self.answered_address = identity.address
            return resolved
        return None

    async def answer(
        self, method: bytes, segments: tuple[str, ...], identity: ByInstanceId | ByAddress | ByProvider, body: bytes,
        token: bytes | None = None,
    ) -> Answer:
        """
        Answer one request after identification.

        @param body: the request body (only the password POST reads it).
        @param token: the session token the request carries, checked when tokens are on.
        @raise MetadataError: for every error status.
        """
        md, keys = await self.metadata_for(identity)
        if self.tokens is not None:
            self.tokens.check(token, md.instance.uuid)
        address = identity.address
        resolved = md.resolve(segments, address, self.today())
        if isinstance(resolved, Answer):
            return resolved
        if isinstance(resolved, Password):
            return await self._password(method, md, keys, body)
        return Answer(await self.vendor_data2_json(md), JSON)

    async def vendor_data2_json(self, md: InstanceMetadata) -> bytes:
        """C{vendor_data2.json}: the providers' data merged in C{vendordata_providers} order."""
        parts: list[tuple[str, dict[str, Any]]] = []
        for provider in self.providers:
            if provider == "StaticJSON":
                static = md.static_vendordata
                if static is not None and static.error is not None:
                    self._log.warn("vendor_data2.json of {uuid} without static data: {reason}", uuid=md.instance.uuid, reason=static.error)
                parts.append((provider, {"static": static.data if static is not None and static.error is None else {}}))
            elif provider in self.built_providers:
                parts.append((provider, await self.built_providers[provider].vendordata(md.instance)))
        return dumps(merge_vendordata(parts, self._log))

    async def _password(self, method: bytes, md: InstanceMetadata, keys: tuple[Hashable, ...], body: bytes) -> Answer:
        if method == b"GET":
            return Answer((md.instance.password or "").encode("utf-8"), HTML)
        if method != b"POST":
            raise MetadataError(400, "GET and POST only are supported.")
        if md.instance.password:
            raise MetadataError(409, None, f"instance {md.instance.uuid} already has a password")
        if len(body) > MAX_PASSWORD_SIZE:
            raise MetadataError(400, "Request is too large.", "password POST larger than 1020 bytes")
        try:
            password = body.decode("utf-8")
        except UnicodeDecodeError:
            raise MetadataError(400, "The password must be UTF-8 text.", "password POST is not UTF-8") from None
        try:
            stored = await self.store.set_password(md.instance.uuid, password)
        except KeyError:
            raise MetadataError(400, f"Instance {md.instance.uuid} could not be found.") from None
        except StoreUnavailable as e:
            raise self._unavailable(e) from None
        except Exception as e:
            self._log.failure("storing the password of {uuid} failed", uuid=md.instance.uuid)
            raise MetadataError(500, UNKNOWN_ERROR, f"instance store failed: {e!r}") from None
        for key in keys:
            self.cache.invalidate(key)
        if not stored:
            raise MetadataError(409, None, f"instance {md.instance.uuid} already has a password")
        self._log.info("stored the password posted by instance {uuid}", uuid=md.instance.uuid)
        return Answer(b"", HTML)


def ok(answer: Answer) -> HTTPResponse:
    """A successful answer as the HTTP response every hop passes on (made once per answer: cached
    answers are served many times)."""
    return answer.response()
