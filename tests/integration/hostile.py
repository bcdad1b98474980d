"""
What a hostile guest sends its metadata proxy, and how to judge what comes back: request
smuggling and header injection variants as raw bytes, each with what RFC 9110/9112 let a correct
server answer; the statuses a guest may ever see; a guest's own-data check.  Used by the
cross-tenant test (tests/integration/test_cross_tenant.py) and, as seeds, by the fuzz campaign
(tests/fuzz/campaign.py).

Each L{Attack} is one connection: the chunks written (one write each) and, for every request
they hold as RFC 9112 frames them, an L{Expect}: C{ok} (a correct server answers 200 with the
guest's own data for that path), C{reject} (the request is malformed: any allowed status but
200), or C{any} (the RFC lets a server accept or reject it).  The smuggled parts ask for the
sending guest's own user data: if another guest ever receives it, the chain delivered an answer
to the wrong guest, and the markers in it name the guest (so the variant) it belonged to.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterable

from attrs import frozen

from tests.integration.chains import Guest
from tests.integration.rawhttp import Answer, Exchange, connect, exchange

MAX_HEAD = 16 * 1024
"""The head size requests are bounded to (haproxy's default buffer is 16 KiB too)."""

ALLOWED_STATUSES = frozenset({200, 400, 403, 404, 408, 409, 413, 414, 417, 429, 431, 501, 503, 504, 505})
"""
Every final status a guest may be answered, whatever it sends:
  200 its own data;
  400 malformed request: request line, target, field line, framing, Host (RFC 9112 §3, §5, §6.3);
  403 refused identity (unreachable for a guest: it never holds a signature);
  404 no such path or instance; 408 request not sent in time; 409 password already set;
  413 body too large; 414 target too long; 417 an Expect other than 100-continue;
  429 rate limited; 431 head too large;
  501 a transfer coding or method the server does not implement (RFC 9112 §6.1);
  503 a part of the chain is down; 504 a part of the chain is slow;
  505 an HTTP major version other than 1.
Not allowed: 500 (an unhandled error: malformed input must get a 4xx), 502 (the agent got an
answer it cannot relay: two hops disagree about framing), and anything else (1xx are interim
answers and not counted).
"""

VICTIM_PATHS = (
    "/openstack/latest/meta_data.json",
    "/openstack/latest/user_data",
    "/latest/meta-data/hostname",
    "/latest/meta-data/instance-id",
)
"""What a booting guest reads; each answer can be checked exactly against its own instance."""

LEAK = "/openstack/latest/user_data"
"""The path every smuggled request asks for: the sender's user data names the sender."""

HOSTNAME = "/latest/meta-data/hostname"
INSTANCE_ID = "/latest/meta-data/instance-id"
HOST = b"Host: 169.254.169.254\r\n"


@frozen
class Expect:
    """What a correct server answers one request: C{ok}, C{reject} or C{any} (see the module)."""

    verdict: str
    path: str | None = None
    """The path whose own-data answer a 200 must be (None: any own data)."""


@frozen
class Attack:
    """
    One hostile connection.

    @ivar expect: one L{Expect} per request; more answers than requests is a desynchronisation.
    @ivar complete: False for deliberately truncated requests, which may go unanswered.
    @ivar half_close: shut our sending side after the last chunk.
    @ivar head_only: indexes of the requests that are HEAD (their answers have no body).
    @ivar repeat: times in a row to send it: a desynchronised connection pool hands out the
        extra answer only if another request comes at the right moment.
    """

    name: str
    chunks: tuple[bytes, ...]
    expect: tuple[Expect, ...]
    complete: bool = True
    half_close: bool = False
    head_only: frozenset[int] = frozenset()
    repeat: int = 1

    @property
    def sent(self) -> bytes:
        """Every byte the attack writes."""
        return b"".join(self.chunks)


def request(target: str | bytes, headers: bytes = HOST, method: bytes = b"GET", version: bytes = b"HTTP/1.1", body: bytes = b"") -> bytes:
    """One request's bytes, exactly as given (nothing is checked or escaped)."""
    if isinstance(target, str):
        target = target.encode()
    return method + b" " + target + b" " + version + b"\r\n" + headers + b"\r\n" + body


def smuggled(separator: bytes = b"\t", newline: bytes = b"\n") -> bytes:
    """
    A target that ends its request line early and starts a second request, which the agent's own
    headers (its valid signature among them) then complete:
    C{/latest/meta-data/hostname<sep>HTTP/1.1<nl>Host:<sep>x<nl><nl>GET<sep>/openstack/latest/user_data}.
    """
    return (HOSTNAME.encode() + separator + b"HTTP/1.1" + newline + b"Host:" + separator + b"x" + newline + newline
            + b"GET" + separator + LEAK.encode())


def _ok(path: str | None = HOSTNAME) -> tuple[Expect, ...]:
    return (Expect("ok", path),)


def _reject() -> tuple[Expect, ...]:
    return (Expect("reject"),)


def _any(path: str | None = HOSTNAME) -> tuple[Expect, ...]:
    return (Expect("any", path),)


def attacks(victim: Guest) -> list[Attack]:
    """Every variant; those that name another guest name C{victim}."""
    out: list[Attack] = []
    for group in (_target_attacks, _field_attacks, _identity_attacks, _framing_attacks, _request_line_attacks, _host_attacks,
                  _size_attacks, _connection_attacks):
        out.extend(group(victim))
    return out


SMUGGLING_REPEAT = 8
"""How often in a row a variant that may desynchronise a hop is sent (targets, fields, framing)."""


def _one(name: str, data: bytes, expect: tuple[Expect, ...], **kw: object) -> Attack:
    return Attack(name, (data,), expect, **kw)  # type: ignore[arg-type]


def _smuggle(name: str, data: bytes, expect: tuple[Expect, ...], **kw: object) -> Attack:
    return Attack(name, (data,), expect, repeat=SMUGGLING_REPEAT, **kw)  # type: ignore[arg-type]


def _target_attacks(victim: Guest) -> Iterable[Attack]:
    """Control characters in the request target, which the next hop may read as framing."""
    uuid, ip = victim.uuid.encode(), victim.address.encode()
    yield _smuggle("target: TAB + bare LF smuggle a second request", request(smuggled(b"\t", b"\n")), _reject())
    yield _smuggle("target: TAB + bare CR smuggle a second request", request(smuggled(b"\t", b"\r")), _reject())
    yield _smuggle("target: TAB + CRLF smuggle a second request", request(smuggled(b"\t", b"\r\n")), _reject())
    yield _smuggle("target: NUL + bare LF smuggle a second request", request(smuggled(b"\x00", b"\n")), _reject())
    yield _smuggle("target: VT + bare LF smuggle a second request", request(smuggled(b"\x0b", b"\n")), _reject())
    yield _smuggle("target: bare LF injects X-Instance-ID", request(INSTANCE_ID.encode() + b"\nX-Instance-ID:\t" + uuid), _reject())
    yield _smuggle("target: bare CR injects X-Instance-ID", request(INSTANCE_ID.encode() + b"\rX-Instance-ID:\t" + uuid), _reject())
    yield _smuggle("target: bare LF + empty line ends the head early", request(HOSTNAME.encode() + b"\n\n"), _reject())
    yield _smuggle("target: TAB", request(HOSTNAME.encode() + b"\tx"), _reject())
    yield _smuggle("target: NUL", request(HOSTNAME.encode() + b"\x00"), _reject())
    yield _smuggle("target: DEL and 8-bit bytes", request(b"/latest/meta-data/host\x7fname\xff"), _reject())
    yield _smuggle("target: percent-encoded CRLF", request(HOSTNAME + "%0d%0aX-Instance-ID:%20" + victim.uuid), _any(None))
    yield _smuggle("target: absolute form", request("http://169.254.169.254" + HOSTNAME), _ok())
    yield _smuggle("target: absolute form naming the victim's address", request(b"http://x@" + ip + b":80" + INSTANCE_ID.encode()), _any(INSTANCE_ID))
    yield _smuggle("target: absolute form, smuggling after the host", request(b"http://169.254.169.254" + smuggled()), _reject())
    yield _smuggle("target: absolute form, bare LF in the host", request(b"http://a\nX-Instance-ID:\t" + uuid + HOSTNAME.encode()), _reject())
    yield _smuggle("target: asterisk form", request("*", method=b"OPTIONS"), _any(None))
    yield _smuggle("target: authority form (CONNECT)", request("169.254.169.254:80", method=b"CONNECT"), _any(None))
    yield _smuggle("target: empty path segments", request("//openstack//latest//user_data"), _any(LEAK))
    yield _smuggle("target: dot segments", request("/latest/meta-data/../../openstack/latest/user_data"), _any(None))


def _field_attacks(victim: Guest) -> Iterable[Attack]:
    """Field values the proxy passes on (Accept) or keeps whole, and field names that are not tokens."""
    uuid = victim.uuid.encode()
    for name, char in (("bare LF", b"\n"), ("bare CR", b"\r"), ("NUL", b"\x00")):
        # RFC 9110 §5.5: CR, LF, NUL in a value: reject, or replace with SP (then harmless)
        yield _smuggle(f"Accept: {name} injects X-Instance-ID", request(INSTANCE_ID, b"Accept: text/html" + char + b"X-Instance-ID:\t" + uuid
                                                                    + b"\r\n" + HOST), _any(INSTANCE_ID))
    yield _smuggle("Accept: TAB before X-Instance-ID (a valid value)", request(INSTANCE_ID, b"Accept: text/html\tX-Instance-ID:\t" + uuid
                                                                          + b"\r\n" + HOST), _ok(INSTANCE_ID))
    yield _smuggle("Accept: bare LF smuggles a second request", request(HOSTNAME, b"Accept: */*\n\nGET " + LEAK.encode() + b" HTTP/1.1\nHost: x\r\n"
                                                                     + HOST), _any())
    yield _smuggle("User-Agent: bare CR and LF", request(HOSTNAME, b"User-Agent: a\r\nb\nc\r\r\n" + HOST), _reject())
    yield _smuggle("obs-fold continues Accept onto X-Instance-ID", request(INSTANCE_ID, b"Accept: text/plain\r\n X-Instance-ID: " + uuid + b"\r\n"
                                                                       + HOST), _any(INSTANCE_ID))
    yield _smuggle("obs-fold with TAB", request(INSTANCE_ID, b"Accept: text/plain\r\n\tfolded\r\n" + HOST), _any(INSTANCE_ID))
    for raw, verdict in ((b"X Instance-ID: a", "reject"), (b"X-Foo\t: a", "reject"), (b"X-Foo : a", "reject"), (b": a", "reject"),
                         (b"X\x00Foo: a", "reject"), (b"X-F\xc3\xa9: a", "reject"), (b"X(Foo): a", "reject"), (b"X-Foo", "reject"),
                         (b" X-Foo: a", "any")):
        # RFC 9112 §5.1: no whitespace before the colon (MUST 400); field names are tokens.
        # §2.2: whitespace before the first field line: reject, or ignore that line.
        yield _smuggle(f"field name {raw.split(b':')[0]!r}", request(HOSTNAME, raw + b"\r\n" + HOST), (Expect(verdict, HOSTNAME),))


def _identity_attacks(victim: Guest) -> Iterable[Attack]:
    """Identity headers a guest must never be able to set: it stays itself."""
    uuid = victim.uuid.encode()
    for header in (b"X-Instance-ID: " + uuid, b"X-Instance-ID-Signature: " + b"0" * 64, b"X-Tenant-ID: " + victim.project.encode(),
                   b"X-Forwarded-For: " + victim.address.encode(), b"X-Neutron-Network-ID: 00000000-0000-4000-8000-000000000000",
                   b"X-Neutron-Router-ID: 00000000-0000-4000-8000-000000000000", b"X-OVN-Network-ID: x", b"X-Metadata-Provider: x",
                   b"X-Metadata-Provider-Signature: x", b"X_Instance_ID: " + uuid):
        yield _one(f"spoofed {header.split(b':')[0].decode()}", request(INSTANCE_ID, header + b"\r\n" + HOST), _ok(INSTANCE_ID))
    yield _one("X-Instance-ID line ending in ' HTTP/1.1'", request(INSTANCE_ID, b"X-Instance-ID: " + uuid + b" HTTP/1.1\r\n" + HOST),
               _ok(INSTANCE_ID))


def _framing_attacks(victim: Guest) -> Iterable[Attack]:
    """Content-Length and Transfer-Encoding: where does the message end?"""
    second = request(LEAK)
    both = (Expect("any", HOSTNAME), Expect("any", LEAK))
    yield _smuggle("GET with a body holding a request", request(HOSTNAME, HOST + b"Content-Length: %d\r\n" % len(second), body=second), _ok())
    yield _smuggle("Content-Length twice, equal", request(HOSTNAME, HOST + b"Content-Length: 0\r\nContent-Length: 0\r\n"), _any())
    yield _smuggle("Content-Length twice, conflicting", request(HOSTNAME, HOST + b"Content-Length: 0\r\nContent-Length: %d\r\n" % len(second),
                                                            body=second), _reject())
    yield _smuggle("Content-Length list '0, N'", request(HOSTNAME, HOST + b"Content-Length: 0, %d\r\n" % len(second), body=second), _reject())
    for value, verdict in ((b"+%d", "reject"), (b"-1", "reject"), (b"0x%x", "reject"), (b"%d.0", "reject"), (b"9" * 30, "reject"),
                           (b" %d", "ok"), (b"%d ", "ok"), (b"\t%d", "ok")):
        length = value % len(second) if b"%" in value else value
        yield _smuggle(f"Content-Length {length!r}", request(HOSTNAME, HOST + b"Content-Length: " + length + b"\r\n", body=second),
                   (Expect(verdict, HOSTNAME),))
    last_chunk = b"0\r\n\r\n" + second
    for coding, expect in ((b"chunked", both), (b"Chunked", both), (b" chunked", both), (b"chunked, identity", _reject()),
                           (b"identity", _reject()), (b"xchunked", _reject()), (b"\x0bchunked", _reject())):
        # RFC 9112 §6.1: an unknown coding is 501; chunked must be the last coding (else 400)
        yield _smuggle(f"Transfer-Encoding {coding!r}, a request after the last chunk",
                   request(HOSTNAME, HOST + b"Transfer-Encoding: " + coding + b"\r\n", b"POST", body=last_chunk), expect)
    # RFC 9112 §6.3: Transfer-Encoding overrides Content-Length; reject, or read chunked and close after
    yield _smuggle("Content-Length and Transfer-Encoding (CL.TE)", request(HOSTNAME, HOST + b"Content-Length: %d\r\nTransfer-Encoding: chunked\r\n"
                                                                       % len(last_chunk), b"POST", body=last_chunk), both)
    yield _smuggle("Transfer-Encoding and Content-Length (TE.CL)", request(HOSTNAME, HOST + b"Transfer-Encoding: chunked\r\nContent-Length: 3\r\n",
                                                                       b"POST", body=b"5\r\nhello\r\n" + last_chunk), both)
    yield _smuggle("Transfer-Encoding continued by obs-fold", request(HOSTNAME, HOST + b"Transfer-Encoding:\r\n chunked\r\n", b"POST",
                                                                   body=last_chunk), both)
    yield _smuggle("chunk extension with a bare LF", request(HOSTNAME, HOST + b"Transfer-Encoding: chunked\r\n", b"POST",
                                                         body=b"3;x=\n\r\nabc\r\n" + last_chunk), _reject())
    yield _smuggle("password POST with Expect: 100-continue", request("/openstack/latest/password", HOST + b"Content-Length: 6\r\n"
                                                                  b"Expect: 100-continue\r\n", b"POST", body=b"secret"), _any(None))
    yield _smuggle("password POST, body too large", request("/openstack/latest/password", HOST + b"Content-Length: 70000\r\n", b"POST",
                                                        body=b"x" * 70000), _reject())


def _request_line_attacks(victim: Guest) -> Iterable[Attack]:
    """Versions, methods and the request line's shape (RFC 9112 §2.3, §3)."""
    for version, verdict in ((b"HTTP/1.1x", "reject"), (b"HTTP/1.2", "any"), (b"HTTP/1.10", "reject"), (b"HTTP/2.0", "reject"),
                             (b"HTTP/0.9", "reject"), (b"HTTP/1", "reject"), (b"http/1.1", "reject"), (b"HTTP/01.1", "reject"),
                             (b"HTTP/1.1\t", "any"), (b"HTTP/1.1 ", "any"), (b"HTTP/1.0", "ok")):
        yield _one(f"version {version!r}", request(HOSTNAME, version=version), (Expect(verdict, HOSTNAME),))
    yield _one("HTTP/0.9 simple request", b"GET " + LEAK.encode() + b"\r\n\r\n", _reject())
    yield _one("HTTP/2 preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", _reject())
    for method, verdict in ((b"get", "any"), (b"G\x00ET", "reject"), (b"GET\x0b", "reject"), (b"X" * 200, "any"), (b"DELETE", "any"),
                            (b"TRACE", "any"), (b"GET GET", "reject")):
        yield _one(f"method {method[:12]!r}", request(HOSTNAME, method=method), (Expect(verdict, HOSTNAME),))
    yield _one("method HEAD", request(HOSTNAME, method=b"HEAD"), _ok(None), head_only=frozenset({0}))
    # §3: a recipient MAY split the request line on any whitespace (SP, HTAB, VT, FF, bare CR)
    yield _one("two spaces after the method", b"GET  " + HOSTNAME.encode() + b" HTTP/1.1\r\n" + HOST + b"\r\n", _any())
    yield _one("TAB separators in the request line", b"GET\t" + HOSTNAME.encode() + b"\tHTTP/1.1\r\n" + HOST + b"\r\n", _any())
    # §2.2: a recipient MAY take a bare LF as a line end, and SHOULD skip empty lines before a request
    yield _one("LF-only line ends", b"GET " + HOSTNAME.encode() + b" HTTP/1.1\nHost: 169.254.169.254\n\n", _any())
    yield _one("empty lines before the request line", b"\r\n\r\n" + request(HOSTNAME), _any())


def _host_attacks(victim: Guest) -> Iterable[Attack]:
    """RFC 9112 §3.2: an HTTP/1.1 request without Host, or with two, MUST be answered 400."""
    yield _one("HTTP/1.1 without Host", request(HOSTNAME, b""), _reject())
    yield _one("two Host headers", request(HOSTNAME, HOST + b"Host: evil\r\n"), _reject())
    yield _one("Host with a bare LF and X-Instance-ID", request(INSTANCE_ID, b"Host: a\nX-Instance-ID: " + victim.uuid.encode() + b"\r\n"),
               _any(INSTANCE_ID))


def _size_attacks(victim: Guest) -> Iterable[Attack]:
    """Heads around the 16 KiB bound."""
    yield _one("head just below 16 KiB (one long field)", request(HOSTNAME, HOST + b"X-Pad: " + b"a" * (MAX_HEAD - 512) + b"\r\n"), _ok())
    yield _one("head just above 16 KiB (one long field)", request(HOSTNAME, HOST + b"X-Pad: " + b"a" * (MAX_HEAD + 512) + b"\r\n"), _reject())
    yield _one("target just below 16 KiB", request(HOSTNAME + "?" + "a" * (MAX_HEAD - 512)), _any())
    # the head fits the guest's hop, but not once the next hop has added its own fields
    yield _one("head 100 bytes below 16 KiB", request(HOSTNAME + "?" + "a" * (MAX_HEAD - 100 - len(request(HOSTNAME + "?")))), _any())
    yield _one("target just above 16 KiB", request(HOSTNAME + "?" + "a" * (MAX_HEAD + 512)), _reject())
    yield _one("head above 16 KiB, never ended", request(HOSTNAME, HOST + b"X-Pad: " + b"a" * (MAX_HEAD + 512))[:-4], _reject(), complete=False)
    yield _one("1000 small fields", request(HOSTNAME, HOST + b"".join(b"X-%d: 1\r\n" % i for i in range(1000))), _any())


def _connection_attacks(victim: Guest) -> Iterable[Attack]:
    """Pipelined bursts, one-byte writes, half-closed connections."""
    paths = list(VICTIM_PATHS) * 3
    yield Attack("pipelined burst of 12", (b"".join(request(p) for p in paths),), tuple(Expect("ok", p) for p in paths))
    yield Attack("pipelined burst of 8 smuggling targets", (request(smuggled()) * 8,), tuple(Expect("reject") for _ in range(8)),
                 repeat=SMUGGLING_REPEAT)
    yield Attack("pipelined burst, a smuggling target in the middle",
                 (b"".join([request(p) for p in paths[:3]] + [request(smuggled(b"\t", b"\r"))] + [request(p) for p in paths[:3]]),),
                 tuple(Expect("ok", p) for p in paths[:3]) + (Expect("reject"),) + tuple(Expect("any", p) for p in paths[:3]))
    yield Attack("pipelined burst, Connection: close in the middle",
                 (request(HOSTNAME) + request(LEAK, HOST + b"Connection: close\r\n") + request(HOSTNAME),),
                 (Expect("ok", HOSTNAME), Expect("ok", LEAK)))
    whole = request(HOSTNAME)
    yield Attack("head in one-byte writes", tuple(whole[i:i + 1] for i in range(40)) + (whole[40:],), _ok())
    yield Attack("request, then half-close", (request(HOSTNAME),), _ok(), half_close=True)
    yield Attack("smuggling target, then half-close", (request(smuggled()),), _reject(), half_close=True)
    yield Attack("truncated head, then half-close", (request(HOSTNAME)[:-10],), _reject(), complete=False, half_close=True)
    yield Attack("truncated body, then half-close", (request("/openstack/latest/password", HOST + b"Content-Length: 100\r\n", b"POST", body=b"x"),),
                 _reject(), complete=False, half_close=True)


# ------------------------------------------------------------------------------------ judging

def foreign(body: bytes, guests: Iterable[Guest], own: Guest, sent: bytes = b"") -> list[Guest]:
    """The other guests whose markers are in C{body} (markers the requester itself sent excepted)."""
    return [g for g in guests if g is not own and any(m in body and m not in sent for m in g.markers)]


def own_answer(guest: Guest, path: str | None, answer: Answer) -> bool:
    """Whether a 200 C{answer} is C{guest}'s own answer to C{path} (any of its own if unknown)."""
    check = guest.expected(path) if path else None
    return check(answer.body) if check else True


@frozen
class Problem:
    """
    One thing wrong with an answer.  C{kind}: C{wrong-data} (another guest's data, or the answer
    to another request), C{status} (not in L{ALLOWED_STATUSES}), C{acceptance} (a malformed
    request answered 200, or a valid one refused), C{unanswered} (a hang, a silent close, an
    unreadable or an extra answer).
    """

    kind: str
    text: str
    owner: int | None = None
    """For C{wrong-data}: the index of the guest whose data it was, when another's."""

    def __str__(self) -> str:
        return self.text


def judge(attack: Attack, result: Exchange, attacker: Guest, guests: list[Guest]) -> list[Problem]:
    """Everything wrong with what the attacker got back (empty: all correct)."""
    problems = []
    if result.error:
        problems.append(Problem("unanswered", f"unreadable answer: {result.error}"))
    if result.hung:
        problems.append(Problem("unanswered", f"no answer in time ({len(result.answers)} of {len(attack.expect)} answered, "
                                              "connection still open)"))
    for i, answer in enumerate(result.answers):
        problems.extend(_judge_answer(i, attack.expect[i], answer, attack, attacker, guests))
    if result.extra:
        problems.append(Problem("unanswered", f"{result.extra} answer(s) more than the {len(attack.expect)} request(s) sent"))
    unanswered = len(attack.expect) - len(result.answers)
    if result.closed and unanswered and attack.complete and not any(a.status != 200 or a.closes for a in result.answers):
        problems.append(Problem("unanswered", f"connection closed with {unanswered} complete request(s) unanswered"))
    return problems


def _judge_answer(i: int, expect: Expect, answer: Answer, attack: Attack, attacker: Guest, guests: list[Guest]) -> list[Problem]:
    where = f"request {i + 1}" if len(attack.expect) > 1 else "answer"
    problems = []
    if answer.status not in ALLOWED_STATUSES:
        problems.append(Problem("status", f"{where}: status {answer.status} {answer.body[:80]!r}"))
    for other in foreign(answer.body, guests, attacker, attack.sent):
        problems.append(Problem("wrong-data", f"{where}: {answer.status} carries guest {other.index}'s data (cross-tenant read)",
                                other.index))
    if answer.status == 200:
        if expect.verdict == "reject":
            problems.append(Problem("acceptance", f"{where}: malformed request accepted (200)"))
        elif not own_answer(attacker, expect.path, answer):
            problems.append(Problem("wrong-data", f"{where}: 200 is not the answer to {expect.path} ({answer.body[:60]!r})"))
    elif expect.verdict == "ok":
        problems.append(Problem("acceptance", f"{where}: {answer.status} for a valid request ({answer.body[:80]!r})"))
    return problems


# ------------------------------------------------------------------------------------ the victim

@frozen
class VictimFailure:
    """One victim request that did not get exactly the victim's own answer (C{at}: when it was sent)."""

    at: float
    path: str
    what: str
    owner: int | None = None
    """The index of the guest whose data the victim got, when another's."""


class VictimLoop:
    """
    A guest booting over and over in a thread (L{VICTIM_PATHS} in turn), on one keep-alive
    connection or a new connection per request, checking every answer exactly.
    """

    def __init__(self, port: int, guest: Guest, guests: list[Guest], keep_alive: bool, timeout: float = 6.0, pause: float = 0.0) -> None:
        """@param pause: seconds between two requests (0: as fast as the chain answers)."""
        self.port = port
        self.guest = guest
        self.guests = guests
        self.keep_alive = keep_alive
        self.timeout = timeout
        self.pause = pause
        self.requests = 0
        self.failures: list[VictimFailure] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"victim-{'keepalive' if keep_alive else 'fresh'}", daemon=True)

    def start(self) -> VictimLoop:
        """Start booting."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop after the request in flight."""
        self._stop.set()
        self._thread.join(self.timeout + 5)

    def _run(self) -> None:
        sock = None
        while not self._stop.is_set():
            for path in VICTIM_PATHS:
                sock = self._one(path, sock)
                if self.pause:
                    time.sleep(self.pause)
        if sock is not None:
            sock.close()

    def _one(self, path: str, sock: socket.socket | None) -> socket.socket | None:
        """One request (on C{sock} if given); the socket to use next."""
        if self.keep_alive and sock is None:
            try:
                sock = connect(self.port, self.guest.address, self.timeout)
            except OSError as e:
                self.failures.append(VictimFailure(time.monotonic(), path, f"cannot connect: {e}"))
                time.sleep(0.05)
                return None
        started = time.monotonic()
        result = exchange(self.port, self.guest.address, [request(path)], 1, timeout=self.timeout, sock=sock)
        self.requests += 1
        failure = self.check(started, path, result)
        if failure is not None:
            self.failures.append(failure)
        return sock if self.keep_alive and not (result.closed or result.hung or result.error) else None

    def check(self, at: float, path: str, result: Exchange) -> VictimFailure | None:
        """What is wrong with the answer to C{path} sent at C{at}, or None when it is exactly the guest's own."""
        if not result.answers:
            return VictimFailure(at, path, result.error or ("no answer in time" if result.hung else "connection closed without an answer"))
        answer = result.answers[0]
        others = foreign(answer.body, self.guests, self.guest)
        if others:
            return VictimFailure(at, path, f"{answer.status} with guest {others[0].index}'s data: {answer.body[:70]!r}", others[0].index)
        if answer.status != 200:
            return VictimFailure(at, path, f"status {answer.status}: {answer.body[:70]!r}")
        if not own_answer(self.guest, path, answer):
            return VictimFailure(at, path, f"200 with its own data but not its {path}: {answer.body[:70]!r}")
        return None
