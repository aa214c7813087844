"""Tests of ``BaseSseView`` through Django's test client, with the test project's middleware.

tests/settings.py turns on GZipMiddleware, ConditionalGetMiddleware and
CommonMiddleware, so every stream here passes through them. No gevent here:
the view runs ``iterator()`` in a thread, and the tests read the response
chunk by chunk, each read bounded by a timeout. What only a real server can
show (flushing on the wire, disconnects) is in test_streaming.py.
"""

from __future__ import annotations

import json
import logging
import threading

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import request_finished
from django.db import close_old_connections
from django.test import Client, RequestFactory, override_settings
from django.urls import path

from django_sse.core.mailbox import EndReason
from django_sse.core.runtime import streams
from django_sse.eventstream import parse
from django_sse.servers import detect as server
from django_sse.views import BaseSseView
from tests import views as project_views

pytestmark = pytest.mark.urls(__name__)

OPENING = b"retry: 2000\n\n:\n\n"  # the default SSE_RETRY, then an empty comment
HEARTBEAT = b":\n\n"
WAIT = 5.0  # seconds any awaited chunk may take


# --- views of this module ----------------------------------------------------


class Probe:
    """What the gated view did; ``gate`` releases its first event, ``release`` its end."""

    def __init__(self) -> None:
        self.started = threading.Event()
        self.gate = threading.Event()
        self.release = threading.Event()
        self.finished = threading.Event()

    def open_all(self) -> None:
        self.gate.set()
        self.release.set()


probe = Probe()


class GatedView(BaseSseView):
    """Send one event once ``probe.gate`` opens, then block until ``probe.release``."""

    def iterator(self):
        state = probe
        state.started.set()
        try:
            if not state.gate.wait(10):
                return
            self.sse.add_message("first", "after the gate")
            yield
            state.release.wait(10)
        finally:
            state.finished.set()


class EchoLastEventIdView(BaseSseView):
    """Send ``self.last_event_id`` as JSON in one event, then end."""

    def iterator(self):
        self.sse.add_message("last-event-id", {"value": self.last_event_id})
        yield


class RetryView(EchoLastEventIdView):
    retry = 5000


class NoIteratorView(BaseSseView):
    """Forgets to implement ``iterator()``."""


urlpatterns = [
    path("gated/", GatedView.as_view()),
    path("gated-fast-heartbeat/", GatedView.as_view(heartbeat_interval=0.1)),
    path("echo/", EchoLastEventIdView.as_view()),
    path("retry/", RetryView.as_view()),
    path("no-iterator/", NoIteratorView.as_view()),
    path("ticks/", project_views.TickView.as_view()),
    path("plain/", project_views.plain),
]


@pytest.fixture(autouse=True)
def database_open_to_closing_responses(django_db_blocker):
    """Let ``request_finished`` check the test database's open connection, as in any request.

    These tests touch no database, but a response closed while another thread
    of the test client reconnects ``close_old_connections`` runs it; after an
    earlier database test left pytest-django's in-memory connection open, that
    check would be refused. (The in-memory database is never closed by it.)
    """
    with django_db_blocker.unblock():
        yield


@pytest.fixture(autouse=True)
def fresh_probe():
    """A new probe per test; its gates are opened at the end so no thread stays blocked."""
    global probe
    probe = Probe()
    yield probe
    probe.open_all()


# --- helpers -----------------------------------------------------------------


