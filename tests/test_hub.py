"""The per-process hub: unit tests with the in-process broker, then gunicorn on a real Redis.

The integration tests count Redis connections two ways: the established
TCP connections the worker's PID holds to the Redis port (from /proc), and
Redis's own ``CLIENT LIST`` minus the test's connection.
"""

from __future__ import annotations

import random
import threading
import time

import pytest

import django_sse
from django_sse.brokers.base import Message
from django_sse.brokers.memory import MemoryBroker
from django_sse.core.hub import Hub
from django_sse.core.mailbox import SYNC, UNSYNCED, EndReason, Mailbox
from tests.support.redis_helpers import (
    data_of,
    eventually,
    get_stats,
    open_live,
    other_redis_clients,
    redis_connections_of,
    stats_when,
    wait_live,
)
from tests.support.sse import SseClient, streams_on_every_worker


class RecordingBroker(MemoryBroker):
    """The in-process broker, recording (un)subscriptions; ``confirm=False`` defers replies."""

    def __init__(self, confirm: bool = True, connected: bool = True) -> None:
        super().__init__(maxlen=100, ttl=0)
        self.confirm = confirm
        self.connected = connected
        self.calls: list[tuple[str, list[str]]] = []
        self.subscribed: set[str] = set()

    def subscribe(self, channels: list[str]) -> bool:
        if not self.connected:
            return False
        self.calls.append(("subscribe", list(channels)))
        self.subscribed.update(channels)
        if self.confirm:
            return super().subscribe(channels)
        self._subscribed.update(channels)
        return True

    def unsubscribe(self, channels: list[str]) -> bool:
        self.calls.append(("unsubscribe", list(channels)))
        self.subscribed.difference_update(channels)
        return super().unsubscribe(channels)


def _messages(mailbox: Mailbox) -> list:
    return [item for item in mailbox.take() if item is not SYNC]


# --- unit tests: Hub with the in-process broker ---------------------------------


def test_the_first_listener_subscribes_and_the_last_unsubscribes():
    """A channel is subscribed when its first mailbox attaches, unsubscribed when the last goes."""
    broker = RecordingBroker()
    hub = Hub(broker)
    one, two = Mailbox(10), Mailbox(10)

    hub.attach(one, ["a", "b"])
    hub.attach(two, ["b", "c"])
    after_attach = (list(broker.calls), sorted(hub.channel_names()), hub.listener_count())
    hub.detach(one, ["a", "b"])
    after_first_detach = (list(broker.calls[2:]), sorted(hub.channel_names()))
    hub.detach(two, ["b", "c"])

    assert after_attach == (
        [("subscribe", ["a", "b"]), ("subscribe", ["c"])],
        ["a", "b", "c"],
        4,
    )
    assert after_first_detach == ([("unsubscribe", ["a"])], ["b", "c"])
    assert broker.calls[3:] == [("unsubscribe", ["b", "c"])]
    assert (hub.channel_names(), hub.listener_count(), broker.subscribed) == ([], 0, set())


def test_detaching_what_was_never_attached_changes_nothing():
    """Detaching an unknown mailbox, or from a channel it does not read, unsubscribes nothing."""
    broker = RecordingBroker()
    hub = Hub(broker)
    reader = Mailbox(10)
    hub.attach(reader, ["a"])

    hub.detach(Mailbox(10), ["a"])
    hub.detach(reader, ["never"])

    assert broker.calls == [("subscribe", ["a"])]
    assert (hub.channel_names(), hub.listener_count()) == (["a"], 1)


def test_a_channel_is_ready_and_synced_once_its_subscription_is_confirmed():
    """Until the broker confirms, the channel is not ready; then every listener gets one SYNC."""
    broker = RecordingBroker(confirm=False)
    hub = Hub(broker)
    one, two = Mailbox(10), Mailbox(10)
    hub.attach(one, ["a"])
    hub.attach(two, ["a"])
    before = (hub.ready(["a"]), one.take(), two.take())

    hub.on_subscribed("a")
    hub.on_subscribed("a")  # a duplicate confirmation syncs nobody again

    assert before == (False, [], [])
    assert hub.ready(["a"]) and not hub.ready(["a", "unknown"])
    assert (one.take(), two.take()) == ([SYNC], [SYNC])


