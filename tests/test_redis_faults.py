"""Redis faults against real processes: Redis down, Redis restarted, a client that stops reading.

Each test runs its own redis-server, which it stops and starts on the same
port, and a gunicorn gevent worker of the test project using it.
"""

from __future__ import annotations

import re
import socket
import threading
import time
import urllib.request

import pytest

import django_sse
from tests.support.redis_helpers import (
    data_of,
    eventually,
    get_stats,
    open_live,
    stats_when,
    wait_live,
)
from tests.support.sse import SseClient

pytestmark = pytest.mark.integration

LOST = "Lost the Redis subscription"


def _worker(servers, redis, **env: str):
    return servers.site(redis.url, heartbeat="0.5", env=env)


def _probe_until_live(clients_by_channel: dict[str, list[SseClient]], timeout: float = 20) -> None:
    """Publish a "probe" event on each channel until every client has received one.

    A stream that got a probe is subscribed and caught up: what is published
    next reaches it.
    """
    waiting = {client for clients in clients_by_channel.values() for client in clients}
    deadline = time.monotonic() + timeout
    round_ = 0
    while waiting:
        assert time.monotonic() < deadline, f"{len(waiting)} streams never received a probe"
        round_ += 1
        for channel, clients in clients_by_channel.items():
            if waiting.intersection(clients):
                django_sse.send_event("probe", str(round_), channel=channel)
        for client in list(waiting):
            try:
                client.read_until(lambda e: e.type == "probe", timeout=0.3)
            except TimeoutError:
                continue
            waiting.discard(client)


def test_a_stream_opened_while_redis_is_down_opens_beats_and_gets_events_once_it_is_back(
    servers, settings
):
    """With Redis stopped a stream opens and sends heartbeats; once Redis starts, events arrive."""
    redis = servers.redis()
    gunicorn = _worker(servers, redis)
    settings.SSE_REDIS_URL = redis.url
    settings.SSE_PUBLISH_TIMEOUT = 1
    # The worker reached Redis once: a stream it never reached would be a 503 (test_unreachable_broker).
    open_live(gunicorn.port, "/events/outage/").close()

    redis.stop()
    client = SseClient.connect(gunicorn.port, "/events/outage/")
    try:
        client.read_bytes_until(lambda body: body.count(b":\n\n") >= 4, timeout=10)
        beats_while_down = list(client.parser.comments)
        redis.start()  # the same port
        wait_live(client, timeout=20)
        django_sse.send_event("back", "redis is back", channel="outage")
        events = data_of(client, 1, timeout=10)
    finally:
        client.close()

    assert client.status == 200
    assert client.body.startswith(b"retry: ")
    assert len(beats_while_down) >= 4 and set(beats_while_down) == {""}
    assert events == ["redis is back"]
    assert not client.ended


def test_streams_go_on_through_redis_restarts_with_one_warning_per_outage(servers, settings):
    """20 streams survive two Redis restarts; the worker warns once per outage, not per client."""
    redis = servers.redis()
    gunicorn = _worker(servers, redis)
    settings.SSE_REDIS_URL = redis.url
    settings.SSE_PUBLISH_TIMEOUT = 1
    by_channel: dict[str, list[SseClient]] = {f"r{n}": [] for n in range(4)}
    clients = []
    try:
        for n in range(20):
            client = SseClient.connect(gunicorn.port, f"/events/r{n % 4}/")
            by_channel[f"r{n % 4}"].append(client)
            clients.append(client)
        for client in clients:
            wait_live(client)
        received = {client: [] for client in clients}
        for outage in range(2):
            for channel in by_channel:
                django_sse.send_event("news", f"before restart {outage}", channel=channel)
            for client in clients:
                received[client] += data_of(client, 1, event="news")

            redis.restart()  # no persistence: Redis comes back empty
            _probe_until_live(by_channel)
            for channel in by_channel:
                django_sse.send_event("news", f"after restart {outage}", channel=channel)
            for client in clients:
                received[client] += data_of(client, 1, event="news")
        ended = [client for client in clients if client.ended]
    finally:
        for client in clients:
            client.close()

    log = gunicorn.stderr_text(10**7)
    expected = ["before restart 0", "after restart 0", "before restart 1", "after restart 1"]
    assert all(got == expected for got in received.values()), received
    assert ended == []
    assert log.count(LOST) == 2, log[-3000:]
    assert log.count("Redis subscription restored") == 2


