"""
The fuzz campaign's model of one hostile connection and of what a correct server does with it.

L{script} turns libFuzzer's bytes (through atheris' FuzzedDataProvider: choices from the end of
the input, raw byte strings from its front, where the dictionary's tokens land) into the bytes of
one connection: up to four requests with chosen and mutated methods, targets, versions,
separators, line ends, fields, bodies and framing, pipelined and split into writes, sometimes
followed by a half-close; or, for inputs whose first byte is a multiple of 8, the rest of the
input verbatim (the seeds from tests/integration/hostile.py are such inputs).

L{strict_prefix} reads the bytes as a strict RFC 9112 server must: the requests up to the first
one that is malformed, ambiguous or incomplete.  A correct server answers each of those (in
order, each with its own answer), and may do what it likes with the rest except hang or hand out
data that is not the sender's.  L{judge} checks one connection's answers against that.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from attrs import frozen

from tests.integration.chains import Guest
from tests.integration.hostile import ALLOWED_STATUSES, LEAK, VICTIM_PATHS, foreign, own_answer, smuggled
from tests.integration.rawhttp import Answer

MAX_HEAD = 16 * 1024
MAX_BODY = 64 * 1024
TCHAR = frozenset(b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")

METHODS = (b"GET",) * 8 + (b"HEAD", b"POST", b"PUT", b"DELETE", b"OPTIONS", b"TRACE", b"CONNECT", b"PRI", b"get", b"G ET", b"GET\t",
                          b"G\x00ET", b"X" * 40, b"")
PATHS = VICTIM_PATHS * 3 + (
    "/", "/openstack", "/openstack/latest", "/openstack/latest/network_data.json", "/openstack/latest/vendor_data2.json",
    "/openstack/latest/password", "/latest/meta-data/", "/latest/meta-data/public-keys/0/openssh-key", "/latest/user-data",
    "/latest/meta-data/local-ipv4", "/2009-04-04/meta-data/instance-id", "//openstack//latest//user_data",
    "/latest/meta-data/hostname/x", "/openstack/latest/content", "*", "169.254.169.254:80",
    "http://169.254.169.254/latest/meta-data/hostname", "http://169.254.169.254", "https://x/openstack/latest/user_data",
    "/%2e%2e/openstack/latest/user_data", "/latest/meta-data/../../openstack/latest/user_data", "",
)
VERSIONS = (b"HTTP/1.1",) * 10 + (b"HTTP/1.0", b"HTTP/1.1x", b"HTTP/1.2", b"HTTP/1.10", b"HTTP/0.9", b"HTTP/2.0", b"HTTP/2", b"http/1.1",
                                  b"HTTP/1", b"HTTP/01.1", b"HTTP/1.1 ", b"", b"HTTP/1.1\t", b"HTTP/1.1\x00", b"HTTPS/1.1")
SEPARATORS = (b" ",) * 12 + (b"  ", b"\t", b"\x0b", b"\x0c", b"\r", b"\x00", b" \t")
LINE_ENDS = (b"\r\n",) * 12 + (b"\n", b"\r", b"\r\r\n", b"\n\r", b"\r\n ", b"\x00\r\n")
SMUGGLES = tuple(smuggled(sep, nl) for sep in (b"\t", b"\x00", b"\x0b", b"\x0c") for nl in (b"\n", b"\r", b"\r\n"))
"""Targets that end the request line early and start a second request (see hostile.smuggled)."""
INJECTIONS = (b"\t", b"\n", b"\r", b"\r\n", b"\x00", b"\x0b", b"\x0c", b"\x7f", b"\xff", b"\xc3\xa9", b" ", b"%0d%0a", b"%00", b"?", b"#",
              b"/..", b"//", b"\r\n\r\n", b"\n\n", b" HTTP/1.1\r\n", b" HTTP/1.1\n", b"\tHTTP/1.1\n\n", b"\tHTTP/1.1\r\r",
              b"\nContent-Length:\t0", b"\nTransfer-Encoding:\tchunked", b"\nConnection:\tclose", b"\nX-Instance-ID:\t") + SMUGGLES
FIELD_NAMES = (b"Accept", b"Accept", b"User-Agent", b"Connection", b"Expect", b"Accept-Encoding", b"Cookie", b"Upgrade",
               b"X-Instance-ID", b"X-Instance-ID-Signature", b"X-Tenant-ID", b"X-Forwarded-For", b"X-Neutron-Network-ID",
               b"X-Neutron-Router-ID", b"X-OVN-Network-ID", b"X-Metadata-Provider", b"X-Metadata-Provider-Signature", b"X_Instance_ID")
"""Field names a guest may send (the identity ones must be ignored)."""
ODD_FIELD_NAMES = (b"Host", b"Content-Length", b"Transfer-Encoding", b"X Instance-ID", b"X-Foo ", b"X-Foo\t", b" X-Foo", b"\tX-Foo",
                   b"X\x00Foo", b"X-F\xc3\xa9", b"X(Foo)", b"", b"Content-Length ", b"Transfer-Encoding ", b"X-Instance-ID\r")
"""Names that are not tokens, or framing and Host fields in a place they do not belong."""
VALUES = (b"*/*", b"text/html", b"application/json", b"close", b"keep-alive", b"100-continue", b"0", b"5", b"chunked", b"Chunked",
          b" chunked", b"chunked, identity", b"identity", b"gzip", b"", b"x" * 30, b"-1", b"+5", b"0x10", b"99999999999999999999")
CONTENT_LENGTHS = (b"%d", b"%d", b" %d", b"%d ", b"+%d", b"-%d", b"0x%x", b"%d.0", b"%d, %d", b"0, %d", b"%d\x00", b"99999999999")
TRANSFER_CODINGS = (b"chunked", b"chunked", b"Chunked", b" chunked", b"chunked, identity", b"identity", b"xchunked", b"\x0bchunked",
                    b"gzip, chunked", b"chunked\r\n chunked")


@frozen
class Script:
    """
    One connection's bytes: the writes, whether to half-close after them, and how many requests
    the generator put in (for counting).
    """

    chunks: tuple[bytes, ...]
    half_close: bool
    requests: int

    @property
    def stream(self) -> bytes:
        """Every byte written."""
        return b"".join(self.chunks)


def _chance(f: Any, n: int) -> bool:
    return f.ConsumeIntInRange(0, n - 1) == 0


def _pick(f: Any, values: Sequence[Any]) -> Any:
    return f.PickValueInList(list(values))


def _insert(f: Any, text: bytes, others: list[Guest]) -> bytes:
    """C{text} with a piece (a listed injection, another guest's id, or raw input bytes) put in somewhere."""
    kind = f.ConsumeIntInRange(0, 3)
    if kind == 0:
        piece = f.ConsumeBytes(f.ConsumeIntInRange(0, 48))
    elif kind == 1 and others:
        other = _pick(f, others)
        piece = _pick(f, (b"\nX-Instance-ID:\t" + other.uuid.encode(), b"\nX-Forwarded-For:\t" + other.address.encode(), other.uuid.encode()))
    else:
        piece = _pick(f, INJECTIONS)
    where = f.ConsumeIntInRange(0, len(text))
    return text[:where] + piece + text[where:]


PARTS = ("method", "separator", "target", "version", "line end", "host", "field", "framing", "head")
"""The parts of a request that can be made anomalous; a request gets 0 to 3 of them (few, so that
the rest of it is valid and it travels on to the next hop)."""


def _anomalies(f: Any) -> frozenset[str]:
    count = _pick(f, (0, 0, 0, 1, 1, 1, 1, 2, 3))
    return frozenset(_pick(f, PARTS) for _ in range(count))


def _target(f: Any, others: list[Guest], odd: bool) -> bytes:
    target = _pick(f, PATHS).encode()
    if odd:
        kind = f.ConsumeIntInRange(0, 5)
        if kind == 0:
            target += b"?" + f.ConsumeBytes(f.ConsumeIntInRange(0, 24))
        elif kind == 1:
            target += b"a" * (MAX_HEAD + f.ConsumeIntInRange(-600, 600))
        else:
            target = _insert(f, target, others)
    return target


def _field(f: Any, others: list[Guest], eol: bytes, odd: bool) -> bytes:
    """A field line: a valid one (identity spoofing included), or with a malformed name, value or fold."""
    name = _pick(f, FIELD_NAMES)
    if odd and _chance(f, 2):
        name = _insert(f, name, others) if _chance(f, 3) else _pick(f, ODD_FIELD_NAMES)
    kind = f.ConsumeIntInRange(0, 3)
    if kind == 0 and others:
        other = _pick(f, others)
        value = _pick(f, (other.uuid.encode(), other.address.encode(), other.project.encode(), b"0" * 64))
    elif kind == 1:
        value = bytes(c for c in f.ConsumeBytes(f.ConsumeIntInRange(0, 32)) if odd or 0x20 <= c < 0x7F)
    else:
        value = _pick(f, VALUES)
    separator = b": "
    if odd:
        value = _insert(f, value, others) if _chance(f, 2) else value
        separator = _pick(f, (b": ", b":", b":\t", b" : ", b"\t: "))
    line = name + separator + value + eol
    if odd and _chance(f, 4):
        line += _pick(f, (b" ", b"\t")) + _pick(f, VALUES) + eol  # obs-fold
    if odd and _chance(f, 12):
        line += b"X-Pad: " + b"a" * (MAX_HEAD + f.ConsumeIntInRange(-800, 400)) + eol
    return line


def _body(f: Any, eol: bytes, odd: bool) -> tuple[bytes, bytes]:
    """Framing fields and the body that follows the head: none or a matching Content-Length, or
    (odd) a wrong, duplicated or malformed Content-Length, chunked, or both."""
    inner = _pick(f, (b"", b"secret", f.ConsumeBytes(f.ConsumeIntInRange(0, 32)),
                      b"GET " + LEAK.encode() + b" HTTP/1.1\r\nHost: x\r\n\r\n"))
    if not odd:
        return (b"Content-Length: %d" % len(inner) + eol, inner) if _chance(f, 6) else (b"", b"")
    mode = f.ConsumeIntInRange(0, 5)
    if mode == 0:
        declared = max(0, len(inner) + f.ConsumeIntInRange(-8, 8))
        return b"Content-Length: %d" % declared + eol, inner
    if mode == 1:
        pattern = _pick(f, CONTENT_LENGTHS)
        count = pattern.count(b"%")
        value = pattern % ((len(inner),) * count) if count else pattern
        return b"Content-Length: " + value + eol, inner
    chunked = (b"%x\r\n" % len(inner) + inner + b"\r\n" if inner else b"") + b"0\r\n\r\n"
    if _chance(f, 2):
        chunked += b"GET " + LEAK.encode() + b" HTTP/1.1\r\nHost: x\r\n\r\n"
    coding = b"Transfer-Encoding: " + _pick(f, TRANSFER_CODINGS) + eol
    if mode <= 3:
        return coding, chunked
    if mode == 4:
        return coding + b"Content-Length: %d" % f.ConsumeIntInRange(0, len(chunked)) + eol, chunked
    return b"Content-Length: %d" % len(chunked) + eol + coding, chunked


def _request(f: Any, others: list[Guest]) -> bytes:
    """One request: valid, except for the few parts L{_anomalies} picks."""
    odd = _anomalies(f)
    method = _pick(f, METHODS) if "method" in odd else _pick(f, (b"GET",) * 6 + (b"HEAD", b"POST"))
    space = (lambda: _pick(f, SEPARATORS)) if "separator" in odd else (lambda: b" ")
    target = _target(f, others, "target" in odd)
    version = _pick(f, VERSIONS) if "version" in odd else _pick(f, (b"HTTP/1.1",) * 5 + (b"HTTP/1.0",))
    eol = _pick(f, LINE_ENDS) if "line end" in odd else b"\r\n"
    line = method + space() + target + space() + version + eol
    host = b"Host: 169.254.169.254" + eol
    if "host" in odd:
        host = _pick(f, (b"", b"Host: a" + eol + b"Host: b" + eol, b"Host:" + eol, b"Host: 169.254.169.254\n",
                         b"host:\t169.254.169.254 " + eol, b"Host: " + _insert(f, b"169.254.169.254", others) + eol))
    fields = b"".join(_field(f, others, eol, "field" in odd and i == 0) for i in range(f.ConsumeIntInRange(0, 3)))
    framing, body = _body(f, eol, "framing" in odd)
    head = line + host + fields + framing
    if "head" in odd:
        head = _insert(f, head, others)
    return head + eol + body


def script(data: bytes, f: Any, others: list[Guest]) -> Script:
    """
    The connection C{data} stands for (C{f}: a FuzzedDataProvider over the same bytes).

    @param others: the other guests, whose ids a hostile guest may try to claim.
    """
    if data[:1] and data[0] % 8 == 0:
        return Script((data[1:],), False, 1)
    requests = [_request(f, others) for _ in range(f.ConsumeIntInRange(1, 4))]
    stream = b"".join(requests)
    split = f.ConsumeIntInRange(0, 7)
    if split == 0:
        chunks = tuple(requests)
    elif split == 1 and len(stream) > 1:
        cuts = sorted({f.ConsumeIntInRange(1, len(stream) - 1) for _ in range(3)})
        chunks = tuple(stream[a:b] for a, b in zip([0] + cuts, cuts + [len(stream)], strict=True))
    else:
        chunks = (stream,)
    return Script(chunks, _chance(f, 12), len(requests))


# --------------------------------------------------------------------------- strict RFC 9112 reading

@frozen
class Framed:
    """A request a strict server must answer: its method and target."""

    method: bytes
    target: bytes

    @property
    def head_only(self) -> bool:
        """Its answer has no body."""
        return self.method == b"HEAD"

    @property
    def exact_path(self) -> str | None:
        """The victim path whose exact answer a 200 must be, for GET and HEAD of one; else None."""
        if self.method not in (b"GET", b"HEAD"):
            return None
        path = self.target.decode("latin-1")
        return path if path in VICTIM_PATHS else None


def _parse_head(head: bytes) -> tuple[bytes, bytes, bytes, dict[bytes, list[bytes]]] | None:
    """Method, target, version and fields of a strictly valid head; None for anything else."""
    lines = head.split(b"\r\n")
    if any(b"\r" in line or b"\n" in line for line in lines):
        return None
    parts = lines[0].split(b" ")
    if len(parts) != 3:
        return None
    method, target, version = parts
    if not method or not TCHAR.issuperset(method) or version not in (b"HTTP/1.1", b"HTTP/1.0"):
        return None
    if not target or any(c <= 0x20 or c >= 0x7F for c in target) or not (target.startswith(b"/") or target.lower().startswith(b"http://")):
        return None
    fields: dict[bytes, list[bytes]] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        value = value.strip(b" \t")
        if not colon or not name or not TCHAR.issuperset(name) or any((c < 0x20 and c != 0x09) or c == 0x7F for c in value):
            return None
        fields.setdefault(name.lower(), []).append(value)
    return method, target, version, fields


def strict_prefix(stream: bytes) -> tuple[list[Framed], bool]:
    """
    The requests at the start of C{stream} a strict server must answer, and whether the server
    may keep reading after them (False when the last one closes the connection).  Stops at the
    first head that is malformed or ambiguous (bare CR or LF, obs-fold, a non-token, a version
    other than 1.0/1.1, Host missing or twice, Transfer-Encoding, several or odd Content-Length),
    oversized (heads near 16 KiB, bodies over 64 KiB: limits differ between hops), or incomplete.
    """
    framed: list[Framed] = []
    pos = 0
    while pos < len(stream):
        end = stream.find(b"\r\n\r\n", pos)
        if end < 0 or end - pos > MAX_HEAD - 1024:
            break
        parsed = _parse_head(stream[pos:end])
        if parsed is None:
            break
        method, target, version, fields = parsed
        lengths = fields.get(b"content-length", [])
        hosts = fields.get(b"host", [])
        # RFC 9112 §3.2: 400 for an HTTP/1.1 request without Host, and for ANY request with more than one
        if (version == b"HTTP/1.1" and len(hosts) != 1) or len(hosts) > 1 or b"transfer-encoding" in fields or len(lengths) > 1 \
                or (lengths and not lengths[0].isdigit()):
            break
        length = int(lengths[0]) if lengths else 0
        if length > MAX_BODY or end + 4 + length > len(stream):
            break
        framed.append(Framed(method, target))
        pos = end + 4 + length
        connection = b",".join(fields.get(b"connection", [])).lower()
        if b"close" in connection or (version == b"HTTP/1.0" and b"keep-alive" not in connection):
            return framed, False
    return framed, True


def lax_answers(stream: bytes) -> int:
    """
    How many answers a lenient server may give: every head that ends with CRLF CRLF, up to one
    whose body has not all been sent (a head with Transfer-Encoding or an unreadable
    Content-Length ends the count: such a server answers it 400 and closes).  The client waits
    for that many before it ends its side, so that nothing a server still works on is cut off.
    """
    count = pos = 0
    while True:
        end = stream.find(b"\r\n\r\n", pos)
        if end < 0:
            return count
        length = 0
        for line in stream[pos:end].split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"transfer-encoding" or (name == b"content-length" and not value.strip().isdigit()):
                return count + 1
            if name == b"content-length":
                length = int(value.strip())
        if end + 4 + length > len(stream):
            return count
        count += 1
        pos = end + 4 + length


# ---------------------------------------------------------------------------------------- judging

@frozen
class Outcome:
    """What came back on one connection (see L{tests.fuzz.campaign.run_script})."""

    answers: tuple[Answer, ...]
    valid: int
    """How many requests the strict reading found (the first C{valid} answers are theirs)."""
    closed_early: bool
    """The server closed before answering every one of those."""
    hung: bool
    """No answer, or no close after our end of stream, within the timeout."""
    error: str | None


VIOLATIONS = ("wrong-guest", "desync", "smuggled", "refused-valid", "status", "hang", "no-answer", "no-answer-after-half-close",
              "unreadable")
"""Kinds of violation, worst first: another guest's data; the answer to another of the guest's
requests; an answer from the API to a request the agent never sent (L{SMUGGLED_SIGNS}); a valid
request answered 4xx; a status outside the allowed set; a hang; a valid request left unanswered
by a close; the same after the client half-closed; bytes that are not HTTP, or a connection that
cannot be made."""


SMUGGLED_SIGNS = (b"X-Instance-ID header is missing", b"Invalid proxy request signature")
"""What the API says only to a request the agent did not build: a guest's bytes reached it as a
request of their own (the agent always sends X-Instance-ID, signed with the right secret)."""


def judge(script_: Script, framed: list[Framed], outcome: Outcome, me: Guest, guests: list[Guest]) -> list[tuple[str, str]]:
    """(kind, detail) for everything wrong with one connection's answers (empty: all correct)."""
    found = []
    if outcome.error:
        found.append(("unreadable", outcome.error))
    if outcome.hung:
        found.append(("hang", f"{len(outcome.answers)} answers, then nothing (and no close) for the timeout"))
    sent = script_.stream
    for i, answer in enumerate(outcome.answers):
        if answer.status not in ALLOWED_STATUSES:
            found.append(("status", f"answer {i + 1}: {answer.status} {answer.body[:80]!r}"))
        for other in foreign(answer.body, guests, me, sent):
            found.append(("wrong-guest", f"answer {i + 1} ({answer.status}) carries guest {other.index}'s data"))
        if any(sign in answer.body for sign in SMUGGLED_SIGNS):
            found.append(("smuggled", f"answer {i + 1}: the API answered a request the agent never sent: {answer.body[:80]!r}"))
        if i < len(framed):
            found.extend(_judge_valid(i, framed[i], answer, me))
    unanswered = outcome.valid - len(outcome.answers)
    if outcome.closed_early and unanswered > 0 and not any(a.status != 200 or a.closes for a in outcome.answers):
        kind = "no-answer-after-half-close" if script_.half_close else "no-answer"
        found.append((kind, f"closed with {unanswered} of {outcome.valid} valid requests unanswered"))
    return found


def _judge_valid(i: int, request: Framed, answer: Answer, me: Guest) -> list[tuple[str, str]]:
    """A request a strict server accepts: for a victim path, exactly the guest's own answer."""
    path = request.exact_path
    if path is None:
        return []
    if answer.status == 200:
        if request.head_only or own_answer(me, path, answer):
            return []
        return [("desync", f"answer {i + 1}: 200 to {path} is {answer.body[:60]!r}")]
    if 400 <= answer.status < 500:
        return [("refused-valid", f"answer {i + 1}: {answer.status} to {request.method.decode()} {path}: {answer.body[:80]!r}")]
    return []


def signature(outcome: Outcome) -> str:
    """A coarse description of an outcome, for libFuzzer's feedback: statuses, error reasons, ending."""
    parts = [f"{a.status}:{_reason(a) if a.status >= 400 else ''}" for a in outcome.answers[:4]]
    parts.append(f"v{min(outcome.valid, 3)}c{outcome.closed_early:d}h{outcome.hung:d}e{outcome.error is not None:d}")
    return "|".join(parts)


def _reason(answer: Answer) -> str:
    """The first line of an error page's text after its title (tags dropped), shortened."""
    text = re.sub(rb"<[^>]*>", b"\n", answer.body)
    lines = [line.strip() for line in text.split(b"\n") if line.strip()]
    return lines[1][:30].decode("latin-1") if len(lines) > 1 else ""
