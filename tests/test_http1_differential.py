"""The library's worker answers every byte sequence as gunicorn's own gevent worker does.

The worker reads plain GET/HEAD requests itself (``django_sse/http1.py``) and
hands everything else to gunicorn. Nothing a client sends may be answered
differently: the same bytes go to ``-k gevent`` and to
``-k django_sse.worker.GeventWorker`` (the installed package, no config
file), and the sequences of answers (status, ``Connection``, framing, body)
must be equal. The corpus holds the findings of issue 21, heads around the
worker's 64 KiB read bound up to gunicorn's limits (whole and split), framing
headers on a GET, bad bytes in every place, odd targets, pipelining and the
limits at ±1; a hypothesis fuzzer then mutates it, with a fixed seed so the
verdict depends on the commit.

After sending, the client half-closes its side: each server answers what it
read and closes, so no case waits for a keep-alive timeout.
"""

from __future__ import annotations

import json
import os
import socket
import time
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.redis_helpers import get_stats

pytestmark = pytest.mark.integration

WORKER = "django_sse.worker.GeventWorker"
PAUSE = object()  # in a case's parts: wait long enough for the server to read what came before
FUZZ_EXAMPLES = int(os.environ.get("SSE_HTTP1_FUZZ_EXAMPLES", "300"))


@dataclass(frozen=True)
class Answer:
    """One response as a client sees it, without what differs by design (Date, Server, port)."""

    status: bytes
    connection: bytes
    framing: str
    body: object

    def __repr__(self) -> str:
        return (
            f"<{self.status.decode()} {self.connection.decode()} {self.framing} {self.body!r:.300}>"
        )


@pytest.fixture(scope="module")
def pair(module_servers):
    """``-k gevent`` and the library's worker, each serving the test project (memory broker)."""
    return (
        module_servers.site("", worker_class="gevent"),
        module_servers.site("", worker_class=WORKER),
    )


@pytest.fixture(scope="module")
def script_name_pair(module_servers):
    """The same two servers, with ``SCRIPT_NAME=/app`` in their environment."""
    env = {"SCRIPT_NAME": "/app"}
    return (
        module_servers.site("", worker_class="gevent", env=env),
        module_servers.site("", worker_class=WORKER, env=env),
    )


