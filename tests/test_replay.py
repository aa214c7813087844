"""Resume over real HTTP: a client that reconnects with ``Last-Event-ID`` misses nothing.

Against gunicorn -k gevent and uvicorn (``server_kind``) with Redis and with
PostgreSQL (events published by ``send_event`` in this process), and with the memory broker (one
worker, events published through the test project's ``/publish/`` view). Clients are raw sockets
(``tests.support.sse``), so what reaches them is exactly what a browser's
EventSource would parse.
"""

from __future__ import annotations

import json
import random
import re
import threading
import time
import urllib.parse
import urllib.request

import pytest

from django_sse import send_event
from django_sse.core.positions import ZERO, channel_tag, encode_positions, parse_position
from django_sse.core.runtime import get_broker
from tests.support.polling import eventually
from tests.support.postgres_helpers import site_settings, use_postgres
from tests.support.redis_helpers import connect, get_stats, multi_path, wait_position
from tests.support.servers import HttpServer
from tests.support.sse import SseClient, StreamEnded

pytestmark = pytest.mark.integration

RESET = "stream-reset"


# --- servers and publishers ---------------------------------------------------------


@pytest.fixture(scope="module")
def redis_site(module_servers, redis_server, server_kind):
    """One server (2 workers) on the session's redis-server, for the whole module."""
    return module_servers.site(
        redis_server.url,
        heartbeat="1",
        settings={"SSE_EPHEMERAL_CHANNELS": ["typing-*"]},
        workers=2,
        kind=server_kind,
    )


@pytest.fixture(scope="module")
def postgres_site(module_servers, postgres_server, server_kind):
    """One server (2 workers) with the PostgreSQL broker on the session's cluster."""
    return module_servers.site(
        "",
        heartbeat="1",
        settings=site_settings(postgres_server, SSE_EPHEMERAL_CHANNELS=["typing-*"]),
        workers=2,
        kind=server_kind,
    )


@pytest.fixture(scope="module")
def memory_site(module_servers, server_kind):
    """One server (1 worker) with the memory broker, keeping 50 events per channel."""
    return module_servers.site(
        "", heartbeat="1", settings={"SSE_HISTORY_MAXLEN": 50}, kind=server_kind
    )


class Backend:
    """A running server and the way to publish to it; ``publish()`` returns the event's id."""

    def __init__(self, name: str, server: HttpServer) -> None:
        self.name = name
        self.server = server
        self.port = server.port

    def publish(self, channel: str, data: str, event: str = "tick") -> str:
        if self.name in ("redis", "postgres"):
            return send_event(event, data, channel)
        body = urllib.parse.urlencode({"event": event, "data": data, "channel": channel}).encode()
        with urllib.request.urlopen(f"{self.server.url}/publish/", body, timeout=10) as response:
            return json.loads(response.read())["id"]

    def settle(self, channel: str) -> None:
        """Wait until retention has trimmed ``channel``: the PostgreSQL broker trims in its cleaner.

        Its cleaner deletes only what every live listener has read (they say
        so every SSE_POSTGRES_POLL_INTERVAL), so this may take a poll or two.
        """
        if self.name != "postgres":
            return
        broker = get_broker()

        def trimmed() -> bool:
            broker.clean()
            return broker.read_history(channel, ZERO, 1).gap

        eventually(trimmed, timeout=10, interval=0.1, what=f"{channel} trimmed")


@pytest.fixture(params=["redis", "memory", "postgres"])
def backend(request, settings, server_kind):
    if request.param == "redis":
        settings.SSE_REDIS_URL = request.getfixturevalue("redis_url")
        return Backend("redis", request.getfixturevalue("redis_site"))
    if request.param == "postgres":
        use_postgres(settings, request.getfixturevalue("postgres_alias"))
        return Backend("postgres", request.getfixturevalue("postgres_site"))
    return Backend("memory", request.getfixturevalue("memory_site"))


@pytest.fixture
def redis_backend(settings, redis_url, redis_site):
    settings.SSE_REDIS_URL = redis_url
    return Backend("redis", redis_site)


@pytest.fixture
def channel(request):
    """A channel name of this test alone, so module-scoped servers carry nothing over."""
    return re.sub(r"[^A-Za-z0-9_-]", "-", request.node.name[:60]) + f"-{random.randrange(10**9)}"