class DeferredCatchUpBroker(MemoryBroker):
    """The in-process broker whose ``catch_up_live`` answers only when the test says (as Redis's pong)."""

    def __init__(self) -> None:
        super().__init__(maxlen=100, ttl=0)
        self.tokens: list[str] = []

    def catch_up_live(self, channel: str, token: str) -> bool:
        self.tokens.append(token)
        return True

    def answer(self) -> None:
        tokens, self.tokens = self.tokens, []
        for token in tokens:
            self._listener.on_caught_up(token)


def test_a_channel_with_history_is_ready_only_once_the_broker_caught_up_its_live_events():
    """After its tip is read, the channel waits for on_caught_up; events meanwhile are fanned out and in its readiness."""
    broker = DeferredCatchUpBroker()
    first = broker.publish("a", "e", "before", True)
    hub = Hub(broker)
    stream = Mailbox(10)
    hub.attach(stream, ["a"])
    waiting = (hub.ready(["a"]), broker.tokens[:])
    during = broker.publish("a", "e", "while catching up", True)
    held = stream.take()
    broker.answer()

    assert waiting == (False, ["1"])
    assert [(m.id, m.data) for m in held] == [(during, "while catching up")]
    assert hub.ready(["a"]) and stream.take() == [SYNC]
    assert hub.start_position("a") == hub._readiness("a").tip == tuple(map(int, during.split("-")))
    assert first < during


def test_a_catch_up_answered_after_the_subscription_was_lost_makes_nothing_ready():
    """on_caught_up for a token of a lost subscription is ignored; the new subscription's own token counts."""
    broker = DeferredCatchUpBroker()
    hub = Hub(broker)
    stream = Mailbox(10)
    hub.attach(stream, ["a"])
    stale = broker.tokens.pop()
    hub.on_disconnected()
    hub.on_connected()
    hub.on_caught_up(stale)
    stale_ready = hub.ready(["a"])
    broker.answer()

    assert (stale_ready, hub.ready(["a"])) == (False, True)
    assert stream.take() == [UNSYNCED, SYNC]


def test_a_confirmation_of_an_earlier_subscribe_does_not_make_a_channel_ready():
    """Left and rejoined before any reply: only the second SUBSCRIBE's reply makes it ready."""
    broker = RecordingBroker(confirm=False)
    hub = Hub(broker)
    first, second = Mailbox(10), Mailbox(10)
    hub.attach(first, ["a"])
    hub.detach(first, ["a"])
    hub.attach(second, ["a"])

    hub.on_subscribed("a")  # the reply to the first SUBSCRIBE
    ready_early = hub.ready(["a"])
    hub.on_subscribed("a")

    assert broker.calls == [("subscribe", ["a"]), ("unsubscribe", ["a"]), ("subscribe", ["a"])]
    assert (ready_early, hub.ready(["a"]), second.take()) == (False, True, [SYNC])


def test_after_a_disconnection_channels_are_ready_again_only_once_resubscribed():
    """on_disconnected() unreadies all channels, forgets their tips and tells their streams; on_connected() syncs them."""
    broker = RecordingBroker(confirm=False)
    hub = Hub(broker)
    reader = Mailbox(10)
    hub.attach(reader, ["a", "b"])
    hub.on_subscribed("a")
    hub.on_subscribed("b")
    hub.on_message(Message("a", "e", "d", (5, 0)))
    reader.take()

    hub.on_disconnected()
    # The tip seen live (5-0) is forgotten: the broker's own (it holds nothing) is read.
    lost = (hub.ready(["a"]), hub.ready(["b"]), hub.current_tip("a"))
    resubscribed = hub.on_connected()
    hub.on_subscribed("a")
    hub.on_subscribed("b")

    assert lost == (False, False, (0, 0))
    assert resubscribed == 2
    assert sorted(broker.calls[-1][1]) == ["a", "b"] and broker.calls[-1][0] == "subscribe"
    assert hub.ready(["a", "b"])
    assert reader.take() == [UNSYNCED, SYNC, SYNC]


