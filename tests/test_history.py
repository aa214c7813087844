"""Tests of the brokers' history: ids, retention, gaps, and recording atomically with announcing.

Every behaviour is checked on every broker, ``MemoryBroker``, ``RedisBroker``
against a real redis-server and ``PostgresBroker`` against a real
PostgreSQL, since they all promise the same semantics.
"""

from __future__ import annotations

import threading
import time

import pytest

from django_sse import send_event
from django_sse.brokers.base import Message
from django_sse.brokers.memory import MemoryBroker
from django_sse.brokers.postgres.broker import PostgresBroker
from django_sse.brokers.redis.broker import RedisBroker
from django_sse.core.hub import Hub
from django_sse.core.mailbox import Mailbox
from django_sse.core.positions import ZERO, parse_position
from django_sse.core.runtime import get_broker
from tests.support.polling import eventually
from tests.support.postgres_helpers import empty_tables


@pytest.fixture(
    params=[
        "memory",
        pytest.param("redis", marks=pytest.mark.integration),
        pytest.param("postgres", marks=pytest.mark.integration),
    ]
)
def kind(request):
    return request.param


@pytest.fixture
def make_broker(kind, request):
    """A factory of brokers of the parametrized kind; ``make_broker(maxlen=10, ttl=1.0)``."""
    made = []

    def make(maxlen: int = 10_000, ttl: float = 86400):
        if kind == "memory":
            broker = MemoryBroker(maxlen=maxlen, ttl=ttl)
        elif kind == "postgres":
            alias = request.getfixturevalue("postgres_alias")
            broker = PostgresBroker(alias, maxlen=maxlen, ttl=ttl, cleanup_interval=0.05)
        else:
            url = request.getfixturevalue("redis_url")
            broker = RedisBroker(url, prefix="sse:", timeout=5, maxlen=maxlen, ttl=ttl)
        made.append(broker)
        return broker

    yield make
    for broker in made:
        broker.close()


@pytest.fixture
def use_broker(kind, settings, request):
    """Configure send_event for the parametrized broker; return the broker it uses."""
    if kind == "memory":
        settings.SSE_BROKER = "memory"
    elif kind == "postgres":
        settings.SSE_BROKER = "postgres"
        settings.SSE_POSTGRES_DATABASE = request.getfixturevalue("postgres_alias")
    else:
        settings.SSE_REDIS_URL = request.getfixturevalue("redis_url")
    return get_broker


def _publish(broker, channel: str, count: int, history: bool = True) -> list[str]:
    ids = [broker.publish(channel, "tick", str(index), history) for index in range(count)]
    if isinstance(broker, PostgresBroker):
        broker.clean()  # it trims in its cleaner, not as it publishes: trim now, as Redis has
    return ids


def _read_all(broker, channel: str, after, limit: int = 100):
    """Return (messages, gap) reading every batch of ``limit`` after ``after``."""
    messages = []
    while True:
        history = broker.read_history(channel, after, limit)
        if history.gap:
            return messages, True
        messages += history.messages
        if not history.more:
            return messages, False
        after = history.messages[-1].position


def _forget(broker, kind: str, request):
    """Lose every channel's history, as a restart without persistence does; return the broker to use.

    A restart takes longer than a millisecond: ids begin with the millisecond
    they were made in, and one made again in the old last id's millisecond
    could repeat that id, which no real restart does.
    """
    time.sleep(0.002)
    if kind == "memory":
        return MemoryBroker(maxlen=broker.maxlen, ttl=broker.ttl)  # a new process
    if kind == "postgres":  # a database restored from before the events (or another one)
        empty_tables(request.getfixturevalue("postgres_server"))
        return broker
    request.getfixturevalue("redis_server").client().flushall()
    return broker


def _assert_exact_or_gap(broker, channel: str, ids: list[str]) -> list[bool]:
    """Check, after every published id, that history is either the exact rest or a gap."""
    gaps = []
    for index, event_id in enumerate(ids):
        messages, gap = _read_all(broker, channel, parse_position(event_id), limit=1000)
        if not gap:
            assert [m.id for m in messages] == ids[index + 1 :], f"after {event_id}"
        gaps.append(gap)
    return gaps


