"""Log destinations: JSON lines with named fields, the journal's fields, syslog; no secret in any; one line per failed request."""

from __future__ import annotations

import io
import json
import os
import shutil
import socket
import tempfile

from twisted.application.service import Application
from twisted.internet.task import Clock
from twisted.logger import ILogObserver, Logger, LogLevel, capturedLogs
from twisted.trial.unittest import SynchronousTestCase

from mdsvc.config import load_config
from mdsvc.failures import EVENT, FailureLog
from mdsvc.logs import JournalFields, JSONLines, Redacting, Redactor, journal_datagram, primary_observer
from mdsvc.operations import NodeService

SECRET = "hunter2-shared-secret"


def config(directory: str, body: str) -> str:
    """A config file in C{directory} with C{body} after a [DEFAULT] holding the shared secret."""
    path = os.path.join(directory, "mdsvc.conf")
    with open(path, "w") as f:
        f.write(f"[DEFAULT]\nstate_path = {directory}\nmetadata_proxy_shared_secret = {SECRET}\n{body}")
    return path


class JSONTests(SynchronousTestCase):
    """log_format = json: one JSON object per event and line, every named field kept, no secret."""

    def setUp(self) -> None:
        self.dir = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, self.dir, True)

    def test_one_event_per_line(self) -> None:
        """Two events, two lines; each parses, with its named fields and its formatted text."""
        out = io.StringIO()
        log = Logger(observer=JSONLines(out))
        log.info("request failed at the {hop}: {code}", hop="agent", code=503, instance="i-1")
        log.warn("second")
        lines = out.getvalue().splitlines()
        self.assertEqual(len(lines), 2)
        first = json.loads(lines[0])
        self.assertEqual((first["hop"], first["code"], first["instance"], first["text"]),
                         ("agent", 503, "i-1", "request failed at the agent: 503"))
        self.assertEqual(first["log_level"]["name"], "info")

    def test_secret_redacted(self) -> None:
        """The shared secret, in a field or formatted into the message, is shown as <secret>."""
        parsed = load_config(config(self.dir, "log_format = json\n"))
        out = io.StringIO()
        observer = primary_observer(parsed, out)
        self.assertIsNotNone(observer)
        Logger(observer=observer).info("a {thing} here", thing=f"x{SECRET}y", other=SECRET)
        text = out.getvalue()
        self.assertNotIn(SECRET, text)
        record = json.loads(text)
        self.assertEqual((record["thing"], record["other"], record["text"]), ("x<secret>y", "<secret>", "a x<secret>y here"))

    def test_application_component(self) -> None:
        """With json, the node's service gives twistd's application its observer; with text, none (twistd's own)."""
        application = Application("mdsvc")
        NodeService(load_config(config(self.dir, "log_format = json\n"))).setServiceParent(application)
        self.assertIsInstance(application.getComponent(ILogObserver), Redacting)
        plain = Application("mdsvc")
        NodeService(load_config(config(self.dir, ""))).setServiceParent(plain)
        self.assertIsNone(plain.getComponent(ILogObserver))

    def test_bad_format_one_line(self) -> None:
        """log_format takes text or json; anything else is one line naming file, line and option."""
        from mdsvc.config import ConfigError

        path = config(self.dir, "log_format = xml\n")
        e = self.assertRaises(ConfigError, load_config, path)
        self.assertEqual(str(e), f"{path}:4: [DEFAULT] log_format = 'xml': allowed: text | json")


class JournalTests(SynchronousTestCase):
    """use_journal: native journald datagrams with the named fields as MDSVC_NAME."""

    def test_datagram(self) -> None:
        """Fields go one per line; a value with a newline is length-prefixed, as the protocol wants."""
        self.assertEqual(journal_datagram({"MESSAGE": "a\nb", "PRIORITY": "6"}),
                         b"MESSAGE\n\x03\x00\x00\x00\x00\x00\x00\x00a\nb\nPRIORITY=6\n")

    def test_fields_sent(self) -> None:
        """An event reaches a journal socket with its message, priority and named fields; no secret."""
        directory = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, directory, True)
        path = os.path.join(directory, "journal")
        server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        server.bind(path)
        self.addCleanup(server.close)
        log = Logger(observer=Redacting(JournalFields(path), Redactor([SECRET])))
        log.warn("request failed at the {hop}: {reason}", hop="api", reason=f"bad {SECRET}", code=403)
        fields = dict(line.split("=", 1) for line in server.recv(65536).decode().splitlines())
        self.assertEqual((fields["MESSAGE"], fields["PRIORITY"], fields["SYSLOG_IDENTIFIER"], fields["MDSVC_HOP"], fields["MDSVC_CODE"]),
                         ("request failed at the api: bad <secret>", "4", "mdsvc", "api", "403"))


class FailureLineTests(SynchronousTestCase):
    """One line per failed request, with its instance, hop and reason; a guest's repeats are counted, not each logged."""

    def test_line_and_throttle(self) -> None:
        """The first 404 of a guest is a line with named fields; its next ones within a minute are counted into the next line."""
        clock = Clock()
        failures = FailureLog(clock)
        with capturedLogs() as events:
            for _ in range(3):
                failures("agent", 404, "10.0.0.5", "net-1", None, b"GET", b"/latest", "Instance was not found on network net-1.")
            failures("api", 500, "10.0.0.6", None, "i-6", b"GET", b"/x", "instance store failed")
            clock.advance(61)
            failures("agent", 404, "10.0.0.5", "net-1", None, b"GET", b"/latest", "Instance was not found on network net-1.")
        lines = [e for e in events if e.get("mdsvc_event") == EVENT]
        self.assertEqual([(e["hop"], e["code"], e["instance"], e["held"]) for e in lines],
                         [("agent", 404, "-", 0), ("api", 500, "i-6", 0), ("agent", 404, "-", 2)])
        self.assertEqual((lines[1]["log_level"], lines[0]["log_level"]), (LogLevel.warn, LogLevel.info))
        from twisted.logger import formatEvent

        self.assertEqual(formatEvent(lines[2]), "request failed at the agent: GET /latest from 10.0.0.5 on net-1 (instance -): 404 "
                                                "Instance was not found on network net-1. (2 more from this guest in the last minute)")