def test_on_lost_unreadies_only_the_lost_channels_and_tells_only_their_streams():
    """A shard's loss (on_lost): its channels wait for a new confirmation; the others stay ready and undisturbed."""
    broker = RecordingBroker(confirm=False)
    hub = Hub(broker)
    on_lost, elsewhere = Mailbox(10), Mailbox(10)
    hub.attach(on_lost, ["a"])
    hub.attach(elsewhere, ["b"])
    hub.on_subscribed("a")
    hub.on_subscribed("b")
    hub.on_message(Message("a", "e", "d", (5, 0)))
    on_lost.take(), elsewhere.take()

    hub.on_lost(["a"])
    lost = (hub.ready(["a"]), hub.ready(["b"]), hub.current_tip("a"))
    hub.on_subscribed("a")  # resubscribed by the broker itself: no pending count to wait for

    assert lost == (False, True, (0, 0))
    assert hub.ready(["a", "b"])
    assert on_lost.take() == [UNSYNCED, SYNC]
    assert elsewhere.take() == []
    assert broker.calls == [("subscribe", ["a"]), ("subscribe", ["b"])]  # nothing resent


def test_on_lost_voids_a_catch_up_and_a_confirmation_still_pending():
    """A catch-up answered after on_lost makes nothing ready; pending subscribes are forgotten."""
    broker = DeferredCatchUpBroker()
    hub = Hub(broker)
    stream = Mailbox(10)
    hub.attach(stream, ["a"])
    stale = broker.tokens.pop()
    hub.on_lost(["a"])
    hub.on_caught_up(stale)
    stale_ready = hub.ready(["a"])
    hub.attach(Mailbox(10), ["a"])  # no new subscribe: the channel is known
    hub.on_subscribed("a")  # the broker's resubscription
    broker.answer()

    assert (stale_ready, hub.ready(["a"])) == (False, True)
    assert stream.take() == [SYNC]  # it never was ready before: no UNSYNCED


def test_a_subscribe_that_could_not_be_sent_is_sent_on_resubscription():
    """With the broker disconnected, attach leaves nothing pending; on_connected() catches up."""
    broker = RecordingBroker(connected=False)
    hub = Hub(broker)
    reader = Mailbox(10)
    hub.attach(reader, ["a"])
    not_sent = (list(broker.calls), hub.ready(["a"]))

    broker.connected = True
    hub.on_connected()

    assert not_sent == ([], False)
    assert broker.calls == [("subscribe", ["a"])]
    assert hub.ready(["a"])
    assert reader.take() == [SYNC]


def test_each_message_is_fanned_out_to_every_listener_of_its_channel_only():
    """One published message reaches each listener of its channel, as the same encoded object."""
    broker = MemoryBroker(maxlen=100, ttl=0)
    hub = Hub(broker)
    readers = [Mailbox(10) for _ in range(3)]
    other = Mailbox(10)
    for reader in readers:
        hub.attach(reader, ["news"])
    hub.attach(other, ["sport"])

    event_id = broker.publish("news", "headline", "hello", history=True)
    broker.publish("nobody", "lost", "nobody listens", history=True)

    received = [_messages(reader) for reader in readers]
    assert [len(items) for items in received] == [1, 1, 1]
    assert received[0][0] is received[1][0] is received[2][0]
    assert (received[0][0].channel, received[0][0].id) == ("news", event_id)
    assert received[0][0].frame == f"id: {event_id}\nevent: headline\ndata: hello\n\n".encode()
    assert _messages(other) == []
    assert hub.current_tip("news") == tuple(int(part) for part in event_id.split("-"))


def test_a_full_mailbox_is_marked_overflowed_and_the_others_are_not_slowed():
    """Past its limit a mailbox drops messages and is marked; other listeners get everything."""
    broker = MemoryBroker(maxlen=100, ttl=0)
    hub = Hub(broker)
    slow, fast = Mailbox(3), Mailbox(100)
    hub.attach(slow, ["a"])
    hub.attach(fast, ["a"])
    slow.take(), fast.take()

    for n in range(5):
        broker.publish("a", "e", str(n), history=False)
    slow.put_control(SYNC)  # control items are never refused

    assert (slow.end_reason, fast.end_reason) == (EndReason.OVERFLOW, None)
    assert [m.data for m in _messages(fast)] == ["0", "1", "2", "3", "4"]
    slow_items = slow.take()
    assert [m.data for m in slow_items[:3]] == ["0", "1", "2"] and slow_items[3:] == [SYNC]


