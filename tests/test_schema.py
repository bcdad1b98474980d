"""Tests for L{mdsvc.schema}: document fields declared once, and what follows from them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs
from attrs import frozen
from twisted.trial.unittest import SynchronousTestCase

from mdsvc.schema import (
    Boolean,
    Choice,
    DocumentError,
    Found,
    Integer,
    ListOf,
    MapOf,
    Record,
    Text,
    declared,
    declared_field,
    declared_fields,
    field_rows,
    finishes,
    markdown_table,
    read_document,
)


def _refuse_x(value: str, where: str) -> None:
    """An import-only check: no 'x'."""
    if "x" in value:
        raise DocumentError(where, "has an x")


@frozen
class Leaf:
    """A nested record with a required field."""

    label: str = declared(Text(), "a required label")
    size: int = declared(Integer(minimum=1), "a size", default=1)


@frozen
class Sample:
    """A record using every kind of declaration."""

    name: str = declared(Text(on_import=_refuse_x, imported="no x"), "a name")
    title: str = declared(Text(), "a title", derived="the name, upper-cased")
    count: int = declared(Integer(minimum=0, maximum=9), "a count", default=0)
    flag: bool = declared(Boolean(), "a flag", default=True)
    kind: str | None = declared(Choice(("a", "b")), "a kind", default=None)
    blob: str = declared(Text(), "stored under another key", key="blob_b64", default="")
    first: int | None = declared(Integer(), "in a sub-object", key="group.first", default=None)
    second: Mapping[str, int] = declared(MapOf(Integer(), keys=Text(on_import=_refuse_x)), "a map in it", key="group.second", factory=dict)
    leaves: tuple[Leaf, ...] = declared(ListOf(Record(Leaf)), "nested records", default=())
    leaf: Leaf | None = declared(Record(Leaf, shorthand="label"), "a record or its label", default=None)
    pair: tuple[str, int] | None = declared(Record(Leaf, then=attrs.astuple), "a record kept as a pair", default=None)
    stamp: str | None = declared(Text(), "filled by a store", default=None, assigned="assigned later")


@finishes(Sample)
def _sample_title(found: Found) -> None:
    """The title defaults to the upper-cased name; a title 'bad' is refused naming it."""
    if found.values["title"] is None:
        found.values["title"] = found.values["name"].upper()
    elif found.values["title"] == "bad":
        raise found.error("title", "is bad")


@frozen
class Undeclared:
    """A record with a field that was not declared."""

    name: str = declared(Text(), "declared")
    other: str = ""


class ReadTests(SynchronousTestCase):
    """L{read_document} checks a document against the declarations and builds the record."""

    def assertBad(self, doc: Any, where: str, problem: str, strict: bool = True) -> None:
        """Reading C{doc} fails at C{where} with C{problem}, in one line (just the problem for the document itself)."""
        e = self.assertRaises(DocumentError, read_document, Sample, doc, "", strict)
        self.assertEqual((e.where, e.problem), (where, problem))
        self.assertEqual(str(e), f"{where}: {problem}" if where else problem)

    def test_defaults(self) -> None:
        """Absent fields get their declared defaults; a derived one is made by its finisher."""
        self.assertEqual(read_document(Sample, {"name": "n"}), Sample(name="n", title="N"))

    def test_uniqueList(self) -> None:
        """A list declared unique keeps each item once, where it first appears; others keep repeats."""
        self.assertEqual(ListOf(Text(), unique=True).read(["b", "a", "b", "c", "a"], "dns", True), ("b", "a", "c"))
        self.assertEqual(ListOf(Text()).read(["b", "a", "b"], "dns", True), ("b", "a", "b"))
        self.assertEqual(ListOf(Text(), unique=True).rule, "repeats kept once")

    def test_nullIsAbsent(self) -> None:
        """A null field, or a null sub-object, is the same as an absent one."""
        doc = {"name": "n", "title": None, "count": None, "group": None, "leaves": None, "leaf": None}
        self.assertEqual(read_document(Sample, doc), read_document(Sample, {"name": "n"}))
        self.assertEqual(read_document(Sample, {"name": "n", "group": {"first": None}}).second, {})

    def test_required(self) -> None:
        """A field without a default is required, also in a nested record."""
        self.assertBad({}, "name", "is required")
        self.assertBad({"name": "n", "leaves": [{"label": "a"}, {"size": 2}]}, "leaves[1].label", "is required")

    def test_unknown(self) -> None:
        """Unknown fields are refused by their path, at the top, in a sub-object and in a nested record."""
        self.assertBad({"name": "n", "bogus": 1}, "bogus", "unknown field")
        self.assertBad({"name": "n", "group": {"third": 1}}, "group.third", "unknown field")
        self.assertBad({"name": "n", "leaf": {"label": "a", "colour": "red"}}, "leaf.colour", "unknown field")

    def test_renamedKey(self) -> None:
        """A field read under its declared key is refused under its attribute name."""
        self.assertEqual(read_document(Sample, {"name": "n", "blob_b64": "x"}).blob, "x")
        self.assertBad({"name": "n", "blob": "x"}, "blob", "unknown field")
        self.assertBad({"name": "n", "blob_b64": 1}, "blob_b64", "expected a string, got an integer")

    def test_subObject(self) -> None:
        """Fields keyed C{group.x} are read from the object C{group}, which must be one."""
        sample = read_document(Sample, {"name": "n", "group": {"first": 3, "second": {"k": 4}}})
        self.assertEqual((sample.first, sample.second), (3, {"k": 4}))
        self.assertBad({"name": "n", "group": [1]}, "group", "expected an object, got a list")
        self.assertBad({"name": "n", "group": {"second": {"k": "4"}}}, "group.second.k", "expected an integer, got a string")

    def test_types(self) -> None:
        """Each shape refuses other types, naming the field and the type found."""
        self.assertBad({"name": 3}, "name", "expected a string, got an integer")
        self.assertBad({"name": "n", "count": True}, "count", "expected an integer, got a boolean")
        self.assertBad({"name": "n", "count": 1.5}, "count", "expected an integer, got a number")
        self.assertBad({"name": "n", "flag": "yes"}, "flag", "expected true or false, got a string")
        self.assertBad({"name": "n", "kind": 1}, "kind", "expected a string, got an integer")
        self.assertBad({"name": "n", "leaves": {}}, "leaves", "expected a list, got an object")
        self.assertBad({"name": "n", "group": {"second": []}}, "group.second", "expected an object, got a list")
        self.assertBad({"name": "n", "leaf": 3}, "leaf", "expected an object, got an integer")
        self.assertBad([], "", "expected an object, got a list")

    def test_bounds(self) -> None:
        """Integer bounds and choices are checked, saying what is allowed."""
        self.assertBad({"name": "n", "count": 10}, "count", "must be between 0 and 9")
        self.assertBad({"name": "n", "leaves": [{"label": "a", "size": 0}]}, "leaves[0].size", "must be >= 1, got 0")
        self.assertBad({"name": "n", "kind": "c"}, "kind", "'c' is not one of a, b")
        self.assertEqual(read_document(Sample, {"name": "n", "count": 9, "kind": "b"}).count, 9)

    def test_importOnly(self) -> None:
        """Import checks run when strict, also on map keys (naming the map), and not otherwise."""
        self.assertBad({"name": "xy"}, "name", "has an x")
        self.assertBad({"name": "n", "group": {"second": {"x": 1}}}, "group.second", "has an x")
        lenient = read_document(Sample, {"name": "xy", "group": {"second": {"x": 1}}}, strict=False)
        self.assertEqual((lenient.name, lenient.second), ("xy", {"x": 1}))
        self.assertBad({"name": "xy", "count": -1}, "count", "must be between 0 and 9", strict=False)

    def test_finisher(self) -> None:
        """A finisher's error names the field it gives, under the document's own path."""
        self.assertBad({"name": "n", "title": "bad"}, "title", "is bad")
        e = self.assertRaises(DocumentError, read_document, Sample, {"name": "n", "title": "bad"}, "[4]")
        self.assertEqual(str(e), "[4].title: is bad")

    def test_shorthandAndThen(self) -> None:
        """A bare string stands for the shorthand field; C{then} keeps something else than the record."""
        sample = read_document(Sample, {"name": "n", "leaf": "tag", "pair": {"label": "p", "size": 5}})
        self.assertEqual((sample.leaf, sample.pair), (Leaf(label="tag"), ("p", 5)))

    def test_documentNotChanged(self) -> None:
        """Reading leaves the document as it was."""
        doc = {"name": "n", "group": {"first": 1}, "leaves": [{"label": "a"}]}
        read_document(Sample, doc)
        self.assertEqual(doc, {"name": "n", "group": {"first": 1}, "leaves": [{"label": "a"}]})

    def test_undeclaredField(self) -> None:
        """A record with a field not made by C{declared} cannot be read: every field is declared."""
        e = self.assertRaises(TypeError, read_document, Undeclared, {"name": "n"})
        self.assertIn("other", str(e))


class DeclaredFieldTests(SynchronousTestCase):
    """L{declared_field} reaches a field inside a document by its declared key."""

    def test_paths(self) -> None:
        """A field's path is its key, in its sub-object."""
        self.assertEqual([f.path for f in declared_fields(Sample)][5:8], ["blob_b64", "group.first", "group.second"])

    def test_getPutPop(self) -> None:
        """get, put and pop use the declared key; a sub-object is copied, never changed in place."""
        first = declared_field(Sample, "first")
        group = {"second": {}}
        doc: dict[str, Any] = {"group": group}
        self.assertIsNone(first.get(doc))
        first.put(doc, 7)
        self.assertEqual((doc, group), ({"group": {"second": {}, "first": 7}}, {"second": {}}))
        self.assertEqual(first.get(doc), 7)
        self.assertEqual(first.pop(doc), 7)
        self.assertEqual(doc, {"group": {"second": {}}})
        blob = declared_field(Sample, "blob")
        blob.put(doc, "b")
        self.assertEqual((doc["blob_b64"], blob.pop(doc), blob.pop(doc)), ("b", "b", None))

    def test_unknownAttribute(self) -> None:
        """Asking for a field that is not declared fails at once."""
        self.assertRaises(KeyError, declared_field, Sample, "blob_b64")


