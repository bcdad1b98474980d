# -*- test-case-name: tests.test_schema -*-
"""
Document fields declared once, on the attrs class that holds them.

A document type is an attrs class each of whose fields is declared with L{declared}: the
document key (the attribute name unless given; C{"ec2_ids.instance"} puts a field in a
sub-object), its L{Shape} (type, the checks always made, the checks made on import only), its
default, and a one-line description.  From that one declaration follow:

  - reading: L{read_document} checks a parsed JSON/YAML value and builds the attrs value,
    raising L{DocumentError} with the dotted path of the first bad or unknown field
    (C{nics[0].fixed_ips[1].subnet.cidr: ...}); a null field is an absent one;
  - strictness: a shape's import checks run only when C{strict} (an import), not when a
    stored document is read back;
  - storage: L{DeclaredField.get} and L{DeclaredField.put} reach a field inside a document by
    its declared key, so the store never spells a document key itself;
  - documentation: L{field_rows} lists every field, nested ones by their path, for the table of
    C{docs/instance-documents.md}.

Checks that span fields (a default made from another field, two fields that must agree) are
functions registered with L{finishes}; they see the values read, by attribute name.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import attrs
from attrs import frozen

_DECLARATION = "mdsvc.schema.declaration"


class DocumentError(ValueError):
    """
    An instance or router document is invalid.

    @ivar where: the dotted path of the bad field, e.g. C{nics[0].mac}.
    @ivar problem: what is wrong with it.
    """

    def __init__(self, where: str, problem: str) -> None:
        super().__init__(f"{where}: {problem}" if where else problem)
        self.where = where
        self.problem = problem


def kind_of(value: Any, mapping: str = "an object") -> str:
    """How an error message names the type of a parsed JSON/YAML value (C{mapping} for dicts)."""
    if value is None:
        return "null"
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "a list", dict: mapping}.get(
        type(value), type(value).__name__
    )


def shown(value: str, limit: int = 60) -> str:
    """How an error quotes a bad value: its repr, cut after C{limit} characters."""
    return repr(value) if len(value) <= limit else repr(value[:limit]) + f"... ({len(value)} characters)"


def join(where: str, key: str) -> str:
    """The path of C{key} inside the object at C{where} (C{""} is the document itself)."""
    return f"{where}.{key}" if where else key


# --- shapes: how one value is read ---------------------------------------------------------------


class Shape:
    """
    How one value of a document is read: its type, the checks always made and those made on
    import only.  Subclasses are frozen attrs classes.

    @ivar kind: the type, as the documentation names it.
    @ivar rule: what is always checked beyond the type, for the documentation ("" if nothing).
    """

    kind: str = "value"
    rule: str = ""

    def read(self, value: Any, where: str, strict: bool) -> Any:
        """
        The value to keep for the non-null document value C{value} at C{where}.

        @param strict: make the import checks too.
        @raise DocumentError: at C{where} or below it.
        """
        raise NotImplementedError

    def import_rule(self) -> str:
        """What is checked on import only, for the documentation ("" if nothing)."""
        return ""

    def nested(self) -> tuple[str, type] | None:
        """The record type this shape holds and the path suffix leading to it (C{"[]"}), or None."""
        return None


@frozen
class Text(Shape):
    """
    A string, with an optional check always made and one made on import only.

    @ivar check: C{(value, where) -> kept value}, raising L{DocumentError}: always.
    @ivar on_import: C{(value, where) -> None}, raising L{DocumentError}: on import only.
    @ivar imported: what C{on_import} checks, for the documentation.
    """

    kind: str = "string"
    rule: str = ""
    check: Callable[[str, str], Any] | None = None
    on_import: Callable[[str, str], None] | None = None
    imported: str = ""

    def read(self, value: Any, where: str, strict: bool) -> Any:
        """See L{Shape.read}."""
        if not isinstance(value, str):
            raise DocumentError(where, f"expected a string, got {kind_of(value)}")
        if strict and self.on_import is not None:
            self.on_import(value, where)
        return value if self.check is None else self.check(value, where)

    def import_rule(self) -> str:
        """See L{Shape.import_rule}."""
        return self.imported


@frozen
class Choice(Shape):
    """One of a few strings."""

    choices: tuple[str, ...]

    @property
    def kind(self) -> str:  # type: ignore[override]
        """See L{Shape.kind}."""
        return "string"

    @property
    def rule(self) -> str:  # type: ignore[override]
        """See L{Shape.rule}."""
        return "one of " + ", ".join(f"`{c}`" for c in self.choices)

    def read(self, value: Any, where: str, strict: bool) -> Any:
        """See L{Shape.read}."""
        if not isinstance(value, str):
            raise DocumentError(where, f"expected a string, got {kind_of(value)}")
        if value not in self.choices:
            raise DocumentError(where, f"{value!r} is not one of {', '.join(self.choices)}")
        return value


@frozen
class Integer(Shape):
    """
    An integer (never a boolean): one of C{choices}, or within C{minimum} (and C{maximum}: a
    range has both) when given.
    """

    minimum: int | None = None
    maximum: int | None = None
    choices: tuple[int, ...] = ()

    @property
    def kind(self) -> str:  # type: ignore[override]
        """See L{Shape.kind}."""
        return "integer"

    @property
    def rule(self) -> str:  # type: ignore[override]
        """See L{Shape.rule}."""
        if self.choices:
            return " or ".join(map(str, self.choices))
        if self.maximum is not None:
            return f"{self.minimum} to {self.maximum}"
        return f">= {self.minimum}" if self.minimum is not None else ""

    def read(self, value: Any, where: str, strict: bool) -> Any:
        """See L{Shape.read}."""
        if isinstance(value, bool) or not isinstance(value, int):
            raise DocumentError(where, f"expected an integer, got {kind_of(value)}")
        if self.choices and value not in self.choices:
            raise DocumentError(where, f"must be {' or '.join(map(str, self.choices))}, got {value}")
        if self.maximum is not None:
            if not self.minimum <= value <= self.maximum:  # type: ignore[operator]
                raise DocumentError(where, f"must be between {self.minimum} and {self.maximum}")
        elif self.minimum is not None and value < self.minimum:
            raise DocumentError(where, f"must be >= {self.minimum}, got {value}")
        return value


@frozen
class Boolean(Shape):
    """C{true} or C{false}."""

    kind = "boolean"  # (not a field: one kind for every instance)

    def read(self, value: Any, where: str, strict: bool) -> Any:
        """See L{Shape.read}."""
        if not isinstance(value, bool):
            raise DocumentError(where, f"expected true or false, got {kind_of(value)}")
        return value


@frozen
class ListOf(Shape):
    """
    A list, kept as a tuple; items are named by their index (C{dns[2]}).

    @ivar unique: a repeated item is kept once, where it first appears (as Nova's network model
        keeps a subnet's DNS servers and routes).
    """

    item: Shape
    unique: bool = False

    @property
    def kind(self) -> str:  # type: ignore[override]
        """See L{Shape.kind}."""
        return f"list of {self.item.kind}"

    @property
    def rule(self) -> str:  # type: ignore[override]
        """See L{Shape.rule}."""
        rules = [f"each {self.item.rule}" if self.item.rule else "", "repeats kept once" if self.unique else ""]
        return "; ".join(r for r in rules if r)

    def read(self, value: Any, where: str, strict: bool) -> Any:
        """See L{Shape.read}."""
        if not isinstance(value, list):
            raise DocumentError(where, f"expected a list, got {kind_of(value)}")
        read = self.item.read
        items = tuple(read(item, f"{where}[{i}]", strict) for i, item in enumerate(value))
        return tuple(dict.fromkeys(items)) if self.unique else items

    def import_rule(self) -> str:
        """See L{Shape.import_rule}."""
        rule = self.item.import_rule()
        return f"each {rule}" if rule else ""

    def nested(self) -> tuple[str, type] | None:
        """See L{Shape.nested}."""
        inner = self.item.nested()
        return None if inner is None else ("[]" + inner[0], inner[1])


@frozen
class MapOf(Shape):
    """
    An object of free keys, kept as a dict; values are named by their key (C{metadata.role}).

    @ivar keys: when given, how every key is checked (its errors name the object itself).
    """

    values: Shape
    keys: Shape | None = None

    @property
    def kind(self) -> str:  # type: ignore[override]
        """See L{Shape.kind}."""
        return f"object of {self.keys.kind if self.keys else 'string'} to {self.values.kind}"

    @property
    def rule(self) -> str:  # type: ignore[override]
        """See L{Shape.rule}."""
        return f"each {self.values.rule}" if self.values.rule else ""

    def read(self, value: Any, where: str, strict: bool) -> Any:
        """See L{Shape.read}."""
        if not isinstance(value, dict):
            raise DocumentError(where, f"expected an object, got {kind_of(value)}")
        keys, read = self.keys, self.values.read
        kept = {}
        for key, item in value.items():
            if keys is not None:
                keys.read(key, where, strict)
            kept[key] = read(item, join(where, str(key)), strict)
        return kept

    def import_rule(self) -> str:
        """See L{Shape.import_rule}."""
        rule = self.keys.import_rule() if self.keys is not None else ""
        return f"keys {rule}" if rule else ""


@frozen
class Record(Shape):
    """
    An object of declared fields, read into the attrs class C{cls}.

    @ivar shorthand: the attribute a bare string stands for (a flavor given by its name).
    @ivar then: what to keep instead of the built value (C{attrs.astuple} keeps a pair).
    """

    cls: type
    shorthand: str | None = None
    then: Callable[[Any], Any] | None = None

    @property
    def kind(self) -> str:  # type: ignore[override]
        """See L{Shape.kind}."""
        if self.shorthand is None:
            return "object"
        return f"object, or a string: its `{declared_field(self.cls, self.shorthand).path}`"

    def read(self, value: Any, where: str, strict: bool) -> Any:
        """See L{Shape.read}."""
        spec = record_spec(self.cls)
        if self.shorthand is not None and isinstance(value, str):
            value = {spec.by_attr[self.shorthand].key: value}
        built = spec.read(value, where, strict)
        return built if self.then is None else self.then(built)

    def nested(self) -> tuple[str, type] | None:
        """See L{Shape.nested}."""
        return "", self.cls


# --- declarations ------------------------------------------------------------------------------


@frozen
class Declaration:
    """What L{declared} records in an attrs field's metadata."""

    shape: Shape
    about: str
    key: str | None
    derived: str | None
    assigned: str | None
    ec2_image: bool


def declared(
    shape: Shape,
    about: str,
    *,
    default: Any = attrs.NOTHING,
    factory: Callable[[], Any] | None = None,
    key: str | None = None,
    derived: str | None = None,
    assigned: str | None = None,
    ec2_image: bool = False,
) -> Any:
    """
    An attrs field that is a document field.

    @param shape: how its document value is read and checked.
    @param about: one line for the documentation.
    @param default: the value of an absent (or null) field, and the attrs default; a field with
        neither C{default} nor C{factory} nor C{derived} is required.
    @param key: its key in the document, when not the attribute name; C{"a.b"} is key C{b} of
        the sub-object C{a}.
    @param derived: an absent field is made from others (by a L{finishes} function, which sees
        None); says how, for the documentation.
    @param assigned: the store assigns it on import when absent; says how, for the documentation.
    @param ec2_image: it names a Glance image, which the store numbers for its EC2 id.
    """
    meta = {_DECLARATION: Declaration(shape, about, key, derived, assigned, ec2_image)}
    if factory is not None:
        return attrs.field(factory=factory, metadata=meta)
    return attrs.field(default=default, metadata=meta)


@frozen
class DeclaredField:
    """One declared field of a record type, as readers, the store and the documentation use it."""

    attr: str
    group: str | None
    key: str
    declaration: Declaration
    required: bool
    default: Any
    factory: Callable[[], Any] | None

    @property
    def shape(self) -> Shape:
        """How its value is read."""
        return self.declaration.shape

    @property
    def path(self) -> str:
        """Its dotted path inside its record (C{ec2_ids.instance})."""
        return join(self.group or "", self.key)

    def absent(self) -> Any:
        """The value of the field when the document lacks it (None when derived)."""
        if self.declaration.derived is not None:
            return None
        return self.factory() if self.factory is not None else self.default

    def get(self, document: Mapping[str, Any]) -> Any:
        """Its value in a (valid) document, None when absent."""
        if self.group is not None:
            document = document.get(self.group) or {}
        return document.get(self.key)

    def pop(self, document: dict[str, Any]) -> Any:
        """Take it out of C{document}, returning its value (None when absent)."""
        value = self.get(document)
        if self.group is None:
            document.pop(self.key, None)
        elif isinstance(document.get(self.group), dict):
            document[self.group] = {k: v for k, v in document[self.group].items() if k != self.key}
        return value

    def put(self, document: dict[str, Any], value: Any) -> None:
        """Set it in C{document} (a sub-object it sits in is copied, never changed in place)."""
        if self.group is not None:
            document[self.group] = dict(document.get(self.group) or {}, **{self.key: value})
        else:
            document[self.key] = value


class Found:
    """The values read for one record, by attribute name, as a L{finishes} function sees them."""

    __slots__ = ("values", "where", "_spec")

    def __init__(self, spec: RecordSpec, values: dict[str, Any], where: str) -> None:
        self.values = values
        self.where = where
        self._spec = spec

    def error(self, attr: str, problem: str) -> DocumentError:
        """A L{DocumentError} naming field C{attr} of this record by its document path."""
        return DocumentError(join(self.where, self._spec.by_attr[attr].path), problem)


_FINISHERS: dict[type, Callable[[Found], None]] = {}
_SPECS: dict[type, RecordSpec] = {}


def finishes(cls: type) -> Callable[[Callable[[Found], None]], Callable[[Found], None]]:
    """
    Register the function that completes and cross-checks the values read for C{cls}, before
    C{cls} is built from them (one per class).
    """

    def register(function: Callable[[Found], None]) -> Callable[[Found], None]:
        _FINISHERS[cls] = function
        _SPECS.pop(cls, None)  # a plan made before now is made again, with it
        return function

    return register


# How one field is read, flattened for speed (documents are read field by field):
# (key, attribute, read, required, factory, default).
_Step = tuple[str, str, Callable[[Any, str, bool], Any], bool, Callable[[], Any] | None, Any]


@frozen
class _Group:
    """The fields of a record that sit in one sub-object (C{ec2_ids})."""

    key: str
    keys: frozenset[str]
    fields: tuple[DeclaredField, ...]
    plan: tuple[_Step, ...]


@frozen
class RecordSpec:
    """Everything needed to read one record type, built once from its declarations."""

    cls: type
    fields: tuple[DeclaredField, ...]
    keys: frozenset[str]
    plan: tuple[_Step, ...]
    groups: tuple[_Group, ...]
    by_attr: Mapping[str, DeclaredField]
    finish: Callable[[Found], None] | None

    def read(self, value: Any, where: str, strict: bool) -> Any:
        """Check the object C{value} at C{where} and build the record it describes."""
        _known(value, self.keys, where)
        values: dict[str, Any] = {}
        _read_fields(self.plan, value, where, strict, values)
        for group in self.groups:
            inner = join(where, group.key)
            sub = value.get(group.key)
            if sub is None:
                sub = {}
            _known(sub, group.keys, inner)
            _read_fields(group.plan, sub, inner, strict, values)
        if self.finish is not None:
            self.finish(Found(self, values, where))
        return self.cls(**values)


def _known(value: Any, keys: frozenset[str], where: str) -> None:
    """C{value} is an object of C{keys} only."""
    if not isinstance(value, dict):
        raise DocumentError(where, f"expected an object, got {kind_of(value)}")
    for key in value:
        if key not in keys:
            raise DocumentError(join(where, str(key)), "unknown field")


def _plan(fields: tuple[DeclaredField, ...]) -> tuple[_Step, ...]:
    """The reading steps of C{fields}."""
    steps = []
    for f in fields:
        derived = f.declaration.derived is not None
        factory = None if derived else f.factory
        default = None if derived or factory is not None else f.default
        steps.append((f.key, f.attr, f.shape.read, f.required, factory, default))
    return tuple(steps)


def _read_fields(plan: tuple[_Step, ...], obj: dict[str, Any], where: str, strict: bool, values: dict[str, Any]) -> None:
    """Read the fields of C{plan} from the object C{obj} into C{values}, by attribute name."""
    prefix = f"{where}." if where else ""
    for key, attr, read, required, factory, default in plan:
        raw = obj.get(key)
        if raw is not None:
            values[attr] = read(raw, prefix + key, strict)
        elif required:
            raise DocumentError(prefix + key, "is required")
        else:
            values[attr] = default if factory is None else factory()


def record_spec(cls: type) -> RecordSpec:
    """The reading plan of the record type C{cls}, built from its declarations on first use."""
    spec = _SPECS.get(cls)
    if spec is None:
        spec = _SPECS[cls] = _build_spec(cls)
    return spec


def _build_spec(cls: type) -> RecordSpec:
    """Group the declared fields of C{cls} by the object they sit in."""
    fields = tuple(_declared(a) for a in attrs.fields(cls))
    top = tuple(f for f in fields if f.group is None)
    groups = tuple(_group(name, tuple(f for f in fields if f.group == name)) for name in dict.fromkeys(f.group for f in fields) if name)
    keys = frozenset(f.key for f in top) | frozenset(g.key for g in groups)
    return RecordSpec(cls, fields, keys, _plan(top), groups, {f.attr: f for f in fields}, _FINISHERS.get(cls))


def _group(name: str, fields: tuple[DeclaredField, ...]) -> _Group:
    """The sub-object C{name} holding C{fields}."""
    return _Group(name, frozenset(f.key for f in fields), fields, _plan(fields))


def _declared(attribute: Any) -> DeclaredField:
    """The L{DeclaredField} of one attrs attribute (which must have been made by L{declared})."""
    declaration = attribute.metadata.get(_DECLARATION)
    if declaration is None:
        raise TypeError(f"{attribute.name} is not declared as a document field (use mdsvc.schema.declared)")
    group, _, key = (declaration.key or attribute.name).rpartition(".")
    default = attribute.default
    factory = default.factory if isinstance(default, attrs.Factory) else None  # type: ignore[arg-type]
    required = default is attrs.NOTHING and declaration.derived is None
    return DeclaredField(attribute.name, group or None, key, declaration, required, default, factory)


def declared_fields(cls: type) -> tuple[DeclaredField, ...]:
    """The declared fields of the record type C{cls}, in declaration order."""
    return record_spec(cls).fields


def declared_field(cls: type, attr: str) -> DeclaredField:
    """The declared field of C{cls} held in attribute C{attr} (KeyError for no such field)."""
    return record_spec(cls).by_attr[attr]


def read_document(cls: type, document: Any, where: str = "", strict: bool = True) -> Any:
    """
    Check a parsed document and build the C{cls} it describes.

    @param where: the path of the document itself (C{"[3]"} for the fourth of a list).
    @param strict: make the import checks too; False for a document read back from the store.
    @raise DocumentError: naming the first invalid or unknown field.
    """
    return record_spec(cls).read(document, where, strict)


# --- documentation ----------------------------------------------------------------------------


@frozen
class Row:
    """One field as the documentation's table lists it."""

    path: str
    type: str
    default: str
    import_rule: str
    about: str


def field_rows(cls: type, prefix: str = "") -> Iterator[Row]:
    """Every declared field of C{cls}, nested records' fields after their parent, by full path."""
    for f in declared_fields(cls):
        path = join(prefix, f.path)
        shape = f.shape
        kind = f"{shape.kind}: {shape.rule}" if shape.rule else shape.kind
        yield Row(path, kind, _default_text(f), shape.import_rule(), f.declaration.about)
        nested = shape.nested()
        if nested is not None:
            yield from field_rows(nested[1], path + nested[0])


def _default_text(f: DeclaredField) -> str:
    """What the documentation says of an absent field."""
    if f.declaration.assigned is not None:
        return f.declaration.assigned
    if f.declaration.derived is not None:
        return f.declaration.derived
    if f.required:
        return "required"
    value = f.absent()
    if attrs.has(type(value)):
        value = {}  # a record of its own defaults
    elif isinstance(value, tuple):
        value = list(value)
    elif isinstance(value, bytes):
        value = value.decode("ascii")
    return f"`{json.dumps(value)}`"


def markdown_table(cls: type) -> str:
    """The Markdown table of every field of C{cls} (see L{field_rows})."""
    lines = [
        "| field | type | default | checked on import only | meaning |",
        "|---|---|---|---|---|",
    ]
    for row in field_rows(cls):
        cells = (f"`{row.path}`", row.type, row.default, row.import_rule, row.about)
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines) + "\n"