# --- ids ------------------------------------------------------------------------


def test_publish_returns_ids_that_grow_per_channel(make_broker):
    """Each event recorded gets a ``ms-seq`` id, strictly greater than the channel's previous one."""
    broker = make_broker()
    ids = {"a": [], "b": []}
    for index in range(300):
        channel = "ab"[index % 2]
        ids[channel].append(broker.publish(channel, "tick", str(index), True))

    for channel_ids in ids.values():
        positions = [parse_position(event_id) for event_id in channel_ids]
        assert None not in positions
        assert positions == sorted(set(positions))


def test_send_event_returns_the_id_history_records(use_broker):
    """send_event returns the id under which the event is read back from history."""
    event_id = send_event("greeting", {"hello": "world"}, "news")

    [message] = use_broker().read_history("news", ZERO, 10).messages
    assert (message.id, message.event, message.data) == (event_id, "greeting", '{"hello":"world"}')


# --- reading ----------------------------------------------------------------------


def test_history_after_a_position_is_exactly_the_later_events_in_order(make_broker):
    """Reading after any event's id returns every later event of that channel, in order, and no other."""
    broker = make_broker()
    ids = []
    for index in range(60):
        ids.append(broker.publish("a", "tick", f"a{index}", True))
        broker.publish("b", "tick", f"b{index}", True)  # another channel, never mixed in

    for index in range(len(ids)):
        messages, gap = _read_all(broker, "a", parse_position(ids[index]), limit=7)
        assert not gap
        assert [(m.id, m.data, m.channel) for m in messages] == [
            (ids[later], f"a{later}", "a") for later in range(index + 1, len(ids))
        ]
    messages, gap = _read_all(broker, "a", ZERO)
    assert not gap and [m.id for m in messages] == ids


def test_a_limited_read_says_when_more_follow(make_broker):
    """A read capped at ``limit`` returns the oldest events first and ``more`` until the last batch."""
    broker = make_broker()
    ids = _publish(broker, "a", 10)

    first = broker.read_history("a", ZERO, 4)
    last = broker.read_history("a", parse_position(ids[7]), 4)

    assert ([m.id for m in first.messages], first.more) == (ids[:4], True)
    assert ([m.id for m in last.messages], last.more) == (ids[8:], False)


def test_a_read_bounded_in_bytes_stops_before_the_event_that_would_pass_the_bound(make_broker):
    """``max_bytes`` cuts a read (``more`` set) but always returns one event, however large."""
    broker = make_broker()
    ids = [broker.publish("a", "tick", str(index) * 1000, True) for index in range(5)]
    broker.publish("b", "tick", "x" * 5000, True)

    bounded = broker.read_history("a", ZERO, 100, max_bytes=3500)
    rest = broker.read_history("a", parse_position(ids[2]), 100, max_bytes=3500)
    large = broker.read_history("b", ZERO, 100, max_bytes=10)

    assert ([m.id for m in bounded.messages], bounded.more) == (ids[:3], True)
    assert ([m.id for m in rest.messages], rest.more) == (ids[3:], False)
    assert ([len(m.data) for m in large.messages], large.more) == ([5000], False)


def test_reading_only_the_tip_gives_the_newest_id(make_broker):
    """``after=None`` returns no events and the channel's newest id (0-0 for an unknown channel)."""
    broker = make_broker()
    ids = _publish(broker, "a", 5)

    tip = broker.read_history("a", None, 0)
    unknown = broker.read_history("never-published", None, 0)

    assert (tip.messages, tip.gap, tip.tip) == ([], False, parse_position(ids[-1]))
    assert (unknown.messages, unknown.gap, unknown.tip) == ([], False, ZERO)


# --- retention ----------------------------------------------------------------------