# --- client helpers -------------------------------------------------------------------


def summary(events) -> list[tuple[str, str]]:
    return [(event.type, event.data) for event in events]


# --- resume ------------------------------------------------------------------------------


def test_a_reconnecting_client_gets_exactly_the_missed_events_then_live_ones(backend, channel):
    """Reconnecting with the last id seen replays every event published meanwhile, in order, then live."""
    path = f"/events/{channel}/"
    first = connect(backend.port, path)
    wait_position(first)
    seen = [backend.publish(channel, f"e{index}") for index in range(5)]
    received = first.read_events(5)
    assert [(e.data, e.last_event_id) for e in received] == [(f"e{i}", seen[i]) for i in range(5)]
    last_id = first.parser.last_event_id
    first.close()

    missed = [backend.publish(channel, f"e{index}") for index in range(5, 12)]
    second = connect(backend.port, path, last_id)
    replayed = second.read_events(7)
    live_ids = [backend.publish(channel, f"e{index}") for index in range(12, 15)]
    live = second.read_events(3)
    backend.publish(channel, "end")
    [end] = second.read_events(1)
    second.close()

    assert last_id == seen[-1]
    assert [(e.type, e.data, e.last_event_id) for e in replayed] == [
        ("tick", f"e{index}", missed[index - 5]) for index in range(5, 12)
    ]
    assert [(e.data, e.last_event_id) for e in live] == [
        (f"e{index}", live_ids[index - 12]) for index in range(12, 15)
    ]
    assert end.data == "end"  # nothing duplicated between the last live event and this one


def test_three_channels_on_one_stream_resume_each_from_its_own_position(backend, channel):
    """A /multi/ stream of 3 channels resumes each channel after its own position, in order, then live."""
    channels = [f"{channel}-x", f"{channel}-y", f"{channel}-z"]
    path = multi_path(*channels)
    first = connect(backend.port, path)
    wait_position(first)
    for index in range(6):
        backend.publish(channels[index % 3], f"{channels[index % 3]}:{index}")
    first.read_events(6)
    last_id = first.parser.last_event_id
    first.close()

    # Uneven on purpose: z gets nothing while the client is away.
    missed = [("x", 6), ("y", 7), ("x", 8), ("x", 9), ("y", 10)]
    for name, index in missed:
        backend.publish(f"{channel}-{name}", f"{channel}-{name}:{index}")
    second = connect(backend.port, path, last_id)
    replayed = second.read_events(len(missed))
    for index, name in enumerate("zyx", start=11):
        backend.publish(f"{channel}-{name}", f"{channel}-{name}:{index}")
    live = second.read_events(3)
    backend.publish(channels[0], "end")
    [end] = second.read_events(1)
    final_id = second.parser.last_event_id
    second.close()

    parts = last_id.split(",")
    assert sorted(part.split(":")[0] for part in parts) == sorted(channel_tag(c) for c in channels)
    assert RESET not in [e.type for e in replayed + live]

    def per_channel(events):
        return {c: [e.data for e in events if e.data.startswith(c + ":")] for c in channels}

    assert per_channel(replayed) == {
        channels[0]: [f"{channels[0]}:6", f"{channels[0]}:8", f"{channels[0]}:9"],
        channels[1]: [f"{channels[1]}:7", f"{channels[1]}:10"],
        channels[2]: [],
    }
    assert [e.data for e in live] == [f"{channel}-z:11", f"{channel}-y:12", f"{channel}-x:13"]
    assert end.data == "end"
    assert len(final_id.split(",")) == 3


@pytest.mark.parametrize("earlier_events", [0, 3])
@pytest.mark.parametrize("shape", ["single", "multi"])
def test_a_new_client_gets_an_id_at_once_so_an_early_disconnect_misses_nothing(
    backend, channel, shape, earlier_events
):
    """A new client's stream sends its position before any event: leave, publish, resume: nothing lost."""
    channels = [channel] if shape == "single" else [f"{channel}-1", f"{channel}-2"]
    path = f"/events/{channel}/" if shape == "single" else multi_path(*channels)
    for index in range(earlier_events):
        backend.publish(channels[0], f"before{index}")
    first = connect(backend.port, path)
    position = wait_position(first)
    first.abort()
    published = [backend.publish(name, f"after-{name}") for name in channels]

    second = connect(backend.port, path, position)
    received = second.read_events(len(channels))
    second.close()

    assert first.events == []  # the id came alone, before any event
    assert sorted(e.data for e in received) == sorted(f"after-{name}" for name in channels)
    if shape == "single":
        assert received[0].last_event_id == published[0]