class DocumentationTests(SynchronousTestCase):
    """L{field_rows} and L{markdown_table} document every field from its declaration."""

    def test_rows(self) -> None:
        """Every field is listed by its document path, nested records after their parent."""
        paths = [row.path for row in field_rows(Sample)]
        self.assertEqual(
            paths,
            ["name", "title", "count", "flag", "kind", "blob_b64", "group.first", "group.second", "leaves", "leaves[].label",
             "leaves[].size", "leaf", "leaf.label", "leaf.size", "pair", "pair.label", "pair.size", "stamp"],
        )

    def test_defaultsAndRules(self) -> None:
        """Defaults are shown as JSON, or say required, derived or assigned; import-only checks have their column."""
        rows = {row.path: row for row in field_rows(Sample)}
        self.assertEqual(
            [rows[p].default for p in ("name", "title", "count", "flag", "kind", "blob_b64", "group.second", "leaves", "stamp")],
            ["required", "the name, upper-cased", "`0`", "`true`", "`null`", '`""`', "`{}`", "`[]`", "assigned later"],
        )
        self.assertEqual((rows["name"].import_rule, rows["title"].import_rule), ("no x", ""))
        self.assertEqual(rows["count"].type, "integer: 0 to 9")
        self.assertEqual(rows["kind"].type, "string: one of `a`, `b`")
        self.assertEqual(rows["leaf"].type, "object, or a string: its `label`")
        self.assertEqual(rows["leaves"].type, "list of object")

    def test_table(self) -> None:
        """The Markdown table has a header and one row per field, with pipes escaped."""

        @frozen
        class Piped:
            """A field whose description holds a pipe."""

            a: str = declared(Text(), "this | that", default="x")

        table = markdown_table(Piped)
        self.assertEqual(
            table.splitlines(),
            ["| field | type | default | checked on import only | meaning |", "|---|---|---|---|---|",
             '| `a` | string | `"x"` |  | this \\| that |'],
        )
