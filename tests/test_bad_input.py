"""The bad-input suite: hostile Last-Event-IDs, malformed requests, injection attempts, a fuzz run.

Requests go over raw sockets to a real gunicorn gevent worker, and to
uvicorn (``server_kind``), on Redis, so what the server itself refuses (huge
headers, bytes no HTTP allows) is seen as a client would see it.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.parse
from collections import Counter

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

import django_sse
from django_sse.core.positions import channel_tag
from django_sse.exceptions import InvalidChannel
from tests.support.redis_helpers import get_stats, open_live
from tests.support.servers import REPO_TOP, HttpServer, RedisServer
from tests.support.sse import SseClient

A, B, C = "bad-a", "bad-b", "bad-c"
MULTI = f"/multi/?channel={A}&channel={B}"


class Site:
    """A server (gunicorn or uvicorn) on its own Redis, with events on A, B and C and a stream keeping all three subscribed."""

    def __init__(self, server: HttpServer, redis: RedisServer) -> None:
        self.server = server
        self.redis = redis
        self.port = server.port
        self.ids: dict[str, list[str]] = {}


@pytest.fixture(scope="module")
def site(module_servers, server_kind):
    redis = module_servers.redis()
    server = module_servers.site(redis.url, heartbeat="1", kind=server_kind)
    # Subscribed channels make a new stream catch up as soon as it opens.
    keeper = open_live(server.port, f"/multi/?channel={A}&channel={B}&channel={C}")
    yield Site(server, redis)
    keeper.close()


@pytest.fixture
def publish(site, settings):
    """``send_event`` to the site's Redis, with five events on each of A, B and C recorded."""
    settings.SSE_REDIS_URL = site.redis.url
    if not site.ids:
        for channel in (A, B, C):
            site.ids[channel] = [
                django_sse.send_event(channel, f"{channel}:{n}", channel=channel) for n in range(5)
            ]
    return django_sse.send_event


