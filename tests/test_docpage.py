"""Tests for L{mdsvc.docpage}: the committed field tables are those the declarations render."""

from __future__ import annotations

import os

from twisted.trial.unittest import SynchronousTestCase

from mdsvc.docpage import example_error, render

PAGE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs", "instance-documents.md")


def rows() -> dict[str, list[str]]:
    """The page's table rows by field path (without backticks): type, default, import-only check, meaning."""
    found = {}
    for line in render().splitlines():
        if line.startswith("| `"):
            cells = [c.strip() for c in line.strip("|").split(" | ")]
            found[cells[0].strip("`")] = cells[1:]
    return found


class CommittedPageTests(SynchronousTestCase):
    """docs/instance-documents.md is generated, never edited by hand."""

    def test_current(self) -> None:
        """The committed page is exactly what the declarations render (else run C{make docs})."""
        with open(PAGE, encoding="utf-8") as f:
            committed = f.read()
        self.assertEqual(committed, render(), "docs/instance-documents.md is stale: run `make docs` and commit it")


class PageContentTests(SynchronousTestCase):
    """The page says what an import does, field by field."""

    def test_documentKeys(self) -> None:
        """Fields are listed by their document keys and full paths, not by attribute names."""
        table = rows()
        for path in ("uuid", "ec2_ids.instance", "ec2_ids.images", "injected_files[].contents_b64",
                     "nics[].fixed_ips[].subnet.routes[].nexthop", "flavor.extra_specs"):
            self.assertIn(path, table)
        for attribute in ("ec2_instance_id", "ec2_image_ids", "injected_files[].contents"):
            self.assertNotIn(attribute, table)

    def test_importOnlyChecks(self) -> None:
        """The import-only checks of the README appear in their column, and only there."""
        table = rows()
        self.assertIn("65535", table["user_data"][2])
        self.assertIn("63 letters, digits", table["hostname"][2])
        self.assertIn("printable ASCII", table["project_id"][2])
        self.assertIn("printable ASCII", table["ec2_ids.images"][2])
        self.assertEqual(table["launch_index"][2], "")
        self.assertEqual(table["nics[].mac"][2], "")

    def test_defaults(self) -> None:
        """Defaults are Nova's, or say how they are made."""
        table = rows()
        self.assertEqual(table["uuid"][1], "required")
        self.assertEqual(table["availability_zone"][1], '`"nova"`')
        self.assertEqual(table["security_groups"][1], '`["default"]`')
        self.assertIn("sanitised", table["hostname"][1])
        self.assertIn("assigned on import", table["reservation_id"][1])

    def test_exampleError(self) -> None:
        """The error the page quotes is the one an import raises, naming a deep field by its path."""
        error = example_error()
        self.assertTrue(error.startswith("nics[0].fixed_ips[1].subnet.cidr: "), error)
        self.assertIn(f"`{error}`", render())
