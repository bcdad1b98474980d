# -*- test-case-name: tests.test_reload -*-
"""What the metadata API applies on SIGHUP (L{mdsvc.reload}): vendordata file, secret, tokens, caching, debug."""

from __future__ import annotations

from typing import Any

from twisted.logger import Logger
from zope.interface import implementer

from mdsvc.api.app import MetadataApp
from mdsvc.api.factory import session_tokens
from mdsvc.api.handler import APIHandler
from mdsvc.api.identify import Identifier
from mdsvc.api.vendordata import StaticJSONFile
from mdsvc.cache import ExpiringCache
from mdsvc.config import Config
from mdsvc.reload import IReloadable, Rotation


@implementer(IReloadable)
class APIReload:
    """
    Applies a new configuration to a running L{MetadataApp}: the vendordata file (read again even
    when its name did not change), C{dhcp_domain} and the render cache's lifetime (the cache is
    emptied: every instance is rendered afresh), the session token mode, the debug log of
    headers, and a new shared secret with the previous one accepted for the rotation window.
    """

    options = frozenset({
        ("api", "vendordata_jsonfile_path"), ("api", "dhcp_domain"), ("api", "metadata_cache_expiration"),
        ("api", "imds_tokens"), ("DEFAULT", "debug"), ("neutron", "metadata_proxy_shared_secret"),
        ("mdsvc", "secret_rotation_window"),
    })
    _log = Logger()

    def __init__(self, app: MetadataApp, handler: APIHandler | None, config: Config, clock: Any) -> None:
        self.app = app
        self.handler = handler
        self.config = config
        self.clock = clock
        self._previous: tuple[str, ...] = ()
        self.rotation = Rotation(clock, config.api.shared_secret, self._secrets)

    def reload(self, config: Config) -> None:
        """See L{IReloadable.reload}."""
        self.config = config
        api = config.api
        app = self.app
        app.static_file = StaticJSONFile(api.vendordata_jsonfile_path)
        app.static_file.load()  # a bad file is logged now, not at the first guest
        app.dhcp_domain = api.dhcp_domain
        app.cache_ttl = api.cache_expiration
        app.cache = ExpiringCache(self.clock, api.cache_expiration)
        if self.handler is not None:
            self.handler.debug = api.debug
        if self.rotation.set(api.shared_secret, config.secret_rotation_window):
            self._log.info("API: a new metadata_proxy_shared_secret; the previous one is accepted for {window} s more",
                           window=config.secret_rotation_window)
        else:
            self._secrets(self.rotation.secret, self.rotation.previous)  # tokens may have been turned on or off

    def _secrets(self, secret: str, previous: tuple[str, ...]) -> None:
        """Check signatures and tokens with C{secret}, and with C{previous} too."""
        api = self.config.api
        self.app.identifier = Identifier(api.service_metadata_proxy, secret, api.use_forwarded_for, previous)
        self.app.tokens = session_tokens(self.config, self.clock, previous)
        if self._previous and not previous:
            self._log.info("API: the rotation window is over: signatures and tokens are checked with the current shared secret only")
        self._previous = previous


__all__ = ["APIReload"]
