"""The limits of issue 7, each on its own: streams per worker, stream lifetime, channels, events, queue.

Servers get their limits through ``DJANGO_SSE_TEST_SETTINGS`` (JSON read by
tests/settings.py). The request limits that need no server are checked
through Django's test client.
"""

from __future__ import annotations

import json
import signal
import threading
import time

import pytest
from django.test import Client

import django_sse
from django_sse.exceptions import EventTooLarge
from tests.support.reconnecting import Resuming, read_in_threads
from tests.support.redis_helpers import eventually, get_stats, open_live
from tests.support.sse import SseClient, spread_retry


def _settings_env(**settings) -> dict[str, str]:
    return {"DJANGO_SSE_TEST_SETTINGS": json.dumps(settings)}


def _refusal(port: int, path: str) -> SseClient:
    client = SseClient.connect(port, path)
    client.read_to_end(timeout=10)
    client.close()
    return client


def _publish_burst(redis_client, channel: str, count: int, prefix: str = "sse:") -> None:
    """Publish ``count`` events (event "n", data "0".."count-1") in one MULTI, in wire format v1.

    Redis sends them to the subscriber back to back, so the server's hub
    fans them out faster than any stream can write them.
    """
    key = prefix + channel
    ms = int(time.time() * 1000)
    pipe = redis_client.pipeline(transaction=True)
    for n in range(count):
        event_id = f"{ms}-{n}"
        pipe.xadd(key, {"event": "n", "data": str(n)}, id=event_id)
        pipe.publish(key, f"1\n{event_id}\nn\n{n}")
    pipe.execute()


# --- SSE_MAX_STREAMS -----------------------------------------------------------


@pytest.mark.integration
def test_a_stream_beyond_sse_max_streams_gets_503_with_retry_after(servers, server_kind):
    """With SSE_MAX_STREAMS = 3 the 4th stream gets 503 + Retry-After; a freed slot is reused."""
    server = servers.http(server_kind, env=_settings_env(SSE_MAX_STREAMS=3))
    clients = [SseClient.connect(server.port, "/ticks/?interval=0.5") for _ in range(3)]
    try:
        statuses = [client.status for client in clients]
        refused = _refusal(server.port, "/ticks/?interval=0.5")
        plain = _refusal(server.port, "/plain/")  # ordinary requests are not limited
        clients.pop().close()
        eventually(lambda: get_stats(server.port)["streams"] == 2)
        again = SseClient.connect(server.port, "/ticks/?interval=0.5")
        clients.append(again)
        [tick] = again.read_events(1)
    finally:
        for client in clients:
            client.close()

    assert statuses == [200, 200, 200]
    assert refused.status == 503
    assert int(refused.headers["Retry-After"]) > 0
    assert b"SSE_MAX_STREAMS" in refused.body and len(refused.body) < 200
    assert plain.status == 200
    assert (again.status, tick.type) == (200, "tick")


# --- SSE_MAX_STREAMS_PER_USER ----------------------------------------------------


def test_a_users_stream_beyond_the_per_user_limit_gets_429_and_others_are_not_counted(settings):
    """Two streams per user: the 3rd of user 1 is refused, user 2 and anonymous are not; a close frees a slot."""
    from django.contrib.auth.models import AnonymousUser
    from django.test import RequestFactory

    from django_sse.core.runtime import streams
    from tests.views import TickView

    settings.SSE_MAX_STREAMS_PER_USER = 2
    view = TickView.as_view()

    def open_for(user):
        request = RequestFactory().get("/ticks/")
        request.user = user
        return view(request)

    user1, user2 = _User(1), _User(2)
    held = [open_for(user1), open_for(user1)]
    refused = open_for(user1)
    others = [open_for(user2), open_for(AnonymousUser()), open_for(AnonymousUser())]
    counted = (streams.held_by("1"), streams.held_by("2"))
    held.pop().close()  # the server closed one of user 1's responses
    again = open_for(user1)
    for response in [*held, *others, again]:
        response.close()

    assert [response.status_code for response in held] == [200]
    assert refused.status_code == 429
    assert int(refused["Retry-After"]) > 0
    assert b"SSE_MAX_STREAMS_PER_USER" in refused.content and len(refused.content) < 200
    assert [response.status_code for response in others] == [200, 200, 200]
    assert counted == (2, 1)
    assert again.status_code == 200
    assert streams.held_by("1") == streams.held_by("2") == 0


class _User:
    is_anonymous = False
    is_authenticated = True

    def __init__(self, pk: int) -> None:
        self.pk = pk