def _raw(port: int, request: bytes, timeout: float = 10) -> bytes:
    """Send ``request`` as is and return everything up to the connection's close (or 64 KB)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(request)
        data = b""
        deadline = time.monotonic() + timeout
        while len(data) < 65536 and time.monotonic() < deadline:
            try:
                piece = sock.recv(65536)
            except TimeoutError:
                break
            if not piece:
                break
            data += piece
            if b"\r\n\r\n" in data and _complete(data):
                break
    return data


def _complete(data: bytes) -> bool:
    head, _, body = data.partition(b"\r\n\r\n")
    match = re.search(rb"(?i)\r\ncontent-length: *(\d+)", head)
    if match:
        return len(body) >= int(match.group(1))
    return b"text/event-stream" in head and len(body) > 0 or head.startswith(b"HEAD")


def _status(response: bytes) -> int:
    return int(response.split(b" ", 2)[1])


def _body(response: bytes) -> bytes:
    return response.partition(b"\r\n\r\n")[2]


def _get(path: bytes, headers: bytes = b"", method: bytes = b"GET") -> bytes:
    return (
        method
        + b" "
        + path
        + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n"
        + headers
        + b"Connection: close\r\n\r\n"
    )


# --- any Last-Event-ID -----------------------------------------------------------------

_TAGS = [channel_tag(A), channel_tag(B), channel_tag(C), "000000", "ffffff"]
_POSITIONS = st.one_of(
    st.just("0-0"),
    st.just(f"{2**64 - 1}-{2**64 - 1}"),
    st.just(f"{2**64}-0"),
    st.from_regex(r"[0-9]{1,21}-[0-9]{1,21}", fullmatch=True),
    st.text(max_size=12),
)
_PARTS = st.tuples(st.one_of(st.sampled_from(_TAGS), st.text(max_size=8)), _POSITIONS).map(
    lambda part: f"{part[0]}:{part[1]}"
)


def _until_a_marker(client: SseClient, publish, marker: str) -> list:
    """Publish markers on A until one arrives; return the events up to it.

    The first marker may be published while the stream still catches up:
    after a ``stream-reset`` it starts at the channel's newest event, which
    may be that marker. One published half a second later arrives live.
    """
    for attempt in range(20):
        publish("marker", f"{marker}.{attempt}", channel=A)
        try:
            return client.read_until(lambda event: event.data.startswith(marker), timeout=0.5)
        except TimeoutError:
            continue
    raise AssertionError(f"No marker arrived: {client.body[-500:]!r}")


@pytest.mark.integration
def test_any_bytes_as_last_event_id_never_500_and_never_replay_another_channels_events(
    site, publish
):
    """Hypothesis: arbitrary or crafted ids (header or ?lastEventId=) on an A+B stream: no 500, never a C event."""
    tried: Counter = Counter()
    statuses: Counter = Counter()
    ids = {channel: site.ids[channel] for channel in (A, B, C)}

    # Real ids of every channel, under every channel's tag: C's positions named as A's
    # must not read C's history.
    real_parts = st.tuples(st.sampled_from(_TAGS), st.sampled_from(sum(ids.values(), []))).map(
        lambda part: f"{part[0]}:{part[1]}"
    )
    crafted = st.lists(st.one_of(_PARTS, real_parts), max_size=5).map(",".join)
    values = st.one_of(
        st.binary(max_size=120).map(lambda value: ("binary", value)),
        crafted.map(lambda text: ("crafted", text.encode("utf-8", "surrogatepass"))),
        st.sampled_from(sum(ids.values(), [])).map(lambda text: ("single id", text.encode())),
    )

    @hypothesis_settings(
        max_examples=150,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )
    @given(value=values, where=st.sampled_from(["header", "query"]))
    def check(value, where):
        kind, raw = value
        tried[f"{kind} in the {where}"] += 1
        if where == "header":
            # CR and LF would end the header: no client can send them inside one.
            raw = raw.replace(b"\r", b"").replace(b"\n", b"")
            path, headers = MULTI, {"Last-Event-ID": raw.decode("latin-1")}
        else:
            path, headers = f"{MULTI}&lastEventId={urllib.parse.quote_from_bytes(raw)}", {}
        client = SseClient.connect(site.port, path, headers=headers)
        try:
            statuses[client.status] += 1
            assert client.status < 500, client.body
            if client.status != 200:
                assert client.status == 400, client.body  # gunicorn: no HTTP header allows it
                return
            client.read_bytes_until(lambda body: body.startswith(b"retry: 2000\n\n:\n\n"))
            events = _until_a_marker(client, publish, f"marker {sum(tried.values())}")
        finally:
            client.close()
        for event in events:
            assert event.type != C and not event.data.startswith(C), (raw, events)
            if event.type in (A, B):
                assert event.data.startswith(event.type + ":"), (raw, events)
        for channel in (A, B):
            numbers = [int(e.data.split(":")[1]) for e in events if e.type == channel]
            assert numbers == sorted(set(numbers)), (raw, channel, numbers)

    check()

    print(
        f"Last-Event-ID values tried: {sum(tried.values())} ({dict(tried)}); statuses {dict(statuses)}"
    )
    assert get_stats(site.port)["streams"] >= 1  # the worker still serves (the keeper stream)


@pytest.mark.integration
@pytest.mark.parametrize(
    "path, last_event_id, reset",
    [
        (f"/events/{A}/", "18446744073709551615-18446744073709551615", [A]),
        (MULTI, f"{channel_tag(A)}:18446744073709551615-18446744073709551615", [A, B]),
        (MULTI, f"{channel_tag(A)}:18446744073709551615-0,{channel_tag(B)}:0-0", [A]),
    ],
    ids=["one channel", "two channels", "past the end"],
)
def test_a_last_event_id_at_or_past_the_largest_stream_id_gets_stream_reset_then_live_events(
    site, publish, path, last_event_id, reset
):
    """Positions no stream can have reached: stream-reset for the channels concerned, then live events."""
    client = SseClient.connect(site.port, path, headers={"Last-Event-ID": last_event_id})
    try:
        [event] = client.read_events(1, timeout=10)
        events = _until_a_marker(client, publish, "after the reset")
    finally:
        client.close()

    assert event.type == "stream-reset"
    assert sorted(json.loads(event.data)["channels"]) == sorted(reset)
    replayed = {e.type for e in events[:-1]} - {"marker"}
    assert replayed == ({B} if reset == [A] and path == MULTI else set())  # B from 0-0: all of it
    assert events[-1].data.startswith("after the reset")


# --- malformed requests ------------------------------------------------------------------


@pytest.mark.integration
@pytest.mark.parametrize(
    "request_bytes, status, reason, uvicorn",
    [
        (
            _get(MULTI.encode(), b"X-Huge: " + b"a" * 100_000 + b"\r\n"),
            431,
            b"Request Header Fields Too Large",
            (200, b"retry: 2000"),
        ),
        (
            _get(MULTI.encode(), b"".join(b"X-H%d: 1\r\n" % n for n in range(200))),
            431,
            b"Request Header Fields Too Large",
            (200, b"retry: 2000"),
        ),
        (_get(b"/multi/?" + b"channel=a&" * 600), 414, b"URI Too Long", (200, b"retry: 2000")),
        (
            _get(b"/multi/?" + b"&".join(b"channel=c%d" % n for n in range(21))),
            400,
            b"SSE_MAX_CHANNELS allows 20",
            None,
        ),
        (_get(b"/multi/?channel=%ff%fe"), 400, b"not valid UTF-8", None),
        (_get(b"/multi/?channel=a%C3"), 400, b"not valid UTF-8", None),
        (
            _get(b"/multi/?channel=\xff\xfe"),
            400,
            b"Invalid HTTP request line",
            (400, b"Invalid HTTP request received."),
        ),
        (
            _get(MULTI.encode(), b"Last-Event-ID: 1-0\x00x\r\n"),
            400,
            b"Invalid HTTP Header",
            (400, b"Invalid HTTP request received."),
        ),
        (_get(b"/multi/"), 400, b"names no channel", None),
        (_get(b"/multi/?channel="), 400, b"must not be empty", None),
        (_get(b"/multi/?channel=" + b"x" * 201), 400, b"SSE_MAX_CHANNEL_LENGTH allows 200", None),
    ],
    ids=[
        "100 KB header",
        "200 headers",
        "600 channel parameters",
        "21 channels",
        "percent-encoded invalid UTF-8",
        "truncated UTF-8",
        "raw non-ASCII bytes",
        "NUL in Last-Event-ID",
        "no channel",
        "empty channel",
        "201-character channel",
    ],
)
def test_a_malformed_request_gets_the_right_4xx_and_a_short_reason(
    site, server_kind, request_bytes, status, reason, uvicorn
):
    """Each malformed request: its 4xx, a reason under 300 bytes, and no stream left open.

    What the server's own HTTP parser refuses differs: uvicorn has no limit on
    the size or number of headers nor on the URL (a stream opens), and says
    "Invalid HTTP request received." to the bytes no HTTP allows (``uvicorn``).
    """
    if server_kind == "uvicorn" and uvicorn is not None:
        status, reason = uvicorn
    response = _raw(site.port, request_bytes)

    assert _status(response) == status, response[:500]
    assert reason in response
    assert len(_body(response)) < 300
    assert get_stats(site.port)["streams"] == 1  # only the keeper


@pytest.mark.integration
def test_many_repeats_of_one_channel_are_one_channel(site):
    """150 ``channel=bad-a`` parameters name one channel: the stream opens (the limit counts distinct names)."""
    response = _raw(site.port, _get(b"/multi/?" + b"&".join([b"channel=" + A.encode()] * 150)))

    assert _status(response) == 200
    assert _body(response).startswith(b"10\r\nretry: 2000\n\n:\n\n")


@pytest.mark.integration
@pytest.mark.parametrize("method", [b"POST", b"PUT", b"PATCH", b"DELETE", b"TRACE", b"PROPFIND"])
def test_methods_other_than_get_head_options_get_405_with_allow(site, method):
    """Other methods: 405 Method Not Allowed (the reason phrase), Allow: GET, HEAD, OPTIONS, no stream."""
    response = _raw(site.port, _get(MULTI.encode(), b"Content-Length: 0\r\n", method=method))

    assert response.startswith(b"HTTP/1.1 405 Method Not Allowed\r\n"), response[:300]
    assert b"\r\nallow: get, head, options\r\n" in response.lower()  # uvicorn sends it lowercase
    assert len(_body(response)) < 300
    assert get_stats(site.port)["streams"] == 1


@pytest.mark.integration
@pytest.mark.parametrize(
    "path, status",
    [
        (MULTI, 200),
        ("/multi/?" + "&".join(f"channel=c{n}" for n in range(21)), 400),
        ("/multi/?channel=%ff", 400),
    ],
)
def test_head_answers_the_stream_headers_or_the_refusal_and_opens_no_stream(site, path, status):
    """HEAD: the event-stream headers without a body, or the refusal GET would get; never a stream."""
    response = _raw(site.port, _get(path.encode(), method=b"HEAD"))

    assert _status(response) == status
    if status == 200:
        assert b"content-type: text/event-stream" in response.lower()
        assert response.endswith(b"\r\n\r\n")
    assert get_stats(site.port)["streams"] == 1


# --- injection ---------------------------------------------------------------------------


@pytest.mark.integration
@pytest.mark.parametrize(
    "event, channel, error",
    [
        ("x\ndata: forged", A, ValueError),
        ("x\rdata: forged", A, ValueError),
        ("x\r\n\r\ndata: forged", A, ValueError),
        ("ok", "foo\r\nFLUSHALL\r\n", InvalidChannel),
        ("ok", "*1\r\n$8\r\nFLUSHALL", InvalidChannel),
        ("ok", "foo FLUSHALL", InvalidChannel),
        ("ok", "foo\x00FLUSHALL", InvalidChannel),
        ("ok", "foo\u2028data: forged", InvalidChannel),
    ],
)
def test_names_and_channels_crafted_to_inject_are_refused_before_publishing(
    site, publish, event, channel, error
):
    """Event names with CR/LF and channels with CR, LF, spaces or NUL raise; Redis keeps its data."""
    with site.redis.client() as admin:
        keys_before = admin.dbsize()
        with pytest.raises(error):
            publish(event, "data", channel=channel)
        assert admin.dbsize() == keys_before
        assert admin.xlen(f"sse:{A}") >= 5


@pytest.mark.integration
def test_data_event_names_and_channels_that_look_like_sse_or_resp_arrive_harmlessly(site, publish):
    """Forged fields in data, ``:`` in names, RESP in channel names: each one event, exactly as sent."""
    channel = (
        "*1$8FLUSHALL:sse:bad-a"  # RESP-looking, yet a valid channel: length-prefixed on the wire
    )
    cases = [
        ("data: forged", "plain"),
        ("event", "x\n\ndata: forged\nevent: forged\nid: 1-0\nretry: 1\n\n"),
        ("e", "line1\r\nline2\rline3"),
        ("resp", "*1\r\n$8\r\nFLUSHALL\r\n"),
        ("id: 999-0", ": comment\n:\n"),
    ]
    client = open_live(site.port, f"/events/{urllib.parse.quote(channel)}/")
    try:
        for event, data in cases:
            publish(event, data, channel=channel)
        events = client.read_events(len(cases), timeout=10)
        publish("after", "still here", channel=channel)
        [after] = client.read_events(1, timeout=10)
    finally:
        client.close()
    with site.redis.client() as admin:
        length = admin.xlen(f"sse:{channel}")
        others = admin.xlen(f"sse:{A}")

    expected = [(event, data.replace("\r\n", "\n").replace("\r", "\n")) for event, data in cases]
    assert [(e.type, e.data) for e in events] == expected
    assert client.parser.retry == 2000  # "retry: 1" stayed inside the data
    assert all(re.fullmatch(r"\d+-\d+", e.last_event_id) for e in events)  # no forged "id:"
    assert after.data == "still here"
    assert length == len(cases) + 1 and others >= 5


@pytest.mark.integration
@pytest.mark.parametrize(
    "path",
    [
        "/events/foo%0D%0AFLUSHALL%0D%0A/",
        "/multi/?channel=*1%0D%0A%248%0D%0AFLUSHALL",
        "/multi/?channel=a%0Adata:%20forged",
    ],
)
def test_channels_crafted_in_the_url_get_400_and_redis_keeps_its_data(site, publish, path):
    """CR/LF in a channel from the URL: 400 naming the character; Redis is untouched."""
    with site.redis.client() as admin:
        keys_before = admin.dbsize()
        response = _raw(site.port, _get(path.encode()))
        keys_after = admin.dbsize()

    assert _status(response) == 400
    assert b"contains whitespace or a control character" in response
    assert keys_after == keys_before > 0


@pytest.mark.integration
@pytest.mark.parametrize(
    "query",
    ["lastEventId=%0D%0AFLUSHALL%0D%0A", "lastEventId=1-0%0Adata:%20forged", "lastEventId=%00"],
)
def test_a_last_event_id_crafted_to_inject_is_ignored(site, publish, query):
    """A ?lastEventId= with CR, LF or NUL is ignored: no forged line, no replay, Redis intact."""
    client = SseClient.connect(site.port, f"{MULTI}&{query}")
    try:
        body = client.read_bytes_until(lambda b: b"id: " in b)
    finally:
        client.close()
    with site.redis.client() as admin:
        length = admin.xlen(f"sse:{A}")

    assert client.status == 200
    assert b"forged" not in body and b"FLUSHALL" not in body
    # Ignored: at most a stream-reset (a position the client had is lost), never a replay.
    assert {e.type for e in client.events} <= {"stream-reset"}
    assert length >= 5


# --- a coverage-guided fuzz run --------------------------------------------------------


FUZZ_RUNS = 200_000
FUZZ_SEED = 22  # a fixed seed: the same inputs on every machine, however fast


def test_the_last_event_id_decoder_survives_a_coverage_guided_fuzz_run(tmp_path):
    """atheris runs tests/fuzz_positions.py on 200,000 inputs: no exception, no broken property."""
    result = subprocess.run(
        [
            sys.executable,
            str(REPO_TOP / "tests" / "fuzz_positions.py"),
            f"-runs={FUZZ_RUNS}",
            f"-seed={FUZZ_SEED}",
            "-rss_limit_mb=2048",
            f"-artifact_prefix={tmp_path}/",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO_TOP,
        env={**os.environ, "PYTHONPATH": str(REPO_TOP)},
    )
    runs = re.search(r"Done (\d+) runs", result.stderr)

    print(f"atheris: {runs.group(1) if runs else '?'} inputs tried on decode_positions")
    assert result.returncode == 0, result.stderr[-3000:]
    assert runs and int(runs.group(1)) == FUZZ_RUNS  # all of them ran