def test_count_retention_trims_and_a_trimmed_position_is_a_gap(make_broker):
    """With SSE_HISTORY_MAXLEN 10, 500 events trim history: old positions are gaps, recent ones exact."""
    broker = make_broker(maxlen=10)
    ids = _publish(broker, "a", 500)

    gaps = _assert_exact_or_gap(broker, "a", ids)

    assert gaps[0] and all(gaps[: 500 - 200])  # Redis keeps at most ~2 nodes of 100 beyond MAXLEN
    assert not any(gaps[-10:])  # at least MAXLEN events are kept
    assert gaps == sorted(gaps, reverse=True)  # trimmed from the oldest end only


def _age_out(broker, kind: str) -> tuple[list[str], list[str]]:
    """Publish events, then keep the channel alive (publishing every 0.05 s, well under the TTL) until the first is trimmed.

    Redis trims by age with MINID ~, which drops only whole nodes (100 entries),
    hence 250 events there. The trim is observed, not assumed from the time
    that passed; the newest event, published last, is never older than the TTL.
    """
    old = _publish(broker, "a", 250 if kind == "redis" else 3)
    first = parse_position(old[0])
    new: list[str] = []

    def first_trimmed() -> bool:
        new.extend(_publish(broker, "a", 1))
        return broker.read_history("a", first, 1).gap

    eventually(first_trimmed, timeout=15, interval=0.05, what="the oldest event trimmed")
    return old, new


def test_age_retention_trims_old_events_and_their_positions_are_gaps(make_broker, kind):
    """Events older than SSE_HISTORY_TTL are trimmed while the channel lives on: their positions are gaps."""
    broker = make_broker(ttl=1.0)
    old, new = _age_out(broker, kind)

    gaps = _assert_exact_or_gap(broker, "a", old + new)

    assert gaps[0]
    assert not gaps[-1]  # the event just published is kept
    assert gaps == sorted(gaps, reverse=True)  # trimmed from the oldest end only


@pytest.mark.parametrize("trim", ["count", "age"])
def test_reading_from_zero_after_trimming_is_a_gap(make_broker, kind, trim):
    """0-0 ("before the first event") on a trimmed channel is a gap: its first events are gone."""
    if trim == "count":
        broker = make_broker(maxlen=10)
        _publish(broker, "a", 500)
    else:
        broker = make_broker(ttl=1.0)
        _age_out(broker, kind)
    assert broker.read_history("a", None, 0).tip != ZERO

    history = broker.read_history("a", ZERO, 1000)

    assert (history.gap, history.messages) == (True, [])


def test_a_channel_silent_for_longer_than_the_ttl_expires_and_positions_in_it_are_gaps(
    make_broker,
):
    """History of a channel not published to for SSE_HISTORY_TTL is gone: its positions are gaps."""
    broker = make_broker(ttl=0.5)
    ids = _publish(broker, "a", 3)
    eventually(
        lambda: broker.read_history("a", None, 0).tip == ZERO,
        interval=0.05,
        what="the channel expired",
    )

    after_last = broker.read_history("a", parse_position(ids[-1]), 10)
    from_zero = broker.read_history("a", ZERO, 10)

    assert (after_last.gap, after_last.messages) == (True, [])
    assert (from_zero.gap, from_zero.messages) == (False, [])  # nothing was ever lost to 0-0 here


# --- positions this history never issued ----------------------------------------------


def test_a_position_from_the_future_is_a_gap(make_broker):
    """A position after the channel's newest id cannot be resumed from."""
    broker = make_broker()
    ids = _publish(broker, "a", 3)
    ms, seq = parse_position(ids[-1])

    assert broker.read_history("a", (ms + 10**6, 0), 10).gap
    assert broker.read_history("a", (ms, seq + 1), 10).gap