class ChunkReader:
    """Read a streaming response one chunk at a time, each read bounded by a timeout."""

    def __init__(self, response) -> None:
        self.response = response
        self._chunks = iter(response.streaming_content)

    def next(self, timeout: float = WAIT) -> bytes | None:
        """Return the next chunk, None at the end; fail if nothing comes within ``timeout`` s."""
        outcome: list = []

        def read() -> None:
            try:
                outcome.append(("chunk", next(self._chunks, None)))
            except BaseException as exc:  # handed to the test's thread below
                outcome.append(("error", exc))

        thread = threading.Thread(target=read, daemon=True)
        thread.start()
        thread.join(timeout)
        if not outcome:
            raise AssertionError(f"No chunk within {timeout} s.")
        kind, value = outcome[0]
        if kind == "error":
            raise value
        return value

    def rest(self, timeout: float = WAIT) -> list[bytes]:
        """Return the remaining chunks once the response ends."""
        chunks = []
        for _ in range(1000):
            chunk = self.next(timeout)
            if chunk is None:
                return chunks
            chunks.append(chunk)
        raise AssertionError(f"The response did not end; it sent {chunks[-5:]!r}...")

    def close(self) -> None:
        """Close the response as Django's test client does (``request_finished`` without
        ``close_old_connections``, which would touch a database test's open connection)."""
        request_finished.disconnect(close_old_connections)
        try:
            self.response.close()
        finally:
            request_finished.connect(close_old_connections)


def echoed_last_event_id(response) -> str | None:
    """Return the ``last_event_id`` that EchoLastEventIdView sent back."""
    assert response.status_code == 200
    [event] = parse(b"".join(ChunkReader(response).rest())).events
    return json.loads(event.data)["value"]


# --- the response --------------------------------------------------------------


def test_stream_has_event_stream_headers_and_no_content_length(client):
    """GET: 200, text/event-stream UTF-8, no-cache, X-Accel-Buffering: no, no Content-Length."""
    response = client.get("/ticks/?n=1&interval=0")
    ChunkReader(response).rest()

    assert response.status_code == 200
    assert response.streaming
    assert response["Content-Type"] == "text/event-stream; charset=utf-8"
    assert response["Cache-Control"] == "no-cache"
    assert response["X-Accel-Buffering"] == "no"
    assert "Content-Length" not in response


def test_gzip_middleware_leaves_the_stream_uncompressed(client):
    """With Accept-Encoding: gzip the stream has no Content-Encoding and a plain SSE body."""
    page = client.get("/plain/", HTTP_ACCEPT_ENCODING="gzip")
    assert page["Content-Encoding"] == "gzip"  # the middleware is on and compresses pages

    response = client.get("/ticks/?n=3&interval=0", HTTP_ACCEPT_ENCODING="gzip")
    body = b"".join(ChunkReader(response).rest())

    assert "Content-Encoding" not in response
    assert "ETag" not in response
    assert body.startswith(OPENING)
    assert [(event.type, event.data) for event in parse(body).events] == [
        ("tick", "0"),
        ("tick", "1"),
        ("tick", "2"),
    ]


def test_opening_chunk_passes_the_middleware_before_the_first_event(client):
    """Through the middleware, the opening chunk comes before iterator() has sent anything."""
    response = client.get("/gated/", HTTP_ACCEPT_ENCODING="gzip", HTTP_IF_NONE_MATCH='"x"')
    reader = ChunkReader(response)
    try:
        first = reader.next()
        assert probe.started.wait(WAIT)  # iterator() runs, blocked at the gate
        assert not probe.gate.is_set()

        probe.gate.set()
        second = reader.next()
    finally:
        reader.close()

    assert first == OPENING
    assert second == b"event: first\ndata: after the gate\n\n"


def test_head_sends_headers_and_no_body_without_running_iterator(client):
    """HEAD answers with the stream's headers and an empty body, and never calls iterator()."""
    response = client.head("/gated/")
    assert response.status_code == 200
    assert response["Content-Type"] == "text/event-stream; charset=utf-8"
    assert response["Cache-Control"] == "no-cache"

    # Without the test client, which strips HEAD bodies itself.
    direct = GatedView.as_view()(RequestFactory().head("/gated/"))
    assert b"".join(direct.streaming_content) == b""

    assert not probe.started.wait(0.5)
    assert len(streams) == 0


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH"])
def test_other_methods_get_405_with_allow(client, method):
    """POST, PUT, DELETE and PATCH get 405 with Allow: GET, HEAD, OPTIONS and no stream."""
    response = client.generic(method, "/gated/")

    assert response.status_code == 405
    assert sorted(response["Allow"].split(", ")) == ["GET", "HEAD", "OPTIONS"]
    assert not response.streaming
    assert not probe.started.wait(0.2)