def test_a_mailbox_counts_the_bytes_it_holds_and_overflows_past_its_byte_budget():
    """Events count their encoded bytes, and so do those held aside; one too many overflows."""
    broker = MemoryBroker(maxlen=100, ttl=0)
    hub = Hub(broker)
    mailbox = Mailbox(100, max_bytes=3000)
    hub.attach(mailbox, ["a"])
    mailbox.take()
    for _ in range(2):
        broker.publish("a", "e", "x" * 1000, history=False)  # 1,017 bytes each
    mailbox.put_control(SYNC)  # control items count nothing
    assert (mailbox.bytes_held, mailbox.end_reason) == (2034, None)

    assert [m.size for m in _messages(mailbox)] == [1017, 1017]
    assert mailbox.bytes_held == 0
    mailbox.hold(2034)  # the stream keeps them aside (a catch-up is under way)
    broker.publish("a", "e", "x" * 900, history=False)  # 917 bytes: 2,951 in all
    assert (mailbox.bytes_held, mailbox.end_reason) == (2951, None)
    broker.publish("a", "e", "x" * 100, history=False)  # 117 more: past 3,000
    assert (mailbox.end_reason, len(mailbox)) == (EndReason.OVERFLOW, 1)


def test_a_mailbox_takes_one_event_larger_than_its_byte_budget_when_it_holds_nothing():
    """The byte budget bounds what piles up, not an event: alone, a large one is delivered."""
    mailbox = Mailbox(100, max_bytes=100)
    mailbox.put(Message("a", "e", "x" * 500, None))
    assert (mailbox.bytes_held, mailbox.end_reason) == (517, None)
    mailbox.put(b"more")
    assert mailbox.end_reason is EndReason.OVERFLOW


def test_concurrent_attach_and_detach_leave_no_listener_and_no_subscription():
    """8 threads attaching and detaching at random leave the hub and the broker empty."""
    broker = RecordingBroker()
    hub = Hub(broker)
    errors = []

    def churn(seed: int) -> None:
        rng = random.Random(seed)
        try:
            for _ in range(300):
                mailbox = Mailbox(10)
                channels = rng.sample(["a", "b", "c", "d", "e"], rng.randint(1, 3))
                hub.attach(mailbox, channels)
                if rng.random() < 0.5:
                    time.sleep(0)
                hub.detach(mailbox, channels)
        except Exception as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=churn, args=(seed,)) for seed in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    assert errors == []
    assert (hub.channel_names(), hub.listener_count(), broker.subscribed) == ([], 0, set())


# --- integration: a gunicorn gevent worker on a real Redis ----------------------


@pytest.fixture
def redis_worker(servers):
    """A redis-server of this test and one gunicorn gevent worker using it."""
    redis = servers.redis()
    return redis, servers.site(redis.url, heartbeat="1")


def _publish_to(settings, redis) -> None:
    settings.SSE_REDIS_URL = redis.url


@pytest.mark.integration
def test_300_streams_on_30_channels_use_at_most_2_redis_connections(redis_worker, settings):
    """One worker with 300 streams over 30 channels holds <= 2 Redis connections, then none leak."""
    redis, gunicorn = redis_worker
    [worker] = gunicorn.worker_pids()
    clients = []
    try:
        for n in range(300):
            clients.append(SseClient.connect(gunicorn.port, f"/events/c{n % 30}/", timeout=20))
        for client in clients:
            wait_live(client, timeout=30)
        with redis.client() as admin:
            held_open = (redis_connections_of(worker, redis.port), len(other_redis_clients(admin)))
            subscribed = sorted(c.decode() for c in admin.pubsub_channels("sse:c[0-9]*"))
        stats_open = get_stats(gunicorn.port)

        _publish_to(settings, redis)
        for n in range(30):
            django_sse.send_event("hello", f"c{n}", channel=f"c{n}")
        received = [data_of(client, 1, timeout=20) for client in clients]
        held_after_publishing = redis_connections_of(worker, redis.port)
    finally:
        for n, client in enumerate(clients):
            client.abort() if n % 2 else client.close()

    print(f"Redis connections of worker {worker} holding 300 streams: {held_open}")
    assert held_open[0] <= 2 and held_open[1] <= 2, held_open
    assert held_after_publishing <= 2
    assert subscribed == sorted(f"sse:c{n}" for n in range(30))
    assert (stats_open["streams"], stats_open["hub_channels"], stats_open["hub_listeners"]) == (
        300,
        30,
        300,
    )
    assert received == [[f"c{n % 30}"] for n in range(300)]

    eventually(
        lambda: (
            (s := get_stats(gunicorn.port))["hub_channels"] == s["hub_listeners"] == 0
            and s["streams"] == 0
        ),
        timeout=15,
    )
    with redis.client() as admin:
        eventually(lambda: admin.pubsub_channels("sse:c[0-9]*") == [], timeout=10)


