# -*- test-case-name: tests.test_docpage -*-
"""
C{docs/instance-documents.md}: every field of instance and router documents, rendered from
their declarations in L{mdsvc.model}, so that the page cannot drift from what an import checks.

    python -m mdsvc.docpage > docs/instance-documents.md      # or: make docs
"""

from __future__ import annotations

import sys
from typing import Any

from mdsvc.model import DocumentError, Instance, Router, instance_from_document
from mdsvc.schema import declared_fields, markdown_table

# A document with one bad field deep inside, whose error the page quotes as it is raised.
_BAD_EXAMPLE: dict[str, Any] = {
    "uuid": "6e7f5b2a-1c1d-4a55-9f3e-2b9d1c0a7e11",
    "nics": [{"fixed_ips": [{"ip": "10.0.0.5"}, {"ip": "10.0.1.5", "subnet": {"cidr": "10.0.1.0/33"}}]}],
}


def example_error() -> str:
    """The one-line error an import gives for L{_BAD_EXAMPLE}."""
    try:
        instance_from_document(_BAD_EXAMPLE)
    except DocumentError as e:
        return str(e)
    raise AssertionError("the example document of docs/instance-documents.md is valid")


def required_fields(cls: type) -> str:
    """The required fields of C{cls}, as the page names them."""
    return ", ".join(f"`{f.path}`" for f in declared_fields(cls) if f.required)


def render() -> str:
    """The whole page."""
    return f"""# Instance and router documents

<!-- Generated from the declarations in mdsvc/model.py by `python -m mdsvc.docpage` (make docs);
tests/test_docpage.py checks that this file is current. Do not edit it by hand. -->

The embedded store is fed with JSON or YAML documents (one object, or a list of them):
`mdsvc-manage instance import FILE` and `mdsvc-manage router import FILE`
(`mdsvc/data/demo-instance.json` is an example with most fields).

- Required: {required_fields(Instance)} (a router's {required_fields(Router)}). Every other field
  gets the default Nova would use; a `null` field is the same as an absent one.
- An unknown field is an error naming it. Every error is one line naming the dotted path of the
  first bad field: `{example_error()}`.
- A path such as `nics[].mac` is the `mac` of every element of the list `nics`.
- *Checked on import only*: these checks are made when a document is imported. Documents already
  in the store are served as they are (an upgrade never turns a stored instance into errors for
  its guest): re-import them to apply new checks.
- *Assigned on import*: the store fills in these fields when a document leaves them out, and
  keeps them when the instance is re-imported without them.

## Instance documents

{markdown_table(Instance)}
## Router documents

Guests on a router's networks reach metadata through its namespace
(`X-Neutron-Router-ID`, and provider mode).

{markdown_table(Router)}"""


def main() -> None:
    """Print the page (C{python -m mdsvc.docpage > docs/instance-documents.md})."""
    sys.stdout.write(render())


if __name__ == "__main__":
    main()