def exchange(port: int, parts: list) -> list[Answer]:
    """Send ``parts`` on one connection, half-close, and return the answers until the server closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=15) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            for part in parts:
                if part is PAUSE:
                    time.sleep(0.3)
                else:
                    sock.sendall(part)
                    time.sleep(0.01)
            sock.shutdown(socket.SHUT_WR)
        except OSError:  # EPIPE, ECONNRESET, ENOTCONN
            pass  # the server answered and closed before reading everything: compare the answers
        received = b""
        while True:
            try:
                data = sock.recv(262144)
            except ConnectionResetError:
                break
            if not data:
                break
            received += data
    return split_answers(received)


def split_answers(received: bytes) -> list[Answer]:
    """Split a byte stream of HTTP/1.1 responses (Content-Length, chunked or to the end)."""
    answers = []
    while received:
        head, found, rest = received.partition(b"\r\n\r\n")
        if not found:
            answers.append(Answer(b"unterminated", b"", "none", received))
            break
        lines = head.split(b"\r\n")
        status = lines[0].split(b" ", 2)[1] if lines[0].count(b" ") >= 1 else lines[0]
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            headers.setdefault(name.strip().lower(), value.strip())
        if status.startswith(b"1"):
            framing, body = "none", b""  # an interim answer (100 Continue): no body
        elif headers.get(b"transfer-encoding", b"").lower() == b"chunked":
            framing, body = "chunked", b""
            while True:
                size_line, _, rest = rest.partition(b"\r\n")
                size = int(size_line.split(b";")[0] or b"0", 16)
                body, rest = body + rest[:size], rest[size + 2 :]
                if size == 0:
                    break
        elif b"content-length" in headers:
            length = int(headers[b"content-length"])
            framing, body, rest = "length", rest[:length], rest[length:]
        else:
            framing, body, rest = "to-close", rest, b""
        answers.append(
            Answer(status, headers.get(b"connection", b"").lower(), framing, normalise(body))
        )
        received = rest
    return answers


def normalise(body: bytes) -> object:
    """Return ``body``, as JSON without the server's own address when it is /echo/'s answer."""
    try:
        data = json.loads(body)
    except ValueError:
        return body
    if isinstance(data, dict):
        data.pop("server", None)
    return data


def assert_same_answers(pair, parts: list) -> list[Answer]:
    plain, worker = pair
    expected = exchange(plain.port, parts)
    got = exchange(worker.port, parts)
    assert got == expected
    return got


# The corpus ----------------------------------------------------------------


def get(target: bytes = b"/echo/", *headers: bytes, version: bytes = b"HTTP/1.1") -> bytes:
    """Return a request head: the line, ``Host: a`` and ``headers``, each line ending in CRLF."""
    lines = [b"GET " + target + b" " + version, b"Host: a", *headers]
    return b"\r\n".join(lines) + b"\r\n\r\n"


def padded_head(size: int, target: bytes = b"/echo/?big=1") -> bytes:
    """Return a GET head of exactly ``size`` bytes: X-Pad-NN lines of 4,000 bytes, then X-Carrier."""
    head = b"GET " + target + b" HTTP/1.1\r\nHost: a\r\n"
    n = 0
    while size - len(head) - 4 > 4100:
        line = b"X-Pad-%02d: " % n
        head += line + b"b" * (4000 - len(line) - 2) + b"\r\n"
        n += 1
    carrier = b"X-Carrier: "
    head += carrier + b"c" * (size - len(head) - len(carrier) - 4) + b"\r\n\r\n"
    assert len(head) == size
    return head


def head_of_fields(count: int, size: int = 8000) -> bytes:
    """Return a GET head with ``count`` X-F-N fields of ``size`` bytes each."""
    fields = []
    for n in range(count):
        name = b"X-F-%d: " % n
        fields.append(name + b"v" * (size - len(name)))
    return get(b"/echo/?fields=1", *fields)


SMUGGLED = (
    b"GET /echo/?smuggled=1 HTTP/1.1\r\nHost: internal.example\r\n"
    b"X-Forwarded-Proto: https\r\nConnection: close\r\n\r\n"
)
FIELD_LIMIT = 8190  # gunicorn's limit_request_field_size, CRLF included
LINE_LIMIT = 4094  # gunicorn's limit_request_line, CRLF excluded


def _field(total: int) -> bytes:
    """A header line of ``total`` bytes with its CRLF (gunicorn counts the CRLF)."""
    name = b"X-Long: "
    return name + b"l" * (total - len(name) - 2)


def _target(total: int) -> bytes:
    """A request target that makes the request line ``total`` bytes long."""
    return b"/echo/?t=" + b"t" * (total - len(b"GET  HTTP/1.1") - len(b"/echo/?t="))


CORPUS: dict[str, list] = {
    "plain": [get(b"/echo/?a=1&b=%C3%A9")],
    "head": [get(b"/echo/").replace(b"GET", b"HEAD", 1)],
    # Finding 1: a head past 64 KiB, its end sent after a pause, carrying a second request.
    # The first part is 65,537 bytes of head, unfinished: X-Carrier's value goes on with
    # what looks like a request line.
    "smuggling-65537-then-pause": [padded_head(65537 + 4)[:-4], PAUSE, SMUGGLED],
    "smuggling-73728-one-burst": [padded_head(73728)[:-4] + b"\r\n" + SMUGGLED],
    "big-cookie-70k": [get(b"/echo/", *[b"Cookie: k%d=%s" % (n, b"c" * 7000) for n in range(10)])],
    # Heads around the 64 KiB bound, whole and split, and up to gunicorn's own limits.
    **{f"head-{size}": [padded_head(size)] for size in (65535, 65536, 65537, 65538)},
    **{
        f"head-65537-split-at-{cut}": [padded_head(65537)[:cut], padded_head(65537)[cut:]]
        for cut in (1, 17, 4096, 8192, 65536 - 2, 65536, 65536 + 1, 65537 - 3, 65537 - 1)
    },
    "head-200k": [padded_head(200_000)],
    "fields-100-at-8000": [head_of_fields(99)],  # with Host: 100 fields
    "fields-101-at-8000": [head_of_fields(100)],  # 101 fields: gunicorn's 431
    "fields-100-at-8185": [head_of_fields(99, FIELD_LIMIT - 2)],  # ~800 KiB, all within limits
    # Lines at the limits, ±1.
    **{f"field-line-{n}": [get(b"/echo/", _field(n))] for n in (8188, 8189, 8190, 8191, 8192)},
    **{f"request-line-{n}": [get(_target(n))] for n in (4093, 4094, 4095)},
    # Framing headers on a GET.
    "get-content-length": [get(b"/echo/", b"Content-Length: 2") + b"hi"],
    "get-content-length-zero": [get(b"/echo/", b"Content-Length: 0")],
    "get-two-content-lengths": [get(b"/echo/", b"Content-Length: 2", b"Content-Length: 2") + b"hi"],
    "get-conflicting-lengths": [
        get(b"/echo/", b"Content-Length: 2", b"Content-Length: 3") + b"hi!"
    ],
    "get-chunked": [get(b"/echo/", b"Transfer-Encoding: chunked") + b"2\r\nhi\r\n0\r\n\r\n"],
    "get-te-and-cl": [
        get(b"/echo/", b"Transfer-Encoding: chunked", b"Content-Length: 7") + b"0\r\n\r\n"
    ],
    "get-te-gzip": [get(b"/echo/", b"Transfer-Encoding: gzip")],
    "get-te-header": [get(b"/echo/", b"TE: trailers")],
    # Line folding, bare CR and LF, controls in names and values, space before the colon.
    "obs-fold": [get(b"/echo/", b"X-A: one", b" two")],
    "obs-fold-tab": [get(b"/echo/", b"X-A: one", b"\ttwo")],
    "bare-lf-head": [b"GET /echo/ HTTP/1.1\nHost: a\n\n"],
    "bare-lf-in-head": [b"GET /echo/ HTTP/1.1\r\nHost: a\nX-A: 1\r\n\r\n"],
    "bare-cr-in-value": [get(b"/echo/", b"X-A: a\rb")],
    "bare-cr-head-end": [b"GET /echo/ HTTP/1.1\r\nHost: a\r\r\n\r\n"],
    **{
        f"{where}-{name}": [get(b"/echo/", header)]
        for name, byte in (("nul", b"\x00"), ("del", b"\x7f"), ("vt", b"\x0b"), ("ff", b"\x0c"))
        for where, header in (("value", b"X-A: a" + byte + b"b"), ("name", b"X-" + byte + b"A: 1"))
    },
    "obs-text-value": [get(b"/echo/", b"X-A: caf\xe9")],
    "space-before-colon": [get(b"/echo/", b"X-A : 1")],
    "tab-before-colon": [get(b"/echo/", b"X-A\t: 1")],
    "underscore-name": [get(b"/echo/", b"X_Custom: spoof")],
    "empty-name": [get(b"/echo/", b": value")],
    "no-colon": [get(b"/echo/", b"X-A 1")],
    "duplicate-host": [get(b"/echo/", b"Host: b")],
    "no-host": [b"GET /echo/ HTTP/1.1\r\n\r\n"],
    "repeated-field": [get(b"/echo/", b"X-Tag: one", b"X-Tag: two")],
    "lower-case-method": [b"get /echo/ HTTP/1.1\r\nHost: a\r\n\r\n"],
    "leading-crlf": [b"\r\n" + get(b"/echo/")],
    "two-leading-crlf": [b"\r\n\r\n" + get(b"/echo/")],
    # Targets.
    "absolute-form": [get(b"http://a/echo/")],
    "asterisk": [get(b"*")],
    "double-slash": [get(b"//echo/")],
    "double-slash-host-like": [get(b"//evil.example/echo/")],
    "fragment": [get(b"/echo/#frag")],
    "percent-encoded": [get(b"/echo/%7Euser/?q=%20")],
    "double-space": [b"GET  /echo/ HTTP/1.1\r\nHost: a\r\n\r\n"],
    "http-2-version": [get(b"/echo/", version=b"HTTP/2.0")],
    "http-1-2-version": [get(b"/echo/", version=b"HTTP/1.2")],
    # HTTP/1.0, with and without keep-alive; Connection values.
    "http-1.0": [get(b"/echo/", version=b"HTTP/1.0")],
    "http-1.0-keep-alive": [get(b"/echo/", b"Connection: keep-alive", version=b"HTTP/1.0") * 2],
    "connection-close": [get(b"/echo/", b"Connection: close") + get(b"/echo/?after=1")],
    "connection-keep-alive-twice": [get(b"/echo/", b"Connection: keep-alive") * 2],
    "connection-list": [get(b"/echo/", b"Connection: close, te") + get(b"/echo/?after=1")],
    "connection-upgrade": [get(b"/echo/", b"Connection: Upgrade", b"Upgrade: websocket")],
    "two-connection-headers": [
        get(b"/echo/", b"Connection: keep-alive", b"Connection: close") + get(b"/echo/?n=2")
    ],
    # Expectations and upgrades.
    "expect-continue": [get(b"/echo/", b"Expect: 100-continue")],
    "expect-other": [get(b"/echo/", b"Expect: something")],
    "upgrade-h2c": [get(b"/echo/", b"Connection: Upgrade, HTTP2-Settings", b"Upgrade: h2c")],
    # Pipelining after a GET, and trusted-proxy headers from 127.0.0.1.
    "pipelined": [
        get(b"/echo/?n=1")
        + b"POST /echo/?n=2 HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nhi"
        + get(b"/echo/?n=3")
        + get(b"/echo/?n=4", b"X-Forwarded-Proto: https")
    ],
    "pipelined-then-garbage": [get(b"/echo/?n=1") + b"\x00\x01garbage\r\n\r\n"],
    "pipelined-then-partial": [get(b"/echo/?n=1") + b"GET /echo/?n=2 HTTP/1.1\r\nHost: a\r\n"],
    "forwarded-proto": [get(b"/echo/", b"X-Forwarded-Proto: https")],
    "script-name-header": [get(b"/echo/", b"SCRIPT-NAME: /x")],
    "partial-head-then-close": [b"GET /echo/ HTTP/1.1\r\nHost: a\r\n"],
    "empty": [b""],
    # Responses: more than Content-Length, control characters in a header value.
    "overlong-response": [get(b"/overlong/") + get(b"/echo/?n=2")],
    **{
        f"response-header-{name}": [get(b"/header-from-query/?value=a" + byte + b"b")]
        for name, byte in (("nul", b"%00"), ("vt", b"%0B"), ("tab", b"%09"), ("del", b"%7F"))
    },
}

# Every plain case split at each offset of its first 40 bytes and its last 4.
_plain = get(b"/echo/?split=1", b"Accept: text/event-stream", b"Last-Event-ID: 5")
for _cut in [*range(1, 40, 3), *range(len(_plain) - 4, len(_plain))]:
    CORPUS[f"plain-split-at-{_cut}"] = [_plain[:_cut], _plain[_cut:]]


@pytest.mark.parametrize("name", CORPUS)
def test_the_worker_answers_as_gunicorn_does(pair, name):
    """Status, Connection, framing and body of every answer, in order, as under -k gevent."""
    assert_same_answers(pair, CORPUS[name])


def test_the_corpus_reaches_the_short_path(pair):
    """The cases above did not all go to gunicorn: a plain GET is the worker's own."""
    before = get_stats(pair[1].port)["short_path_requests"]
    answers = assert_same_answers(pair, CORPUS["plain"])

    assert [answer.status for answer in answers] == [b"200"]
    assert get_stats(pair[1].port)["short_path_requests"] == before + 2  # with the first /stats/