@pytest.mark.integration
def test_per_user_limit_on_a_server_refuses_only_that_owners_extra_stream(servers, server_kind):
    """SSE_MAX_STREAMS_PER_USER = 2 in a served worker: owner a's 3rd stream gets 429, b streams on."""
    server = servers.http(server_kind, env=_settings_env(SSE_MAX_STREAMS_PER_USER=2))
    path = "/owned-ticks/?interval=0.5&owner="
    clients = [SseClient.connect(server.port, path + "a") for _ in range(2)]
    try:
        refused = _refusal(server.port, path + "a")
        other = SseClient.connect(server.port, path + "b")
        clients.append(other)
        [tick] = other.read_events(1)
        clients.pop(0).close()
        eventually(lambda: get_stats(server.port)["streams"] == 2)
        again = SseClient.connect(server.port, path + "a")
        clients.append(again)
        again.read_events(1)
    finally:
        for client in clients:
            client.close()

    assert refused.status == 429 and int(refused.headers["Retry-After"]) > 0
    assert tick.type == "tick"
    assert again.status == 200


# --- SSE_MAX_LIFETIME ----------------------------------------------------------


@pytest.mark.integration
def test_max_lifetime_set_on_the_view_ends_the_stream_cleanly_with_a_retry_hint(
    servers, server_kind
):
    """``as_view(max_lifetime=0.5)``: the stream ends by itself after a retry hint, not a reset."""
    server = servers.http(server_kind)
    client = SseClient.connect(server.port, "/ticks-short-life/")
    opened = time.monotonic()
    try:
        body = client.read_to_end(timeout=10)
        lasted = time.monotonic() - opened
    finally:
        client.close()
    stats = eventually(lambda: (s := get_stats(server.port))["streams"] == 0 and s)

    print(f"a stream with max_lifetime=0.5 lasted {lasted:.2f} s")
    assert client.status == 200
    assert not client.reset
    assert spread_retry(body), body[-40:]
    assert [event.type for event in client.events] and {e.type for e in client.events} == {"tick"}
    assert lasted >= 0.5
    assert stats["iterator_finally"] == stats["iterator_started"]


@pytest.mark.integration
def test_sse_max_lifetime_ends_streams_and_clients_that_resume_lose_nothing(
    servers, server_kind, settings
):
    """SSE_MAX_LIFETIME = 1: streams end every second during a publish run; the resuming client gets every event once."""
    redis = servers.redis()
    settings.SSE_REDIS_URL = redis.url
    server = servers.http(
        server_kind,
        env={
            "DJANGO_SSE_TEST_REDIS_URL": redis.url,
            "DJANGO_SSE_TEST_HEARTBEAT": "0.2",
            **_settings_env(SSE_MAX_LIFETIME=1.0),
        },
    )
    count = 250
    open_live(server.port, "/events/life/").close()  # the channel's tip exists from here on
    # Browser-like: each reconnects on its kept-alive connection if the server leaves it open.
    readers = [Resuming(server.port, "/events/life/", keep_alive=True) for _ in range(3)]

    def publish() -> None:
        for n in range(count):
            django_sse.send_event("n", str(n), channel="life")
            time.sleep(0.012)

    reading, received = read_in_threads(readers, count, event="n")
    threads = [threading.Thread(target=publish), *reading]
    for thread in threads:
        thread.start()
    try:
        for thread in threads:
            thread.join(90)
    finally:
        for reader in readers:
            reader.close()

    endings = [len(reader.endings) for reader in readers]
    print(
        f"{count} events over ~{count * 0.012:.1f} s; streams ended by the lifetime per client: {endings}"
    )
    expected = [str(n) for n in range(count)]
    for index, reader in enumerate(readers):
        assert received[index] == expected
        assert reader.resets == []
        assert reader.endings and all(spread_retry(end) for end in reader.endings)
        assert reader.reused == 0  # the server closed each connection whose stream it ended
    assert min(endings) >= 2


@pytest.mark.integration
def test_max_lifetime_moves_streams_to_a_worker_added_later(servers):
    """20 streams on one worker; after TTIN adds a second, lifetime-ended streams reconnect to both."""
    gunicorn = servers.gunicorn(
        env={"DJANGO_SSE_TEST_HEARTBEAT": "0.2", **_settings_env(SSE_MAX_LIFETIME=0.5)}
    )
    [first] = gunicorn.worker_pids()
    readers = [
        Resuming(gunicorn.port, "/worker-events/balance/", keep_alive=True) for _ in range(20)
    ]
    try:
        gunicorn.send_signal(signal.SIGTTIN)  # one worker more, as after a scale-up or a deploy
        eventually(lambda: len(gunicorn.worker_pids()) == 2, timeout=15)
        # Until the new worker serves some of them (the loop is the wait).
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            for reader in readers:
                try:
                    reader.read_data(1, timeout=0.05)
                except TimeoutError:
                    pass  # nothing is published: only the lifetime's reconnections matter here
            latest = {reader.pids[-1] for reader in readers}
            if len(latest) == 2:
                break
    finally:
        for reader in readers:
            reader.close()

    print(f"workers serving the 20 streams at the end: {sorted(latest)}")
    assert {reader.pids[0] for reader in readers} == {str(first)}
    assert len(latest) == 2
    assert sum(reader.reused for reader in readers) == 0


