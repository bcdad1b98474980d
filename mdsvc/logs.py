# -*- test-case-name: tests.test_logs -*-
"""
Where a process's log events go, as C{[DEFAULT] log_format}, C{use_syslog} and C{use_journal} say.

  - C{log_format = text} (the default): twistd's own lines, where twistd writes them
    (C{--logfile}, standard output with C{-n}).
  - C{log_format = json}: one JSON object per event and line on standard output, every named
    field kept (twisted.logger's C{eventAsJSON}); twistd's C{--logfile} is not used then. Under
    systemd, standard output is the journal.
  - C{use_syslog}: every event also to syslog (C{/dev/log}), as one formatted line.
  - C{use_journal}: every event also to journald, natively: C{MESSAGE}, C{PRIORITY},
    C{SYSLOG_IDENTIFIER=mdsvc} and each named field as C{MDSVC_NAME} (C{MDSVC_HOP},
    C{MDSVC_INSTANCE}, C{MDSVC_REASON} of a failed request...).

Every one of these passes through a L{Redactor}: the value of any option whose name says it
holds a secret (L{mdsvc.config.holds_secret}) is replaced by C{<secret>} wherever it would
appear, in the message and in every field.
"""

from __future__ import annotations

import json
import re
import socket
import struct
import sys
from collections.abc import Iterable
from typing import IO, Any

from twisted.logger import ILogObserver, LogLevel, eventAsJSON, formatEvent
from zope.interface import implementer

from mdsvc.config import OPTIONS, Config

JOURNAL_SOCKET = "/run/systemd/journal/socket"

_PRIORITIES = {LogLevel.debug: 7, LogLevel.info: 6, LogLevel.warn: 4, LogLevel.error: 3, LogLevel.critical: 2}


class Redactor:
    """Replaces every secret of a configuration by C{<secret>} in text."""

    def __init__(self, secrets: Iterable[str]) -> None:
        found = sorted({s for s in secrets if s and s.strip()}, key=len, reverse=True)
        self._pattern = re.compile("|".join(re.escape(s) for s in found)) if found else None

    @classmethod
    def of(cls, config: Config) -> Redactor:
        """The secrets of C{config}: every option whose name says it holds one."""
        values: list[str] = []
        for option in OPTIONS:
            if option.secret:
                for dest in option.dest:
                    value: Any = config
                    for part in dest.split("."):
                        value = getattr(value, part)
                    if isinstance(value, str):
                        values.append(value)
        return cls(values)

    def text(self, value: str) -> str:
        """C{value} with every secret replaced."""
        return self._pattern.sub("<secret>", value) if self._pattern is not None else value

    def event(self, event: dict[str, Any]) -> dict[str, Any]:
        """A copy of a log event whose text fields (and formatted message) hold no secret."""
        if self._pattern is None:
            return event
        clean = {k: self.text(v) if isinstance(v, str) else v for k, v in event.items()}
        if self._pattern.search(formatEvent(event)):
            clean["log_format"] = "{mdsvc_redacted}"
            clean["mdsvc_redacted"] = self.text(formatEvent(event))
        return clean

    def value(self, data: Any) -> Any:
        """A JSON-able value (dicts, lists, text) with every secret replaced in its text."""
        if isinstance(data, str):
            return self.text(data)
        if isinstance(data, dict):
            return {k: self.value(v) for k, v in data.items()}
        if isinstance(data, (list, tuple)):
            return [self.value(v) for v in data]
        return data


@implementer(ILogObserver)
class Redacting:
    """Passes each event, without secrets, to C{observer}."""

    def __init__(self, observer: ILogObserver, redactor: Redactor) -> None:
        self.observer = observer
        self.redactor = redactor

    def __call__(self, event: dict[str, Any]) -> None:
        """Redact, then observe."""
        self.observer(self.redactor.event(event))


@implementer(ILogObserver)
class JSONLines:
    """One JSON object per event and line (twisted.logger's JSON form of it, with the formatted C{text} too)."""

    def __init__(self, output: IO[str]) -> None:
        self.output = output

    def __call__(self, event: dict[str, Any]) -> None:
        """Write the event as one line."""
        record = json.loads(eventAsJSON(event))
        record["text"] = formatEvent(event)
        self.output.write(json.dumps(record, sort_keys=True) + "\n")
        self.output.flush()


@implementer(ILogObserver)
class SyslogLines:
    """Every event to syslog as its formatted line, at its level's priority."""

    def __init__(self, facility: str, ident: str = "mdsvc") -> None:
        import syslog

        self._syslog = syslog
        syslog.openlog(ident, syslog.LOG_PID, getattr(syslog, facility))

    def __call__(self, event: dict[str, Any]) -> None:
        """Send one line."""
        text = formatEvent(event)
        if event.get("log_failure") is not None:
            text += " " + event["log_failure"].getErrorMessage()
        self._syslog.syslog(_PRIORITIES.get(event.get("log_level", LogLevel.info), 6), " ".join(text.split()))


@implementer(ILogObserver)
class JournalFields:
    """Every event to journald with its named fields (the native protocol, one datagram each)."""

    def __init__(self, path: str = JOURNAL_SOCKET) -> None:
        self.path = path
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)

    def __call__(self, event: dict[str, Any]) -> None:
        """Send one entry; a journal that is not there loses it (logging never fails the caller)."""
        fields = {"MESSAGE": formatEvent(event), "PRIORITY": str(_PRIORITIES.get(event.get("log_level", LogLevel.info), 6)),
                  "SYSLOG_IDENTIFIER": "mdsvc"}
        for key, value in event.items():
            if not key.startswith("log_") and isinstance(value, (str, int, float)) and re.fullmatch(r"[A-Za-z0-9_]+", key):
                fields["MDSVC_" + key.upper()] = str(value)
        try:
            self._socket.sendto(journal_datagram(fields), self.path)
        except OSError:
            pass


def journal_datagram(fields: dict[str, str]) -> bytes:
    """Fields in journald's native protocol (a value with a newline is length-prefixed)."""
    out = []
    for key, value in fields.items():
        data = value.encode("utf-8")
        if b"\n" in data:
            out.append(key.encode("ascii") + b"\n" + struct.pack("<Q", len(data)) + data + b"\n")
        else:
            out.append(key.encode("ascii") + b"=" + data + b"\n")
    return b"".join(out)


def primary_observer(config: Config, output: IO[str] | None = None) -> ILogObserver | None:
    """What replaces twistd's own observer: JSON lines for C{log_format = json}, else None (twistd's text)."""
    if config.operations.log_format != "json":
        return None
    return Redacting(JSONLines(output or sys.stdout), Redactor.of(config))


def extra_observers(config: Config, journal: str = JOURNAL_SOCKET) -> list[ILogObserver]:
    """The destinations besides the primary one: syslog, the journal."""
    redactor = Redactor.of(config)
    found: list[ILogObserver] = []
    if config.operations.use_syslog:
        found.append(Redacting(SyslogLines(config.operations.syslog_facility), redactor))
    if config.operations.use_journal:
        found.append(Redacting(JournalFields(journal), redactor))
    return found


__all__ = ["JournalFields", "JSONLines", "Redacting", "Redactor", "SyslogLines", "extra_observers", "journal_datagram",
           "primary_observer"]