def test_a_position_never_issued_on_the_channel_is_a_gap(make_broker):
    """A position inside the channel's range that it never issued (e.g. another channel's) is a gap."""
    broker = make_broker()
    a_ids = []
    b_ids = []
    for index in range(20):
        a_ids.append(broker.publish("a", "tick", str(index), True))
        time.sleep(0.002)
        b_ids.append(broker.publish("b", "tick", str(index), True))
        time.sleep(0.002)
    foreign = [parse_position(i) for i in b_ids[:-1] if i not in a_ids]
    ms, seq = parse_position(a_ids[5])

    assert foreign
    for position in foreign:
        assert broker.read_history("a", position, 100).gap, position
    assert broker.read_history("a", (ms, seq + 10_000), 100).gap


def test_a_position_from_before_history_was_lost_is_a_gap(make_broker, kind, request):
    """After a restart without persistence (FLUSHALL / a new process) an old position is a gap."""
    broker = make_broker()
    ids = _publish(broker, "a", 3)
    broker = _forget(broker, kind, request)

    assert broker.read_history("a", parse_position(ids[-1]), 10).gap
    new = _publish(broker, "a", 2)  # history starts again: the old position is still unknown
    assert broker.read_history("a", parse_position(ids[-1]), 10).gap
    assert [m.id for m in broker.read_history("a", parse_position(new[0]), 10).messages] == new[1:]


def test_reading_a_missing_channel_from_zero_is_not_a_gap(make_broker):
    """A channel without history read from 0-0 has simply nothing yet: no gap, no events."""
    history = make_broker().read_history("never-published", ZERO, 10)

    assert (history.gap, history.messages, history.tip) == (False, [], ZERO)


# --- channels without history --------------------------------------------------------------


def test_an_event_without_history_has_no_id_and_is_not_recorded(make_broker):
    """``history=False``: publish returns None and history neither holds it nor moves its tip."""
    broker = make_broker()
    [recorded] = _publish(broker, "a", 1)

    assert _publish(broker, "a", 3, history=False) == [None, None, None]
    assert _publish(broker, "ephemeral", 3, history=False) == [None, None, None]

    assert broker.read_history("a", None, 0).tip == parse_position(recorded)
    assert [m.id for m in broker.read_history("a", ZERO, 10).messages] == [recorded]
    assert broker.read_history("ephemeral", ZERO, 10).messages == []
    assert broker.read_history("ephemeral", None, 0).tip == ZERO


def test_ephemeral_channels_and_sse_history_false_record_nothing(use_broker, settings):
    """SSE_EPHEMERAL_CHANNELS (names and 'prefix*') and SSE_HISTORY=False make send_event return None."""
    settings.SSE_EPHEMERAL_CHANNELS = ["typing-*", "presence"]

    assert send_event("t", "x", "typing-42") is None
    assert send_event("t", "x", "presence") is None
    assert send_event("t", "x", "presence", history=True) is not None  # explicit history wins
    kept = send_event("t", "x", "typing")  # the pattern is a prefix with the dash
    assert kept is not None
    assert send_event("t", "x", "news", history=False) is None

    broker = use_broker()
    assert broker.read_history("typing-42", ZERO, 10).messages == []
    assert [m.id for m in broker.read_history("typing", ZERO, 10).messages] == [kept]
    assert broker.read_history("news", ZERO, 10).messages == []

    settings.SSE_HISTORY = False
    assert send_event("t", "x", "news") is None
    assert use_broker().read_history("news", ZERO, 10).messages == []


# --- live delivery and atomicity -----------------------------------------------------------


class _RecordingHub(Hub):
    """A hub that, for every live event, asks a second broker whether history already has it."""

    def __init__(self, broker, reader=None) -> None:
        self.reader = reader
        self.unrecorded: list[str] = []
        super().__init__(broker)

    def on_message(self, message) -> None:
        if self.reader is not None and message.position is not None:
            # Here, in the subscriber's thread, as soon as the event is seen.
            tip = self.reader.read_history(message.channel, None, 0).tip
            if tip < message.position:
                self.unrecorded.append(message.id)
        super().on_message(message)


def _subscribe(hub: Hub, channels: list[str]) -> Mailbox:
    mailbox = Mailbox(100_000)
    hub.attach(mailbox, channels)
    deadline = time.monotonic() + 10
    while not hub.ready(channels):
        assert time.monotonic() < deadline, "the subscription was not confirmed within 10 s"
        time.sleep(0.01)
    return mailbox


