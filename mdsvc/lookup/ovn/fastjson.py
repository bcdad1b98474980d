# -*- test-case-name: tests.test_ovn_fastjson -*-
"""
A faster JSON stream parser for the C{ovs} library's JSON-RPC connections, when the library runs
without its C extension (C{ovs._json}, which needs libopenvswitch at build time; PyPI's sdist
builds without it where, as on Debian, libopenvswitch has no development package).

The library's pure-Python parser reads one character at a time: three quarters of the time of a
first sync of 10,000 port bindings went there (bench/ovn_replica.py).  L{install} puts
L{stream_parser_class} in the slot the library fills with its C parser when it has one
(C{ovs.json.Parser}, which C{ovs.jsonrpc.Connection} instantiates for each message), with the
same interface: C{feed(text)} returns how much of C{text} it took, C{is_done()}, and
C{finish()} returns the value or an error string.  It finds where each top-level object or
array ends with two regular expressions (brackets outside strings, quotes and backslashes inside
them), then parses the whole message at once with the standard library's C decoder.  Anything
else at the top level (a bare number or string, never sent by an OVSDB server) is handed to the
library's own parser, which this class extends.
"""

from __future__ import annotations

import json
import re
from typing import Any

_OUTSIDE = re.compile(r'[\[\]{}"]')
_INSIDE = re.compile(r'["\\]')
_SPACE = re.compile(r"[ \t\n\r]*")

_CLASS: list[type] = []


def stream_parser_class() -> type:
    """The parser class (made once: it extends the library's C{ovs.json.Parser} as first imported)."""
    if _CLASS:
        return _CLASS[0]
    import ovs.json

    base: Any = ovs.json.Parser

    class StreamParser(base):
        """C{ovs.json.Parser}'s interface, C{json}'s speed (see the module docstring)."""

        def __new__(cls, *args: Any, **kwargs: Any) -> Any:
            # (the library's __new__ names its module's Parser, which is this class once installed)
            return object.__new__(cls)

        def __init__(self, check_trailer: bool = False) -> None:
            super().__init__(check_trailer)
            self._parts: list[str] = []
            self._depth = 0
            self._in_string = False
            self._escape = False
            self._started = False
            self._finished = False
            self._fault: str | None = None
            self._fallback = False

        def feed(self, s: str) -> int:
            """Take what belongs to the value from C{s}; return how many characters were taken."""
            if self._fallback:
                return int(base.feed(self, s))
            if self._finished:
                return self._trailer(s)
            i, n, start = 0, len(s), 0
            while i < n:
                if self._escape:
                    self._escape = False
                    i += 1
                    continue
                if self._in_string:
                    m = _INSIDE.search(s, i)
                    if m is None:
                        i = n
                        break
                    i = m.end()
                    if m.group() == '"':
                        self._in_string = False
                    else:
                        self._escape = True
                    continue
                if not self._started:
                    i = _SPACE.match(s, i).end()  # type: ignore[union-attr]
                    if i >= n:
                        return n
                    if s[i] not in "{[":
                        self._fallback = True  # a bare scalar: the library's own parser
                        return i + int(base.feed(self, s[i:]))
                    self._started, start = True, i
                m = _OUTSIDE.search(s, i)
                if m is None:
                    i = n
                    break
                c, i = m.group(), m.end()
                if c == '"':
                    self._in_string = True
                elif c in "{[":
                    self._depth += 1
                else:
                    self._depth -= 1
                    if self._depth == 0:
                        self._parts.append(s[start:i])
                        self._finished = True
                        return i + self._trailer(s[i:])
            if self._started:
                self._parts.append(s[start:i])
            return i

        def _trailer(self, s: str) -> int:
            """After the value: with C{check_trailer}, only blanks may follow (all taken); else nothing is taken."""
            if not self.check_trailer:
                return 0
            if s[_SPACE.match(s).end():] and self._fault is None:  # type: ignore[union-attr]
                self._fault = "trailing garbage at end of input"
            return len(s)

        def is_done(self) -> bool:
            """Whether the value is complete (or in error)."""
            if self._fallback:
                return bool(base.is_done(self))
            return self._finished and not self.check_trailer

        def finish(self) -> Any:
            """The value, or an error string."""
            if self._fallback:
                return base.finish(self)
            if self._fault is not None:
                return self._fault
            if not self._started:
                return "empty input stream"
            if not self._finished:
                return "unexpected end of input"
            try:
                return json.loads("".join(self._parts))
            except ValueError as e:
                return f"syntax error: {e}"

    _CLASS.append(StreamParser)
    return StreamParser


def install() -> bool:
    """
    Make the C{ovs} library parse JSON-RPC messages with L{stream_parser_class}, unless it has
    its C parser.

    @return: whether it is installed now.
    """
    import ovs.json

    if ovs.json.PARSER == ovs.json.PARSER_C:
        return False
    ovs.json.Parser = stream_parser_class()
    return True