def test_options_answers_without_a_stream(client):
    """OPTIONS gets 200 with Allow, not a stream."""
    response = client.options("/gated/")

    assert response.status_code == 200
    assert sorted(response["Allow"].split(", ")) == ["GET", "HEAD", "OPTIONS"]
    assert not response.streaming


# --- Last-Event-ID -------------------------------------------------------------


def test_last_event_id_comes_from_the_header(client):
    """self.last_event_id is the Last-Event-ID header."""
    assert echoed_last_event_id(client.get("/echo/", HTTP_LAST_EVENT_ID="1700000000000-3")) == (
        "1700000000000-3"
    )


def test_last_event_id_comes_from_the_query_for_polyfills(client):
    """Without the header, self.last_event_id is the lastEventId query parameter."""
    assert echoed_last_event_id(client.get("/echo/?lastEventId=42")) == "42"


def test_last_event_id_header_wins_over_the_query(client):
    """When both are given, the header is used."""
    response = client.get("/echo/?lastEventId=query", HTTP_LAST_EVENT_ID="header")
    assert echoed_last_event_id(response) == "header"


@pytest.mark.parametrize("extra", [{}, {"HTTP_LAST_EVENT_ID": ""}], ids=["absent", "empty"])
def test_last_event_id_is_none_when_absent(client, extra):
    """self.last_event_id is None without a header or query parameter, or with an empty one."""
    assert echoed_last_event_id(client.get("/echo/", **extra)) is None


@pytest.mark.parametrize(
    ("where", "value"),
    [
        ("header", "1" * 100_000),
        ("query", "1" * 5_000),
        ("header", "a\rb"),
        ("header", "a\nb"),
        ("header", "a\x00b"),
        ("query", "a%0Db"),
        ("query", "a%0Ab"),
        ("query", "a%00b"),
    ],
    ids=["long-header", "long-query", "cr", "lf", "nul", "cr-query", "lf-query", "nul-query"],
)
def test_last_event_id_that_no_server_could_send_is_none(client, where, value):
    """Ids too long or holding CR, LF or NUL (which no id: field can carry) read as None."""
    if where == "header":
        response = client.get("/echo/", HTTP_LAST_EVENT_ID=value)
    else:
        response = client.get(f"/echo/?lastEventId={value}")
    assert echoed_last_event_id(response) is None


@pytest.mark.parametrize(
    ("where", "value"),
    [
        ("header", "\x01\x1b[31m\x7f"),  # control characters an id: field can carry
        ("header", "\xff\xfe\xc3"),  # raw bytes, as a WSGI server decodes them (latin-1)
        ("query", "%ff%fe%c3"),  # invalid UTF-8 percent-escapes
        ("query", "%zz%"),  # broken percent-escapes
        ("query", "%ED%A0%80"),  # an encoded UTF-16 surrogate
    ],
    ids=["control", "latin1-header", "bad-utf8-query", "bad-escape-query", "surrogate-query"],
)
def test_malformed_last_event_id_never_causes_a_500(client, where, value):
    """Control characters or bad UTF-8 give a stream; the id is None or one id: can carry."""
    if where == "header":
        response = client.get("/echo/", HTTP_LAST_EVENT_ID=value)
    else:
        response = client.get(f"/echo/?lastEventId={value}")

    echoed = echoed_last_event_id(response)

    assert echoed is None or (isinstance(echoed, str) and not set(echoed) & set("\r\n\x00"))
    if where == "header":
        assert echoed in (None, value)