def test_a_client_that_stops_reading_is_disconnected_and_others_get_everything(servers, settings):
    """A reader that never reads overflows its small queue and is dropped; fast readers get all."""
    redis = servers.redis()
    # A 15 s heartbeat: the kernel would drop the stalled connection only after 30 s
    # (ClientConnection.limit_unacknowledged); the overflow must do it first.
    gunicorn = _worker(
        servers, redis, DJANGO_SSE_TEST_QUEUE_SIZE="20", DJANGO_SSE_TEST_HEARTBEAT="15"
    )
    settings.SSE_REDIS_URL = redis.url
    count, size = 300, 32 * 1024  # ~10 MB: far more than the kernel buffers of one connection

    fast = [SseClient.connect(gunicorn.port, "/events/flood/") for _ in range(3)]
    for client in fast:
        wait_live(client)
    slow = socket.socket()
    slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: a small window
    slow.connect(("127.0.0.1", gunicorn.port))
    slow.sendall(
        f"GET /events/flood/ HTTP/1.1\r\nHost: 127.0.0.1:{gunicorn.port}\r\n"
        "Accept: text/event-stream\r\n\r\n".encode()
    )
    eventually(lambda: get_stats(gunicorn.port)["hub_listeners"] == 4)
    # The slow stream has caught up and gone live (its position is out), read without consuming.
    slow.settimeout(15)
    eventually(lambda: b"id: " in slow.recv(4096, socket.MSG_PEEK), what="the slow stream live")

    results: list[list] = [[] for _ in fast]

    def read_all(index: int, client: SseClient) -> None:
        try:
            while len(results[index]) < count:
                results[index] += data_of(client, 1, timeout=30, event="big")
        except Exception as exc:  # reported below
            results[index].append(exc)

    readers = [threading.Thread(target=read_all, args=(i, c)) for i, c in enumerate(fast)]
    for reader in readers:
        reader.start()
    try:
        deadline = time.monotonic() + 90
        for n in range(count):
            # Paced by the fast readers (at most 10 events ahead of them; their queue holds
            # 20), so only a reader that stops reading can overflow.
            while min(len(got) for got in results) < n - 10 and time.monotonic() < deadline:
                time.sleep(0.001)
            django_sse.send_event("big", f"{n:06d}" + "x" * (size - 6), channel="flood")
        for reader in readers:
            reader.join(60)
        # The server drops the slow stream while its client still reads nothing.
        stats = stats_when(
            gunicorn.port, lambda s: s["streams"] == 3 and s["hub_listeners"] == 3, timeout=10
        )
        slow_received, slow_ended = _drain(slow, timeout=30)
    finally:
        slow.close()
        for client in fast:
            client.close()

    print(f"{count} events of {size // 1024} KiB; the slow client got {slow_received} bytes")
    expected = [f"{n:06d}" + "x" * (size - 6) for n in range(count)]
    for index in range(3):
        assert results[index] == expected, f"fast reader {index} missed events"
    assert stats["streams"] == 3
    assert slow_ended
    assert slow_received < count * size / 2
    # Dropped because its queue overflowed (the worker held no backlog for it): the reason counted.
    assert _streams_ended(gunicorn.port, "queue overflow") == 1


def _streams_ended(port: int, reason: str) -> float:
    """Return the worker's count of streams ended for ``reason`` (its /metrics/)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics/", timeout=10) as response:
        text = response.read().decode()
    pattern = (
        rf'^django_sse_streams_ended_total\{{[^}}]*reason="{re.escape(reason)}"[^}}]*\}} (\S+)$'
    )
    return sum(float(value) for value in re.findall(pattern, text, re.MULTILINE))


def _drain(sock: socket.socket, timeout: float) -> tuple[int, bool]:
    """Read until EOF or reset; return the bytes received and whether the connection ended."""
    received = 0
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            data = sock.recv(65536)
        except ConnectionResetError:
            return received, True
        except TimeoutError:
            break
        if not data:
            return received, True
        received += len(data)
    return received, False