def test_a_head_past_64_kib_is_one_request_not_two(pair):
    """Finding 1: the smuggled request is never answered; the client gets one answer."""
    answers = assert_same_answers(pair, CORPUS["smuggling-65537-then-pause"])

    assert [answer.status for answer in answers] == [b"400"]  # a line without a colon


def test_a_response_never_carries_more_than_its_content_length(pair):
    """Finding 2: five bytes of "hello...", then the next answer, nothing smuggled between."""
    answers = assert_same_answers(pair, CORPUS["overlong-response"])

    assert answers[0].body == b"hello"
    assert [answer.status for answer in answers] == [b"200", b"200"]


def test_response_header_values_with_control_characters_are_refused(pair):
    """Finding 4: NUL or VT in a response header gives gunicorn's 500, never the header."""
    for name in ("nul", "vt"):
        answers = assert_same_answers(pair, CORPUS[f"response-header-{name}"])
        assert [answer.status for answer in answers] == [b"500"]


def test_a_bare_lf_head_is_answered_at_once(pair):
    """Finding 4: 400, not silence until the keep-alive timeout (the socket is still open)."""
    plain, worker = pair
    for server in pair:
        with socket.create_connection(("127.0.0.1", server.port), timeout=15) as sock:
            sock.sendall(b"GET /echo/ HTTP/1.1\nHost: a\n\n")
            assert sock.recv(100).startswith(b"HTTP/1.1 400 ")


