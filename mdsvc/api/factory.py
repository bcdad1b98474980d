# -*- test-case-name: tests.test_tap -*-
"""Building a L{MetadataApp} from the configuration: shared by the api role and the config drive."""

from __future__ import annotations

from typing import Any

from mdsvc.api.app import MetadataApp
from mdsvc.api.identify import Identifier
from mdsvc.api.injected import InterfacesTemplate
from mdsvc.api.vendordata import DynamicJSON, StaticJSONFile, parse_targets
from mdsvc.config import Config
from mdsvc.interfaces import IInstanceStore, IVendordataProvider


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


def app_from_config(config: Config, store: IInstanceStore, reactor: Any) -> MetadataApp:
    """The metadata app the C{[api]} options describe, over C{store}."""
    api = config.api
    dynamic: dict[str, IVendordataProvider] = {}
    if "DynamicJSON" in api.vendordata_providers:
        dynamic["DynamicJSON"] = DynamicJSON(
            targets=parse_targets(api.vendordata_dynamic_targets),
            http=vendordata_http_client(reactor, api.vendordata_dynamic_connect_timeout, api.vendordata_dynamic_ssl_certfile),
            clock=reactor,
            connect_timeout=api.vendordata_dynamic_connect_timeout,
            read_timeout=api.vendordata_dynamic_read_timeout,
            failure_fatal=api.vendordata_dynamic_failure_fatal,
        )
    return MetadataApp(
        store=store,
        identifier=Identifier(api.service_metadata_proxy, api.shared_secret, api.use_forwarded_for),
        clock=reactor,
        dhcp_domain=api.dhcp_domain,
        interfaces=InterfacesTemplate(api.injected_network_template) if api.flat_injected else None,
        cache_ttl=api.cache_expiration,
        static_file=StaticJSONFile(api.vendordata_jsonfile_path),
        providers=api.vendordata_providers,
        dynamic=dynamic,
    )
