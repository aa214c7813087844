"""Streams served by real servers, read off the wire with a raw-socket client.

gunicorn with gevent workers (gunicorn.conf.py) and gevent's pywsgi are the
servers streams are built for; Django's runserver is checked for flushing
only. The test project (tests/views.py) counts in /stats/ how many
``iterator()`` calls started and how many reached their ``finally:``, and
how many streams, greenlets and file descriptors the process holds.
"""

from __future__ import annotations

import socket
import time

import pytest

from tests.support.polling import eventually
from tests.support.sse import SseClient
from tests.support.stats import get_stats

pytestmark = pytest.mark.integration

GEVENT_SERVERS = ["gunicorn", "pywsgi"]
#: Every server a stream must behave the same on: gevent's, and uvicorn (ASGI).
STREAM_SERVERS = [*GEVENT_SERVERS, "uvicorn"]
#: The smaller part that also runs on the other ASGI servers: daphne, gunicorn's uvicorn worker.
ASGI_SERVERS = ["uvicorn", "daphne", "uvicorn_worker"]
#: The stream whose iterator() blocks for an hour. Under ASGI a sync iterator() runs in a
#: thread, which (as under runserver) stops only at its next yield; an async one is
#: cancelled where it awaits, so the disconnect tests use that one there.
BLOCKED_PATH = {
    "gunicorn": "/blocked/",
    "pywsgi": "/blocked/",
    **dict.fromkeys(ASGI_SERVERS, "/async-blocked/"),
}
OPENING = b"retry: 2000\n\n:\n\n"
CLOSING = b"retry: 2000\n\n"
HEARTBEAT = b":\n\n"
BLOCKED_HEARTBEAT = 0.3  # the heartbeat of /blocked/ (tests/urls.py)
WARNING = "django-sse is serving a stream from a process that gevent has not patched"


def start(servers, kind: str, **kwargs):
    """Start the test project on ``kind`` ("gunicorn", "pywsgi", "runserver" or "uvicorn")."""
    return getattr(servers, kind)(**kwargs)


def stats(server) -> dict:
    """Return what the server process holds now (/stats/, on a connection of its own)."""
    return get_stats(server.port)


def wait_for_stats(server, predicate, timeout: float, what: str) -> dict:
    """Poll /stats/ until ``predicate(stats)`` holds; after ``timeout`` s fail showing it."""
    return eventually(lambda: stats(server), timeout, interval=0.05, until=predicate, what=what)


def settled(server, timeout: float = 15) -> dict:
    """Wait until no stream is open and every started iterator() has run its finally:."""
    return wait_for_stats(
        server,
        lambda s: s["streams"] == 0 and s["iterator_finally"] == s["iterator_started"],
        timeout,
        "settled",
    )


def hang_up(client: SseClient, how: str) -> None:
    """Close with FIN ("close") or RST ("abort")."""
    getattr(client, how)()


def payloads(client: SseClient) -> list[bytes]:
    return [data for _, data in client.chunks]


# --- flushing ------------------------------------------------------------------


@pytest.mark.parametrize("kind", [*STREAM_SERVERS, "runserver", "daphne", "uvicorn_worker"])
def test_headers_and_opening_chunk_arrive_before_the_first_event(servers, kind):
    """The response head and the opening chunk arrive at once, before an event sent 1.5 s later."""
    server = start(servers, kind)
    with SseClient.connect(server.port, "/late/?delay=1.5") as client:
        assert client.status == 200
        assert client.headers["Content-Type"] == "text/event-stream; charset=utf-8"
        assert client.headers["Cache-Control"] == "no-cache"
        assert client.headers["X-Accel-Buffering"] == "no"
        assert "Content-Length" not in client.headers

        client.read_bytes_until(lambda body: len(body) >= len(OPENING), timeout=10)
        assert client.events == []  # the opening came on its own, well before the event

        [event] = client.read_events(1, timeout=10)

    assert (event.type, event.data) == ("late", "after the delay")
    assert payloads(client)[0] == OPENING
    if kind != "runserver":  # runserver does not chunk: what follows may share one recv()
        assert payloads(client)[1] == b"event: late\ndata: after the delay\n\n"
    assert WARNING not in server.stderr_text()