def test_a_client_that_saw_every_event_resumes_with_nothing_replayed(backend, channel):
    """Reconnecting with the newest id replays nothing, sends no reset, and continues live."""
    path = f"/events/{channel}/"
    first = connect(backend.port, path)
    wait_position(first)
    for index in range(3):
        backend.publish(channel, str(index))
    first.read_events(3)
    first.close()

    second = connect(backend.port, path, first.parser.last_event_id)
    # Published while the stream may still be catching up: it comes once, from
    # history or live. Once it is in, the catch-up is over, so "live" can only
    # come live.
    after = backend.publish(channel, "after")
    [event] = second.read_events(1)
    live = backend.publish(channel, "live")
    [then] = second.read_events(1)
    second.close()

    assert (event.type, event.data, event.last_event_id) == ("tick", "after", after)
    assert (then.type, then.data, then.last_event_id) == ("tick", "live", live)


def test_an_eventsource_polyfill_resumes_with_the_lasteventid_query_parameter(
    redis_backend, channel
):
    """``?lastEventId=`` (what polyfills send instead of the header) resumes the same way."""
    first_id = redis_backend.publish(channel, "seen")
    missed = redis_backend.publish(channel, "missed")
    query = urllib.parse.urlencode({"lastEventId": first_id})

    with connect(redis_backend.port, f"/events/{channel}/?{query}") as client:
        [event] = client.read_events(1)

    assert (event.data, event.last_event_id) == ("missed", missed)


def test_ephemeral_channels_send_no_id_and_are_not_replayed(settings, redis_backend, channel):
    """A channel in SSE_EPHEMERAL_CHANNELS streams events without ids; resuming replays only the others."""
    settings.SSE_EPHEMERAL_CHANNELS = ["typing-*"]  # the server has the same setting
    typing, news = f"typing-{channel}", f"news-{channel}"
    path = multi_path(news, typing)
    with connect(redis_backend.port, path) as first:
        position = wait_position(first)
        assert send_event("tick", "t1", typing) is None
        news_id = send_event("tick", "n1", news)
        received = first.read_events(2)
    assert send_event("tick", "t2", typing) is None
    send_event("tick", "n2", news)

    with connect(redis_backend.port, path, received[-1].last_event_id) as second:
        replayed = second.read_events(1)
        send_event("tick", "t3", typing)
        live = second.read_events(1)

    assert position == "0-0"  # one channel with history: a bare id (the empty channel's 0-0)
    assert [(e.data, e.last_event_id) for e in received] == [("t1", "0-0"), ("n1", news_id)]
    assert summary(replayed + live) == [("tick", "n2"), ("tick", "t3")]


# --- stream-reset --------------------------------------------------------------------------


def _expect_reset_then_live(backend, path, last_event_id, channels, publish_to):
    """Check that the stream opens with stream-reset naming ``channels``, then goes live; return its id."""
    with connect(backend.port, path, last_event_id) as client:
        [first] = client.read_events(1, timeout=5)
        assert (first.type, json.loads(first.data)) == (RESET, {"channels": channels})
        position = wait_position(client)
        backend.publish(publish_to, "live")
        [live] = client.read_events(1)
    assert (live.type, live.data) == ("tick", "live")
    return position


def test_a_position_older_than_the_trimmed_history_gets_stream_reset_then_live(
    backend, channel, settings
):
    """An id trimmed out of history (SSE_HISTORY_MAXLEN) opens the stream with stream-reset, then live."""
    settings.SSE_HISTORY_MAXLEN = 10  # the publisher trims (Redis); the memory server keeps 50
    old_id = backend.publish(channel, "old")
    for index in range(300):
        backend.publish(channel, str(index))
    tip = backend.publish(channel, "newest")
    backend.settle(channel)

    position = _expect_reset_then_live(
        backend, f"/events/{channel}/", old_id, [channel], publish_to=channel
    )

    assert position == tip  # the client restarts from the newest event
    again = connect(backend.port, f"/events/{channel}/", position)  # and resumes from there
    backend.publish(channel, "next")
    events = again.read_events(2)
    again.close()
    assert summary(events) == [("tick", "live"), ("tick", "next")]


