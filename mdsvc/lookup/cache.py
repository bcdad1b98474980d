# -*- test-case-name: tests.test_lookup_cache -*-
"""
The lookup cache: an L{IInstanceLookup} in front of another, as C{twisted.names.cache}
is a resolver in front of resolvers (neutron spec §4, C{[cache]} of metadata_agent.ini).

cloud-init makes about thirty requests per boot within seconds; with the cache they cost one
lookup.  Found instances are kept C{ttl} seconds, "no instance" answers C{negative_ttl} seconds
(so a port that appears just after a miss is seen soon), failures never.  When the metadata API
answers 404 for a cached instance the agent calls L{CachingLookup.forget} and looks up once
more (stale-port protection, LP #1868867): it is an L{ICachingLookup}.
"""

from __future__ import annotations

from typing import Any

from attrs import define, field
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from zope.interface import implementer

from mdsvc.cache import ExpiringCache
from mdsvc.interfaces import ICachingLookup, IInstanceLookup


def _provides_lookup(instance: Any, attribute: Any, value: Any) -> None:
    if not IInstanceLookup.providedBy(value):
        raise TypeError(f"{attribute.name} must provide IInstanceLookup, got {value!r}")


@implementer(ICachingLookup)
@define(eq=False)
class CachingLookup:
    """
    Caches the answers of C{inner}, keyed by C{(ip, network_id, router_id, mac)}, in an
    L{ExpiringCache} (found instances C{ttl} seconds, "no instance" C{negative_ttl}).

    @ivar inner: the backend.
    """

    inner: IInstanceLookup = field(validator=_provides_lookup)
    clock: IReactorTime
    ttl: float
    negative_ttl: float = 0
    _cache: ExpiringCache = field(init=False)

    def __attrs_post_init__(self) -> None:
        self._cache = ExpiringCache(self.clock, self.ttl, self.negative_ttl)

    @property
    def name(self) -> str:
        """C{cache(<inner name>)}."""
        return f"cache({self.inner.name})"

    @property
    def lookups(self) -> int:
        """How many lookups were passed to C{inner}."""
        return self._cache.loads

    @property
    def hits(self) -> int:
        """How many lookups were answered from the cache."""
        return self._cache.hits

    @property
    def loads(self) -> int:
        """How many lookups missed the cache (the same as L{lookups})."""
        return self._cache.loads

    @property
    def coalesced(self) -> int:
        """How many lookups waited for one of the same key already asked of C{inner}."""
        return self._cache.coalesced

    @property
    def tracker(self) -> ExpiringCache:
        """The cache itself, whose C{outcome} attribute is L{outcome} (read per request without a property call)."""
        return self._cache

    @property
    def outcome(self) -> str | None:
        """What the last lookup did in the cache: C{hit}, C{miss} or C{wait} (L{ExpiringCache.outcome})."""
        return self._cache.outcome

    def lookup(
        self, ip: str, network_id: str | None = None, router_id: str | None = None, mac: str | None = None
    ) -> Deferred[tuple[str, str | None] | None]:
        """See L{IInstanceLookup.lookup}."""
        return self._cache.get((ip, network_id, router_id, mac), self._load)

    def _load(self, key: Any) -> Deferred[Any]:
        ip, network_id, router_id, mac = key
        return self.inner.lookup(ip, network_id=network_id, router_id=router_id, mac=mac)

    def forget(self, ip: str, network_id: str | None = None, router_id: str | None = None, mac: str | None = None) -> None:
        """See L{ICachingLookup.forget}: the next lookup of this key asks C{inner} again."""
        self._cache.invalidate((ip, network_id, router_id, mac))

    def sweep(self) -> None:
        """Drop expired entries now."""
        self._cache.sweep()

    def __len__(self) -> int:
        """How many entries are held (expired ones included until swept)."""
        return len(self._cache)