@pytest.mark.integration
def test_a_client_that_disconnects_leaves_the_hub_within_a_heartbeat(servers):
    """Streams whose clients close (FIN) or reset (RST) leave the hub within one heartbeat (2 s)."""
    redis = servers.redis()
    gunicorn = servers.gunicorn(
        env={"DJANGO_SSE_TEST_REDIS_URL": redis.url, "DJANGO_SSE_TEST_HEARTBEAT": "2"}
    )
    for hang_up in (SseClient.close, SseClient.abort):
        clients = [open_live(gunicorn.port, f"/events/leaving{n}/") for n in range(5)]
        assert get_stats(gunicorn.port)["hub_listeners"] == 5
        for client in clients:
            hang_up(client)
        stats_when(
            gunicorn.port,
            lambda s: s["hub_listeners"] == s["hub_channels"] == s["streams"] == 0,
            timeout=2,
        )


@pytest.mark.integration
def test_2000_connect_disconnect_cycles_leave_no_listener_and_no_subscription(
    redis_worker, settings
):
    """After 2,000 streams opened and dropped (FIN or RST), the hub and Redis hold nothing."""
    redis, gunicorn = redis_worker
    [worker] = gunicorn.worker_pids()
    errors = []

    def cycle(thread: int) -> None:
        rng = random.Random(thread)
        try:
            for n in range(200):
                client = SseClient.connect(gunicorn.port, f"/events/churn{rng.randrange(50)}/")
                assert client.status == 200
                if n % 3 == 0:  # some wait for the stream to go live first
                    wait_live(client)
                client.abort() if rng.random() < 0.5 else client.close()
        except Exception as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=cycle, args=(t,)) for t in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)

    assert errors == []
    stats = eventually(
        lambda: (
            (s := get_stats(gunicorn.port))["hub_listeners"] == s["hub_channels"] == 0
            and s["streams"] == 0
            and s
        ),
        timeout=15,
    )
    with redis.client() as admin:
        eventually(lambda: admin.pubsub_channels("sse:churn*") == [], timeout=10)
        assert redis_connections_of(worker, redis.port) <= 2
    print(f"after 2,000 cycles: {stats}")

    # The hub still works: a new stream subscribes afresh and receives.
    _publish_to(settings, redis)
    client = open_live(gunicorn.port, "/events/churn7/")
    try:
        django_sse.send_event("still", "working", channel="churn7")
        assert data_of(client, 1) == ["working"]
    finally:
        client.close()


@pytest.mark.integration
def test_every_client_on_two_workers_gets_every_event_exactly_once(servers, settings):
    """Two gevent workers, clients on both: every event from another process arrives once."""
    redis = servers.redis()
    gunicorn = servers.gunicorn(workers=2, env={"DJANGO_SSE_TEST_REDIS_URL": redis.url})
    workers = set(gunicorn.worker_pids())
    clients = streams_on_every_worker(
        lambda: SseClient.connect(gunicorn.port, "/worker-events/everyone/"), workers=2, at_least=20
    )
    try:
        serving = {int(c.headers["X-Worker-Pid"]) for c in clients}
        for client in clients:
            wait_live(client)

        _publish_to(settings, redis)
        for n in range(30):
            django_sse.send_event("n", str(n), channel="everyone")
        django_sse.send_event("last", "", channel="everyone")
        received = [
            [e.data for e in client.read_until(lambda e: e.type == "last", timeout=20)]
            for client in clients
        ]
        # A late duplicate would come between "last" and a marker published after it.
        time.sleep(0.5)
        django_sse.send_event("marker", "", channel="everyone")
        extra = [
            [e.data for e in client.read_until(lambda e: e.type == "marker", timeout=20)][:-1]
            for client in clients
        ]
    finally:
        for client in clients:
            client.close()

    print(f"{len(clients)} clients on workers {sorted(serving)}")
    assert serving == workers and len(workers) == 2
    expected = [str(n) for n in range(30)] + [""]
    assert all(got == expected for got in received), received
    assert extra == [[]] * len(clients)