@pytest.mark.parametrize("kind", [*STREAM_SERVERS, "daphne", "uvicorn_worker"])
def test_each_yield_is_its_own_chunk_sent_when_yielded(servers, kind):
    """Three ticks 0.3 s apart arrive as three HTTP chunks at three moments, then the closing."""
    server = start(servers, kind)
    with SseClient.connect(server.port, "/ticks/?n=3&interval=0.3") as client:
        client.read_to_end(timeout=10)

    assert client.headers["Transfer-Encoding"] == "chunked"
    assert payloads(client) == [
        OPENING,
        b"event: tick\ndata: 0\n\n",
        b"event: tick\ndata: 1\n\n",
        b"event: tick\ndata: 2\n\n",
        CLOSING,
    ]
    arrivals = [arrived for arrived, _ in client.chunks[1:4]]
    print(f"tick arrivals after the first: {[round(t - arrivals[0], 3) for t in arrivals]}")
    # Sent 0.6 s apart: had anything buffered them, they would have come together.
    assert arrivals[2] - arrivals[0] >= 0.3


@pytest.mark.parametrize(
    ("kind", "path"),
    [
        *((kind, "/blocked/") for kind in STREAM_SERVERS),
        *((kind, "/async-blocked/") for kind in ASGI_SERVERS),
    ],
)
def test_heartbeats_arrive_while_iterator_is_blocked(servers, kind, path):
    """While iterator() sleeps (or awaits) for an hour, heartbeat comments (not events) come every 0.3 s."""
    server = start(servers, kind)
    with SseClient.connect(server.port, path) as client:
        [hello] = client.read_events(1, timeout=10)
        after_hello = len(client.chunks)

        client.read_bytes_until(
            lambda body: len(client.chunks) - after_hello >= 3, timeout=3 * BLOCKED_HEARTBEAT + 2
        )

    assert (hello.type, hello.data) == ("hello", "blocked next")
    assert payloads(client)[after_hello:] == [HEARTBEAT] * (len(client.chunks) - after_hello)
    assert client.events == [hello]


# --- disconnects ---------------------------------------------------------------


@pytest.mark.parametrize("how", ["close", "abort"], ids=["FIN", "RST"])
@pytest.mark.parametrize("kind", [*STREAM_SERVERS, "daphne", "uvicorn_worker"])
def test_disconnect_runs_the_iterators_finally(servers, kind, how):
    """When the client hangs up, the blocked iterator's finally: runs within a heartbeat."""
    server = start(servers, kind)
    before = stats(server)
    client = SseClient.connect(server.port, BLOCKED_PATH[kind])
    client.read_events(1, timeout=10)
    during = stats(server)

    hang_up(client, how)
    after = wait_for_stats(
        server,
        lambda s: s["iterator_finally"] > before["iterator_finally"] and s["streams"] == 0,
        timeout=BLOCKED_HEARTBEAT + 2.7,
        what="the iterator closed",
    )

    assert during["streams"] == 1
    assert during["iterator_started"] == before["iterator_started"] + 1
    assert during["iterator_finally"] == before["iterator_finally"]
    assert after["iterator_finally"] == after["iterator_started"] == before["iterator_started"] + 1