def _collect(mailbox: Mailbox, count: int, timeout: float = 15) -> list:
    """Take ``count`` messages (control items skipped) from ``mailbox``."""
    received = []
    deadline = time.monotonic() + timeout
    while len(received) < count and time.monotonic() < deadline:
        time.sleep(0.01)
        received += [item for item in mailbox.take() if isinstance(item, Message)]
    return received


def test_live_subscribers_get_every_event_once_with_the_id_publish_returned(make_broker):
    """A subscribed hub receives each event once, in order, with the id publish returned (None without history)."""
    broker = make_broker()
    hub = Hub(broker)
    mailbox = _subscribe(hub, ["a"])
    sent = []
    for index in range(200):
        history = index % 5 != 0
        sent.append((broker.publish("a", "tick", str(index), history), str(index)))

    received = _collect(mailbox, len(sent))

    assert [(m.id, m.data) for m in received] == sent
    hub.detach(mailbox, ["a"])


@pytest.mark.integration
def test_a_subscriber_that_sees_an_event_can_always_read_it_from_history(redis_url):
    """Recording and announcing are one step: at the moment a subscriber sees id X, history has X."""
    publisher = RedisBroker(redis_url, prefix="sse:", timeout=5, maxlen=100_000, ttl=86400)
    reader = RedisBroker(redis_url, prefix="sse:", timeout=5, maxlen=100_000, ttl=86400)
    subscriber = RedisBroker(redis_url, prefix="sse:", timeout=5, maxlen=100_000, ttl=86400)
    hub = _RecordingHub(subscriber, reader)
    try:
        mailbox = _subscribe(hub, ["a", "b"])
        sent: list[str] = []

        def publish() -> None:
            for index in range(1500):
                sent.append(publisher.publish("ab"[index % 2], "tick", str(index), True))

        thread = threading.Thread(target=publish)
        thread.start()
        thread.join(30)
        received = _collect(mailbox, len(sent))

        assert hub.unrecorded == []
        assert sorted(m.id for m in received) == sorted(sent)  # history holds nothing unannounced
    finally:
        hub.close()
        reader.close()
        publisher.close()


class _CatchUpRecorder(Hub):
    """A hub that records, in the order the broker calls it, live event ids and catch-up tokens."""

    def __init__(self, broker) -> None:
        self.record: list[tuple[str, str | None]] = []
        super().__init__(broker)

    def on_message(self, message) -> None:
        self.record.append(("event", message.id))
        super().on_message(message)

    def on_caught_up(self, token: str) -> None:
        self.record.append(("caught up", token))
        super().on_caught_up(token)


def test_catch_up_live_follows_every_event_published_before_it(make_broker):
    """on_caught_up(token) comes after the live copy of every event whose publish returned before catch_up_live(token)."""
    broker = make_broker()
    publisher = make_broker()  # another connection, as another process publishes
    hub = _CatchUpRecorder(broker)
    _subscribe(hub, ["barrier"])
    if isinstance(broker, MemoryBroker):
        publisher = broker  # one process: the same broker
    published: list[str | None] = []
    published_before: dict[str, int] = {}  # round: how many events were published before it
    for round_number in range(40):
        published += [publisher.publish("barrier", "tick", str(i), True) for i in range(5)]
        published_before[str(round_number)] = len(published)
        assert broker.catch_up_live("barrier", f"round-{round_number}")
    deadline = time.monotonic() + 10
    while ("caught up", "round-39") not in hub.record:  # answered in order: the last one
        assert time.monotonic() < deadline, "catch_up_live was not answered within 10 s"
        time.sleep(0.01)
    hub.close()

    for round_number, count in published_before.items():
        at = hub.record.index(("caught up", f"round-{round_number}"))
        seen = [event_id for kind, event_id in hub.record[:at] if kind == "event"]
        assert seen[:count] == published[:count], f"round {round_number}"
