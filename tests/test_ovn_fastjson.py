"""Tests for L{mdsvc.lookup.ovn.fastjson}: the same values as the ovs library's own parser, faster."""

from __future__ import annotations

import json
import random
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from mdsvc.lookup.ovn.fastjson import install, stream_parser_class

TRICKY = ['a"b', "back\\slash", "}{][", '\\"', "\\", "ünïcødé ✓", "tab\tnew\nline", "", "\\\\\"]"]


def value(rng: random.Random, depth: int = 0) -> Any:
    """A random JSON value with nasty strings."""
    kind = rng.randrange(7 if depth < 4 else 4)
    if kind == 0:
        return rng.choice(TRICKY + [str(rng.random())])
    if kind == 1:
        return rng.choice([0, -7, 2**53, 1.5, -0.25, 1e300])
    if kind == 2:
        return rng.choice([True, False, None])
    if kind == 3:
        return rng.choice(TRICKY)
    if kind in (4, 5):
        return {rng.choice(TRICKY) + str(i): value(rng, depth + 1) for i in range(rng.randrange(4))}
    return [value(rng, depth + 1) for _ in range(rng.randrange(4))]


def feed_stream(parser_class: type, text: str, chunks: list[int]) -> list[Any]:
    """Messages parsed from C{text} arriving in chunks, as ovs.jsonrpc.Connection.recv feeds them."""
    out, pending, parser, position = [], "", None, 0
    for size in chunks + [len(text)]:
        pending += text[position:position + size]
        position += size
        while pending:
            if parser is None:
                # (not parser_class(): the library's __new__ names its module's Parser, the fast one once installed)
                parser = object.__new__(parser_class)
                parser.__init__()
            pending = pending[parser.feed(pending):]
            if parser.is_done():
                out.append(parser.finish())
                parser = None
            elif pending:
                raise AssertionError("the parser left input without being done")
    return out


class StreamParserTests(SynchronousTestCase):
    """Against json.loads and the library's own parser."""

    def setUp(self) -> None:
        self.fast = stream_parser_class()
        self.original = self.fast.__mro__[1]

    def test_random_streams(self) -> None:
        """Messages back to back, cut at random places (inside strings and escapes too): the same values."""
        rng = random.Random(1)
        for _ in range(200):
            messages = [rng.choice([{"id": i, "result": value(rng)}, [value(rng), value(rng)]]) for i in range(rng.randrange(1, 4))]
            text = "".join(json.dumps(m, ensure_ascii=rng.random() < 0.5) + rng.choice(["", " ", "\n"]) for m in messages)
            chunks = [rng.randrange(1, 12) for _ in range(len(text) // 3)]
            self.assertEqual(feed_stream(self.fast, text, chunks), messages)
            self.assertEqual(feed_stream(self.original, text, chunks), messages)

    def test_scalar_falls_back(self) -> None:
        """A bare scalar at the top level goes to the library's parser, which refuses it (RFC 4627 texts only)."""
        for text in (' "just a string" ', "42"):
            parser = self.fast(check_trailer=True)
            parser.feed(text)
            self.assertIn("syntax error at beginning of input", parser.finish())

    def test_errors(self) -> None:
        """Empty, cut short, malformed, trailing garbage: an error string, as the library gives."""
        for text, error in (("", "empty input stream"), ('{"a": [1, 2', "unexpected end of input"),
                            ('{"a": tru}', "syntax error"), ('{"a": 1} x', "trailing garbage")):
            parser = self.fast(check_trailer=True)
            parser.feed(text)
            result = parser.finish()
            self.assertIsInstance(result, str, text)
            self.assertIn(error, result)

    def test_installed(self) -> None:
        """install() puts it where ovs.jsonrpc looks for the parser (the C parser's slot)."""
        import ovs.json

        self.assertTrue(install())
        self.assertIs(ovs.json.Parser, self.fast)
        self.assertEqual(ovs.json.from_string('{"a": ["b", {"c": null}]}'), {"a": ["b", {"c": None}]})
