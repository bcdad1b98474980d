# -*- test-case-name: tests.test_reload -*-
"""What the metadata agent applies on SIGHUP (L{mdsvc.reload}): rate limits and the shared secret."""

from __future__ import annotations

from typing import Any

from twisted.logger import Logger
from zope.interface import implementer

from mdsvc.agent.handler import MetadataAgent
from mdsvc.agent.ratelimit import rate_limiter
from mdsvc.config import Config
from mdsvc.reload import IReloadable, Rotation


@implementer(IReloadable)
class AgentReload:
    """
    Applies a new configuration to a running L{MetadataAgent}: C{[metadata_rate_limiting]}
    (turned on or off, new windows and limits; the requests already counted still count), and a
    new shared secret, the previous one kept for re-signing what the API refuses while the
    rotation window lasts.
    """

    options = frozenset({
        ("metadata_rate_limiting", "rate_limit_enabled"), ("metadata_rate_limiting", "ip_versions"),
        ("metadata_rate_limiting", "base_window_duration"), ("metadata_rate_limiting", "base_query_rate_limit"),
        ("metadata_rate_limiting", "burst_window_duration"), ("metadata_rate_limiting", "burst_query_rate_limit"),
        ("neutron", "metadata_proxy_shared_secret"), ("mdsvc", "secret_rotation_window"),
    })
    _log = Logger()

    def __init__(self, agent: MetadataAgent, config: Config, clock: Any) -> None:
        self.agent = agent
        self.clock = clock
        self.rotation = Rotation(clock, config.agent.shared_secret, agent.set_secret)

    def reload(self, config: Config) -> None:
        """See L{IReloadable.reload}."""
        limit = config.agent.rate_limit
        current = self.agent.limiter
        if current is not None and limit.enabled and limit.ip_version is not None:
            current.windows = ((limit.base_window, limit.base_limit), (limit.burst_window, limit.burst_limit))
        else:
            self.agent.limiter = rate_limiter(limit, self.clock)
        self.agent.rate_limit_family = limit.ip_version
        if self.rotation.set(config.agent.shared_secret, config.secret_rotation_window):
            self._log.info("agent: signing with the new metadata_proxy_shared_secret; the previous one is used for {window} s "
                           "more for requests the API refuses", window=config.secret_rotation_window)


__all__ = ["AgentReload"]
