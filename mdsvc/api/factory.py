# -*- test-case-name: tests.test_tap -*-
"""Building a L{MetadataApp} from the configuration, vendordata providers included: shared by the api role and the config drive."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from zope.interface import implementer

from mdsvc.api.app import MetadataApp
from mdsvc.api.identify import Identifier
from mdsvc.api.injected import InterfacesTemplate
from mdsvc.api.tokens import SessionTokens
from mdsvc.api.vendordata import DynamicJSON, StaticJSONFile, parse_targets, vendordata_plugin, vendordata_plugins
from mdsvc.config import Config
from mdsvc.interfaces import IInstanceStore, IVendordataProvider, IVendordataProviderFactory


def vendordata_http_client(reactor: Any, connect_timeout: float, ca_file: str) -> Any:
    """A pooled treq client for DynamicJSON targets (TLS verified, against C{ca_file} if given)."""
    from treq.client import HTTPClient
    from twisted.web.client import Agent, BrowserLikePolicyForHTTPS, HTTPConnectionPool

    from mdsvc.files import read_certificates

    policy = BrowserLikePolicyForHTTPS()
    if ca_file:
        from twisted.internet.ssl import trustRootFromCertificates

        policy = BrowserLikePolicyForHTTPS(trustRoot=trustRootFromCertificates(read_certificates(ca_file)))
    pool = HTTPConnectionPool(reactor, persistent=True)
    pool.maxPersistentPerHost = 10
    return HTTPClient(Agent(reactor, contextFactory=policy, connectTimeout=connect_timeout, pool=pool))


@implementer(IVendordataProviderFactory)
class DynamicJSONFactory:
    """The built-in C{DynamicJSON} provider, from the C{[api] vendordata_dynamic_*} options."""

    name = "DynamicJSON"

    def build(self, config: Config, reactor: Any) -> DynamicJSON:
        """See L{IVendordataProviderFactory.build}."""
        api = config.api
        return DynamicJSON(
            targets=parse_targets(api.vendordata_dynamic_targets),
            http=vendordata_http_client(reactor, api.vendordata_dynamic_connect_timeout, api.vendordata_dynamic_ssl_certfile),
            clock=reactor,
            connect_timeout=api.vendordata_dynamic_connect_timeout,
            read_timeout=api.vendordata_dynamic_read_timeout,
            failure_fatal=api.vendordata_dynamic_failure_fatal,
        )


def build_vendordata_providers(config: Config, reactor: Any, plugins: Iterable[Any] | None = None) -> dict[str, IVendordataProvider]:
    """
    The providers C{[api] vendordata_providers} names, by name, but StaticJSON (the app reads its
    file with each render): C{DynamicJSON} and vendors' plugins, each built once.

    @param plugins: the vendor factories to choose from (default: the installed ones).
    @raise ValueError: one line: an unknown name, a plugin refusing its configuration, or one
        that did not build an L{IVendordataProvider}.
    """
    built: dict[str, IVendordataProvider] = {}
    factories = None if plugins is None else list(plugins)
    for name in config.api.vendordata_providers:
        if name == "StaticJSON" or name in built:
            continue
        if name == "DynamicJSON":
            factory: Any = DynamicJSONFactory()
        else:
            if factories is None:
                factories = vendordata_plugins()
            factory = vendordata_plugin(name, factories)
        provider = factory.build(config, reactor)
        if not IVendordataProvider.providedBy(provider):
            raise ValueError(f"vendordata provider {name!r} built {provider!r}, which does not provide IVendordataProvider")
        built[name] = provider
    return built


def app_from_config(config: Config, store: IInstanceStore, reactor: Any, plugins: Iterable[Any] | None = None) -> MetadataApp:
    """
    The metadata app the C{[api]} options describe, over C{store}.

    @param plugins: the vendordata provider factories to choose from (default: the installed ones).
    @raise ValueError: a provider cannot be built (L{build_vendordata_providers}).
    """
    api = config.api
    return MetadataApp(
        store=store,
        identifier=Identifier(api.service_metadata_proxy, api.shared_secret, api.use_forwarded_for),
        clock=reactor,
        dhcp_domain=api.dhcp_domain,
        interfaces=InterfacesTemplate(api.injected_network_template) if api.flat_injected else None,
        cache_ttl=api.cache_expiration,
        static_file=StaticJSONFile(api.vendordata_jsonfile_path),
        providers=api.vendordata_providers,
        built_providers=build_vendordata_providers(config, reactor, plugins),
        tokens=session_tokens(config, reactor),
    )


def session_tokens(config: Config, reactor: Any, previous: tuple[str, ...] = ()) -> SessionTokens | None:
    """
    The session tokens C{[api] imds_tokens} asks for (None when off), signed with the shared
    secret; C{previous} secrets' tokens are still accepted (during a rotation).
    """
    api = config.api
    if api.imds_tokens == "off":
        return None
    return SessionTokens(reactor, api.imds_tokens == "required", api.shared_secret, previous)