@pytest.mark.parametrize("kind", STREAM_SERVERS)
def test_no_leak_after_2000_dropped_streams(servers, kind):
    """2,000 streams opened and dropped (FIN or RST) leave greenlets, fds, streams as before."""
    server = start(servers, kind)
    batch, batches, tolerance = 200, 10, 3

    def open_and_drop(count: int) -> None:
        clients = [SseClient.connect(server.port, BLOCKED_PATH[kind]) for _ in range(count)]
        for client in clients:
            client.read_events(1, timeout=10)  # its iterator() runs
        for index, client in enumerate(clients):
            hang_up(client, "close" if index % 2 else "abort")

    open_and_drop(20)  # warm up: imports, the hub, the first greenlets of the pools
    baseline = settled(server)
    for _ in range(batches):
        open_and_drop(batch)
        settled(server)
    after = settled(server)

    print(f"{kind} baseline: {baseline}\n{kind} after {batch * batches} streams: {after}")
    assert after["iterator_started"] == baseline["iterator_started"] + batch * batches
    assert after["iterator_finally"] == after["iterator_started"]
    assert after["streams"] == after["open_responses"] == after["wheel_entries"] == 0
    assert after["greenlets"] <= baseline["greenlets"] + tolerance
    assert after["fds"] <= baseline["fds"] + tolerance
    assert after["threads"] <= baseline["threads"] + tolerance


# --- the end of a stream -------------------------------------------------------


def _read_until_eof(sock: socket.socket, timeout: float = 10) -> bytes:
    sock.settimeout(timeout)
    data = b""
    for _ in range(10_000):
        piece = sock.recv(65536)
        if not piece:
            return data
        data += piece
    raise AssertionError(f"The connection did not close; received {data[:500]!r}...")


@pytest.mark.parametrize("kind", STREAM_SERVERS)
def test_iterator_return_ends_the_response_and_keeps_the_connection(servers, kind):
    """When iterator() returns, the response ends with the last chunk; the connection is reused."""
    server = start(servers, kind)
    client = SseClient.connect(server.port, "/ticks/?n=2&interval=0")
    try:
        client.read_to_end(timeout=10)
        ended_by_last_chunk = client.ended and not client.reset

        # The next request on the same connection, as a browser's keep-alive pool would send it.
        client.sock.sendall(
            f"GET /plain/ HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
            "Connection: close\r\n\r\n".encode()
        )
        second = _read_until_eof(client.sock).lstrip(b"\r\n")  # the first one's trailer CRLF
    finally:
        client.close()

    assert client.headers["Transfer-Encoding"] == "chunked"
    assert "close" not in client.headers.get("Connection", "").lower()
    assert ended_by_last_chunk
    assert payloads(client) == [
        OPENING,
        b"event: tick\ndata: 0\n\n",
        b"event: tick\ndata: 1\n\n",
        CLOSING,
    ]
    assert second.startswith(b"HTTP/1.1 200 ")
    assert second.endswith(b"x" * 1000)
    settled(server)


@pytest.mark.parametrize("kind", STREAM_SERVERS)
def test_malformed_last_event_id_header_on_the_wire_never_causes_a_500(servers, kind):
    """Raw non-UTF-8 bytes or a 4 kB value (gunicorn refuses 8 kB) in Last-Event-ID: a stream."""
    server = start(servers, kind)
    for value in ("\xff\xfe\xc3(", "1" * 4_000):
        with SseClient.connect(
            server.port, "/ticks/?n=1&interval=0", headers={"Last-Event-ID": value}
        ) as client:
            client.read_to_end(timeout=10)
        assert client.status == 200
        assert [event.data for event in client.events] == ["0"]


# --- servers that hold a thread per stream -------------------------------------


def test_sync_gunicorn_worker_logs_the_warning_once(servers):
    """Under gunicorn -k sync, the first stream logs the warning; the second does not repeat it."""
    server = servers.gunicorn(extra_args=["-k", "sync"])
    for _ in range(2):
        with SseClient.connect(server.port, "/ticks/?n=1&interval=0") as client:
            client.read_to_end(timeout=10)
        assert [event.data for event in client.events] == ["0"]

    log = server.stderr_text(100_000)
    deadline = time.monotonic() + 5
    while WARNING not in log and time.monotonic() < deadline:
        time.sleep(0.05)
        log = server.stderr_text(100_000)

    assert log.count(WARNING) == 1
    warning_line = next(line for line in log.splitlines() if WARNING in line)
    assert "gunicorn -k gevent" in warning_line
    assert "gunicorn/" in warning_line  # names the server it found