# --- SSE_MAX_CHANNELS, SSE_MAX_CHANNEL_LENGTH ----------------------------------


def _status_and_body(path: str) -> tuple[int, bytes]:
    """GET ``path`` through the test client; for a stream, read its first chunk and close it."""
    response = Client().get(path)
    if response.streaming:
        iterator = iter(response.streaming_content)
        first = next(iterator)
        response.close()
        return response.status_code, first
    return response.status_code, response.content


@pytest.mark.parametrize(
    "query, status",
    [
        ("channel=a&channel=b&channel=c", 200),
        ("channel=a&channel=b&channel=c&channel=a&channel=b", 200),  # repeats count once
        ("channel=a&channel=b&channel=c&channel=d", 400),
    ],
)
def test_more_channels_than_a_configured_sse_max_channels_get_400(settings, query, status):
    """SSE_MAX_CHANNELS = 3: three distinct channels stream; a fourth gets 400 naming the setting."""
    settings.SSE_MAX_CHANNELS = 3

    code, body = _status_and_body(f"/multi/?{query}")

    assert code == status
    if status == 400:
        assert body == b"The stream asks for 4 channels; SSE_MAX_CHANNELS allows 3.\n"
    else:
        assert body.startswith(b"retry: ")


@pytest.mark.parametrize(
    "channel, status",
    [("a" * 10, 200), ("\u00e9" * 10, 200), ("a" * 11, 400), ("\u00e9" * 11, 400)],
)
def test_a_channel_longer_than_a_configured_sse_max_channel_length_gets_400(
    settings, channel, status
):
    """SSE_MAX_CHANNEL_LENGTH = 10 counts characters: 10 stream, 11 get 400 naming the setting."""
    settings.SSE_MAX_CHANNEL_LENGTH = 10

    code, body = _status_and_body(f"/multi/?channel={channel}&channel=other")

    assert code == status
    if status == 400:
        assert b"SSE_MAX_CHANNEL_LENGTH allows 10" in body and len(body) < 200


# --- SSE_MAX_EVENT_SIZE --------------------------------------------------------


@pytest.mark.integration
def test_an_event_of_exactly_the_default_max_size_is_streamed_and_one_byte_more_is_never_published(
    servers, server_kind, settings
):
    """1 MiB of data (the default limit) reaches a stream intact; 1 MiB + 1 raises and leaves Redis untouched."""
    redis = servers.redis()
    settings.SSE_REDIS_URL = redis.url
    server = servers.http(server_kind, env={"DJANGO_SSE_TEST_REDIS_URL": redis.url})
    limit = 1024 * 1024
    client = open_live(server.port, "/events/big/")
    try:
        django_sse.send_event("big", "x" * (limit - 3) + "\u00e9a", channel="big")  # 1 MiB in UTF-8
        with pytest.raises(EventTooLarge, match="SSE_MAX_EVENT_SIZE"):
            django_sse.send_event("big", "x" * (limit - 2) + "\u00e9a", channel="big")
        django_sse.send_event("after", "small", channel="big")
        events = client.read_events(2, timeout=15)
    finally:
        client.close()
    with redis.client() as admin:
        length = admin.xlen("sse:big")

    assert [event.type for event in events] == ["big", "after"]
    assert len(events[0].data.encode()) == limit
    assert events[0].data == "x" * (limit - 3) + "\u00e9a"
    assert length == 2


# --- SSE_QUEUE_SIZE ------------------------------------------------------------


@pytest.mark.integration
def test_a_client_whose_queue_overflows_is_disconnected_and_loses_nothing_on_resuming(
    servers, server_kind, settings
):
    """SSE_QUEUE_SIZE = 5 and a burst of 200: the server ends the stream; resuming gets all 200 once."""
    redis = servers.redis()
    settings.SSE_REDIS_URL = redis.url
    server = servers.http(
        server_kind, env={"DJANGO_SSE_TEST_REDIS_URL": redis.url, "DJANGO_SSE_TEST_QUEUE_SIZE": "5"}
    )
    reader = Resuming(server.port, "/events/burst/")
    try:
        reader.client.read_bytes_until(lambda body: b"id: " in body, timeout=15)  # live
        with redis.client() as admin:
            _publish_burst(admin, "burst", 200)
        data = reader.read_data(200, event="n", timeout=30)
    finally:
        reader.close()

    print(
        f"the stream overflowed and was ended {len(reader.endings)} time(s) during a burst of 200"
    )
    assert data == [str(n) for n in range(200)]
    assert reader.endings, "the queue never overflowed"
    assert reader.resets == []