MALFORMED = {
    "garbage": "hello",
    "huge": "1-0," * 2000,
    "future": "99999999999999-0",
    "utf-8 digits": "١٢٣-٠".encode().decode("latin-1"),  # as the server decodes the bytes
    "latin-1 bytes": "\xff\xfe",
    "many commas": "," * 500,
}


@pytest.mark.parametrize("name", list(MALFORMED))
def test_a_malformed_or_unknown_id_gets_stream_reset_then_live(backend, channel, name):
    """Garbage, a huge value, a position never issued: stream-reset first, then live; never a 500."""
    backend.publish(channel, "exists")  # the channel has history; the id names none of it

    _expect_reset_then_live(
        backend, f"/events/{channel}/", MALFORMED[name], [channel], publish_to=channel
    )


@pytest.mark.parametrize(
    "make_id",
    [
        pytest.param(lambda mine, ids: ids[mine[0]], id="bare id on a multi stream"),
        pytest.param(
            lambda mine, ids: encode_positions({"other-1": (1, 0), "other-2": (2, 0)}),
            id="another stream's id",
        ),
        pytest.param(lambda mine, ids: "zzzzzz:1-0,yyyyyy:2-0", id="unknown tags"),
    ],
)
def test_a_multi_stream_given_a_wrong_format_or_foreign_id_gets_stream_reset(
    backend, channel, make_id
):
    """A multi-channel stream resets every channel that the id gives no valid position for."""
    channels = [f"{channel}-a", f"{channel}-b"]
    ids = {name: backend.publish(name, "exists") for name in channels}

    _expect_reset_then_live(
        backend, multi_path(*channels), make_id(channels, ids), channels, publish_to=channels[1]
    )


def test_a_single_stream_given_a_multi_channel_id_gets_stream_reset(backend, channel):
    """A one-channel stream refuses a several-channel id: stream-reset, then live."""
    event_id = backend.publish(channel, "exists")
    multi_id = encode_positions({channel: parse_position(event_id), "other": (1, 0)})

    _expect_reset_then_live(backend, f"/events/{channel}/", multi_id, [channel], publish_to=channel)


def test_only_the_channel_whose_position_is_lost_is_reset(backend, channel, settings):
    """With one channel trimmed past the client's position, stream-reset names it alone; the other replays."""
    settings.SSE_HISTORY_MAXLEN = 10
    kept, trimmed = f"{channel}-kept", f"{channel}-trimmed"
    path = multi_path(kept, trimmed)
    first = connect(backend.port, path)
    wait_position(first)
    backend.publish(kept, "k0")
    backend.publish(trimmed, "t0")
    first.read_events(2)
    first.close()
    backend.publish(kept, "k1")
    for index in range(300):
        backend.publish(trimmed, f"t{index + 1}")
    backend.settle(trimmed)

    second = connect(backend.port, path, first.parser.last_event_id)
    events = second.read_events(2)
    second.close()

    assert summary(events) == [
        (RESET, json.dumps({"channels": [trimmed]}, separators=(",", ":"))),
        ("tick", "k1"),
    ]


def test_a_stream_that_overflows_ends_and_its_client_resumes_without_loss(
    servers, settings, redis_url, server_kind
):
    """A client too slow for SSE_QUEUE_SIZE is cut off; resuming from its last id, it gets every event."""
    settings.SSE_REDIS_URL = redis_url
    server = servers.site(redis_url, settings={"SSE_QUEUE_SIZE": 20}, kind=server_kind)
    padding = "x" * 20_000
    client = connect(server.port, "/events/slow/")
    wait_position(client)
    for index in range(600):  # ~12 MB: more than the socket buffers hold, while nobody reads
        send_event("tick", f"{index} {padding}", "slow")
    client.read_to_end(timeout=30)  # the server gave up on this stream
    numbers = [int(event.data.split()[0]) for event in client.events]

    with connect(server.port, "/events/slow/", client.parser.last_event_id) as resumed:
        resumed.read_events(600 - len(numbers), timeout=30)
        numbers += [int(event.data.split()[0]) for event in resumed.events]

    assert len(client.events) < 600  # it did overflow
    assert numbers == list(range(600))


