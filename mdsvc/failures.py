# -*- test-case-name: tests.test_failures -*-
"""
One log line per failed request, written by the hop that made the failure (L{HopMeter}: a
failure relayed from the next hop was logged there), with its instance, hop and reason as named
fields, so that C{log_format = json} gives them to a log pipeline as they are:

    request failed at the agent: GET /openstack/latest/meta_data.json from 10.0.0.5 on network
    5f3e... (instance -): 404 Instance was not found on network 5f3e....

A guest cannot flood the log with them: its further failures of one status at one hop within a
minute are counted into its next line (C{held}) rather than logged each.
"""

from __future__ import annotations

from typing import Any

from twisted.logger import Logger

from mdsvc.limits import LogThrottle
from mdsvc.wire import loggable

EVENT = "request_failed"
"""The C{mdsvc_event} field of these lines, to find them in a JSON log."""


class FailureLog:
    """The C{failure} callback of L{mdsvc.metrics.NodeMetrics}: logs a failed request."""

    _log = Logger()

    def __init__(self, clock: Any, interval: float = 60.0) -> None:
        self._throttle = LogThrottle(clock, interval)

    def __call__(
        self, hop: str, code: int, address: str | None, scope: str | None, instance: str | None, method: bytes, path: bytes,
        reason: str,
    ) -> None:
        """Log one failure (or count it into its guest's next line)."""
        held = self._throttle.allow((hop, address, scope, code)) if address is not None else 0
        if held is None:
            return
        emit = self._log.warn if code >= 500 else self._log.info
        emit("request failed at the {hop}: {method} {path} from {address}{where} (instance {instance}): {code} {reason}{more}",
             mdsvc_event=EVENT, hop=hop, method=method.decode("latin-1"), path=loggable(path), address=address or "-",
             scope=scope, where=f" on {scope}" if scope else "", instance=instance or "-", code=code, reason=reason,
             held=held, more=f" ({held} more from this guest in the last minute)" if held else "")


__all__ = ["EVENT", "FailureLog"]