# --- configuration -------------------------------------------------------------


def test_view_without_iterator_raises_improperly_configured_naming_the_class(client):
    """A view that does not implement iterator() raises ImproperlyConfigured, before streaming."""
    with pytest.raises(ImproperlyConfigured, match=r"NoIteratorView.*'iterator\(\)'"):
        client.get("/no-iterator/")
    assert len(streams) == 0


def test_retry_is_set_per_class(client):
    """A class's retry is the reconnection delay of its opening and closing chunks."""
    chunks = ChunkReader(client.get("/retry/")).rest()

    assert chunks[0] == b"retry: 5000\n\n:\n\n"
    assert chunks[-1] == b"retry: 5000\n\n"


@pytest.mark.parametrize(
    ("retry", "opening"), [(100, b"retry: 100\n\n:\n\n"), (None, b":\n\n")], ids=["100", "None"]
)
def test_retry_defaults_to_the_setting(client, retry, opening):
    """Without a class retry, SSE_RETRY is used; None sends no retry: field at all."""
    with override_settings(SSE_RETRY=retry):
        chunks = ChunkReader(client.get("/echo/")).rest()

    assert chunks[0] == opening


def test_heartbeat_interval_can_be_set_through_as_view():
    """as_view(heartbeat_interval=5) sets the interval; the setting is the default."""
    request = RequestFactory().get("/gated/")
    with override_settings(SSE_HEARTBEAT_INTERVAL=7):
        configured = GatedView.as_view(heartbeat_interval=5)
        view = configured.view_class(**configured.view_initkwargs)
        view.setup(request)
        default = GatedView()
        default.setup(request)

        assert view.get_heartbeat_interval() == 5
        assert default.get_heartbeat_interval() == 7


def read_heartbeats(path: str, client: Client) -> list[bytes]:
    """Open ``path`` with the gate open; return 5 chunks, the last 3 sent while iterator() waits."""
    probe.gate.set()
    reader = ChunkReader(client.get(path))
    try:
        chunks = [reader.next() for _ in range(5)]
        assert not probe.finished.is_set()  # iterator() is still blocked
    finally:
        reader.close()
    return chunks


def test_heartbeats_are_sent_while_iterator_is_blocked(client):
    """With as_view(heartbeat_interval=0.1), comments keep coming while iterator() blocks."""
    chunks = read_heartbeats("/gated-fast-heartbeat/", client)

    assert chunks == [OPENING, b"event: first\ndata: after the gate\n\n", *[HEARTBEAT] * 3]


def test_heartbeat_interval_defaults_to_the_setting(client):
    """Without a class heartbeat_interval, SSE_HEARTBEAT_INTERVAL paces the heartbeats."""
    with override_settings(SSE_HEARTBEAT_INTERVAL=0.1):
        chunks = read_heartbeats("/gated/", client)

    assert chunks[2:] == [HEARTBEAT] * 3


def test_the_heartbeat_wheel_keeps_no_mailbox_it_let_go_of():
    """Between ticks the wheel's task holds none of the mailboxes it looked at: an ended stream is freed."""
    import gc

    from django_sse.core.heartbeat import wheel_for
    from django_sse.core.mailbox import Mailbox
    from tests.support.polling import eventually

    def left() -> list:
        gc.collect()
        return [o for o in gc.get_objects() if isinstance(o, Mailbox) and o.owner == "wheel-test"]

    wheel = wheel_for(0.08)  # ticks every 0.02 s
    mailbox = Mailbox(limit=10, owner="wheel-test")
    wheel.add(mailbox, None)
    # A tick looked at it: silent for the interval, it was poked (four ticks at least).
    eventually(lambda box=mailbox: box.heartbeat_due, timeout=5, interval=0.01, what="poked")
    wheel.discard(mailbox)
    del mailbox

    # Freed at once, or when a tick in progress ends; a wheel that kept it between ticks
    # would still hold it after 2 s (with nothing else to look at, no tick lets go of it).
    assert eventually(lambda: left() == [], timeout=2, interval=0.02, what="freed")