# --- SSE_STREAM_BUFFER_BYTES -------------------------------------------------------------------


def test_a_long_catch_up_is_read_in_batches_within_the_stream_buffer(
    servers, settings, redis_url, server_kind
):
    """400 missed events of 16 KiB, a budget of 128 KiB: no read holds more than 128 KiB, none is lost."""
    settings.SSE_REDIS_URL = redis_url
    budget = 128 * 1024
    server = servers.site(redis_url, settings={"SSE_STREAM_BUFFER_BYTES": budget}, kind=server_kind)
    padding = "x" * 16 * 1024
    ids = [send_event("tick", f"{index} {padding}", "long") for index in range(400)]

    with connect(server.port, "/events/long/", ids[0]) as client:
        replayed = client.read_events(399, timeout=60)
        live_id = send_event("tick", "live", "long")
        [live] = client.read_events(1, timeout=15)
    stats = get_stats(server.port)

    assert [int(event.data.split()[0]) for event in replayed] == list(range(1, 400))
    assert [event.last_event_id for event in replayed] == ids[1:]
    assert (live.data, live.last_event_id) == ("live", live_id)
    # Old: one read of every missed event (6.4 MiB), joined into one write.
    event_size = len(b"event: tick\ndata: 399 \n\n") + len(padding)
    assert stats["history_read_bytes_max"] is not None
    assert event_size <= stats["history_read_bytes_max"] <= budget


def test_live_events_past_the_stream_buffer_end_a_slow_stream_and_its_client_resumes(
    servers, settings, redis_url, server_kind
):
    """A client that stops reading is cut off past 64 KiB queued (not SSE_QUEUE_SIZE); resuming loses nothing."""
    settings.SSE_REDIS_URL = redis_url
    server = servers.site(
        redis_url, settings={"SSE_STREAM_BUFFER_BYTES": 64 * 1024}, kind=server_kind
    )
    padding = "x" * 20_000
    client = connect(server.port, "/events/slow-bytes/")
    wait_position(client)
    for index in range(600):  # ~12 MB: more than the socket buffers hold, while nobody reads
        send_event("tick", f"{index} {padding}", "slow-bytes")
    client.read_to_end(timeout=30)  # the server gave up on this stream
    numbers = [int(event.data.split()[0]) for event in client.events]

    with connect(server.port, "/events/slow-bytes/", client.parser.last_event_id) as resumed:
        resumed.read_events(600 - len(numbers), timeout=30)
        numbers += [int(event.data.split()[0]) for event in resumed.events]

    assert len(client.events) < 600  # it did overflow (600 events fit SSE_QUEUE_SIZE's 2000)
    assert numbers == list(range(600))


# --- ids of many channels ----------------------------------------------------------------------


def test_a_stream_of_45_channels_resumes(servers, settings, redis_url, server_kind):
    """With SSE_MAX_CHANNELS raised to 45 the stream's own id still resumes it (nothing lost, no reset)."""
    settings.SSE_REDIS_URL = redis_url
    server = servers.site(redis_url, settings={"SSE_MAX_CHANNELS": 45}, kind=server_kind)
    channels = [f"wide-{index}" for index in range(45)]
    path = multi_path(*channels)
    first = connect(server.port, path)
    wait_position(first)
    for name in channels:
        send_event("tick", name, name)
    first.read_events(45)
    first.close()
    send_event("tick", "missed", channels[7])

    with connect(server.port, path, first.parser.last_event_id) as second:
        [event] = second.read_events(1, timeout=5)

    assert len(first.parser.last_event_id) > 1024
    assert (event.type, event.data) == ("tick", "missed")


# --- the race ---------------------------------------------------------------------------------


RACE_EVENTS = 2400  # about 17 connections per client: the mean read is ~140 events
RACE_CLIENTS = 20