@pytest.mark.parametrize(
    "target", [b"/app/echo/", b"/app/echo/?a=1", b"/echo/", b"/application/echo/", b"/app"]
)
def test_script_name_from_the_environment_is_honoured(script_name_pair, target):
    """Finding 3: with SCRIPT_NAME=/app, /app/echo/ is served and /echo/ is refused, as by gunicorn."""
    answers = assert_same_answers(script_name_pair, [get(target)])
    if target.startswith(b"/app/"):
        assert answers[0].status == b"200"


# The fuzzer ----------------------------------------------------------------

_SEEDS = [
    case[0]
    for name, case in CORPUS.items()
    if len(case) == 1 and isinstance(case[0], bytes) and len(case[0]) < 2048
]
_BYTES = b"\r\n\x00\x0b\x7f \t:_aZ/?#%\x80\xff-,;"


@st.composite
def mutated(draw) -> bytes:
    data = bytearray(draw(st.sampled_from(_SEEDS)))
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(data)))
        kind = draw(st.sampled_from(["insert", "replace", "delete", "repeat"]))
        byte = draw(st.sampled_from(_BYTES))
        if kind == "insert":
            data[at:at] = bytes([byte])
        elif kind == "replace" and at < len(data):
            data[at] = byte
        elif kind == "delete" and at < len(data):
            del data[at]
        elif kind == "repeat":
            data[at:at] = data[max(0, at - 20) : at]
    return bytes(data)


@settings(
    max_examples=FUZZ_EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=mutated(), cut=st.integers(0, 64))
def test_fuzzed_requests_are_answered_as_gunicorn_does(pair, data, cut):
    """Mutations of the corpus (a fixed seed, SSE_HTTP1_FUZZ_EXAMPLES cases), sent whole or split."""
    parts = [data[:cut], data[cut:]] if 0 < cut < len(data) else [data]
    assert_same_answers(pair, parts)