# --- ending --------------------------------------------------------------------


def test_closing_the_response_ends_a_threaded_iterator_at_its_next_yield(client):
    """Without gevent, closing the response ends the iterator's thread at its next yield."""
    before = dict(project_views.counters)
    reader = ChunkReader(client.get("/ticks/?interval=0.05"))
    assert reader.next() == OPENING
    assert reader.next() == b"event: tick\ndata: 0\n\n"

    reader.close()

    for _ in range(100):
        if project_views.counters["iterator_finally"] > before["iterator_finally"]:
            break
        threading.Event().wait(0.05)
    assert project_views.counters["iterator_finally"] == before["iterator_finally"] + 1
    assert len(streams) == 0


def test_stream_ends_after_iterator_returns(client):
    """When iterator() returns, the response ends with a retry hint; the stream is unregistered."""
    chunks = ChunkReader(client.get("/ticks/?n=2&interval=0")).rest()

    assert chunks == [
        OPENING,
        b"event: tick\ndata: 0\n\n",
        b"event: tick\ndata: 1\n\n",
        b"retry: 2000\n\n",
    ]
    assert len(streams) == 0


# --- the warning for servers that block a thread per stream ---------------------


@pytest.fixture
def fresh_warning():
    """Forget that the once-per-process warning was given; restore the flag afterwards."""
    was_set = server._warned
    server._warned = False
    yield
    server._warned = was_set


def server_warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "django_sse.servers.detect"]


def test_warns_once_when_the_server_is_not_gevent_patched(fresh_warning, caplog):
    """Two streams on a server that is neither gevent-patched nor the dev server log one warning."""
    caplog.set_level(logging.WARNING, logger="django_sse")
    client = Client(SERVER_NAME="sse.example.com", SERVER_SOFTWARE="gunicorn/23.0.0")

    for _ in range(2):
        ChunkReader(client.get("/echo/")).rest()

    [warning] = server_warnings(caplog)
    assert "gunicorn/23.0.0" in warning
    assert "gunicorn -k gevent" in warning
    assert [r.levelno for r in caplog.records if r.name == "django_sse.servers.detect"] == [
        logging.WARNING
    ]


@pytest.mark.parametrize(
    "environ",
    [{}, {"SERVER_NAME": "localhost", "SERVER_SOFTWARE": "WSGIServer/0.2 CPython/3.11.7"}],
    ids=["test-client", "runserver"],
)
def test_no_warning_from_the_development_server(fresh_warning, caplog, environ):
    """The test client and runserver (wsgiref's WSGIServer) stream without the warning."""
    caplog.set_level(logging.WARNING, logger="django_sse")
    client = Client(**environ)

    ChunkReader(client.get("/echo/")).rest()

    assert server_warnings(caplog) == []


@pytest.mark.parametrize(
    ("jitter", "spread"), [(0.5, True), (0, False)], ids=["default 0.5", "0: none"]
)
def test_a_stopping_server_spreads_the_retry_hint_by_sse_retry_jitter(client, jitter, spread):
    """Streams asked of a stopping process are told to wait SSE_RETRY x (1 + up to SSE_RETRY_JITTER)."""
    from django.test import override_settings

    with override_settings(SSE_RETRY_JITTER=jitter):
        streams.end_all(EndReason.SHUTDOWN)
        try:
            bodies = [b"".join(client.get("/ticks/").streaming_content) for _ in range(40)]
        finally:
            streams.reopen()
    values = {int(body.removeprefix(b"retry: ").rstrip(b"\n")) for body in bodies}

    assert all(body.startswith(b"retry: ") and body.endswith(b"\n\n") for body in bodies)
    assert all(2000 <= value <= 2000 * (1 + jitter) for value in values)
    assert (len(values) > 10) is spread