class RaceDeadline:
    """When the clients give up: a while after the last event was published, however long publishing took.

    Publishing shares this process with the clients' threads, so its pace depends
    on the machine; a client still reading then is behind, not failed.
    """

    def __init__(self, grace: float) -> None:
        self.grace = grace
        self.at: float | None = None

    def publishing_done(self) -> None:
        self.at = time.monotonic() + self.grace

    def left(self) -> float:
        return float("inf") if self.at is None else self.at - time.monotonic()


class RaceClient:
    """A client that drops its connection at random points and resumes from its last id, as EventSource does."""

    def __init__(self, index: int, port: int, path: str, channels: list[str]) -> None:
        self.rng = random.Random(index)
        self.port = port
        self.path = path
        self.got: dict[str, list[int]] = {name: [] for name in channels}
        self.other: list[tuple[str, str]] = []
        self.connections = 0
        self.last_id = ""
        self.error: str | None = None
        self.client: SseClient | None = None

    def open(self) -> None:
        self.client = connect(self.port, self.path, self.last_id or None)
        self.connections += 1

    def complete(self, count: int) -> bool:
        return all(values[-1:] == [count - 1] for values in self.got.values())

    def hang_up(self) -> None:
        """Drop the connection (FIN or RST) and keep what was parsed, as a browser does."""
        client = self.client
        client.close() if self.rng.random() < 0.5 else client.abort()
        for event in client.events:
            name, _, number = event.data.partition(":")
            if event.type == "tick" and name in self.got:
                self.got[name].append(int(number))
            else:
                self.other.append((event.type, event.data))
        self.last_id = client.parser.last_event_id or self.last_id

    def run(self, count: int, deadline: RaceDeadline) -> None:
        """Read a random number of events (0: drop at once), hang up, reconnect; until all arrived."""
        try:
            while deadline.left() > 0:
                wanted = self.rng.choice([0, 1, 2, 5, 20, 100, 300, 700])
                try:
                    while len(self.client.events) < wanted and not self._complete_with(count):
                        self.client.read_events(1, timeout=max(0.1, min(deadline.left(), 60)))
                except (TimeoutError, StreamEnded):
                    pass
                self.hang_up()
                if self.complete(count):
                    return
                self.open()
        except Exception as exc:  # reported by the test
            self.error = repr(exc)

    def _complete_with(self, count: int) -> bool:
        """Whether the events parsed on the open connection complete every channel."""
        last = {name: values[-1:] for name, values in self.got.items()}
        for event in self.client.events:
            name, _, number = event.data.partition(":")
            if name in last:
                last[name] = [int(number)]
        return all(values == [count - 1] for values in last.values())


@pytest.mark.timeout(300)  # publishing alone takes 20 s or more on a loaded machine
def test_clients_reconnecting_at_random_during_a_burst_get_every_event_once_in_order(
    redis_backend, channel
):
    """2,400 events on 2 channels at full speed; 20 clients drop and resume at random: none misses any."""
    channels = [f"{channel}-a", f"{channel}-b"]
    per_channel = RACE_EVENTS // 2
    deadline = RaceDeadline(grace=30)
    clients = [
        RaceClient(i, redis_backend.port, multi_path(*channels), channels)
        for i in range(RACE_CLIENTS)
    ]
    for client in clients:  # each knows its starting position before the first event
        client.open()
        client.last_id = wait_position(client.client)
    threads = [
        threading.Thread(target=client.run, args=(per_channel, deadline), daemon=True)
        for client in clients
    ]
    for thread in threads:
        thread.start()

    for index in range(RACE_EVENTS):
        name = channels[index % 2]
        send_event("tick", f"{name}:{index // 2}", name)
    deadline.publishing_done()
    for thread in threads:
        thread.join(max(0.1, deadline.left() + 5))

    expected = list(range(per_channel))
    for index, client in enumerate(clients):
        assert client.error is None, f"client {index}: {client.error}"
        assert client.other == [], f"client {index} got {client.other[:5]}"
        for name in channels:
            got = client.got[name]
            first_wrong = next(
                (i for i, (a, b) in enumerate(zip(got, expected, strict=False)) if a != b), len(got)
            )
            assert got == expected, (
                f"client {index}, {name}: {len(got)} events, wrong from {first_wrong}"
            )
    assert sum(client.connections for client in clients) > 5 * RACE_CLIENTS
