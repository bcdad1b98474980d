"""Tests for L{mdsvc.sampleconfig}: the sample configs of etc/ are what the option table renders."""

from __future__ import annotations

import difflib
import io
import os
import re

import attrs
from twisted.trial.unittest import SynchronousTestCase

from mdsvc import config
from mdsvc.config import NODE_ROLES, PROXY, Option, load_config, options_for, string
from mdsvc.manage import run
from mdsvc.sampleconfig import render_sample

ETC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "etc")

#: An option line of a sample, set or commented out: its name.
OPTION_LINE = re.compile(r"^#?([a-z_0-9]+) =", re.M)


def staleSamples(directory: str) -> list[str]:
    """
    Every C{ROLE.conf} of C{directory} that is not what the table renders today, each with the
    first lines of its difference and how to regenerate it.
    """
    stale = []
    for role in NODE_ROLES:
        path = os.path.join(directory, f"{role}.conf")
        try:
            with open(path, encoding="utf-8") as f:
                written = f.read()
        except FileNotFoundError:
            written = ""
        rendered = render_sample(role)
        if written != rendered:
            diff = difflib.unified_diff(written.splitlines(), rendered.splitlines(), path, "rendered", lineterm="", n=1)
            stale.append(f"{path} is stale: run `make sample-configs`\n" + "\n".join(list(diff)[:40]))
    return stale


def entryOf(text: str, name: str) -> tuple[str, str]:
    """The comment (joined into one line) and the line of option C{name} in a sample."""
    lines = text.splitlines()
    index = next(i for i, line in enumerate(lines) if re.match(rf"#?{name} =", line))
    start = index
    while start > 0 and lines[start - 1].startswith("# "):
        start -= 1
    return " ".join(line[2:] for line in lines[start:index]), lines[index]


class SampleFileTests(SynchronousTestCase):
    """etc/ROLE.conf is the table's rendering, and the check names a stale file."""

    def test_samplesCurrent(self) -> None:
        """Every etc/ROLE.conf is exactly what render_sample(ROLE) gives today."""
        stale = staleSamples(ETC)
        if stale:
            self.fail("\n\n".join(stale))

    def test_staleSampleNamed(self) -> None:
        """
        An option added to the table makes the samples of the roles that read it stale, and
        the check names exactly those files.
        """
        extra = Option("proxy", "new_option", string, "x", help="A new option.", roles=PROXY)
        self.patch(config, "OPTIONS", config.OPTIONS + (extra,))
        stale = [problem.split(" is stale")[0] for problem in staleSamples(ETC)]
        self.assertEqual(stale, [os.path.join(ETC, f"{role}.conf") for role in ("proxy", "network-node", "all-in-one")])


class RenderTests(SynchronousTestCase):
    """What a rendered sample holds."""

    def test_roleShowsItsOptions(self) -> None:
        """A role's sample shows each option of its parts once, section by section, and no other."""
        for role in NODE_ROLES:
            text = render_sample(role)
            shown: list[tuple[str, str]] = []
            section = None
            for line in text.splitlines():
                header = re.match(r"^\[(\w+)\]$", line)
                if header:
                    section = header.group(1)
                found = OPTION_LINE.match(line)
                if found:
                    shown.append((section or "", found.group(1)))
            self.assertEqual(sorted(shown), sorted(o.key for o in options_for(role)), role)

    def test_valuesAreDefaults(self) -> None:
        """
        Loading a sample gives the defaults (the role's own values aside): set options show
        their defaults as the parser reads them, unset ones are commented out.
        """
        for role in NODE_ROLES:
            path = self.mktemp()
            with open(path, "w", encoding="utf-8") as f:
                f.write(render_sample(role))
            overrides = {o.key: o.role_values[role] for o in options_for(role) if role in o.role_values}
            loaded = attrs.evolve(load_config(path), sources=(), demo=True)
            self.assertEqual(loaded, load_config(None, overrides), role)

    def test_roleValue(self) -> None:
        """all-in-one's sample turns service_metadata_proxy on (its agent signs requests) and says the default."""
        comment, line = entryOf(render_sample("all-in-one"), "service_metadata_proxy")
        self.assertEqual(line, "service_metadata_proxy = true")
        self.assertTrue(comment.endswith(" Default: false."), comment)
        comment, line = entryOf(render_sample("api"), "service_metadata_proxy")
        self.assertEqual(line, "service_metadata_proxy = false")
        self.assertNotIn("Default:", comment)

    def test_aliasesNamed(self) -> None:
        """An option's older names are named in its comment."""
        comment, line = entryOf(render_sample("agent"), "nova_metadata_host")
        self.assertEqual(line, "nova_metadata_host = 127.0.0.1")
        self.assertTrue(comment.endswith(" Also read as [DEFAULT] nova_metadata_ip."), comment)

    def test_unsetCommentedOut(self) -> None:
        """An option without a default is commented out, with its example value when it has one."""
        text = render_sample("api")
        self.assertIn("\n#store = sqlite:/var/lib/mdsvc/mdsvc.sqlite\n", text)
        self.assertIn("\n#demo = false\n", text)

    def test_lineWidth(self) -> None:
        """Comment lines fit in 99 characters unless one word is longer."""
        for role in NODE_ROLES:
            for line in render_sample(role).splitlines():
                if line.startswith("# ") and len(line) > 99:
                    self.assertNotIn(" ", line[2:], line)

    def test_everyOptionDocumented(self) -> None:
        """Every option of the table has a help text and the parts that read it; every section its text."""
        for option in config.OPTIONS:
            self.assertTrue(option.help, option.key)
            self.assertTrue(option.roles, option.key)
            self.assertLessEqual(option.roles, config.EVERY_PART, option.key)
            self.assertIn(option.section, config.SECTIONS, option.key)


class CommandTests(SynchronousTestCase):
    """mdsvc-manage sample-config."""

    def test_role(self) -> None:
        """sample-config --role ROLE prints the role's sample."""
        out = io.StringIO()
        self.assertEqual(run(["sample-config", "--role", "proxy"], out=out), 0)
        self.assertEqual(out.getvalue(), render_sample("proxy"))

    def test_outputDir(self) -> None:
        """sample-config --output-dir DIR writes ROLE.conf of every role, which the check then finds current."""
        directory = self.mktemp()
        os.makedirs(directory)
        out = io.StringIO()
        self.assertEqual(run(["sample-config", "--output-dir", directory], out=out), 0)
        self.assertEqual(out.getvalue(), "".join(f"wrote {os.path.join(directory, r)}.conf\n" for r in NODE_ROLES))
        self.assertEqual(staleSamples(directory), [])
